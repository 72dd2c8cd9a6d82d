//! `replacements`: copy a field of one resource into fields of others
//! (`api/filters/replacement/replacement.go`, kyaml `PathMatcher` for dotted field paths with
//! `[key=value]` element selectors, indices and `*`).

use crate::fs::Loader;
use crate::resource::{Gvk, Resource};
use crate::yaml::parse::resolve_plain;
use crate::yaml::{parse_one, Value};
use crate::Error;
use regex::Regex;

/// Splits a dotted field path (`api/internal/utils/pathsplitter.go` `SmarterPathSplitter`):
/// `\.` escapes a dot; a `[...]` step that spans dots stays whole when it is a list-entry
/// selector (`[a.b=c]`) and loses its brackets when it is a map key
/// (`annotations.[cert-manager.io/inject-ca-from]`). Empty and blank steps are dropped, so
/// `.metadata.name` is `metadata.name` (kyaml `PathMatcher`/`PathGetter` clean their paths:
/// `cleanPath` in `kyaml/yaml/match.go`).
pub fn split_dotted(path: &str) -> Vec<String> {
    // PathSplitter: split on dots, a trailing backslash escapes the dot.
    let mut plain: Vec<String> = Vec::new();
    for (i, part) in path.split('.').enumerate() {
        match plain.last_mut() {
            Some(last) if i > 0 && last.ends_with('\\') => {
                last.pop();
                last.push('.');
                last.push_str(part);
            }
            _ => plain.push(part.to_string()),
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < plain.len() {
        let elem = &plain[i];
        if elem.starts_with('[') && !elem.ends_with(']') {
            let mut joined = elem.clone();
            while i + 1 < plain.len() {
                i += 1;
                joined.push('.');
                joined.push_str(&plain[i]);
                if plain[i].ends_with(']') {
                    break;
                }
            }
            if joined.contains('=') {
                out.push(joined);
            } else {
                out.push(joined.trim_matches(|c| c == '[' || c == ']').to_string());
            }
        } else {
            out.push(elem.clone());
        }
        i += 1;
    }
    // `a[0]` and `a[k=v]` written without a dot are two steps.
    let mut res = Vec::new();
    for p in out {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        match p.find('[') {
            Some(i) if i > 0 && p.ends_with(']') => {
                res.push(p[..i].to_string());
                res.push(p[i..].to_string());
            }
            _ => res.push(p.to_string()),
        }
    }
    res
}

/// Finds the nodes at a dotted path, creating missing ones when `create` is given (the kind
/// of the value to be written: a scalar, mapping or sequence).
pub fn find_paths<'a>(
    node: &'a mut Value,
    path: &[String],
    create: Option<&Value>,
    out: &mut Vec<&'a mut Value>,
) -> Result<(), Error> {
    let Some(seg) = path.first() else {
        out.push(node);
        return Ok(());
    };
    let rest = &path[1..];
    if let Some(inner) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        if let Ok(i) = inner.parse::<usize>() {
            let mut p = vec![i.to_string()];
            p.extend_from_slice(rest);
            return find_paths(node, &p, create, out);
        }
        let Value::Seq(items) = node else {
            return Ok(());
        };
        let (k, v) = inner.split_once('=').unwrap_or(("", inner));
        let mut hit = false;
        let idxs: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, it)| {
                if k.is_empty() {
                    it.scalar_string().as_deref() == Some(v)
                } else {
                    it.get(k).and_then(Value::scalar_string).as_deref() == Some(v)
                }
            })
            .map(|(i, _)| i)
            .collect();
        if idxs.is_empty() && create.is_some() && !k.is_empty() {
            let mut m = crate::yaml::Mapping::default();
            m.insert(k.to_string(), Value::String(v.to_string()));
            items.push(Value::Map(m));
            let last = items.len() - 1;
            return find_paths(&mut items[last], rest, create, out);
        }
        for (i, it) in items.iter_mut().enumerate() {
            if idxs.contains(&i) {
                hit = true;
                find_paths(it, rest, create, out)?;
            }
        }
        let _ = hit;
        return Ok(());
    }
    if seg == "*" {
        match node {
            Value::Seq(items) => {
                for it in items.iter_mut() {
                    find_paths(it, rest, create, out)?;
                }
            }
            Value::Map(m) => {
                for (_, it) in m.iter_mut() {
                    find_paths(it, rest, create, out)?;
                }
            }
            _ => {}
        }
        return Ok(());
    }
    if matches!(node, Value::Seq(_)) {
        if let (Value::Seq(items), Ok(i)) = (node, seg.parse::<usize>()) {
            if let Some(it) = items.get_mut(i) {
                return find_paths(it, rest, create, out);
            }
        }
        return Ok(());
    }
    if node.is_null() && create.is_some() {
        *node = Value::map();
    }
    let Value::Map(m) = node else {
        return Err(Error::replacement(format!(
            "wrong node kind: expected MappingNode but got {} at '{seg}'",
            node.kind_name()
        )));
    };
    if !m.contains_key(seg.as_str()) {
        let Some(c) = create else { return Ok(()) };
        let next = match rest.first() {
            None => match c {
                Value::Map(_) => Value::map(),
                Value::Seq(_) => Value::Seq(Vec::new()),
                _ => Value::Null,
            },
            Some(n) if n.starts_with('[') || n.parse::<usize>().is_ok() => Value::Seq(Vec::new()),
            Some(_) => Value::map(),
        };
        m.insert(seg.clone(), next);
    }
    match m.get_mut(seg.as_str()) {
        Some(child) => find_paths(child, rest, create, out),
        None => Ok(()),
    }
}

/// A resource-id selector with regular-expression fields (`types.Selector` as replacements use it).
struct IdSelector {
    gvk: Gvk,
    kind: Option<Regex>,
    name: Option<Regex>,
    namespace: Option<String>,
    labels: Option<super::select::LabelSelector>,
    annotations: Option<super::select::LabelSelector>,
}

impl IdSelector {
    fn from_value(v: &Value) -> Result<IdSelector, Error> {
        let s = |k: &str| v.get(k).and_then(Value::scalar_string).unwrap_or_default();
        let mut gvk = Gvk {
            group: s("group"),
            version: s("version"),
            kind: s("kind"),
        };
        if let Some(av) = v.get("apiVersion").and_then(Value::scalar_string) {
            let g = Gvk::from_api_version(&av, &gvk.kind);
            gvk.group = g.group;
            gvk.version = g.version;
        }
        let name = s("name");
        let kind = if gvk.kind.is_empty() {
            None
        } else {
            Some(Regex::new(&format!("^(?:{})$", gvk.kind)).map_err(|e| {
                Error::selector(
                    &gvk.kind,
                    format!("invalid kind selector '{}': {e}", gvk.kind),
                )
            })?)
        };
        gvk.kind.clear();
        let ls = |k: &str| -> Result<Option<super::select::LabelSelector>, Error> {
            match v
                .get(k)
                .and_then(Value::scalar_string)
                .filter(|x| !x.is_empty())
            {
                Some(x) => super::select::LabelSelector::parse(&x).map(Some),
                None => Ok(None),
            }
        };
        Ok(IdSelector {
            gvk,
            kind,
            name: if name.is_empty() {
                None
            } else {
                Some(Regex::new(&format!("^(?:{name})$")).map_err(|e| {
                    Error::selector(&name, format!("invalid name selector '{name}': {e}"))
                })?)
            },
            namespace: Some(s("namespace")).filter(|x| !x.is_empty()),
            labels: ls("labelSelector")?,
            annotations: ls("annotationSelector")?,
        })
    }

    fn matches_id(&self, r: &Resource) -> bool {
        r.prev_ids().iter().any(|id| {
            id.gvk.is_selected_by(&self.gvk)
                && self
                    .kind
                    .as_ref()
                    .is_none_or(|re| re.is_match(&id.gvk.kind))
                && self.name.as_ref().is_none_or(|re| re.is_match(&id.name))
                && self.namespace.as_ref().is_none_or(|ns| {
                    let sel = crate::resource::ResId {
                        gvk: id.gvk.clone(),
                        name: String::new(),
                        namespace: ns.clone(),
                    };
                    sel.ns_equals(id)
                })
        })
    }

    fn matches_meta(&self, r: &Resource) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|l| l.matches(&r.string_map("labels")))
            && self
                .annotations
                .as_ref()
                .is_none_or(|a| a.matches(&r.string_map("annotations")))
    }
}

fn options(v: Option<&Value>) -> (String, i64, bool) {
    let Some(o) = v else {
        return (String::new(), 0, false);
    };
    let delim = o
        .get("delimiter")
        .and_then(Value::scalar_string)
        .unwrap_or_default();
    let idx = match o.get("index") {
        Some(Value::Int(i)) => *i,
        _ => 0,
    };
    (
        delim,
        idx,
        matches!(o.get("create"), Some(Value::Bool(true))),
    )
}

/// The id a selector names, for messages: `Kind.version.group/name.namespace`.
fn selector_id(sel: &Value) -> crate::resource::ResId {
    let s = |k: &str| {
        sel.get(k)
            .and_then(Value::scalar_string)
            .unwrap_or_default()
    };
    crate::resource::ResId {
        gvk: Gvk {
            group: s("group"),
            version: s("version"),
            kind: s("kind"),
        },
        name: s("name"),
        namespace: s("namespace"),
    }
}

fn source_value(resources: &[Resource], src: &Value) -> Result<Value, Error> {
    let sel = IdSelector::from_value(src)?;
    let matched: Vec<&Resource> = resources.iter().filter(|r| sel.matches_id(r)).collect();
    let r = match matched.as_slice() {
        [one] => *one,
        // kustomize names the selector as a resource id (`types.Selector` `ResId.String`).
        [] => {
            return Err(Error::replacement(format!(
                "nothing selected by {}",
                selector_id(src)
            )))
        }
        _ => {
            return Err(Error::replacement(format!(
                "multiple matches for selector {}",
                selector_id(src)
            )))
        }
    };
    let fp = src
        .get("fieldPath")
        .and_then(Value::scalar_string)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "metadata.name".into());
    let mut obj = r.obj.clone();
    let mut found = Vec::new();
    find_paths(&mut obj, &split_dotted(&fp), None, &mut found)?;
    let v = found
        .first()
        .map(|v| (**v).clone())
        .filter(|v| !v.is_null() && v.scalar_string().as_deref() != Some(""));
    let Some(v) = v else {
        return Err(Error::replacement(format!(
            "fieldPath `{fp}` is missing for replacement source {}",
            r.cur_id()
        )));
    };
    let (delim, idx, _) = options(src.get("options"));
    if delim.is_empty() {
        return Ok(v);
    }
    let text = v.scalar_string().unwrap_or_default();
    let parts: Vec<&str> = text.split(delim.as_str()).collect();
    if idx < 0 || idx as usize >= parts.len() {
        return Err(Error::replacement(format!(
            "options.index {idx} is out of bounds for value {text}"
        )));
    }
    Ok(Value::String(parts[idx as usize].to_string()))
}

fn set_field(target: &mut Value, value: &Value, delim: &str, idx: i64) -> Result<(), Error> {
    let mut value = value.clone();
    if !delim.is_empty() {
        let Some(cur) = target
            .scalar_string()
            .or_else(|| target.is_null().then(String::new))
        else {
            return Err(Error::replacement(
                "delimiter option can only be used with scalar nodes",
            ));
        };
        let mut parts: Vec<String> = cur.split(delim).map(str::to_string).collect();
        let v = value.scalar_string().unwrap_or_default();
        if idx < 0 {
            parts.insert(0, v);
        } else if idx as usize >= parts.len() {
            parts.push(v);
        } else {
            parts[idx as usize] = v;
        }
        value = Value::String(parts.join(delim));
    }
    match (&*target, value.scalar_string()) {
        // Scalars keep their own type: only the text is copied.
        (Value::String(_), Some(text)) => *target = Value::String(text),
        (
            Value::Int(_) | Value::Uint(_) | Value::Float(_) | Value::Bool(_) | Value::Null,
            Some(text),
        ) => *target = resolve_plain(&text),
        _ => *target = value,
    }
    Ok(())
}

/// Runs `replacements` entries (inline, or `path:` files holding a list of them).
///
/// # Errors
/// Unmatched sources, missing target fields, bad options.
pub fn run(ldr: &Loader, entries: &[Value], resources: &mut [Resource]) -> Result<(), Error> {
    let mut all = Vec::new();
    for e in entries {
        if let Some(p) = e.get("path").and_then(Value::scalar_string) {
            let text = ldr.load_string(&p)?;
            match parse_one(&text).map_err(|err| Error::replacement(format!("{p}: {err}")))? {
                Value::Seq(items) => all.extend(items),
                v @ Value::Map(_) => all.push(v),
                _ => {
                    return Err(Error::replacement(format!(
                        "{p}: expected a list of replacements"
                    )))
                }
            }
        } else {
            all.push(e.clone());
        }
    }
    for rep in &all {
        let src = rep
            .get("source")
            .ok_or_else(|| Error::replacement("replacement has no source"))?;
        let value = source_value(resources, src)?;
        let Some(Value::Seq(targets)) = rep.get("targets") else {
            continue;
        };
        for t in targets {
            let sel =
                IdSelector::from_value(t.get("select").ok_or_else(|| {
                    Error::replacement("target must specify resources to select")
                })?)?;
            let rejects: Vec<IdSelector> = match t.get("reject") {
                Some(Value::Seq(r)) => r
                    .iter()
                    .map(IdSelector::from_value)
                    .collect::<Result<_, _>>()?,
                _ => Vec::new(),
            };
            let paths: Vec<String> = match t.get("fieldPaths") {
                Some(Value::Seq(p)) => p.iter().filter_map(Value::scalar_string).collect(),
                _ => vec!["metadata.name".into()],
            };
            let (delim, idx, create) = options(t.get("options"));
            for r in resources.iter_mut() {
                if !sel.matches_meta(r)
                    || !sel.matches_id(r)
                    || rejects.iter().any(|x| x.matches_id(r) && x.matches_meta(r))
                {
                    continue;
                }
                let id = r.cur_id();
                for fp in &paths {
                    let mut found = Vec::new();
                    find_paths(
                        &mut r.obj,
                        &split_dotted(fp),
                        create.then_some(&value),
                        &mut found,
                    )?;
                    if found.is_empty() {
                        let what = if create {
                            "unable to find or create field"
                        } else {
                            "unable to find field"
                        };
                        return Err(Error::replacement(format!(
                            "{what} \"{fp}\" in replacement target {id}"
                        )));
                    }
                    for f in found {
                        set_field(f, &value, &delim, idx)?;
                    }
                }
            }
        }
    }
    Ok(())
}
