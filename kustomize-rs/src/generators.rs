//! `configMapGenerator` and `secretGenerator` (`api/internal/generators/{configmap,secret,utils}.go`,
//! `api/kv/kv.go`), plus the content hash kustomize appends to generated names
//! (`api/hasher/hasher.go`).

use crate::fs::Loader;
use crate::resource::{Behavior, Resource};
use crate::yaml::{Mapping, Value};
use crate::Error;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Merged generator options (`types.GeneratorOptions`).
#[derive(Clone, Debug, Default)]
struct GenOptions {
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    disable_hash: bool,
    immutable: bool,
}

fn read_options(v: Option<&Value>) -> GenOptions {
    let mut o = GenOptions::default();
    let Some(v) = v else { return o };
    o.labels = v.string_pairs("labels");
    o.annotations = v.string_pairs("annotations");
    o.disable_hash = matches!(v.get("disableNameSuffixHash"), Some(Value::Bool(true)));
    o.immutable = matches!(v.get("immutable"), Some(Value::Bool(true)));
    o
}

/// `types.MergeGlobalOptionsIntoLocal` (`api/types/generatoroptions.go`): global
/// labels/annotations are added where the generator's own `options` lack the key (a local
/// value wins); global `disableNameSuffixHash`/`immutable` switch them on.
fn merge_options(local: GenOptions, global: &GenOptions) -> GenOptions {
    let mut o = local;
    for (k, v) in &global.labels {
        add_missing(&mut o.labels, k, v);
    }
    for (k, v) in &global.annotations {
        add_missing(&mut o.annotations, k, v);
    }
    o.disable_hash |= global.disable_hash;
    o.immutable |= global.immutable;
    o
}

fn add_missing(pairs: &mut Vec<(String, String)>, k: &str, v: &str) {
    if !pairs.iter().any(|(kk, _)| kk == k) {
        pairs.push((k.to_string(), v.to_string()));
    }
}

fn remove_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0] == b[b.len() - 1] && (b[0] == b'"' || b[0] == b'\'') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Parses an env file (`kv.go` `parseLine`): `KEY=VALUE` lines, blank lines and `#` comments
/// skipped, leading whitespace trimmed, a bare `KEY` taking its value from the environment.
fn parse_env_file(text: &str, origin: &str) -> Result<Vec<(String, String)>, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, v.to_string()),
            None => (line, std::env::var(line).unwrap_or_default()),
        };
        if key.is_empty()
            || key.contains(char::is_whitespace)
            || key.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::generator(format!(
                "\"{key}\" is not a valid key name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (line {} of {origin})",
                i + 1
            )));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// The key/value pairs of one generator, in kustomize's order: env files, literals, files.
fn load_pairs(
    ldr: &Loader,
    args: &Value,
    name: &str,
    kind: &str,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let strs = |k: &str| -> Vec<String> {
        match args.get(k) {
            Some(Value::Seq(items)) => items.iter().filter_map(Value::scalar_string).collect(),
            Some(v) => v
                .scalar_string()
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
            None => Vec::new(),
        }
    };
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut envs = strs("envs");
    envs.extend(strs("env"));
    for env in envs {
        let text = ldr.load_string(&env)?;
        for (k, v) in parse_env_file(&text, &env)? {
            pairs.push((k, v.into_bytes()));
        }
    }
    for lit in strs("literals") {
        let (k, v) = lit.split_once('=').ok_or_else(|| {
            Error::generator(format!("invalid literal source {lit}, expected key=value"))
        })?;
        pairs.push((k.to_string(), remove_quotes(v).as_bytes().to_vec()));
    }
    for f in strs("files") {
        let (key, path) = match f.split_once('=') {
            Some((k, p)) => {
                if k.is_empty() {
                    return Err(Error::generator(format!(
                        "key name for file path {p} missing"
                    )));
                }
                (k.to_string(), p.to_string())
            }
            None => {
                let base = std::path::Path::new(&f)
                    .file_name()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| f.clone());
                (base, f.clone())
            }
        };
        pairs.push((key, ldr.load(&path)?));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &pairs {
        if !valid_key(k) {
            return Err(Error::generator(format!(
                "\"{k}\" is not a valid key name for a {kind}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
            )));
        }
        if !seen.insert(k.clone()) {
            return Err(Error::generator(format!(
                "{} {name} illegally repeats the key `{k}`",
                kind.to_lowercase()
            )));
        }
    }
    Ok(pairs)
}

/// kyaml `encodeBase64`: standard base64 broken into 70-character lines, each ending in a
/// newline, once the encoding is 70 characters or longer.
pub fn encode_base64_lines(data: &[u8]) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    if enc.len() < 70 {
        return enc;
    }
    let mut out = String::with_capacity(enc.len() + enc.len() / 70 + 1);
    for chunk in enc.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// Runs one `configMapGenerator` (`kind == "ConfigMap"`) or `secretGenerator` entry.
///
/// # Errors
/// Missing files, bad keys, repeated keys, an unknown `behavior`.
pub fn generate(
    ldr: &Loader,
    args: &Value,
    kind: &str,
    global: Option<&Value>,
) -> Result<Resource, Error> {
    // Kustomization entries carry `name`/`namespace`; builtin plugin configs carry `metadata`.
    let field = |k: &str| {
        args.get(k)
            .or_else(|| args.get_path(&["metadata", k]))
            .and_then(Value::scalar_string)
            .filter(|s| !s.is_empty())
    };
    let name = field("name").unwrap_or_default();
    let ctx = || format!("{} generator '{name}'", kind);
    let opts = merge_options(read_options(args.get("options")), &read_options(global));
    let pairs = load_pairs(ldr, args, &name, kind).map_err(|e| e.context(ctx()))?;
    let mut meta = Mapping::default();
    meta.insert("name".into(), Value::String(name.clone()));
    if let Some(ns) = field("namespace") {
        meta.insert("namespace".into(), Value::String(ns));
    }
    if !opts.labels.is_empty() {
        meta.insert(
            "labels".into(),
            Value::Map(
                opts.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            ),
        );
    }
    if !opts.annotations.is_empty() {
        meta.insert(
            "annotations".into(),
            Value::Map(
                opts.annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            ),
        );
    }
    let mut obj = Mapping::default();
    obj.insert("apiVersion".into(), "v1".into());
    obj.insert("kind".into(), kind.into());
    obj.insert("metadata".into(), Value::Map(meta));
    let mut sorted = pairs;
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    if kind == "Secret" {
        let ty = args
            .get("type")
            .and_then(Value::scalar_string)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "Opaque".into());
        if !sorted.is_empty() {
            let data: Mapping = sorted
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(encode_base64_lines(v))))
                .collect();
            obj.insert("data".into(), Value::Map(data));
        }
        obj.insert("type".into(), Value::String(ty));
    } else {
        let mut data = Mapping::default();
        let mut binary = Mapping::default();
        for (k, v) in sorted {
            match String::from_utf8(v) {
                Ok(s) => {
                    data.insert(k, Value::String(s));
                }
                Err(e) => {
                    binary.insert(k, Value::String(encode_base64_lines(e.as_bytes())));
                }
            }
        }
        if !data.is_empty() {
            obj.insert("data".into(), Value::Map(data));
        }
        if !binary.is_empty() {
            obj.insert("binaryData".into(), Value::Map(binary));
        }
    }
    if opts.immutable {
        obj.insert("immutable".into(), Value::Bool(true));
    }
    let mut r = Resource::new(Value::Map(obj));
    r.behavior = match args
        .get("behavior")
        .and_then(Value::scalar_string)
        .as_deref()
    {
        // `types.NewGenerationBehavior`: exactly `merge` or `replace`; anything else
        // (`create`, empty, unknown words, other capitalisations) is "unspecified", which
        // generates like `create`.
        Some("merge") => Behavior::Merge,
        Some("replace") => Behavior::Replace,
        _ => Behavior::Create,
    };
    r.needs_hash = !opts.disable_hash;
    Ok(r)
}

/// The builtin `IAMPolicyGenerator` (`api/internal/builtins/IAMPolicyGenerator.go`): a
/// ServiceAccount annotated with the GKE service account it impersonates.
///
/// # Errors
/// An unsupported cloud or missing names.
pub fn iam_policy(cfg: &Value) -> Result<Resource, Error> {
    let s = |p: &[&str]| {
        cfg.get_path(p)
            .and_then(Value::scalar_string)
            .unwrap_or_default()
    };
    if s(&["cloud"]) != "gke" {
        return Err(Error::generator(format!(
            "IAMPolicyGenerator: cloud '{}' is not supported (only gke)",
            s(&["cloud"])
        )));
    }
    let (name, ns) = (
        s(&["kubernetesService", "name"]),
        s(&["kubernetesService", "namespace"]),
    );
    let (gsa, project) = (
        s(&["serviceAccount", "name"]),
        s(&["serviceAccount", "projectId"]),
    );
    if name.is_empty() || gsa.is_empty() || project.is_empty() {
        return Err(Error::generator("IAMPolicyGenerator: kubernetesService.name, serviceAccount.name and serviceAccount.projectId are required"));
    }
    let mut meta = Mapping::default();
    let mut ann = Mapping::default();
    ann.insert(
        "iam.gke.io/gcp-service-account".into(),
        Value::String(format!("{gsa}@{project}.iam.gserviceaccount.com")),
    );
    meta.insert("annotations".into(), Value::Map(ann));
    meta.insert("name".into(), Value::String(name));
    if !ns.is_empty() {
        meta.insert("namespace".into(), Value::String(ns));
    }
    let mut obj = Mapping::default();
    obj.insert("apiVersion".into(), "v1".into());
    obj.insert("kind".into(), "ServiceAccount".into());
    obj.insert("metadata".into(), Value::Map(meta));
    Ok(Resource::new(Value::Map(obj)))
}

/// Go `encoding/json` text of a value (keys sorted, `<>&` escaped as `\u003c` etc.).
pub fn go_json(v: &Value) -> String {
    let mut s = String::new();
    write_go_json(v, &mut s);
    s
}

fn write_go_json(v: &Value, s: &mut String) {
    match v {
        Value::Null => s.push_str("null"),
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => s.push_str(&i.to_string()),
        Value::Uint(u) => s.push_str(&u.to_string()),
        Value::Float(f) => s.push_str(&go_json_float(*f)),
        Value::String(t) => write_go_json_str(t, s),
        Value::Seq(items) => {
            s.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_go_json(it, s);
            }
            s.push(']');
        }
        Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            s.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_go_json_str(k, s);
                s.push(':');
                write_go_json(&m[k.as_str()], s);
            }
            s.push('}');
        }
    }
}

fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let t = format!("{f:e}");
        let (m, e) = t.split_once('e').unwrap_or((&t, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
            .replace("e-0", "e-")
            .replace("e+0", "e+")
    } else {
        let t = format!("{f}");
        t
    }
}

fn write_go_json_str(t: &str, s: &mut String) {
    s.push('"');
    for c in t.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                s.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
}

/// The name-suffix hash of a resource (`hasher.Hash`): ConfigMaps hash kind, data and
/// binaryData (and an always-empty name); Secrets kind, type, data and stringData; anything
/// else its whole JSON.
/// The hex sha256's first ten characters, with `0 1 3 a e` mapped to `g h k m t`.
pub fn hash(obj: &Value) -> String {
    let kind = obj.str_at(&["kind"]).unwrap_or("");
    let field = |k: &str| -> Value {
        match obj.get(k) {
            None => Value::String(String::new()),
            Some(Value::Map(m)) => Value::Map(m.clone()),
            Some(v) => Value::String(v.scalar_string().unwrap_or_default()),
        }
    };
    // kustomize looks the name up with `yaml.Lookup("metadata/name")`, a single field that
    // never exists, so the name always hashes as "".
    let name = Value::String(String::new());
    let encoded = match kind {
        "ConfigMap" => {
            let mut m = Mapping::default();
            m.insert("kind".into(), "ConfigMap".into());
            m.insert("name".into(), name);
            m.insert("data".into(), field("data"));
            if let Some(Value::Map(b)) = obj.get("binaryData") {
                m.insert("binaryData".into(), Value::Map(b.clone()));
            }
            go_json(&Value::Map(m))
        }
        "Secret" => {
            let mut m = Mapping::default();
            m.insert("kind".into(), "Secret".into());
            m.insert("type".into(), field("type"));
            m.insert("name".into(), name);
            m.insert("data".into(), field("data"));
            if let Some(Value::Map(b)) = obj.get("stringData") {
                m.insert("stringData".into(), Value::Map(b.clone()));
            }
            go_json(&Value::Map(m))
        }
        _ => go_json(obj),
    };
    let digest = Sha256::digest(encoded.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    hex.chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}
