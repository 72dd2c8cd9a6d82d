//! Deprecated `vars`: `$(NAME)` in the var-reference fields is replaced by a field of the
//! referenced object (`api/internal/accumulator/resaccumulator.go` `ResolveVars`,
//! `api/filters/refvar/refvar.go`, Kubernetes `third_party/forked/golang/expansion`).

use super::replacements::{find_paths, split_dotted};
use crate::fieldspec::{apply, CreateKind, FieldSpec};
use crate::resource::{Gvk, Resource};
use crate::yaml::Value;
use crate::Error;

/// Expands `$(NAME)` references (`$$` escapes a `$`); unknown names are left as written.
pub fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            match b[i + 1] {
                '$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                '(' => {
                    if let Some(end) = b[i + 2..].iter().position(|c| *c == ')') {
                        let name: String = b[i + 2..i + 2 + end].iter().collect();
                        match lookup(&name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(&name);
                                out.push(')');
                            }
                        }
                        i += end + 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn objref_matches(r: &Resource, objref: &Value) -> bool {
    let s = |k: &str| {
        objref
            .get(k)
            .and_then(Value::scalar_string)
            .unwrap_or_default()
    };
    let mut sel = Gvk {
        group: s("group"),
        version: s("version"),
        kind: s("kind"),
    };
    let av = s("apiVersion");
    if !av.is_empty() {
        let g = Gvk::from_api_version(&av, &sel.kind);
        sel.group = g.group;
        sel.version = g.version;
    }
    let name = s("name");
    let ns = s("namespace");
    r.prev_ids().iter().any(|id| {
        id.gvk.is_selected_by(&sel)
            && id.name == name
            && (ns.is_empty() || id.namespace == ns || (ns == "default" && id.namespace.is_empty()))
    })
}

/// Binds a var to the one resource its `objref` names (current or previous ids), as
/// `ResAccumulator.MergeVars` does; no match leaves it unbound (an error at resolution).
///
/// # Errors
/// When several resources match.
pub fn bind(var: &Value, name: &str, resources: &mut [Resource]) -> Result<(), Error> {
    let objref = var.get("objref").cloned().unwrap_or(Value::Null);
    let matched: Vec<usize> = (0..resources.len())
        .filter(|&i| objref_matches(&resources[i], &objref))
        .collect();
    match matched.as_slice() {
        [] => Ok(()),
        [i] => {
            resources[*i].ref_var_names.push(name.to_string());
            Ok(())
        }
        _ => Err(Error::var(format!(
            "found {} resId matches for var {name} (unable to disambiguate)",
            matched.len()
        ))),
    }
}

/// Resolves vars across all resources.
///
/// # Errors
/// A var bound to no resource, or whose field is missing.
pub fn resolve(
    vars: &[Value],
    specs: &[FieldSpec],
    resources: &mut [Resource],
) -> Result<(), Error> {
    if vars.is_empty() {
        return Ok(());
    }
    let mut values: Vec<(String, Value)> = Vec::new();
    for v in vars {
        let name = v
            .get("name")
            .and_then(Value::scalar_string)
            .unwrap_or_default();
        let fp = v
            .get_path(&["fieldref", "fieldpath"])
            .and_then(Value::scalar_string)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "metadata.name".into());
        let Some(r) = resources.iter().find(|r| r.ref_var_names.contains(&name)) else {
            // kustomize prints the var as Go's `%v` of `types.Var`:
            // `{NAME Kind.version.group {fieldpath}}`.
            let objref = v.get("objref");
            let s = |k: &str| {
                objref
                    .and_then(|o| o.get(k))
                    .and_then(Value::scalar_string)
                    .unwrap_or_default()
            };
            let (group, version) = match s("apiVersion").rsplit_once('/') {
                Some((g, ver)) => (g.to_string(), ver.to_string()),
                None => (String::new(), s("apiVersion")),
            };
            let gvk = crate::resource::Gvk {
                group,
                version,
                kind: s("kind"),
            };
            return Err(Error::var(format!(
                "var '{{{name} {gvk} {{{fp}}}}}' cannot be mapped to a field in the set of known resources"
            )));
        };
        let mut obj = r.obj.clone();
        let mut found = Vec::new();
        find_paths(&mut obj, &split_dotted(&fp), None, &mut found)?;
        let val = found.first().map(|x| (**x).clone()).ok_or_else(|| {
            Error::var(format!(
                "field specified in var '{name}' not found in corresponding resource"
            ))
        })?;
        values.push((name, val));
    }
    let lookup = |n: &str| {
        values
            .iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| v.scalar_string())
    };
    for r in resources.iter_mut() {
        let gvk = r.gvk();
        for fs in specs.iter().filter(|fs| gvk.is_selected_by(&fs.gvk)) {
            apply(&mut r.obj, fs, CreateKind::None, &mut |n: &mut Value| {
                replace_in(n, &values, &lookup);
                Ok(())
            })?;
        }
    }
    Ok(())
}

fn replace_in(n: &mut Value, values: &[(String, Value)], lookup: &dyn Fn(&str) -> Option<String>) {
    match n {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("$(").and_then(|x| x.strip_suffix(')')) {
                if let Some((_, v)) = values.iter().find(|(k, _)| k == name) {
                    if !matches!(v, Value::String(_)) && !matches!(v, Value::Map(_) | Value::Seq(_))
                    {
                        *n = v.clone();
                        return;
                    }
                }
            }
            *s = expand(s, lookup);
        }
        Value::Seq(items) => items.iter_mut().for_each(|i| replace_in(i, values, lookup)),
        Value::Map(m) => m.values_mut().for_each(|i| replace_in(i, values, lookup)),
        _ => {}
    }
}
