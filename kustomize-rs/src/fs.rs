//! File access for a build: each kustomization directory gets a [`Loader`] rooted there,
//! which enforces the load restrictor for files and refuses directory cycles
//! (`api/internal/loader/fileloader.go`, `loadrestrictions.go`).

use crate::Error;
use std::path::{Component, Path, PathBuf};

/// Which files a kustomization may read (`--load-restrictor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadRestrictor {
    /// Files must be in or below the kustomization's directory (kustomize's default).
    #[default]
    RootOnly,
    /// Any file may be read.
    None,
}

/// A loader rooted at one kustomization directory.
#[derive(Clone, Debug)]
pub struct Loader {
    root: PathBuf,
    restrictor: LoadRestrictor,
    /// Roots of the kustomizations that led here, for cycle detection.
    referrers: Vec<PathBuf>,
}

/// Lexically cleans a path (like Go's `filepath.Clean`) after making it absolute.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

impl Loader {
    /// A loader for the top-level directory.
    ///
    /// # Errors
    /// When `dir` is not a directory.
    pub fn new(dir: &Path, restrictor: LoadRestrictor) -> Result<Loader, Error> {
        let root = std::fs::canonicalize(dir)
            .map_err(|e| Error::msg(format!("must build at directory: '{}': {e}", dir.display())))?;
        if !root.is_dir() {
            return Err(Error::msg(format!("must build at directory: not a valid directory: '{}'", dir.display())));
        }
        Ok(Loader { root, restrictor, referrers: Vec::new() })
    }

    /// The directory this loader is rooted at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute, cleaned path of `rel` relative to the root.
    pub fn join(&self, rel: &str) -> PathBuf {
        clean(&self.root.join(rel))
    }

    /// Reads a file, enforcing the load restrictor.
    ///
    /// # Errors
    /// When the file is outside the root under `RootOnly`, or cannot be read.
    pub fn load(&self, rel: &str) -> Result<Vec<u8>, Error> {
        let p = self.join(rel);
        if self.restrictor == LoadRestrictor::RootOnly {
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            if !real.starts_with(&self.root) {
                return Err(Error::msg(format!(
                    "security; file '{}' is not in or below '{}'",
                    real.display(),
                    self.root.display()
                )));
            }
        }
        if p.is_dir() {
            return Err(Error::msg(format!("'{}' is a directory, not a file", p.display())));
        }
        std::fs::read(&p).map_err(|e| Error::msg(format!("cannot read '{}': {e}", p.display())))
    }

    /// Reads a file as UTF-8 text.
    ///
    /// # Errors
    /// As [`Loader::load`], or when the content is not UTF-8.
    pub fn load_string(&self, rel: &str) -> Result<String, Error> {
        let b = self.load(rel)?;
        String::from_utf8(b).map_err(|_| Error::msg(format!("'{}' is not UTF-8 text", self.join(rel).display())))
    }

    /// A loader for a sub-kustomization directory.
    ///
    /// # Errors
    /// When `rel` is empty, absolute, not a directory, or would form a cycle (it contains
    /// the current root or one of the roots that led here).
    pub fn child(&self, rel: &str) -> Result<Loader, Error> {
        if rel.is_empty() {
            return Err(Error::msg("new root cannot be empty"));
        }
        if Path::new(rel).is_absolute() {
            return Err(Error::msg(format!("new root '{rel}' cannot be absolute")));
        }
        if rel.starts_with("https://") || rel.starts_with("http://") || rel.starts_with("git@") || rel.starts_with("github.com/") {
            return Err(Error::msg(format!(
                "remote resource '{rel}' needs network access; remote kustomizations are not fetched by this build"
            )));
        }
        let p = self.join(rel);
        let root = std::fs::canonicalize(&p)
            .ok()
            .filter(|r| r.is_dir())
            .ok_or_else(|| Error::msg(format!("must build at directory: not a valid directory: evalsymlink failure on '{}'", p.display())))?;
        for visited in std::iter::once(&self.root).chain(self.referrers.iter()) {
            if visited.starts_with(&root) {
                return Err(Error::msg(format!(
                    "cycle detected: candidate root '{}' contains visited root '{}'",
                    root.display(),
                    visited.display()
                )));
            }
        }
        let mut referrers = self.referrers.clone();
        referrers.push(self.root.clone());
        Ok(Loader { root, restrictor: self.restrictor, referrers })
    }
}
