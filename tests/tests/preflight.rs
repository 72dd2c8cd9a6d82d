//! Preflight (issue 15): before wave 1 touches the cluster every object of the revision's
//! changed components is server-side dry-run applied, so a revision that would fail in
//! wave 4 fails before wave 1 — nothing applied, the last good revision left as it was.
//! Custom resources whose CRD an earlier wave brings are dry-run just before their own wave.
//!
//! Against the in-process API test server, or unchanged against `STACKWAVE_TEST_KUBECONFIG`'s
//! server (`stackwave_tests::TestCluster`: unique namespaces and names, cleanup on drop). The
//! checkouts are plain directories of kustomize `manifests:` components, one per wave.

use serde_json::{json, Value as Json};
use stackwave::cluster::inventory;
use stackwave::component::Catalog;
use stackwave::reconcile::{Agent, Outcome, Progress, Settings};
use stackwave::record::Store;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stackwave-preflight-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The components `c1`..`cN`, component `ci` in wave `i`, holding `waves[i-1]`'s objects
/// (JSON documents, which are YAML).
fn write_checkout(dir: &Path, waves: &[Vec<Json>]) {
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let mut cfg = "genestack:\n  path: empty\ncharts:\n  path: empty\nmanifests:\n".to_string();
    for (i, objs) in waves.iter().enumerate() {
        let c = format!("c{}", i + 1);
        let d = dir.join("manifests").join(&c);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let mut k = "resources:\n".to_string();
        for (j, o) in objs.iter().enumerate() {
            std::fs::write(d.join(format!("o{j}.yaml")), o.to_string()).unwrap();
            k.push_str(&format!("- o{j}.yaml\n"));
        }
        std::fs::write(d.join("kustomization.yaml"), k).unwrap();
        cfg.push_str(&format!(
            "- name: {c}\n  path: manifests/{c}\n  wave: {}\n",
            i + 1
        ));
    }
    cfg.push_str("components: []\n");
    std::fs::write(dir.join("stackwave.yaml"), cfg).unwrap();
}

fn namespace(name: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn cm(ns: &str, name: &str, data: Json) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
           "data": data})
}

fn deployment(ns: &str, name: &str, image: &str) -> Json {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": name, "image": image}]}}}})
}

struct Env {
    tc: stackwave_tests::TestCluster,
    agent: Agent,
    root: PathBuf,
    events: Mutex<Vec<Progress>>,
}

impl Env {
    async fn new(name: &str) -> Env {
        let tc = stackwave_tests::TestCluster::start(
            kube_standin::Rules::default().with_delay(Duration::from_millis(100)),
        )
        .await;
        let root = tmp(name);
        let instance = stackwave::cluster::instance::Instance::new(
            &tc.name("preflight"),
            &format!("https://git.example/{name}"),
        )
        .unwrap();
        for i in 1..=4 {
            tc.cleanup_later(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": inventory::inventory_name(&instance, &format!("c{i}")),
                "namespace": inventory::INVENTORY_NAMESPACE}}),
            );
        }
        let mut agent = Agent::new(
            tc.cluster.clone(),
            Store::in_memory().unwrap(),
            Catalog::builtin().unwrap(),
            Settings {
                health_timeout: Duration::from_secs(if tc.in_process() { 10 } else { 120 }),
                cache_dir: root.join("cache"),
                ..Default::default()
            },
        )
        .expect("the agent starts");
        agent.set_instance(instance).unwrap();
        Env {
            tc,
            agent,
            root,
            events: Mutex::new(Vec::new()),
        }
    }

    /// One sync of `waves` as commit `id`.
    async fn sync(&mut self, waves: &[Vec<Json>], id: &str) -> Outcome {
        let dir = self.root.join("checkout");
        write_checkout(&dir, waves);
        self.events.lock().unwrap().clear();
        let commit = stackwave::source::Commit {
            id: id.into(),
            author: "Test Operator <ops@example.com>".into(),
            summary: id.into(),
            time: 0,
        };
        let events = &self.events;
        self.agent
            .sync(&dir, &commit, &|p| events.lock().unwrap().push(p))
            .await
            .unwrap()
    }

    /// The preflight passes reported: (wave, checked, deferred, refused, requests).
    #[allow(clippy::type_complexity)]
    fn preflights(&self) -> Vec<(Option<i32>, usize, usize, Vec<String>, u64)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|p| match p {
                Progress::Preflight {
                    wave,
                    checked,
                    deferred,
                    refused,
                    requests,
                } => Some((*wave, *checked, *deferred, refused.clone(), *requests)),
                _ => None,
            })
            .collect()
    }

    fn applied(&self) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|p| matches!(p, Progress::Applied { .. }))
            .count()
    }

    /// Dry-run PATCHes the in-process server has served (`None` on a real server).
    fn dry_run_patches(&self) -> Option<u64> {
        let s = self.tc.server.as_ref()?;
        let store = s.store.lock().ok()?;
        Some(store.requests.get("PATCH (dry run)").copied().unwrap_or(0))
    }

    /// `data.value` of live ConfigMap `ns/name`.
    async fn live_value(&self, ns: &str, name: &str) -> Json {
        let live = self.tc.cluster.get(&cm(ns, name, json!({}))).await.unwrap();
        live.expect("the ConfigMap is live")["data"]["value"].clone()
    }

    /// What a Stackwave apply would change in the live objects: each one's id, its
    /// `resourceVersion` (only for objects no controller writes status to: ConfigMaps; a
    /// real cluster's controllers may bump a Deployment's or Namespace's at any time), its
    /// `metadata.generation`, and the managed-fields entries of field manager `stackwave`.
    async fn snapshot(&self, objs: &[Json]) -> Vec<(String, Json, Json, Vec<Json>)> {
        let mut out = Vec::new();
        for o in objs {
            let live = self
                .tc
                .cluster
                .get(o)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{} is live", stackwave::cluster::object_id(o)));
            let ours: Vec<Json> = live["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["manager"] == stackwave::cluster::FIELD_MANAGER)
                .cloned()
                .collect();
            assert!(!ours.is_empty(), "{live}: applied by stackwave");
            let rv = if o["kind"] == "ConfigMap" {
                live["metadata"]["resourceVersion"].clone()
            } else {
                Json::Null
            };
            out.push((
                stackwave::cluster::object_id(o),
                rv,
                live["metadata"]["generation"].clone(),
                ours,
            ));
        }
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Four waves: the namespace and a ConfigMap, a ConfigMap, a Deployment, and wave 4's
/// ConfigMap and Deployment — valid with `broken == false`; with `broken`, wave 4 holds a
/// ConfigMap key the API refuses (422) and a Deployment field no schema declares.
fn four_waves(ns: &str, value: &str, broken: bool) -> Vec<Vec<Json>> {
    let mut w4_cm = cm(ns, "w4-settings", json!({"value": value}));
    let mut w4_dep = deployment(ns, "w4-api", "nginx:1.27");
    if broken {
        w4_cm["data"]["bad key!"] = json!("x");
        w4_dep["spec"]["bogusField"] = json!(true);
    }
    vec![
        vec![
            namespace(ns),
            cm(ns, "w1-settings", json!({"value": value})),
        ],
        vec![cm(ns, "w2-settings", json!({"value": value}))],
        vec![deployment(ns, "w3-web", &format!("nginx:{value}"))],
        vec![w4_cm, w4_dep],
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_wave_4_object_refuses_the_revision_before_wave_1() {
    let mut e = Env::new("refused").await;
    let ns = e.tc.ns("preflight-refused");
    let good = four_waves(&ns, "1.27", false);
    let out = e.sync(&good, "good").await;
    let Outcome::Healthy {
        revision: good_rev, ..
    } = out
    else {
        panic!("the valid revision applies: {out:?}")
    };
    let all: Vec<Json> = good.iter().flatten().cloned().collect();
    let before = e.snapshot(&all).await;

    // Every wave changes; wave 4 would be refused by the API server.
    let broken = four_waves(&ns, "1.28", true);
    let out = e.sync(&broken, "broken").await;
    let Outcome::Refused { reason } = &out else {
        panic!("refused at preflight: {out:?}")
    };
    let cm_id = format!("ConfigMap/{ns}/w4-settings");
    let dep_id = format!("Deployment/{ns}/w4-api");
    assert!(
        reason.contains("preflight") && reason.contains("nothing applied"),
        "{reason}"
    );
    // Both refused objects, each with the API's own message.
    assert!(
        reason.contains(&cm_id) && reason.contains("bad key!"),
        "{reason}"
    );
    assert!(
        reason.contains(&dep_id) && reason.contains("bogusField"),
        "{reason}"
    );
    let passes = e.preflights();
    assert_eq!(passes.len(), 1, "{passes:?}");
    let (wave, checked, deferred, refused, _) = &passes[0];
    assert_eq!(*wave, None);
    assert_eq!((*checked, *deferred), (all.len() - 2, 0), "{passes:?}");
    assert_eq!(refused.len(), 2, "{refused:?}");
    // Nothing applied: no wave started, every object as the good revision left it (same
    // resourceVersion, same managed fields), the new values nowhere.
    assert_eq!(e.applied(), 0);
    assert!(
        !e.events
            .lock()
            .unwrap()
            .iter()
            .any(|p| matches!(p, Progress::WaveStart { .. })),
        "no wave started"
    );
    assert_eq!(e.snapshot(&all).await, before);
    assert_eq!(e.live_value(&ns, "w1-settings").await, "1.27");
    // Recorded as refused with the objects and messages; the good revision stays applied.
    let revisions = e.agent.store.revisions().unwrap();
    let r = revisions.iter().find(|r| r.commit == "broken").unwrap();
    assert_eq!(r.outcome, "refused");
    assert_eq!(e.agent.store.newest_healthy().unwrap(), Some(good_rev));
    assert_eq!(e.agent.applied.current, Some(good_rev));
    let text = e.agent.metrics.encode();
    assert!(
        text.contains("stackwave_preflight_objects_total{result=\"refused\"} 2"),
        "{text}"
    );

    // Fixed, the revision applies.
    let fixed = four_waves(&ns, "1.28", false);
    let out = e.sync(&fixed, "fixed").await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(e.live_value(&ns, "w1-settings").await, "1.28");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_resource_whose_crd_comes_in_wave_1_is_checked_before_wave_2() {
    let mut e = Env::new("crd").await;
    let ns = e.tc.ns("preflight-crd");
    let group = format!("{}.preflight.stackwave.test", e.tc.suffix);
    let crd_name = format!("widgets.{group}");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                         "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}});
    e.tc.cleanup_later(crd.clone());
    let widget = |spec: Json| {
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
               "metadata": {"name": "w", "namespace": ns}, "spec": spec})
    };
    let waves = vec![
        vec![namespace(&ns), crd.clone()],
        vec![widget(json!({"size": 3}))],
    ];
    let out = e.sync(&waves, "crd").await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    let passes = e.preflights();
    // Before wave 1: the Namespace and the CRD dry-run, the Widget deferred (its kind is not
    // served yet); before wave 2: the Widget dry-run, accepted.
    assert_eq!(passes.len(), 2, "{passes:?}");
    assert_eq!(
        (passes[0].0, passes[0].1, passes[0].2, passes[0].3.len()),
        (None, 2, 1, 0),
        "{passes:?}"
    );
    assert_eq!(
        (passes[1].0, passes[1].1, passes[1].2, passes[1].3.len()),
        (Some(2), 1, 0, 0),
        "{passes:?}"
    );
    let live = e.tc.cluster.get(&widget(json!({}))).await.unwrap().unwrap();
    assert_eq!(live["spec"]["size"], 3);

    // A Widget with a field the CRD's schema does not declare, beside a change in wave 1: the
    // kind is served now, so it is dry-run (and refused) before wave 1.
    let mut crd2 = crd.clone();
    crd2["metadata"]["labels"] = json!({"changed": "yes"});
    let waves = vec![
        vec![namespace(&ns), crd2],
        vec![widget(json!({"size": 4, "colour": "red"}))],
    ];
    let out = e.sync(&waves, "bad-widget").await;
    let Outcome::Refused { reason } = &out else {
        panic!("the Widget is refused at preflight: {out:?}")
    };
    assert!(
        reason.contains(&format!("Widget/{ns}/w")) && reason.contains("colour"),
        "{reason}"
    );
    let live = e.tc.cluster.get(&widget(json!({}))).await.unwrap().unwrap();
    assert_eq!(live["spec"]["size"], 3, "the Widget is unchanged");

    // A second CRD arriving in wave 1 with an invalid custom resource in wave 2: the dry run
    // can only happen once the CRD is there, and refuses the resource before wave 2 applies
    // anything.
    let gadgets = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                         "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}});
    e.tc.cleanup_later(gadgets.clone());
    let gadget = json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget",
        "metadata": {"name": "g", "namespace": ns}, "spec": {"size": 1, "colour": "red"}});
    let waves = vec![
        vec![namespace(&ns), crd.clone(), gadgets],
        vec![widget(json!({"size": 5})), gadget.clone()],
    ];
    let out = e.sync(&waves, "bad-gadget").await;
    let Outcome::Failed { wave, reason, .. } = &out else {
        panic!("the Gadget is refused before wave 2: {out:?}")
    };
    assert_eq!(*wave, 2);
    assert!(
        reason.contains("preflight refused")
            && reason.contains(&format!("Gadget/{ns}/g"))
            && reason.contains("colour"),
        "{reason}"
    );
    let passes = e.preflights();
    assert_eq!(passes.len(), 2, "{passes:?}");
    assert_eq!((passes[0].1, passes[0].2), (4, 1), "{passes:?}");
    assert_eq!((passes[1].0, passes[1].3.len()), (Some(2), 1), "{passes:?}");
    assert!(e.tc.cluster.get(&gadget).await.unwrap().is_none());
    let live = e.tc.cluster.get(&widget(json!({}))).await.unwrap().unwrap();
    assert_eq!(live["spec"]["size"], 3, "nothing of wave 2 applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_in_a_namespace_of_the_same_wave_are_dry_run_after_it_is_applied() {
    let mut e = Env::new("stage").await;
    let ns = e.tc.ns("preflight-stage");
    // Wave 1 brings the namespace and two ConfigMaps in it, the second invalid.
    let waves = vec![vec![
        namespace(&ns),
        cm(&ns, "a", json!({"k": "v"})),
        cm(&ns, "b", json!({"bad key!": "v"})),
    ]];
    let out = e.sync(&waves, "stage").await;
    let Outcome::Failed { wave, reason, .. } = &out else {
        panic!("refused in wave 1: {out:?}")
    };
    assert_eq!(*wave, 1);
    assert!(
        reason.contains(&format!("ConfigMap/{ns}/b")) && reason.contains("bad key!"),
        "{reason}"
    );
    // Only the Namespace (stage one) was applied, and it is in the inventory (a later prune
    // finds it); neither ConfigMap was.
    let applied: Vec<String> = e
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|p| match p {
            Progress::Applied { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(applied, [format!("Namespace/{ns}")]);
    assert!(e
        .tc
        .cluster
        .get(&cm(&ns, "a", json!({})))
        .await
        .unwrap()
        .is_none());
    let inv = inventory::read(&e.tc.cluster, e.agent.instance(), "c1")
        .await
        .unwrap();
    assert!(
        inv.iter().any(|r| r.kind == "Namespace" && r.name == ns),
        "{inv:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_revision_costs_one_dry_run_per_changed_object() {
    let mut e = Env::new("cost").await;
    let ns = e.tc.ns("preflight-cost");
    let start = e.dry_run_patches();
    let out = e.sync(&four_waves(&ns, "1.27", false), "first").await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    let objects = 6;
    assert_eq!(e.applied(), objects);
    // Before wave 1 only the Namespace can be dry-run (everything else lives in it); the
    // rest is dry-run in its wave — wave 1's ConfigMap after its Namespace is applied.
    let passes = e.preflights();
    let waves: Vec<Option<i32>> = passes.iter().map(|p| p.0).collect();
    assert_eq!(
        waves,
        [None, Some(1), Some(2), Some(3), Some(4)],
        "{passes:?}"
    );
    assert_eq!((passes[0].1, passes[0].2), (1, objects - 1), "{passes:?}");
    let checked: usize = passes.iter().map(|p| p.1).sum();
    assert_eq!(checked, objects, "every object dry-run once: {passes:?}");
    let requests: u64 = passes.iter().map(|p| p.4).sum();
    assert!(
        requests <= objects as u64,
        "{requests} preflight requests for {objects} objects"
    );
    if let (Some(a), Some(b)) = (start, e.dry_run_patches()) {
        assert_eq!(b - a, objects as u64, "one dry-run PATCH per object");
    }

    // One component changes: only its object is dry-run (and applied).
    let mut next = four_waves(&ns, "1.27", false);
    next[1][0]["data"]["value"] = json!("changed");
    let start = e.dry_run_patches();
    let out = e.sync(&next, "second").await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(e.applied(), 1);
    let passes = e.preflights();
    assert_eq!(passes.len(), 1, "{passes:?}");
    assert_eq!((passes[0].1, passes[0].4), (1, 1), "{passes:?}");
    if let (Some(a), Some(b)) = (start, e.dry_run_patches()) {
        assert_eq!(b - a, 1);
    }
    if !e.tc.in_process() {
        eprintln!("note: dry-run PATCH counted by the client only (a real API server)");
    }
}
