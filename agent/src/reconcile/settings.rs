//! The agent's [`Settings`]: timeouts, guard limits, cache directory, history retention.

use std::path::PathBuf;
use std::time::Duration;

/// Agent settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a wave may take to become healthy: the limit of components whose catalog
    /// entry sets no `helm.timeout` (and of the CRDs and Namespaces applied ahead of a wave).
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
    /// ([`super::LoopState::newer_commit`] tells); `None`: waves always wait out `health_timeout`.
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
