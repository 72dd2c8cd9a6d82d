//! `stackwave run`: the agent loop. Each iteration fetches the branch head, renders and
//! applies it in waves ([`Agent::sync`]), then checks drift (correcting it, or only
//! reporting it in detect-only mode), and sleeps for the poll interval.
//!
//! Failures never lose the applied state: an unreachable remote, a broken commit or an API
//! error is reported and the loop goes on with the last good revision in place. On start the
//! agent restores its applied state from the revision store ([`Agent::restore`]), so a
//! process killed mid-wave finishes that revision when it comes back.

use crate::cluster::Cluster;
use crate::component::Catalog;
use crate::reconcile::{Agent, Outcome, Progress, Settings};
use crate::record::Store;
use crate::source::Source;
use std::path::PathBuf;
use std::time::Duration;

/// What `stackwave run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Git URL of the desired-state repository (`file://`, `https://`, `git://`, ssh).
    pub repo: String,
    /// Branch followed.
    pub branch: String,
    /// State directory: Git mirror, checkouts, revision store and its key.
    pub state: PathBuf,
    /// API server URL (plain HTTP, e.g. the test server); else `kubeconfig`.
    pub server: Option<String>,
    /// Kubeconfig file; else in-cluster / `$KUBECONFIG` via `kube::Config::infer`.
    pub kubeconfig: Option<PathBuf>,
    /// Time between loop iterations.
    pub interval: Duration,
    /// Run one iteration and exit.
    pub once: bool,
    /// Report drift without correcting it.
    pub detect_only: bool,
    /// Agent settings (health timeout, delete guard).
    pub settings: Settings,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Serves `GET /metrics` (Prometheus text format) on `addr` in the background.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: crate::metrics::Metrics,
) -> Result<std::net::SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics address {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move { m.encode() }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(bound)
}

/// Connects to the cluster the options name.
///
/// # Errors
/// Invalid URL or kubeconfig; no in-cluster or `$KUBECONFIG` configuration.
pub async fn connect(
    server: Option<&str>,
    kubeconfig: Option<&std::path::Path>,
) -> Result<Cluster, String> {
    match (server, kubeconfig) {
        (Some(url), _) => Cluster::connect_url(url).map_err(|e| e.to_string()),
        (None, Some(kc)) => Cluster::connect_kubeconfig(kc)
            .await
            .map_err(|e| e.to_string()),
        (None, None) => {
            let config = kube::Config::infer().await.map_err(|e| {
                format!("no cluster configuration (in-cluster or $KUBECONFIG): {e}")
            })?;
            let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
            Ok(Cluster::with_client(client))
        }
    }
}

/// The text of an outcome, for logs and the CLI.
pub fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Healthy { revision, changed } => format!(
            "revision {revision} healthy ({} component(s) applied)",
            changed.len()
        ),
        Outcome::Failed {
            revision,
            wave,
            reason,
        } => format!("revision {revision} FAILED at wave {wave}: {reason}"),
        Outcome::Refused { reason } => format!("REFUSED: {reason}"),
        Outcome::Unchanged => "unchanged: the commit renders what is applied".into(),
        Outcome::Pinned { revision } => format!("pinned to revision {revision} (rollback)"),
    }
}

/// Prints progress lines (what the demo and `run` show on a terminal).
pub fn print_progress(p: Progress) {
    match p {
        Progress::Rendered {
            component,
            objects,
            changed,
            cached,
        } => println!(
            "  render  {component:<18} {objects:>4} objects{}{}",
            if changed { "  (changed)" } else { "" },
            if cached { "  [cache]" } else { "" }
        ),
        Progress::WaveStart { wave, components } => {
            println!("  wave {wave}: {}", components.join(", "))
        }
        Progress::Applied { .. } => {}
        Progress::WaveHealthy { wave, millis } => println!("  wave {wave} healthy in {millis} ms"),
        Progress::Pruned {
            component,
            deleted,
            skipped,
        } => println!(
            "  prune   {component}: {} deleted, {} kept ({})",
            deleted.len(),
            skipped.len(),
            skipped
                .iter()
                .map(|(o, why)| format!("{o}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Progress::Note(n) => println!("  note: {n}"),
    }
}

/// Runs the agent loop until interrupted (or one iteration with `once`).
///
/// # Errors
/// Only start-up failures (cluster connection, revision store, catalog, Git mirror); errors
/// inside the loop are reported and retried on the next iteration.
pub async fn run(opts: RunOptions) -> Result<(), String> {
    let cluster = connect(opts.server.as_deref(), opts.kubeconfig.as_deref()).await?;
    let store = Store::open(
        &opts.state.join("revisions.sqlite"),
        &opts.state.join("store.key"),
    )
    .map_err(|e| e.to_string())?;
    let catalog = Catalog::builtin().map_err(|e| e.to_string())?;
    let mut agent = Agent::new(cluster, store, catalog, opts.settings.clone());
    match agent.restore().map_err(|e| e.to_string())? {
        Some(r) => println!("restored applied state of revision {r}"),
        None => println!("no applied revision yet"),
    }
    if let Some(addr) = opts.metrics_addr {
        let bound = serve_metrics(addr, agent.metrics.clone()).await?;
        println!("metrics on http://{bound}/metrics");
    }
    if let Some((r, c)) = &agent.unfinished {
        println!("revision {r} (commit {c}) was interrupted; continuing it");
    }
    let source = Source::open(&opts.repo, &opts.branch, &opts.state).map_err(|e| e.to_string())?;
    loop {
        match source.fetch() {
            Err(e) => println!("fetch failed, keeping the last good revision: {e}"),
            Ok(c) => {
                println!("commit {} \"{}\"", &c.id[..c.id.len().min(10)], c.summary);
                match source.export(&c.id, &opts.state.join("checkout")) {
                    Err(e) => println!("checkout failed: {e}"),
                    Ok(dir) => match agent.sync(&dir, &c, &print_progress).await {
                        Ok(out) => println!("outcome: {}", outcome_text(&out)),
                        Err(e) => println!("revision store error: {e}"),
                    },
                }
            }
        }
        match agent.drift(!opts.detect_only).await {
            Ok(d) if d.is_empty() => {}
            Ok(d) => {
                println!(
                    "drift on {} field(s){}",
                    d.len(),
                    if opts.detect_only {
                        " (detect-only)"
                    } else {
                        " (corrected)"
                    }
                );
                print!("{}", crate::cluster::drift::render(&d));
            }
            Err(e) => println!("drift check failed: {e}"),
        }
        if opts.once {
            return Ok(());
        }
        tokio::time::sleep(opts.interval).await;
    }
}

/// Prints the revision history of a state directory, newest first.
///
/// # Errors
/// The store cannot be opened or read.
pub fn history(state: &std::path::Path) -> Result<(), String> {
    let store = Store::open(&state.join("revisions.sqlite"), &state.join("store.key"))
        .map_err(|e| e.to_string())?;
    for r in store.revisions().map_err(|e| e.to_string())? {
        println!(
            "rev {:>4}  {}  {:<11}  {}  {}",
            r.id,
            &r.commit[..r.commit.len().min(10)],
            r.outcome,
            r.author,
            r.message
        );
    }
    Ok(())
}
