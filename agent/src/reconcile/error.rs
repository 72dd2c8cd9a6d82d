//! [`SyncError`]: why a commit could not be made into a revision, or a checkout diffed —
//! the reconcile boundary's error, each variant keeping its cause as a `#[source]`.
//! [`crate::reconcile::Agent::sync`] turns these into [`crate::reconcile::Outcome::Refused`]
//! (nothing applied); `diff` returns them.

use super::config::ConfigError;
use super::guard::Refusal;
use crate::cluster::ClusterError;
use crate::record::RecordError;
use crate::render::RenderError;
use kustomize_rs::yaml::YamlError;
use std::path::PathBuf;

/// A failure at the reconcile boundary.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// `stackwave.yaml` is missing, malformed or names components that cannot be planned.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `genestack:` names neither or both of `path` and `git`.
    #[error("{}: genestack needs exactly one of `path` or `git`", file.display())]
    BaseChoice {
        /// The `stackwave.yaml`.
        file: PathBuf,
    },
    /// The pinned Genestack base could not be checked out.
    #[error("genestack base {url}@{reference}: {}", .source.cause)]
    Base {
        /// Repository URL.
        url: String,
        /// The pinned tag or commit.
        reference: String,
        /// Cause.
        #[source]
        source: crate::source::SourceError,
    },
    /// A blocking task (a Git checkout) panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The repository's own `components/` do not load.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogLoadError),
    /// The cluster objects bindings look up (Secrets, Services) could not be listed.
    #[error(transparent)]
    Lookups(ClusterError),
    /// A release namespace (`--create-namespace`) could not be read.
    #[error("namespace {namespace} (--create-namespace): {source}")]
    Namespace {
        /// The namespace.
        namespace: String,
        /// Cause.
        #[source]
        source: ClusterError,
    },
    /// A `manifests:` entry's kustomize build failed.
    #[error("manifests {component}: {source}")]
    Manifests {
        /// The entry's name.
        component: String,
        /// Cause.
        #[source]
        source: kustomize_rs::Error,
    },
    /// A `manifests:` entry's build output is not YAML.
    #[error("manifests {component}: {source}")]
    ManifestsYaml {
        /// The entry's name.
        component: String,
        /// Cause.
        #[source]
        source: YamlError,
    },
    /// A catalog component failed to render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A component's rendered output is not YAML.
    #[error("component {component}: rendered output: {source}")]
    RenderedYaml {
        /// The component.
        component: String,
        /// Cause.
        #[source]
        source: YamlError,
    },
    /// HorizontalPodAutoscalers could not be listed (the fields they own are unknown).
    #[error("HorizontalPodAutoscalers not read: {0}")]
    Hpa(#[source] ClusterError),
    /// A guard refused the revision.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A component's inventory could not be read.
    #[error("inventory of {component}: {source}")]
    Inventory {
        /// The component.
        component: String,
        /// Cause.
        #[source]
        source: ClusterError,
    },
    /// A component's objects could not be diffed (a dry-run apply failed).
    #[error("component {component}: {source}")]
    Diff {
        /// The component.
        component: String,
        /// Cause.
        #[source]
        source: ClusterError,
    },
    /// The revision store failed.
    #[error(transparent)]
    Store(#[from] RecordError),
}
