//! The repository's `stackwave.yaml` ([`RepoConfig`]) and its waves ([`plan_waves`]).

use crate::component::Catalog;
use crate::plan;
use std::path::{Path, PathBuf};

/// Why `stackwave.yaml` could not be read or planned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{}: {source}", file.display())]
    Yaml {
        /// The file.
        file: PathBuf,
        /// Cause (with line and column).
        #[source]
        source: kustomize_rs::yaml::YamlError,
    },
    /// Unknown or mistyped fields.
    #[error("{}: {source}", file.display())]
    Fields {
        /// The file.
        file: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The enabled components cannot be planned.
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// The catalog cannot be loaded.
    #[error(transparent)]
    Catalog(#[from] crate::component::CatalogError),
    /// The repository's own `components/` do not load.
    #[error(transparent)]
    RepoCatalog(#[from] crate::catalog::CatalogLoadError),
}

/// The repository's `stackwave.yaml`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RepoConfig {
    /// The Genestack base: a directory, or a Git repository pinned at a tag or commit.
    pub genestack: Base,
    /// Local charts (offline clouds, tests); without it, charts come from each catalog
    /// component's source (Helm repository, OCI registry or Git), cached under the agent's
    /// cache directory ([`crate::reconcile::Settings::cache_dir`]).
    #[serde(default)]
    pub charts: Option<PathRef>,
    /// Plain kustomize directories applied as components.
    #[serde(default)]
    pub manifests: Vec<Manifests>,
    /// Enabled catalog components, or `auto` ([`crate::auto`], resolved by [`read_config`]);
    /// left out (or given no value) it is `auto`, and `[]` enables none.
    #[serde(
        default = "crate::auto::omitted",
        deserialize_with = "crate::auto::deserialize"
    )]
    pub components: Vec<String>,
    /// Components that may not be rolled back past this commit (a database migration ran):
    /// `stackwave rollback` to an earlier revision that would change them is refused unless
    /// forced.
    #[serde(default)]
    pub irreversible: Vec<String>,
    /// Components whose drift is only reported (metric, Event, `status`), never corrected,
    /// even when the agent corrects drift elsewhere.
    #[serde(default, rename = "detectOnly")]
    pub detect_only: Vec<String>,
}

/// Where the Genestack base (`base-helm-configs/`, `base-kustomize/`,
/// `helm-chart-versions.yaml`) comes from: exactly one of `path` or `git`.
///
/// ```yaml
/// genestack:
///   git:
///     url: https://github.com/rackerlabs/genestack
///     ref: release-2025.2.0   # a tag (or commit): the base upgrades only when this changes
///     path: ""                # the directory holding base-helm-configs/ (default: the root)
/// ```
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// A directory, relative to the repository root unless absolute.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A pinned Git repository.
    #[serde(default)]
    pub git: Option<crate::source::Pinned>,
}

/// A path, relative to the repository root unless absolute.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PathRef {
    /// The path.
    pub path: PathBuf,
}

/// A plain-manifests component.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Manifests {
    /// Component name.
    pub name: String,
    /// kustomize directory in the repository.
    pub path: PathBuf,
    /// Wave.
    #[serde(default)]
    pub wave: i32,
}

/// Reads `stackwave.yaml` at the root of a checkout.
///
/// # Errors
/// Missing file, malformed YAML, unknown or mistyped fields — each naming the file.
pub fn read_config(checkout: &Path) -> Result<RepoConfig, ConfigError> {
    let file = checkout.join("stackwave.yaml");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(source) => return Err(ConfigError::Read { file, source }),
    };
    let v = match kustomize_rs::yaml::parse_one(&text) {
        Ok(v) => v,
        Err(source) => return Err(ConfigError::Yaml { file, source }),
    };
    let mut cfg: RepoConfig = serde_json::from_value(crate::component::to_json(&v))
        .map_err(|source| ConfigError::Fields { file, source })?;
    if cfg.components == [crate::auto::AUTO] {
        // The repository's own catalog entries take part (their `auto` rules too).
        let catalog = crate::catalog::for_checkout(&Catalog::builtin()?, checkout)?;
        let base = cfg.genestack.path.as_ref().map(|p| checkout.join(p));
        cfg.components = crate::auto::resolve(&catalog, checkout, base.as_deref());
    }
    Ok(cfg)
}

/// The waves of a repository: catalog components by wave and `dependsOn`
/// ([`plan::waves`]), with `manifests` entries (in their order) first in their waves.
///
/// # Errors
/// Unknown components, missing dependencies, cycles.
pub fn plan_waves(catalog: &Catalog, cfg: &RepoConfig) -> Result<Vec<plan::Wave>, ConfigError> {
    let planned = plan::waves(catalog, &cfg.components)?;
    let manifests = cfg.manifests.iter().map(|m| (m.wave, m.name.clone()));
    let catalog = planned
        .into_iter()
        .flat_map(|w| w.components.into_iter().map(move |c| (w.index, c)));
    Ok(plan::group(manifests.chain(catalog)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> RepoConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn manifests_come_first_in_their_waves_in_their_order() {
        let catalog = Catalog::builtin().unwrap();
        let cfg = config(serde_json::json!({
            "genestack": {"path": "base"},
            "components": ["memcached", "keystone"],
            "manifests": [
                {"name": "ns", "path": "m/ns", "wave": 0},
                {"name": "extra", "path": "m/extra", "wave": 0},
                {"name": "late", "path": "m/late", "wave": 99}
            ]
        }));
        let waves = plan_waves(&catalog, &cfg).unwrap();
        let planned = plan::waves(&catalog, &cfg.components).unwrap();
        // Every catalog component keeps its planned wave; manifests lead theirs.
        for w in &planned {
            let got = waves.iter().find(|x| x.index == w.index).unwrap();
            assert!(got.components.ends_with(&w.components), "{got:?}");
        }
        let zero = waves.iter().find(|w| w.index == 0).unwrap();
        assert_eq!(
            zero.components[..2],
            ["ns".to_string(), "extra".to_string()]
        );
        assert_eq!(waves.last().unwrap().components, ["late".to_string()]);
        assert!(waves.windows(2).all(|p| p[0].index < p[1].index));
    }

    #[test]
    fn config_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("sw-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let e = read_config(&dir).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().contains("stackwave.yaml"), "{e}");
        std::fs::write(
            dir.join("stackwave.yaml"),
            "genestack: {path: x}\ncomponents: 5\n",
        )
        .unwrap();
        let e = read_config(&dir).unwrap_err();
        assert!(matches!(e, ConfigError::Fields { .. }), "{e}");
        let cfg = config(serde_json::json!({"genestack": {"path": "x"}, "components": ["nope"]}));
        let e = plan_waves(&Catalog::builtin().unwrap(), &cfg).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
