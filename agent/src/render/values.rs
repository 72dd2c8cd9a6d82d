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
use crate::component::{Binding, BindingType, Component};
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

/// The values files a component reads, in order.
pub fn value_files(
    reads: &Reader,
    src: &Sources,
    dir: &str,
    global_overrides: bool,
) -> Vec<PathBuf> {
    let mut files = yaml_files(reads, &src.genestack.join("base-helm-configs").join(dir));
    if let Some(o) = &src.overrides {
        if global_overrides {
            files.extend(yaml_files(reads, &o.join("helm-configs/global_overrides")));
        }
        files.extend(yaml_files(reads, &o.join("helm-configs").join(dir)));
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

/// `strvals.ParseInto` as the install scripts' flags apply it: descend existing maps, replace
/// leaves; a non-map on the path is an error (the Helm CLI panics there).
pub fn parse_into(
    base: &mut Map<String, Json>,
    parsed: Map<String, Json>,
    what: &str,
) -> Result<(), String> {
    for (k, v) in parsed {
        match v {
            Json::Object(sub) => {
                let slot = base
                    .entry(k.clone())
                    .or_insert_with(|| Json::Object(Map::new()));
                let Json::Object(m) = slot else {
                    return Err(format!("{what}: existing key {k:?} is not a map"));
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
            Some(reads.secret_value(objects, ns, name, key).map_err(err)?)
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
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let token = &rest[i + 1..i + j];
        let value = if token == "value" {
            raw.clone()
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
        };
        out.push_str(&value);
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
    let files = value_files(
        reads,
        src,
        &component.values.dir,
        component.values.global_overrides,
    );
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
            parse_into(&mut vals, parsed, &b.path).map_err(|cause| ValuesError::Binding {
                path: b.path.clone(),
                cause,
            })?;
        }
    }
    Ok((files, vals))
}
