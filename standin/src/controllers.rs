//! The controllers: one pass over the cache plans what kube-controller-manager would do
//! ([`plan`], pure), then the actions are sent to the API server ([`execute`]).

use crate::cache::{Kind, State};
use crate::rules::Rules;
use crate::status::{self, Phase};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The `foregroundDeletion` finalizer (`metav1.FinalizerDeleteDependents`).
pub const FOREGROUND: &str = "foregroundDeletion";
/// The `orphan` finalizer (`metav1.FinalizerOrphanDependents`).
pub const ORPHAN: &str = "orphan";
/// The namespace finalizer the namespace controller removes (`v1.FinalizerKubernetes`).
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// One change to make.
#[derive(Debug, Clone)]
pub enum Action {
    /// Write `object` (with its new status) through `/status` (or the object itself when the
    /// resource has no status subresource), with its resourceVersion.
    Status {
        /// The resource.
        kind: Kind,
        /// The object with the new status.
        object: Json,
    },
    /// Create `object` (an EndpointSlice, a ServiceAccount); AlreadyExists is fine.
    Create {
        /// The resource.
        kind: Kind,
        /// The object.
        object: Json,
    },
    /// Replace `object` (with its resourceVersion).
    Replace {
        /// The resource.
        kind: Kind,
        /// The object.
        object: Json,
    },
    /// Delete an object (with a uid precondition), after checking live that each of
    /// `absent_owners` is gone (the garbage collector's `attemptToDeleteItem` check).
    Delete {
        /// The resource.
        kind: Kind,
        /// Namespace (`""` when cluster-scoped).
        ns: String,
        /// Name.
        name: String,
        /// uid.
        uid: String,
        /// `Background` or `Foreground`.
        propagation: &'static str,
        /// Owners (resource, name, uid) that must be absent for the delete to go ahead.
        absent_owners: Vec<(Kind, String, String)>,
    },
    /// A JSON merge patch (with the object's resourceVersion inside, so it is
    /// conditional), after checking `absent_owners` as for [`Action::Delete`].
    Patch {
        /// The resource.
        kind: Kind,
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// The merge patch.
        patch: Json,
        /// Owners that must be absent.
        absent_owners: Vec<(Kind, String, String)>,
    },
    /// `PUT /api/v1/namespaces/{name}/finalize` with `object` (its `spec.finalizers` without
    /// `kubernetes`).
    Finalize {
        /// The Namespace resource.
        kind: Kind,
        /// The namespace as it should be written.
        object: Json,
    },
}

impl Action {
    /// A key identifying the action, to avoid sending it again while the cache catches up.
    pub fn key(&self) -> String {
        match self {
            Action::Status { object, .. } => format!(
                "status {} {}",
                uid(object),
                status::normalize(&object["status"])
            ),
            Action::Create { kind, object } | Action::Replace { kind, object } => {
                format!("write {} {}", kind.ar.plural, status::normalize(object))
            }
            Action::Delete { uid, .. } => format!("delete {uid}"),
            Action::Patch {
                kind,
                ns,
                name,
                patch,
                ..
            } => {
                format!("patch {} {ns}/{name} {patch}", kind.ar.plural)
            }
            Action::Finalize { object, .. } => format!("finalize {}", uid(object)),
        }
    }
}

fn uid(o: &Json) -> &str {
    o.pointer("/metadata/uid")
        .and_then(Json::as_str)
        .unwrap_or("")
}

fn meta<'a>(o: &'a Json, field: &str) -> &'a str {
    o.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Json::as_str)
        .unwrap_or("")
}

fn deleting(o: &Json) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
}

fn finalizers(o: &Json) -> Vec<&str> {
    o.pointer("/metadata/finalizers")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect()
}

fn owner_refs(o: &Json) -> &[Json] {
    o.pointer("/metadata/ownerReferences")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// What the controllers remember between passes.
#[derive(Default)]
pub struct Memory {
    /// When each `(uid, generation)` was first seen (the start of its delay).
    pub seen: HashMap<(String, i64), Instant>,
}

/// Plans one pass. Returns the actions and, when an object's delay is still running, the
/// instant the next pass is due.
pub fn plan(
    state: &State,
    rules: &Rules,
    mem: &mut Memory,
    now: Instant,
    clock: &str,
) -> (Vec<Action>, Option<Instant>) {
    let mut out = Vec::new();
    let mut next = None;
    if rules.controllers.status {
        statuses(state, rules, mem, now, clock, &mut out, &mut next);
    }
    if rules.controllers.endpoint_slices {
        endpoint_slices(state, rules, &mut out);
    }
    if rules.controllers.service_accounts {
        service_accounts(state, rules, &mut out);
    }
    if rules.controllers.garbage_collector {
        garbage_collect(state, rules, &mut out);
    }
    if rules.controllers.namespaces && state.synced() {
        namespaces(state, rules, &mut out);
    }
    (out, next)
}

/// Workload, Job, PVC and operator statuses (see [`crate::status`]).
fn statuses(
    state: &State,
    rules: &Rules,
    mem: &mut Memory,
    now: Instant,
    clock: &str,
    out: &mut Vec<Action>,
    next: &mut Option<Instant>,
) {
    let delay = rules.ready_after();
    for kind in state.kinds.values() {
        let (g, k) = (kind.ar.group.as_str(), kind.ar.kind.as_str());
        if !status::BUILTIN_KINDS.contains(&(g, k)) && rules.custom(k).is_none() {
            continue;
        }
        for o in state.objects_of(g, &kind.ar.plural) {
            if deleting(o) || !rules.in_scope(meta(o, "namespace")) {
                continue;
            }
            let generation = o
                .pointer("/metadata/generation")
                .and_then(Json::as_i64)
                .unwrap_or(1);
            let since = *mem
                .seen
                .entry((uid(o).to_string(), generation))
                .or_insert(now);
            let phase = if now.duration_since(since) >= delay {
                Phase::Due
            } else {
                let due = since + delay;
                *next = Some(next.map_or(due, |n: Instant| n.min(due)));
                Phase::Pending
            };
            let Some(s) = status::desired(g, k, o, rules, phase, clock) else {
                continue;
            };
            if status::same(&s, o.get("status").unwrap_or(&Json::Null)) {
                continue;
            }
            let mut object = o.clone();
            object["status"] = s;
            out.push(Action::Status {
                kind: kind.clone(),
                object,
            });
        }
    }
}

/// The EndpointSlice controller's part: every Service with a selector gets one EndpointSlice
/// (`kubernetes.io/service-name`, `endpointslice.kubernetes.io/managed-by`, owned by the
/// Service) with one ready endpoint per ready replica of the workloads in its namespace whose
/// pod template labels match the selector — workloads standing in for their Pods
/// (`pkg/controller/endpointslice/reconciler.go` in kube-controller-manager).
fn endpoint_slices(state: &State, rules: &Rules, out: &mut Vec<Action>) {
    let Some(slices) = state.kind_of("discovery.k8s.io", "EndpointSlice") else {
        return;
    };
    let mut ready_by_ns: HashMap<&str, Vec<(&Json, i64)>> = HashMap::new();
    for plural in ["deployments", "statefulsets", "daemonsets", "replicasets"] {
        for w in state.objects_of("apps", plural) {
            // A ReplicaSet owned by a Deployment stands for the same pods.
            if plural == "replicasets" && !owner_refs(w).is_empty() {
                continue;
            }
            let ready = ["/status/readyReplicas", "/status/numberReady"]
                .iter()
                .find_map(|p| w.pointer(p).and_then(Json::as_i64))
                .unwrap_or(0);
            if let Some(labels) = w.pointer("/spec/template/metadata/labels") {
                ready_by_ns
                    .entry(meta(w, "namespace"))
                    .or_default()
                    .push((labels, ready));
            }
        }
    }
    for svc in state.objects_of("", "services") {
        let Some(selector) = svc.pointer("/spec/selector").and_then(Json::as_object) else {
            continue;
        };
        let (name, ns) = (meta(svc, "name"), meta(svc, "namespace"));
        if selector.is_empty() || deleting(svc) || !rules.in_scope(ns) {
            continue;
        }
        let ready: i64 = ready_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .filter(|(labels, _)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|(_, r)| *r)
            .sum();
        let endpoints: Vec<Json> = (0..ready.clamp(0, 64))
            .map(|i| json!({"addresses": [format!("10.244.{}.{}", i / 200, i % 200 + 10)], "conditions": {"ready": true, "serving": true, "terminating": false}}))
            .collect();
        let ports: Vec<Json> = svc
            .pointer("/spec/ports")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                let port = p.get("targetPort").filter(|t| t.is_i64()).or(p.get("port"));
                json!({"name": p.get("name").cloned().unwrap_or(json!("")), "port": port, "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))})
            })
            .collect();
        let slice_name = format!("{name}-standin");
        let existing = state
            .objects
            .get(&slices.key())
            .and_then(|m| m.get(&(ns.to_string(), slice_name.clone())));
        let mut body = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": ns,
                "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": uid(svc), "controller": true, "blockOwnerDeletion": true}]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports});
        match existing {
            None => out.push(Action::Create {
                kind: slices.clone(),
                object: body,
            }),
            Some(e) => {
                let same = ["endpoints", "ports"]
                    .iter()
                    .all(|k| status::same(e.get(*k).unwrap_or(&Json::Null), &body[*k]))
                    && e.pointer("/metadata/ownerReferences/0/uid")
                        == body.pointer("/metadata/ownerReferences/0/uid");
                if !same {
                    body["metadata"]["resourceVersion"] = e["metadata"]["resourceVersion"].clone();
                    out.push(Action::Replace {
                        kind: slices.clone(),
                        object: body,
                    });
                }
            }
        }
    }
}

/// The serviceaccounts controller: a `default` ServiceAccount in every active namespace
/// (`pkg/controller/serviceaccount/serviceaccounts_controller.go`).
fn service_accounts(state: &State, rules: &Rules, out: &mut Vec<Action>) {
    let Some(sas) = state.kind_of("", "ServiceAccount") else {
        return;
    };
    if !state.synced.contains(&sas.key()) {
        return;
    }
    let have = state.objects.get(&sas.key());
    for ns in state.objects_of("", "namespaces") {
        let name = meta(ns, "name");
        if deleting(ns) || !rules.in_scope(name) {
            continue;
        }
        if have.is_some_and(|m| m.contains_key(&(name.to_string(), "default".to_string()))) {
            continue;
        }
        out.push(Action::Create {
            kind: sas.clone(),
            object: json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}),
        });
    }
}

/// The garbage collector (`pkg/controller/garbagecollector/garbagecollector.go`):
/// - a dependent whose owners are all gone is deleted (background); one whose remaining
///   owners are being deleted in the foreground is deleted in the foreground (when it blocks
///   its owner's deletion) or the background; dangling references beside live owners are
///   removed from it (`attemptToDeleteItem`);
/// - an owner with the `foregroundDeletion` finalizer loses it once no dependent that blocks
///   its deletion (`blockOwnerDeletion: true`) is left (`processDeletingDependentsItem`);
/// - an owner with the `orphan` finalizer: its references are removed from its dependents,
///   then the finalizer (`orphanDependents`, `removeFinalizer`).
fn garbage_collect(state: &State, rules: &Rules, out: &mut Vec<Action>) {
    let mut by_uid: HashMap<&str, (&Kind, &Json)> = HashMap::new();
    let mut dependents: HashMap<&str, Vec<(&Kind, &Json, &Json)>> = HashMap::new();
    for (key, objs) in &state.objects {
        let Some(kind) = state.kinds.get(key) else {
            continue;
        };
        for o in objs.values() {
            by_uid.insert(uid(o), (kind, o));
            for r in owner_refs(o) {
                if let Some(u) = r.get("uid").and_then(Json::as_str) {
                    dependents.entry(u).or_default().push((kind, o, r));
                }
            }
        }
    }
    // Dependents.
    for (kind, o) in by_uid.values() {
        let refs = owner_refs(o);
        if refs.is_empty() || deleting(o) || !rules.in_scope(meta(o, "namespace")) {
            continue;
        }
        let (mut solid, mut waiting, mut dangling) = (0, Vec::new(), Vec::new());
        for r in refs {
            let u = r.get("uid").and_then(Json::as_str).unwrap_or("");
            match by_uid.get(u) {
                Some((_, owner)) if deleting(owner) && finalizers(owner).contains(&FOREGROUND) => {
                    waiting.push(r)
                }
                Some(_) => solid += 1,
                None => dangling.push(r),
            }
        }
        if dangling.is_empty() && waiting.is_empty() {
            continue;
        }
        let ns = meta(o, "namespace");
        let mut absent = Vec::new();
        for r in &dangling {
            let (group, _) = r["apiVersion"]
                .as_str()
                .unwrap_or("")
                .rsplit_once('/')
                .unwrap_or(("", ""));
            let owner_kind = r["kind"].as_str().unwrap_or("");
            // An owner of a kind no longer served cannot be looked up: it is gone.
            if let Some(k) = state.kind_of(group, owner_kind) {
                absent.push((
                    k.clone(),
                    r["name"].as_str().unwrap_or("").to_string(),
                    r["uid"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        let (name, u) = (meta(o, "name").to_string(), uid(o).to_string());
        if solid == 0 {
            let blocks = waiting
                .iter()
                .any(|r| r.get("blockOwnerDeletion") == Some(&json!(true)));
            out.push(Action::Delete {
                kind: (*kind).clone(),
                ns: ns.to_string(),
                name,
                uid: u,
                propagation: if blocks { "Foreground" } else { "Background" },
                absent_owners: absent,
            });
        } else if !dangling.is_empty() {
            let keep: Vec<Json> = refs
                .iter()
                .filter(|r| !dangling.contains(r))
                .cloned()
                .collect();
            out.push(Action::Patch {
                kind: (*kind).clone(),
                ns: ns.to_string(),
                name,
                patch: json!({"metadata": {"ownerReferences": keep, "resourceVersion": o["metadata"]["resourceVersion"]}}),
                absent_owners: absent,
            });
        }
    }
    // Owners being deleted with a GC finalizer.
    for (kind, o) in by_uid.values() {
        if !deleting(o) || !rules.in_scope(meta(o, "namespace")) {
            continue;
        }
        let fins = finalizers(o);
        let deps = dependents.get(uid(o)).map(Vec::as_slice).unwrap_or(&[]);
        let remove_finalizer = |f: &str| Action::Patch {
            kind: (*kind).clone(),
            ns: meta(o, "namespace").to_string(),
            name: meta(o, "name").to_string(),
            patch: json!({"metadata": {"finalizers": fins.iter().filter(|x| **x != f).collect::<Vec<_>>(), "resourceVersion": o["metadata"]["resourceVersion"]}}),
            absent_owners: Vec::new(),
        };
        if fins.contains(&ORPHAN) {
            if deps.is_empty() {
                out.push(remove_finalizer(ORPHAN));
            }
            for (dk, d, _) in deps {
                let keep: Vec<Json> = owner_refs(d)
                    .iter()
                    .filter(|r| r["uid"] != json!(uid(o)))
                    .cloned()
                    .collect();
                out.push(Action::Patch {
                    kind: (*dk).clone(),
                    ns: meta(d, "namespace").to_string(),
                    name: meta(d, "name").to_string(),
                    patch: json!({"metadata": {"ownerReferences": keep, "resourceVersion": d["metadata"]["resourceVersion"]}}),
                    absent_owners: Vec::new(),
                });
            }
        } else if fins.contains(&FOREGROUND) {
            let blocking = deps
                .iter()
                .any(|(_, _, r)| r.get("blockOwnerDeletion") == Some(&json!(true)));
            if !blocking {
                out.push(remove_finalizer(FOREGROUND));
            }
        }
    }
}

/// The namespace controller (`pkg/controller/namespace/deletion/namespaced_resources_deleter.go`):
/// a terminating namespace's content is deleted; once none is left, `/finalize` removes the
/// `kubernetes` finalizer and the API server removes the namespace.
fn namespaces(state: &State, rules: &Rules, out: &mut Vec<Action>) {
    let Some(nss) = state.kind_of("", "Namespace") else {
        return;
    };
    for n in state.objects_of("", "namespaces") {
        let name = meta(n, "name");
        let spec_fins: Vec<&str> = n
            .pointer("/spec/finalizers")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .collect();
        if !deleting(n) || !spec_fins.contains(&NAMESPACE_FINALIZER) || !rules.in_scope(name) {
            continue;
        }
        let mut left = 0;
        for (key, objs) in &state.objects {
            let Some(kind) = state.kinds.get(key) else {
                continue;
            };
            if !kind.namespaced {
                continue;
            }
            for ((ons, oname), o) in objs.range((name.to_string(), String::new())..) {
                if ons != name {
                    break;
                }
                left += 1;
                if !deleting(o) {
                    out.push(Action::Delete {
                        kind: kind.clone(),
                        ns: ons.clone(),
                        name: oname.clone(),
                        uid: uid(o).to_string(),
                        propagation: "Background",
                        absent_owners: Vec::new(),
                    });
                }
            }
        }
        if left == 0 {
            let mut object = n.clone();
            object["spec"]["finalizers"] = json!(spec_fins
                .iter()
                .filter(|f| **f != NAMESPACE_FINALIZER)
                .collect::<Vec<_>>());
            out.push(Action::Finalize {
                kind: nss.clone(),
                object,
            });
        }
    }
}

/// Field manager of the writes.
pub const MANAGER: &str = "kube-controller-manager";

fn api(client: &kube::Client, kind: &Kind, ns: &str) -> kube::Api<kube::api::DynamicObject> {
    if kind.namespaced {
        kube::Api::namespaced_with(client.clone(), ns, &kind.ar)
    } else {
        kube::Api::all_with(client.clone(), &kind.ar)
    }
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether each owner is gone (404, or present with another uid).
async fn owners_absent(client: &kube::Client, ns: &str, owners: &[(Kind, String, String)]) -> bool {
    for (k, name, u) in owners {
        match api(client, k, ns).get_opt(name).await {
            Ok(Some(o)) if o.metadata.uid.as_deref() == Some(u.as_str()) => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Sends one action. A 409 (the object moved on) or 404 (gone) is left to the next pass,
/// which re-reads it from the cache the watch keeps current: the returned object, when there
/// is one, goes into the cache at once.
pub async fn execute(
    client: &kube::Client,
    cache: &crate::cache::Cache,
    action: Action,
) -> Result<(), kube::Error> {
    use kube::api::{
        DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
    };
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let dynamic = |o: &Json| {
        serde_json::from_value::<kube::api::DynamicObject>(o.clone())
            .map_err(kube::Error::SerdeError)
    };
    let written = |kind: &Kind, o: kube::api::DynamicObject| {
        cache.upsert(&kind.key(), crate::cache::to_json(kind, o))
    };
    let result = match action {
        Action::Status { kind, object } => {
            let (ns, name) = (meta(&object, "namespace"), meta(&object, "name"));
            let a = api(client, &kind, ns);
            let body = dynamic(&object)?;
            let r = if kind.status {
                a.replace_status(name, &pp, &body).await
            } else {
                a.replace(name, &pp, &body).await
            };
            match r {
                Ok(o) => {
                    written(&kind, o);
                    Ok(())
                }
                Err(e) if code(&e) == Some(409) => {
                    // Re-read: the next pass computes the status from the current object.
                    if let Ok(o) = a.get(name).await {
                        written(&kind, o);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Action::Create { kind, object } => {
            let a = api(client, &kind, meta(&object, "namespace"));
            match a.create(&pp, &dynamic(&object)?).await {
                Ok(o) => {
                    written(&kind, o);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Action::Replace { kind, object } => {
            let a = api(client, &kind, meta(&object, "namespace"));
            match a
                .replace(meta(&object, "name"), &pp, &dynamic(&object)?)
                .await
            {
                Ok(o) => {
                    written(&kind, o);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Action::Delete {
            kind,
            ns,
            name,
            uid,
            propagation,
            absent_owners,
        } => {
            if !owners_absent(client, &ns, &absent_owners).await {
                return Ok(());
            }
            let dp = DeleteParams {
                propagation_policy: Some(if propagation == "Foreground" {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                }),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            api(client, &kind, &ns).delete(&name, &dp).await.map(|_| ())
        }
        Action::Patch {
            kind,
            ns,
            name,
            patch,
            absent_owners,
        } => {
            if !owners_absent(client, &ns, &absent_owners).await {
                return Ok(());
            }
            let p = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            match api(client, &kind, &ns)
                .patch(&name, &p, &Patch::Merge(&patch))
                .await
            {
                Ok(o) => {
                    // The last finalizer of a deleting object went: the server removed it
                    // (the watch's DELETED may have come first; keep it gone).
                    let gone = kind.ar.kind != "Namespace"
                        && o.metadata.deletion_timestamp.is_some()
                        && o.metadata.finalizers.as_ref().is_none_or(Vec::is_empty);
                    let o = crate::cache::to_json(&kind, o);
                    if gone {
                        cache.remove(&kind.key(), &o);
                    } else {
                        cache.upsert(&kind.key(), o);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Action::Finalize { kind, object } => api(client, &kind, "")
            .replace_subresource("finalize", meta(&object, "name"), &pp, &object)
            .await
            .map(|_| ()),
    };
    match result {
        Err(e) if matches!(code(&e), Some(404 | 409)) => Ok(()),
        other => other,
    }
}

/// Drops entries of `recent` older than `keep`.
pub fn forget_old(recent: &mut HashMap<String, Instant>, now: Instant, keep: Duration) {
    recent.retain(|_, t| now.duration_since(*t) < keep);
}

/// An RFC 3339 UTC timestamp (seconds) for `t`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{ApiResource, GroupVersionKind};

    fn kind(group: &str, version: &str, k: &str, plural: &str, namespaced: bool) -> Kind {
        Kind {
            ar: ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, k),
                plural,
            ),
            namespaced,
            status: true,
        }
    }

    fn state(objs: Vec<(Kind, Json)>) -> State {
        let mut s = State::default();
        for (k, o) in objs {
            let id = (
                meta(&o, "namespace").to_string(),
                meta(&o, "name").to_string(),
            );
            s.kinds.insert(k.key(), k.clone());
            s.synced.insert(k.key());
            s.objects.entry(k.key()).or_default().insert(id, o);
        }
        s
    }

    fn cm(name: &str, uid: &str, owners: Json) -> Json {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "t", "uid": uid, "resourceVersion": "5", "ownerReferences": owners}})
    }

    fn deploy(uid: &str, finalizers: Json) -> Json {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "t", "uid": uid, "resourceVersion": "7",
            "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": finalizers}})
    }

    fn quiet() -> Rules {
        let mut r = Rules::default();
        r.controllers.status = false;
        r.controllers.endpoint_slices = false;
        r.controllers.service_accounts = false;
        r
    }

    fn run(s: &State, r: &Rules) -> Vec<Action> {
        plan(
            s,
            r,
            &mut Memory::default(),
            Instant::now(),
            "2026-01-01T00:00:00Z",
        )
        .0
    }

    #[test]
    fn a_dependent_of_a_gone_owner_is_deleted_after_a_live_check() {
        let (cms, deps) = (
            kind("", "v1", "ConfigMap", "configmaps", true),
            kind("apps", "v1", "Deployment", "deployments", true),
        );
        let s = state(vec![
            (
                cms.clone(),
                cm(
                    "orphaned",
                    "u1",
                    json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "gone", "uid": "u0"}]),
                ),
            ),
            (cms.clone(), cm("plain", "u2", json!([]))),
            (
                deps,
                json!({"metadata": {"name": "live", "namespace": "t", "uid": "u3"}}),
            ),
            (
                cms,
                cm(
                    "owned",
                    "u4",
                    json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "live", "uid": "u3"}]),
                ),
            ),
        ]);
        let a = run(&s, &quiet());
        assert_eq!(a.len(), 1, "{a:?}");
        match &a[0] {
            Action::Delete {
                name,
                propagation,
                absent_owners,
                ..
            } => {
                assert_eq!((name.as_str(), *propagation), ("orphaned", "Background"));
                assert_eq!(absent_owners[0].1, "gone");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreground_deletion_deletes_dependents_then_drops_the_finalizer() {
        let (cms, deps) = (
            kind("", "v1", "ConfigMap", "configmaps", true),
            kind("apps", "v1", "Deployment", "deployments", true),
        );
        let owner = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "o1", "blockOwnerDeletion": true}]);
        let s = state(vec![
            (deps.clone(), deploy("o1", json!([FOREGROUND]))),
            (cms, cm("dep", "c1", owner)),
        ]);
        let a = run(&s, &quiet());
        assert!(
            matches!(&a[..], [Action::Delete { name, propagation: "Foreground", .. }] if name == "dep"),
            "{a:?}"
        );
        let s = state(vec![(
            deps,
            deploy("o1", json!([FOREGROUND, "example.com/keep"])),
        )]);
        let a = run(&s, &quiet());
        match &a[..] {
            [Action::Patch { name, patch, .. }] => {
                assert_eq!(name, "d");
                assert_eq!(patch["metadata"]["finalizers"], json!(["example.com/keep"]));
                assert_eq!(patch["metadata"]["resourceVersion"], "7");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn orphan_deletion_unlinks_dependents_then_drops_the_finalizer() {
        let (cms, deps) = (
            kind("", "v1", "ConfigMap", "configmaps", true),
            kind("apps", "v1", "Deployment", "deployments", true),
        );
        let refs = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "o1"}, {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "keep"}]);
        let s = state(vec![
            (deps.clone(), deploy("o1", json!([ORPHAN]))),
            (cms.clone(), cm("dep", "c1", refs)),
            (cms, cm("x", "keep", json!([]))),
        ]);
        let a = run(&s, &quiet());
        match &a[..] {
            [Action::Patch { name, patch, .. }] => {
                assert_eq!(name, "dep");
                assert_eq!(
                    patch["metadata"]["ownerReferences"]
                        .as_array()
                        .unwrap()
                        .len(),
                    1
                );
                assert_eq!(patch["metadata"]["ownerReferences"][0]["uid"], "keep");
            }
            other => panic!("{other:?}"),
        }
        let s = state(vec![(deps, deploy("o1", json!([ORPHAN])))]);
        assert!(matches!(&run(&s, &quiet())[..], [Action::Patch { name, .. }] if name == "d"));
    }

    #[test]
    fn a_terminating_namespace_is_emptied_then_finalized() {
        let (nss, cms) = (
            kind("", "v1", "Namespace", "namespaces", false),
            kind("", "v1", "ConfigMap", "configmaps", true),
        );
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t", "uid": "n1", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"finalizers": ["kubernetes"]}});
        let mut r = quiet();
        r.controllers.garbage_collector = false;
        let s = state(vec![
            (nss.clone(), ns.clone()),
            (cms, cm("a", "c1", json!([]))),
        ]);
        assert!(matches!(&run(&s, &r)[..], [Action::Delete { name, .. }] if name == "a"));
        let s = state(vec![(nss, ns)]);
        match &run(&s, &r)[..] {
            [Action::Finalize { object, .. }] => {
                assert_eq!(object["spec"]["finalizers"], json!([]))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_namespace_gets_a_default_service_account_and_scoped_rules_stay_in_scope() {
        let (nss, sas) = (
            kind("", "v1", "Namespace", "namespaces", false),
            kind("", "v1", "ServiceAccount", "serviceaccounts", true),
        );
        let mut s = state(vec![
            (
                nss.clone(),
                json!({"metadata": {"name": "a-x1", "uid": "1"}}),
            ),
            (nss, json!({"metadata": {"name": "b-x2", "uid": "2"}})),
        ]);
        s.kinds.insert(sas.key(), sas.clone());
        s.synced.insert(sas.key());
        let r = Rules {
            namespaces: vec!["*-x1".into()],
            ..Default::default()
        };
        let a = run(&s, &r);
        assert!(
            matches!(&a[..], [Action::Create { object, .. }] if object["metadata"]["namespace"] == "a-x1"),
            "{a:?}"
        );
    }

    fn deps_key() -> crate::cache::Key {
        ("apps".into(), "deployments".into())
    }

    #[test]
    fn services_get_one_ready_endpoint_per_ready_replica() {
        let svc = kind("", "v1", "Service", "services", true);
        let slices = kind(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
        );
        let deps = kind("apps", "v1", "Deployment", "deployments", true);
        let mut s = state(vec![
            (
                svc,
                json!({"metadata": {"name": "hook", "namespace": "t", "uid": "s1"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 443, "targetPort": 8443}]}}),
            ),
            (
                deps,
                json!({"metadata": {"name": "d", "namespace": "t", "uid": "d1"}, "spec": {"template": {"metadata": {"labels": {"app": "x"}}}}, "status": {"readyReplicas": 2}}),
            ),
        ]);
        s.kinds.insert(slices.key(), slices.clone());
        let mut r = quiet();
        r.controllers.endpoint_slices = true;
        let a = run(&s, &r);
        let Action::Create { object, .. } = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(object["endpoints"].as_array().unwrap().len(), 2);
        assert_eq!(object["ports"][0]["port"], 8443);
        assert_eq!(
            object["metadata"]["labels"]["kubernetes.io/service-name"],
            "hook"
        );
        // Stored as planned: nothing more to do.
        let mut none = object.clone();
        none["endpoints"] = json!([]);
        let mut stored = none.clone();
        stored.as_object_mut().unwrap().remove("endpoints");
        s.objects
            .entry(slices.key())
            .or_default()
            .insert(("t".into(), "hook-standin".into()), stored);
        s.objects
            .get_mut(&deps_key())
            .unwrap()
            .values_mut()
            .for_each(|d| d["status"] = json!({}));
        assert!(
            run(&s, &r).is_empty(),
            "no ready replica: an absent endpoint list is the same as []"
        );
        s.objects
            .get_mut(&deps_key())
            .unwrap()
            .values_mut()
            .for_each(|d| d["status"] = json!({"readyReplicas": 2}));
        s.objects
            .entry(slices.key())
            .or_default()
            .insert(("t".into(), "hook-standin".into()), object.clone());
        assert!(run(&s, &r).is_empty());
    }

    #[test]
    fn statuses_wait_for_the_delay_and_settle() {
        let deps = kind("apps", "v1", "Deployment", "deployments", true);
        let d = json!({"metadata": {"name": "web", "namespace": "t", "uid": "d1", "generation": 1}, "spec": {"replicas": 1}});
        let mut s = state(vec![(deps.clone(), d)]);
        let mut r = quiet();
        r.controllers.status = true;
        r.controllers.garbage_collector = false;
        let mut mem = Memory::default();
        let t0 = Instant::now();
        let (a, next) = plan(&s, &r, &mut mem, t0, "2026-01-01T00:00:00Z");
        assert_eq!(next, Some(t0 + r.ready_after()));
        let Action::Status { object, .. } = &a[0] else {
            panic!()
        };
        assert_eq!(object["status"]["unavailableReplicas"], 1);
        let (a, next) = plan(
            &s,
            &r,
            &mut mem,
            t0 + r.ready_after(),
            "2026-01-01T00:00:01Z",
        );
        assert_eq!(next, None);
        let Action::Status { object, .. } = &a[0] else {
            panic!()
        };
        assert_eq!(object["status"]["readyReplicas"], 1);
        s.objects
            .get_mut(&deps.key())
            .unwrap()
            .insert(("t".into(), "web".into()), object.clone());
        assert!(plan(
            &s,
            &r,
            &mut mem,
            t0 + r.ready_after(),
            "2026-01-01T00:00:02Z"
        )
        .0
        .is_empty());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }
}
