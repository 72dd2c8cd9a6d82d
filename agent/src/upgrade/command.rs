//! The command-line side of `stackwave diff|check|plan --repo R --from A --to B`: arguments,
//! output formats and exit codes (0 no change / nothing failing, 1 changes / failing
//! findings, 2 could not run).

use super::check::{Context, Severity};
use super::diff::Diff;
use super::{render_both, Options, Upgrade, UpgradeError};
use crate::render::cache::RenderCache;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// `--repo/--from/--to` and what renders need.
#[derive(Debug, Clone, clap::Args)]
pub struct RangeArgs {
    /// Repository path or Git URL (with --from and --to: compare two revisions of it; `plan
    /// --repo DIR` alone plans that checkout).
    #[arg(long)]
    pub repo: Option<String>,
    /// The base revision (what the cloud runs): commit, branch, tag, `HEAD~1`.
    #[arg(long, requires_all = ["repo", "to"])]
    pub from: Option<String>,
    /// The revision to preview.
    #[arg(long, requires_all = ["repo", "from"])]
    pub to: Option<String>,
    /// Secrets (and looked-up objects) renders read, multi-document YAML; bound keys without
    /// one render a fixed placeholder.
    #[arg(long)]
    pub secrets: Vec<PathBuf>,
    /// Use only cached charts, mirrors and pinned bases.
    #[arg(long)]
    pub offline: bool,
    /// Cache directory [default: $XDG_CACHE_HOME/stackwave or ~/.cache/stackwave].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// How the result is printed (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Readable text.
    Text,
    /// One JSON document.
    Json,
    /// A pull-request comment.
    Markdown,
}

/// `check --fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Errors only (default).
    Error,
    /// Warnings and errors.
    Warning,
}

impl RangeArgs {
    /// Whether a revision range was given.
    pub fn is_range(&self) -> bool {
        self.repo.is_some() && self.from.is_some() && self.to.is_some()
    }

    /// The upgrade [`Options`] these arguments give.
    ///
    /// # Errors
    /// [`UpgradeError::Git`] when `--repo`, `--from` or `--to` is missing.
    pub fn options(&self) -> Result<Options, UpgradeError> {
        let missing = |what: &str| UpgradeError::Git {
            repo: self.repo.clone().unwrap_or_default(),
            cause: format!("{what} is required"),
        };
        Ok(Options {
            repo: self.repo.clone().ok_or_else(|| missing("--repo"))?,
            from: self.from.clone().ok_or_else(|| missing("--from"))?,
            to: self.to.clone().ok_or_else(|| missing("--to"))?,
            cache_dir: self
                .cache_dir
                .clone()
                .or_else(crate::cli::default_cache_dir)
                .unwrap_or_else(|| std::env::temp_dir().join("stackwave")),
            offline: self.offline,
            secrets: self.secrets.clone(),
        })
    }
}

fn fail(e: UpgradeError) -> i32 {
    eprintln!("Error: {e}");
    2
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

/// The live cluster `diff --from --to --server|--kubeconfig` compares the new revision with.
#[derive(Debug, Clone)]
pub struct LiveTarget {
    /// API server URL.
    pub server: Option<String>,
    /// Kubeconfig file (without either: in-cluster or `$KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// The agent's state directory: when it holds a store, its instance identity (the marks
    /// the agent writes) and applied state are used, read-only.
    pub state: PathBuf,
}

/// What applying the new revision would change in the live cluster, per component
/// ([`super::diff::live_changes`]): its exported tree rendered as the agent renders a
/// checkout (the cluster's Secrets and Services as lookups, the instance's marks) and
/// dry-run applied server-side by the live diff ([`crate::reconcile::Agent::diff`], as
/// `stackwave diff DIR --server` does); Secret values masked.
///
/// # Errors
/// [`UpgradeError::Live`]: the cluster, the state directory, the render or a dry run.
pub async fn live_diff(
    up: &Upgrade,
    opts: &Options,
    t: &LiveTarget,
) -> Result<BTreeMap<String, Vec<super::diff::ObjectChange>>, UpgradeError> {
    let live = |source: Box<dyn std::error::Error + Send + Sync>| UpgradeError::Live {
        commit: up.to.commit.clone(),
        source,
    };
    let c = crate::run::connect(t.server.as_deref(), t.kubeconfig.as_deref())
        .await
        .map_err(|e| live(e.into()))?;
    let settings = crate::reconcile::Settings {
        cache_dir: opts.cache_dir.clone(),
        ..Default::default()
    };
    let agent =
        crate::control::read_only_agent(c, &t.state, settings).map_err(|e| live(e.into()))?;
    let diffs = agent
        .diff(&up.to.dir, &|_| {})
        .await
        .map_err(|e| live(e.into()))?;
    Ok(super::diff::live_changes(&diffs))
}

/// `diff --from --to` as a value: both revisions rendered with one cache and compared; with
/// `live`, every component's changes against the live cluster added ([`live_diff`]).
///
/// # Errors
/// [`UpgradeError`]: the repository, a revision, a render, or the live side.
pub fn run_diff(opts: &Options, live: Option<&LiveTarget>) -> Result<Diff, UpgradeError> {
    let up = Upgrade::open(opts)?;
    let cache = RenderCache::with_depth(2);
    let (from, to) = render_both(&up, &cache, opts)?;
    let d = super::diff::diff(&up.from.commit, &up.to.commit, &from, &to);
    let Some(t) = live else { return Ok(d) };
    let rt = tokio::runtime::Runtime::new().map_err(|e| UpgradeError::Live {
        commit: up.to.commit.clone(),
        source: e.into(),
    })?;
    Ok(d.with_live(rt.block_on(live_diff(&up, opts, t))?))
}

/// `diff --repo --from --to [--server URL|--kubeconfig F]`: exit 0 no change (and, with a
/// cluster, live already matches the new revision), 1 changes, 2 could not run.
pub fn diff(a: &RangeArgs, format: Format, live: Option<&LiveTarget>) -> i32 {
    let run = || -> Result<i32, UpgradeError> {
        let d = run_diff(&a.options()?, live)?;
        print!(
            "{}",
            match format {
                Format::Text => super::diff::text(&d),
                Format::Json => json(&d),
                Format::Markdown => super::markdown::diff(&d),
            }
        );
        Ok(i32::from(!d.is_empty()))
    };
    run().unwrap_or_else(fail)
}

/// The Secrets of the new revision's bindings that exist in the cluster.
///
/// # Errors
/// [`UpgradeError::Cluster`]: the cluster cannot be reached or answers an error.
pub async fn live_secrets(
    up: &Upgrade,
    server: Option<&str>,
    kubeconfig: Option<&std::path::Path>,
) -> Result<BTreeSet<(String, String)>, UpgradeError> {
    let c = crate::run::connect(server, kubeconfig)
        .await
        .map_err(|e| UpgradeError::Cluster(e.to_string()))?;
    let mut out = BTreeSet::new();
    for (ns, name) in up.to.bound_secrets().into_keys() {
        let skeleton = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns}});
        if c.get(&skeleton)
            .await
            .map_err(|e| UpgradeError::Cluster(e.to_string()))?
            .is_some()
        {
            out.insert((ns, name));
        }
    }
    Ok(out)
}

/// `check --repo --from --to`: exit 0 nothing at or above `fail_on`, 1 something is, 2 could
/// not run. Renders are tried from cached or local charts only; when they cannot be had the
/// render rules say so.
pub fn check(
    a: &RangeArgs,
    format: Format,
    fail_on: FailOn,
    server: Option<&str>,
    kubeconfig: Option<&std::path::Path>,
) -> i32 {
    let run = || -> Result<i32, UpgradeError> {
        let opts = a.options()?;
        let up = Upgrade::open(&opts)?;
        let live = if server.is_some() || kubeconfig.is_some() {
            let rt =
                tokio::runtime::Runtime::new().map_err(|e| UpgradeError::Cluster(e.to_string()))?;
            Some(rt.block_on(live_secrets(&up, server, kubeconfig))?)
        } else {
            None
        };
        let cache = RenderCache::with_depth(2);
        let rendered = render_both(&up, &cache, &opts).map_err(|e| e.to_string());
        let d = rendered
            .as_ref()
            .map(|(f, t)| super::diff::diff(&up.from.commit, &up.to.commit, f, t));
        let report = super::check::check(&Context {
            up: &up,
            rendered: match (&rendered, &d) {
                (Ok((f, t)), Ok(d)) => Ok((f, t, d)),
                (Err(e), _) => Err(e.clone()),
                (_, Err(e)) => Err((*e).clone()),
            },
            live_secrets: live.as_ref(),
        })?;
        print!(
            "{}",
            match format {
                Format::Text => report.text(),
                Format::Json => json(&report),
                Format::Markdown => super::markdown::findings(&report),
            }
        );
        Ok(report.exit_code(match fail_on {
            FailOn::Error => Severity::Error,
            FailOn::Warning => Severity::Warning,
        }))
    };
    run().unwrap_or_else(fail)
}

/// `plan --repo --from --to`: exit 0, or 2 when it could not run.
pub fn plan(a: &RangeArgs, format: Format) -> i32 {
    let run = || -> Result<i32, UpgradeError> {
        let opts = a.options()?;
        let up = Upgrade::open(&opts)?;
        let cache = RenderCache::with_depth(2);
        let d = render_both(&up, &cache, &opts)
            .map(|(f, t)| super::diff::diff(&up.from.commit, &up.to.commit, &f, &t))
            .map_err(|e| e.to_string());
        let p = super::plan::plan(&up, d.as_ref().map_err(Clone::clone))?;
        print!(
            "{}",
            match format {
                Format::Json => json(&p),
                _ => p.text(),
            }
        );
        Ok(0)
    };
    run().unwrap_or_else(fail)
}
