//! Wait: a wave's objects polled until every one is healthy ([`crate::cluster::health`],
//! kstatus rules; a Service that backs a webhook also needs ready endpoints), with
//! exponential backoff from 50 ms to 2 s, until a deadline or a newer commit.

use super::Applier;
use crate::cluster::health::{health, Health};
use serde_json::Value as Json;
use std::time::{Duration, Instant};

/// A check for the source's newest commit id (`None` when it cannot tell).
pub type NewerCommit = std::sync::Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How often a stuck wave asks for a newer commit.
const NEWER_COMMIT_CHECK: Duration = Duration::from_secs(2);

/// How long to wait, and when to give up for a newer commit.
#[derive(Clone)]
pub struct WaitOptions {
    /// How long the objects may take to become healthy.
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

impl Applier<'_> {
    /// Waits until every object of `objs` is healthy.
    ///
    /// # Errors
    /// [`Stop`]: failed, timed out, or superseded by a newer commit.
    pub async fn wait(&self, objs: &[Json], opts: &WaitOptions) -> Result<(), Stop> {
        let started = Instant::now();
        let deadline = started + opts.timeout;
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
                let mut h = health(&live, self.health_rules);
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
                    opts.timeout
                )));
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
}
