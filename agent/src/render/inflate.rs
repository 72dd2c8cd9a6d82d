//! `helmCharts` in kustomizations, inflated by Stackwave's own Helm renderer instead of a
//! `helm` subprocess (kustomize `api/internal/builtins/HelmChartInflationGenerator.go`
//! semantics: chart from `helmGlobals.chartHome` or its `repo` at `version`; user values are
//! `valuesFile` then `valuesInline` combined by `valuesMerge` — `override` (default),
//! `merge` or `replace`; `releaseName` defaults to `release-name`; CRDs with `includeCRDs`;
//! hooks unless `skipHooks`).

use super::assemble::{sort_by_kind, sort_manifests, source_stream};
use super::charts::ChartStore;
use super::helm::{Helm, RenderOptions};
use super::values::merge_maps;
use crate::component::to_json;
use kustomize_rs::yaml::Value;
use kustomize_rs::{Error, HelmChartRequest, HelmInflator};
use serde_json::{Map, Value as Json};
use std::path::PathBuf;
use std::sync::Arc;

/// A renderer failure for `chart`, kept as the kustomize error's source.
fn err<E: Into<kustomize_rs::BoxError>>(chart: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::helm(chart, e)
}

/// An inflator that finds charts under `chartHome`, else through `store`.
pub fn inflator(store: ChartStore) -> HelmInflator {
    Arc::new(move |req: &HelmChartRequest| inflate(&store, req))
}

fn inflate(store: &ChartStore, req: &HelmChartRequest) -> Result<String, Error> {
    let s = |k: &str| {
        req.chart
            .get(k)
            .and_then(Value::scalar_string)
            .unwrap_or_default()
    };
    let (name, version, repo) = (s("name"), s("version"), s("repo"));
    if name.is_empty() {
        return Err(Error::helm("", "helmCharts entry has no name"));
    }
    let home = req
        .globals
        .as_ref()
        .and_then(|g| g.get("chartHome"))
        .and_then(Value::scalar_string)
        .unwrap_or_else(|| "charts".into());
    let home = req.dir.join(home);
    let local = [
        home.join(&name),
        home.join(format!("{name}-{version}")).join(&name),
    ]
    .into_iter()
    .find(|p| p.join("Chart.yaml").is_file());
    let chart: PathBuf = match (local, store) {
        (Some(p), _) => p,
        (None, ChartStore::Repos(f)) if !repo.is_empty() => {
            f.fetch(&repo, &name, &version).map_err(err(&name))?.path
        }
        (None, ChartStore::Dir(d)) if d.join(&name).join("Chart.yaml").is_file() => d.join(&name),
        (None, _) => {
            return Err(Error::helm(
                &name,
                format!(
                    "chart {name} {version} is not under {} and cannot be fetched",
                    home.display()
                ),
            ))
        }
    };
    let helm = Helm::get().map_err(err(&name))?;
    let mut values = Map::new();
    if let Some(text) = &req.values_file {
        if let Ok(Json::Object(m)) =
            serde_json::from_str(&helm.values_from_yaml(text).map_err(err(&name))?)
        {
            values = m;
        }
    }
    if let Some(Json::Object(inline)) = req.chart.get("valuesInline").map(to_json) {
        match s("valuesMerge").as_str() {
            "replace" => values = inline,
            "merge" => {
                let mut v = inline;
                merge_maps(&mut v, values);
                values = v;
            }
            _ => merge_maps(&mut values, inline),
        }
    }
    let release = Some(s("releaseName"))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "release-name".into());
    let opts = RenderOptions {
        name: release,
        namespace: s("namespace"),
        revision: 1,
        is_install: true,
        is_upgrade: false,
    };
    let loaded = helm.load_chart(&chart).map_err(err(&name))?;
    let out = loaded
        .render(&Json::Object(values).to_string(), &opts)
        .map_err(err(&name))?;
    let files: Map<String, Json> = serde_json::from_str(&out).map_err(err(&name))?;
    let templates: Vec<(String, String)> = files
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or("").to_string()))
        .collect();
    let (mut hooks, manifests) = sort_manifests(&templates).map_err(err(&name))?;
    sort_by_kind(&mut hooks);
    let mut text = String::new();
    if matches!(req.chart.get("includeCRDs"), Some(Value::Bool(true))) {
        let mut crds: Vec<PathBuf> = std::fs::read_dir(chart.join("crds"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        crds.sort();
        for c in crds {
            text.push_str("---\n");
            text.push_str(
                &std::fs::read_to_string(&c)
                    .map_err(|e| Error::helm(&name, format!("{}: {e}", c.display())))?,
            );
            text.push('\n');
        }
    }
    text.push_str(&source_stream(&manifests));
    if !matches!(req.chart.get("skipHooks"), Some(Value::Bool(true))) {
        text.push_str(&source_stream(&hooks));
    }
    Ok(text)
}
