//! Command-line interface (`stackwave ...`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

/// Stackwave: GitOps for Genestack clouds.
#[derive(Debug, Parser)]
#[command(name = "stackwave", version, about)]
pub struct Cli {
    /// Output format of `status`, `history`, `plan`, `diff`, `sync`, `rollback`, `catalog`
    /// and `init`.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "text")]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text.
    Text,
    /// One JSON document on stdout (for scripts).
    Json,
    /// A pull-request comment (`diff`/`check --from --to`; other commands print text).
    Markdown,
}

impl Output {
    /// The upgrade commands' format.
    fn upgrade(self) -> crate::upgrade::command::Format {
        match self {
            Output::Text => crate::upgrade::command::Format::Text,
            Output::Json => crate::upgrade::command::Format::Json,
            Output::Markdown => crate::upgrade::command::Format::Markdown,
        }
    }
}

/// Where the agent keeps its state and which cluster it changes.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The agent's state directory (revision store, control state, lock).
    #[arg(long, default_value = "/var/lib/stackwave")]
    pub state: PathBuf,
    /// API server URL (plain HTTP, e.g. `stackwave api-server`).
    #[arg(long, conflicts_with = "kubeconfig")]
    pub server: Option<String>,
    /// Kubeconfig file [default: in-cluster or $KUBECONFIG].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Kustomize operations with Stackwave's native engine.
    Kustomize {
        /// The kustomize operation.
        #[command(subcommand)]
        command: KustomizeCommand,
    },
    /// Run the main job end to end on an in-process API server: a Git repo made from
    /// repo-template/ with the real Genestack base and charts; waves, drift, a change, a
    /// revert, and an instant rollback.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Run the in-process Kubernetes API test server (the one `stackwave demo` uses) until
    /// interrupted, printing its URL.
    #[cfg(feature = "demo")]
    ApiServer(ApiServerArgs),
    /// Run the agent: poll the desired-state repository, render, apply in health-gated waves,
    /// record every revision, check drift; restores its state from the revision store. With
    /// --once, exit code 0: applied and healthy, or nothing to do; 1: error (fetch, store,
    /// cluster); 2: the revision failed; 3: it was refused.
    Run(RunArgs),
    /// Print the waves a desired-state checkout applies in (components by wave and
    /// dependsOn, from stackwave.yaml and the component catalog).
    Plan {
        /// The checkout (holds stackwave.yaml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// With --repo/--from/--to: the upgrade between two revisions (changed components by
        /// wave, operator hop sequences).
        #[command(flatten)]
        range: crate::upgrade::command::RangeArgs,
    },
    /// Policy findings of an upgrade between two revisions (`--repo R --from A --to B`; no
    /// cluster needed): chart and image downgrades, chart source switches, skipped operator
    /// hops, mixed releases, database migrations, new or missing Secrets, replaced Jobs,
    /// removed components. Exit code 0: nothing at or above --fail-on, 1: something is, 2:
    /// could not run.
    Check {
        /// The revisions.
        #[command(flatten)]
        range: crate::upgrade::command::RangeArgs,
        /// API server URL: also check that the Secrets the new revision reads exist.
        #[arg(long, conflicts_with = "kubeconfig")]
        server: Option<String>,
        /// Kubeconfig file (as --server).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Lowest severity that fails the check.
        #[arg(long, value_enum, default_value = "error")]
        fail_on: crate::upgrade::command::FailOn,
    },
    /// Print the effective component catalog: the built-in entries with a repository's own
    /// `components/*.yaml` laid over them, and where each entry comes from.
    Catalog {
        /// A desired-state checkout whose `components/` override or add entries.
        #[arg(long)]
        repo: Option<PathBuf>,
    },
    /// Scaffold a desired-state repository laid out like Genestack's /etc/genestack, with a
    /// stackwave.yaml pinning the Genestack base; refuses a non-empty DIR.
    Init(InitArgs),
    /// Print the revision history of a state directory, newest first.
    History {
        /// The agent's state directory.
        #[arg(long, default_value = "/var/lib/stackwave")]
        state: PathBuf,
    },
    /// Fetch, render, apply and check drift once, now (one `run` iteration, waiting for a
    /// running agent's iteration to end first). Exit code 0: applied and healthy, or nothing to
    /// do; 1: error (fetch, store, cluster); 2: the revision failed; 3: it was refused.
    Sync(RunArgs),
    /// Show what applying a checkout would change, object by object (server-side dry run
    /// against live objects; Secret values masked). Exit code 0: no differences, 1: differences,
    /// 2: error — like `kubectl diff`.
    Diff {
        /// The checkout (holds stackwave.yaml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Cluster and (optional) state.
        #[command(flatten)]
        target: TargetArgs,
        /// With --repo/--from/--to: the change between two revisions instead (no cluster
        /// needed; with --server/--kubeconfig also the new revision against live).
        #[command(flatten)]
        range: crate::upgrade::command::RangeArgs,
    },
    /// Print a least-privilege ClusterRole (and its binding) for what a checkout renders plus
    /// what the agent itself needs: the option beside deploy/'s cluster-admin binding.
    Rbac {
        /// The checkout (holds stackwave.yaml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Cluster (rendering reads bound Secrets and Services).
        #[command(flatten)]
        target: TargetArgs,
        /// The ClusterRole's name.
        #[arg(long, default_value = "stackwave-least-privilege")]
        name: String,
    },
    /// Show the applied revision, pin, suspension and drift per component.
    Status {
        /// The agent's state directory.
        #[arg(long, default_value = "/var/lib/stackwave")]
        state: PathBuf,
    },
    /// Re-apply a stored revision (a number from `history`, or a commit) wave by wave — no
    /// fetch, no render — and pin the agent there until a newer commit or `resume`. Exit code
    /// 0: healthy; 1: error; 2: the rollback failed; 3: it was refused (irreversible).
    Rollback {
        /// Revision number or commit (at least 4 hex digits).
        target: String,
        /// Cluster and state.
        #[command(flatten)]
        cluster: TargetArgs,
        /// Seconds a wave may take to become healthy (components whose catalog entry sets
        /// `helm.timeout` wait that long instead).
        #[arg(long, default_value_t = 300)]
        health_timeout: u64,
        /// Roll back even past components marked irreversible (`irreversible:` in
        /// stackwave.yaml, e.g. after a database migration).
        #[arg(long)]
        force: bool,
        /// Where the store's key is (the agent's `--store-key-secret`, in the cluster).
        #[command(flatten)]
        key: crate::keyring::KeyArgs,
    },
    /// Stop applying (drift is still checked, detect-only) until `resume`.
    Suspend {
        /// The agent's state directory.
        #[arg(long, default_value = "/var/lib/stackwave")]
        state: PathBuf,
        /// Why (shown by `status`).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a suspension and a rollback pin: the next loop applies the branch head again.
    Resume {
        /// The agent's state directory.
        #[arg(long, default_value = "/var/lib/stackwave")]
        state: PathBuf,
    },
    /// Revision store maintenance.
    Store {
        /// The operation.
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Render a component exactly as its Genestack install script would (helm template +
    /// values layering + bound secrets + kustomize post-render).
    Render(RenderArgs),
    /// Take over a Helm-installed cloud without restarts: per component the Helm release,
    /// the render compared with the live objects (server-side dry run), the predicted
    /// effect; `--apply` adopts the matching ones. Exit code 0: all match (or adopted), 1:
    /// error, 2: some component differs.
    Adopt(crate::adopt::cli::AdoptArgs),
}

/// Arguments of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The new repository's directory (absent or empty).
    pub dir: PathBuf,
    /// Tag or commit of the Genestack base [default: the release the built-in catalog
    /// was transcribed from].
    #[arg(long)]
    pub genestack_ref: Option<String>,
    /// Git URL of the Genestack base [default: https://github.com/rackerlabs/genestack].
    #[arg(long, conflicts_with = "genestack")]
    pub genestack_url: Option<String>,
    /// A local Genestack checkout instead of the Git pin (offline clouds).
    #[arg(long, conflicts_with = "genestack_ref")]
    pub genestack: Option<PathBuf>,
    /// Local unpacked charts (offline clouds); default: each chart's catalog source.
    #[arg(long)]
    pub charts: Option<PathBuf>,
    /// A region of a multi-region repository: its own tree under regions/<name>/ (repeat).
    #[arg(long = "region")]
    pub regions: Vec<String>,
    /// `git init` the directory and commit the scaffold.
    #[arg(long)]
    pub git: bool,
    /// Where the Git base is mirrored [default: $XDG_CACHE_HOME/stackwave or ~/.cache/stackwave].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// Arguments of `demo`.
#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Genestack base checkout [default: ../shared/corpus/genestack when present, else the
    /// catalog's Genestack release fetched from GitHub into the cache].
    #[arg(long)]
    pub genestack: Option<PathBuf>,
    /// Charts directory [default: ../shared/corpus/charts with the local corpus, else each
    /// chart from its catalog source, cached].
    #[arg(long)]
    pub charts: Option<PathBuf>,
    /// Where a fetched Genestack release and charts are cached [default:
    /// $XDG_CACHE_HOME/stackwave or ~/.cache/stackwave].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Secrets loaded into the cluster first [default: <genestack>/secrets.yaml and cluster-state.yaml].
    #[arg(long)]
    pub secrets: Vec<PathBuf>,
    /// The repository template.
    #[arg(long, default_value = "repo-template")]
    pub template: PathBuf,
    /// Working directory [default: a temporary directory].
    #[arg(long)]
    pub workdir: Option<PathBuf>,
}

/// `stackwave store` operations.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Re-encrypt every stored object under a new random key and save the key where it is
    /// kept (the file `<state>/store.key`, or `--store-key-secret`).
    RotateKey {
        /// State directory and cluster (the cluster only for a Secret key).
        #[command(flatten)]
        target: TargetArgs,
        /// Where the key is.
        #[command(flatten)]
        key: crate::keyring::KeyArgs,
    },
}

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Git URL of the desired-state repository (file://, https://, git://).
    #[arg(long)]
    pub repo: String,
    /// Branch to follow.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// This agent's instance name: with the repository URL it names the agent's inventories
    /// and ownership marks, so agents sharing a cluster never prune each other's objects. Give
    /// agents that follow the same repository on one cluster different names.
    #[arg(long, default_value = crate::cluster::instance::DEFAULT_NAME)]
    pub instance: String,
    /// State directory (Git mirror, checkouts, revision store and its key) and cluster.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Seconds between loop iterations.
    #[arg(long, default_value_t = 60)]
    pub interval: u64,
    /// Run one iteration and exit.
    #[arg(long)]
    pub once: bool,
    /// Report drift without correcting it.
    #[arg(long)]
    pub detect_only: bool,
    /// Seconds a wave may take to become healthy (components whose catalog entry sets
    /// `helm.timeout` wait that long instead).
    #[arg(long, default_value_t = 300)]
    pub health_timeout: u64,
    /// Largest share of managed objects one revision may delete, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub max_delete_percent: f64,
    /// Apply over-threshold deletes and empty components.
    #[arg(long)]
    pub allow_destructive: bool,
    /// Seconds a wave may wait for health before a newer commit on the branch cancels the
    /// revision (recorded `superseded`) so the newer commit is applied at once.
    #[arg(long, default_value_t = 120)]
    pub cancel_stuck_after: u64,
    /// Revisions kept in the store (the applied one and a rollback pin always are); 0 keeps
    /// all.
    #[arg(long, default_value_t = 200)]
    pub keep_revisions: usize,
    /// Never cancel a waiting wave for a newer commit (wait out --health-timeout).
    #[arg(long)]
    pub no_cancel_stuck: bool,
    /// Serve Prometheus metrics at this address (e.g. 0.0.0.0:9090), path /metrics.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Accept Git host webhooks (GitHub, GitLab, generic HMAC) at this address, path /hook:
    /// a verified push fetches at once.
    #[arg(long, requires = "webhook_secret_file")]
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// File holding the webhook secret (HMAC key; GitLab's token).
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// Do not watch a local source (file:// or a path) for changes; poll only.
    #[arg(long)]
    pub no_watch: bool,
    /// Directory of credential files for the remote, e.g. a mounted Secret (Flux's keys:
    /// identity, known_hosts, username, password, bearerToken).
    #[arg(long)]
    pub git_secret_dir: Option<PathBuf>,
    /// known_hosts file for SSH remotes when the secret has none (default
    /// ~/.ssh/known_hosts, then /etc/ssh/ssh_known_hosts).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Accept any SSH host key. Never in production: it gives up man-in-the-middle protection.
    #[arg(long)]
    pub insecure_skip_host_key_check: bool,
    /// Apply only commits signed (SSH signatures) by a key in this allowed-signers file
    /// (OpenSSH format, as git's gpg.ssh.allowedSignersFile); others are refused.
    #[arg(long)]
    pub allowed_signers: Option<PathBuf>,
    /// Leader election among replicas (`--lease-name`, ...).
    #[command(flatten)]
    pub lease: crate::lease::LeaseArgs,
    /// Where the revision store's key is (`--store-key-secret`, ...).
    #[command(flatten)]
    pub key: crate::keyring::KeyArgs,
}

/// Arguments of `api-server`: the API only (as kube-apiserver without controllers), or with
/// the controller stand-in (`kube-standin`) beside it as a client over HTTP.
#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct ApiServerArgs {
    /// Also run the controller stand-in (workload/Job/PVC/operator status, EndpointSlices,
    /// default ServiceAccounts, garbage collection, namespace deletion).
    #[arg(long)]
    pub with_standin: bool,
    /// The stand-in's rules (YAML, the shape of `standin/data/rules.yaml`; default: those).
    #[arg(long, requires = "with_standin")]
    pub standin_rules: Option<PathBuf>,
    /// Milliseconds from a workload's new generation to its ready status (stand-in; overrides
    /// the rules' `readyAfterMilliseconds`).
    #[arg(long, requires = "with_standin")]
    pub ready_after_ms: Option<u64>,
    /// Accepted for compatibility: the server never runs controllers itself now.
    #[arg(long, hide = true)]
    pub no_simulator: bool,
}

/// Arguments of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Genestack checkout (base-helm-configs/, base-kustomize/, helm-chart-versions.yaml)
    /// [default: ../shared/corpus/genestack when present, else the catalog's Genestack
    /// release fetched from GitHub into the cache directory].
    #[arg(long)]
    pub genestack: Option<PathBuf>,
    /// Directory of charts (<chart>/Chart.yaml); without it charts are fetched from their
    /// repositories at the pinned version, into the cache.
    #[arg(long)]
    pub charts: Option<PathBuf>,
    /// Use only cached chart repositories and archives.
    #[arg(long)]
    pub offline: bool,
    /// Cache directory [default: $XDG_CACHE_HOME/stackwave or ~/.cache/stackwave].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Multi-document YAML of the Secrets the install scripts read (offline rendering).
    #[arg(long)]
    pub secrets: PathBuf,
    /// Other looked-up objects [default: cluster-state.yaml beside --secrets, if present].
    #[arg(long)]
    pub cluster_state: Option<PathBuf>,
    /// Operator overrides tree laid out like /etc/genestack.
    #[arg(long)]
    pub overrides: Option<PathBuf>,
    /// Component catalog directory layered over the built-in one.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// The component to render.
    #[arg(long)]
    pub component: String,
    /// Render twice and fail, naming the templates, if the output is not deterministic.
    #[arg(long)]
    pub check_determinism: bool,
}

/// `stackwave kustomize ...`.
#[derive(Debug, Subcommand)]
pub enum KustomizeCommand {
    /// Build a kustomization directory and print the result, as `kubectl kustomize` does.
    Build(BuildArgs),
}

/// `--load-restrictor` values (kustomize's names).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LoadRestrictorArg {
    /// Files must be in or below the kustomization directory.
    #[value(name = "LoadRestrictionsRootOnly")]
    RootOnly,
    /// Files may be anywhere.
    #[value(name = "LoadRestrictionsNone")]
    None,
}

/// `--reorder` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReorderArg {
    /// kustomize's legacy kind-based order.
    Legacy,
    /// Keep input order.
    None,
}

/// Arguments of `kustomize build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The kustomization directory (default: the current directory).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Which files kustomizations may read.
    #[arg(long, value_enum, default_value = "LoadRestrictionsRootOnly")]
    pub load_restrictor: LoadRestrictorArg,
    /// Output order when the kustomization has no sortOptions.
    #[arg(long, value_enum)]
    pub reorder: Option<ReorderArg>,
    /// Serve remote (http/https) resources only from the cache.
    #[arg(long)]
    pub offline: bool,
    /// Cache directory for remote resources [default: $XDG_CACHE_HOME/stackwave or ~/.cache/stackwave].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Inflate `helmCharts` with Stackwave's Helm renderer (libhelm_c).
    #[arg(long)]
    pub enable_helm: bool,
}

/// The default cache directory: `$XDG_CACHE_HOME/stackwave`, else `$HOME/.cache/stackwave`
/// ([`kustomize_rs::fs::default_cache_dir`]).
pub fn default_cache_dir() -> Option<PathBuf> {
    kustomize_rs::fs::default_cache_dir()
}

fn render(a: RenderArgs) -> Result<String, String> {
    let mut catalog = crate::component::Catalog::builtin().map_err(|e| e.to_string())?;
    if let Some(dir) = &a.catalog {
        catalog.overlay_dir(dir).map_err(|e| e.to_string())?;
    }
    // An overrides tree is a repository: its own components/ lay over the catalog.
    if let Some(o) = &a.overrides {
        catalog = crate::catalog::for_checkout(&catalog, o).map_err(|e| e.to_string())?;
    }
    let mut objects = crate::render::objects::Objects::default();
    objects.load_file(&a.secrets).map_err(|e| e.to_string())?;
    let cs = a.cluster_state.clone().or_else(|| {
        let p = a
            .secrets
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("cluster-state.yaml");
        p.is_file().then_some(p)
    });
    if let Some(cs) = cs {
        objects.load_file(&cs).map_err(|e| e.to_string())?;
    }
    let cache_dir = a
        .cache_dir
        .clone()
        .or_else(default_cache_dir)
        .ok_or("no cache directory: pass --cache-dir")?;
    let base = crate::fetch::choose_base(a.genestack.as_deref(), a.charts.as_deref(), &cache_dir)
        .map_err(|e| e.to_string())?;
    if a.genestack.is_none() {
        eprintln!("{}", base.note);
    }
    let inputs = crate::render::Inputs {
        sources: crate::render::values::Sources {
            genestack: base.genestack.clone(),
            overrides: a.overrides.clone(),
        },
        charts: match &base.charts {
            Some(d) => crate::render::charts::ChartStore::Dir(d.clone()),
            None => crate::render::charts::ChartStore::Repos(crate::render::charts::Fetcher {
                cache_dir,
                offline: a.offline,
                timeout: std::time::Duration::from_secs(60),
            }),
        },
        objects,
        catalog,
    };
    inputs
        .catalog
        .warn_quirks(std::slice::from_ref(&a.component));
    crate::render::render_component(&inputs, &a.component)
        .and_then(|r| r.text())
        .map_err(|e| e.to_string())
}

fn init(a: &InitArgs) -> Result<crate::init::Scaffold, String> {
    crate::init::init(&crate::init::InitOptions {
        dir: a.dir.clone(),
        genestack_url: a.genestack_url.clone(),
        genestack_ref: a.genestack_ref.clone(),
        genestack_path: a.genestack.clone(),
        charts_path: a.charts.clone(),
        cache_dir: a
            .cache_dir
            .clone()
            .or_else(default_cache_dir)
            .ok_or("no cache directory: pass --cache-dir")?,
        regions: a.regions.clone(),
        git: a.git,
    })
    .map_err(|e| e.to_string())
}

fn run_options(a: &RunArgs, once: bool) -> crate::run::RunOptions {
    crate::run::RunOptions {
        repo: a.repo.clone(),
        branch: a.branch.clone(),
        instance: a.instance.clone(),
        state: a.target.state.clone(),
        server: a.target.server.clone(),
        kubeconfig: a.target.kubeconfig.clone(),
        interval: std::time::Duration::from_secs(a.interval),
        once: once || a.once,
        detect_only: a.detect_only,
        metrics_addr: a.metrics_addr,
        webhook_addr: a.webhook_addr,
        webhook_secret_file: a.webhook_secret_file.clone(),
        watch: !a.no_watch,
        allowed_signers: a.allowed_signers.clone(),
        lease: a.lease.config(),
        store_key: Some(a.key.source(&a.target.state)),
        auth: crate::source::auth::Auth {
            secret_dir: a.git_secret_dir.clone(),
            known_hosts: a.known_hosts.clone(),
            insecure_skip_host_key: a.insecure_skip_host_key_check,
            ..Default::default()
        },
        settings: crate::reconcile::Settings {
            health_timeout: std::time::Duration::from_secs(a.health_timeout),
            max_delete_share: a.max_delete_percent / 100.0,
            allow_destructive: a.allow_destructive,
            cache_dir: a.target.state.join("cache"),
            keep_revisions: (a.keep_revisions > 0).then_some(a.keep_revisions),
            cancel_stuck_after: (!a.no_cancel_stuck)
                .then(|| std::time::Duration::from_secs(a.cancel_stuck_after)),
        },
    }
}

/// Runs `f` on a new multi-threaded runtime; start-up failures become exit code 1.
fn block_on<F: std::future::Future<Output = i32>>(f: F) -> i32 {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

/// Prints `v` as JSON (pretty) or `text`, whichever `output` asks for.
pub(crate) fn emit<T: serde::Serialize>(output: Output, v: &T, text: impl FnOnce() -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        ),
        Output::Text | Output::Markdown => print!("{}", text()),
    }
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("Error: {e}");
    1
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let output = cli.output;
    match cli.command {
        Command::Run(a) => block_on(async {
            crate::logging::init(crate::logging::Format::detect());
            crate::run::run(run_options(&a, false))
                .await
                .unwrap_or_else(fail)
        }),
        Command::Sync(a) => block_on(async {
            crate::logging::init(crate::logging::Format::detect());
            crate::run::run(run_options(&a, true))
                .await
                .unwrap_or_else(fail)
        }),
        Command::Plan { range, .. } if range.is_range() => {
            crate::upgrade::command::plan(&range, output.upgrade())
        }
        Command::Check { range, .. } if !range.is_range() => {
            eprintln!("Error: check needs --repo, --from and --to");
            2
        }
        Command::Check {
            range,
            server,
            kubeconfig,
            fail_on,
        } => crate::upgrade::command::check(
            &range,
            output.upgrade(),
            fail_on,
            server.as_deref(),
            kubeconfig.as_deref(),
        ),
        Command::Diff { range, target, .. } if range.is_range() => {
            let live = (target.server.is_some() || target.kubeconfig.is_some()).then(|| {
                crate::upgrade::command::LiveTarget {
                    server: target.server.clone(),
                    kubeconfig: target.kubeconfig.clone(),
                    state: target.state.clone(),
                }
            });
            crate::upgrade::command::diff(&range, output.upgrade(), live.as_ref())
        }
        Command::Plan { dir, range } => {
            // `plan --repo DIR` (no --from/--to) is `plan DIR`.
            let dir = range.repo.map(PathBuf::from).unwrap_or(dir);
            let waves = crate::reconcile::read_config(&dir).and_then(|cfg| {
                let catalog = crate::catalog::Effective::of_repo(&dir)?.catalog();
                catalog.warn_quirks(&cfg.components);
                crate::reconcile::plan_waves(&catalog, &cfg)
            });
            match waves {
                Ok(waves) => {
                    emit(output, &waves, || {
                        waves
                            .iter()
                            .map(|w| format!("wave {}: {}\n", w.index, w.components.join(", ")))
                            .collect()
                    });
                    0
                }
                Err(e) => fail(e),
            }
        }
        Command::Catalog { repo } => {
            let effective = match &repo {
                Some(r) => crate::catalog::Effective::of_repo(r),
                None => crate::catalog::Effective::builtin(),
            };
            match effective {
                Ok(c) => {
                    emit(output, &c, || c.text());
                    0
                }
                Err(e) => fail(e),
            }
        }
        Command::Init(a) => match init(&a) {
            Ok(s) => {
                emit(output, &s, || crate::init::next_steps(&s, &a.regions));
                0
            }
            Err(e) => fail(e),
        },
        Command::History { state } => {
            match crate::control::open_store_existing(&state).and_then(|s| Ok(s.revisions()?)) {
                Ok(revs) => {
                    emit(output, &revs, || crate::run::history_text(&revs));
                    0
                }
                Err(e) => fail(e),
            }
        }
        Command::Status { state } => match crate::control::status(&state) {
            Ok(s) => {
                emit(output, &s, || crate::control::status_text(&s));
                0
            }
            Err(e) => fail(e),
        },
        Command::Suspend { state, reason } => {
            crate::control::suspend(&state, &reason).map_or_else(fail, |_| {
                println!("suspended: the agent applies nothing until `stackwave resume`");
                0
            })
        }
        Command::Store {
            command: StoreCommand::RotateKey { target, key },
        } => block_on(async move {
            let source = key.source(&target.state);
            let cluster = match (&source, &target.server, &target.kubeconfig) {
                (crate::keyring::KeySource::File(_), _, _) => None,
                (_, s, k) => match crate::run::connect(s.as_deref(), k.as_deref()).await {
                    Ok(c) => Some(c),
                    Err(e) => return fail(e),
                },
            };
            let _lock = match crate::control::lock(&target.state) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            match crate::keyring::rotate(cluster.as_ref(), &target.state, &source).await {
                Ok(n) => {
                    println!("store key rotated: {n} object(s) re-encrypted");
                    0
                }
                Err(e) => fail(e),
            }
        }),
        Command::Resume { state } => crate::control::resume(&state).map_or_else(fail, |_| {
            println!("resumed: the next loop applies the branch head");
            0
        }),
        Command::Rollback {
            target,
            cluster,
            health_timeout,
            force,
            key,
        } => block_on(async move {
            let c =
                match crate::run::connect(cluster.server.as_deref(), cluster.kubeconfig.as_deref())
                    .await
                {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
            let settings = crate::reconcile::Settings {
                health_timeout: std::time::Duration::from_secs(health_timeout),
                cache_dir: cluster.state.join("cache"),
                ..Default::default()
            };
            let quiet = |_p: crate::reconcile::Progress| {};
            let progress: &dyn Fn(crate::reconcile::Progress) = if output == Output::Json {
                &quiet
            } else {
                &crate::run::print_progress
            };
            let key = key.source(&cluster.state);
            match crate::control::rollback_with_key(
                &cluster.state,
                c,
                &key,
                &target,
                force,
                settings,
                progress,
            )
            .await
            {
                Ok(out) => {
                    crate::run::clear_progress();
                    emit(output, &crate::run::outcome_json(&out), || {
                        format!("outcome: {}\n", crate::run::outcome_text(&out))
                    });
                    crate::run::exit_code(&out)
                }
                Err(e) => fail(e),
            }
        }),
        Command::Rbac { dir, target, name } => block_on(async move {
            let c =
                match crate::run::connect(target.server.as_deref(), target.kubeconfig.as_deref())
                    .await
                {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
            let agent = crate::record::Store::in_memory()
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    let catalog =
                        crate::component::Catalog::builtin().map_err(|e| e.to_string())?;
                    crate::reconcile::Agent::new(c, s, catalog, Default::default())
                        .map_err(|e| e.to_string())
                });
            let agent = match agent {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            match agent.render_all(&dir, &|_| {}).await {
                Ok(r) => {
                    let role = crate::rbac::cluster_role(&name, r.objects.values().flatten());
                    emit(output, &role, || {
                        crate::rbac::manifest(&role, "stackwave", "stackwave-system")
                    });
                    0
                }
                Err(e) => fail(e),
            }
        }),
        Command::Diff { dir, target, .. } => block_on(async move {
            let code = |e: &dyn std::fmt::Display| {
                eprintln!("Error: {e}");
                2
            };
            let c =
                match crate::run::connect(target.server.as_deref(), target.kubeconfig.as_deref())
                    .await
                {
                    Ok(c) => c,
                    Err(e) => return code(&e),
                };
            // Read-only: load the applied state without touching unfinished revisions.
            let agent = match crate::control::read_only_agent(c, &target.state, Default::default())
            {
                Ok(a) => a,
                Err(e) => return code(&e),
            };
            match agent.diff(&dir, &|_| {}).await {
                Ok(diffs) => {
                    emit(output, &diffs, || crate::run::diff_text(&diffs));
                    i32::from(!diffs.is_empty())
                }
                Err(e) => code(&e),
            }
        }),
        #[cfg(feature = "demo")]
        Command::Demo(a) => crate::demo::main(a),
        #[cfg(feature = "demo")]
        Command::ApiServer(a) => crate::demo::api_server(a),
        // wt-adopt hook: `stackwave adopt` lives in its own module.
        Command::Adopt(a) => block_on(crate::adopt::cli::run(a, output)),
        Command::Render(a) => match render(a) {
            Ok(text) => {
                let mut stdout = std::io::stdout().lock();
                if stdout
                    .write_all(text.as_bytes())
                    .and_then(|_| stdout.flush())
                    .is_err()
                {
                    return 1;
                }
                0
            }
            Err(e) => {
                eprintln!("Error: {e}");
                1
            }
        },
        Command::Kustomize {
            command: KustomizeCommand::Build(a),
        } => {
            let opts = kustomize_rs::Options {
                load_restrictor: match a.load_restrictor {
                    LoadRestrictorArg::RootOnly => kustomize_rs::LoadRestrictor::RootOnly,
                    LoadRestrictorArg::None => kustomize_rs::LoadRestrictor::None,
                },
                reorder: a.reorder.map(|r| match r {
                    ReorderArg::Legacy => kustomize_rs::Reorder::Legacy,
                    ReorderArg::None => kustomize_rs::Reorder::None,
                }),
                remote: kustomize_rs::RemoteOptions {
                    cache_dir: a.cache_dir.clone().or_else(default_cache_dir),
                    offline: a.offline,
                    timeout: std::time::Duration::from_secs(30),
                },
                helm: a.enable_helm.then(|| {
                    crate::render::inflate::inflator(crate::render::charts::ChartStore::Repos(
                        crate::render::charts::Fetcher {
                            cache_dir: a
                                .cache_dir
                                .clone()
                                .or_else(default_cache_dir)
                                .unwrap_or_else(|| std::env::temp_dir().join("stackwave")),
                            offline: a.offline,
                            timeout: std::time::Duration::from_secs(60),
                        },
                    ))
                }),
            };
            match kustomize_rs::build_dir(&a.dir, &opts) {
                Ok(out) => {
                    let mut stdout = std::io::stdout().lock();
                    if stdout
                        .write_all(out.as_bytes())
                        .and_then(|_| stdout.flush())
                        .is_err()
                    {
                        return 1;
                    }
                    0
                }
                Err(e) => {
                    eprintln!("Error: {e}");
                    1
                }
            }
        }
    }
}
