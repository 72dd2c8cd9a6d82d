//! `ValueAddTransformer`: adds one value at a field path of the selected resources
//! (`api/internal/builtins/ValueAddTransformer.go`, `api/filters/valueadd/valueadd.go`).
//!
//! The value (trimmed; by default the base name of the kustomization's directory) is set at
//! each target's `fieldPath`, creating missing fields; an existing scalar is replaced, and
//! with `filePathPosition: i > 0` it is treated as a file path and the value inserted as its
//! `i`-th segment (a leading `/` kept; too large an `i` appends). A `fieldPath` of
//! `metadata/namespace` goes through the namespace transformer instead (namespaced kinds
//! only, RoleBinding `default` subjects too). Targets come from `targets` and the `targets`
//! list of the file `targetFilePath`.

use super::meta::{namespace, NamespaceOptions};
use super::select::Selector;
use crate::fieldspec::{apply, CreateKind, FieldSpec};
use crate::fs::Loader;
use crate::resource::Resource;
use crate::yaml::Value;
use crate::Error;

/// One target: which resources (all when there is no selector), where, and the file-path
/// position.
struct Target {
    selector: Option<Selector>,
    field_path: String,
    file_path_position: i64,
}

fn targets_of(v: Option<&Value>) -> Result<Vec<Target>, Error> {
    let Some(Value::Seq(items)) = v else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|t| {
            Ok(Target {
                selector: match t.get("selector") {
                    Some(s @ Value::Map(_)) => Some(Selector::from_value(s)?),
                    _ => None,
                },
                field_path: t
                    .get("fieldPath")
                    .and_then(Value::scalar_string)
                    .unwrap_or_default(),
                file_path_position: match t.get("filePathPosition") {
                    Some(Value::Int(i)) => *i,
                    _ => 0,
                },
            })
        })
        .collect()
}

/// `filesys.InsertPathPart`: `part` becomes segment `pos` (0-based) of `path`.
fn insert_path_part(path: &str, pos: usize, part: &str) -> String {
    if part.is_empty() {
        return path.to_string();
    }
    let abs = path.starts_with('/');
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segs.insert(pos.min(segs.len()), part);
    let joined = segs.join("/");
    if abs {
        format!("/{joined}")
    } else {
        joined
    }
}

/// Runs one `ValueAddTransformer` configuration.
///
/// # Errors
/// No targets, an empty `fieldPath`, a negative `filePathPosition`, an unreadable
/// `targetFilePath`, or a field path that ends at a mapping or sequence.
pub fn run(ldr: &Loader, cfg: &Value, res: &mut [Resource]) -> Result<(), Error> {
    let mut value = cfg
        .get("value")
        .and_then(Value::scalar_string)
        .unwrap_or_default()
        .trim()
        .to_string();
    if value.is_empty() {
        value = ldr
            .root()
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
    }
    let mut targets = targets_of(cfg.get("targets"))?;
    if let Some(p) = cfg
        .get("targetFilePath")
        .and_then(Value::scalar_string)
        .filter(|p| !p.is_empty())
    {
        let doc = crate::yaml::parse_one(&ldr.load_string(&p)?)
            .map_err(|e| Error::from(e).context(&p))?;
        targets.extend(targets_of(doc.get("targets"))?);
    }
    if targets.is_empty() {
        return Err(Error::field("targets", "must specify at least one target"));
    }
    for t in &targets {
        if t.field_path.is_empty() {
            return Err(Error::field("fieldPath", "fieldPath cannot be empty"));
        }
        if t.file_path_position < 0 {
            return Err(Error::field(
                "filePathPosition",
                format!(
                    "value of FilePathPosition ({}) cannot be negative",
                    t.file_path_position
                ),
            ));
        }
    }
    for t in &targets {
        for r in res.iter_mut() {
            if t.selector.as_ref().is_some_and(|s| !s.matches(r)) {
                continue;
            }
            if t.field_path == "metadata/namespace" {
                namespace(
                    &value,
                    &[],
                    NamespaceOptions::default(),
                    std::slice::from_mut(r),
                )?;
                continue;
            }
            let fs = FieldSpec {
                path: t.field_path.clone(),
                create: true,
                ..Default::default()
            };
            let pos = t.file_path_position;
            apply(&mut r.obj, &fs, CreateKind::Scalar, &mut |n: &mut Value| {
                let old = match &*n {
                    Value::Map(_) | Value::Seq(_) => {
                        return Err(Error::field(
                            &t.field_path,
                            format!(
                                "wrong node kind: expected ScalarNode but got {}",
                                n.kind_name()
                            ),
                        ))
                    }
                    other => other.scalar_string().unwrap_or_default(),
                };
                *n = Value::String(if pos > 0 {
                    insert_path_part(&old, (pos - 1) as usize, &value)
                } else {
                    value.clone()
                });
                Ok(())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::insert_path_part;

    #[test]
    fn inserts_path_parts_as_upstream_documents() {
        for (old, pos, new) in [
            ("", 0, "PEACH"),
            ("/", 0, "/PEACH"),
            ("pie", 0, "PEACH/pie"),
            ("/pie", 0, "/PEACH/pie"),
            ("raw", 1, "raw/PEACH"),
            ("/raw", 1, "/raw/PEACH"),
            ("a/nice/warm/pie", 3, "a/nice/warm/PEACH/pie"),
            ("/a/nice/warm/pie", 3, "/a/nice/warm/PEACH/pie"),
            ("raw", 9998, "raw/PEACH"),
        ] {
            assert_eq!(insert_path_part(old, pos, "PEACH"), new, "{old} at {pos}");
        }
    }
}
