//! `deploy/`: the in-cluster manifests build with our kustomize engine exactly as with the
//! oracle (`kubectl kustomize` from scripts/setup, when installed), apply cleanly to the API test server (or the server
//! named by `STACKWAVE_TEST_KUBECONFIG`, server-side dry run: nothing is left there), and the
//! agent's arguments are ones `stackwave run` accepts.

use clap::Parser;
use std::path::Path;

#[tokio::test(flavor = "multi_thread")]
async fn deploy_manifests_build_apply_and_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let ours = kustomize_rs::build_dir(&dir, &Default::default()).expect("deploy/ builds");
    // The oracle scripts/setup installs (scripts/test always runs it first).
    let kubectl = std::env::var_os("KUBECTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/kubectl")
        });
    if kubectl.is_file() {
        let k = kubectl;
        let out = std::process::Command::new(k)
            .arg("kustomize")
            .arg(&dir)
            .output()
            .expect("kubectl");
        assert!(out.status.success());
        assert_eq!(
            ours,
            String::from_utf8_lossy(&out.stdout),
            "matches kubectl kustomize"
        );
    }
    let objs = stackwave::reconcile::objects_of(&ours).unwrap();
    let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRoleBinding",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(kinds.contains(&k), "deploy/ has a {k}: {kinds:?}");
    }

    let tc = stackwave_tests::TestCluster::start(Default::default()).await;
    let (cluster, dry) = (tc.cluster.clone(), !tc.in_process());
    let mut objs = objs;
    stackwave::plan::order_objects(&mut objs);
    // The ServiceMonitor and PrometheusRule need the Prometheus Operator's CRDs: the test
    // server gets kube-prometheus-stack's own (from ../shared), so the objects are checked
    // against their real schemas; a real cluster must already serve them.
    let served = monitoring_crds(&cluster, dry).await;
    objs.retain(|o| {
        let keep = served || o["apiVersion"] != "monitoring.coreos.com/v1";
        if !keep {
            eprintln!(
                "SKIPPED: {} (the monitoring.coreos.com CRDs are not available)",
                o["kind"]
            );
        }
        keep
    });
    for o in &objs {
        // A dry run into a namespace that does not exist fails: a missing Namespace is made
        // for real (and removed at cleanup).
        let missing_ns = o["kind"] == "Namespace" && cluster.get(o).await.unwrap().is_none();
        if dry && missing_ns {
            tc.fixed_ns(stackwave::cluster::name_of(o));
        }
        let opts = stackwave::cluster::ApplyOptions {
            dry_run: dry && !missing_ns,
            ..Default::default()
        };
        cluster
            .apply(o, &opts)
            .await
            .unwrap_or_else(|e| panic!("{} does not apply: {e}", stackwave::cluster::object_id(o)));
    }

    let dep = objs.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let args: Vec<String> = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let argv = std::iter::once("stackwave".to_string()).chain(args);
    if let Err(e) = stackwave::cli::Cli::try_parse_from(argv) {
        panic!("the Deployment's arguments are not a valid stackwave command line: {e}");
    }
}

/// Makes the Prometheus Operator CRDs (ServiceMonitor, PrometheusRule) served: on the test
/// server they are applied from kube-prometheus-stack's chart in `../shared` and waited for;
/// on a real cluster (`dry`) only looked up. Whether they are served.
async fn monitoring_crds(cluster: &stackwave::cluster::Cluster, dry: bool) -> bool {
    let crd = |plural: &str| {
        serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.monitoring.coreos.com")}})
    };
    let crds = ["servicemonitors", "prometheusrules"];
    if !dry {
        let Some(shared) =
            stackwave_tests::shared_or_skip("deploy_manifests_build_apply_and_parse")
        else {
            return false;
        };
        let dir = shared.join("corpus/charts/kube-prometheus-stack/charts/crds/crds");
        for plural in crds {
            let text = std::fs::read_to_string(dir.join(format!("crd-{plural}.yaml"))).unwrap();
            for o in stackwave::reconcile::objects_of(&text).unwrap() {
                cluster.apply(&o, &Default::default()).await.unwrap();
            }
        }
    }
    for plural in crds {
        let established = |live: &serde_json::Value| {
            live.pointer("/status/conditions")
                .and_then(|c| c.as_array())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                })
        };
        let mut ok = false;
        for _ in 0..100 {
            if cluster
                .get(&crd(plural))
                .await
                .unwrap()
                .is_some_and(|l| established(&l))
            {
                ok = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if !ok {
            return false;
        }
    }
    true
}
