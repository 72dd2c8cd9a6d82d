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
