//! Prometheus metrics of the agent (served by `stackwave run --metrics-addr` at `/metrics`,
//! beside the `/healthz` and `/readyz` probes; see [`crate::run::serve_metrics`]).
//!
//! Names follow Prometheus's conventions (<https://prometheus.io/docs/practices/naming/>):
//! base units (seconds), `_total` on counters, `_info` on the info metric, timestamps as unix
//! seconds.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `stackwave_reconcile_duration_seconds` | histogram | | one sync of a commit (render, waves, prune, record) |
//! | `stackwave_revisions_total` | counter | `outcome` | loop outcomes (healthy, failed, superseded, refused, unchanged, pinned) |
//! | `stackwave_last_successful_reconcile_timestamp_seconds` | gauge | | when a sync last ended healthy, unchanged or pinned |
//! | `stackwave_wave_duration_seconds` | histogram | `wave` | a wave, from its start to healthy, failed or superseded |
//! | `stackwave_wave_timeouts_total` | counter | `wave` | waves not healthy within `--health-timeout` |
//! | `stackwave_objects_applied_total` | counter | `component` | server-side applies (revisions and drift corrections) |
//! | `stackwave_objects_replaced_total` | counter | `component` | objects deleted and re-created for an immutable field |
//! | `stackwave_objects_pruned_total` | counter | `component` | objects pruned |
//! | `stackwave_drift_objects` | gauge | `component` | objects left drifted by the last drift check (0 once corrected) |
//! | `stackwave_drift_fields` | gauge | `component` | fields left drifted by the last drift check (0 once corrected) |
//! | `stackwave_applied_revision` | gauge | | the revision currently applied |
//! | `stackwave_applied_revision_info` | gauge (1) | `commit`, `revision` | the same, with its commit |
//! | `stackwave_component_healthy` | gauge | `component` | 0 when the component's objects failed to apply or failed their health gate; 1 once they pass it or a revision holding them ends healthy |
//! | `stackwave_render_cache_hits_total` / `_misses_total` | counter | | component renders served from / missing the render cache |
//! | `stackwave_git_fetch_duration_seconds` | histogram | | fetches of the followed branch |
//! | `stackwave_git_fetch_errors_total` | counter | | failed fetches |
//! | `stackwave_last_successful_fetch_timestamp_seconds` | gauge | | when a fetch last succeeded |
//! | `stackwave_rollbacks_total` | counter | | rollbacks the agent applied or found recorded by `stackwave rollback` |
//! | `stackwave_pinned` | gauge | | 1 while a rollback pins the agent |
//! | `stackwave_suspended` | gauge | | 1 while `stackwave suspend` stops applying |
//!
//! Labels carry component names, wave numbers, outcomes and commit ids only: never object
//! content (Secret values cannot reach metrics).

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The outcomes `stackwave_revisions_total` counts (all exported from the start, at 0, so
/// `increase()` sees the first one).
pub const OUTCOMES: [&str; 6] = [
    "healthy",
    "failed",
    "superseded",
    "refused",
    "unchanged",
    "pinned",
];

/// The results `stackwave_preflight_objects_total` counts (exported from the start, at 0).
pub const PREFLIGHT_RESULTS: [&str; 3] = ["checked", "deferred", "refused"];

/// Buckets (seconds) for reconciles and waves: a no-op loop takes milliseconds, a wave of
/// OpenStack services waits minutes for health (the default `--health-timeout` is 300 s).
const LONG_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

/// Buckets (seconds) for Git fetches.
const FETCH_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Whether the agent is ready (`/readyz`): set once the revision store is open and the first
/// reconcile has run. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the agent ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Sets readiness (a replica that becomes the leader is not ready until its first
    /// reconcile as the leader has run).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Whether [`Readiness::set_ready`] was called.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The agent's metric families in their own registry (clones share the values).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Readiness served at `/readyz` (not a metric; shared with the listener).
    pub readiness: Readiness,
    /// Duration of one sync of a commit.
    pub reconcile_duration: Histogram,
    /// Loop outcomes ([`OUTCOMES`]).
    pub revisions: IntCounterVec,
    /// Unix time of the last healthy, unchanged or pinned sync.
    pub last_success: Gauge,
    /// Wave durations by wave number.
    pub wave_duration: HistogramVec,
    /// Waves not healthy within the health timeout, by wave number.
    pub wave_timeouts: IntCounterVec,
    /// Server-side applies per component.
    pub applied: IntCounterVec,
    /// Immutable-field replacements per component.
    pub replaced: IntCounterVec,
    /// Pruned objects per component.
    pub pruned: IntCounterVec,
    /// Objects through preflight dry runs, by result ([`PREFLIGHT_RESULTS`]).
    pub preflight: IntCounterVec,
    /// Drifted objects per component.
    pub drift_objects: IntGaugeVec,
    /// Drifted fields per component.
    pub drift_fields: IntGaugeVec,
    /// The applied revision number.
    pub applied_revision: IntGauge,
    /// The applied revision and its commit (one series, value 1).
    pub applied_revision_info: IntGaugeVec,
    /// Component health: 0 after a failed apply or health gate, 1 after a passed one or a
    /// healthy revision.
    pub component_healthy: IntGaugeVec,
    /// Render-cache hits.
    pub cache_hits: IntCounter,
    /// Render-cache misses.
    pub cache_misses: IntCounter,
    /// Git fetch durations.
    pub fetch_duration: Histogram,
    /// Failed Git fetches.
    pub fetch_errors: IntCounter,
    /// Unix time of the last successful fetch.
    pub last_fetch: Gauge,
    /// Rollbacks seen.
    pub rollbacks: IntCounter,
    /// 1 while pinned by a rollback.
    pub pinned: IntGauge,
    /// 1 while suspended.
    pub suspended: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers a collector built from constant, well-formed names and help texts.
///
/// Building and registering distinct, valid names into a fresh registry cannot fail; the
/// `expect`s document that invariant (no input reaches them).
fn reg<C: Collector + Clone + 'static>(registry: &Registry, c: prometheus::Result<C>) -> C {
    let c = c.expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric names");
    c
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let hist =
            |name: &str, help: &str, b: &[f64]| HistogramOpts::new(name, help).buckets(b.to_vec());
        let m = Metrics {
            readiness: Readiness::default(),
            reconcile_duration: reg(
                &r,
                Histogram::with_opts(hist(
                    "stackwave_reconcile_duration_seconds",
                    "Duration of one sync of a commit (render, waves, prune, record).",
                    &LONG_BUCKETS,
                )),
            ),
            revisions: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("stackwave_revisions_total", "Reconcile loop outcomes."),
                    &["outcome"],
                ),
            ),
            last_success: reg(
                &r,
                Gauge::new(
                    "stackwave_last_successful_reconcile_timestamp_seconds",
                    "Unix time a sync last ended healthy, unchanged or pinned.",
                ),
            ),
            wave_duration: reg(
                &r,
                HistogramVec::new(
                    hist(
                        "stackwave_wave_duration_seconds",
                        "Duration of a wave, from its start to healthy, failed or superseded.",
                        &LONG_BUCKETS,
                    ),
                    &["wave"],
                ),
            ),
            wave_timeouts: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "stackwave_wave_timeouts_total",
                        "Waves not healthy within the health timeout.",
                    ),
                    &["wave"],
                ),
            ),
            applied: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "stackwave_objects_applied_total",
                        "Objects server-side applied (revisions and drift corrections).",
                    ),
                    &["component"],
                ),
            ),
            replaced: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "stackwave_objects_replaced_total",
                        "Objects deleted and re-created because of an immutable field.",
                    ),
                    &["component"],
                ),
            ),
            pruned: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("stackwave_objects_pruned_total", "Objects pruned."),
                    &["component"],
                ),
            ),
            preflight: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "stackwave_preflight_objects_total",
                        "Objects of revisions through the preflight dry run, by result.",
                    ),
                    &["result"],
                ),
            ),
            drift_objects: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "stackwave_drift_objects",
                        "Objects left drifted from the applied revision by the last drift check.",
                    ),
                    &["component"],
                ),
            ),
            drift_fields: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "stackwave_drift_fields",
                        "Fields left differing from the applied revision by the last drift check.",
                    ),
                    &["component"],
                ),
            ),
            applied_revision: reg(
                &r,
                IntGauge::new(
                    "stackwave_applied_revision",
                    "The revision currently applied.",
                ),
            ),
            applied_revision_info: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "stackwave_applied_revision_info",
                        "The revision currently applied and its commit (value 1).",
                    ),
                    &["commit", "revision"],
                ),
            ),
            component_healthy: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "stackwave_component_healthy",
                        "Component health: 0 after a failed apply or health gate, 1 after a passed one or a healthy revision.",
                    ),
                    &["component"],
                ),
            ),
            cache_hits: reg(
                &r,
                IntCounter::new(
                    "stackwave_render_cache_hits_total",
                    "Component renders served from the render cache.",
                ),
            ),
            cache_misses: reg(
                &r,
                IntCounter::new(
                    "stackwave_render_cache_misses_total",
                    "Component renders not in the render cache.",
                ),
            ),
            fetch_duration: reg(
                &r,
                Histogram::with_opts(hist(
                    "stackwave_git_fetch_duration_seconds",
                    "Duration of fetches of the followed branch.",
                    &FETCH_BUCKETS,
                )),
            ),
            fetch_errors: reg(
                &r,
                IntCounter::new(
                    "stackwave_git_fetch_errors_total",
                    "Failed fetches of the followed branch.",
                ),
            ),
            last_fetch: reg(
                &r,
                Gauge::new(
                    "stackwave_last_successful_fetch_timestamp_seconds",
                    "Unix time a fetch of the followed branch last succeeded.",
                ),
            ),
            rollbacks: reg(
                &r,
                IntCounter::new(
                    "stackwave_rollbacks_total",
                    "Rollbacks applied by the agent or recorded by `stackwave rollback`.",
                ),
            ),
            pinned: reg(
                &r,
                IntGauge::new(
                    "stackwave_pinned",
                    "1 while a rollback pins the agent, else 0.",
                ),
            ),
            suspended: reg(
                &r,
                IntGauge::new(
                    "stackwave_suspended",
                    "1 while `stackwave suspend` stops the agent applying, else 0.",
                ),
            ),
            registry: r,
        };
        for o in OUTCOMES {
            m.revisions.with_label_values(&[o]);
        }
        for r in PREFLIGHT_RESULTS {
            m.preflight.with_label_values(&[r]);
        }
        m
    }

    /// Counts one preflight pass's objects: accepted by the dry run, deferred to their wave,
    /// refused.
    pub fn count_preflight(&self, checked: usize, deferred: usize, refused: usize) {
        for (r, n) in PREFLIGHT_RESULTS.iter().zip([checked, deferred, refused]) {
            self.preflight.with_label_values(&[r]).inc_by(n as u64);
        }
    }

    /// Records the applied revision: the number and the info series (the previous commit's
    /// series removed).
    pub fn set_applied(&self, revision: i64, commit: &str) {
        self.applied_revision.set(revision);
        self.applied_revision_info.reset();
        self.applied_revision_info
            .with_label_values(&[commit, &revision.to_string()])
            .set(1);
    }

    /// Counts a loop outcome ([`OUTCOMES`]); healthy, unchanged and pinned also set the last
    /// success time.
    pub fn count_outcome(&self, outcome: &str) {
        self.revisions.with_label_values(&[outcome]).inc();
        if matches!(outcome, "healthy" | "unchanged" | "pinned") {
            self.last_success.set(unix_now());
        }
    }

    /// Records one fetch: its duration, and the error count or the last success time.
    pub fn observe_fetch(&self, took: std::time::Duration, ok: bool) {
        self.fetch_duration.observe(took.as_secs_f64());
        if ok {
            self.last_fetch.set(unix_now());
        } else {
            self.fetch_errors.inc();
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Now, in unix seconds (0 if the clock is before 1970).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `# TYPE` of each family in an exposition.
    fn types(text: &str) -> std::collections::BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn families_are_exported_with_their_types_from_the_start() {
        let t = types(&Metrics::new().encode());
        // Label-less families and the pre-set outcomes exist before anything happened.
        for (name, ty) in [
            ("stackwave_reconcile_duration_seconds", "histogram"),
            ("stackwave_revisions_total", "counter"),
            (
                "stackwave_last_successful_reconcile_timestamp_seconds",
                "gauge",
            ),
            ("stackwave_applied_revision", "gauge"),
            ("stackwave_render_cache_hits_total", "counter"),
            ("stackwave_render_cache_misses_total", "counter"),
            ("stackwave_git_fetch_duration_seconds", "histogram"),
            ("stackwave_git_fetch_errors_total", "counter"),
            ("stackwave_last_successful_fetch_timestamp_seconds", "gauge"),
            ("stackwave_rollbacks_total", "counter"),
            ("stackwave_pinned", "gauge"),
            ("stackwave_suspended", "gauge"),
        ] {
            assert_eq!(t.get(name).map(String::as_str), Some(ty), "{name} in {t:?}");
        }
        // Counters end in _total, durations and timestamps are in seconds.
        for (name, ty) in &t {
            if ty == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
            if ty == "histogram" || name.contains("timestamp") {
                assert!(name.ends_with("_seconds"), "{name}");
            }
        }
        let text = Metrics::new().encode();
        for o in OUTCOMES {
            assert!(
                text.contains(&format!("stackwave_revisions_total{{outcome=\"{o}\"}} 0")),
                "{o}: {text}"
            );
        }
    }

    #[test]
    fn the_info_metric_names_only_the_applied_revision() {
        let m = Metrics::new();
        m.set_applied(3, "aaaa");
        m.set_applied(4, "bbbb");
        let text = m.encode();
        assert!(text.contains("stackwave_applied_revision 4"), "{text}");
        assert!(
            text.contains("stackwave_applied_revision_info{commit=\"bbbb\",revision=\"4\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("aaaa"),
            "the old commit's series is gone: {text}"
        );
        assert_eq!(
            types(&text)
                .get("stackwave_applied_revision_info")
                .map(String::as_str),
            Some("gauge")
        );
    }

    #[test]
    fn outcomes_and_fetches_move_the_success_times_and_counters() {
        let m = Metrics::new();
        m.count_outcome("failed");
        assert_eq!(m.last_success.get(), 0.0, "a failure is no success");
        m.count_outcome("unchanged");
        assert!(m.last_success.get() > 1.0e9, "unix seconds");
        m.observe_fetch(std::time::Duration::from_millis(30), false);
        assert_eq!(m.last_fetch.get(), 0.0);
        m.observe_fetch(std::time::Duration::from_millis(20), true);
        let text = m.encode();
        assert!(text.contains("stackwave_revisions_total{outcome=\"failed\"} 1"));
        assert!(
            text.contains("stackwave_git_fetch_errors_total 1"),
            "{text}"
        );
        assert!(text.contains("stackwave_git_fetch_duration_seconds_count 2"));
        // 0.02 s and 0.03 s both fall in the 0.05 bucket, neither in 0.01.
        assert!(text.contains("stackwave_git_fetch_duration_seconds_bucket{le=\"0.01\"} 0"));
        assert!(text.contains("stackwave_git_fetch_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(m.last_fetch.get() > 1.0e9);
    }

    #[test]
    fn labelled_families_carry_their_labels() {
        let m = Metrics::new();
        m.wave_duration.with_label_values(&["2"]).observe(1.5);
        m.drift_fields.with_label_values(&["keystone"]).set(3);
        m.component_healthy.with_label_values(&["nova"]).set(1);
        let text = m.encode();
        assert!(text.contains("stackwave_wave_duration_seconds_bucket{wave=\"2\",le=\"2.5\"} 1"));
        assert!(text.contains("stackwave_drift_fields{component=\"keystone\"} 3"));
        assert!(text.contains("stackwave_component_healthy{component=\"nova\"} 1"));
        assert!(m
            .encode()
            .contains("# TYPE stackwave_wave_duration_seconds histogram"));
    }

    #[test]
    fn readiness_is_shared_by_clones() {
        let m = Metrics::new();
        let served = m.clone();
        assert!(!served.readiness.is_ready());
        m.readiness.set_ready();
        assert!(served.readiness.is_ready());
    }
}
