//! `stackwave init DIR`: scaffolds a desired-state repository laid out like Genestack's
//! `/etc/genestack` (the overrides tree the `bin/install-<svc>.sh` scripts read, described in
//! Genestack's `docs/genestack-structure-and-files.md`), plus a `stackwave.yaml` pinning the
//! Genestack base:
//!
//! | path | from |
//! |---|---|
//! | `stackwave.yaml` | the base (a Git URL at a tag or commit, or a local path), `components: auto` ([`crate::auto`]) |
//! | `helm-chart-versions.yaml`, `openstack-components.yaml` | copied from the base, as Genestack's bootstrap copies them |
//! | `helm-configs/global_overrides/`, `helm-configs/<dir>/` | one directory per catalog entry's `values.dir` |
//! | `kustomize/<svc>/overlay/kustomization.yaml` | the stub Genestack's bootstrap writes ([`OVERLAY_STUB`]) for each catalog overlay the base has none of |
//! | `manifests/` | plain manifests (a `manifests:` entry of `stackwave.yaml` each) |
//! | `regions/<name>/` | one such tree per region, as `docs/multi-region-support.md` lays a multi-region repository out (each region's tree is what `/etc/genestack` is for that region) |
//!
//! The scaffold renders exactly what the base renders alone: the overrides directories are
//! empty and the overlays are Genestack's own stubs.

use crate::catalog::{Effective, GenestackRelease};
use crate::render::postrender::OVERLAY_STUB;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What to scaffold.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The new repository's directory (created; must be absent or empty).
    pub dir: PathBuf,
    /// The Genestack base's Git repository (default: the built-in catalog's release URL).
    pub genestack_url: Option<String>,
    /// Tag or commit of the base (default: the built-in catalog's release).
    pub genestack_ref: Option<String>,
    /// A local Genestack base instead of the Git pin (offline clouds, tests); written into
    /// `stackwave.yaml` as an absolute `genestack.path`.
    pub genestack_path: Option<PathBuf>,
    /// Local unpacked charts (`charts.path`); without it charts come from catalog sources.
    pub charts_path: Option<PathBuf>,
    /// Where the Git base is fetched to read its `helm-chart-versions.yaml` and
    /// `openstack-components.yaml` (a mirror; see [`crate::source::Pinned`]).
    pub cache_dir: PathBuf,
    /// Region names: each gets its own tree under `regions/<name>/`.
    pub regions: Vec<String>,
    /// `git init` the directory and commit the scaffold.
    pub git: bool,
}

/// Why the scaffold was not made.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The directory exists and holds something.
    #[error("{0}: not empty (stackwave init only writes into a new or empty directory)")]
    NotEmpty(PathBuf),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The built-in catalog is unreadable (a broken build).
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogLoadError),
    /// The Genestack base could not be fetched.
    #[error("Genestack base: {0}")]
    Base(#[from] crate::source::SourceError),
    /// The base lacks a file the scaffold copies.
    #[error("Genestack base {base}: no {file} (is it a Genestack checkout?)")]
    NotABase {
        /// The base directory.
        base: PathBuf,
        /// The missing file.
        file: String,
    },
    /// A region name that is not one path segment.
    #[error("region name `{0}`: use letters, digits, `-`, `_` and `.` only")]
    BadRegion(String),
    /// `git init` or the first commit failed.
    #[error("git in {dir}: {source}")]
    Git {
        /// The repository.
        dir: PathBuf,
        /// The error.
        #[source]
        source: git2::Error,
    },
}

/// What [`init`] made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scaffold {
    /// The repository directory.
    pub dir: PathBuf,
    /// The base it pins: `url@ref`, or the local path.
    pub base: String,
    /// Files written (relative to `dir`), sorted.
    pub files: Vec<String>,
    /// The first commit, with `--git`.
    pub commit: Option<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Writer<'a> {
    root: &'a Path,
    files: Vec<String>,
}

impl Writer<'_> {
    fn write(&mut self, rel: &str, text: &str) -> Result<(), InitError> {
        let p = self.root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&p, text).map_err(io(&p))?;
        self.files.push(rel.to_string());
        Ok(())
    }
}

/// The `stackwave.yaml` of a scaffold.
fn config(base: &str, charts: Option<&Path>) -> String {
    let mut s = String::from(
        "# Stackwave agent configuration for this repository (see `stackwave init`).\n",
    );
    s.push_str(base);
    match charts {
        Some(c) => s.push_str(&format!(
            "charts:\n  # Unpacked charts (offline clouds).\n  path: {}\n",
            c.display()
        )),
        None => s.push_str(
            "# Without `charts:`, each component's chart comes from its catalog source (Helm\n\
             # repository, OCI registry or Git) at the pin in helm-chart-versions.yaml, cached\n\
             # under the agent's state directory.\n",
        ),
    }
    s.push_str(
        "# Plain manifests applied as components of their own (kustomize directories here):\n\
         #   - {name: my-manifests, path: manifests/my-manifests, wave: 0}\n\
         manifests: []\n\
         # Enabled catalog components: `auto` is what Genestack's setup-infrastructure.sh and\n\
         # setup-openstack.sh install (the infrastructure layer, then the OpenStack services\n\
         # openstack-components.yaml enables); or list them (`stackwave catalog` shows all).\n",
    );
    s.push_str("components: auto\n");
    s.push_str(
        "# Components that may not be rolled back past this commit (a database migration ran).\n\
         irreversible: []\n\
         # Components whose drift is only reported, never corrected.\n\
         detectOnly: []\n",
    );
    s
}

/// Writes one `/etc/genestack`-like tree (a repository root, or a region's) under `prefix`.
fn tree(
    w: &mut Writer<'_>,
    prefix: &str,
    catalog: &Effective,
    base_dir: &Path,
    base_files: &[(&str, String)],
    cfg: &str,
) -> Result<(), InitError> {
    w.write(&format!("{prefix}stackwave.yaml"), cfg)?;
    for (name, text) in base_files {
        w.write(&format!("{prefix}{name}"), text)?;
    }
    w.write(
        &format!("{prefix}helm-configs/global_overrides/.gitkeep"),
        "",
    )?;
    let dirs: BTreeSet<&str> = catalog
        .entries
        .values()
        .filter(|e| !e.component.example)
        .map(|e| e.component.values.dir.as_str())
        .filter(|d| !d.is_empty())
        .collect();
    for d in dirs {
        w.write(&format!("{prefix}helm-configs/{d}/.gitkeep"), "")?;
    }
    // Genestack's bootstrap writes the stub where the base has no overlay of its own; a stub
    // over a real overlay would shadow it.
    let overlays: BTreeSet<&str> = catalog
        .entries
        .values()
        .filter(|e| !e.component.example)
        .filter_map(|e| e.component.post_render.as_ref().map(|p| p.overlay.as_str()))
        .filter(|o| {
            o.ends_with("/overlay")
                && !base_dir
                    .join("base-kustomize")
                    .join(o)
                    .join("kustomization.yaml")
                    .is_file()
        })
        .collect();
    for o in overlays {
        w.write(
            &format!("{prefix}kustomize/{o}/kustomization.yaml"),
            OVERLAY_STUB,
        )?;
    }
    w.write(
        &format!("{prefix}manifests/README.md"),
        "Plain manifests placed here are applied as they are: one kustomize directory per\n\
         component, each listed under `manifests:` in stackwave.yaml.\n",
    )?;
    Ok(())
}

/// The repository README of a scaffold.
fn readme(regions: &[String]) -> String {
    let mut s = String::from(
        "# A Stackwave GitOps repository\n\n\
         The desired state of a Genestack cloud. It mirrors Genestack's `/etc/genestack`, so the\n\
         same files work with the `bin/install-<svc>.sh` scripts and with Stackwave:\n\n\
         | path | what |\n|---|---|\n\
         | `stackwave.yaml` | the Genestack base (pinned), the enabled components, agent policy |\n\
         | `helm-chart-versions.yaml` | chart pins (copied from the base; edit to move a chart) |\n\
         | `openstack-components.yaml` | which OpenStack services the base enables |\n\
         | `helm-configs/global_overrides/*.yaml` | values layered into every component that takes global overrides |\n\
         | `helm-configs/<component>/*.yaml` | the component's own values, layered last (bash glob order) |\n\
         | `kustomize/<component>/overlay/` | post-render overlays, layered over the base's `base-kustomize/` |\n\
         | `manifests/` | plain manifests applied as they are |\n\
         | `components/<name>.yaml` | (optional) catalog entries of this repository, replacing or adding to Stackwave's built-in ones |\n",
    );
    if !regions.is_empty() {
        s.push_str(&format!(
            "| `regions/<name>/` | one such tree per region ({}), each what `/etc/genestack` is for that region |\n",
            regions.join(", ")
        ));
    }
    s.push_str("\nChange the cloud by committing here; undo with `git revert`.\n");
    s
}

/// Scaffolds the repository.
///
/// # Errors
/// [`InitError`]: a non-empty directory, a bad region name, a base that cannot be fetched or
/// is not a Genestack checkout, I/O and Git failures.
pub fn init(opts: &InitOptions) -> Result<Scaffold, InitError> {
    let dir = &opts.dir;
    if dir.exists() {
        let mut rd = std::fs::read_dir(dir).map_err(io(dir))?;
        if rd.next().is_some() {
            return Err(InitError::NotEmpty(dir.clone()));
        }
    }
    for r in &opts.regions {
        let ok = !r.is_empty()
            && r != "."
            && r != ".."
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(InitError::BadRegion(r.clone()));
        }
    }
    let catalog = Effective::builtin()?;
    let release = GenestackRelease::builtin().map_err(crate::catalog::CatalogLoadError::from)?;
    let (base_dir, base_cfg, base_name) = match &opts.genestack_path {
        Some(p) => {
            let abs = std::fs::canonicalize(p).map_err(io(p))?;
            let cfg = format!(
                "genestack:\n  # The Genestack base: a local checkout.\n  path: {}\n",
                abs.display()
            );
            (abs.clone(), cfg, abs.display().to_string())
        }
        None => {
            let pinned = crate::source::Pinned {
                url: opts.genestack_url.clone().unwrap_or(release.url.clone()),
                r#ref: opts.genestack_ref.clone().unwrap_or(release.r#ref.clone()),
                path: String::new(),
            };
            let cache = crate::fetch::genestack_cache(&opts.cache_dir, &pinned.r#ref);
            let (_, tree) = pinned.checkout(&cache, false)?;
            let cfg = format!(
                "genestack:\n  # The Genestack base: its Git repository at a tag or commit. The base changes\n  # only when `ref` does (a pull request like any other).\n  git:\n    url: {}\n    ref: {}\n",
                pinned.url, pinned.r#ref
            );
            (tree, cfg, format!("{}@{}", pinned.url, pinned.r#ref))
        }
    };
    let mut base_files = Vec::new();
    for f in ["helm-chart-versions.yaml", "openstack-components.yaml"] {
        let p = base_dir.join(f);
        if !p.is_file() {
            return Err(InitError::NotABase {
                base: base_dir.clone(),
                file: f.into(),
            });
        }
        base_files.push((f, std::fs::read_to_string(&p).map_err(io(&p))?));
    }
    let charts = match &opts.charts_path {
        Some(c) => Some(std::fs::canonicalize(c).map_err(io(c))?),
        None => None,
    };
    let cfg = config(&base_cfg, charts.as_deref());
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut w = Writer {
        root: dir,
        files: Vec::new(),
    };
    w.write("README.md", &readme(&opts.regions))?;
    tree(&mut w, "", &catalog, &base_dir, &base_files, &cfg)?;
    for r in &opts.regions {
        tree(
            &mut w,
            &format!("regions/{r}/"),
            &catalog,
            &base_dir,
            &base_files,
            &cfg,
        )?;
    }
    let commit = if opts.git {
        let git = |source| InitError::Git {
            dir: dir.clone(),
            source,
        };
        let repo = git2::Repository::init(dir).map_err(git)?;
        let mut index = repo.index().map_err(git)?;
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .map_err(git)?;
        index.write().map_err(git)?;
        let tree = repo
            .find_tree(index.write_tree().map_err(git)?)
            .map_err(git)?;
        let sig = repo
            .signature()
            .or_else(|_| git2::Signature::now("stackwave init", "stackwave@localhost"))
            .map_err(git)?;
        let msg = format!("Scaffold from stackwave init (Genestack base {base_name})");
        let oid = repo
            .commit(Some("HEAD"), &sig, &sig, &msg, &tree, &[])
            .map_err(git)?;
        Some(oid.to_string())
    } else {
        None
    };
    let mut files = w.files;
    files.sort();
    Ok(Scaffold {
        dir: dir.clone(),
        base: base_name,
        files,
        commit,
    })
}

/// The next steps `stackwave init` prints.
pub fn next_steps(s: &Scaffold, regions: &[String]) -> String {
    let d = s.dir.display();
    let mut out = format!(
        "Scaffolded a Stackwave repository in {d} ({} files; Genestack base {}).\n",
        s.files.len(),
        s.base
    );
    if let Some(c) = &s.commit {
        out.push_str(&format!("First commit: {}\n", &c[..c.len().min(10)]));
    }
    out.push_str("\nNext steps:\n");
    out.push_str(&format!(
        "  1. Put your values in {d}/helm-configs/<component>/ and overlays in {d}/kustomize/<component>/overlay/;\n     enable components in {d}/stackwave.yaml (`stackwave catalog --repo {d}` lists them).\n"
    ));
    out.push_str(&format!("  2. See the waves: stackwave plan --repo {d}\n"));
    if s.commit.is_none() {
        out.push_str(&format!(
            "  3. Commit: git -C {d} init && git -C {d} add -A && git -C {d} commit -m 'Initial desired state'\n"
        ));
    } else {
        out.push_str("  3. Push it to your Git server (the agent follows a branch).\n");
    }
    out.push_str(
        "  4. Run the agent: stackwave run --repo <git URL> --state /var/lib/stackwave (or `kubectl apply -k deploy/` in-cluster)\n",
    );
    if !regions.is_empty() {
        out.push_str(&format!(
            "  Regions: {d}/regions/<name>/ holds each region's tree ({}); run one agent per region on its tree\n  (`stackwave plan --repo {d}/regions/<name>`), with --instance <name>.\n",
            regions.join(", ")
        ));
    }
    out
}
