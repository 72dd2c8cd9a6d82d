//! The plan stage: components form a DAG (each one's `wave` and `dependsOn`, from the
//! catalog), cut into waves that are applied in order and gated on health; inside a
//! component, objects are ordered as data: Namespaces and CRDs first, then Helm's install
//! order of kinds, then name (after Argo CD's gitops-engine `pkg/sync` ordering: phase → wave
//! → kind → name).

use crate::component::Catalog;
use crate::render::assemble::INSTALL_ORDER;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// A planning error.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A component depends on one that is not enabled or not in the catalog.
    #[error("component {component} depends on {missing}, which is not enabled")]
    MissingDependency {
        /// The dependent.
        component: String,
        /// The dependency.
        missing: String,
    },
    /// A dependency cycle.
    #[error("dependency cycle among components: {0}")]
    Cycle(String),
    /// An enabled component is not in the catalog.
    #[error("unknown component '{0}'")]
    Unknown(String),
}

/// One wave: components applied together, then waited on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Wave {
    /// Wave number (effective: at least one past every dependency's wave).
    pub index: i32,
    /// Components in the wave, by name.
    pub components: Vec<String>,
}

/// Cuts the enabled components into waves.
///
/// # Errors
/// Unknown components, missing dependencies, cycles.
pub fn waves(catalog: &Catalog, enabled: &[String]) -> Result<Vec<Wave>, PlanError> {
    let mut effective: BTreeMap<String, i32> = BTreeMap::new();
    fn eff(
        name: &str,
        catalog: &Catalog,
        enabled: &[String],
        memo: &mut BTreeMap<String, i32>,
        stack: &mut Vec<String>,
    ) -> Result<i32, PlanError> {
        if let Some(w) = memo.get(name) {
            return Ok(*w);
        }
        if stack.iter().any(|s| s == name) {
            stack.push(name.to_string());
            return Err(PlanError::Cycle(stack.join(" -> ")));
        }
        let c = catalog
            .get(name)
            .ok_or_else(|| PlanError::Unknown(name.to_string()))?;
        stack.push(name.to_string());
        let mut w = c.wave;
        for d in &c.depends_on {
            if !enabled.iter().any(|e| e == d) {
                return Err(PlanError::MissingDependency {
                    component: name.to_string(),
                    missing: d.clone(),
                });
            }
            w = w.max(eff(d, catalog, enabled, memo, stack)? + 1);
        }
        stack.pop();
        memo.insert(name.to_string(), w);
        Ok(w)
    }
    for e in enabled {
        eff(e, catalog, enabled, &mut effective, &mut Vec::new())?;
    }
    Ok(group(effective.into_iter().map(|(name, w)| (w, name))))
}

/// Groups `(wave, component)` entries into waves in ascending wave order, each wave's
/// components in the order of the entries (one grouping for the planner, the repository's
/// `manifests:` entries and rollbacks).
pub fn group(entries: impl IntoIterator<Item = (i32, String)>) -> Vec<Wave> {
    let mut by_wave: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (w, c) in entries {
        by_wave.entry(w).or_default().push(c);
    }
    by_wave
        .into_iter()
        .map(|(index, components)| Wave { index, components })
        .collect()
}

/// The kinds applied before Helm's order (data): Namespaces and CRDs must exist before the
/// objects that live in or are typed by them.
pub const FIRST_KINDS: &[&str] = &["Namespace", "CustomResourceDefinition"];

/// The rank of a kind in apply order: [`FIRST_KINDS`], then Helm's install order
/// ([`INSTALL_ORDER`], Helm's `pkg/release/util/kind_sorter.go` `InstallOrder`), unknown
/// kinds last.
pub fn kind_rank(kind: &str) -> usize {
    if let Some(i) = FIRST_KINDS.iter().position(|x| *x == kind) {
        return i;
    }
    FIRST_KINDS.len()
        + INSTALL_ORDER
            .iter()
            .position(|x| *x == kind)
            .unwrap_or(INSTALL_ORDER.len())
}

/// The sync phase of an object: the release's objects, then its Helm hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The release's objects.
    Sync,
    /// Helm hooks (`helm.sh/hook`), applied after them.
    Hook,
}

/// An object's place in its component's apply order — one sortable key, compared field by
/// field as gitops-engine's `pkg/sync/sync_tasks.go` `syncTasks.Less` does: phase → wave →
/// kind → name. A Helm hook's wave is its `helm.sh/hook-weight` (an integer, else 0, as
/// Helm's `pkg/action/hooks.go` reads it); release objects are all wave 0. Kinds compare by
/// [`kind_rank`], then by name (so unknown kinds are grouped), then the object's name. (Helm
/// itself runs hooks of one weight by name, `hookByWeight`, kind order only breaking ties;
/// here kind comes first, as in gitops-engine, so a hook's ServiceAccount or ConfigMap is
/// applied before the Job of the same weight that uses it.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApplyKey {
    /// The phase.
    pub phase: Phase,
    /// The wave inside the phase.
    pub wave: i64,
    /// [`kind_rank`] of the kind.
    pub kind_rank: usize,
    /// The kind.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
}

/// The [`ApplyKey`] of an object.
pub fn apply_key(o: &Json) -> ApplyKey {
    let kind = o["kind"].as_str().unwrap_or("").to_string();
    let hook = o.pointer("/metadata/annotations/helm.sh~1hook").is_some();
    let wave = if hook {
        o.pointer("/metadata/annotations/helm.sh~1hook-weight")
            .and_then(Json::as_str)
            .and_then(|w| w.parse::<i64>().ok())
            .unwrap_or(0)
    } else {
        0
    };
    ApplyKey {
        phase: if hook { Phase::Hook } else { Phase::Sync },
        wave,
        kind_rank: kind_rank(&kind),
        name: o
            .pointer("/metadata/name")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
        kind,
    }
}

/// Sorts a component's objects into apply order by [`ApplyKey`] (stable).
pub fn order_objects(objs: &mut [Json]) {
    objs.sort_by_cached_key(apply_key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_follow_dependencies() {
        let cat = Catalog::builtin().unwrap();
        let enabled: Vec<String> = [
            "memcached",
            "keystone",
            "glance",
            "nova",
            "placement",
            "libvirt",
            "neutron",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let w = waves(&cat, &enabled).unwrap();
        let pos = |c: &str| {
            w.iter()
                .position(|x| x.components.iter().any(|y| y == c))
                .unwrap()
        };
        // bin/setup-infrastructure.sh: memcached, then libvirt; bin/setup-openstack.sh:
        // keystone alone, then the enabled services together.
        assert!(pos("memcached") < pos("libvirt") && pos("libvirt") < pos("keystone"));
        assert!(pos("keystone") < pos("glance"));
        assert!(pos("placement") == pos("nova") && pos("glance") == pos("neutron"));
        let err = waves(&cat, &["glance".to_string()]).unwrap_err();
        assert!(err.to_string().contains("depends on keystone"));
    }

    #[test]
    fn objects_in_apply_order() {
        let mut objs: Vec<Json> = [
            "Deployment",
            "Service",
            "CustomResourceDefinition",
            "Widget",
            "Namespace",
            "ConfigMap",
        ]
        .iter()
        .map(|k| serde_json::json!({"kind": k, "metadata": {"name": "x"}}))
        .collect();
        order_objects(&mut objs);
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "CustomResourceDefinition",
                "ConfigMap",
                "Service",
                "Deployment",
                "Widget"
            ]
        );
    }

    fn obj(kind: &str, name: &str, hook: Option<(&str, &str)>) -> Json {
        let mut o = serde_json::json!({"kind": kind, "metadata": {"name": name}});
        if let Some((h, w)) = hook {
            o["metadata"]["annotations"] =
                serde_json::json!({"helm.sh/hook": h, "helm.sh/hook-weight": w});
        }
        o
    }

    #[test]
    fn one_comparator_phase_wave_kind_name() {
        let mut objs = vec![
            obj("Job", "db-sync", Some(("post-install", "5"))),
            obj("Job", "bootstrap", Some(("post-install", "-1"))),
            obj("ServiceAccount", "db-sync", Some(("post-install", "5"))),
            obj("Job", "a-job", Some(("post-install", "x"))),
            obj("Deployment", "api", None),
            obj("ConfigMap", "etc", None),
            obj("Namespace", "ns", None),
        ];
        order_objects(&mut objs);
        let got: Vec<(String, String)> = objs
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap().into(),
                    o["metadata"]["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [
            ("Namespace", "ns"),
            ("ConfigMap", "etc"),
            ("Deployment", "api"),
            ("Job", "bootstrap"),
            ("Job", "a-job"),
            ("ServiceAccount", "db-sync"),
            ("Job", "db-sync"),
        ]
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
        assert_eq!(got, want);
        // Unknown kinds after every known one, grouped by kind name.
        assert!(kind_rank("Widget") > kind_rank("ValidatingWebhookConfiguration"));
        assert!(apply_key(&obj("Alpha", "z", None)) < apply_key(&obj("Beta", "a", None)));
    }

    #[test]
    fn grouping_orders_waves_and_keeps_entry_order() {
        let w = group([
            (2, "b".to_string()),
            (0, "z".to_string()),
            (2, "a".to_string()),
            (-1, "m".to_string()),
        ]);
        assert_eq!(
            w,
            vec![
                Wave {
                    index: -1,
                    components: vec!["m".into()]
                },
                Wave {
                    index: 0,
                    components: vec!["z".into()]
                },
                Wave {
                    index: 2,
                    components: vec!["b".into(), "a".into()]
                },
            ]
        );
        assert!(group(Vec::new()).is_empty());
    }
}
