//! The source stage: the desired state lives in a Git repository. A bare mirror is kept under
//! the agent's state directory; each poll fetches the branch, and the commit to apply is
//! exported (its tree, exactly) into a checkout directory. An unreachable remote is an error the
//! caller reports while keeping the last good state; force-pushed history is followed.
//!
//! A plain local directory that is not a Git repository (Genestack's `/etc/genestack` as
//! operators edit it today) is a source too: each fetch snapshots the tree and its sha256 is
//! the "commit". [`trigger`] wakes the loop early: a webhook, or a file watcher on local
//! sources.

pub mod auth;
pub mod trigger;
pub mod verify;

use git2::{Oid, Repository};
use std::path::{Path, PathBuf};

/// A source error naming the repository and cause.
#[derive(Debug, thiserror::Error)]
#[error("git source {url}: {cause}")]
pub struct SourceError {
    /// Repository URL.
    pub url: String,
    /// Cause.
    pub cause: String,
}

/// A commit's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Full hash.
    pub id: String,
    /// Author name and email.
    pub author: String,
    /// First line of the message.
    pub summary: String,
    /// Author time (seconds since the epoch).
    pub time: i64,
}

/// A followed repository (or local directory, see [`local_dir`]).
pub struct Source {
    url: String,
    branch: String,
    repo: Repository,
    /// A plain directory source, and where its snapshots go.
    dir: Option<(PathBuf, PathBuf)>,
    /// Credentials and host verification.
    auth: auth::Auth,
}

/// The directory a source URL names when it is a plain local directory that is not a Git
/// repository (no `scheme://`, no `user@host:` form, no `.git` inside, not a bare
/// repository); `None` for everything Git handles.
pub fn local_dir(url: &str) -> Option<PathBuf> {
    if url.contains("://") || (url.contains('@') && url.contains(':')) {
        return None;
    }
    let p = PathBuf::from(url);
    (p.is_dir() && !p.join(".git").exists() && Repository::open_bare(&p).is_err()).then_some(p)
}

/// The local path a source watches for changes ([`trigger::watch`]): a plain directory, or a
/// `file://` / plain-path Git repository; `None` for remote URLs.
pub fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(PathBuf::from(p));
    }
    if url.contains("://") || (url.contains('@') && url.contains(':')) {
        return None;
    }
    Some(PathBuf::from(url))
}

/// The newest "commit" of a source without fetching it: the remote branch head (`git
/// ls-remote`, through a detached remote: no repository, safe on any thread), or a plain
/// directory's tree digest. Used to notice a newer commit while a revision is stuck.
/// (A `bearerToken` is not sent here — libgit2 takes no headers on a bare connect — so
/// bearer-token remotes are not checked for newer commits.)
///
/// # Errors
/// Unreachable remote, missing branch.
pub fn head_of(url: &str, branch: &str, auth: &auth::Auth) -> Result<String, SourceError> {
    if let Some(d) = local_dir(url) {
        return Ok(crate::digest::dir_digest(&d));
    }
    let err = |e: git2::Error| SourceError {
        url: url.to_string(),
        cause: e.message().to_string(),
    };
    let mut remote = git2::Remote::create_detached(url).map_err(err)?;
    let mut po = git2::ProxyOptions::new();
    po.auto();
    let conn = remote
        .connect_auth(git2::Direction::Fetch, Some(auth.callbacks(url)), Some(po))
        .map_err(|e| SourceError {
            url: url.to_string(),
            cause: auth.explain(&e),
        })?;
    let list = conn.list().map_err(err)?;
    let want = format!("refs/heads/{branch}");
    let head = list
        .iter()
        .find(|h| h.name() == want)
        .map(|h| h.oid().to_string());
    head.ok_or_else(|| SourceError {
        url: url.to_string(),
        cause: format!("no branch {branch}"),
    })
}

/// Copies `from` into `to` (created), skipping `.git`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        if name == ".git" {
            continue;
        }
        let t = e.file_type()?;
        if t.is_dir() {
            copy_tree(&e.path(), &to.join(&name))?;
        } else if t.is_file() || t.is_symlink() {
            std::fs::copy(e.path(), to.join(&name))?;
        }
    }
    Ok(())
}

impl Source {
    /// Opens (or creates) the mirror of `url` under `state_dir`.
    ///
    /// # Errors
    /// Git errors.
    pub fn open(url: &str, branch: &str, state_dir: &Path) -> Result<Source, SourceError> {
        let err = |e: git2::Error| SourceError {
            url: url.to_string(),
            cause: e.message().to_string(),
        };
        let dir = state_dir.join("mirror.git");
        let repo = match Repository::open_bare(&dir) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&dir).map_err(|e| SourceError {
                    url: url.into(),
                    cause: e.to_string(),
                })?;
                Repository::init_bare(&dir).map_err(err)?
            }
        };
        Ok(Source {
            url: url.to_string(),
            branch: branch.to_string(),
            repo,
            dir: local_dir(url).map(|d| (d, state_dir.join("snapshots"))),
            auth: auth::Auth::default(),
        })
    }

    /// The same source, fetching with these credentials and host verification.
    pub fn with_auth(mut self, auth: auth::Auth) -> Source {
        self.auth = auth;
        self
    }

    /// A directory source's fetch: copy the tree (without `.git`) to a staging directory,
    /// hash the copy ([`crate::digest::dir_digest`]), keep it as
    /// `<state>/snapshots/<sha256>` (older snapshots removed) and return it as the commit.
    fn snapshot(&self, dir: &Path, snapshots: &Path) -> Result<Commit, SourceError> {
        let io = |what: &Path, e: std::io::Error| SourceError {
            url: self.url.clone(),
            cause: format!("{}: {e}", what.display()),
        };
        let staging = snapshots.join(format!("staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        copy_tree(dir, &staging).map_err(|e| io(dir, e))?;
        let id = crate::digest::dir_digest(&staging);
        let dest = snapshots.join(&id);
        if dest.is_dir() {
            let _ = std::fs::remove_dir_all(&staging);
        } else {
            std::fs::rename(&staging, &dest).map_err(|e| io(&dest, e))?;
        }
        if let Ok(rd) = std::fs::read_dir(snapshots) {
            for e in rd.flatten() {
                if e.file_name() != id.as_str() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(Commit {
            id,
            author: "local directory".into(),
            summary: format!("working tree of {}", dir.display()),
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        })
    }

    /// Fetches the branch (history rewrites included) and returns its head commit; for a
    /// directory source, snapshots the tree (see [`local_dir`]).
    ///
    /// # Errors
    /// Unreachable remote, missing branch.
    pub fn fetch(&self) -> Result<Commit, SourceError> {
        if let Some((dir, snapshots)) = &self.dir {
            return self.snapshot(dir, snapshots);
        }
        let err = |e: git2::Error| SourceError {
            url: self.url.clone(),
            cause: e.message().to_string(),
        };
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(err)?;
        let refspec = format!("+refs/heads/{b}:refs/remotes/origin/{b}", b = self.branch);
        let headers = self.auth.headers();
        let mut fo = self.auth.fetch_options(&self.url, &headers);
        remote
            .fetch(&[&refspec], Some(&mut fo), None)
            .map_err(|e| SourceError {
                url: self.url.clone(),
                cause: self.auth.explain(&e),
            })?;
        let r = self
            .repo
            .find_reference(&format!("refs/remotes/origin/{}", self.branch))
            .map_err(err)?;
        let oid = r.target().ok_or_else(|| SourceError {
            url: self.url.clone(),
            cause: format!("branch {} has no target", self.branch),
        })?;
        self.commit(&oid.to_string())
    }

    /// Verifies a fetched commit's SSH signature against `signers`
    /// ([`verify::verify_commit`]): who signed it, or why it is refused. A directory source
    /// has no commits to sign and is always refused.
    ///
    /// # Errors
    /// The refusal reason.
    pub fn verify(
        &self,
        commit: &str,
        signers: &verify::AllowedSigners,
    ) -> Result<String, verify::VerifyError> {
        if self.dir.is_some() {
            return Err(verify::VerifyError::PlainDirectory);
        }
        verify::verify_commit(&self.repo, commit, signers)
    }

    /// Facts of a commit already fetched.
    ///
    /// # Errors
    /// Unknown commit.
    pub fn commit(&self, id: &str) -> Result<Commit, SourceError> {
        let err = |e: git2::Error| SourceError {
            url: self.url.clone(),
            cause: e.message().to_string(),
        };
        let c = self
            .repo
            .find_commit(Oid::from_str(id).map_err(err)?)
            .map_err(err)?;
        let a = c.author();
        Ok(Commit {
            id: c.id().to_string(),
            author: format!("{} <{}>", a.name().unwrap_or(""), a.email().unwrap_or("")),
            summary: c.summary().unwrap_or("").to_string(),
            time: c.time().seconds(),
        })
    }

    /// Writes the tree of `commit` (or a directory source's snapshot of that digest) into
    /// `dest` (replacing what was there).
    ///
    /// # Errors
    /// Unknown commit, I/O errors.
    pub fn export(&self, commit: &str, dest: &Path) -> Result<PathBuf, SourceError> {
        if let Some((_, snapshots)) = &self.dir {
            let snap = snapshots.join(commit);
            let _ = std::fs::remove_dir_all(dest);
            copy_tree(&snap, dest).map_err(|e| SourceError {
                url: self.url.clone(),
                cause: format!("snapshot {commit}: {e}"),
            })?;
            return Ok(dest.to_path_buf());
        }
        self.export_path(commit, "", dest)
    }

    /// Fetches a tag, branch or commit (`r`, tried in that order) and returns its commit;
    /// with `offline`, resolves only what the mirror already has.
    ///
    /// # Errors
    /// The ref is in none of the forms, or the remote is unreachable and the mirror lacks it.
    pub fn fetch_ref(&self, r: &str, offline: bool) -> Result<Commit, SourceError> {
        let mut fetch_error = String::new();
        if !offline {
            let mut remote = self
                .repo
                .remote_anonymous(&self.url)
                .map_err(|e| SourceError {
                    url: self.url.clone(),
                    cause: e.message().to_string(),
                })?;
            for refspec in [
                format!("+refs/tags/{r}:refs/tags/{r}"),
                format!("+refs/heads/{r}:refs/remotes/origin/{r}"),
            ] {
                let headers = self.auth.headers();
                let mut fo = self.auth.fetch_options(&self.url, &headers);
                match remote.fetch(&[&refspec], Some(&mut fo), None) {
                    Ok(()) => {
                        fetch_error.clear();
                        break;
                    }
                    Err(e) => fetch_error = self.auth.explain(&e),
                }
            }
        }
        for candidate in [
            format!("refs/tags/{r}"),
            format!("refs/remotes/origin/{r}"),
            r.to_string(),
        ] {
            if let Ok(c) = self
                .repo
                .revparse_single(&candidate)
                .and_then(|o| o.peel_to_commit())
            {
                return self.commit(&c.id().to_string());
            }
        }
        Err(SourceError {
            url: self.url.clone(),
            cause: format!(
                "ref {r} not found as a tag, branch or commit{}",
                if fetch_error.is_empty() {
                    String::new()
                } else {
                    format!(" (fetch: {fetch_error})")
                }
            ),
        })
    }

    /// Writes the subtree `sub` (`""` for the whole tree) of `commit` into `dest`
    /// (replacing what was there).
    ///
    /// # Errors
    /// Unknown commit or path, I/O errors.
    pub fn export_path(
        &self,
        commit: &str,
        sub: &str,
        dest: &Path,
    ) -> Result<PathBuf, SourceError> {
        let err = |e: git2::Error| SourceError {
            url: self.url.clone(),
            cause: e.message().to_string(),
        };
        let io = |e: std::io::Error| SourceError {
            url: self.url.clone(),
            cause: e.to_string(),
        };
        let c = self
            .repo
            .find_commit(Oid::from_str(commit).map_err(err)?)
            .map_err(err)?;
        let mut tree = c.tree().map_err(err)?;
        let sub = sub.trim_matches('/');
        if !sub.is_empty() {
            tree = tree
                .get_path(Path::new(sub))
                .and_then(|e| e.to_object(&self.repo))
                .and_then(|o| o.peel_to_tree())
                .map_err(|e| SourceError {
                    url: self.url.clone(),
                    cause: format!("path {sub} in commit {commit}: {}", e.message()),
                })?;
        }
        let _ = std::fs::remove_dir_all(dest);
        std::fs::create_dir_all(dest).map_err(io)?;
        let mut failure: Option<SourceError> = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            let path = dest.join(root).join(entry.name().unwrap_or(""));
            match entry.kind() {
                Some(git2::ObjectType::Tree) => {
                    if let Err(e) = std::fs::create_dir_all(&path) {
                        failure = Some(io(e));
                        return git2::TreeWalkResult::Abort;
                    }
                }
                Some(git2::ObjectType::Blob) => {
                    let blob = match self.repo.find_blob(entry.id()) {
                        Ok(b) => b,
                        Err(e) => {
                            failure = Some(err(e));
                            return git2::TreeWalkResult::Abort;
                        }
                    };
                    if let Err(e) = std::fs::write(&path, blob.content()) {
                        failure = Some(io(e));
                        return git2::TreeWalkResult::Abort;
                    }
                }
                _ => {}
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(err)?;
        match failure {
            Some(f) => Err(f),
            None => Ok(dest.to_path_buf()),
        }
    }
}

/// A directory of a Git repository at a pinned tag, branch or commit: a Genestack base
/// (`genestack.git` in `stackwave.yaml`) or a chart kept in Git.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Pinned {
    /// Repository URL (`https://`, `file://`, `git://`, ssh).
    pub url: String,
    /// Tag, branch or commit (tried in that order).
    pub r#ref: String,
    /// Directory inside the repository (`""` for the root).
    #[serde(default)]
    pub path: String,
}

impl Pinned {
    /// Resolves the ref (fetching it unless `offline`): the mirror at
    /// `<cache>/git/<sha256 of url>/mirror.git` and the commit. When the remote is
    /// unreachable, the ref resolves from what the mirror already has — a pinned tag fetched
    /// once keeps working without the network.
    ///
    /// # Errors
    /// [`SourceError`] naming the URL: the ref resolves to nothing (with the fetch error, if
    /// any) or the mirror cannot be opened.
    pub fn resolve(&self, cache: &Path, offline: bool) -> Result<(Source, Commit), SourceError> {
        use sha2::{Digest, Sha256};
        let key: String = Sha256::digest(self.url.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let source = Source::open(&self.url, &self.r#ref, &cache.join("git").join(key))?;
        let commit = source.fetch_ref(&self.r#ref, offline)?;
        Ok((source, commit))
    }

    /// A directory holding `path` at `commit` (from [`Pinned::resolve`]): exported once per
    /// commit to `<cache>/git-trees/<commit>/tree/<path>`, written beside and renamed into
    /// place, so a directory that exists is complete.
    ///
    /// # Errors
    /// [`SourceError`] naming the URL: `path` is not a directory of that commit, I/O failures.
    pub fn export(
        &self,
        source: &Source,
        commit: &Commit,
        cache: &Path,
    ) -> Result<PathBuf, SourceError> {
        let sub = self.path.trim_matches('/');
        let base = cache.join("git-trees").join(&commit.id);
        let dest = if sub.is_empty() {
            base.join("tree")
        } else {
            base.join("tree").join(sub)
        };
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = base.join(format!("partial-{}", std::process::id()));
        source.export_path(&commit.id, sub, &tmp)?;
        let io = |e: std::io::Error| SourceError {
            url: self.url.clone(),
            cause: format!("{}: {e}", dest.display()),
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another process may have put the same tree in place first.
            if !dest.is_dir() {
                return Err(io(e));
            }
        }
        Ok(dest)
    }

    /// [`Pinned::resolve`] then [`Pinned::export`].
    ///
    /// # Errors
    /// As theirs.
    pub fn checkout(&self, cache: &Path, offline: bool) -> Result<(Commit, PathBuf), SourceError> {
        let (source, commit) = self.resolve(cache, offline)?;
        let dir = self.export(&source, &commit, cache)?;
        Ok((commit, dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_remote_is_named_with_the_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/cloud.git");
        let e = head_of(&url, "main", &auth::Auth::default()).unwrap_err();
        let m = e.to_string();
        eprintln!("{m}");
        assert!(m.contains(&url), "{m}");
        assert!(m.to_lowercase().contains("connect"), "{m}");
    }
}
