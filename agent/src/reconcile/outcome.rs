//! What the loop reports while it works ([`Progress`]) and how a revision ended
//! ([`Outcome`]): values the CLI prints, tests collect and metrics count.

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
    /// newer commit arrives or `stackwave resume` (see [`super::Agent::resume`]).
    Pinned {
        /// The revision the agent is pinned to.
        revision: i64,
    },
    /// A newer commit arrived while a wave waited for health past
    /// [`super::Settings::cancel_stuck_after`]: the revision stopped there (recorded `superseded`;
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
