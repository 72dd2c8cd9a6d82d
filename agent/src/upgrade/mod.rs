//! The upgrade stage: a pull request's change of the desired state — `--from REV --to REV` of
//! a Git repository — previewed, checked and planned before it merges, with no cluster
//! needed. Both revisions are exported from Git ([`revision`]), rendered by the render stage
//! with **one** render cache ([`render_side`]: components whose inputs did not move render
//! once), and compared object by object and field by field ([`diff`]); the policy rules
//! ([`rules`], driven by the data files `policies/hops.yaml` and
//! `policies/chart-sources.yaml`) give [`check::Finding`]s; [`plan`] orders the change in the
//! agent's waves with operator hop sequences; [`markdown`] formats a pull-request comment;
//! [`gate`] is the agent's pre-apply check (and, with `upgrade: {hops: true}`, its hop
//! sequences). With a cluster, `diff` also compares the new revision with live
//! ([`command::live_diff`]).
//!
//! Commands (exit codes as `kubectl diff`): `stackwave diff --repo R --from A --to B` (0 no
//! change, 1 changes, 2 could not run), `stackwave check …` (0 nothing at or above
//! `--fail-on`, 1 something is, 2 could not run), `stackwave plan --repo R --from A --to B`.

pub mod check;
pub mod command;
pub mod diff;
pub mod gate;
pub mod markdown;
pub mod plan;
pub mod revision;
pub mod rules;

use crate::render::cache::RenderCache;
use crate::render::charts::{ChartStore, Fetcher};
use crate::render::objects::Objects;
use crate::render::Inputs;
use revision::{Repo, Revision};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Why an upgrade command could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The repository or a revision could not be read from Git.
    #[error("git repository {repo}: {cause}")]
    Git {
        /// The repository as given.
        repo: String,
        /// Cause.
        cause: String,
    },
    /// `stackwave.yaml` (or the repository's catalog overlay) is malformed.
    #[error("{file}: {cause}")]
    Config {
        /// The file and commit.
        file: String,
        /// Cause.
        cause: String,
    },
    /// A Genestack base pinned in Git could not be had.
    #[error("genestack base {base}: {cause}")]
    Base {
        /// `url@ref`.
        base: String,
        /// Cause.
        cause: String,
    },
    /// A component did not render.
    #[error("commit {commit}: {source}")]
    Render {
        /// The commit.
        commit: String,
        /// Cause.
        #[source]
        source: Box<crate::render::RenderError>,
    },
    /// A `manifests:` directory or rendered output is not valid.
    #[error("commit {commit}: {cause}")]
    Objects {
        /// The commit.
        commit: String,
        /// Cause.
        cause: String,
    },
    /// A `--secrets` file could not be read.
    #[error("{0}")]
    Secrets(String),
    /// A policy data file is malformed.
    #[error("{file}: {cause}")]
    Policy {
        /// The file.
        file: String,
        /// Cause.
        cause: String,
    },
    /// The cluster could not be asked (`--server`/`--kubeconfig`).
    #[error("{0}")]
    Cluster(String),
    /// `diff --from --to --server`: the new revision could not be compared with the live
    /// cluster (connection, state directory, render with the cluster's lookups, a dry run
    /// the server refused).
    #[error("live diff of commit {commit}: {source}")]
    Live {
        /// The new revision's commit.
        commit: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What the upgrade commands are given.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repository path or Git URL.
    pub repo: String,
    /// The base revision (what the cloud runs).
    pub from: String,
    /// The revision to preview.
    pub to: String,
    /// Git mirrors, exported trees, pinned bases and chart archives.
    pub cache_dir: PathBuf,
    /// Use only cached charts and mirrors (no network).
    pub offline: bool,
    /// Multi-document YAML files of the Secrets (and looked-up objects) renders read; bindings
    /// without one render a fixed placeholder (values are masked in every output anyway).
    pub secrets: Vec<PathBuf>,
}

/// Both sides of an upgrade.
pub struct Upgrade {
    /// The base revision.
    pub from: Revision,
    /// The new revision.
    pub to: Revision,
}

/// Rendered objects of one revision: component → objects.
pub type Side = BTreeMap<String, Vec<Json>>;

impl Upgrade {
    /// Opens the repository and reads both revisions.
    ///
    /// # Errors
    /// [`UpgradeError`] naming the repository, commit or file.
    pub fn open(opts: &Options) -> Result<Upgrade, UpgradeError> {
        let repo = Repo::open(&opts.repo, &opts.cache_dir)?;
        let side = |rev: &str| -> Result<Revision, UpgradeError> {
            let c = repo.resolve(rev)?;
            let tree = repo.tree(&c)?;
            Revision::from_tree(
                &c.id,
                &tree,
                repo.workdir.as_deref(),
                &opts.cache_dir,
                opts.offline,
            )
        };
        let from = side(&opts.from)?;
        let to = side(&opts.to)?;
        Ok(Upgrade { from, to })
    }
}

/// The objects renders look up: the `--secrets` files, and a fixed placeholder for every
/// bound Secret key they lack (so a repository renders offline; the placeholder never
/// changes, so it shows no difference).
///
/// # Errors
/// [`UpgradeError::Secrets`] for unreadable files.
pub fn lookups(files: &[PathBuf], revs: &[&Revision]) -> Result<Objects, UpgradeError> {
    let mut objects = Objects::default();
    for f in files {
        objects
            .load_file(f)
            .map_err(|e| UpgradeError::Secrets(e.to_string()))?;
    }
    let mut missing: BTreeMap<(String, String), serde_json::Map<String, Json>> = BTreeMap::new();
    for rev in revs {
        for name in &rev.cfg.components {
            let Some(c) = rev.catalog.get(name) else {
                continue;
            };
            for b in &c.bindings {
                let (Some(s), Some(k)) = (&b.secret, &b.key) else {
                    continue;
                };
                let ns = b.namespace.as_deref().unwrap_or(&c.release.namespace);
                if objects.secret_value(ns, s, k).is_err() {
                    missing
                        .entry((ns.to_string(), s.clone()))
                        .or_default()
                        .insert(
                            k.clone(),
                            json!(base64::Engine::encode(
                                &base64::engine::general_purpose::STANDARD,
                                format!("stackwave-placeholder-{s}-{k}")
                            )),
                        );
                }
            }
        }
    }
    for ((ns, name), data) in missing {
        let mut merged = objects
            .get("Secret", &ns, &name)
            .map(crate::component::to_json)
            .and_then(|j| j.get("data").and_then(Json::as_object).cloned())
            .unwrap_or_default();
        merged.extend(data);
        objects.insert(crate::render::objects::from_json(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "data": merged,
        })));
    }
    Ok(objects)
}

/// Renders every enabled component of a revision (catalog components through the shared
/// `cache`, `manifests:` through kustomize), as the agent would apply them: namespaced
/// objects without a namespace get the release's, test hooks are dropped.
///
/// # Errors
/// [`UpgradeError::Render`] for the first component that fails (an unavailable chart
/// included), [`UpgradeError::Objects`] for malformed output.
pub fn render_side(
    rev: &Revision,
    cache: &RenderCache,
    objects: &Objects,
    opts: &Options,
) -> Result<Side, UpgradeError> {
    let inputs = Inputs {
        sources: rev.sources(),
        charts: match &rev.charts {
            Some(d) => ChartStore::Dir(d.clone()),
            None => ChartStore::Repos(Fetcher {
                cache_dir: opts.cache_dir.clone(),
                offline: opts.offline,
                timeout: Duration::from_secs(60),
            }),
        },
        objects: objects.clone(),
        catalog: rev.catalog.clone(),
    };
    let bad = |cause: String| UpgradeError::Objects {
        commit: rev.commit.clone(),
        cause,
    };
    let mut out = Side::new();
    for m in &rev.cfg.manifests {
        let dir = rev.dir.join(&m.path);
        let text = kustomize_rs::build_dir(&dir, &Default::default())
            .map_err(|e| bad(format!("manifests {}: {e}", m.name)))?;
        let objs = crate::reconcile::objects_of(&text)
            .map_err(|e| bad(format!("manifests {}: {e}", m.name)))?;
        out.insert(m.name.clone(), objs);
    }
    for c in &rev.cfg.components {
        let (r, _) = cache
            .render(&inputs, c)
            .map_err(|source| UpgradeError::Render {
                commit: rev.commit.clone(),
                source: Box::new(source),
            })?;
        let ns = rev
            .catalog
            .get(c)
            .map(|x| x.release.namespace.clone())
            .unwrap_or_default();
        let objs = crate::reconcile::prepare::install_objects(
            r.objects().map_err(|e| bad(e.to_string()))?,
            &ns,
        );
        out.insert(c.clone(), objs);
    }
    Ok(out)
}

/// Both sides rendered with one cache.
///
/// # Errors
/// As [`render_side`] and [`lookups`].
pub fn render_both(
    up: &Upgrade,
    cache: &RenderCache,
    opts: &Options,
) -> Result<(Side, Side), UpgradeError> {
    let objects = lookups(&opts.secrets, &[&up.from, &up.to])?;
    let from = render_side(&up.from, cache, &objects, opts)?;
    let to = render_side(&up.to, cache, &objects, opts)?;
    Ok((from, to))
}
