//! The build error: what went wrong, as a typed kind carrying the file, field or object it
//! names, with the cause kept as a `#[source]` chain.
//!
//! The `Display` text of every variant is kustomize v5.8.1's own message for the same failure
//! (`kubectl kustomize` prints them; the project's error cases match them), and a
//! [`Error::Context`] layer prints `context: cause` the way kustomize's `errors.Wrapf` does —
//! so `Display` already includes the whole chain, and [`std::error::Error::source`] gives the
//! structured causes for callers that want them.

use std::path::PathBuf;

/// A boxed error from outside the engine (a Helm renderer, a caller's file system).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A build error. See the module documentation for how it prints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory the build needs is missing, of the wrong type, outside the load
    /// restrictor's root, or forms a cycle (kustomize `api/internal/loader/fileloader.go`).
    #[error("{message}")]
    Load {
        /// The path (or remote address) concerned.
        path: PathBuf,
        /// kustomize's message.
        message: String,
    },
    /// A file could not be read by the operating system.
    #[error("cannot read '{}': {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A remote (`https://`) resource could not be fetched and is not cached.
    #[error("{message}")]
    Remote {
        /// The address.
        url: String,
        /// What failed (status, connection, offline without a cached copy).
        message: String,
    },
    /// Malformed YAML (the context naming the file is an [`Error::Context`] layer).
    #[error(transparent)]
    Yaml(#[from] crate::yaml::YamlError),
    /// A resource file whose YAML is malformed, in kustomize's words
    /// (`api/resource/factory.go`).
    #[error("MalformedYAMLError: {source} in File: {file}")]
    MalformedYaml {
        /// The file.
        file: String,
        /// The parser's error.
        #[source]
        source: crate::yaml::YamlError,
    },
    /// A value the YAML printer cannot write (a non-finite float).
    #[error(transparent)]
    Emit(#[from] crate::yaml::EmitError),
    /// A kustomization (or an entry of one of its fields) is invalid: wrong kind or
    /// apiVersion, an unknown field, a field of the wrong type, inconsistent options
    /// (`api/types/kustomization.go`, `api/internal/target/kusttarget.go`).
    #[error("{message}")]
    Kustomization {
        /// The kustomization field (or entry) concerned, empty when the file as a whole is.
        field: String,
        /// kustomize's message.
        message: String,
    },
    /// A patch cannot be read, targets nothing it may, or cannot be applied
    /// (`api/filters/patchstrategicmerge`, `api/internal/builtins/PatchTransformer.go`).
    #[error("{message}")]
    Patch {
        /// kustomize's message.
        message: String,
    },
    /// A JSON 6902 operation does not apply (`gopkg.in/evanphx/json-patch` messages).
    #[error("{message}")]
    JsonPatch {
        /// The JSON pointer of the operation.
        path: String,
        /// The library's message.
        message: String,
    },
    /// A ConfigMap/Secret (or other builtin) generator's arguments are invalid or its
    /// sources cannot be read (`api/kv`, `api/internal/generators`).
    #[error("{message}")]
    Generator {
        /// kustomize's message.
        message: String,
    },
    /// A replacement's source or target is invalid or not found
    /// (`api/filters/replacement/replacement.go`).
    #[error("{message}")]
    Replacement {
        /// kustomize's message.
        message: String,
    },
    /// A var is repeated, unresolvable or not a scalar (`api/internal/accumulator`).
    #[error("{message}")]
    Var {
        /// kustomize's message.
        message: String,
    },
    /// A name reference is ambiguous or malformed (`api/filters/nameref/nameref.go`).
    #[error("{message}")]
    NameReference {
        /// kustomize's message.
        message: String,
    },
    /// A field spec cannot be walked or set on an object (`api/filters/fieldspec`,
    /// `api/filters/fsslice`), or a builtin transformer finds a field of the wrong type.
    #[error("{message}")]
    Field {
        /// The field path or name concerned.
        path: String,
        /// kustomize's message.
        message: String,
    },
    /// A target selector (or label selector) is malformed.
    #[error("{message}")]
    Selector {
        /// The selector text.
        selector: String,
        /// kustomize's message.
        message: String,
    },
    /// Resources conflict: a repeated resource id, an ambiguous merge target
    /// (`api/resmap/reswrangler.go`).
    #[error("{message}")]
    Conflict {
        /// kustomize's message.
        message: String,
    },
    /// A feature this engine leaves out (exec/Go/KRM plugins, Git remote bases, Helm without a
    /// renderer); see the README.
    #[error("{message}")]
    Unsupported {
        /// The feature.
        feature: &'static str,
        /// What was asked for and why it is not done.
        message: String,
    },
    /// The Helm renderer a caller supplied failed for a `helmCharts` entry.
    #[error("{source}")]
    Helm {
        /// The chart.
        chart: String,
        /// The renderer's error.
        #[source]
        source: BoxError,
    },
    /// Context added as the error travels up (`accumulating resources`, the file being read).
    #[error("{context}: {source}")]
    Context {
        /// The context, printed before the cause.
        context: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Wraps the error in a context layer (`context: cause`).
    pub fn context(self, ctx: impl std::fmt::Display) -> Error {
        Error::Context {
            context: ctx.to_string(),
            source: Box::new(self),
        }
    }

    /// The innermost error of a context chain (the kind of failure, without the layers).
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// The name of the innermost error's variant (`"Load"`, `"Kustomization"`, ...): the kind
    /// of failure, which the project's error cases record as `error_kind`.
    pub fn kind(&self) -> &'static str {
        match self.root() {
            Error::Load { .. } => "Load",
            Error::Io { .. } => "Io",
            Error::Remote { .. } => "Remote",
            Error::Yaml(_) => "Yaml",
            Error::MalformedYaml { .. } => "MalformedYaml",
            Error::Emit(_) => "Emit",
            Error::Kustomization { .. } => "Kustomization",
            Error::Patch { .. } => "Patch",
            Error::JsonPatch { .. } => "JsonPatch",
            Error::Generator { .. } => "Generator",
            Error::Replacement { .. } => "Replacement",
            Error::Var { .. } => "Var",
            Error::NameReference { .. } => "NameReference",
            Error::Field { .. } => "Field",
            Error::Selector { .. } => "Selector",
            Error::Conflict { .. } => "Conflict",
            Error::Unsupported { .. } => "Unsupported",
            Error::Helm { .. } => "Helm",
            Error::Context { .. } => "Context",
        }
    }

    /// A [`Error::Load`] error.
    pub fn load(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error::Load {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A [`Error::Kustomization`] error about `field`.
    pub fn kustomization(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Kustomization {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`Error::Patch`] error.
    pub fn patch(message: impl Into<String>) -> Error {
        Error::Patch {
            message: message.into(),
        }
    }

    /// A [`Error::JsonPatch`] error for the operation at `path`.
    pub fn json_patch(path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::JsonPatch {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A [`Error::Generator`] error.
    pub fn generator(message: impl Into<String>) -> Error {
        Error::Generator {
            message: message.into(),
        }
    }

    /// A [`Error::Replacement`] error.
    pub fn replacement(message: impl Into<String>) -> Error {
        Error::Replacement {
            message: message.into(),
        }
    }

    /// A [`Error::Var`] error.
    pub fn var(message: impl Into<String>) -> Error {
        Error::Var {
            message: message.into(),
        }
    }

    /// A [`Error::NameReference`] error.
    pub fn name_reference(message: impl Into<String>) -> Error {
        Error::NameReference {
            message: message.into(),
        }
    }

    /// A [`Error::Field`] error about the field `path`.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Field {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A [`Error::Selector`] error about `selector`.
    pub fn selector(selector: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Selector {
            selector: selector.into(),
            message: message.into(),
        }
    }

    /// A [`Error::Conflict`] error.
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::Conflict {
            message: message.into(),
        }
    }

    /// A [`Error::Unsupported`] error for `feature`.
    pub fn unsupported(feature: &'static str, message: impl Into<String>) -> Error {
        Error::Unsupported {
            feature,
            message: message.into(),
        }
    }

    /// A [`Error::Helm`] error: the caller's renderer failed for `chart`.
    pub fn helm(chart: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Helm {
            chart: chart.into(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_layers_print_the_chain_and_keep_the_root() {
        let e = Error::load("/k/missing.yaml", "file '/k/missing.yaml' doesn't exist")
            .context("accumulating resources");
        assert_eq!(
            e.to_string(),
            "accumulating resources: file '/k/missing.yaml' doesn't exist"
        );
        assert!(matches!(e.root(), Error::Load { path, .. } if path.ends_with("missing.yaml")));
        assert_eq!(e.kind(), "Load");
        let src = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(src.as_deref(), Some("file '/k/missing.yaml' doesn't exist"));
    }
}
