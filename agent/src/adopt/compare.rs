//! Whether Stackwave's render equals a live, Helm-installed object — decided by the API
//! server, not by comparing texts.
//!
//! Two server-side dry runs per object predict what adoption leaves behind:
//! 1. the render dry-run applied as Stackwave applies it (field manager `stackwave`, forced):
//!    the rendered fields after the server's defaults, over the live object;
//! 2. that result, minus the fields only Helm owns that the render does not set (those leave
//!    with Helm's managed-fields entries, [`super::migrate`], and the next apply drops them),
//!    dry-run written back (PUT): the server defaults again what was only a default.
//!
//! Every field where the second answer differs from the live object is a difference (its
//! JSON pointer, both values; Secret data masked); a difference under a workload's
//! `spec.template` means the workload would roll.

use crate::cluster::{object_id, Cluster, ClusterError, FIELD_MANAGER};
use kube::api::PostParams;
use kube_fieldpath as ssa;
use serde_json::Value as Json;

/// The field manager Helm writes as.
pub const HELM_MANAGER: &str = "helm";

/// Kinds whose pod template change rolls their pods.
const WORKLOADS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// Metadata the server or the adoption itself changes; never a difference.
const SERVER_METADATA: [&str; 7] = [
    "/metadata/managedFields",
    "/metadata/resourceVersion",
    "/metadata/generation",
    "/metadata/uid",
    "/metadata/creationTimestamp",
    "/metadata/selfLink",
    "/status",
];

/// Ownership marks: Stackwave's come (labels, [`crate::cluster::COMPONENT_LABEL`]), Helm's
/// `managed-by` label changes, Helm's annotations stay until Stackwave's next change to the
/// object (they are then Stackwave's fields, [`super::migrate`], that its apply no longer
/// sets); the annotations an older Stackwave wrote likewise. Expected, never a difference.
const OWNERSHIP_MARKS: [&str; 5] = [
    "/metadata/labels/app.kubernetes.io~1managed-by",
    "/metadata/labels/stackwave.io~1",
    "/metadata/annotations/meta.helm.sh~1release-name",
    "/metadata/annotations/meta.helm.sh~1release-namespace",
    "/metadata/annotations/stackwave.io~1",
];

/// One field that adoption would change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Difference {
    /// `Kind/namespace/name`.
    pub object: String,
    /// JSON pointer of the field.
    pub path: String,
    /// The live value (`null`: absent; masked for Secret data).
    pub live: Json,
    /// The value after adoption (`null`: removed; masked for Secret data).
    pub adopted: Json,
}

/// The comparison of one rendered object.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Compared {
    /// `Kind/namespace/name`.
    pub object: String,
    /// Whether the object is live at all.
    pub live: bool,
    /// Every field adoption would change (empty: the render equals the live object).
    pub differences: Vec<Difference>,
    /// For a workload: the pod-template fields among the differences (it would roll).
    pub rolls: Vec<String>,
    /// `metadata.generation` live and after the adoption write (the forced apply, as its dry
    /// run answers), when that write would move it. A spec change moves it, and so does a
    /// change to a Deployment's annotations (they are copied to its ReplicaSets:
    /// kube-apiserver `pkg/registry/apps/deployment/strategy.go` `PrepareForUpdate`), which
    /// is why Stackwave's ownership marks are labels and the Helm annotations are left in
    /// place: for a matching render this is `None`.
    pub generation: Option<[i64; 2]>,
}

fn mask(o: &Json, path: &str, v: Json) -> Json {
    if o["kind"] == "Secret"
        && (path.starts_with("/data/") || path.starts_with("/stringData/"))
        && !v.is_null()
    {
        Json::from("<masked>")
    } else {
        v
    }
}

fn esc(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// The fields where `a` and `b` differ, as JSON pointers (maps key by key — a map against
/// an absent field too, as against an empty map, so an absent `metadata.annotations` and
/// one holding only skipped marks do not differ —, lists of equal length item by item,
/// anything else as a whole).
pub fn differing(a: &Json, b: &Json, path: &str, out: &mut Vec<String>) {
    let empty = Json::Object(Default::default());
    match (a, b) {
        (Json::Object(_), Json::Null) => differing(a, &empty, path, out),
        (Json::Null, Json::Object(_)) => differing(&empty, b, path, out),
        (Json::Object(x), Json::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let null = Json::Null;
                differing(
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    &format!("{path}/{}", esc(k)),
                    out,
                );
            }
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differing(p, q, &format!("{path}/{i}"), out);
            }
        }
        (p, q) if p != q => out.push(if path.is_empty() {
            "/".into()
        } else {
            path.to_string()
        }),
        _ => {}
    }
}

fn skipped(path: &str) -> bool {
    SERVER_METADATA
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        || OWNERSHIP_MARKS.iter().any(|p| path.starts_with(p))
}

/// The field paths `managers` own on `o` (entries without a subresource).
fn owned(o: &Json, keep: &dyn Fn(&str) -> bool) -> ssa::FieldSet {
    let mut set = ssa::FieldSet::new();
    for e in o
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter(|e| {
            e.get("subresource")
                .and_then(Json::as_str)
                .unwrap_or("")
                .is_empty()
        })
        .filter(|e| keep(e["manager"].as_str().unwrap_or("")))
    {
        set.extend(ssa::from_fields_v1(&e["fieldsV1"]));
    }
    set
}

/// Whether `set` covers field `p`: it holds `p`, an ancestor of it, or a descendant.
fn covers(set: &ssa::FieldSet, p: &[ssa::Pe]) -> bool {
    set.iter().any(|q| {
        let n = q.len().min(p.len());
        q[..n] == p[..n]
    })
}

/// Compares one rendered object (`desired`, marked as Stackwave applies it) with its live
/// state (`None`: absent).
///
/// # Errors
/// API errors of the dry runs (a refused dry run names the object and the server's causes).
pub async fn compare(
    cluster: &Cluster,
    desired: &Json,
    live: Option<&Json>,
) -> Result<Compared, ClusterError> {
    let id = object_id(desired);
    let Some(live) = live else {
        return Ok(Compared {
            differences: vec![Difference {
                object: id.clone(),
                path: "/".into(),
                live: Json::Null,
                adopted: Json::from("created"),
            }],
            rolls: Vec::new(),
            generation: None,
            live: false,
            object: id,
        });
    };
    let applied = cluster.dry_run_apply(desired).await?;
    // Fields only Helm holds and the render does not set leave with Helm's entries.
    let stackwave = owned(&applied, &|m| m == FIELD_MANAGER);
    let others = owned(live, &|m| m != FIELD_MANAGER && m != HELM_MANAGER);
    let helm = owned(live, &|m| m == HELM_MANAGER);
    let mut after = applied.clone();
    for p in helm.iter().filter(|p| {
        !helm
            .iter()
            .any(|q| q.len() > p.len() && q[..p.len()] == p[..])
    }) {
        if !covers(&stackwave, p) && !covers(&others, p) {
            ssa::remove_at(&mut after, p);
        }
    }
    after["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
    if let Some(m) = after["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    let api = super::api_for(cluster, desired).await?;
    let body: kube::api::DynamicObject =
        serde_json::from_value(after).map_err(|e| ClusterError::Invalid(format!("{id}: {e}")))?;
    let pp = PostParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    let result = api
        .replace(crate::cluster::name_of(desired), &pp, &body)
        .await
        .map_err(|e| cluster.error(&id, e))?;
    let result = serde_json::to_value(result).map_err(|e| ClusterError::Invalid(e.to_string()))?;
    let mut paths = Vec::new();
    differing(live, &result, "", &mut paths);
    paths.retain(|p| !skipped(p));
    let workload = WORKLOADS.contains(&desired["kind"].as_str().unwrap_or(""));
    let rolls = paths
        .iter()
        .filter(|p| workload && p.starts_with("/spec/template"))
        .cloned()
        .collect();
    let at = |o: &Json, p: &str| o.pointer(p).cloned().unwrap_or(Json::Null);
    let differences = paths
        .iter()
        .map(|p| Difference {
            object: id.clone(),
            path: p.clone(),
            live: mask(desired, p, at(live, p)),
            adopted: mask(desired, p, at(&result, p)),
        })
        .collect();
    let gen = |o: &Json| o.pointer("/metadata/generation").and_then(Json::as_i64);
    let generation = match (gen(live), gen(&applied)) {
        (Some(a), Some(b)) if a != b => Some([a, b]),
        _ => None,
    };
    Ok(Compared {
        object: id,
        live: true,
        differences,
        rolls,
        generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differing_names_each_changed_field() {
        let a = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "a"}]}}}, "x": [1]});
        let b = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "b"}]}}}, "x": [1, 2], "y": 1,
                       "metadata": {"annotations": {"a/b": "1"}}, "z": {}});
        let mut out = Vec::new();
        differing(&a, &b, "", &mut out);
        assert_eq!(
            out,
            vec![
                "/spec/template/spec/containers/0/image",
                "/x",
                "/y",
                "/metadata/annotations/a~1b",
            ],
            "a map against an absent field: key by key; an empty one: no difference"
        );
        assert!(skipped("/metadata/labels/stackwave.io~1component"));
        assert!(skipped("/metadata/annotations/stackwave.io~1component"));
        assert!(skipped("/metadata/annotations/meta.helm.sh~1release-name"));
        assert!(!skipped("/metadata/annotations/other"));
    }
}
