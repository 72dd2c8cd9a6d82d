//! `stackwave plan --from --to`: the upgrade as the agent will run it — the changed components
//! in the new revision's waves (the catalog's `wave`/`dependsOn`: keystone first, placement
//! before nova) and, for every `skipped-hops` component, the intermediate revisions (one pin
//! change each) the agent would apply one by one, each health-gated.
//!
//! The agent applies the hop sequences itself when the new revision's `stackwave.yaml` sets
//! `upgrade: {hops: true}` ([`super::gate::apply_hops`]: one health-gated revision per hop,
//! then the commit); without it the agent refuses the commit and the plan shows the
//! revisions to commit instead.

use super::diff::Diff;
use super::rules::hops::{self, Sequence};
use super::{Upgrade, UpgradeError};

/// One wave of the plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanWave {
    /// Wave number.
    pub index: i32,
    /// Components of the wave that change.
    pub components: Vec<String>,
}

/// The plan (`plan -o json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// Old commit.
    pub from: String,
    /// New commit.
    pub to: String,
    /// Waves with changing components, in order.
    pub waves: Vec<PlanWave>,
    /// Hop sequences of components that skip hops.
    pub hops: Vec<Sequence>,
    /// Whether the new revision opts in to the agent applying them (`upgrade: {hops: true}`);
    /// else the agent refuses the commit.
    #[serde(rename = "applyHops")]
    pub apply_hops: bool,
    /// Why changes were told from inputs only (no render), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrendered: Option<String>,
}

/// Components whose inputs differ, told without rendering: chart pin, chart source or image
/// tags, or only on one side.
fn changed_inputs(up: &Upgrade) -> Vec<String> {
    let (a, b) = (&up.from, &up.to);
    let (pa, pb) = (a.chart_pins(), b.chart_pins());
    b.components()
        .into_iter()
        .filter(|c| {
            let key = |r: &super::revision::Revision| {
                r.catalog.get(c).map(|x| {
                    x.chart
                        .version_key
                        .clone()
                        .unwrap_or_else(|| x.chart.name.clone())
                })
            };
            !a.components().contains(c)
                || key(a).and_then(|k| pa.get(&k).cloned())
                    != key(b).and_then(|k| pb.get(&k).cloned())
                || a.image_tags(c) != b.image_tags(c)
                || a.chart_source(c).map(super::rules::charts::describe)
                    != b.chart_source(c).map(super::rules::charts::describe)
        })
        .collect()
}

/// Plans an upgrade from its diff (when rendered) or from its inputs.
///
/// # Errors
/// Planning errors of the new revision (unknown components, cycles) and policy files.
pub fn plan(up: &Upgrade, diff: Result<&Diff, String>) -> Result<Plan, UpgradeError> {
    let waves = crate::reconcile::plan_waves(&up.to.catalog, &up.to.cfg).map_err(|cause| {
        UpgradeError::Config {
            file: format!(
                "stackwave.yaml (commit {})",
                super::revision::short(&up.to.commit)
            ),
            cause: cause.to_string(),
        }
    })?;
    let (changed, unrendered) = match diff {
        Ok(d) => (d.components.iter().map(|c| c.name.clone()).collect(), None),
        Err(why) => (changed_inputs(up), Some(why)),
    };
    let waves = waves
        .into_iter()
        .map(|w| PlanWave {
            index: w.index,
            components: w
                .components
                .into_iter()
                .filter(|c| changed.contains(c))
                .collect(),
        })
        .filter(|w| !w.components.is_empty())
        .collect();
    Ok(Plan {
        from: up.from.commit.clone(),
        to: up.to.commit.clone(),
        waves,
        hops: hops::sequences(&up.from, &up.to)?,
        apply_hops: up.to.upgrade.upgrade.hops,
        unrendered,
    })
}

impl Plan {
    /// The readable plan.
    pub fn text(&self) -> String {
        let mut out = format!(
            "plan {} → {}\n",
            super::revision::short(&self.from),
            super::revision::short(&self.to)
        );
        if let Some(why) = &self.unrendered {
            out.push_str(&format!(
                "(changes told from inputs; not rendered: {why})\n"
            ));
        }
        if self.waves.is_empty() {
            out.push_str("no component changes\n");
        }
        for w in &self.waves {
            out.push_str(&format!("wave {}: {}\n", w.index, w.components.join(", ")));
        }
        if !self.hops.is_empty() {
            out.push_str(if self.apply_hops {
                "the agent applies these hops itself, one health-gated revision each, then the commit (upgrade: {hops: true})\n"
            } else {
                "the agent refuses this commit: commit these revisions one by one, or set `upgrade: {hops: true}` in stackwave.yaml to have the agent apply them\n"
            });
        }
        for s in &self.hops {
            out.push_str(&format!(
                "hops {} ({}): {}\n",
                s.component,
                s.pin,
                s.versions.join(" → ")
            ));
            for (i, v) in s.versions.iter().skip(1).enumerate() {
                out.push_str(&format!(
                    "  revision {}: set {} to {v}, apply, wait healthy\n",
                    i + 1,
                    s.pin
                ));
            }
        }
        out
    }
}
