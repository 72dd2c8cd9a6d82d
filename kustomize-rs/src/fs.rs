//! File access for a build: each kustomization directory gets a [`Loader`] rooted there,
//! which enforces the load restrictor for files and refuses directory cycles
//! (`api/internal/loader/fileloader.go`, `loadrestrictions.go`).

use crate::Error;
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How remote (`http://`, `https://`) resources are fetched.
#[derive(Clone, Debug, Default)]
pub struct RemoteOptions {
    /// Directory for cached downloads (`<dir>/kustomize-http/<sha256 of URL>`); `None` disables
    /// the cache.
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network: serve remote resources from the cache or fail.
    pub offline: bool,
    /// Per-request timeout; 30 s when zero.
    pub timeout: Duration,
}

/// The default cache directory: `$XDG_CACHE_HOME/stackwave`, else `$HOME/.cache/stackwave`
/// (shared by the `kustomize` binary and the `stackwave` agent); `None` without either.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("stackwave"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("stackwave"))
}

/// Whether a resource path is a remote URL.
pub fn is_url(p: &str) -> bool {
    p.starts_with("https://") || p.starts_with("http://")
}

fn cache_path(opts: &RemoteOptions, url: &str) -> Option<PathBuf> {
    let dir = opts.cache_dir.as_ref()?;
    let h = Sha256::digest(url.as_bytes());
    let name: String = h.iter().map(|b| format!("{b:02x}")).collect();
    Some(dir.join("kustomize-http").join(name))
}

/// Fetches a remote file: from the network (refreshing the cache), or from the cache when
/// offline or when the network fails.
///
/// # Errors
/// When the URL cannot be fetched (status, connection, timeout) and is not cached, naming the
/// URL and the cause.
pub fn fetch(url: &str, opts: &RemoteOptions) -> Result<Vec<u8>, Error> {
    let cached = cache_path(opts, url);
    let from_cache = || cached.as_ref().and_then(|p| std::fs::read(p).ok());
    if opts.offline {
        return from_cache().ok_or_else(|| Error::Remote {
            url: url.to_string(),
            message: format!(
                "offline: remote resource {url} is not in the cache{}",
                cached
                    .as_ref()
                    .map(|p| format!(" ({})", p.display()))
                    .unwrap_or_default()
            ),
        });
    }
    let timeout = if opts.timeout.is_zero() {
        Duration::from_secs(30)
    } else {
        opts.timeout
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let got = agent
        .get(url)
        .call()
        .map_err(|e| format!("{e}"))
        .and_then(|mut r| {
            r.body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .map_err(|e| format!("{e}"))
        });
    match got {
        Ok(body) => {
            if let Some(p) = &cached {
                if let Some(parent) = p.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let tmp = p.with_extension("part");
                if std::fs::write(&tmp, &body).is_ok() {
                    let _ = std::fs::rename(&tmp, p);
                }
            }
            Ok(body)
        }
        Err(e) => from_cache().ok_or_else(|| Error::Remote {
            url: url.to_string(),
            message: format!("cannot fetch remote resource {url}: {e}"),
        }),
    }
}

/// Which files a kustomization may read (`--load-restrictor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadRestrictor {
    /// Files must be in or below the kustomization's directory (kustomize's default).
    #[default]
    RootOnly,
    /// Any file may be read.
    None,
}

/// The files a build reads: the real disk, or a stack of directories overlaid on each other
/// with in-memory files on top (how Stackwave post-renders Helm output without temp files).
///
/// Paths given to a layered file system are virtual absolute paths (`/keystone/overlay`);
/// each is looked up in the in-memory files, then in each layer, highest priority first.
#[derive(Clone, Debug, Default)]
pub struct FileSystem {
    /// Directories mapped onto `/`, highest priority first; empty means the real disk.
    layers: Vec<PathBuf>,
    /// In-memory files by virtual path.
    mem: std::collections::HashMap<PathBuf, Vec<u8>>,
    /// Told of every look at the disk.
    observer: Option<Observer>,
    /// Only the in-memory files: no disk, no layers ([`FileSystem::memory`]).
    memory: bool,
}

/// One look a build took at the disk (a physical path; in-memory files are not reported).
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// A file was read: its bytes, or `None` when the read failed (absent, unreadable).
    Read(&'a Path, Option<&'a [u8]>),
    /// Whether a file is at the path was asked.
    IsFile(&'a Path),
    /// Whether a directory is at the path was asked.
    IsDir(&'a Path),
}

/// Receives every [`Access`] of a [`FileSystem`] (see [`FileSystem::observed`]): each file
/// read and each existence probe of a layer's physical path. (On the real disk, the
/// `canonicalize` of a build's root is not reported; layered file systems do not use it.)
#[derive(Clone)]
pub struct Observer(pub Arc<dyn Fn(Access<'_>) + Send + Sync>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl FileSystem {
    /// The real disk.
    pub fn disk() -> FileSystem {
        FileSystem::default()
    }

    /// Directories overlaid onto a virtual `/`, highest priority first.
    pub fn layered(layers: Vec<PathBuf>) -> FileSystem {
        FileSystem {
            layers,
            mem: Default::default(),
            observer: None,
            memory: false,
        }
    }

    /// Only in-memory files ([`FileSystem::insert`]) under a virtual `/`: the disk is never
    /// looked at (a build of generated inputs).
    pub fn memory() -> FileSystem {
        FileSystem {
            memory: true,
            ..FileSystem::layered(Vec::new())
        }
    }

    /// Whether paths are the real disk's (no layers, not memory-only).
    fn on_disk(&self) -> bool {
        self.layers.is_empty() && !self.memory
    }

    /// The same file system, reporting each look at the disk to `observer` — so a caller can
    /// record what a build read (Stackwave keys its render cache by it).
    pub fn observed(mut self, observer: Observer) -> FileSystem {
        self.observer = Some(observer);
        self
    }

    fn tell(&self, a: Access<'_>) {
        if let Some(o) = &self.observer {
            (o.0)(a);
        }
    }

    /// Adds (or replaces) an in-memory file at a virtual absolute path.
    pub fn insert(&mut self, path: impl AsRef<Path>, content: impl Into<Vec<u8>>) {
        self.mem.insert(clean(path.as_ref()), content.into());
    }

    fn physical(&self, p: &Path) -> Vec<PathBuf> {
        if self.on_disk() {
            return vec![p.to_path_buf()];
        }
        let rel = p.strip_prefix("/").unwrap_or(p);
        self.layers.iter().map(|l| l.join(rel)).collect()
    }

    /// Reads a file.
    ///
    /// # Errors
    /// When no layer has it.
    pub fn read(&self, p: &Path) -> std::io::Result<Vec<u8>> {
        if let Some(b) = self.mem.get(&clean(p)) {
            return Ok(b.clone());
        }
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "not found");
        for ph in self.physical(p) {
            match std::fs::read(&ph) {
                Ok(b) => {
                    self.tell(Access::Read(&ph, Some(&b)));
                    return Ok(b);
                }
                Err(e) => {
                    self.tell(Access::Read(&ph, None));
                    last = e
                }
            }
        }
        Err(last)
    }

    /// Whether a file exists at the path.
    pub fn is_file(&self, p: &Path) -> bool {
        self.mem.contains_key(&clean(p))
            || self.physical(p).iter().any(|ph| {
                self.tell(Access::IsFile(ph));
                ph.is_file()
            })
    }

    /// Whether a directory exists at the path (in memory, a directory exists when a file
    /// lies below it).
    pub fn is_dir(&self, p: &Path) -> bool {
        let c = clean(p);
        self.mem.keys().any(|k| k.starts_with(&c) && *k != c)
            || self.physical(p).iter().any(|ph| {
                self.tell(Access::IsDir(ph));
                ph.is_dir()
            })
    }

    /// The path with symlinks resolved on disk, or cleaned lexically when layered.
    fn canonical(&self, p: &Path) -> Option<PathBuf> {
        if self.on_disk() {
            std::fs::canonicalize(p).ok()
        } else {
            let c = clean(p);
            (self.is_file(&c) || self.is_dir(&c)).then_some(c)
        }
    }
}

/// A loader rooted at one kustomization directory.
#[derive(Clone, Debug)]
pub struct Loader {
    root: PathBuf,
    restrictor: LoadRestrictor,
    /// Roots of the kustomizations that led here, for cycle detection.
    referrers: Vec<PathBuf>,
    /// How remote resources are fetched.
    remote: Arc<RemoteOptions>,
    /// Where files come from.
    fs: Arc<FileSystem>,
}

/// Lexically cleans a path (like Go's `filepath.Clean`) after making it absolute.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

impl Loader {
    /// A loader for the top-level directory on disk.
    ///
    /// # Errors
    /// When `dir` is not a directory.
    pub fn new(
        dir: &Path,
        restrictor: LoadRestrictor,
        remote: RemoteOptions,
    ) -> Result<Loader, Error> {
        Loader::with_fs(Arc::new(FileSystem::disk()), dir, restrictor, remote)
    }

    /// A loader for a directory of the given file system (a virtual absolute path when the
    /// file system is layered).
    ///
    /// # Errors
    /// When `dir` is not a directory.
    pub fn with_fs(
        fs: Arc<FileSystem>,
        dir: &Path,
        restrictor: LoadRestrictor,
        remote: RemoteOptions,
    ) -> Result<Loader, Error> {
        let abs = if dir.is_absolute() || !fs.on_disk() {
            Path::new("/").join(dir)
        } else {
            std::env::current_dir()
                .map(|c| c.join(dir))
                .unwrap_or_else(|_| dir.to_path_buf())
        };
        let root = fs.canonical(&abs).filter(|r| fs.is_dir(r)).ok_or_else(|| {
            Error::load(
                dir,
                format!(
                    "must build at directory: not a valid directory: '{}'",
                    dir.display()
                ),
            )
        })?;
        Ok(Loader {
            root,
            restrictor,
            referrers: Vec::new(),
            remote: Arc::new(remote),
            fs,
        })
    }

    /// The directory this loader is rooted at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute, cleaned path of `rel` relative to the root.
    pub fn join(&self, rel: &str) -> PathBuf {
        clean(&self.root.join(rel))
    }

    /// Whether `rel` names a file.
    pub fn is_file(&self, rel: &str) -> bool {
        self.fs.is_file(&self.join(rel))
    }

    /// Whether `rel` names a directory.
    pub fn is_dir(&self, rel: &str) -> bool {
        self.fs.is_dir(&self.join(rel))
    }

    /// Reads a file, enforcing the load restrictor.
    ///
    /// # Errors
    /// When the file is outside the root under `RootOnly`, or cannot be read.
    pub fn load(&self, rel: &str) -> Result<Vec<u8>, Error> {
        if is_url(rel) {
            return fetch(rel, &self.remote);
        }
        let p = self.join(rel);
        if self.restrictor == LoadRestrictor::RootOnly {
            let real = self.fs.canonical(&p).unwrap_or_else(|| p.clone());
            if !real.starts_with(&self.root) {
                return Err(Error::load(
                    &real,
                    format!(
                        "security; file '{}' is not in or below '{}'",
                        real.display(),
                        self.root.display()
                    ),
                ));
            }
        }
        if self.fs.is_dir(&p) && !self.fs.is_file(&p) {
            return Err(Error::load(
                &p,
                format!("'{}' is a directory, not a file", p.display()),
            ));
        }
        self.fs
            .read(&p)
            .map_err(|source| Error::Io { path: p, source })
    }

    /// Reads a file as UTF-8 text.
    ///
    /// # Errors
    /// As [`Loader::load`], or when the content is not UTF-8.
    pub fn load_string(&self, rel: &str) -> Result<String, Error> {
        let b = self.load(rel)?;
        String::from_utf8(b)
            .map_err(|_| Error::load(self.join(rel), format!("'{rel}' is not UTF-8 text")))
    }

    /// A loader for a sub-kustomization directory.
    ///
    /// # Errors
    /// When `rel` is empty, absolute, not a directory, or would form a cycle (it contains
    /// the current root or one of the roots that led here).
    pub fn child(&self, rel: &str) -> Result<Loader, Error> {
        if rel.is_empty() {
            return Err(Error::load(rel, "new root cannot be empty"));
        }
        if Path::new(rel).is_absolute() {
            return Err(Error::load(
                rel,
                format!("new root '{rel}' cannot be absolute"),
            ));
        }
        if is_url(rel)
            || rel.starts_with("git@")
            || rel.starts_with("github.com/")
            || rel.starts_with("ssh://")
        {
            return Err(Error::unsupported("git remote bases", format!(
                "remote kustomization '{rel}': remote Git bases are not supported yet (remote files over http(s) are)"
            )));
        }
        let p = self.join(rel);
        let root = self
            .fs
            .canonical(&p)
            .filter(|r| self.fs.is_dir(r))
            .ok_or_else(|| {
                Error::load(
                    &p,
                    format!(
                    "must build at directory: not a valid directory: evalsymlink failure on '{}'",
                    p.display()
                ),
                )
            })?;
        for visited in std::iter::once(&self.root).chain(self.referrers.iter()) {
            if visited.starts_with(&root) {
                return Err(Error::load(
                    &root,
                    format!(
                        "cycle detected: candidate root '{}' contains visited root '{}'",
                        root.display(),
                        visited.display()
                    ),
                ));
            }
        }
        let mut referrers = self.referrers.clone();
        referrers.push(self.root.clone());
        Ok(Loader {
            root,
            restrictor: self.restrictor,
            referrers,
            remote: self.remote.clone(),
            fs: self.fs.clone(),
        })
    }
}
