//! The OpenAPI facts kustomize takes from its embedded Kubernetes v1.21.2 schema: strategic
//! merge patch strategies and merge keys per field, and which kinds are cluster-scoped
//! (`kyaml/openapi/openapi.go`). The data file is derived from the reference bundle by
//! `data/derive.py` and compiled into static tables by `build.rs`.

use crate::tables::{lookup, DEFINITIONS, KINDS};
use crate::yaml::Value;

fn kind_entry(api_version: &str, kind: &str) -> Option<(&'static str, bool)> {
    let key = format!("{api_version}|{kind}");
    KINDS
        .binary_search_by(|(k, _, _)| (*k).cmp(key.as_str()))
        .ok()
        .map(|i| (KINDS[i].1, KINDS[i].2))
}

/// Whether `apiVersion`/`kind` is a known cluster-scoped type.
pub fn is_cluster_scoped(api_version: &str, kind: &str) -> bool {
    kind_entry(api_version, kind).is_some_and(|(_, c)| c)
}

thread_local! {
    /// A custom schema from a kustomization's `openapi.path`. Like kyaml's global schema it
    /// replaces the builtin one for the rest of the build once set (`openapi.SetSchema`).
    static CUSTOM: std::cell::RefCell<Option<std::sync::Arc<Value>>> = const { std::cell::RefCell::new(None) };
}

/// Installs (or, with `None`, removes) a custom OpenAPI schema for this thread's builds.
pub fn set_custom_schema(schema: Option<Value>) {
    CUSTOM.with(|c| *c.borrow_mut() = schema.map(std::sync::Arc::new));
}

fn custom() -> Option<std::sync::Arc<Value>> {
    CUSTOM.with(|c| c.borrow().clone())
}

/// A position in the schema: a builtin definition, or a node of a custom schema.
#[derive(Clone, Debug)]
pub enum Schema {
    /// A definition of the embedded Kubernetes schema.
    Builtin(&'static str),
    /// A node (object schema) of a custom schema.
    Custom(std::sync::Arc<Value>, Value),
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

/// The schema a custom-schema node points to: its `$ref` target in the custom definitions,
/// else in the builtin ones (kyaml adds custom definitions to the builtin schema), else the
/// node itself.
fn custom_target(root: &std::sync::Arc<Value>, node: &Value) -> Option<Schema> {
    let Some(r) = node.get("$ref").and_then(Value::as_str) else {
        return Some(Schema::Custom(root.clone(), node.clone()));
    };
    let name = r.rsplit('/').next().unwrap_or("");
    if let Some(d) = root.get_path(&["definitions", name]) {
        return custom_target(root, d);
    }
    builtin_def(name).map(Schema::Builtin)
}

fn builtin_def(name: &str) -> Option<&'static str> {
    DEFINITIONS
        .binary_search_by(|(k, _)| (*k).cmp(name))
        .ok()
        .map(|i| DEFINITIONS[i].0)
}

fn resolve_ref(root: &Value, node: &Value) -> Value {
    let mut cur = node.clone();
    for _ in 0..32 {
        let Some(r) = cur.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let name = r.rsplit('/').next().unwrap_or("");
        match root.get_path(&["definitions", name]) {
            Some(d) => cur = d.clone(),
            None => break,
        }
    }
    cur
}

impl Schema {
    /// The schema of a top-level resource type, if the schema in force knows it.
    pub fn for_type(api_version: &str, kind: &str) -> Option<Schema> {
        if let Some(root) = custom() {
            let (group, version) = match api_version.rsplit_once('/') {
                Some((g, v)) => (g, v),
                None => ("", api_version),
            };
            let defs = root.get("definitions").and_then(Value::as_map)?;
            for def in defs.values() {
                let Some(Value::Seq(gvks)) = def.get("x-kubernetes-group-version-kind") else {
                    continue;
                };
                let hit = gvks.iter().any(|g| {
                    g.str_at(&["group"]).unwrap_or("") == group
                        && g.str_at(&["version"]).unwrap_or("") == version
                        && g.str_at(&["kind"]).unwrap_or("") == kind
                });
                if hit {
                    return Some(Schema::Custom(root.clone(), def.clone()));
                }
            }
            // The custom schema replaces the builtin one: a type it does not describe has
            // no schema (its lists are replaced by a patch's), as kubectl kustomize shows
            // for a StatefulSet next to a custom schema of other kinds.
            return None;
        }
        let (def, _) = kind_entry(api_version, kind)?;
        if def.is_empty() {
            return None;
        }
        Some(Schema::Builtin(def))
    }

    /// What the schema says about field `name` of this object.
    pub fn field(&self, name: &str) -> Option<FieldInfo> {
        match self {
            Schema::Builtin(def) => {
                let e = lookup(lookup(DEFINITIONS, def)?, name)?;
                Some(FieldInfo {
                    schema: e.target.map(Schema::Builtin),
                    array: e.array,
                    map_values: e.map_values,
                    strategies: if e.strategy.is_empty() {
                        Vec::new()
                    } else {
                        e.strategy.split(',').map(str::to_string).collect()
                    },
                    merge_keys: e.keys.iter().map(|k| k.to_string()).collect(),
                })
            }
            Schema::Custom(root, node) => {
                let node = match custom_target(root, node)? {
                    Schema::Custom(_, n) => n,
                    b @ Schema::Builtin(_) => return b.field(name),
                };
                let raw = node.get_path(&["properties", name])?;
                let p = resolve_ref(root, raw);
                let ext = |k: &str| raw.get(k).or_else(|| p.get(k));
                let array =
                    p.str_at(&["type"]) == Some("array") || raw.str_at(&["type"]) == Some("array");
                let target = if array {
                    p.get("items").and_then(|i| custom_target(root, i))
                } else if let Some(ap) = p
                    .get("additionalProperties")
                    .filter(|a| a.get("$ref").is_some())
                {
                    custom_target(root, ap)
                } else {
                    custom_target(root, raw)
                };
                let keys = match ext("x-kubernetes-list-map-keys") {
                    Some(Value::Seq(k)) => k.iter().filter_map(Value::scalar_string).collect(),
                    _ => ext("x-kubernetes-patch-merge-key")
                        .and_then(Value::scalar_string)
                        .into_iter()
                        .collect(),
                };
                Some(FieldInfo {
                    schema: target,
                    array,
                    map_values: false,
                    strategies: ext("x-kubernetes-patch-strategy")
                        .and_then(Value::scalar_string)
                        .map(|x| x.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                    merge_keys: keys,
                })
            }
        }
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
