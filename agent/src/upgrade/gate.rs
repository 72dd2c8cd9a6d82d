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

use super::check::{self, Context, Severity};
use super::revision::Revision;
use super::Upgrade;
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

/// Why the commit in `checkout` is refused (its unacknowledged error findings against the last
/// applied commit), or `None`.
pub fn refuse(cache: &Path, checkout: &Path, commit: &str) -> Option<String> {
    let base = dir(cache, checkout);
    let last = base.join("last-good");
    let last_commit = std::fs::read_to_string(base.join("last-good.commit")).ok()?;
    if last_commit.trim() == commit || !last.is_dir() {
        return None;
    }
    let from = Revision::from_tree(last_commit.trim(), &last, Some(checkout), cache, false).ok()?;
    let to = Revision::from_tree(commit, checkout, Some(checkout), cache, false).ok()?;
    let up = Upgrade { from, to };
    let report = check::check(&Context {
        up: &up,
        rendered: Err("the agent's gate checks inputs only".into()),
        live_secrets: None,
    })
    .ok()?;
    let failing = report.failing(Severity::Error);
    if failing.is_empty() {
        return None;
    }
    Some(format!(
        "upgrade check against the applied commit {}: {}; acknowledge in stackwave.yaml (`acknowledge: [{{rule, component}}]`) to apply anyway",
        super::revision::short(last_commit.trim()),
        failing
            .iter()
            .map(|f| format!("{} ({}): {}", f.rule, f.component, f.message))
            .collect::<Vec<_>>()
            .join("; ")
    ))
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
    let base = dir(cache, checkout);
    let tmp = base.join(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy(checkout, &tmp)?;
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
        crate::record::RevisionKind::Commit,
        &commit.id,
        &commit.author,
        &commit.summary,
    )?;
    store.finish(rev, crate::record::RevisionState::Refused, reason)
}
