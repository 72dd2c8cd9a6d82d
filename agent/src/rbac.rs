//! `stackwave rbac`: a least-privilege ClusterRole for the agent, the option beside
//! `deploy/rbac.yaml`'s cluster-admin binding.
//!
//! Its rules are (1) what the enabled components need: every group/resource the checkout
//! renders (resource names from kube's pluralization, `kube::core::ApiResource::from_gvk`),
//! with the verbs the agent uses on them (server-side apply = `patch`, plus `get`, `list`,
//! `watch` for health and drift, `create`, `update`, `delete` for replacement and prune);
//! and (2) what the agent itself needs: reading Secrets and Services (value bindings),
//! ConfigMaps (inventories), Events, Leases (leader election), Pods (running image ids),
//! EndpointSlices (health), HorizontalPodAutoscalers (HPA-owned fields), CRDs (health,
//! preflight). When the checkout renders Roles or ClusterRoles, `escalate` and `bind` are
//! added on them: Kubernetes RBAC refuses to let a subject create a role granting
//! permissions it does not hold itself unless it has those verbs
//! (`pkg/registry/rbac/escalation_check.go`, kubernetes).

use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

/// The verbs on every rendered resource.
pub const OBJECT_VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// The agent's own needs: (API group, resources, verbs).
pub const AGENT_RULES: &[(&str, &[&str], &[&str])] = &[
    ("", &["secrets", "services"], &["get", "list", "watch"]),
    (
        "",
        &["configmaps"],
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    ),
    (
        "",
        &["events"],
        &["get", "list", "create", "update", "patch"],
    ),
    (
        "events.k8s.io",
        &["events"],
        &["get", "list", "create", "update", "patch"],
    ),
    ("", &["pods"], &["get", "list"]),
    ("", &["namespaces"], &["get", "list", "watch"]),
    (
        "coordination.k8s.io",
        &["leases"],
        &["get", "list", "watch", "create", "update", "patch"],
    ),
    (
        "discovery.k8s.io",
        &["endpointslices"],
        &["get", "list", "watch"],
    ),
    (
        "autoscaling",
        &["horizontalpodautoscalers"],
        &["get", "list", "watch"],
    ),
    (
        "apiextensions.k8s.io",
        &["customresourcedefinitions"],
        &["get", "list", "watch"],
    ),
];

/// The ClusterRole `name` for `objects` (rendered objects, any number of components): one
/// rule per API group, resources sorted, verbs merged.
pub fn cluster_role<'a>(name: &str, objects: impl IntoIterator<Item = &'a Json>) -> Json {
    let mut rules: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut add = |group: &str, resource: &str, verbs: &[&str]| {
        rules
            .entry(group.to_string())
            .or_default()
            .entry(resource.to_string())
            .or_default()
            .extend(verbs.iter().map(|v| v.to_string()));
    };
    for o in objects {
        let (Some(av), Some(kind)) = (o["apiVersion"].as_str(), o["kind"].as_str()) else {
            continue;
        };
        let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        let plural = kube::core::ApiResource::from_gvk(&gvk).plural;
        add(group, &plural, &OBJECT_VERBS);
        if group == "rbac.authorization.k8s.io" && matches!(kind, "Role" | "ClusterRole") {
            add(group, &plural, &["escalate", "bind"]);
        }
    }
    for (group, resources, verbs) in AGENT_RULES {
        for r in *resources {
            add(group, r, verbs);
        }
    }
    // One rule per group and verb set.
    let mut out = Vec::new();
    for (group, resources) in rules {
        let mut by_verbs: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        for (r, verbs) in resources {
            by_verbs
                .entry(verbs.into_iter().collect())
                .or_default()
                .push(r);
        }
        for (verbs, resources) in by_verbs {
            out.push(json!({"apiGroups": [group], "resources": resources, "verbs": verbs}));
        }
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "stackwave"}},
        "rules": out,
    })
}

/// The ClusterRole and its binding to the agent's ServiceAccount, as YAML documents.
pub fn manifest(role: &Json, service_account: &str, namespace: &str) -> String {
    let name = role["metadata"]["name"].as_str().unwrap_or("stackwave");
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    });
    [role, &binding]
        .iter()
        .map(|o| {
            kustomize_rs::yaml::to_yaml(&crate::render::objects::from_json(o)).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_kinds_and_the_agents_needs_become_rules() {
        let objs = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress"}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}),
            json!({"apiVersion": "k8s.mariadb.com/v1alpha1", "kind": "MariaDB"}),
        ];
        let r = cluster_role("stackwave-least", objs.iter());
        let rules = r["rules"].as_array().unwrap();
        let find = |g: &str, res: &str| -> Vec<String> {
            rules
                .iter()
                .filter(|x| x["apiGroups"][0] == g)
                .filter(|x| x["resources"].as_array().unwrap().iter().any(|y| y == res))
                .flat_map(|x| {
                    x["verbs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string())
                })
                .collect()
        };
        assert!(find("networking.k8s.io", "ingresses").contains(&"patch".to_string()));
        assert!(find("networking.k8s.io", "networkpolicies").contains(&"delete".to_string()));
        assert!(find("k8s.mariadb.com", "mariadbs").contains(&"patch".to_string()));
        assert!(find("rbac.authorization.k8s.io", "clusterroles").contains(&"escalate".to_string()));
        assert!(find("coordination.k8s.io", "leases").contains(&"update".to_string()));
        assert_eq!(find("", "secrets"), vec!["get", "list", "watch"]);
        assert!(
            find("apps", "statefulsets").is_empty(),
            "only what is rendered"
        );
        assert!(!rules
            .iter()
            .any(|x| x["resources"][0] == "*" || x["verbs"][0] == "*"));
    }
}
