//! Helm charts stored in OCI registries, pulled with `oci-client` (the OCI distribution
//! protocol, auth challenges included) and cached by layer digest beside HTTP-repository charts.
//!
//! Behaviour follows Helm's registry client (`helm/helm` `pkg/registry/client.go`, `Pull`):
//! - the chart is the artifact `<oci ref>/<chart name>:<tag>`, where the tag is the chart version
//!   with `+` replaced by `_` (OCI tags cannot hold `+`; `pkg/registry/util.go`);
//! - the manifest's layer of media type `application/vnd.cncf.helm.chart.content.v1.tar+gzip`
//!   (or the legacy `application/tar+gzip`) is the chart archive; its sha256 is checked against
//!   the manifest's descriptor.
//!
//! Registries on `localhost` and `127.0.0.0/8` are spoken to over plain HTTP, as Docker does by
//! default for loopback registries; everything else over HTTPS.
//! Credentials come from a Docker-style config file (`auths.<registry>.auth` as base64
//! `user:password`, or `username`/`password`): `$HELM_REGISTRY_CONFIG`, else
//! `$DOCKER_CONFIG/config.json`, else `~/.config/helm/registry/config.json`, else
//! `~/.docker/config.json`; anonymous when none names the registry.
//!
//! Cache: `<cache>/charts/oci/<sha256 of the artifact reference>` holds the layer digest last
//! resolved for the tag, so an unreachable registry (or `offline`) still renders a chart fetched
//! once.

use super::charts::{ChartError, Fetcher, Located};
use crate::digest::hex;
use base64::Engine;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// The Helm chart layer media type (`pkg/registry/constants.go` `ChartLayerMediaType`).
pub const CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// The legacy chart layer media type Helm still accepts (`LegacyChartLayerMediaType`).
pub const LEGACY_CHART_LAYER: &str = "application/tar+gzip";
/// The Helm chart config media type (`ConfigMediaType`).
pub const CHART_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";

/// `oci://registry/path` + chart + version → the artifact reference `registry/path/chart:tag`.
///
/// # Errors
/// A reference without the `oci://` scheme, or one `oci-client` cannot parse.
pub fn artifact(oci: &str, name: &str, version: &str) -> Result<String, ChartError> {
    let base = oci
        .strip_prefix("oci://")
        .ok_or_else(|| ChartError::Fetch {
            what: format!("chart {name} from {oci}"),
            cause: "an OCI source must start with oci://".into(),
        })?
        .trim_end_matches('/');
    let r = format!("{base}/{name}:{}", version.replace('+', "_"));
    r.parse::<Reference>().map_err(|e| ChartError::Fetch {
        what: format!("chart {name} from {oci}"),
        cause: format!("invalid OCI reference {r}: {e}"),
    })?;
    Ok(r)
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// Credentials for `registry` from the first Docker-style config file that names it.
fn credentials(registry: &str) -> RegistryAuth {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("HELM_REGISTRY_CONFIG") {
        files.push(p.into());
    }
    if let Some(p) = std::env::var_os("DOCKER_CONFIG") {
        files.push(PathBuf::from(p).join("config.json"));
    }
    if let Some(h) = home {
        files.push(h.join(".config/helm/registry/config.json"));
        files.push(h.join(".docker/config.json"));
    }
    for f in files {
        let Ok(text) = std::fs::read(&f) else {
            continue;
        };
        let Ok(cfg) = serde_json::from_slice::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(entry) = cfg.get("auths").and_then(|a| {
            a.get(registry)
                .or_else(|| a.get(format!("https://{registry}").as_str()))
        }) else {
            continue;
        };
        if let Some(auth) = entry.get("auth").and_then(|v| v.as_str()) {
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(auth) {
                let raw = String::from_utf8_lossy(&raw).to_string();
                if let Some((u, p)) = raw.split_once(':') {
                    return RegistryAuth::Basic(u.into(), p.into());
                }
            }
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(|v| v.as_str()),
            entry.get("password").and_then(|v| v.as_str()),
        ) {
            return RegistryAuth::Basic(u.into(), p.into());
        }
    }
    RegistryAuth::Anonymous
}

/// Why a pull failed: the registry does not know the tag, or anything else (text).
enum PullError {
    NotFound(String),
    Other(String),
}

fn classify(e: oci_client::errors::OciDistributionError) -> PullError {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode as C};
    match &e {
        E::ImageManifestNotFoundError(_) => PullError::NotFound(e.to_string()),
        E::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|x| matches!(x.code, C::ManifestUnknown | C::NameUnknown | C::NotFound)) =>
        {
            PullError::NotFound(e.to_string())
        }
        _ => PullError::Other(e.to_string()),
    }
}

/// Pulls the manifest and the chart layer; returns (layer digest `sha256:<hex>`, archive bytes).
/// Runs on its own thread with its own runtime, so it may be called from async code too.
fn pull(
    reference: &Reference,
    timeout: std::time::Duration,
) -> Result<(String, Vec<u8>), PullError> {
    let reference = reference.clone();
    std::thread::spawn(move || {
        // reqwest needs a process-wide rustls provider; kube's is `ring` too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = reference.resolve_registry().to_string();
        let protocol = if is_loopback(&registry) {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            read_timeout: Some(timeout),
            connect_timeout: Some(timeout),
            ..Default::default()
        });
        let auth = credentials(&registry);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PullError::Other(e.to_string()))?;
        rt.block_on(async {
            let (manifest, _) = client
                .pull_image_manifest(&reference, &auth)
                .await
                .map_err(classify)?;
            let layer = manifest
                .layers
                .iter()
                .find(|l| l.media_type == CHART_LAYER || l.media_type == LEGACY_CHART_LAYER)
                .ok_or_else(|| {
                    PullError::Other(format!(
                        "the artifact has no Helm chart layer ({CHART_LAYER}); layers: {}",
                        manifest
                            .layers
                            .iter()
                            .map(|l| l.media_type.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            let mut body = Vec::new();
            client
                .pull_blob(&reference, layer, &mut body)
                .await
                .map_err(|e| PullError::Other(e.to_string()))?;
            Ok((layer.digest.clone(), body))
        })
    })
    .join()
    .map_err(|_| PullError::Other("the OCI pull thread panicked".into()))?
}

impl Fetcher {
    /// Fetches `name` at `version` from the OCI repository `oci` (`oci://registry/path`),
    /// checking the archive's sha256 against the manifest's layer descriptor, and caching it
    /// under `<cache>/charts/sha256/<hex>.tgz`.
    ///
    /// # Errors
    /// [`ChartError::UnknownVersion`] when the registry has no such tag (HTTP 404 on the
    /// manifest); [`ChartError::Digest`] on a digest mismatch; [`ChartError::Fetch`] for
    /// network, auth, media-type and cache failures (offline with nothing cached included).
    pub fn fetch_oci(&self, oci: &str, name: &str, version: &str) -> Result<Located, ChartError> {
        let art = artifact(oci, name, version)?;
        let reference: Reference = art.parse().map_err(|e| ChartError::Fetch {
            what: art.clone(),
            cause: format!("{e}"),
        })?;
        let tag_file = self
            .cache_dir
            .join("charts/oci")
            .join(hex(&Sha256::digest(art.as_bytes())));
        let archive = |digest: &str| {
            self.cache_dir.join("charts/sha256").join(format!(
                "{}.tgz",
                digest.strip_prefix("sha256:").unwrap_or(digest)
            ))
        };
        let cached = || -> Option<Located> {
            let d = std::fs::read_to_string(&tag_file).ok()?;
            let b = std::fs::read(archive(d.trim())).ok()?;
            let actual = hex(&Sha256::digest(&b));
            (format!("sha256:{actual}") == d.trim()).then(|| Located {
                path: archive(d.trim()),
                digest: actual,
            })
        };
        if self.offline {
            return cached().ok_or_else(|| ChartError::Fetch {
                what: format!("oci://{art}"),
                cause: format!("offline and not cached ({})", tag_file.display()),
            });
        }
        let (digest, body) = match pull(&reference, self.timeout) {
            Ok(x) => x,
            Err(PullError::NotFound(e)) => {
                return Err(ChartError::UnknownVersion {
                    name: name.into(),
                    version: version.into(),
                    repo: oci.into(),
                    known: format!("the registry has no tag for it: {e}"),
                })
            }
            Err(PullError::Other(e)) => {
                return cached().ok_or(ChartError::Fetch {
                    what: format!("oci://{art}"),
                    cause: e,
                })
            }
        };
        let actual = hex(&Sha256::digest(&body));
        if digest != format!("sha256:{actual}") {
            return Err(ChartError::Digest {
                url: format!("oci://{art}"),
                expected: digest,
                actual: format!("sha256:{actual}"),
            });
        }
        let path = archive(&digest);
        let write = |p: &std::path::Path, b: &[u8]| -> Result<(), ChartError> {
            let io = |e: std::io::Error| ChartError::Fetch {
                what: p.display().to_string(),
                cause: e.to_string(),
            };
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(io)?;
            }
            let tmp = p.with_extension("part");
            std::fs::write(&tmp, b)
                .and_then(|_| std::fs::rename(&tmp, p))
                .map_err(io)
        };
        write(&path, &body)?;
        write(&tag_file, digest.as_bytes())?;
        Ok(Located {
            path,
            digest: actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_reference_follows_helm() {
        assert_eq!(
            artifact("oci://ghcr.io/org/charts/", "nova", "2025.2.1+abc").unwrap(),
            "ghcr.io/org/charts/nova:2025.2.1_abc"
        );
        assert!(artifact("https://x/charts", "nova", "1").is_err());
        assert!(is_loopback("127.0.0.1:5000") && is_loopback("localhost:80"));
        assert!(!is_loopback("ghcr.io"));
    }
}
