//! Kubernetes' write rules as the test server's store applies them, beyond what the recorded
//! corpus shows: optimistic concurrency on every kind of write, validation with
//! kube-apiserver's messages, managed-fields timestamps, Events seen through both APIs.

use kube_testserver::resources::ApiResource;
use kube_testserver::store::{ApiError, Store, Write, WriteOpts};
use serde_json::{json, Value as Json};

fn res(store: &Store, group: &str, version: &str, plural: &str) -> ApiResource {
    store
        .resource(group, version, plural)
        .cloned()
        .expect("served resource")
}

fn opts(manager: &str) -> WriteOpts {
    WriteOpts {
        manager: manager.into(),
        ..Default::default()
    }
}

fn status_opts(manager: &str) -> WriteOpts {
    WriteOpts {
        manager: manager.into(),
        status: true,
        ..Default::default()
    }
}

fn rv(o: &Json) -> String {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

const LOCK: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

fn assert_conflict(r: Result<impl std::fmt::Debug, ApiError>, what: &str, qualified: &str) {
    let e = r.expect_err(what);
    assert_eq!(e.code, 409, "{what}: {}", e.message);
    assert_eq!(e.reason, "Conflict", "{what}");
    assert!(
        e.message
            .starts_with(&format!("Operation cannot be fulfilled on {qualified} ")),
        "{what}: {}",
        e.message
    );
    assert!(e.message.ends_with(LOCK), "{what}: {}", e.message);
}

fn configmap(data: Json, rv: Option<&str>) -> Json {
    let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}, "data": data});
    if let Some(rv) = rv {
        o["metadata"]["resourceVersion"] = json!(rv);
    }
    o
}

#[test]
fn every_kind_of_write_checks_the_resource_version() {
    let mut s = Store::new();
    let cms = res(&s, "", "v1", "configmaps");
    let created = s
        .write(
            &cms,
            "default",
            "cm",
            Write::Create,
            configmap(json!({"k": "1"}), None),
            &opts("m"),
        )
        .unwrap()
        .object;
    let stale = rv(&created);
    let current = rv(&s
        .write(
            &cms,
            "default",
            "cm",
            Write::Replace,
            configmap(json!({"k": "2"}), Some(&stale)),
            &opts("m"),
        )
        .unwrap()
        .object);
    assert_ne!(stale, current);
    let writes: Vec<(&str, Write, Json)> = vec![
        (
            "PUT",
            Write::Replace,
            configmap(json!({"k": "3"}), Some(&stale)),
        ),
        (
            "PUT that changes nothing",
            Write::Replace,
            configmap(json!({"k": "2"}), Some(&stale)),
        ),
        (
            "merge patch",
            Write::MergePatch,
            json!({"metadata": {"resourceVersion": stale}, "data": {"k": "4"}}),
        ),
        (
            "merge patch that changes nothing",
            Write::MergePatch,
            json!({"metadata": {"resourceVersion": stale}}),
        ),
        (
            "strategic merge patch",
            Write::StrategicMergePatch,
            json!({"metadata": {"resourceVersion": stale}, "data": {"k": "4"}}),
        ),
        (
            "JSON patch replacing the resourceVersion",
            Write::JsonPatch,
            json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": stale}]),
        ),
        (
            "apply",
            Write::Apply { force: false },
            configmap(json!({"a": "x"}), Some(&stale)),
        ),
        (
            "apply that changes nothing",
            Write::Apply { force: true },
            configmap(json!({"k": "2"}), Some(&stale)),
        ),
    ];
    for (what, how, body) in writes {
        assert_conflict(
            s.write(&cms, "default", "cm", how, body, &opts("m")),
            what,
            "configmaps",
        );
        // Dry runs are checked the same way.
    }
    let dry = WriteOpts {
        dry_run: true,
        ..opts("m")
    };
    assert_conflict(
        s.write(
            &cms,
            "default",
            "cm",
            Write::Replace,
            configmap(json!({"k": "5"}), Some(&stale)),
            &dry,
        ),
        "dry-run PUT",
        "configmaps",
    );
    // Nothing was written by the refused requests.
    let now = s.get(&cms, "default", "cm").unwrap();
    assert_eq!(
        (rv(&now), &now["data"]),
        (current.clone(), &json!({"k": "2"}))
    );
    // The current resourceVersion, or none at all: the write goes through.
    let w = s
        .write(
            &cms,
            "default",
            "cm",
            Write::MergePatch,
            json!({"metadata": {"resourceVersion": current}, "data": {"k": "6"}}),
            &opts("m"),
        )
        .unwrap();
    let w = s
        .write(
            &cms,
            "default",
            "cm",
            Write::Replace,
            configmap(json!({"k": "7"}), None),
            &opts("m"),
        )
        .map(|x| (x, rv(&w.object)))
        .unwrap();
    assert_ne!(rv(&w.0.object), w.1);
    assert_eq!(w.0.object["data"], json!({"k": "7"}));
    // A no-op PUT without a resourceVersion keeps the object's.
    let again = s
        .write(
            &cms,
            "default",
            "cm",
            Write::Replace,
            configmap(json!({"k": "7"}), None),
            &opts("m"),
        )
        .unwrap();
    assert_eq!(rv(&again.object), rv(&w.0.object));
}

#[test]
fn status_writes_and_uids_are_preconditions_too() {
    let mut s = Store::new();
    let deps = res(&s, "apps", "v1", "deployments");
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let created = s
        .write(&deps, "default", "d", Write::Create, body, &opts("m"))
        .unwrap()
        .object;
    let stale = rv(&created);
    let mut update = created.clone();
    update["spec"]["replicas"] = json!(3);
    s.write(&deps, "default", "d", Write::Replace, update, &opts("m"))
        .unwrap();
    let mut status = created.clone();
    status["status"] = json!({"replicas": 1});
    assert_conflict(
        s.write(
            &deps,
            "default",
            "d",
            Write::Replace,
            status.clone(),
            &status_opts("ctl"),
        ),
        "PUT /status",
        "deployments.apps",
    );
    assert_conflict(
        s.write(
            &deps,
            "default",
            "d",
            Write::MergePatch,
            json!({"metadata": {"resourceVersion": stale}, "status": {"replicas": 1}}),
            &status_opts("ctl"),
        ),
        "PATCH /status",
        "deployments.apps",
    );
    let e = s
        .write(
            &deps,
            "default",
            "d",
            Write::MergePatch,
            json!({"metadata": {"uid": "someone-else"}}),
            &opts("m"),
        )
        .unwrap_err();
    assert_eq!(e.code, 409);
    assert!(
        e.message.contains(
            "StorageError: invalid object, Code: 4, Key: /registry/deployments/default/d"
        ),
        "{}",
        e.message
    );
    assert!(e.message.ends_with(&format!(
        "Precondition failed: UID in precondition: someone-else, UID in object meta: {}",
        created["metadata"]["uid"].as_str().unwrap()
    )));
    assert_eq!(
        e.details,
        json!({"name": "d", "group": "apps", "kind": "deployments"})
    );
}

fn create(s: &mut Store, r: &ApiResource, body: Json) -> Result<Json, ApiError> {
    let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
    s.write(r, "default", &name, Write::Create, body, &opts("m"))
        .map(|w| w.object)
}

fn secret(name: &str, ty: &str, data: Json) -> Json {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"}, "type": ty, "data": data})
}

fn causes(e: &ApiError) -> Vec<(String, String)> {
    e.details["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn secrets_are_validated_as_kube_apiserver_does() {
    let mut s = Store::new();
    let secrets = res(&s, "", "v1", "secrets");
    // Typed Secrets need their keys.
    let e = create(
        &mut s,
        &secrets,
        secret("t", "kubernetes.io/tls", json!({"tls.crt": "eA=="})),
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "Secret \"t\" is invalid: data[tls.key]: Required value"
    );
    let e = create(
        &mut s,
        &secrets,
        secret("t", "kubernetes.io/tls", json!({})),
    )
    .unwrap_err();
    assert_eq!(
        causes(&e),
        [
            ("data[tls.crt]".into(), "Required value".into()),
            ("data[tls.key]".into(), "Required value".into())
        ]
    );
    for (ty, field) in [
        ("kubernetes.io/dockerconfigjson", "data[.dockerconfigjson]"),
        ("kubernetes.io/dockercfg", "data[.dockercfg]"),
        ("kubernetes.io/ssh-auth", "data[ssh-privatekey]"),
        (
            "kubernetes.io/service-account-token",
            "metadata.annotations[kubernetes.io/service-account.name]",
        ),
    ] {
        let e = create(&mut s, &secrets, secret("t", ty, json!({}))).unwrap_err();
        assert_eq!(
            causes(&e),
            [(field.to_string(), "Required value".into())],
            "{ty}"
        );
    }
    let e = create(
        &mut s,
        &secrets,
        secret("t", "kubernetes.io/basic-auth", json!({})),
    )
    .unwrap_err();
    assert_eq!(causes(&e).len(), 2);
    // Either basic-auth key is enough.
    create(
        &mut s,
        &secrets,
        secret(
            "ba",
            "kubernetes.io/basic-auth",
            json!({"username": "dQ=="}),
        ),
    )
    .unwrap();
    // Keys must be config-map keys.
    let e = create(
        &mut s,
        &secrets,
        secret("k", "Opaque", json!({"bad key": "eA=="})),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "Secret \"k\" is invalid: data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    );
    // Values must be base64: a 400 from the decoder, before validation.
    let e = create(&mut s, &secrets, secret("b", "Opaque", json!({"k": "%%%"}))).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            400,
            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 0"
        )
    );
    // The type cannot change.
    create(
        &mut s,
        &secrets,
        secret("o", "Opaque", json!({"k": "eA=="})),
    )
    .unwrap();
    let e = s
        .write(
            &secrets,
            "default",
            "o",
            Write::MergePatch,
            json!({"type": "kubernetes.io/basic-auth", "data": {"username": "dQ=="}}),
            &opts("m"),
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "Secret \"o\" is invalid: type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"
    );
}

#[test]
fn configmap_keys_and_finalizers_are_validated() {
    let mut s = Store::new();
    let cms = res(&s, "", "v1", "configmaps");
    let e = create(
        &mut s,
        &cms,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
            "data": {"..x": "1", "same": "a"}, "binaryData": {"same": "YQ=="}}),
    )
    .unwrap_err();
    let fields: Vec<String> = causes(&e)
        .into_iter()
        .map(|(f, m)| format!("{f}: {m}"))
        .collect();
    assert_eq!(
        fields,
        [
            "data[..x]: Invalid value: \"..x\": must not start with '..'",
            "data[same]: Invalid value: \"same\": duplicate of key present in binaryData",
            "binaryData[same]: Invalid value: \"same\": duplicate of key present in data",
        ]
    );
    let e = create(
        &mut s,
        &cms,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "namespace": "default", "finalizers": ["bad/name/x"]}}),
    )
    .unwrap_err();
    assert_eq!(causes(&e)[0].0, "metadata.finalizers");
    // A finalizer on an object being deleted: it stays, none can be added.
    create(
        &mut s,
        &cms,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d", "namespace": "default", "finalizers": ["example.com/keep"]}}),
    )
    .unwrap();
    s.delete(&cms, "default", "d", false, None).unwrap();
    let e = s
        .write(
            &cms,
            "default",
            "d",
            Write::MergePatch,
            json!({"metadata": {"finalizers": ["example.com/keep", "example.com/more", "kubernetes"]}}),
            &opts("m"),
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "ConfigMap \"d\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/more\", \"kubernetes\"}"
    );
    // Removing the last one finishes the deletion.
    s.write(
        &cms,
        "default",
        "d",
        Write::MergePatch,
        json!({"metadata": {"finalizers": null}}),
        &opts("m"),
    )
    .unwrap();
    assert_eq!(s.get(&cms, "default", "d").unwrap_err().code, 404);
}

#[test]
fn leases_are_validated_and_their_times_are_micro_times() {
    let mut s = Store::new();
    let leases = res(&s, "coordination.k8s.io", "v1", "leases");
    let lease = |spec: Json| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "namespace": "default"}, "spec": spec});
    let e = create(
        &mut s,
        &leases,
        lease(json!({"leaseDurationSeconds": 0, "leaseTransitions": -1})),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "Lease.coordination.k8s.io \"l\" is invalid: [spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0, spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0]"
    );
    assert_eq!(e.details["group"], "coordination.k8s.io");
    let e = create(
        &mut s,
        &leases,
        lease(json!({"renewTime": "2026-01-01T00:00:00.25Z"})),
    )
    .unwrap_err();
    assert_eq!(e.code, 400);
    let ok = create(
        &mut s,
        &leases,
        lease(json!({"holderIdentity": "", "renewTime": "2026-01-01T00:00:00.250000Z"})),
    )
    .unwrap();
    // No generation for Leases.
    assert!(ok["metadata"].get("generation").is_none());
}

#[test]
fn apply_entries_get_a_time_only_when_the_object_changes() {
    let mut s = Store::new();
    let cms = res(&s, "", "v1", "configmaps");
    create(&mut s, &cms, configmap(json!({"a": "1"}), None)).unwrap();
    let entry = |o: &Json, m: &str| -> Json {
        o["metadata"]["managedFields"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["manager"] == m).cloned())
            .unwrap_or(Json::Null)
    };
    // The same values as the object has: a time-less Apply entry (and a new resourceVersion).
    let before = s.get(&cms, "default", "cm").unwrap();
    let same = s
        .write(
            &cms,
            "default",
            "cm",
            Write::Apply { force: false },
            configmap(json!({"a": "1"}), None),
            &opts("applier"),
        )
        .unwrap()
        .object;
    assert_eq!(entry(&same, "applier")["operation"], "Apply");
    assert!(entry(&same, "applier").get("time").is_none());
    assert_ne!(rv(&before), rv(&same));
    // Entries are ordered Apply first.
    assert_eq!(same["metadata"]["managedFields"][0]["manager"], "applier");
    // A change stamps it.
    let changed = s
        .write(
            &cms,
            "default",
            "cm",
            Write::Apply { force: false },
            configmap(json!({"a": "1", "b": "2"}), None),
            &opts("applier"),
        )
        .unwrap()
        .object;
    assert!(entry(&changed, "applier")["time"].is_string());
    // An Update manager that loses its only key keeps the map it created.
    let patched = s
        .write(
            &cms,
            "default",
            "cm",
            Write::MergePatch,
            json!({"data": {"a": "9"}}),
            &opts("editor"),
        )
        .unwrap()
        .object;
    assert_eq!(entry(&patched, "m")["fieldsV1"], json!({"f:data": {}}));
    // Managed fields an update sends are taken as sent.
    let sent = json!([{"manager": "applier", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {".": {}, "f:a": {}, "f:b": {}}}}]);
    let moved = s
        .write(
            &cms,
            "default",
            "cm",
            Write::JsonPatch,
            json!([{"op": "replace", "path": "/metadata/managedFields", "value": sent}]),
            &opts("mover"),
        )
        .unwrap()
        .object;
    assert_eq!(moved["metadata"]["managedFields"], sent);
    // A body carrying managed fields cannot be applied.
    let mut body = configmap(json!({"a": "9"}), None);
    body["metadata"]["managedFields"] = sent;
    let e = s
        .write(
            &cms,
            "default",
            "cm",
            Write::Apply { force: false },
            body,
            &opts("applier"),
        )
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "metadata.managedFields must be nil")
    );
}

#[test]
fn an_event_is_one_object_behind_both_apis() {
    let mut s = Store::new();
    let events = res(&s, "events.k8s.io", "v1", "events");
    let core = res(&s, "", "v1", "events");
    let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000001Z", "reportingController": "example.com/c", "reportingInstance": "i",
        "action": "A", "reason": "R", "type": "Normal", "note": "hello",
        "regarding": {"kind": "ConfigMap", "namespace": "default", "name": "cm"}});
    let created = create(&mut s, &events, e).unwrap();
    assert_eq!(created["deprecatedSource"], json!({}));
    assert!(created["deprecatedFirstTimestamp"].is_null());
    let view = s.get(&core, "default", "e").unwrap();
    assert_eq!(view["apiVersion"], "v1");
    assert_eq!(view["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(rv(&view), rv(&created));
    assert_eq!(view["message"], "hello");
    assert_eq!(view["involvedObject"]["name"], "cm");
    assert_eq!(view["reportingComponent"], "example.com/c");
    assert_eq!(view["source"], json!({}));
    assert_eq!(
        view["metadata"]["managedFields"][0]["apiVersion"],
        "events.k8s.io/v1"
    );
    // Written back through core/v1 as read: nothing changes.
    let same = s
        .write(
            &core,
            "default",
            "e",
            Write::Replace,
            view.clone(),
            &opts("kube-api-replay"),
        )
        .unwrap()
        .object;
    assert_eq!(rv(&same), rv(&view));
    // An events.k8s.io update may not change the reason (reported twice, as the real server).
    let err = s
        .write(
            &events,
            "default",
            "e",
            Write::MergePatch,
            json!({"reason": "Other"}),
            &opts("m"),
        )
        .unwrap_err();
    assert_eq!(err.details["causes"].as_array().map(Vec::len), Some(2));
    assert!(err.details.get("group").is_none());
    assert_eq!(
        err.message,
        "Event \"e\" is invalid: reason: Invalid value: \"Other\": field is immutable"
    );
}
