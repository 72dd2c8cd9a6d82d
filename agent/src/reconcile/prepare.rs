//! Render post-processing: a component's rendered objects made into what the applier applies
//! — Helm test hooks dropped, namespaces defaulted as `helm install --namespace` does, the
//! objects put in apply order ([`plan::order_objects`]: phase → wave → kind → name) and
//! marked with their component and instance ([`mark`]). Pure: no cluster, no store.

use crate::cluster::instance::Instance;
use crate::cluster::inventory::mark;
use crate::plan;
use kustomize_rs::yaml::YamlError;
use serde_json::Value as Json;

/// Parses rendered text into objects (comment-only and empty documents dropped).
///
/// # Errors
/// Malformed YAML (line and column).
pub fn objects_of(text: &str) -> Result<Vec<Json>, YamlError> {
    let docs = kustomize_rs::yaml::parse_documents(text)?;
    Ok(docs
        .iter()
        .filter(|d| d.as_map().is_some_and(|m| !m.is_empty()))
        .map(crate::component::to_json)
        .collect())
}

/// Whether an object is a Helm test hook (every event of its `helm.sh/hook` is `test`, or
/// the older `test-success`): `helm install` and `upgrade` never create these, only
/// `helm test` does (Helm's `pkg/release/v1/hook.go` `HookTest`).
pub fn is_test_hook(o: &Json) -> bool {
    o.pointer("/metadata/annotations/helm.sh~1hook")
        .and_then(Json::as_str)
        .is_some_and(|h| {
            h.split(',')
                .all(|e| matches!(e.trim().to_lowercase().as_str(), "test" | "test-success"))
        })
}

/// Puts namespaced objects without a namespace into `namespace` (what `helm install
/// --namespace` does for the release's objects); cluster-scoped kinds are left alone.
pub fn default_namespace(objs: &mut [Json], namespace: &str) {
    for o in objs.iter_mut() {
        let av = o["apiVersion"].as_str().unwrap_or("");
        let kind = o["kind"].as_str().unwrap_or("");
        if o.pointer("/metadata/namespace").is_none()
            && !kustomize_rs::openapi::is_cluster_scoped(av, kind)
        {
            o["metadata"]["namespace"] = Json::from(namespace);
        }
    }
}

/// A chart component's rendered objects as a Helm install creates them: test hooks dropped,
/// namespaces defaulted to the release's. The upgrade stage compares renders in this form
/// (unordered, unmarked).
pub fn install_objects(mut objs: Vec<Json>, release_namespace: &str) -> Vec<Json> {
    objs.retain(|o| !is_test_hook(o));
    default_namespace(&mut objs, release_namespace);
    objs
}

/// A chart component's rendered objects, ready to apply: [`install_objects`], then ordered and
/// marked as `component`'s of `instance`.
pub fn chart_objects(
    objs: Vec<Json>,
    component: &str,
    release_namespace: &str,
    instance: &Instance,
) -> Vec<Json> {
    manifest_objects(
        install_objects(objs, release_namespace),
        component,
        instance,
    )
}

/// A plain-manifests component's objects (`stackwave.yaml` `manifests:`), ready to apply:
/// ordered and marked as `component`'s of `instance`.
pub fn manifest_objects(mut objs: Vec<Json>, component: &str, instance: &Instance) -> Vec<Json> {
    plan::order_objects(&mut objs);
    for o in objs.iter_mut() {
        mark(o, component, instance);
    }
    objs
}

/// The Namespace `helm install --create-namespace` creates for a release: `v1` `Namespace`
/// named after it and labelled `name: <namespace>` (Helm `pkg/action/install.go`,
/// `if i.CreateNamespace`: created before the release's objects, an existing one left alone,
/// and never part of the release, so `helm uninstall` never deletes it).
pub fn release_namespace(name: &str) -> Json {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"name": name}},
    })
}

/// A component whose install script passes `--create-namespace` (`release.createNamespace`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CreateNamespace {
    /// Its wave, as planned (the Namespace must come no later than the component's objects).
    pub wave: i32,
    /// The component.
    pub component: String,
    /// Its release namespace.
    pub namespace: String,
}

fn is_namespace(o: &Json, name: &str) -> bool {
    o["kind"] == "Namespace"
        && o["apiVersion"] == "v1"
        && o.pointer("/metadata/name").and_then(Json::as_str) == Some(name)
}

/// Adds the Namespaces `--create-namespace` creates to a revision's prepared objects
/// (component → objects in apply order, marked): each wanted namespace that no object of the
/// revision already is, and that is not in `left_alone` (a namespace that exists and is not
/// Stackwave's: left as it is, as Helm ignores `AlreadyExists`), becomes a
/// [`release_namespace`] object of the first wanting component in (wave, name) order, first
/// in its apply order and marked as its object. Several components sharing a release
/// namespace (most of Genestack's, in `openstack`) so have it applied once, by one owner,
/// before any of them. Namespaces are never pruned ([`crate::cluster::inventory::protected`]),
/// so one created here stays when its component goes, as Helm's does. Returns the
/// (namespace, component) pairs added.
pub fn add_created_namespaces(
    objects: &mut std::collections::BTreeMap<String, Vec<Json>>,
    wants: &[CreateNamespace],
    left_alone: &std::collections::BTreeSet<String>,
    instance: &Instance,
) -> Vec<(String, String)> {
    let mut wants: Vec<&CreateNamespace> = wants
        .iter()
        .filter(|w| objects.contains_key(&w.component))
        .collect();
    wants.sort();
    let mut added = Vec::new();
    for w in wants {
        let ns = &w.namespace;
        if left_alone.contains(ns) || objects.values().flatten().any(|o| is_namespace(o, ns)) {
            continue;
        }
        let Some(objs) = objects.get_mut(&w.component) else {
            continue;
        };
        let mut o = release_namespace(ns);
        mark(&mut o, &w.component, instance);
        objs.insert(0, o);
        plan::order_objects(objs);
        added.push((ns.clone(), w.component.clone()));
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chart_objects_are_filtered_defaulted_ordered_and_marked() {
        let text = "\
apiVersion: batch/v1
kind: Job
metadata:
  name: db-sync
  annotations:
    helm.sh/hook: post-install,post-upgrade
---
# only a comment
---
apiVersion: v1
kind: Pod
metadata:
  name: api-test
  annotations:
    helm.sh/hook: test
---
apiVersion: v1
kind: Pod
metadata:
  name: old-test
  annotations:
    helm.sh/hook: ' Test-Success '
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: reader
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: etc
  namespace: elsewhere
";
        let objs = objects_of(text).unwrap();
        assert_eq!(objs.len(), 6, "the comment-only document is dropped");
        let out = chart_objects(objs, "keystone", "openstack", &Instance::default());
        let got: Vec<(&str, &str, Option<&str>)> = out
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap(),
                    o.pointer("/metadata/namespace").and_then(Json::as_str),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("ConfigMap", "etc", Some("elsewhere")),
                ("ClusterRole", "reader", None),
                ("Deployment", "api", Some("openstack")),
                ("Job", "db-sync", Some("openstack")),
            ]
        );
        for o in &out {
            assert_eq!(
                o.pointer("/metadata/labels")
                    .and_then(|a| a.get(crate::cluster::COMPONENT_LABEL))
                    .and_then(Json::as_str),
                Some("keystone"),
                "{o}"
            );
            // No mark is an annotation (a Deployment's annotations move its generation).
            assert!(
                o.pointer("/metadata/annotations")
                    .and_then(Json::as_object)
                    .is_none_or(|a| a.keys().all(|k| !k.starts_with("stackwave.io/"))),
                "{o}"
            );
        }
    }

    #[test]
    fn created_namespaces_go_once_to_the_earliest_component_unless_present_or_left_alone() {
        let i = Instance::default();
        let cm = |ns: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}});
        let mut objects: std::collections::BTreeMap<String, Vec<Json>> = [
            ("glance", vec![cm("openstack")]),
            ("keystone", vec![cm("openstack")]),
            ("base", vec![release_namespace("infra"), cm("infra")]),
            ("metallb", vec![cm("metallb-system")]),
            ("talos", vec![cm("monitoring")]),
        ]
        .into_iter()
        .map(|(c, o)| (c.to_string(), manifest_objects(o, c, &i)))
        .collect();
        let want = |wave, c: &str, ns: &str| CreateNamespace {
            wave,
            component: c.into(),
            namespace: ns.into(),
        };
        let wants = [
            want(20, "glance", "openstack"),
            want(19, "keystone", "openstack"),
            want(3, "metallb", "infra"),
            want(2, "metallb", "metallb-system"),
            want(9, "talos", "monitoring"),
            want(1, "absent", "absent"),
        ];
        let left_alone = ["monitoring".to_string()].into();
        let before = objects.clone();
        let added = add_created_namespaces(&mut objects, &wants, &left_alone, &i);
        assert_eq!(
            added,
            [
                ("metallb-system".to_string(), "metallb".to_string()),
                ("openstack".to_string(), "keystone".to_string()),
            ]
        );
        // The earlier-wave keystone owns `openstack`, first in its apply order, marked.
        let ks = &objects["keystone"];
        assert_eq!(ks.len(), 2);
        assert!(is_namespace(&ks[0], "openstack"), "{}", ks[0]);
        assert_eq!(ks[0]["metadata"]["labels"]["name"], "openstack");
        assert_eq!(
            ks[0]["metadata"]["labels"][crate::cluster::COMPONENT_LABEL],
            "keystone"
        );
        assert_eq!(objects["glance"], before["glance"], "applied once");
        assert_eq!(objects["base"], before["base"], "the revision has it");
        assert_eq!(objects["talos"], before["talos"], "left alone");
        assert!(is_namespace(&objects["metallb"][0], "metallb-system"));
    }

    #[test]
    fn test_hooks_need_every_event_to_be_a_test() {
        let hook = |h: &str| json!({"metadata": {"annotations": {"helm.sh/hook": h}}});
        assert!(is_test_hook(&hook("test")));
        assert!(is_test_hook(&hook("test, test-success")));
        assert!(!is_test_hook(&hook("test,post-install")));
        assert!(!is_test_hook(&json!({"metadata": {"name": "x"}})));
    }

    #[test]
    fn bad_yaml_names_the_line() {
        let e = objects_of("a: [1,\n").unwrap_err();
        assert!(e.line >= 1, "{e}");
    }
}
