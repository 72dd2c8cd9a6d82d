//! The status the controllers would write, as pure functions of an object, the rules' outcome
//! for it and whether its delay has passed.
//!
//! Sources of the shapes:
//! - Deployment: `pkg/controller/deployment/sync.go` (`calculateStatus`,
//!   `syncRolloutStatus`) and `pkg/controller/deployment/util/deployment_util.go` (condition
//!   reasons `NewReplicaSetAvailable`, `ReplicaSetUpdated`, `ProgressDeadlineExceeded`,
//!   `MinimumReplicasAvailable`/`MinimumReplicasUnavailable` and their messages).
//! - ReplicaSet: `pkg/controller/replicaset/replica_set_utils.go` (`calculateStatus`).
//! - StatefulSet: `pkg/controller/statefulset/stateful_set_control.go` (`updateStatefulSet`
//!   status counts, `currentRevision`/`updateRevision`).
//! - DaemonSet: `pkg/controller/daemon/daemon_controller.go` (`updateDaemonSetStatus`), with
//!   one node standing in for the cluster.
//! - Job: `pkg/controller/job/job_controller.go` (`SuccessCriteriaMet` then `Complete` with
//!   reason `CompletionsReached`; `FailureTarget` then `Failed` with `BackoffLimitExceeded`).
//! - PersistentVolumeClaim: `pkg/controller/volume/persistentvolume` (phase `Bound`, the
//!   claim's access modes and requested capacity).
//!
//! No Pods or ReplicaSets are made: the counts stand for pods that would exist. An image that
//! cannot be pulled leaves every replica unavailable (as `ErrImagePull`/`ImagePullBackOff`).
//! Zero counts are left out, as the API types' `omitempty` does.

use crate::rules::{Outcome, Rules};
use serde_json::{json, Map, Value as Json};

/// Where an object is in its stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its delay has not passed yet.
    Pending,
    /// Its delay has passed.
    Due,
}

/// The kinds whose status this module writes (besides the rules' custom resources).
pub const BUILTIN_KINDS: [(&str, &str); 6] = [
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("", "PersistentVolumeClaim"),
];

/// The images an object's pod template runs (containers and init containers).
pub fn images(o: &Json) -> Vec<&str> {
    let spec = o
        .pointer("/spec/template/spec")
        .or_else(|| o.pointer("/spec/jobTemplate/spec/template/spec"));
    let mut out = Vec::new();
    for list in ["initContainers", "containers"] {
        for c in spec
            .and_then(|s| s.get(list))
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(i) = c.get("image").and_then(Json::as_str) {
                out.push(i);
            }
        }
    }
    out
}

/// The status to write for `o` (of `group`/`kind`), or `None` when nothing should be written
/// (a kind not handled, a Job already finished, a custom resource still pending). `now` is the
/// RFC 3339 time for new timestamps; timestamps of unchanged conditions are kept from `o`.
pub fn desired(
    group: &str,
    kind: &str,
    o: &Json,
    rules: &Rules,
    phase: Phase,
    now: &str,
) -> Option<Json> {
    let name = o
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or("");
    let outcome = rules.outcome(kind, name, images(o));
    let generation = o
        .pointer("/metadata/generation")
        .and_then(Json::as_i64)
        .unwrap_or(1);
    let replicas = o
        .pointer("/spec/replicas")
        .and_then(Json::as_i64)
        .unwrap_or(1);
    let current = o.get("status").cloned().unwrap_or(Json::Null);
    let ready = phase == Phase::Due && outcome == Outcome::Ready;
    let failing = phase == Phase::Due && outcome == Outcome::Failing;
    let revision = format!("{name}-{}", template_hash(o));
    let mut s = match (group, kind) {
        ("apps", "Deployment") => {
            let avail = if ready { replicas } else { 0 };
            let mut s = counts(&[
                ("observedGeneration", generation),
                ("replicas", replicas),
                ("updatedReplicas", replicas),
                ("readyReplicas", avail),
                ("availableReplicas", avail),
                ("unavailableReplicas", replicas - avail),
            ]);
            let available = if avail >= replicas {
                cond(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                cond(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            };
            let progressing = if failing {
                cond(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{revision}\" has timed out progressing."),
                )
            } else if ready {
                cond(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{revision}\" has successfully progressed."),
                )
            } else {
                cond(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{revision}\" is progressing."),
                )
            };
            s.insert("conditions".into(), json!([available, progressing]));
            s
        }
        ("apps", "ReplicaSet") => {
            let avail = if ready { replicas } else { 0 };
            counts(&[
                ("observedGeneration", generation),
                ("replicas", replicas),
                ("fullyLabeledReplicas", replicas),
                ("readyReplicas", avail),
                ("availableReplicas", avail),
            ])
        }
        ("apps", "StatefulSet") => {
            let avail = if ready { replicas } else { 0 };
            let mut s = counts(&[
                ("observedGeneration", generation),
                ("replicas", replicas),
                ("readyReplicas", avail),
                ("currentReplicas", replicas),
                ("updatedReplicas", replicas),
            ]);
            s.insert("availableReplicas".into(), json!(avail));
            s.insert("currentRevision".into(), json!(revision));
            s.insert("updateRevision".into(), json!(revision));
            s.insert("collisionCount".into(), json!(0));
            s
        }
        ("apps", "DaemonSet") => {
            let avail = i64::from(ready);
            let mut s = counts(&[
                ("observedGeneration", generation),
                ("numberReady", avail),
                ("updatedNumberScheduled", 1),
                ("numberAvailable", avail),
                ("numberUnavailable", 1 - avail),
            ]);
            s.insert("currentNumberScheduled".into(), json!(1));
            s.insert("desiredNumberScheduled".into(), json!(1));
            s.insert("numberMisscheduled".into(), json!(0));
            s
        }
        ("batch", "Job") => {
            let finished = current
                .get("conditions")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
                });
            if finished || o.pointer("/spec/suspend") == Some(&json!(true)) {
                return None;
            }
            let start = current
                .get("startTime")
                .cloned()
                .unwrap_or_else(|| json!(now));
            let mut s = Map::new();
            s.insert("startTime".into(), start);
            if ready {
                let completions = o
                    .pointer("/spec/completions")
                    .and_then(Json::as_i64)
                    .unwrap_or(1);
                s.insert("completionTime".into(), json!(now));
                s.insert("succeeded".into(), json!(completions));
                let m = "Reached expected number of succeeded pods";
                s.insert(
                    "conditions".into(),
                    json!([
                        cond("SuccessCriteriaMet", "True", "CompletionsReached", m),
                        cond("Complete", "True", "CompletionsReached", m)
                    ]),
                );
            } else if failing {
                let limit = o
                    .pointer("/spec/backoffLimit")
                    .and_then(Json::as_i64)
                    .unwrap_or(6);
                s.insert("failed".into(), json!(limit + 1));
                let m = "Job has reached the specified backoff limit";
                s.insert(
                    "conditions".into(),
                    json!([
                        cond("FailureTarget", "True", "BackoffLimitExceeded", m),
                        cond("Failed", "True", "BackoffLimitExceeded", m)
                    ]),
                );
            } else {
                s.insert("active".into(), json!(1));
            }
            s.insert("ready".into(), json!(0));
            s.insert("terminating".into(), json!(0));
            s
        }
        ("", "PersistentVolumeClaim") => {
            let mut s = Map::new();
            if ready {
                s.insert("phase".into(), json!("Bound"));
                if let Some(m) = o.pointer("/spec/accessModes") {
                    s.insert("accessModes".into(), m.clone());
                }
                if let Some(st) = o.pointer("/spec/resources/requests/storage") {
                    s.insert("capacity".into(), json!({"storage": st}));
                }
            } else {
                s.insert("phase".into(), json!("Pending"));
            }
            s
        }
        _ => {
            let c = rules.custom(kind)?;
            let conditions = if ready {
                &c.ready
            } else if failing && !c.failed.is_empty() {
                &c.failed
            } else {
                return None;
            };
            let mut s = match &current {
                Json::Object(m) => m.clone(),
                _ => Map::new(),
            };
            s.insert("observedGeneration".into(), json!(generation));
            s.insert("conditions".into(), json!(conditions));
            s
        }
    };
    stamp_conditions(&mut s, &current, now);
    if let Some(t) = current.get("completionTime") {
        s.insert("completionTime".into(), t.clone());
    }
    Some(Json::Object(s))
}

/// Whether two statuses are the same once empty values are dropped (what a server stores).
pub fn same(a: &Json, b: &Json) -> bool {
    let (a, b) = (normalize(a), normalize(b));
    a == b || (empty(&a) && empty(&b))
}

/// `v` without nulls, empty maps and empty lists, recursively.
pub fn normalize(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .filter(|(_, v)| !empty(v))
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn empty(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Object(m) => m.is_empty(),
        Json::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn counts(fields: &[(&str, i64)]) -> Map<String, Json> {
    fields
        .iter()
        .filter(|(_, n)| *n != 0)
        .map(|(k, n)| (k.to_string(), json!(n)))
        .collect()
}

fn cond(kind: &str, status: &str, reason: &str, message: &str) -> Json {
    let mut c = json!({"type": kind, "status": status, "reason": reason});
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    c
}

/// Gives each condition a `lastTransitionTime` (and Deployments' `lastUpdateTime`): the
/// current condition's when its type and status are unchanged, else `now`.
fn stamp_conditions(s: &mut Map<String, Json>, current: &Json, now: &str) {
    let Some(conds) = s.get_mut("conditions").and_then(Json::as_array_mut) else {
        return;
    };
    let before = current.get("conditions").and_then(Json::as_array);
    for c in conds {
        let old = before
            .into_iter()
            .flatten()
            .find(|o| o["type"] == c["type"] && o["status"] == c["status"]);
        for key in ["lastTransitionTime", "lastUpdateTime"] {
            let deployment_style = c["type"] == "Available" || c["type"] == "Progressing";
            if key == "lastUpdateTime" && !deployment_style {
                continue;
            }
            let same_reason = old.is_some_and(|o| o["reason"] == c["reason"]);
            let t = match old.and_then(|o| o.get(key)) {
                Some(t) if key == "lastTransitionTime" || same_reason => t.clone(),
                _ => json!(now),
            };
            c[key] = t;
        }
    }
}

/// A short stable name suffix for an object's pod template, standing in for the
/// `pod-template-hash` (fnv32a over the template, in apimachinery's safe alphabet:
/// `pkg/controller/controller_utils.go` `ComputeHash`, `k8s.io/apimachinery/pkg/util/rand`
/// `SafeEncodeString`).
pub fn template_hash(o: &Json) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = o
        .pointer("/spec/template")
        .map(Json::to_string)
        .unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut out = String::new();
    let mut n = h;
    for _ in 0..10 {
        out.push(ALPHABET[(n % ALPHABET.len() as u32) as usize] as char);
        n /= ALPHABET.len() as u32;
        if n == 0 {
            n = h.rotate_left(out.len() as u32 * 3);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";
    const LATER: &str = "2026-01-01T00:05:00Z";

    fn deployment(replicas: i64, image: &str) -> Json {
        json!({"metadata": {"name": "web", "generation": 3},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn a_deployment_is_progressing_then_available() {
        let r = Rules::default();
        let d = deployment(2, "nginx:1");
        let s = desired("apps", "Deployment", &d, &r, Phase::Pending, NOW).unwrap();
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["unavailableReplicas"], 2);
        assert!(s.get("readyReplicas").is_none(), "zero counts are omitted");
        assert_eq!(s["conditions"][0]["reason"], "MinimumReplicasUnavailable");
        assert_eq!(s["conditions"][1]["reason"], "ReplicaSetUpdated");
        let s = desired("apps", "Deployment", &d, &r, Phase::Due, NOW).unwrap();
        assert_eq!(
            (s["readyReplicas"].clone(), s["availableReplicas"].clone()),
            (json!(2), json!(2))
        );
        assert_eq!(s["conditions"][0]["reason"], "MinimumReplicasAvailable");
        assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
        let msg = s["conditions"][1]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("ReplicaSet \"web-")
                && msg.ends_with("\" has successfully progressed."),
            "{msg}"
        );
    }

    #[test]
    fn an_image_that_cannot_be_pulled_never_makes_it_available() {
        let r = Rules::default();
        let d = deployment(1, "registry.invalid/nope:1");
        let s = desired("apps", "Deployment", &d, &r, Phase::Due, NOW).unwrap();
        assert_eq!(s["unavailableReplicas"], 1);
        assert_eq!(s["conditions"][0]["status"], "False");
    }

    #[test]
    fn a_failing_deployment_exceeds_its_progress_deadline() {
        let r = Rules::default().failing("Deployment/web");
        let s = desired(
            "apps",
            "Deployment",
            &deployment(1, "nginx"),
            &r,
            Phase::Due,
            NOW,
        )
        .unwrap();
        assert_eq!(s["conditions"][1]["status"], "False");
        assert_eq!(s["conditions"][1]["reason"], "ProgressDeadlineExceeded");
    }

    #[test]
    fn unchanged_conditions_keep_their_times_so_a_second_pass_writes_nothing() {
        let r = Rules::default();
        let mut d = deployment(1, "nginx");
        d["status"] = desired("apps", "Deployment", &d, &r, Phase::Due, NOW).unwrap();
        let again = desired("apps", "Deployment", &d, &r, Phase::Due, LATER).unwrap();
        assert!(same(&again, &d["status"]), "{again} vs {}", d["status"]);
    }

    #[test]
    fn jobs_complete_or_fail_once() {
        let r = Rules::default();
        let mut j = json!({"metadata": {"name": "sync"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        let s = desired("batch", "Job", &j, &r, Phase::Pending, NOW).unwrap();
        assert_eq!(s["active"], 1);
        j["status"] = s;
        let s = desired("batch", "Job", &j, &r, Phase::Due, LATER).unwrap();
        assert_eq!(s["startTime"], NOW, "the start time is kept");
        assert_eq!(s["succeeded"], 1);
        assert_eq!(s["conditions"][1]["type"], "Complete");
        j["status"] = s;
        assert!(
            desired("batch", "Job", &j, &r, Phase::Due, LATER).is_none(),
            "a finished Job stays"
        );
        let r = Rules::default().failing("Job/sync");
        j["status"] = json!({});
        let s = desired("batch", "Job", &j, &r, Phase::Due, NOW).unwrap();
        assert_eq!(s["failed"], 7);
        assert_eq!(s["conditions"][1]["reason"], "BackoffLimitExceeded");
    }

    #[test]
    fn claims_bind_with_their_requested_capacity() {
        let pvc = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let r = Rules::default();
        let s = desired("", "PersistentVolumeClaim", &pvc, &r, Phase::Pending, NOW).unwrap();
        assert_eq!(s["phase"], "Pending");
        let s = desired("", "PersistentVolumeClaim", &pvc, &r, Phase::Due, NOW).unwrap();
        assert_eq!(
            s,
            json!({"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}})
        );
    }

    #[test]
    fn operator_resources_get_their_operators_conditions() {
        let r = Rules::default();
        let cr = json!({"metadata": {"name": "main", "generation": 2}, "spec": {}});
        assert!(desired(
            "rabbitmq.com",
            "RabbitmqCluster",
            &cr,
            &r,
            Phase::Pending,
            NOW
        )
        .is_none());
        let s = desired("rabbitmq.com", "RabbitmqCluster", &cr, &r, Phase::Due, NOW).unwrap();
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "AllReplicasReady",
                "ClusterAvailable",
                "NoWarnings",
                "ReconcileSuccess"
            ]
        );
        assert_eq!(s["observedGeneration"], 2);
        let r = Rules::default().failing("RabbitmqCluster/main");
        let s = desired("rabbitmq.com", "RabbitmqCluster", &cr, &r, Phase::Due, NOW).unwrap();
        assert_eq!(s["conditions"][3]["status"], "False");
        assert!(desired("example.com", "Widget", &cr, &r, Phase::Due, NOW).is_none());
    }

    #[test]
    fn empty_values_compare_as_absent() {
        assert!(same(&json!({"a": 1, "b": {}, "c": []}), &json!({"a": 1})));
        assert!(
            same(&json!([]), &Json::Null),
            "an empty list is stored absent"
        );
        assert!(!same(&json!({"a": 1}), &json!({"a": 2})));
    }
}
