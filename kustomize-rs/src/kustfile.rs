//! The kustomization file: finding it, reading it, and the fix-ups kustomize applies to
//! deprecated fields (`api/types/kustomization.go` `FixKustomization`, `api/konfig`).

use crate::fs::Loader;
use crate::yaml::parse::parse_documents_lenient;
use crate::yaml::{Mapping, Value};
use crate::Error;

/// File names recognised as a kustomization, in kustomize's order.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// One entry of `patches`, `patchesJson6902` or `patchesStrategicMerge`.
#[derive(Clone, Debug, Default)]
pub struct PatchArgs {
    /// File holding the patch.
    pub path: Option<String>,
    /// Inline patch text.
    pub patch: Option<String>,
    /// Target selector (a mapping as written).
    pub target: Option<Value>,
    /// `options` (`allowNameChange`, `allowKindChange`).
    pub options: Vec<(String, bool)>,
}

/// One `labels` entry.
#[derive(Clone, Debug, Default)]
pub struct LabelArgs {
    /// Labels to add.
    pub pairs: Vec<(String, String)>,
    /// Also add to selectors.
    pub include_selectors: bool,
    /// Also add to pod templates.
    pub include_templates: bool,
    /// Extra field specs.
    pub fields: Option<Value>,
}

/// A parsed kustomization.
#[derive(Clone, Debug, Default)]
pub struct Kustomization {
    /// The file name it was read from.
    pub file_name: String,
    /// `Kustomization` or `Component`.
    pub kind: String,
    /// `resources` plus deprecated `bases`.
    pub resources: Vec<String>,
    /// `components`.
    pub components: Vec<String>,
    /// `namespace`.
    pub namespace: String,
    /// `namePrefix`.
    pub name_prefix: String,
    /// `nameSuffix`.
    pub name_suffix: String,
    /// `commonLabels`.
    pub common_labels: Vec<(String, String)>,
    /// `labels`.
    pub labels: Vec<LabelArgs>,
    /// `commonAnnotations`.
    pub common_annotations: Vec<(String, String)>,
    /// `patchesStrategicMerge` (paths or inline patches).
    pub patches_strategic_merge: Vec<String>,
    /// `patchesJson6902`.
    pub patches_json6902: Vec<PatchArgs>,
    /// `patches`.
    pub patches: Vec<PatchArgs>,
    /// `images` (plus deprecated `imageTags`).
    pub images: Vec<Value>,
    /// `replicas`.
    pub replicas: Vec<Value>,
    /// `configMapGenerator`.
    pub config_map_generator: Vec<Value>,
    /// `secretGenerator`.
    pub secret_generator: Vec<Value>,
    /// `generatorOptions`.
    pub generator_options: Option<Value>,
    /// `vars`.
    pub vars: Vec<Value>,
    /// `replacements` (inline or `path:`).
    pub replacements: Vec<Value>,
    /// `configurations` files.
    pub configurations: Vec<String>,
    /// `crds` files.
    pub crds: Vec<String>,
    /// `generators`.
    pub generators: Vec<String>,
    /// `transformers`.
    pub transformers: Vec<String>,
    /// `validators`.
    pub validators: Vec<String>,
    /// `openapi`.
    pub openapi: Option<Value>,
    /// `sortOptions`.
    pub sort_options: Option<Value>,
    /// `buildMetadata`.
    pub build_metadata: Vec<String>,
    /// `helmCharts`.
    pub helm_charts: Vec<Value>,
    /// `helmGlobals`.
    pub helm_globals: Option<Value>,
}

const KNOWN: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "components",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "patchesStrategicMerge",
    "patchesJson6902",
    "patches",
    "images",
    "imageTags",
    "replicas",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "vars",
    "replacements",
    "configurations",
    "crds",
    "generators",
    "transformers",
    "validators",
    "openapi",
    "sortOptions",
    "buildMetadata",
    "helmCharts",
    "helmGlobals",
    "helmChartInflationGenerator",
];

/// Finds and reads the kustomization file of a directory.
///
/// # Errors
/// When there is none, more than one, or it is malformed.
pub fn load(ldr: &Loader) -> Result<Kustomization, Error> {
    let mut found = Vec::new();
    for n in FILE_NAMES {
        if ldr.is_file(n) {
            found.push(n);
        }
    }
    let name = match found.as_slice() {
        [] => {
            return Err(Error::load(ldr.root(), format!(
                "unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory '{}'",
                ldr.root().display()
            )))
        }
        [one] => *one,
        _ => return Err(Error::load(ldr.root(), format!("Found multiple kustomization files under: {}", ldr.root().display()))),
    };
    let text = ldr.load_string(name)?;
    let path = ldr.root().join(name);
    let v = parse_documents_lenient(&text)
        .map_err(|e| Error::from(e).context(format!("invalid Kustomization '{}'", path.display())))?
        .into_iter()
        .next()
        .unwrap_or(Value::Null);
    parse(&v, name).map_err(|e| e.context(format!("invalid Kustomization '{}'", path.display())))
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Seq(items)) => items
            .iter()
            .map(|i| {
                i.scalar_string().ok_or_else(|| {
                    Error::kustomization(
                        field,
                        format!(
                            "field '{field}': expected a list of strings, found a {}",
                            i.kind_name()
                        ),
                    )
                })
            })
            .collect(),
        Some(other) => Err(Error::kustomization(
            field,
            format!(
                "field '{field}': expected a list, found a {}",
                other.kind_name()
            ),
        )),
    }
}

fn string_map(v: Option<&Value>, field: &str) -> Result<Vec<(String, String)>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Map(m)) => Ok(m
            .iter()
            .map(|(k, v)| (k.clone(), v.scalar_string().unwrap_or_default()))
            .collect()),
        Some(other) => Err(Error::kustomization(
            field,
            format!(
                "field '{field}': expected a map of strings, found a {}",
                other.kind_name()
            ),
        )),
    }
}

fn values(v: Option<&Value>, field: &str) -> Result<Vec<Value>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Seq(items)) => Ok(items.clone()),
        Some(other) => Err(Error::kustomization(
            field,
            format!(
                "field '{field}': expected a list, found a {}",
                other.kind_name()
            ),
        )),
    }
}

fn string_field(v: Option<&Value>, field: &str) -> Result<String, Error> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(x) => x.scalar_string().ok_or_else(|| {
            Error::kustomization(
                field,
                format!(
                    "field '{field}': expected a string, found a {}",
                    x.kind_name()
                ),
            )
        }),
    }
}

fn patch_args(v: &Value, field: &str) -> Result<PatchArgs, Error> {
    let Value::Map(m) = v else {
        return Err(Error::kustomization(
            field,
            format!("field '{field}': each entry must be a mapping"),
        ));
    };
    let options = match m.get("options") {
        Some(Value::Map(o)) => o
            .iter()
            .map(|(k, v)| (k.clone(), matches!(v, Value::Bool(true))))
            .collect(),
        _ => Vec::new(),
    };
    Ok(PatchArgs {
        path: m
            .get("path")
            .and_then(Value::scalar_string)
            .filter(|s| !s.is_empty()),
        patch: m
            .get("patch")
            .and_then(Value::scalar_string)
            .filter(|s| !s.is_empty()),
        target: m.get("target").filter(|t| !t.is_null()).cloned(),
        options,
    })
}

/// Interprets a parsed kustomization document.
///
/// # Errors
/// On unknown fields or fields of the wrong type.
pub fn parse(v: &Value, file_name: &str) -> Result<Kustomization, Error> {
    let m = match v {
        Value::Map(m) => m,
        Value::Null => return Err(Error::kustomization("", "kustomization is empty")),
        other => {
            return Err(Error::kustomization(
                "",
                format!("expected a mapping, found a {}", other.kind_name()),
            ))
        }
    };
    // Go's encoding/json matches field names case-insensitively (`nameprefix` is `namePrefix`).
    let mut canon = Mapping::default();
    for (k, v) in m {
        let Some(known) = KNOWN.iter().find(|n| n.eq_ignore_ascii_case(k)) else {
            return Err(Error::kustomization(
                k.as_str(),
                format!("json: unknown field \"{k}\""),
            ));
        };
        canon.insert((*known).to_string(), v.clone());
    }
    let m = &canon;
    let g = |k: &str| m.get(k);
    let mut k = Kustomization {
        file_name: file_name.to_string(),
        ..Default::default()
    };
    k.kind = string_field(g("kind"), "kind")?;
    if k.kind.is_empty() {
        k.kind = "Kustomization".into();
    }
    // `Kustomization.EnforceFields` (`api/types/kustomization.go`).
    let mut problems = Vec::new();
    if k.kind != "Kustomization" && k.kind != "Component" {
        problems.push("kind should be Kustomization or Component".to_string());
    }
    let required = if k.kind == "Component" {
        "kustomize.config.k8s.io/v1alpha1"
    } else {
        "kustomize.config.k8s.io/v1beta1"
    };
    let api_version = string_field(g("apiVersion"), "apiVersion")?;
    if !api_version.is_empty() && api_version != required {
        problems.push(format!("apiVersion for {} should be {required}", k.kind));
    }
    if !problems.is_empty() {
        return Err(Error::kustomization(
            "",
            format!(
                "Failed to read kustomization file {file_name}:\n{}",
                problems.join("\n")
            ),
        ));
    }
    k.resources = strings(g("resources"), "resources")?;
    k.resources.extend(strings(g("bases"), "bases")?);
    k.components = strings(g("components"), "components")?;
    k.namespace = string_field(g("namespace"), "namespace")?;
    k.name_prefix = string_field(g("namePrefix"), "namePrefix")?;
    k.name_suffix = string_field(g("nameSuffix"), "nameSuffix")?;
    k.common_labels = string_map(g("commonLabels"), "commonLabels")?;
    k.common_annotations = string_map(g("commonAnnotations"), "commonAnnotations")?;
    for l in values(g("labels"), "labels")? {
        k.labels.push(LabelArgs {
            pairs: string_map(l.get("pairs"), "labels.pairs")?,
            include_selectors: matches!(l.get("includeSelectors"), Some(Value::Bool(true))),
            include_templates: matches!(l.get("includeTemplates"), Some(Value::Bool(true))),
            fields: l.get("fields").cloned(),
        });
    }
    // patchesStrategicMerge entries are strings: a path, or an inline patch.
    k.patches_strategic_merge = strings(g("patchesStrategicMerge"), "patchesStrategicMerge")?;
    for p in values(g("patchesJson6902"), "patchesJson6902")? {
        k.patches_json6902.push(patch_args(&p, "patchesJson6902")?);
    }
    for p in values(g("patches"), "patches")? {
        k.patches.push(patch_args(&p, "patches")?);
    }
    k.images = values(g("images"), "images")?;
    k.images.extend(values(g("imageTags"), "imageTags")?);
    k.replicas = values(g("replicas"), "replicas")?;
    k.config_map_generator = values(g("configMapGenerator"), "configMapGenerator")?;
    k.secret_generator = values(g("secretGenerator"), "secretGenerator")?;
    k.generator_options = g("generatorOptions").filter(|v| !v.is_null()).cloned();
    k.vars = values(g("vars"), "vars")?;
    k.replacements = values(g("replacements"), "replacements")?;
    k.configurations = strings(g("configurations"), "configurations")?;
    k.crds = strings(g("crds"), "crds")?;
    k.generators = strings(g("generators"), "generators")?;
    k.transformers = strings(g("transformers"), "transformers")?;
    k.validators = strings(g("validators"), "validators")?;
    k.openapi = g("openapi").filter(|v| !v.is_null()).cloned();
    k.sort_options = g("sortOptions").filter(|v| !v.is_null()).cloned();
    k.build_metadata = strings(g("buildMetadata"), "buildMetadata")?;
    k.helm_charts = values(g("helmCharts"), "helmCharts")?;
    k.helm_globals = g("helmGlobals").filter(|v| !v.is_null()).cloned();
    Ok(k)
}
