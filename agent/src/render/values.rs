//! Values composition exactly as Genestack's install scripts drive Helm
//! (`bin/install-<svc>.sh`; Helm `pkg/cli/values/options.go` `MergeValues`, `pkg/strvals`):
//!
//! 1. values files in order — `base-helm-configs/<dir>/*.yaml`, then (unless the component
//!    opts out) `<overrides>/helm-configs/global_overrides/*.yaml`, then
//!    `<overrides>/helm-configs/<dir>/*.yaml`; each directory in bash glob order (names ending
//!    in `.yaml`, not starting with `.`, sorted bytewise); each file parsed by Helm itself
//!    (first document, YAML 1.1) and merged with Helm's `mergeMaps` (maps merge recursively,
//!    anything else — `null` and lists included — replaces);
//! 2. bindings from cluster objects, applied after every file: all `--set`, then all
//!    `--set-string`, then all `--set-file`, each parsed by Helm's strvals and laid into the
//!    values (`strvals.ParseInto`: existing maps are descended, a non-map in the way is an
//!    error). Values for `--set`/`--set-string` lose trailing newlines (bash `$(...)`);
//!    `--set-file` bytes are kept verbatim.
//!
//! Secret values are only ever held in memory; errors name the Secret and key, never the value.

use super::helm::{Helm, HelmError};
use super::objects::Objects;
use super::reads::Reader;
use crate::component::{Binding, BindingType, Component, ValuesSpec};
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};

/// A values composition failure.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    /// A values file could not be read or parsed.
    #[error("values file {file}: {cause}")]
    File {
        /// The file.
        file: String,
        /// The cause.
        cause: String,
    },
    /// A binding's source object or key is missing.
    #[error("binding {path}: {cause}")]
    Binding {
        /// The values path.
        path: String,
        /// The cause.
        cause: String,
    },
    /// Helm refused an expression or document.
    #[error(transparent)]
    Helm(#[from] HelmError),
}

/// The inputs to compose values: the Genestack base checkout and the operator overrides tree.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Genestack checkout (holds `base-helm-configs/`, `base-kustomize/`).
    pub genestack: PathBuf,
    /// Operator overrides tree laid out like `/etc/genestack` (may be absent).
    pub overrides: Option<PathBuf>,
}

/// Names ending in `.yaml` and not hidden, sorted bytewise (bash `"$d"/*.yaml` in the C locale),
/// listed through the render's reader.
pub fn yaml_files(reads: &Reader, dir: &Path) -> Vec<PathBuf> {
    let Some(names) = reads.list(dir) else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter(|n| n.ends_with(".yaml") && !n.starts_with('.'))
        .map(|n| dir.join(n))
        .filter(|p| reads.exists(p))
        .collect()
}

/// The values files a component reads, in order: its `base` entries (default
/// `base-helm-configs/<dir>`; a `.yaml` entry is one file, passed when it exists, anything
/// else a directory globbed), then `global_overrides` unless opted out, then the operator's
/// `helm-configs/<dir>` unless opted out. Every look goes through the render's reader.
pub fn value_files(reads: &Reader, src: &Sources, spec: &ValuesSpec) -> Vec<PathBuf> {
    let default_base = [format!("base-helm-configs/{}", spec.dir)];
    let base = spec.base.as_deref().unwrap_or(&default_base);
    let mut files = Vec::new();
    for entry in base {
        let p = src.genestack.join(entry);
        if entry.ends_with(".yaml") {
            if reads.is_file(&p) {
                files.push(p);
            }
        } else {
            files.extend(yaml_files(reads, &p));
        }
    }
    if let Some(o) = &src.overrides {
        if spec.global_overrides {
            files.extend(yaml_files(reads, &o.join("helm-configs/global_overrides")));
        }
        if spec.operator_overrides {
            files.extend(yaml_files(reads, &o.join("helm-configs").join(&spec.dir)));
        }
    }
    files
}

/// Helm's `mergeMaps`.
pub fn merge_maps(dst: &mut Map<String, Json>, src: Map<String, Json>) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(Json::Object(d)), Json::Object(s)) => merge_maps(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

/// A `--set` path runs through a value that is not a map ([`parse_into`]).
#[derive(Debug, thiserror::Error)]
#[error("{what}: existing key {key:?} is not a map")]
pub struct NotAMap {
    /// The flag (binding path).
    pub what: String,
    /// The key on the path that holds a non-map.
    pub key: String,
}

/// `strvals.ParseInto` as the install scripts' flags apply it: descend existing maps, replace
/// leaves; a non-map on the path is an error (the Helm CLI panics there).
pub fn parse_into(
    base: &mut Map<String, Json>,
    parsed: Map<String, Json>,
    what: &str,
) -> Result<(), NotAMap> {
    for (k, v) in parsed {
        match v {
            Json::Object(sub) => {
                let slot = base
                    .entry(k.clone())
                    .or_insert_with(|| Json::Object(Map::new()));
                let Json::Object(m) = slot else {
                    return Err(NotAMap {
                        what: what.to_string(),
                        key: k,
                    });
                };
                parse_into(m, sub, what)?;
            }
            other => {
                base.insert(k, other);
            }
        }
    }
    Ok(())
}

/// Reads one values file as `helm -f` does.
///
/// # Errors
/// Unreadable file or invalid YAML.
pub fn read_values_file(
    helm: &Helm,
    reads: &Reader,
    path: &Path,
) -> Result<Map<String, Json>, ValuesError> {
    let file = path.display().to_string();
    let text = reads.read_to_string(path).map_err(|e| ValuesError::File {
        file: file.clone(),
        cause: e.to_string(),
    })?;
    let json = helm
        .values_from_yaml(&text)
        .map_err(|e| ValuesError::File {
            file: file.clone(),
            cause: e.to_string(),
        })?;
    match serde_json::from_str::<Json>(&json) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Ok(Map::new()),
        Err(e) => Err(ValuesError::File {
            file,
            cause: e.to_string(),
        }),
    }
}

/// Merges a list of values files.
///
/// # Errors
/// As [`read_values_file`].
pub fn merge_files(
    helm: &Helm,
    reads: &Reader,
    files: &[PathBuf],
) -> Result<Map<String, Json>, ValuesError> {
    let mut vals = Map::new();
    for f in files {
        merge_maps(&mut vals, read_values_file(helm, reads, f)?);
    }
    Ok(vals)
}

fn field_at<'a>(
    v: &'a kustomize_rs::yaml::Value,
    path: &str,
) -> Option<&'a kustomize_rs::yaml::Value> {
    let mut cur = v;
    for seg in path.split('.') {
        cur = match cur {
            kustomize_rs::yaml::Value::Seq(items) => items.get(seg.parse::<usize>().ok()?)?,
            other => other.get(seg)?,
        };
    }
    Some(cur)
}

/// Resolves one binding to the text Helm receives.
fn binding_value(
    b: &Binding,
    namespace: &str,
    objects: &Objects,
    reads: &Reader,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ValuesError> {
    let err = |cause: String| ValuesError::Binding {
        path: b.path.clone(),
        cause,
    };
    let secret_value = match (&b.secret, &b.key) {
        (Some(name), Some(key)) => {
            let ns = b.namespace.as_deref().unwrap_or(namespace);
            Some(
                reads
                    .secret_value(objects, ns, name, key)
                    .map_err(|e| err(e.to_string()))?,
            )
        }
        (Some(_), None) => return Err(err("a secret binding needs a key".into())),
        _ => None,
    };
    let raw = match (&secret_value, b.kind) {
        (Some(v), BindingType::SetFile) => return Ok(String::from_utf8_lossy(v).into_owned()),
        (Some(v), _) => String::from_utf8_lossy(v)
            .trim_end_matches('\n')
            .to_string(),
        (None, _) => String::new(),
    };
    let Some(t) = &b.template else {
        if secret_value.is_none() {
            return Err(err("a binding needs a secret or a template".into()));
        }
        return Ok(raw);
    };
    expand_template(t, |token| {
        Ok(if token == "value" {
            raw.clone()
        } else if let Some(r) = token.strip_prefix("secret:") {
            let (ns, name, key) = split_secret_ref(r)
                .ok_or_else(|| err(format!("{{{token}}}: expected secret:NAMESPACE/NAME/KEY")))?;
            let v = objects
                .secret_value(ns, name, key)
                .map_err(|e| err(e.to_string()))?;
            String::from_utf8_lossy(&v)
                .trim_end_matches('\n')
                .to_string()
        } else if token == "count" || token.starts_with("addresses:") {
            let q = b.nodes.as_ref().ok_or_else(|| {
                err(format!(
                    "template uses {{{token}}} but the binding names no nodes"
                ))
            })?;
            let addrs = node_addresses(objects, &q.label_selector, &q.address_type);
            if addrs.is_empty() {
                // install-kube-ovn.sh stops here: "No master nodes found labeled with ...".
                return Err(err(format!(
                    "no Node labelled {} has an {} address",
                    q.label_selector, q.address_type
                )));
            }
            match token.strip_prefix("addresses:") {
                Some(sep) => addrs.join(sep),
                None => addrs.len().to_string(),
            }
        } else if let Some(from) = token.strip_prefix("freePort:") {
            let from: u32 = from
                .parse()
                .map_err(|_| err(format!("{{{token}}}: not a port number")))?;
            free_service_port(objects, from)
                .ok_or_else(|| err(format!("no free Service port from {from}")))?
                .to_string()
        } else if let Some(f) = token.strip_prefix("field:") {
            let o = b.object.as_ref().ok_or_else(|| {
                err(format!(
                    "template uses {{{token}}} but the binding names no object"
                ))
            })?;
            let obj = reads
                .object(objects, &o.kind, &o.namespace, &o.name)
                .ok_or_else(|| err(format!("{} {}/{} not found", o.kind, o.namespace, o.name)))?;
            field_at(obj, f)
                .and_then(kustomize_rs::yaml::Value::scalar_string)
                .ok_or_else(|| {
                    err(format!(
                        "{} {}/{} has no field {f}",
                        o.kind, o.namespace, o.name
                    ))
                })?
        } else if let Some(v) = token.strip_prefix("var:") {
            vars(v).ok_or_else(|| err(format!("unknown variable {v}")))?
        } else {
            return Err(err(format!("unknown template placeholder {{{token}}}")));
        })
    })
}

/// Expands a binding template: `{TOKEN}` is replaced by `f(TOKEN)`, `{{` and `}}` are a
/// literal `{` and `}` (for strvals lists, `--set 'a={x,y}'`), and a `{` with no closing `}`
/// is kept as it is.
///
/// # Errors
/// The first error of `f`.
pub fn expand_template<E>(
    t: &str,
    mut f: impl FnMut(&str) -> Result<String, E>,
) -> Result<String, E> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            out.push('}');
            rest = after;
            continue;
        }
        let Some(j) = tail.find('}') else {
            out.push_str(tail);
            return Ok(out);
        };
        out.push_str(&f(&tail[1..j])?);
        rest = &tail[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits `NAMESPACE/NAME/KEY`.
pub fn split_secret_ref(r: &str) -> Option<(&str, &str, &str)> {
    let mut it = r.splitn(3, '/');
    Some((it.next()?, it.next()?, it.next()?))
}

/// Whether an object's labels satisfy an equality selector `k=v`, `k!=v` or `k` (Kubernetes
/// `apimachinery/pkg/labels/selector.go`: comma-separated requirements, all must hold).
pub fn labels_match(obj: &kustomize_rs::yaml::Value, selector: &str) -> bool {
    let label = |k: &str| {
        obj.get_path(&["metadata", "labels", k])
            .and_then(kustomize_rs::yaml::Value::scalar_string)
    };
    selector
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .all(|r| {
            if let Some((k, v)) = r.split_once("!=") {
                label(k.trim()).as_deref() != Some(v.trim())
            } else if let Some((k, v)) = r.split_once('=') {
                let v = v.trim().trim_start_matches('=');
                label(k.trim()).as_deref() == Some(v.trim())
            } else {
                label(r).is_some()
            }
        })
}

/// The addresses of a type of every Node matching a selector, in list order (Node name),
/// as `kubectl get nodes -l SEL -o json | jq '.items[].status.addresses[] | select(.type==T)'`.
pub fn node_addresses(objects: &Objects, selector: &str, address_type: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in objects.list("Node") {
        if !labels_match(n, selector) {
            continue;
        }
        if let Some(kustomize_rs::yaml::Value::Seq(addrs)) = n.get_path(&["status", "addresses"]) {
            for a in addrs {
                if a.str_at(&["type"]) == Some(address_type) {
                    if let Some(ip) = a.str_at(&["address"]) {
                        out.push(ip.to_string());
                    }
                }
            }
        }
    }
    out
}

/// The first port from `from` up (to 65535) that no Service's port line ends with: the
/// search of `install-openstack-exporter.sh` (`kubectl get svc -A -o jsonpath=
/// '{range .items[*]}{.spec.ports[*].port}{"\n"}{end}' | grep -q "${port}$"`), a suffix
/// match on each Service's space-joined ports.
pub fn free_service_port(objects: &Objects, from: u32) -> Option<u32> {
    let lines: Vec<String> = objects
        .list("Service")
        .map(|s| match s.get_path(&["spec", "ports"]) {
            Some(kustomize_rs::yaml::Value::Seq(ps)) => ps
                .iter()
                .filter_map(|p| {
                    p.get("port")
                        .and_then(kustomize_rs::yaml::Value::scalar_string)
                })
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        })
        .collect();
    (from..=65535).find(|p| {
        let p = p.to_string();
        !lines.iter().any(|l| l.ends_with(&p))
    })
}

/// The cluster inputs a binding reads besides its `secret`/`object` (Secrets named in
/// `{secret:…}`, Nodes, Services), as digests for render cache keys; never a value.
pub fn binding_extra_inputs(b: &Binding, objects: &Objects) -> Vec<String> {
    let mut out = Vec::new();
    let Some(t) = &b.template else {
        return out;
    };
    let mut rest = t.as_str();
    while let Some(i) = rest.find("{secret:") {
        let tail = &rest[i + 8..];
        let end = tail.find('}').unwrap_or(tail.len());
        if let Some((ns, name, key)) = split_secret_ref(&tail[..end]) {
            out.push(objects.secret_digest(ns, name, key));
        }
        rest = &tail[end..];
    }
    if let Some(q) = &b.nodes {
        out.push(node_addresses(objects, &q.label_selector, &q.address_type).join(","));
    }
    if let Some(i) = t.find("{freePort:") {
        let from = t[i + 10..]
            .split('}')
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        out.push(format!("{:?}", free_service_port(objects, from)));
    }
    out
}

/// Composes a component's user values: files, then bindings.
///
/// # Errors
/// Unreadable or invalid files, missing Secrets/keys/objects, strvals errors.
pub fn compose(
    helm: &Helm,
    reads: &Reader,
    component: &Component,
    src: &Sources,
    objects: &Objects,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<PathBuf>, Map<String, Json>), ValuesError> {
    let files = value_files(reads, src, &component.values);
    let mut vals = merge_files(helm, reads, &files)?;
    let ns = &component.release.namespace;
    for phase in [
        BindingType::Set,
        BindingType::SetString,
        BindingType::SetFile,
    ] {
        for b in component.bindings.iter().filter(|b| b.kind == phase) {
            let value = binding_value(b, ns, objects, reads, vars)?;
            let parsed = match phase {
                BindingType::Set => helm.strvals_parse(&format!("{}={}", b.path, value))?,
                BindingType::SetString => {
                    helm.strvals_parse_string(&format!("{}={}", b.path, value))?
                }
                BindingType::SetFile => {
                    // --set-file: the path's segments become nested maps around the bytes.
                    let mut nested = Json::String(value);
                    for part in b.path.rsplit('.') {
                        let mut m = Map::new();
                        m.insert(part.to_string(), nested);
                        nested = Json::Object(m);
                    }
                    serde_json::to_string(&nested).unwrap_or_default()
                }
            };
            let parsed: Map<String, Json> = match serde_json::from_str(&parsed) {
                Ok(Json::Object(m)) => m,
                _ => {
                    return Err(ValuesError::Binding {
                        path: b.path.clone(),
                        cause: "strvals returned a non-map".into(),
                    })
                }
            };
            parse_into(&mut vals, parsed, &b.path).map_err(|e| ValuesError::Binding {
                path: b.path.clone(),
                cause: e.to_string(),
            })?;
        }
    }
    Ok((files, vals))
}
