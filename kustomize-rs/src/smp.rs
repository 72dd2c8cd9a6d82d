//! Strategic merge patch as kyaml's `merge2` applies it (`kyaml/yaml/merge2/merge2.go`,
//! `kyaml/yaml/walk/{map,associative_sequence,nonassociative_sequence,scalar}.go`,
//! `merge2/smpdirective.go`), with kustomize's options (`ListIncreaseDirection: Prepend`,
//! no list inference, `api/filters/patchstrategicmerge`).
//!
//! - Maps merge key by key; a `null` in the patch deletes the key.
//! - Lists whose schema field has patch strategy `merge` are associative: elements pair up by
//!   the merge keys, pairs merge recursively, in kyaml's order (`merge_associative`); an
//!   element with `$patch: delete` removes its match. Lists of scalars with strategy
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
            other => Err(Error::patch(format!(
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
            let mut out = Mapping::default();
            for (k, v) in m {
                if k == "$patch" {
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
        (Some(Value::Map(_)), Some(p)) => Err(Error::patch(format!(
            "wrong node kind: expected MappingNode but got {}",
            node_kind(p)
        ))),
        (Some(Value::Seq(ds)), Some(Value::Seq(ps))) => merge_seqs(ds, ps, schema, field),
        (Some(Value::Seq(_)), Some(p)) => Err(Error::patch(format!(
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
    // Only `$patch` is a directive to kyaml's merge (`kyaml/yaml/merge2`); other `$` keys of
    // the apimachinery dialect (`$retainKeys`, `$setElementOrder/...`) merge as plain fields,
    // so they reach the output as kustomize prints them.
    let mut keys: Vec<&String> = pm.keys().filter(|k| k.as_str() != "$patch").collect();
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
    merge_associative(ds, &items, &keys, schema)
}

/// The text kyaml compares for a field of a list element (`""` when the field is missing,
/// null or not a scalar).
fn field_text(v: &Value, key: &str) -> Option<String> {
    let f = v.as_map()?.get(key)?;
    Some(match f {
        Value::Null | Value::Map(_) | Value::Seq(_) => String::new(),
        other => other.scalar_string().unwrap_or_default(),
    })
}

/// kyaml `ElementValuesList`: an element's values for the keys.
fn values_of(v: &Value, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| field_text(v, k).unwrap_or_default())
        .collect()
}

/// kyaml `validateKeys`: the keys some element has a value for (all keys when none has), and
/// this element's values for them.
fn validate_keys(
    values_list: &[Vec<String>],
    values: &[String],
    keys: &[String],
) -> (Vec<String>, Vec<String>) {
    let valid: Vec<bool> = (0..keys.len())
        .map(|i| {
            values_list
                .iter()
                .any(|v| v.get(i).is_some_and(|x| !x.is_empty()))
        })
        .collect();
    if !valid.iter().any(|&b| b) {
        return (keys.to_vec(), values.to_vec());
    }
    let vk = keys
        .iter()
        .zip(&valid)
        .filter(|(_, &ok)| ok)
        .map(|(k, _)| k.clone())
        .collect();
    let vv = values
        .iter()
        .enumerate()
        .filter(|(i, v)| !v.is_empty() || valid.get(*i).copied().unwrap_or(false))
        .map(|(_, v)| v.clone())
        .collect();
    (vk, vv)
}

/// kyaml `mergeValues`: value lists that agree wherever both have a value become one.
fn merge_values(list: &mut [Vec<String>]) {
    for i in 0..list.len() {
        for j in 0..list.len() {
            let (a, b) = (&list[i], &list[j]);
            if a.len() != b.len() {
                continue;
            }
            let mut common = false;
            let mut res = Vec::with_capacity(a.len());
            let mut ok = true;
            for (x, y) in a.iter().zip(b) {
                if x == y {
                    common = true;
                    res.push(x.clone());
                } else if !x.is_empty() && !y.is_empty() {
                    ok = false;
                    break;
                } else if !x.is_empty() {
                    res.push(x.clone());
                } else {
                    res.push(y.clone());
                }
            }
            if ok && common {
                list[i] = res.clone();
                list[j] = res;
            }
        }
    }
}

/// kyaml `ElementMatcher` (`ElementList`): the first mapping element whose keys hold exactly
/// the values.
fn element_list(items: &[Value], keys: &[String], values: &[String]) -> Option<usize> {
    if keys.len() != values.len() {
        return None;
    }
    items.iter().position(|it| {
        matches!(it, Value::Map(_))
            && keys
                .iter()
                .zip(values)
                .all(|(k, v)| field_text(it, k).as_deref() == Some(v.as_str()))
    })
}

/// kyaml `ElementSetter`: drops null and empty elements, replaces (or with `None`, removes)
/// every element matching the key/value pairs (a key with an empty value matches any value;
/// with fewer values than keys the extra keys are not checked; with no values nothing
/// matches and nothing is kept), and appends `element` when nothing matched.
fn element_setter(
    list: &mut Vec<Value>,
    element: Option<&Value>,
    keys: &[String],
    values: &[String],
) {
    let mapping_setter = keys.first().is_some_and(|k| !k.is_empty())
        && values.first().is_some_and(|v| !v.is_empty());
    let mut out = Vec::with_capacity(list.len() + 1);
    let mut found_any = false;
    for it in list.drain(..) {
        match &it {
            Value::Null => continue,
            Value::Map(m) if m.is_empty() => continue,
            Value::Map(_) => {}
            _ if mapping_setter => {
                out.push(it);
                continue;
            }
            _ => {}
        }
        let mut last: Option<bool> = None;
        let mut found = true;
        for (j, k) in keys.iter().enumerate() {
            if let Some(v) = values.get(j) {
                last = Some(match field_text(&it, k) {
                    Some(t) => v.is_empty() || t == *v,
                    None => false,
                });
            }
            if last != Some(true) {
                found = false;
                break;
            }
        }
        if !found {
            if !values.is_empty() {
                out.push(it);
            }
            continue;
        }
        found_any = true;
        if let Some(e) = element {
            out.push(e.clone());
        }
    }
    if let (false, Some(e)) = (found_any, element) {
        out.push(e.clone());
    }
    *list = out;
}

/// kyaml `appendListNode` with the target as `src` (Prepend): each target element goes in by
/// its key values; with several keys it is removed and appended (it moves to the end), with
/// one key it replaces its match in place; a missing key appends it as it is.
fn append_list_node(dst: &mut Vec<Value>, src: &[Value], keys: &[String]) {
    for elem in src {
        let mut v = Vec::new();
        for k in keys {
            match field_text(elem, k) {
                Some(t) => v.push(t),
                None => dst.push(elem.clone()),
            }
        }
        if keys.len() > 1 {
            element_setter(dst, None, keys, &v);
        }
        element_setter(dst, Some(elem), keys, &v);
    }
}

/// An associative list merge as kyaml's walker does it with `ListIncreaseDirection: Prepend`
/// (`kyaml/yaml/walk/associative_sequence.go` `setAssociativeSequenceElements`): the key
/// values of the patch's elements, then of the target's, each pair merged; the merged
/// elements in that order, then the target's elements put back by key (so a Service port
/// matched on `port` alone moves behind new `port`+`protocol` ones, and a patch element whose
/// `protocol` the target element lacks is dropped, as kustomize does).
fn merge_associative(
    ds: &[Value],
    items: &[Value],
    keys: &[String],
    schema: Option<&Schema>,
) -> Result<Merged, Error> {
    let mut dest: Vec<Value> = ds.to_vec();
    let mut values_list: Vec<Vec<String>> = Vec::new();
    for e in items.iter().chain(ds.iter()) {
        let v = values_of(e, keys);
        if !v.is_empty() && !values_list.contains(&v) {
            values_list.push(v);
        }
    }
    if keys.len() > 1 {
        merge_values(&mut values_list);
    }
    let mut added: Vec<Value> = Vec::new();
    let mut valid_keys = Vec::new();
    for values in &values_list {
        let valid_values;
        (valid_keys, valid_values) = validate_keys(&values_list, values, keys);
        let (wk, wv) = validate_keys(
            std::slice::from_ref(&valid_values),
            &valid_values,
            &valid_keys,
        );
        let di = element_list(&dest, &wk, &wv);
        let pi = element_list(items, &wk, &wv);
        let merged = merge(di.map(|i| &dest[i]), pi.map(|i| &items[i]), schema, None)?;
        let mut v = match merged {
            Merged::Node(v) if !matches!(&v, Value::Map(m) if m.is_empty()) => v,
            _ => {
                element_setter(&mut dest, None, &valid_keys, &valid_values);
                continue;
            }
        };
        if let Value::Map(m) = &mut v {
            for (k, val) in valid_keys.iter().zip(&valid_values) {
                if !m.contains_key(k) && !val.is_empty() {
                    m.insert(k.clone(), crate::yaml::parse::resolve_plain(val));
                }
            }
        }
        if let Some(i) = di {
            // kyaml merges into the target's element in place.
            dest[i] = v.clone();
        }
        element_setter(&mut added, Some(&v), &valid_keys, &valid_values);
    }
    if values_list.is_empty() {
        return Ok(Merged::Node(Value::Seq(dest)));
    }
    append_list_node(&mut added, &dest, &valid_keys);
    Ok(Merged::Node(Value::Seq(added)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_one;

    fn m(d: &str, p: &str) -> Option<Value> {
        merge_resource(&parse_one(d).unwrap(), &parse_one(p).unwrap()).unwrap()
    }

    const DEP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: a:1\n        args: [x, y]\n      - name: b\n        image: b:1\n";

    /// Port numbers of a merged Service, in order, with names where set.
    fn ports(patch_ports: &str) -> Vec<String> {
        let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n    targetPort: 80\n  - port: 81\n    name: b\n";
        let patch = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n{patch_ports}"
        );
        let out = m(svc, &patch).unwrap();
        let Some(Value::Seq(items)) = out.get_path(&["spec", "ports"]) else {
            panic!("no ports: {out:?}")
        };
        items
            .iter()
            .map(|p| {
                let port = p
                    .get("port")
                    .and_then(Value::scalar_string)
                    .unwrap_or_default();
                match p.get("name").and_then(Value::scalar_string) {
                    Some(n) => format!("{port}/{n}"),
                    None => port,
                }
            })
            .collect()
    }

    /// Outcomes recorded from `kubectl kustomize` v5.8.1 (ports merge on `port`+`protocol`).
    #[test]
    fn service_ports_merge_like_kyaml() {
        // A new port with a protocol goes first; one keyed on `port` alone merges in place.
        assert_eq!(
            ports("  - port: 53\n    protocol: UDP\n"),
            ["53", "80", "81/b"]
        );
        assert_eq!(ports("  - port: 80\n    name: http\n"), ["80/http", "81/b"]);
        assert_eq!(
            ports("  - port: 80\n    name: http\n  - port: 53\n    protocol: UDP\n"),
            ["53", "80/http", "81/b"]
        );
        assert_eq!(
            ports("  - port: 80\n    name: http\n  - port: 53\n"),
            ["80/http", "53", "81/b"]
        );
        // The target's port 81 lacks the protocol the patch names: the patch element is lost.
        assert_eq!(
            ports("  - port: 81\n    protocol: TCP\n    name: bb\n"),
            ["80", "81/b"]
        );
    }

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
