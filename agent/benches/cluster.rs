//! Benchmark: apply, then drift-check, 3,000 objects — a full Genestack cloud's size — through
//! the cluster layer, against the in-process API test server (or the real cluster named by
//! `STACKWAVE_TEST_KUBECONFIG`). Prints requests, wall time and peak memory for the apply,
//! the first drift check and a second one with nothing changed, and checks that drift
//! checks write nothing (the test server counts dry runs apart from writes).
//!
//! Run: `cargo bench -p stackwave --bench cluster`.

mod common;
use common::rusage;
use serde_json::{json, Value as Json};
use stackwave::cluster::{drift, inventory::mark, ApplyOptions, Cluster};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// 3,000 objects over 10 namespaces, shaped like an OpenStack release's: per namespace 100
/// ConfigMaps (1 KiB of config), 60 Secrets, 50 ServiceAccounts, 50 Services and 40
/// Deployments (namespaces included in the count).
fn objects() -> Vec<Json> {
    let mut out = Vec::new();
    let conf = "[DEFAULT]\ndebug = false\n".repeat(40);
    for n in 0..10 {
        let ns = format!("bench-{n}");
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        for i in 0..99 {
            out.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("etc-{i}"), "namespace": ns}, "data": {"service.conf": conf}}));
        }
        for i in 0..60 {
            out.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("db-{i}"), "namespace": ns}, "type": "Opaque", "data": {"password": "c2VjcmV0"}}));
        }
        for i in 0..50 {
            out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa-{i}"), "namespace": ns}}));
            out.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": ns}, "spec": {"selector": {"app": format!("api-{i}")}, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}}));
        }
        for i in 0..40 {
            out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("api-{i}"), "namespace": ns},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": format!("api-{i}")}},
                    "template": {"metadata": {"labels": {"app": format!("api-{i}")}},
                        "spec": {"containers": [{"name": "api", "image": "quay.io/airshipit/keystone:2024.1-ubuntu_jammy",
                            "ports": [{"containerPort": 8080}], "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}}}]}}}}));
        }
    }
    for o in out.iter_mut() {
        mark(o, "bench", &Default::default());
    }
    out
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let (server, cluster) = match std::env::var_os("STACKWAVE_TEST_KUBECONFIG") {
            Some(kc) => (
                None,
                Cluster::connect_kubeconfig(std::path::Path::new(&kc))
                    .await
                    .expect("kubeconfig"),
            ),
            None => {
                let s = kube_testserver::start()
                    .await
                    .expect("test server");
                let c = Cluster::connect_url(&s.url).expect("client");
                (Some(s), c)
            }
        };
        let by_verb = || -> String {
            server
                .as_ref()
                .and_then(|s| s.store.lock().ok().map(|s| format!("{:?}", s.requests)))
                .unwrap_or_else(|| "(real cluster: per-verb counts not available)".into())
        };
        let writes = || -> u64 {
            server
                .as_ref()
                .and_then(|s| {
                    s.store.lock().ok().map(|s| {
                        s.requests
                            .iter()
                            .filter(|(k, _)| matches!(k.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
                            .map(|(_, v)| *v)
                            .sum()
                    })
                })
                .unwrap_or(0)
        };
        let objs = objects();
        let rules = drift::default_ignore().unwrap();

        let r0 = cluster.requests.load(Ordering::SeqCst);
        let t = Instant::now();
        for o in &objs {
            cluster
                .apply(o, &ApplyOptions { force: true, ..Default::default() })
                .await
                .expect("apply");
        }
        let (_, rss) = rusage();
        println!(
            "apply {} objects: {:?} wall, {} requests ({:.1}/object), peak RSS {} MiB",
            objs.len(),
            t.elapsed(),
            cluster.requests.load(Ordering::SeqCst) - r0,
            (cluster.requests.load(Ordering::SeqCst) - r0) as f64 / objs.len() as f64,
            rss / 1024
        );
        println!("  server requests so far: {}", by_verb());

        for round in ["first", "second"] {
            let r0 = cluster.requests.load(Ordering::SeqCst);
            let w0 = writes();
            let t = Instant::now();
            let found = drift::drift_all(&cluster, &objs, &rules).await.expect("drift");
            let (_, rss) = rusage();
            let w = writes() - w0;
            println!(
                "{round} drift check of {} objects, nothing changed: {:?} wall, {} requests, {} writes, {} drifted, peak RSS {} MiB",
                objs.len(),
                t.elapsed(),
                cluster.requests.load(Ordering::SeqCst) - r0,
                w,
                found.len(),
                rss / 1024
            );
            assert_eq!(w, 0, "a drift check must not write");
        }
        println!("  server requests: {}", by_verb());
        println!("(peak RSS covers this process: cluster layer and, unless a real cluster is used, the API server)");
    });
}
