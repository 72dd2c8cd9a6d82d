//! The status simulator: stands in for the controllers a real cluster runs, so health gates can
//! be tested. After `delay` from a workload's latest generation it writes a ready status:
//! Deployments/ReplicaSets available, StatefulSets and DaemonSets ready, Jobs complete, PVCs
//! bound, and custom resources of the `ready_kinds` with a `Ready=True` condition. Objects that
//! match `never_ready` (`Kind/name`, or `Kind/*`) stay unready forever.

use crate::store::Store;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Simulator rules.
#[derive(Debug, Clone)]
pub struct SimRules {
    /// Time from a new generation to the ready status.
    pub delay: Duration,
    /// `Kind/name` or `Kind/*` patterns that never become ready.
    pub never_ready: Vec<String>,
    /// Custom resource kinds that get `Ready=True` (e.g. `MariaDB`, `RabbitmqCluster`).
    pub ready_kinds: Vec<String>,
    /// Whether the simulator runs at all.
    pub enabled: bool,
}

impl Default for SimRules {
    fn default() -> Self {
        SimRules {
            delay: Duration::from_millis(200),
            never_ready: Vec::new(),
            ready_kinds: vec![
                "MariaDB".into(),
                "RabbitmqCluster".into(),
                "Database".into(),
                "User".into(),
                "Grant".into(),
            ],
            enabled: true,
        }
    }
}

impl SimRules {
    fn never(&self, kind: &str, name: &str) -> bool {
        self.never_ready
            .iter()
            .any(|p| p == &format!("{kind}/{name}") || p == &format!("{kind}/*"))
    }
}

/// One simulation pass over the store. `seen` remembers when each (uid, generation) appeared.
pub fn tick(store: &mut Store, rules: &SimRules, seen: &mut HashMap<(String, i64), Instant>) {
    if !rules.enabled {
        return;
    }
    let now = Instant::now();
    // Only the kinds the simulator moves, read borrowed (this runs every 25 ms over the whole
    // store: cloning every object each time cost more than the API calls under test).
    let kinds: Vec<(String, String, String)> = store
        .resources
        .iter()
        .filter(|r| {
            matches!(
                r.kind.as_str(),
                "Deployment"
                    | "StatefulSet"
                    | "DaemonSet"
                    | "ReplicaSet"
                    | "Job"
                    | "PersistentVolumeClaim"
            ) || rules.ready_kinds.contains(&r.kind)
        })
        .map(|r| (r.group.clone(), r.plural.clone(), r.kind.clone()))
        .collect();
    let mut due = Vec::new();
    for (group, plural, kind) in &kinds {
        for o in store.objects_of(group, plural) {
            if o.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let uid = o
                .pointer("/metadata/uid")
                .and_then(Json::as_str)
                .unwrap_or("");
            let generation = o
                .pointer("/metadata/generation")
                .and_then(Json::as_i64)
                .unwrap_or(1);
            let since = *seen.entry((uid.to_string(), generation)).or_insert(now);
            let name = o
                .pointer("/metadata/name")
                .and_then(Json::as_str)
                .unwrap_or("");
            if now.duration_since(since) < rules.delay || rules.never(kind, name) {
                continue;
            }
            let replicas = o
                .pointer("/spec/replicas")
                .and_then(Json::as_i64)
                .unwrap_or(1);
            let ns = o
                .pointer("/metadata/namespace")
                .and_then(Json::as_str)
                .unwrap_or("");
            due.push((
                group.clone(),
                plural.clone(),
                kind.clone(),
                ns.to_string(),
                name.to_string(),
                generation,
                replicas,
                o.get("status").cloned(),
            ));
        }
    }
    for (group, plural, kind, ns, name, generation, replicas, current) in due {
        let kind = kind.as_str();
        let status = match kind {
            "Deployment" | "ReplicaSet" => json!({
                "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": replicas, "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed."}
                ]
            }),
            "StatefulSet" => json!({
                "observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas, "currentReplicas": replicas,
                "updatedReplicas": replicas, "availableReplicas": replicas, "currentRevision": format!("{name}-1"), "updateRevision": format!("{name}-1")
            }),
            "DaemonSet" => json!({
                "observedGeneration": generation, "desiredNumberScheduled": 1, "currentNumberScheduled": 1,
                "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1, "numberMisscheduled": 0
            }),
            "Job" => {
                json!({"succeeded": 1, "active": 0, "conditions": [{"type": "Complete", "status": "True"}]})
            }
            "PersistentVolumeClaim" => json!({"phase": "Bound"}),
            // The RabbitMQ cluster operator's conditions (rabbitmq/cluster-operator
            // `api/v1beta1/rabbitmqcluster_status.go`).
            "RabbitmqCluster" => json!({"observedGeneration": generation, "conditions": [
                {"type": "AllReplicasReady", "status": "True", "reason": "AllPodsAreReady"},
                {"type": "ClusterAvailable", "status": "True", "reason": "AtLeastOneEndpointAvailable"},
                {"type": "NoWarnings", "status": "True", "reason": "NoWarnings"},
                {"type": "ReconcileSuccess", "status": "True", "reason": "Success"}
            ]}),
            _ => {
                json!({"observedGeneration": generation, "conditions": [{"type": "Ready", "status": "True", "reason": "Simulated", "message": "ready (kube-testserver simulator)"}]})
            }
        };
        if current.as_ref() != Some(&status) {
            store.set_status(&group, &plural, &ns, &name, status);
        }
    }
}

/// The EndpointSlice controller's part: every Service with a selector gets one EndpointSlice
/// (`kubernetes.io/service-name`, owned by the Service) with one ready endpoint per ready
/// replica of the workloads in its namespace whose pod template labels match the selector —
/// none while they are not ready (`pkg/controller/endpointslice` in kube-controller-manager,
/// with workloads standing in for their pods).
pub fn endpoint_slices(store: &mut Store) {
    let Some(slices) = store
        .resource("discovery.k8s.io", "v1", "endpointslices")
        .cloned()
    else {
        return;
    };
    // Ready replicas by namespace and pod-template labels (borrowed: this runs after every
    // change, so nothing is cloned unless a slice must be written).
    let mut ready_by_ns: HashMap<&str, Vec<(&Json, i64)>> = HashMap::new();
    for plural in ["deployments", "statefulsets", "daemonsets", "replicasets"] {
        for w in store.objects_of("apps", plural) {
            let ns = w
                .pointer("/metadata/namespace")
                .and_then(Json::as_str)
                .unwrap_or("");
            let ready = ["/status/readyReplicas", "/status/numberReady"]
                .iter()
                .find_map(|p| w.pointer(p).and_then(Json::as_i64))
                .unwrap_or(0);
            if let Some(labels) = w.pointer("/spec/template/metadata/labels") {
                ready_by_ns.entry(ns).or_default().push((labels, ready));
            }
        }
    }
    let mut writes = Vec::new();
    for svc in store.objects_of("", "services") {
        let Some(selector) = svc.pointer("/spec/selector").and_then(Json::as_object) else {
            continue;
        };
        if selector.is_empty() || svc.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let (name, ns) = (
            crate::store::meta(svc, "name"),
            crate::store::meta(svc, "namespace"),
        );
        let ready: i64 = ready_by_ns
            .get(ns.as_str())
            .into_iter()
            .flatten()
            .filter(|(labels, _)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|(_, r)| *r)
            .sum();
        let endpoints: Vec<Json> = (0..ready.clamp(0, 16))
            .map(|i| json!({"addresses": [format!("10.244.0.{}", i + 10)], "conditions": {"ready": true, "serving": true, "terminating": false}}))
            .collect();
        let ports: Vec<Json> = svc
            .pointer("/spec/ports")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                let port = p.get("targetPort").filter(|t| t.is_i64()).or(p.get("port"));
                json!({"name": p.get("name").cloned().unwrap_or(json!("")), "port": port, "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))})
            })
            .collect();
        let slice_name = format!("{name}-sim00");
        let existing = store.stored(&slices, &ns, &slice_name);
        // Stored lists drop out when empty (omitempty): absent equals `[]`.
        let list = |e: &Json, k: &str| {
            e.get(k)
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let same = existing
            .is_some_and(|e| list(e, "endpoints") == endpoints && list(e, "ports") == ports);
        if same {
            continue;
        }
        let body = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": ns,
                "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc.pointer("/metadata/uid").cloned().unwrap_or(Json::Null), "controller": true, "blockOwnerDeletion": true}]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports});
        writes.push((ns, slice_name, existing.is_some(), body));
    }
    let opts = crate::store::WriteOpts {
        manager: "endpointslice-controller.k8s.io".into(),
        ..Default::default()
    };
    for (ns, name, exists, body) in writes {
        let how = if exists {
            crate::store::Write::Replace
        } else {
            crate::store::Write::Create
        };
        let _ = store.write(&slices, &ns, &name, how, body, &opts);
    }
}

/// Runs the simulator until the store is dropped.
pub fn spawn(store: Arc<Mutex<Store>>, rules: Arc<Mutex<SimRules>>) {
    tokio::spawn(async move {
        let mut seen = HashMap::new();
        let mut endpoints_at = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let r = rules.lock().map(|r| r.clone()).unwrap_or_default();
            if Arc::strong_count(&store) == 1 {
                return;
            }
            if let Ok(mut s) = store.lock() {
                tick(&mut s, &r, &mut seen);
                // Endpoints follow Services and workload status: only after a change.
                if r.enabled && s.resource_version() != endpoints_at {
                    endpoint_slices(&mut s);
                    endpoints_at = s.resource_version();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Write, WriteOpts};

    fn create(s: &mut Store, group: &str, plural: &str, ns: &str, body: Json) {
        let r = s.resource(group, "v1", plural).cloned().expect("resource");
        let name = crate::store::meta(&body, "name");
        s.write(&r, ns, &name, Write::Create, body, &WriteOpts::default())
            .expect("created");
    }

    #[test]
    fn endpoint_slices_follow_ready_workloads_and_then_settle() {
        let mut s = Store::new();
        create(
            &mut s,
            "",
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}),
        );
        create(
            &mut s,
            "",
            "services",
            "t",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hook"},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 443, "targetPort": 8443}]}}),
        );
        endpoint_slices(&mut s);
        let slices = s
            .resource("discovery.k8s.io", "v1", "endpointslices")
            .cloned()
            .unwrap();
        let slice = s
            .get(&slices, "t", "hook-sim00")
            .expect("a slice for the Service");
        assert!(slice["endpoints"].as_array().is_none_or(|e| e.is_empty()));
        assert_eq!(slice["ports"][0]["port"], 8443);
        // Nothing changed: no write (a write would wake the pass again, for ever).
        let rv = s.resource_version();
        endpoint_slices(&mut s);
        assert_eq!(s.resource_version(), rv);
        // A ready workload with matching pod labels gives one ready endpoint per replica.
        create(
            &mut s,
            "apps",
            "deployments",
            "t",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}),
        );
        s.set_status("apps", "deployments", "t", "d", json!({"readyReplicas": 2}));
        endpoint_slices(&mut s);
        let slice = s.get(&slices, "t", "hook-sim00").unwrap();
        assert_eq!(slice["endpoints"].as_array().map(Vec::len), Some(2));
        let rv = s.resource_version();
        endpoint_slices(&mut s);
        assert_eq!(s.resource_version(), rv);
    }
}
