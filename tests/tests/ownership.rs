//! Real-API fidelity of the agent's ownership and error handling, against the in-process API
//! test server — or, when `STACKWAVE_TEST_KUBECONFIG` is set, against that real cluster (same
//! tests, unchanged):
//!
//! - inventories and ownership marks scoped by the Stackwave instance: two agents with the
//!   same component names on one API server each prune only their own objects; an object
//!   marked by another instance is never pruned; legacy (unscoped) inventories are claimed
//!   entry by entry, exactly once;
//! - an inventory that cannot be read skips that component's prune (nothing deleted, nothing
//!   rewritten); inventory writes are conditional on the resourceVersion read;
//! - 422s classified from the Status causes: immutable fields replaced only when allowed,
//!   other refusals never replaced;
//! - `when: hpa` drift rules hold only for objects an HPA targets, whose replicas Stackwave
//!   then neither reports nor applies;
//! - the exit codes of `stackwave sync`, `run --once` and `rollback`.

use clap::Parser;
use serde_json::{json, Value as Json};
use stackwave::cluster::instance::Instance;
use stackwave::cluster::inventory::{self, mark, ObjRef};
use stackwave::cluster::{Action, ApplyOptions, Cluster, ClusterError};
use stackwave::component::Catalog;
use stackwave::reconcile::{Agent, Outcome, Progress, Settings};
use stackwave::record::Store;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

struct Env {
    cluster: Cluster,
    /// The test server's URL (`None` against a real cluster).
    url: Option<String>,
    /// The real cluster's kubeconfig (`None` on the test server).
    kubeconfig: Option<PathBuf>,
    /// The server (in-process, or `STACKWAVE_TEST_KUBECONFIG`'s) and the controller stand-in.
    tc: stackwave_tests::TestCluster,
    /// Held for the test's life: these tests share component names (`app`) and, some, the
    /// default instance, so on one shared server they would prune each other's objects (as two
    /// agents of one instance would): they take turns.
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

/// The turn every test of this file waits for (see [`Env::_turn`]).
fn turns() -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static TURN: std::sync::OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
        std::sync::OnceLock::new();
    TURN.get_or_init(Default::default).clone()
}

/// The one place the tests get their API server: the shared test environment, with the
/// controller stand-in as a separate client (it acts in the namespaces given to
/// [`Env::clean`]).
async fn env() -> Env {
    let turn = turns().lock_owned().await;
    let tc = stackwave_tests::TestCluster::start(
        kube_standin::Rules::default().with_delay(Duration::from_millis(100)),
    )
    .await;
    Env {
        cluster: tc.cluster.clone(),
        url: tc.url(),
        kubeconfig: tc.kubeconfig(),
        tc,
        _turn: turn,
    }
}

impl Env {
    fn real(&self) -> bool {
        !self.tc.in_process()
    }

    /// `--server URL` or `--kubeconfig FILE`, for the CLI.
    fn cluster_args(&self) -> Vec<String> {
        match (&self.url, &self.kubeconfig) {
            (Some(u), _) => vec!["--server".into(), u.clone()],
            (None, Some(k)) => vec!["--kubeconfig".into(), k.display().to_string()],
            (None, None) => Vec::new(),
        }
    }

    /// Deletes test namespaces and the instances' inventories (before and after a test, so
    /// a rerun against a real cluster starts clean).
    async fn clean(&self, namespaces: &[&str], inventories: &[(&Instance, &str)]) {
        for n in namespaces {
            self.tc.fixed_ns(n);
            let _ = self.cluster.delete(&ns(n)).await;
        }
        for (i, c) in inventories {
            let _ = self
                .cluster
                .delete(&inv_cm(&inventory::inventory_name(i, c)))
                .await;
            let _ = self
                .cluster
                .delete(&inv_cm(&inventory::legacy_name(c)))
                .await;
        }
        for n in namespaces {
            for _ in 0..600 {
                if self.cluster.get(&ns(n)).await.ok().flatten().is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn ns(name: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn inv_cm(name: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": inventory::INVENTORY_NAMESPACE}})
}

fn cm(ns: &str, name: &str, value: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
           "data": {"k": value}})
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stackwave-ownership-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A desired-state checkout: one `manifests:` component `app` holding namespace `ns` and
/// `objects` (JSON documents, which are YAML).
fn write_checkout(dir: &Path, ns_name: &str, objects: &[Json]) {
    let app = dir.join("manifests/app");
    let _ = std::fs::remove_dir_all(&app);
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(
        dir.join("stackwave.yaml"),
        "genestack:\n  path: empty\ncharts:\n  path: empty\nmanifests:\n- name: app\n  path: manifests/app\ncomponents: []\n",
    )
    .unwrap();
    let mut all = vec![ns(ns_name)];
    all.extend(objects.iter().cloned());
    let mut k = "resources:\n".to_string();
    for (i, o) in all.iter().enumerate() {
        std::fs::write(app.join(format!("o{i}.yaml")), o.to_string()).unwrap();
        k.push_str(&format!("- o{i}.yaml\n"));
    }
    std::fs::write(app.join("kustomization.yaml"), k).unwrap();
}

fn agent(e: &Env, instance: Instance) -> Agent {
    agent_on(e, e.cluster.clone(), instance)
}

/// An agent whose requests go through `cluster` (e.g. [`stackwave_tests::TestCluster::cluster_with_fault`]).
fn agent_on(e: &Env, cluster: Cluster, instance: Instance) -> Agent {
    let mut a = Agent::new(
        cluster,
        Store::in_memory().unwrap(),
        Catalog::builtin().unwrap(),
        Settings {
            health_timeout: Duration::from_secs(if e.real() { 120 } else { 10 }),
            allow_destructive: true,
            cache_dir: std::env::temp_dir().join("stackwave-ownership-cache"),
            ..Default::default()
        },
    )
    .unwrap();
    a.set_instance(instance).unwrap();
    a
}

/// One sync of `dir` as commit `id`: the outcome and the progress reported.
async fn sync(a: &mut Agent, dir: &Path, id: &str) -> (Outcome, Vec<Progress>) {
    let seen = Mutex::new(Vec::new());
    let commit = stackwave::source::Commit {
        id: id.into(),
        author: "Test Operator <ops@example.com>".into(),
        summary: id.into(),
        time: 0,
    };
    let out = a
        .sync(dir, &commit, &|p| seen.lock().unwrap().push(p))
        .await
        .unwrap();
    (out, seen.into_inner().unwrap())
}

fn deleted(progress: &[Progress]) -> Vec<String> {
    progress
        .iter()
        .flat_map(|p| match p {
            Progress::Pruned { deleted, .. } => deleted.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn notes(progress: &[Progress]) -> Vec<String> {
    progress
        .iter()
        .filter_map(|p| match p {
            Progress::Note(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn healthy(out: &Outcome) -> bool {
    matches!(out, Outcome::Healthy { .. })
}

/// Instance `region-<x>` following the one repository every test uses.
fn region(x: &str) -> Instance {
    Instance::new(&format!("region-{x}"), "https://git.example/cloud").unwrap()
}

/// The marks a Stackwave without instances put on component `app`'s objects.
fn old_mark(o: &mut Json) {
    o["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "stackwave"});
    o["metadata"]["annotations"] = json!({"stackwave.io/component": "app"});
}

/// Applies `o` as Stackwave's field manager, taking over conflicting fields.
async fn force_apply(c: &Cluster, o: &Json) {
    let opts = ApplyOptions {
        force: true,
        ..Default::default()
    };
    c.apply(o, &opts).await.unwrap();
}

async fn exists(c: &Cluster, o: &Json) -> bool {
    c.get(o).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_with_the_same_components_prune_only_their_own() {
    let e = env().await;
    let c = &e.cluster;
    let (na, nb) = ("own-two-a", "own-two-b");
    // Same repository, different names: different identities.
    let ia = region("a");
    let ib = region("b");
    e.clean(&[na, nb], &[(&ia, "app"), (&ib, "app")]).await;
    let (mut a, mut b) = (agent(&e, ia.clone()), agent(&e, ib.clone()));
    let (da, db) = (tmp("two-a"), tmp("two-b"));
    write_checkout(&da, na, &[cm(na, "x", "1"), cm(na, "y", "1")]);
    write_checkout(&db, nb, &[cm(nb, "x", "1"), cm(nb, "y", "1")]);
    let (out, _) = sync(&mut a, &da, "a1").await;
    assert!(healthy(&out), "{out:?}");
    let (out, p) = sync(&mut b, &db, "b1").await;
    assert!(healthy(&out), "{out:?}");
    assert!(deleted(&p).is_empty(), "B deleted {:?}", deleted(&p));
    for o in [
        cm(na, "x", ""),
        cm(na, "y", ""),
        cm(nb, "x", ""),
        cm(nb, "y", ""),
    ] {
        assert!(exists(c, &o).await, "{o} survives the other agent's sync");
    }
    // Each agent drops `y`: each prunes only its own.
    write_checkout(&da, na, &[cm(na, "x", "1")]);
    let (out, p) = sync(&mut a, &da, "a2").await;
    assert!(healthy(&out), "{out:?}");
    assert_eq!(deleted(&p), vec![format!("ConfigMap/{na}/y")]);
    assert!(exists(c, &cm(nb, "y", "")).await);
    write_checkout(&db, nb, &[cm(nb, "x", "1")]);
    let (out, p) = sync(&mut b, &db, "b2").await;
    assert!(healthy(&out), "{out:?}");
    assert_eq!(deleted(&p), vec![format!("ConfigMap/{nb}/y")]);
    assert!(exists(c, &cm(na, "x", "")).await);
    // Separate inventories, each with only its own objects; marks name the instance.
    let inv_a = inventory::read(c, &ia, "app").await.unwrap();
    let inv_b = inventory::read(c, &ib, "app").await.unwrap();
    assert!(inv_a.iter().all(|r| r.namespace != nb) && inv_a.iter().any(|r| r.name == "x"));
    assert!(inv_b.iter().all(|r| r.namespace != na) && inv_b.iter().any(|r| r.name == "x"));
    let live = c.get(&cm(na, "x", "")).await.unwrap().unwrap();
    assert_eq!(
        live.pointer("/metadata/labels/stackwave.io~1instance"),
        Some(&json!(ia.id()))
    );
    e.clean(&[na, nb], &[(&ia, "app"), (&ib, "app")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_marked_by_another_instance_is_never_pruned() {
    let e = env().await;
    let c = &e.cluster;
    let n = "own-other";
    let ia = Instance::new("stackwave", "https://git.example/cloud").unwrap();
    let ib = Instance::new("stackwave", "https://git.example/staging").unwrap();
    e.clean(&[n], &[(&ia, "app")]).await;
    c.apply(&ns(n), &Default::default()).await.unwrap();
    let mut mine = cm(n, "mine", "1");
    let mut shared = cm(n, "shared", "1");
    mark(&mut mine, "app", &ia);
    mark(&mut shared, "app", &ia);
    for o in [&mine, &shared] {
        c.apply(o, &Default::default()).await.unwrap();
    }
    let refs = vec![ObjRef::of(&mine), ObjRef::of(&shared)];
    inventory::write(c, &ia, "app", &refs).await.unwrap();
    // The staging instance (same name, other repository) takes `shared` over.
    let mut theirs = cm(n, "shared", "2");
    mark(&mut theirs, "app", &ib);
    force_apply(c, &theirs).await;
    let (pruned, keep) = inventory::prune(
        c,
        &ia,
        "app",
        &refs,
        &[],
        &inventory::default_protect().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(pruned.deleted, vec![format!("ConfigMap/{n}/mine")]);
    let why = pruned
        .skipped
        .iter()
        .find(|(id, _)| id.ends_with("/shared"))
        .map(|(_, w)| w.clone())
        .expect("shared is reported as kept");
    assert!(
        why.contains("another Stackwave instance") && why.contains(&ib.id()),
        "{why}"
    );
    assert!(
        keep.is_empty(),
        "another instance's object leaves this inventory"
    );
    assert!(exists(c, &shared).await);
    e.clean(&[n], &[(&ia, "app")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_inventories_are_claimed_entry_by_entry_once() {
    let e = env().await;
    let c = &e.cluster;
    let n = "own-legacy";
    let ia = region("a");
    let ib = region("b");
    e.clean(&[n], &[(&ia, "app"), (&ib, "app")]).await;
    c.apply(&ns(n), &Default::default()).await.unwrap();
    // What a Stackwave without instances left: objects marked by component only, and one
    // inventory per component name.
    let (mut p, mut q) = (cm(n, "p", "1"), cm(n, "q", "1"));
    old_mark(&mut p);
    old_mark(&mut q);
    for o in [&p, &q] {
        c.apply(o, &Default::default()).await.unwrap();
    }
    let gone = ObjRef::of(&cm(n, "gone", ""));
    let legacy_refs = vec![ObjRef::of(&p), ObjRef::of(&q), gone];
    c.apply(&ns(inventory::INVENTORY_NAMESPACE), &Default::default())
        .await
        .unwrap();
    let mut legacy = inv_cm(&inventory::legacy_name("app"));
    legacy["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "stackwave"});
    legacy["data"] =
        json!({"component": "app", "objects": serde_json::to_string(&legacy_refs).unwrap()});
    c.apply(&legacy, &Default::default()).await.unwrap();
    let legacy_entries = || async {
        c.get(&inv_cm(&inventory::legacy_name("app")))
            .await
            .unwrap()
            .map(|l| {
                serde_json::from_str::<Vec<ObjRef>>(l["data"]["objects"].as_str().unwrap()).unwrap()
            })
    };

    // Instance A applies p only: it claims p (now marked by it), drops `gone`, leaves q.
    let mut a = agent(&e, ia.clone());
    let da = tmp("legacy-a");
    write_checkout(&da, n, &[cm(n, "p", "1")]);
    let (out, prog) = sync(&mut a, &da, "a1").await;
    assert!(healthy(&out), "{out:?}");
    assert!(
        notes(&prog)
            .iter()
            .any(|n| n.contains("took over 1 entry") && n.contains("1 left")),
        "{:?}",
        notes(&prog)
    );
    assert!(deleted(&prog).is_empty(), "{:?}", deleted(&prog));
    assert_eq!(legacy_entries().await, Some(vec![ObjRef::of(&q)]));
    assert!(inventory::read(c, &ia, "app")
        .await
        .unwrap()
        .contains(&ObjRef::of(&p)));
    assert!(
        exists(c, &q).await,
        "an entry A cannot show is its own is never pruned"
    );
    // Once: a later revision claims nothing more.
    write_checkout(&da, n, &[cm(n, "p", "2")]);
    let (out, prog) = sync(&mut a, &da, "a2").await;
    assert!(healthy(&out), "{out:?}");
    assert!(!notes(&prog).iter().any(|n| n.contains("took over")));
    assert_eq!(legacy_entries().await, Some(vec![ObjRef::of(&q)]));
    // Instance B applies q: it claims the last entry and the legacy inventory is gone.
    let mut b = agent(&e, ib.clone());
    let db = tmp("legacy-b");
    write_checkout(&db, n, &[cm(n, "q", "1")]);
    let (out, prog) = sync(&mut b, &db, "b1").await;
    assert!(healthy(&out), "{out:?}");
    assert!(
        notes(&prog).iter().any(|n| n.contains("took over 1 entry")),
        "{:?}",
        notes(&prog)
    );
    assert_eq!(legacy_entries().await, None);
    assert!(exists(c, &p).await, "B never touches A's objects");
    e.clean(&[n], &[(&ia, "app"), (&ib, "app")]).await;
}

/// Whether the server refuses a PUT carrying a stale resourceVersion (409), as a real
/// kube-apiserver does; the concurrency tests need it.
async fn enforces_resource_version(c: &Cluster, n: &str) -> bool {
    let o = cm(n, "rv-probe", "1");
    let first = c.apply(&o, &Default::default()).await.unwrap().live;
    c.apply(&cm(n, "rv-probe", "2"), &Default::default())
        .await
        .unwrap();
    let mut stale = cm(n, "rv-probe", "3");
    stale["metadata"]["resourceVersion"] = first["metadata"]["resourceVersion"].clone();
    let r = c.replace(&stale).await;
    let _ = c.delete(&o).await;
    matches!(
        r,
        Err(ClusterError::Conflict { .. }) | Err(ClusterError::Api { code: 409, .. })
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_inventory_writers_lose_nothing_and_claims_happen_once() {
    let e = env().await;
    let c = &e.cluster;
    let n = "own-concurrent";
    let ia = region("a");
    let ib = region("b");
    e.clean(&[n], &[(&ia, "app"), (&ib, "app")]).await;
    c.apply(&ns(n), &Default::default()).await.unwrap();
    if !enforces_resource_version(c, n).await {
        eprintln!("SKIPPED: the API server does not refuse stale resourceVersions (409)");
        e.clean(&[n], &[]).await;
        return;
    }
    // Eight writers each add one entry: every entry ends up in the inventory.
    inventory::write(c, &ia, "app", &[]).await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (c, ia) = (c.clone(), ia.clone());
        let r = ObjRef::of(&cm(n, &format!("w{i}"), ""));
        writers.spawn(async move {
            inventory::update(&c, &ia, "app", |cur| {
                let mut v = cur.to_vec();
                v.push(r.clone());
                v
            })
            .await
        });
    }
    while let Some(r) = writers.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(inventory::read(c, &ia, "app").await.unwrap().len(), 8);
    // Two instances race for the same unscoped entry of a legacy inventory: one gets it.
    let mut p = cm(n, "p", "1");
    old_mark(&mut p);
    c.apply(&p, &Default::default()).await.unwrap();
    let q = ObjRef::of(&cm(n, "q-left", ""));
    c.apply(&cm(n, "q-left", "1"), &Default::default())
        .await
        .unwrap();
    let mut legacy = inv_cm(&inventory::legacy_name("app"));
    legacy["data"] = json!({"component": "app",
        "objects": serde_json::to_string(&vec![ObjRef::of(&p), q]).unwrap()});
    c.apply(&legacy, &Default::default()).await.unwrap();
    let desired = vec![ObjRef::of(&p)];
    let (ca, cb) = tokio::join!(
        inventory::claim_legacy(c, &ia, "app", &desired),
        inventory::claim_legacy(c, &ib, "app", &desired)
    );
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    assert_eq!(
        ca.claimed.len() + cb.claimed.len(),
        1,
        "exactly one instance claims p: {ca:?} {cb:?}"
    );
    e.clean(&[n], &[(&ia, "app"), (&ib, "app")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_inventory_skips_the_prune_and_is_not_rewritten() {
    let e = env().await;
    let c = &e.cluster;
    let n = "own-unreadable";
    let ia = region("a");
    e.clean(&[n], &[(&ia, "app")]).await;
    let mut a = agent(&e, ia.clone());
    let d = tmp("unreadable");
    write_checkout(&d, n, &[cm(n, "x", "1"), cm(n, "y", "1")]);
    let (out, _) = sync(&mut a, &d, "c1").await;
    assert!(healthy(&out), "{out:?}");
    // The inventory turns unreadable (a truncated write, a hand edit).
    let mut broken = inv_cm(&inventory::inventory_name(&ia, "app"));
    broken["data"] = json!({"objects": "[{\"api_version\": \"v1\", \"ki"});
    force_apply(c, &broken).await;
    assert!(inventory::read(c, &ia, "app").await.is_err());
    write_checkout(&d, n, &[cm(n, "x", "1")]);
    let (out, prog) = sync(&mut a, &d, "c2").await;
    assert!(healthy(&out), "{out:?}");
    assert!(deleted(&prog).is_empty());
    assert!(
        notes(&prog)
            .iter()
            .any(|m| m.contains("prune of app skipped") && m.contains("nothing deleted")),
        "{:?}",
        notes(&prog)
    );
    assert!(exists(c, &cm(n, "y", "")).await, "nothing is deleted");
    let live = c
        .get(&inv_cm(&inventory::inventory_name(&ia, "app")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        live["data"]["objects"], broken["data"]["objects"],
        "the inventory is not rewritten without the entries it could not read"
    );
    e.clean(&[n], &[(&ia, "app")]).await;
}

/// Fault test: the inventory GET fails once (the connection drops, or a 500) → that
/// component's prune is skipped and reported, nothing deleted, the inventory kept; the next
/// loop prunes. The fault sits in the agent's client stack, so this runs unchanged on a real
/// API server.
#[tokio::test(flavor = "multi_thread")]
async fn an_inventory_read_that_fails_once_skips_that_prune_and_the_next_loop_prunes() {
    use stackwave_tests::fault::How;
    for (how, cause) in [(How::Drop, "unreachable"), (How::Status500, "etcdserver")] {
        inventory_read_fails_once(how, cause).await;
    }
}

async fn inventory_read_fails_once(how: stackwave_tests::fault::How, cause: &str) {
    let e = env().await;
    let c = &e.cluster;
    let n = "own-flaky";
    let ia = region("f");
    e.clean(&[n], &[(&ia, "app")]).await;
    let inv = inventory::inventory_name(&ia, "app");
    let fault = stackwave_tests::fault::FailGets::new(&format!("/configmaps/{inv}"), how);
    let mut a = agent_on(&e, e.tc.cluster_with_fault(&fault).await, ia.clone());
    let d = tmp("flaky");
    write_checkout(&d, n, &[cm(n, "x", "1"), cm(n, "y", "1")]);
    let (out, _) = sync(&mut a, &d, "c1").await;
    assert!(healthy(&out), "{out:?}");
    let before = c.get(&inv_cm(&inv)).await.unwrap().unwrap();
    // y leaves the desired state, and the prune's read of the inventory fails once (the
    // first matching GET of the loop, recording what was applied, passes).
    write_checkout(&d, n, &[cm(n, "x", "1")]);
    fault.arm(1, 1);
    let (out, prog) = sync(&mut a, &d, "c2").await;
    assert_eq!(fault.failed(), 1, "the fault was hit");
    assert!(healthy(&out), "{out:?}");
    assert!(deleted(&prog).is_empty(), "{:?}", deleted(&prog));
    let skipped: Vec<String> = notes(&prog)
        .into_iter()
        .filter(|m| m.contains("prune of app skipped") && m.contains("nothing deleted"))
        .collect();
    assert_eq!(skipped.len(), 1, "{:?}", notes(&prog));
    assert!(
        !notes(&prog).iter().any(|m| m.contains("not updated")),
        "the fault hit the prune's read: {:?}",
        notes(&prog)
    );
    assert!(
        skipped[0].contains(cause),
        "{how:?}: the cause is reported: {}",
        skipped[0]
    );
    assert!(exists(c, &cm(n, "y", "")).await, "nothing is deleted");
    let after = c.get(&inv_cm(&inv)).await.unwrap().unwrap();
    assert_eq!(
        after["data"], before["data"],
        "the inventory is not rewritten without the entries it could not read"
    );
    // The next loop reads the inventory and prunes y.
    let (out, prog) = sync(&mut a, &d, "c3").await;
    assert!(healthy(&out), "{out:?}");
    assert_eq!(deleted(&prog), vec![format!("ConfigMap/{n}/y")], "{prog:?}");
    assert!(!exists(c, &cm(n, "y", "")).await);
    assert!(exists(c, &cm(n, "x", "")).await);
    e.clean(&[n], &[(&ia, "app")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_protect_policy_stops_the_agent_at_start_up() {
    use stackwave::cluster::policy::{PolicyText, PolicyTexts};
    let e = env().await;
    let texts = PolicyTexts {
        protect: PolicyText {
            file: "policies/protect.yaml",
            text: "protect:\n  - {group: k8s.mariadb.com, kind: Database}\n  - {group: rabbitmq.com, kind: User\n",
        },
        ..PolicyTexts::SHIPPED
    };
    let err = Agent::with_policies(
        e.cluster.clone(),
        Store::in_memory().unwrap(),
        Catalog::builtin().unwrap(),
        Settings::default(),
        &texts,
    )
    .err()
    .expect("a malformed protect.yaml must stop the agent");
    let m = err.to_string();
    assert!(m.contains("policies/protect.yaml:"), "{m}");
    let line: usize = m
        .split("policies/protect.yaml:")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no line in {m}"));
    assert!((3..=4).contains(&line), "{m}");
    // The shipped files start an agent.
    assert!(Agent::with_policies(
        e.cluster.clone(),
        Store::in_memory().unwrap(),
        Catalog::builtin().unwrap(),
        Settings::default(),
        &PolicyTexts::SHIPPED,
    )
    .is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn immutable_fields_are_replaced_only_when_allowed_and_refusals_never() {
    let e = env().await;
    let c = &e.cluster;
    let n = "own-immutable";
    e.clean(&[n], &[]).await;
    c.apply(&ns(n), &Default::default()).await.unwrap();
    let replace = ApplyOptions {
        replace_immutable: true,
        ..Default::default()
    };
    // A StatefulSet's volumeClaimTemplates, as recorded (immutable.json): a
    // FieldValueForbidden cause from ValidateStatefulSetUpdate.
    let sts = |size: &str| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": n},
               "spec": {"serviceName": "db", "replicas": 0, "selector": {"matchLabels": {"app": "db"}},
                        "template": {"metadata": {"labels": {"app": "db"}},
                                     "spec": {"containers": [{"name": "db", "image": "registry.k8s.io/pause:3.10"}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}]}})
    };
    let first = c.apply(&sts("1Gi"), &Default::default()).await.unwrap();
    match c.apply(&sts("2Gi"), &Default::default()).await {
        Err(ClusterError::Immutable { message, .. }) => {
            assert!(message.contains("updates to statefulset spec"), "{message}")
        }
        other => panic!("expected an immutable-field error, got {other:?}"),
    }
    let replaced = c.apply(&sts("2Gi"), &replace).await.unwrap();
    assert_eq!(replaced.action, Action::Replaced);
    assert_ne!(
        replaced.live["metadata"]["uid"],
        first.live["metadata"]["uid"]
    );
    // A Job: a refusal that is not about immutability (an invalid label value) is reported
    // with its causes and never replaces the Job, even where replacement is allowed.
    let job = |image: &str, label: &str| {
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "db-sync", "namespace": n, "labels": {"tier": label}},
               "spec": {"template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "sync", "image": image}]}}}})
    };
    let created = c
        .apply(
            &job("registry.k8s.io/pause:3.10", "ok"),
            &Default::default(),
        )
        .await
        .unwrap();
    match c
        .apply(&job("registry.k8s.io/pause:3.9", "not valid!"), &replace)
        .await
    {
        Err(ClusterError::Refused { causes, .. }) => {
            assert!(
                causes.iter().any(|x| x.field == "metadata.labels"),
                "{causes:?}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let live = c
        .get(&created.live)
        .await
        .unwrap()
        .expect("the Job is kept");
    assert_eq!(live["metadata"]["uid"], created.live["metadata"]["uid"]);
    // The template change alone is an immutable-field error: replaced when allowed.
    let r = c
        .apply(&job("registry.k8s.io/pause:3.9", "ok"), &replace)
        .await
        .unwrap();
    assert_eq!(r.action, Action::Replaced);
    e.clean(&[n], &[]).await;
}

fn deployment(ns: &str, name: &str, replicas: i64) -> Json {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
           "spec": {"replicas": replicas, "revisionHistoryLimit": 5, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}}})
}

/// A merge patch by another field manager (`kubectl scale`, an HPA, a hand edit).
async fn patch_as(c: &Cluster, manager: &str, o: &Json, patch: Json) {
    let api = kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
        c.client().clone(),
        o["metadata"]["namespace"].as_str().unwrap(),
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "apps",
            "v1",
            "Deployment",
        )),
    );
    api.patch(
        o["metadata"]["name"].as_str().unwrap(),
        &kube::api::PatchParams {
            field_manager: Some(manager.into()),
            ..Default::default()
        },
        &kube::api::Patch::Merge(patch),
    )
    .await
    .unwrap();
}

fn stackwave_owns_replicas(live: &Json) -> bool {
    stackwave::cluster::hpa::stackwave_owns(live, "/spec/replicas")
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_are_left_to_an_hpa_only_where_one_targets_the_deployment() {
    let e = env().await;
    let c = &e.cluster;
    let n = "own-hpa";
    let ia = region("a");
    e.clean(&[n], &[(&ia, "app")]).await;
    let mut a = agent(&e, ia.clone());
    let d = tmp("hpa");
    let (nova, keystone) = (
        deployment(n, "nova-conductor", 2),
        deployment(n, "keystone-api", 2),
    );
    write_checkout(&d, n, &[nova.clone(), keystone.clone()]);
    let (out, _) = sync(&mut a, &d, "c1").await;
    assert!(healthy(&out), "{out:?}");
    // An operator autoscales keystone-api (out of band, as `kubectl autoscale` would).
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keystone-api", "namespace": n},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "keystone-api"},
                 "minReplicas": 2, "maxReplicas": 6,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}});
    let hpa_api = kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
        c.client().clone(),
        n,
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
        )),
    );
    hpa_api
        .patch(
            "keystone-api",
            &kube::api::PatchParams::apply("kubectl"),
            &kube::api::Patch::Apply(&hpa),
        )
        .await
        .unwrap();
    // Someone edits another field of keystone-api; the next correction hands replicas over
    // (Stackwave owned them) without changing them.
    patch_as(
        c,
        "kubectl-edit",
        &keystone,
        json!({"spec": {"revisionHistoryLimit": 3}}),
    )
    .await;
    let found = a.drift(true).await.unwrap();
    assert!(found
        .iter()
        .any(|f| f.object.ends_with("/keystone-api") && f.path == "/spec/revisionHistoryLimit"));
    let live = c.get(&keystone).await.unwrap().unwrap();
    assert_eq!(live["spec"]["revisionHistoryLimit"], json!(5));
    assert_eq!(
        live["spec"]["replicas"],
        json!(2),
        "replicas kept at handover"
    );
    assert!(
        !stackwave_owns_replicas(&live),
        "{}",
        live["metadata"]["managedFields"]
    );
    // The HPA scales keystone-api; `kubectl scale` scales nova-conductor (no HPA).
    patch_as(
        c,
        "horizontal-pod-autoscaler",
        &keystone,
        json!({"spec": {"replicas": 4}}),
    )
    .await;
    patch_as(c, "kubectl", &nova, json!({"spec": {"replicas": 3}})).await;
    patch_as(
        c,
        "kubectl-edit",
        &keystone,
        json!({"spec": {"revisionHistoryLimit": 3}}),
    )
    .await;
    let found = a.drift(false).await.unwrap();
    let paths: Vec<(String, String)> = found
        .iter()
        .map(|f| (f.object.clone(), f.path.clone()))
        .collect();
    assert!(
        paths.contains(&(
            format!("Deployment/{n}/nova-conductor"),
            "/spec/replicas".into()
        )),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&(
            format!("Deployment/{n}/keystone-api"),
            "/spec/replicas".into()
        )),
        "{paths:?}"
    );
    assert!(paths.contains(&(
        format!("Deployment/{n}/keystone-api"),
        "/spec/revisionHistoryLimit".into()
    )));
    a.drift(true).await.unwrap();
    let nova_live = c.get(&nova).await.unwrap().unwrap();
    assert_eq!(
        nova_live["spec"]["replicas"],
        json!(2),
        "nova-conductor corrected"
    );
    let live = c.get(&keystone).await.unwrap().unwrap();
    assert_eq!(live["spec"]["revisionHistoryLimit"], json!(5));
    assert_eq!(live["spec"]["replicas"], json!(4), "the HPA's value stays");
    assert!(!stackwave_owns_replicas(&live));
    // A new revision changing keystone-api applies without replicas too.
    let mut keystone2 = keystone.clone();
    keystone2["spec"]["revisionHistoryLimit"] = json!(6);
    write_checkout(&d, n, &[nova.clone(), keystone2]);
    let (out, _) = sync(&mut a, &d, "c2").await;
    assert!(healthy(&out), "{out:?}");
    let live = c.get(&keystone).await.unwrap().unwrap();
    assert_eq!(live["spec"]["revisionHistoryLimit"], json!(6));
    assert_eq!(live["spec"]["replicas"], json!(4));
    assert!(!stackwave_owns_replicas(&live));
    assert!(stackwave_owns_replicas(
        &c.get(&nova).await.unwrap().unwrap()
    ));
    e.clean(&[n], &[(&ia, "app")]).await;
}

/// Runs the `stackwave` CLI in-process (its own runtime, as the binary has); the exit code.
fn cli(args: &[String]) -> i32 {
    let mut argv = vec!["stackwave".to_string()];
    argv.extend(args.iter().cloned());
    stackwave::cli::run(stackwave::cli::Cli::parse_from(argv))
}

#[test]
fn sync_run_once_and_rollback_exit_codes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt.block_on(env());
    let n = "own-exit";
    let name = "exit-codes";
    let repo = tmp("exit-repo");
    let state = tmp("exit-state");
    let ia = Instance::new(name, &repo.display().to_string()).unwrap();
    rt.block_on(e.clean(&[n], &[(&ia, "app")]));
    let run = |cmd: &str, extra: &[&str]| {
        let mut a: Vec<String> = [cmd, "--repo", &repo.display().to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(
            [
                "--state",
                &state.display().to_string(),
                "--instance",
                name,
                "--health-timeout",
                "60",
                "--no-watch",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(e.cluster_args());
        cli(&a)
    };
    write_checkout(&repo, n, &[cm(n, "a", "1")]);
    assert_eq!(run("sync", &[]), 0, "applied and healthy");
    assert_eq!(run("run", &["--once"]), 0, "nothing to do");
    // A revision the API server rejects (a label value it refuses) is refused by the
    // preflight dry run, before anything is applied.
    let mut bad = cm(n, "b", "1");
    bad["metadata"]["labels"] = json!({"tier": "not valid!"});
    write_checkout(&repo, n, &[cm(n, "a", "1"), bad]);
    assert_eq!(run("sync", &[]), 3, "refused at preflight");
    assert_eq!(run("run", &["--once"]), 3, "refused at preflight");
    // A checkout that does not render is refused.
    std::fs::write(
        repo.join("stackwave.yaml"),
        "genestack: {path: empty}\ncomponents: [no-such-component]\n",
    )
    .unwrap();
    assert_eq!(run("sync", &[]), 3, "refused");
    // Rollback to the first (healthy) revision: 0; to a revision that does not exist: 1.
    let rb = |target: &str| {
        let mut a = vec![
            "rollback".to_string(),
            target.to_string(),
            "--state".into(),
            state.display().to_string(),
            "--health-timeout".into(),
            "60".into(),
        ];
        a.extend(e.cluster_args());
        cli(&a)
    };
    assert_eq!(rb("1"), 0, "rolled back");
    assert_eq!(rb("999"), 1, "no such revision");
    let live = rt
        .block_on(e.cluster.get(&cm(n, "a", "")))
        .unwrap()
        .expect("a is applied");
    assert_eq!(
        live.pointer("/metadata/labels/stackwave.io~1instance"),
        Some(&json!(ia.id())),
        "the CLI marks objects with its instance"
    );
    // `rollback` acted as the recorded instance: its inventory, not the default one's.
    let c = &e.cluster;
    let refs = rt.block_on(inventory::read(c, &ia, "app")).unwrap();
    assert!(refs.contains(&ObjRef::of(&cm(n, "a", ""))), "{refs:?}");
    // (Another test's default-instance inventory may exist on a shared server: only this
    // test's object matters.)
    let other = rt.block_on(inventory::read(c, &Instance::default(), "app"));
    assert!(
        !other.unwrap().contains(&ObjRef::of(&cm(n, "a", ""))),
        "the default instance's inventory does not hold the rollback's object"
    );
    let status = stackwave::control::status(&state).unwrap();
    assert_eq!(status.instance_id, Some(ia.id()));
    rt.block_on(e.clean(&[n], &[(&ia, "app")]));
}
