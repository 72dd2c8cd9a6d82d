//! `ValueAddTransformer`: adds one value at a field path of the selected resources
//! (`api/internal/builtins/ValueAddTransformer.go`, `api/filters/valueadd/valueadd.go`).
//!
//! The value (trimmed; by default the base name of the kustomization's directory) is set at
//! each target's `fieldPath`, creating missing fields; an existing scalar is replaced, and
//! with `filePathPosition: i > 0` it is treated as a file path and the value inserted as its
//! `i`-th segment (a leading `/` kept; too large an `i` appends). The path is walked as
//! kyaml's `PathGetter` walks it with `LookupCreate` (`kyaml/yaml/fns.go`): mapping keys,
//! list elements by key (`containers/[name=app]`, created when missing), by scalar value
//! (`args/[=--verbose]`), by position (`args/0`; past the end: no change) and the last one
//! (`-`). The value is set as a plain scalar (`123` prints as a number). A `fieldPath` of
//! `metadata/namespace` goes through the namespace transformer instead (namespaced kinds
//! only, RoleBinding `default` subjects too). Targets come from `targets` and the `targets`
//! list of the file `targetFilePath`.
//!
//! The engine's tree keeps no scalar style: where kustomize keeps a quoted string quoted
//! (so a value reading as a number stays a string), the value here is resolved as plain.

use super::meta::{namespace, NamespaceOptions};
use super::select::Selector;
use crate::fieldspec::split_path;
use crate::fs::Loader;
use crate::resource::Resource;
use crate::yaml::parse::resolve_plain;
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

/// One part of a `fieldPath` as kyaml's `PathGetter` reads it (`kyaml/yaml/fns.go`).
#[derive(Debug, PartialEq)]
enum Part {
    /// A mapping key (`spec`, `app.k8s.io/name` written `app.k8s.io\/name`).
    Field(String),
    /// A sequence element by position (`0`).
    Index(usize),
    /// The last sequence element (`-`).
    Last,
    /// The first sequence element whose field `key` reads `value` (`[name=nginx]`), or, with
    /// an empty `key`, the first scalar element reading `value` (`[=-jar]`); appended when
    /// missing.
    Match { key: String, value: String },
}

/// Splits a `fieldPath` into parts: `/`-separated (`\/` keeps a slash in a key, as
/// `valueadd.Filter` joins them), each part trimmed and empty parts dropped (`cleanPath`).
///
/// # Errors
/// A negative index (`array index -1 cannot be negative`) or a bracketed part without `=`.
fn parse_path(path: &str) -> Result<Vec<Part>, Error> {
    split_path(path)
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            if let Some(i) = go_atoi(p) {
                return usize::try_from(i).map(Part::Index).map_err(|_| {
                    Error::field(path, format!("array index {i} cannot be negative"))
                });
            }
            if p == "-" {
                return Ok(Part::Last);
            }
            if let Some(inner) = p.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
                let Some((key, value)) = inner.split_once('=') else {
                    return Err(Error::field(
                        path,
                        format!(
                            "list path element must contain fieldName=fieldValue for element to match (`{p}` in fieldPath `{path}`)"
                        ),
                    ));
                };
                return Ok(Part::Match {
                    key: key.to_string(),
                    value: value.to_string(),
                });
            }
            Ok(Part::Field(p.to_string()))
        })
        .collect()
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits that fit 64 bits.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// kyaml's name for the kind of node a value is.
fn node_kind(v: &Value) -> &'static str {
    match v {
        Value::Map(_) => "MappingNode",
        Value::Seq(_) => "SequenceNode",
        _ => "ScalarNode",
    }
}

fn wrong_kind(path: &str, expected: &str, got: &Value) -> Error {
    Error::field(
        path,
        format!(
            "wrong node kind: expected {expected} but got {} at fieldPath `{path}`",
            node_kind(got)
        ),
    )
}

/// The text kyaml compares in list matches: a scalar's text, `""` for null, mappings and
/// sequences.
fn match_text(v: &Value) -> String {
    v.scalar_string().unwrap_or_default()
}

/// `yaml.LookupCreate(ScalarNode, path...)` then `FieldSetter`: walks `path` from `node`,
/// creating missing mapping keys (as a sequence when the next part indexes a list, a mapping
/// otherwise, an empty scalar at the end) and missing `[k=v]` elements, and sets the scalar it
/// ends at to `new(old text)`. A null on the way, or an index past the end of a list, ends
/// the walk without a change, as in kyaml.
///
/// # Errors
/// A part that does not fit the node it meets (a key on a sequence, an index on a mapping),
/// `-` on an empty list (kustomize panics there), or a path that ends at a mapping or
/// sequence.
fn add(
    node: &mut Value,
    path: &[Part],
    field_path: &str,
    new: &dyn Fn(&str) -> Value,
) -> Result<(), Error> {
    let Some((part, rest)) = path.split_first() else {
        return match node {
            Value::Map(_) | Value::Seq(_) => Err(wrong_kind(field_path, "ScalarNode", node)),
            old => {
                *old = new(&match_text(old));
                Ok(())
            }
        };
    };
    if node.is_null() {
        return Ok(());
    }
    let child = match part {
        Part::Field(name) => {
            let Value::Map(m) = node else {
                return Err(wrong_kind(field_path, "MappingNode", node));
            };
            m.entry(name.clone()).or_insert_with(|| match rest.first() {
                None => Value::String(String::new()),
                Some(Part::Index(_) | Part::Match { .. }) => Value::Seq(Vec::new()),
                Some(_) => Value::map(),
            })
        }
        Part::Index(i) => {
            let Value::Seq(items) = node else {
                return Err(wrong_kind(field_path, "SequenceNode", node));
            };
            match items.get_mut(*i) {
                Some(c) => c,
                None => return Ok(()),
            }
        }
        Part::Last => {
            let Value::Seq(items) = node else {
                return Err(wrong_kind(field_path, "SequenceNode", node));
            };
            items.last_mut().ok_or_else(|| {
                Error::field(
                    field_path,
                    format!("`-` (the last element) of an empty list in fieldPath `{field_path}`"),
                )
            })?
        }
        Part::Match { key, value } => {
            let Value::Seq(items) = node else {
                return Err(wrong_kind(field_path, "SequenceNode", node));
            };
            let found = items.iter().position(|it| {
                if key.is_empty() {
                    match_text(it) == *value
                } else {
                    it.get(key).is_some_and(|v| match_text(v) == *value)
                }
            });
            let i = match found {
                Some(i) => i,
                None => {
                    let scalar = resolve_plain(value);
                    items.push(if key.is_empty() {
                        scalar
                    } else {
                        let mut m = crate::yaml::Mapping::default();
                        m.insert(key.clone(), scalar);
                        Value::Map(m)
                    });
                    items.len() - 1
                }
            };
            &mut items[i]
        }
    };
    add(child, rest, field_path, new)
}

/// Runs one `ValueAddTransformer` configuration.
///
/// # Errors
/// No targets, an empty `fieldPath`, a negative `filePathPosition`, an unreadable
/// `targetFilePath`, a malformed path part (negative index, `[...]` without `=`), a part
/// that does not fit the node it meets, or a field path that ends at a mapping or sequence;
/// walk errors name the resource.
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
            let pos = t.file_path_position;
            let path = parse_path(&t.field_path)?;
            add(&mut r.obj, &path, &t.field_path, &|old: &str| {
                // The value is set as an untagged plain scalar (kyaml `FieldSetter`), so
                // `123` or `true` print as a number or a bool.
                resolve_plain(&if pos > 0 {
                    insert_path_part(old, (pos - 1) as usize, &value)
                } else {
                    value.clone()
                })
            })
            .map_err(|e| e.context(format!("ValueAddTransformer on {}", r.cur_id())))?;
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
