//! The agent's logs: `tracing` events and spans, written as JSON lines (one object per
//! event, with its fields and the spans it is in: `revision` → `wave` → `component` /
//! `object`) when stdout is not a terminal — in a cluster, for the log pipeline — and as
//! readable text on a terminal.
//!
//! The filter is `$STACKWAVE_LOG` (the `tracing-subscriber` `EnvFilter` syntax, e.g.
//! `info,kube_lease_manager=debug`), default `info`. Secret values never reach a log: the
//! fields are object ids, counts, commits and error texts, never object bodies.
//!
//! [`log_progress`] turns the reconcile loop's [`Progress`] reports into events inside
//! `wave` spans, so `stackwave run` needs no hook inside the reconcile code.

use crate::reconcile::Progress;
use std::sync::Mutex;
use tracing::{info, info_span, warn, Span};

/// The environment variable holding the log filter.
pub const FILTER_ENV: &str = "STACKWAVE_LOG";

/// How the logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (stdout is not a terminal).
    Json,
    /// Readable text with colours (a terminal).
    Text,
}

impl Format {
    /// [`Format::Text`] on a terminal, else [`Format::Json`].
    pub fn detect() -> Format {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            Format::Text
        } else {
            Format::Json
        }
    }
}

/// Installs the global subscriber writing to stdout in `format` (once per process; later
/// calls do nothing, so tests may call it freely).
pub fn init(format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(FILTER_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
        Format::Text => builder.with_target(false).try_init(),
    };
}

/// The span of one loop iteration's revision: every event of the sync is inside it.
pub fn revision_span(commit: &str, summary: &str) -> Span {
    info_span!("revision", commit = %&commit[..commit.len().min(10)], summary = %summary)
}

/// The wave span open between a `WaveStart` and its end (`WaveHealthy` or the revision's).
static WAVE: Mutex<Option<Span>> = Mutex::new(None);

fn wave() -> std::sync::MutexGuard<'static, Option<Span>> {
    WAVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ends a wave span left open by a revision that stopped mid-wave.
pub fn end_wave() {
    wave().take();
}

/// Logs one progress report of a sync (the `run` loop's progress callback): renders per
/// component, a `wave` span from its start to its health, applies per object (`object`,
/// `action`), prunes, preflight results, notes.
pub fn log_progress(p: Progress) {
    let in_wave = |f: &dyn Fn()| match wave().as_ref() {
        Some(s) => s.in_scope(f),
        None => f(),
    };
    match p {
        Progress::Rendered {
            component,
            objects,
            changed,
            cached,
        } => info!(%component, objects, changed, cached, "rendered"),
        Progress::WaveStart {
            wave: w,
            components,
        } => {
            let span = info_span!("wave", wave = w, components = %components.join(","));
            span.in_scope(|| info!("wave started"));
            *wave() = Some(span);
        }
        Progress::Applied { id, action } => {
            in_wave(&|| info!(object = %id, action = %action, "applied"));
        }
        Progress::WaveHealthy { wave: w, millis } => {
            in_wave(&|| info!(wave = w, duration_ms = millis, "wave healthy"));
            end_wave();
        }
        Progress::Pruned {
            component,
            deleted,
            skipped,
        } => {
            let span = info_span!("component", component = %component);
            span.in_scope(|| {
                for o in &deleted {
                    info!(object = %o, "pruned");
                }
                for (o, why) in &skipped {
                    warn!(object = %o, reason = %why, "kept (not pruned)");
                }
                info!(deleted = deleted.len(), kept = skipped.len(), "prune done");
            });
        }
        Progress::Preflight {
            wave: w,
            checked,
            deferred,
            refused,
            requests,
        } => {
            in_wave(&|| {
                info!(
                    before_wave = w.unwrap_or(1),
                    checked,
                    deferred,
                    refused = refused.len(),
                    requests,
                    "preflight dry run"
                );
                for r in &refused {
                    warn!(refusal = %r, "preflight refused");
                }
            });
        }
        Progress::Note(n) => in_wave(&|| info!(note = %n, "note")),
    }
}
