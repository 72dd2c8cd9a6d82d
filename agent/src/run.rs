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
use crate::source::trigger::{self, Trigger};
use crate::source::Source;
use std::path::PathBuf;
use std::time::Duration;
use tracing::{error, info, warn, Instrument};

/// Why the agent could not start (errors inside the loop are reported and retried).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The cluster cannot be reached or configured (URL, kubeconfig), or the instance name
    /// is invalid.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Neither in-cluster configuration nor `$KUBECONFIG`.
    #[error("no cluster configuration (in-cluster or $KUBECONFIG): {0}")]
    NoConfig(#[source] kube::config::InferConfigError),
    /// The client cannot be built from the configuration.
    #[error(transparent)]
    Client(#[from] kube::Error),
    /// The revision store cannot be opened.
    #[error(transparent)]
    Store(#[from] crate::record::RecordError),
    /// The built-in catalog does not load.
    #[error(transparent)]
    Catalog(#[from] crate::component::CatalogError),
    /// The agent refuses to start (a malformed policy).
    #[error(transparent)]
    Agent(#[from] crate::reconcile::AgentError),
    /// The state directory's lock.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// The Git mirror cannot be opened.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// The metrics address cannot be bound.
    #[error("metrics address {addr}: {source}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The lock task did not finish.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The store key (file or Secret) cannot be had.
    #[error(transparent)]
    Key(#[from] crate::keyring::KeyError),
    /// The leader election cannot start.
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    /// `--webhook-addr` without `--webhook-secret-file`.
    #[error("--webhook-addr needs --webhook-secret-file")]
    WebhookSecretMissing,
    /// The webhook or the watch of a local source cannot be set up.
    #[error(transparent)]
    Trigger(#[from] trigger::TriggerError),
}

/// What `stackwave run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Git URL of the desired-state repository (`file://`, `https://`, `git://`, ssh).
    pub repo: String,
    /// Branch followed.
    pub branch: String,
    /// The instance name (`--instance`): with `repo`, the identity scoping inventories and
    /// ownership marks ([`crate::cluster::instance`]).
    pub instance: String,
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
    /// Where to accept Git host webhooks (`POST /hook`), if anywhere; needs
    /// `webhook_secret_file` ([`crate::source::trigger`]).
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// File holding the webhook secret (HMAC key for GitHub and generic deliveries, token for
    /// GitLab).
    pub webhook_secret_file: Option<PathBuf>,
    /// Watch a local source (`file://`, a path) and fetch as soon as it changes.
    pub watch: bool,
    /// Credentials (a mounted Secret's files) and SSH host verification for the remote.
    pub auth: crate::source::auth::Auth,
    /// An allowed-signers file (OpenSSH format): when set, only commits with a valid SSH
    /// signature by one of its keys are applied ([`crate::source::verify`]); it is re-read
    /// every iteration, and an unreadable file refuses every commit.
    pub allowed_signers: Option<PathBuf>,
    /// Leader election among replicas ([`crate::lease`]); `None`: this process runs alone.
    pub lease: Option<crate::lease::LeaseConfig>,
    /// Where the revision store's key is ([`crate::keyring`]); `None`: `<state>/store.key`.
    pub store_key: Option<crate::keyring::KeySource>,
}

/// Serves on `addr`, in the background: `GET /metrics` (Prometheus text format),
/// `GET /healthz` (200 while the process serves) and `GET /readyz` (200 once
/// [`crate::metrics::Readiness`] is set — the store open and the first reconcile run — else
/// 503), the Kubernetes probe conventions.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: crate::metrics::Metrics,
) -> Result<std::net::SocketAddr, RunError> {
    use axum::http::StatusCode;
    let bind = |source| RunError::Metrics { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    let ready = metrics.readiness.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let r = ready.clone();
                async move {
                    if r.is_ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: the first reconcile has not run\n",
                        )
                    }
                }
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
) -> Result<Cluster, RunError> {
    match (server, kubeconfig) {
        (Some(url), _) => Ok(Cluster::connect_url(url)?),
        (None, Some(kc)) => Ok(Cluster::connect_kubeconfig(kc).await?),
        (None, None) => {
            let config = kube::Config::infer().await.map_err(RunError::NoConfig)?;
            let server = config.cluster_url.to_string();
            let client = kube::Client::try_from(config)?;
            Ok(Cluster::with_client(client, &server))
        }
    }
}

/// Exit code: applied and healthy, or nothing to do (unchanged, pinned, suspended).
pub const EXIT_OK: i32 = 0;
/// Exit code: an error outside any revision (arguments, cluster or store unreachable, the Git
/// fetch failed, the state directory locked).
pub const EXIT_ERROR: i32 = 1;
/// Exit code: the revision failed (a wave failed or timed out, or a newer commit superseded it).
pub const EXIT_FAILED: i32 = 2;
/// Exit code: the revision was refused before touching the cluster (render error, guard,
/// unverified signature, irreversible component).
pub const EXIT_REFUSED: i32 = 3;

/// The exit code of `run --once`, `sync` and `rollback` for an outcome ([`EXIT_OK`],
/// [`EXIT_FAILED`], [`EXIT_REFUSED`]).
pub fn exit_code(o: &Outcome) -> i32 {
    match o {
        Outcome::Healthy { .. } | Outcome::Unchanged | Outcome::Pinned { .. } => EXIT_OK,
        Outcome::Failed { .. } | Outcome::Superseded { .. } => EXIT_FAILED,
        Outcome::Refused { .. } => EXIT_REFUSED,
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
        Outcome::Superseded {
            revision,
            wave,
            by,
            waiting,
        } => format!(
            "revision {revision} SUPERSEDED at wave {wave} by commit {} (was waiting: {waiting})",
            &by[..by.len().min(10)]
        ),
        Outcome::Refused { reason } => format!("REFUSED: {reason}"),
        Outcome::Unchanged => "unchanged: the commit renders what is applied".into(),
        Outcome::Pinned { revision } => format!("pinned to revision {revision} (rollback)"),
    }
}

/// The spinner of the wave being applied (terminal output only).
static WAVE_BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

fn wave_bar() -> std::sync::MutexGuard<'static, Option<indicatif::ProgressBar>> {
    WAVE_BAR.lock().unwrap_or_else(|e| e.into_inner())
}

/// Prints progress lines (what the demo and `run` show). On a terminal, the wave being
/// applied shows a spinner with the count and the last object applied or waited on
/// (`indicatif`); piped output gets plain lines only.
pub fn print_progress(p: Progress) {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal();
    let println = |line: String| match wave_bar().as_ref() {
        Some(b) => b.println(line),
        None => println!("{line}"),
    };
    match p {
        Progress::Rendered {
            component,
            objects,
            changed,
            cached,
        } => println(format!(
            "  render  {component:<18} {objects:>4} objects{}{}",
            if changed { "  (changed)" } else { "" },
            if cached { "  [cache]" } else { "" }
        )),
        Progress::WaveStart { wave, components } => {
            println(format!("  wave {wave}: {}", components.join(", ")));
            if tty {
                let b = indicatif::ProgressBar::new_spinner().with_style(
                    indicatif::ProgressStyle::with_template(
                        "  {spinner} {prefix} {pos} applied, {elapsed} {wide_msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                b.set_prefix(format!("wave {wave}:"));
                b.enable_steady_tick(Duration::from_millis(100));
                *wave_bar() = Some(b);
            }
        }
        Progress::Applied { id, action } => {
            if let Some(b) = wave_bar().as_ref() {
                b.inc(1);
                b.set_message(format!("{action} {id}"));
            }
        }
        Progress::WaveHealthy { wave, millis } => {
            if let Some(b) = wave_bar().take() {
                b.finish_and_clear();
            }
            println!("  wave {wave} healthy in {millis} ms")
        }
        Progress::Pruned {
            component,
            deleted,
            skipped,
        } => println(format!(
            "  prune   {component}: {} deleted, {} kept ({})",
            deleted.len(),
            skipped.len(),
            skipped
                .iter()
                .map(|(o, why)| format!("{o}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Progress::Preflight {
            wave,
            checked,
            deferred,
            refused,
            requests,
        } => {
            let when = match wave {
                None => "before wave 1".to_string(),
                Some(w) => format!("before wave {w}"),
            };
            println(format!(
                "  preflight {when}: {checked} dry-run ok, {deferred} deferred to their wave, {} refused ({requests} requests)",
                refused.len()
            ));
            for r in refused {
                println(format!("    refused: {r}"));
            }
        }
        Progress::Note(n) => println(format!("  note: {n}")),
    }
}

/// Clears a wave spinner left by a revision that stopped mid-wave (before printing its outcome).
pub fn clear_progress() {
    if let Some(b) = wave_bar().take() {
        b.finish_and_clear();
    }
}

/// Runs the agent loop until interrupted (or one iteration with `once`, returning its exit
/// code: [`exit_code`] of the revision, [`EXIT_ERROR`] when the fetch or the store failed).
///
/// # Errors
/// Only start-up failures (cluster connection, revision store, catalog, Git mirror, a bad
/// instance name); errors inside the loop are reported and retried on the next iteration.
pub async fn run(opts: RunOptions) -> Result<i32, RunError> {
    let cluster = connect(opts.server.as_deref(), opts.kubeconfig.as_deref()).await?;
    let store = {
        // Replicas sharing the state directory create the store and its key one at a time.
        let _lock = lock_async(&opts.state, !opts.state.join("revisions.sqlite").is_file()).await?;
        let key = opts
            .store_key
            .clone()
            .unwrap_or_else(|| crate::keyring::KeySource::File(opts.state.join("store.key")));
        crate::keyring::open_store(Some(&cluster), &opts.state, &key).await?
    };
    let catalog = Catalog::builtin()?;
    let mut agent = Agent::new(cluster, store, catalog, opts.settings.clone())?;
    let instance = crate::cluster::instance::Instance::new(&opts.instance, &opts.repo)?;
    info!(instance = %instance.name, id = %instance.id(), "instance");
    agent.set_instance(instance)?;
    // With an election, a standby restores nothing: the leader's revision may be applying.
    let mut elector = match &opts.lease {
        None => {
            restore(&mut agent)?;
            None
        }
        Some(cfg) => {
            Some(crate::lease::Elector::start(agent.cluster.client().clone(), cfg.clone()).await?)
        }
    };
    if let Some(addr) = opts.metrics_addr {
        let bound = serve_metrics(addr, agent.metrics.clone()).await?;
        info!(address = %bound, "serving /metrics, /healthz, /readyz");
    }
    if elector.is_some() {
        // A standby is ready once its store is open; a leader once its first reconcile ran.
        agent.metrics.readiness.set_ready();
    }
    let source = {
        // Replicas sharing the state directory create the Git mirror one at a time.
        let _lock = lock_async(&opts.state, !opts.state.join("mirror.git").is_dir()).await?;
        Source::open(&opts.repo, &opts.branch, &opts.state)?.with_auth(opts.auth.clone())
    };
    let (url, branch, auth) = (opts.repo.clone(), opts.branch.clone(), opts.auth.clone());
    agent.run.newer_commit = Some(std::sync::Arc::new(move || {
        crate::source::head_of(&url, &branch, &auth).ok()
    }));
    let trigger = Trigger::new();
    if let Some(addr) = opts.webhook_addr {
        let file = opts
            .webhook_secret_file
            .as_deref()
            .ok_or(RunError::WebhookSecretMissing)?;
        let secret = trigger::read_secret(file)?;
        let bound =
            trigger::serve_webhook(addr, secret, opts.branch.clone(), trigger.clone()).await?;
        info!(address = %bound, "serving webhooks at /hook");
    }
    let _watcher = match crate::source::local_path(&opts.repo) {
        Some(p) if opts.watch && !opts.once => {
            let w = trigger::watch(&p, trigger.clone())?;
            info!(path = %p.display(), "watching the local source");
            Some(w)
        }
        _ => None,
    };
    // Whether this replica has restored the store as the leader (set on each acquisition).
    let mut leading = false;
    loop {
        let (again, code) = match elector.as_mut() {
            None => iteration(&opts, &mut agent, &source).await?,
            Some(e) => {
                if !leading {
                    if !e.is_leader() {
                        info!(lease = %e.describe(), "standby: waiting for the Lease");
                    }
                    e.wait_leader().await;
                    info!(lease = %e.describe(), "leading");
                    agent.metrics.readiness.set(false);
                    restore(&mut agent)?;
                    leading = true;
                }
                match e.lead(iteration(&opts, &mut agent, &source)).await {
                    Some(r) => r?,
                    None => {
                        warn!(lease = %e.describe(), "lost the Lease: iteration stopped, standing by");
                        leading = false;
                        continue;
                    }
                }
            }
        };
        agent.metrics.readiness.set_ready();
        if opts.once {
            return Ok(code);
        }
        if again {
            trigger.fire("a newer commit superseded the stuck revision");
        }
        if let Some(why) = trigger.wait(opts.interval).await {
            info!(reason = %why, "fetching now");
        }
    }
}

/// The state directory's lock ([`crate::control::lock`]) when `needed`, taken on a blocking
/// thread so that waiting for its holder (a CLI `rollback`, another replica's iteration)
/// does not stall the runtime. Start-up needs it only to create the store, its key or the Git
/// mirror (a standby must start while the leader is mid-wave).
///
/// # Errors
/// The lock file cannot be created or locked.
async fn lock_async(
    state: &std::path::Path,
    needed: bool,
) -> Result<Option<crate::control::Lock>, RunError> {
    if !needed {
        return Ok(None);
    }
    let dir = state.to_path_buf();
    Ok(Some(
        tokio::task::spawn_blocking(move || crate::control::lock(&dir)).await??,
    ))
}

/// Restores the applied state from the store ([`Agent::restore`]): at start, or when this
/// replica becomes the leader (the previous leader's revision left `applying` is continued).
///
/// # Errors
/// Store failures.
fn restore(agent: &mut Agent) -> Result<(), RunError> {
    match agent.restore()? {
        Some(r) => info!(revision = r, "restored the applied state"),
        None => info!("no applied revision yet"),
    }
    if let Some((r, c)) = &agent.run.unfinished {
        warn!(revision = *r, commit = %c, "revision was interrupted; continuing it");
    }
    Ok(())
}

/// Logs a sync's outcome ([`outcome_text`]; field `outcome` as in [`outcome_json`]): info
/// when applied or nothing to do, warn when it failed, was superseded or refused.
fn log_outcome(o: &Outcome) {
    let text = outcome_text(o);
    let kind = outcome_json(o)["outcome"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if exit_code(o) == EXIT_OK {
        info!(outcome = %kind, "{text}");
    } else {
        warn!(outcome = %kind, "{text}");
    }
}

/// One loop iteration under the state directory's lock: re-read the control state
/// (`rollback`/`resume`/`suspend` from the CLI), fetch and apply the branch head unless
/// suspended, then check drift (detect-only while suspended).
///
/// Returns whether to go again at once (a newer commit superseded the revision), and the
/// iteration's exit code (see [`run`]).
///
/// # Errors
/// Only the lock failing; everything else is reported and retried.
async fn iteration(
    opts: &RunOptions,
    agent: &mut Agent,
    source: &Source,
) -> Result<(bool, i32), RunError> {
    let mut again = false;
    let mut code = EXIT_OK;
    let _lock = lock_async(&opts.state, true).await?;
    let suspended = match agent.refresh() {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "revision store error");
            return Ok((false, EXIT_ERROR));
        }
    };
    if suspended {
        info!("suspended: not applying (`stackwave resume` to go on)");
    } else {
        let started = std::time::Instant::now();
        let fetched = source.fetch();
        agent
            .metrics
            .observe_fetch(started.elapsed(), fetched.is_ok());
        match fetched {
            Err(e) => {
                error!(error = %e, "fetch failed, keeping the last good revision");
                code = EXIT_ERROR;
            }
            Ok(c) => {
                info!(commit = %&c.id[..c.id.len().min(10)], summary = %c.summary, "fetched");
                let verified = match &opts.allowed_signers {
                    None => Ok(()),
                    Some(file) => crate::source::verify::AllowedSigners::load(file)
                        .map_err(crate::source::verify::VerifyError::from)
                        .and_then(|s| source.verify(&c.id, &s))
                        .map(|who| info!(signer = %who, "signature verified")),
                };
                let exported = verified
                    .map_err(|why| format!("commit {}: {why}", &c.id[..c.id.len().min(10)]))
                    .and_then(|()| {
                        source
                            .export(&c.id, &opts.state.join("checkout"))
                            .map_err(|e| format!("checkout failed: {e}"))
                    });
                match exported {
                    Err(why) => {
                        code = EXIT_REFUSED;
                        agent.metrics.count_outcome("refused");
                        log_outcome(&Outcome::Refused { reason: why });
                    }
                    Ok(dir) => match agent
                        .sync(&dir, &c, &crate::logging::log_progress)
                        .instrument(crate::logging::revision_span(&c.id, &c.summary))
                        .await
                    {
                        Ok(out) => {
                            crate::logging::end_wave();
                            log_outcome(&out);
                            again = matches!(out, Outcome::Superseded { .. });
                            code = exit_code(&out);
                        }
                        Err(e) => {
                            error!(error = %e, "revision store error");
                            code = EXIT_ERROR;
                        }
                    },
                }
            }
        }
    }
    let correct = !opts.detect_only && !suspended;
    match agent.drift(correct).await {
        Ok(d) if d.is_empty() => {}
        Ok(d) => {
            for f in &d {
                warn!(object = %f.object, field = %f.path, corrected = correct, "drift");
            }
            warn!(fields = d.len(), corrected = correct, "drift found");
        }
        Err(e) => error!(error = %e, "drift check failed"),
    }
    let _ = agent
        .store
        .set_state("last_loop", Some(&crate::record::now().to_string()));
    Ok((again, code))
}

/// The readable revision history, newest first (one line per revision).
pub fn history_text(revisions: &[crate::record::Revision]) -> String {
    revisions
        .iter()
        .map(|r| {
            format!(
                "rev {:>4}  {}  {:<11}  {}  {}\n",
                r.id,
                &r.commit[..r.commit.len().min(10)],
                r.outcome,
                r.author,
                r.message
            )
        })
        .collect()
}

/// An outcome as JSON: `{"outcome": "healthy"|"failed"|"superseded"|"refused"|"unchanged"|
/// "pinned", ...}`.
pub fn outcome_json(o: &Outcome) -> serde_json::Value {
    use serde_json::json;
    match o {
        Outcome::Healthy { revision, changed } => {
            json!({"outcome": "healthy", "revision": revision, "changed": changed})
        }
        Outcome::Failed {
            revision,
            wave,
            reason,
        } => json!({"outcome": "failed", "revision": revision, "wave": wave, "reason": reason}),
        Outcome::Superseded {
            revision,
            wave,
            by,
            waiting,
        } => {
            json!({"outcome": "superseded", "revision": revision, "wave": wave, "by": by, "waiting": waiting})
        }
        Outcome::Refused { reason } => json!({"outcome": "refused", "reason": reason}),
        Outcome::Unchanged => json!({"outcome": "unchanged"}),
        Outcome::Pinned { revision } => json!({"outcome": "pinned", "revision": revision}),
    }
}

/// The readable form of `stackwave diff`: each object's unified diff, then a summary line.
pub fn diff_text(diffs: &[crate::diff::ObjectDiff]) -> String {
    use crate::diff::Change;
    let mut out: String = diffs.iter().map(|d| d.diff.clone()).collect();
    let n = |c: Change| diffs.iter().filter(|d| d.change == c).count();
    out.push_str(&format!(
        "{} object(s) differ: {} to create, {} to update, {} to delete\n",
        diffs.len(),
        n(Change::Create),
        n(Change::Update),
        n(Change::Delete)
    ));
    out
}
