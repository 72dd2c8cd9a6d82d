//! The stand-in's rules, as data (`data/rules.yaml` holds the built-in ones).
//!
//! The shape follows the idea of kwok's Stage API (kubernetes-sigs/kwok,
//! `site/content/en/docs/user/stages-configuration.md`): a resource kind, a selector saying
//! which objects a stage applies to, a `delay`, and the status the stage writes next. Here the
//! stages are fixed per kind (pending → ready, or → never ready / failing), and the rules pick
//! the outcome and the delay.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Errors reading rules.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The rules file could not be read.
    #[error("rules file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid rules YAML.
    #[error("rules {origin}: {source}")]
    Parse {
        /// Where the text came from (a file name, or `text`).
        origin: String,
        /// The YAML/serde error (boxed: it is large).
        #[source]
        source: Box<serde_saphyr::Error>,
    },
}

/// Objects that never become ready (their containers cannot start).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NeverReady {
    /// Image prefixes: a pod template with a container (or init container) image starting with
    /// one of them is treated as an image pull that fails.
    #[serde(default)]
    pub images: Vec<String>,
    /// `Kind/name` patterns (`*` matches any run of characters, e.g. `Deployment/*`).
    #[serde(default)]
    pub objects: Vec<String>,
}

/// The conditions an operator writes for one custom resource kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResource {
    /// The kind (any group).
    pub kind: String,
    /// `status.conditions` once ready.
    pub ready: Vec<Condition>,
    /// `status.conditions` when failing (by a [`Rules::failing`] pattern).
    #[serde(default)]
    pub failed: Vec<Condition>,
}

/// One condition an operator writes, less the times the stand-in stamps
/// (`lastTransitionTime`, `observedGeneration`). Every field is required, as in
/// `metav1.Condition` (`k8s.io/apimachinery/pkg/apis/meta/v1/types.go`), whose CRD schemas
/// (Gateway API's, for one) refuse a status without `message`: a rule missing one is a rules
/// error at load, not a status write the server refuses later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// `type`, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `"True"`, `"False"` or `"Unknown"`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message (may be empty, never absent).
    pub message: String,
}

/// Which controllers run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Controllers {
    /// Status of workloads, Jobs, PVCs and the [`Rules::custom_resources`].
    #[serde(default = "yes")]
    pub status: bool,
    /// EndpointSlices for Services with a selector.
    #[serde(default = "yes")]
    pub endpoint_slices: bool,
    /// The `default` ServiceAccount in every namespace.
    #[serde(default = "yes")]
    pub service_accounts: bool,
    /// Garbage collection by ownerReferences (background, foreground, orphan).
    #[serde(default = "yes")]
    pub garbage_collector: bool,
    /// Namespace deletion: content deleted, then `/finalize`.
    #[serde(default = "yes")]
    pub namespaces: bool,
}

fn yes() -> bool {
    true
}

impl Default for Controllers {
    fn default() -> Self {
        Controllers {
            status: true,
            endpoint_slices: true,
            service_accounts: true,
            garbage_collector: true,
            namespaces: true,
        }
    }
}

/// The stand-in's rules. `Rules::default()` is `data/rules.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    /// Milliseconds from a new generation to the ready status.
    pub ready_after_milliseconds: u64,
    /// What never becomes ready.
    #[serde(default)]
    pub never_ready: NeverReady,
    /// `Kind/name` patterns that fail (Deployment: `Progressing=False
    /// ProgressDeadlineExceeded`; Job: `Failed` `BackoffLimitExceeded`; custom resources: their
    /// `failed` conditions).
    #[serde(default)]
    pub failing: Vec<String>,
    /// Namespace patterns the stand-in acts in (empty: every namespace, and cluster-scoped
    /// objects too). With patterns, cluster-scoped objects are left alone, except the matching
    /// Namespaces themselves.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Operator-managed kinds and the conditions their operators write.
    #[serde(default)]
    pub custom_resources: Vec<CustomResource>,
    /// Which controllers run.
    #[serde(default)]
    pub controllers: Controllers,
}

/// The built-in rules file.
pub const DEFAULT_RULES: &str = include_str!("../data/rules.yaml");

impl Default for Rules {
    fn default() -> Self {
        // The built-in file is checked by a unit test; it is not user input.
        Rules::from_yaml(DEFAULT_RULES, "data/rules.yaml").expect("built-in data/rules.yaml")
    }
}

impl Rules {
    /// Parses rules from YAML text; `origin` names the text in errors.
    ///
    /// # Errors
    /// [`RulesError::Parse`] naming `origin` and the field.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Rules, RulesError> {
        serde_saphyr::from_str(text).map_err(|source| RulesError::Parse {
            origin: origin.to_string(),
            source: Box::new(source),
        })
    }

    /// Reads rules from a YAML file.
    ///
    /// # Errors
    /// [`RulesError::Read`] or [`RulesError::Parse`], naming the file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Rules::from_yaml(&text, &path.display().to_string())
    }

    /// The delay as a [`Duration`].
    pub fn ready_after(&self) -> Duration {
        Duration::from_millis(self.ready_after_milliseconds)
    }

    /// The same rules with `delay` as the ready delay.
    pub fn with_delay(mut self, delay: Duration) -> Rules {
        self.ready_after_milliseconds = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// The same rules, with `pattern` (`Kind/name`) added to the never-ready objects.
    pub fn never_ready(mut self, pattern: &str) -> Rules {
        self.never_ready.objects.push(pattern.to_string());
        self
    }

    /// The same rules, with `pattern` (`Kind/name`) added to the failing objects.
    pub fn failing(mut self, pattern: &str) -> Rules {
        self.failing.push(pattern.to_string());
        self
    }

    /// Whether the stand-in acts in namespace `ns` (`""`: a cluster-scoped object).
    pub fn in_scope(&self, ns: &str) -> bool {
        if self.namespaces.is_empty() {
            return true;
        }
        !ns.is_empty() && self.namespaces.iter().any(|p| glob(p, ns))
    }

    /// The outcome the rules give an object of `kind` named `name` whose pod template (if
    /// any) runs `images`.
    pub fn outcome<'a>(
        &self,
        kind: &str,
        name: &str,
        images: impl IntoIterator<Item = &'a str>,
    ) -> Outcome {
        let id = format!("{kind}/{name}");
        if self.failing.iter().any(|p| glob(p, &id)) {
            return Outcome::Failing;
        }
        if self.never_ready.objects.iter().any(|p| glob(p, &id)) {
            return Outcome::NeverReady(None);
        }
        for image in images {
            if self
                .never_ready
                .images
                .iter()
                .any(|p| image.starts_with(p.as_str()))
            {
                return Outcome::NeverReady(Some(image.to_string()));
            }
        }
        Outcome::Ready
    }

    /// The operator conditions for custom resources of `kind`, if it is one.
    pub fn custom(&self, kind: &str) -> Option<&CustomResource> {
        self.custom_resources.iter().find(|c| c.kind == kind)
    }
}

/// What becomes of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ready after the delay.
    Ready,
    /// Never ready; `Some(image)` when an image cannot be pulled.
    NeverReady(Option<String>),
    /// Fails after the delay.
    Failing,
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (including none)
/// and everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rules_parse_and_hold_the_operator_kinds() {
        let r = Rules::default();
        assert_eq!(r.ready_after(), Duration::from_millis(200));
        for k in ["MariaDB", "RabbitmqCluster", "Database", "User", "Grant"] {
            assert!(r.custom(k).is_some(), "{k}");
        }
        assert_eq!(r.never_ready.images, ["registry.invalid/"]);
        assert!(r.controllers.garbage_collector);
    }

    #[test]
    fn globs_match_kind_name_patterns() {
        assert!(glob("Deployment/*", "Deployment/web"));
        assert!(glob("Deployment/web", "Deployment/web"));
        assert!(!glob("Deployment/web", "Deployment/web2"));
        assert!(glob("*-abc12", "e2e-waves-abc12"));
        assert!(!glob("*-abc12", "e2e-waves-abc13"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "acb"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn outcomes_follow_patterns_and_images() {
        let r = Rules::default()
            .never_ready("Deployment/stuck")
            .failing("Job/*");
        assert_eq!(r.outcome("Deployment", "web", ["nginx:1"]), Outcome::Ready);
        assert_eq!(
            r.outcome("Deployment", "stuck", ["nginx:1"]),
            Outcome::NeverReady(None)
        );
        assert_eq!(
            r.outcome("StatefulSet", "db", ["nginx:1", "registry.invalid/x:1"]),
            Outcome::NeverReady(Some("registry.invalid/x:1".into()))
        );
        assert_eq!(r.outcome("Job", "sync", ["x"]), Outcome::Failing);
    }

    #[test]
    fn scope_by_namespace_patterns() {
        let mut r = Rules::default();
        assert!(r.in_scope("") && r.in_scope("any"));
        r.namespaces = vec!["*-k3x9".into()];
        assert!(r.in_scope("sw-apply-k3x9"));
        assert!(!r.in_scope("sw-apply-zzzz"));
        assert!(
            !r.in_scope(""),
            "cluster-scoped objects are out of a scoped stand-in"
        );
    }

    #[test]
    fn bad_rules_name_the_origin_and_the_field() {
        let e = Rules::from_yaml("readyAfterMilliseconds: 1\nnevrReady: {}\n", "my.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.yaml") && e.contains("nevrReady"), "{e}");
    }
}
