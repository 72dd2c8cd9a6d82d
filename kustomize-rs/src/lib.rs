//! `kustomize-rs`: a native kustomize engine whose `build` output matches
//! `kubectl kustomize` (kustomize v5.8.1) byte for byte.
//!
//! ```no_run
//! let out = kustomize_rs::build_dir(std::path::Path::new("overlay"), &kustomize_rs::Options::default())?;
//! print!("{out}");
//! # Ok::<(), kustomize_rs::Error>(())
//! ```
//!
//! The pipeline follows kustomize's `api/internal/target/kusttarget.go`: resources (files and
//! directories, recursively built), generators, components, builtin transformers in
//! kustomize's fixed order, then — at the top level only — hash suffixes, name-reference
//! fix-ups, vars, local-config removal and sorting. Output is printed with
//! [`yaml::to_yaml`], which reproduces go-yaml v2's formatting.

pub mod build;
pub mod fieldspec;
pub mod fs;
pub mod generators;
pub mod kustfile;
pub mod openapi;
pub mod resource;
pub mod smp;
pub mod tables;
pub mod transformers;
pub mod yaml;

pub use build::{
    build_dir, build_in, build_resources, print_resources, FileSystem, HelmChartRequest,
    HelmInflator, LoadRestrictor, Options, RemoteOptions, Reorder,
};

/// A build error: a message naming the file or object and the cause, with context prefixes
/// added as it travels up (`accumulating resources: ...`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl Error {
    /// An error with a message.
    pub fn msg(m: impl Into<String>) -> Error {
        Error(m.into())
    }

    /// Prefixes context.
    pub fn context(self, ctx: impl std::fmt::Display) -> Error {
        Error(format!("{ctx}: {}", self.0))
    }
}

impl From<yaml::YamlError> for Error {
    fn from(e: yaml::YamlError) -> Self {
        Error(e.to_string())
    }
}

impl From<yaml::EmitError> for Error {
    fn from(e: yaml::EmitError) -> Self {
        Error(e.to_string())
    }
}
