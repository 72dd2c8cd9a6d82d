//! `patchesStrategicMerge`, `patches` and `patchesJson6902`
//! (`api/internal/builtins/{PatchStrategicMergeTransformer,PatchTransformer,PatchJson6902Transformer}.go`,
//! `api/resource/resource.go` `ApplySmPatch`, `api/filters/patchjson6902`).

use super::select::Selector;
use crate::fs::Loader;
use crate::kustfile::PatchArgs;
use crate::resource::Resource;
use crate::smp;
use crate::yaml::{parse_documents, Value};
use crate::Error;

/// A loaded patch: strategic-merge documents, or a list of JSON 6902 operations.
#[derive(Clone, Debug)]
pub enum Patch {
    /// Strategic merge patches (whole-object shaped), with name/kind change permissions.
    Strategic(Vec<Value>, bool, bool),
    /// JSON patch operations.
    Json(Vec<Value>),
}

/// Parses patch text, deciding whether it is strategic-merge or JSON 6902: a YAML/JSON
/// sequence is a JSON patch; mappings are strategic merge patches.
///
/// # Errors
/// Malformed YAML, or documents that are neither.
pub fn parse_patch(text: &str, origin: &str) -> Result<Patch, Error> {
    let docs = parse_documents(text).map_err(|e| {
        Error::patch(format!(
            "unable to parse SM or JSON patch from {origin}: {e}"
        ))
    })?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    match docs.as_slice() {
        [Value::Seq(ops)] => Ok(Patch::Json(ops.clone())),
        _ if docs.iter().all(|d| matches!(d, Value::Map(_))) => {
            Ok(Patch::Strategic(docs, false, false))
        }
        _ => Err(Error::patch(format!(
            "unable to parse SM or JSON patch from {origin}"
        ))),
    }
}

fn load_text(ldr: &Loader, args: &PatchArgs) -> Result<(String, String), Error> {
    match (&args.path, &args.patch) {
        (Some(_), Some(_)) => Err(Error::patch("patch and path can't be set at the same time")),
        (None, None) => Err(Error::patch("must specify one of patch and path")),
        (Some(p), None) => Ok((ldr.load_string(p)?, p.clone())),
        (None, Some(t)) => Ok((t.trim().to_string(), "inline patch".to_string())),
    }
}

/// Applies one strategic merge patch document to a resource, as `Resource.ApplySmPatch`
/// does: name, kind and namespace are kept unless the patch may change them. Returns false
/// when the patch deleted the resource.
fn apply_sm(
    r: &mut Resource,
    patch: &Value,
    allow_name: bool,
    allow_kind: bool,
) -> Result<bool, Error> {
    let (n, ns, k) = (
        r.name().to_string(),
        r.namespace().to_string(),
        r.kind().to_string(),
    );
    if allow_name || allow_kind {
        r.store_previous_id();
    }
    let mut patch = patch.clone();
    // `ApplySmPatch` on a selection rewrites the patch's GVK to the target's, keeping its kind.
    if let Some(m) = patch.as_map_mut() {
        m.insert(
            "apiVersion".into(),
            Value::String(r.api_version().to_string()),
        );
    }
    match smp::merge_resource(&r.obj, &patch)? {
        None => Ok(false),
        Some(v) => {
            let empty = v.as_map().is_none_or(|m| m.is_empty());
            r.obj = v;
            if empty {
                return Ok(false);
            }
            if !allow_kind {
                if let Some(m) = r.obj.as_map_mut() {
                    m.insert("kind".into(), Value::String(k));
                }
            }
            if !allow_name {
                r.set_name(&n);
            }
            r.set_namespace(&ns);
            Ok(true)
        }
    }
}

fn patch_id(p: &Value) -> crate::resource::ResId {
    Resource::new(p.clone()).cur_id()
}

/// Applies strategic merge patches matched to their target by id (current or previous).
fn apply_sm_by_id(
    resources: &mut Vec<Resource>,
    patches: &[Value],
    allow_name: bool,
    allow_kind: bool,
) -> Result<(), Error> {
    for p in patches {
        let id = patch_id(p);
        let matches: Vec<usize> = resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.prev_ids().iter().any(|x| x.equals(&id)))
            .map(|(i, _)| i)
            .collect();
        let i = match matches.as_slice() {
            [i] => *i,
            [] => {
                return Err(Error::patch(format!(
                    "no matches for Id {id}; failed to find unique target for patch {id}"
                )))
            }
            _ => {
                return Err(Error::patch(format!(
                    "multiple matches for Id {id}; failed to find unique target for patch {id}"
                )))
            }
        };
        if !apply_sm(&mut resources[i], p, allow_name, allow_kind)? {
            resources.remove(i);
        }
    }
    Ok(())
}

/// `patchesStrategicMerge`: each entry is an inline patch or a file of patches.
///
/// # Errors
/// Unreadable files, unmatched targets, merge errors.
pub fn patches_strategic_merge(
    ldr: &Loader,
    entries: &[String],
    resources: &mut Vec<Resource>,
) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut all = Vec::new();
    for e in entries {
        let inline = parse_documents(e)
            .ok()
            .filter(|d| d.iter().any(|x| matches!(x, Value::Map(_))));
        let docs = match inline {
            Some(d) => d,
            None => {
                let text = ldr.load_string(e)?;
                parse_documents(&text).map_err(|err| Error::patch(format!("{e}: {err}")))?
            }
        };
        for d in docs {
            match d {
                Value::Null => {}
                Value::Map(_) => all.push(d),
                _ => {
                    return Err(Error::patch(format!(
                        "{e}: a strategic merge patch must be a mapping"
                    )))
                }
            }
        }
    }
    if all.is_empty() {
        return Err(Error::patch(format!(
            "patch appears to be empty; files={entries:?}"
        )));
    }
    apply_sm_by_id(resources, &all, false, false)
}

/// One `patches` entry.
///
/// # Errors
/// As above, plus a JSON patch without a target.
pub fn patch_entry(
    ldr: &Loader,
    args: &PatchArgs,
    resources: &mut Vec<Resource>,
) -> Result<(), Error> {
    let (text, origin) = load_text(ldr, args)?;
    let allow_name = args
        .options
        .iter()
        .any(|(k, v)| k == "allowNameChange" && *v);
    let allow_kind = args
        .options
        .iter()
        .any(|(k, v)| k == "allowKindChange" && *v);
    match parse_patch(&text, &origin)? {
        Patch::Strategic(docs, ..) => match &args.target {
            None => apply_sm_by_id(resources, &docs, allow_name, allow_kind),
            Some(t) => {
                if docs.len() > 1 {
                    return Err(Error::patch(format!(
                        "Multiple Strategic-Merge Patches in one `patches` entry is not allowed to set `patches.target` field: {origin}"
                    )));
                }
                let Some(doc) = docs.first() else {
                    return Ok(());
                };
                let sel = Selector::from_value(t)?;
                let mut out = Vec::with_capacity(resources.len());
                for mut r in resources.drain(..) {
                    if sel.matches(&r) {
                        let mut p = doc.clone();
                        if let Some(m) = p.as_map_mut() {
                            if !m.contains_key("kind") {
                                m.insert("kind".into(), Value::String(r.kind().to_string()));
                            }
                        }
                        if apply_sm(&mut r, &p, allow_name, allow_kind)
                            .map_err(|e| e.context(format!("unable to apply patch {origin}")))?
                        {
                            out.push(r);
                        }
                    } else {
                        out.push(r);
                    }
                }
                *resources = out;
                Ok(())
            }
        },
        Patch::Json(ops) => {
            let Some(t) = &args.target else {
                return Err(Error::patch(format!(
                    "must specify a target for JSON patch {origin}"
                )));
            };
            let sel = Selector::from_value(t)?;
            for r in resources.iter_mut().filter(|r| sel.matches(r)) {
                r.store_previous_id();
                apply_json_patch(&mut r.obj, &ops).map_err(|e| {
                    e.context(format!("applying JSON patch {origin} to {}", r.cur_id()))
                })?;
            }
            Ok(())
        }
    }
}

/// One `patchesJson6902` entry (a target with a name is required).
///
/// # Errors
/// Missing target, unreadable patch, failing operations.
pub fn patch_json6902_entry(
    ldr: &Loader,
    args: &PatchArgs,
    resources: &mut [Resource],
) -> Result<(), Error> {
    let Some(t) = &args.target else {
        return Err(Error::patch("must specify a target for patchesJson6902"));
    };
    if t.get("name")
        .and_then(Value::scalar_string)
        .unwrap_or_default()
        .is_empty()
    {
        return Err(Error::patch("must specify the target name"));
    }
    let (text, origin) = load_text(ldr, args)?;
    let ops = match parse_patch(&text, &origin)? {
        Patch::Json(ops) => ops,
        Patch::Strategic(..) => {
            return Err(Error::patch(format!(
                "{origin}: expected a JSON 6902 patch (a list of operations)"
            )))
        }
    };
    let sel = Selector::from_value(t)?;
    for r in resources.iter_mut().filter(|r| sel.matches(r)) {
        apply_json_patch(&mut r.obj, &ops)
            .map_err(|e| e.context(format!("applying JSON patch {origin} to {}", r.cur_id())))?;
    }
    Ok(())
}

fn pointer(path: &str) -> Result<Vec<String>, Error> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or_else(|| {
        Error::json_patch(path, format!("JSON pointer '{path}' must start with '/'"))
    })?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Map(m) => m.get_mut(seg)?,
            Value::Seq(s) => s.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn op_add(doc: &mut Value, path: &[String], value: Value, raw: &str) -> Result<(), Error> {
    let Some((last, parent)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    let missing = || {
        Error::json_patch(
            raw,
            format!("add operation does not apply: doc is missing path: \"{raw}\": missing value"),
        )
    };
    match get_mut(doc, parent).ok_or_else(missing)? {
        Value::Map(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Seq(s) => {
            let idx = if last == "-" {
                s.len()
            } else {
                last.parse::<usize>().map_err(|_| missing())?
            };
            if idx > s.len() {
                return Err(Error::json_patch(
                    raw,
                    format!(
                    "add operation does not apply: index {idx} out of bounds for path \"{raw}\""
                ),
                ));
            }
            s.insert(idx, value);
            Ok(())
        }
        _ => Err(missing()),
    }
}

fn op_remove(doc: &mut Value, path: &[String], raw: &str) -> Result<Value, Error> {
    let missing = || {
        Error::json_patch(
            raw,
            format!(
                "remove operation does not apply: doc is missing path: \"{raw}\": missing value"
            ),
        )
    };
    let (last, parent) = path.split_last().ok_or_else(missing)?;
    match get_mut(doc, parent).ok_or_else(missing)? {
        Value::Map(m) => m.shift_remove(last).ok_or_else(missing),
        Value::Seq(s) => {
            let idx = last.parse::<usize>().map_err(|_| missing())?;
            if idx >= s.len() {
                return Err(missing());
            }
            Ok(s.remove(idx))
        }
        _ => Err(missing()),
    }
}

/// Applies RFC 6902 operations (`add`, `remove`, `replace`, `move`, `copy`, `test`).
///
/// # Errors
/// Malformed operations, missing paths, failed tests.
pub fn apply_json_patch(doc: &mut Value, ops: &[Value]) -> Result<(), Error> {
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::scalar_string)
            .unwrap_or_default();
        let raw = op
            .get("path")
            .and_then(Value::scalar_string)
            .unwrap_or_default();
        let path = pointer(&raw)?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                Error::json_patch(&raw, format!("{kind} operation on \"{raw}\" has no value"))
            })
        };
        match kind.as_str() {
            "add" => op_add(doc, &path, value()?, &raw)?,
            "remove" => {
                op_remove(doc, &path, &raw)?;
            }
            "replace" => {
                let v = value()?;
                // evanphx/json-patch v4 (what kustomize links): a missing key of an existing
                // object is set, as `partialDoc.get` reports no error for it; a missing
                // parent or array index is an error.
                let missing = || {
                    Error::json_patch(&raw, format!("replace operation does not apply: doc is missing key: \"{raw}\": missing value"))
                };
                match path.split_last() {
                    Some((last, parent)) => match get_mut(doc, parent).ok_or_else(missing)? {
                        Value::Map(m) => {
                            m.insert(last.clone(), v);
                        }
                        other => {
                            *get_mut(other, std::slice::from_ref(last)).ok_or_else(missing)? = v
                        }
                    },
                    None => *doc = v,
                }
            }
            "move" | "copy" => {
                let from_raw = op
                    .get("from")
                    .and_then(Value::scalar_string)
                    .unwrap_or_default();
                let from = pointer(&from_raw)?;
                let v = if kind == "move" {
                    op_remove(doc, &from, &from_raw)?
                } else {
                    get_mut(doc, &from)
                        .cloned()
                        .ok_or_else(|| Error::json_patch(&from_raw, format!("copy operation does not apply: doc is missing from path: \"{from_raw}\"")))?
                };
                op_add(doc, &path, v, &raw)?;
            }
            "test" => {
                let v = value()?;
                if get_mut(doc, &path).map(|x| &*x) != Some(&v) {
                    return Err(Error::json_patch(
                        &raw,
                        format!("testing value \"{raw}\" failed: test failed"),
                    ));
                }
            }
            other => {
                return Err(Error::json_patch(
                    &raw,
                    format!("unexpected kind of JSON patch operation: '{other}'"),
                ))
            }
        }
    }
    Ok(())
}
