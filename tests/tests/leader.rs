//! Leader election fault test (issue 15): two `stackwave run` agents with `--lease-name` over
//! one shared state directory (the ReadWriteMany volume of `deploy/`) → one leader, one
//! standby that applies nothing. The leader is killed mid-wave (its task dropped where it
//! stands, its Lease not released, as a SIGKILL leaves it) while a never-ready Deployment
//! holds wave 1; the standby takes over within the lease duration and finishes that revision
//! once: one revision in the store, healthy, each object applied once by the new leader.
//!
//! Runs unchanged against a real API server (`STACKWAVE_TEST_KUBECONFIG`): the Lease lives in
//! the test's namespace, which cleanup deletes.

use serde_json::json;
use stackwave::record::Store;
use stackwave_tests::{free_port, http_get, TestCluster};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lease duration of both agents.
const LEASE: Duration = Duration::from_secs(4);

fn sh_git(dir: &Path, args: &[&str]) {
    stackwave_tests::git(dir, args);
}

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A repository of three components: `base` (wave 0, a ConfigMap), `app` (wave 1, the
/// Deployment `hold`), `web` (wave 2, a ConfigMap).
fn make_repo(root: &Path, ns: &str) -> PathBuf {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    sh_git(&repo, &["init", "-q", "-b", "main"]);
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    write(
        &repo,
        "stackwave.yaml",
        &format!(
            "genestack:\n  path: {e}\ncharts:\n  path: {e}\nmanifests:\n- name: base\n  path: m/base\n  wave: 0\n- name: app\n  path: m/app\n  wave: 1\n- name: web\n  path: m/web\n  wave: 2\ncomponents: []\n",
            e = empty.display()
        ),
    );
    for (c, body) in [
        ("base", format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\ndata:\n  region: RegionOne\n")),
        ("app", format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: hold\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: hold\n  template:\n    metadata:\n      labels:\n        app: hold\n    spec:\n      containers:\n      - name: hold\n        image: nginx:1.27\n")),
        ("web", format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: {ns}\ndata:\n  port: \"80\"\n")),
    ] {
        write(&repo, &format!("m/{c}/kustomization.yaml"), "resources:\n- o.yaml\n");
        write(&repo, &format!("m/{c}/o.yaml"), &body);
    }
    sh_git(&repo, &["add", "-A"]);
    sh_git(&repo, &["commit", "-q", "-m", "three waves"]);
    repo
}

fn options(
    tc: &TestCluster,
    repo: &Path,
    state: &Path,
    ns: &str,
    identity: &str,
    port: u16,
) -> stackwave::run::RunOptions {
    stackwave::run::RunOptions {
        repo: format!("file://{}", repo.display()),
        branch: "main".into(),
        instance: stackwave::cluster::instance::DEFAULT_NAME.into(),
        state: state.to_path_buf(),
        server: tc.url(),
        kubeconfig: tc.kubeconfig(),
        interval: Duration::from_secs(3600),
        once: false,
        detect_only: false,
        settings: stackwave::reconcile::Settings {
            health_timeout: Duration::from_secs(120),
            ..Default::default()
        },
        metrics_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        webhook_addr: None,
        webhook_secret_file: None,
        watch: false,
        allowed_signers: None,
        lease: Some(stackwave::lease::LeaseConfig {
            name: "stackwave".into(),
            namespace: ns.into(),
            duration: LEASE,
            identity: identity.into(),
        }),
        store_key: None,
        auth: Default::default(),
    }
}

/// The Lease's holder, if any.
async fn holder(tc: &TestCluster, ns: &str) -> Option<String> {
    let l = tc
        .cluster
        .get(
            &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "stackwave", "namespace": ns}}),
        )
        .await
        .unwrap()?;
    l.pointer("/spec/holderIdentity")
        .and_then(|h| h.as_str())
        .map(str::to_string)
}

/// The sum of a metric family's samples in an agent's `/metrics`.
fn metric_sum(port: u16, family: &str) -> f64 {
    let (_, text) = http_get(port, "/metrics").unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `Some` once the agent on `port` answers `/readyz` with 200.
fn ready(port: u16) -> Option<()> {
    (http_get(port, "/readyz").ok()?.0 == 200).then_some(())
}

fn revisions(state: &Path) -> Vec<stackwave::record::Revision> {
    Store::open_existing(&state.join("revisions.sqlite"), &state.join("store.key"))
        .and_then(|s| s.revisions())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_takes_over_a_killed_leader_and_finishes_its_revision_once() {
    let rules = kube_standin::Rules::default()
        .with_delay(Duration::from_millis(200))
        .never_ready("Deployment/hold");
    stackwave::logging::init(stackwave::logging::Format::Text);
    let tc = TestCluster::start(rules).await;
    let ns = tc.ns("leader");
    tc.cluster
        .create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .await
        .unwrap();
    let root = std::env::temp_dir().join(format!("stackwave-leader-{}", tc.suffix));
    let _ = std::fs::remove_dir_all(&root);
    let repo = make_repo(&root, &ns);
    let state = root.join("state");
    let instance = stackwave::cluster::instance::Instance::new(
        stackwave::cluster::instance::DEFAULT_NAME,
        &format!("file://{}", repo.display()),
    )
    .unwrap();
    for c in ["base", "app", "web"] {
        tc.cleanup_later(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": stackwave::cluster::inventory::inventory_name(&instance, c),
            "namespace": stackwave::cluster::inventory::INVENTORY_NAMESPACE}}),
        );
    }

    let local = tokio::task::LocalSet::new();
    let ports = [free_port(), free_port()];
    let mut agents = Vec::new();
    for (i, id) in ["agent-a", "agent-b"].into_iter().enumerate() {
        let opts = options(&tc, &repo, &state, &ns, id, ports[i]);
        agents.push(local.spawn_local(async move {
            if let Err(e) = stackwave::run::run(opts).await {
                panic!("agent failed to start: {e}");
            }
        }));
    }
    let body = async {
        // One leader; it reaches wave 1 and waits there on `hold`.
        let leader = wait("a Lease holder", Duration::from_secs(30), async || {
            holder(&tc, &ns).await
        })
        .await;
        let (li, si) = if leader == "agent-a" { (0, 1) } else { (1, 0) };
        let hold = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "hold", "namespace": ns}});
        wait(
            "the leader applying wave 1",
            Duration::from_secs(60),
            async || tc.cluster.get(&hold).await.unwrap().map(|_| ()),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = revisions(&state);
        assert_eq!(before.len(), 1, "{before:?}");
        assert_eq!(before[0].outcome, "applying");
        let web = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": ns}});
        assert!(tc.cluster.get(&web).await.unwrap().is_none(), "wave 2 ran");
        // The standby applies nothing and is ready; the leader is not ready before its first
        // reconcile ends.
        wait("the standby ready", Duration::from_secs(10), async || {
            ready(ports[si])
        })
        .await;
        assert_eq!(http_get(ports[li], "/readyz").unwrap().0, 503);
        assert_eq!(
            metric_sum(ports[si], "stackwave_objects_applied_total"),
            0.0
        );
        assert_eq!(
            metric_sum(ports[li], "stackwave_objects_applied_total"),
            2.0
        );

        // Kill the leader mid-wave; `hold` becomes ready from now on.
        agents[li].abort();
        let killed = Instant::now();
        tc.set_rules(kube_standin::Rules::default().with_delay(Duration::from_millis(200)));
        let standby = ["agent-a", "agent-b"][si];
        wait("the standby holding the Lease", LEASE * 3, async || {
            (holder(&tc, &ns).await.as_deref() == Some(standby)).then_some(())
        })
        .await;
        let took_over = killed.elapsed();
        assert!(
            took_over <= LEASE + Duration::from_secs(3),
            "takeover after {took_over:?} (lease {LEASE:?})"
        );
        wait(
            "the revision healthy",
            Duration::from_secs(60),
            async || {
                let r = revisions(&state);
                (r.first()?.outcome == "healthy").then_some(())
            },
        )
        .await;
        let after = revisions(&state);
        assert_eq!(after.len(), 1, "one revision, continued: {after:?}");
        assert_eq!(after[0].id, before[0].id);
        assert!(tc.cluster.get(&web).await.unwrap().is_some());
        // Each object applied once by the new leader, and one healthy outcome.
        wait(
            "the new leader ready",
            Duration::from_secs(10),
            async || ready(ports[si]),
        )
        .await;
        assert_eq!(
            metric_sum(ports[si], "stackwave_objects_applied_total"),
            3.0
        );
        assert_eq!(
            metric_sum(ports[si], "stackwave_revisions_total{outcome=\"healthy\"}"),
            1.0
        );
        eprintln!(
            "takeover after {took_over:?}, revision {} finished once",
            after[0].id
        );
    };
    local.run_until(body).await;
    drop(local);
    let _ = std::fs::remove_dir_all(&root);
    tc.cleanup().await;
}
