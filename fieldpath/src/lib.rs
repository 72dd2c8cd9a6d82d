//! Kubernetes server-side apply field paths and field sets, and the codec of
//! `metadata.managedFields[].fieldsV1`, after `sigs.k8s.io/structured-merge-diff/v4/fieldpath`
//! (`pathelement.go`, `path.go`, `set.go`, `serialize.go`, `serialize-pe.go`).
//!
//! The same small crate sits under both the project's Kubernetes API test server (which
//! computes and stores managed fields) and the agent (which reads them to tell drift it
//! owns from fields others own), the way structured-merge-diff sits under both
//! kube-apiserver and its clients. It has no schema knowledge: typing an object into a field
//! set (which lists are associative, which structs atomic) stays with the caller.
//!
//! A [`Path`] is a list of [`Pe`]; a [`FieldSet`] is an ordered set of paths. Associative
//! list items are named by their key fields as the JSON text of an object with sorted keys
//! (`{"name":"app"}`), set items by their value's JSON text.

use serde_json::{Map, Value as Json};
use std::collections::BTreeSet;

/// One step of a field path (structured-merge-diff `fieldpath/pathelement.go`
/// `PathElement`; list items by index, `i:`, are not produced by any schema this crate's users
/// type, so they have no variant and decode to nothing).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pe {
    /// A map field.
    Field(String),
    /// An associative-list item, by its key fields (JSON text of a sorted object).
    Key(String),
    /// A set-list item, by value (JSON text).
    Value(String),
}

/// The `fieldsV1` key of a path element (`serialize-pe.go` `SerializePathElement`).
fn pe_key(pe: &Pe) -> String {
    match pe {
        Pe::Field(f) => format!("f:{f}"),
        Pe::Key(k) => format!("k:{k}"),
        Pe::Value(v) => format!("v:{v}"),
    }
}

/// Encodes a field set as `fieldsV1` (structured-merge-diff `fieldpath/serialize.go`
/// `Set.ToJSON`): one nested object per path element keyed `f:<name>`, `k:<json>` or
/// `v:<json>` (`serialize-pe.go`), `{}` for a leaf, and `".": {}` beside the children of a
/// path that is itself a member.
pub fn to_fields_v1(set: &FieldSet) -> Json {
    let mut root = Map::new();
    for path in set {
        // A path that is itself in the set and has members in it too (a list item, a map
        // node an update created) is written `.` beside its members.
        let interior = set
            .range::<Path, _>((std::ops::Bound::Excluded(path), std::ops::Bound::Unbounded))
            .next()
            .is_some_and(|q| q.len() > path.len() && q[..path.len()] == path[..]);
        let mut cur = &mut root;
        for (i, pe) in path.iter().enumerate() {
            let e = cur
                .entry(pe_key(pe))
                .or_insert_with(|| Json::Object(Map::new()));
            let Json::Object(m) = e else { break };
            if i + 1 == path.len() && interior {
                m.entry(".").or_insert_with(|| Json::Object(Map::new()));
            }
            cur = m;
        }
    }
    Json::Object(root)
}

/// Decodes `fieldsV1` (structured-merge-diff `fieldpath/serialize.go` `Set.FromJSON`): the
/// inverse of [`to_fields_v1`]. Keys with another prefix (`i:`) and non-object values are
/// skipped, so a malformed entry from a server yields a smaller set, never a panic.
pub fn from_fields_v1(v: &Json) -> FieldSet {
    fn go(v: &Json, path: &mut Path, out: &mut FieldSet) {
        let Json::Object(m) = v else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, c) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let pe = if let Some(f) = k.strip_prefix("f:") {
                Pe::Field(f.to_string())
            } else if let Some(x) = k.strip_prefix("k:") {
                Pe::Key(x.to_string())
            } else if let Some(x) = k.strip_prefix("v:") {
                Pe::Value(x.to_string())
            } else {
                continue;
            };
            path.push(pe);
            go(c, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// Renders a path like the API server's conflict messages (`.spec.replicas`,
/// `.spec.template.spec.containers[name="app"].image`).
pub fn path_string(path: &[Pe]) -> String {
    let mut s = String::new();
    for pe in path {
        match pe {
            Pe::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Pe::Key(k) => {
                let m: Map<String, Json> = serde_json::from_str(k).unwrap_or_default();
                let inner: Vec<String> = m.iter().map(|(a, b)| format!("{a}={b}")).collect();
                s.push_str(&format!("[{}]", inner.join(",")));
            }
            Pe::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

/// A field path.
pub type Path = Vec<Pe>;
/// A set of owned paths (leaves and list-item markers), ordered as structured-merge-diff
/// orders path elements within one kind (fields, then keys, then values).
pub type FieldSet = BTreeSet<Path>;

/// The value at a path (`None` when absent): fields of objects, keyed items of lists (every
/// key field equal), set items by value.
pub fn value_at<'a>(obj: &'a Json, path: &[Pe]) -> Option<&'a Json> {
    let mut cur = obj;
    for pe in path {
        cur = match (pe, cur) {
            (Pe::Field(f), Json::Object(m)) => m.get(f)?,
            (Pe::Key(k), Json::Array(items)) => {
                let want: Map<String, Json> = serde_json::from_str(k).ok()?;
                items
                    .iter()
                    .find(|it| want.iter().all(|(kk, vv)| it.get(kk) == Some(vv)))?
            }
            (Pe::Value(v), Json::Array(items)) => {
                let want: Json = serde_json::from_str(v).ok()?;
                items.iter().find(|it| **it == want)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// Removes the value at a path, pruning maps left empty by the removal, and the list an
/// item's removal emptied (kube-apiserver drops `env` once its last applied variable goes).
pub fn remove_at(obj: &mut Json, path: &[Pe]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    if let Some(p) = node_mut(obj, parent) {
        match (last, p) {
            (Pe::Field(f), Json::Object(m)) => {
                m.shift_remove(f);
            }
            (Pe::Key(k), Json::Array(items)) => {
                if let Ok(want) = serde_json::from_str::<Map<String, Json>>(k) {
                    items.retain(|it| !want.iter().all(|(kk, vv)| it.get(kk) == Some(vv)));
                }
            }
            (Pe::Value(v), Json::Array(items)) => {
                if let Ok(want) = serde_json::from_str::<Json>(v) {
                    items.retain(|it| *it != want);
                }
            }
            _ => {}
        }
    }
    for depth in (1..path.len()).rev() {
        let prefix = &path[..depth];
        let empty = match value_at(obj, prefix) {
            Some(Json::Object(m)) => m.is_empty(),
            Some(Json::Array(a)) => a.is_empty() && depth + 1 == path.len(),
            _ => false,
        };
        let Some((Pe::Field(f), up)) = prefix.split_last() else {
            break;
        };
        if !empty {
            break;
        }
        if let Some(Json::Object(m)) = node_mut(obj, up) {
            m.shift_remove(f);
        }
    }
}

/// The node at `path` (fields and keyed items), mutably.
fn node_mut<'a>(obj: &'a mut Json, path: &[Pe]) -> Option<&'a mut Json> {
    let mut cur = obj;
    for pe in path {
        cur = match (pe, cur) {
            (Pe::Field(f), Json::Object(m)) => m.get_mut(f)?,
            (Pe::Key(k), Json::Array(items)) => {
                let want: Map<String, Json> = serde_json::from_str(k).ok()?;
                items
                    .iter_mut()
                    .find(|it| want.iter().all(|(kk, vv)| it.get(kk) == Some(vv)))?
            }
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> Pe {
        Pe::Field(s.into())
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_interior_members() {
        let key = Pe::Key(r#"{"name":"app"}"#.into());
        let set: FieldSet = [
            vec![f("metadata"), f("labels")],
            vec![f("metadata"), f("labels"), f("app")],
            vec![f("spec"), f("containers"), key.clone()],
            vec![f("spec"), f("containers"), key.clone(), f("image")],
            vec![f("spec"), f("finalizers"), Pe::Value("\"x\"".into())],
        ]
        .into_iter()
        .collect();
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}}},
                    "f:finalizers": {"v:\"x\"": {}}
                }
            })
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn from_fields_v1_skips_unknown_prefixes_and_non_objects() {
        let set = from_fields_v1(&json!({"f:a": {}, "i:0": {}, "f:b": 3, "x": {}}));
        assert_eq!(set, [vec![f("a")]].into_iter().collect::<FieldSet>());
        assert!(from_fields_v1(&json!("not an object")).is_empty());
    }

    #[test]
    fn value_at_follows_fields_keys_and_values() {
        let obj = json!({"spec": {"containers": [{"name": "a", "image": "i1"}, {"name": "b", "image": "i2"}],
                                   "finalizers": ["x", "y"]}});
        let k = Pe::Key(r#"{"name":"b"}"#.into());
        assert_eq!(
            value_at(&obj, &[f("spec"), f("containers"), k, f("image")]),
            Some(&json!("i2"))
        );
        assert_eq!(
            value_at(
                &obj,
                &[f("spec"), f("finalizers"), Pe::Value("\"y\"".into())]
            ),
            Some(&json!("y"))
        );
        assert_eq!(value_at(&obj, &[f("spec"), f("nope")]), None);
        assert_eq!(
            value_at(&obj, &[f("spec"), f("containers"), Pe::Key("{bad".into())]),
            None
        );
    }

    #[test]
    fn remove_at_prunes_what_it_emptied() {
        let mut obj =
            json!({"spec": {"template": {"env": [{"name": "A", "value": "1"}]}, "replicas": 2}});
        remove_at(
            &mut obj,
            &[
                f("spec"),
                f("template"),
                f("env"),
                Pe::Key(r#"{"name":"A"}"#.into()),
            ],
        );
        assert_eq!(obj, json!({"spec": {"replicas": 2}}));
        remove_at(&mut obj, &[f("spec"), f("replicas")]);
        assert_eq!(obj, json!({}));
    }

    #[test]
    fn path_string_is_the_api_servers_conflict_notation() {
        let p = vec![
            f("spec"),
            f("containers"),
            Pe::Key(r#"{"name":"app"}"#.into()),
            f("image"),
        ];
        assert_eq!(path_string(&p), r#".spec.containers[name="app"].image"#);
        assert_eq!(
            path_string(&[f("x"), Pe::Value("\"v\"".into())]),
            r#".x[="v"]"#
        );
    }
}
