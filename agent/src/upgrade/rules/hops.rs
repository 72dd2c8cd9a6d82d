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
