//! Prometheus metrics of the agent (served by `stackwave run --metrics-addr`).
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `stackwave_drift_fields` | gauge | `component` | fields differing from the applied revision at the last check |
//! | `stackwave_revisions_total` | counter | `outcome` | loop outcomes (healthy, failed, superseded, refused, unchanged, pinned) |
//! | `stackwave_applied_revision` | gauge | | the revision currently applied |
//!
//! Labels carry component names and outcomes only: never object content (Secret values
//! cannot reach metrics).

use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The agent's metric families in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Drifted fields per component.
    pub drift_fields: IntGaugeVec,
    /// Loop outcomes.
    pub revisions: IntCounterVec,
    /// The applied revision number.
    pub applied_revision: IntGauge,
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

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Registering distinct, well-formed names into a fresh registry cannot fail; the
        // `expect`s document that invariant (no input reaches them).
        let drift_fields = IntGaugeVec::new(
            Opts::new(
                "stackwave_drift_fields",
                "Fields differing from the applied revision at the last drift check.",
            ),
            &["component"],
        )
        .expect("valid metric");
        let revisions = IntCounterVec::new(
            Opts::new("stackwave_revisions_total", "Reconcile loop outcomes."),
            &["outcome"],
        )
        .expect("valid metric");
        let applied_revision = IntGauge::new(
            "stackwave_applied_revision",
            "The revision currently applied.",
        )
        .expect("valid metric");
        for c in [
            Box::new(drift_fields.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(revisions.clone()),
            Box::new(applied_revision.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            drift_fields,
            revisions,
            applied_revision,
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
