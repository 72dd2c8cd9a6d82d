//! `skipped-hops` (error): an operator or platform component whose pin jumps over a version its
//! runbook requires in between. The paths are data (`policies/hops.yaml`, each with the
//! runbooks it was transcribed from); [`sequences`] gives the intermediate versions `plan`
//! lists.

use super::version::Version;
use crate::upgrade::check::{Context, Finding, Severity};
use crate::upgrade::revision::Revision;
use crate::upgrade::UpgradeError;
use std::cmp::Ordering;

/// `policies/hops.yaml`.
#[derive(Debug, serde::Deserialize)]
pub struct Hops {
    /// The paths.
    pub paths: Vec<HopPath>,
}

/// Where a component's version is pinned.
#[derive(Debug, serde::Deserialize)]
pub struct Pin {
    /// `charts.KEY` of `helm-chart-versions.yaml`.
    #[serde(default)]
    pub chart: Option<String>,
    /// Files tried in order (the tree's, then the base's).
    #[serde(default)]
    pub files: Vec<String>,
    /// A regular expression whose first capture is the version.
    #[serde(default)]
    pub pattern: Option<String>,
}

/// One component's required path.
#[derive(Debug, serde::Deserialize)]
pub struct HopPath {
    /// Component.
    pub component: String,
    /// Where its version is pinned.
    pub pin: Pin,
    /// The versions to pass through, ascending.
    pub hops: Vec<String>,
    /// What the runbooks add.
    #[serde(default)]
    pub note: String,
    /// The runbooks (paths in the Genestack repository).
    pub sources: Vec<String>,
}

/// The shipped `policies/hops.yaml`.
///
/// # Errors
/// [`UpgradeError::Policy`]: malformed, a bad pattern, or hops that are not ascending versions.
pub fn hops() -> Result<Hops, UpgradeError> {
    let h: Hops = super::policy("hops.yaml", include_str!("../../../../policies/hops.yaml"))?;
    for p in &h.paths {
        let err = |cause: String| UpgradeError::Policy {
            file: "policies/hops.yaml".into(),
            cause: format!("component {}: {cause}", p.component),
        };
        if let Some(re) = &p.pin.pattern {
            regex::Regex::new(re).map_err(|e| err(e.to_string()))?;
        }
        let vs: Option<Vec<Version>> = p.hops.iter().map(|v| Version::parse(v)).collect();
        let vs = vs.ok_or_else(|| err("a hop is not a version".into()))?;
        if vs
            .windows(2)
            .any(|w| w[0].precedence(&w[1]) != Ordering::Less)
        {
            return Err(err("hops are not ascending".into()));
        }
    }
    Ok(h)
}

impl HopPath {
    /// The component's version in a revision, if pinned there.
    pub fn version(&self, rev: &Revision) -> Option<String> {
        if let Some(k) = &self.pin.chart {
            return rev.chart_pins().get(k).cloned();
        }
        let re = regex::Regex::new(self.pin.pattern.as_deref()?).ok()?;
        let text = self.pin.files.iter().find_map(|f| rev.file(f))?;
        Some(re.captures(&text)?.get(1)?.as_str().to_string())
    }

    /// The hops strictly between `from` and `to` (empty unless it is an upgrade that skips
    /// some).
    pub fn skipped(&self, from: &str, to: &str) -> Vec<String> {
        let (Some(a), Some(b)) = (Version::parse(from), Version::parse(to)) else {
            return Vec::new();
        };
        self.hops
            .iter()
            .filter(|h| {
                Version::parse(h).is_some_and(|h| {
                    h.precedence(&a) == Ordering::Greater && h.precedence(&b) == Ordering::Less
                })
            })
            .cloned()
            .collect()
    }
}

/// Why a hop's pin cannot be moved in a tree ([`HopPath::set_pin`]).
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The file holding the pin cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A pattern pin is in none of its files in the repository's tree (only the Genestack base
    /// has it, which a hop revision cannot change).
    #[error("component {component}: no file of {files:?} in the repository pins its version (the pattern matches nowhere there); a hop revision changes the repository only")]
    NotInTree {
        /// The component.
        component: String,
        /// The files tried.
        files: Vec<String>,
    },
}

impl HopPath {
    /// Moves the component's pin in the repository tree `tree` to `version`: `charts.KEY` of
    /// the tree's `helm-chart-versions.yaml` (written when absent: the operator's pins win
    /// over the base's), or the pattern's first capture in the first of `files` in the tree
    /// where it matches.
    ///
    /// # Errors
    /// [`PinError`]: the file cannot be read or written; a pattern pin only the base holds.
    pub fn set_pin(&self, tree: &std::path::Path, version: &str) -> Result<(), PinError> {
        let io = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| PinError::Io { path, source }
        };
        if let Some(key) = &self.pin.chart {
            let path = tree.join("helm-chart-versions.yaml");
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(io(&path)(e)),
            };
            return std::fs::write(&path, set_chart_pin(&text, key, version)).map_err(io(&path));
        }
        let re = self
            .pin
            .pattern
            .as_deref()
            .and_then(|p| regex::Regex::new(p).ok());
        for f in &self.pin.files {
            let path = tree.join(f);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Some(m) = re
                .as_ref()
                .and_then(|re| re.captures(&text))
                .and_then(|c| c.get(1))
            else {
                continue;
            };
            let edited = format!("{}{version}{}", &text[..m.start()], &text[m.end()..]);
            return std::fs::write(&path, edited).map_err(io(&path));
        }
        Err(PinError::NotInTree {
            component: self.component.clone(),
            files: self.pin.files.clone(),
        })
    }
}

/// `helm-chart-versions.yaml` text with `charts.KEY` set to `version`, edited as text so
/// every other line (comments, the other pins, their quoting) stays as it was: the first
/// `  KEY: …` line under `charts:` gets the new value, else one is added under `charts:`
/// (and `charts:` itself when absent). The value is written double-quoted (a string, never
/// a YAML number).
fn set_chart_pin(text: &str, key: &str, version: &str) -> String {
    let line = format!("{key}: \"{version}\"");
    let mut out: Vec<String> = Vec::new();
    let (mut in_charts, mut done) = (false, false);
    for l in text.lines() {
        let indented = l.starts_with(' ') || l.starts_with('\t');
        if !done && in_charts && indented {
            let t = l.trim_start();
            if t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
            {
                let indent = &l[..l.len() - t.len()];
                out.push(format!("{indent}{line}"));
                done = true;
                continue;
            }
        }
        if !indented && !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            if in_charts && !done {
                out.push(format!("  {line}"));
                done = true;
            }
            in_charts = l.trim_end() == "charts:";
        }
        out.push(l.to_string());
    }
    if !done {
        if !in_charts {
            out.push("charts:".into());
        }
        out.push(format!("  {line}"));
    }
    out.join("\n") + "\n"
}

/// One component's hop sequence: `from`, the skipped hops, `to`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sequence {
    /// Component.
    pub component: String,
    /// Where the pin lives (`helm-chart-versions.yaml charts.longhorn`).
    pub pin: String,
    /// Versions in order, the old first and the new last.
    pub versions: Vec<String>,
    /// The runbooks.
    pub sources: Vec<String>,
}

/// The hop sequences of every component whose change skips hops.
///
/// # Errors
/// A malformed `policies/hops.yaml`.
pub fn sequences(from: &Revision, to: &Revision) -> Result<Vec<Sequence>, UpgradeError> {
    let mut out = Vec::new();
    for p in hops()?.paths {
        let (Some(a), Some(b)) = (p.version(from), p.version(to)) else {
            continue;
        };
        let skipped = p.skipped(&a, &b);
        if skipped.is_empty() {
            continue;
        }
        let pin = match &p.pin.chart {
            Some(k) => format!("helm-chart-versions.yaml charts.{k}"),
            None => p.pin.files.first().cloned().unwrap_or_default(),
        };
        let mut versions = vec![a];
        versions.extend(skipped);
        versions.push(b);
        out.push(Sequence {
            component: p.component.clone(),
            pin,
            versions,
            sources: p.sources.clone(),
        });
    }
    Ok(out)
}

/// Adds the `skipped-hops` findings.
///
/// # Errors
/// A malformed `policies/hops.yaml`.
pub fn check(ctx: &Context, out: &mut Vec<Finding>) -> Result<(), UpgradeError> {
    let notes = hops()?;
    for s in sequences(&ctx.up.from, &ctx.up.to)? {
        let note = notes
            .paths
            .iter()
            .find(|p| p.component == s.component)
            .map(|p| p.note.clone())
            .unwrap_or_default();
        out.push(Finding::new(
            "skipped-hops",
            Severity::Error,
            &s.component,
            format!(
                "{} jumps {} → {} over required hop(s) {}; upgrade {} one hop per revision. {note} (runbooks: {})",
                s.component,
                s.versions[0],
                s.versions[s.versions.len() - 1],
                s.versions[1..s.versions.len() - 1].join(", "),
                s.versions.join(" → "),
                s.sources.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(component: &str) -> HopPath {
        hops()
            .unwrap()
            .paths
            .into_iter()
            .find(|p| p.component == component)
            .unwrap()
    }

    #[test]
    fn set_pin_moves_one_pin_in_the_tree_and_keeps_the_others() {
        let tree = std::env::temp_dir().join(format!("sw-set-pin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(&tree).unwrap();
        let m = path_of("mariadb-operator");
        // No operator pins yet: the file is written (the operator's pins win over the base's).
        m.set_pin(&tree, "0.37.1").unwrap();
        let pins = |t: &std::path::Path| read_pin_file(&t.join("helm-chart-versions.yaml"));
        assert_eq!(pins(&tree), [("mariadb-operator".into(), "0.37.1".into())]);
        std::fs::write(
            tree.join("helm-chart-versions.yaml"),
            "# pins\ncharts:\n  longhorn: 1.9.1\n  mariadb-operator-crds: 0.37.1\n  mariadb-operator: 0.37.1\n",
        )
        .unwrap();
        m.set_pin(&tree, "0.38.1").unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.join("helm-chart-versions.yaml")).unwrap(),
            "# pins\ncharts:\n  longhorn: 1.9.1\n  mariadb-operator-crds: 0.37.1\n  mariadb-operator: \"0.38.1\"\n",
            "only that line changes"
        );
        assert_eq!(
            pins(&tree),
            [
                ("longhorn".into(), "1.9.1".into()),
                ("mariadb-operator-crds".into(), "0.37.1".into()),
                ("mariadb-operator".into(), "0.38.1".into())
            ]
        );
        // A pattern pin: the first capture replaced in the tree's file, the rest kept.
        let r = path_of("rabbitmq-operator");
        let err = r.set_pin(&tree, "2.17.1").unwrap_err();
        assert!(matches!(err, PinError::NotInTree { .. }), "{err}");
        let k = tree.join("kustomize/rabbitmq-operator/base/kustomization.yaml");
        std::fs::create_dir_all(k.parent().unwrap()).unwrap();
        std::fs::write(&k, "resources:\n  - https://github.com/rabbitmq/cluster-operator/releases/download/v2.17.0/cluster-operator.yml\n").unwrap();
        r.set_pin(&tree, "2.17.1").unwrap();
        assert_eq!(
            std::fs::read_to_string(&k).unwrap(),
            "resources:\n  - https://github.com/rabbitmq/cluster-operator/releases/download/v2.17.1/cluster-operator.yml\n"
        );
        let _ = std::fs::remove_dir_all(&tree);
    }

    fn read_pin_file(p: &std::path::Path) -> Vec<(String, String)> {
        let doc = crate::component::to_json(
            &kustomize_rs::yaml::parse_one(&std::fs::read_to_string(p).unwrap()).unwrap(),
        );
        doc["charts"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    }
}
