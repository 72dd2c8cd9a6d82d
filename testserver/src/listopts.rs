//! List options of collection requests (GET list, watch, DELETE collection): label and field
//! selectors, `limit`/`continue` paging, and the `resourceVersionMatch` rules, with the real
//! server's errors (k8s.io/apimachinery `pkg/apis/meta/internalversion/validation`,
//! `pkg/fields/selector.go`, `pkg/labels/selector.go`; field selectors of most resources
//! support only `metadata.name` and `metadata.namespace`).

use crate::store::ApiError;
use crate::validate::{invalid_error, Cause};
use kustomize_rs::transformers::select::LabelSelector;
use serde_json::Value as Json;
use std::collections::HashMap;

/// One field requirement: (field, wanted value, equal?).
type FieldReq = (String, String, bool);

/// Parsed list options.
#[derive(Default, Clone)]
pub struct ListOpts {
    /// `labelSelector`.
    pub labels: Option<LabelSelector>,
    /// `fieldSelector` requirements.
    pub fields: Vec<FieldReq>,
    /// `limit` (0: all).
    pub limit: usize,
    /// `continue`: list after this `namespace/name`.
    pub after: Option<String>,
}

/// A `ListOptions` field error: (field, reason, message).
fn forbidden(field: &str, message: &str) -> Cause {
    (
        field.to_string(),
        "FieldValueForbidden",
        format!("Forbidden: {message}"),
    )
}

fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    (
        field.to_string(),
        "FieldValueNotSupported",
        format!(
            "Unsupported value: {value:?}: supported values: {}",
            list.join(", ")
        ),
    )
}

/// `ValidateListOptions` (k8s.io/apiserver `pkg/apis/meta/internalversion/validation/
/// validation.go`): `resourceVersionMatch` and `sendInitialEvents` for a list
/// (`watch` false) or a watch, every error of the request at once.
fn list_option_errors(q: &HashMap<String, String>, watch: bool) -> Vec<Cause> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let (rvm, rv, cont) = (
        get("resourceVersionMatch"),
        get("resourceVersion"),
        get("continue"),
    );
    let send_initial = q.contains_key("sendInitialEvents");
    let m = "resourceVersionMatch";
    let mut errs = Vec::new();
    if watch {
        if send_initial && rvm != "NotOlderThan" {
            errs.push(forbidden(
                m,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !rvm.is_empty() {
            if !send_initial {
                errs.push(forbidden(
                    m,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if rvm != "NotOlderThan" {
                errs.push(not_supported(m, rvm, &["NotOlderThan"]));
            }
            if !cont.is_empty() {
                errs.push(forbidden(
                    m,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
        return errs;
    }
    if !rvm.is_empty() {
        if rv.is_empty() {
            errs.push(forbidden(
                m,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if !cont.is_empty() {
            errs.push(forbidden(
                m,
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if rvm != "Exact" && rvm != "NotOlderThan" {
            errs.push(not_supported(m, rvm, &["Exact", "NotOlderThan", ""]));
        }
        if rvm == "Exact" && rv == "0" {
            errs.push(forbidden(
                m,
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if send_initial {
        errs.push(forbidden(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for list",
        ));
    }
    errs
}

/// A label selector the real parser accepts: each requirement's value must not begin with
/// another operator character (`tier===x`).
fn check_labels(s: &str) -> Result<(), ApiError> {
    for req in s.split(',') {
        let rest = if let Some((_, v)) = req.split_once("!=") {
            v
        } else if let Some((_, v)) = req.split_once("==") {
            v
        } else if let Some((_, v)) = req.split_once('=') {
            v
        } else {
            continue;
        };
        if let Some(c) = rest.chars().next().filter(|c| matches!(c, '=' | '!')) {
            return Err(ApiError::bad_request(format!(
                "unable to parse requirement: found '{c}', expected: identifier"
            )));
        }
    }
    Ok(())
}

/// Parses the query of a collection request; `watch` selects the watch rules; `selectors`
/// are the resource's own field selectors (`ApiResource::field_selectors`: `None` for the
/// default conversion, whose error lists only the metadata ones; a resource with its own
/// conversion answers "field label not supported").
///
/// # Errors
/// 400 for malformed or unsupported selectors, 422 for `resourceVersionMatch` misuse.
pub fn parse(
    q: &HashMap<String, String>,
    watch: bool,
    selectors: Option<&[(String, String)]>,
) -> Result<ListOpts, ApiError> {
    let mut o = ListOpts::default();
    let errs = list_option_errors(q, watch);
    if !errs.is_empty() {
        return Err(invalid_error("meta.k8s.io", "ListOptions", "", &errs));
    }
    if let Some(s) = q.get("labelSelector").filter(|s| !s.is_empty()) {
        check_labels(s)?;
        o.labels = Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?);
    }
    if let Some(s) = q.get("fieldSelector").filter(|s| !s.is_empty()) {
        for req in s.split(',') {
            let (f, v, eq) = if let Some((f, v)) = req.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = req.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = req.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{req}'"
                )));
            };
            let path = match (f, selectors) {
                ("metadata.name" | "metadata.namespace", _) => f.to_string(),
                (_, None) => {
                    return Err(ApiError::bad_request(format!(
                        "\"{f}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )))
                }
                (_, Some(known)) => match known.iter().find(|(label, _)| label == f) {
                    Some((_, path)) => path.clone(),
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {f}"
                        )))
                    }
                },
            };
            o.fields.push((path, v.to_string(), eq));
        }
    }
    o.limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    if let Some(c) = q.get("continue").filter(|c| !c.is_empty()) {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid".into()))?;
        o.after = Some(raw);
    }
    Ok(o)
}

/// `namespace/name` of an object (the paging key).
fn key(o: &Json) -> String {
    let m = |k: &str| {
        o.pointer(&format!("/metadata/{k}"))
            .and_then(Json::as_str)
            .unwrap_or("")
    };
    format!("{}/{}", m("namespace"), m("name"))
}

impl ListOpts {
    /// Whether an object passes the field selector.
    pub fn fields_match(&self, o: &Json) -> bool {
        self.fields.iter().all(|(f, v, eq)| {
            let got = o
                .pointer(&format!("/{}", f.replace('.', "/")))
                .and_then(Json::as_str)
                .unwrap_or("");
            (got == v) == *eq
        })
    }

    /// Applies the field selector and paging to selected items (in key order): the page and
    /// the list metadata's `continue` / `remainingItemCount`, if more remain.
    pub fn page(&self, mut items: Vec<Json>) -> (Vec<Json>, Option<(String, usize)>) {
        items.retain(|o| self.fields_match(o));
        items.sort_by_key(key);
        if let Some(after) = &self.after {
            items.retain(|o| key(o) > *after);
        }
        if self.limit == 0 || items.len() <= self.limit {
            return (items, None);
        }
        let rest = items.split_off(self.limit);
        use base64::Engine;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(key(items.last().unwrap_or(&Json::Null)));
        (items, Some((token, rest.len())))
    }
}
