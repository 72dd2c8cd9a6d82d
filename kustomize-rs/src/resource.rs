//! Resources, their identities (GVK + name + namespace) and the bookkeeping kustomize keeps
//! about them while building (previous ids, name prefixes/suffixes, generator options).
//!
//! kustomize stores this bookkeeping in `internal.config.kubernetes.io/*` annotations and
//! strips them before printing (`api/resource/resource.go`, `api/internal/utils/annotations.go`);
//! here it lives in plain fields, so it can never leak into output or hashes.

use crate::openapi;
use crate::yaml::{Mapping, Value};
use std::fmt;

/// Group, version and kind. Empty fields in a *selector* match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Gvk {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
}

impl Gvk {
    /// Splits an `apiVersion` (`group/version` or `version`) and pairs it with a kind.
    pub fn from_api_version(api_version: &str, kind: &str) -> Gvk {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Gvk {
            group,
            version,
            kind: kind.to_string(),
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// kustomize `Gvk.IsSelected`: every non-empty selector field must match.
    pub fn is_selected_by(&self, sel: &Gvk) -> bool {
        (sel.group.is_empty() || sel.group == self.group)
            && (sel.version.is_empty() || sel.version == self.version)
            && (sel.kind.is_empty() || sel.kind == self.kind)
    }

    /// kustomize `Gvk.String`: `group_version_kind` with `~G`/`~V`/`~K` for empty parts.
    pub fn sort_string(&self) -> String {
        let g = if self.group.is_empty() {
            "~G"
        } else {
            &self.group
        };
        let v = if self.version.is_empty() {
            "~V"
        } else {
            &self.version
        };
        let k = if self.kind.is_empty() {
            "~K"
        } else {
            &self.kind
        };
        format!("{g}_{v}_{k}")
    }

    /// Whether the embedded OpenAPI schema says this kind is cluster-scoped
    /// (`openapi.IsCertainlyClusterScoped`); unknown kinds count as namespaced.
    pub fn is_cluster_scoped(&self) -> bool {
        openapi::is_cluster_scoped(&self.api_version(), &self.kind)
    }
}

/// A resource identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResId {
    /// Type.
    pub gvk: Gvk,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` as written (may be empty).
    pub namespace: String,
}

impl ResId {
    /// The namespace that the id effectively lives in: `default` for an empty namespace,
    /// a marker for cluster-scoped kinds (kustomize `ResId.EffectiveNamespace`).
    pub fn effective_namespace(&self) -> &str {
        if self.gvk.is_cluster_scoped() {
            "_non_namespaceable_"
        } else if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    /// kustomize `ResId.IsNsEquals`.
    pub fn ns_equals(&self, o: &ResId) -> bool {
        self.effective_namespace() == o.effective_namespace()
    }

    /// kustomize `ResId.Equals`: same GVK, name and effective namespace.
    pub fn equals(&self, o: &ResId) -> bool {
        self.gvk == o.gvk && self.name == o.name && self.ns_equals(o)
    }

    /// kustomize `ResId.LegacySortString`.
    pub fn legacy_sort_string(&self) -> String {
        let ns = if self.namespace.is_empty() {
            "~X"
        } else {
            &self.namespace
        };
        let nm = if self.name.is_empty() {
            "~N"
        } else {
            &self.name
        };
        format!("{}|{}|{}", self.gvk.sort_string(), ns, nm)
    }
}

/// `s`, or the placeholder `d` when `s` is empty.
fn or<'a>(s: &'a str, d: &'a str) -> &'a str {
    if s.is_empty() {
        d
    } else {
        s
    }
}

/// `Kind.version.group` with kustomize's placeholders for empty parts (`resid.Gvk.String`).
impl fmt::Display for Gvk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            or(&self.kind, "[noKind]"),
            or(&self.version, "[noVer]"),
            or(&self.group, "[noGrp]")
        )
    }
}

/// `Kind.version.group/name.namespace` as kustomize prints ids in messages
/// (`resid.ResId.String`: `[noGrp]`, `[noVer]`, `[noName]`, `[noNs]` for empty parts).
impl fmt::Display for ResId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.{}",
            self.gvk,
            or(&self.name, "[noName]"),
            or(&self.namespace, "[noNs]")
        )
    }
}

/// Generator behaviour for a generated resource (`types.GenerationBehavior`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    /// Must not exist yet.
    #[default]
    Create,
    /// Replace an existing resource's data.
    Replace,
    /// Merge into an existing resource's data.
    Merge,
}

/// One resource and kustomize's bookkeeping about it.
#[derive(Clone, Debug)]
pub struct Resource {
    /// The object (a mapping).
    pub obj: Value,
    /// Ids the resource had before renames, oldest first (kind, name, namespace).
    pub prev: Vec<(String, String, String)>,
    /// Name prefixes applied, innermost first.
    pub prefixes: Vec<String>,
    /// Name suffixes applied, innermost first.
    pub suffixes: Vec<String>,
    /// Generator behaviour (generated resources only).
    pub behavior: Behavior,
    /// Whether a content-hash suffix is still to be appended to the name.
    pub needs_hash: bool,
    /// Resources that refer to this one by name (kustomize `refBy`), used by vars.
    pub ref_by: Vec<ResId>,
    /// Vars this resource's fields reference.
    pub ref_var_names: Vec<String>,
    /// Where the resource came from, relative to the top-level kustomization.
    pub origin: Option<Origin>,
    /// The transformers that were applied to it (`buildMetadata: [transformerAnnotations]`).
    pub transformations: Vec<Origin>,
}

/// Provenance of a resource or transformer (`api/resource/origin.go`): the file it was read
/// from, or the kustomization/config file and builtin plugin that generated it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// File the resource was read from, relative to the top-level kustomization.
    pub path: Option<String>,
    /// File that configured the generator or transformer.
    pub configured_in: Option<String>,
    /// The plugin: (apiVersion, kind, name).
    pub configured_by: Option<(String, String, String)>,
}

fn yaml_scalar(s: &str) -> String {
    if crate::yaml::emit::v2_needs_quotes(s)
        || s.contains(": ")
        || s.starts_with([
            '-', '[', '{', '*', '&', '!', '|', '>', '\'', '"', '%', '@', '#',
        ])
    {
        format!("{s:?}")
    } else {
        s.to_string()
    }
}

impl Origin {
    /// The origin as kustomize writes it into annotations (field order of `resource.Origin`),
    /// each line prefixed with `indent`.
    pub fn to_yaml(&self, first: &str, indent: &str) -> String {
        let mut lines: Vec<String> = Vec::new();
        if let Some(p) = &self.path {
            lines.push(format!("path: {}", yaml_scalar(p)));
        }
        if let Some(c) = &self.configured_in {
            lines.push(format!("configuredIn: {}", yaml_scalar(c)));
        }
        if let Some((av, kind, name)) = &self.configured_by {
            lines.push("configuredBy:".into());
            lines.push(format!("  apiVersion: {}", yaml_scalar(av)));
            lines.push(format!("  kind: {}", yaml_scalar(kind)));
            if !name.is_empty() {
                lines.push(format!("  name: {}", yaml_scalar(name)));
            }
        }
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            out.push_str(if i == 0 { first } else { indent });
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

impl Resource {
    /// Wraps an object.
    pub fn new(obj: Value) -> Resource {
        Resource {
            obj,
            prev: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            behavior: Behavior::Create,
            needs_hash: false,
            ref_by: Vec::new(),
            ref_var_names: Vec::new(),
            origin: None,
            transformations: Vec::new(),
        }
    }

    fn meta_str(&self, key: &str) -> &str {
        self.obj.str_at(&["metadata", key]).unwrap_or("")
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.obj.str_at(&["apiVersion"]).unwrap_or("")
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        self.obj.str_at(&["kind"]).unwrap_or("")
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.meta_str("name")
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        self.meta_str("namespace")
    }

    /// The resource's type.
    pub fn gvk(&self) -> Gvk {
        Gvk::from_api_version(self.api_version(), self.kind())
    }

    /// Current identity.
    pub fn cur_id(&self) -> ResId {
        ResId {
            gvk: self.gvk(),
            name: self.name().to_string(),
            namespace: self.namespace().to_string(),
        }
    }

    /// All identities the resource has had, oldest first, ending with the current one.
    pub fn prev_ids(&self) -> Vec<ResId> {
        let mut ids = self.previous_ids();
        ids.push(self.cur_id());
        ids
    }

    /// The identities the resource had before its current one, oldest first; empty when it
    /// was never renamed, re-kinded or moved (kustomize `Resource.PrevIds`,
    /// `api/resource/resource.go`: "does not include the resource's current ID").
    pub fn previous_ids(&self) -> Vec<ResId> {
        let gvk = self.gvk();
        self.prev
            .iter()
            .map(|(k, n, ns)| ResId {
                gvk: Gvk {
                    kind: k.clone(),
                    ..gvk.clone()
                },
                name: n.clone(),
                namespace: ns.clone(),
            })
            .collect()
    }

    /// The original identity (kustomize `OrgId`).
    pub fn org_id(&self) -> ResId {
        match self.prev.first() {
            Some((k, n, ns)) => ResId {
                gvk: Gvk {
                    kind: k.clone(),
                    ..self.gvk()
                },
                name: n.clone(),
                namespace: ns.clone(),
            },
            None => self.cur_id(),
        }
    }

    /// Records the current id as a previous one (kustomize `StorePreviousId`, which stores the
    /// effective namespace).
    pub fn store_previous_id(&mut self) {
        let id = self.cur_id();
        let ns = id.effective_namespace().to_string();
        self.prev.push((id.gvk.kind, id.name, ns));
    }

    /// Sets `metadata.name`.
    pub fn set_name(&mut self, name: &str) {
        if let Some(m) = self.obj.ensure_map_path(&["metadata"]) {
            m.insert("name".into(), Value::String(name.to_string()));
        }
    }

    /// Sets `metadata.namespace` (removing it when empty).
    pub fn set_namespace(&mut self, ns: &str) {
        if let Some(m) = self.obj.ensure_map_path(&["metadata"]) {
            if ns.is_empty() {
                m.shift_remove("namespace");
            } else {
                m.insert("namespace".into(), Value::String(ns.to_string()));
            }
        }
    }

    /// A string map under `metadata` (labels or annotations), values as strings.
    pub fn string_map(&self, field: &str) -> Vec<(String, String)> {
        match self.obj.get_path(&["metadata", field]) {
            Some(Value::Map(m)) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.scalar_string().unwrap_or_default()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Replaces a string map under `metadata` as kyaml's `setMapInMetadata` does: the field is
    /// cleared, and written back with string values only when non-empty.
    pub fn set_string_map(&mut self, field: &str, entries: Vec<(String, String)>) {
        if let Some(m) = self.obj.ensure_map_path(&["metadata"]) {
            m.shift_remove(field);
            if !entries.is_empty() {
                let mut mm = Mapping::default();
                for (k, v) in entries {
                    mm.insert(k, Value::String(v));
                }
                m.insert(field.into(), Value::Map(mm));
            }
        }
    }

    /// `metadata.annotations[key]`.
    pub fn annotation(&self, key: &str) -> Option<String> {
        self.obj
            .get_path(&["metadata", "annotations", key])
            .and_then(Value::scalar_string)
    }

    /// Whether prefixes and suffixes applied to both resources agree (kustomize
    /// `PrefixesSuffixesEquals` via `utils.SameEndingSubSlice`).
    pub fn prefixes_suffixes_equal(&self, o: &Resource) -> bool {
        same_ending(&self.prefixes, &o.prefixes) && same_ending(&self.suffixes, &o.suffixes)
    }
}

fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let diff = long.len() - short.len();
    if short.is_empty() {
        return diff == 0;
    }
    short.iter().enumerate().all(|(i, s)| &long[i + diff] == s)
}
