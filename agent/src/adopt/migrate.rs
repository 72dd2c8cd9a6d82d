//! Managed-fields migration: Helm's `Update` entries become Stackwave's `Apply` entry.
//!
//! The rule of client-go's `k8s.io/client-go/util/csaupgrade` (`upgrade.go`,
//! `UpgradeManagedFields`): find the SSA manager's entry (manager = Stackwave, operation
//! `Apply`, no subresource); when there is none, turn the most recent (first) entry of the
//! client-side manager (operation `Update`, no subresource) into it; union into it the field
//! set of the client-side manager's `Update` entry of the same `apiVersion`; drop every
//! `Update` entry of the client-side manager without a subresource. Fields the client-side
//! manager owned only through defaulting come along; the next apply drops them from the
//! set and the server defaults them again (upstream's caveat 3). The result is written as
//! one merge patch of `metadata.managedFields` carrying the object's `resourceVersion`, so a
//! concurrent write makes it fail (409) instead of being overwritten (upstream's caveat 4).

use crate::cluster::{object_id, Cluster, ClusterError};
use kube::api::{Patch, PatchParams};
use kube_fieldpath as ssa;
use serde_json::{json, Value as Json};

/// Whether `e` is `manager`'s entry for `operation` on the main resource (no subresource).
fn is_entry(e: &Json, manager: &str, operation: &str) -> bool {
    e["manager"] == manager
        && e["operation"] == operation
        && e.get("subresource")
            .and_then(Json::as_str)
            .unwrap_or("")
            .is_empty()
}

fn is_update_of(e: &Json, manager: &str) -> bool {
    is_entry(e, manager, "Update")
}

fn is_apply_of(e: &Json, manager: &str) -> bool {
    is_entry(e, manager, "Apply")
}

/// The managed fields of `live` after moving `csa`'s `Update` entries into `ssa_manager`'s
/// `Apply` entry (`None` when `csa` has no such entry: nothing to do).
pub fn upgrade(live: &Json, csa: &str, ssa_manager: &str) -> Option<Vec<Json>> {
    let mut entries: Vec<Json> = live
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let target = match entries.iter().position(|e| is_apply_of(e, ssa_manager)) {
        Some(i) => i,
        None => {
            let i = entries.iter().position(|e| is_update_of(e, csa))?;
            entries[i]["operation"] = json!("Apply");
            entries[i]["manager"] = json!(ssa_manager);
            i
        }
    };
    let version = entries[target]["apiVersion"].clone();
    let mut set = ssa::from_fields_v1(&entries[target]["fieldsV1"]);
    let mut found = false;
    for e in entries.iter().filter(|e| is_update_of(e, csa)) {
        found = true;
        if e["apiVersion"] == version {
            set.extend(ssa::from_fields_v1(&e["fieldsV1"]));
        }
    }
    // With an Apply entry already there and no client-side entry left: nothing to do. (A
    // converted entry is no longer an `Update` one, so `found` may be false after it too.)
    let converted = !live
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
        .is_some_and(|es| es.iter().any(|e| is_apply_of(e, ssa_manager)));
    if !found && !converted {
        return None;
    }
    entries[target]["fieldsV1"] = ssa::to_fields_v1(&set);
    entries.retain(|e| !is_update_of(e, csa));
    Some(entries)
}

/// Writes [`upgrade`]'s result for `managers` (each moved in turn) into the live object: a
/// merge patch of `metadata.managedFields` conditional on `metadata.resourceVersion`. A
/// concurrent write (409: a controller wrote status) re-reads the object and computes the
/// migration again (at most 8 attempts). Returns the patched object, or the object
/// unchanged when no manager had entries.
///
/// # Errors
/// API errors (the last 409 after 8 attempts).
pub async fn migrate(
    cluster: &Cluster,
    live: &Json,
    managers: &[&str],
    ssa_manager: &str,
) -> Result<Json, ClusterError> {
    let mut cur = live.clone();
    let mut attempt = 0;
    loop {
        match migrate_once(cluster, &cur, managers, ssa_manager).await {
            Err(e) if attempt < 7 && is_conflict(&e) => {
                attempt += 1;
                match cluster.get(live).await? {
                    Some(fresh) => cur = fresh,
                    None => return Err(e),
                }
            }
            other => return other,
        }
    }
}

fn is_conflict(e: &ClusterError) -> bool {
    matches!(
        e,
        ClusterError::Conflict { .. } | ClusterError::Api { code: 409, .. }
    )
}

async fn migrate_once(
    cluster: &Cluster,
    live: &Json,
    managers: &[&str],
    ssa_manager: &str,
) -> Result<Json, ClusterError> {
    let mut cur = live.clone();
    let mut changed = false;
    for m in managers {
        if let Some(entries) = upgrade(&cur, m, ssa_manager) {
            cur["metadata"]["managedFields"] = Json::Array(entries);
            changed = true;
        }
    }
    if !changed {
        return Ok(live.clone());
    }
    let patch = json!({"metadata": {
        "resourceVersion": live["metadata"]["resourceVersion"],
        "managedFields": cur["metadata"]["managedFields"],
    }});
    let api = super::api_for(cluster, live).await?;
    let out = api
        .patch(
            crate::cluster::name_of(live),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| cluster.error(&object_id(live), e))?;
    serde_json::to_value(out).map_err(|e| ClusterError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(entries: Json) -> Json {
        json!({"metadata": {"managedFields": entries}})
    }

    #[test]
    fn helm_update_entries_become_the_apply_entry() {
        let live = obj(json!([
            {"manager": "helm", "operation": "Update", "apiVersion": "apps/v1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:dnsPolicy": {}}}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1", "subresource": "status", "fieldsV1": {"f:status": {"f:replicas": {}}}},
        ]));
        let out = upgrade(&live, "helm", "stackwave").unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["manager"], "stackwave");
        assert_eq!(out[0]["operation"], "Apply");
        assert_eq!(
            out[0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:dnsPolicy"],
            json!({})
        );
        assert_eq!(out[1]["subresource"], "status");
    }

    #[test]
    fn an_existing_apply_entry_takes_the_union_and_helm_goes() {
        let live = obj(json!([
            {"manager": "stackwave", "operation": "Apply", "apiVersion": "v1", "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "helm", "operation": "Update", "apiVersion": "v1", "fieldsV1": {"f:data": {"f:b": {}}}},
        ]));
        let out = upgrade(&live, "helm", "stackwave").unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0]["fieldsV1"],
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        );
        // Nothing of helm's: nothing to do.
        assert!(upgrade(&obj(json!([out[0].clone()])), "helm", "stackwave").is_none());
    }
}
