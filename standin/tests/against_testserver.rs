//! The stand-in against the project's API test server (a bare API server), over HTTP.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value as Json};
use std::time::Duration;

fn client(url: &str) -> kube::Client {
    let uri: http::Uri = url.parse().expect("server URL");
    kube::Client::try_from(kube::Config::new(uri)).expect("client")
}

async fn apply(c: &kube::Client, gvk: (&str, &str, &str), plural: &str, ns: Option<&str>, o: Json) {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2), plural);
    let api: Api<DynamicObject> = match ns {
        Some(n) => Api::namespaced_with(c.clone(), n, &ar),
        None => Api::all_with(c.clone(), &ar),
    };
    let name = o["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&o),
    )
    .await
    .expect("applied");
}

async fn eventually<F, Fut>(what: &str, within: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_resource_of_a_new_crd_gets_its_operator_status_soon() {
    let server = kube_testserver::start().await.expect("server");
    let c = client(&server.url);
    let _standin = kube_standin::spawn(
        client(&server.url),
        kube_standin::Rules::default().with_delay(Duration::from_millis(50)),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    apply(
        &c,
        ("", "v1", "Namespace"),
        "namespaces",
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}),
    )
    .await;
    apply(&c, ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), "customresourcedefinitions", None, json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "databases.k8s.mariadb.com"},
        "spec": {"group": "k8s.mariadb.com", "scope": "Namespaced", "names": {"plural": "databases", "singular": "database", "kind": "Database"},
                 "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})).await;
    apply(&c, ("k8s.mariadb.com", "v1alpha1", "Database"), "databases", Some("t"), json!({
        "apiVersion": "k8s.mariadb.com/v1alpha1", "kind": "Database", "metadata": {"name": "keystone", "namespace": "t"}, "spec": {}})).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.mariadb.com", "v1alpha1", "Database"),
        "databases",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), "t", &ar);
    let t = std::time::Instant::now();
    eventually("the Database is Ready", Duration::from_secs(1), || async {
        api.get("keystone")
            .await
            .ok()
            .and_then(|o| o.data.pointer("/status/conditions/0/reason").cloned())
            == Some(json!("Created"))
    })
    .await;
    eprintln!("Database ready after {:?}", t.elapsed());
}

/// Foreground and orphan deletions wait on a bare API server until the garbage collector
/// (here, the stand-in) finishes them.
#[tokio::test(flavor = "multi_thread")]
async fn foreground_and_orphan_deletions_are_finished_by_the_garbage_collector() {
    use kube::api::{DeleteParams, PropagationPolicy};
    let server = kube_testserver::start().await.expect("server");
    let c = client(&server.url);
    let _standin = kube_standin::spawn(client(&server.url), kube_standin::Rules::default());
    apply(
        &c,
        ("", "v1", "Namespace"),
        "namespaces",
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gc"}}),
    )
    .await;
    let cms: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "gc",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap")),
    );
    for (policy, owner) in [
        (PropagationPolicy::Foreground, "fg"),
        (PropagationPolicy::Orphan, "or"),
    ] {
        apply(&c, ("", "v1", "ConfigMap"), "configmaps", Some("gc"), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": owner, "namespace": "gc"}})).await;
        let uid = cms.get(owner).await.unwrap().metadata.uid.unwrap();
        let dep = format!("{owner}-dep");
        apply(&c, ("", "v1", "ConfigMap"), "configmaps", Some("gc"), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": dep, "namespace": "gc",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": true}]}})).await;
        let dp = DeleteParams {
            propagation_policy: Some(policy.clone()),
            ..Default::default()
        };
        cms.delete(owner, &dp).await.unwrap();
        eventually("the owner is gone", Duration::from_secs(5), || async {
            cms.get_opt(owner).await.unwrap().is_none()
        })
        .await;
        let left = cms.get_opt(&dep).await.unwrap();
        match policy {
            PropagationPolicy::Foreground => assert!(left.is_none(), "the dependent went first"),
            _ => {
                let left = left.expect("an orphaned dependent stays");
                assert!(
                    left.metadata
                        .owner_references
                        .unwrap_or_default()
                        .is_empty(),
                    "unlinked from its owner"
                );
            }
        }
    }
}

/// New rules apply at once: a ready Deployment turns failing within a second.
#[tokio::test(flavor = "multi_thread")]
async fn changed_rules_apply_at_once() {
    let server = kube_testserver::start().await.expect("server");
    let c = client(&server.url);
    let standin = kube_standin::spawn(
        client(&server.url),
        kube_standin::Rules::default().with_delay(Duration::from_millis(50)),
    );
    apply(
        &c,
        ("", "v1", "Namespace"),
        "namespaces",
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "r"}}),
    )
    .await;
    apply(&c, ("apps", "v1", "Deployment"), "deployments", Some("r"), json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "r"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}})).await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "r",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    let reason = || async {
        api.get("web")
            .await
            .ok()
            .and_then(|o| o.data.pointer("/status/conditions/1/reason").cloned())
    };
    eventually("available", Duration::from_secs(2), || async {
        reason().await == Some(json!("NewReplicaSetAvailable"))
    })
    .await;
    standin.set_rules(kube_standin::Rules::default().failing("Deployment/web"));
    eventually("failing", Duration::from_secs(1), || async {
        reason().await == Some(json!("ProgressDeadlineExceeded"))
    })
    .await;
}

/// Every custom resource rule's conditions pass the real CRDs' schemas: with Gateway API's CRDs
/// (from envoy gateway's chart in `../shared/corpus/charts`, whose conditions are
/// `metav1.Condition` with a required `message`), a Gateway and its GatewayClass get the
/// status the rules give them: the server refuses none of the stand-in's writes.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_api_status_passes_the_real_crd_schema() {
    let crds = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/corpus/charts/envoyproxy-gateway/crds/gatewayapi-crds.yaml"
    );
    let Ok(text) = std::fs::read_to_string(crds) else {
        eprintln!("SKIPPED: {crds} is not readable (the shared corpus is not beside the project)");
        return;
    };
    let server = kube_testserver::start().await.expect("server");
    let c = client(&server.url);
    let _standin = kube_standin::spawn(
        client(&server.url),
        kube_standin::Rules::default().with_delay(Duration::from_millis(50)),
    );
    let docs: Vec<Json> = serde_saphyr::from_multiple(&text).expect("Gateway API CRDs parse");
    for d in docs.iter().filter(|d| {
        [
            "gateways.gateway.networking.k8s.io",
            "gatewayclasses.gateway.networking.k8s.io",
        ]
        .contains(&d["metadata"]["name"].as_str().unwrap_or_default())
    }) {
        apply(
            &c,
            ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
            None,
            d.clone(),
        )
        .await;
    }
    apply(
        &c,
        ("", "v1", "Namespace"),
        "namespaces",
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "envoy-gateway"}}),
    )
    .await;
    apply(&c, ("gateway.networking.k8s.io", "v1", "GatewayClass"), "gatewayclasses", None, json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "eg"},
        "spec": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"}})).await;
    apply(&c, ("gateway.networking.k8s.io", "v1", "Gateway"), "gateways", Some("envoy-gateway"), json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "flex-gateway", "namespace": "envoy-gateway"},
        "spec": {"gatewayClassName": "eg", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}})).await;
    let condition = |plural: &'static str,
                     kind: &'static str,
                     ns: Option<&'static str>,
                     name: &'static str,
                     ty: &'static str| {
        let c = c.clone();
        async move {
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind),
                plural,
            );
            let api: Api<DynamicObject> = match ns {
                Some(n) => Api::namespaced_with(c, n, &ar),
                None => Api::all_with(c, &ar),
            };
            api.get(name).await.ok().and_then(|o| {
                o.data
                    .pointer("/status/conditions")?
                    .as_array()?
                    .iter()
                    .find(|x| x["type"] == ty)
                    .map(|x| {
                        (
                            x["status"].as_str().unwrap_or_default().to_string(),
                            x["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
            })
        }
    };
    eventually(
        "the Gateway is Programmed",
        Duration::from_secs(3),
        || async {
            condition(
                "gateways",
                "Gateway",
                Some("envoy-gateway"),
                "flex-gateway",
                "Programmed",
            )
            .await
            .is_some_and(|(s, m)| s == "True" && !m.is_empty())
        },
    )
    .await;
    eventually(
        "the GatewayClass is Accepted",
        Duration::from_secs(3),
        || async {
            condition("gatewayclasses", "GatewayClass", None, "eg", "Accepted")
                .await
                .is_some_and(|(s, _)| s == "True")
        },
    )
    .await;
}
