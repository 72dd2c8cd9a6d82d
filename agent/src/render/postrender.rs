//! Genestack's post-render step (`base-kustomize/kustomize.sh`), done in memory with
//! kustomize-rs: the Helm stream becomes `<overlay>/../base/all.yaml` — or `<overlay>/all.yaml`
//! when the overlay's kustomization lists `- all.yaml` — and the overlay is built. The
//! operator's `<overrides>/kustomize/*/` directories are layered over `base-kustomize/`, and an
//! overlay with no kustomization gets the stub Genestack's bootstrap writes.

use super::reads::Reader;
use kustomize_rs::yaml::Value;
use kustomize_rs::{FileSystem, Options};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The kustomization Genestack's bootstrap writes for an overlay that has none.
pub const OVERLAY_STUB: &str =
    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../base\n\n";

/// Runs the post-render: returns the kustomize build's objects, in its output order. Every
/// file the build reads or probes on disk is recorded by `reads`.
///
/// # Errors
/// Any kustomize error (naming the overlay file).
pub fn post_render(
    reads: &Reader,
    stream: &str,
    genestack: &Path,
    overrides: Option<&Path>,
    overlay: &str,
) -> Result<Vec<Value>, kustomize_rs::Error> {
    let mut layers: Vec<PathBuf> = Vec::new();
    if let Some(o) = overrides {
        let k = o.join("kustomize");
        if reads.is_dir(&k) {
            layers.push(k);
        }
    }
    layers.push(genestack.join("base-kustomize"));
    let mut fs = FileSystem::layered(layers).observed(reads.kustomize_observer());
    let ov = Path::new("/").join(overlay);
    let kust = ov.join("kustomization.yaml");
    let kust_text = match fs.read(&kust) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => {
            fs.insert(&kust, OVERLAY_STUB);
            OVERLAY_STUB.to_string()
        }
    };
    let lists_all =
        Regex::new(r"(?m)^[ \t\r\n\x0B\x0C]*-[ \t\r\n\x0B\x0C]+all\.yaml[ \t\r\n\x0B\x0C]*$")
            .map(|r| r.is_match(&kust_text))
            .unwrap_or(false);
    let all = if lists_all {
        ov.join("all.yaml")
    } else {
        ov.join("../base/all.yaml")
    };
    fs.insert(&all, stream.as_bytes().to_vec());
    let res = kustomize_rs::build_in(Arc::new(fs), &ov, &Options::default())?;
    Ok(res.into_iter().map(|r| r.obj).collect())
}
