//! The agent's pre-apply gate: every new commit is checked against the last applied one
//! ([`super::check`], offline: inputs only, no second render) before it is applied. A commit
//! with error findings its `stackwave.yaml` does not acknowledge is refused — recorded as a
//! `refused` revision and reported, the last good revision staying applied.
//!
//! The last applied checkout is kept under `<cache>/upgrade-gate/<checkout key>/last-good` (with its commit
//! in `last-good.commit`) once a commit applies healthy; relative paths in its
//! `stackwave.yaml` resolve against the agent's checkout directory, as the agent's own
//! render does. Before the first applied commit there is nothing to compare and every commit
//! passes. A gate that cannot run (an unreadable `stackwave.yaml`, an unreachable pinned
//! base) lets the commit through to the agent's render, which reports that failure itself.
//!
//! Hop sequences: with `upgrade: {hops: true}` in the new commit's `stackwave.yaml`, a commit
//! whose only unacknowledged errors are `skipped-hops` is not refused; [`apply_hops`] applies
//! each intermediate version (the last applied tree with one pin moved, its own health-gated
//! revision of kind `hop`), then the commit.

use super::check::{self, Context, Severity};
use super::revision::Revision;
use super::Upgrade;
use crate::reconcile::{Agent, Outcome, Progress};
use crate::record::RevisionKind;
use crate::source::Commit;
use std::path::{Path, PathBuf};

/// The gate's directory for the agent whose checkout is `checkout`:
/// `<cache>/upgrade-gate/<sha256 of the checkout path>` (agents sharing a cache stay apart).
fn dir(cache: &Path, checkout: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let key: String = Sha256::digest(checkout.display().to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    cache.join("upgrade-gate").join(key)
}

/// What the gate decides about a new commit.
#[derive(Debug)]
pub enum Verdict {
    /// Apply it.
    Pass,
    /// Refuse it: its unacknowledged error findings against the last applied commit.
    Refuse(String),
    /// Its only unacknowledged errors are `skipped-hops` and its `stackwave.yaml` opts in
    /// (`upgrade: {hops: true}`): apply these hops first ([`apply_hops`]), then the commit.
    Hops(Vec<Hop>),
}

/// One hop: a component's pin moved to the next version of its upgrade path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The component.
    pub component: String,
    /// Its version before the hop.
    pub from: String,
    /// Its version after the hop.
    pub to: String,
}

/// Checks the commit in `checkout` against the last applied commit ([`Verdict`]). Before the
/// first applied commit, and when the gate cannot run, it passes.
pub fn decide(cache: &Path, checkout: &Path, commit: &str) -> Verdict {
    let base = dir(cache, checkout);
    let last = base.join("last-good");
    let Ok(last_commit) = std::fs::read_to_string(base.join("last-good.commit")) else {
        return Verdict::Pass;
    };
    if last_commit.trim() == commit || !last.is_dir() {
        return Verdict::Pass;
    }
    let Ok(from) = Revision::from_tree(last_commit.trim(), &last, Some(checkout), cache, false)
    else {
        return Verdict::Pass;
    };
    let Ok(to) = Revision::from_tree(commit, checkout, Some(checkout), cache, false) else {
        return Verdict::Pass;
    };
    let up = Upgrade { from, to };
    let Ok(report) = check::check(&Context {
        up: &up,
        rendered: Err("the agent's gate checks inputs only".into()),
        live_secrets: None,
    }) else {
        return Verdict::Pass;
    };
    let failing = report.failing(Severity::Error);
    if failing.is_empty() {
        return Verdict::Pass;
    }
    let hopping = up.to.upgrade.upgrade.hops;
    if hopping && failing.iter().all(|f| f.rule == "skipped-hops") {
        if let Ok(seqs) = super::rules::hops::sequences(&up.from, &up.to) {
            let hops: Vec<Hop> = seqs
                .iter()
                .flat_map(|s| {
                    s.versions[..s.versions.len() - 1].windows(2).map(|w| Hop {
                        component: s.component.clone(),
                        from: w[0].clone(),
                        to: w[1].clone(),
                    })
                })
                .collect();
            if !hops.is_empty() {
                return Verdict::Hops(hops);
            }
        }
    }
    let hint = if failing.iter().any(|f| f.rule == "skipped-hops") && !hopping {
        "; or set `upgrade: {hops: true}` in stackwave.yaml to have the agent apply the intermediate versions one by one"
    } else {
        ""
    };
    Verdict::Refuse(format!(
        "upgrade check against the applied commit {}: {}; acknowledge in stackwave.yaml (`acknowledge: [{{rule, component}}]`) to apply anyway{hint}",
        super::revision::short(last_commit.trim()),
        failing
            .iter()
            .map(|f| format!("{} ({}): {}", f.rule, f.component, f.message))
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// Applies `hops`, then the commit: each hop is the last applied tree (the gate's copy) with
/// the component's pin moved one version on ([`super::rules::hops::HopPath::set_pin`]),
/// synced as its own revision of kind [`RevisionKind::Hop`] (recorded with the commit it
/// leads to, summary `hop I/N toward COMMIT: COMPONENT A → B`) through the agent's whole
/// pipeline — preflight, health-gated waves, prune once healthy. The next hop starts only
/// when the previous one is healthy (or unchanged), and becomes the gate's last applied tree,
/// so an agent restarted mid-sequence goes on from there. The first hop that is not healthy
/// ends the sequence with its outcome (a failed wave: recorded failed, the last healthy
/// revision stays applied, nothing pruned); a pin that cannot be moved refuses the commit.
///
/// # Errors
/// Store failures only; everything else is an [`Outcome`].
pub async fn apply_hops(
    agent: &mut Agent,
    checkout: &Path,
    commit: &Commit,
    hops: &[Hop],
    progress: &dyn Fn(Progress),
) -> Result<Outcome, crate::record::RecordError> {
    let cache = agent.settings.cache_dir.clone();
    let base = dir(&cache, checkout);
    let work = base.join("hop");
    let refuse = |agent: &Agent, reason: String| -> Result<Outcome, crate::record::RecordError> {
        record(&agent.store, commit, &reason)?;
        Ok(Outcome::Refused { reason })
    };
    let _ = std::fs::remove_dir_all(&work);
    if let Err(e) = copy(&base.join("last-good"), &work) {
        return refuse(agent, format!("hop tree {}: {e}", work.display()));
    }
    let paths = match super::rules::hops::hops() {
        Ok(p) => p.paths,
        Err(e) => return refuse(agent, e.to_string()),
    };
    let short = super::revision::short(&commit.id).to_string();
    for (i, h) in hops.iter().enumerate() {
        let Some(path) = paths.iter().find(|p| p.component == h.component) else {
            return refuse(agent, format!("no hop path for {}", h.component));
        };
        if let Err(e) = path.set_pin(&work, &h.to) {
            return refuse(agent, format!("hop {} → {}: {e}", h.from, h.to));
        }
        let summary = format!(
            "hop {}/{} toward {short}: {} {} → {}",
            i + 1,
            hops.len(),
            h.component,
            h.from,
            h.to
        );
        progress(Progress::Note(summary.clone()));
        let hop = Commit {
            summary,
            ..commit.clone()
        };
        let out = agent
            .sync_commit(&work, &hop, RevisionKind::Hop, progress)
            .await?;
        if !matches!(out, Outcome::Healthy { .. } | Outcome::Unchanged) {
            return Ok(out);
        }
        let _ = record_last_good(
            &cache,
            checkout,
            &work,
            &format!("{}+hop{}", commit.id, i + 1),
        );
    }
    agent
        .sync_commit(checkout, commit, RevisionKind::Commit, progress)
        .await
}

fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Records `checkout` as the last applied commit (after a healthy or unchanged outcome).
///
/// # Errors
/// I/O failures writing under the cache.
pub fn applied(cache: &Path, checkout: &Path, commit: &str) -> std::io::Result<()> {
    record_last_good(cache, checkout, checkout, commit)
}

/// Records `tree` as the last applied tree of the agent whose checkout is `checkout`.
fn record_last_good(
    cache: &Path,
    checkout: &Path,
    tree: &Path,
    commit: &str,
) -> std::io::Result<()> {
    let base = dir(cache, checkout);
    let tmp = base.join(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy(tree, &tmp)?;
    let last = base.join("last-good");
    let _ = std::fs::remove_dir_all(&last);
    std::fs::rename(&tmp, &last)?;
    std::fs::write(base.join("last-good.commit"), commit)
}

/// Records a refused commit as a `refused` revision — once: a commit refused again on the next
/// loop is not recorded twice.
///
/// # Errors
/// Store failures.
pub fn record(
    store: &crate::record::Store,
    commit: &crate::source::Commit,
    reason: &str,
) -> Result<(), crate::record::RecordError> {
    let newest = store.revisions()?.into_iter().next();
    if newest.is_some_and(|r| r.commit == commit.id && r.outcome == "refused") {
        return Ok(());
    }
    let rev = store.begin(
        RevisionKind::Commit,
        &commit.id,
        &commit.author,
        &commit.summary,
    )?;
    store.finish(rev, crate::record::RevisionState::Refused, reason)
}
