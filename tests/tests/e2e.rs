//! End to end: real Git repositories (made with the `git` CLI, fetched over `file://`), the
//! reconcile loop (source → render → plan → apply → record), and the in-process API test
//! server — or the server named by `STACKWAVE_TEST_KUBECONFIG` — with the controller
//! stand-in beside it (`stackwave_tests::TestCluster`: unique namespaces, cleanup on drop).
//!
//! Covers issue 5's (a) waves with health gates, (b) one-component changes, (d) `git revert`,
//! (e) instant rollback five revisions back, (f) broken commits change nothing, (g) the
//! over-threshold delete guard. The repos hold kustomize manifests as components, so the
//! tests need neither Helm nor `../shared`; `stackwave demo` runs the same loop over the real
//! Genestack charts.

use serde_json::{json, Value as Json};
use stackwave::cluster::Cluster;
use stackwave::component::Catalog;
use stackwave::reconcile::{Agent, Outcome, Progress, Settings};
use stackwave::record::Store;
use stackwave::source::Source;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The stand-in's time from a new generation to ready status.
const READY_DELAY: Duration = Duration::from_millis(300);

struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn new(root: &Path) -> Repo {
        let dir = root.join("repo");
        std::fs::create_dir_all(&dir).unwrap();
        let r = Repo { dir };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    fn git(&self, args: &[&str]) -> String {
        stackwave_tests::git(&self.dir, args)
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn commit(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
    }
}

struct Fixture {
    tc: stackwave_tests::TestCluster,
    cluster: Cluster,
    agent: Agent,
    source: Source,
    repo: Repo,
    root: PathBuf,
    ns: String,
    events: Mutex<Vec<Progress>>,
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stackwave-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn deployment(ns: &str, name: &str, replicas: i64, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: {name}\n        image: {image}\n"
    )
}

fn kustomization(files: &[String]) -> String {
    let mut s = "resources:\n".to_string();
    for f in files {
        s.push_str(&format!("- {f}\n"));
    }
    s
}

/// An agent over the fixture's state directory (a second one models a restarted process).
fn new_agent(cluster: &Cluster, root: &Path, in_process: bool) -> Agent {
    let store = Store::open(
        &root.join("state/revisions.sqlite"),
        &root.join("state/store.key"),
    )
    .unwrap();
    Agent::new(
        cluster.clone(),
        store,
        Catalog::builtin().unwrap(),
        Settings {
            health_timeout: health_timeout(in_process),
            ..Default::default()
        },
    )
    .unwrap()
}

/// How long a wave waits for health: the stand-in answers within its delay on any server;
/// one out of process gets more room for its latency.
fn health_timeout(in_process: bool) -> Duration {
    Duration::from_secs(if in_process { 4 } else { 20 })
}

/// The components the fixtures' repositories hold (their inventories are removed at cleanup).
const COMPONENTS: [&str; 3] = ["base", "app", "web"];

impl Fixture {
    async fn new(name: &str, never_ready: &[&str]) -> Fixture {
        Fixture::with_delay(name, never_ready, READY_DELAY).await
    }

    async fn with_delay(name: &str, never_ready: &[&str], delay: Duration) -> Fixture {
        let root = tmp(name);
        let mut rules = kube_standin::Rules::default().with_delay(delay);
        for p in never_ready {
            rules = rules.never_ready(p);
        }
        let tc = stackwave_tests::TestCluster::start(rules).await;
        let ns = tc.ns(&format!("e2e-{name}"));
        let cluster = tc.cluster.clone();
        let mut agent = new_agent(&cluster, &root, tc.in_process());
        let repo = Repo::new(&root);
        std::fs::create_dir_all(root.join("empty")).unwrap();
        let url = format!("file://{}", repo.dir.display());
        // The identity `stackwave run --repo <url>` has, so both act as one agent.
        let instance = stackwave::cluster::instance::Instance::new(
            stackwave::cluster::instance::DEFAULT_NAME,
            &url,
        )
        .unwrap();
        for c in COMPONENTS {
            tc.cleanup_later(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": stackwave::cluster::inventory::inventory_name(&instance, c),
                "namespace": stackwave::cluster::inventory::INVENTORY_NAMESPACE}}),
            );
        }
        agent.set_instance(instance).unwrap();
        // The source is opened lazily on first fetch (the repo has no commit yet).
        let source = {
            repo.write("README", "desired state\n");
            repo.commit("empty");
            Source::open(&url, "main", &root.join("state")).unwrap()
        };
        Fixture {
            tc,
            cluster,
            agent,
            source,
            repo,
            root,
            ns,
            events: Mutex::new(Vec::new()),
        }
    }

    /// The standard layout: base (wave 0: Namespace, settings), app (wave 1: `api` and
    /// `extra` ConfigMaps), web (wave 2).
    fn write_state(&self, api_replicas: i64, api_image: &str, extra_configmaps: usize) {
        let ns = &self.ns;
        let empty = self.root.join("empty");
        self.repo.write(
            "stackwave.yaml",
            &format!(
                "genestack:\n  path: {e}\ncharts:\n  path: {e}\nmanifests:\n- name: base\n  path: manifests/base\n  wave: 0\n- name: app\n  path: manifests/app\n  wave: 1\n- name: web\n  path: manifests/web\n  wave: 2\ncomponents: []\n",
                e = empty.display()
            ),
        );
        self.repo.write(
            "manifests/base/kustomization.yaml",
            &kustomization(&["ns.yaml".into()]),
        );
        self.repo.write(
            "manifests/base/ns.yaml",
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\ndata:\n  region: RegionOne\n"),
        );
        let mut files = vec!["api.yaml".to_string()];
        self.repo.write(
            "manifests/app/api.yaml",
            &deployment(ns, "api", api_replicas, api_image),
        );
        let _ = std::fs::remove_dir_all(self.repo.dir.join("manifests/app/extra"));
        for i in 0..extra_configmaps {
            let f = format!("extra/cm{i}.yaml");
            self.repo.write(
                &format!("manifests/app/{f}"),
                &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-{i}\n  namespace: {ns}\ndata:\n  n: \"{i}\"\n"),
            );
            files.push(f);
        }
        self.repo
            .write("manifests/app/kustomization.yaml", &kustomization(&files));
        self.repo.write(
            "manifests/web/kustomization.yaml",
            &kustomization(&["web.yaml".into()]),
        );
        self.repo.write(
            "manifests/web/web.yaml",
            &deployment(ns, "web", 1, "nginx:1.27"),
        );
    }

    /// One loop iteration: fetch, export, sync; progress collected in `events`.
    async fn step(&mut self) -> Outcome {
        self.events.lock().unwrap().clear();
        let commit = self.source.fetch().unwrap();
        let checkout = self
            .source
            .export(&commit.id, &self.root.join("checkout"))
            .unwrap();
        let events = &self.events;
        self.agent
            .sync(&checkout, &commit, &|p| events.lock().unwrap().push(p))
            .await
            .unwrap()
    }

    async fn live(&self, kind: &str, name: &str) -> Option<Json> {
        let (av, k) = match kind {
            "Deployment" => ("apps/v1", "Deployment"),
            _ => ("v1", kind),
        };
        self.cluster
            .get(&json!({"apiVersion": av, "kind": k, "metadata": {"name": name, "namespace": self.ns}}))
            .await
            .unwrap()
    }

    async fn replicas(&self, name: &str) -> i64 {
        self.live("Deployment", name).await.expect("deployment")["spec"]["replicas"]
            .as_i64()
            .unwrap()
    }

    fn applied_ids(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Progress::Applied { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    /// Revision numbers in the store, newest first.
    fn revision_ids(&self) -> Vec<i64> {
        self.agent
            .store
            .revisions()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    }

    fn revisions(&self) -> usize {
        self.agent.store.revisions().unwrap().len()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The repository and state directories (the cluster side: `TestCluster`'s drop).
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn healthy(o: &Outcome) -> Vec<String> {
    match o {
        Outcome::Healthy { changed, .. } => changed.clone(),
        other => panic!("expected a healthy revision, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn waves_health_gates_one_component_changes_and_revert() {
    let mut f = Fixture::new("waves", &[]).await;
    f.write_state(1, "nginx:1.27", 2);
    f.repo.commit("initial desired state");

    // (a) The first commit: every component, wave by wave.
    let out = f.step().await;
    assert_eq!(healthy(&out), ["base", "app", "web"]);
    let order: Vec<String> = f
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Progress::WaveStart { wave, .. } => Some(format!("start {wave}")),
            Progress::WaveHealthy { wave, millis } => {
                if *wave == 1 {
                    // The gate waited for the (stand-in's) rollout of `api`.
                    assert!(
                        *millis >= READY_DELAY.as_millis(),
                        "wave 1 healthy after {millis} ms"
                    );
                }
                Some(format!("healthy {wave}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "start 0",
            "healthy 0",
            "start 1",
            "healthy 1",
            "start 2",
            "healthy 2"
        ]
    );
    assert_eq!(f.replicas("api").await, 1);
    assert!(f.live("ConfigMap", "extra-1").await.is_some());

    // (b) A change to one component touches only it.
    f.write_state(3, "nginx:1.27", 2);
    f.repo.commit("api: three replicas");
    let out = f.step().await;
    assert_eq!(healthy(&out), ["app"]);
    let ids = f.applied_ids();
    assert!(!ids.is_empty());
    assert!(
        ids.iter()
            .all(|i| !i.contains("/web") && !i.contains("settings")),
        "only app's objects are applied: {ids:?}"
    );
    assert_eq!(f.replicas("api").await, 3);
    assert_eq!(f.replicas("web").await, 1);

    // (d) `git revert` goes through the normal loop and restores the previous objects.
    f.repo.git(&["revert", "--no-edit", "HEAD"]);
    let out = f.step().await;
    assert_eq!(healthy(&out), ["app"]);
    assert_eq!(f.replicas("api").await, 1);

    // Nothing changed: a loop applies nothing and records nothing.
    assert_eq!(f.step().await, Outcome::Unchanged);
    assert!(f.applied_ids().is_empty());

    let revs = f.agent.store.revisions().unwrap();
    assert_eq!(revs.len(), 3);
    assert!(revs.iter().all(|r| r.outcome == "healthy"), "{revs:?}");
    assert!(revs
        .iter()
        .any(|r| r.message.starts_with("Revert \"api: three replicas\"")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_wave_stops_the_revision_there() {
    let mut f = Fixture::new("gate", &["Deployment/api"]).await;
    f.write_state(1, "nginx:1.27", 0);
    f.repo.commit("initial desired state");
    // `api` never becomes ready (the stand-in's rule).
    let out = f.step().await;
    match out {
        Outcome::Failed { wave, reason, .. } => {
            assert_eq!(wave, 1);
            assert!(
                reason.contains("Deployment/") && reason.contains("api"),
                "{reason}"
            );
        }
        other => panic!("expected a failed revision, got {other:?}"),
    }
    assert!(
        f.live("Deployment", "web").await.is_none(),
        "wave 2 is untouched after wave 1 failed"
    );
    let revs = f.agent.store.revisions().unwrap();
    assert_eq!(revs[0].outcome, "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wave_with_a_webhook_waits_for_its_backend_endpoints() {
    let mut f = Fixture::new("webhook", &[]).await;
    let ns = f.ns.clone();
    // web gains an admission webhook served by Service `hook`, whose selector first matches
    // no pod: the Service exists (plain kstatus would call it Current) but nothing answers.
    let web = |selector: &str| {
        format!(
            "{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: hook\n  namespace: {ns}\nspec:\n  selector:\n    app: {selector}\n  ports:\n  - port: 443\n    targetPort: 8443\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: {ns}-hook\nwebhooks:\n- name: check.example.com\n  clientConfig:\n    service:\n      namespace: {ns}\n      name: hook\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  failurePolicy: Ignore\n  rules:\n  - apiGroups: [example.com]\n    apiVersions: [v1]\n    operations: [CREATE]\n    resources: [nothings]\n",
            deployment(&ns, "web", 1, "nginx:1.27")
        )
    };
    f.tc.cleanup_later(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": format!("{ns}-hook")}}));
    f.write_state(1, "nginx:1.27", 0);
    f.repo.write("manifests/web/web.yaml", &web("nobody"));
    f.repo.commit("web: a webhook without a backend");
    match f.step().await {
        Outcome::Failed { wave, reason, .. } => {
            assert_eq!(wave, 2);
            assert!(
                reason.contains("Service/") && reason.contains("no ready endpoints"),
                "{reason}"
            );
        }
        other => panic!("expected the webhook wave to fail, got {other:?}"),
    }
    // Pointed at the web pods, the backend gets ready endpoints and the wave is healthy.
    f.repo.write("manifests/web/web.yaml", &web("web"));
    f.repo.commit("web: the webhook served by the web pods");
    let out = f.step().await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
}

/// A catalog entry's `waitFor` gate holds the next wave: a repository's own entry `base`
/// (a kustomize application, `helm.timeout` 1 s) applies a custom resource whose `Ready`
/// condition its operator would write. While no controller has written it, the wave fails
/// after the entry's timeout (not the agent's 60 s `--health-timeout`), naming the object
/// and the condition; the next wave is not applied and nothing is pruned. Once the status is
/// written through the API, as a controller would, the same commit goes on to the next wave.
#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_gate_holds_the_next_wave_until_its_condition_holds() {
    let mut f = Fixture::new("waitfor", &[]).await;
    f.agent.settings.health_timeout = Duration::from_secs(60);
    // The gated commit drops one of three objects (the delete guard's 10% would refuse it).
    f.agent.settings.max_delete_share = 1.0;
    let ns = f.ns.clone();
    let group = format!("{}.gates.stackwave.test", f.tc.suffix);
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}});
    f.tc.cleanup_later(crd.clone());
    f.cluster.create(&crd).await.unwrap();
    let established = Instant::now();
    loop {
        let live = f.cluster.get(&crd).await.unwrap().unwrap();
        let conds = live["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if conds
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
        {
            break;
        }
        assert!(
            established.elapsed() < Duration::from_secs(30),
            "CRD never Established"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let timeout = if f.tc.in_process() { "1s" } else { "5s" };
    let empty = f.root.join("empty");
    let write = |repo: &Repo, gated: bool, app_value: &str| {
        repo.write(
            "stackwave.yaml",
            &format!(
                "genestack:\n  path: {e}\ncharts:\n  path: {e}\nmanifests:\n- name: app\n  path: manifests/app\n  wave: 1\ncomponents: [base]\n",
                e = empty.display()
            ),
        );
        let gate = if gated {
            format!("helm: {{timeout: {timeout}}}\nwaitFor:\n  - {{apiVersion: {group}/v1, kind: Gadget, namespace: {ns}, name: g, condition: Ready}}\n")
        } else {
            String::new()
        };
        repo.write(
            "components/base.yaml",
            &format!("name: base\nkind: kustomize\nwave: 0\nrelease: {{name: base, namespace: {ns}}}\nkustomize: {{path: base/app}}\n{gate}"),
        );
        // Ungated, base holds a ConfigMap `old`; gated, a Gadget instead.
        let body = if gated {
            format!("apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g\n  namespace: {ns}\nspec:\n  size: 1\n")
        } else {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old\n  namespace: {ns}\n")
        };
        repo.write(
            "kustomize/base/app/objects.yaml",
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n{body}"),
        );
        repo.write(
            "kustomize/base/app/kustomization.yaml",
            &kustomization(&["objects.yaml".into()]),
        );
        repo.write(
            "manifests/app/kustomization.yaml",
            &kustomization(&["api.yaml".into()]),
        );
        repo.write(
            "manifests/app/api.yaml",
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: api\n  namespace: {ns}\ndata:\n  v: \"{app_value}\"\n"),
        );
    };
    write(&f.repo, false, "1");
    f.repo.commit("base without a gate");
    assert_eq!(healthy(&f.step().await), ["base", "app"]);

    write(&f.repo, true, "2");
    f.repo.commit("base: a Gadget its operator must make Ready");
    let started = Instant::now();
    let out = f.step().await;
    let Outcome::Failed { wave, reason, .. } = &out else {
        panic!("the gate fails the wave: {out:?}")
    };
    assert_eq!(*wave, 0);
    assert!(
        reason.contains(&format!("not healthy within {timeout}"))
            && reason.contains("component base")
            && reason.contains(&format!("Gadget/{ns}/g Ready"))
            && reason.contains("no condition Ready"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed after the entry's timeout, not --health-timeout"
    );
    assert_eq!(f.agent.store.revisions().unwrap()[0].outcome, "failed");
    assert_eq!(
        f.live("ConfigMap", "api").await.unwrap()["data"]["v"],
        "1",
        "the next wave is not applied"
    );
    assert!(
        f.live("ConfigMap", "old").await.is_some(),
        "nothing is pruned after a failed wave"
    );

    // The operator's status, written through the API as a controller writes it.
    let gvk = kube::core::GroupVersionKind::gvk(&group, "v1", "Gadget");
    let ar = kube::core::ApiResource::from_gvk_with_plural(&gvk, "gadgets");
    let api: kube::Api<kube::core::DynamicObject> =
        kube::Api::namespaced_with(f.cluster.client().clone(), &ns, &ar);
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "Reconciled", "message": "ready", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status(
        "g",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .unwrap();
    // The same commit again: the gate holds, the next wave goes on, then the prune.
    assert_eq!(healthy(&f.step().await), ["base", "app"]);
    assert_eq!(f.live("ConfigMap", "api").await.unwrap()["data"]["v"], "2");
    assert!(
        f.live("ConfigMap", "old").await.is_none(),
        "pruned once healthy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_five_back_is_instant_and_pins() {
    let mut f = Fixture::new("rollback", &[]).await;
    for r in 1..=6 {
        f.write_state(r, "nginx:1.27", 0);
        f.repo.commit(&format!("api: {r} replicas"));
        healthy(&f.step().await);
    }
    assert_eq!(f.replicas("api").await, 6);
    let first = f
        .agent
        .store
        .revisions()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .min()
        .unwrap();

    // (e) Rollback re-applies the stored objects: no fetch, no render.
    let started = Instant::now();
    let first_apply: Mutex<Option<Duration>> = Mutex::new(None);
    let waves: Mutex<Vec<i32>> = Mutex::new(Vec::new());
    let out = f
        .agent
        .rollback(first, false, &|p| match p {
            Progress::Applied { .. } => {
                first_apply.lock().unwrap().get_or_insert(started.elapsed());
            }
            Progress::WaveStart { wave, .. } => waves.lock().unwrap().push(wave),
            _ => {}
        })
        .await
        .unwrap();
    assert_eq!(
        *waves.lock().unwrap(),
        [0, 1, 2],
        "rollback keeps the repo's waves"
    );
    healthy(&out);
    let t = first_apply
        .lock()
        .unwrap()
        .expect("rollback applied objects");
    assert!(t < Duration::from_secs(1), "first apply after {t:?}");
    assert_eq!(f.agent.pinned(), Some(first));
    assert_eq!(f.replicas("api").await, 1);
    assert_eq!(f.revisions(), 7, "the rollback is recorded as a revision");

    // Pinned: the next loop over the same head does not undo the rollback.
    assert_eq!(f.step().await, Outcome::Pinned { revision: first });
    assert_eq!(f.replicas("api").await, 1);
    // A newer commit lifts the pin.
    f.write_state(4, "nginx:1.27", 0);
    f.repo.commit("api: four replicas");
    assert_eq!(healthy(&f.step().await), ["app"]);
    assert_eq!(f.agent.pinned(), None);
    assert_eq!(f.replicas("api").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_commits_change_nothing_and_are_reported() {
    let mut f = Fixture::new("broken", &[]).await;
    f.write_state(2, "nginx:1.27", 1);
    f.repo.commit("initial desired state");
    healthy(&f.step().await);
    let before = f.revisions();

    // Malformed YAML in an object file.
    f.write_state(5, "nginx:1.27", 1);
    f.repo.write(
        "manifests/app/api.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: [\n",
    );
    f.repo.commit("broken YAML");
    match f.step().await {
        Outcome::Refused { reason } => {
            assert!(reason.contains("app"), "names the component: {reason}");
            assert!(reason.contains("api.yaml"), "names the file: {reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A missing file referenced by a kustomization.
    f.write_state(5, "nginx:1.27", 1);
    f.repo.write(
        "manifests/web/kustomization.yaml",
        &kustomization(&["web.yaml".into(), "missing.yaml".into()]),
    );
    f.repo.commit("reference a file that is not there");
    match f.step().await {
        Outcome::Refused { reason } => assert!(reason.contains("missing.yaml"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A malformed stackwave.yaml.
    f.repo.write("stackwave.yaml", "manifests: [\n");
    f.repo.commit("broken config");
    match f.step().await {
        Outcome::Refused { reason } => assert!(reason.contains("stackwave.yaml"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    assert_eq!(
        f.replicas("api").await,
        2,
        "the last good revision stays applied"
    );
    assert!(
        f.live("ConfigMap", "extra-0").await.is_some(),
        "nothing pruned"
    );
    assert_eq!(
        f.revisions(),
        before,
        "refused commits record no applied revision"
    );

    // Fixing the repo applies again.
    f.write_state(5, "nginx:1.27", 1);
    f.repo.commit("fixed");
    assert_eq!(healthy(&f.step().await), ["app"]);
    assert_eq!(f.replicas("api").await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_threshold_deletes_are_refused_and_small_ones_pruned() {
    let mut f = Fixture::new("guard", &[]).await;
    f.write_state(1, "nginx:1.27", 8);
    f.repo.commit("initial desired state: 12 objects");
    healthy(&f.step().await);

    // (g) Deleting 4 of 12 managed objects (33%) is over the 10% default: refused.
    f.write_state(1, "nginx:1.27", 4);
    f.repo.commit("drop four ConfigMaps");
    match f.step().await {
        Outcome::Refused { reason } => {
            assert!(reason.contains("delete 4 of 12"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(f.live("ConfigMap", "extra-7").await.is_some());

    // One of 12 (8%) is under the threshold: applied, and pruned once healthy.
    f.write_state(1, "nginx:1.27", 7);
    f.repo.commit("drop one ConfigMap");
    assert_eq!(healthy(&f.step().await), ["app"]);
    assert!(f.live("ConfigMap", "extra-7").await.is_none(), "pruned");
    assert!(f.live("ConfigMap", "extra-6").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_wave_finishes_the_revision_after_restart() {
    let mut f = Fixture::with_delay("restart", &[], Duration::from_secs(2)).await;
    f.write_state(1, "nginx:1.27", 0);
    f.repo.commit("initial desired state");
    let commit = f.source.fetch().unwrap();
    let checkout = f
        .source
        .export(&commit.id, &f.root.join("checkout"))
        .unwrap();

    // (h) The first process applies wave 0, then wave 1, and is killed (its future dropped
    // at an await point) while wave 1 waits for health.
    let mut first = new_agent(&f.cluster, &f.root, f.tc.in_process());
    tokio::select! {
        out = first.sync(&checkout, &commit, &|_| {}) => panic!("finished before the kill: {out:?}"),
        _ = async {
            while f.live("Deployment", "api").await.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } => {}
    }
    drop(first);
    assert!(
        f.live("Deployment", "web").await.is_none(),
        "killed before wave 2"
    );
    let revs = f.agent.store.revisions().unwrap();
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0].outcome, "applying");

    // The restarted process restores from the store and finishes that same revision.
    assert_eq!(f.agent.restore().unwrap(), None, "nothing was healthy yet");
    assert_eq!(
        f.agent.run.unfinished,
        Some((revs[0].id, commit.id.clone()))
    );
    let out = f.step().await;
    assert_eq!(healthy(&out), ["base", "app", "web"]);
    assert!(matches!(out, Outcome::Healthy { revision, .. } if revision == revs[0].id));
    let after = f.agent.store.revisions().unwrap();
    assert_eq!(after.len(), 1, "no duplicate record: {after:?}");
    assert_eq!(after[0].outcome, "healthy");
    assert_eq!(f.replicas("web").await, 1);

    // A third process restores the healthy state: the same commit is a no-op.
    let mut third = new_agent(&f.cluster, &f.root, f.tc.in_process());
    assert_eq!(third.restore().unwrap(), Some(revs[0].id));
    let out = third.sync(&checkout, &commit, &|_| {}).await.unwrap();
    assert_eq!(out, Outcome::Unchanged);
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_band_edits_are_reported_then_corrected() {
    let mut f = Fixture::new("drift", &[]).await;
    f.write_state(2, "nginx:1.27", 0);
    f.repo.commit("initial desired state");
    healthy(&f.step().await);
    assert!(
        f.agent.drift(false).await.unwrap().is_empty(),
        "no drift right after apply"
    );

    // Someone edits the image with another field manager (as `kubectl set image` would).
    let api = kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
        f.cluster.client().clone(),
        &f.ns,
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "apps",
            "v1",
            "Deployment",
        )),
    );
    api.patch(
        "api",
        &kube::api::PatchParams { field_manager: Some("kubectl-set".into()), ..Default::default() },
        &kube::api::Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "nginx:hotfix"}]}}}})),
    )
    .await
    .unwrap();
    let image = |d: Json| d["spec"]["template"]["spec"]["containers"][0]["image"].clone();

    // (c) Detect-only: reported as a metric and an Event, the live object left alone.
    let found = f.agent.drift(false).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].path.ends_with("/image"), "{found:?}");
    assert_eq!(found[0].live, json!("nginx:hotfix"));
    assert_eq!(
        image(f.live("Deployment", "api").await.unwrap()),
        json!("nginx:hotfix")
    );
    let metrics = f.agent.metrics.encode();
    assert!(
        metrics.contains("stackwave_drift_fields{component=\"app\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stackwave_drift_fields{component=\"web\"} 0"),
        "{metrics}"
    );
    let events = kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
        f.cluster.client().clone(),
        &f.ns,
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("", "v1", "Event")),
    )
    .list(&Default::default())
    .await
    .unwrap();
    let drift_event = events
        .items
        .iter()
        .find(|e| e.data["reason"] == "DriftDetected" && e.data["involvedObject"]["name"] == "api")
        .expect("a DriftDetected Event for the Deployment");
    assert_eq!(drift_event.data["type"], "Warning");
    assert!(
        !drift_event.data["message"]
            .as_str()
            .unwrap()
            .contains("hotfix"),
        "Events name paths, never values"
    );

    // Correct: re-applied, no drift left, the metric back to zero.
    let fixed = f.agent.drift(true).await.unwrap();
    assert_eq!(fixed.len(), 1);
    assert_eq!(
        image(f.live("Deployment", "api").await.unwrap()),
        json!("nginx:1.27")
    );
    assert!(f.agent.drift(false).await.unwrap().is_empty());
    assert!(f
        .agent
        .metrics
        .encode()
        .contains("stackwave_drift_fields{component=\"app\"} 0"));

    // Per component: `detectOnly: [app]` reports app's drift and corrects web's.
    let cfg = f.repo.dir.join("stackwave.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}detectOnly: [app]\n")).unwrap();
    f.repo.commit("app: drift is reported only");
    let _ = f.step().await;
    let hotfix = |name: &'static str| {
        let api = api.clone();
        async move {
            api.patch(
                name,
                &kube::api::PatchParams { field_manager: Some("kubectl-set".into()), ..Default::default() },
                &kube::api::Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": name, "image": "nginx:hotfix"}]}}}})),
            )
            .await
            .unwrap();
        }
    };
    hotfix("api").await;
    hotfix("web").await;
    let found = f.agent.drift(true).await.unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        image(f.live("Deployment", "api").await.unwrap()),
        json!("nginx:hotfix")
    );
    assert_eq!(
        image(f.live("Deployment", "web").await.unwrap()),
        json!("nginx:1.27")
    );
    let metrics = f.agent.metrics.encode();
    assert!(
        metrics.contains("stackwave_drift_fields{component=\"app\"} 1")
            && metrics.contains("stackwave_drift_fields{component=\"web\"} 0"),
        "{metrics}"
    );
}

impl Fixture {
    /// `stackwave run` options over the fixture's cluster, repo and state directory.
    fn run_options(&self, repo: String, state: PathBuf) -> stackwave::run::RunOptions {
        let (server, kubeconfig) = (self.tc.url(), self.tc.kubeconfig());
        stackwave::run::RunOptions {
            repo,
            branch: "main".into(),
            instance: stackwave::cluster::instance::DEFAULT_NAME.into(),
            state,
            server,
            kubeconfig,
            interval: Duration::from_secs(3600),
            once: false,
            detect_only: false,
            settings: Settings {
                health_timeout: health_timeout(self.tc.in_process()),
                ..Default::default()
            },
            metrics_addr: None,
            webhook_addr: None,
            webhook_secret_file: None,
            watch: false,
            allowed_signers: None,
            lease: None,
            store_key: None,
            auth: Default::default(),
        }
    }

    /// One `stackwave run --once` iteration over the fixture's repo and state directory
    /// (a separate agent process, as `stackwave sync` is).
    async fn run_once(&self) {
        let mut opts = self.run_options(
            format!("file://{}", self.repo.dir.display()),
            self.root.join("state"),
        );
        opts.once = true;
        stackwave::run::run(opts).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_diff_status_suspend_resume_and_rollback_by_commit() {
    use stackwave::control;
    use stackwave::diff::Change;
    let mut f = Fixture::new("control", &[]).await;
    let state = f.root.join("state");
    f.write_state(1, "nginx:1.27", 0);
    f.repo.commit("api: one replica");
    let first = f.repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    f.run_once().await;
    assert_eq!(f.replicas("api").await, 1);
    let s = control::status(&state).unwrap();
    let applied = s.applied.clone().expect("an applied revision");
    assert_eq!(applied.commit, first);
    assert_eq!(
        s.components
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["app", "base", "web"]
    );
    assert!(s.drift_checked_at.is_some() && !s.suspended && s.pinned.is_none());

    // diff: the next commit changes exactly the api Deployment's replicas.
    f.write_state(2, "nginx:1.27", 0);
    f.repo.commit("api: two replicas");
    f.agent.refresh().unwrap();
    let diffs = f.agent.diff(&f.repo.dir, &|_| {}).await.unwrap();
    assert_eq!(diffs.len(), 1, "{diffs:#?}");
    assert_eq!(diffs[0].change, Change::Update);
    assert_eq!(diffs[0].object, format!("Deployment/{}/api", f.ns));
    assert!(
        diffs[0].diff.contains("-  replicas: 1") && diffs[0].diff.contains("+  replicas: 2"),
        "{}",
        diffs[0].diff
    );

    // suspend: a loop applies nothing; status says so.
    control::suspend(&state, "maintenance window").unwrap();
    f.run_once().await;
    assert_eq!(f.replicas("api").await, 1, "suspended agents apply nothing");
    let s = control::status(&state).unwrap();
    assert!(s.suspended && s.suspend_reason.as_deref() == Some("maintenance window"));
    control::resume(&state).unwrap();
    f.run_once().await;
    assert_eq!(f.replicas("api").await, 2);
    assert!(f.agent.diff(&f.repo.dir, &|_| {}).await.unwrap().is_empty());

    // rollback by commit prefix from another process: the long-lived agent sees the pin
    // and the rolled-back state on its next loop and does not undo it.
    let out = control::rollback(
        &state,
        f.cluster.clone(),
        &first[..8],
        false,
        Settings {
            health_timeout: Duration::from_secs(30),
            ..Default::default()
        },
        &|_| {},
    )
    .await
    .unwrap();
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(f.replicas("api").await, 1);
    let s = control::status(&state).unwrap();
    let to = s.pinned.expect("pinned");
    assert_eq!(
        f.agent
            .store
            .revisions()
            .unwrap()
            .iter()
            .find(|r| r.id == to)
            .unwrap()
            .commit,
        first
    );
    assert!(!f.agent.refresh().unwrap(), "not suspended");
    assert!(matches!(f.step().await, Outcome::Pinned { .. }));
    assert_eq!(f.replicas("api").await, 1);
    // A restarted agent keeps the pin too (it is in the store).
    f.run_once().await;
    assert_eq!(f.replicas("api").await, 1, "the pin survives a restart");
    // resume: the branch head again.
    control::resume(&state).unwrap();
    f.run_once().await;
    assert_eq!(f.replicas("api").await, 2);
    assert!(control::status(&state).unwrap().pinned.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_past_an_irreversible_component_needs_force() {
    let mut f = Fixture::new("irreversible", &[]).await;
    f.write_state(1, "nginx:1.0", 0);
    f.repo.commit("api 1.0");
    healthy(&f.step().await);
    let first = f.agent.store.revisions().unwrap()[0].id;
    // The upgrade to 2.0 migrates the database: the commit marks `app` irreversible.
    f.write_state(1, "nginx:2.0", 0);
    let cfg = f.repo.dir.join("stackwave.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}irreversible: [app]\n")).unwrap();
    f.repo.commit("api 2.0 (database migration)");
    healthy(&f.step().await);
    let image = |d: Json| d["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(
        image(f.live("Deployment", "api").await.unwrap()),
        "nginx:2.0"
    );

    let before = f.revisions();
    let out = f.agent.rollback(first, false, &|_| {}).await.unwrap();
    match &out {
        Outcome::Refused { reason } => {
            assert!(
                reason.contains("component app") && reason.contains("--force"),
                "{reason}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(f.revisions(), before, "a refused rollback records nothing");
    assert_eq!(
        image(f.live("Deployment", "api").await.unwrap()),
        "nginx:2.0"
    );
    assert_eq!(f.agent.pinned(), None);

    // Forced, the rollback goes through.
    healthy(&f.agent.rollback(first, true, &|_| {}).await.unwrap());
    assert_eq!(
        image(f.live("Deployment", "api").await.unwrap()),
        "nginx:1.0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_ids_running_are_recorded_with_the_revision() {
    let mut f = Fixture::new("images", &[]).await;
    f.write_state(1, "nginx:1.27", 0);
    f.repo.commit("api on nginx 1.27");
    healthy(&f.step().await);
    // A Pod of the api Deployment, as its ReplicaSet and the kubelet would leave it.
    let pods = kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
        f.cluster.client().clone(),
        &f.ns,
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("", "v1", "Pod")),
    );
    let pod: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "api-1", "namespace": f.ns, "labels": {"app": "api"}},
        "spec": {"containers": [{"name": "api", "image": "nginx:1.28"}]}
    }))
    .unwrap();
    pods.create(&Default::default(), &pod).await.unwrap();
    let digest = "docker.io/library/nginx@sha256:0000000000000000000000000000000000000000000000000000000000000128";
    pods.patch_status(
        "api-1",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"status": {"phase": "Running", "containerStatuses": [{"name": "api", "image": "nginx:1.28", "imageID": digest, "ready": true, "restartCount": 0}]}})),
    )
    .await
    .unwrap();

    f.write_state(1, "nginx:1.28", 0);
    f.repo.commit("api on nginx 1.28");
    let rev = match f.step().await {
        Outcome::Healthy { revision, .. } => revision,
        other => panic!("{other:?}"),
    };
    let images = f.agent.store.images_of(rev).unwrap();
    let id = images
        .iter()
        .find(|(i, _)| i == "nginx:1.28")
        .and_then(|(_, id)| id.clone());
    // No kubelet runs the Pod: its status is the one written above.
    assert_eq!(id.as_deref(), Some(digest), "{images:?}");
    // The web Deployment has no Pod running: its reference is recorded without an ID.
    assert!(
        images
            .iter()
            .any(|(i, id)| i == "nginx:1.27" && id.is_none()),
        "{images:?}"
    );
}

/// Runs `body` while `stackwave run` (not `Send`: it holds a Git repository) runs beside it
/// on a local task set; the agent stops when `body` ends.
async fn with_agent<F: std::future::Future>(
    opts: stackwave::run::RunOptions,
    body: F,
) -> F::Output {
    let local = tokio::task::LocalSet::new();
    local.spawn_local(async move {
        if let Err(e) = stackwave::run::run(opts).await {
            panic!("agent failed to start: {e}");
        }
    });
    local.run_until(body).await
}

/// Healthy revisions recorded in a state directory (read as another process would).
fn healthy_revisions(state: &Path) -> usize {
    Store::open(&state.join("revisions.sqlite"), &state.join("store.key"))
        .and_then(|s| s.revisions())
        .map(|r| r.iter().filter(|r| r.outcome == "healthy").count())
        .unwrap_or(0)
}

/// Waits up to `limit` for `n` healthy revisions; true when they are there.
async fn wait_for_revisions(state: &Path, n: usize, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if healthy_revisions(state) >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// POSTs `body` to `http://addr/hook` with `headers`; returns the status code.
fn post_hook(addr: std::net::SocketAddr, headers: &[(&str, String)], body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "POST /hook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn github_signature(secret: &[u8], body: &str) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    m.update(body.as_bytes());
    let mac = m.finalize().into_bytes();
    format!(
        "sha256={}",
        mac.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// With an hour-long poll interval, a verified webhook (and only a verified one) makes the
/// running agent fetch and apply a new commit at once; a watched local Git repository and a
/// watched plain directory do the same without any webhook.
#[tokio::test(flavor = "multi_thread")]
async fn webhooks_and_watched_local_sources_fetch_at_once() {
    let f = Fixture::new("triggers", &[]).await;
    let state = f.root.join("state");
    f.write_state(1, "nginx:1.27", 0);
    f.repo.commit("api: one replica");

    // Webhook: a free loopback port for the agent's receiver.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let secret_file = f.root.join("webhook-secret");
    std::fs::write(&secret_file, "hook-secret\n").unwrap();
    let mut opts = f.run_options(format!("file://{}", f.repo.dir.display()), state.clone());
    opts.webhook_addr = Some(addr);
    opts.webhook_secret_file = Some(secret_file);
    with_agent(opts, async {
        assert!(
            wait_for_revisions(&state, 1, Duration::from_secs(20)).await,
            "first commit applied"
        );

        f.write_state(2, "nginx:1.27", 0);
        f.repo.commit("api: two replicas");
        let body = r#"{"ref":"refs/heads/main"}"#;
        // Unverified deliveries are refused and change nothing.
        let bad = vec![
            ("X-GitHub-Event", "push".to_string()),
            ("X-Hub-Signature-256", github_signature(b"guess", body)),
        ];
        assert_eq!(post_hook(addr, &bad, body), 401);
        assert_eq!(post_hook(addr, &[], body), 401);
        // A push to another branch is verified but ignored.
        let other = r#"{"ref":"refs/heads/feature"}"#;
        let to_other = vec![
            ("X-GitHub-Event", "push".to_string()),
            (
                "X-Hub-Signature-256",
                github_signature(b"hook-secret", other),
            ),
        ];
        assert_eq!(post_hook(addr, &to_other, other), 200);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            healthy_revisions(&state),
            1,
            "nothing fetched without a verified push"
        );
        assert_eq!(f.replicas("api").await, 1);

        let good = vec![
            ("X-GitHub-Event", "push".to_string()),
            (
                "X-Hub-Signature-256",
                github_signature(b"hook-secret", body),
            ),
        ];
        let t = Instant::now();
        assert_eq!(post_hook(addr, &good, body), 202);
        assert!(
            wait_for_revisions(&state, 2, Duration::from_secs(20)).await,
            "the verified push is applied"
        );
        println!("webhook → revision healthy in {:?}", t.elapsed());
        assert_eq!(f.replicas("api").await, 2);
    })
    .await;

    // A watched local Git repository: a commit is fetched without a webhook.
    let mut opts = f.run_options(format!("file://{}", f.repo.dir.display()), state.clone());
    opts.watch = true;
    with_agent(opts, async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        f.write_state(3, "nginx:1.27", 0);
        f.repo.commit("api: three replicas");
        assert!(
            wait_for_revisions(&state, 3, Duration::from_secs(20)).await,
            "the watched repository's commit is applied"
        );
        assert_eq!(f.replicas("api").await, 3);
    })
    .await;

    // A plain directory (no Git): its tree is the desired state; an edit is applied.
    let plain = f.root.join("plain");
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(&f.repo.dir)
        .arg(&plain)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(plain.join(".git")).unwrap();
    let state2 = f.root.join("state-plain");
    let mut opts = f.run_options(plain.display().to_string(), state2.clone());
    opts.watch = true;
    with_agent(opts, async {
        assert!(
            wait_for_revisions(&state2, 1, Duration::from_secs(20)).await,
            "the directory's tree is applied"
        );
        let api = plain.join("manifests/app/api.yaml");
        let text = std::fs::read_to_string(&api).unwrap();
        std::fs::write(&api, text.replace("replicas: 3", "replicas: 4")).unwrap();
        assert!(
            wait_for_revisions(&state2, 2, Duration::from_secs(20)).await,
            "the edited directory is applied"
        );
        assert_eq!(f.replicas("api").await, 4);
        let revs = Store::open(&state2.join("revisions.sqlite"), &state2.join("store.key"))
            .unwrap()
            .revisions()
            .unwrap();
        assert_eq!(
            revs[0].commit.len(),
            64,
            "a directory revision is its tree's sha256"
        );
        assert_ne!(revs[0].commit, revs[1].commit);
    })
    .await;
}

/// With an allowed-signers file, only commits SSH-signed by an allowed key are applied:
/// unsigned commits, commits signed by another key and a signed commit changed after signing
/// are refused (nothing applied), and the next good commit goes through.
#[tokio::test(flavor = "multi_thread")]
async fn only_commits_signed_by_allowed_keys_are_applied() {
    let f = Fixture::new("signed", &[]).await;
    let state = f.root.join("state");
    let keys = f.root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for k in ["ops", "stranger"] {
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", k, "-f"])
            .arg(keys.join(k))
            .status()
            .expect("ssh-keygen (openssh-client)");
        assert!(st.success());
    }
    let ops_pub = std::fs::read_to_string(keys.join("ops.pub")).unwrap();
    let signers = f.root.join("allowed_signers");
    std::fs::write(
        &signers,
        format!("# who may change the cloud\nops@example.org namespaces=\"git\" {ops_pub}"),
    )
    .unwrap();
    let commit_signed = |key: Option<&str>, msg: &str| {
        f.repo.git(&["add", "-A"]);
        match key {
            Some(k) => {
                let sk = format!("user.signingkey={}", keys.join(k).display());
                f.repo.git(&[
                    "-c",
                    "gpg.format=ssh",
                    "-c",
                    &sk,
                    "commit",
                    "-q",
                    "--allow-empty",
                    "-S",
                    "-m",
                    msg,
                ]);
            }
            None => {
                f.repo.git(&["commit", "-q", "-m", msg]);
            }
        }
    };
    let run_once = || {
        let mut o = f.run_options(format!("file://{}", f.repo.dir.display()), state.clone());
        o.once = true;
        o.allowed_signers = Some(signers.clone());
        stackwave::run::run(o)
    };

    f.write_state(1, "nginx:1.27", 0);
    commit_signed(Some("ops"), "api: one replica (signed)");
    run_once().await.unwrap();
    assert_eq!(
        healthy_revisions(&state),
        1,
        "a commit signed by an allowed key is applied"
    );
    assert_eq!(f.replicas("api").await, 1);

    f.write_state(2, "nginx:1.27", 0);
    commit_signed(None, "api: two replicas (unsigned)");
    run_once().await.unwrap();
    assert_eq!(f.replicas("api").await, 1, "an unsigned commit is refused");

    commit_signed(Some("stranger"), "api: two replicas (signed by a stranger)");
    run_once().await.unwrap();
    assert_eq!(f.replicas("api").await, 1, "a key not allowed is refused");

    // A commit signed by ops, then rewritten to carry another tree under the same signature.
    commit_signed(Some("ops"), "api: two replicas (signed)");
    let raw = f.repo.git(&["cat-file", "commit", "HEAD"]);
    f.write_state(5, "nginx:1.27", 0);
    f.repo.git(&["add", "-A"]);
    let other_tree = f.repo.git(&["write-tree"]).trim().to_string();
    let old_tree = f.repo.git(&["rev-parse", "HEAD^{tree}"]).trim().to_string();
    let forged = raw.replacen(
        &format!("tree {old_tree}"),
        &format!("tree {other_tree}"),
        1,
    );
    let forged_file = f.root.join("forged");
    std::fs::write(&forged_file, forged).unwrap();
    let id = f
        .repo
        .git(&[
            "hash-object",
            "-t",
            "commit",
            "-w",
            forged_file.to_str().unwrap(),
        ])
        .trim()
        .to_string();
    f.repo.git(&["update-ref", "refs/heads/main", &id]);
    f.repo.git(&["reset", "-q", "--hard", "HEAD"]);
    run_once().await.unwrap();
    assert_eq!(
        f.replicas("api").await,
        1,
        "a signature over other content is refused"
    );
    assert_eq!(healthy_revisions(&state), 1);

    f.write_state(3, "nginx:1.27", 0);
    commit_signed(Some("ops"), "api: three replicas (signed)");
    run_once().await.unwrap();
    assert_eq!(healthy_revisions(&state), 2);
    assert_eq!(f.replicas("api").await, 3);

    // The verification itself, as the loop reported it.
    let source = Source::open(&format!("file://{}", f.repo.dir.display()), "main", &state).unwrap();
    let head = source.fetch().unwrap();
    let allowed = stackwave::source::verify::AllowedSigners::load(&signers).unwrap();
    assert!(source
        .verify(&head.id, &allowed)
        .unwrap()
        .starts_with("ops@example.org (SHA256:"));
    let err = source.verify(&id, &allowed).unwrap_err().to_string();
    assert!(err.contains("bad signature"), "{err}");
}

/// A revision stuck waiting for health is superseded by a newer commit (after
/// `cancel_stuck_after`), which is applied at once; the stuck object, applied but never
/// healthy, is pruned once the newer revision is healthy.
#[tokio::test(flavor = "multi_thread")]
async fn a_newer_commit_supersedes_a_stuck_revision() {
    let f = Fixture::new("supersede", &[]).await;
    let state = f.root.join("state");
    f.write_state(1, "nginx:1.27", 0);
    f.repo.commit("api: one replica");
    let mut opts = f.run_options(format!("file://{}", f.repo.dir.display()), state.clone());
    opts.settings.health_timeout = Duration::from_secs(120);
    opts.settings.cancel_stuck_after = Some(Duration::from_secs(1));
    opts.watch = true;
    with_agent(opts, async {
        assert!(wait_for_revisions(&state, 1, Duration::from_secs(20)).await);
        // web gains a Deployment that never becomes ready (an image that cannot be pulled).
        f.repo.write(
            "manifests/web/stuck.yaml",
            &deployment(&f.ns, "stuck", 1, "registry.invalid/none:0"),
        );
        f.repo.write(
            "manifests/web/kustomization.yaml",
            &kustomization(&["web.yaml".into(), "stuck.yaml".into()]),
        );
        f.repo.commit("web: a stuck deployment");
        // The agent polls hourly; its watcher on the repository fetches the commit.
        let t = Instant::now();
        loop {
            let revs = Store::open(&state.join("revisions.sqlite"), &state.join("store.key"))
                .unwrap()
                .revisions()
                .unwrap();
            if revs.iter().any(|r| r.outcome == "applying") {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the stuck revision never started"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        f.write_state(2, "nginx:1.27", 0);
        f.repo.commit("api: two replicas, no stuck deployment");
        let t = Instant::now();
        assert!(
            wait_for_revisions(&state, 2, Duration::from_secs(30)).await,
            "the newer commit is applied"
        );
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "well before the 120 s health timeout"
        );
        assert_eq!(f.replicas("api").await, 2);
        let revs = Store::open(&state.join("revisions.sqlite"), &state.join("store.key"))
            .unwrap()
            .revisions()
            .unwrap();
        assert_eq!(revs[0].outcome, "healthy");
        assert_eq!(revs[1].outcome, "superseded", "{:?}", revs[1]);
        assert!(
            f.live("Deployment", "stuck").await.is_none(),
            "the stuck object is pruned"
        );
    })
    .await;
}

/// History rewritten on the remote (a force push dropping a commit) is followed: the new head
/// is applied, and the dropped commit's revision stays in the history.
#[tokio::test(flavor = "multi_thread")]
async fn force_pushed_history_is_followed() {
    let mut f = Fixture::new("forcepush", &[]).await;
    f.write_state(1, "nginx:1.27", 0);
    f.repo.commit("api: one replica");
    healthy(&f.step().await);
    let first = f.repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    f.write_state(2, "nginx:1.27", 0);
    f.repo.commit("api: two replicas");
    healthy(&f.step().await);
    let dropped = f.repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    // Rewrite: back to the first commit, then another commit on top.
    f.repo.git(&["reset", "-q", "--hard", &first]);
    f.write_state(3, "nginx:1.27", 0);
    f.repo.commit("api: three replicas (rewritten history)");
    let out = f.step().await;
    assert_eq!(healthy(&out), vec!["app".to_string()]);
    assert_eq!(f.replicas("api").await, 3);
    let revs = f.agent.store.revisions().unwrap();
    assert_eq!(revs.len(), 3);
    assert_eq!(
        revs[1].commit, dropped,
        "the dropped commit's revision is kept"
    );
}

/// Retention: with `keep_revisions: 2`, the store keeps the two newest revisions (the
/// applied one and a rollback pin are always kept: `record.rs` unit test), and rolling back
/// to a kept revision still works.
#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_the_newest_revisions() {
    let mut f = Fixture::new("retention", &[]).await;
    f.agent.settings.keep_revisions = Some(2);
    for n in 1..=4 {
        f.write_state(n, "nginx:1.27", 0);
        f.repo.commit(&format!("api: {n} replicas"));
        healthy(&f.step().await);
    }
    let ids = f.revision_ids();
    assert_eq!(ids, vec![4, 3]);
    let out = f.agent.rollback(3, false, &|_| {}).await.unwrap();
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(f.replicas("api").await, 3);
    let ids = f.revision_ids();
    // The rollback is revision 5; revision 3, the pin, is kept beside the newest two.
    assert_eq!(ids, vec![5, 4, 3]);
    // Once a newer commit lifts the pin, revision 3 goes.
    f.write_state(6, "nginx:1.27", 0);
    f.repo.commit("api: 6 replicas");
    healthy(&f.step().await);
    let ids = f.revision_ids();
    assert_eq!(ids, vec![6, 5]);
}

/// A Helm component of the fixture's repository (`components/<name>.yaml`, chart `tiny` from
/// the repository's `charts/`), in wave 1, releasing into `namespace`.
fn tiny_component(name: &str, namespace: &str, extra: &str) -> String {
    format!(
        "name: {name}\nwave: 1\nrelease: {{name: {name}, namespace: {namespace}, createNamespace: true}}\nchart: {{name: tiny}}\nvalues: {{dir: tiny, globalOverrides: false}}\n{extra}"
    )
}

/// `release.createNamespace` (`helm --create-namespace`): the agent creates a missing release
/// namespace before the release's objects (Helm's Namespace, labelled `name`), leaves an
/// existing one as it is (no label, no mark of its own), and never prunes one it created: with
/// its component removed from `stackwave.yaml`, the component's objects are pruned and the
/// Namespace stays. `helm.skipCrds` (`--skip-crds`): the chart's `crds/` are not applied.
#[tokio::test(flavor = "multi_thread")]
async fn release_namespaces_are_created_never_pruned_and_crds_skipped() {
    if !stackwave_tests::helm_or_skip() {
        return;
    }
    let mut f = Fixture::new("createns", &[]).await;
    let made = f.tc.ns("e2e-made");
    let there = f.tc.ns("e2e-there");
    let group = format!("{}.e2e.stackwave.test", f.tc.suffix);
    let crd = format!("widgets.{group}");
    let crd_skeleton = json!({"apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition", "metadata": {"name": crd}});
    f.tc.cleanup_later(crd_skeleton.clone());
    for c in ["made", "there"] {
        f.tc.cleanup_later(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": stackwave::cluster::inventory::inventory_name(f.agent.instance(), c),
            "namespace": stackwave::cluster::inventory::INVENTORY_NAMESPACE}}),
        );
    }
    // `there` exists already, made by someone else.
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(f.cluster.client().clone());
    namespaces
        .patch(
            &there,
            &kube::api::PatchParams::apply("someone-else"),
            &kube::api::Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": there, "labels": {"owner": "someone-else"}}})),
        )
        .await
        .unwrap();
    f.repo
        .write("base/helm-chart-versions.yaml", "charts:\n  tiny: 0.1.0\n");
    f.repo.write(
        "charts/tiny/Chart.yaml",
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\n",
    );
    f.repo.write(
        "charts/tiny/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tiny\ndata:\n  release: {{ .Release.Name }}\n",
    );
    f.repo.write(
        "charts/tiny/crds/widgets.yaml",
        &format!("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {crd}\nspec:\n  group: {group}\n  names:\n    kind: Widget\n    plural: widgets\n    singular: widget\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n"),
    );
    f.repo.write(
        "components/made.yaml",
        &tiny_component("made", &made, "helm: {skipCrds: true}\n"),
    );
    f.repo.write(
        "components/there.yaml",
        &tiny_component("there", &there, ""),
    );
    let cfg = |components: &str| {
        format!("genestack:\n  path: base\ncharts:\n  path: charts\ncomponents: [{components}]\n")
    };
    f.repo.write("stackwave.yaml", &cfg("made, there"));
    f.repo.commit("two releases creating their namespaces");
    let out = f.step().await;
    let rev = match &out {
        Outcome::Healthy { revision, .. } => *revision,
        other => panic!("expected a healthy revision, got {other:?}"),
    };
    let ns_of = |n: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}});
    let live_made = f
        .cluster
        .get(&ns_of(&made))
        .await
        .unwrap()
        .expect("created");
    assert_eq!(
        live_made["metadata"]["labels"]["name"],
        made.as_str(),
        "Helm's label"
    );
    assert_eq!(
        live_made["metadata"]["labels"][stackwave::cluster::COMPONENT_LABEL],
        "made"
    );
    let live_there = f.cluster.get(&ns_of(&there)).await.unwrap().unwrap();
    assert_eq!(live_there["metadata"]["labels"]["owner"], "someone-else");
    assert!(
        live_there["metadata"]["labels"].get("name").is_none()
            && live_there["metadata"]["labels"]
                .get(stackwave::cluster::MANAGED_BY.0)
                .is_none(),
        "an existing namespace is left as it is: {live_there}"
    );
    let cm_in = |ns: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tiny", "namespace": ns}});
    assert!(f.cluster.get(&cm_in(&made)).await.unwrap().is_some());
    assert!(f.cluster.get(&cm_in(&there)).await.unwrap().is_some());
    assert!(
        f.events.lock().unwrap().iter().any(|e| matches!(e,
            Progress::Note(n) if n.contains(&format!("namespace {made}: created with made")))),
        "the creation is reported"
    );
    // --skip-crds: `made` applied none of the chart's crds/; `there` applied them first.
    let stored: std::collections::BTreeMap<String, Vec<Json>> =
        f.agent.store.objects_of(rev).unwrap().into_iter().collect();
    let kinds = |c: &str| -> Vec<String> {
        let mut k: Vec<String> = stored[c]
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect();
        k.sort();
        k
    };
    assert_eq!(stored["made"][0]["kind"], "Namespace", "applied first");
    assert_eq!(kinds("made"), ["ConfigMap", "Namespace"]);
    assert_eq!(kinds("there"), ["ConfigMap", "CustomResourceDefinition"]);
    let live_crd = f.cluster.get(&crd_skeleton).await.unwrap().expect("CRD");
    assert_eq!(
        live_crd["metadata"]["labels"][stackwave::cluster::COMPONENT_LABEL],
        "there"
    );

    // `made` leaves the repository: its ConfigMap is pruned, its Namespace stays.
    f.agent.settings.max_delete_share = 1.0;
    f.repo.write("stackwave.yaml", &cfg("there"));
    f.repo.commit("made removed");
    healthy(&f.step().await);
    assert!(
        f.cluster.get(&cm_in(&made)).await.unwrap().is_none(),
        "the removed component's objects are pruned"
    );
    assert!(
        f.cluster.get(&ns_of(&made)).await.unwrap().is_some(),
        "the namespace it created is kept"
    );
    let pruned = f.events.lock().unwrap().iter().find_map(|e| match e {
        Progress::Pruned {
            component,
            deleted,
            skipped,
        } if component == "made" => Some((deleted.clone(), skipped.clone())),
        _ => None,
    });
    let (deleted, skipped) = pruned.expect("made pruned");
    assert_eq!(deleted, [format!("ConfigMap/{made}/tiny")]);
    assert!(
        skipped
            .iter()
            .any(|(id, why)| id.contains(&made) && why.contains("never pruned")),
        "{skipped:?}"
    );
    assert!(f.cluster.get(&cm_in(&there)).await.unwrap().is_some());
}
