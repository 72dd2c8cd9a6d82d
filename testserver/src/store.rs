//! The object store and the write semantics: resourceVersion, generation, uid, managed fields,
//! server-side apply, dry-run, finalizers, immutable fields, and watch events.

use crate::defaults::{apply_defaults, immutable_violation};
use crate::resources::{builtin, from_crd, ApiResource};
use crate::schema;
use crate::ssa::{self, FieldSet, Pos};
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use tokio::sync::broadcast;

/// An API error in the shape of `metav1.Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP code.
    pub code: u16,
    /// `reason`.
    pub reason: &'static str,
    /// `message`.
    pub message: String,
    /// `details`.
    pub details: Json,
}

/// Status `details` naming an object: `{name, group, kind: <plural>}`, `group` left out for
/// the core group (`metav1.StatusDetails`, omitempty).
pub fn details(r: &ApiResource, name: &str) -> Json {
    let mut d = json!({"name": name, "group": r.group, "kind": r.plural});
    if r.group.is_empty() {
        if let Some(m) = d.as_object_mut() {
            m.remove("group");
        }
    }
    d
}

impl ApiError {
    /// The response body.
    pub fn body(&self) -> Json {
        let mut b = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code});
        if !self.details.is_null() {
            b["details"] = self.details.clone();
        }
        if self.reason.is_empty() {
            // `metav1.Status.reason` is omitempty: internal errors carry none.
            if let Some(m) = b.as_object_mut() {
                m.remove("reason");
            }
        }
        b
    }

    /// 404 for an object.
    pub fn not_found(r: &ApiResource, name: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", r.qualified()),
            details: details(r, name),
        }
    }

    /// A 404 for a path the server does not serve.
    pub fn no_route() -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
            details: json!({}),
        }
    }

    /// 400.
    pub fn bad_request(message: String) -> ApiError {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message,
            details: Json::Null,
        }
    }
}

/// A watch event.
#[derive(Debug, Clone)]
pub struct Event {
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub kind: &'static str,
    /// Resource (group, plural) as stored: events.k8s.io Events are core Events
    /// (`events::storage_resource`); `object` is in the version it was written with.
    pub resource: (String, String),
    /// The object after the change (for `DELETED`: as last stored, with the deletion's
    /// resourceVersion).
    pub object: Json,
    /// For a `MODIFIED` that changed the labels: the object before the change, so a watch
    /// with a selector can tell an object entering it (`ADDED`) or leaving it (`DELETED`)
    /// from a change within it.
    pub prev: Option<Json>,
    /// The resourceVersion the change produced.
    pub rv: u64,
}

/// How many events the watch history keeps (a watch from an older resourceVersion gets
/// `410 Expired`, as from a compacted etcd).
pub const WATCH_HISTORY: usize = 2048;

type Key = (String, String, String, String); // group, plural, namespace, name

/// The finalizer kube-apiserver puts on a CRD being deleted until its resources are gone.
const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The store key of an object (namespace empty for cluster-scoped resources).
/// `metadata.<field>` of an object as a string (`""` when absent).
pub fn meta(o: &Json, field: &str) -> String {
    o.pointer(&format!("/metadata/{field}"))
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string()
}

fn key_of(r: &ApiResource, ns: &str, name: &str) -> Key {
    let (group, plural) = crate::events::storage_resource(&r.group, &r.plural);
    (
        group.to_string(),
        plural.to_string(),
        if r.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

/// The server state.
pub struct Store {
    /// Served resources.
    pub resources: Vec<ApiResource>,
    objects: BTreeMap<Key, Json>,
    rv: u64,
    uid: u64,
    ip: u32,
    /// Watch event fan-out.
    pub events: broadcast::Sender<Event>,
    /// The last [`WATCH_HISTORY`] events, oldest first, for watches that start from a past
    /// resourceVersion.
    pub history: std::collections::VecDeque<Event>,
    /// Requests served, by verb; dry runs as `<VERB> (dry run)` (for benchmarks).
    pub requests: BTreeMap<String, u64>,
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What kind of write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// POST.
    Create,
    /// PUT.
    Replace,
    /// `application/merge-patch+json`.
    MergePatch,
    /// `application/strategic-merge-patch+json` (merge keys from the builtin schema).
    StrategicMergePatch,
    /// `application/json-patch+json`.
    JsonPatch,
    /// `application/apply-patch+yaml` with `force`.
    Apply { force: bool },
}

/// What a write does with fields the schema does not declare (`fieldValidation`): drop them
/// with a warning (`Warn`, the default), fail (`Strict`, 400), or drop them silently
/// (`Ignore`). Server-side apply fails on them whatever this says (500).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop, with a `Warning` header per field.
    #[default]
    Warn,
    /// Reject the write (400, "strict decoding error").
    Strict,
    /// Drop silently.
    Ignore,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Written {
    /// The object as stored (or as it would be, for a dry run).
    pub object: Json,
    /// Whether the write created it.
    pub created: bool,
    /// `Warning` header texts (`unknown field "spec.bogus"`).
    pub warnings: Vec<String>,
}

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    /// Field manager.
    pub manager: String,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// Writing the `/status` subresource.
    pub status: bool,
    /// `fieldValidation`.
    pub validation: FieldValidation,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty cluster with the `default`, `kube-system` and `kube-public` namespaces.
    pub fn new() -> Store {
        let (events, _) = broadcast::channel(4096);
        let mut s = Store {
            resources: builtin(),
            objects: BTreeMap::new(),
            rv: 1,
            uid: 0,
            ip: 10,
            history: Default::default(),
            events,
            requests: BTreeMap::new(),
        };
        for ns in ["default", "kube-system", "kube-public"] {
            let o = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let r = s.resource("", "v1", "namespaces").cloned();
            if let Some(r) = r {
                let _ = s.write(
                    &r,
                    "",
                    ns,
                    Write::Create,
                    o,
                    &WriteOpts {
                        manager: "kube-apiserver".into(),
                        ..Default::default()
                    },
                );
            }
        }
        s
    }

    /// Finds a resource by group/version/plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<&ApiResource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn next_uid(&mut self) -> String {
        self.uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid)
    }

    fn pos(r: &ApiResource) -> Pos {
        match &r.schema {
            Some(s) => Pos::Crd(s.clone()),
            None => Pos::Builtin(kustomize_rs::openapi::Schema::for_type(
                &r.group_version(),
                &r.kind,
            )),
        }
    }

    /// Gets an object.
    pub fn get(&self, r: &ApiResource, ns: &str, name: &str) -> Result<Json, ApiError> {
        self.objects
            .get(&key_of(r, ns, name))
            .map(|o| self.present(r, o))
            .ok_or_else(|| ApiError::not_found(r, name))
    }

    /// One stored object, borrowed (as stored: no `apiVersion` fix-up).
    pub fn stored(&self, r: &ApiResource, ns: &str, name: &str) -> Option<&Json> {
        self.objects.get(&key_of(r, ns, name))
    }

    /// The object as served at the resource's version.
    fn present(&self, r: &ApiResource, o: &Json) -> Json {
        let mut o = crate::events::convert(o, r);
        o["apiVersion"] = json!(r.group_version());
        crate::events::fill_unset(&mut o, r);
        o
    }

    /// Lists objects (all namespaces when `ns` is empty) matching a label selector.
    pub fn list(
        &self,
        r: &ApiResource,
        ns: &str,
        selector: &Option<kustomize_rs::transformers::select::LabelSelector>,
    ) -> Vec<Json> {
        let (group, plural) = crate::events::storage_resource(&r.group, &r.plural);
        self.objects
            .iter()
            .filter(|(k, _)| k.0 == group && k.1 == plural && (ns.is_empty() || k.2 == ns))
            .filter(|(_, o)| selector.as_ref().is_none_or(|s| s.matches(&labels(o))))
            .map(|(_, o)| self.present(r, o))
            .collect()
    }

    /// Every stored object.
    pub fn all(&self) -> Vec<(ApiResource, Json)> {
        self.objects
            .iter()
            .filter_map(|(k, o)| {
                self.resources
                    .iter()
                    .find(|r| r.group == k.0 && r.plural == k.1)
                    .map(|r| (r.clone(), o.clone()))
            })
            .collect()
    }

    /// Sends a change to watchers and keeps it in the history.
    fn announce(&mut self, kind: &'static str, r: &ApiResource, object: Json, prev: Option<Json>) {
        let rv = meta(&object, "resourceVersion").parse().unwrap_or(self.rv);
        // Watches select by labels and by name/namespace (the only field selectors served), so
        // the previous object matters only when the labels moved: keep it only then (the
        // history would otherwise hold two copies of every changed object).
        let labels = "/metadata/labels";
        let prev = prev.filter(|p| p.pointer(labels) != object.pointer(labels));
        let (group, plural) = crate::events::storage_resource(&r.group, &r.plural);
        let ev = Event {
            kind,
            resource: (group.to_string(), plural.to_string()),
            object,
            prev,
            rv,
        };
        if self.history.len() == WATCH_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        let _ = self.events.send(ev);
    }

    /// Announces a deletion: it takes a resourceVersion of its own, which the `DELETED`
    /// event's object carries (as etcd's delete revision does in kube-apiserver's watch).
    fn announce_deleted(&mut self, r: &ApiResource, obj: &Json) {
        let mut gone = self.present(r, obj);
        gone["metadata"]["resourceVersion"] = json!(self.bump());
        self.announce("DELETED", r, gone, None);
    }

    /// The oldest resourceVersion a watch can start from (`0` while nothing was dropped).
    pub fn history_floor(&self) -> u64 {
        if self.history.len() < WATCH_HISTORY {
            return 0;
        }
        self.history.front().map_or(0, |e| e.rv.saturating_sub(1))
    }

    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// Creates, replaces, patches or applies an object.
    ///
    /// # Errors
    /// 404, 409 (exists, conflict), 422 (invalid, immutable), 400 (bad body).
    pub fn write(
        &mut self,
        r: &ApiResource,
        ns: &str,
        name: &str,
        how: Write,
        body: Json,
        opts: &WriteOpts,
    ) -> Result<Written, ApiError> {
        if r.namespaced && ns.is_empty() {
            return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request".into()));
        }
        // The typed decoder refuses bad times and Secret data first (decode.rs); a patch's
        // result is decoded once patched.
        if matches!(how, Write::Create | Write::Replace) {
            crate::decode::check(r, &body)?;
        }
        if r.namespaced
            && ns != "default"
            && !self.objects.contains_key(&(
                String::new(),
                "namespaces".into(),
                String::new(),
                ns.to_string(),
            ))
        {
            return Err(ApiError {
                code: 404,
                reason: "NotFound",
                message: format!("namespaces \"{ns}\" not found"),
                details: json!({"name": ns, "kind": "namespaces"}),
            });
        }
        let key = key_of(r, ns, name);
        // In the representation of the version written (an Event may have been stored
        // through the other one).
        let existing = self.objects.get(&key).map(|o| crate::events::convert(o, r));
        // A terminating namespace takes no new objects; existing ones may still change
        // (k8s.io/apiserver plugin/pkg/admission/namespace/lifecycle).
        if r.namespaced && existing.is_none() && self.terminating(ns) {
            let mut d = details(r, name);
            d["causes"] = json!([{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]);
            return Err(ApiError {
                code: 403,
                reason: "Forbidden",
                message: format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    r.qualified()
                ),
                details: d,
            });
        }
        let pos = Self::pos(r);
        let mut created = false;
        let mut warnings = Vec::new();
        let mut obj = match (&how, &existing) {
            (Write::Create, Some(_)) => {
                return Err(ApiError {
                    code: 409,
                    reason: "AlreadyExists",
                    message: format!("{} \"{name}\" already exists", r.qualified()),
                    details: details(r, name),
                })
            }
            (Write::Create, None) => {
                created = true;
                body.clone()
            }
            (Write::Replace, Some(old)) => {
                let mut b = body.clone();
                if let Some(dt) = old.pointer("/metadata/deletionTimestamp") {
                    if b["metadata"].is_object() {
                        b["metadata"]["deletionTimestamp"] = dt.clone();
                    }
                }
                if opts.status {
                    let mut o = old.clone();
                    o["status"] = b.get("status").cloned().unwrap_or(Json::Null);
                    b = o;
                } else if let Some(s) = old.get("status") {
                    b["status"] = s.clone();
                }
                b
            }
            (Write::MergePatch, Some(old)) => {
                let mut o = old.clone();
                merge_patch(&mut o, &body);
                o
            }
            (Write::StrategicMergePatch, Some(old)) => {
                let mut patch = kustomize_rs_value(&body);
                if let Some(m) = patch.as_map_mut() {
                    m.insert(
                        "apiVersion".into(),
                        kustomize_rs::yaml::Value::String(r.group_version()),
                    );
                    m.insert(
                        "kind".into(),
                        kustomize_rs::yaml::Value::String(r.kind.clone()),
                    );
                }
                match kustomize_rs::smp::merge_resource(&kustomize_rs_value(old), &patch) {
                    Ok(Some(v)) => from_kustomize_value(&v),
                    Ok(None) => old.clone(),
                    Err(e) => {
                        return Err(ApiError {
                            code: 422,
                            reason: "Invalid",
                            message: e.to_string(),
                            details: Json::Null,
                        })
                    }
                }
            }
            (Write::JsonPatch, Some(old)) => {
                let mut v = kustomize_rs_value(old);
                let ops = match kustomize_rs_value(&body) {
                    kustomize_rs::yaml::Value::Seq(s) => s,
                    _ => {
                        return Err(ApiError::bad_request(
                            "json patch must be a list of operations".into(),
                        ))
                    }
                };
                // A failing op (a `test` that does not hold, a missing path) is a bare 422:
                // the recorded server gives no cause.
                kustomize_rs::transformers::patch::apply_json_patch(&mut v, &ops).map_err(
                    |_| ApiError {
                        code: 422,
                        reason: "Invalid",
                        message: "the server rejected our request due to an error in our request"
                            .into(),
                        details: json!({}),
                    },
                )?;
                from_kustomize_value(&v)
            }
            (Write::Apply { .. }, None) => {
                created = true;
                json!({"apiVersion": r.group_version(), "kind": r.kind, "metadata": {"name": name}})
            }
            (Write::Apply { .. }, Some(old)) => old.clone(),
            (_, None) => return Err(ApiError::not_found(r, name)),
        };
        if matches!(
            how,
            Write::MergePatch | Write::StrategicMergePatch | Write::JsonPatch
        ) {
            crate::decode::check_patched(r, &obj)?;
        }
        // What an Event is served with but never stored (events.rs).
        crate::events::strip_unset(&mut obj, r);
        // The new object's resourceVersion and uid are the write's preconditions: the PUT
        // body's, the patched object's, the applied configuration's (concurrency.rs).
        let (requested_rv, requested_uid) = {
            let source = match how {
                Write::Replace | Write::Apply { .. } => &body,
                _ => &obj,
            };
            (meta(source, "resourceVersion"), meta(source, "uid"))
        };
        // Server-side apply: conflicts, removal of fields the manager stopped applying, merge.
        let mut managed = existing
            .as_ref()
            .and_then(|o| o.pointer("/metadata/managedFields"))
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        // Managed fields an update sends are taken as sent (managedfields.rs).
        let sent = match how {
            Write::Apply { .. } => None,
            Write::Create | Write::Replace => crate::managedfields::from_request(&body),
            _ => crate::managedfields::from_request(&obj),
        };
        if let Some(sent) = sent {
            managed = sent;
        }
        if let Write::Apply { force } = how {
            crate::managedfields::check_apply_body(&body)?;
            let mut typing: Vec<String> =
                schema::unknown_fields(&r.group_version(), &r.kind, &body, r.schema.as_ref())
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: field not declared in schema",
                            ssa::typed_path(&body, &pos, p)
                        )
                    })
                    .collect();
            typing.extend(ssa::duplicate_entry(&body, &pos));
            if !typing.is_empty() {
                // k8s.io/apiserver fieldmanager/internal/structuredmerge.go: the patch cannot
                // be typed, a 500 naming `namespace/name; GVK` (structured-merge-diff
                // `ValidationErrors`: one error, or "errors:" and one indented line each).
                let dup = if typing.len() == 1 {
                    typing.remove(0)
                } else {
                    format!("errors:\n  {}", typing.join("\n  "))
                };
                let ns = body.pointer("/metadata/namespace").and_then(Json::as_str);
                return Err(ApiError {
                    code: 500,
                    reason: "",
                    message: format!(
                        "failed to create typed patch object ({}/{name}; {}/{}, Kind={}): {dup}",
                        ns.unwrap_or(""),
                        r.group,
                        r.version,
                        r.kind
                    ),
                    details: Json::Null,
                });
            }
            let applied_set = if opts.status {
                ssa::status_field_set(&body, &pos)
            } else {
                ssa::field_set(&body, &pos)
            };
            let live = existing.clone().unwrap_or(Json::Null);
            // (manager as printed, path); k8s.io/apiserver
            // pkg/endpoints/handlers/fieldmanager/internal/conflict.go (printManager,
            // getConflictMessage).
            let mut conflicts: Vec<(String, String)> = Vec::new();
            for e in &managed {
                let mgr = e["manager"].as_str().unwrap_or("");
                let op = e["operation"].as_str().unwrap_or("");
                if mgr == opts.manager && op == "Apply" {
                    continue;
                }
                let mut printed = format!("{mgr:?}");
                if let Some(sub) = e["subresource"].as_str().filter(|s| !s.is_empty()) {
                    printed.push_str(&format!(" with subresource {sub:?}"));
                }
                if op == "Update" {
                    printed.push_str(&format!(
                        " using {}",
                        e["apiVersion"].as_str().unwrap_or("")
                    ));
                }
                let owned = ssa::from_fields_v1(&e["fieldsV1"]);
                for p in applied_set.intersection(&owned) {
                    let (lv, av) = (ssa::value_at(&live, p), ssa::value_at(&body, p));
                    if lv.is_some() && lv != av && !matches!(p.last(), Some(ssa::Pe::Key(_))) {
                        conflicts.push((printed.clone(), ssa::path_string(p)));
                    }
                }
            }
            if !conflicts.is_empty() && !force {
                let n = conflicts.len();
                let message = if n == 1 {
                    format!(
                        "Apply failed with 1 conflict: conflict with {}: {}",
                        conflicts[0].0, conflicts[0].1
                    )
                } else {
                    let mut by: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
                    for (m, p) in &conflicts {
                        by.entry(m.as_str()).or_default().push(p.as_str());
                    }
                    let mut lines = Vec::new();
                    for (m, paths) in by {
                        lines.push(format!("conflicts with {m}:"));
                        lines.extend(paths.iter().map(|p| format!("- {p}")));
                    }
                    format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
                };
                return Err(ApiError {
                    code: 409,
                    reason: "Conflict",
                    message,
                    details: json!({"causes": conflicts.iter().map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": p})).collect::<Vec<_>>()}),
                });
            }
            // Fields this manager applied before but no longer does, owned by nobody else, go.
            let prev: FieldSet = managed
                .iter()
                .find(|e| {
                    e["manager"] == json!(opts.manager)
                        && e["operation"] == json!("Apply")
                        && e.get("subresource").is_none() != opts.status
                })
                .map(|e| ssa::from_fields_v1(&e["fieldsV1"]))
                .unwrap_or_default();
            let others: FieldSet = managed
                .iter()
                .filter(|e| {
                    !(e["manager"] == json!(opts.manager) && e["operation"] == json!("Apply"))
                })
                .flat_map(|e| ssa::from_fields_v1(&e["fieldsV1"]))
                .collect();
            for p in prev.difference(&applied_set) {
                if !others.contains(p) {
                    ssa::remove_at(&mut obj, p);
                }
            }
            let mut applied = body.clone();
            // Key fields the server defaults (port protocols) are defaulted in the applied
            // configuration too, so its list items match the live ones.
            default_list_keys(&mut applied);
            if let Some(m) = applied.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
                if let Some(md) = m.get_mut("metadata").and_then(Json::as_object_mut) {
                    md.retain(|k, _| ssa::TRACKED_METADATA.contains(&k.as_str()));
                }
                if !opts.status {
                    m.remove("status");
                }
            }
            ssa::merge_object(&mut obj, &applied, &pos);
            crate::managedfields::sync_last_applied(&opts.manager, &body, &mut obj);
            // Ownership: this manager owns what it applied; forced fields leave other managers.
            for e in managed.iter_mut() {
                if e["manager"] == json!(opts.manager) && e["operation"] == json!("Apply") {
                    continue;
                }
                if force {
                    let mut owned = ssa::from_fields_v1(&e["fieldsV1"]);
                    owned.retain(|p| !conflicts.iter().any(|(_, c)| *c == ssa::path_string(p)));
                    e["fieldsV1"] = ssa::to_fields_v1(&owned);
                }
            }
            let mine =
                |e: &Json| crate::managedfields::is_entry(e, &opts.manager, "Apply", opts.status);
            // The entry keeps the time it had; it is restamped only if the apply changes the
            // object (below).
            let apply_time = managed
                .iter()
                .find(|e| mine(e))
                .and_then(|e| e.get("time"))
                .cloned();
            managed.retain(|e| !mine(e));
            managed.push(crate::managedfields::entry(
                &opts.manager,
                "Apply",
                &r.group_version(),
                apply_time.as_ref(),
                ssa::to_fields_v1(&applied_set),
                opts.status,
            ));
        }
        // A status write changes status only; a main-resource write of a kind with a status
        // subresource leaves status alone (the registries' status strategies,
        // `PrepareForUpdate`/`PrepareForCreate`; apiextensions-apiserver
        // `pkg/registry/customresource/strategy.go`).
        if opts.status {
            if let Some(old) = &existing {
                let status = obj.get("status").cloned();
                obj = old.clone();
                match status {
                    Some(s) => obj["status"] = s,
                    None => {
                        if let Some(m) = obj.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
        } else if r.status {
            match existing.as_ref().and_then(|o| o.get("status")) {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        // Fields the schema does not declare: dropped (with warnings) or refused.
        if !matches!(how, Write::Apply { .. }) {
            let unknown =
                schema::unknown_fields(&r.group_version(), &r.kind, &obj, r.schema.as_ref());
            if !unknown.is_empty() {
                let texts: Vec<String> = unknown
                    .iter()
                    .map(|p| format!("unknown field {:?}", schema::dotted(p)))
                    .collect();
                match opts.validation {
                    FieldValidation::Strict => {
                        return Err(ApiError::bad_request(format!(
                            "{kind} in version {:?} cannot be handled as a {kind}: strict decoding error: {}",
                            r.version,
                            texts.join(", "),
                            kind = r.kind
                        )))
                    }
                    FieldValidation::Warn => warnings.extend(texts),
                    FieldValidation::Ignore => {}
                }
                schema::prune(&mut obj, &unknown);
            }
        }
        // Optimistic concurrency, checked before anything else the store does (validation,
        // change detection): GuaranteedUpdate in generic/registry/store.go.
        if let Some(old) = &existing {
            crate::concurrency::check_update_uid(r, ns, name, &requested_uid, &meta(old, "uid"))?;
            crate::concurrency::check_resource_version(
                r,
                name,
                &requested_rv,
                &meta(old, "resourceVersion"),
            )?;
            if obj["metadata"].is_object() {
                obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            }
        }
        // Identity and bookkeeping.
        obj["apiVersion"] = json!(r.group_version());
        obj["kind"] = json!(r.kind);
        let md = obj
            .get_mut("metadata")
            .filter(|m| m.is_object())
            .map(|_| ())
            .is_some();
        if !md {
            obj["metadata"] = json!({});
        }
        obj["metadata"]["name"] = json!(name);
        if r.namespaced {
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let mut next_ip = {
            let ip = &mut self.ip;
            move || {
                *ip += 1;
                format!("10.0.0.{}", *ip % 250 + 2)
            }
        };
        apply_defaults(&r.kind, &mut obj, &mut next_ip);
        ssa::drop_empty(&mut obj, &pos);
        crate::validate::validate(r, existing.as_ref(), &obj)?;
        if existing.is_none() && !opts.dry_run {
            crate::concurrency::check_create(&requested_rv)?;
        }
        warnings.extend(crate::validate::finalizer_warnings(
            r,
            existing.as_ref(),
            &obj,
        ));
        if let Some(old) = &existing {
            if let Some((field, reason, msg)) = immutable_violation(&r.kind, old, &obj) {
                let mut d = details(r, name);
                d["kind"] = json!(r.kind);
                d["causes"] = json!([{"reason": reason, "message": msg, "field": field}]);
                return Err(ApiError {
                    code: 422,
                    reason: "Invalid",
                    message: format!(
                        "{}.{} \"{name}\" is invalid: {field}: {msg}",
                        r.kind, r.group
                    )
                    .replace(". \"", " \""),
                    details: d,
                });
            }
        }
        // Update managers own what they changed.
        if !matches!(how, Write::Apply { .. }) && opts.manager != "kube-apiserver" {
            // Fields an update removed leave every manager (structured-merge-diff
            // `Updater.update`: managers minus `Comparison.Removed`).
            if let Some(old) = &existing {
                let removed: Vec<ssa::Path> = ssa::field_set(old, &pos)
                    .difference(&ssa::field_set(&obj, &pos))
                    .cloned()
                    .collect();
                if !removed.is_empty() {
                    for e in managed.iter_mut() {
                        let mut owned = ssa::from_fields_v1(&e["fieldsV1"]);
                        let before = owned.len();
                        owned.retain(|p| {
                            !removed
                                .iter()
                                .any(|r| p.len() >= r.len() && p[..r.len()] == r[..])
                        });
                        if owned.len() != before {
                            e["fieldsV1"] = ssa::to_fields_v1(&owned);
                        }
                    }
                }
            }
            let mut changed = ssa::changed_fields(existing.as_ref(), &obj, &pos, opts.status);
            if existing.is_none() {
                let strategy = crate::defaults::set_by_strategy(&r.kind);
                changed.retain(|p| {
                    let ptr: String = p
                        .iter()
                        .map(|pe| match pe {
                            ssa::Pe::Field(f) => format!("/{f}"),
                            _ => "/*".into(),
                        })
                        .collect();
                    !strategy
                        .iter()
                        .any(|s| ptr == *s || ptr.starts_with(&format!("{s}/")))
                });
            }
            if !changed.is_empty() {
                for e in managed.iter_mut() {
                    let mut owned = ssa::from_fields_v1(&e["fieldsV1"]);
                    owned.retain(|p| !changed.contains(p));
                    e["fieldsV1"] = ssa::to_fields_v1(&owned);
                }
                // One Update entry per manager and subresource.
                let same = |e: &Json| {
                    e["manager"] == json!(opts.manager)
                        && e["operation"] == json!("Update")
                        && e.get("subresource").is_some() == opts.status
                };
                let mut mine: FieldSet = managed
                    .iter()
                    .find(|e| same(e))
                    .map(|e| ssa::from_fields_v1(&e["fieldsV1"]))
                    .unwrap_or_default();
                mine.extend(changed);
                managed.retain(|e| !same(e));
                // The operation took fields: the entry is stamped now.
                managed.push(crate::managedfields::entry(
                    &opts.manager,
                    "Update",
                    &r.group_version(),
                    Some(&json!(now())),
                    ssa::to_fields_v1(&mine),
                    opts.status,
                ));
            }
        }
        managed.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
        // An apply that changed the object stamps its entry (managedfieldsupdater.go).
        // The server-kept metadata (restored from the stored object below, as `BeforeUpdate`
        // does) is no change either.
        let object_changed = existing.as_ref().is_none_or(|old| {
            let strip = |x: &Json| {
                let mut x = x.clone();
                if let Some(m) = x.get_mut("metadata").and_then(Json::as_object_mut) {
                    for k in [
                        "managedFields",
                        "uid",
                        "creationTimestamp",
                        "generation",
                        "resourceVersion",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                    ] {
                        m.remove(k);
                    }
                }
                x
            };
            strip(old) != strip(&obj)
        });
        if matches!(how, Write::Apply { .. }) && object_changed {
            for e in managed.iter_mut() {
                if crate::managedfields::is_entry(e, &opts.manager, "Apply", opts.status) {
                    *e = crate::managedfields::entry(
                        &opts.manager,
                        "Apply",
                        &r.group_version(),
                        Some(&json!(now())),
                        e["fieldsV1"].clone(),
                        opts.status,
                    );
                }
            }
        }
        crate::managedfields::sort(&mut managed);
        // Unchanged object: no write, same resourceVersion.
        if let Some(old) = &existing {
            let old_sets: Vec<(String, FieldSet)> = old
                .pointer("/metadata/managedFields")
                .and_then(Json::as_array)
                .map(|es| {
                    es.iter()
                        .map(|e| {
                            (
                                format!("{}{}", e["manager"], e["operation"]),
                                ssa::from_fields_v1(&e["fieldsV1"]),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let new_sets: Vec<(String, FieldSet)> = managed
                .iter()
                .map(|e| {
                    (
                        format!("{}{}", e["manager"], e["operation"]),
                        ssa::from_fields_v1(&e["fieldsV1"]),
                    )
                })
                .collect();
            let (mut old_sets, mut new_sets) = (old_sets, new_sets);
            old_sets.sort();
            new_sets.sort();
            if !object_changed && old_sets == new_sets {
                return Ok(Written {
                    object: self.present(r, old),
                    created: false,
                    warnings,
                });
            }
            // generation moves when anything but metadata and status changed
            let spec_changed = {
                let strip = |x: &Json| {
                    let mut x = x.clone();
                    if let Some(m) = x.as_object_mut() {
                        m.remove("metadata");
                        m.remove("status");
                    }
                    x
                };
                // A Deployment's annotations count too: they are copied to its ReplicaSets
                // (pkg/registry/apps/deployment/strategy.go PrepareForUpdate).
                let annotations = |x: &Json| {
                    x.pointer("/metadata/annotations")
                        .filter(|a| a.as_object().is_some_and(|m| !m.is_empty()))
                        .cloned()
                };
                strip(old) != strip(&obj)
                    || (r.kind == "Deployment"
                        && r.group == "apps"
                        && annotations(old) != annotations(&obj))
            };
            if let Some(gen) = old.pointer("/metadata/generation").and_then(Json::as_i64) {
                obj["metadata"]["generation"] = json!(if spec_changed { gen + 1 } else { gen });
            }
            for k in ["uid", "creationTimestamp"] {
                if let Some(v) = old.pointer(&format!("/metadata/{k}")) {
                    obj["metadata"][k] = v.clone();
                }
            }
            if let Some(dt) = old.pointer("/metadata/deletionTimestamp") {
                obj["metadata"]["deletionTimestamp"] = dt.clone();
            }
            // rest/update.go BeforeUpdate: grace period seconds cannot be removed either.
            if let (Some(g), None) = (
                old.pointer("/metadata/deletionGracePeriodSeconds"),
                obj.pointer("/metadata/deletionGracePeriodSeconds"),
            ) {
                obj["metadata"]["deletionGracePeriodSeconds"] = g.clone();
            }
        } else {
            if !matches!(
                r.kind.as_str(),
                "ConfigMap"
                    | "Secret"
                    | "Namespace"
                    | "ServiceAccount"
                    | "Role"
                    | "RoleBinding"
                    | "ClusterRole"
                    | "ClusterRoleBinding"
                    | "Service"
                    | "Endpoints"
                    | "Event"
                    | "Lease"
            ) {
                obj["metadata"]["generation"] = json!(1);
            }
            obj["metadata"]["uid"] = json!(self.next_uid());
            obj["metadata"]["creationTimestamp"] = json!(now());
            if r.kind == "Job" && r.group == "batch" {
                crate::defaults::job_selector(&mut obj);
            }
        }
        // Entries that own nothing are dropped; no entries, no field.
        managed.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
        if managed.is_empty() {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
        } else {
            obj["metadata"]["managedFields"] = Json::Array(managed);
        }
        if opts.dry_run {
            // A dry-run create answers with a fresh uid (never stored), as the real server.
            return Ok(Written {
                object: self.present(r, &obj),
                created,
                warnings,
            });
        }
        obj["metadata"]["resourceVersion"] = json!(self.bump());
        // Deleted once the last finalizer goes (a Namespace's spec.finalizers count too).
        let left = |p: &str| {
            obj.pointer(p)
                .and_then(Json::as_array)
                .is_some_and(|f| !f.is_empty())
        };
        let finalizers_left =
            left("/metadata/finalizers") || (r.kind == "Namespace" && left("/spec/finalizers"));
        if obj.pointer("/metadata/deletionTimestamp").is_some() && !finalizers_left {
            self.objects.remove(&key);
            // The answer is the object as it was last stored (its resourceVersion too).
            let mut gone = self.present(r, &obj);
            if let Some(rv) = existing
                .as_ref()
                .and_then(|o| o.pointer("/metadata/resourceVersion"))
            {
                gone["metadata"]["resourceVersion"] = rv.clone();
            }
            self.announce_deleted(r, &obj);
            self.after_delete(r, &obj);
            return Ok(Written {
                object: gone,
                created: false,
                warnings,
            });
        }
        let prev = self
            .objects
            .insert(key, obj.clone())
            .map(|o| self.present(r, &o));
        if r.kind == "CustomResourceDefinition" {
            self.register_crd(&obj);
        }
        let kind = if created { "ADDED" } else { "MODIFIED" };
        self.announce(kind, r, self.present(r, &obj), prev);
        Ok(Written {
            object: self.present(r, &obj),
            created,
            warnings,
        })
    }

    fn register_crd(&mut self, crd: &Json) {
        let new = from_crd(crd);
        for n in &new {
            self.resources.retain(|r| {
                !(r.group == n.group && r.version == n.version && r.plural == n.plural)
            });
        }
        self.resources.extend(new);
        // The CRD is Established at once (the real server does it within a second).
        let key = (
            String::from("apiextensions.k8s.io"),
            String::from("customresourcedefinitions"),
            String::new(),
            crd.pointer("/metadata/name")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string(),
        );
        let established = self.objects.get(&key).is_some_and(|o| {
            o.pointer("/status/conditions")
                .is_some_and(|c| !c.is_null())
        });
        // Establishing is a status update of its own (a new resourceVersion), by
        // kube-apiserver on the status subresource.
        let rv = if established {
            String::new()
        } else {
            self.bump()
        };
        if let Some(o) = self.objects.get_mut(&key) {
            if !established {
                o["metadata"]["resourceVersion"] = json!(rv);
                if let Some(mf) = o["metadata"]["managedFields"].as_array_mut() {
                    mf.push(json!({"manager": "kube-apiserver", "operation": "Update", "apiVersion": "apiextensions.k8s.io/v1", "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:acceptedNames": {"f:kind": {}, "f:listKind": {}, "f:plural": {}, "f:shortNames": {}, "f:singular": {}}, "f:conditions": {"k:{\"type\":\"Established\"}": {".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}, "k:{\"type\":\"NamesAccepted\"}": {".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}}}}, "subresource": "status"}));
                }
                let names = o["spec"]["names"].clone();
                o["status"] = json!({
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()}
                    ],
                    "acceptedNames": names,
                    "storedVersions": o["spec"]["versions"].as_array().map(|v| v.iter().filter(|x| x["storage"] == json!(true)).map(|x| x["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
                });
            }
        }
    }

    fn after_delete(&mut self, r: &ApiResource, obj: &Json) {
        if r.kind == "CustomResourceDefinition" {
            let (group, plural) = crd_resource(obj);
            self.resources
                .retain(|x| !(x.group == group && x.plural == plural));
            self.objects.retain(|k, _| !(k.0 == group && k.1 == plural));
        }
        if r.kind == "Namespace" {
            let ns = obj
                .pointer("/metadata/name")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            self.objects.retain(|k, _| k.2 != ns);
        }
        // Dependents are left to a garbage collector (a client: kube-apiserver has none).
    }

    /// Deletes an object (`propagationPolicy` `Background` — the default —, `Foreground` or
    /// `Orphan`): at once, answering a `Status` of `Success`; or, while finalizers remain,
    /// by setting `deletionTimestamp` and answering the object. `Foreground` and `Orphan`
    /// add the `foregroundDeletion` / `orphan` finalizer that the garbage collector removes
    /// (an API server alone, as the recorded corpus: the object stays until a client such as
    /// `kube-standin` removes the finalizer).
    /// Source: `apiserver/pkg/registry/generic/registry/store.go` (`Delete`,
    /// `updateForGracefulDeletionAndFinalizers`).
    ///
    /// # Errors
    /// 404 when absent; 422 for an unknown policy.
    pub fn delete(
        &mut self,
        r: &ApiResource,
        ns: &str,
        name: &str,
        dry_run: bool,
        policy: Option<&str>,
    ) -> Result<Json, ApiError> {
        let key = key_of(r, ns, name);
        let gc_finalizer = match policy {
            None | Some("Background") => None,
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            Some(other) => {
                return Err(ApiError {
                    code: 422,
                    reason: "Invalid",
                    message: format!("DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""),
                    details: json!({"kind": "DeleteOptions", "group": "meta.k8s.io", "causes": [{"reason": "FieldValueNotSupported", "message": format!("Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""), "field": "propagationPolicy"}]}),
                })
            }
        };
        let Some(mut obj) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(r, name));
        };
        let orphan = policy == Some("Orphan");
        // Without a namespace controller (as the recording), a Namespace with spec.finalizers
        // goes Terminating and stays until PUT .../finalize empties them.
        if r.kind == "Namespace" && !dry_run {
            let finalizers = obj
                .pointer("/spec/finalizers")
                .and_then(Json::as_array)
                .is_some_and(|f| !f.is_empty());
            if finalizers {
                if obj.pointer("/metadata/deletionTimestamp").is_none() {
                    obj["metadata"]["deletionTimestamp"] = json!(now());
                    obj["status"] = json!({"phase": "Terminating"});
                    self.store_modified(r, key, &mut obj);
                }
                return Ok(self.present(r, &obj));
            }
        }
        if let Some(f) = gc_finalizer {
            if r.kind != "Namespace" {
                let list = obj["metadata"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !list.iter().any(|x| x == f) {
                    let mut list = list;
                    list.push(json!(f));
                    obj["metadata"]["finalizers"] = Json::Array(list);
                }
            }
        }
        // A CRD is finalized by the apiserver itself: its custom resources go first
        // (apiextensions-apiserver `pkg/registry/customresourcedefinition/etcd.go` Delete,
        // `pkg/controller/finalizer/crd_finalizer.go`; see [`Store::finish_crd_deletions`]).
        if r.kind == "CustomResourceDefinition" && r.group == "apiextensions.k8s.io" {
            let mut list = obj["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !list.iter().any(|x| x == CRD_CLEANUP) {
                list.push(json!(CRD_CLEANUP));
                obj["metadata"]["finalizers"] = Json::Array(list);
            }
        }
        let success = |obj: &Json| {
            let mut d = details(r, name);
            d["uid"] = obj.pointer("/metadata/uid").cloned().unwrap_or(Json::Null);
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
        };
        let has_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Json::as_array)
            .is_some_and(|f| !f.is_empty())
            || (r.kind == "Namespace");
        if dry_run {
            if has_finalizers && r.kind != "Namespace" {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                return Ok(self.present(r, &obj));
            }
            return Ok(success(&obj));
        }
        let has_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Json::as_array)
            .is_some_and(|f| !f.is_empty())
            || (r.kind == "Namespace");
        if has_finalizers && r.kind != "Namespace" {
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                // Setting deletionTimestamp moves generation (`BeforeDelete`).
                if let Some(g) = obj.pointer("/metadata/generation").and_then(Json::as_i64) {
                    obj["metadata"]["generation"] = json!(g + 1);
                }
                self.store_modified(r, key, &mut obj);
            }
            return Ok(self.present(r, &obj));
        }
        self.objects.remove(&key);
        self.announce_deleted(r, &obj);
        if !orphan {
            self.after_delete(r, &obj);
        }
        if r.kind == "Namespace" {
            return Ok(self.present(r, &obj));
        }
        Ok(success(&obj))
    }

    /// Completes the deletion of CRDs being deleted: removes their custom resources (all
    /// versions), then the `customresourcecleanup.apiextensions.k8s.io` finalizer, which
    /// deletes the CRD unless other finalizers remain. Called by the server right after it
    /// answers a CRD deletion, as kube-apiserver's CRD finalizer controller acts.
    pub fn finish_crd_deletions(&mut self) {
        let Some(crds) = self
            .resources
            .iter()
            .find(|x| x.group == "apiextensions.k8s.io" && x.kind == "CustomResourceDefinition")
            .cloned()
        else {
            return;
        };
        let terminating: Vec<(Key, Json)> = self
            .objects
            .iter()
            .filter(|(k, o)| {
                k.0 == crds.group
                    && k.1 == crds.plural
                    && o.pointer("/metadata/deletionTimestamp").is_some()
                    && o.pointer("/metadata/finalizers")
                        .and_then(Json::as_array)
                        .is_some_and(|f| f.iter().any(|x| x == CRD_CLEANUP))
            })
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        for (key, mut crd) in terminating {
            let (group, plural) = crd_resource(&crd);
            let served: Vec<ApiResource> = self
                .resources
                .iter()
                .filter(|x| x.group == group && x.plural == plural)
                .cloned()
                .collect();
            let instances: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.0 == group && k.1 == plural)
                .cloned()
                .collect();
            for k in instances {
                if let (Some(o), Some(r)) = (self.objects.remove(&k), served.first()) {
                    self.announce_deleted(r, &o);
                }
            }
            if let Some(f) = crd["metadata"]["finalizers"].as_array_mut() {
                f.retain(|x| x != CRD_CLEANUP);
            }
            let left = crd["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            if left {
                self.store_modified(&crds, key, &mut crd);
            } else {
                self.objects.remove(&key);
                self.announce_deleted(&crds, &crd);
                self.after_delete(&crds, &crd);
            }
        }
    }

    /// Stores `obj` under `key` with a new resourceVersion and announces it (`MODIFIED`).
    fn store_modified(&mut self, r: &ApiResource, key: Key, obj: &mut Json) {
        obj["metadata"]["resourceVersion"] = json!(self.bump());
        let prev = self
            .objects
            .insert(key, obj.clone())
            .map(|o| self.present(r, &o));
        self.announce("MODIFIED", r, self.present(r, obj), prev);
    }

    /// Whether namespace `ns` is being deleted (has a deletionTimestamp).
    fn terminating(&self, ns: &str) -> bool {
        self.objects
            .get(&(
                String::new(),
                "namespaces".into(),
                String::new(),
                ns.to_string(),
            ))
            .is_some_and(|o| o.pointer("/metadata/deletionTimestamp").is_some())
    }

    /// `PUT /api/v1/namespaces/{name}/finalize`: the body replaces the namespace's metadata
    /// and spec (status kept); a terminating namespace whose `spec.finalizers` are now empty
    /// is removed with its content. Answers the namespace as written.
    ///
    /// # Errors
    /// Not found; the write's own errors.
    pub fn finalize_namespace(
        &mut self,
        r: &ApiResource,
        name: &str,
        body: Json,
        opts: &WriteOpts,
    ) -> Result<Json, ApiError> {
        let key = key_of(r, "", name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(r, name));
        };
        let mut body = body;
        if body.pointer("/spec/finalizers").is_none() {
            body["spec"]["finalizers"] = json!([]);
        }
        let rv_before = old["metadata"]["resourceVersion"].clone();
        let written = self.write(r, "", name, Write::Replace, body, opts)?.object;
        let done = !self.objects.contains_key(&key);
        // The write removed the namespace (and its content) when the last finalizer went;
        // the answer carries the resourceVersion it had, as the real server's does.
        let mut out = written;
        if done && old.pointer("/metadata/deletionTimestamp").is_some() {
            out["metadata"]["resourceVersion"] = rv_before;
        }
        Ok(out)
    }
}

/// The `(group, plural)` a CRD serves.
fn crd_resource(crd: &Json) -> (String, String) {
    let at = |p: &str| {
        crd.pointer(p)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    (at("/spec/group"), at("/spec/names/plural"))
}

/// An object's labels as `(key, value)` pairs (what a label selector matches).
pub fn labels(o: &Json) -> Vec<(String, String)> {
    o.pointer("/metadata/labels")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 7386 merge patch.
pub fn merge_patch(target: &mut Json, patch: &Json) {
    match patch {
        Json::Object(p) => {
            if !target.is_object() {
                *target = Json::Object(Map::new());
            }
            if let Json::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.shift_remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Json::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// JSON → the YAML engine's tree (for reusing its JSON-patch code).
pub fn kustomize_rs_value(j: &Json) -> kustomize_rs::yaml::Value {
    use kustomize_rs::yaml::Value;
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::Uint))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Seq(a.iter().map(kustomize_rs_value).collect()),
        Json::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), kustomize_rs_value(v)))
                .collect(),
        ),
    }
}

/// The YAML engine's tree → JSON.
pub fn from_kustomize_value(v: &kustomize_rs::yaml::Value) -> Json {
    use kustomize_rs::yaml::Value;
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::Uint(u) => json!(u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::String(s) => Json::String(s.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(from_kustomize_value).collect()),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), from_kustomize_value(v)))
                .collect(),
        ),
    }
}

/// Defaults `protocol: TCP` on `ports` list items (a list-map key of container and Service ports).
fn default_list_keys(v: &mut Json) {
    match v {
        Json::Object(m) => {
            for (k, c) in m.iter_mut() {
                if k == "ports" {
                    if let Some(items) = c.as_array_mut() {
                        for it in items.iter_mut() {
                            if let Some(p) = it.as_object_mut() {
                                p.entry("protocol").or_insert_with(|| json!("TCP"));
                            }
                        }
                    }
                }
                default_list_keys(c);
            }
        }
        Json::Array(a) => a.iter_mut().for_each(default_list_keys),
        _ => {}
    }
}
