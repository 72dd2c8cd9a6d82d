//! A setup script's steps after the release ([`crate::component::Setup`]), applied to the
//! component's rendered objects: `bin/setup-envoy-gateway.sh` (default mode, run by
//! `bin/setup-infrastructure.sh` right after `install-envoy-gateway.sh`) copies
//! `etc/gateway-api/{listeners,routes}` with `sed "s/your.domain.tld/${GATEWAY_DOMAIN}/g"`,
//! patches every listener file, flattened (`jq -s 'flatten'`), into the live Gateway
//! `envoy-gateway/flex-gateway` with `kubectl patch --type=json`, and `kubectl apply -f`s the
//! routes. Here the same patch is applied to the rendered Gateway and the routes join the
//! component, so the Gateway stays one object with one field manager.
//!
//! The step is one in-memory kustomize build (kustomize-rs): the rendered objects and the
//! manifests as `resources`, the flattened patch as a JSON 6902 `patches` entry targeting the
//! object, `sortOptions: fifo` so the objects keep their order (the rendered ones first, then
//! the manifests in file order). `tests/helpers/infra-oracle` builds the same kustomization
//! with `kubectl kustomize` as the reference.

use super::reads::Reader;
use super::RenderError;
use crate::component::{Component, Setup};
use kustomize_rs::yaml::Value;
use kustomize_rs::{FileSystem, Options};
use std::path::Path;
use std::sync::Arc;

/// The extensions `kubectl apply -f DIR` reads (`k8s.io/cli-runtime/pkg/resource`
/// `FileExtensions`).
const MANIFEST_EXTENSIONS: &[&str] = &["json", "yaml", "yml"];

/// Where the in-memory build lives.
const ROOT: &str = "/stackwave-setup";

/// Applies `c.setup` (when set) to `objects`; returns them unchanged otherwise.
///
/// # Errors
/// [`RenderError::Input`] naming the file: a directory or file that is missing, a patch file
/// that is not a JSON array; [`RenderError::PostRender`] for a patch kustomize refuses (its
/// target missing, a path that does not resolve).
pub fn apply(
    reads: &Reader,
    genestack: &Path,
    c: &Component,
    objects: Vec<Value>,
) -> Result<Vec<Value>, RenderError> {
    let Some(setup) = &c.setup else {
        return Ok(objects);
    };
    let input = |cause: String| RenderError::Input {
        component: c.name.clone(),
        cause: format!("{}: {cause}", setup.script),
    };
    let mut fs = FileSystem::memory();
    let root = Path::new(ROOT);
    let rendered = super::print_objects(&c.name, &objects)?;
    fs.insert(root.join("rendered.yaml"), rendered);
    let mut kust = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         sortOptions:\n  order: fifo\nresources:\n- rendered.yaml\n",
    );
    for (i, m) in setup.manifests.iter().enumerate() {
        for (j, (path, text)) in files(reads, genestack, m, setup, &input)?
            .into_iter()
            .enumerate()
        {
            let name = format!("manifest-{i}-{j}.yaml");
            let docs = kustomize_rs::yaml::parse_documents(&text)
                .map_err(|e| input(format!("{}: {e}", path.display())))?;
            if docs.iter().all(|d| d.as_map().is_none_or(|m| m.is_empty())) {
                continue;
            }
            fs.insert(root.join(&name), text);
            kust.push_str(&format!("- {name}\n"));
        }
    }
    if !setup.patches.is_empty() {
        kust.push_str("patches:\n");
    }
    for (i, p) in setup.patches.iter().enumerate() {
        let mut ops: Vec<serde_json::Value> = Vec::new();
        for (path, text) in files(reads, genestack, &p.dir, setup, &input)? {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Array(a)) => ops.extend(a),
                Ok(_) => {
                    return Err(input(format!(
                        "{}: a JSON patch is an array of operations",
                        path.display()
                    )))
                }
                Err(e) => return Err(input(format!("{}: {e}", path.display()))),
            }
        }
        let name = format!("patch-{i}.json");
        fs.insert(
            root.join(&name),
            serde_json::to_string(&ops).map_err(|e| input(e.to_string()))?,
        );
        let t = &p.target;
        kust.push_str(&format!(
            "- path: {name}\n  target:\n    kind: {}\n    name: {}\n",
            t.kind, t.name
        ));
        if !t.namespace.is_empty() {
            kust.push_str(&format!("    namespace: {}\n", t.namespace));
        }
    }
    fs.insert(root.join("kustomization.yaml"), kust);
    let res =
        kustomize_rs::build_in(Arc::new(fs), root, &Options::default()).map_err(|source| {
            RenderError::PostRender {
                component: c.name.clone(),
                overlay: format!("{} (setup)", setup.script),
                source,
            }
        })?;
    Ok(res.into_iter().map(|r| r.obj).collect())
}

/// The files of `rel` (a file, or a directory's manifest files in name order, bytewise as
/// the C locale's `ls`) under the Genestack checkout, read through `reads` and substituted.
fn files(
    reads: &Reader,
    genestack: &Path,
    rel: &str,
    setup: &Setup,
    input: &dyn Fn(String) -> RenderError,
) -> Result<Vec<(std::path::PathBuf, String)>, RenderError> {
    let p = genestack.join(rel);
    let paths = if reads.is_dir(&p) {
        reads
            .list(&p)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                Path::new(n)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
            })
            .map(|n| p.join(n))
            .collect()
    } else if reads.is_file(&p) {
        vec![p.clone()]
    } else {
        return Err(input(format!("{}: no such file or directory", p.display())));
    };
    paths
        .into_iter()
        .map(|f| {
            let mut text = reads
                .read_to_string(&f)
                .map_err(|e| input(format!("{}: {e}", f.display())))?;
            for s in &setup.substitute {
                text = text.replace(&s.from, &s.to);
            }
            Ok((f, text))
        })
        .collect()
}
