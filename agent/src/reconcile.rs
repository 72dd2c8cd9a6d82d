//! The reconcile loop's control flow: one desired-state commit → rendered components
//! ([`Agent::render_all`], post-processed by [`prepare`]) → guards ([`guard`]) → waves
//! applied in order, each gated on health ([`crate::apply`]) → prune once everything is
//! healthy → a recorded revision ([`crate::record`]). Rollback re-applies a stored
//! revision's objects with the same wave engine (no fetch, no render). The loop state that
//! outlives a process is one [`AgentState`], saved as a unit.
//!
//! A failure anywhere (bad YAML, missing values file, unknown chart version, render error, API
//! error, unhealthy wave) stops the revision there: later waves are untouched, nothing is
//! pruned, and the last good revision stays what the cluster runs.

pub mod config;
pub mod error;
pub mod gates;
pub mod guard;
pub mod outcome;
pub mod prepare;
pub mod settings;
pub mod state;

pub use crate::apply::{wait::NewerCommit, Released};
pub use config::{plan_waves, read_config, Base, ConfigError, Manifests, PathRef, RepoConfig};
pub use error::SyncError;
pub use outcome::{Outcome, Progress};
pub use prepare::{is_test_hook, objects_of};
pub use settings::Settings;
pub use state::AgentState;

use crate::apply::{Applier, Stop, WaitOptions};
use crate::cluster::drift::{self, FieldDrift};
use crate::cluster::hpa;
use crate::cluster::instance::Instance;
use crate::cluster::inventory::{self, ObjRef};
use crate::cluster::policy::{Policies, PolicyError, PolicyTexts};
use crate::cluster::preflight;
use crate::cluster::{ApplyOptions, Cluster, ClusterError};
use crate::component::Catalog;
use crate::diff;
use crate::plan;
use crate::record::{self, RevisionKind, RevisionState, Store};
use crate::render::{
    cache::RenderCache, charts::ChartStore, objects::Objects, values::Sources, Inputs,
};
use crate::source::Commit;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The author recorded on rollback revisions (shown by `history`; a rollback is told by its
/// [`RevisionKind::Rollback`], not by this).
pub const ROLLBACK_AUTHOR: &str = record::LEGACY_ROLLBACK_AUTHOR;

/// The render parts: the render cache and the component catalog.
pub struct RenderParts {
    /// Render cache.
    pub cache: RenderCache,
    /// Component catalog.
    pub catalog: Catalog,
}

/// What is applied now, as this process knows it (rebuilt from the store on restart).
#[derive(Default)]
pub struct AppliedState {
    /// Component → digest of the objects last applied ([`digest`]).
    pub digests: BTreeMap<String, String>,
    /// Component → objects last applied (the desired state drift is checked against).
    pub objects: BTreeMap<String, Vec<Json>>,
    /// The revision whose objects are the applied state (`None` before the first).
    pub current: Option<i64>,
    /// Object id → the fields Stackwave releases to an HPA targeting the object (dropped from
    /// the applied configuration, handed over on apply; [`hpa`]).
    pub released: Released,
}

/// The state of this process's loop (not persisted).
#[derive(Default)]
pub struct LoopState {
    /// A revision a previous agent process began and did not finish: (revision, commit).
    /// The next sync of that commit continues it instead of recording a new one.
    pub unfinished: Option<(i64, String)>,
    /// Asks the source for the newest commit of what the agent follows (network I/O, run on
    /// a blocking thread), so a stuck wave can be cancelled for a newer commit; see
    /// [`Settings::cancel_stuck_after`].
    pub newer_commit: Option<NewerCommit>,
    /// The commit of the revision being applied (not set during rollbacks).
    applying: Option<String>,
}

/// The agent, in parts: the cluster, the revision store, the render parts, settings,
/// metrics and policies, the persisted loop state, what is applied, and this process's loop
/// state.
pub struct Agent {
    /// The cluster.
    pub cluster: Cluster,
    /// Revision store.
    pub store: Store,
    /// Render cache and catalog.
    pub render: RenderParts,
    /// Settings.
    pub settings: Settings,
    /// Prometheus metrics ([`crate::metrics`]).
    pub metrics: crate::metrics::Metrics,
    /// Health rules, prune protections, drift ignore rules ([`crate::cluster::policy`]).
    pub policies: Policies,
    /// The loop state kept in the store (pin, waves, pending prunes, instance, drift).
    pub state: AgentState,
    /// What is applied.
    pub applied: AppliedState,
    /// This process's loop state.
    pub run: LoopState,
}

/// Why an agent could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A policy file is malformed (the file, line and column are in the message).
    #[error("refusing to start: {0}")]
    Policy(#[from] PolicyError),
}

/// The digest of a component's objects: sha256 over their [`record::object_sha`]s, in
/// order (hex).
pub fn digest(objs: &[Json]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for o in objs {
        h.update(record::object_sha(o).as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The digests of every component's objects ([`digest`]).
fn digests(objs: &BTreeMap<String, Vec<Json>>) -> BTreeMap<String, String> {
    objs.iter().map(|(c, o)| (c.clone(), digest(o))).collect()
}

/// What [`Agent::render_all`] returns.
pub struct RenderedRevision {
    /// The checkout's `stackwave.yaml`.
    pub config: RepoConfig,
    /// Component → objects in apply order, without the fields HPAs own.
    pub objects: BTreeMap<String, Vec<Json>>,
    /// Those fields, per object ([`AppliedState::released`]).
    pub released: Released,
    /// Component → [`digest`] of its objects (computed once, here).
    pub digests: BTreeMap<String, String>,
    /// Chart component → the user values given to Helm ([`crate::render::Rendered::values`];
    /// Secret values among them: never printed).
    pub values: BTreeMap<String, Json>,
}

/// The instance of agents no `run` has named.
fn default_instance() -> &'static Instance {
    static D: std::sync::OnceLock<Instance> = std::sync::OnceLock::new();
    D.get_or_init(Instance::default)
}

impl Agent {
    /// A new agent with the shipped policies ([`PolicyTexts::SHIPPED`]).
    ///
    /// # Errors
    /// [`AgentError::Policy`]: a malformed policy file (named, with line and column) — the
    /// agent refuses to start rather than run with no protections.
    pub fn new(
        cluster: Cluster,
        store: Store,
        catalog: Catalog,
        settings: Settings,
    ) -> Result<Agent, AgentError> {
        Agent::with_policies(cluster, store, catalog, settings, &PolicyTexts::SHIPPED)
    }

    /// A new agent with the given policy texts.
    ///
    /// # Errors
    /// As [`Agent::new`].
    pub fn with_policies(
        cluster: Cluster,
        store: Store,
        catalog: Catalog,
        settings: Settings,
        policies: &PolicyTexts<'_>,
    ) -> Result<Agent, AgentError> {
        let policies = Policies::load(policies)?;
        // Apply reads the immutable patterns from their own once-parsed copy.
        crate::cluster::immutable_rules()?;
        Ok(Agent {
            cluster,
            store,
            render: RenderParts {
                cache: RenderCache::new(),
                catalog,
            },
            settings,
            metrics: crate::metrics::Metrics::new(),
            policies,
            state: AgentState::default(),
            applied: AppliedState::default(),
            run: LoopState::default(),
        })
    }

    /// Which Stackwave instance this agent is: every inventory, ownership mark and Event it
    /// writes is scoped by it ([`crate::cluster::instance`]). Kept in the store so
    /// `rollback` and `diff` act as the `run` that set it.
    pub fn instance(&self) -> &Instance {
        self.state
            .instance
            .as_ref()
            .unwrap_or_else(|| default_instance())
    }

    /// The rollback pin, if any (see [`AgentState::pin`]).
    pub fn pinned(&self) -> Option<i64> {
        self.state.pin
    }

    /// The applier over this agent's cluster, instance and policies.
    fn applier(&self) -> Applier<'_> {
        Applier {
            cluster: &self.cluster,
            instance: self.instance(),
            released: &self.applied.released,
            health_rules: &self.policies.health,
            protect: &self.policies.protect,
        }
    }

    /// Changes the persisted state: `change` applied to the stored unit (one transaction)
    /// and to this process's copy.
    fn save(&mut self, change: impl Fn(&mut AgentState)) -> Result<(), record::RecordError> {
        AgentState::update(&self.store, &change)?;
        change(&mut self.state);
        Ok(())
    }

    /// Reads the cluster objects bindings may look up (Secrets and Services).
    async fn lookups(&self) -> Result<Objects, ClusterError> {
        let mut objects = Objects::default();
        // Nodes: bindings computed from them (kube-ovn's MASTER_NODES, replicaCount).
        for kind in ["Secret", "Service", "Node"] {
            for j in self.cluster.list_all("", "v1", kind).await? {
                objects.insert(crate::render::objects::from_json(&j));
            }
        }
        Ok(objects)
    }

    /// The Genestack base directory of a checkout's `stackwave.yaml` (a pinned Git base is
    /// checked out into the cache first).
    async fn genestack_base(
        &self,
        checkout: &Path,
        cfg: &RepoConfig,
        progress: &dyn Fn(Progress),
    ) -> Result<std::path::PathBuf, SyncError> {
        match (&cfg.genestack.path, &cfg.genestack.git) {
            (Some(p), None) => Ok(checkout.join(p)),
            (None, Some(g)) => {
                let cache = self.settings.cache_dir.clone();
                let g2 = g.clone();
                let (commit, dir) = tokio::task::spawn_blocking(move || g2.checkout(&cache, false))
                    .await?
                    .map_err(|source| SyncError::Base {
                        url: g.url.clone(),
                        reference: g.r#ref.clone(),
                        source,
                    })?;
                progress(Progress::Note(format!(
                    "genestack base {}@{} = commit {}",
                    g.url,
                    g.r#ref,
                    &commit.id[..commit.id.len().min(10)]
                )));
                Ok(dir)
            }
            _ => Err(SyncError::BaseChoice {
                file: checkout.join("stackwave.yaml"),
            }),
        }
    }

    /// Renders every component of a checkout: component → objects in apply order
    /// ([`prepare`]), without the fields HPAs own, and those fields per object
    /// ([`AppliedState::released`]).
    ///
    /// # Errors
    /// The first component that fails, named with its cause.
    pub async fn render_all(
        &self,
        checkout: &Path,
        progress: &dyn Fn(Progress),
    ) -> Result<RenderedRevision, SyncError> {
        let cfg = read_config(checkout)?;
        // `Path::join` keeps an absolute path as it is.
        let abs = |p: &Path| checkout.join(p);
        let genestack = self.genestack_base(checkout, &cfg, progress).await?;
        let objects = self.lookups().await.map_err(SyncError::Lookups)?;
        // The repository's own `components/` lay over the built-in catalog.
        let catalog = crate::catalog::for_checkout(&self.render.catalog, checkout)?;
        let inputs = Inputs {
            sources: Sources {
                genestack,
                overrides: Some(checkout.to_path_buf()),
            },
            charts: match &cfg.charts {
                Some(c) => ChartStore::Dir(abs(&c.path)),
                None => ChartStore::Repos(crate::render::charts::Fetcher {
                    cache_dir: self.settings.cache_dir.clone(),
                    offline: false,
                    timeout: Duration::from_secs(60),
                }),
            },
            objects,
            catalog,
        };
        let mut out = BTreeMap::new();
        let mut values = BTreeMap::new();
        let mut shown = Vec::new();
        for m in &cfg.manifests {
            let text =
                kustomize_rs::build_dir(&abs(&m.path), &Default::default()).map_err(|source| {
                    SyncError::Manifests {
                        component: m.name.clone(),
                        source,
                    }
                })?;
            let objs = objects_of(&text).map_err(|source| SyncError::ManifestsYaml {
                component: m.name.clone(),
                source,
            })?;
            shown.push((m.name.clone(), false));
            out.insert(
                m.name.clone(),
                prepare::manifest_objects(objs, &m.name, self.instance()),
            );
        }
        for c in &cfg.components {
            let (r, cached) = self.render.cache.render(&inputs, c)?;
            if cached {
                &self.metrics.cache_hits
            } else {
                &self.metrics.cache_misses
            }
            .inc();
            if !r.values.is_null() {
                values.insert(c.clone(), r.values.clone());
            }
            let mut objs = r.objects()?;
            // `helm install` creates the chart's crds/ first ([`crate::render::Rendered::crds`]).
            let mut crds = objects_of(&r.crds).map_err(|source| SyncError::RenderedYaml {
                component: c.clone(),
                source,
            })?;
            crds.append(&mut objs);
            let objs = crds;
            let ns = inputs
                .catalog
                .get(c)
                .map(|x| x.release.namespace.clone())
                .unwrap_or_default();
            shown.push((c.clone(), cached));
            out.insert(
                c.clone(),
                prepare::chart_objects(objs, c, &ns, self.instance()),
            );
        }
        self.create_namespaces(&inputs.catalog, &cfg, &mut out, progress)
            .await?;
        // Fields HPAs own leave the desired state before anything compares or applies it.
        let released = hpa::release_all(&self.cluster, &self.policies.ignore, &mut out)
            .await
            .map_err(SyncError::Hpa)?;
        let digests = digests(&out);
        for (c, cached) in shown {
            progress(Progress::Rendered {
                objects: out[&c].len(),
                changed: self.applied.digests.get(&c) != digests.get(&c),
                component: c,
                cached,
            });
        }
        Ok(RenderedRevision {
            config: cfg,
            objects: out,
            released,
            digests,
            values,
        })
    }

    /// `--create-namespace` (`release.createNamespace`): the release namespaces of the
    /// rendered components that create theirs are added to the revision
    /// ([`prepare::add_created_namespaces`]) unless they exist and are not Stackwave's (an
    /// existing namespace is left as it is, as Helm leaves it). One GET per such namespace.
    ///
    /// # Errors
    /// [`SyncError::Config`] when the components cannot be planned into waves,
    /// [`SyncError::Namespace`] when a namespace cannot be read (nothing is assumed).
    async fn create_namespaces(
        &self,
        catalog: &Catalog,
        cfg: &RepoConfig,
        out: &mut BTreeMap<String, Vec<Json>>,
        progress: &dyn Fn(Progress),
    ) -> Result<(), SyncError> {
        let rendered: &BTreeMap<String, Vec<Json>> = out;
        let wants: Vec<prepare::CreateNamespace> = plan_waves(catalog, cfg)?
            .iter()
            .flat_map(|w| {
                w.components.iter().filter_map(move |c| {
                    catalog
                        .get(c)
                        .filter(|x| x.release.create_namespace && rendered.contains_key(c))
                        .map(|x| prepare::CreateNamespace {
                            wave: w.index,
                            component: c.clone(),
                            namespace: x.release.namespace.clone(),
                        })
                })
            })
            .collect();
        let (mut left_alone, mut missing) = (BTreeSet::new(), BTreeSet::new());
        let names: BTreeSet<&String> = wants.iter().map(|w| &w.namespace).collect();
        for ns in names {
            let live = self
                .cluster
                .get(&prepare::release_namespace(ns))
                .await
                .map_err(|source| SyncError::Namespace {
                    namespace: ns.clone(),
                    source,
                })?;
            let ours = live.as_ref().is_some_and(|l| {
                l.pointer("/metadata/labels")
                    .and_then(|m| m.get(crate::cluster::MANAGED_BY.0))
                    .and_then(Json::as_str)
                    == Some(crate::cluster::MANAGED_BY.1)
                    && crate::cluster::instance::instance_of(l)
                        == Some(self.instance().id().as_str())
            });
            match live {
                None => {
                    missing.insert(ns.clone());
                }
                Some(_) if !ours => {
                    left_alone.insert(ns.clone());
                }
                Some(_) => {}
            }
        }
        for (ns, c) in prepare::add_created_namespaces(out, &wants, &left_alone, self.instance()) {
            if missing.contains(&ns) {
                progress(Progress::Note(format!(
                    "namespace {ns}: created with {c} (--create-namespace; never pruned)"
                )));
            }
        }
        Ok(())
    }

    /// Sets the instance identity and records it in the store (for `rollback` and `diff`).
    ///
    /// # Errors
    /// Store failures.
    pub fn set_instance(&mut self, instance: Instance) -> Result<(), record::RecordError> {
        self.save(|s| s.instance = Some(instance.clone()))
    }

    /// How long to wait for a wave, and the check for a newer commit while applying one.
    fn wait_options(&self) -> WaitOptions {
        WaitOptions {
            timeout: self.settings.health_timeout,
            cancel_stuck_after: self.settings.cancel_stuck_after,
            newer: self.run.newer_commit.clone().zip(self.run.applying.clone()),
        }
    }

    /// Applies one commit's checkout.
    ///
    /// # Errors
    /// Only store failures; everything else is an [`Outcome`].
    pub async fn sync(
        &mut self,
        checkout: &Path,
        commit: &Commit,
        progress: &dyn Fn(Progress),
    ) -> Result<Outcome, record::RecordError> {
        let started = Instant::now();
        // ---- upgrade gate (crate::upgrade::gate): check the commit against the last applied one.
        use crate::upgrade::gate::{self, Verdict};
        let out = match gate::decide(&self.settings.cache_dir, checkout, &commit.id) {
            Verdict::Refuse(reason) => {
                gate::record(&self.store, commit, &reason)?;
                Outcome::Refused { reason }
            }
            // `upgrade: {hops: true}`: the operator's intermediate versions first.
            Verdict::Hops(hops) => {
                gate::apply_hops(self, checkout, commit, &hops, progress).await?
            }
            Verdict::Pass => {
                self.sync_commit(checkout, commit, RevisionKind::Commit, progress)
                    .await?
            }
        };
        if matches!(out, Outcome::Healthy { .. } | Outcome::Unchanged) {
            let _ = gate::applied(&self.settings.cache_dir, checkout, &commit.id);
        }
        // ---- end of upgrade gate
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        let label = match &out {
            Outcome::Healthy { revision, .. } => {
                self.metrics.set_applied(*revision, &commit.id);
                "healthy"
            }
            Outcome::Failed { .. } => "failed",
            Outcome::Superseded { .. } => "superseded",
            Outcome::Refused { .. } => "refused",
            Outcome::Unchanged => "unchanged",
            Outcome::Pinned { .. } => "pinned",
        };
        self.metrics.count_outcome(label);
        self.retain()?;
        Ok(out)
    }

    /// Applies [`Settings::keep_revisions`] (the applied revision and the pin always kept).
    fn retain(&self) -> Result<(), record::RecordError> {
        if let (Some(keep), Some(_)) = (self.settings.keep_revisions, self.applied.current) {
            let also: Vec<i64> = self
                .applied
                .current
                .into_iter()
                .chain(self.state.pin)
                .collect();
            self.store.retain(keep.max(1), &also)?;
        }
        Ok(())
    }

    /// The guards' limits from the settings.
    fn limits(&self) -> guard::Limits {
        guard::Limits {
            max_delete_share: self.settings.max_delete_share,
            allow_destructive: self.settings.allow_destructive,
        }
    }

    /// Applies one checkout as a revision of `kind` ([`RevisionKind::Commit`], or a
    /// [`RevisionKind::Hop`] from [`crate::upgrade::gate::apply_hops`]), without the gate.
    ///
    /// # Errors
    /// Only store failures; everything else is an [`Outcome`].
    pub(crate) async fn sync_commit(
        &mut self,
        checkout: &Path,
        commit: &Commit,
        kind: RevisionKind,
        progress: &dyn Fn(Progress),
    ) -> Result<Outcome, record::RecordError> {
        if let Some(revision) = self.state.pin {
            if self.state.pinned_from.as_deref() == Some(commit.id.as_str()) {
                return Ok(Outcome::Pinned { revision });
            }
        }
        let rendered = match self.render_all(checkout, progress).await {
            Ok(x) => x,
            Err(e) => {
                return Ok(Outcome::Refused {
                    reason: e.to_string(),
                })
            }
        };
        let RenderedRevision {
            config: cfg,
            objects: mut rendered,
            released,
            mut digests,
            values,
        } = rendered;
        // Helm-installed components without a Stackwave inventory are never overwritten
        // silently: refused, or taken over with `adopt: auto` ([`crate::adopt::guard`], which
        // leaves the components it does not adopt out of this revision).
        if let Err(reason) =
            crate::adopt::guard(self, checkout, &mut rendered, &values, progress).await
        {
            return Ok(Outcome::Refused { reason });
        }
        digests.retain(|c, _| rendered.contains_key(c));
        self.applied.released = released;
        // Components no longer in the repository leave the render cache with this commit.
        self.render.cache.retain(&|c| rendered.contains_key(c));
        if let Err(refusal) = guard::check(&self.applied.objects, &rendered, &self.limits()) {
            return Ok(Outcome::Refused {
                reason: refusal.to_string(),
            });
        }
        let planned = crate::catalog::for_checkout(&self.render.catalog, checkout)
            .map_err(ConfigError::from)
            .and_then(|catalog| Ok((plan_waves(&catalog, &cfg)?, catalog)));
        let (waves, catalog) = match planned {
            Ok(w) => w,
            Err(e) => {
                return Ok(Outcome::Refused {
                    reason: e.to_string(),
                })
            }
        };
        let planned: Vec<(String, i32)> = waves
            .iter()
            .flat_map(|w| w.components.iter().map(|c| (c.clone(), w.index)))
            .collect();
        let detect_only = cfg.detect_only.clone();
        self.save(|s| {
            s.wave_of.extend(planned.iter().cloned());
            s.detect_only = detect_only.clone();
        })?;
        let same_set = self.applied.objects.len() == rendered.len()
            && self
                .applied
                .objects
                .keys()
                .all(|c| rendered.contains_key(c));
        if same_set && self.state.prune_pending.is_empty() && digests == self.applied.digests {
            return Ok(Outcome::Unchanged);
        }
        self.set_pin(None, None)?;
        let rev = match self.run.unfinished.take() {
            Some((rev, c)) if c == commit.id => {
                self.store.finish(rev, RevisionState::Applying, "")?;
                rev
            }
            _ => self
                .store
                .begin(kind, &commit.id, &commit.author, &commit.summary)?,
        };
        let marked: Vec<String> = cfg
            .irreversible
            .iter()
            .filter(|c| rendered.contains_key(*c))
            .cloned()
            .collect();
        self.store.mark_irreversible(rev, &marked)?;
        self.run.applying = Some(commit.id.clone());
        let out = self
            .apply_revision(rev, &catalog, &waves, rendered, &digests, progress)
            .await;
        self.run.applying = None;
        out
    }

    /// Why rolling back to `to` would undo an irreversible component (see
    /// [`RepoConfig::irreversible`]), if it would: a healthy revision after `to` marked the
    /// component irreversible and the component's objects at `to` differ from the applied ones.
    ///
    /// # Errors
    /// Store failures.
    pub fn irreversible_crossing(&self, to: i64) -> Result<Option<String>, record::RecordError> {
        let revisions = self.store.revisions()?;
        let digest_at = |rev: i64, c: &str| {
            revisions
                .iter()
                .find(|r| r.id == rev)
                .and_then(|r| r.components.iter().find(|(n, _)| n == c))
                .map(|(_, d)| d.clone())
        };
        for r in revisions
            .iter()
            .filter(|r| r.id > to && r.outcome == RevisionState::Healthy)
        {
            for c in self.store.irreversible_of(r.id)? {
                if digest_at(to, &c) != self.applied.digests.get(&c).cloned() {
                    return Ok(Some(format!(
                        "component {c} was marked irreversible in revision {} (commit {}): rolling back to revision {to} would change it; use --force to roll back anyway",
                        r.id,
                        &r.commit[..r.commit.len().min(10)]
                    )));
                }
            }
        }
        Ok(None)
    }

    /// Records a failed wave and the revision's failure; later waves stay untouched.
    fn fail_wave(
        &self,
        rev: i64,
        wave: i32,
        started: Instant,
        reason: String,
    ) -> Result<Outcome, record::RecordError> {
        self.end_wave(rev, wave, started, RevisionState::Failed, &reason)?;
        Ok(Outcome::Failed {
            revision: rev,
            wave,
            reason,
        })
    }

    /// Records a wave that stopped, and the revision's end in `state`.
    fn end_wave(
        &self,
        rev: i64,
        wave: i32,
        started: Instant,
        state: RevisionState,
        reason: &str,
    ) -> Result<(), record::RecordError> {
        self.observe_wave(wave, started);
        self.store
            .record_wave(rev, wave, false, started.elapsed().as_millis(), reason)?;
        self.store.finish(rev, state, reason)
    }

    /// Reports what the applier noted.
    fn notes(progress: &dyn Fn(Progress), notes: Vec<String>) {
        for n in notes {
            progress(Progress::Note(n));
        }
    }

    /// The preflight pass before wave 1 ([`preflight::check`]): every object of the changed
    /// components dry-run applied as the waves will apply it. `Err` holds the outcome of a
    /// refused revision (recorded `refused` with each object and the API's message; nothing
    /// applied); `Ok` the objects to check just before their waves.
    ///
    /// # Errors
    /// Store failures.
    async fn preflight(
        &self,
        rev: i64,
        waves: &[plan::Wave],
        rendered: &BTreeMap<String, Vec<Json>>,
        changed: &dyn Fn(&str) -> bool,
        progress: &dyn Fn(Progress),
    ) -> Result<Result<Vec<preflight::Deferred>, Outcome>, record::RecordError> {
        let wave_objects = || {
            waves.iter().flat_map(|w| {
                w.components
                    .iter()
                    .filter_map(|c| rendered.get(c).map(|o| (w.index, c, o)))
            })
        };
        let brings = preflight::Brings::of(
            wave_objects().flat_map(|(w, _, objs)| objs.iter().map(move |o| (w, o))),
        );
        let checks: Vec<preflight::Check> = wave_objects()
            .filter(|(_, c, _)| changed(c))
            .flat_map(|(w, c, objs)| {
                objs.iter().map(move |o| preflight::Check {
                    wave: w,
                    component: c.clone(),
                    object: o.clone(),
                    replace_immutable: o["kind"] == "Job",
                })
            })
            .collect();
        let report = preflight::check(&self.cluster, checks, &brings).await;
        self.report_preflight(None, &report, progress);
        if report.refused.is_empty() {
            return Ok(Ok(report.deferred));
        }
        let reason = format!(
            "preflight refused the revision before wave 1, nothing applied: {}",
            report.refusal_text()
        );
        self.store.finish(rev, RevisionState::Refused, &reason)?;
        Ok(Err(Outcome::Refused { reason }))
    }

    /// Reports a preflight pass (progress and `stackwave_preflight_objects_total`).
    fn report_preflight(
        &self,
        wave: Option<i32>,
        report: &preflight::Report,
        progress: &dyn Fn(Progress),
    ) {
        self.metrics.count_preflight(
            report.checked.len(),
            report.deferred.len(),
            report.refused.len(),
        );
        progress(Progress::Preflight {
            wave,
            checked: report.checked.len(),
            deferred: report.deferred.len(),
            refused: report
                .refused
                .iter()
                .map(|r| format!("{}: {}", r.id, r.error))
                .collect(),
            requests: report.requests,
        });
    }

    /// Applies the objects the preflight deferred to `wave` (stage one: the CRDs and
    /// Namespaces they need first, waited on), then dry-runs them. Returns the ids applied,
    /// or why the wave failed.
    async fn stage_one(
        &self,
        wave: &plan::Wave,
        due: Vec<preflight::Deferred>,
        rendered: &BTreeMap<String, Vec<Json>>,
        changed: &dyn Fn(&str) -> bool,
        progress: &dyn Fn(Progress),
    ) -> Result<Vec<String>, String> {
        let mut staged = Vec::new();
        if due.is_empty() {
            return Ok(staged);
        }
        let wave_objects: Vec<Json> = wave
            .components
            .iter()
            .filter(|c| rendered.contains_key(*c) && changed(c))
            .flat_map(|c| rendered[c].iter().cloned())
            .collect();
        let first: Vec<Json> = preflight::stage_one(&due, wave.index, &wave_objects)
            .into_iter()
            .cloned()
            .collect();
        for o in &first {
            // Every rendered object carries its component's mark (`mark`).
            let c = crate::cluster::component_of(o).unwrap_or_default();
            let a = self.applier().apply(o).await.map_err(|e| e.to_string())?;
            self.count_apply(c, &a.action);
            Agent::notes(
                progress,
                self.applier().record_inventory(c, &[ObjRef::of(o)]).await,
            );
            staged.push(a.id.clone());
            progress(Progress::Applied {
                action: a.action_text(),
                id: a.id,
            });
        }
        self.applier()
            .wait(&first, &self.wait_options())
            .await
            .map_err(|s| s.reason().to_string())?;
        let report = preflight::check_due(&self.cluster, due).await;
        self.report_preflight(Some(wave.index), &report, progress);
        if !report.refused.is_empty() {
            return Err(format!(
                "preflight refused {} (nothing else of wave {} applied)",
                report.refusal_text(),
                wave.index
            ));
        }
        Ok(staged)
    }

    /// Applies a revision's waves (each gated on the health of what it applied and on its
    /// components' catalog gates, [`gates`], looked up in `catalog`), then prunes.
    async fn apply_revision(
        &mut self,
        rev: i64,
        catalog: &Catalog,
        waves: &[plan::Wave],
        rendered: BTreeMap<String, Vec<Json>>,
        digests: &BTreeMap<String, String>,
        progress: &dyn Fn(Progress),
    ) -> Result<Outcome, record::RecordError> {
        let applied_before = self.applied.digests.clone();
        let changed_c = |c: &str| applied_before.get(c) != digests.get(c);
        let mut changed = Vec::new();
        let mut deferred = match self
            .preflight(rev, waves, &rendered, &changed_c, progress)
            .await?
        {
            Ok(d) => d,
            Err(refused) => return Ok(refused),
        };
        for wave in waves {
            let started = Instant::now();
            let (due, later) = preflight::due(deferred, wave.index);
            deferred = later;
            // Ids applied ahead of the wave's other objects (its stage one).
            let staged = match self
                .stage_one(wave, due, &rendered, &changed_c, progress)
                .await
            {
                Ok(s) => s,
                Err(reason) => return self.fail_wave(rev, wave.index, started, reason),
            };
            let comps: Vec<&String> = wave
                .components
                .iter()
                .filter(|c| rendered.contains_key(*c))
                .collect();
            progress(Progress::WaveStart {
                wave: wave.index,
                components: comps.iter().map(|c| c.to_string()).collect(),
            });
            let mut touched: Vec<&String> = Vec::new();
            for c in &comps {
                let objs = &rendered[*c];
                self.store.record_component(rev, c, &digests[*c], objs)?;
                if !changed_c(c) {
                    continue;
                }
                for o in objs {
                    if staged.contains(&crate::cluster::object_id(o)) {
                        continue;
                    }
                    match self.applier().apply(o).await {
                        Ok(a) => {
                            self.count_apply(c, &a.action);
                            progress(Progress::Applied {
                                action: a.action_text(),
                                id: a.id,
                            })
                        }
                        Err(e) => {
                            self.set_healthy([c.as_str()], false);
                            return self.fail_wave(rev, wave.index, started, e.to_string());
                        }
                    }
                }
                let refs: Vec<ObjRef> = objs.iter().map(ObjRef::of).collect();
                Agent::notes(progress, self.applier().record_inventory(c, &refs).await);
                touched.push(c);
            }
            let targets = gates::targets(
                catalog,
                touched
                    .iter()
                    .map(|c| (c.as_str(), rendered[*c].as_slice())),
                self.settings.health_timeout,
            );
            let healthy = self
                .applier()
                .wait_targets(&targets, &self.wait_options())
                .await;
            self.set_healthy(touched.iter().map(|c| c.as_str()), healthy.is_ok());
            match healthy {
                Ok(()) => {}
                Err(Stop::Failed(reason)) => {
                    return self.fail_wave(rev, wave.index, started, reason)
                }
                Err(Stop::TimedOut(reason)) => {
                    self.metrics
                        .wave_timeouts
                        .with_label_values(&[&wave.index.to_string()])
                        .inc();
                    return self.fail_wave(rev, wave.index, started, reason);
                }
                Err(Stop::Superseded(by, waiting)) => {
                    let reason = format!(
                        "superseded by commit {} while waiting: {waiting}",
                        &by[..by.len().min(10)]
                    );
                    self.end_wave(rev, wave.index, started, RevisionState::Superseded, &reason)?;
                    return Ok(Outcome::Superseded {
                        revision: rev,
                        wave: wave.index,
                        by,
                        waiting,
                    });
                }
            }
            self.observe_wave(wave.index, started);
            self.store
                .record_wave(rev, wave.index, true, started.elapsed().as_millis(), "")?;
            progress(Progress::WaveHealthy {
                wave: wave.index,
                millis: started.elapsed().as_millis(),
            });
            for c in touched {
                self.applied.digests.insert(c.clone(), digests[c].clone());
                self.applied.objects.insert(c.clone(), rendered[c].clone());
                changed.push(c.clone());
            }
        }
        // Prune only once the whole revision is healthy: every rendered component, and every
        // component the revision no longer has (applied before, or with a prune pending) with
        // nothing desired — all of its objects go but the protected ones (Namespaces, CRDs).
        let mut pending = self.state.prune_pending.clone();
        let removed: BTreeSet<String> = self
            .applied
            .objects
            .keys()
            .chain(pending.iter())
            .filter(|c| !rendered.contains_key(*c))
            .cloned()
            .collect();
        let no_objects = Vec::new();
        let to_prune = rendered
            .iter()
            .chain(removed.iter().map(|c| (c, &no_objects)));
        for (c, objs) in to_prune {
            let desired: Vec<ObjRef> = objs.iter().map(ObjRef::of).collect();
            let p = self.applier().prune(c, &desired).await;
            if p.ran {
                self.metrics
                    .pruned
                    .with_label_values(&[c.as_str()])
                    .inc_by(p.deleted.len() as u64);
            }
            if !p.deleted.is_empty() || !p.skipped.is_empty() {
                progress(Progress::Pruned {
                    component: c.clone(),
                    deleted: p.deleted,
                    skipped: p.skipped,
                });
            }
            Agent::notes(progress, p.notes);
            if p.pending {
                pending.insert(c.clone());
            } else {
                pending.remove(c);
            }
        }
        self.save(|s| s.prune_pending = pending.clone())?;
        self.applied.objects.retain(|c, _| rendered.contains_key(c));
        // The image IDs actually running: a report, never a reason to fail the revision.
        match crate::cluster::images::running(&self.cluster, rendered.values().flatten()).await {
            Ok(ids) => self.store.record_image_ids(rev, &ids)?,
            Err(e) => progress(Progress::Note(format!("image IDs not read: {e}"))),
        }
        // Components left unchanged passed their gate when last applied.
        self.set_healthy(rendered.keys().map(String::as_str), true);
        self.store.finish(rev, RevisionState::Healthy, "")?;
        self.applied.current = Some(rev);
        Ok(Outcome::Healthy {
            revision: rev,
            changed,
        })
    }

    /// Counts one server-side apply of `component`'s object (and a replacement).
    fn count_apply(&self, component: &str, action: &crate::cluster::Action) {
        self.metrics.applied.with_label_values(&[component]).inc();
        if matches!(action, crate::cluster::Action::Replaced) {
            self.metrics.replaced.with_label_values(&[component]).inc();
        }
    }

    /// Observes a wave's duration (`stackwave_wave_duration_seconds`).
    fn observe_wave(&self, wave: i32, started: Instant) {
        self.metrics
            .wave_duration
            .with_label_values(&[&wave.to_string()])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sets `stackwave_component_healthy` of these components.
    fn set_healthy<'a>(&self, components: impl IntoIterator<Item = &'a str>, healthy: bool) {
        for c in components {
            self.metrics
                .component_healthy
                .with_label_values(&[c])
                .set(i64::from(healthy));
        }
    }

    /// Restores what a previous agent process had applied, from the revision store: the
    /// newest healthy revision's objects become the applied state (so unchanged components
    /// are not re-applied), and a newer revision left `applying` (the process was killed
    /// mid-wave) is marked `interrupted` and continued by the next sync of its commit. The
    /// persisted [`AgentState`] is loaded (a store that kept it in separate keys is migrated
    /// to the unit here). Returns the restored revision, if any.
    ///
    /// # Errors
    /// Store failures (SQLite, decryption, a state that does not parse).
    pub fn restore(&mut self) -> Result<Option<i64>, record::RecordError> {
        let revisions = self.store.revisions()?;
        let good = revisions
            .iter()
            .find(|r| r.outcome == RevisionState::Healthy);
        if let Some(r) = revisions
            .iter()
            .find(|r| r.outcome == RevisionState::Applying && good.is_none_or(|g| r.id > g.id))
        {
            self.store.finish(
                r.id,
                RevisionState::Interrupted,
                "agent restarted mid-revision",
            )?;
            self.run.unfinished = Some((r.id, r.commit.clone()));
        }
        self.state = AgentState::load(&self.store)?;
        let Some(good) = good else { return Ok(None) };
        self.load_applied(good)?;
        Ok(Some(good.id))
    }

    fn load_applied(&mut self, good: &record::Revision) -> Result<(), record::RecordError> {
        self.applied.digests = good.components.iter().cloned().collect();
        self.applied.objects = self.store.objects_of(good.id)?.into_iter().collect();
        self.applied.current = Some(good.id);
        self.metrics.set_applied(good.id, &good.commit);
        Ok(())
    }

    /// Re-reads what other processes may have changed in the store since the last loop
    /// (`stackwave rollback`, `resume`, `suspend`, `sync`): the persisted state (the pin
    /// above all), and the applied state when a newer healthy revision was recorded. Writes
    /// nothing. Returns whether the agent is suspended.
    ///
    /// # Errors
    /// Store failures.
    pub fn refresh(&mut self) -> Result<bool, record::RecordError> {
        let stored = AgentState::read(&self.store)?;
        if stored.pin.is_some() && stored.pin != self.state.pin {
            // `stackwave rollback` (another process) pinned the agent.
            self.metrics.rollbacks.inc();
        }
        self.metrics.pinned.set(i64::from(stored.pin.is_some()));
        // The identity a `run` recorded; an agent that has one keeps it until another is set.
        let instance = stored.instance.clone().or(self.state.instance.take());
        self.state = AgentState { instance, ..stored };
        if let Some(id) = self.store.newest_healthy()? {
            if self.applied.current.is_none_or(|c| id > c) {
                // Another process recorded a revision (a CLI rollback): rare, read it whole.
                if let Some(good) = self.store.revisions()?.into_iter().find(|r| r.id == id) {
                    self.load_applied(&good)?;
                }
            }
        }
        let suspended = self.store.state("suspended")?.is_some();
        self.metrics.suspended.set(i64::from(suspended));
        Ok(suspended)
    }

    /// Sets (or lifts, with `None`) the rollback pin, in memory and in the store.
    fn set_pin(
        &mut self,
        pin: Option<i64>,
        from: Option<String>,
    ) -> Result<(), record::RecordError> {
        self.save(|s| {
            s.pin = pin;
            s.pinned_from = from.clone();
        })?;
        self.metrics.pinned.set(i64::from(pin.is_some()));
        Ok(())
    }

    /// Lifts a rollback pin: the next sync applies the branch head again.
    ///
    /// # Errors
    /// Store failures.
    pub fn resume(&mut self) -> Result<(), record::RecordError> {
        self.set_pin(None, None)
    }

    /// What applying a checkout would change in the cluster, per object (see [`diff`]):
    /// rendered like a sync (same lookups, same marks), then dry-run applied. Components that
    /// are applied but left the checkout show their inventory as deletions.
    ///
    /// # Errors
    /// Render failures (naming the component) and API errors (naming the object).
    pub async fn diff(
        &self,
        checkout: &Path,
        progress: &dyn Fn(Progress),
    ) -> Result<Vec<diff::ObjectDiff>, SyncError> {
        let rendered = self.render_all(checkout, progress).await?.objects;
        let mut out = Vec::new();
        let mut names: Vec<&String> = rendered.keys().collect();
        names.extend(
            self.applied
                .objects
                .keys()
                .filter(|c| !rendered.contains_key(*c)),
        );
        for c in names {
            let objs = rendered.get(c).map(Vec::as_slice).unwrap_or(&[]);
            let keep: Vec<ObjRef> = objs.iter().map(ObjRef::of).collect();
            let removed: Vec<ObjRef> = inventory::read(&self.cluster, self.instance(), c)
                .await
                .map_err(|source| SyncError::Inventory {
                    component: c.clone(),
                    source,
                })?
                .into_iter()
                .filter(|r| !keep.contains(r))
                .collect();
            out.extend(
                diff::diff_component(&self.cluster, c, objs, &removed)
                    .await
                    .map_err(|source| SyncError::Diff {
                        component: c.clone(),
                        source,
                    })?,
            );
        }
        Ok(out)
    }

    /// Rolls back to a stored revision: its objects re-applied wave by wave (no fetch, no
    /// render), recorded as a new revision of kind [`RevisionKind::Rollback`], and the agent
    /// pinned there. Refused (nothing applied) when it would undo a component marked
    /// irreversible since, unless `force`.
    ///
    /// # Errors
    /// Store failures; apply failures are an [`Outcome`].
    pub async fn rollback(
        &mut self,
        to: i64,
        force: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<Outcome, record::RecordError> {
        if !force {
            if let Some(reason) = self.irreversible_crossing(to)? {
                return Ok(Outcome::Refused { reason });
            }
        }
        let mut stored: BTreeMap<String, Vec<Json>> =
            self.store.objects_of(to)?.into_iter().collect();
        match hpa::release_all(&self.cluster, &self.policies.ignore, &mut stored).await {
            Ok(r) => self.applied.released = r,
            Err(e) => {
                return Ok(Outcome::Refused {
                    reason: SyncError::Hpa(e).to_string(),
                })
            }
        }
        // Each component in the wave it was last planned in (the catalog's after a restart
        // of an agent that never planned it).
        let mut comps: Vec<(i32, String)> = stored
            .keys()
            .map(|c| {
                let w = self.state.wave_of.get(c).copied();
                (
                    w.or_else(|| self.render.catalog.get(c).map(|x| x.wave))
                        .unwrap_or(0),
                    c.clone(),
                )
            })
            .collect();
        comps.sort();
        let waves = plan::group(comps);
        let revisions = self.store.revisions()?;
        let head = revisions
            .iter()
            .filter(|r| r.kind != RevisionKind::Rollback)
            .max_by_key(|r| r.id)
            .map(|r| r.commit.clone());
        let from = revisions.into_iter().find(|r| r.id == to);
        let commit = from.as_ref().map(|r| r.commit.clone()).unwrap_or_default();
        let rev = self.store.begin(
            RevisionKind::Rollback,
            &commit,
            ROLLBACK_AUTHOR,
            &format!("rollback to revision {to}"),
        )?;
        let digests = digests(&stored);
        // The gates of the built-in catalog (a repository's own entries are not stored with
        // the revision).
        let catalog = self.render.catalog.clone();
        let out = self
            .apply_revision(rev, &catalog, &waves, stored, &digests, progress)
            .await?;
        if matches!(out, Outcome::Healthy { .. }) {
            self.set_pin(Some(to), head)?;
            if let Outcome::Healthy { revision, .. } = &out {
                self.metrics.set_applied(*revision, &commit);
            }
            self.metrics.rollbacks.inc();
        }
        self.retain()?;
        Ok(out)
    }

    /// Checks every applied object for drift; with `correct`, re-applies drifted objects of
    /// components not listed `detectOnly`.
    ///
    /// # Errors
    /// API errors.
    pub async fn drift(&mut self, correct: bool) -> Result<Vec<FieldDrift>, ClusterError> {
        let mut all = Vec::new();
        let mut summary: BTreeMap<String, usize> = BTreeMap::new();
        // One HPA list per namespace for the whole pass.
        let hpas = hpa::targets_of(&self.cluster, &self.applied.objects).await?;
        for (component, objs) in &self.applied.objects {
            let correct = correct && !self.state.detect_only.contains(component);
            let (mut count, mut objects) = (0, 0);
            for (i, found) in
                drift::drift_all_with(&self.cluster, objs, &self.policies.ignore, &hpas).await?
            {
                let o = &objs[i];
                count += found.len();
                objects += 1;
                if correct {
                    // Fields an HPA owns (now, or since the revision was applied) are
                    // neither reset nor kept owned.
                    let release = hpa::released(o, &self.policies.ignore, &hpas);
                    let mut fixed = o.clone();
                    hpa::strip(&mut fixed, &release);
                    let a = self
                        .cluster
                        .apply(
                            &fixed,
                            &ApplyOptions {
                                force: true,
                                release,
                                ..Default::default()
                            },
                        )
                        .await?;
                    self.count_apply(component, &a.action);
                }
                let refs: Vec<&FieldDrift> = found.iter().collect();
                if let Err(e) =
                    drift::record_event(&self.cluster, o, &refs, correct, self.instance()).await
                {
                    // An Event is a report; failing to write one must not stop the loop.
                    tracing::warn!(object = %crate::cluster::object_id(o), error = %e, "drift Event not written");
                }
                all.extend(found);
            }
            // What is left drifted: nothing once corrected.
            let left = |n: usize| if correct { 0 } else { n as i64 };
            self.metrics
                .drift_fields
                .with_label_values(&[component.as_str()])
                .set(left(count));
            self.metrics
                .drift_objects
                .with_label_values(&[component.as_str()])
                .set(left(objects));
            summary.insert(component.clone(), count);
        }
        // For `stackwave status`: fields found drifted per component at the last check.
        let summary = state::DriftSummary {
            checked_at: record::now(),
            corrected: correct,
            fields: summary,
        };
        if let Err(e) = self.save(|s| s.drift = Some(summary.clone())) {
            // A report; failing to write it must not stop the loop.
            eprintln!("warning: drift summary not saved: {e}");
        }
        Ok(all)
    }
}
