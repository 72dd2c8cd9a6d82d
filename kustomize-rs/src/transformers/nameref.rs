//! Name-reference fix-up: after names changed (prefixes, suffixes, hashes, namespaces), every
//! field that refers to another resource by name is rewritten to the new name
//! (`api/internal/accumulator/namereferencetransformer.go`, `api/filters/nameref/nameref.go`,
//! `api/resmap/reswrangler.go` `SubsetThatCouldBeReferencedByResource`).

use crate::fieldspec::{apply, split_path, CreateKind, NameBackRef};
use crate::resource::{Gvk, ResId, Resource};
use crate::yaml::Value;
use crate::Error;

/// What the fix-up needs to know about a possible referral target.
struct Target {
    prev_ids: Vec<ResId>,
    cur: ResId,
    org_effective_ns: String,
    cluster_scoped: bool,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

impl Target {
    fn of(r: &Resource) -> Target {
        let cur = r.cur_id();
        Target {
            prev_ids: r.previous_ids(),
            cluster_scoped: cur.gvk.is_cluster_scoped(),
            org_effective_ns: r.org_id().effective_namespace().to_string(),
            cur,
            prefixes: r.prefixes.clone(),
            suffixes: r.suffixes.clone(),
        }
    }
}

fn has_field(v: &Value, path: &str) -> bool {
    fn walk(v: &Value, p: &[String]) -> bool {
        if p.is_empty() {
            return true;
        }
        match v {
            Value::Map(m) => m
                .get(p[0].trim_end_matches("[]"))
                .is_some_and(|c| walk(c, &p[1..])),
            Value::Seq(s) => s.iter().any(|i| walk(i, p)),
            _ => false,
        }
    }
    walk(v, &split_path(path))
}

/// Namespaces of ServiceAccount subjects of a RoleBinding (`getNamespacesForRoleBinding`).
fn role_binding_namespaces(r: &Resource) -> Result<Vec<String>, Error> {
    if r.kind() != "RoleBinding" {
        return Ok(Vec::new());
    }
    let Some(Value::Seq(subjects)) = r.obj.get("subjects") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for s in subjects {
        let Some(ns) = s.get("namespace") else {
            continue;
        };
        if s.str_at(&["kind"]) != Some("ServiceAccount") {
            continue;
        }
        match ns {
            Value::String(n) => out.push(n.clone()),
            _ => {
                return Err(Error::name_reference(format!(
                    "Invalid Input: namespace is blank for resource {:?}",
                    r.cur_id().to_string()
                )))
            }
        }
    }
    Ok(out)
}

/// Rewrites name references in all resources. Returns, for each resource, the ids of the
/// resources that refer to it (kustomize `refBy`).
///
/// # Errors
/// Ambiguous references, or field specs that do not lead to names.
pub fn fix(backrefs: &[NameBackRef], resources: &mut [Resource]) -> Result<(), Error> {
    let targets: Vec<Target> = resources.iter().map(Target::of).collect();
    let mut refs: Vec<(usize, ResId)> = Vec::new();
    for i in 0..resources.len() {
        let referrer_cur = targets[i].cur.clone();
        let referrer_org = resources[i].org_id();
        // Candidates the referrer could possibly see.
        let rb_ns = role_binding_namespaces(&resources[i])?;
        let subset: Vec<usize> = (0..targets.len())
            .filter(|&j| {
                let t = &targets[j];
                targets[i].cluster_scoped
                    || t.cluster_scoped
                    || t.cur.ns_equals(&referrer_cur)
                    || rb_ns.iter().any(|n| n == t.cur.namespace.as_str())
            })
            .collect();
        for br in backrefs {
            for fs in &br.referrers {
                if !referrer_org.gvk.is_selected_by(&fs.gvk)
                    || !has_field(&resources[i].obj, &fs.path)
                {
                    continue;
                }
                let role_ref = if fs.path.ends_with("roleRef/name") {
                    let rr = resources[i].obj.get("roleRef");
                    match (
                        rr.and_then(|r| r.str_at(&["apiGroup"])),
                        rr.and_then(|r| r.str_at(&["kind"])),
                    ) {
                        (Some(g), Some(k)) => Some(Gvk {
                            group: g.to_string(),
                            version: String::new(),
                            kind: k.to_string(),
                        }),
                        _ => None,
                    }
                } else {
                    None
                };
                let ctx = Ctx {
                    targets: &targets,
                    subset: &subset,
                    referrer: i,
                    target: &br.target,
                    role_ref: role_ref.as_ref(),
                };
                let mut local_refs = Vec::new();
                let mut fs = fs.clone();
                fs.gvk = Gvk::default();
                apply(
                    &mut resources[i].obj,
                    &fs,
                    CreateKind::None,
                    &mut |n: &mut Value| set(&ctx, n, &mut local_refs),
                )
                .map_err(|e| {
                    e.context(format!(
                        "updating name reference in '{}' field of '{}'",
                        fs.path, referrer_cur
                    ))
                })?;
                refs.extend(local_refs.into_iter().map(|j| (j, referrer_cur.clone())));
            }
        }
    }
    for (j, by) in refs {
        if !resources[j].ref_by.contains(&by) {
            resources[j].ref_by.push(by);
        }
    }
    Ok(())
}

struct Ctx<'a> {
    targets: &'a [Target],
    subset: &'a [usize],
    referrer: usize,
    target: &'a Gvk,
    role_ref: Option<&'a Gvk>,
}

fn set(ctx: &Ctx, n: &mut Value, refs: &mut Vec<usize>) -> Result<(), Error> {
    match n {
        Value::Null => Ok(()),
        Value::Seq(items) => {
            for it in items.iter_mut() {
                match it {
                    Value::Map(_) => set_mapping(ctx, it, refs)?,
                    Value::Seq(_) => {
                        return Err(Error::name_reference(
                            "node must be a scalar, sequence or map",
                        ))
                    }
                    _ => set_scalar(ctx, it, refs)?,
                }
            }
            Ok(())
        }
        Value::Map(_) => set_mapping(ctx, n, refs),
        _ => set_scalar(ctx, n, refs),
    }
}

fn set_scalar(ctx: &Ctx, n: &mut Value, refs: &mut Vec<usize>) -> Result<(), Error> {
    let Some(old) = n.scalar_string() else {
        return Ok(());
    };
    if let Some(j) = select(ctx, &old, ctx.subset.to_vec(), false)? {
        refs.push(j);
        let new = &ctx.targets[j].cur.name;
        if *new != old {
            *n = Value::String(new.clone());
        }
    }
    Ok(())
}

fn set_mapping(ctx: &Ctx, n: &mut Value, refs: &mut Vec<usize>) -> Result<(), Error> {
    let Value::Map(m) = n else { return Ok(()) };
    let Some(old) = m.get("name").and_then(Value::scalar_string) else {
        return Err(Error::name_reference(
            "path config error; no 'name' field in node",
        ));
    };
    let candidates: Vec<usize> = match m.get("namespace").and_then(Value::scalar_string) {
        None => ctx.subset.to_vec(),
        Some(ns) => {
            let by_org: Vec<usize> = ctx
                .subset
                .iter()
                .copied()
                .filter(|&j| ctx.targets[j].org_effective_ns == ns)
                .collect();
            if !by_org.is_empty() {
                by_org
            } else {
                ctx.subset
                    .iter()
                    .copied()
                    .filter(|&j| {
                        !ctx.targets[j].cluster_scoped
                            && ctx.targets[j].cur.effective_namespace() == ns
                    })
                    .collect()
            }
        }
    };
    let Some(j) = select(ctx, &old, candidates, true)? else {
        return Ok(());
    };
    refs.push(j);
    let t = &ctx.targets[j].cur;
    if t.name == old && t.namespace.is_empty() {
        return Ok(());
    }
    m.insert("name".into(), Value::String(t.name.clone()));
    if !t.namespace.is_empty() {
        m.insert("namespace".into(), Value::String(t.namespace.clone()));
    }
    Ok(())
}

fn select(
    ctx: &Ctx,
    old: &str,
    candidates: Vec<usize>,
    with_ns: bool,
) -> Result<Option<usize>, Error> {
    let t = ctx.targets;
    let referrer = &t[ctx.referrer];
    let mut c: Vec<usize> = candidates
        .into_iter()
        .filter(|&j| t[j].prev_ids.iter().any(|id| id.name == old))
        .filter(|&j| {
            t[j].prev_ids
                .iter()
                .any(|id| id.gvk.is_selected_by(ctx.target))
        })
        .filter(|&j| {
            ctx.role_ref
                .is_none_or(|g| t[j].prev_ids.iter().any(|id| id.gvk.is_selected_by(g)))
        })
        .filter(|&j| {
            referrer.cluster_scoped
                || t[j].cluster_scoped
                || t[j].cur.gvk.kind == "ServiceAccount"
                || referrer.cur.ns_equals(&t[j].cur)
        })
        .collect();
    if c.len() == 1 {
        return Ok(Some(c[0]));
    }
    c.retain(|&j| {
        let same = |a: &[String], b: &[String]| {
            let (s, l) = if a.len() <= b.len() { (a, b) } else { (b, a) };
            let d = l.len() - s.len();
            if s.is_empty() {
                d == 0
            } else {
                s.iter().enumerate().all(|(i, x)| &l[i + d] == x)
            }
        };
        same(&t[j].prefixes, &referrer.prefixes) && same(&t[j].suffixes, &referrer.suffixes)
    });
    match c.len() {
        0 => Ok(None),
        1 => Ok(Some(c[0])),
        _ => {
            let first = &t[c[0]].cur;
            let identical = c.iter().all(|&j| {
                t[j].cur.name == first.name && (!with_ns || t[j].cur.namespace == first.namespace)
            });
            if identical {
                Ok(Some(c[0]))
            } else {
                let ids: Vec<String> = c.iter().map(|&j| t[j].cur.to_string()).collect();
                Err(Error::name_reference(format!(
                    " found multiple possible referrals: {}",
                    ids.join(", ")
                )))
            }
        }
    }
}
