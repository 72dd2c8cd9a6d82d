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
    for (r, o) in store.all() {
        let (name, ns) = (
            crate::store::meta(&o, "name"),
            crate::store::meta(&o, "namespace"),
        );
        let uid = o
            .pointer("/metadata/uid")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        let generation = o
            .pointer("/metadata/generation")
            .and_then(Json::as_i64)
            .unwrap_or(1);
        let kind = r.kind.as_str();
        let known = matches!(
            kind,
            "Deployment"
                | "StatefulSet"
                | "DaemonSet"
                | "ReplicaSet"
                | "Job"
                | "PersistentVolumeClaim"
        ) || rules.ready_kinds.iter().any(|k| k == kind);
        if !known || o.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let since = *seen.entry((uid, generation)).or_insert(now);
        if now.duration_since(since) < rules.delay || rules.never(kind, &name) {
            continue;
        }
        let replicas = o
            .pointer("/spec/replicas")
            .and_then(Json::as_i64)
            .unwrap_or(1);
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
        store.set_status(&r.group, &r.plural, &ns, &name, status);
    }
}

/// The EndpointSlice controller's part: every Service with a selector gets one EndpointSlice
/// (`kubernetes.io/service-name`, owned by the Service) with one ready endpoint per ready
/// replica of the workloads in its namespace whose pod template labels match the selector —
/// none while they are not ready (`pkg/controller/endpointslice` in kube-controller-manager,
/// with workloads standing in for their pods).
pub fn endpoint_slices(store: &mut Store) {
    let Some(services) = store.resource("", "v1", "services").cloned() else {
        return;
    };
    let Some(slices) = store
        .resource("discovery.k8s.io", "v1", "endpointslices")
        .cloned()
    else {
        return;
    };
    let mut workloads = Vec::new();
    for (g, plural) in [
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "replicasets"),
    ] {
        if let Some(r) = store.resource(g, "v1", plural).cloned() {
            workloads.extend(store.list(&r, "", &None));
        }
    }
    for svc in store.list(&services, "", &None) {
        let Some(selector) = svc.pointer("/spec/selector").and_then(Json::as_object) else {
            continue;
        };
        if selector.is_empty() || svc.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let (name, ns) = (
            crate::store::meta(&svc, "name"),
            crate::store::meta(&svc, "namespace"),
        );
        let ready: i64 = workloads
            .iter()
            .filter(|w| crate::store::meta(w, "namespace") == ns)
            .filter(|w| {
                let labels = w.pointer("/spec/template/metadata/labels");
                selector
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            })
            .map(|w| {
                ["/status/readyReplicas", "/status/numberReady"]
                    .iter()
                    .find_map(|p| w.pointer(p).and_then(Json::as_i64))
                    .unwrap_or(0)
            })
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
        let existing = store.get(&slices, &ns, &slice_name).ok();
        if existing.as_ref().is_some_and(|e| {
            e.get("endpoints").cloned().unwrap_or(json!([])) == json!(endpoints)
                && e.get("ports").cloned().unwrap_or(json!([])) == json!(ports)
        }) {
            continue;
        }
        let body = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": ns,
                "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc.pointer("/metadata/uid").cloned().unwrap_or(Json::Null), "controller": true, "blockOwnerDeletion": true}]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports});
        let how = if existing.is_some() {
            crate::store::Write::Replace
        } else {
            crate::store::Write::Create
        };
        let opts = crate::store::WriteOpts {
            manager: "endpointslice-controller.k8s.io".into(),
            ..Default::default()
        };
        let _ = store.write(&slices, &ns, &slice_name, how, body, &opts);
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
