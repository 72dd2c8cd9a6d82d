//! Steering a running agent from the command line: `status`, `rollback`, `suspend`,
//! `resume`. They act on the agent's state directory — the revision store holds the control
//! state ([`Store::state`]) the loop re-reads every iteration ([`Agent::refresh`]) — and, for
//! `rollback`, on the cluster, under the state directory's lock so one process changes the
//! cloud at a time ([`lock`]).

use crate::component::Catalog;
use crate::reconcile::{Agent, AgentState, Outcome, Progress, Settings};
use crate::record::{Revision, RevisionKind, RevisionState, Store};
use std::path::{Path, PathBuf};

/// Why a control command failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The store's key (file or Secret, [`crate::keyring`]) cannot be had.
    #[error(transparent)]
    Key(#[from] crate::keyring::KeyError),
    /// The state directory's store cannot be opened (or, read-only, does not exist).
    #[error("{}: {source}", dir.display())]
    Store {
        /// The state directory.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: crate::record::RecordError,
    },
    /// The state directory or its lock file cannot be made or locked.
    #[error("{}: {source}", path.display())]
    Lock {
        /// The directory or file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
    /// No revision to roll back to.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The built-in catalog does not load.
    #[error(transparent)]
    Catalog(#[from] crate::component::CatalogError),
    /// The agent cannot be made.
    #[error(transparent)]
    Agent(#[from] crate::reconcile::AgentError),
}

/// Why a rollback target does not name a revision to roll back to ([`resolve`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// No revision has that number.
    #[error("no revision {0} (see `stackwave history`)")]
    NoRevision(i64),
    /// The revision never became healthy.
    #[error("revision {id} is {state} and cannot be rolled back to (only healthy revisions)")]
    NotHealthy {
        /// The revision.
        id: i64,
        /// Its state.
        state: RevisionState,
    },
    /// Neither a number nor at least 4 hex digits.
    #[error("'{0}' is neither a revision number nor a commit (at least 4 hex digits)")]
    Malformed(String),
    /// The prefix matches more than one commit.
    #[error("commit '{target}' is ambiguous: {commits:?}")]
    Ambiguous {
        /// The prefix.
        target: String,
        /// The commits it matches.
        commits: std::collections::BTreeSet<String>,
    },
    /// No healthy revision applied the commit.
    #[error("no healthy revision applied commit '{0}'")]
    NoHealthy(String),
}

/// Opens the revision store of a state directory (`revisions.sqlite` + `store.key`).
///
/// # Errors
/// The store cannot be opened (naming the file and the cause).
pub fn open_store(state: &Path) -> Result<Store, ControlError> {
    Store::open(&state.join("revisions.sqlite"), &state.join("store.key")).map_err(|source| {
        ControlError::Store {
            dir: state.to_path_buf(),
            source,
        }
    })
}

/// Opens the revision store of a state directory for reading, creating nothing
/// ([`Store::open_existing`]): `status`, `history` and `diff` on a mistyped directory fail
/// instead of making a new store and key there.
///
/// # Errors
/// The directory, database or key is missing, or the store cannot be opened.
pub fn open_store_existing(state: &Path) -> Result<Store, ControlError> {
    Store::open_existing(&state.join("revisions.sqlite"), &state.join("store.key")).map_err(
        |source| ControlError::Store {
            dir: state.to_path_buf(),
            source,
        },
    )
}

/// A read-only agent over `cluster` for `diff` (a checkout's, or `diff --from --to
/// --server`'s live side): with the state directory's store when it has one — the instance
/// identity and applied state a `run` recorded are loaded, unfinished revisions left as they
/// are — else an in-memory store (the default instance). Writes nothing.
///
/// # Errors
/// The store cannot be opened or read, the built-in catalog or the policies do not load.
pub fn read_only_agent(
    cluster: crate::cluster::Cluster,
    state: &Path,
    settings: Settings,
) -> Result<Agent, ControlError> {
    let store = if state.join("revisions.sqlite").is_file() {
        open_store_existing(state)?
    } else {
        Store::in_memory()?
    };
    let mut agent = Agent::new(cluster, store, Catalog::builtin()?, settings)?;
    agent.refresh()?;
    Ok(agent)
}

/// The state directory's lock (`<state>/agent.lock`), held while a process applies to the
/// cluster (a loop iteration, `sync`, `rollback`). Released on drop.
pub struct Lock(#[allow(dead_code)] std::fs::File);

/// Takes the state directory's lock, waiting for the holder (an agent mid-iteration) to
/// release it.
///
/// # Errors
/// The lock file cannot be created or locked.
pub fn lock(state: &Path) -> Result<Lock, ControlError> {
    let lock_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ControlError::Lock { path, source }
    };
    std::fs::create_dir_all(state).map_err(lock_err(state))?;
    let path = state.join("agent.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_err(&path))?;
    f.lock().map_err(lock_err(&path))?;
    Ok(Lock(f))
}

/// One component in [`Status`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentStatus {
    /// Component name.
    pub name: String,
    /// Digest of its applied objects (sha256 hex).
    pub digest: String,
    /// Fields found drifted at the last drift check (0 when in sync or corrected).
    pub drift_fields: u64,
}

/// What `stackwave status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The revision whose objects are applied (the newest healthy one).
    pub applied: Option<Revision>,
    /// The newest revision of any outcome (a failed or refused one shows here).
    pub latest: Option<Revision>,
    /// The revision a rollback pinned the agent to.
    pub pinned: Option<i64>,
    /// Whether `stackwave suspend` stopped applying.
    pub suspended: bool,
    /// Why it was suspended.
    pub suspend_reason: Option<String>,
    /// Applied components with their drift.
    pub components: Vec<ComponentStatus>,
    /// When drift was last checked (seconds since the epoch), and whether it was corrected.
    pub drift_checked_at: Option<i64>,
    /// Whether the last drift check corrected what it found (false: detect-only).
    pub drift_corrected: Option<bool>,
    /// When the agent last finished a loop iteration (seconds since the epoch).
    pub last_loop_at: Option<i64>,
    /// The instance identity `run` recorded ([`crate::cluster::instance`]).
    pub instance: Option<crate::cluster::instance::Instance>,
    /// Its id, as in the inventories' names and the `stackwave.io/instance` labels.
    pub instance_id: Option<String>,
}

/// Reads the status of a state directory.
///
/// # Errors
/// Store failures.
pub fn status(state: &Path) -> Result<Status, ControlError> {
    let store = open_store_existing(state)?;
    let revisions = store.revisions()?;
    let applied = revisions
        .iter()
        .find(|r| r.outcome == RevisionState::Healthy)
        .cloned();
    // Read-only: an unmigrated store's separate keys are read, not rewritten.
    let state = AgentState::read(&store)?;
    let drift = state.drift;
    let fields = |c: &str| {
        drift
            .as_ref()
            .and_then(|d| d.fields.get(c))
            .map_or(0, |n| *n as u64)
    };
    let suspend_reason = store.state("suspended")?;
    let instance = state.instance;
    Ok(Status {
        components: applied
            .iter()
            .flat_map(|r| r.components.iter())
            .map(|(c, d)| ComponentStatus {
                name: c.clone(),
                digest: d.clone(),
                drift_fields: fields(c),
            })
            .collect(),
        latest: revisions.first().cloned(),
        applied,
        pinned: state.pin,
        suspended: suspend_reason.is_some(),
        suspend_reason,
        drift_checked_at: drift.as_ref().map(|d| d.checked_at),
        drift_corrected: drift.as_ref().map(|d| d.corrected),
        last_loop_at: store.state("last_loop")?.and_then(|t| t.parse().ok()),
        instance_id: instance.as_ref().map(|i| i.id()),
        instance,
    })
}

fn short(c: &str) -> &str {
    &c[..c.len().min(10)]
}

/// The readable form of a [`Status`].
pub fn status_text(s: &Status) -> String {
    let mut out = String::new();
    if let (Some(i), Some(id)) = (&s.instance, &s.instance_id) {
        out.push_str(&format!(
            "instance:  {} ({id}) following {}\n",
            i.name, i.repo
        ));
    }
    match &s.applied {
        Some(r) => out.push_str(&format!(
            "applied:   revision {} (commit {}, {} \"{}\")\n",
            r.id,
            short(&r.commit),
            r.author,
            r.message
        )),
        None => out.push_str("applied:   nothing yet\n"),
    }
    if let Some(l) = &s.latest {
        if s.applied.as_ref().is_none_or(|a| a.id != l.id) {
            out.push_str(&format!(
                "latest:    revision {} {} (commit {})\n",
                l.id,
                l.outcome,
                short(&l.commit)
            ));
        }
    }
    if let Some(p) = s.pinned {
        out.push_str(&format!(
            "pinned:    to revision {p} by a rollback (until a newer commit or `stackwave resume`)\n"
        ));
    }
    if s.suspended {
        out.push_str(&format!(
            "suspended: {} (`stackwave resume` to go on)\n",
            s.suspend_reason.as_deref().unwrap_or("")
        ));
    }
    match (s.drift_checked_at, s.drift_corrected) {
        (Some(t), Some(c)) => out.push_str(&format!(
            "drift:     checked at {} ({})\n",
            jiff::Timestamp::from_second(t)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            if c { "corrected" } else { "detect-only" }
        )),
        _ => out.push_str("drift:     not checked yet\n"),
    }
    for c in &s.components {
        out.push_str(&format!(
            "  {:<20} {}  {}\n",
            c.name,
            &c.digest[..c.digest.len().min(12)],
            if c.drift_fields == 0 {
                "in sync".to_string()
            } else {
                format!("{} field(s) drifted", c.drift_fields)
            }
        ));
    }
    out
}

/// Stops the agent from applying (it keeps checking and reporting drift, detect-only) until
/// [`resume`]. `reason` is shown by `status`.
///
/// # Errors
/// Store failures.
pub fn suspend(state: &Path, reason: &str) -> Result<(), ControlError> {
    Ok(open_store(state)?.set_state(
        "suspended",
        Some(if reason.is_empty() {
            "suspended"
        } else {
            reason
        }),
    )?)
}

/// Lifts a suspension and a rollback pin: the next loop applies the branch head again.
///
/// # Errors
/// Store failures.
pub fn resume(state: &Path) -> Result<(), ControlError> {
    let store = open_store(state)?;
    store.set_state("suspended", None)?;
    AgentState::update(&store, |s| {
        s.pin = None;
        s.pinned_from = None;
    })?;
    Ok(())
}

/// Resolves a rollback target: a revision number, or a commit (full or a prefix of at
/// least 4 hex digits) → the newest healthy revision that applied it (rollbacks excluded).
///
/// # Errors
/// No such revision, a revision that never became healthy, an ambiguous or unknown commit.
pub fn resolve(revisions: &[Revision], target: &str) -> Result<i64, TargetError> {
    if let Ok(id) = target.parse::<i64>() {
        // All digits: a revision number when there is one; otherwise, from 4 digits on, it may
        // be a commit prefix that happens to have no a–f (1 in 40 eight-digit prefixes).
        let r = match revisions.iter().find(|r| r.id == id) {
            Some(r) => r,
            None if target.len() >= 4 => return resolve_commit(revisions, target),
            None => return Err(TargetError::NoRevision(id)),
        };
        if r.outcome != RevisionState::Healthy {
            return Err(TargetError::NotHealthy {
                id,
                state: r.outcome,
            });
        }
        return Ok(id);
    }
    resolve_commit(revisions, target)
}

/// A commit (full or a prefix of at least 4 hex digits) → the newest healthy revision that
/// applied it (rollbacks and the hop revisions leading to it excluded); see [`resolve`].
fn resolve_commit(revisions: &[Revision], target: &str) -> Result<i64, TargetError> {
    if target.len() < 4 || !target.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TargetError::Malformed(target.to_string()));
    }
    let matching: Vec<&Revision> = revisions
        .iter()
        .filter(|r| {
            r.commit.starts_with(target)
                && !matches!(r.kind, RevisionKind::Rollback | RevisionKind::Hop)
        })
        .collect();
    let commits: std::collections::BTreeSet<&str> =
        matching.iter().map(|r| r.commit.as_str()).collect();
    if commits.len() > 1 {
        return Err(TargetError::Ambiguous {
            target: target.to_string(),
            commits: commits.into_iter().map(str::to_string).collect(),
        });
    }
    matching
        .iter()
        .find(|r| r.outcome == RevisionState::Healthy)
        .map(|r| r.id)
        .ok_or_else(|| TargetError::NoHealthy(target.to_string()))
}

/// Rolls the cluster back to `target` (see [`resolve`]) from the stored objects — no fetch,
/// no render — under the state directory's lock, and pins the agent there. `force` rolls
/// back past components marked irreversible.
///
/// # Errors
/// Unknown targets, store failures; a failing wave is an [`Outcome::Failed`].
pub async fn rollback(
    state: &Path,
    cluster: crate::cluster::Cluster,
    target: &str,
    force: bool,
    settings: Settings,
    progress: &dyn Fn(Progress),
) -> Result<Outcome, ControlError> {
    let key = crate::keyring::KeySource::File(state.join("store.key"));
    rollback_with_key(state, cluster, &key, target, force, settings, progress).await
}

/// [`rollback`] with the store's key from `key`: the file, or the Secret the in-cluster agent
/// keeps it in (`--store-key-secret`, as `deploy/` runs it), read through `cluster`.
///
/// # Errors
/// As [`rollback`]; [`ControlError::Key`] when the key cannot be read or fits no store.
pub async fn rollback_with_key(
    state: &Path,
    cluster: crate::cluster::Cluster,
    key: &crate::keyring::KeySource,
    target: &str,
    force: bool,
    settings: Settings,
    progress: &dyn Fn(Progress),
) -> Result<Outcome, ControlError> {
    let _lock = lock(state)?;
    let store = crate::keyring::open_store(Some(&cluster), state, key).await?;
    let to = resolve(&store.revisions()?, target)?;
    let catalog = Catalog::builtin()?;
    let mut agent = Agent::new(cluster, store, catalog, settings)?;
    agent.restore()?;
    Ok(agent.rollback(to, force, progress).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(id: i64, commit: &str, outcome: &str, kind: RevisionKind) -> Revision {
        Revision {
            id,
            commit: commit.into(),
            author: "a".into(),
            message: String::new(),
            applied_at: 0,
            outcome: RevisionState::parse(outcome).unwrap(),
            kind,
            components: vec![],
        }
    }

    #[test]
    fn read_only_commands_create_nothing_on_a_missing_state_dir() {
        use clap::Parser;
        let dir = std::env::temp_dir().join(format!("stackwave-typo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let e = status(&dir).unwrap_err().to_string();
        assert!(
            e.contains("does not exist") && e.contains("revisions.sqlite"),
            "{e}"
        );
        let d = dir.display().to_string();
        for args in [
            vec!["stackwave", "status", "--state", &d],
            vec!["stackwave", "history", "--state", &d],
        ] {
            let code = crate::cli::run(crate::cli::Cli::parse_from(args.clone()));
            assert_ne!(code, 0, "{args:?}");
        }
        assert!(
            !dir.exists(),
            "a read-only command created {}",
            dir.display()
        );
        // An existing directory without a store: still nothing created in it.
        std::fs::create_dir_all(&dir).unwrap();
        assert!(status(&dir).is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        // A real store reads back.
        open_store(&dir).unwrap();
        assert!(status(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn targets_resolve_by_number_or_commit() {
        let revs = vec![
            rev(4, "abcd1111", "healthy", RevisionKind::Rollback),
            rev(3, "ffff0000", "failed", RevisionKind::Commit),
            rev(2, "abcd1111", "healthy", RevisionKind::Commit),
            rev(1, "abce2222", "healthy", RevisionKind::Commit),
        ];
        assert_eq!(resolve(&revs, "2"), Ok(2));
        assert_eq!(resolve(&revs, "abcd1"), Ok(2));
        assert!(resolve(&revs, "3")
            .unwrap_err()
            .to_string()
            .contains("failed"));
        assert!(resolve(&revs, "ffff")
            .unwrap_err()
            .to_string()
            .contains("no healthy"));
        assert!(resolve(&revs, "abc")
            .unwrap_err()
            .to_string()
            .contains("4 hex"));
        assert!(resolve(&revs, "abcd").is_ok());
        assert!(resolve(&revs, "ab").is_err());
        assert!(resolve(
            &[
                rev(1, "abcd1", "healthy", RevisionKind::Commit),
                rev(2, "abcd2", "healthy", RevisionKind::Commit)
            ],
            "abcd"
        )
        .unwrap_err()
        .to_string()
        .contains("ambiguous"));
        assert!(resolve(&revs, "9")
            .unwrap_err()
            .to_string()
            .contains("no revision 9"));
        // A commit prefix made of digits only is a commit when no revision has that number.
        let digits = [
            rev(1, "88418078ab", "healthy", RevisionKind::Commit),
            rev(2, "1234567890", "healthy", RevisionKind::Commit),
        ];
        assert_eq!(resolve(&digits, "88418078"), Ok(1));
        assert_eq!(resolve(&digits, "2"), Ok(2));
        assert!(resolve(&digits, "5555")
            .unwrap_err()
            .to_string()
            .contains("no healthy revision"));
    }
}
