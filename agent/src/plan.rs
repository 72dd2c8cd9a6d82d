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
    let mut by_wave: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (name, w) in effective {
        by_wave.entry(w).or_default().push(name);
    }
    Ok(by_wave
        .into_iter()
        .map(|(index, components)| Wave { index, components })
        .collect())
}

/// The rank of a kind in apply order (Namespaces and CRDs first, unknown kinds last).
pub fn kind_rank(kind: &str) -> usize {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        k => INSTALL_ORDER
            .iter()
            .position(|x| *x == k)
            .map(|i| i + 2)
            .unwrap_or(INSTALL_ORDER.len() + 2),
    }
}

/// Sorts a component's objects into apply order (stable: kind rank, then kind, then name).
pub fn order_objects(objs: &mut [Json]) {
    objs.sort_by_cached_key(|o| {
        let kind = o["kind"].as_str().unwrap_or("").to_string();
        (
            kind_rank(&kind),
            kind,
            o.pointer("/metadata/name")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string(),
        )
    });
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
}
