//! Inventory and prune: which live objects belong to which component, recorded in the cluster
//! (a ConfigMap per component in the agent's namespace) so a restarted agent knows what it owns,
//! and deletion of objects that left the desired state — only when they are in the inventory
//! *and* still carry Stackwave's ownership marks, never protected objects, in reverse apply
//! order (fluxcd/pkg `ssa/manager_delete.go`, kustomize-controller `prune()`).

use super::{object_id, Cluster, ClusterError, COMPONENT_ANNOTATION, MANAGED_BY};
use serde_json::{json, Value as Json};

/// Namespace holding inventories.
pub const INVENTORY_NAMESPACE: &str = "stackwave-system";

/// A reference to an object, enough to find it again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ObjRef {
    /// apiVersion.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjRef {
    /// The reference of an object.
    pub fn of(o: &Json) -> ObjRef {
        let s = |p: &str| {
            o.pointer(p)
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string()
        };
        ObjRef {
            api_version: s("/apiVersion"),
            kind: s("/kind"),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name"),
        }
    }

    /// A skeleton object for API calls.
    pub fn skeleton(&self) -> Json {
        let mut o = json!({"apiVersion": self.api_version, "kind": self.kind, "metadata": {"name": self.name}});
        if !self.namespace.is_empty() {
            o["metadata"]["namespace"] = json!(self.namespace);
        }
        o
    }
}

/// A protection rule (`policies/protect.yaml`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Protect {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
}

#[derive(serde::Deserialize)]
struct ProtectFile {
    protect: Vec<Protect>,
}

/// The shipped protection rules.
pub fn default_protect() -> Vec<Protect> {
    kustomize_rs::yaml::parse_one(include_str!("../../../policies/protect.yaml"))
        .ok()
        .and_then(|v| serde_json::from_value::<ProtectFile>(crate::component::to_json(&v)).ok())
        .map(|f| f.protect)
        .unwrap_or_default()
}

/// Why an object must never be pruned (`None` when it may be).
pub fn protected(live: &Json, rules: &[Protect]) -> Option<String> {
    let kind = live["kind"].as_str().unwrap_or("");
    let group = super::group_of(live);
    if matches!(
        kind,
        "CustomResourceDefinition" | "Namespace" | "PersistentVolumeClaim"
    ) {
        return Some(format!("{kind}s are never pruned"));
    }
    if live
        .pointer("/metadata/annotations/helm.sh~1resource-policy")
        .and_then(Json::as_str)
        == Some("keep")
    {
        return Some("annotated helm.sh/resource-policy: keep".into());
    }
    if rules.iter().any(|r| r.kind == kind && r.group == group) {
        return Some(format!("{group}/{kind} is protected by policy"));
    }
    None
}

/// Adds Stackwave's ownership marks to a desired object.
pub fn mark(o: &mut Json, component: &str) {
    o["metadata"]["labels"][MANAGED_BY.0] = json!(MANAGED_BY.1);
    o["metadata"]["annotations"][COMPONENT_ANNOTATION] = json!(component);
}

fn owned_by(live: &Json, component: &str) -> bool {
    live.pointer("/metadata/labels")
        .and_then(|l| l.get(MANAGED_BY.0))
        == Some(&json!(MANAGED_BY.1))
        && live
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(COMPONENT_ANNOTATION))
            == Some(&json!(component))
}

fn inventory_object(component: &str, refs: &[ObjRef]) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("inventory-{component}"), "namespace": INVENTORY_NAMESPACE, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "data": {"component": component, "objects": serde_json::to_string(refs).unwrap_or_default()}
    })
}

/// Reads a component's inventory (empty when none).
///
/// # Errors
/// API errors.
pub async fn read(cluster: &Cluster, component: &str) -> Result<Vec<ObjRef>, ClusterError> {
    let cm = inventory_object(component, &[]);
    match cluster.get(&cm).await? {
        Some(live) => Ok(live
            .pointer("/data/objects")
            .and_then(Json::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()),
        None => Ok(Vec::new()),
    }
}

/// Writes a component's inventory (objects in apply order).
///
/// # Errors
/// API errors.
pub async fn write(
    cluster: &Cluster,
    component: &str,
    refs: &[ObjRef],
) -> Result<(), ClusterError> {
    let ns =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INVENTORY_NAMESPACE}});
    cluster.apply(&ns, &Default::default()).await?;
    cluster
        .apply(
            &inventory_object(component, refs),
            &super::ApplyOptions {
                force: true,
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

/// The outcome of a prune.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Deleted objects.
    pub deleted: Vec<String>,
    /// Skipped objects and why.
    pub skipped: Vec<(String, String)>,
    /// Deletions that failed (they stay in the inventory).
    pub failed: Vec<(String, String)>,
}

/// Deletes inventory objects of `component` that are no longer desired, in reverse order,
/// honouring ownership marks and protections. Returns what happened; objects that could not
/// be deleted are kept for the next inventory.
///
/// # Errors
/// Never for individual objects (they are reported); only when the inventory cannot be read.
pub async fn prune(
    cluster: &Cluster,
    component: &str,
    old: &[ObjRef],
    desired: &[ObjRef],
    rules: &[Protect],
) -> Result<(Pruned, Vec<ObjRef>), ClusterError> {
    let mut out = Pruned::default();
    let mut keep = Vec::new();
    for r in old.iter().rev() {
        if desired.contains(r) {
            continue;
        }
        let sk = r.skeleton();
        let id = object_id(&sk);
        let live = match cluster.get(&sk).await {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                out.failed.push((id, e.to_string()));
                keep.push(r.clone());
                continue;
            }
        };
        if !owned_by(&live, component) {
            out.skipped
                .push((id, "no longer carries Stackwave's ownership marks".into()));
            continue;
        }
        if let Some(why) = protected(&live, rules) {
            out.skipped.push((id, why));
            keep.push(r.clone());
            continue;
        }
        match cluster.delete(&sk).await {
            Ok(_) => out.deleted.push(id),
            Err(e) => {
                out.failed.push((id, e.to_string()));
                keep.push(r.clone());
            }
        }
    }
    keep.reverse();
    Ok((out, keep))
}
