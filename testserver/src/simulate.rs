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
            _ => {
                json!({"observedGeneration": generation, "conditions": [{"type": "Ready", "status": "True", "reason": "Simulated", "message": "ready (kube-testserver simulator)"}]})
            }
        };
        store.set_status(&r.group, &r.plural, &ns, &name, status);
    }
}

/// Runs the simulator until the store is dropped.
pub fn spawn(store: Arc<Mutex<Store>>, rules: Arc<Mutex<SimRules>>) {
    tokio::spawn(async move {
        let mut seen = HashMap::new();
        loop {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let r = rules.lock().map(|r| r.clone()).unwrap_or_default();
            if Arc::strong_count(&store) == 1 {
                return;
            }
            if let Ok(mut s) = store.lock() {
                tick(&mut s, &r, &mut seen);
            }
        }
    });
}
