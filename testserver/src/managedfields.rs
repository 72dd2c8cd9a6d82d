//! `metadata.managedFields` bookkeeping shared by every write: which entries a write starts
//! from, when an entry carries a `time`, and the order entries are stored in.
//!
//! Sources (Kubernetes v1.36, `staging/src/k8s.io/apimachinery/pkg/util/managedfields/internal/`):
//! - `fieldmanager.go` (`decodeLiveOrNew`): an update (create, PUT, merge / strategic merge /
//!   JSON patch) whose new object carries managed fields takes them *as sent* (that is how
//!   client-go's `csaupgrade` moves ownership); one empty entry (`[{}]`) resets them; none
//!   (absent or `[]`) keeps the live object's. Server-side apply refuses a body that carries
//!   any (`metadata.managedFields must be nil`, structuredmerge.go).
//! - `managedfieldsupdater.go`: an update stamps the manager's entry with the current time only
//!   when the operation took fields (the object changed under it); an apply stamps it only
//!   when structured-merge-diff returned a changed object (a no-op apply adds or reshapes the
//!   manager's entry without touching `time`; an entry that never changed anything has none).
//! - `lastappliedupdater.go`: see [`sync_last_applied`].
//! - `managedfields.go` (`sortEncodedManagedFields`): entries are ordered by operation
//!   (`Apply` < `Update`), then `time` in whole seconds (none counts as 0), then manager,
//!   apiVersion and subresource.

use crate::store::ApiError;
use serde_json::{json, Value as Json};

/// The managed fields an update starts from, given the new object the request produced:
/// `Some(entries)` when the request's own replace the live ones (`Some(vec![])` for a reset),
/// `None` when the live object's stay (`decodeLiveOrNew`).
pub fn from_request(new: &Json) -> Option<Vec<Json>> {
    let sent = new
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)?;
    match sent.as_slice() {
        [] => None,
        [only] if only.as_object().is_some_and(|m| m.is_empty()) => Some(Vec::new()),
        entries => Some(entries.to_vec()),
    }
}

/// Refuses an apply configuration that carries `metadata.managedFields`.
///
/// # Errors
/// 400 BadRequest `metadata.managedFields must be nil`.
pub fn check_apply_body(body: &Json) -> Result<(), ApiError> {
    match body.pointer("/metadata/managedFields") {
        None | Some(Json::Null) => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "metadata.managedFields must be nil".into(),
        )),
    }
}

/// `kubectl.kubernetes.io/last-applied-configuration`.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `lastappliedupdater.go`: a server-side apply by the manager `kubectl` onto an object that
/// carries the client-side apply annotation (`result`, after the merge) rewrites it to the
/// applied configuration (`applied`, without that annotation; Go's JSON, keys sorted), so a
/// later client-side apply diffs against what was server-side applied.
pub fn sync_last_applied(manager: &str, applied: &Json, result: &mut Json) {
    let has = result
        .pointer("/metadata/annotations")
        .and_then(Json::as_object)
        .is_some_and(|a| a.contains_key(LAST_APPLIED));
    if manager != "kubectl" || !has {
        return;
    }
    let mut last = applied.clone();
    if let Some(a) = last
        .pointer_mut("/metadata/annotations")
        .and_then(Json::as_object_mut)
    {
        a.remove(LAST_APPLIED);
        if a.is_empty() {
            if let Some(m) = last["metadata"].as_object_mut() {
                m.remove("annotations");
            }
        }
    }
    result["metadata"]["annotations"][LAST_APPLIED] = json!(crate::defaults::go_json(Some(&last)));
}

/// A managed-fields entry in kube-apiserver's key order; `time` is left out when `None`.
pub fn entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    time: Option<&Json>,
    fields: Json,
    status: bool,
) -> Json {
    let mut e = json!({"manager": manager, "operation": operation, "apiVersion": api_version});
    if let Some(t) = time {
        e["time"] = t.clone();
    }
    e["fieldsType"] = json!("FieldsV1");
    e["fieldsV1"] = fields;
    if status {
        e["subresource"] = json!("status");
    }
    e
}

/// Whether entry `e` is `manager`'s entry for `operation` on the main resource (`status`
/// false) or on `/status`.
pub fn is_entry(e: &Json, manager: &str, operation: &str, status: bool) -> bool {
    e["manager"] == json!(manager)
        && e["operation"] == json!(operation)
        && e.get("subresource").is_some() == status
}

/// Seconds since the epoch of an RFC 3339 `time` (`YYYY-MM-DDTHH:MM:SSZ`, as the server
/// writes it); 0 when absent or unreadable, as `sortEncodedManagedFields` counts a nil time.
fn seconds(t: &Json) -> i64 {
    let Some(s) = t.as_str() else { return 0 };
    let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i64>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
    ) else {
        return 0;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3_600 + mi * 60 + se
}

/// Orders entries as kube-apiserver stores them (`sortEncodedManagedFields`).
pub fn sort(entries: &mut [Json]) {
    entries.sort_by_key(|e| {
        let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
        (
            s("operation"),
            seconds(&e["time"]),
            s("manager"),
            s("apiVersion"),
            s("subresource"),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_entries_replace_reset_or_keep_the_live_ones() {
        let sent = json!({"metadata": {"managedFields": [{"manager": "a", "operation": "Apply"}]}});
        assert_eq!(
            from_request(&sent),
            Some(vec![json!({"manager": "a", "operation": "Apply"})])
        );
        assert_eq!(
            from_request(&json!({"metadata": {"managedFields": [{}]}})),
            Some(vec![])
        );
        assert_eq!(
            from_request(&json!({"metadata": {"managedFields": []}})),
            None
        );
        assert_eq!(from_request(&json!({"metadata": {}})), None);
    }

    #[test]
    fn apply_bodies_must_not_carry_managed_fields() {
        assert!(check_apply_body(&json!({"metadata": {"name": "x"}})).is_ok());
        let e = check_apply_body(&json!({"metadata": {"managedFields": []}})).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "metadata.managedFields must be nil")
        );
    }

    #[test]
    fn kubectl_applies_keep_the_client_side_annotation_in_step() {
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old"}}, "data": {"b": "2", "a": "1"}});
        let mut result = applied.clone();
        sync_last_applied("kubectl", &applied, &mut result);
        assert_eq!(
            result["metadata"]["annotations"][LAST_APPLIED],
            r#"{"apiVersion":"v1","data":{"a":"1","b":"2"},"kind":"ConfigMap","metadata":{"name":"c"}}"#
        );
        // Other managers, or objects without the annotation, are left alone.
        let mut other = applied.clone();
        sync_last_applied("stackwave", &applied, &mut other);
        assert_eq!(other, applied);
        let bare = json!({"metadata": {"name": "c"}});
        let mut r = bare.clone();
        sync_last_applied("kubectl", &bare, &mut r);
        assert_eq!(r, bare);
    }

    #[test]
    fn entries_sort_by_operation_then_second_then_manager() {
        let e = |m: &str, op: &str, t: Option<&str>| {
            entry(m, op, "v1", t.map(|t| json!(t)).as_ref(), json!({}), false)
        };
        let mut v = vec![
            e("zed", "Update", Some("2026-01-01T00:00:01Z")),
            e("bob", "Update", Some("2026-01-01T00:00:02Z")),
            e("amy", "Update", Some("2026-01-01T00:00:02Z")),
            e("yan", "Apply", Some("2026-01-01T00:00:05Z")),
            e("xav", "Apply", None),
        ];
        sort(&mut v);
        let order: Vec<&str> = v.iter().map(|e| e["manager"].as_str().unwrap()).collect();
        assert_eq!(order, ["xav", "yan", "zed", "amy", "bob"]);
        // A time-less entry has no `time` key at all.
        assert!(v[0].get("time").is_none());
        assert_eq!(seconds(&json!("1970-01-02T00:00:01Z")), 86_401);
        assert_eq!(seconds(&json!("2026-12-01T21:30:00Z")), 1_796_160_600);
    }
}
