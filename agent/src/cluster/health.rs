//! Health with kstatus semantics (`sigs.k8s.io/cli-utils/pkg/kstatus/status`): `Current`,
//! `InProgress` or `Failed`, always checked against `observedGeneration` so a status from an
//! older generation never counts. Custom resources use the rules in `policies/health.yaml`,
//! then a generic `Ready` condition.

use serde_json::Value as Json;

/// kstatus result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Fully reconciled and ready.
    Current,
    /// Still rolling out; the message says what is awaited.
    InProgress(String),
    /// Failed; the message says why.
    Failed(String),
}

impl Health {
    /// Whether the object is ready.
    pub fn is_current(&self) -> bool {
        matches!(self, Health::Current)
    }
}

/// A custom health rule (data).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Rule {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Condition meaning ready.
    pub ready: Cond,
    /// Condition meaning failed.
    #[serde(default)]
    pub failed: Option<Cond>,
}

/// A condition type and status.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Cond {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `status`.
    pub status: String,
}

/// The shipped rules (`policies/health.yaml`).
///
/// # Errors
/// A malformed file, naming it and the line ([`super::policy::load`]).
pub fn default_rules() -> Result<Vec<Rule>, super::policy::PolicyError> {
    super::policy::health(super::policy::PolicyTexts::SHIPPED.health)
}

fn i(o: &Json, p: &str) -> i64 {
    o.pointer(p).and_then(Json::as_i64).unwrap_or(0)
}

fn condition<'a>(o: &'a Json, t: &str) -> Option<&'a Json> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

fn cond_is(o: &Json, t: &str, status: &str) -> bool {
    condition(o, t).is_some_and(|c| c["status"] == status)
}

/// Computes an object's health.
pub fn health(o: &Json, rules: &[Rule]) -> Health {
    let kind = o["kind"].as_str().unwrap_or("");
    let group = super::group_of(o);
    let generation = i(o, "/metadata/generation");
    let observed = o
        .pointer("/status/observedGeneration")
        .and_then(Json::as_i64);
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return Health::InProgress("being deleted".into());
    }
    if let Some(og) = observed {
        if generation > 0 && og < generation {
            return Health::InProgress(format!(
                "observedGeneration {og} < generation {generation}"
            ));
        }
    }
    let want = |p: &str| o.pointer(p).and_then(Json::as_i64);
    match kind {
        "Deployment" => {
            if observed.is_none() {
                return Health::InProgress("no status yet".into());
            }
            let replicas = want("/spec/replicas").unwrap_or(1);
            if condition(o, "Progressing")
                .is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded")
            {
                return Health::Failed("progress deadline exceeded".into());
            }
            let (upd, avail, ready) = (
                i(o, "/status/updatedReplicas"),
                i(o, "/status/availableReplicas"),
                i(o, "/status/readyReplicas"),
            );
            if upd < replicas || avail < replicas || ready < replicas {
                return Health::InProgress(format!("{avail}/{replicas} available, {upd} updated"));
            }
            Health::Current
        }
        "StatefulSet" => {
            if observed.is_none() {
                return Health::InProgress("no status yet".into());
            }
            let replicas = want("/spec/replicas").unwrap_or(1);
            let ready = i(o, "/status/readyReplicas");
            if ready < replicas {
                return Health::InProgress(format!("{ready}/{replicas} ready"));
            }
            if o.pointer("/status/currentRevision") != o.pointer("/status/updateRevision") {
                return Health::InProgress("rolling update in progress".into());
            }
            Health::Current
        }
        "DaemonSet" => {
            if observed.is_none() {
                return Health::InProgress("no status yet".into());
            }
            let desired = i(o, "/status/desiredNumberScheduled");
            if i(o, "/status/numberAvailable") < desired
                || i(o, "/status/updatedNumberScheduled") < desired
            {
                return Health::InProgress(format!(
                    "{}/{desired} available",
                    i(o, "/status/numberAvailable")
                ));
            }
            Health::Current
        }
        "ReplicaSet" => {
            let replicas = want("/spec/replicas").unwrap_or(1);
            if i(o, "/status/availableReplicas") < replicas {
                return Health::InProgress(format!(
                    "{}/{replicas} available",
                    i(o, "/status/availableReplicas")
                ));
            }
            Health::Current
        }
        "Job" => {
            if cond_is(o, "Failed", "True") {
                return Health::Failed(
                    condition(o, "Failed")
                        .and_then(|c| c["message"].as_str())
                        .unwrap_or("job failed")
                        .to_string(),
                );
            }
            if cond_is(o, "Complete", "True") {
                return Health::Current;
            }
            Health::InProgress("job not complete".into())
        }
        "CustomResourceDefinition" => {
            if cond_is(o, "Established", "True") {
                Health::Current
            } else {
                Health::InProgress("CRD not Established".into())
            }
        }
        "PersistentVolumeClaim" => {
            if o.pointer("/status/phase") == Some(&Json::from("Bound")) {
                Health::Current
            } else {
                Health::InProgress("PVC not Bound".into())
            }
        }
        // kstatus: a LoadBalancer Service waits for its ingress; others are Current (a
        // webhook backend also needs ready endpoints: see [`endpoints_health`]).
        "Service" => {
            let lb = o.pointer("/spec/type") == Some(&Json::from("LoadBalancer"));
            let ingress = o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Json::as_array)
                .is_some_and(|a| !a.is_empty());
            if lb && !ingress {
                Health::InProgress("awaiting a load balancer ingress".into())
            } else {
                Health::Current
            }
        }
        "Namespace" => {
            if o.pointer("/status/phase") == Some(&Json::from("Terminating")) {
                Health::InProgress("namespace terminating".into())
            } else {
                Health::Current
            }
        }
        _ => {
            if let Some(rule) = rules.iter().find(|r| r.kind == kind && r.group == group) {
                if let Some(f) = &rule.failed {
                    if cond_is(o, &f.kind, &f.status) {
                        return Health::Failed(format!("condition {}={}", f.kind, f.status));
                    }
                }
                return if cond_is(o, &rule.ready.kind, &rule.ready.status) {
                    Health::Current
                } else {
                    Health::InProgress(format!(
                        "awaiting condition {}={}",
                        rule.ready.kind, rule.ready.status
                    ))
                };
            }
            // Generic kstatus: Ready / Stalled / Reconciling conditions; no status means ready.
            if cond_is(o, "Stalled", "True") {
                return Health::Failed("Stalled".into());
            }
            if cond_is(o, "Reconciling", "True") {
                return Health::InProgress("Reconciling".into());
            }
            if condition(o, "Ready").is_some() && !cond_is(o, "Ready", "True") {
                return Health::InProgress("Ready is not True".into());
            }
            Health::Current
        }
    }
}

/// Whether `o` holds condition `kind` with status `True`, as `kubectl wait
/// --for=condition=KIND` decides (kubectl `pkg/cmd/wait/condition.go`: the condition type
/// compared case-insensitively, a condition whose own `observedGeneration` is older than the
/// object's `generation` not counting), with kstatus's object-level rule on top: a
/// `status.observedGeneration` older than `metadata.generation` is still in progress
/// (cli-utils `kstatus/status/core.go`), so an `Available=True` left from the previous
/// rollout of a Deployment does not pass. Never `Failed`: like `kubectl wait`, a gate waits
/// until its timeout.
pub fn condition_health(o: &Json, kind: &str) -> Health {
    let generation = i(o, "/metadata/generation");
    if let Some(og) = o
        .pointer("/status/observedGeneration")
        .and_then(Json::as_i64)
    {
        if generation > 0 && og < generation {
            return Health::InProgress(format!(
                "observedGeneration {og} < generation {generation}"
            ));
        }
    }
    let found = o
        .pointer("/status/conditions")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .find(|c| {
            c["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
        });
    let Some(c) = found else {
        return Health::InProgress(format!("no condition {kind} yet"));
    };
    if let Some(og) = c["observedGeneration"].as_i64() {
        if generation > 0 && og < generation {
            return Health::InProgress(format!(
                "condition {kind} is of generation {og} < {generation}"
            ));
        }
    }
    let status = c["status"].as_str().unwrap_or("");
    if status.eq_ignore_ascii_case("True") {
        return Health::Current;
    }
    let why = [c["reason"].as_str(), c["message"].as_str()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    Health::InProgress(if why.is_empty() {
        format!("condition {kind} is {status}")
    } else {
        format!("condition {kind} is {status} ({why})")
    })
}

/// The Services that back webhooks among `objs`, as `(namespace, name)`: admission webhooks
/// (`Mutating`/`ValidatingWebhookConfiguration` `webhooks[].clientConfig.service`), CRD
/// conversion webhooks (`spec.conversion.webhook.clientConfig.service`) and aggregated APIs
/// (`APIService` `spec.service`). Until such a Service has ready endpoints, writes that go
/// through it fail, so a wave holding one waits for them.
pub fn webhook_backends(objs: &[Json]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |svc: Option<&Json>| {
        if let Some(s) = svc {
            let (ns, name) = (s["namespace"].as_str(), s["name"].as_str());
            if let (Some(ns), Some(name)) = (ns, name) {
                let key = (ns.to_string(), name.to_string());
                if !out.contains(&key) {
                    out.push(key);
                }
            }
        }
    };
    for o in objs {
        match o["kind"].as_str().unwrap_or("") {
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
                for w in o["webhooks"].as_array().into_iter().flatten() {
                    add(w.pointer("/clientConfig/service"));
                }
            }
            "CustomResourceDefinition" => {
                add(o.pointer("/spec/conversion/webhook/clientConfig/service"))
            }
            "APIService" => add(o.pointer("/spec/service")),
            _ => {}
        }
    }
    out
}

/// Health of a webhook backend Service from its EndpointSlices (`discovery.k8s.io/v1`,
/// labelled `kubernetes.io/service-name`): Current once one endpoint is ready — an unset
/// `conditions.ready` counts as ready (EndpointSlice API docs) — InProgress otherwise.
pub fn endpoints_health(slices: &[Json]) -> Health {
    let ready = slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .any(|e| e.pointer("/conditions/ready") != Some(&Json::Bool(false)));
    if ready {
        Health::Current
    } else {
        Health::InProgress("webhook Service has no ready endpoints".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn services_and_webhook_backends() {
        let rules = default_rules().unwrap();
        let svc = json!({"kind": "Service", "apiVersion": "v1", "spec": {"type": "ClusterIP"}});
        assert_eq!(health(&svc, &rules), Health::Current);
        let mut lb =
            json!({"kind": "Service", "apiVersion": "v1", "spec": {"type": "LoadBalancer"}});
        assert!(matches!(health(&lb, &rules), Health::InProgress(_)));
        lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}});
        assert_eq!(health(&lb, &rules), Health::Current);
        let hooks = json!({"kind": "ValidatingWebhookConfiguration", "apiVersion": "admissionregistration.k8s.io/v1",
            "webhooks": [{"name": "a", "clientConfig": {"service": {"namespace": "ops", "name": "hook"}}},
                         {"name": "b", "clientConfig": {"url": "https://example.invalid"}}]});
        let crd = json!({"kind": "CustomResourceDefinition", "spec": {"conversion": {"strategy": "Webhook",
            "webhook": {"clientConfig": {"service": {"namespace": "ops", "name": "conv"}}}}}});
        assert_eq!(
            webhook_backends(&[hooks, crd, svc]),
            [
                ("ops".to_string(), "hook".to_string()),
                ("ops".to_string(), "conv".to_string())
            ]
        );
        let unready =
            json!({"endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": false}}]});
        assert!(matches!(
            endpoints_health(std::slice::from_ref(&unready)),
            Health::InProgress(_)
        ));
        assert!(matches!(endpoints_health(&[]), Health::InProgress(_)));
        let ready = json!({"endpoints": [{"addresses": ["10.0.0.2"]}]});
        assert_eq!(endpoints_health(&[unready, ready]), Health::Current);
    }

    #[test]
    fn conditions_as_kubectl_wait_reads_them() {
        let mut gw = json!({"kind": "Gateway", "metadata": {"generation": 2},
            "status": {"conditions": [{"type": "Programmed", "status": "False", "reason": "AddressNotAssigned"}]}});
        assert_eq!(
            condition_health(&gw, "Programmed"),
            Health::InProgress("condition Programmed is False (AddressNotAssigned)".into())
        );
        assert!(
            matches!(condition_health(&gw, "Accepted"), Health::InProgress(m) if m == "no condition Accepted yet")
        );
        gw["status"]["conditions"][0] =
            json!({"type": "Programmed", "status": "True", "observedGeneration": 1});
        assert!(
            matches!(condition_health(&gw, "programmed"), Health::InProgress(m) if m.contains("generation 1 < 2"))
        );
        gw["status"]["conditions"][0]["observedGeneration"] = json!(2);
        assert_eq!(condition_health(&gw, "programmed"), Health::Current);
        let mut d = json!({"kind": "Deployment", "metadata": {"generation": 3},
            "status": {"observedGeneration": 2, "conditions": [{"type": "Available", "status": "True"}]}});
        assert!(
            matches!(condition_health(&d, "Available"), Health::InProgress(m) if m.contains("observedGeneration 2"))
        );
        d["status"]["observedGeneration"] = json!(3);
        assert_eq!(condition_health(&d, "available"), Health::Current);
    }

    #[test]
    fn kstatus_rules() {
        let rules = default_rules().unwrap();
        assert!(!rules.is_empty());
        let mut d = json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"generation": 2}, "spec": {"replicas": 2}});
        assert!(matches!(health(&d, &rules), Health::InProgress(_)));
        d["status"] = json!({"observedGeneration": 1, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2});
        assert!(
            matches!(health(&d, &rules), Health::InProgress(m) if m.contains("observedGeneration"))
        );
        d["status"]["observedGeneration"] = json!(2);
        assert_eq!(health(&d, &rules), Health::Current);
        let job = json!({"kind": "Job", "apiVersion": "batch/v1", "status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}});
        assert!(matches!(health(&job, &rules), Health::Failed(_)));
        let db = json!({"kind": "MariaDB", "apiVersion": "k8s.mariadb.com/v1alpha1", "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        assert!(matches!(health(&db, &rules), Health::InProgress(_)));
        let cm = json!({"kind": "ConfigMap", "apiVersion": "v1"});
        assert_eq!(health(&cm, &rules), Health::Current);
    }
}
