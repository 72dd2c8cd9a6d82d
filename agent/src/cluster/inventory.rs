//! Inventory and prune: which live objects belong to which component, recorded in the cluster
//! (a ConfigMap per component and Stackwave instance, `stackwave-system/inventory-<instance
//! id>-<component>`, see [`super::instance`]) so a restarted agent knows what it owns,
//! and deletion of objects that left the desired state — only when they are in the inventory
//! *and* still carry Stackwave's ownership marks, never protected objects, in reverse apply
//! order (fluxcd/pkg `ssa/manager_delete.go`, kustomize-controller `prune()`).

use super::instance::{Instance, INSTANCE_LABEL, INSTANCE_NAME_LABEL};
use super::{component_of, object_id, Cluster, ClusterError, COMPONENT_LABEL, MANAGED_BY};
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

/// The shipped protection rules (`policies/protect.yaml`).
///
/// # Errors
/// A malformed file, naming it and the line ([`super::policy::load`]).
pub fn default_protect() -> Result<Vec<Protect>, super::policy::PolicyError> {
    super::policy::protect(super::policy::PolicyTexts::SHIPPED.protect)
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

/// Adds Stackwave's ownership marks to a desired object, all of them labels (why labels:
/// [`COMPONENT_LABEL`]): the `managed-by` label, the component label, and the instance's id
/// and name labels ([`super::instance`]). The object's annotations are left as rendered.
pub fn mark(o: &mut Json, component: &str, instance: &Instance) {
    let labels = &mut o["metadata"]["labels"];
    labels[MANAGED_BY.0] = json!(MANAGED_BY.1);
    labels[INSTANCE_LABEL] = json!(instance.id());
    labels[INSTANCE_NAME_LABEL] = json!(instance.name);
    labels[COMPONENT_LABEL] = json!(component);
}

/// Who a live object's ownership marks name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This instance, and the component.
    Ours,
    /// Stackwave and the component, but no instance (marked before instances existed): the
    /// instance whose inventory lists it owns it.
    Unscoped,
    /// Another Stackwave instance (its id): never pruned by this one.
    Other(String),
    /// Not Stackwave's (marks removed, another component or manager).
    NotMarked,
}

/// Reads an object's ownership marks against `component` and `instance` (the component
/// from its label or, marked by an older Stackwave, its annotation: [`component_of`]).
pub fn owner(live: &Json, component: &str, instance: &Instance) -> Owner {
    let managed = live
        .pointer("/metadata/labels")
        .and_then(|l| l.get(MANAGED_BY.0))
        == Some(&json!(MANAGED_BY.1));
    let comp = component_of(live) == Some(component);
    match super::instance::instance_of(live) {
        Some(id) if id != instance.id() => Owner::Other(id.to_string()),
        _ if !(managed && comp) => Owner::NotMarked,
        Some(_) => Owner::Ours,
        None => Owner::Unscoped,
    }
}

/// The name of `component`'s inventory ConfigMap for `instance`:
/// `inventory-<instance id>-<component>`.
pub fn inventory_name(instance: &Instance, component: &str) -> String {
    format!("inventory-{}-{component}", instance.id())
}

/// The name inventories had before instances existed (`inventory-<component>`), claimed by
/// [`claim_legacy`].
pub fn legacy_name(component: &str) -> String {
    format!("inventory-{component}")
}

fn configmap(name: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": INVENTORY_NAMESPACE}})
}

fn inventory_object(instance: &Instance, component: &str, refs: &[ObjRef]) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": inventory_name(instance, component),
            "namespace": INVENTORY_NAMESPACE,
            "labels": {MANAGED_BY.0: MANAGED_BY.1, INSTANCE_LABEL: instance.id(), INSTANCE_NAME_LABEL: instance.name},
        },
        "data": {"component": component, "instance": instance.name,
                 "objects": serde_json::to_string(refs).unwrap_or_default()}
    })
}

/// The entries of an inventory ConfigMap. A malformed `data.objects` is an error, never an
/// empty inventory (that would let the next write drop every entry).
fn entries(cm: &Json) -> Result<Vec<ObjRef>, ClusterError> {
    match cm.pointer("/data/objects").and_then(Json::as_str) {
        None => Ok(Vec::new()),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| ClusterError::Invalid(format!("{}: data.objects: {e}", object_id(cm)))),
    }
}

/// Reads a component's inventory for `instance` (empty when there is none yet).
///
/// # Errors
/// API errors and a malformed inventory: callers must not treat them as an empty inventory.
pub async fn read(
    cluster: &Cluster,
    instance: &Instance,
    component: &str,
) -> Result<Vec<ObjRef>, ClusterError> {
    match cluster
        .get(&configmap(&inventory_name(instance, component)))
        .await?
    {
        Some(live) => entries(&live),
        None => Ok(Vec::new()),
    }
}

/// How many times a read-modify-write re-reads after a 409 before giving up.
const RETRIES: u32 = 8;

/// The pause before attempt `n` (from 1) after a 409: 25 ms × n plus up to as much again at
/// random, so writers that collided do not collide again in step.
async fn backoff(n: u32) {
    let base = 25 * u64::from(n);
    let jitter = rand::random_range(0..=base);
    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
}

fn is_conflict(e: &ClusterError) -> bool {
    matches!(
        e,
        ClusterError::Conflict { .. } | ClusterError::Api { code: 409, .. }
    )
}

/// Read-modify-write of a component's inventory: `change` maps the stored entries to the new
/// ones; the write carries the `metadata.resourceVersion` it read (an update) or is a create,
/// so a concurrent writer makes it fail with 409, and it re-reads and re-applies `change`
/// (8 attempts, with a growing, jittered pause). Returns the entries written.
///
/// # Errors
/// API errors, a malformed stored inventory, or 409s on every attempt.
pub async fn update(
    cluster: &Cluster,
    instance: &Instance,
    component: &str,
    mut change: impl FnMut(&[ObjRef]) -> Vec<ObjRef>,
) -> Result<Vec<ObjRef>, ClusterError> {
    let want = inventory_object(instance, component, &[]);
    let mut last = None;
    for attempt in 0..RETRIES {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let live = cluster.get(&want).await?;
        let old = live.as_ref().map(entries).transpose()?.unwrap_or_default();
        let new = change(&old);
        if live.is_some() && new == old {
            return Ok(new);
        }
        let mut obj = inventory_object(instance, component, &new);
        let res = match &live {
            Some(l) => {
                obj["metadata"]["resourceVersion"] = l["metadata"]["resourceVersion"].clone();
                cluster.replace(&obj).await
            }
            None => {
                let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": INVENTORY_NAMESPACE}});
                cluster.apply(&ns, &Default::default()).await?;
                cluster.create(&obj).await
            }
        };
        match res {
            Ok(_) => return Ok(new),
            Err(e) if is_conflict(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ClusterError::Invalid("inventory update: no attempt".into())))
}

/// Writes a component's inventory (objects in apply order), replacing its entries — with the
/// same concurrency control as [`update`].
///
/// # Errors
/// As [`update`].
pub async fn write(
    cluster: &Cluster,
    instance: &Instance,
    component: &str,
    refs: &[ObjRef],
) -> Result<(), ClusterError> {
    update(cluster, instance, component, |_| refs.to_vec())
        .await
        .map(|_| ())
}

/// What [`claim_legacy`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// Entries moved into this instance's inventory.
    pub claimed: Vec<ObjRef>,
    /// Entries left in the legacy inventory (not provably this instance's).
    pub left: usize,
}

/// Takes over this instance's entries of a legacy inventory (`inventory-<component>`, written
/// before inventories were scoped by instance). The rule:
///
/// - an entry is this instance's when its live object carries this instance's label, or
///   carries no instance label and is in `desired` (this instance applies it now); entries whose
///   object is gone are dropped; the rest (possibly another instance's, not yet upgraded) stay
///   in the legacy inventory, which is never pruned from — Stackwave never deletes an object it
///   cannot show is its own;
/// - the claim is one conditional write of the legacy ConfigMap (its `resourceVersion` as
///   precondition: rewritten without the claimed entries, or deleted once empty), so of two
///   agents racing for the same entries exactly one wins; the loser re-reads (409) and finds
///   them gone. Only then are the entries added to this instance's inventory ([`update`]).
///
/// # Errors
/// API errors (nothing is claimed then).
pub async fn claim_legacy(
    cluster: &Cluster,
    instance: &Instance,
    component: &str,
    desired: &[ObjRef],
) -> Result<Claim, ClusterError> {
    let name = legacy_name(component);
    for attempt in 0..RETRIES {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let Some(legacy) = cluster.get(&configmap(&name)).await? else {
            return Ok(Claim::default());
        };
        // An instance-scoped inventory that happens to have the legacy name is not legacy.
        if super::instance::instance_of(&legacy).is_some() {
            return Ok(Claim::default());
        }
        let old = entries(&legacy)?;
        let (mut claimed, mut left) = (Vec::new(), Vec::new());
        for r in &old {
            match cluster.get(&r.skeleton()).await? {
                None => {}
                Some(live) => match owner(&live, component, instance) {
                    Owner::Ours => claimed.push(r.clone()),
                    Owner::Unscoped if desired.contains(r) => claimed.push(r.clone()),
                    _ => left.push(r.clone()),
                },
            }
        }
        if left.len() == old.len() {
            return Ok(Claim {
                claimed,
                left: left.len(),
            });
        }
        let rv = legacy["metadata"]["resourceVersion"].clone();
        let res = if left.is_empty() {
            cluster.delete_if(&legacy, rv.as_str().unwrap_or("")).await
        } else {
            let mut cm = legacy.clone();
            cm["data"]["objects"] = json!(serde_json::to_string(&left).unwrap_or_default());
            cluster.replace(&cm).await.map(|_| ())
        };
        match res {
            Ok(()) => {
                let add = claimed.clone();
                update(cluster, instance, component, |cur| {
                    let mut v = cur.to_vec();
                    v.extend(add.iter().filter(|r| !cur.contains(r)).cloned());
                    v
                })
                .await?;
                return Ok(Claim {
                    claimed,
                    left: left.len(),
                });
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ClusterError::Api {
        id: object_id(&configmap(&name)),
        code: 409,
        message: "the legacy inventory kept changing while being claimed".into(),
    })
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
/// honouring ownership marks ([`owner`]: never an object another instance marked) and
/// protections. Returns what happened; objects that could not
/// be deleted are kept for the next inventory.
///
/// # Errors
/// Never for individual objects (they are reported); only when the inventory cannot be read.
pub async fn prune(
    cluster: &Cluster,
    instance: &Instance,
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
        match owner(&live, component, instance) {
            Owner::Ours | Owner::Unscoped => {}
            Owner::Other(other) => {
                // Not ours: reported as kept, and out of this instance's inventory.
                out.skipped.push((
                    id,
                    format!("marked by another Stackwave instance ({INSTANCE_LABEL}={other})"),
                ));
                continue;
            }
            Owner::NotMarked => {
                out.skipped
                    .push((id, "no longer carries Stackwave's ownership marks".into()));
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_marks_name_the_instance() {
        let (a, b) = (
            Instance::new("a", "https://git.example/cloud").unwrap(),
            Instance::new("b", "https://git.example/cloud").unwrap(),
        );
        let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        mark(&mut o, "app", &a);
        assert_eq!(owner(&o, "app", &a), Owner::Ours);
        assert_eq!(owner(&o, "app", &b), Owner::Other(a.id()));
        assert_eq!(owner(&o, "other", &a), Owner::NotMarked);
        // Marked before instances existed: the instance whose inventory lists it owns it.
        o["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(INSTANCE_LABEL);
        assert_eq!(owner(&o, "app", &b), Owner::Unscoped);
        // Marks are labels; the component annotation older versions wrote still counts.
        assert!(o["metadata"].get("annotations").is_none(), "{o}");
        let mut legacy = json!({"metadata": {"labels": {MANAGED_BY.0: MANAGED_BY.1, INSTANCE_LABEL: a.id()},
                                             "annotations": {crate::cluster::LEGACY_COMPONENT_ANNOTATION: "app"}}});
        assert_eq!(owner(&legacy, "app", &a), Owner::Ours);
        assert_eq!(owner(&legacy, "other", &a), Owner::NotMarked);
        // The label wins over a stale annotation.
        legacy["metadata"]["labels"][COMPONENT_LABEL] = json!("other");
        assert_eq!(owner(&legacy, "other", &a), Owner::Ours);
        assert_eq!(owner(&legacy, "app", &a), Owner::NotMarked);
        assert_ne!(inventory_name(&a, "app"), inventory_name(&b, "app"));
        assert_eq!(legacy_name("app"), "inventory-app");
    }

    #[test]
    fn a_malformed_inventory_is_an_error_not_an_empty_one() {
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "inventory-x", "namespace": "stackwave-system"},
                        "data": {"objects": "[{\"api_version\": "}});
        assert!(entries(&cm).is_err());
        assert_eq!(entries(&json!({"data": {}})).unwrap(), Vec::<ObjRef>::new());
    }
}
