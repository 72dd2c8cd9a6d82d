//! The API resources served: the built-in table (`data/resources.yaml`) plus custom resources
//! from Established CRDs.

use kustomize_rs::yaml::{parse_one, Value};
use serde_json::{json, Value as Json};

/// One API resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResource {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural name (URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names.
    pub short: Vec<String>,
    /// Whether a `/status` subresource exists.
    pub status: bool,
    /// The CRD's structural schema (custom resources only).
    pub schema: Option<Json>,
    /// The CRD version's `additionalPrinterColumns` (custom resources only).
    pub columns: Vec<Json>,
    /// Field selectors the resource supports beyond `metadata.name`/`metadata.namespace`
    /// (its field label conversion function), as `(label, dotted path in the object)`;
    /// `None`: the default conversion (`DefaultMetaV1FieldSelectorConversion`).
    pub field_selectors: Option<Vec<(String, String)>>,
}

impl ApiResource {
    /// `group/version` or `version`.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural`), as error messages name resources.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The discovery entry.
    pub fn discovery(&self) -> Json {
        let mut e = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        });
        // Namespaces are deleted one by one (the namespace lifecycle), never as a collection.
        if self.kind == "Namespace" && self.group.is_empty() {
            e["verbs"] = json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
        }
        if !self.short.is_empty() {
            e["shortNames"] = json!(self.short);
        }
        e
    }
}

const DATA: &str = include_str!("../data/resources.yaml");

/// The built-in resources.
pub fn builtin() -> Vec<ApiResource> {
    let Ok(Value::Seq(items)) = parse_one(DATA) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|i| {
            let gv = i.str_at(&["gv"]).unwrap_or("v1");
            let (group, version) = gv
                .rsplit_once('/')
                .map(|(g, v)| (g.to_string(), v.to_string()))
                .unwrap_or((String::new(), gv.to_string()));
            let kind = i.str_at(&["kind"]).unwrap_or("").to_string();
            let status = !matches!(
                kind.as_str(),
                "ConfigMap"
                    | "Secret"
                    | "ServiceAccount"
                    | "Role"
                    | "RoleBinding"
                    | "ClusterRole"
                    | "ClusterRoleBinding"
                    | "Event"
                    | "Endpoints"
                    | "LimitRange"
                    | "PriorityClass"
                    | "StorageClass"
                    | "IngressClass"
                    | "ControllerRevision"
                    | "EndpointSlice"
                    | "Lease"
                    | "MutatingWebhookConfiguration"
                    | "ValidatingWebhookConfiguration"
            );
            ApiResource {
                group,
                version,
                plural: i.str_at(&["name"]).unwrap_or("").to_string(),
                singular: kind.to_lowercase(),
                kind,
                namespaced: matches!(i.get("namespaced"), Some(Value::Bool(true))),
                short: i
                    .get("short")
                    .and_then(Value::as_seq)
                    .map(|s| s.iter().filter_map(Value::scalar_string).collect())
                    .unwrap_or_default(),
                status,
                schema: None,
                columns: Vec::new(),
                field_selectors: i.get("fields").and_then(Value::as_seq).map(|s| {
                    s.iter()
                        .filter_map(Value::scalar_string)
                        .map(|f| match f.split_once('=') {
                            Some((label, path)) => (label.to_string(), path.to_string()),
                            None => (f.clone(), f),
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

/// The resources a CRD defines (one per served version).
pub fn from_crd(crd: &Json) -> Vec<ApiResource> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("").to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or("").to_string();
    let kind = names["kind"].as_str().unwrap_or("").to_string();
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let short: Vec<String> = names["shortNames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    spec["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["served"].as_bool().unwrap_or(true))
                .map(|v| ApiResource {
                    group: group.clone(),
                    version: v["name"].as_str().unwrap_or("").to_string(),
                    plural: plural.clone(),
                    singular: singular.clone(),
                    kind: kind.clone(),
                    namespaced,
                    short: short.clone(),
                    status: v.pointer("/subresources/status").is_some(),
                    schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                    columns: v["additionalPrinterColumns"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                    field_selectors: None,
                })
                .collect()
        })
        .unwrap_or_default()
}
