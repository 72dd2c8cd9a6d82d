//! `stackwave demo`: the main job end to end on an in-process API server. A Git repository is
//! made from `repo-template/` (with the real Genestack base and charts), and the agent loop
//! runs on it: the first commit applied wave by wave with health gates, an out-of-band edit
//! detected and corrected, a change touching one component, a `git revert`, and an instant
//! rollback to a stored revision.

use crate::cluster::Cluster;
use crate::component::Catalog;
use crate::reconcile::{Agent, Outcome, Settings};
use crate::record::Store;
use crate::run::{clear_progress, outcome_text, print_progress};
use crate::source::Source;
use git2::{Repository, Signature};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Demo inputs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Genestack base checkout.
    pub genestack: PathBuf,
    /// Charts directory; `None`: each chart from its catalog source (cached in `cache_dir`).
    pub charts: Option<PathBuf>,
    /// Secrets (and other looked-up objects) loaded into the cluster first, as
    /// Genestack's `create-secrets.sh` and the CNI would have made them.
    pub bootstrap: Vec<PathBuf>,
    /// The repository template.
    pub template: PathBuf,
    /// Working directory (repository, agent state).
    pub workdir: PathBuf,
    /// Where fetched charts are cached across runs (default `<workdir>/state/cache`).
    pub cache_dir: Option<PathBuf>,
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let p = e.path();
        let d = dst.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &d)?;
        } else {
            std::fs::copy(&p, &d)?;
        }
    }
    Ok(())
}

/// Commits every change in the working tree of `repo` (the demo operator as author).
///
/// # Errors
/// Git errors.
pub fn commit_all(repo: &Repository, message: &str) -> Result<git2::Oid, git2::Error> {
    let mut index = repo.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    index.update_all(["*"].iter(), None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = Signature::now("Demo Operator", "operator@example.com")?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
}

fn revert(repo: &Repository, oid: git2::Oid) -> Result<git2::Oid, git2::Error> {
    let target = repo.find_commit(oid)?;
    let head = repo.head()?.peel_to_commit()?;
    let mut idx = repo.revert_commit(&target, &head, 0, None)?;
    let tree = repo.find_tree(idx.write_tree_to(repo)?)?;
    let sig = Signature::now("Demo Operator", "operator@example.com")?;
    let msg = format!("Revert \"{}\"", target.summary().unwrap_or(""));
    let new = repo.commit(Some("HEAD"), &sig, &sig, &msg, &tree, &[&head])?;
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
    Ok(new)
}

/// Prints a Deployment's live `spec.replicas`.
async fn show_replicas(
    cluster: &Cluster,
    dep: &serde_json::Value,
    after: &str,
) -> Result<(), String> {
    let replicas = cluster
        .get(dep)
        .await
        .map_err(|x| x.to_string())?
        .and_then(|d| d.pointer("/spec/replicas").cloned());
    say(&format!(
        "{} replicas after the {after}: {}",
        dep["metadata"]["name"].as_str().unwrap_or(""),
        replicas.unwrap_or(json!(null))
    ));
    Ok(())
}

fn say(s: &str) {
    println!("{s}");
}

/// The demo's sandbox: the in-process API server with Genestack's Secrets bootstrapped, a
/// Git repository made from the template, and an agent with its state directory.
pub struct Sandbox {
    /// The in-process API test server (stops when dropped).
    pub server: kube_testserver::TestServer,
    /// The controller stand-in, a client of `server` over HTTP (stops when dropped).
    pub standin: kube_standin::Handle,
    /// A client of it.
    pub cluster: Cluster,
    /// The agent.
    pub agent: Agent,
    /// The agent's Git source (a mirror of `repo`).
    pub source: Source,
    /// The desired-state repository (a working tree).
    pub repo: Repository,
    /// Its directory.
    pub repo_dir: PathBuf,
    /// The agent's state directory.
    pub state: PathBuf,
    /// The first commit.
    pub first: git2::Oid,
}

/// A demo step that failed: what was being done and why (the demo is the presentation layer
/// over the pipeline; each step's cause comes from the typed error of the stage it ran).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(pub String);

impl From<String> for DemoError {
    fn from(step: String) -> DemoError {
        DemoError(step)
    }
}

impl From<&str> for DemoError {
    fn from(step: &str) -> DemoError {
        DemoError(step.to_string())
    }
}

/// Builds the [`Sandbox`] in `opts.workdir` (replacing what was there).
///
/// # Errors
/// Missing template, base or charts; API server start-up; bootstrap objects that do not apply.
pub async fn sandbox(opts: &DemoOptions) -> Result<Sandbox, DemoError> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let _ = std::fs::remove_dir_all(&opts.workdir);
    let repo_dir = opts.workdir.join("repo");
    copy_dir(&opts.template, &repo_dir)
        .map_err(|x| format!("copying {}: {x}", opts.template.display()))?;
    let abs = |p: &Path| std::fs::canonicalize(p).map_err(|x| format!("{}: {x}", p.display()));
    let cfg = std::fs::read_to_string(repo_dir.join("stackwave.yaml")).map_err(|x| e(&x))?;
    let cfg = cfg.replace(
        "path: ../genestack",
        &format!("path: {}", abs(&opts.genestack)?.display()),
    );
    let cfg = match &opts.charts {
        Some(c) => cfg.replace("path: ../charts", &format!("path: {}", abs(c)?.display())),
        None => crate::fetch::without_charts(&cfg),
    };
    std::fs::write(repo_dir.join("stackwave.yaml"), cfg).map_err(|x| e(&x))?;
    for note in crate::demo_cloud::prepare(&repo_dir, &opts.genestack, opts.charts.as_deref())? {
        say(&note);
    }
    let repo = Repository::init(&repo_dir).map_err(|x| e(&x))?;
    let first = commit_all(&repo, "Initial desired state from repo-template").map_err(|x| e(&x))?;

    let server = kube_testserver::start()
        .await
        .map_err(|x| format!("API server: {x}"))?;
    say(&format!("API server (in-process): {}", server.url));
    let cluster = Cluster::connect_url(&server.url).map_err(|x| e(&x))?;
    // The controllers' part (workload status, EndpointSlices, GC, ...), as a separate client.
    let standin = kube_standin::spawn(
        Cluster::connect_url(&server.url)
            .map_err(|x| e(&x))?
            .client()
            .clone(),
        kube_standin::Rules::default().with_delay(Duration::from_millis(150)),
    );
    say("controller stand-in (kube-standin) running as a client of it");
    let mut bootstrap = Vec::new();
    for f in &opts.bootstrap {
        let text = std::fs::read_to_string(f).map_err(|x| format!("{}: {x}", f.display()))?;
        bootstrap.extend(
            crate::reconcile::objects_of(&text).map_err(|x| format!("{}: {x}", f.display()))?,
        );
    }
    if opts.bootstrap.is_empty() {
        // No corpus fixtures: Secrets as create-secrets.sh makes them, the CNI's Services.
        let repo_cfg = crate::reconcile::read_config(&repo_dir).map_err(|e| e.to_string())?;
        let catalog =
            crate::catalog::for_checkout(&Catalog::builtin().map_err(|x| e(&x))?, &repo_dir)
                .map_err(|x| e(&x))?;
        let secrets = crate::fetch::generated_secrets(&catalog, &repo_cfg.components);
        say(&format!(
            "no Secrets given: generated {} Secret(s) the install scripts read (random values, as create-secrets.sh does)",
            secrets.len()
        ));
        bootstrap.extend(secrets);
        bootstrap.extend(
            crate::reconcile::objects_of(crate::fetch::DEMO_LOOKUPS).map_err(|e| e.to_string())?,
        );
    }
    for o in bootstrap.iter_mut() {
        if o["kind"] == "Service" {
            if let Some(m) = o.get_mut("status").and_then(|s| s.as_object_mut()) {
                m.clear();
            }
            // The API server allocates the address the scripts then read.
            if let Some(spec) = o.get_mut("spec").and_then(|s| s.as_object_mut()) {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
        }
    }
    let n = crate::demo_cloud::bootstrap(&cluster, bootstrap).await?;
    say(&format!(
        "bootstrapped Secrets and Services from {} file(s)",
        opts.bootstrap.len()
    ));
    say(&format!(
        "bootstrapped {n} object(s) in all: with labelled Nodes, kube-ovn's TLS Secret (agent/data/demo-cluster.yaml) and their Namespaces (the scripts' --create-namespace ones are the agent's)"
    ));
    let state = opts.workdir.join("state");
    let store = Store::open(&state.join("revisions.sqlite"), &state.join("store.key"))
        .map_err(|x| e(&x))?;
    let agent = Agent::new(
        cluster.clone(),
        store,
        Catalog::builtin().map_err(|x| e(&x))?,
        Settings {
            health_timeout: Duration::from_secs(60),
            cache_dir: opts
                .cache_dir
                .clone()
                .unwrap_or_else(|| state.join("cache")),
            ..Default::default()
        },
    )
    .map_err(|x| e(&x))?;
    let url = format!("file://{}", abs(&repo_dir)?.display());
    let source = Source::open(&url, "master", &state)
        .or_else(|_| Source::open(&url, "main", &state))
        .map_err(|x| e(&x))?;
    let branch = repo
        .head()
        .ok()
        .and_then(|h| h.shorthand().map(str::to_string))
        .unwrap_or_else(|| "master".into());
    let source = if branch == "master" {
        source
    } else {
        Source::open(&url, &branch, &state).map_err(|x| e(&x))?
    };
    Ok(Sandbox {
        server,
        standin,
        cluster,
        agent,
        source,
        repo,
        repo_dir,
        state,
        first,
    })
}

/// Runs the demo; returns a process exit code.
///
/// # Errors
/// Any step that fails, with its cause.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    say("== Stackwave demo ==");
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let Sandbox {
        server,
        standin: _standin,
        cluster,
        mut agent,
        source,
        repo,
        repo_dir,
        state,
        first,
    } = sandbox(&opts).await?;

    let o1 = sync(
        &mut agent,
        &source,
        &state,
        "1. first commit: every component, wave by wave, health-gated",
    )
    .await?;
    let Outcome::Healthy { revision: rev1, .. } = o1 else {
        return Err(format!(
            "first revision did not become healthy: {}",
            outcome_text(&o1)
        )
        .into());
    };

    say("\n-- 2. out-of-band edit: someone changes keystone-api's image with kubectl");
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "keystone-api", "namespace": "openstack"}});
    let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "apps",
        "v1",
        "Deployment",
    ));
    let api: kube::api::Api<kube::api::DynamicObject> =
        kube::api::Api::namespaced_with(cluster.client().clone(), "openstack", &ar);
    let live = cluster
        .get(&dep)
        .await
        .map_err(|x| e(&x))?
        .ok_or("keystone-api not found")?;
    let container = live
        .pointer("/spec/template/spec/containers/0/name")
        .and_then(|v| v.as_str())
        .unwrap_or("keystone-api")
        .to_string();
    api.patch(
        "keystone-api",
        &kube::api::PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() },
        &kube::api::Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": "registry.example.com/keystone:hotfix"}]}}}})),
    )
    .await
    .map_err(|x| e(&x))?;
    let found = agent.drift(false).await.map_err(|x| e(&x))?;
    say(&format!("drift detected on {} field(s):", found.len()));
    print!("{}", crate::cluster::drift::render(&found));
    agent.drift(true).await.map_err(|x| e(&x))?;
    let left = agent.drift(false).await.map_err(|x| e(&x))?;
    say(&format!("corrected: {} drifted field(s) left", left.len()));

    // keystone-api's replicas belong to its HorizontalPodAutoscaler (Genestack ships one), so
    // the change is to nova-conductor, which has none.
    say("\n-- 3. a change to one component: nova conductor replicas 1 -> 2");
    let conductor = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nova-conductor", "namespace": "openstack"}});
    let f = repo_dir.join("helm-configs/nova/nova-helm-overrides.yaml");
    let mut text = std::fs::read_to_string(&f).map_err(|x| e(&x))?;
    text.push_str("pod:\n  replicas:\n    conductor: 2\n");
    std::fs::write(&f, text).map_err(|x| e(&x))?;
    let change = commit_all(&repo, "nova: two conductors").map_err(|x| e(&x))?;
    let o3 = sync(&mut agent, &source, &state, "sync").await?;
    if let Outcome::Healthy { changed, .. } = &o3 {
        say(&format!("components touched: {changed:?}"));
    }

    say("\n-- 4. git revert of that change");
    revert(&repo, change).map_err(|x| e(&x))?;
    sync(&mut agent, &source, &state, "sync").await?;
    show_replicas(&cluster, &conductor, "revert").await?;

    let Outcome::Healthy { revision: rev2, .. } = o3 else {
        return Err(format!("the change did not apply: {}", outcome_text(&o3)).into());
    };
    say(&format!(
        "\n-- 5. instant rollback to revision {rev2} (stored objects, no fetch, no render)"
    ));
    let t = Instant::now();
    let out = agent
        .rollback(rev2, false, &print_progress)
        .await
        .map_err(|x| e(&x))?;
    clear_progress();
    say(&format!("rollback: {} in {} ms; pinned to revision {rev2} until a newer commit or `stackwave resume`", outcome_text(&out), t.elapsed().as_millis()));
    show_replicas(&cluster, &conductor, "rollback").await?;
    let _ = rev1;
    sync(
        &mut agent,
        &source,
        &state,
        "6. the next loop over the same branch head keeps the rollback (pinned)",
    )
    .await?;

    say("\n-- history");
    for r in agent.store.revisions().map_err(|x| e(&x))? {
        say(&format!(
            "  rev {:>2}  {}  {:<8}  {}",
            r.id,
            &r.commit[..r.commit.len().min(10)],
            r.outcome,
            r.message
        ));
    }
    let _ = first;
    let reqs = server
        .store
        .lock()
        .map(|s| s.requests.values().sum::<u64>())
        .unwrap_or(0);
    say(&format!(
        "\nAPI requests served: {reqs}; revision store: {} bytes of objects",
        agent.store.object_bytes().map_err(|x| e(&x))?
    ));
    Ok(())
}

async fn sync(
    agent: &mut Agent,
    source: &Source,
    state: &Path,
    title: &str,
) -> Result<Outcome, String> {
    say(&format!("\n-- {title}"));
    let c = source.fetch().map_err(|x| x.to_string())?;
    say(&format!("commit {} \"{}\"", &c.id[..10], c.summary));
    let dir = source
        .export(&c.id, &state.join("checkout"))
        .map_err(|x| x.to_string())?;
    let t = Instant::now();
    let counts = crate::demo_cloud::WaveCounts::default();
    let progress = |p: crate::reconcile::Progress| {
        counts.observe(&p);
        print_progress(p);
    };
    let out = agent
        .sync(&dir, &c, &progress)
        .await
        .map_err(|x| x.to_string())?;
    clear_progress();
    print!("{}", counts.text());
    say(&format!(
        "outcome: {} ({} ms)",
        outcome_text(&out),
        t.elapsed().as_millis()
    ));
    Ok(out)
}

/// `stackwave demo`: builds [`DemoOptions`] from the arguments and runs [`run`] on a fresh
/// Tokio runtime. Returns the exit code (0 done, 1 failed, the error printed).
pub fn main(a: crate::cli::DemoArgs) -> i32 {
    let cache = a
        .cache_dir
        .clone()
        .or_else(crate::cli::default_cache_dir)
        .unwrap_or_else(|| std::env::temp_dir().join("stackwave-cache"));
    // The local corpus when there is one, else the pinned Genestack release fetched from Git.
    let base = match crate::fetch::choose_base(a.genestack.as_deref(), a.charts.as_deref(), &cache)
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    println!("{}", base.note);
    let bootstrap = if a.secrets.is_empty() {
        ["secrets.yaml", "cluster-state.yaml"]
            .iter()
            .map(|f| base.genestack.join(f))
            .filter(|p| p.is_file())
            .collect()
    } else {
        a.secrets.clone()
    };
    let opts = DemoOptions {
        genestack: base.genestack.clone(),
        charts: base.charts.clone(),
        cache_dir: Some(cache),
        bootstrap,
        template: a.template.clone(),
        workdir: a.workdir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("stackwave-demo-{}", std::process::id()))
        }),
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

/// `stackwave api-server`: serves the in-process test server ([`kube_testserver::start`]),
/// prints its URL, optionally runs the controller stand-in beside it, until interrupted.
/// Returns the exit code (0 interrupted, 1 start failure, 2 unreadable stand-in rules).
pub fn api_server(a: crate::cli::ApiServerArgs) -> i32 {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let mut rules = match &a.standin_rules {
            Some(f) => match kube_standin::Rules::load(f) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return 2;
                }
            },
            None => kube_standin::Rules::default(),
        };
        if let Some(ms) = a.ready_after_ms {
            rules.ready_after_milliseconds = ms;
        }
        match kube_testserver::start().await {
            Ok(s) => {
                println!("{}", s.url);
                let _standin = match (a.with_standin, crate::cluster::Cluster::connect_url(&s.url))
                {
                    (false, _) => None,
                    (true, Ok(c)) => Some(kube_standin::spawn(c.client().clone(), rules)),
                    (true, Err(e)) => {
                        eprintln!("Error: cannot start the controller stand-in: {e}");
                        return 1;
                    }
                };
                let _ = tokio::signal::ctrl_c().await;
                0
            }
            Err(e) => {
                eprintln!("Error: cannot start the API server: {e}");
                1
            }
        }
    })
}
