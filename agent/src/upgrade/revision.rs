//! One side of an upgrade: a commit of the desired-state repository, exported from Git, with
//! its `stackwave.yaml`, its Genestack base (a directory, or a Git repository pinned at a tag
//! or commit) and the facts the rules read without rendering anything: chart pins, chart
//! sources, image tags, the Secrets the bindings read.
//!
//! Revisions come from Git history alone: `--repo PATH|URL` is mirrored under the cache
//! (`<cache>/upgrade/<sha256 of url>/mirror.git`, every branch and tag fetched) and each
//! commit's tree is exported once to `<cache>/upgrade-trees/<commit>` (written beside and
//! renamed into place).

use super::UpgradeError;
use crate::component::{Catalog, ChartSource};
use crate::reconcile::RepoConfig;
use crate::render::values::{self, Sources};
use crate::source::{Commit, Source};
use kustomize_rs::yaml::{parse_documents, parse_one, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `stackwave.yaml` fields the upgrade stage reads beside [`RepoConfig`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct UpgradeConfig {
    /// Findings the repository accepts (`acknowledge: [{rule: chart-source-switch,
    /// component: memcached}]`): they are still reported, never refuse the commit.
    #[serde(default)]
    pub acknowledge: Vec<Acknowledgement>,
    /// A database backup reference per component (`backups: {nova: "s3://…"}`), asked for by
    /// the `irreversible-migration` rule.
    #[serde(default)]
    pub backups: BTreeMap<String, String>,
    /// How the agent upgrades (`upgrade: {hops: true}`).
    #[serde(default)]
    pub upgrade: UpgradeMode,
}

/// `upgrade:` of `stackwave.yaml`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeMode {
    /// `hops: true`: a commit whose only unacknowledged error findings are `skipped-hops` is
    /// not refused; the agent applies each intermediate version of the operator's upgrade
    /// path as its own health-gated revision (kind `hop`), then the commit
    /// ([`crate::upgrade::gate`]). Default `false`: such a commit is refused.
    #[serde(default)]
    pub hops: bool,
}

/// One acknowledged finding: a rule id and a component.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Acknowledgement {
    /// Rule id (`chart-downgrade`, …).
    pub rule: String,
    /// Component the finding names.
    pub component: String,
}

/// A repository followed through its Git history.
pub struct Repo {
    /// The URL or path as given.
    pub url: String,
    source: Source,
    /// The working tree of a local repository (relative paths outside the exported tree
    /// resolve against it, as they would in the operator's checkout).
    pub workdir: Option<PathBuf>,
    cache: PathBuf,
}

fn sha_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Repo {
    /// Mirrors `url` (a local path or a Git URL) under `cache`, fetching every branch and tag.
    ///
    /// # Errors
    /// [`UpgradeError::Git`] naming the repository.
    pub fn open(url: &str, cache: &Path) -> Result<Repo, UpgradeError> {
        let local = Path::new(url);
        let (fetch_url, workdir) = if local.exists() {
            let abs = std::fs::canonicalize(local).map_err(|e| UpgradeError::Git {
                repo: url.into(),
                cause: e.to_string(),
            })?;
            let wd = git2::Repository::open(&abs)
                .ok()
                .and_then(|r| r.workdir().map(Path::to_path_buf));
            (abs.display().to_string(), wd)
        } else {
            (url.to_string(), None)
        };
        let git = |cause: String| UpgradeError::Git {
            repo: url.into(),
            cause,
        };
        let state = cache.join("upgrade").join(sha_hex(&fetch_url));
        let source = Source::open(&fetch_url, "HEAD", &state).map_err(|e| git(e.cause))?;
        let mirror = git2::Repository::open_bare(state.join("mirror.git"))
            .map_err(|e| git(e.message().into()))?;
        let mut remote = mirror
            .remote_anonymous(&fetch_url)
            .map_err(|e| git(e.message().into()))?;
        remote
            .fetch(
                &[
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                None,
                None,
            )
            .map_err(|e| git(e.message().into()))?;
        Ok(Repo {
            url: url.to_string(),
            source,
            workdir,
            cache: cache.to_path_buf(),
        })
    }

    /// Resolves a revision (`HEAD~1`, a branch, a tag, a commit) to a commit: first in the
    /// local repository (so any `git rev-parse` form works), then as a tag, branch or commit
    /// of the mirror.
    ///
    /// # Errors
    /// [`UpgradeError::Git`]: the revision names nothing.
    pub fn resolve(&self, rev: &str) -> Result<Commit, UpgradeError> {
        let local = self.workdir.as_ref().and_then(|w| {
            let r = git2::Repository::open(w).ok()?;
            let c = r.revparse_single(rev).ok()?.peel_to_commit().ok()?;
            Some(c.id().to_string())
        });
        let r = local.as_deref().unwrap_or(rev);
        self.source
            .fetch_ref(r, true)
            .map_err(|e| UpgradeError::Git {
                repo: self.url.clone(),
                cause: format!("revision {rev}: {}", e.cause),
            })
    }

    /// The tree of `commit` as a directory (exported once per commit).
    ///
    /// # Errors
    /// [`UpgradeError::Git`] on export failures.
    pub fn tree(&self, commit: &Commit) -> Result<PathBuf, UpgradeError> {
        let dest = self.cache.join("upgrade-trees").join(&commit.id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = self.cache.join("upgrade-trees").join(format!(
            "partial-{}-{}",
            commit.id,
            std::process::id()
        ));
        self.source
            .export(&commit.id, &tmp)
            .map_err(|e| UpgradeError::Git {
                repo: self.url.clone(),
                cause: e.cause,
            })?;
        if std::fs::rename(&tmp, &dest).is_err() && !dest.is_dir() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(UpgradeError::Git {
                repo: self.url.clone(),
                cause: format!(
                    "cannot place the tree of {} at {}",
                    commit.id,
                    dest.display()
                ),
            });
        }
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(dest)
    }
}

/// One side of an upgrade.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The commit (a directory's digest for [`Revision::from_dir`]).
    pub commit: String,
    /// The exported tree (holds `stackwave.yaml`).
    pub dir: PathBuf,
    /// `stackwave.yaml`.
    pub cfg: RepoConfig,
    /// The upgrade fields of `stackwave.yaml`.
    pub upgrade: UpgradeConfig,
    /// The Genestack base directory.
    pub genestack: PathBuf,
    /// `url@ref` of a base pinned in Git.
    pub base_ref: Option<String>,
    /// Unpacked charts (`charts:`), when the directory exists.
    pub charts: Option<PathBuf>,
    /// The catalog: built in, with the repository's `components/*.yaml` laid over it.
    pub catalog: Catalog,
}

/// Resolves `p` against the tree, else against the local working tree.
fn resolve_path(tree: &Path, workdir: Option<&Path>, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let in_tree = tree.join(p);
    if in_tree.exists() {
        return in_tree;
    }
    workdir.map(|w| w.join(p)).unwrap_or(in_tree)
}

impl Revision {
    /// Reads a revision from an exported tree.
    ///
    /// # Errors
    /// [`UpgradeError::Config`] for a bad `stackwave.yaml` or catalog overlay;
    /// [`UpgradeError::Base`] when a pinned base cannot be had.
    pub fn from_tree(
        commit: &str,
        dir: &Path,
        workdir: Option<&Path>,
        cache: &Path,
        offline: bool,
    ) -> Result<Revision, UpgradeError> {
        let file = dir.join("stackwave.yaml");
        let cfg_err = |cause: String| UpgradeError::Config {
            file: format!("{} (commit {})", "stackwave.yaml", short(commit)),
            cause,
        };
        let cfg = crate::reconcile::read_config(dir).map_err(|e| cfg_err(e.to_string()))?;
        let text = std::fs::read_to_string(&file).map_err(|e| cfg_err(e.to_string()))?;
        let upgrade: UpgradeConfig = serde_json::from_value(crate::component::to_json(
            &parse_one(&text).map_err(|e| cfg_err(e.to_string()))?,
        ))
        .map_err(|e| cfg_err(e.to_string()))?;
        let (genestack, base_ref) = match (&cfg.genestack.path, &cfg.genestack.git) {
            (Some(p), None) => (resolve_path(dir, workdir, p), None),
            (None, Some(g)) => {
                let (c, d) = g.checkout(cache, offline).map_err(|e| UpgradeError::Base {
                    base: format!("{}@{}", g.url, g.r#ref),
                    cause: e.cause,
                })?;
                (d, Some(format!("{}@{} ({})", g.url, g.r#ref, short(&c.id))))
            }
            _ => {
                return Err(cfg_err(
                    "genestack needs exactly one of `path` or `git`".into(),
                ))
            }
        };
        let charts = cfg
            .charts
            .as_ref()
            .map(|c| resolve_path(dir, workdir, &c.path))
            .filter(|p| p.is_dir());
        let mut catalog = Catalog::builtin().map_err(|e| cfg_err(e.to_string()))?;
        let overlay = dir.join("components");
        if overlay.is_dir() {
            catalog
                .overlay_dir(&overlay)
                .map_err(|e| cfg_err(e.to_string()))?;
        }
        Ok(Revision {
            commit: commit.to_string(),
            dir: dir.to_path_buf(),
            cfg,
            upgrade,
            genestack,
            base_ref,
            charts,
            catalog,
        })
    }

    /// The render sources: the base, with the tree as the operator overrides.
    pub fn sources(&self) -> Sources {
        Sources {
            genestack: self.genestack.clone(),
            overrides: Some(self.dir.clone()),
        }
    }

    /// Enabled components: catalog components, then `manifests:` entries.
    pub fn components(&self) -> Vec<String> {
        let mut v = self.cfg.components.clone();
        v.extend(self.cfg.manifests.iter().map(|m| m.name.clone()));
        v
    }

    /// The effective chart pins: the base's `helm-chart-versions.yaml` with the operator's
    /// (`<tree>/helm-chart-versions.yaml`) over it, key → version.
    pub fn chart_pins(&self) -> BTreeMap<String, String> {
        let mut pins = read_pins(&self.genestack);
        pins.extend(read_pins(&self.dir));
        pins
    }

    /// The chart source of an enabled catalog component.
    pub fn chart_source(&self, component: &str) -> Option<&ChartSource> {
        self.catalog.get(component).map(|c| &c.chart)
    }

    /// A component's image references from its values files (`images.tags`, layered as Helm
    /// layers the files: later files win), image key → reference.
    pub fn image_tags(&self, component: &str) -> BTreeMap<String, String> {
        let Some(c) = self.catalog.get(component) else {
            return BTreeMap::new();
        };
        let mut tags = BTreeMap::new();
        let reads = crate::render::reads::Reader::new();
        for f in values::value_files(&reads, &self.sources(), &c.values) {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            let Some(doc) = parse_documents(&text)
                .ok()
                .and_then(|d| d.into_iter().next())
            else {
                continue;
            };
            if let Some(m) = doc.get_path(&["images", "tags"]).and_then(Value::as_map) {
                for (k, v) in m.iter() {
                    match v.scalar_string() {
                        Some(s) if !v.is_null() => {
                            tags.insert(k.clone(), s);
                        }
                        _ => {
                            tags.remove(k);
                        }
                    }
                }
            }
        }
        tags
    }

    /// The Secrets the enabled components' bindings read: (namespace, name) → components.
    pub fn bound_secrets(&self) -> BTreeMap<(String, String), BTreeSet<String>> {
        let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for name in &self.cfg.components {
            let Some(c) = self.catalog.get(name) else {
                continue;
            };
            for b in &c.bindings {
                if let Some(s) = &b.secret {
                    let ns = b
                        .namespace
                        .clone()
                        .unwrap_or_else(|| c.release.namespace.clone());
                    out.entry((ns, s.clone())).or_default().insert(name.clone());
                }
            }
        }
        out
    }

    /// A file of the tree, else of the base (operator files win, as in `/etc/genestack`).
    pub fn file(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(rel))
            .or_else(|_| std::fs::read_to_string(self.genestack.join(rel)))
            .ok()
    }
}

/// `charts:` of a `helm-chart-versions.yaml` in `dir` (empty when absent or malformed).
fn read_pins(dir: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(dir.join("helm-chart-versions.yaml")) else {
        return BTreeMap::new();
    };
    let Ok(docs) = parse_documents(&text) else {
        return BTreeMap::new();
    };
    docs.iter()
        .filter_map(|d| d.get("charts").and_then(Value::as_map))
        .flat_map(|m| m.iter())
        .filter_map(|(k, v)| v.scalar_string().map(|s| (k.clone(), s)))
        .collect()
}

/// The first ten characters of a commit.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}
