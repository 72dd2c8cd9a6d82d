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
pub mod error;
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

pub use error::{BoxError, Error};
