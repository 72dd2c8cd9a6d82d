//! The cluster layer against the in-process API test server — or, when
//! `STACKWAVE_TEST_KUBECONFIG` is set, against that server (same tests, unchanged), with the
//! controller stand-in as a separate client in both cases: apply and re-apply, conflicts with
//! another field manager, immutable-field replacement, CRDs resolving right after they land,
//! health gates, inventory and prune with protections. Every test works in namespaces of its
//! own and cleans up (see `stackwave_tests::TestCluster`).

use kube_standin::Rules;
use serde_json::{json, Value as Json};
use stackwave::cluster::health::{default_rules, health, Health};
use stackwave::cluster::inventory::{self, mark, ObjRef};
use stackwave::cluster::{Action, ApplyOptions, Cluster, ClusterError};
use stackwave_tests::TestCluster;
use std::time::Duration;

fn ns(name: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn deployment(ns: &str, replicas: i64) -> Json {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}})
}

/// Polls `check` every 50 ms until it says Current or `timeout` passes; its last answer.
async fn poll_until_current<F, Fut>(timeout: Duration, check: F) -> Health
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Health>,
{
    poll_until(timeout, Health::is_current, check).await
}

/// Polls `check` every 50 ms until it says Failed or `timeout` passes; its last answer.
async fn poll_until_failed<F, Fut>(timeout: Duration, check: F) -> Health
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Health>,
{
    poll_until(timeout, |h| matches!(h, Health::Failed(_)), check).await
}

/// Polls `check` every 50 ms until `done` holds for its answer or `timeout` passes.
async fn poll_until<F, Fut>(timeout: Duration, done: impl Fn(&Health) -> bool, check: F) -> Health
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Health>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let h = check().await;
        if done(&h) || tokio::time::Instant::now() > deadline {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_current(c: &Cluster, o: &Json, timeout: Duration) -> Health {
    poll_until_current(timeout, || async {
        let live = c.get(o).await.unwrap().expect("object exists");
        health(&live, &default_rules().unwrap())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_conflicts_and_health() {
    let e = TestCluster::start(Rules::default()).await;
    let c = &e.cluster;
    let n = &e.ns("sw-apply");
    c.apply(&ns(n), &Default::default()).await.unwrap();
    let d = deployment(n, 2);
    assert_eq!(
        c.apply(&d, &Default::default()).await.unwrap().action,
        Action::Created
    );
    assert_eq!(
        c.apply(&d, &Default::default()).await.unwrap().action,
        Action::Unchanged,
        "re-applying the same object changes nothing"
    );
    // Health: InProgress until the controller (the stand-in) reports.
    assert_eq!(
        wait_current(c, &d, Duration::from_secs(30)).await,
        Health::Current
    );
    let changed = c
        .apply(&deployment(n, 3), &Default::default())
        .await
        .unwrap();
    assert_eq!(changed.action, Action::Configured);
    assert!(
        matches!(
            health(&changed.live, &default_rules().unwrap()),
            Health::InProgress(_)
        ),
        "a new generation is not yet observed"
    );
    // Another manager takes spec.replicas with a plain update; Stackwave's apply conflicts.
    let other = kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
        c.client().clone(),
        n,
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "apps",
            "v1",
            "Deployment",
        )),
    );
    other
        .patch(
            "web",
            &kube::api::PatchParams {
                field_manager: Some("hpa-controller".into()),
                ..Default::default()
            },
            &kube::api::Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    match c.apply(&deployment(n, 4), &Default::default()).await {
        Err(ClusterError::Conflict { message, .. }) => assert!(
            message.contains("hpa-controller") && message.contains("replicas"),
            "{message}"
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let forced = c
        .apply(
            &deployment(n, 4),
            &ApplyOptions {
                force: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(forced.live.pointer("/spec/replicas"), Some(&json!(4)));
    // Dry run changes nothing.
    c.apply(
        &deployment(n, 7),
        &ApplyOptions {
            dry_run: true,
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        c.get(&d).await.unwrap().unwrap().pointer("/spec/replicas"),
        Some(&json!(4))
    );
    // The namespace goes with its content (the stand-in's namespace controller).
    c.delete_and_wait(&ns(n), Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn immutable_fields_and_crds() {
    let e = TestCluster::start(Rules::default()).await;
    let c = &e.cluster;
    let n = &e.ns("sw-immut");
    c.apply(&ns(n), &Default::default()).await.unwrap();
    let job = |image: &str| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "db-sync", "namespace": n},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "sync", "image": image}]}}}})
    };
    c.apply(&job("tool:1"), &Default::default()).await.unwrap();
    match c.apply(&job("tool:2"), &Default::default()).await {
        Err(ClusterError::Immutable { message, .. }) => {
            assert!(message.contains("immutable"), "{message}")
        }
        other => panic!("expected an immutable-field error, got {other:?}"),
    }
    let replaced = c
        .apply(
            &job("tool:2"),
            &ApplyOptions {
                replace_immutable: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(replaced.action, Action::Replaced);
    assert_eq!(
        replaced
            .live
            .pointer("/spec/template/spec/containers/0/image"),
        Some(&json!("tool:2"))
    );
    // A CRD, then a custom resource of it right away: discovery is refreshed on the miss.
    // A group of this test's own: the CRD is cluster-scoped, and removed at cleanup.
    let group = e.name("sw") + ".example.com";
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    c.apply(&crd, &Default::default()).await.unwrap();
    assert_eq!(
        wait_current(c, &crd, Duration::from_secs(30)).await,
        Health::Current
    );
    e.cleanup_later(crd.clone());
    let w = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w", "namespace": n}, "spec": {"size": 3}});
    assert_eq!(
        c.apply(&w, &Default::default()).await.unwrap().action,
        Action::Created
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn inventory_and_prune() {
    let e = TestCluster::start(Rules::default()).await;
    let c = &e.cluster;
    let n = &e.ns("sw-prune");
    c.apply(&ns(n), &Default::default()).await.unwrap();
    // The inventory lives outside the test's namespace: a component name of this test's own.
    let comp = e.name("demo");
    let comp = comp.as_str();
    let cm = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": n}, "data": {"k": "v"}});
    let mut objs = vec![cm("a"), cm("b"), cm("c")];
    let mut db = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept", "namespace": n, "annotations": {"helm.sh/resource-policy": "keep"}}});
    objs.push(db.take());
    for o in objs.iter_mut() {
        mark(o, comp, &Default::default());
        c.apply(o, &Default::default()).await.unwrap();
    }
    e.cleanup_later(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": inventory::inventory_name(&Default::default(), comp), "namespace": inventory::INVENTORY_NAMESPACE}}));
    let refs: Vec<ObjRef> = objs.iter().map(ObjRef::of).collect();
    inventory::write(c, &Default::default(), comp, &refs)
        .await
        .unwrap();
    assert_eq!(
        inventory::read(c, &Default::default(), comp).await.unwrap(),
        refs,
        "the inventory survives in the cluster"
    );
    // "c" loses Stackwave's marks (someone else adopted it); only "a" stays desired.
    let mut adopted = cm("c");
    adopted["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "someone-else"});
    c.apply(
        &adopted,
        &ApplyOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let desired = vec![refs[0].clone()];
    let (pruned, keep) = inventory::prune(
        c,
        &Default::default(),
        comp,
        &refs,
        &desired,
        &inventory::default_protect().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(pruned.deleted, vec![format!("ConfigMap/{n}/b")]);
    assert!(pruned
        .skipped
        .iter()
        .any(|(id, why)| id.ends_with("/c") && why.contains("marks")));
    assert!(pruned
        .skipped
        .iter()
        .any(|(id, why)| id.ends_with("/kept") && why.contains("keep")));
    assert!(
        keep.iter().any(|r| r.name == "kept"),
        "protected objects stay in the inventory"
    );
    assert!(c.get(&cm("b")).await.unwrap().is_none());
    assert!(c.get(&cm("c")).await.unwrap().is_some());
    // Namespaces and CRDs are never pruned even when they leave the desired state.
    assert!(inventory::protected(&ns(n), &[]).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn workloads_that_never_become_ready_stay_in_progress() {
    // By pattern (`Deployment/web`), and by an image that cannot be pulled.
    let e = TestCluster::start(Rules::default().never_ready("Deployment/web")).await;
    let c = &e.cluster;
    let n = &e.ns("sw-stuck");
    c.apply(&ns(n), &Default::default()).await.unwrap();
    let d = deployment(n, 1);
    c.apply(&d, &Default::default()).await.unwrap();
    let mut pull = deployment(n, 2);
    pull["metadata"]["name"] = json!("pull");
    pull["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.invalid/none:0");
    c.apply(&pull, &Default::default()).await.unwrap();
    for o in [&d, &pull] {
        assert!(matches!(
            wait_current(c, o, Duration::from_millis(1500)).await,
            Health::InProgress(_)
        ));
    }
    // The status says why, as the deployment controller writes it.
    let live = c.get(&pull).await.unwrap().unwrap();
    assert_eq!(
        live.pointer("/status/unavailableReplicas"),
        Some(&json!(2)),
        "{live}"
    );
    assert_eq!(
        live.pointer("/status/conditions/0/reason"),
        Some(&json!("MinimumReplicasUnavailable"))
    );
    // A failing rule: the progress deadline is exceeded, which health reports as failed.
    e.set_rules(Rules::default().failing("Deployment/web"));
    let failed = poll_until_failed(Duration::from_secs(30), || async {
        health(
            &c.get(&d).await.unwrap().unwrap(),
            &default_rules().unwrap(),
        )
    })
    .await;
    assert!(matches!(failed, Health::Failed(_)), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_found_on_owned_fields_only_and_masks_secrets() {
    use stackwave::cluster::drift::{default_ignore, drift, render};
    let e = TestCluster::start(Rules::default()).await;
    let c = &e.cluster;
    let n = &e.ns("sw-drift");
    c.apply(&ns(n), &Default::default()).await.unwrap();
    let d = deployment(n, 2);
    c.apply(&d, &Default::default()).await.unwrap();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": n}, "data": {"password": "c2VjcmV0"}});
    c.apply(&secret, &Default::default()).await.unwrap();
    let rules = default_ignore().unwrap();
    assert!(
        drift(c, &d, &rules).await.unwrap().is_empty(),
        "in sync right after apply"
    );
    // Out-of-band edits: an image (drift), a label nobody declared (not drift), a secret value.
    let api = |ar: kube::core::ApiResource| {
        kube::api::Api::<kube::api::DynamicObject>::namespaced_with(c.client().clone(), n, &ar)
    };
    let deploys = api(kube::core::ApiResource::from_gvk(
        &kube::core::GroupVersionKind::gvk("apps", "v1", "Deployment"),
    ));
    let pp = kube::api::PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    deploys
        .patch("web", &pp, &kube::api::Patch::Merge(json!({"metadata": {"labels": {"extra": "x"}}, "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:evil"}]}}}})))
        .await
        .unwrap();
    let found = drift(c, &d, &rules).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].path.starts_with("/spec/template/spec/containers"),
        "{found:?}"
    );
    let secrets = api(kube::core::ApiResource::from_gvk(
        &kube::core::GroupVersionKind::gvk("", "v1", "Secret"),
    ));
    secrets
        .patch(
            "db",
            &pp,
            &kube::api::Patch::Merge(json!({"data": {"password": "aGFja2Vk"}})),
        )
        .await
        .unwrap();
    let sd = drift(c, &secret, &rules).await.unwrap();
    assert_eq!(sd.len(), 1);
    let text = render(&sd);
    assert!(
        text.contains("<masked>") && !text.contains("aGFja2Vk") && !text.contains("c2VjcmV0"),
        "{text}"
    );
    // Correcting: re-apply with force; then no drift.
    c.apply(
        &d,
        &ApplyOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(drift(c, &d, &rules).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_of_many_objects_lists_once_per_kind() {
    use stackwave::cluster::drift::{default_ignore, drift_all};
    use stackwave::cluster::inventory::mark;
    use std::sync::atomic::Ordering;
    let e = TestCluster::start(Rules::default()).await;
    let c = &e.cluster;
    let n = &e.ns("sw-drift-many");
    c.apply(&ns(n), &Default::default()).await.unwrap();
    let mut objs: Vec<Json> = (0..40)
        .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": n}, "data": {"i": i.to_string()}}))
        .collect();
    let mut d = deployment(n, 2);
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "0.5"}});
    objs.push(d);
    for o in objs.iter_mut() {
        mark(o, "many", &Default::default());
        c.apply(o, &Default::default()).await.unwrap();
    }
    let rules = default_ignore().unwrap();
    let before = c.requests.load(Ordering::SeqCst);
    let found = drift_all(c, &objs, &rules).await.unwrap();
    assert!(found.is_empty(), "in sync right after apply: {found:?}");
    let spent = c.requests.load(Ordering::SeqCst) - before;
    // Two lists (ConfigMaps, Deployments); the Deployment's `0.5` CPU may read back as
    // `500m` on a real server, which costs one exact check (get + dry-run apply).
    assert!(spent <= 5, "{spent} requests for 41 objects in sync");

    // Edits: a value changed (listed), an object whose managed-by label was removed (found
    // by a get), and a deleted one.
    let api = kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
        c.client().clone(),
        n,
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "",
            "v1",
            "ConfigMap",
        )),
    );
    let pp = kube::api::PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    api.patch(
        "cm-3",
        &pp,
        &kube::api::Patch::Merge(json!({"data": {"i": "x"}})),
    )
    .await
    .unwrap();
    api.patch(
        "cm-7",
        &pp,
        &kube::api::Patch::Merge(
            json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}}),
        ),
    )
    .await
    .unwrap();
    api.delete("cm-9", &Default::default()).await.unwrap();
    let mut got: Vec<(usize, Vec<String>)> = drift_all(c, &objs, &rules)
        .await
        .unwrap()
        .into_iter()
        .map(|(i, f)| (i, f.into_iter().map(|x| x.path).collect()))
        .collect();
    got.sort();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], (3, vec!["/data/i".to_string()]));
    assert_eq!(got[1].0, 7);
    assert!(got[1].1.iter().any(|p| p.contains("managed-by")), "{got:?}");
    assert_eq!(got[2], (9, vec!["/".to_string()]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_the_schema_rejects_fails_at_once_naming_the_field() {
    let e = TestCluster::start(Rules::default()).await;
    let c = &e.cluster;
    let n = &e.ns("sw-schema");
    c.apply(&ns(n), &Default::default()).await.unwrap();
    // A typo in an override: `imagePullPolcy`. Server-side apply cannot type the object (a
    // real kube-apiserver answers 500); retrying would fail the same way.
    let mut d = deployment(n, 1);
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
    let sent = c.requests.load(std::sync::atomic::Ordering::Relaxed);
    let err = c.apply(&d, &Default::default()).await.unwrap_err();
    let used = c.requests.load(std::sync::atomic::Ordering::Relaxed) - sent;
    let text = err.to_string();
    assert!(
        text.contains(".spec.template.spec.containers[name=\"app\"].imagePullPolcy: field not declared in schema"),
        "{text}"
    );
    assert!(text.contains("web"), "the error names the object: {text}");
    assert!(
        matches!(err, ClusterError::Api { code: 500, .. }),
        "{err:?}"
    );
    assert!(used <= 3, "no retries: {used} requests");
    assert!(c.get(&d).await.unwrap().is_none(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_backend_service_is_healthy_once_it_has_ready_endpoints() {
    use stackwave::cluster::health::{endpoints_health, webhook_backends};
    // `Deployment/web` in the second namespace never becomes ready.
    let e = TestCluster::start(Rules::default().never_ready("Deployment/web")).await;
    let c = &e.cluster;
    let (a, b) = (e.ns("sw-hook-a"), e.ns("sw-hook-b"));
    let (a, b): (&'static str, &'static str) = (a.leak(), b.leak());
    for n in &[a, b] {
        c.apply(&ns(n), &Default::default()).await.unwrap();
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hook", "namespace": n},
            "spec": {"selector": {"app": if *n == a { "ready" } else { "web" }}, "ports": [{"port": 443, "targetPort": 8443}]}});
        let hooks = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": format!("{n}-hook")},
            "webhooks": [{"name": "check.example.com", "clientConfig": {"service": {"namespace": n, "name": "hook"}},
                          "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
                          "rules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["nothings"]}]}]});
        e.cleanup_later(hooks.clone());
        assert_eq!(
            webhook_backends(&[hooks, svc.clone()]),
            [(n.to_string(), "hook".to_string())]
        );
        c.apply(&svc, &Default::default()).await.unwrap();
        // Plain kstatus calls the Service Current at once; as a webhook backend it is not
        // until a ready pod backs it.
        let live = c.get(&svc).await.unwrap().unwrap();
        assert_eq!(health(&live, &default_rules().unwrap()), Health::Current);
        assert!(matches!(
            endpoints_health(&c.endpoint_slices(n, "hook").await.unwrap()),
            Health::InProgress(_)
        ));
        let mut d = deployment(n, 1);
        if *n == a {
            d["metadata"]["name"] = json!("ready");
            d["spec"]["selector"]["matchLabels"]["app"] = json!("ready");
            d["spec"]["template"]["metadata"]["labels"]["app"] = json!("ready");
        }
        c.apply(&d, &Default::default()).await.unwrap();
    }
    let wait = |n: &'static str, within: Duration| {
        poll_until_current(within, move || async move {
            endpoints_health(&c.endpoint_slices(n, "hook").await.unwrap())
        })
    };
    assert_eq!(wait(a, Duration::from_secs(60)).await, Health::Current);
    assert!(matches!(
        wait(b, Duration::from_millis(800)).await,
        Health::InProgress(_)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_health_rule_moves_from_in_progress_to_current() {
    let e = TestCluster::start(Rules::default()).await;
    let c = &e.cluster;
    let n = &e.ns("sw-kinds");
    c.apply(&ns(n), &Default::default()).await.unwrap();
    let template = |app: &str| json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}});
    let mut objs = vec![
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": n},
               "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}}, "template": template("db")}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": n},
               "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent")}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "db-init", "namespace": n},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "init", "image": "busybox:1.36", "command": ["true"]}]}}}}),
    ];
    // A claim that binds (a storage class would), and the MariaDB, RabbitMQ, cert-manager and
    // Gateway API controllers' resources: the stand-in plays the volume controller and them.
    {
        objs.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": n},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}));
        for (group, plural, kind) in [
            ("k8s.mariadb.com", "mariadbs", "MariaDB"),
            ("rabbitmq.com", "rabbitmqclusters", "RabbitmqCluster"),
            // cert-manager's Certificates and the Gateway envoy gateway programs (issue 13).
            ("cert-manager.io", "certificates", "Certificate"),
            ("gateway.networking.k8s.io", "gateways", "Gateway"),
        ] {
            let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.{group}")},
                "spec": {"group": group, "scope": "Namespaced", "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
                         "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                                       "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
            // Operator CRDs already installed stay; ones this test adds go at cleanup.
            if c.get(&crd).await.unwrap().is_none() {
                e.cleanup_later(crd.clone());
            }
            c.apply(&crd, &Default::default()).await.unwrap();
            assert_eq!(
                wait_current(c, &crd, Duration::from_secs(30)).await,
                Health::Current
            );
            objs.push(json!({"apiVersion": format!("{group}/v1"), "kind": kind, "metadata": {"name": "main", "namespace": n}, "spec": {"replicas": 1}}));
        }
    }
    for o in &objs {
        c.apply(o, &Default::default()).await.unwrap();
        let live = c.get(o).await.unwrap().unwrap();
        assert!(
            matches!(
                health(&live, &default_rules().unwrap()),
                Health::InProgress(_)
            ),
            "{} is not ready at once",
            o["kind"]
        );
    }
    for o in &objs {
        assert_eq!(
            wait_current(c, o, Duration::from_secs(120)).await,
            Health::Current,
            "{}",
            o["kind"]
        );
    }
    // The data rule's failure condition: a RabbitmqCluster whose reconcile failed (the
    // stand-in writes the operator's failure conditions by rule).
    e.set_rules(Rules::default().failing("RabbitmqCluster/main"));
    let rmq = objs
        .iter()
        .find(|o| o["kind"] == "RabbitmqCluster")
        .unwrap();
    let h = poll_until_failed(Duration::from_secs(30), || async {
        health(
            &c.get(rmq).await.unwrap().unwrap(),
            &default_rules().unwrap(),
        )
    })
    .await;
    assert!(
        matches!(h, Health::Failed(ref m) if m.contains("ReconcileSuccess")),
        "{h:?}"
    );
}

/// A server that outlives its tests (as a shared real cluster does): two rounds of work with
/// garbage-collected dependents, each in fresh namespaces, and nothing left behind after
/// either — cleanup runs when the `TestCluster` is dropped, also on a panic.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_server_is_left_clean_for_the_next_run() {
    let server = kube_testserver::start().await.expect("test server");
    let observer = Cluster::connect_url(&server.url).unwrap();
    let count = |c: &Cluster, kind: &'static str, av: &'static str| {
        let c = c.clone();
        async move {
            c.list(&json!({"apiVersion": av, "kind": kind}), "")
                .await
                .map(|l| l.len())
                .unwrap_or(0)
        }
    };
    let before = count(&observer, "Namespace", "v1").await;
    for round in 0..2 {
        let made = {
            let e = TestCluster::connect(&server.url, Rules::default());
            let c = &e.cluster;
            let n = e.ns("sw-shared");
            c.apply(&ns(&n), &Default::default()).await.unwrap();
            let d = deployment(&n, 1);
            let live = c.apply(&d, &Default::default()).await.unwrap().live;
            // A dependent of the Deployment: gone with it (the stand-in's garbage collector).
            let owned = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned", "namespace": n,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": live["metadata"]["uid"]}]}});
            c.apply(&owned, &Default::default()).await.unwrap();
            assert_eq!(
                wait_current(c, &d, Duration::from_secs(30)).await,
                Health::Current
            );
            c.delete(&d).await.unwrap();
            let gone = poll_until_current(Duration::from_secs(30), || async {
                match c.get(&owned).await.unwrap() {
                    None => Health::Current,
                    Some(_) => Health::InProgress("dependent still there".into()),
                }
            })
            .await;
            assert_eq!(
                gone,
                Health::Current,
                "round {round}: the dependent was collected"
            );
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": n}});
            assert!(
                c.get(&sa).await.unwrap().is_some(),
                "the default ServiceAccount"
            );
            n
        };
        let left = observer
            .get(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": made}}))
            .await
            .unwrap();
        assert!(left.is_none(), "round {round}: {left:?}");
        assert_eq!(
            count(&observer, "Namespace", "v1").await,
            before,
            "round {round}: no namespace left behind"
        );
    }
}
