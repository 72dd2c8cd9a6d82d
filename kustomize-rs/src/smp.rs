//! Strategic merge patch as kyaml's `merge2` applies it (`kyaml/yaml/merge2/merge2.go`,
//! `kyaml/yaml/walk/{map,associative_sequence,nonassociative_sequence,scalar}.go`,
//! `merge2/smpdirective.go`), with kustomize's options (`ListIncreaseDirection: Prepend`,
//! no list inference, `api/filters/patchstrategicmerge`).
//!
//! - Maps merge key by key; a `null` in the patch deletes the key.
//! - Lists whose schema field has patch strategy `merge` are associative: elements pair up by
//!   the merge keys, pairs merge recursively; the result lists the patch's elements in patch
//!   order, then the target's other elements; an element with `$patch: delete` removes its
//!   match. Lists of scalars with strategy
//!   `merge` become a set union. Every other list (and every list of a kind the schema does
//!   not know) is replaced by the patch's.
//! - `$patch: replace|delete|merge` on a map or list (as a list element holding only the
//!   directive) replaces, deletes or merges it; the directive itself never reaches output.

use crate::openapi::{FieldInfo, Schema};
use crate::yaml::{Mapping, Value};
use crate::Error;

/// Result of merging a patch into a node.
enum Merged {
    /// The node is gone (deleted by `$patch: delete` or a null).
    Clear,
    /// The merged node.
    Node(Value),
}

/// Merges `patch` into `dest` (a whole resource). Returns `None` when the patch deletes it.
///
/// # Errors
/// For unknown `$patch` directives and for a patch value that is not a mapping where the
/// resource has one.
pub fn merge_resource(dest: &Value, patch: &Value) -> Result<Option<Value>, Error> {
    let api_version = dest.str_at(&["apiVersion"]).unwrap_or("");
    let kind = dest.str_at(&["kind"]).unwrap_or("");
    let schema = Schema::for_type(api_version, kind);
    match merge(Some(dest), Some(patch), schema.as_ref(), None)? {
        Merged::Clear => Ok(None),
        Merged::Node(v) => Ok(Some(v)),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Directive {
    Merge,
    Replace,
    Delete,
}

fn directive_of_map(m: &Mapping) -> Result<Directive, Error> {
    match m.get("$patch") {
        None => Ok(Directive::Merge),
        Some(v) => match v.scalar_string().as_deref() {
            Some("merge") => Ok(Directive::Merge),
            Some("replace") => Ok(Directive::Replace),
            Some("delete") => Ok(Directive::Delete),
            other => Err(Error::msg(format!(
                "unknown patch strategy '{}'",
                other.unwrap_or("")
            ))),
        },
    }
}

/// A list-level directive: an element that is a map holding only `$patch`.
fn directive_of_seq(items: &[Value]) -> Result<(Directive, Vec<Value>), Error> {
    let mut d = Directive::Merge;
    let mut rest = Vec::with_capacity(items.len());
    for it in items {
        if let Value::Map(m) = it {
            if m.len() == 1 && m.contains_key("$patch") {
                d = directive_of_map(m)?;
                continue;
            }
        }
        rest.push(it.clone());
    }
    Ok((d, rest))
}

/// Removes directives from a node that is added wholesale (no counterpart in the target).
fn clean(v: &Value) -> Result<Option<Value>, Error> {
    Ok(match v {
        Value::Null => None,
        Value::Map(m) => {
            if directive_of_map(m)? == Directive::Delete {
                return Ok(None);
            }
            let mut out = Mapping::new();
            for (k, v) in m {
                if k == "$patch" || k.starts_with("$setElementOrder/") || k == "$retainKeys" {
                    continue;
                }
                if let Some(c) = clean(v)? {
                    out.insert(k.clone(), c);
                }
            }
            Some(Value::Map(out))
        }
        Value::Seq(items) => {
            let (d, rest) = directive_of_seq(items)?;
            if d == Directive::Delete {
                return Ok(None);
            }
            let mut out = Vec::new();
            for it in &rest {
                match it {
                    Value::Map(m) if directive_of_map(m)? == Directive::Delete => {}
                    _ => {
                        if let Some(c) = clean(it)? {
                            out.push(c);
                        }
                    }
                }
            }
            Some(Value::Seq(out))
        }
        other => Some(other.clone()),
    })
}

fn merge(
    dest: Option<&Value>,
    patch: Option<&Value>,
    schema: Option<&Schema>,
    field: Option<&FieldInfo>,
) -> Result<Merged, Error> {
    let dest = dest.filter(|d| !d.is_null());
    match (dest, patch) {
        (None, None) => Ok(Merged::Clear),
        (Some(d), None) => Ok(Merged::Node(d.clone())),
        (_, Some(Value::Null)) => Ok(Merged::Clear),
        (None, Some(p)) => Ok(clean(p)?.map_or(Merged::Clear, Merged::Node)),
        (Some(Value::Map(dm)), Some(Value::Map(pm))) => merge_maps(dm, pm, schema),
        (Some(Value::Map(_)), Some(p)) => Err(Error::msg(format!(
            "wrong node kind: expected MappingNode but got {}",
            node_kind(p)
        ))),
        (Some(Value::Seq(ds)), Some(Value::Seq(ps))) => merge_seqs(ds, ps, schema, field),
        (Some(Value::Seq(_)), Some(p)) => Err(Error::msg(format!(
            "wrong node kind: expected SequenceNode but got {}",
            node_kind(p)
        ))),
        // Scalars (and type changes from a scalar): the patch wins.
        (Some(_), Some(p)) => Ok(clean(p)?.map_or(Merged::Clear, Merged::Node)),
    }
}

fn node_kind(v: &Value) -> &'static str {
    match v {
        Value::Map(_) => "MappingNode",
        Value::Seq(_) => "SequenceNode",
        _ => "ScalarNode",
    }
}

fn merge_maps(dm: &Mapping, pm: &Mapping, schema: Option<&Schema>) -> Result<Merged, Error> {
    match directive_of_map(pm)? {
        Directive::Delete => return Ok(Merged::Clear),
        Directive::Replace => {
            return Ok(clean(&Value::Map(pm.clone()))?.map_or(Merged::Clear, Merged::Node))
        }
        Directive::Merge => {}
    }
    let mut out = dm.clone();
    let mut keys: Vec<&String> = pm.keys().filter(|k| !k.starts_with('$')).collect();
    keys.sort();
    for k in keys {
        let fi = schema.and_then(|s| s.field(k));
        let sub = fi.as_ref().and_then(|f| f.schema.clone());
        match merge(
            dm.get(k.as_str()),
            pm.get(k.as_str()),
            sub.as_ref(),
            fi.as_ref(),
        )? {
            Merged::Clear => {
                out.shift_remove(k.as_str());
            }
            Merged::Node(v) => {
                out.insert(k.clone(), v);
            }
        }
    }
    Ok(Merged::Node(Value::Map(out)))
}

fn key_of(v: &Value, keys: &[String]) -> Option<Vec<String>> {
    let m = v.as_map()?;
    let vals: Vec<String> = keys
        .iter()
        .map(|k| m.get(k).and_then(Value::scalar_string).unwrap_or_default())
        .collect();
    if vals.iter().all(String::is_empty) {
        return None;
    }
    Some(vals)
}

fn merge_seqs(
    ds: &[Value],
    ps: &[Value],
    schema: Option<&Schema>,
    field: Option<&FieldInfo>,
) -> Result<Merged, Error> {
    let associative = field.is_some_and(|f| f.is_associative());
    let (directive, items) = directive_of_seq(ps)?;
    if !associative {
        return Ok(clean(&Value::Seq(ps.to_vec()))?.map_or(Merged::Clear, Merged::Node));
    }
    match directive {
        Directive::Delete => return Ok(Merged::Clear),
        Directive::Replace => {
            return Ok(clean(&Value::Seq(items))?.map_or(Merged::Clear, Merged::Node))
        }
        Directive::Merge => {}
    }
    let keys = field.map(|f| f.merge_keys.clone()).unwrap_or_default();
    if keys.is_empty()
        || items
            .iter()
            .chain(ds.iter())
            .all(|i| !matches!(i, Value::Map(_)))
    {
        // A set of scalars: target order, then new patch values.
        let mut out: Vec<Value> = ds.to_vec();
        for it in &items {
            if !out.contains(it) {
                out.push(it.clone());
            }
        }
        return Ok(Merged::Node(Value::Seq(out)));
    }
    // kyaml walks the element keys in patch order, then the target's remaining ones, merging
    // each pair; with `ListIncreaseDirection: Prepend` that walk order is the result order,
    // followed by target elements that have no key at all.
    let mut out: Vec<Value> = Vec::new();
    let mut used = vec![false; ds.len()];
    for p in &items {
        let Some(pk) = key_of(p, &keys) else {
            continue;
        };
        if out.iter().any(|o| key_of(o, &keys).as_ref() == Some(&pk)) {
            continue;
        }
        let pos = ds
            .iter()
            .position(|d| key_of(d, &keys).as_ref() == Some(&pk));
        let merged = match pos {
            Some(i) => {
                used[i] = true;
                merge(Some(&ds[i]), Some(p), schema, None)?
            }
            None => match clean(p)? {
                Some(v) => Merged::Node(v),
                None => Merged::Clear,
            },
        };
        if let Merged::Node(mut v) = merged {
            if let Value::Map(m) = &mut v {
                if m.is_empty() {
                    continue;
                }
                for (k, val) in keys.iter().zip(pk.iter()) {
                    if !m.contains_key(k) && !val.is_empty() {
                        m.insert(k.clone(), Value::String(val.clone()));
                    }
                }
            }
            out.push(v);
        }
    }
    for (i, d) in ds.iter().enumerate() {
        if !used[i] {
            out.push(d.clone());
        }
    }
    Ok(Merged::Node(Value::Seq(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_one;

    fn m(d: &str, p: &str) -> Option<Value> {
        merge_resource(&parse_one(d).unwrap(), &parse_one(p).unwrap()).unwrap()
    }

    const DEP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: a:1\n        args: [x, y]\n      - name: b\n        image: b:1\n";

    #[test]
    fn merges_containers_by_name_in_patch_order() {
        let out = m(DEP, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      containers:\n      - name: b\n        image: b:2\n      - name: c\n        image: c:1\n").unwrap();
        let c = out
            .get_path(&["spec", "template", "spec", "containers"])
            .unwrap()
            .as_seq()
            .unwrap();
        let names: Vec<_> = c.iter().map(|c| c.str_at(&["name"]).unwrap()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        assert_eq!(c[0].str_at(&["image"]), Some("b:2"));
    }

    #[test]
    fn deletes_with_directives_and_nulls() {
        let out = m(DEP, "kind: Deployment\napiVersion: apps/v1\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        $patch: delete\n      - name: b\n        image: null\n").unwrap();
        let c = out
            .get_path(&["spec", "template", "spec", "containers"])
            .unwrap()
            .as_seq()
            .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].get("image"), None);
        assert!(m(
            DEP,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n$patch: delete\n"
        )
        .is_none());
    }

    #[test]
    fn unknown_kinds_replace_lists() {
        let out = m(
            "apiVersion: x/v1\nkind: W\nspec:\n  l: [{name: a}, {name: b}]\n",
            "apiVersion: x/v1\nkind: W\nspec:\n  l: [{name: c}]\n",
        )
        .unwrap();
        assert_eq!(
            out.get_path(&["spec", "l"])
                .unwrap()
                .as_seq()
                .unwrap()
                .len(),
            1
        );
    }
}
