//! The render stage: a component of the desired state → the exact objects its Genestack
//! install script would produce (Helm release + values layering + bindings + post-render).
//!
//! Steps follow `../shared/corpus/README.md` "Composition rules": pick the chart (a
//! `chart.service_name` in the first operator values file may switch it), compose values
//! ([`values`]), render with Helm's Go SDK ([`helm`]), assemble like `helm template`
//! ([`assemble`]), post-render the non-hook documents through the kustomize overlay
//! ([`postrender`]): the result is a [`Rendered`] of objects — the kustomize output, then the
//! hooks (Helm 3 does not post-render hooks). Its text ([`Rendered::text`]) is only a view,
//! for `stackwave render` and the goldens. Every input is read through one
//! [`reads::Reader`], which records what the render read (the render cache's key).

pub mod apps;
pub mod assemble;
pub mod cache;
pub mod charts;
pub mod helm;
pub mod inflate;
pub mod objects;
pub mod oci;
pub mod postrender;
pub mod reads;
pub mod setup;
pub mod values;

use crate::component::{Catalog, Component};
use assemble::{go_trim_space, sort_by_kind, source_stream, Manifest};
use helm::{Helm, HelmError, RenderOptions};
use objects::Objects;
use reads::{Reader, Reads};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use values::{Sources, ValuesError};

/// A render failure, naming the component and the stage.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The component is not in the catalog.
    #[error("unknown component '{0}'")]
    UnknownComponent(String),
    /// No version pinned for the chart.
    #[error("component {component}: no version for chart key '{key}' in {file}")]
    UnknownVersion {
        /// Component.
        component: String,
        /// Key looked up.
        key: String,
        /// The versions file.
        file: String,
    },
    /// Values composition failed.
    #[error("component {component}: {source}")]
    Values {
        /// Component.
        component: String,
        /// Cause.
        source: ValuesError,
    },
    /// Helm failed.
    #[error("component {component}: {source}")]
    Helm {
        /// Component.
        component: String,
        /// Cause.
        source: HelmError,
    },
    /// The chart could not be had.
    #[error("component {component}: {source}")]
    Chart {
        /// Component.
        component: String,
        /// Cause.
        source: charts::ChartError,
    },
    /// A rendered document is not YAML.
    #[error("component {component}: {source}")]
    Assemble {
        /// Component.
        component: String,
        /// Cause.
        source: assemble::AssembleError,
    },
    /// kustomize failed.
    #[error("component {component}: post-render through {overlay}: {source}")]
    PostRender {
        /// Component.
        component: String,
        /// Overlay.
        overlay: String,
        /// Cause.
        source: kustomize_rs::Error,
    },
    /// A rendered object could not be printed as YAML (the text view).
    #[error("component {component}: printing {what}: {source}")]
    Print {
        /// Component.
        component: String,
        /// Which object.
        what: String,
        /// Cause.
        source: kustomize_rs::yaml::EmitError,
    },
    /// A Helm document of the rendered output is not YAML.
    #[error("component {component}: {path}: {source}")]
    Parse {
        /// Component.
        component: String,
        /// Template path.
        path: String,
        /// Cause.
        source: kustomize_rs::yaml::YamlError,
    },
    /// Another input problem.
    #[error("component {component}: {cause}")]
    Input {
        /// Component.
        component: String,
        /// Cause.
        cause: String,
    },
}

/// Everything a render reads.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Genestack base checkout and operator overrides.
    pub sources: Sources,
    /// Where charts come from.
    pub charts: charts::ChartStore,
    /// Secrets and other looked-up objects.
    pub objects: Objects,
    /// The component catalog.
    pub catalog: Catalog,
}

impl Inputs {
    /// Finds a component's chart: a `chart.genestackPath` directory of the Genestack base
    /// ([`charts::genestack_chart`]), else the chart store ([`charts::ChartStore::locate`]).
    ///
    /// # Errors
    /// As those two.
    pub fn locate_chart(
        &self,
        source: &crate::component::ChartSource,
        name: &str,
        version: &str,
    ) -> Result<charts::Located, charts::ChartError> {
        match &source.genestack_path {
            Some(rel) => charts::genestack_chart(&self.sources.genestack, rel, name),
            None => self.charts.locate(source, name, version),
        }
    }
}

/// The non-hook part of a render.
#[derive(Debug, Clone)]
pub enum Manifests {
    /// Post-rendered: the kustomize build's objects, in its output order.
    Kustomized(Vec<kustomize_rs::yaml::Value>),
    /// No post-render: Helm's documents in install order.
    Helm(Vec<Manifest>),
}

/// A rendered component (the `RenderedRevision` of one component): its objects, with the
/// text view the goldens hold.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The component.
    pub component: String,
    /// The non-hook objects.
    pub manifests: Manifests,
    /// Hook documents in Helm's order.
    pub hooks: Vec<Manifest>,
    /// Chart used and its pinned version.
    pub chart: String,
    /// Pinned version.
    pub version: String,
    /// Values files read, in order.
    pub values_files: Vec<PathBuf>,
    /// The user-supplied values given to Helm (the values files merged, then the `--set`
    /// bindings: [`values::compose`]) — what `helm upgrade --install` records as the
    /// release's `config` (Helm `pkg/action/upgrade.go` stores `vals` as `Release.Config`).
    /// `Json::Null` for components that are not Helm charts. Holds Secret values: never
    /// printed, logged or stored.
    pub values: Json,
    /// The chart's `crds/` documents (and its subcharts'), which `helm install` creates before
    /// the templates and never post-renders (Helm `pkg/action/install.go`, `installCRDs` over
    /// `chart.CRDObjects()`); empty with `helm.skipCrds`. Not part of `text`, as `helm
    /// template` prints them only with `--include-crds`. Subchart conditions are not
    /// evaluated: every `charts/*/crds/` present is included.
    pub crds: String,
}

/// The `crds/*` files of a chart directory and of its unpacked subcharts (`charts/*/`),
/// recursively, in path order, as one multi-document stream.
pub fn chart_crds(chart: &Path) -> String {
    fn walk(dir: &Path, out: &mut String) {
        let list = |d: &Path| {
            let mut v: Vec<PathBuf> = std::fs::read_dir(d)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            v.sort();
            v
        };
        // Every file under crds/, subdirectories included (Helm's `Chart.CRDs`: files whose
        // path starts with `crds/`, YAML or JSON by extension).
        fn files(d: &Path, out: &mut String, list: &dyn Fn(&Path) -> Vec<PathBuf>) {
            for f in list(d) {
                if f.is_dir() {
                    files(&f, out, list);
                    continue;
                }
                let yaml = f
                    .extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json");
                if let (true, Ok(t)) = (yaml, std::fs::read_to_string(&f)) {
                    out.push_str("---\n");
                    out.push_str(&t);
                    if !t.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
        }
        files(&dir.join("crds"), out, &list);
        for sub in list(&dir.join("charts")) {
            if sub.is_dir() {
                walk(&sub, out);
            }
        }
    }
    let mut out = String::new();
    walk(chart, &mut out);
    out
}

impl Rendered {
    /// The objects to apply, as JSON: the manifests, then the hooks (empty documents
    /// skipped), in the order of [`Rendered::text`].
    ///
    /// # Errors
    /// [`RenderError::Parse`]: a Helm document that is not YAML.
    pub fn objects(&self) -> Result<Vec<Json>, RenderError> {
        let parse = |m: &Manifest| {
            kustomize_rs::yaml::parse_documents(&m.content).map_err(|source| RenderError::Parse {
                component: self.component.clone(),
                path: m.path.clone(),
                source,
            })
        };
        let keep = |d: &&kustomize_rs::yaml::Value| d.as_map().is_some_and(|m| !m.is_empty());
        let mut out: Vec<Json> = Vec::new();
        match &self.manifests {
            Manifests::Helm(ms) => {
                for m in ms {
                    out.extend(parse(m)?.iter().filter(keep).map(crate::component::to_json));
                }
            }
            Manifests::Kustomized(objs) => {
                out.extend(objs.iter().filter(keep).map(crate::component::to_json));
            }
        }
        for m in &self.hooks {
            out.extend(parse(m)?.iter().filter(keep).map(crate::component::to_json));
        }
        Ok(out)
    }

    /// The text view: the post-rendered manifests as `kubectl kustomize` prints them (or
    /// Helm's stream when there is no post-render), then the hooks as `helm template` prints
    /// them — exactly what `../shared/tools/genestack-oracle` prints.
    ///
    /// # Errors
    /// [`RenderError::Print`]: an object the YAML printer refuses.
    pub fn text(&self) -> Result<String, RenderError> {
        let body = match &self.manifests {
            Manifests::Helm(ms) => source_stream(ms),
            Manifests::Kustomized(objs) => print_objects(&self.component, objs)?,
        };
        let mut text = String::from(go_trim_space(&body));
        text.push('\n');
        text.push_str(&source_stream(&self.hooks));
        Ok(text)
    }
}

/// The pinned chart version (`helm-chart-versions.yaml`, `charts.<key>`), read through the
/// render's reader.
pub fn pinned_version(reads: &Reader, genestack: &Path, key: &str) -> Option<String> {
    let text = reads
        .read_to_string(&genestack.join("helm-chart-versions.yaml"))
        .ok()?;
    let docs = kustomize_rs::yaml::parse_documents(&text).ok()?;
    docs.iter().find_map(|d| {
        d.get_path(&["charts", key])
            .and_then(kustomize_rs::yaml::Value::scalar_string)
    })
}

fn json_at<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(v, |cur, seg| cur.get(seg))
}

/// Computes a component variable (e.g. the OVN scheme from kube-ovn's values).
fn var_value(
    helm: &Helm,
    inputs: &Inputs,
    reads: &Reader,
    component: &Component,
    name: &str,
) -> Result<Option<String>, RenderError> {
    let Some(spec) = component.vars.get(name) else {
        return Ok(None);
    };
    let other = reads
        .definition(inputs, &spec.values_of)
        .ok_or_else(|| RenderError::UnknownComponent(spec.values_of.clone()))?;
    let files = values::value_files(reads, &inputs.sources, &other.values);
    let vals = values::merge_files(helm, reads, &files).map_err(|source| RenderError::Values {
        component: component.name.clone(),
        source,
    })?;
    let hit = json_at(&Json::Object(vals), &spec.path) == Some(&spec.equals);
    Ok(Some(if hit {
        spec.then.clone()
    } else {
        spec.otherwise.clone()
    }))
}

/// Renders a chart's templates (path → text) with Helm's engine, as an install at revision 1.
///
/// # Errors
/// Chart load or template errors.
pub fn render_templates(
    helm: &Arc<Helm>,
    chart: &Path,
    component: &Component,
    values_json: &str,
) -> Result<Vec<(String, String)>, RenderError> {
    let cname = component.name.clone();
    let helm_err = |source| RenderError::Helm {
        component: cname.clone(),
        source,
    };
    let chart = helm.load_chart(chart).map_err(helm_err)?;
    let opts = RenderOptions {
        name: component.release.name.clone(),
        namespace: component.release.namespace.clone(),
        revision: 1,
        is_install: true,
        is_upgrade: false,
    };
    let rendered = chart.render(values_json, &opts).map_err(helm_err)?;
    let files_map: serde_json::Map<String, Json> =
        serde_json::from_str(&rendered).map_err(|e| RenderError::Input {
            component: cname.clone(),
            cause: format!("helm render output: {e}"),
        })?;
    Ok(files_map
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or("").to_string()))
        .collect())
}

/// What a render will use, found without calling Helm: the component, its chart and version.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The component.
    pub component: &'a Component,
    /// Chart used (a `chart.service_name` in the first operator values file may switch it).
    pub chart_name: String,
    /// Pinned version.
    pub version: String,
    /// The chart on disk.
    pub located: charts::Located,
}

/// Resolves a component's chart and version.
///
/// # Errors
/// Unknown component or version, unreadable operator values, unavailable chart.
pub fn plan<'a>(inputs: &'a Inputs, reads: &Reader, name: &str) -> Result<Plan<'a>, RenderError> {
    reads.engine(inputs);
    let component = reads
        .definition(inputs, name)
        .ok_or_else(|| RenderError::UnknownComponent(name.to_string()))?;
    let cname = component.name.clone();
    let src = &inputs.sources;
    let mut chart_name = component.chart.name.clone();
    if let Some(o) = src
        .overrides
        .as_ref()
        .filter(|_| component.chart.overridable)
    {
        if let Some(first) =
            values::yaml_files(reads, &o.join("helm-configs").join(&component.values.dir)).first()
        {
            let text = reads
                .read_to_string(first)
                .map_err(|e| RenderError::Input {
                    component: cname.clone(),
                    cause: format!("{}: {e}", first.display()),
                })?;
            let v = kustomize_rs::yaml::parse_documents(&text).map_err(|e| RenderError::Input {
                component: cname.clone(),
                cause: format!("{}: {e}", first.display()),
            })?;
            if let Some(s) = v
                .first()
                .and_then(|d| d.str_at(&["chart", &component.chart.override_key]))
                .filter(|s| !s.is_empty())
            {
                chart_name = s.to_string();
            }
        }
    }
    if component.chart.genestack_path.is_some() {
        // A chart directory of the checkout, installed without `--version`
        // (install-openstack-exporter.sh): its version is its Chart.yaml's.
        let located = reads
            .chart(inputs, component, &chart_name, "")
            .map_err(|source| RenderError::Chart {
                component: cname.clone(),
                source,
            })?;
        let version =
            chart_yaml_version(reads, &located.path).map_err(|cause| RenderError::Input {
                component: cname.clone(),
                cause,
            })?;
        return Ok(Plan {
            component,
            chart_name,
            version,
            located,
        });
    }
    let key = component
        .chart
        .version_key
        .clone()
        .unwrap_or_else(|| component.chart.name.clone());
    // The operator's pins (`/etc/genestack/helm-chart-versions.yaml`) win over the base's.
    let version = src
        .overrides
        .as_deref()
        .and_then(|o| pinned_version(reads, o, &key))
        .or_else(|| pinned_version(reads, &src.genestack, &key))
        .ok_or_else(|| RenderError::UnknownVersion {
            component: cname.clone(),
            key: key.clone(),
            file: src
                .genestack
                .join("helm-chart-versions.yaml")
                .display()
                .to_string(),
        })?;
    let located = reads
        .chart(inputs, component, &chart_name, &version)
        .map_err(|source| RenderError::Chart {
            component: cname,
            source,
        })?;
    Ok(Plan {
        component,
        chart_name,
        version,
        located,
    })
}

/// The `version` of a chart directory's `Chart.yaml`, read through the render's reader.
fn chart_yaml_version(reads: &Reader, chart: &Path) -> Result<String, String> {
    let file = chart.join("Chart.yaml");
    let text = reads
        .read_to_string(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let docs = kustomize_rs::yaml::parse_documents(&text)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    docs.iter()
        .find_map(|d| {
            d.get("version")
                .and_then(kustomize_rs::yaml::Value::scalar_string)
        })
        .ok_or_else(|| format!("{}: no version", file.display()))
}

/// Composes a planned component's values (Helm parses every file and `--set` expression).
///
/// # Errors
/// Values files, bindings and variables that fail.
pub fn compose(
    inputs: &Inputs,
    reads: &Reader,
    plan: &Plan,
) -> Result<(Vec<PathBuf>, String), RenderError> {
    let component = plan.component;
    let cname = component.name.clone();
    let helm = Helm::get().map_err(|source| RenderError::Helm {
        component: cname.clone(),
        source,
    })?;
    let mut var_cache: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for v in component.vars.keys() {
        var_cache.insert(v.clone(), var_value(&helm, inputs, reads, component, v)?);
    }
    let vars = |n: &str| var_cache.get(n).cloned().flatten();
    let (files, vals) = values::compose(
        &helm,
        reads,
        component,
        &inputs.sources,
        &inputs.objects,
        &vars,
    )
    .map_err(|source| RenderError::Values {
        component: cname,
        source,
    })?;
    Ok((
        files,
        serde_json::to_string(&Json::Object(vals)).unwrap_or_default(),
    ))
}

/// Assembles rendered templates and post-renders them into objects.
///
/// # Errors
/// Unparseable documents, kustomize errors.
pub fn finish(
    inputs: &Inputs,
    reads: &Reader,
    plan: &Plan,
    files: Vec<PathBuf>,
    values: Json,
    templates: &[(String, String)],
) -> Result<Rendered, RenderError> {
    let component = plan.component;
    let cname = component.name.clone();
    let src = &inputs.sources;
    let (mut hooks, manifests) =
        assemble::sort_manifests(templates).map_err(|source| RenderError::Assemble {
            component: cname.clone(),
            source,
        })?;
    sort_by_kind(&mut hooks);
    let manifests = match &component.post_render {
        Some(p) => Manifests::Kustomized(
            postrender::post_render(
                reads,
                &source_stream(&manifests),
                &src.genestack,
                src.overrides.as_deref(),
                &p.overlay,
            )
            .map_err(|source| RenderError::PostRender {
                component: cname.clone(),
                overlay: p.overlay.clone(),
                source,
            })?,
        ),
        None => Manifests::Helm(manifests),
    };
    let manifests = match (&component.setup, manifests) {
        (None, m) => m,
        (Some(_), m) => {
            let objs = match m {
                Manifests::Kustomized(objs) => objs,
                Manifests::Helm(ms) => kustomize_rs::yaml::parse_documents(&source_stream(&ms))
                    .map_err(|source| RenderError::Parse {
                        component: cname.clone(),
                        path: "(manifests)".into(),
                        source,
                    })?
                    .into_iter()
                    .filter(|d| d.as_map().is_some_and(|m| !m.is_empty()))
                    .collect(),
            };
            Manifests::Kustomized(setup::apply(reads, &src.genestack, component, objs)?)
        }
    };
    Ok(Rendered {
        component: cname,
        manifests,
        hooks,
        chart: plan.chart_name.clone(),
        version: plan.version.clone(),
        values_files: files,
        values,
        crds: if plan.component.helm.skip_crds {
            String::new()
        } else {
            chart_crds(&plan.located.path)
        },
    })
}

/// Prints objects as one YAML stream, `---` between them (`kubectl kustomize`'s output).
///
/// # Errors
/// [`RenderError::Print`] naming `component` and the object's 1-based position.
pub fn print_objects(
    component: &str,
    objs: &[kustomize_rs::yaml::Value],
) -> Result<String, RenderError> {
    let mut out = String::new();
    for (i, o) in objs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(
            &kustomize_rs::yaml::to_yaml(o).map_err(|source| RenderError::Print {
                component: component.to_string(),
                what: format!("object {}", i + 1),
                source,
            })?,
        );
    }
    Ok(out)
}

/// A component ready for Helm: its plan, values files and values, and the Helm library.
struct Prepared<'a> {
    plan: Plan<'a>,
    files: Vec<PathBuf>,
    values_json: String,
    helm: Arc<Helm>,
}

impl Prepared<'_> {
    fn templates(&self) -> Result<Vec<(String, String)>, RenderError> {
        render_templates(
            &self.helm,
            &self.plan.located.path,
            self.plan.component,
            &self.values_json,
        )
    }
}

/// Plans a component and composes its values, reading through `reads`.
fn prepare<'a>(
    inputs: &'a Inputs,
    reads: &Reader,
    name: &str,
) -> Result<Prepared<'a>, RenderError> {
    let plan = plan(inputs, reads, name)?;
    let (files, values_json) = compose(inputs, reads, &plan)?;
    let helm = Helm::get().map_err(|source| RenderError::Helm {
        component: plan.component.name.clone(),
        source,
    })?;
    Ok(Prepared {
        plan,
        files,
        values_json,
        helm,
    })
}

/// Renders one component and returns what it read ([`Reads`], the render cache's key).
///
/// # Errors
/// [`RenderError`] naming the component, the file or object, and the cause.
pub fn render_recorded(inputs: &Inputs, name: &str) -> Result<(Rendered, Reads), RenderError> {
    let reads = Reader::new();
    if let Some(c) = inputs
        .catalog
        .get(name)
        .filter(|c| c.kind != crate::component::ComponentKind::Helm)
    {
        reads.engine(inputs);
        reads.definition(inputs, name);
        let r = apps::render(inputs, &reads, c)?;
        return Ok((r, reads.reads()));
    }
    let p = prepare(inputs, &reads, name)?;
    let templates = p.templates()?;
    // The values as Helm is given them (compose's JSON always parses back).
    let values = serde_json::from_str(&p.values_json).unwrap_or(Json::Null);
    let r = finish(inputs, &reads, &p.plan, p.files, values, &templates)?;
    Ok((r, reads.reads()))
}

/// Renders one component.
///
/// # Errors
/// [`RenderError`] naming the component, the file or object, and the cause.
pub fn render_component(inputs: &Inputs, name: &str) -> Result<Rendered, RenderError> {
    render_recorded(inputs, name).map(|(r, _)| r)
}

/// Renders a component's templates twice with the same values and returns the template paths
/// whose output differs (`randAlphaNum`, `uuidv4`, `now` and friends), sorted.
///
/// # Errors
/// As [`render_component`].
pub fn nondeterministic_templates(inputs: &Inputs, name: &str) -> Result<Vec<String>, RenderError> {
    let p = prepare(inputs, &Reader::new(), name)?;
    let a = p.templates()?;
    let b: std::collections::BTreeMap<String, String> = p.templates()?.into_iter().collect();
    let mut differ: Vec<String> = a
        .into_iter()
        .filter(|(k, v)| b.get(k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    differ.sort();
    Ok(differ)
}
