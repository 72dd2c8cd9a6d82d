//! Inputs for a newcomer without a local corpus: the Genestack release the built-in catalog
//! describes ([`crate::catalog::GenestackRelease`]) is fetched from its public Git repository
//! into `<cache>/genestack/<ref>` (a mirror and an exported tree, through
//! [`crate::source::Pinned`]), and charts come from their catalog sources (Helm repository,
//! OCI registry or Git, see [`crate::render::charts`]) cached beside it. A local corpus
//! (`../shared/corpus`) stays the offline default of tests and CI.

use crate::catalog::GenestackRelease;
use crate::source::{Pinned, SourceError};
use std::path::{Path, PathBuf};

/// The cache directory of one Genestack ref: `<cache>/genestack/<ref>` (`/` in a ref
/// written `_`).
pub fn genestack_cache(cache: &Path, r#ref: &str) -> PathBuf {
    cache
        .join("genestack")
        .join(r#ref.replace(['/', '\\'], "_"))
}

/// Fetches (or reuses, when the remote is unreachable and the ref was fetched before) the
/// Genestack base `release` and returns the directory holding its `base-helm-configs/`.
///
/// # Errors
/// [`SourceError`] naming the URL: unreachable with nothing cached, unknown ref.
pub fn genestack_base(release: &GenestackRelease, cache: &Path) -> Result<PathBuf, SourceError> {
    let pinned = Pinned {
        url: release.url.clone(),
        r#ref: release.r#ref.clone(),
        path: String::new(),
    };
    let (_, dir) = pinned.checkout(&genestack_cache(cache, &release.r#ref), false)?;
    Ok(dir)
}

/// The offline corpus tests and CI use (`../shared/corpus`, relative to the working directory).
pub const LOCAL_CORPUS: &str = "../shared/corpus";

/// The Genestack base and charts a command runs with.
#[derive(Debug, Clone)]
pub struct Base {
    /// The directory holding `base-helm-configs/`.
    pub genestack: PathBuf,
    /// Local unpacked charts; `None`: each chart from its catalog source.
    pub charts: Option<PathBuf>,
    /// What was chosen and why, for the command's output.
    pub note: String,
}

/// Chooses the base: `genestack` when given; else the local corpus when it is there (with its
/// charts); else the built-in catalog's Genestack release fetched from its public Git
/// repository into `<cache>/genestack/<ref>` (charts then come from their catalog sources,
/// unless `charts` names a directory).
///
/// # Errors
/// [`FetchError`] naming the URL when the release cannot be fetched (and was never cached).
pub fn choose_base(
    genestack: Option<&Path>,
    charts: Option<&Path>,
    cache: &Path,
) -> Result<Base, FetchError> {
    if let Some(g) = genestack {
        return Ok(Base {
            genestack: g.to_path_buf(),
            charts: charts.map(Path::to_path_buf),
            note: format!("Genestack base: {}", g.display()),
        });
    }
    let corpus = Path::new(LOCAL_CORPUS);
    if corpus.join("genestack").is_dir() {
        return Ok(Base {
            genestack: corpus.join("genestack"),
            charts: charts
                .map(Path::to_path_buf)
                .or_else(|| Some(corpus.join("charts")).filter(|c| c.is_dir())),
            note: format!("Genestack base: the local corpus {LOCAL_CORPUS}/genestack (offline)"),
        });
    }
    let release = GenestackRelease::builtin()?;
    let dir = genestack_base(&release, cache)?;
    Ok(Base {
        genestack: dir,
        charts: charts.map(Path::to_path_buf),
        note: format!(
            "Genestack base: no local corpus ({LOCAL_CORPUS} absent, no --genestack): fetched {}@{} into {}; charts from {}",
            release.url,
            release.r#ref,
            genestack_cache(cache, &release.r#ref).display(),
            charts.map_or_else(
                || "their catalog sources (Helm repositories, OCI registries), cached there too".to_string(),
                |c| c.display().to_string()
            )
        ),
    })
}

/// Why the base could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The built-in release pin is unreadable (a broken build).
    #[error(transparent)]
    Catalog(#[from] crate::component::CatalogError),
    /// The release could not be fetched.
    #[error("fetching the Genestack release: {0}")]
    Source(#[from] SourceError),
}

/// The Secrets the enabled components' install scripts read (every `secret` + `key` binding,
/// in the binding's namespace or the release's), each key a random 32-character alphanumeric
/// value as Genestack's `bin/create-secrets.sh` generates them: what a cluster without the
/// corpus's fake `secrets.yaml` is bootstrapped with. Values stay in the cluster (never
/// printed).
pub fn generated_secrets(
    catalog: &crate::component::Catalog,
    enabled: &[String],
) -> Vec<serde_json::Value> {
    use rand::distr::{Alphanumeric, SampleString};
    let mut secrets: std::collections::BTreeMap<
        (String, String),
        serde_json::Map<String, serde_json::Value>,
    > = Default::default();
    for c in enabled.iter().filter_map(|c| catalog.get(c)) {
        for b in &c.bindings {
            if let (Some(s), Some(k)) = (&b.secret, &b.key) {
                let ns = b
                    .namespace
                    .clone()
                    .unwrap_or_else(|| c.release.namespace.clone());
                secrets
                    .entry((ns, s.clone()))
                    .or_default()
                    .entry(k.clone())
                    .or_insert_with(|| {
                        serde_json::Value::from(Alphanumeric.sample_string(&mut rand::rng(), 32))
                    });
            }
        }
    }
    secrets
        .into_iter()
        .map(|((ns, name), data)| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": ns},
                "stringData": data,
            })
        })
        .collect()
}

/// `stackwave.yaml` text without its `charts:` entry (the key and its indented lines), so
/// charts come from their catalog sources.
pub fn without_charts(config: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in config.lines() {
        if line.starts_with("charts:") {
            skipping = true;
            continue;
        }
        if skipping && (line.starts_with(' ') || line.is_empty()) {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The cluster objects (besides Secrets) the install scripts look up, standing in for what
/// the CNI install makes first (`agent/data/demo-bootstrap.yaml`), for a demo without the
/// local corpus's `cluster-state.yaml`.
pub const DEMO_LOOKUPS: &str = include_str!("../data/demo-bootstrap.yaml");
