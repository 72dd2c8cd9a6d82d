//! Catalog entries that are not Helm releases: `kind: kustomize` (`kubectl apply -k DIR`, as
//! `bin/setup-infrastructure.sh` applies `kustomize/openstack/base`, `mariadb-cluster/overlay`,
//! the rabbitmq operators and cluster, `ovn/base`) and `kind: manifests` (`kubectl apply -f
//! FILE`, the metallb pools). Both read the operator tree (`/etc/genestack`, the
//! repository) first and Genestack's checkout second: its `kustomize/` layered over
//! `base-kustomize/` like the post-render step ([`super::postrender`]), and `manifests/`
//! files from the operator tree when present there. What `kubectl -n NS` would add at apply
//! time (a namespace for objects without one) is left to the apply stage.

use super::assemble::go_trim_space;
use super::postrender::OVERLAY_STUB;
use super::{Inputs, RenderError, Rendered};
use crate::component::{Component, ComponentKind};
use kustomize_rs::{FileSystem, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Renders a `kustomize` or `manifests` entry.
///
/// # Errors
/// A kustomize build error naming the directory, or a manifest file that is missing or not
/// YAML.
pub fn render(inputs: &Inputs, c: &Component) -> Result<Rendered, RenderError> {
    let (text, files) = match c.kind {
        ComponentKind::Kustomize => (build(inputs, c)?, Vec::new()),
        ComponentKind::Manifests | ComponentKind::Helm => manifests(inputs, c)?,
    };
    Ok(Rendered {
        manifests: text.clone(),
        text,
        hooks: Vec::new(),
        chart: String::new(),
        version: String::new(),
        values_files: files,
        crds: String::new(),
    })
}

fn build(inputs: &Inputs, c: &Component) -> Result<String, RenderError> {
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
        if d.is_dir() {
            layers.push(d);
        }
    }
    layers.push(inputs.sources.genestack.join("base-kustomize"));
    let mut fs = FileSystem::layered(layers);
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
    kustomize_rs::print_resources(&res).map_err(post)
}

fn manifests(inputs: &Inputs, c: &Component) -> Result<(String, Vec<PathBuf>), RenderError> {
    let mut out = String::new();
    let mut used = Vec::new();
    for m in &c.manifests {
        let p = inputs
            .sources
            .overrides
            .as_ref()
            .map(|o| o.join(m))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| inputs.sources.genestack.join(m));
        let err = |cause: String| RenderError::Input {
            component: c.name.clone(),
            cause: format!("{}: {cause}", p.display()),
        };
        let text = std::fs::read_to_string(&p).map_err(|e| err(e.to_string()))?;
        kustomize_rs::yaml::parse_documents(&text).map_err(|e| err(e.to_string()))?;
        let body = go_trim_space(&text);
        let body = body
            .strip_prefix("---")
            .map(str::trim_start)
            .unwrap_or(body);
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(body);
        out.push('\n');
        used.push(p);
    }
    Ok((out, used))
}

/// The directories and files a non-Helm entry reads, for its render cache key.
pub fn inputs_read(inputs: &Inputs, c: &Component) -> Vec<PathBuf> {
    let mut v = vec![inputs.sources.genestack.join("base-kustomize")];
    if let Some(o) = &inputs.sources.overrides {
        v.push(o.join("kustomize"));
        v.extend(c.manifests.iter().map(|m| o.join(m)));
    }
    v.extend(c.manifests.iter().map(|m| inputs.sources.genestack.join(m)));
    v
}
