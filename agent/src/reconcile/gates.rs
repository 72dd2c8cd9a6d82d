//! What a wave waits for, per component, from the catalog: its objects' health (kstatus),
//! within the entry's `helm.timeout` (else `--health-timeout`), and its `waitFor` gates
//! ([`crate::component::WaitFor`]: the setup scripts' `kubectl wait` steps). An entry with
//! `helm.wait: false` (`helm install` without `--wait`, opted into) is not waited on for its
//! workloads: only for what Helm waits on without `--wait` (CRDs, from `crds/` or not, and
//! hooks; Helm's `pkg/action/install.go` waits for `crds/` to be established and runs hooks
//! to completion whatever `--wait` says), webhook backend Services (writes through them fail
//! until they have endpoints) and the gates. Components without a catalog entry (`manifests:`
//! of `stackwave.yaml`, rollbacks of components the catalog no longer has) get the default:
//! every object, `--health-timeout`, no gates.

use crate::apply::{Gate, Target};
use crate::component::{Catalog, Component};
use serde_json::Value as Json;
use std::time::Duration;

/// The wait of one component's objects in its wave ([`Target`]).
pub fn target(
    entry: Option<&Component>,
    component: &str,
    objs: &[Json],
    default: Duration,
) -> Target {
    let timeout = entry
        .and_then(|e| e.helm.timeout.as_ref())
        .map_or(default, |t| t.duration);
    let workloads = entry.and_then(|e| e.helm.wait) != Some(false);
    let backends = crate::cluster::health::webhook_backends(objs);
    let objects = objs
        .iter()
        .filter(|o| workloads || waited_without_wait(o, &backends))
        .cloned()
        .collect();
    let gates = entry
        .map(|e| {
            e.wait_for
                .iter()
                .map(|w| Gate {
                    api_version: w.api_version.clone(),
                    kind: w.kind.clone(),
                    namespace: w.namespace.clone(),
                    name: w.name.clone(),
                    condition: w.condition.clone(),
                    timeout: w.timeout.as_ref().map_or(timeout, |t| t.duration),
                })
                .collect()
        })
        .unwrap_or_default();
    Target {
        component: component.to_string(),
        objects,
        timeout,
        gates,
    }
}

/// [`target`] of each named component, its entry looked up in `catalog`.
pub fn targets<'a>(
    catalog: &Catalog,
    components: impl IntoIterator<Item = (&'a str, &'a [Json])>,
    default: Duration,
) -> Vec<Target> {
    components
        .into_iter()
        .map(|(c, objs)| target(catalog.get(c), c, objs, default))
        .collect()
}

/// What a `helm.wait: false` component is still waited on for.
fn waited_without_wait(o: &Json, backends: &[(String, String)]) -> bool {
    let kind = o["kind"].as_str().unwrap_or("");
    let hook = o.pointer("/metadata/annotations/helm.sh~1hook").is_some();
    let backend = kind == "Service"
        && backends.contains(&(
            crate::cluster::namespace_of(o).to_string(),
            crate::cluster::name_of(o).to_string(),
        ));
    kind == "CustomResourceDefinition" || hook || backend
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(extra: &str) -> Component {
        let text = format!(
            "name: op\nkind: kustomize\nrelease: {{name: op, namespace: ops}}\nkustomize: {{path: op/base}}\n{extra}"
        );
        crate::component::parse(&text, "op.yaml").unwrap()
    }

    fn objects() -> Vec<Json> {
        vec![
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "dbs.example.com"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "op", "namespace": "ops"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hook", "namespace": "ops"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "metrics", "namespace": "ops"}}),
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "op"},
                "webhooks": [{"name": "v.example.com", "clientConfig": {"service": {"namespace": "ops", "name": "hook"}}}]}),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "init", "namespace": "ops",
                "annotations": {"helm.sh/hook": "post-install"}}}),
        ]
    }

    fn ids(t: &Target) -> Vec<String> {
        t.objects.iter().map(crate::cluster::object_id).collect()
    }

    #[test]
    fn timeouts_and_gates_come_from_the_entry() {
        let e = entry(
            "helm: {timeout: 90s}\nwaitFor:\n  - {kind: Deployment, namespace: ops, name: op, condition: Available, timeout: 1m}\n  - {apiVersion: example.com/v1, kind: DB, namespace: ops, name: db, condition: Ready}\n",
        );
        let t = target(Some(&e), "op", &objects(), Duration::from_secs(300));
        assert_eq!(t.timeout, Duration::from_secs(90));
        assert_eq!(t.objects.len(), 6, "absent `wait`: every object");
        assert_eq!(
            t.gates
                .iter()
                .map(|g| (g.id(), g.api_version.clone(), g.timeout))
                .collect::<Vec<_>>(),
            [
                (
                    "Deployment/ops/op".to_string(),
                    None,
                    Duration::from_secs(60)
                ),
                (
                    "DB/ops/db".to_string(),
                    Some("example.com/v1".to_string()),
                    Duration::from_secs(90)
                ),
            ]
        );
        // No entry (a `manifests:` component): every object, the default limit, no gates.
        let t = target(None, "app", &objects(), Duration::from_secs(7));
        assert_eq!(
            (t.objects.len(), t.timeout, t.gates.len()),
            (6, Duration::from_secs(7), 0)
        );
        // An entry without `helm.timeout` gets the default.
        let t = target(Some(&entry("")), "op", &objects(), Duration::from_secs(7));
        assert_eq!(t.timeout, Duration::from_secs(7));
    }

    #[test]
    fn wait_false_keeps_what_helm_waits_on_without_wait() {
        let e = entry("helm: {wait: false}\nwaitFor:\n  - {kind: Deployment, namespace: ops, name: op, condition: Available}\n");
        let t = target(Some(&e), "op", &objects(), Duration::from_secs(300));
        assert_eq!(
            ids(&t),
            [
                "CustomResourceDefinition/dbs.example.com",
                "Service/ops/hook",
                "Job/ops/init"
            ]
        );
        assert_eq!(t.gates.len(), 1, "the gates still hold the next wave");
        let t = target(
            Some(&entry("helm: {wait: true}\n")),
            "op",
            &objects(),
            Duration::from_secs(1),
        );
        assert_eq!(t.objects.len(), 6);
    }

    #[test]
    fn a_bad_duration_names_the_file() {
        let text = "name: op\nrelease: {name: op, namespace: ops}\nhelm: {timeout: 5 minutes}\n";
        let err = crate::component::parse(text, "components/op.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("components/op.yaml") && err.contains("\"5 minutes\""),
            "{err}"
        );
        let text = "name: op\nrelease: {name: op, namespace: ops}\nwaitFor:\n  - {kind: X, name: x, condition: Ready, timeout: -1s}\n";
        let err = crate::component::parse(text, "op.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("negative"), "{err}");
    }
}
