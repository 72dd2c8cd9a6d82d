//! Defaulting and validation the real API server applies on write (a subset: what GitOps
//! agents trip over — Service cluster IPs, workload defaults, Namespace finalizers, and
//! immutable fields).

use base64::Engine;
use serde_json::{json, Value as Json};

/// Fields a registry strategy sets on create after field ownership is tracked
/// (`PrepareForCreate`, allocators): the creating manager does not own them unless it sent
/// them. JSON pointers by kind.
pub fn set_by_strategy(kind: &str) -> &'static [&'static str] {
    match kind {
        "Namespace" => &["/spec/finalizers"],
        "Service" => &["/spec/clusterIP", "/spec/clusterIPs"],
        _ => &[],
    }
}

/// The labels and selector the Job controller's strategy generates from the Job's uid
/// (`pkg/registry/batch/job/strategy.go` `generateSelector`), unless `manualSelector`.
pub fn job_selector(obj: &mut Json) {
    if obj.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let uid = obj["metadata"]["uid"].clone();
    let name = obj["metadata"]["name"].clone();
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    for ptr in ["/metadata/labels", "/spec/template/metadata/labels"] {
        let target = match ptr {
            "/metadata/labels" => &mut obj["metadata"]["labels"],
            _ => &mut obj["spec"]["template"]["metadata"]["labels"],
        };
        if let Some(l) = labels.as_object() {
            for (k, v) in l {
                if target.get(k).is_none() {
                    target[k] = v.clone();
                }
            }
        }
    }
    if obj.pointer("/spec/selector").is_none() {
        obj["spec"]["selector"] =
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
}

/// Fills defaults into a new or updated object (`pkg/apis/*/v1/defaults.go`, a subset).
pub fn apply_defaults(kind: &str, obj: &mut Json, next_ip: &mut dyn FnMut() -> String) {
    match kind {
        "CustomResourceDefinition" => {
            // k8s.io/apiextensions-apiserver pkg/apis/apiextensions/v1/defaults.go
            if obj.pointer("/spec/conversion").is_none() && obj.get("spec").is_some() {
                obj["spec"]["conversion"] = json!({"strategy": "None"});
            }
            if obj.get("status").is_none() {
                let stored: Vec<Json> = obj
                    .pointer("/spec/versions")
                    .and_then(Json::as_array)
                    .map(|v| {
                        v.iter()
                            .filter(|x| x["storage"] == json!(true))
                            .map(|x| x["name"].clone())
                            .collect()
                    })
                    .unwrap_or_default();
                obj["status"] = json!({"conditions": null, "acceptedNames": {"plural": "", "kind": ""}, "storedVersions": stored});
            }
        }
        "Namespace" => {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            if obj.pointer("/status/phase").is_none() {
                obj["status"]["phase"] = json!("Active");
            }
        }
        "Service" => {
            let spec = &mut obj["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            let headless = spec.get("clusterIP").and_then(Json::as_str) == Some("None");
            if spec.get("clusterIP").is_none() && spec["type"] != json!("ExternalName") {
                let ip = next_ip();
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            } else if !headless && spec.get("clusterIPs").is_none() {
                let ip = spec["clusterIP"].clone();
                spec["clusterIPs"] = json!([ip]);
            }
            if spec.get("sessionAffinity").is_none() {
                spec["sessionAffinity"] = json!("None");
            }
            if spec.get("ipFamilies").is_none() && !headless {
                spec["ipFamilies"] = json!(["IPv4"]);
                spec["ipFamilyPolicy"] = json!("SingleStack");
            }
            if spec.get("internalTrafficPolicy").is_none() {
                spec["internalTrafficPolicy"] = json!("Cluster");
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Json::as_array_mut) {
                for p in ports {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                    if p.get("targetPort").is_none() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
            if obj.get("status").is_none() {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
            let spec = &mut obj["spec"];
            if kind != "DaemonSet" && spec.get("replicas").is_none() {
                spec["replicas"] = json!(1);
            }
            if spec.get("revisionHistoryLimit").is_none() && kind != "ReplicaSet" {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if kind == "Deployment" {
                if spec.get("progressDeadlineSeconds").is_none() {
                    spec["progressDeadlineSeconds"] = json!(600);
                }
                if spec.get("strategy").is_none() {
                    spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
                }
            }
            if kind == "StatefulSet" {
                if spec.get("persistentVolumeClaimRetentionPolicy").is_none() {
                    spec["persistentVolumeClaimRetentionPolicy"] =
                        json!({"whenDeleted": "Retain", "whenScaled": "Retain"});
                }
                if spec.get("podManagementPolicy").is_none() {
                    spec["podManagementPolicy"] = json!("OrderedReady");
                }
                if spec.get("updateStrategy").is_none() {
                    spec["updateStrategy"] =
                        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
                }
                // Each claim template is a PersistentVolumeClaim with its own defaults
                // (k8s.io/kubernetes pkg/apis/apps/v1/defaults.go SetDefaults_StatefulSet).
                if let Some(vcts) = spec
                    .get_mut("volumeClaimTemplates")
                    .and_then(Json::as_array_mut)
                {
                    for t in vcts.iter_mut().filter(|t| t.is_object()) {
                        if t.get("kind").is_none() {
                            t["kind"] = json!("PersistentVolumeClaim");
                        }
                        if t.get("apiVersion").is_none() {
                            t["apiVersion"] = json!("v1");
                        }
                        if t.pointer("/spec/volumeMode").is_none() && t.get("spec").is_some() {
                            t["spec"]["volumeMode"] = json!("Filesystem");
                        }
                        if t.get("status").is_none() {
                            t["status"] = json!({"phase": "Pending"});
                        }
                    }
                }
            }
            pod_template_defaults(&mut spec["template"]);
            if obj.get("status").is_none() {
                obj["status"] = if kind == "StatefulSet" {
                    json!({"replicas": 0, "availableReplicas": 0})
                } else {
                    json!({})
                };
            }
        }
        "Job" => {
            let spec = &mut obj["spec"];
            for (k, v) in [
                ("backoffLimit", json!(6)),
                ("completions", json!(1)),
                ("parallelism", json!(1)),
                ("manualSelector", json!(false)),
                ("completionMode", json!("NonIndexed")),
                ("suspend", json!(false)),
                ("podReplacementPolicy", json!("TerminatingOrFailed")),
            ] {
                if spec.get(k).is_none() {
                    spec[k] = v;
                }
            }
            if spec.pointer("/template/spec/restartPolicy").is_none() {
                spec["template"]["spec"]["restartPolicy"] = json!("Never");
            }
            pod_template_defaults(&mut spec["template"]);
            if obj.get("status").is_none() {
                obj["status"] = json!({});
            }
        }
        "Secret" => {
            // `stringData` is write-only: merged into `data` (base64), never stored
            // (`pkg/apis/core/v1/conversion.go`).
            if let Some(sd) = obj
                .as_object_mut()
                .and_then(|m| m.remove("stringData"))
                .and_then(|v| v.as_object().cloned())
            {
                for (k, v) in sd {
                    let text = v.as_str().unwrap_or("").as_bytes().to_vec();
                    obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(&text));
                }
            }
        }
        "PersistentVolumeClaim" => {
            if obj.pointer("/spec/volumeMode").is_none() {
                obj["spec"]["volumeMode"] = json!("Filesystem");
            }
            if obj.pointer("/status/phase").is_none() {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        _ => {}
    }
}

fn pod_template_defaults(t: &mut Json) {
    if !t.is_object() {
        return;
    }
    let spec = &mut t["spec"];
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
    ] {
        if spec.get(k).is_none() {
            spec[k] = v;
        }
    }
    // Volume sources' file modes default to 0644 (`k8s.io/kubernetes/pkg/apis/core/v1/defaults.go`,
    // SetDefaults_ConfigMapVolumeSource and friends); a hostPath's type to "".
    if let Some(vs) = spec.get_mut("volumes").and_then(Json::as_array_mut) {
        for v in vs {
            for src in ["configMap", "secret", "projected", "downwardAPI"] {
                if let Some(s) = v.get_mut(src).filter(|s| s.is_object()) {
                    if s.get("defaultMode").is_none() {
                        s["defaultMode"] = json!(420);
                    }
                }
            }
            if let Some(h) = v.get_mut("hostPath").filter(|s| s.is_object()) {
                if h.get("type").is_none() {
                    h["type"] = json!("");
                }
            }
        }
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Json::as_array_mut) {
            for c in cs {
                if c.get("terminationMessagePath").is_none() {
                    c["terminationMessagePath"] = json!("/dev/termination-log");
                }
                if c.get("terminationMessagePolicy").is_none() {
                    c["terminationMessagePolicy"] = json!("File");
                }
                if c.get("imagePullPolicy").is_none() {
                    let image = c.get("image").and_then(Json::as_str).unwrap_or("");
                    let latest = !image.contains(':') || image.ends_with(":latest");
                    c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
                }
                if c.get("resources").is_none() {
                    c["resources"] = json!({});
                }
                if let Some(ports) = c.get_mut("ports").and_then(Json::as_array_mut) {
                    for p in ports {
                        if p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                    }
                }
            }
        }
    }
}

/// One rejected field of an update: `(field, reason, message)` as the 422's cause reads,
/// e.g. `("spec.selector", "FieldValueInvalid", "Invalid value: {...}: field is immutable")`.
pub type Violation = (String, &'static str, String);

fn invalid(field: &str, value: String, msg: &str) -> Option<Violation> {
    Some((
        field.into(),
        "FieldValueInvalid",
        format!("Invalid value: {value}: {msg}"),
    ))
}

fn forbidden(field: &str, msg: &str) -> Option<Violation> {
    Some((
        field.into(),
        "FieldValueForbidden",
        format!("Forbidden: {msg}"),
    ))
}

/// Compact JSON with map keys sorted, as Go's `encoding/json` prints a value in a message.
pub(crate) fn go_json(v: Option<&Json>) -> String {
    fn sort(v: &Json) -> Json {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Json::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Json::Array(a) => Json::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v.unwrap_or(&Json::Null)).to_string()
}

/// The immutable-field rule an update breaks, if any (`pkg/apis/*/validation`, a subset).
/// Values in messages are printed as the real server prints them where that is the versioned
/// JSON (selectors, cluster IPs) or a small internal struct (`roleRef`); the Job template's
/// internal-struct dump is not reproduced.
pub fn immutable_violation(kind: &str, old: &Json, new: &Json) -> Option<Violation> {
    let changed = |p: &str| old.pointer(p) != new.pointer(p);
    match kind {
        "Job" if changed("/spec/template") => invalid("spec.template", go_json(new.pointer("/spec/template")), "field is immutable"),
        "Job" if changed("/spec/selector") => invalid("spec.selector", go_json(new.pointer("/spec/selector")), "field is immutable"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" if changed("/spec/selector") => {
            invalid("spec.selector", go_json(new.pointer("/spec/selector")), "field is immutable")
        }
        "StatefulSet" if changed("/spec/volumeClaimTemplates") || changed("/spec/serviceName") => forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ),
        "Service" if old.pointer("/spec/clusterIP").is_some() && new.pointer("/spec/clusterIP").is_some() && changed("/spec/clusterIP") => {
            // clusterIPs[0] follows clusterIP on update: the message shows the new address.
            let ips = json!([new.pointer("/spec/clusterIP")]);
            invalid("spec.clusterIPs[0]", go_json(Some(&ips)), "may not change once set")
        }
        "RoleBinding" | "ClusterRoleBinding" if changed("/roleRef") => {
            let r = |k: &str| new.pointer(&format!("/roleRef/{k}")).cloned().unwrap_or(json!(""));
            // The internal rbac.RoleRef struct has no JSON tags: Go field names, in order.
            let value = format!(
                "{{\"APIGroup\":{},\"Kind\":{},\"Name\":{}}}",
                r("apiGroup"),
                r("kind"),
                r("name")
            );
            invalid("roleRef", value, "cannot change roleRef")
        }
        "ConfigMap" | "Secret" if old.get("immutable") == Some(&json!(true)) => {
            if changed("/immutable") {
                forbidden("immutable", "field is immutable when `immutable` is set")
            } else if changed("/data") || changed("/binaryData") || changed("/stringData") {
                forbidden("data", "field is immutable when `immutable` is set")
            } else {
                None
            }
        }
        _ => None,
    }
}
