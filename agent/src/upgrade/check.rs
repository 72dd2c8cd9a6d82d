//! Policy findings of an upgrade (`stackwave check --from --to`): every rule of [`super::rules`]
//! runs; rules that need a render (`job-replace`) or a cluster (`secret-missing`) report an
//! `info` finding saying why they were skipped when they cannot run, and the others still do.
//! Findings the new revision's `stackwave.yaml` acknowledges (`acknowledge: [{rule,
//! component}]`) are kept, marked, and never count toward the exit code or the agent's gate.

use super::diff::Diff;
use super::{Side, Upgrade};
use std::collections::BTreeSet;

/// How bad a finding is (ordered: `Info < Warning < Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs a look.
    Warning,
    /// Refuses the change.
    Error,
}

impl Severity {
    /// `info`, `warning`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Rule id (`chart-downgrade`, `image-downgrade`, …).
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// The component it is about.
    pub component: String,
    /// What and why, with what to do.
    pub message: String,
    /// Acknowledged by the new revision's `stackwave.yaml`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub acknowledged: bool,
}

impl Finding {
    /// A finding (not acknowledged).
    pub fn new(rule: &str, severity: Severity, component: &str, message: String) -> Finding {
        Finding {
            rule: rule.to_string(),
            severity,
            component: component.to_string(),
            message,
            acknowledged: false,
        }
    }
}

/// `check -o json`: `{"from", "to", "findings": [...]}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Old commit.
    pub from: String,
    /// New commit.
    pub to: String,
    /// Findings, errors first.
    pub findings: Vec<Finding>,
}

/// What the rules read: both revisions, their renders when they could be had, and the
/// cluster's Secrets when a cluster was given.
pub struct Context<'a> {
    /// Both revisions.
    pub up: &'a Upgrade,
    /// Both renders and their diff, or why there are none.
    pub rendered: Result<(&'a Side, &'a Side, &'a Diff), String>,
    /// The Secrets that exist in the cluster, `(namespace, name)`; `None` offline.
    pub live_secrets: Option<&'a BTreeSet<(String, String)>>,
}

/// Runs every rule.
///
/// # Errors
/// [`super::UpgradeError::Policy`] when a shipped policy data file is malformed.
pub fn check(ctx: &Context) -> Result<Report, super::UpgradeError> {
    let mut findings = super::rules::run(ctx)?;
    for f in findings.iter_mut() {
        f.acknowledged = ctx
            .up
            .to
            .upgrade
            .acknowledge
            .iter()
            .any(|a| a.rule == f.rule && a.component == f.component);
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule.cmp(&b.rule))
            .then_with(|| a.component.cmp(&b.component))
    });
    Ok(Report {
        from: ctx.up.from.commit.clone(),
        to: ctx.up.to.commit.clone(),
        findings,
    })
}

impl Report {
    /// Findings at or above `fail_on` that are not acknowledged.
    pub fn failing(&self, fail_on: Severity) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity >= fail_on && !f.acknowledged)
            .collect()
    }

    /// `check`'s exit code: 1 when something is at or above `fail_on`, else 0.
    pub fn exit_code(&self, fail_on: Severity) -> i32 {
        i32::from(!self.failing(fail_on).is_empty())
    }

    /// The readable report: a count line, then one line per finding.
    pub fn text(&self) -> String {
        let n = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        let mut out = format!(
            "check {} → {}: {} error(s), {} warning(s), {} info\n",
            super::revision::short(&self.from),
            super::revision::short(&self.to),
            n(Severity::Error),
            n(Severity::Warning),
            n(Severity::Info)
        );
        for f in &self.findings {
            out.push_str(&format!(
                "{:<7} {:<22} {:<18} {}{}\n",
                f.severity.as_str(),
                f.rule,
                f.component,
                f.message,
                if f.acknowledged {
                    " (acknowledged)"
                } else {
                    ""
                }
            ));
        }
        out
    }
}
