//! `chart-downgrade` (error), `chart-rebuild` (info) and `chart-source-switch` (error): chart
//! pins (`helm-chart-versions.yaml`, the operator's over the base's) and chart sources (the
//! catalog entry's repository, OCI registry, Git repository and chart name; a repository may
//! carry its own `components/*.yaml`) compared between the two revisions.

use super::version::Version;
use crate::component::ChartSource;
use crate::upgrade::check::{Context, Finding, Severity};
use crate::upgrade::UpgradeError;
use std::cmp::Ordering;

/// `policies/chart-sources.yaml`.
#[derive(Debug, serde::Deserialize)]
pub struct ChartSwitches {
    /// Per-component notes.
    pub switches: Vec<Switch>,
    /// What to do for any other component.
    pub default: String,
}

/// What must happen before one component's chart source changes.
#[derive(Debug, serde::Deserialize)]
pub struct Switch {
    /// Component.
    pub component: String,
    /// The step the release notes require first.
    pub first: String,
    /// The release note (path in the Genestack repository).
    pub source: String,
}

/// The shipped `policies/chart-sources.yaml`.
///
/// # Errors
/// [`UpgradeError::Policy`] when malformed.
pub fn switches() -> Result<ChartSwitches, UpgradeError> {
    super::policy(
        "chart-sources.yaml",
        include_str!("../../../../policies/chart-sources.yaml"),
    )
}

/// A chart source as one line: `repo https://…/memcached`, `oci oci://…/name`, `git url//path`.
pub fn describe(c: &ChartSource) -> String {
    if let Some(r) = &c.repo {
        format!("chart {} from {r}", c.name)
    } else if let Some(o) = &c.oci {
        format!("chart {} from {o}", c.name)
    } else if let Some(g) = &c.git {
        format!("chart {} from {}", c.name, g.url)
    } else {
        format!("chart {} from the local charts directory", c.name)
    }
}

fn same_source(a: &ChartSource, b: &ChartSource) -> bool {
    let git = |c: &ChartSource| c.git.as_ref().map(|g| (g.url.clone(), g.path.clone()));
    a.name == b.name && a.repo == b.repo && a.oci == b.oci && git(a) == git(b)
}

/// Adds the chart findings.
///
/// # Errors
/// A malformed `policies/chart-sources.yaml`.
pub fn check(ctx: &Context, out: &mut Vec<Finding>) -> Result<(), UpgradeError> {
    let (from, to) = (&ctx.up.from, &ctx.up.to);
    let (old, new) = (from.chart_pins(), to.chart_pins());
    for (key, v_new) in &new {
        let Some(v_old) = old.get(key) else { continue };
        let (Some(a), Some(b)) = (Version::parse(v_old), Version::parse(v_new)) else {
            continue;
        };
        match b.precedence(&a) {
            Ordering::Less => out.push(Finding::new(
                "chart-downgrade",
                Severity::Error,
                key,
                format!("chart pin {key} moves down: {v_old} → {v_new} (helm-chart-versions.yaml)"),
            )),
            Ordering::Equal if a.build() != b.build() => out.push(Finding::new(
                "chart-rebuild",
                Severity::Info,
                key,
                format!(
                    "chart {key} {v_old} → {v_new}: same version, another build ({} → {})",
                    a.build(),
                    b.build()
                ),
            )),
            _ => {}
        }
    }
    let sw = switches()?;
    for c in &to.cfg.components {
        let (Some(a), Some(b)) = (from.chart_source(c), to.chart_source(c)) else {
            continue;
        };
        if !from.cfg.components.contains(c) || same_source(a, b) {
            continue;
        }
        let (first, source) = sw
            .switches
            .iter()
            .find(|s| &s.component == c)
            .map(|s| (s.first.clone(), format!(" ({})", s.source)))
            .unwrap_or_else(|| (sw.default.clone(), String::new()));
        out.push(Finding::new(
            "chart-source-switch",
            Severity::Error,
            c,
            format!(
                "{c} switches from {} to {}; first {first}{source}",
                describe(a),
                describe(b)
            ),
        ));
    }
    Ok(())
}
