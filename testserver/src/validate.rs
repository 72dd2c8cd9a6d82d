//! Object validation the real API server does on every write, with its messages: object
//! names (RFC 1123 subdomain, or label for Namespaces), label keys and values, ownerReferences,
//! and a Deployment's selector against its template.
//!
//! Messages follow k8s.io/apimachinery `pkg/util/validation/validation.go` (IsQualifiedName,
//! IsValidLabelValue, IsDNS1123Subdomain, IsDNS1123Label),
//! `pkg/api/validation/objectmeta.go` (ValidateOwnerReferences) and k8s.io/kubernetes
//! `pkg/apis/apps/validation` (ValidateDeploymentSpec); the Status shape follows
//! `errors.NewInvalid`.

use crate::resources::ApiResource;
use crate::store::ApiError;
use regex::Regex;
use serde_json::{json, Value as Json};
use std::sync::LazyLock;

/// One field error: (field, reason, message).
pub type Cause = (String, &'static str, String);

static SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("regex")
});
static LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("regex"));
static QUALIFIED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("regex"));
static LABEL_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("regex"));

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// RBAC object names: `ValidateRBACName` is `path.IsValidPathSegmentName`
/// (kubernetes `pkg/apis/rbac/validation/validation.go`,
/// `staging/src/k8s.io/apimachinery/pkg/api/validation/path/name.go`), so `system:masters`
/// and `cert-manager:leaderelection` are valid.
fn path_segment(v: &str) -> Vec<String> {
    if v == "." || v == ".." {
        return vec![format!("may not be '{v}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| v.contains(**c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

fn subdomain(v: &str) -> Vec<String> {
    let mut e = Vec::new();
    if v.len() > 253 {
        e.push("must be no more than 253 bytes".to_string());
    }
    if !SUBDOMAIN.is_match(v) {
        e.push(SUBDOMAIN_MSG.to_string());
    }
    e
}

fn label(v: &str) -> Vec<String> {
    let mut e = Vec::new();
    if v.len() > 63 {
        e.push("must be no more than 63 bytes".to_string());
    }
    if !LABEL.is_match(v) {
        e.push(LABEL_MSG.to_string());
    }
    e
}

/// `IsQualifiedName` (apimachinery `pkg/util/validation`): its error messages for `v`.
pub fn qualified_name_errors(v: &str) -> Vec<String> {
    let mut e = Vec::new();
    let (prefix, name) = match v.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, v),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            e.push("prefix part must be non-empty".to_string());
        } else {
            e.extend(subdomain(p).into_iter().map(|m| format!("prefix part {m}")));
        }
    }
    if name.is_empty() {
        e.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        e.push("name part must be no more than 63 bytes".to_string());
    }
    if !QUALIFIED.is_match(name) {
        e.push(QUALIFIED_MSG.to_string());
    }
    e
}

fn label_value(v: &str) -> Vec<String> {
    let mut e = Vec::new();
    if v.len() > 63 {
        e.push("must be no more than 63 bytes".to_string());
    }
    if !LABEL_VALUE.is_match(v) {
        e.push(LABEL_VALUE_MSG.to_string());
    }
    e
}

/// A `FieldValueInvalid` cause; `value` as the message prints it (already quoted).
pub(crate) fn invalid(field: &str, value: &str, msg: &str) -> Cause {
    (
        field.to_string(),
        "FieldValueInvalid",
        format!("Invalid value: {value}: {msg}"),
    )
}

/// A string as Go's `%q` prints it (JSON quoting).
pub(crate) fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Go's JSON of an ownerReference (field order of the Go struct, empty fields left out).
fn owner_json(o: &Json) -> String {
    let mut m = serde_json::Map::new();
    for k in [
        "apiVersion",
        "kind",
        "name",
        "uid",
        "controller",
        "blockOwnerDeletion",
    ] {
        if let Some(v) = o.get(k) {
            m.insert(k.to_string(), v.clone());
        }
    }
    Json::Object(m).to_string()
}

/// Go's JSON of a string map (keys sorted, compact).
fn map_json(m: &Json) -> String {
    let sorted: std::collections::BTreeMap<String, Json> = m
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    serde_json::to_string(&sorted).unwrap_or_default()
}

fn causes(r: &ApiResource, obj: &Json) -> Vec<Cause> {
    let mut out = Vec::new();
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    let name_errs = if r.kind == "Namespace" {
        label(name)
    } else if r.group == "rbac.authorization.k8s.io" {
        path_segment(name)
    } else {
        subdomain(name)
    };
    out.extend(
        name_errs
            .iter()
            .map(|m| invalid("metadata.name", &quoted(name), m)),
    );
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            out.extend(
                qualified_name_errors(k)
                    .iter()
                    .map(|m| invalid("metadata.labels", &quoted(k), m)),
            );
            let v = v.as_str().unwrap_or("");
            out.extend(
                label_value(v)
                    .iter()
                    .map(|m| invalid("metadata.labels", &quoted(v), m)),
            );
        }
    }
    if let Some(refs) = meta["ownerReferences"].as_array() {
        for o in refs {
            if o["uid"].as_str().unwrap_or("").is_empty() {
                out.push(invalid(
                    "metadata.ownerReferences.uid",
                    "\"\"",
                    "must not be empty",
                ));
            }
        }
        let controllers: Vec<&Json> = refs
            .iter()
            .filter(|o| o["controller"] == json!(true))
            .collect();
        if controllers.len() > 1 {
            let all = format!(
                "[{}]",
                refs.iter().map(owner_json).collect::<Vec<_>>().join(",")
            );
            let named: Vec<String> = controllers
                .iter()
                .map(|o| {
                    format!(
                        "{}/{}",
                        o["kind"].as_str().unwrap_or(""),
                        o["name"].as_str().unwrap_or("")
                    )
                })
                .collect();
            out.push(invalid(
                "metadata.ownerReferences",
                &all,
                &format!(
                    "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                    named.join(" and ")
                ),
            ));
        }
    }
    out.extend(volume_mounts(r, obj));
    if let Some(schema) = &r.schema {
        out.extend(crate::schema::validate_crd(obj, schema));
    }
    if r.kind == "Deployment" && r.group == "apps" {
        let sel = &obj["spec"]["selector"];
        let labels = &obj["spec"]["template"]["metadata"]["labels"];
        if sel.is_null() || sel.as_object().is_some_and(|m| m.is_empty()) {
            out.push((
                "spec.selector".into(),
                "FieldValueRequired",
                "Required value".into(),
            ));
        }
        let matches = match sel.get("matchLabels").and_then(Json::as_object) {
            Some(want) => want.iter().all(|(k, v)| labels.get(k) == Some(v)),
            None => sel.as_object().is_some_and(|m| !m.is_empty()),
        };
        if !matches {
            out.push(invalid(
                "spec.template.metadata.labels",
                &map_json(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    out
}

/// Where a kind keeps its pod spec (`spec`, `spec.template.spec`, `spec.jobTemplate.spec.template.spec`).
fn pod_spec_path(r: &ApiResource) -> Option<&'static str> {
    match (r.group.as_str(), r.kind.as_str()) {
        ("", "Pod") => Some("spec"),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => Some("spec.template.spec"),
        ("batch", "CronJob") => Some("spec.jobTemplate.spec.template.spec"),
        _ => None,
    }
}

/// Every container's volume mounts must name a volume of the pod (or, in a StatefulSet, one
/// of its claim templates): `…containers[0].volumeMounts[1].name: Not found: "conf"`
/// (`k8s.io/kubernetes/pkg/apis/core/validation`, ValidateVolumeMounts).
fn volume_mounts(r: &ApiResource, obj: &Json) -> Vec<Cause> {
    let Some(at) = pod_spec_path(r) else {
        return Vec::new();
    };
    let pointer = format!("/{}", at.replace('.', "/"));
    let Some(spec) = obj.pointer(&pointer) else {
        return Vec::new();
    };
    let names = |list: &Json, ptr: &str| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.pointer(ptr).and_then(Json::as_str).map(str::to_string))
            .collect::<Vec<_>>()
    };
    let mut volumes = names(&spec["volumes"], "/name");
    volumes.extend(names(
        &obj["spec"]["volumeClaimTemplates"],
        "/metadata/name",
    ));
    let mut out = Vec::new();
    for list in ["initContainers", "containers"] {
        for (ci, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            for (mi, m) in c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let name = m["name"].as_str().unwrap_or("");
                if !volumes.iter().any(|v| v == name) {
                    out.push((
                        format!("{at}.{list}[{ci}].volumeMounts[{mi}].name"),
                        "FieldValueNotFound",
                        format!("Not found: {}", quoted(name)),
                    ));
                }
            }
        }
    }
    out
}

/// Validates an object about to be stored: `Ok` or a 422 `Invalid` Status listing every
/// cause (`Kind.group "name" is invalid: [a, b]`, or `: a` for one).
///
/// # Errors
/// The 422 [`ApiError`].
pub fn validate(r: &ApiResource, old: Option<&Json>, obj: &Json) -> Result<(), ApiError> {
    let mut c = causes(r, obj);
    c.extend(finalizer_causes(old, obj));
    c.extend(kind_causes(r, old, obj));
    if c.is_empty() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    // Events are validated as the internal core Event, whatever version was written.
    let group = if crate::events::is_event(r) {
        ""
    } else {
        r.group.as_str()
    };
    Err(invalid_error(group, &r.kind, name, &c))
}

/// A `FieldValueRequired` cause without detail.
pub(crate) fn required(field: &str) -> Cause {
    (field.into(), "FieldValueRequired", "Required value".into())
}

/// `metadata.finalizers` of an object (none for no object).
fn finalizers_of(o: Option<&Json>) -> Vec<String> {
    o.and_then(|o| o.pointer("/metadata/finalizers"))
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.finalizers`: each a qualified name (`ValidateFinalizers` →
/// `ValidateFinalizerName`, apimachinery `pkg/api/validation/objectmeta.go`; the legacy
/// standard names such as `kubernetes` or `orphan` pass as qualified names without a
/// prefix), `orphan` and `foregroundDeletion` not both; and on an update of an object being
/// deleted, no finalizer that was not there before (`ValidateNoNewFinalizers`, from
/// `ValidateObjectMetaUpdate`).
fn finalizer_causes(old: Option<&Json>, obj: &Json) -> Vec<Cause> {
    let list = |o: &Json| finalizers_of(Some(o));
    let field = "metadata.finalizers";
    let finalizers = list(obj);
    let mut out = Vec::new();
    for f in &finalizers {
        out.extend(
            qualified_name_errors(f)
                .iter()
                .map(|m| invalid(field, &quoted(f), m)),
        );
    }
    if finalizers.iter().any(|f| f == "orphan")
        && finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        let go: Vec<String> = finalizers.iter().map(|f| quoted(f)).collect();
        out.push(invalid(
            field,
            &format!("[]string{{{}}}", go.join(", ")),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    if let Some(old) = old.filter(|o| o.pointer("/metadata/deletionTimestamp").is_some()) {
        let before = list(old);
        let mut extra: Vec<&String> = finalizers.iter().filter(|f| !before.contains(f)).collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            let go: Vec<String> = extra.iter().map(|f| quoted(f)).collect();
            out.push((
                field.into(),
                "FieldValueForbidden",
                format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    go.join(", ")
                ),
            ));
        }
    }
    out
}

/// `Warning`s for the finalizers a write of a custom resource adds that are not
/// domain-qualified (apiextensions-apiserver `pkg/registry/customresource/strategy.go`
/// `generateWarningsFromObj`, `validateKubeFinalizerName`): names without a `/` other than
/// the standard `kubernetes`, `orphan` and `foregroundDeletion`.
pub fn finalizer_warnings(r: &ApiResource, old: Option<&Json>, obj: &Json) -> Vec<String> {
    if r.schema.is_none() {
        return Vec::new();
    }
    let before = finalizers_of(old);
    finalizers_of(Some(obj))
        .into_iter()
        .filter(|f| !before.contains(f))
        .filter(|f| !f.contains('/') && !matches!(f.as_str(), "kubernetes" | "orphan" | "foregroundDeletion"))
        .map(|f| {
            let hint = if f.contains('.') {
                "prefer a domain-qualified finalizer name including a path (/) to avoid accidental conflicts with other finalizer writers"
            } else {
                "prefer a domain-qualified finalizer name to avoid accidental conflicts with other finalizer writers"
            };
            format!("metadata.finalizers: {}: {hint}", quoted(&f))
        })
        .collect()
}

/// `IsConfigMapKey` (apimachinery `pkg/util/validation/validation.go`).
fn config_map_key(k: &str) -> Vec<String> {
    static KEY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[-._a-zA-Z0-9]+$").expect("regex"));
    let mut e = Vec::new();
    if k.len() > 253 {
        e.push("must be no more than 253 bytes".to_string());
    }
    if !KEY.is_match(k) {
        e.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    match k {
        "." => e.push("must not be '.'".into()),
        ".." => e.push("must not be '..'".into()),
        _ if k.starts_with("..") => e.push("must not start with '..'".into()),
        _ => {}
    }
    e
}

/// The sorted keys of map field `field` of `obj`.
fn keys<'a>(obj: &'a Json, field: &str) -> Vec<&'a String> {
    let mut k: Vec<&String> = obj[field]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// Kind rules of `pkg/apis/core/validation/validation.go` (`ValidateSecret`,
/// `ValidateSecretUpdate`, `ValidateConfigMap`), `pkg/apis/coordination/validation`
/// (`ValidateLeaseSpec`) and `pkg/apis/core/validation/events.go` (see `events.rs`). Map
/// keys are visited in sorted order (Go's map order is random).
fn kind_causes(r: &ApiResource, old: Option<&Json>, obj: &Json) -> Vec<Cause> {
    let mut out = Vec::new();
    match (r.group.as_str(), r.kind.as_str()) {
        ("", "Secret") => {
            if let Some(old) = old {
                let (a, b) = (&old["type"], &obj["type"]);
                if a != b {
                    out.push(invalid(
                        "type",
                        &quoted(b.as_str().unwrap_or("")),
                        "field is immutable",
                    ));
                }
            }
            for k in keys(obj, "data") {
                out.extend(
                    config_map_key(k)
                        .iter()
                        .map(|m| invalid(&format!("data[{k}]"), &quoted(k), m)),
                );
            }
            let has = |k: &str| obj["data"].get(k).is_some();
            let data = |k: &str| format!("data[{k}]");
            match obj["type"].as_str().unwrap_or("") {
                "kubernetes.io/service-account-token" => {
                    let name = obj
                        .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                        .and_then(Json::as_str)
                        .unwrap_or("");
                    if name.is_empty() {
                        out.push(required(
                            "metadata.annotations[kubernetes.io/service-account.name]",
                        ));
                    }
                }
                "kubernetes.io/dockercfg" if !has(".dockercfg") => {
                    out.push(required(&data(".dockercfg")))
                }
                "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
                    out.push(required(&data(".dockerconfigjson")))
                }
                "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                    out.push(required(&data("username")));
                    out.push(required(&data("password")));
                }
                "kubernetes.io/ssh-auth"
                    if obj["data"]["ssh-privatekey"]
                        .as_str()
                        .is_none_or(str::is_empty) =>
                {
                    out.push(required(&data("ssh-privatekey")))
                }
                "kubernetes.io/tls" => {
                    for k in ["tls.crt", "tls.key"] {
                        if !has(k) {
                            out.push(required(&data(k)));
                        }
                    }
                }
                _ => {}
            }
        }
        ("", "ConfigMap") => {
            for (bag, other) in [("data", "binaryData"), ("binaryData", "data")] {
                for k in keys(obj, bag) {
                    let field = format!("{bag}[{k}]");
                    out.extend(
                        config_map_key(k)
                            .iter()
                            .map(|m| invalid(&field, &quoted(k), m)),
                    );
                    if obj[other].get(k.as_str()).is_some() {
                        out.push(invalid(
                            &field,
                            &quoted(k),
                            &format!("duplicate of key present in {other}"),
                        ));
                    }
                }
            }
        }
        ("coordination.k8s.io", "Lease") => {
            let spec = &obj["spec"];
            if let Some(d) = spec["leaseDurationSeconds"].as_i64().filter(|d| *d <= 0) {
                out.push(invalid(
                    "spec.leaseDurationSeconds",
                    &d.to_string(),
                    "must be greater than 0",
                ));
            }
            if let Some(t) = spec["leaseTransitions"].as_i64().filter(|t| *t < 0) {
                out.push(invalid(
                    "spec.leaseTransitions",
                    &t.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
            let set = |k: &str| spec[k].as_str().is_some_and(|v| !v.is_empty());
            if set("preferredHolder") && !set("strategy") {
                out.push((
                    "spec.preferredHolder".into(),
                    "FieldValueForbidden",
                    "Forbidden: may only be specified if `strategy` is defined".into(),
                ));
            }
        }
        _ => out.extend(crate::events::causes(r, old, obj)),
    }
    out
}

/// The 422 `Invalid` Status of `errors.NewInvalid(groupKind, name, errs)`
/// (k8s.io/apimachinery `pkg/api/errors/errors.go`): every cause in `details.causes`, the
/// message `Kind.group "name" is invalid: ` followed by the aggregate of the distinct cause
/// texts (`field.ErrorList.ToAggregate`: one as is, several as `[a, b]`); `details.group`
/// only for a non-core group (`name`, `group` and `kind` are omitempty).
pub fn invalid_error(group: &str, kind: &str, name: &str, c: &[Cause]) -> ApiError {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let mut parts: Vec<String> = Vec::new();
    for (f, _, m) in c {
        let text = format!("{f}: {m}");
        if !parts.contains(&text) {
            parts.push(text);
        }
    }
    let list = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    // `StatusDetails.name` and `.group` are omitempty.
    let mut details = json!({});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    if !kind.is_empty() {
        details["kind"] = json!(kind);
    }
    details["causes"] = c
        .iter()
        .map(|(f, reason, m)| json!({"reason": reason, "message": m, "field": f}))
        .collect();
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("{qualified} {} is invalid: {list}", quoted(name)),
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_resources_get_warnings_for_unqualified_new_finalizers() {
        let mut r = crate::resources::builtin()
            .into_iter()
            .find(|r| r.kind == "ConfigMap")
            .expect("configmaps");
        let obj = json!({"metadata": {"finalizers": ["kubernetes", "example.com/ok", "cleanup", "finalizers.example.com", "old"]}});
        // Builtin kinds: none.
        assert!(finalizer_warnings(&r, None, &obj).is_empty());
        r.schema = Some(json!({"type": "object"}));
        let old = json!({"metadata": {"finalizers": ["old"]}});
        assert_eq!(
            finalizer_warnings(&r, Some(&old), &obj),
            [
                "metadata.finalizers: \"cleanup\": prefer a domain-qualified finalizer name to avoid accidental conflicts with other finalizer writers",
                "metadata.finalizers: \"finalizers.example.com\": prefer a domain-qualified finalizer name including a path (/) to avoid accidental conflicts with other finalizer writers",
            ]
        );
    }

    #[test]
    fn invalid_errors_aggregate_distinct_messages() {
        let c = vec![
            invalid("reason", "\"x\"", "field is immutable"),
            invalid("reason", "\"x\"", "field is immutable"),
        ];
        let e = invalid_error("", "Event", "e", &c);
        assert_eq!(
            e.message,
            "Event \"e\" is invalid: reason: Invalid value: \"x\": field is immutable"
        );
        assert_eq!(e.details["causes"].as_array().map(Vec::len), Some(2));
        let e = invalid_error(
            "meta.k8s.io",
            "ListOptions",
            "",
            &[required("a"), required("b")],
        );
        assert_eq!(
            e.message,
            "ListOptions.meta.k8s.io \"\" is invalid: [a: Required value, b: Required value]"
        );
        assert!(e.details.get("name").is_none());
    }
}
