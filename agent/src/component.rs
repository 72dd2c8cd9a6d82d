//! The component catalog: one data file per Genestack component (`components/<name>.yaml`),
//! describing how its install script renders it — chart and version key, values layering,
//! post-render overlay, value bindings from cluster objects — and where it sits in the rollout
//! (wave, `dependsOn`).
//!
//! The catalog shipped in `components/` is compiled into the binary (`build.rs`); a directory
//! given with `--catalog` (or a repo's own `components/`) replaces entries by name.

use kustomize_rs::yaml::{parse_one, Value};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// How a component is rendered.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// A Helm release, post-rendered through a kustomize overlay.
    #[default]
    Helm,
    /// A plain kustomize directory.
    Kustomize,
}

/// The Helm release identity.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Release {
    /// Release name (`.Release.Name`).
    pub name: String,
    /// Namespace (`.Release.Namespace`).
    pub namespace: String,
}

/// Where the chart comes from.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartSource {
    /// Chart name (in the repo, or the directory under `--charts`).
    pub name: String,
    /// HTTP Helm repository URL.
    #[serde(default)]
    pub repo: Option<String>,
    /// OCI repository (`oci://registry/path`); the chart is pulled as
    /// `registry/path/<name>:<version, + written _>` (see [`crate::render::oci`]).
    #[serde(default)]
    pub oci: Option<String>,
    /// A chart in a Git repository (like Flux's `GitRepository` + `HelmChart` spec.chart path).
    #[serde(default)]
    pub git: Option<GitChart>,
    /// Key in `helm-chart-versions.yaml` (default: `name`).
    #[serde(default)]
    pub version_key: Option<String>,
}

/// A chart kept in a Git repository.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitChart {
    /// Repository URL (`https://`, `file://`, `git://`, ssh).
    pub url: String,
    /// The chart's directory in the repository.
    pub path: String,
    /// Tag, branch or commit; `{version}` is replaced by the pinned chart version
    /// (default `{version}`).
    #[serde(default = "version_ref")]
    pub r#ref: String,
}

fn version_ref() -> String {
    "{version}".into()
}

/// Values layering (`base-helm-configs/<dir>` → `global_overrides` → `helm-configs/<dir>`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValuesSpec {
    /// The directory name under `base-helm-configs/` and `helm-configs/`.
    pub dir: String,
    /// Whether `helm-configs/global_overrides/*.yaml` is layered in.
    #[serde(default = "yes")]
    pub global_overrides: bool,
}

fn yes() -> bool {
    true
}

/// The kustomize post-render step.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct PostRender {
    /// Overlay directory under `base-kustomize/` (e.g. `keystone/overlay`).
    pub overlay: String,
}

/// How a bound value reaches Helm (`--set`, `--set-string`, `--set-file`).
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BindingType {
    /// `--set` (typed by Helm's strvals: true/false/null/integers).
    #[default]
    Set,
    /// `--set-string`.
    SetString,
    /// `--set-file` (the bytes verbatim).
    SetFile,
}

/// A reference to a cluster object.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ObjectRef {
    /// Kind.
    pub kind: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// One value bound from the cluster at render time.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Binding {
    /// Dotted values path.
    pub path: String,
    /// Secret name (in the release namespace unless `namespace` is set).
    #[serde(default)]
    pub secret: Option<String>,
    /// Key of the Secret's data.
    #[serde(default)]
    pub key: Option<String>,
    /// Namespace of the Secret.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Another object whose fields the template reads (`{field:spec.clusterIP}`).
    #[serde(default)]
    pub object: Option<ObjectRef>,
    /// String template: `{value}` (the Secret value), `{field:a.b.0.c}` (a field of
    /// `object`), `{var:name}` (a component variable).
    #[serde(default)]
    pub template: Option<String>,
    /// How the value is passed.
    #[serde(default, rename = "type")]
    pub kind: BindingType,
}

/// A variable computed from another component's values (e.g. kube-ovn's SSL switch).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VarSpec {
    /// Component whose composed values files are read.
    pub values_of: String,
    /// Dotted path in those values.
    pub path: String,
    /// The value compared against.
    pub equals: serde_json::Value,
    /// Result when equal.
    pub then: String,
    /// Result otherwise.
    #[serde(rename = "else")]
    pub otherwise: String,
}

/// One catalog entry.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Component name.
    pub name: String,
    /// How it renders.
    #[serde(default)]
    pub kind: ComponentKind,
    /// Rollout wave (lower first).
    #[serde(default)]
    pub wave: i32,
    /// Components that must be healthy first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Helm release.
    pub release: Release,
    /// Chart source.
    pub chart: ChartSource,
    /// Values layering.
    pub values: ValuesSpec,
    /// Post-render overlay.
    #[serde(default)]
    pub post_render: Option<PostRender>,
    /// Values bound from cluster objects.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Variables for binding templates.
    #[serde(default)]
    pub vars: BTreeMap<String, VarSpec>,
}

/// A catalog loading error, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("component catalog {file}: {cause}")]
pub struct CatalogError {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub cause: String,
}

/// Converts the engine's YAML tree to JSON (for typed deserialisation).
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Uint(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// Parses one component file.
///
/// # Errors
/// Malformed YAML or fields.
pub fn parse(text: &str, file: &str) -> Result<Component, CatalogError> {
    let err = |cause: String| CatalogError {
        file: file.to_string(),
        cause,
    };
    let v = parse_one(text).map_err(|e| err(e.to_string()))?;
    serde_json::from_value(to_json(&v)).map_err(|e| err(e.to_string()))
}

/// The catalog compiled into the binary (`components/*.yaml`).
pub const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// The component catalog, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Components by name.
    pub components: BTreeMap<String, Component>,
}

impl Catalog {
    /// The built-in catalog.
    ///
    /// # Errors
    /// Only if a shipped file is malformed.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        let mut c = Catalog::default();
        for (file, text) in BUILTIN {
            let comp = parse(text, file)?;
            c.components.insert(comp.name.clone(), comp);
        }
        Ok(c)
    }

    /// Layers the `*.yaml` files of a directory over this catalog (same name replaces).
    ///
    /// # Errors
    /// Unreadable or malformed files.
    pub fn overlay_dir(&mut self, dir: &Path) -> Result<(), CatalogError> {
        let rd = std::fs::read_dir(dir).map_err(|e| CatalogError {
            file: dir.display().to_string(),
            cause: e.to_string(),
        })?;
        let mut files: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| CatalogError {
                file: f.display().to_string(),
                cause: e.to_string(),
            })?;
            let comp = parse(&text, &f.display().to_string())?;
            self.components.insert(comp.name.clone(), comp);
        }
        Ok(())
    }

    /// A component by name.
    pub fn get(&self, name: &str) -> Option<&Component> {
        self.components.get(name)
    }
}
