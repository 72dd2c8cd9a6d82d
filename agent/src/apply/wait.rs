//! Wait: a wave's objects polled until every one is healthy ([`crate::cluster::health`],
//! kstatus rules after cli-utils `pkg/kstatus/status`; a Service that backs a webhook also
//! needs ready endpoints) and every catalog gate ([`Gate`], the setup scripts' `kubectl
//! wait` steps) holds, with exponential backoff from 50 ms to 2 s, until a deadline or a
//! newer commit. Each component of a wave has its own limit ([`Target::timeout`], the
//! catalog's `helm.timeout`) and each gate may have a shorter one: the wave fails when the
//! first of them passes with its object or gate still waiting (cli-utils'
//! `pkg/apply/taskrunner` waits the same way, one timeout per wait task).

use super::Applier;
use crate::cluster::health::{health, Health};
use crate::cluster::ClusterError;
use serde_json::Value as Json;
use std::time::{Duration, Instant};

/// A check for the source's newest commit id (`None` when it cannot tell).
pub type NewerCommit = std::sync::Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How often a stuck wave asks for a newer commit.
const NEWER_COMMIT_CHECK: Duration = Duration::from_secs(2);

/// How long to wait, and when to give up for a newer commit.
#[derive(Clone)]
pub struct WaitOptions {
    /// How long the objects may take to become healthy (for [`Applier::wait`]; a
    /// [`Target`] carries its own).
    pub timeout: Duration,
    /// After waiting this long, ask [`WaitOptions::newer`] (every 2 s) whether a newer
    /// commit arrived, and stop for it.
    pub cancel_stuck_after: Option<Duration>,
    /// The check for a newer commit and the commit being applied (`None`: never stop early,
    /// as during rollbacks).
    pub newer: Option<(NewerCommit, String)>,
}

/// Why a wait stopped before every object was healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// An object failed (or could not be read): the message.
    Failed(String),
    /// Not healthy within [`WaitOptions::timeout`]: what was still waiting.
    TimedOut(String),
    /// A newer commit arrived: (commit, what was waiting).
    Superseded(String, String),
}

impl Stop {
    /// Why, as one line.
    pub fn reason(&self) -> &str {
        match self {
            Stop::Failed(r) | Stop::TimedOut(r) | Stop::Superseded(_, r) => r,
        }
    }
}

impl WaitOptions {
    /// Whether a newer commit than the one being applied has arrived.
    async fn superseded_by(&self) -> Option<String> {
        let (check, current) = self.newer.clone()?;
        let newest = tokio::task::spawn_blocking(move || check()).await.ok()??;
        (newest != current).then_some(newest)
    }
}

/// A health gate from the catalog (`waitFor`): an object that must hold a condition before
/// the next wave starts. The object need not be one the wave applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// `apiVersion`; `None`: resolved by kind through discovery
    /// ([`crate::cluster::Cluster::resolve_kind`]).
    pub api_version: Option<String>,
    /// Kind.
    pub kind: String,
    /// Namespace (empty: cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Condition type (status `True`, [`crate::cluster::health::condition_health`]) or
    /// `endpoints` (a Service with a ready EndpointSlice endpoint).
    pub condition: String,
    /// How long it may take.
    pub timeout: Duration,
}

impl Gate {
    /// `Kind/namespace/name` (`Kind/name` when cluster-scoped).
    pub fn id(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }

    fn is_endpoints(&self) -> bool {
        self.condition.eq_ignore_ascii_case("endpoints")
    }
}

/// One component's part of a wave: the objects waited on, their limit, its gates.
#[derive(Debug, Clone)]
pub struct Target {
    /// The component (named in a timeout's message).
    pub component: String,
    /// The objects whose health is waited on.
    pub objects: Vec<Json>,
    /// How long they may take.
    pub timeout: Duration,
    /// The gates that must hold too, each with its own limit.
    pub gates: Vec<Gate>,
}

/// One thing a wait polls.
enum Check<'a> {
    Object(&'a Json),
    /// A gate, and its `apiVersion` once resolved.
    Gate(&'a Gate, Option<String>),
}

struct Item<'a> {
    check: Check<'a>,
    component: &'a str,
    limit: Duration,
    deadline: Instant,
}

impl Applier<'_> {
    /// Waits until every object of `objs` is healthy, within [`WaitOptions::timeout`].
    ///
    /// # Errors
    /// [`Stop`]: failed, timed out, or superseded by a newer commit.
    pub async fn wait(&self, objs: &[Json], opts: &WaitOptions) -> Result<(), Stop> {
        let target = Target {
            component: String::new(),
            objects: objs.to_vec(),
            timeout: opts.timeout,
            gates: Vec::new(),
        };
        self.wait_targets(std::slice::from_ref(&target), opts).await
    }

    /// Waits until every target's objects are healthy and its gates hold, each within its
    /// own limit from now ([`Target::timeout`], [`Gate::timeout`]); `opts.timeout` is not
    /// used. Webhook backends are found among all the targets' objects.
    ///
    /// # Errors
    /// [`Stop`]: an object failed (or could not be read), something was still waiting when
    /// its limit passed (the message names it, and a gate's condition), or a newer commit
    /// arrived.
    pub async fn wait_targets(&self, targets: &[Target], opts: &WaitOptions) -> Result<(), Stop> {
        let started = Instant::now();
        let mut items: Vec<Item> = Vec::new();
        for t in targets {
            for o in &t.objects {
                items.push(Item {
                    check: Check::Object(o),
                    component: &t.component,
                    limit: t.timeout,
                    deadline: started + t.timeout,
                });
            }
            for g in &t.gates {
                items.push(Item {
                    check: Check::Gate(g, g.api_version.clone()),
                    component: &t.component,
                    limit: g.timeout,
                    deadline: started + g.timeout,
                });
            }
        }
        // Earliest deadline first: a pass stops at the first item still waiting, and no
        // item after it can be past its deadline then.
        items.sort_by_key(|i| i.deadline);
        let all: Vec<Json> = targets.iter().flat_map(|t| t.objects.clone()).collect();
        let backends = crate::cluster::health::webhook_backends(&all);
        let mut delay = Duration::from_millis(50);
        let mut last_check: Option<Instant> = None;
        loop {
            let mut waiting: Option<(String, Duration, Instant)> = None;
            for item in items.iter_mut() {
                let (what, h) = match &mut item.check {
                    Check::Object(o) => (
                        crate::cluster::object_id(o),
                        self.object_health(o, &backends).await?,
                    ),
                    Check::Gate(g, resolved) => (
                        format!("waitFor {} {}", g.id(), g.condition),
                        self.gate_health(g, resolved).await?,
                    ),
                };
                let of = if item.component.is_empty() {
                    String::new()
                } else {
                    format!("component {}: ", item.component)
                };
                match h {
                    Health::Current => {}
                    Health::Failed(m) => {
                        return Err(Stop::Failed(format!("{of}{what} failed: {m}")))
                    }
                    Health::InProgress(m) => {
                        waiting = Some((format!("{of}{what}: {m}"), item.limit, item.deadline));
                        break;
                    }
                }
            }
            let Some((w, limit, deadline)) = waiting else {
                return Ok(());
            };
            if Instant::now() > deadline {
                return Err(Stop::TimedOut(format!("not healthy within {limit:?}: {w}")));
            }
            if opts
                .cancel_stuck_after
                .is_some_and(|after| started.elapsed() >= after)
                && last_check.is_none_or(|t| t.elapsed() >= NEWER_COMMIT_CHECK)
            {
                last_check = Some(Instant::now());
                if let Some(newer) = opts.superseded_by().await {
                    return Err(Stop::Superseded(newer, w));
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// One object's health: kstatus, and ready endpoints for a webhook backend Service.
    async fn object_health(&self, o: &Json, backends: &[(String, String)]) -> Result<Health, Stop> {
        let Some(live) = self
            .cluster
            .get(o)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?
        else {
            return Ok(Health::InProgress("missing".into()));
        };
        let h = health(&live, self.health_rules);
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
            return Ok(crate::cluster::health::endpoints_health(&slices));
        }
        Ok(h)
    }

    /// Whether a gate holds. A kind not served yet (its CRD still to come) or an object not
    /// there yet is waited for, as `kubectl wait` waits for a missing object.
    async fn gate_health(&self, g: &Gate, resolved: &mut Option<String>) -> Result<Health, Stop> {
        let api_version = match resolved {
            Some(av) => av.clone(),
            None => match self.cluster.resolve_kind(&g.kind, &g.id()).await {
                Ok(av) => {
                    *resolved = Some(av.clone());
                    av
                }
                Err(ClusterError::UnknownKind { .. }) => {
                    return Ok(Health::InProgress(format!("kind {} is not served", g.kind)))
                }
                Err(e) => return Err(Stop::Failed(e.to_string())),
            },
        };
        let mut sample = serde_json::json!({"apiVersion": api_version, "kind": g.kind,
            "metadata": {"name": g.name}});
        if !g.namespace.is_empty() {
            sample["metadata"]["namespace"] = Json::from(g.namespace.clone());
        }
        let live = match self.cluster.get(&sample).await {
            Ok(Some(live)) => live,
            Ok(None) => return Ok(Health::InProgress("not found".into())),
            Err(ClusterError::UnknownKind { .. }) => {
                return Ok(Health::InProgress(format!(
                    "{api_version} {} is not served",
                    g.kind
                )))
            }
            Err(e) => return Err(Stop::Failed(e.to_string())),
        };
        if !g.is_endpoints() {
            return Ok(crate::cluster::health::condition_health(
                &live,
                &g.condition,
            ));
        }
        let slices = self
            .cluster
            .endpoint_slices(&g.namespace, &g.name)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        Ok(match crate::cluster::health::endpoints_health(&slices) {
            Health::InProgress(_) => Health::InProgress("no ready endpoints".into()),
            h => h,
        })
    }
}
