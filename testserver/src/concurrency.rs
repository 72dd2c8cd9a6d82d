//! Optimistic concurrency: the `metadata.resourceVersion` precondition of every write and the
//! `DeleteOptions.preconditions` of a delete, with kube-apiserver's 409 bodies.
//!
//! Sources (Kubernetes v1.36):
//! - `staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go` (`Update`): inside
//!   `GuaranteedUpdate`, before anything else is looked at, a non-empty resourceVersion on the
//!   new object must equal the stored one, else `NewConflict(resource, name,
//!   OptimisticLockErrorMsg)` — also when the write would change nothing; an empty one makes
//!   the update unconditional. The new object is the PUT body, the patched object (so a merge,
//!   strategic merge or JSON patch carrying `metadata.resourceVersion` is conditional) or the
//!   applied configuration merged into the live object (server-side apply), on the main
//!   resource and on `/status` alike.
//! - `staging/src/k8s.io/apiserver/pkg/registry/rest/update.go` (`defaultUpdatedObjectInfo.
//!   Preconditions`): a `metadata.uid` in the new object is a UID precondition.
//! - `staging/src/k8s.io/apiserver/pkg/storage/interfaces.go` (`Preconditions.Check`) and
//!   `storage/errors.go` (`NewInvalidObjError`, `StorageError.Error`): a failed UID or
//!   resourceVersion precondition of a delete (or a UID one of an update) is an "invalid
//!   object" storage error, which `storage/errors` `InterpretDeleteError`/
//!   `InterpretUpdateError` turn into a 409 Conflict quoting it.
//! - `staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go` (`NewConflict`): message
//!   `Operation cannot be fulfilled on <resource.group> "<name>": <cause>`, details
//!   `{name, group, kind: <resource>}` (`group` omitted for the core group).

use crate::resources::ApiResource;
use crate::store::{details, ApiError};
use serde_json::Value as Json;

/// `OptimisticLockErrorMsg` (k8s.io/apiserver `pkg/registry/generic/registry/store.go`).
pub const OPTIMISTIC_LOCK: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// A 409 Conflict about object `name` of `r` with `cause` (apimachinery `NewConflict`).
pub fn conflict(r: &ApiResource, name: &str, cause: &str) -> ApiError {
    ApiError {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on {} {name:?}: {cause}",
            r.qualified()
        ),
        details: details(r, name),
    }
}

/// The etcd key kube-apiserver stores an object under (quoted in storage errors):
/// `/registry/<resource prefix>/<namespace>/<name>`. The prefix is the plural for most
/// builtin resources (`services/specs` and `services/endpoints` are the historical
/// exceptions, `pkg/registry/core/service/storage`, `.../endpoint/storage`) and
/// `<group>/<plural>` for custom resources (apiextensions-apiserver `customresource_handler.go`).
pub fn storage_key(r: &ApiResource, ns: &str, name: &str) -> String {
    let prefix = match (r.group.as_str(), r.plural.as_str()) {
        ("", "services") => "services/specs".to_string(),
        ("", "endpoints") => "services/endpoints".to_string(),
        (g, p) if r.schema.is_some() => format!("{g}/{p}"),
        (_, p) => p.to_string(),
    };
    if r.namespaced {
        format!("/registry/{prefix}/{ns}/{name}")
    } else {
        format!("/registry/{prefix}/{name}")
    }
}

/// An "invalid object" storage error as kube-apiserver prints it (`StorageError.Error`, code
/// 4, `ResourceVersion: 0` as `NewInvalidObjError` leaves it).
fn invalid_obj(key: &str, msg: &str) -> String {
    format!(
        "StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: {msg}"
    )
}

/// The resourceVersion precondition of an update: `requested` is the new object's
/// `metadata.resourceVersion` (empty: unconditional), `current` the stored one.
///
/// # Errors
/// 409 Conflict with `OptimisticLockErrorMsg` when they differ.
pub fn check_resource_version(
    r: &ApiResource,
    name: &str,
    requested: &str,
    current: &str,
) -> Result<(), ApiError> {
    if !requested.is_empty() && requested != current {
        return Err(conflict(r, name, OPTIMISTIC_LOCK));
    }
    Ok(())
}

/// The UID precondition an update's body carries in `metadata.uid` (rest/update.go).
///
/// # Errors
/// 409 Conflict quoting the storage error when the UIDs differ.
pub fn check_update_uid(
    r: &ApiResource,
    ns: &str,
    name: &str,
    requested: &str,
    current: &str,
) -> Result<(), ApiError> {
    if !requested.is_empty() && requested != current {
        let msg = format!(
            "Precondition failed: UID in precondition: {requested}, UID in object meta: {current}"
        );
        return Err(conflict(
            r,
            name,
            &invalid_obj(&storage_key(r, ns, name), &msg),
        ));
    }
    Ok(())
}

/// `DeleteOptions.preconditions` (`{uid, resourceVersion}`, either may be absent or null)
/// checked against the stored object `obj`, UID first (storage `Preconditions.Check`).
///
/// # Errors
/// 409 Conflict quoting the storage error for the first precondition that fails.
pub fn check_delete_preconditions(
    r: &ApiResource,
    ns: &str,
    name: &str,
    preconditions: &Json,
    obj: &Json,
) -> Result<(), ApiError> {
    let key = storage_key(r, ns, name);
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let Some(want) = preconditions.get(field).and_then(Json::as_str) else {
            continue;
        };
        let have = obj
            .pointer(&format!("/metadata/{field}"))
            .and_then(Json::as_str)
            .unwrap_or("");
        if want != have {
            let msg = format!(
                "Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"
            );
            return Err(conflict(r, name, &invalid_obj(&key, &msg)));
        }
    }
    Ok(())
}

/// A create (POST, or an apply or update that creates) whose object carries a
/// resourceVersion: storage refuses it (`etcd3/store.go` `Create`:
/// `storage.ErrResourceVersionSetOnCreate`, which no interpreter maps, so a 500 without
/// reason). A value that does not parse as a resourceVersion is not looked at (the versioner
/// fails to read it), and dry runs never reach storage.
///
/// # Errors
/// The 500 [`ApiError`].
pub fn check_create(requested: &str) -> Result<(), ApiError> {
    match requested.parse::<u64>() {
        Ok(rv) if rv != 0 => Err(ApiError {
            code: 500,
            reason: "",
            message: "resourceVersion should not be set on objects to be created".into(),
            details: Json::Null,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(group: &str, plural: &str) -> ApiResource {
        crate::resources::builtin()
            .into_iter()
            .find(|r| r.group == group && r.plural == plural)
            .expect("builtin resource")
    }

    #[test]
    fn stale_resource_version_is_a_conflict_naming_the_resource() {
        let leases = res("coordination.k8s.io", "leases");
        let e = check_resource_version(&leases, "l", "5", "6").unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            format!("Operation cannot be fulfilled on leases.coordination.k8s.io \"l\": {OPTIMISTIC_LOCK}")
        );
        assert_eq!(
            e.details,
            json!({"name": "l", "group": "coordination.k8s.io", "kind": "leases"})
        );
        let cms = res("", "configmaps");
        let e = check_resource_version(&cms, "c", "1", "2").unwrap_err();
        assert_eq!(e.details, json!({"name": "c", "kind": "configmaps"}));
        // Equal or absent: no precondition failure.
        assert!(check_resource_version(&cms, "c", "2", "2").is_ok());
        assert!(check_resource_version(&cms, "c", "", "2").is_ok());
    }

    #[test]
    fn delete_preconditions_check_uid_then_resource_version() {
        let cms = res("", "configmaps");
        let obj = json!({"metadata": {"uid": "u1", "resourceVersion": "7"}});
        let ok = json!({"uid": "u1", "resourceVersion": "7"});
        assert!(check_delete_preconditions(&cms, "ns", "c", &ok, &obj).is_ok());
        assert!(check_delete_preconditions(&cms, "ns", "c", &json!({}), &obj).is_ok());
        let e = check_delete_preconditions(
            &cms,
            "ns",
            "c",
            &json!({"uid": "u2", "resourceVersion": "1"}),
            &obj,
        )
        .unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(e.message, "Operation cannot be fulfilled on configmaps \"c\": StorageError: invalid object, Code: 4, Key: /registry/configmaps/ns/c, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: u2, UID in object meta: u1");
        let e = check_delete_preconditions(&cms, "ns", "c", &json!({"resourceVersion": "6"}), &obj)
            .unwrap_err();
        assert!(e.message.ends_with(
            "Precondition failed: ResourceVersion in precondition: 6, ResourceVersion in object meta: 7"
        ));
    }

    #[test]
    fn creates_may_not_carry_a_resource_version() {
        let e = check_create("12").unwrap_err();
        assert_eq!((e.code, e.reason), (500, ""));
        assert_eq!(
            e.message,
            "resourceVersion should not be set on objects to be created"
        );
        for ok in ["", "0", "-1", "abc"] {
            assert!(check_create(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn storage_keys_follow_the_registry_prefixes() {
        assert_eq!(
            storage_key(&res("", "services"), "n", "s"),
            "/registry/services/specs/n/s"
        );
        assert_eq!(
            storage_key(&res("apps", "deployments"), "n", "d"),
            "/registry/deployments/n/d"
        );
        assert_eq!(
            storage_key(&res("", "namespaces"), "", "n"),
            "/registry/namespaces/n"
        );
    }
}
