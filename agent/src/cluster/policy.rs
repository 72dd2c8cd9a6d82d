//! Policy files (`policies/*.yaml`): the one loader every policy goes through.
//!
//! A policy decides what may be pruned, what counts as healthy, which drift is ignored and
//! when an object may be replaced. A malformed file therefore never turns into "no rules":
//! [`load`] returns a [`PolicyError`] naming the file and (for YAML syntax) the line and
//! column, and [`Policies::load`] — what [`crate::reconcile::Agent::new`] calls — makes the
//! agent refuse to start.

use super::drift::IgnoreRule;
use super::health::Rule;
use super::inventory::Protect;
use super::ImmutableRule;
use serde::de::DeserializeOwned;

/// Why a policy file could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file is not valid YAML.
    #[error("{file}:{line}:{col}: malformed policy YAML: {message}")]
    Yaml {
        /// The policy file (`policies/protect.yaml`).
        file: String,
        /// 1-based line, from the YAML parser.
        line: usize,
        /// 1-based column, from the YAML parser.
        col: usize,
        /// The parser's message.
        message: String,
    },
    /// The YAML is well formed but not the policy's shape (missing or unknown field, wrong type).
    #[error("{file}: not a valid policy file: {message}")]
    Shape {
        /// The policy file.
        file: String,
        /// serde's message (names the field).
        message: String,
    },
}

/// Parses one policy file's text into its typed form `T`.
///
/// # Errors
/// [`PolicyError::Yaml`] with the parser's line and column, or [`PolicyError::Shape`].
pub fn load<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, PolicyError> {
    let v = kustomize_rs::yaml::parse_one(text).map_err(|e| PolicyError::Yaml {
        file: file.to_string(),
        line: e.line,
        col: e.col,
        message: e.message,
    })?;
    serde_json::from_value(crate::component::to_json(&v)).map_err(|e| PolicyError::Shape {
        file: file.to_string(),
        message: e.to_string(),
    })
}

/// The text of one policy file and the name errors use for it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyText<'a> {
    /// Its name in errors (the repository path, `policies/protect.yaml`).
    pub file: &'a str,
    /// Its YAML.
    pub text: &'a str,
}

macro_rules! shipped {
    ($name:literal) => {
        PolicyText {
            file: concat!("policies/", $name),
            text: include_str!(concat!("../../../policies/", $name)),
        }
    };
}

/// The texts of every policy file.
#[derive(Debug, Clone, Copy)]
pub struct PolicyTexts<'a> {
    /// `policies/health.yaml`.
    pub health: PolicyText<'a>,
    /// `policies/protect.yaml`.
    pub protect: PolicyText<'a>,
    /// `policies/drift-ignore.yaml`.
    pub drift_ignore: PolicyText<'a>,
    /// `policies/immutable-errors.yaml`.
    pub immutable: PolicyText<'a>,
}

impl PolicyTexts<'static> {
    /// The files shipped in `policies/` (compiled in).
    pub const SHIPPED: PolicyTexts<'static> = PolicyTexts {
        health: shipped!("health.yaml"),
        protect: shipped!("protect.yaml"),
        drift_ignore: shipped!("drift-ignore.yaml"),
        immutable: shipped!("immutable-errors.yaml"),
    };
}

#[derive(serde::Deserialize)]
struct HealthFile {
    rules: Vec<Rule>,
}

#[derive(serde::Deserialize)]
struct ProtectFile {
    protect: Vec<Protect>,
}

#[derive(serde::Deserialize)]
struct IgnoreFile {
    ignore: Vec<IgnoreRule>,
}

#[derive(serde::Deserialize)]
struct ImmutableFile {
    immutable: Vec<ImmutableRule>,
}

/// Every policy, parsed.
#[derive(Debug, Clone)]
pub struct Policies {
    /// Health rules.
    pub health: Vec<Rule>,
    /// Kinds never pruned.
    pub protect: Vec<Protect>,
    /// Drift ignore rules.
    pub ignore: Vec<IgnoreRule>,
    /// Immutable-field cause patterns.
    pub immutable: Vec<ImmutableRule>,
}

impl Policies {
    /// Parses every policy text.
    ///
    /// # Errors
    /// The first malformed file, as [`load`] reports it.
    pub fn load(t: &PolicyTexts<'_>) -> Result<Policies, PolicyError> {
        Ok(Policies {
            health: health(t.health)?,
            protect: protect(t.protect)?,
            ignore: ignore(t.drift_ignore)?,
            immutable: immutable(t.immutable)?,
        })
    }

    /// The shipped policies ([`PolicyTexts::SHIPPED`]).
    ///
    /// # Errors
    /// As [`Policies::load`].
    pub fn shipped() -> Result<Policies, PolicyError> {
        Policies::load(&PolicyTexts::SHIPPED)
    }
}

/// Health rules from a `health.yaml` text.
///
/// # Errors
/// As [`load`].
pub fn health(t: PolicyText<'_>) -> Result<Vec<Rule>, PolicyError> {
    load::<HealthFile>(t.file, t.text).map(|f| f.rules)
}

/// Protection rules from a `protect.yaml` text.
///
/// # Errors
/// As [`load`].
pub fn protect(t: PolicyText<'_>) -> Result<Vec<Protect>, PolicyError> {
    load::<ProtectFile>(t.file, t.text).map(|f| f.protect)
}

/// Drift ignore rules from a `drift-ignore.yaml` text.
///
/// # Errors
/// As [`load`].
pub fn ignore(t: PolicyText<'_>) -> Result<Vec<IgnoreRule>, PolicyError> {
    load::<IgnoreFile>(t.file, t.text).map(|f| f.ignore)
}

/// Immutable-field patterns from an `immutable-errors.yaml` text.
///
/// # Errors
/// As [`load`].
pub fn immutable(t: PolicyText<'_>) -> Result<Vec<ImmutableRule>, PolicyError> {
    load::<ImmutableFile>(t.file, t.text).map(|f| f.immutable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policies_load() {
        let p = Policies::shipped().unwrap();
        assert!(!p.protect.is_empty() && !p.health.is_empty() && !p.ignore.is_empty());
        assert!(!p.immutable.is_empty());
    }

    #[test]
    fn malformed_protect_names_file_and_line() {
        let t = PolicyTexts {
            protect: PolicyText {
                file: "policies/protect.yaml",
                text: "protect:\n  - group: mariadb.mmontes.io\n    kind: [Database\n",
            },
            ..PolicyTexts::SHIPPED
        };
        let e = Policies::load(&t).unwrap_err();
        let PolicyError::Yaml { file, line, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(file, "policies/protect.yaml");
        assert!(*line >= 3, "{e}");
        assert!(e.to_string().starts_with("policies/protect.yaml:"), "{e}");
    }

    #[test]
    fn wrong_shape_is_an_error_not_no_rules() {
        let e = protect(PolicyText {
            file: "policies/protect.yaml",
            text: "protect:\n  - group: x\n",
        })
        .unwrap_err();
        assert!(matches!(e, PolicyError::Shape { .. }), "{e}");
        assert!(e.to_string().contains("kind"), "{e}");
    }
}
