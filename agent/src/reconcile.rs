//! The apply stage and the loop's core: one desired-state commit → rendered components →
//! guards → waves applied in order, each gated on health → prune once everything is healthy →
//! a recorded revision. Rollback re-applies a stored revision's objects with the same wave
//! engine (no fetch, no render).
//!
//! A failure anywhere (bad YAML, missing values file, unknown chart version, render error, API
//! error, unhealthy wave) stops the revision there: later waves are untouched, nothing is
//! pruned, and the last good revision stays what the cluster runs.

use crate::cluster::drift::{self, FieldDrift, IgnoreRule};
use crate::cluster::health::{health, Health, Rule};
use crate::cluster::hpa;
use crate::cluster::instance::Instance;
use crate::cluster::inventory::{self, mark, ObjRef, Protect};
use crate::cluster::policy::{Policies, PolicyError, PolicyTexts};
use crate::cluster::preflight;
use crate::cluster::{ApplyOptions, Cluster, ClusterError};
use crate::component::Catalog;
use crate::diff;
use crate::plan;
use crate::record::{self, Store};
use crate::render::{
    cache::RenderCache, charts::ChartStore, objects::Objects, values::Sources, Inputs,
};
use crate::source::Commit;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository's `stackwave.yaml`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RepoConfig {
    /// The Genestack base: a directory, or a Git repository pinned at a tag or commit.
    pub genestack: Base,
    /// Local charts (offline clouds, tests); without it, charts come from each catalog
    /// component's source (Helm repository, OCI registry or Git), cached under the agent's
    /// cache directory ([`Settings::cache_dir`]).
    #[serde(default)]
    pub charts: Option<PathRef>,
    /// Plain kustomize directories applied as components.
    #[serde(default)]
    pub manifests: Vec<Manifests>,
    /// Enabled catalog components.
    #[serde(default)]
    pub components: Vec<String>,
    /// Components that may not be rolled back past this commit (a database migration ran):
    /// `stackwave rollback` to an earlier revision that would change them is refused unless
    /// forced.
    #[serde(default)]
    pub irreversible: Vec<String>,
    /// Components whose drift is only reported (metric, Event, `status`), never corrected,
    /// even when the agent corrects drift elsewhere.
    #[serde(default, rename = "detectOnly")]
    pub detect_only: Vec<String>,
}

/// Where the Genestack base (`base-helm-configs/`, `base-kustomize/`,
/// `helm-chart-versions.yaml`) comes from: exactly one of `path` or `git`.
///
/// ```yaml
/// genestack:
///   git:
///     url: https://github.com/rackerlabs/genestack
///     ref: release-2025.2.0   # a tag (or commit): the base upgrades only when this changes
///     path: ""                # the directory holding base-helm-configs/ (default: the root)
/// ```
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// A directory, relative to the repository root unless absolute.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A pinned Git repository.
    #[serde(default)]
    pub git: Option<crate::source::Pinned>,
}

/// A path, relative to the repository root unless absolute.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PathRef {
    /// The path.
    pub path: PathBuf,
}

/// A plain-manifests component.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Manifests {
    /// Component name.
    pub name: String,
    /// kustomize directory in the repository.
    pub path: PathBuf,
    /// Wave.
    #[serde(default)]
    pub wave: i32,
}

/// Progress events (printed by the CLI, collected by tests).
#[derive(Debug, Clone)]
pub enum Progress {
    /// A component was rendered.
    Rendered {
        component: String,
        objects: usize,
        changed: bool,
        cached: bool,
    },
    /// A wave starts.
    WaveStart { wave: i32, components: Vec<String> },
    /// An object was applied.
    Applied { id: String, action: String },
    /// A wave is healthy.
    WaveHealthy { wave: i32, millis: u128 },
    /// Pruned objects.
    Pruned {
        component: String,
        deleted: Vec<String>,
        skipped: Vec<(String, String)>,
    },
    /// A preflight pass ([`crate::cluster::preflight`]): before wave 1 (`wave: None`) or
    /// the deferred objects of a wave.
    Preflight {
        /// `None` before wave 1, else the wave whose deferred objects were checked.
        wave: Option<i32>,
        /// Objects the dry run accepted.
        checked: usize,
        /// Objects left to check in their wave, once the CRD or Namespace they need (from an
        /// earlier wave, or applied first in theirs) is there.
        deferred: usize,
        /// Objects refused, `Kind/namespace/name: message`.
        refused: Vec<String>,
        /// API requests the pass sent.
        requests: u64,
    },
    /// Any note.
    Note(String),
}

/// How a revision ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied and healthy.
    Healthy {
        /// Revision number.
        revision: i64,
        /// Components touched.
        changed: Vec<String>,
    },
    /// Stopped at a wave.
    Failed {
        /// Revision number.
        revision: i64,
        /// The wave.
        wave: i32,
        /// Why.
        reason: String,
    },
    /// The commit renders exactly what is applied: nothing to do, no revision recorded.
    Unchanged,
    /// A rollback pins the agent: the commit it rolled back from is not re-applied until a
    /// newer commit arrives or `stackwave resume` (see [`Agent::resume`]).
    Pinned {
        /// The revision the agent is pinned to.
        revision: i64,
    },
    /// A newer commit arrived while a wave waited for health past
    /// [`Settings::cancel_stuck_after`]: the revision stopped there (recorded `superseded`;
    /// later waves untouched, nothing pruned) so the newer commit can be applied.
    Superseded {
        /// Revision number.
        revision: i64,
        /// The wave that was waiting.
        wave: i32,
        /// The newer commit.
        by: String,
        /// What was still not healthy.
        waiting: String,
    },
    /// Refused before touching the cluster (render error, guard).
    Refused {
        /// Why.
        reason: String,
    },
}

/// Reads `stackwave.yaml` at the root of a checkout.
///
/// # Errors
/// Missing file, malformed YAML, unknown or mistyped fields — each naming the file.
pub fn read_config(checkout: &Path) -> Result<RepoConfig, String> {
    let cfg_path = checkout.join("stackwave.yaml");
    let text =
        std::fs::read_to_string(&cfg_path).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    let v =
        kustomize_rs::yaml::parse_one(&text).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    serde_json::from_value(crate::component::to_json(&v))
        .map_err(|e| format!("{}: {e}", cfg_path.display()))
}

/// The waves of a repository: catalog components by wave and `dependsOn`
/// ([`plan::waves`]), with `manifests` entries first in their own waves.
///
/// # Errors
/// Unknown components, missing dependencies, cycles.
pub fn plan_waves(catalog: &Catalog, cfg: &RepoConfig) -> Result<Vec<plan::Wave>, String> {
    let mut w = plan::waves(catalog, &cfg.components).map_err(|e| e.to_string())?;
    for m in &cfg.manifests {
        match w.iter_mut().find(|x| x.index == m.wave) {
            Some(x) => x.components.insert(0, m.name.clone()),
            None => w.push(plan::Wave {
                index: m.wave,
                components: vec![m.name.clone()],
            }),
        }
    }
    w.sort_by_key(|x| x.index);
    Ok(w)
}

/// The author recorded on rollback revisions.
pub const ROLLBACK_AUTHOR: &str = "stackwave rollback";

/// Agent settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a wave may take to become healthy.
    pub health_timeout: Duration,
    /// Largest share of managed objects one revision may delete (0.10 = 10%).
    pub max_delete_share: f64,
    /// Allow an over-threshold delete or an empty component.
    pub allow_destructive: bool,
    /// Where charts from repositories and pinned Git repositories (the Genestack base) are
    /// cached; `stackwave run` uses `<state>/cache`.
    pub cache_dir: PathBuf,
    /// How many revisions the store keeps (newest first; the applied revision and a rollback
    /// pin are always kept); `None` keeps all.
    pub keep_revisions: Option<usize>,
    /// A wave that has waited this long for health is cancelled when a newer commit arrives
    /// ([`Agent::newer_commit`] tells); `None`: waves always wait out `health_timeout`.
    pub cancel_stuck_after: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            health_timeout: Duration::from_secs(300),
            max_delete_share: 0.10,
            allow_destructive: false,
            cache_dir: std::env::temp_dir().join("stackwave-cache"),
            cancel_stuck_after: Some(Duration::from_secs(120)),
            keep_revisions: Some(200),
        }
    }
}

/// The agent: cluster, store, caches, and what each component last had applied.
pub struct Agent {
    /// The cluster.
    pub cluster: Cluster,
    /// Revision store.
    pub store: Store,
    /// Render cache.
    pub cache: RenderCache,
    /// Component catalog.
    pub catalog: Catalog,
    /// Settings.
    pub settings: Settings,
    /// Component → digest of the objects last applied.
    pub applied: BTreeMap<String, String>,
    /// Component → objects last applied (the desired state drift is checked against).
    pub desired: BTreeMap<String, Vec<Json>>,
    /// Pinned to a rolled-back revision until a newer commit arrives or `resume`.
    pub pinned: Option<i64>,
    /// The commit that was current when the agent was pinned (the one not to re-apply).
    pub pinned_from: Option<String>,
    /// Component → the wave it was last planned in (rollback reuses it; `manifests:`
    /// entries are not in the catalog). Falls back to the catalog after a restart.
    pub wave_of: BTreeMap<String, i32>,
    /// Components whose last prune was skipped (inventory unreadable, prune or inventory write
    /// failed): the next sync is not `Unchanged` until they prune (persisted as store state
    /// `prune_pending`).
    pub prune_pending: BTreeSet<String>,
    /// Prometheus metrics ([`crate::metrics`]).
    pub metrics: crate::metrics::Metrics,
    /// A revision a previous agent process began and did not finish: (revision, commit).
    /// The next sync of that commit continues it instead of recording a new one.
    pub unfinished: Option<(i64, String)>,
    /// The revision whose objects are the applied state (`None` before the first).
    pub current: Option<i64>,
    /// Components whose drift is reported, never corrected (`detectOnly:` of the last
    /// commit rendered; kept in the store across restarts).
    pub detect_only: Vec<String>,
    /// Asks the source for the newest commit of what the agent follows (network I/O, run on
    /// a blocking thread), so a stuck wave can be cancelled for a newer commit; see
    /// [`Settings::cancel_stuck_after`].
    pub newer_commit: Option<NewerCommit>,
    /// Which Stackwave instance this agent is: every inventory, ownership mark and Event it
    /// writes is scoped by it ([`crate::cluster::instance`]). Kept in the store (state
    /// `instance`) so `rollback` and `diff` act as the `run` that set it.
    pub instance: Instance,
    /// Object id → the fields Stackwave releases to an HPA targeting the object (dropped from
    /// the applied configuration, handed over on apply; [`hpa`]).
    pub released: Released,
    /// The commit of the revision being applied (not set during rollbacks).
    applying: Option<String>,
    health_rules: Vec<Rule>,
    protect: Vec<Protect>,
    ignore: Vec<IgnoreRule>,
}

/// Object id (`Kind/namespace/name`) → JSON pointers Stackwave releases to an HPA.
pub type Released = BTreeMap<String, Vec<String>>;

/// A check for the source's newest commit id (`None` when it cannot tell).
pub type NewerCommit = std::sync::Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Why a wave stopped waiting.
enum Stop {
    /// Failed.
    Failed(String),
    /// Not healthy within [`Settings::health_timeout`].
    TimedOut(String),
    /// A newer commit arrived: (commit, what was waiting).
    Superseded(String, String),
}

/// Why an agent could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A policy file is malformed (the file, line and column are in the message).
    #[error("refusing to start: {0}")]
    Policy(#[from] PolicyError),
}

/// How often a stuck wave asks for a newer commit.
const NEWER_COMMIT_CHECK: Duration = Duration::from_secs(2);

/// The digest of a component's objects (sha256 over their object digests, in order): what
/// [`Agent::applied`] holds.
pub fn digest(objs: &[Json]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for o in objs {
        h.update(record::object_sha(o).as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses rendered text into objects (comment-only and empty documents dropped).
///
/// # Errors
/// Malformed YAML.
pub fn objects_of(text: &str) -> Result<Vec<Json>, String> {
    let docs = kustomize_rs::yaml::parse_documents(text).map_err(|e| e.to_string())?;
    Ok(docs
        .iter()
        .filter(|d| d.as_map().is_some_and(|m| !m.is_empty()))
        .map(crate::component::to_json)
        .collect())
}

fn is_test_hook(o: &Json) -> bool {
    o.pointer("/metadata/annotations/helm.sh~1hook")
        .and_then(Json::as_str)
        .is_some_and(|h| {
            h.split(',')
                .all(|e| matches!(e.trim().to_lowercase().as_str(), "test" | "test-success"))
        })
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
            cache: RenderCache::new(),
            catalog,
            settings,
            applied: BTreeMap::new(),
            desired: BTreeMap::new(),
            pinned: None,
            pinned_from: None,
            unfinished: None,
            current: None,
            detect_only: Vec::new(),
            newer_commit: None,
            instance: Instance::default(),
            released: BTreeMap::new(),
            applying: None,
            metrics: crate::metrics::Metrics::new(),
            wave_of: BTreeMap::new(),
            prune_pending: BTreeSet::new(),
            health_rules: policies.health,
            protect: policies.protect,
            ignore: policies.ignore,
        })
    }

    /// Reads the cluster objects bindings may look up (Secrets and Services).
    async fn lookups(&self) -> Result<Objects, ClusterError> {
        let mut objects = Objects::default();
        for (g, v, k) in [("", "v1", "Secret"), ("", "v1", "Service")] {
            let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(g, v, k));
            let api: Api<DynamicObject> = Api::all_with(self.cluster.client().clone(), &ar);
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| self.cluster.error(&format!("{k}List"), e))?;
            for o in list.items {
                let mut j = serde_json::to_value(o).unwrap_or(Json::Null);
                j["kind"] = Json::from(k);
                j["apiVersion"] = Json::from(v);
                objects.insert(crate::render::objects::from_json(&j));
            }
        }
        Ok(objects)
    }

    /// Renders every component of a checkout: component → objects in apply order, without the
    /// fields HPAs own, and those fields per object ([`Agent::released`]).
    ///
    /// # Errors
    /// The first component that fails, named with its cause.
    pub async fn render_all(
        &self,
        checkout: &Path,
        progress: &dyn Fn(Progress),
    ) -> Result<(RepoConfig, BTreeMap<String, Vec<Json>>, Released), String> {
        let cfg_path = checkout.join("stackwave.yaml");
        let cfg = read_config(checkout)?;
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                checkout.join(p)
            }
        };
        let genestack = match (&cfg.genestack.path, &cfg.genestack.git) {
            (Some(p), None) => abs(p),
            (None, Some(g)) => {
                let cache = self.settings.cache_dir.clone();
                let g2 = g.clone();
                let (commit, dir) = tokio::task::spawn_blocking(move || g2.checkout(&cache, false))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("genestack base {}@{}: {}", g.url, g.r#ref, e.cause))?;
                progress(Progress::Note(format!(
                    "genestack base {}@{} = commit {}",
                    g.url,
                    g.r#ref,
                    &commit.id[..commit.id.len().min(10)]
                )));
                dir
            }
            _ => {
                return Err(format!(
                    "{}: genestack needs exactly one of `path` or `git`",
                    cfg_path.display()
                ))
            }
        };
        let objects = self.lookups().await.map_err(|e| e.to_string())?;
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
            catalog: self.catalog.clone(),
        };
        let mut out = BTreeMap::new();
        let mut shown = Vec::new();
        for m in &cfg.manifests {
            let dir = abs(&m.path);
            let text = kustomize_rs::build_dir(&dir, &Default::default())
                .map_err(|e| format!("manifests {}: {e}", m.name))?;
            let mut objs = objects_of(&text).map_err(|e| format!("manifests {}: {e}", m.name))?;
            plan::order_objects(&mut objs);
            for o in objs.iter_mut() {
                mark(o, &m.name, &self.instance);
            }
            shown.push((m.name.clone(), false));
            out.insert(m.name.clone(), objs);
        }
        for c in &cfg.components {
            let (r, cached) = self.cache.render(&inputs, c).map_err(|e| e.to_string())?;
            if cached {
                &self.metrics.cache_hits
            } else {
                &self.metrics.cache_misses
            }
            .inc();
            let mut objs: Vec<Json> =
                objects_of(&r.text).map_err(|e| format!("component {c}: rendered output: {e}"))?;
            objs.retain(|o| !is_test_hook(o));
            // `helm install --namespace` puts namespaced objects without one in the release's.
            let ns = self
                .catalog
                .get(c)
                .map(|x| x.release.namespace.clone())
                .unwrap_or_default();
            for o in objs.iter_mut() {
                let (av, kind) = (
                    o["apiVersion"].as_str().unwrap_or("").to_string(),
                    o["kind"].as_str().unwrap_or("").to_string(),
                );
                if o.pointer("/metadata/namespace").is_none()
                    && !kustomize_rs::openapi::is_cluster_scoped(&av, &kind)
                {
                    o["metadata"]["namespace"] = Json::from(ns.clone());
                }
            }
            let (mut main, mut hooks): (Vec<Json>, Vec<Json>) = objs
                .into_iter()
                .partition(|o| o.pointer("/metadata/annotations/helm.sh~1hook").is_none());
            plan::order_objects(&mut main);
            hooks.sort_by_key(|h| {
                h.pointer("/metadata/annotations/helm.sh~1hook-weight")
                    .and_then(Json::as_str)
                    .and_then(|w| w.parse::<i64>().ok())
                    .unwrap_or(0)
            });
            main.extend(hooks);
            for o in main.iter_mut() {
                mark(o, c, &self.instance);
            }
            shown.push((c.clone(), cached));
            out.insert(c.clone(), main);
        }
        // Fields HPAs own leave the desired state before anything compares or applies it.
        let released = self
            .release_to_hpas(&mut out)
            .await
            .map_err(|e| format!("HorizontalPodAutoscalers not read: {e}"))?;
        for (c, cached) in shown {
            progress(Progress::Rendered {
                objects: out[&c].len(),
                changed: self.applied.get(&c) != Some(&digest(&out[&c])),
                component: c,
                cached,
            });
        }
        Ok((cfg, out, released))
    }

    fn waves(&self, cfg: &RepoConfig) -> Result<Vec<plan::Wave>, String> {
        plan_waves(&self.catalog, cfg)
    }

    /// The HPA targets in the namespaces of `objs`: live HPAs (one list per namespace) and the
    /// HPAs among `objs` themselves (a chart that ships its HPA).
    ///
    /// # Errors
    /// API errors.
    async fn hpa_targets(
        &self,
        objs: &BTreeMap<String, Vec<Json>>,
    ) -> Result<hpa::Targets, ClusterError> {
        let all = || objs.values().flatten();
        let mut t =
            hpa::Targets::load(&self.cluster, all().map(crate::cluster::namespace_of)).await?;
        for o in all().filter(|o| o["kind"] == "HorizontalPodAutoscaler") {
            t.add(o);
        }
        Ok(t)
    }

    /// Drops from `objs` the fields HPAs own (`when: hpa` ignore rules whose object an HPA
    /// targets) and returns them per object (for [`Agent::released`]), so applies hand them
    /// over instead of resetting them.
    ///
    /// # Errors
    /// API errors listing HPAs.
    async fn release_to_hpas(
        &self,
        objs: &mut BTreeMap<String, Vec<Json>>,
    ) -> Result<Released, ClusterError> {
        let t = self.hpa_targets(objs).await?;
        let mut released = BTreeMap::new();
        for o in objs.values_mut().flatten() {
            let r = hpa::released(o, &self.ignore, &t);
            if !r.is_empty() {
                hpa::strip(o, &r);
                released.insert(crate::cluster::object_id(o), r);
            }
        }
        Ok(released)
    }

    /// Takes over this instance's entries of a legacy (unscoped) inventory of `component`
    /// ([`inventory::claim_legacy`]), reporting what moved; a failure is reported and leaves
    /// the legacy inventory as it was.
    async fn claim_legacy(&self, component: &str, desired: &[ObjRef], progress: &dyn Fn(Progress)) {
        match inventory::claim_legacy(&self.cluster, &self.instance, component, desired).await {
            Ok(c) if c.claimed.is_empty() => {}
            Ok(c) => progress(Progress::Note(format!(
                "inventory of {component}: took over {} entr{} of the legacy {} ({} left there for other instances)",
                c.claimed.len(),
                if c.claimed.len() == 1 { "y" } else { "ies" },
                inventory::legacy_name(component),
                c.left
            ))),
            Err(e) => progress(Progress::Note(format!(
                "legacy inventory of {component} not claimed: {e}"
            ))),
        }
    }

    /// Sets the instance identity and records it in the store (for `rollback` and `diff`).
    ///
    /// # Errors
    /// Store failures.
    pub fn set_instance(&mut self, instance: Instance) -> Result<(), record::RecordError> {
        self.store.set_state(
            "instance",
            Some(&serde_json::to_string(&instance).unwrap_or_default()),
        )?;
        self.instance = instance;
        Ok(())
    }

    /// Loads the instance identity a `run` recorded in the store, if any.
    fn load_instance(&mut self) -> Result<(), record::RecordError> {
        if let Some(i) = self.store.state("instance")? {
            if let Ok(i) = serde_json::from_str(&i) {
                self.instance = i;
            }
        }
        Ok(())
    }

    /// Whether a newer commit than the one being applied has arrived.
    async fn superseded_by(&self) -> Option<String> {
        let (check, current) = (self.newer_commit.clone()?, self.applying.clone()?);
        let newest = tokio::task::spawn_blocking(move || check()).await.ok()??;
        (newest != current).then_some(newest)
    }

    async fn wait_healthy(&self, objs: &[Json]) -> Result<(), Stop> {
        let started = Instant::now();
        let deadline = started + self.settings.health_timeout;
        let mut delay = Duration::from_millis(50);
        let mut last_check: Option<Instant> = None;
        let backends = crate::cluster::health::webhook_backends(objs);
        loop {
            let mut waiting: Option<String> = None;
            for o in objs {
                let Some(live) = self
                    .cluster
                    .get(o)
                    .await
                    .map_err(|e| Stop::Failed(e.to_string()))?
                else {
                    waiting = Some(format!("{} is missing", crate::cluster::object_id(o)));
                    break;
                };
                let mut h = health(&live, &self.health_rules);
                let key = (
                    crate::cluster::namespace_of(o).to_string(),
                    crate::cluster::name_of(o).to_string(),
                );
                if h.is_current() && o["kind"] == "Service" && backends.contains(&key) {
                    let slices = self
                        .cluster
                        .endpoint_slices(&key.0, &key.1)
                        .await
                        .map_err(|e| Stop::Failed(e.to_string()))?;
                    h = crate::cluster::health::endpoints_health(&slices);
                }
                match h {
                    Health::Current => {}
                    Health::Failed(m) => {
                        return Err(Stop::Failed(format!(
                            "{} failed: {m}",
                            crate::cluster::object_id(o)
                        )))
                    }
                    Health::InProgress(m) => {
                        waiting = Some(format!("{}: {m}", crate::cluster::object_id(o)));
                        break;
                    }
                }
            }
            let Some(w) = waiting else { return Ok(()) };
            if Instant::now() > deadline {
                return Err(Stop::TimedOut(format!(
                    "not healthy within {:?}: {w}",
                    self.settings.health_timeout
                )));
            }
            if self
                .settings
                .cancel_stuck_after
                .is_some_and(|after| started.elapsed() >= after)
                && last_check.is_none_or(|t| t.elapsed() >= NEWER_COMMIT_CHECK)
            {
                last_check = Some(Instant::now());
                if let Some(newer) = self.superseded_by().await {
                    return Err(Stop::Superseded(newer, w));
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
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
        let out = self.sync_commit(checkout, commit, progress).await?;
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
        if let (Some(keep), Some(_)) = (self.settings.keep_revisions, self.current) {
            let also: Vec<i64> = self.current.into_iter().chain(self.pinned).collect();
            self.store.retain(keep.max(1), &also)?;
        }
        Ok(())
    }

    async fn sync_commit(
        &mut self,
        checkout: &Path,
        commit: &Commit,
        progress: &dyn Fn(Progress),
    ) -> Result<Outcome, record::RecordError> {
        if let Some(revision) = self.pinned {
            if self.pinned_from.as_deref() == Some(commit.id.as_str()) {
                return Ok(Outcome::Pinned { revision });
            }
        }
        let (cfg, mut rendered, released) = match self.render_all(checkout, progress).await {
            Ok(x) => x,
            Err(reason) => return Ok(Outcome::Refused { reason }),
        };
        // wt-adopt hook: Helm-installed components without a Stackwave inventory are never
        // overwritten silently (refused, or taken over with `adopt: auto`).
        if let Err(reason) = crate::adopt::guard(self, checkout, &mut rendered, progress).await {
            return Ok(Outcome::Refused { reason });
        }
        self.released = released;
        // Components no longer in the repository leave the render cache with this commit.
        self.cache.retain(&|c| rendered.contains_key(c));
        if !self.settings.allow_destructive {
            if let Some((c, _)) = rendered.iter().find(|(_, o)| o.is_empty()) {
                return Ok(Outcome::Refused { reason: format!("component {c} rendered no objects (refused; allow destructive changes to apply it)") });
            }
            let before: Vec<ObjRef> = self.desired.values().flatten().map(ObjRef::of).collect();
            let after: Vec<ObjRef> = rendered.values().flatten().map(ObjRef::of).collect();
            let deleting = before.iter().filter(|r| !after.contains(r)).count();
            if !before.is_empty()
                && deleting as f64 / before.len() as f64 > self.settings.max_delete_share
            {
                return Ok(Outcome::Refused {
                    reason: format!(
                        "revision would delete {deleting} of {} managed objects (more than {:.0}%)",
                        before.len(),
                        self.settings.max_delete_share * 100.0
                    ),
                });
            }
        }
        let waves = match self.waves(&cfg) {
            Ok(w) => w,
            Err(reason) => return Ok(Outcome::Refused { reason }),
        };
        for w in &waves {
            for c in &w.components {
                self.wave_of.insert(c.clone(), w.index);
            }
        }
        self.store.set_state(
            "wave_of",
            Some(&serde_json::to_string(&self.wave_of).unwrap_or_default()),
        )?;
        self.detect_only = cfg.detect_only.clone();
        self.store.set_state(
            "detect_only",
            Some(&serde_json::to_string(&self.detect_only).unwrap_or_default()),
        )?;
        let same_set = self.desired.len() == rendered.len()
            && self.desired.keys().all(|c| rendered.contains_key(c));
        if same_set
            && self.prune_pending.is_empty()
            && rendered
                .iter()
                .all(|(c, o)| self.applied.get(c) == Some(&digest(o)))
        {
            return Ok(Outcome::Unchanged);
        }
        self.set_pin(None, None)?;
        let rev = match self.unfinished.take() {
            Some((rev, c)) if c == commit.id => {
                self.store.finish(rev, "applying", "")?;
                rev
            }
            _ => self
                .store
                .begin(&commit.id, &commit.author, &commit.summary)?,
        };
        let marked: Vec<String> = cfg
            .irreversible
            .iter()
            .filter(|c| rendered.contains_key(*c))
            .cloned()
            .collect();
        self.store.mark_irreversible(rev, &marked)?;
        self.applying = Some(commit.id.clone());
        let out = self.apply_revision(rev, &waves, rendered, progress).await;
        self.applying = None;
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
            .filter(|r| r.id > to && r.outcome == "healthy")
        {
            for c in self.store.irreversible_of(r.id)? {
                if digest_at(to, &c) != self.applied.get(&c).cloned() {
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
        self.observe_wave(wave, started);
        self.store
            .record_wave(rev, wave, false, started.elapsed().as_millis(), &reason)?;
        self.store.finish(rev, "failed", &reason)?;
        Ok(Outcome::Failed {
            revision: rev,
            wave,
            reason,
        })
    }

    /// Adds applied objects to `component`'s inventory, right after their apply and before
    /// any health wait, so a revision that never becomes healthy leaves nothing a later
    /// prune cannot find (kustomize-controller likewise records its inventory right after
    /// apply). A read-modify-write: a failed read writes nothing (never an inventory without
    /// the entries it could not read); a failure is reported.
    async fn inventory_add(&self, component: &str, refs: &[ObjRef], progress: &dyn Fn(Progress)) {
        self.claim_legacy(component, refs, progress).await;
        let added = inventory::update(&self.cluster, &self.instance, component, |old| {
            let mut inv = old.to_vec();
            inv.extend(refs.iter().filter(|r| !old.contains(r)).cloned());
            inv
        })
        .await;
        if let Err(e) = added {
            progress(Progress::Note(format!(
                "inventory of {component} not updated: {e}"
            )));
        }
    }

    /// Applies one object of a revision: forced, Jobs replaced on immutable-field errors,
    /// the fields HPAs own released.
    async fn apply_one(&self, o: &Json) -> Result<crate::cluster::Applied, ClusterError> {
        let release = self
            .released
            .get(&crate::cluster::object_id(o))
            .cloned()
            .unwrap_or_default();
        self.cluster
            .apply(
                o,
                &ApplyOptions {
                    force: true,
                    replace_immutable: o["kind"] == "Job",
                    release,
                    ..Default::default()
                },
            )
            .await
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
            .filter(|(_, c, objs)| self.applied.get(*c) != Some(&digest(objs)))
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
        self.store.finish(rev, "refused", &reason)?;
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

    async fn apply_revision(
        &mut self,
        rev: i64,
        waves: &[plan::Wave],
        rendered: BTreeMap<String, Vec<Json>>,
        progress: &dyn Fn(Progress),
    ) -> Result<Outcome, record::RecordError> {
        let mut changed = Vec::new();
        let mut deferred = match self.preflight(rev, waves, &rendered, progress).await? {
            Ok(d) => d,
            Err(refused) => return Ok(refused),
        };
        for wave in waves {
            let started = Instant::now();
            let (due, later) = preflight::due(deferred, wave.index);
            deferred = later;
            // Ids applied ahead of the wave's other objects (its stage one).
            let mut staged: Vec<String> = Vec::new();
            if !due.is_empty() {
                let wave_objects: Vec<Json> = wave
                    .components
                    .iter()
                    .filter(|c| {
                        rendered
                            .get(*c)
                            .is_some_and(|o| self.applied.get(*c) != Some(&digest(o)))
                    })
                    .flat_map(|c| rendered[c].iter().cloned())
                    .collect();
                let first: Vec<Json> = preflight::stage_one(&due, wave.index, &wave_objects)
                    .into_iter()
                    .cloned()
                    .collect();
                for o in &first {
                    // Every rendered object carries its component's mark (`mark`).
                    let c = o
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(crate::cluster::COMPONENT_ANNOTATION))
                        .and_then(Json::as_str)
                        .unwrap_or_default();
                    match self.apply_one(o).await {
                        Ok(a) => {
                            self.count_apply(c, &a.action);
                            self.inventory_add(c, &[ObjRef::of(o)], progress).await;
                            staged.push(a.id.clone());
                            progress(Progress::Applied {
                                id: a.id,
                                action: format!("{:?}", a.action).to_lowercase(),
                            })
                        }
                        Err(e) => return self.fail_wave(rev, wave.index, started, e.to_string()),
                    }
                }
                if let Err(Stop::Failed(r) | Stop::TimedOut(r) | Stop::Superseded(_, r)) =
                    self.wait_healthy(&first).await
                {
                    return self.fail_wave(rev, wave.index, started, r);
                }
                let report = preflight::check_due(&self.cluster, due).await;
                self.report_preflight(Some(wave.index), &report, progress);
                if !report.refused.is_empty() {
                    let reason = format!(
                        "preflight refused {} (nothing else of wave {} applied)",
                        report.refusal_text(),
                        wave.index
                    );
                    return self.fail_wave(rev, wave.index, started, reason);
                }
            }
            let comps: Vec<&String> = wave
                .components
                .iter()
                .filter(|c| rendered.contains_key(*c))
                .collect();
            progress(Progress::WaveStart {
                wave: wave.index,
                components: comps.iter().map(|c| c.to_string()).collect(),
            });
            let mut touched = Vec::new();
            for c in &comps {
                let objs = rendered[*c].clone();
                self.store.record_component(rev, c, &digest(&objs), &objs)?;
                if self.applied.get(*c) == Some(&digest(&objs)) {
                    continue;
                }
                for o in &objs {
                    if staged.contains(&crate::cluster::object_id(o)) {
                        continue;
                    }
                    match self.apply_one(o).await {
                        Ok(a) => {
                            self.count_apply(c, &a.action);
                            progress(Progress::Applied {
                                id: a.id,
                                action: format!("{:?}", a.action).to_lowercase(),
                            })
                        }
                        Err(e) => {
                            self.set_healthy([c.as_str()], false);
                            return self.fail_wave(rev, wave.index, started, e.to_string());
                        }
                    }
                }
                let refs: Vec<ObjRef> = objs.iter().map(ObjRef::of).collect();
                self.inventory_add(c, &refs, progress).await;
                touched.push((c.to_string(), objs));
            }
            let all: Vec<Json> = touched.iter().flat_map(|(_, o)| o.clone()).collect();
            let healthy = self.wait_healthy(&all).await;
            self.set_healthy(touched.iter().map(|(c, _)| c.as_str()), healthy.is_ok());
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
                    self.observe_wave(wave.index, started);
                    self.store.record_wave(
                        rev,
                        wave.index,
                        false,
                        started.elapsed().as_millis(),
                        &reason,
                    )?;
                    self.store.finish(rev, "superseded", &reason)?;
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
            for (c, objs) in touched {
                self.applied.insert(c.clone(), digest(&objs));
                self.desired.insert(c.clone(), objs);
                changed.push(c);
            }
        }
        // Prune only once the whole revision is healthy.
        for (c, objs) in &rendered {
            let desired: Vec<ObjRef> = objs.iter().map(ObjRef::of).collect();
            self.claim_legacy(c, &desired, progress).await;
            // An inventory that cannot be read is never taken for an empty one: that
            // component's prune is skipped (nothing deleted) and its inventory left as is.
            let old = match inventory::read(&self.cluster, &self.instance, c).await {
                Ok(old) => old,
                Err(e) => {
                    progress(Progress::Note(format!(
                        "prune of {c} skipped, nothing deleted: inventory not read: {e}"
                    )));
                    self.prune_pending.insert(c.clone());
                    continue;
                }
            };
            match inventory::prune(
                &self.cluster,
                &self.instance,
                c,
                &old,
                &desired,
                &self.protect,
            )
            .await
            {
                Ok((p, keep)) => {
                    self.metrics
                        .pruned
                        .with_label_values(&[c.as_str()])
                        .inc_by(p.deleted.len() as u64);
                    if !p.deleted.is_empty() || !p.skipped.is_empty() {
                        progress(Progress::Pruned {
                            component: c.clone(),
                            deleted: p.deleted,
                            skipped: p.skipped,
                        });
                    }
                    // Entries someone added since the read are kept (the write is conditional
                    // on the read resourceVersion, and re-run on 409).
                    let written = inventory::update(&self.cluster, &self.instance, c, |cur| {
                        let mut inv = desired.clone();
                        inv.extend(keep.iter().filter(|k| !desired.contains(k)).cloned());
                        let added: Vec<ObjRef> = cur
                            .iter()
                            .filter(|r| !old.contains(r) && !inv.contains(r))
                            .cloned()
                            .collect();
                        inv.extend(added);
                        inv
                    })
                    .await;
                    match written {
                        Ok(_) => {
                            self.prune_pending.remove(c);
                        }
                        Err(e) => {
                            progress(Progress::Note(format!("inventory of {c} not updated: {e}")));
                            self.prune_pending.insert(c.clone());
                        }
                    }
                }
                Err(e) => {
                    progress(Progress::Note(format!("prune of {c} skipped: {e}")));
                    self.prune_pending.insert(c.clone());
                }
            }
        }
        self.prune_pending.retain(|c| rendered.contains_key(c));
        self.store.set_state(
            "prune_pending",
            Some(&serde_json::to_string(&self.prune_pending).unwrap_or_default()),
        )?;
        self.desired.retain(|c, _| rendered.contains_key(c));
        // The image IDs actually running: a report, never a reason to fail the revision.
        match self.running_images(rendered.values().flatten()).await {
            Ok(ids) => self.store.record_image_ids(rev, &ids)?,
            Err(e) => progress(Progress::Note(format!("image IDs not read: {e}"))),
        }
        // Components left unchanged passed their gate when last applied.
        self.set_healthy(rendered.keys().map(String::as_str), true);
        self.store.finish(rev, "healthy", "")?;
        self.current = Some(rev);
        Ok(Outcome::Healthy {
            revision: rev,
            changed,
        })
    }

    /// Image reference → image ID (digest) of the containers running for these objects' Pod
    /// templates: Pods listed by each workload's `spec.selector.matchLabels` in its
    /// namespace, `status.containerStatuses[]` and `initContainerStatuses[]` read
    /// (`image` as rendered, `imageID` as the kubelet reports it). References with no running
    /// container are left out.
    ///
    /// # Errors
    /// API errors.
    pub async fn running_images<'a>(
        &self,
        objs: impl Iterator<Item = &'a Json>,
    ) -> Result<BTreeMap<String, String>, ClusterError> {
        let mut out = BTreeMap::new();
        for o in objs {
            let Some(sel) = o
                .pointer("/spec/selector/matchLabels")
                .and_then(Json::as_object)
                .filter(|m| !m.is_empty())
            else {
                continue;
            };
            if o.pointer("/spec/template/spec").is_none() {
                continue;
            }
            let wanted = record::images(o);
            let selector = sel
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",");
            let sample = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": o.pointer("/metadata/namespace").cloned().unwrap_or(json!("default"))}});
            for pod in self.cluster.list(&sample, &selector).await? {
                for list in ["/status/containerStatuses", "/status/initContainerStatuses"] {
                    for cs in pod
                        .pointer(list)
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let (Some(image), Some(id)) =
                            (cs["image"].as_str(), cs["imageID"].as_str())
                        else {
                            continue;
                        };
                        if !id.is_empty() && wanted.iter().any(|w| w == image) {
                            out.insert(image.to_string(), id.to_string());
                        }
                    }
                }
            }
        }
        Ok(out)
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
    /// mid-wave) is marked `interrupted` and continued by the next sync of its commit.
    /// Returns the restored revision, if any.
    ///
    /// # Errors
    /// Store failures (SQLite, decryption).
    pub fn restore(&mut self) -> Result<Option<i64>, record::RecordError> {
        let revisions = self.store.revisions()?;
        let good = revisions.iter().find(|r| r.outcome == "healthy");
        if let Some(r) = revisions
            .iter()
            .find(|r| r.outcome == "applying" && good.is_none_or(|g| r.id > g.id))
        {
            self.store
                .finish(r.id, "interrupted", "agent restarted mid-revision")?;
            self.unfinished = Some((r.id, r.commit.clone()));
        }
        self.pinned = self.store.state("pin")?.and_then(|p| p.parse().ok());
        self.pinned_from = self.store.state("pinned_from")?;
        self.load_instance()?;
        if let Some(p) = self.store.state("prune_pending")? {
            self.prune_pending = serde_json::from_str(&p)
                .map_err(|e| record::RecordError::Io(format!("store state prune_pending: {e}")))?;
        }
        if let Some(w) = self.store.state("wave_of")? {
            self.wave_of = serde_json::from_str(&w).unwrap_or_default();
        }
        if let Some(d) = self.store.state("detect_only")? {
            self.detect_only = serde_json::from_str(&d).unwrap_or_default();
        }
        let Some(good) = good else { return Ok(None) };
        self.load_applied(good)?;
        Ok(Some(good.id))
    }

    fn load_applied(&mut self, good: &record::Revision) -> Result<(), record::RecordError> {
        self.applied = good.components.iter().cloned().collect();
        self.desired = self.store.objects_of(good.id)?.into_iter().collect();
        self.current = Some(good.id);
        self.metrics.set_applied(good.id, &good.commit);
        Ok(())
    }

    /// Re-reads what other processes may have changed in the store since the last loop
    /// (`stackwave rollback`, `resume`, `suspend`, `sync`): the pin, and the applied state
    /// when a newer healthy revision was recorded. Returns whether the agent is suspended.
    ///
    /// # Errors
    /// Store failures.
    pub fn refresh(&mut self) -> Result<bool, record::RecordError> {
        self.load_instance()?;
        let pin = self.store.state("pin")?.and_then(|p| p.parse().ok());
        if pin.is_some() && pin != self.pinned {
            // `stackwave rollback` (another process) pinned the agent.
            self.metrics.rollbacks.inc();
        }
        self.pinned = pin;
        self.metrics.pinned.set(i64::from(pin.is_some()));
        self.pinned_from = self.store.state("pinned_from")?;
        if let Some(id) = self.store.newest_healthy()? {
            if self.current.is_none_or(|c| id > c) {
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
        self.store
            .set_state("pin", pin.map(|p| p.to_string()).as_deref())?;
        self.store.set_state("pinned_from", from.as_deref())?;
        self.pinned = pin;
        self.pinned_from = from;
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
    ) -> Result<Vec<diff::ObjectDiff>, String> {
        let (_, rendered, _) = self.render_all(checkout, progress).await?;
        let mut out = Vec::new();
        let mut names: Vec<&String> = rendered.keys().collect();
        names.extend(self.desired.keys().filter(|c| !rendered.contains_key(*c)));
        for c in names {
            let objs = rendered.get(c).map(Vec::as_slice).unwrap_or(&[]);
            let keep: Vec<ObjRef> = objs.iter().map(ObjRef::of).collect();
            let removed: Vec<ObjRef> = inventory::read(&self.cluster, &self.instance, c)
                .await
                .map_err(|e| format!("inventory of {c}: {e}"))?
                .into_iter()
                .filter(|r| !keep.contains(r))
                .collect();
            out.extend(
                diff::diff_component(&self.cluster, c, objs, &removed)
                    .await
                    .map_err(|e| format!("component {c}: {e}"))?,
            );
        }
        Ok(out)
    }

    /// Rolls back to a stored revision: its objects re-applied wave by wave (no fetch, no
    /// render), recorded as a new revision, and the agent pinned there. Refused (nothing
    /// applied) when it would undo a component marked irreversible since, unless `force`.
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
        match self.release_to_hpas(&mut stored).await {
            Ok(r) => self.released = r,
            Err(e) => {
                return Ok(Outcome::Refused {
                    reason: format!("HorizontalPodAutoscalers not read: {e}"),
                })
            }
        }
        let mut comps: Vec<(i32, String)> = stored
            .keys()
            .map(|c| {
                let w = self.wave_of.get(c).copied();
                (
                    w.or_else(|| self.catalog.get(c).map(|x| x.wave))
                        .unwrap_or(0),
                    c.clone(),
                )
            })
            .collect();
        comps.sort();
        let mut waves: Vec<plan::Wave> = Vec::new();
        for (w, c) in comps {
            match waves.iter_mut().find(|x| x.index == w) {
                Some(x) => x.components.push(c),
                None => waves.push(plan::Wave {
                    index: w,
                    components: vec![c],
                }),
            }
        }
        let revisions = self.store.revisions()?;
        let head = revisions
            .iter()
            .filter(|r| r.author != ROLLBACK_AUTHOR)
            .max_by_key(|r| r.id)
            .map(|r| r.commit.clone());
        let from = revisions.into_iter().find(|r| r.id == to);
        let commit = from.as_ref().map(|r| r.commit.clone()).unwrap_or_default();
        let rev = self.store.begin(
            &commit,
            ROLLBACK_AUTHOR,
            &format!("rollback to revision {to}"),
        )?;
        let out = self.apply_revision(rev, &waves, stored, progress).await?;
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
        let hpas = self.hpa_targets(&self.desired).await?;
        for (component, objs) in &self.desired {
            let correct = correct && !self.detect_only.contains(component);
            let (mut count, mut objects) = (0, 0);
            for (i, found) in
                drift::drift_all_with(&self.cluster, objs, &self.ignore, &hpas).await?
            {
                let o = &objs[i];
                count += found.len();
                objects += 1;
                if correct {
                    // Fields an HPA owns (now, or since the revision was applied) are
                    // neither reset nor kept owned.
                    let release = hpa::released(o, &self.ignore, &hpas);
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
                    drift::record_event(&self.cluster, o, &refs, correct, &self.instance).await
                {
                    // An Event is a report; failing to write one must not stop the loop.
                    eprintln!(
                        "warning: drift Event for {}: {e}",
                        crate::cluster::object_id(o)
                    );
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
        let _ = self.store.set_state(
            "drift",
            Some(
                &json!({"checked_at": record::now(), "corrected": correct, "fields": summary})
                    .to_string(),
            ),
        );
        Ok(all)
    }
}
