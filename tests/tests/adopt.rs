//! `stackwave adopt` (issue 16): a cloud "installed by the scripts" — Helm 3 style, objects
//! created and then three-way-merge patched with field manager `helm`, release records
//! `sh.helm.release.v1.<name>.v<N>` encoded as Helm encodes them — taken over without a
//! restart. keystone, memcached and nova from the shared corpus, and the infrastructure chart
//! redis-operator (a test-only catalog entry: the catalog's infra entries are another
//! branch's work). Runs on the in-process test server, or unchanged on the server named by
//! `STACKWAVE_TEST_KUBECONFIG`; the controller stand-in makes workloads ready.

use serde_json::{json, Value as Json};
use stackwave::adopt::{self, release, Effect};
use stackwave::cluster::{instance::Instance, object_id, Cluster};
use stackwave::component::Catalog;
use stackwave::reconcile::{Agent, Outcome, Settings};
use stackwave::record::Store;
use stackwave::source::Source;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The test-only catalog: redis-operator as `bin/install-redis-operator.sh` installs it
/// (`../shared/corpus/charts/INFRA.md`), and nova without its `dependsOn` (ordering only,
/// so the test need not install placement, glance and libvirt too).
const CATALOG: &[(&str, &str)] = &[
    ("redis-operator.yaml", "name: redis-operator\nkind: helm\nwave: 1\nrelease:\n  name: redis-operator\n  namespace: redis-systems\nchart:\n  name: redis-operator\n  versionKey: redis-operator\nvalues:\n  dir: redis-operator\n  globalOverrides: false\npostRender:\n  overlay: redis-operator/overlay\n"),
];

const COMPONENTS: [&str; 4] = ["memcached", "keystone", "nova", "redis-operator"];

/// A pod annotation the first commit gives redis-operator (and a later one removes).
const POD_ANNOTATION: &str = "example.com/adoption-test";

fn quiet(_: stackwave::reconcile::Progress) {}

/// The tests share the fixed namespaces `openstack` and `redis-systems`: one at a time.
static FIXED_NAMESPACES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn catalog(dir: &Path) -> Catalog {
    let mut c = Catalog::builtin().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (f, t) in CATALOG {
        std::fs::write(dir.join(f), t).unwrap();
    }
    let nova = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../components/nova.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("nova.yaml"),
        nova.replace(
            "dependsOn: [keystone, placement, glance, libvirt]",
            "dependsOn: []",
        ),
    )
    .unwrap();
    c.overlay_dir(dir).unwrap();
    c
}

/// Writes (and commits) the desired-state repository: `components`, `adopt: auto` when
/// `auto`, redis-operator's pod annotation when `annotate`.
fn repo(root: &Path, shared: &Path, components: &[&str], auto: bool, annotate: bool) -> PathBuf {
    let dir = root.join("repo");
    std::fs::create_dir_all(dir.join("helm-configs/redis-operator")).unwrap();
    let abs = |p: &str| std::fs::canonicalize(shared.join(p)).unwrap();
    std::fs::write(
        dir.join("stackwave.yaml"),
        format!(
            "genestack:\n  path: {}\ncharts:\n  path: {}\ncomponents: [{}]\n{}",
            abs("corpus/genestack").display(),
            abs("corpus/charts").display(),
            components.join(", "),
            if auto { "adopt: auto\n" } else { "" }
        ),
    )
    .unwrap();
    let ov = dir.join("helm-configs/redis-operator/overrides.yaml");
    if annotate {
        std::fs::write(
            &ov,
            format!("redisOperator:\n  podAnnotations:\n    {POD_ANNOTATION}: \"1\"\n"),
        )
        .unwrap();
    } else {
        std::fs::write(&ov, "---\n").unwrap();
    }
    if !dir.join(".git").exists() {
        stackwave_tests::git(&dir, &["init", "-q", "-b", "main"]);
    }
    stackwave_tests::git(&dir, &["add", "-A"]);
    stackwave_tests::git(
        &dir,
        &[
            "commit",
            "-q",
            "-m",
            if annotate {
                "desired state"
            } else {
                "drop the pod annotation"
            },
        ],
    );
    dir
}

/// What the scripts' `helm upgrade --install` leaves: objects without Stackwave's marks,
/// with Helm's ownership metadata (`app.kubernetes.io/managed-by: Helm`,
/// `meta.helm.sh/release-name|namespace`).
fn as_helm_renders(objs: &[Json], release: &str, ns: &str) -> Vec<Json> {
    objs.iter()
        .map(|o| {
            let mut o = o.clone();
            let m = &mut o["metadata"];
            if let Some(l) = m["labels"].as_object_mut() {
                l.retain(|k, _| !k.starts_with("stackwave.io/"));
                l.insert("app.kubernetes.io/managed-by".into(), json!("Helm"));
            }
            if let Some(a) = m["annotations"].as_object_mut() {
                a.retain(|k, _| !k.starts_with("stackwave.io/"));
            }
            m["annotations"]["meta.helm.sh/release-name"] = json!(release);
            m["annotations"]["meta.helm.sh/release-namespace"] = json!(ns);
            o
        })
        .collect()
}

async fn api(c: &Cluster, o: &Json) -> kube::Api<kube::api::DynamicObject> {
    let (ar, caps) = c.resolve(o).await.unwrap();
    match caps.scope {
        kube::discovery::Scope::Namespaced => {
            kube::Api::namespaced_with(c.client().clone(), stackwave::cluster::namespace_of(o), &ar)
        }
        kube::discovery::Scope::Cluster => kube::Api::all_with(c.client().clone(), &ar),
    }
}

/// Installs a release as Helm 3 does: revision 1 created (POST, field manager `helm`) with an
/// extra annotation, revision 2 a three-way-merge patch (strategic merge patch, field manager
/// `helm`, operation Update) removing it; the release records of both revisions, with
/// `config` (the user values Helm was given) = `values`.
async fn helm_install(c: &Cluster, release: &str, ns: &str, objs: &[Json], values: &Json) {
    for o in objs {
        let mut v1 = o.clone();
        v1["metadata"]["annotations"]["example.com/helm-revision"] = json!("1");
        let a = api(c, o).await;
        let body: kube::api::DynamicObject = serde_json::from_value(v1).unwrap();
        // What the bootstrap made that the chart renders too (nova-ssh) is Helm's.
        if c.get(o).await.unwrap().is_some() {
            c.delete_and_wait(o, Duration::from_secs(30)).await.unwrap();
        }
        a.create(
            &kube::api::PostParams {
                dry_run: false,
                field_manager: Some("helm".into()),
            },
            &body,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", object_id(o)));
        let patch = json!({"metadata": {"annotations": {"example.com/helm-revision": null}}});
        let pp = kube::api::PatchParams {
            field_manager: Some("helm".into()),
            ..Default::default()
        };
        a.patch(
            stackwave::cluster::name_of(o),
            &pp,
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    }
    let manifest: String = objs
        .iter()
        .map(|o| format!("---\n{}", serde_json::to_string(o).unwrap()))
        .collect();
    for (rev, status) in [(1, "superseded"), (2, "deployed")] {
        let doc = json!({"name": release, "namespace": ns, "version": rev,
            "info": {"status": status, "description": if rev == 1 { "Install complete" } else { "Upgrade complete" }},
            "chart": {"metadata": {"name": release, "version": chart_version(objs)}},
            "config": values,
            "manifest": manifest});
        c.create(&release::record_secret(ns, release, rev, status, &doc))
            .await
            .unwrap();
    }
}

/// The chart version the render labels its objects with (`helm.sh/chart: <name>-<version>`).
fn chart_version(objs: &[Json]) -> String {
    objs.iter()
        .find_map(|o| {
            o.pointer("/metadata/labels/helm.sh~1chart")
                .and_then(Json::as_str)
        })
        .and_then(|l| l.rsplit_once('-').map(|(_, v)| v.to_string()))
        .unwrap_or_else(|| "0.0.0".into())
}

/// The live objects once the stand-in has written their status (two reads 700 ms apart
/// agree).
async fn settled(c: &Cluster, objs: &[Json]) -> Vec<Json> {
    let read = || async {
        let mut v = Vec::new();
        for o in objs {
            v.push(c.get(o).await.unwrap().unwrap());
        }
        v
    };
    let mut last = read().await;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = read().await;
        if now.iter().map(rv).eq(last.iter().map(rv)) {
            return now;
        }
        last = now;
    }
    panic!("workloads never settled");
}

/// A pod template's hash: sha256 of its JSON with keys sorted and `null` fields dropped (the
/// API server may store keys in another order than they were sent; a typed field that is
/// `null` is absent).
fn template_hash(o: &Json) -> String {
    fn sorted(v: &Json) -> Json {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().filter(|k| !m[*k].is_null()).collect();
                keys.sort();
                Json::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Json::Array(a) => Json::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    use sha2::{Digest, Sha256};
    let t = sorted(&o["spec"]["template"]);
    format!("{:x}", Sha256::digest(serde_json::to_vec(&t).unwrap()))
}

/// `kubectl scale`: `spec.replicas` set as field manager `kubectl`.
async fn scale(c: &Cluster, o: &Json, replicas: i64) {
    let pp = kube::api::PatchParams {
        field_manager: Some("kubectl".into()),
        ..Default::default()
    };
    api(c, o)
        .await
        .patch(
            stackwave::cluster::name_of(o),
            &pp,
            &kube::api::Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

/// The string values under keys naming a password, anywhere in `v`.
fn passwords(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Object(m) => {
            for (k, x) in m {
                match x {
                    Json::String(s) if k.contains("password") && s.len() >= 8 => {
                        out.push(s.clone())
                    }
                    _ => passwords(x, out),
                }
            }
        }
        Json::Array(a) => a.iter().for_each(|x| passwords(x, out)),
        _ => {}
    }
}

/// The component whose render holds `o`.
fn comp_of<'a>(rendered: &'a std::collections::BTreeMap<String, Vec<Json>>, o: &Json) -> &'a str {
    rendered
        .iter()
        .find(|(_, objs)| objs.contains(o))
        .map(|(c, _)| c.as_str())
        .unwrap_or("")
}

fn rv(o: &Json) -> String {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// One test's cloud: the cluster with the operators' CRDs and Genestack's Secrets and
/// Services, the repository, an agent and its source.
struct Env {
    tc: stackwave_tests::TestCluster,
    c: Cluster,
    agent: Agent,
    source: Source,
    root: PathBuf,
}

impl Env {
    async fn new(name: &str, shared: &Path, components: &[&str], auto: bool) -> Env {
        let root =
            std::env::temp_dir().join(format!("stackwave-adopt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let tc = stackwave_tests::TestCluster::start(
            kube_standin::Rules::default().with_delay(Duration::from_millis(100)),
        )
        .await;
        let c = tc.cluster.clone();
        for ns in ["openstack", "redis-systems"] {
            tc.fixed_ns(ns);
            c.apply(
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                &Default::default(),
            )
            .await
            .unwrap();
        }
        // The operators' CRDs (the cloud's operators are installed before its services).
        let crds = kustomize_rs::build_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/operator-crds"),
            &Default::default(),
        )
        .unwrap();
        for o in stackwave::reconcile::objects_of(&crds).unwrap() {
            tc.cleanup_later(o.clone());
            c.apply(&o, &Default::default()).await.unwrap();
        }
        // The Secrets and Services the install scripts look up.
        for f in ["secrets.yaml", "cluster-state.yaml"] {
            let text = std::fs::read_to_string(shared.join("corpus/genestack").join(f)).unwrap();
            for mut o in stackwave::reconcile::objects_of(&text).unwrap() {
                if o["kind"] == "Service" {
                    o["status"] = json!({});
                }
                if stackwave::cluster::namespace_of(&o) != "openstack" {
                    tc.cleanup_later(o.clone());
                }
                c.apply(&o, &Default::default()).await.unwrap();
            }
        }
        let dir = repo(&root, shared, components, auto, true);
        let url = format!("file://{}", dir.display());
        let state = root.join("state");
        let store = Store::open(&state.join("revisions.sqlite"), &state.join("store.key")).unwrap();
        let settings = Settings {
            health_timeout: Duration::from_secs(if tc.in_process() { 20 } else { 60 }),
            cache_dir: state.join("cache"),
            ..Default::default()
        };
        let mut agent =
            Agent::new(c.clone(), store, catalog(&root.join("catalog")), settings).unwrap();
        let instance = Instance::new(stackwave::cluster::instance::DEFAULT_NAME, &url).unwrap();
        for comp in components {
            tc.cleanup_later(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "stackwave-system", "name": stackwave::cluster::inventory::inventory_name(&instance, comp)}}));
        }
        agent.set_instance(instance).unwrap();
        let source = Source::open(&url, "main", &state).unwrap();
        Env {
            tc,
            c,
            agent,
            source,
            root,
        }
    }

    /// Fetches the branch head of `source` and exports it under `root`.
    fn checkout_of(source: &Source, root: &Path) -> (stackwave::source::Commit, PathBuf) {
        let commit = source.fetch().unwrap();
        let d = source
            .export(&commit.id, &root.join("state/checkout"))
            .unwrap();
        (commit, d)
    }
}

/// The value a hand `helm upgrade --reuse-values --set` gave keystone before adoption: the
/// chart's default (`pod.replicas.api: 1` in its values.yaml, which Genestack's overrides do
/// not set), so no object changed, but the release's values are no longer the repository's.
const HAND_SET: (&str, i64) = ("/pod/replicas/api", 1);

/// Renders `co` and installs `components` from it "as the scripts did", each release recorded
/// with the user values the render gave Helm (keystone's with [`HAND_SET`] on top).
async fn install(
    tc: &stackwave_tests::TestCluster,
    c: &Cluster,
    agent: &Agent,
    co: &Path,
    components: &[&str],
) -> std::collections::BTreeMap<String, Vec<Json>> {
    let out = agent.render_all(co, &quiet).await.unwrap();
    let rendered = out.objects;
    for comp in components {
        let mut values = out.values[*comp].clone();
        if *comp == "keystone" {
            values["pod"]["replicas"]["api"] = json!(HAND_SET.1);
        }
        let r = agent.render.catalog.get(comp).unwrap().release.clone();
        let objs = as_helm_renders(&rendered[*comp], &r.name, &r.namespace);
        for o in objs
            .iter()
            .filter(|o| stackwave::cluster::namespace_of(o).is_empty())
        {
            tc.cleanup_later(o.clone());
        }
        helm_install(c, &r.name, &r.namespace, &objs, &values).await;
    }
    rendered
}

/// Runs `test` over the shared corpus, one test at a time (they share the fixed namespaces),
/// or prints why it was skipped.
fn corpus_test<F: std::future::Future<Output = ()>>(test: impl FnOnce(PathBuf) -> F) {
    let Some(shared) = stackwave_tests::shared_dir() else {
        eprintln!("SKIPPED: ../shared is not present");
        return;
    };
    if stackwave::render::helm::Helm::get().is_err() {
        eprintln!("SKIPPED: libhelm_c is not available (run scripts/setup)");
        return;
    }
    let _one = FIXED_NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(test(shared));
}

#[test]
fn adopt_a_script_installed_cloud_without_restarts() {
    corpus_test(run);
}

async fn run(shared: PathBuf) {
    let Env {
        tc,
        c,
        mut agent,
        source,
        root,
        ..
    } = Env::new("main", &shared, &COMPONENTS, false).await;
    let checkout = |s: &Source| Env::checkout_of(s, &root);
    let (commit, co) = checkout(&source);

    // 1. Installed by the scripts.
    let rendered = install(&tc, &c, &agent, &co, &COMPONENTS).await;
    // An operator scaled memcached by hand before adoption.
    let memcached = rendered["memcached"]
        .iter()
        .find(|o| o["kind"] == "StatefulSet" || o["kind"] == "Deployment")
        .unwrap()
        .clone();
    let replicas = memcached["spec"]["replicas"].as_i64().unwrap_or(1);
    scale(&c, &memcached, replicas + 2).await;
    // Ready, as the controllers would make them.
    let workloads: Vec<Json> = rendered
        .values()
        .flatten()
        .filter(|o| {
            ["Deployment", "StatefulSet", "DaemonSet"].contains(&o["kind"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect();
    assert!(
        workloads.iter().any(|o| o["kind"] == "Deployment"),
        "no Deployment rendered"
    );
    let before = settled(&c, &workloads).await;

    // 2. The agent without `adopt: auto` refuses to overwrite Helm's objects.
    let out = agent.sync(&co, &commit, &quiet).await.unwrap();
    match &out {
        Outcome::Refused { reason } => assert!(
            reason.contains("stackwave adopt") && reason.contains("keystone"),
            "{reason}"
        ),
        other => panic!("not refused: {other:?}"),
    }
    for (w, b) in workloads.iter().zip(&before) {
        assert_eq!(
            rv(&c.get(w).await.unwrap().unwrap()),
            rv(b),
            "{} written by a refused sync",
            object_id(w)
        );
    }

    // 3. The dry run: keystone, nova, redis-operator match (no-restart); memcached differs
    //    in exactly the field changed by hand.
    let plan = adopt::plan(&mut agent, &co, &commit.id, &[], &quiet)
        .await
        .unwrap();
    let text = adopt::cli::plan_text(&plan);
    eprintln!("{text}");
    // The release's values hold the cloud's passwords: never printed (text or JSON).
    let values = agent.render_all(&co, &quiet).await.unwrap().values;
    let json_plan = serde_json::to_string(&plan).unwrap();
    let mut secrets = Vec::new();
    passwords(&values["keystone"], &mut secrets);
    assert!(!secrets.is_empty(), "keystone's values hold no password");
    for p in &secrets {
        assert!(
            !text.contains(p.as_str()) && !json_plan.contains(p.as_str()),
            "values printed in clear:\n{text}"
        );
    }
    for p in &plan.components {
        let f = p
            .release
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no release found", p.component));
        assert_eq!(
            (f.current.revision, f.revisions.clone()),
            (2, vec![2, 1]),
            "{}",
            p.component
        );
        let diffs: Vec<String> = p
            .differences()
            .map(|d| format!("{} {} {} -> {}", d.object, d.path, d.live, d.adopted))
            .collect();
        // keystone's hand `helm upgrade --set` is called out by its path (no value); the
        // others' releases hold exactly the repository's values and chart.
        if p.component == "keystone" {
            assert_eq!(p.callouts.len(), 1, "{text}");
            assert!(
                p.callouts[0].contains(HAND_SET.0) && p.callouts[0].contains("values not shown"),
                "{text}"
            );
        } else {
            assert!(p.callouts.is_empty(), "{}: {:?}", p.component, p.callouts);
        }
        if p.component == "memcached" {
            assert!(!p.matches);
            assert_eq!(
                diffs,
                vec![format!(
                    "{} /spec/replicas {} -> {replicas}",
                    object_id(&memcached),
                    replicas + 2
                )],
                "{text}"
            );
        } else {
            assert!(p.matches, "{}: {diffs:#?}", p.component);
            assert_eq!(p.effect, Effect::NoRestart, "{text}");
        }
        assert!(p.helm_only.is_empty(), "{:?}", p.helm_only);
    }

    // 4. adopt --apply: the three matching ones, no rollout, Stackwave owns every field.
    let report = adopt::apply(&mut agent, &plan, &[], false, &quiet)
        .await
        .unwrap();
    let adopted_rev = report.revision.unwrap();
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.skipped[0].0, "memcached");
    for (w, b) in workloads.iter().zip(&before) {
        let live = c.get(w).await.unwrap().unwrap();
        if comp_of(&rendered, w) == "memcached" {
            assert_eq!(rv(&live), rv(b), "memcached touched");
            continue;
        }
        assert_eq!(
            template_hash(&live),
            template_hash(b),
            "{} template changed",
            object_id(w)
        );
        // No rollout, not even a Deployment's generation: the ownership marks are labels and
        // adoption changes no annotation (a Deployment's annotations move its generation,
        // kube-apiserver pkg/registry/apps/deployment/strategy.go PrepareForUpdate).
        let predicted = plan
            .components
            .iter()
            .flat_map(|p| &p.objects)
            .find(|x| x.object == object_id(w))
            .unwrap();
        assert!(predicted.rolls.is_empty());
        assert_eq!(predicted.generation, None, "{}", object_id(w));
        assert_eq!(
            live["metadata"]["generation"],
            b["metadata"]["generation"],
            "{} generation moved",
            object_id(w)
        );
        assert_eq!(
            live["metadata"]["annotations"],
            b["metadata"]["annotations"],
            "{} annotations changed",
            object_id(w)
        );
        assert_eq!(
            live.pointer("/metadata/labels/stackwave.io~1component"),
            Some(&json!(comp_of(&rendered, w))),
            "{} not marked",
            object_id(w)
        );
    }
    for a in &report.adopted {
        assert!(
            a.generation_changed.is_empty(),
            "{}: generation moved: {:?}",
            a.component,
            a.generation_changed
        );
    }
    for comp in ["keystone", "nova", "redis-operator"] {
        for o in &rendered[comp] {
            let live = c.get(o).await.unwrap().unwrap();
            let mf = live["metadata"]["managedFields"].as_array().unwrap();
            assert!(
                !mf.iter().any(|e| e["manager"] == "helm"),
                "{}: {mf:?}",
                object_id(o)
            );
            let owned = mf
                .iter()
                .find(|e| e["manager"] == "stackwave" && e["operation"] == "Apply")
                .unwrap_or_else(|| panic!("{}: {mf:?}", object_id(o)));
            for k in o
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !["apiVersion", "kind"].contains(&k.as_str()))
            {
                assert!(
                    owned["fieldsV1"].get(format!("f:{k}")).is_some(),
                    "{}: stackwave does not own {k}: {}",
                    object_id(o),
                    owned["fieldsV1"]
                );
            }
            if let Some(spec) = o["spec"].as_object() {
                for k in spec.keys() {
                    assert!(
                        owned["fieldsV1"]["f:spec"].get(format!("f:{k}")).is_some(),
                        "{}: spec.{k} not owned",
                        object_id(o)
                    );
                }
            }
        }
        let r = agent.render.catalog.get(comp).unwrap().release.clone();
        assert!(
            release::records(&c, &r.namespace, &r.name)
                .await
                .unwrap()
                .is_empty(),
            "{comp}: Helm still sees its records"
        );
        let sample = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": r.namespace, "name": "x"}});
        let retired = c
            .list(
                &sample,
                &format!("name={},{}", r.name, release::ADOPTED_LABEL),
            )
            .await
            .unwrap();
        assert_eq!(retired.len(), 2, "{comp}: records not labelled");
    }
    let memcached_release = release::records(&c, "openstack", "memcached")
        .await
        .unwrap();
    assert_eq!(memcached_release.len(), 2, "memcached's records touched");
    let revs = agent.store.revisions().unwrap();
    assert_eq!(revs[0].author, adopt::ADOPTED_AUTHOR);

    // 5. The operator scales memcached back; now it matches and is adopted; the next loop
    //    is a no-op that writes nothing.
    scale(&c, &memcached, replicas).await;
    let plan = adopt::plan(
        &mut agent,
        &co,
        &commit.id,
        &["memcached".to_string()],
        &quiet,
    )
    .await
    .unwrap();
    assert!(
        plan.components[0].matches,
        "{}",
        adopt::cli::plan_text(&plan)
    );
    let report = adopt::apply(&mut agent, &plan, &[], false, &quiet)
        .await
        .unwrap();
    let adopted_rev = report.revision.unwrap_or(adopted_rev);
    let all: Vec<Json> = rendered.values().flatten().cloned().collect();
    let mut rvs = Vec::new();
    for o in &all {
        rvs.push(rv(&c.get(o).await.unwrap().unwrap()));
    }
    let out = agent.sync(&co, &commit, &quiet).await.unwrap();
    assert!(matches!(out, Outcome::Unchanged), "{out:?}");
    for (o, r) in all.iter().zip(&rvs) {
        assert_eq!(
            &rv(&c.get(o).await.unwrap().unwrap()),
            r,
            "{} written by a no-op loop",
            object_id(o)
        );
    }

    // 6. Removing a field from the desired state removes it live: Helm co-owns nothing.
    let operator = rendered["redis-operator"]
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()
        .clone();
    let live = c.get(&operator).await.unwrap().unwrap();
    assert_eq!(
        live["spec"]["template"]["metadata"]["annotations"][POD_ANNOTATION],
        json!("1")
    );
    repo(&root, &shared, &COMPONENTS, false, false);
    let (commit2, co2) = checkout(&source);
    let out = agent.sync(&co2, &commit2, &quiet).await.unwrap();
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    let live = c.get(&operator).await.unwrap().unwrap();
    assert!(
        live.pointer(&format!(
            "/spec/template/metadata/annotations/{}",
            POD_ANNOTATION.replace('/', "~1")
        ))
        .is_none(),
        "{}",
        live["spec"]["template"]["metadata"]
    );

    // 7. Rolling back to the adopted revision re-applies what was running.
    let out = agent.rollback(adopted_rev, false, &quiet).await.unwrap();
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    let live = c.get(&operator).await.unwrap().unwrap();
    assert_eq!(
        live["spec"]["template"]["metadata"]["annotations"][POD_ANNOTATION],
        json!("1")
    );
    drop(tc);
    let _ = std::fs::remove_dir_all(&root);
}

/// `adopt: auto`: the agent's first sync takes over a matching Helm release itself, and
/// leaves one changed by hand to Helm (reported, untouched).
#[test]
fn adopt_auto_takes_over_matching_components_and_leaves_the_rest() {
    corpus_test(auto);
}

async fn auto(shared: PathBuf) {
    let comps = ["memcached", "redis-operator"];
    let Env {
        tc,
        c,
        mut agent,
        source,
        root,
        ..
    } = Env::new("auto", &shared, &comps, true).await;
    let (commit, co) = Env::checkout_of(&source, &root);
    let rendered = install(&tc, &c, &agent, &co, &comps).await;
    let memcached = rendered["memcached"]
        .iter()
        .find(|o| o["kind"] == "StatefulSet")
        .unwrap()
        .clone();
    let replicas = memcached["spec"]["replicas"].as_i64().unwrap_or(1);
    scale(&c, &memcached, replicas + 1).await;
    let operator = rendered["redis-operator"]
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()
        .clone();
    let before = settled(&c, &[memcached.clone(), operator.clone()]).await;

    let notes = std::sync::Mutex::new(Vec::new());
    let progress = |p: stackwave::reconcile::Progress| {
        if let stackwave::reconcile::Progress::Note(n) = p {
            notes.lock().unwrap().push(n);
        }
    };
    let out = agent.sync(&co, &commit, &progress).await.unwrap();
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    let notes = notes.into_inner().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("taking over redis-operator")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("memcached not adopted") && n.contains("/spec/replicas")),
        "{notes:?}"
    );
    // memcached: untouched, still Helm's.
    assert_eq!(
        rv(&c.get(&memcached).await.unwrap().unwrap()),
        rv(&before[0])
    );
    assert_eq!(
        release::records(&c, "openstack", "memcached")
            .await
            .unwrap()
            .len(),
        2
    );
    // redis-operator: Stackwave's, pod template unchanged, Helm's entries gone.
    let live = c.get(&operator).await.unwrap().unwrap();
    let mut changed = Vec::new();
    adopt::compare::differing(
        &before[1]["spec"]["template"],
        &live["spec"]["template"],
        "/spec/template",
        &mut changed,
    );
    assert!(changed.is_empty(), "pod template changed: {changed:?}");
    assert_eq!(
        template_hash(&live),
        template_hash(&before[1]),
        "{}\n{}",
        live["spec"]["template"],
        before[1]["spec"]["template"]
    );
    // With `adopt: auto` the take-over (which changes no annotation) is followed in the same
    // sync by the revision's own apply of the component, which drops Helm's
    // `meta.helm.sh/*` annotations (Stackwave's fields since the migration, no longer
    // applied): a Deployment's generation moves by exactly one then, its pod template
    // unchanged (`adopt --apply` keeps it, the other test). Known left: skipping that apply.
    assert_eq!(
        live["metadata"]["generation"].as_i64(),
        before[1]["metadata"]["generation"].as_i64().map(|g| g + 1),
        "the Deployment's generation"
    );
    assert!(
        live.pointer("/metadata/annotations/meta.helm.sh~1release-name")
            .is_none(),
        "Helm's annotation left: {}",
        live["metadata"]
    );
    let mf = live["metadata"]["managedFields"].as_array().unwrap();
    assert!(!mf.iter().any(|e| e["manager"] == "helm"), "{mf:?}");
    assert!(release::records(&c, "redis-systems", "redis-operator")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        agent.applied.digests.keys().collect::<Vec<_>>(),
        vec!["redis-operator"]
    );
    drop(tc);
    let _ = std::fs::remove_dir_all(&root);
}
