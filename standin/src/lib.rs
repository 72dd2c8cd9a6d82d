//! `kube-standin`: a controller stand-in that talks to any Kubernetes API server as a client,
//! in the spirit of kubernetes-sigs/kwok (whose Stage API — a resource kind, a selector, a
//! `delay`, the status written `next` — `site/content/en/docs/user/stages-configuration.md`
//! describes). It stands in for kube-controller-manager and the operators, so health gates,
//! webhooks and cleanup can be tested against a bare API server (the project's test server, or
//! a real kube-apiserver without controllers or kubelets):
//!
//! - workload status (Deployment, ReplicaSet, StatefulSet, DaemonSet), Jobs, PVCs and
//!   operator resources ([`status`]), ready after [`Rules::ready_after`] from a new
//!   generation, never ready by image or pattern, or failing by pattern;
//! - EndpointSlices for Services, the `default` ServiceAccount in every namespace, garbage
//!   collection by ownerReferences (background, `foregroundDeletion`, `orphan`) and the
//!   namespace controller's content deletion + `/finalize` ([`controllers`]).
//!
//! It keeps a list+watch cache of every listable resource ([`cache`]) and writes status
//! through `/status` with the object's resourceVersion; a 409 re-reads and retries on the next
//! pass.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let standin = kube_standin::spawn(client, kube_standin::Rules::default().never_ready("Deployment/web"));
//! // ... apply objects, wait for health ...
//! standin.set_rules(kube_standin::Rules::default());
//! standin.stop(); // or drop it
//! # }
//! ```

pub mod cache;
pub mod controllers;
pub mod rules;
pub mod status;

pub use rules::{Rules, RulesError};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running stand-in. Dropping it (or [`Handle::stop`]) ends every task it started.
pub struct Handle {
    rules: tokio::sync::watch::Sender<Rules>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Replaces the rules (they apply from the next pass).
    pub fn set_rules(&self, rules: Rules) {
        self.rules.send_replace(rules);
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules {
        self.rules.borrow().clone()
    }

    /// Stops the stand-in.
    pub fn stop(self) {}
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How often discovery runs again besides on CRD changes (aggregated APIs coming and going).
const REDISCOVER: Duration = Duration::from_secs(10);
/// The longest wait between two looks at the cache.
const IDLE: Duration = Duration::from_secs(2);
/// How long a sent action is not sent again while the cache catches up.
const RESEND_AFTER: Duration = Duration::from_millis(750);

/// Starts the stand-in on the current tokio runtime, talking to the server `client` reaches.
pub fn spawn(client: kube::Client, rules: Rules) -> Handle {
    let (tx, rx) = tokio::sync::watch::channel(rules);
    let task = tokio::spawn(run(client, rx));
    Handle { rules: tx, task }
}

/// Aborts the reflector tasks when the stand-in's task ends (or is aborted).
struct Reflectors(HashMap<cache::Key, tokio::task::JoinHandle<()>>);

impl Drop for Reflectors {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.abort();
        }
    }
}

async fn run(client: kube::Client, mut rules: tokio::sync::watch::Receiver<Rules>) {
    let cache = Arc::new(cache::Cache::default());
    let mut reflectors = Reflectors(HashMap::new());
    let mut discovered_at: Option<Instant> = None;
    let mut crds_seen = String::new();
    let mut mem = controllers::Memory::default();
    let mut recent: HashMap<String, Instant> = HashMap::new();
    let mut last_version = u64::MAX;
    let mut next_due: Option<Instant> = None;
    let mut rules_moved = false;
    loop {
        // Discovery: at start, every few seconds, and when any CRD changes (created,
        // established, deleted) so its resources are watched at once.
        let crds = cache
            .state
            .read()
            .map(|s| crd_signature(&s))
            .unwrap_or_default();
        if discovered_at.is_none_or(|t| t.elapsed() >= REDISCOVER) || crds != crds_seen {
            if let Ok(kinds) = cache::discover(&client).await {
                crds_seen = crds;
                let keys: Vec<cache::Key> = kinds.iter().map(cache::Kind::key).collect();
                reflectors.0.retain(|k, t| {
                    let keep = keys.contains(k);
                    if !keep {
                        t.abort();
                    }
                    keep
                });
                for k in &kinds {
                    reflectors.0.entry(k.key()).or_insert_with(|| {
                        tokio::spawn(cache::reflect(client.clone(), k.clone(), cache.clone()))
                    });
                }
                cache.set_kinds(kinds);
            }
            discovered_at = Some(Instant::now());
        }
        // A pass when something changed, the rules changed, or a delay ran out.
        let now = Instant::now();
        // (`changed()` below marks the new rules seen: remember that it fired.)
        let rules_changed =
            std::mem::take(&mut rules_moved) || rules.has_changed().unwrap_or(false);
        let due = next_due.is_some_and(|t| t <= now);
        let version = cache.version();
        if version != last_version || rules_changed || due {
            last_version = version;
            let r = rules.borrow_and_update().clone();
            let clock = controllers::rfc3339(std::time::SystemTime::now());
            let (actions, next) = match cache.state.read() {
                Ok(s) => controllers::plan(&s, &r, &mut mem, now, &clock),
                Err(_) => (Vec::new(), None),
            };
            next_due = next;
            controllers::forget_old(&mut recent, now, RESEND_AFTER);
            for a in actions {
                let key = a.key();
                if recent.contains_key(&key) {
                    // Sent already; look again once the resend window has passed.
                    next_due =
                        Some(next_due.map_or(now + RESEND_AFTER, |t| t.min(now + RESEND_AFTER)));
                    continue;
                }
                recent.insert(key, now);
                if let Err(e) = controllers::execute(&client, &cache, a).await {
                    // A write the server refuses is the stand-in's fault (a rule or a shape
                    // the server's schema rejects): say so, as a controller logs it.
                    tracing::warn!(error = %e, "kube-standin: write refused");
                }
            }
        }
        let wait = next_due
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(IDLE)
            .clamp(Duration::from_millis(5), IDLE);
        tokio::select! {
            _ = cache.changed.notified() => {}
            r = rules.changed() => rules_moved = r.is_ok(),
            _ = tokio::time::sleep(wait) => {}
        }
        // Let a burst of watch events land before the next pass.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The cached CRDs' names and resourceVersions: changes when any CRD does.
fn crd_signature(s: &cache::State) -> String {
    s.objects_of("apiextensions.k8s.io", "customresourcedefinitions")
        .map(|c| {
            let at = |p: &str| {
                c.pointer(p)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
            };
            format!(
                "{}@{} ",
                at("/metadata/name"),
                at("/metadata/resourceVersion")
            )
        })
        .collect()
}
