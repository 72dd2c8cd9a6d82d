//! Preflight: before wave 1 touches the cluster, every object the revision will apply is
//! server-side dry-run applied (`dryRun=All`, field manager `stackwave`, forced, as the real
//! apply; [`Cluster::dry_run_apply`]). A revision one of whose objects the API server would
//! refuse — a 422 validation error, a field the schema does not declare, an unknown kind, an
//! immutable field on an object that may not be replaced — is refused whole, before anything
//! is applied, with every refused object and the API's message ([`Report::refused`]).
//!
//! Two kinds of object cannot be dry-run before wave 1 without applying something first:
//!
//! - **custom resources whose CRD the revision brings** (the kind is not served yet): the
//!   dry run is deferred to just before the object's wave, once the CRD's wave has been applied
//!   and passed its health gate (which waits for the CRD to be `Established`). This is
//!   gitops-engine's rule (`pkg/sync/sync_context.go`: a task whose kind the server does not
//!   know is `skipDryRun` when `hasCRDOfGroupKind` finds the CRD in the sync), made stricter:
//!   Stackwave still dry-runs the object before its own wave instead of never.
//! - **objects in a namespace the revision creates** (the dry-run create answers 404, the
//!   namespace lifecycle admission refusing writes into a missing namespace): the Namespace
//!   itself is dry-run before wave 1 — an answer without `resourceVersion` means it does not
//!   exist yet (a dry-run create: kube-apiserver v1.36 answers 201 without one, as recorded
//!   in `../shared/corpus/kube-api/scenarios/dry-run.json`; fluxcd/pkg `ApplyAll` reads it the
//!   same way to tell `Created` from `Configured`), so its objects are deferred without a request that could
//!   only answer 404 — and the object is deferred like a custom resource —
//!   fluxcd/pkg `ssa/manager_apply.go` `ApplyAllStaged` likewise dry-runs and applies
//!   Namespaces and CRDs (stage one), waits for them, and only then dry-runs the other objects
//!   (`ApplyAll` dry-runs a whole stage before applying any of it).
//!
//! When the CRD or Namespace an object needs arrives in the object's own wave, that wave is
//! staged as `ApplyAllStaged` does: the CRDs and Namespaces those objects need are applied
//! first ([`stage_one`]) and waited for, then the objects are dry-run, then the wave's other
//! objects are applied. A 404 or unknown kind whose CRD or Namespace is not in the revision,
//! or only in a later wave, is a refusal.
//!
//! Cost: one PATCH per object checked (retried only on transient errors), plus one discovery
//! refresh per kind the server does not serve yet.

use super::{immutable_rules, is_immutable, object_id, ClusterError};
use crate::cluster::Cluster;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

/// One object to check: where the revision applies it.
#[derive(Debug, Clone)]
pub struct Check {
    /// The wave (index as planned).
    pub wave: i32,
    /// The component.
    pub component: String,
    /// The object exactly as the wave will apply it.
    pub object: Json,
    /// Whether the wave may replace it on an immutable-field error (Jobs): such an error is
    /// then no refusal.
    pub replace_immutable: bool,
}

/// What a deferred object waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needs {
    /// The CRD (`metadata.name`) serving its kind, arriving in wave `wave`.
    Crd {
        /// The CRD's name (`<plural>.<group>`).
        name: String,
        /// The CRD's wave.
        wave: i32,
    },
    /// Its namespace, created in wave `wave`.
    Namespace {
        /// The namespace.
        name: String,
        /// The Namespace's wave.
        wave: i32,
    },
}

impl Needs {
    fn wave(&self) -> i32 {
        match self {
            Needs::Crd { wave, .. } | Needs::Namespace { wave, .. } => *wave,
        }
    }
}

impl std::fmt::Display for Needs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Needs::Crd { name, wave } => {
                write!(f, "CustomResourceDefinition {name} (wave {wave})")
            }
            Needs::Namespace { name, wave } => write!(f, "Namespace {name} (wave {wave})"),
        }
    }
}

/// An object checked later: just before its wave.
#[derive(Debug, Clone)]
pub struct Deferred {
    /// The object.
    pub check: Check,
    /// What it needs first: its namespace, its CRD, or both (a custom resource in a
    /// namespace the same wave creates needs both applied ahead of it).
    pub needs: Vec<Needs>,
}

/// An object the API server refused in the dry run.
#[derive(Debug)]
pub struct Refusal {
    /// Its wave.
    pub wave: i32,
    /// Its component.
    pub component: String,
    /// `Kind/namespace/name`.
    pub id: String,
    /// The API's answer (message and causes verbatim).
    pub error: ClusterError,
}

/// What a preflight pass found.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects the dry run accepted (`Kind/namespace/name`).
    pub checked: Vec<String>,
    /// Objects to check just before their wave.
    pub deferred: Vec<Deferred>,
    /// Objects refused.
    pub refused: Vec<Refusal>,
    /// API requests the pass sent.
    pub requests: u64,
}

impl Report {
    /// Defers `c` to its wave when what it needs comes in that wave or an earlier one; an
    /// object whose CRD or namespace comes only in a later wave could not be applied in its
    /// own: refused with `error`.
    fn defer(&mut self, c: Check, needs: Vec<Needs>, error: ClusterError) {
        let Some(later) = needs.iter().find(|n| n.wave() > c.wave).cloned() else {
            self.deferred.push(Deferred { check: c, needs });
            return;
        };
        self.refused.push(Refusal {
            wave: c.wave,
            component: c.component,
            id: object_id(&c.object),
            error: ClusterError::Invalid(format!("{error} (it needs {later}, a later wave)")),
        });
    }

    /// The refusals as one line each: `Kind/ns/name (component c, wave w): message`.
    pub fn refusal_text(&self) -> String {
        self.refused
            .iter()
            .map(|r| {
                format!(
                    "{} (component {}, wave {}): {}",
                    r.id, r.component, r.wave, r.error
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The CRDs and Namespaces a revision brings: (group, kind) → (CRD name, wave), and
/// namespace → wave. Built from the whole revision (changed or not).
#[derive(Debug, Default, Clone)]
pub struct Brings {
    crds: BTreeMap<(String, String), (String, i32)>,
    namespaces: BTreeMap<String, i32>,
}

impl Brings {
    /// Reads the CRDs (`spec.group`, `spec.names.kind`) and Namespaces of `(wave, object)`s.
    pub fn of<'a>(objects: impl IntoIterator<Item = (i32, &'a Json)>) -> Brings {
        let mut b = Brings::default();
        for (wave, o) in objects {
            let name = super::name_of(o).to_string();
            match o["kind"].as_str() {
                Some("CustomResourceDefinition") => {
                    let group = o.pointer("/spec/group").and_then(Json::as_str);
                    let kind = o.pointer("/spec/names/kind").and_then(Json::as_str);
                    if let (Some(g), Some(k)) = (group, kind) {
                        b.crds
                            .entry((g.to_string(), k.to_string()))
                            .or_insert((name, wave));
                    }
                }
                Some("Namespace") if super::group_of(o).is_empty() => {
                    b.namespaces.entry(name).or_insert(wave);
                }
                _ => {}
            }
        }
        b
    }

    fn crd_for(&self, o: &Json) -> Option<Needs> {
        let key = (
            super::group_of(o).to_string(),
            o["kind"].as_str().unwrap_or("").to_string(),
        );
        self.crds.get(&key).map(|(name, wave)| Needs::Crd {
            name: name.clone(),
            wave: *wave,
        })
    }

    fn namespace_for(&self, o: &Json) -> Option<Needs> {
        let ns = super::namespace_of(o);
        self.namespaces.get(ns).map(|wave| Needs::Namespace {
            name: ns.to_string(),
            wave: *wave,
        })
    }
}

/// Dry-runs `checks` (in order), deferring objects whose CRD or namespace the revision
/// brings and the server lacks (see the module docs). Every object is tried; all refusals
/// are listed.
pub async fn check(cluster: &Cluster, checks: Vec<Check>, brings: &Brings) -> Report {
    let start = cluster.requests.load(Ordering::Relaxed);
    let mut report = Report::default();
    // Kinds found unserved: later objects of the kind are deferred without asking again.
    let mut unserved: BTreeSet<(String, String)> = BTreeSet::new();
    // Namespaces the revision brings whose dry run created them (no resourceVersion: not
    // live); objects in them are deferred without a request that could only answer 404.
    let mut missing_ns: BTreeSet<String> = BTreeSet::new();
    for c in checks {
        if missing_ns.contains(super::namespace_of(&c.object)) {
            if let Some(ns) = brings.namespace_for(&c.object) {
                // Its kind may be one the revision brings too: both go ahead of it.
                let needs = std::iter::once(ns)
                    .chain(brings.crd_for(&c.object))
                    .collect();
                let error = ClusterError::Api {
                    id: object_id(&c.object),
                    code: 404,
                    message: format!(
                        "namespaces \"{}\" not found",
                        super::namespace_of(&c.object)
                    ),
                };
                report.defer(c, needs, error);
                continue;
            }
        }
        let gk = (
            super::group_of(&c.object).to_string(),
            c.object["kind"].as_str().unwrap_or("").to_string(),
        );
        let id = object_id(&c.object);
        let result = if unserved.contains(&gk) {
            Err(ClusterError::UnknownKind {
                id: id.clone(),
                gvk: format!("{}/{}", gk.0, gk.1),
            })
        } else {
            cluster.dry_run_apply(&c.object).await
        };
        let needs = match &result {
            Err(ClusterError::UnknownKind { .. }) => {
                unserved.insert(gk.clone());
                brings.crd_for(&c.object).map(|n| vec![n])
            }
            Err(ClusterError::Api { code: 404, .. }) => {
                brings.namespace_for(&c.object).map(|n| vec![n])
            }
            _ => None,
        };
        match (result, needs) {
            (Err(error), Some(needs)) => report.defer(c, needs, error),
            (Ok(_), Some(_)) => report.checked.push(id),
            (Ok(live), None) => {
                let created = live
                    .pointer("/metadata/resourceVersion")
                    .and_then(Json::as_str)
                    .is_none_or(str::is_empty);
                if created && c.object["kind"] == "Namespace" && gk.0.is_empty() {
                    missing_ns.insert(super::name_of(&c.object).to_string());
                }
                report.checked.push(id)
            }
            (Err(e), None) => match accepted(&c, e) {
                Ok(()) => report.checked.push(id),
                Err(error) => report.refused.push(Refusal {
                    wave: c.wave,
                    component: c.component,
                    id,
                    error,
                }),
            },
        }
    }
    report.requests = cluster.requests.load(Ordering::Relaxed) - start;
    report
}

/// Whether a dry-run error still lets the wave apply the object: an immutable-field 422 on an
/// object the wave replaces (delete, wait, re-apply). Otherwise the error, immutable-field
/// 422s as [`ClusterError::Immutable`].
fn accepted(c: &Check, e: ClusterError) -> Result<(), ClusterError> {
    match e {
        ClusterError::Refused {
            id,
            message,
            causes,
        } => {
            if !is_immutable(&causes, immutable_rules()?) {
                return Err(ClusterError::Refused {
                    id,
                    message,
                    causes,
                });
            }
            if c.replace_immutable {
                Ok(())
            } else {
                Err(ClusterError::Immutable { id, message })
            }
        }
        other => Err(other),
    }
}

/// The deferred objects of wave `wave` (`now`) and of later waves.
pub fn due(deferred: Vec<Deferred>, wave: i32) -> (Vec<Deferred>, Vec<Deferred>) {
    deferred.into_iter().partition(|d| d.check.wave == wave)
}

/// The objects of `wave_objects` that `due` objects need and that come in the same wave:
/// what the wave applies first (fluxcd/pkg `ApplyAllStaged`'s stage one: every CRD and
/// Namespace), so the others can be dry-run before they are applied. An object deferred for
/// its namespace may need its CRD as well (a custom resource in a namespace the wave creates:
/// its kind was never asked about): [`Deferred::needs`] then names both, and both come.
/// In `wave_objects`' order, each once.
pub fn stage_one<'a>(due: &[Deferred], wave: i32, wave_objects: &'a [Json]) -> Vec<&'a Json> {
    let wanted = |o: &Json| {
        due.iter().flat_map(|d| &d.needs).any(|n| match n {
            Needs::Crd { name, wave: w } => {
                *w == wave && o["kind"] == "CustomResourceDefinition" && super::name_of(o) == name
            }
            Needs::Namespace { name, wave: w } => {
                *w == wave
                    && o["kind"] == "Namespace"
                    && super::group_of(o).is_empty()
                    && super::name_of(o) == name
            }
        })
    };
    wave_objects.iter().filter(|o| wanted(o)).collect()
}

/// Dry-runs deferred objects now that what they need is applied (and healthy): anything
/// still missing is a refusal.
pub async fn check_due(cluster: &Cluster, due: Vec<Deferred>) -> Report {
    check(
        cluster,
        due.into_iter().map(|d| d.check).collect(),
        &Brings::default(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn brings_reads_crds_and_namespaces_with_their_waves() {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}}});
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}});
        let b = Brings::of([(1, &crd), (2, &ns)]);
        let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "apps"}});
        assert_eq!(
            b.crd_for(&cr),
            Some(Needs::Crd {
                name: "widgets.example.com".into(),
                wave: 1
            })
        );
        assert_eq!(
            b.namespace_for(&cr),
            Some(Needs::Namespace {
                name: "apps".into(),
                wave: 2
            })
        );
        // Same kind name, another group: not this CRD's kind.
        let other =
            json!({"apiVersion": "other.io/v1", "kind": "Widget", "metadata": {"name": "w"}});
        assert_eq!(b.crd_for(&other), None);
    }

    #[test]
    fn stage_one_brings_the_crd_of_a_resource_deferred_for_its_namespace() {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget"}}});
        let other = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Gadget"}}});
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}});
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "apps"}});
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "apps"}});
        let wave_objects = vec![crd.clone(), other, ns.clone(), cm, widget.clone()];
        let due = vec![Deferred {
            check: Check {
                wave: 2,
                component: "c".into(),
                object: widget,
                replace_immutable: false,
            },
            needs: vec![
                Needs::Namespace {
                    name: "apps".into(),
                    wave: 2,
                },
                Needs::Crd {
                    name: "widgets.example.com".into(),
                    wave: 2,
                },
            ],
        }];
        let first = stage_one(&due, 2, &wave_objects);
        assert_eq!(
            first,
            vec![&crd, &ns],
            "its CRD and its Namespace, in order"
        );
    }

    #[test]
    fn immutable_refusals_pass_only_where_the_wave_replaces() {
        let refused = || ClusterError::Refused {
            id: "Job/ns/j".into(),
            message: "Job.batch \"j\" is invalid".into(),
            causes: vec![super::super::Cause {
                reason: "FieldValueInvalid".into(),
                field: "spec.template".into(),
                message: "Invalid value: {}: field is immutable".into(),
            }],
        };
        let check = |replace| Check {
            wave: 1,
            component: "c".into(),
            object: json!({}),
            replace_immutable: replace,
        };
        assert!(accepted(&check(true), refused()).is_ok());
        assert!(matches!(
            accepted(&check(false), refused()),
            Err(ClusterError::Immutable { .. })
        ));
    }
}
