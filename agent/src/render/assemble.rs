//! The final assembly `helm template` does on rendered templates (Helm v3.17
//! `pkg/action/action.go` `renderResources`, `pkg/releaseutil/manifest_sorter.go`
//! `SortManifests`, `kind_sorter.go`):
//!
//! - `NOTES.txt` outputs are dropped; template paths are visited in bytewise order; partials
//!   (`_*`) and blank outputs are skipped;
//! - each output is split on `(?:^|\s*\n)---\s*` after `strings.TrimSpace` (RE2 `\s` =
//!   `[\t\n\f\r ]`), empty pieces dropped, each piece trimmed;
//! - a piece with a `helm.sh/hook` annotation is a hook (dropped entirely when it names an
//!   unknown event); the rest are stable-sorted by Helm's install order of kinds, unknown kinds
//!   last by kind name.

use kustomize_rs::yaml::{parse_one, Value};
use regex::Regex;
use std::sync::OnceLock;

/// Helm's `releaseutil.InstallOrder` (Helm v4's list; v3.17 lacks the two webhook kinds, which
/// no Genestack chart renders).
pub const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Helm's hook events; a hook naming any other is dropped.
pub const HOOK_EVENTS: &[&str] = &[
    "pre-install",
    "post-install",
    "pre-delete",
    "post-delete",
    "pre-upgrade",
    "post-upgrade",
    "pre-rollback",
    "post-rollback",
    "test",
    "test-success",
];

/// One manifest document.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Template path (`<chart>/templates/...`).
    pub path: String,
    /// The document text (trimmed).
    pub content: String,
    /// `kind` ("" when absent).
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// Hook events (empty for non-hooks).
    pub hook_events: Vec<String>,
    /// `helm.sh/hook-weight` (0 when absent or invalid).
    pub hook_weight: i64,
}

/// Go's `strings.TrimSpace` (Unicode white space).
pub fn go_trim_space(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace())
}

fn separator() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"(?:^|[\t\n\x0C\r ]*\n)---[\t\n\x0C\r ]*").expect("valid regex"))
}

/// `releaseutil.SplitManifests`, as a list.
pub fn split_manifests(big: &str) -> Vec<String> {
    separator()
        .split(go_trim_space(big))
        .filter(|d| !d.is_empty())
        .map(|d| go_trim_space(d).to_string())
        .collect()
}

fn go_atoi(s: &str) -> Option<i64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Rank for the stable kind sort: known kinds by install order, unknown after, by name.
fn rank(kind: &str) -> (usize, usize, String) {
    match INSTALL_ORDER.iter().position(|k| *k == kind) {
        Some(i) => (0, i, String::new()),
        None => (1, 0, kind.to_string()),
    }
}

/// Stable sort by Helm's kind order.
pub fn sort_by_kind(items: &mut [Manifest]) {
    items.sort_by_cached_key(|m| rank(&m.kind));
}

/// An assembly failure (a rendered document that is not YAML).
#[derive(Debug, thiserror::Error)]
#[error("YAML parse error on {path}: {cause}")]
pub struct AssembleError {
    /// Template path.
    pub path: String,
    /// Parser message.
    pub cause: String,
}

/// Splits rendered templates (path → text) into (hooks, sorted manifests).
///
/// # Errors
/// A document that is not valid YAML.
pub fn sort_manifests(
    files: &[(String, String)],
) -> Result<(Vec<Manifest>, Vec<Manifest>), AssembleError> {
    let mut files: Vec<&(String, String)> = files
        .iter()
        .filter(|(p, _)| !p.ends_with("NOTES.txt"))
        .collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let (mut hooks, mut generic) = (Vec::new(), Vec::new());
    for (path, content) in files {
        let base = path.rsplit('/').next().unwrap_or(path);
        if base.starts_with('_') || go_trim_space(content).is_empty() {
            continue;
        }
        for doc in split_manifests(content) {
            let head = parse_one(&doc).map_err(|e| AssembleError {
                path: path.clone(),
                cause: e.to_string(),
            })?;
            let s = |p: &[&str]| head.str_at(p).unwrap_or("").to_string();
            let mut m = Manifest {
                path: path.clone(),
                content: doc,
                kind: s(&["kind"]),
                name: s(&["metadata", "name"]),
                hook_events: Vec::new(),
                hook_weight: 0,
            };
            let ann = head.get_path(&["metadata", "annotations"]);
            let hook = ann
                .and_then(|a| a.get("helm.sh/hook"))
                .and_then(Value::scalar_string);
            let Some(hook) = hook else {
                generic.push(m);
                continue;
            };
            let events: Vec<String> = hook.split(',').map(|e| e.trim().to_lowercase()).collect();
            if events.iter().any(|e| !HOOK_EVENTS.contains(&e.as_str())) {
                continue;
            }
            m.hook_weight = ann
                .and_then(|a| a.get("helm.sh/hook-weight"))
                .and_then(Value::scalar_string)
                .and_then(|w| go_atoi(&w))
                .unwrap_or(0);
            m.hook_events = events;
            hooks.push(m);
        }
    }
    sort_by_kind(&mut generic);
    Ok((hooks, generic))
}

/// The post-renderer's input: `---\n# Source: <path>\n<doc>\n` per manifest.
pub fn source_stream(items: &[Manifest]) -> String {
    let mut s = String::new();
    for m in items {
        s.push_str("---\n# Source: ");
        s.push_str(&m.path);
        s.push('\n');
        s.push_str(&m.content);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_helm_and_sorts_by_kind() {
        // Blank lines between two separators leave a piece starting with `---` (a Helm quirk
        // the corpus README documents and the goldens keep).
        assert_eq!(
            split_manifests("a: 1\n---\nb: 2\n---   \n\n---\nc: 3"),
            vec!["a: 1", "b: 2", "---\nc: 3"]
        );
        assert_eq!(
            split_manifests("a: 1\n---\nb: 2\n---\nc: 3\n"),
            vec!["a: 1", "b: 2", "c: 3"]
        );
        let files = vec![
            ("c/templates/z.yaml".to_string(), "kind: Deployment\nmetadata: {name: d}\n---\nkind: Widget\nmetadata: {name: w}".to_string()),
            ("c/templates/a.yaml".to_string(), "kind: Service\nmetadata: {name: s}".to_string()),
            ("c/templates/_h.tpl".to_string(), "kind: Secret".to_string()),
            ("c/templates/NOTES.txt".to_string(), "hi".to_string()),
            ("c/templates/job.yaml".to_string(), "kind: Job\nmetadata:\n  name: j\n  annotations:\n    helm.sh/hook: post-install,Post-Upgrade\n    helm.sh/hook-weight: \"-5\"".to_string()),
            ("c/templates/bad.yaml".to_string(), "kind: Job\nmetadata:\n  name: b\n  annotations:\n    helm.sh/hook: crd-install".to_string()),
        ];
        let (hooks, manifests) = sort_manifests(&files).unwrap();
        let kinds: Vec<&str> = manifests.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["Service", "Deployment", "Widget"]);
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].hook_events, ["post-install", "post-upgrade"]);
        assert_eq!(hooks[0].hook_weight, -5);
    }
}
