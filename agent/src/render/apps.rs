//! Catalog entries that are not Helm releases: `kind: kustomize` (`kubectl apply -k DIR`, as
//! `bin/setup-infrastructure.sh` applies `kustomize/openstack/base`, `mariadb-cluster/overlay`,
//! the rabbitmq operators and cluster, `ovn/base`) and `kind: manifests` (`kubectl apply -f
//! FILE`, the metallb pools). Both read the operator tree (`/etc/genestack`, the
//! repository) first and Genestack's checkout second: its `kustomize/` layered over
//! `base-kustomize/` like the post-render step ([`super::postrender`]), and `manifests/`
//! files from the operator tree when present there. `kubectl -n NS` (`kustomize.namespace`)
//! is the apply stage's rule for every component: namespaced objects without a namespace go
//! to `release.namespace` (`openstack` for `mariadb-cluster`, whose ConfigMap names none).

use super::postrender::OVERLAY_STUB;
use super::reads::Reader;
use super::{Inputs, Manifests, RenderError, Rendered};
use crate::component::{Component, ComponentKind};
use kustomize_rs::yaml::Value;
use kustomize_rs::{FileSystem, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Renders a `kustomize` or `manifests` entry; every file it looks at goes through the
/// render's reader (so the cache key covers it).
///
/// # Errors
/// A kustomize build error naming the directory, or a manifest file that is missing or not
/// YAML.
pub fn render(inputs: &Inputs, reads: &Reader, c: &Component) -> Result<Rendered, RenderError> {
    let (objs, files) = match c.kind {
        ComponentKind::Kustomize => (build(inputs, reads, c)?, Vec::new()),
        ComponentKind::Manifests | ComponentKind::Helm => manifests(inputs, reads, c)?,
    };
    let objs = super::setup::apply(reads, &inputs.sources.genestack, c, objs)?;
    Ok(Rendered {
        component: c.name.clone(),
        manifests: Manifests::Kustomized(objs),
        hooks: Vec::new(),
        chart: String::new(),
        version: String::new(),
        values_files: files,
        values: serde_json::Value::Null,
        crds: String::new(),
    })
}

fn build(inputs: &Inputs, reads: &Reader, c: &Component) -> Result<Vec<Value>, RenderError> {
    let input = |cause: String| RenderError::Input {
        component: c.name.clone(),
        cause,
    };
    let k = c
        .kustomize
        .as_ref()
        .ok_or_else(|| input("kind kustomize needs `kustomize.path`".into()))?;
    let mut layers: Vec<PathBuf> = Vec::new();
    if let Some(o) = &inputs.sources.overrides {
        let d = o.join("kustomize");
        if reads.is_dir(&d) {
            layers.push(d);
        }
    }
    layers.push(inputs.sources.genestack.join("base-kustomize"));
    let mut fs = FileSystem::layered(layers).observed(reads.kustomize_observer());
    let dir = Path::new("/").join(&k.path);
    let kust = dir.join("kustomization.yaml");
    if fs.read(&kust).is_err() && k.path.ends_with("/overlay") {
        // Genestack's bootstrap writes this stub for every overlay it does not ship.
        fs.insert(&kust, OVERLAY_STUB);
    }
    let post = |source| RenderError::PostRender {
        component: c.name.clone(),
        overlay: k.path.clone(),
        source,
    };
    let res = kustomize_rs::build_in(Arc::new(fs), &dir, &Options::default()).map_err(post)?;
    Ok(res.into_iter().map(|r| r.obj).collect())
}

fn manifests(
    inputs: &Inputs,
    reads: &Reader,
    c: &Component,
) -> Result<(Vec<Value>, Vec<PathBuf>), RenderError> {
    let mut out = Vec::new();
    let mut used = Vec::new();
    for m in &c.manifests {
        let p = inputs
            .sources
            .overrides
            .as_ref()
            .map(|o| o.join(m))
            .filter(|p| reads.is_file(p))
            .unwrap_or_else(|| inputs.sources.genestack.join(m));
        let err = |cause: String| RenderError::Input {
            component: c.name.clone(),
            cause: format!("{}: {cause}", p.display()),
        };
        let text = reads.read_to_string(&p).map_err(|e| err(e.to_string()))?;
        let docs = kustomize_rs::yaml::parse_documents(&text).map_err(|e| err(e.to_string()))?;
        out.extend(
            docs.into_iter()
                .filter(|d| d.as_map().is_some_and(|m| !m.is_empty())),
        );
        used.push(p);
    }
    Ok((out, used))
}
