//! Events: one stored object served as core/v1 `Event` and as events.k8s.io/v1 `Event`, and
//! the Event validation of `pkg/apis/core/validation/events.go`.
//!
//! kube-apiserver stores both versions as the one internal `core.Event`
//! (`pkg/apis/events/v1/conversion.go`), so the two views share uid, resourceVersion and
//! managed fields (whose entries keep the apiVersion they were written with). The
//! events.k8s.io/v1 names map to the core ones: `regarding` ↔ `involvedObject`, `note` ↔
//! `message`, `reportingController` ↔ `reportingComponent`, `deprecatedSource` ↔ `source`,
//! `deprecatedFirstTimestamp`/`deprecatedLastTimestamp`/`deprecatedCount` ↔
//! `firstTimestamp`/`lastTimestamp`/`count`. The source struct and both timestamps are not
//! `omitempty` in Go, so every response carries them (`{}`, `null`, `null`); the test server
//! stores them absent and adds them when it serves an Event.

use crate::resources::ApiResource;
use crate::validate::{qualified_name_errors, quoted, required, Cause};
use serde_json::{json, Value as Json};

/// events.k8s.io/v1 name → core/v1 name.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether `r` is one of the two Event resources.
pub fn is_event(r: &ApiResource) -> bool {
    r.kind == "Event" && matches!(r.group.as_str(), "" | "events.k8s.io")
}

fn is_events_api(r: &ApiResource) -> bool {
    r.kind == "Event" && r.group == "events.k8s.io"
}

/// The (group, plural) an object of `(group, plural)` is stored under: events.k8s.io Events
/// are core Events.
pub fn storage_resource<'a>(group: &'a str, plural: &'a str) -> (&'a str, &'a str) {
    if (group, plural) == ("events.k8s.io", "events") {
        ("", "events")
    } else {
        (group, plural)
    }
}

/// `obj` (an Event stored by either version) in the representation of `r`; other objects are
/// returned as they are.
pub fn convert(obj: &Json, r: &ApiResource) -> Json {
    let mut o = obj.clone();
    if !is_event(r) || obj["apiVersion"] == json!(r.group_version()) {
        return o;
    }
    let to_events = is_events_api(r);
    if let Some(m) = o.as_object_mut() {
        for (events, core) in RENAMES {
            let (from, to) = if to_events {
                (core, events)
            } else {
                (events, core)
            };
            if let Some(v) = m.remove(*from) {
                m.insert(to.to_string(), v);
            }
        }
    }
    o["apiVersion"] = json!(r.group_version());
    o
}

/// `obj` as `r` serves it: an Event converted and filled ([`convert`], [`fill_unset`]),
/// anything else borrowed as it is.
pub fn served_as<'a>(obj: &'a Json, r: &ApiResource) -> std::borrow::Cow<'a, Json> {
    if !is_event(r) {
        return std::borrow::Cow::Borrowed(obj);
    }
    let mut o = convert(obj, r);
    fill_unset(&mut o, r);
    std::borrow::Cow::Owned(o)
}

/// The fields Go always serializes, as an Event of `r` is served.
pub fn fill_unset(o: &mut Json, r: &ApiResource) {
    if !is_event(r) {
        return;
    }
    let (source, first, last) = if is_events_api(r) {
        (
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
        )
    } else {
        ("source", "firstTimestamp", "lastTimestamp")
    };
    if let Some(m) = o.as_object_mut() {
        m.entry(source).or_insert_with(|| json!({}));
        m.entry(first).or_insert(Json::Null);
        m.entry(last).or_insert(Json::Null);
    }
}

/// Removes what [`fill_unset`] adds (an empty source, null timestamps), so a client that
/// sends back what it read writes nothing new.
pub fn strip_unset(o: &mut Json, r: &ApiResource) {
    if !is_event(r) {
        return;
    }
    if let Some(m) = o.as_object_mut() {
        m.retain(|k, v| {
            let unset = match k.as_str() {
                "source" | "deprecatedSource" => v.as_object().is_some_and(|s| s.is_empty()),
                "firstTimestamp"
                | "lastTimestamp"
                | "deprecatedFirstTimestamp"
                | "deprecatedLastTimestamp" => v.is_null(),
                _ => false,
            };
            !unset
        });
    }
}

fn invalid(field: &str, value: &str, msg: &str) -> Cause {
    crate::validate::invalid(field, &quoted(value), msg)
}

/// The string at dotted `path` of the core representation (`""` when absent).
fn s<'a>(core: &'a Json, path: &str) -> &'a str {
    core.pointer(&format!("/{}", path.replace('.', "/")))
        .and_then(Json::as_str)
        .unwrap_or("")
}

fn set(core: &Json, field: &str) -> bool {
    core.get(field).is_some_and(|v| !v.is_null())
}

/// `legacyValidateEvent`: what every Event must satisfy (with the core field names, except
/// `reportingComponent`, named `reportingController` unless the request is core/v1).
fn legacy(core: &Json, core_request: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    let ns = s(core, "metadata.namespace");
    let involved_ns = s(core, "involvedObject.namespace");
    let mismatch = |out: &mut Vec<Cause>| {
        out.push(invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        ))
    };
    if !set(core, "eventTime") {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                mismatch(&mut out);
            }
        } else if ns != involved_ns {
            mismatch(&mut out);
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            mismatch(&mut out);
        }
        let controller = if core_request {
            "reportingComponent"
        } else {
            "reportingController"
        };
        let rc = s(core, "reportingComponent");
        if rc.is_empty() {
            out.push(required(controller));
        }
        out.extend(
            qualified_name_errors(rc)
                .iter()
                .map(|m| invalid(controller, rc, m)),
        );
        for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = s(core, field);
            if v.is_empty() {
                out.push(required(field));
            }
            if v.len() > limit {
                out.push(invalid(
                    field,
                    "",
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
        if s(core, "message").len() > 1024 {
            out.push(invalid("message", "", "can have at most 1024 characters"));
        }
    }
    out
}

/// `validateV1EventSeries`.
fn series(core: &Json) -> Vec<Cause> {
    let mut out = Vec::new();
    if let Some(sr) = core.get("series").filter(|v| v.is_object()) {
        if sr["count"].as_i64().unwrap_or(0) < 2 {
            out.push(invalid("series.count", "", "should be at least 2"));
        }
        if !set(sr, "lastObservedTime") {
            out.push(required("series.lastObservedTime"));
        }
    }
    out
}

/// Event validation for a create (`old` absent) or update of `new` through `r`
/// (`ValidateEventCreate` / `ValidateEventUpdate`): core/v1 requests get the legacy checks
/// only; events.k8s.io/v1 ones the strict ones too (eventTime required, `type` Normal or
/// Warning, deprecated fields unset, series count ≥ 2, immutable fields on update).
pub fn causes(r: &ApiResource, old: Option<&Json>, new: &Json) -> Vec<Cause> {
    if !is_event(r) {
        return Vec::new();
    }
    let core_of = |o: &Json| {
        let mut c = o.clone();
        c["apiVersion"] = o["apiVersion"].clone();
        let core = crate::resources::builtin()
            .into_iter()
            .find(|x| x.kind == "Event" && x.group.is_empty());
        match core {
            Some(core) => convert(&c, &core),
            None => c,
        }
    };
    let core = core_of(new);
    let core_request = !is_events_api(r);
    let mut out = legacy(&core, core_request);
    if core_request {
        return out;
    }
    match old {
        None => {
            out.extend(series(&core));
            if !set(&core, "eventTime") {
                out.push(required("eventTime"));
            }
            let ty = s(&core, "type");
            if ty != "Normal" && ty != "Warning" {
                out.push(invalid("type", "", &format!("has invalid value: {ty}")));
            }
            for f in ["firstTimestamp", "lastTimestamp"] {
                if set(&core, f) {
                    out.push(invalid(f, "", "needs to be unset"));
                }
            }
            if core["count"].as_i64().unwrap_or(0) != 0 {
                out.push(invalid("count", "", "needs to be unset"));
            }
            if !s(&core, "source.component").is_empty() || !s(&core, "source.host").is_empty() {
                out.push(invalid("source", "", "needs to be unset"));
            }
        }
        Some(old) => {
            let before = core_of(old);
            if core.get("series") != before.get("series") {
                out.extend(series(&core));
            }
            // ValidateEventUpdate lists `reason` twice; both causes are kept, the message
            // shows it once (ToAggregate).
            // (field path in the error, core field); eventTime compares to the microsecond,
            // which a MicroTime always is.
            for (path, f) in [
                ("involvedObject", "involvedObject"),
                ("reason", "reason"),
                ("message", "message"),
                ("source", "source"),
                ("firstTimestamp", "firstTimestamp"),
                ("lastTimestamp", "lastTimestamp"),
                ("count", "count"),
                ("reason", "reason"),
                ("type", "type"),
                ("eventTime", "eventTime"),
                ("action", "action"),
                ("related", "related"),
                ("reportingController", "reportingComponent"),
                ("reportingInstance", "reportingInstance"),
            ] {
                let (a, b) = (before.get(f), core.get(f));
                let empty = |v: Option<&Json>| {
                    v.is_none_or(|v| v.is_null() || v.as_object().is_some_and(|m| m.is_empty()))
                };
                if a != b && !(empty(a) && empty(b)) {
                    let shown = match b {
                        Some(Json::String(x)) => quoted(x),
                        Some(v) => v.to_string(),
                        None => "\"\"".into(),
                    };
                    out.push((
                        path.into(),
                        "FieldValueInvalid",
                        format!("Invalid value: {shown}: field is immutable"),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str) -> ApiResource {
        crate::resources::builtin()
            .into_iter()
            .find(|r| r.kind == "Event" && r.group == group)
            .expect("event resource")
    }

    fn event() -> Json {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "x.io/agent",
            "reportingInstance": "agent-0", "action": "Reconcile", "reason": "Drift",
            "type": "Warning", "note": "n",
            "regarding": {"kind": "Deployment", "namespace": "ns", "name": "d"}})
    }

    #[test]
    fn both_versions_are_views_of_one_object() {
        let core = convert(&event(), &res(""));
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "d");
        assert_eq!(core["message"], "n");
        assert_eq!(core["reportingComponent"], "x.io/agent");
        assert!(core.get("regarding").is_none());
        assert_eq!(convert(&core, &res("events.k8s.io")), event());
        let mut served = core.clone();
        fill_unset(&mut served, &res(""));
        assert_eq!(
            (
                &served["source"],
                &served["firstTimestamp"],
                &served["lastTimestamp"]
            ),
            (&json!({}), &Json::Null, &Json::Null)
        );
        strip_unset(&mut served, &res(""));
        assert_eq!(served, core);
        assert_eq!(
            storage_resource("events.k8s.io", "events"),
            storage_resource("", "events")
        );
    }

    #[test]
    fn strict_rules_apply_to_events_api_creates_only() {
        let r = res("events.k8s.io");
        assert!(causes(&r, None, &event()).is_empty());
        let mut bad = event();
        bad["type"] = json!("Critical");
        bad["series"] = json!({"count": 1, "lastObservedTime": "2026-01-01T00:00:00.000000Z"});
        let c = causes(&r, None, &bad);
        let fields: Vec<&str> = c.iter().map(|(f, _, _)| f.as_str()).collect();
        assert_eq!(fields, ["series.count", "type"]);
        assert_eq!(c[1].2, "Invalid value: \"\": has invalid value: Critical");
        // A core/v1 Event without eventTime gets the legacy checks only.
        let legacy = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns"},
            "involvedObject": {"namespace": "other"}, "reason": "x", "type": "Odd"});
        let c = causes(&res(""), None, &legacy);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "involvedObject.namespace");
    }

    #[test]
    fn missing_reporting_controller_gives_three_causes() {
        let mut e = event();
        e.as_object_mut().map(|m| m.remove("reportingController"));
        let c = causes(&res("events.k8s.io"), None, &e);
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|(f, _, _)| f == "reportingController"));
        assert_eq!(c[0].1, "FieldValueRequired");
    }

    #[test]
    fn reason_is_immutable_and_reported_twice() {
        let mut changed = event();
        changed["reason"] = json!("Other");
        let c = causes(&res("events.k8s.io"), Some(&event()), &changed);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].2, "Invalid value: \"Other\": field is immutable");
        // The series may change.
        let mut series = event();
        series["series"] = json!({"count": 2, "lastObservedTime": "2026-01-01T00:05:00.000000Z"});
        assert!(causes(&res("events.k8s.io"), Some(&event()), &series).is_empty());
    }
}
