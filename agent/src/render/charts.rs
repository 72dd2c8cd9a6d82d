//! Getting charts: a local directory of charts, an OCI registry ([`super::oci`]), a path in a
//! Git repository, or an HTTP Helm repository (`index.yaml`, the
//! chart archive, its sha256 digest checked) with a local cache keyed by digest, so a chart
//! once fetched never needs the network again (Helm `pkg/repo/index.go`, `chartrepo.go`).
//!
//! Cache layout: `<cache>/charts/index/<sha256 of repo URL>.yaml` (last fetched index) and
//! `<cache>/charts/sha256/<digest>.tgz` (verified archives).

use kustomize_rs::yaml::{parse_documents, Value};
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Where charts come from.
#[derive(Debug, Clone)]
pub enum ChartStore {
    /// `<dir>/<chart>/Chart.yaml` (unpacked charts, e.g. `../shared/corpus/charts`).
    Dir(PathBuf),
    /// Chart repositories, with a cache.
    Repos(Fetcher),
}

/// Fetches charts from HTTP repositories.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Never touch the network (cached indexes and archives only).
    pub offline: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// A chart ready to load.
#[derive(Debug, Clone)]
pub struct Located {
    /// A directory or `.tgz` archive.
    pub path: PathBuf,
    /// sha256 of the archive, or of the directory's files (for cache keys).
    pub digest: String,
}

/// A chart that could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The version is not in the repository's index.
    #[error("chart {name} version {version} not found in {repo} (known versions: {known})")]
    UnknownVersion {
        /// Chart.
        name: String,
        /// Version asked for.
        version: String,
        /// Repository URL.
        repo: String,
        /// Some versions the index has.
        known: String,
    },
    /// The archive's digest differs from the index's.
    #[error("chart {url}: digest mismatch (index says {expected}, got {actual})")]
    Digest {
        /// Archive URL.
        url: String,
        /// From the index.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// Network, cache or parse failure.
    #[error("chart {what}: {cause}")]
    Fetch {
        /// What was being fetched.
        what: String,
        /// Why it failed.
        cause: String,
    },
    /// A `chart.genestackPath` that names no chart directory of the Genestack checkout.
    #[error("chart {name}: {} has no Chart.yaml (chart.genestackPath {rel}, a chart directory of the Genestack checkout)", path.display())]
    NotInGenestack {
        /// Chart.
        name: String,
        /// `chart.genestackPath` as the catalog gives it.
        rel: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A `chart.genestackPath` that is absolute or leaves the checkout (`..`).
    #[error("chart {name}: chart.genestackPath {rel} must be a relative path inside the Genestack checkout")]
    OutsideGenestack {
        /// Chart.
        name: String,
        /// `chart.genestackPath` as the catalog gives it.
        rel: String,
    },
    /// The component's source kind is not available.
    #[error("chart {name}: {cause}")]
    Unsupported {
        /// Chart.
        name: String,
        /// Why.
        cause: String,
    },
}

pub use crate::digest::dir_digest;
use crate::digest::hex;

impl Fetcher {
    /// Fetches a chart from a Git repository: a bare mirror per URL under
    /// `<cache>/git/<sha256(url)>`, the ref resolved (tag, branch, then commit), and the
    /// chart directory exported to `<cache>/git-trees/<commit>/tree/<path>`
    /// ([`crate::source::Pinned`]). The digest is
    /// sha256 of URL, commit and path, so a moved branch gives a new cache key.
    ///
    /// # Errors
    /// [`ChartError::UnknownVersion`] when the ref does not resolve; [`ChartError::Fetch`]
    /// for Git and I/O failures and for a directory without `Chart.yaml`.
    pub fn fetch_git(
        &self,
        g: &crate::component::GitChart,
        name: &str,
        version: &str,
    ) -> Result<Located, ChartError> {
        let r = g.r#ref.replace("{version}", version);
        let pinned = crate::source::Pinned {
            url: g.url.clone(),
            r#ref: r.clone(),
            path: g.path.clone(),
        };
        let (source, commit) = pinned.resolve(&self.cache_dir, self.offline).map_err(|e| {
            ChartError::UnknownVersion {
                name: name.into(),
                version: version.into(),
                repo: g.url.clone(),
                known: e.cause,
            }
        })?;
        let dest = pinned
            .export(&source, &commit, &self.cache_dir)
            .map_err(|e| ChartError::Fetch {
                what: format!("{name} from {}", g.url),
                cause: e.cause,
            })?;
        if !dest.join("Chart.yaml").is_file() {
            return Err(ChartError::Fetch {
                what: format!("{name} from {} at {r}", g.url),
                cause: format!("no Chart.yaml under {}", g.path),
            });
        }
        let mut h = Sha256::new();
        for part in [g.url.as_str(), commit.id.as_str(), g.path.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        Ok(Located {
            path: dest,
            digest: hex(&h.finalize()),
        })
    }

    fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .build()
            .into();
        let mut r = agent.get(url).call().map_err(|e| e.to_string())?;
        r.body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .map_err(|e| e.to_string())
    }

    fn index(&self, repo: &str) -> Result<Value, ChartError> {
        let key = hex(&Sha256::digest(repo.as_bytes()));
        let cached = self
            .cache_dir
            .join("charts/index")
            .join(format!("{key}.yaml"));
        let url = format!("{}/index.yaml", repo.trim_end_matches('/'));
        let text = if self.offline {
            std::fs::read(&cached).map_err(|_| ChartError::Fetch {
                what: url.clone(),
                cause: format!("offline and no cached index at {}", cached.display()),
            })?
        } else {
            match self.get(&url) {
                Ok(b) => {
                    if let Some(p) = cached.parent() {
                        let _ = std::fs::create_dir_all(p);
                    }
                    let _ = std::fs::write(&cached, &b);
                    b
                }
                Err(e) => std::fs::read(&cached).map_err(|_| ChartError::Fetch {
                    what: url.clone(),
                    cause: e,
                })?,
            }
        };
        let text = String::from_utf8_lossy(&text);
        parse_documents(&text)
            .map_err(|e| ChartError::Fetch {
                what: url.clone(),
                cause: format!("index.yaml: {e}"),
            })?
            .into_iter()
            .next()
            .ok_or_else(|| ChartError::Fetch {
                what: url,
                cause: "empty index.yaml".into(),
            })
    }

    /// Fetches `name` at `version` from an HTTP repository (exact version first, then the
    /// same version ignoring `+build` metadata), verifying the index's sha256 digest.
    ///
    /// # Errors
    /// [`ChartError`] naming the chart, version and repository.
    pub fn fetch(&self, repo: &str, name: &str, version: &str) -> Result<Located, ChartError> {
        let idx = self.index(repo)?;
        let entries = idx
            .get_path(&["entries", name])
            .and_then(Value::as_seq)
            .cloned()
            .unwrap_or_default();
        let core = |v: &str| v.split('+').next().unwrap_or(v).to_string();
        let entry = entries
            .iter()
            .find(|e| e.str_at(&["version"]) == Some(version))
            .or_else(|| {
                entries
                    .iter()
                    .find(|e| e.str_at(&["version"]).map(core) == Some(core(version)))
            })
            .ok_or_else(|| ChartError::UnknownVersion {
                name: name.into(),
                version: version.into(),
                repo: repo.into(),
                known: entries
                    .iter()
                    .filter_map(|e| e.str_at(&["version"]))
                    .take(8)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let digest = entry.str_at(&["digest"]).unwrap_or("").to_string();
        let rel = entry
            .get("urls")
            .and_then(Value::as_seq)
            .and_then(|u| u.first())
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let url = if rel.contains("://") {
            rel
        } else {
            format!("{}/{}", repo.trim_end_matches('/'), rel)
        };
        let cache_name = if digest.is_empty() {
            hex(&Sha256::digest(url.as_bytes()))
        } else {
            digest.clone()
        };
        let path = self
            .cache_dir
            .join("charts/sha256")
            .join(format!("{cache_name}.tgz"));
        if let Ok(b) = std::fs::read(&path) {
            if digest.is_empty() || hex(&Sha256::digest(&b)) == digest {
                return Ok(Located {
                    path,
                    digest: hex(&Sha256::digest(&b)),
                });
            }
        }
        if self.offline {
            return Err(ChartError::Fetch {
                what: url,
                cause: format!("offline and not cached at {}", path.display()),
            });
        }
        let body = self.get(&url).map_err(|cause| ChartError::Fetch {
            what: url.clone(),
            cause,
        })?;
        let actual = hex(&Sha256::digest(&body));
        if !digest.is_empty() && actual != digest {
            return Err(ChartError::Digest {
                url,
                expected: digest,
                actual,
            });
        }
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| ChartError::Fetch {
                what: path.display().to_string(),
                cause: e.to_string(),
            })?;
        }
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, &body)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| ChartError::Fetch {
                what: path.display().to_string(),
                cause: e.to_string(),
            })?;
        Ok(Located {
            path,
            digest: actual,
        })
    }
}

/// A chart directory inside the Genestack checkout (`chart.genestackPath`, e.g.
/// `base-helm-configs/openstack-api-exporter-chart`): `install-openstack-exporter.sh` installs
/// `${GENESTACK_BASE_DIR}/base-helm-configs/<chart>` as a local chart directory, whatever the
/// chart store (`--charts` or the catalog's remote sources) is. Digest: [`dir_digest`].
///
/// # Errors
/// [`ChartError::OutsideGenestack`] for an absolute path or one with `..`;
/// [`ChartError::NotInGenestack`] when the directory has no `Chart.yaml`.
pub fn genestack_chart(genestack: &Path, rel: &str, name: &str) -> Result<Located, ChartError> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(ChartError::OutsideGenestack {
            name: name.into(),
            rel: rel.into(),
        });
    }
    let path = genestack.join(p);
    if !path.join("Chart.yaml").is_file() {
        return Err(ChartError::NotInGenestack {
            name: name.into(),
            rel: rel.into(),
            path,
        });
    }
    Ok(Located {
        digest: dir_digest(&path),
        path,
    })
}

impl ChartStore {
    /// Finds a chart.
    ///
    /// # Errors
    /// Missing charts, unknown versions, fetch and digest failures.
    pub fn locate(
        &self,
        source: &crate::component::ChartSource,
        name: &str,
        version: &str,
    ) -> Result<Located, ChartError> {
        match self {
            ChartStore::Dir(d) => {
                // The catalog's `chart.dir` names the directory when it differs from the
                // chart's name (the corpus keeps `gateway-helm` as `envoyproxy-gateway/`).
                let dir = source
                    .dir
                    .as_deref()
                    .filter(|_| name == source.name)
                    .unwrap_or(name);
                let p = d.join(dir);
                if !p.join("Chart.yaml").is_file() {
                    return Err(ChartError::Fetch {
                        what: name.into(),
                        cause: format!("not found under {}", d.display()),
                    });
                }
                Ok(Located {
                    digest: dir_digest(&p),
                    path: p,
                })
            }
            ChartStore::Repos(f) => match (&source.repo, &source.oci) {
                _ if source.git.is_some() => {
                    let g = source.git.as_ref().ok_or_else(|| ChartError::Unsupported {
                        name: name.into(),
                        cause: "no git source".into(),
                    })?;
                    f.fetch_git(g, name, version)
                }
                (Some(repo), _) => f.fetch(repo, name, version),
                (None, Some(oci)) => f.fetch_oci(oci, name, version),
                _ => Err(ChartError::Unsupported {
                    name: name.into(),
                    cause: "the component names no chart repository".into(),
                }),
            },
        }
    }
}
