//! The OpenAPI facts kustomize takes from its embedded Kubernetes v1.21.2 schema: strategic
//! merge patch strategies and merge keys per field, and which kinds are cluster-scoped
//! (`kyaml/openapi/openapi.go`). The data file is derived from the reference bundle by
//! `data/derive.py`.

use serde_json::Value as Json;
use std::sync::OnceLock;

const DATA: &str = include_str!("../data/openapi-k8s-v1.21.2.json");

fn data() -> &'static Json {
    static D: OnceLock<Json> = OnceLock::new();
    D.get_or_init(|| serde_json::from_str(DATA).unwrap_or(Json::Null))
}

/// Whether `apiVersion`/`kind` is a known cluster-scoped type.
pub fn is_cluster_scoped(api_version: &str, kind: &str) -> bool {
    data()
        .get("kinds")
        .and_then(|k| k.get(format!("{api_version}|{kind}")))
        .and_then(|e| e.get("scope"))
        .and_then(Json::as_str)
        == Some("Cluster")
}

/// A position in the schema: a definition name (for objects), or nothing known.
#[derive(Clone, Copy, Debug)]
pub struct Schema {
    def: Option<&'static str>,
}

/// What the schema says about one field of an object.
#[derive(Clone, Debug, Default)]
pub struct FieldInfo {
    /// Schema of the field's value (objects) or of its items (arrays) or map values.
    pub schema: Option<Schema>,
    /// Whether the field is an array.
    pub array: bool,
    /// Whether the field is a map of objects (`additionalProperties` with a `$ref`).
    pub map_values: bool,
    /// `x-kubernetes-patch-strategy`, split on commas.
    pub strategies: Vec<String>,
    /// Merge keys (`x-kubernetes-list-map-keys`, else `x-kubernetes-patch-merge-key`).
    pub merge_keys: Vec<String>,
}

impl FieldInfo {
    /// Whether lists under this field merge by key (kyaml `IsAssociative` with a schema).
    pub fn is_associative(&self) -> bool {
        self.strategies.iter().any(|s| s == "merge")
    }

    /// Whether the strategy says `replace`.
    pub fn is_replace(&self) -> bool {
        self.strategies.iter().any(|s| s == "replace")
    }
}

impl Schema {
    /// The schema of a top-level resource type, if the embedded schema knows it.
    pub fn for_type(api_version: &str, kind: &str) -> Option<Schema> {
        let def = data()
            .get("kinds")?
            .get(format!("{api_version}|{kind}"))?
            .get("definition")?
            .as_str()?;
        if def.is_empty() {
            return None;
        }
        Some(Schema { def: Some(def) })
    }

    /// What the schema says about field `name` of this object.
    pub fn field(&self, name: &str) -> Option<FieldInfo> {
        let def = self.def?;
        let e = data().get("definitions")?.get(def)?.get(name)?;
        let s = |k: &str| e.get(k).and_then(Json::as_str);
        let target = s("ref").or(s("items")).or(s("values"));
        Some(FieldInfo {
            schema: target.map(|d| Schema { def: Some(d) }),
            array: e.get("array").and_then(Json::as_bool).unwrap_or(false),
            map_values: s("values").is_some(),
            strategies: s("strategy").map(|x| x.split(',').map(str::to_string).collect()).unwrap_or_default(),
            merge_keys: e
                .get("keys")
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_merge_keys_and_scopes() {
        let dep = Schema::for_type("apps/v1", "Deployment").unwrap();
        let spec = dep.field("spec").unwrap().schema.unwrap();
        let tmpl = spec.field("template").unwrap().schema.unwrap();
        let pod = tmpl.field("spec").unwrap().schema.unwrap();
        let c = pod.field("containers").unwrap();
        assert!(c.is_associative());
        assert_eq!(c.merge_keys, vec!["name".to_string()]);
        assert!(is_cluster_scoped("v1", "Namespace"));
        assert!(!is_cluster_scoped("v1", "ConfigMap"));
        assert!(!is_cluster_scoped("example.com/v1", "Widget"));
    }
}
