//! Fields a HorizontalPodAutoscaler owns: an ignore rule with `when: hpa`
//! (`policies/drift-ignore.yaml`) applies to an object only when an `autoscaling/v2`
//! HorizontalPodAutoscaler in its namespace targets it — `spec.scaleTargetRef` names its API
//! group (from `apiVersion`), kind and name. For such an object Stackwave neither reports nor
//! applies the rule's pointers (`/spec/replicas`): they are dropped from the applied
//! configuration so the HPA owns them, as Argo CD and Flux tell their users to do.
//!
//! Dropping a field from a server-side apply configuration removes it from the object when no
//! other manager owns it (the Deployment would fall back to 1 replica). So before Stackwave
//! stops applying a field it owns, the field is handed over: applied at its live value by the
//! field manager [`HANDOVER_MANAGER`], the procedure of the Kubernetes documentation
//! ("Server-Side Apply", *Transferring ownership*: `--field-manager=handover-to-hpa`).

use super::drift::IgnoreRule;
use super::{api_err, group_of, name_of, namespace_of, object_id, Cluster, ClusterError};
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

/// The field manager that takes over fields Stackwave releases to an HPA.
pub const HANDOVER_MANAGER: &str = "stackwave-handover";

/// The condition name of rules that hold only for HPA targets.
pub const WHEN_HPA: &str = "hpa";

/// Which objects HPAs target: namespace → (group, kind, name) of each `scaleTargetRef`.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    by_namespace: BTreeMap<String, BTreeSet<(String, String, String)>>,
}

impl Targets {
    /// Records the target of one HPA object (live or desired).
    pub fn add(&mut self, hpa: &Json) {
        let r = &hpa["spec"]["scaleTargetRef"];
        let (Some(kind), Some(name)) = (r["kind"].as_str(), r["name"].as_str()) else {
            return;
        };
        let group = group_of(r).to_string();
        self.by_namespace
            .entry(namespace_of(hpa).to_string())
            .or_default()
            .insert((group, kind.to_string(), name.to_string()));
    }

    /// Lists the `autoscaling/v2` HPAs of each namespace (one request per namespace) into
    /// the targets. A server that does not serve the kind has none.
    ///
    /// # Errors
    /// API errors.
    pub async fn load<'a>(
        cluster: &Cluster,
        namespaces: impl IntoIterator<Item = &'a str>,
    ) -> Result<Targets, ClusterError> {
        let mut t = Targets::default();
        let namespaces: BTreeSet<&str> = namespaces.into_iter().filter(|n| !n.is_empty()).collect();
        for ns in namespaces {
            let sample = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                "metadata": {"namespace": ns}});
            match cluster.list(&sample, "").await {
                Ok(hpas) => hpas.iter().for_each(|h| t.add(h)),
                Err(ClusterError::UnknownKind { .. }) => return Ok(t),
                Err(e) => return Err(e),
            }
        }
        Ok(t)
    }

    /// Whether an HPA targets `o` (same namespace, group, kind and name).
    pub fn targets(&self, o: &Json) -> bool {
        self.by_namespace.get(namespace_of(o)).is_some_and(|s| {
            s.contains(&(
                group_of(o).to_string(),
                o["kind"].as_str().unwrap_or("").to_string(),
                name_of(o).to_string(),
            ))
        })
    }
}

/// Whether an ignore rule selects `o` (group, kind, name; empty matches any).
pub fn selects(r: &IgnoreRule, o: &Json) -> bool {
    (r.group.is_empty() || r.group == group_of(o))
        && (r.kind.is_empty() || r.kind == o["kind"].as_str().unwrap_or(""))
        && (r.name.is_empty() || r.name == name_of(o))
}

/// The pointers of `when: hpa` rules that hold for `o` (an HPA targets it): the fields
/// Stackwave must neither report nor apply.
pub fn released(o: &Json, rules: &[IgnoreRule], targets: &Targets) -> Vec<String> {
    if !targets.targets(o) {
        return Vec::new();
    }
    rules
        .iter()
        .filter(|r| r.when == WHEN_HPA && selects(r, o))
        .flat_map(|r| r.pointers.iter().cloned())
        .collect()
}

/// Removes the fields at `pointers` from a desired object.
pub fn strip(o: &mut Json, pointers: &[String]) {
    for p in pointers {
        let Some((parent, leaf)) = p.rsplit_once('/') else {
            continue;
        };
        let leaf = leaf.replace("~1", "/").replace("~0", "~");
        if let Some(m) = o.pointer_mut(parent).and_then(Json::as_object_mut) {
            m.remove(&leaf);
        }
    }
}

/// Whether Stackwave's apply entry in `live`'s managed fields owns the field at `pointer`
/// (map fields only: `/spec/replicas` → `f:spec` → `f:replicas`).
pub fn stackwave_owns(live: &Json, pointer: &str) -> bool {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
    else {
        return false;
    };
    entries
        .iter()
        .filter(|e| e["manager"] == super::FIELD_MANAGER && e["operation"] == "Apply")
        .any(|e| {
            let mut node = &e["fieldsV1"];
            for seg in pointer.split('/').skip(1) {
                let seg = seg.replace("~1", "/").replace("~0", "~");
                node = &node[format!("f:{seg}")];
            }
            !node.is_null()
        })
}

/// Hands the fields at `pointers` that Stackwave owns in `live` over to
/// [`HANDOVER_MANAGER`], at their live values (a server-side apply of just those fields), so
/// an apply of `desired` without them leaves them as they are.
///
/// # Errors
/// API errors from the handover apply.
pub async fn hand_over(
    cluster: &Cluster,
    desired: &Json,
    live: &Json,
    pointers: &[String],
) -> Result<(), ClusterError> {
    let owned: Vec<&String> = pointers
        .iter()
        .filter(|p| stackwave_owns(live, p) && live.pointer(p).is_some())
        .collect();
    if owned.is_empty() {
        return Ok(());
    }
    let mut partial = json!({"apiVersion": desired["apiVersion"], "kind": desired["kind"],
                             "metadata": {"name": name_of(desired)}});
    if !namespace_of(desired).is_empty() {
        partial["metadata"]["namespace"] = json!(namespace_of(desired));
    }
    for p in owned {
        let mut node = &mut partial;
        let segs: Vec<String> = p
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        for (i, seg) in segs.iter().enumerate() {
            if i + 1 == segs.len() {
                node[seg.as_str()] = live.pointer(p).cloned().unwrap_or(Json::Null);
            } else {
                node = &mut node[seg.as_str()];
            }
        }
    }
    let id = object_id(desired);
    let api = cluster.api_for(desired).await?;
    cluster.count(1);
    api.patch(
        name_of(desired),
        &PatchParams::apply(HANDOVER_MANAGER),
        &Patch::Apply(&partial),
    )
    .await
    .map_err(|e| api_err(&cluster.server, &id, e))?;
    Ok(())
}

/// The HPA targets in the namespaces of `objs` (component → objects): live HPAs (one list
/// per namespace) and the HPAs among `objs` themselves (a chart that ships its HPA).
///
/// # Errors
/// API errors.
pub async fn targets_of(
    cluster: &Cluster,
    objs: &BTreeMap<String, Vec<Json>>,
) -> Result<Targets, ClusterError> {
    let all = || objs.values().flatten();
    let mut t = Targets::load(cluster, all().map(namespace_of)).await?;
    for o in all().filter(|o| o["kind"] == "HorizontalPodAutoscaler") {
        t.add(o);
    }
    Ok(t)
}

/// Drops from `objs` (component → objects) the fields HPAs own (`when: hpa` ignore rules
/// whose object an HPA targets) and returns them per object id, so applies hand them over
/// instead of resetting them.
///
/// # Errors
/// API errors listing HPAs.
pub async fn release_all(
    cluster: &Cluster,
    ignore: &[IgnoreRule],
    objs: &mut BTreeMap<String, Vec<Json>>,
) -> Result<BTreeMap<String, Vec<String>>, ClusterError> {
    let t = targets_of(cluster, objs).await?;
    let mut out = BTreeMap::new();
    for o in objs.values_mut().flatten() {
        let r = released(o, ignore, &t);
        if !r.is_empty() {
            strip(o, &r);
            out.insert(object_id(o), r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<IgnoreRule> {
        super::super::drift::default_ignore().unwrap()
    }

    #[test]
    fn only_targeted_objects_release_replicas() {
        let d = |name: &str| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "openstack"}, "spec": {"replicas": 2}})
        };
        let mut t = Targets::default();
        t.add(&json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "keystone-api", "namespace": "openstack"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "keystone-api"}}}));
        assert_eq!(
            released(&d("keystone-api"), &rules(), &t),
            vec!["/spec/replicas"]
        );
        assert!(released(&d("nova-conductor"), &rules(), &t).is_empty());
        // Another namespace, or another group with the same kind name, is not a target.
        let mut other_ns = d("keystone-api");
        other_ns["metadata"]["namespace"] = json!("staging");
        assert!(released(&other_ns, &rules(), &t).is_empty());
        let mut other_group = d("keystone-api");
        other_group["apiVersion"] = json!("example.com/v1");
        assert!(!t.targets(&other_group));
        let mut o = d("keystone-api");
        strip(&mut o, &released(&d("keystone-api"), &rules(), &t));
        assert_eq!(o["spec"], json!({}));
    }

    #[test]
    fn ownership_is_read_from_stackwaves_apply_entry() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "stackwave", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}},
            {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:paused": {}}}}
        ]}});
        assert!(stackwave_owns(&live, "/spec/replicas"));
        assert!(!stackwave_owns(&live, "/spec/paused"));
        assert!(!stackwave_owns(&live, "/spec/minReadySeconds"));
    }
}
