//! The diff stage: desired objects against the live cluster, as `kubectl diff` shows them.
//!
//! Each desired object is applied with server-side dry run (`dryRun=All`, field manager
//! `stackwave`, forced), and the result is compared with the live object: what the cluster
//! would look like after the apply, not a naive text diff of the rendered YAML, so defaults and
//! other managers' fields do not show up as changes (`kubectl diff`, `staging/src/k8s.io/kubectl/
//! pkg/cmd/diff/diff.go`: live vs. dry-run merged). Objects in a component's inventory that left
//! the desired state show as deletions (what the next revision would prune).
//!
//! Server-set metadata (`managedFields`, `resourceVersion`, `generation`, `uid`,
//! `creationTimestamp`) and `status` are dropped from both sides. Secret `data` and
//! `stringData` values never appear: as in `kubectl diff`, a value reads `*** (before)` /
//! `*** (after)` when it changes and `***` when it does not.

use crate::cluster::inventory::ObjRef;
use crate::cluster::{object_id, ApplyOptions, Cluster, ClusterError};
use serde_json::{json, Value as Json};

/// What would happen to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Absent live; the apply creates it.
    Create,
    /// Present; the apply changes it.
    Update,
    /// In the inventory, no longer desired; the revision prunes it.
    Delete,
}

/// One object that differs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectDiff {
    /// The component it belongs to.
    pub component: String,
    /// `Kind/namespace/name`.
    pub object: String,
    /// What would happen.
    pub change: Change,
    /// Unified diff of the YAML (live → after apply), Secret values masked.
    pub diff: String,
    /// The live object as compared (server-set fields dropped, Secret values masked as in
    /// `diff`; `None` when it is absent). Not serialized: `stackwave diff -o json` prints
    /// `diff`; the upgrade stage's `diff --from --to --server` makes field lists of it
    /// ([`crate::upgrade::diff::live_changes`]).
    #[serde(skip)]
    pub live: Option<Json>,
    /// The object after the apply, as compared (normalized and masked likewise; `None` for a
    /// deletion). Not serialized.
    #[serde(skip)]
    pub after: Option<Json>,
}

const SERVER_SET: [&str; 5] = [
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
];

/// `o` without server-set metadata and status; Secret values masked against `other`: a
/// Secret `data`/`stringData` value reads `***` when `other` has the same, else
/// `*** (before)` (when `before`) or `*** (after)`. The upgrade stage's field-level diff
/// ([`crate::upgrade::diff`]) compares two revisions through it too.
pub fn normalize(o: &Json, other: Option<&Json>, before: bool) -> Json {
    let mut o = o.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Json::as_object_mut) {
        for k in SERVER_SET {
            m.remove(k);
        }
    }
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    if o["kind"] == "Secret" {
        for field in ["data", "stringData"] {
            let theirs = other.and_then(|x| x.get(field)).cloned();
            if let Some(map) = o.get_mut(field).and_then(Json::as_object_mut) {
                for (k, v) in map.iter_mut() {
                    let same = theirs.as_ref().and_then(|t| t.get(k)) == Some(&*v);
                    *v = json!(if same {
                        "***"
                    } else if before {
                        "*** (before)"
                    } else {
                        "*** (after)"
                    });
                }
            }
        }
    }
    o
}

fn yaml(o: &Json) -> String {
    kustomize_rs::yaml::to_yaml(&crate::render::objects::from_json(o)).unwrap_or_default()
}

fn unified(id: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{id}"), &format!("desired/{id}"))
        .to_string()
}

/// Diffs one component's desired objects (and its `removed` inventory entries) against the
/// cluster; returns only the objects that differ.
///
/// # Errors
/// API errors other than an object being absent (for example a dry run the server rejects,
/// naming the object).
pub async fn diff_component(
    cluster: &Cluster,
    component: &str,
    desired: &[Json],
    removed: &[ObjRef],
) -> Result<Vec<ObjectDiff>, ClusterError> {
    let mut out = Vec::new();
    for o in desired {
        let id = object_id(o);
        // The dry run reads the live object first; its answer carries both sides.
        let applied = cluster
            .apply(
                o,
                &ApplyOptions {
                    force: true,
                    dry_run: true,
                    ..Default::default()
                },
            )
            .await?;
        let (raw, after) = (applied.before, applied.live);
        let after_norm = normalize(&after, raw.as_ref(), false);
        let live = raw.map(|l| normalize(&l, Some(&after), true));
        let (before_text, change) = match &live {
            Some(l) => (yaml(l), Change::Update),
            None => (String::new(), Change::Create),
        };
        let after_text = yaml(&after_norm);
        if before_text != after_text {
            out.push(ObjectDiff {
                component: component.to_string(),
                diff: unified(&id, &before_text, &after_text),
                object: id,
                change,
                live,
                after: Some(after_norm),
            });
        }
    }
    for r in removed {
        let skeleton = r.skeleton();
        if let Some(live) = cluster.get(&skeleton).await? {
            let id = object_id(&live);
            let before = normalize(&live, None, true);
            out.push(ObjectDiff {
                component: component.to_string(),
                diff: unified(&id, &yaml(&before), ""),
                object: id,
                change: Change::Delete,
                live: Some(before),
                after: None,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_server_fields_dropped() {
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "uid": "u1", "resourceVersion": "7"},
            "data": {"a": "b2xk", "same": "eA=="}});
        let after = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "uid": "u1", "resourceVersion": "7"},
            "data": {"a": "bmV3", "same": "eA=="}});
        let b = yaml(&normalize(&live, Some(&after), true));
        let a = yaml(&normalize(&after, Some(&live), false));
        let d = unified("Secret/s", &b, &a);
        assert!(
            d.contains("-  a: '*** (before)'") && d.contains("+  a: '*** (after)'"),
            "{d}"
        );
        assert!(
            !d.contains("b2xk") && !d.contains("bmV3") && !d.contains("uid"),
            "{d}"
        );
        assert!(b.contains("same: '***'"), "{b}");
    }
}
