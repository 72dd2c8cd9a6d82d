//! Helm release records: the codec and discovery.
//!
//! Helm 3 and 4 keep one Secret per release revision, `sh.helm.release.v1.<name>.v<N>` in the
//! release namespace, type `helm.sh/release.v1`, labelled `name=<name>`, `owner=helm`,
//! `status=<status>`, `version=<N>`; its `data.release` holds the release encoded as
//! `helm.sh/helm/v4/pkg/storage/driver/util.go` encodes it (`encodeRelease`: the release
//! JSON, gzip at `BestCompression`, standard base64; `decodeRelease`: base64, gunzip only when
//! the gzip magic `1f 8b 08` leads, JSON). The Secret driver finds a release's revisions by
//! the labels `name=<name>,owner=helm` (`pkg/storage/driver/secrets.go`, `Query`), so a record
//! whose `owner` label is no longer `helm` is invisible to `helm upgrade`/`history`.

use crate::cluster::{Cluster, ClusterError};
use base64::Engine;
use serde_json::{json, Value as Json};
use std::io::{Read, Write};

/// The gzip magic `decodeRelease` looks for (`magicGzip` in Helm's `util.go`).
const MAGIC_GZIP: [u8; 3] = [0x1f, 0x8b, 0x08];

/// The Secret type Helm's Secret driver writes.
pub const RELEASE_SECRET_TYPE: &str = "helm.sh/release.v1";

/// The label Stackwave sets on release records it retired (value: the instance id).
pub const ADOPTED_LABEL: &str = "stackwave.io/adopted";

/// Why a release record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// `data.release` is not standard base64 (of the Secret value, after Kubernetes' own
    /// base64 of `data`).
    #[error("release record {secret}: not base64: {source}")]
    Base64 {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// The gzip stream is corrupt.
    #[error("release record {secret}: bad gzip stream: {source}")]
    Gzip {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The decompressor's error.
        #[source]
        source: std::io::Error,
    },
    /// The payload is not a release JSON document.
    #[error("release record {secret}: not a Helm release JSON document: {source}")]
    Json {
        /// `namespace/name` of the Secret.
        secret: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// The Secret has no `data.release`.
    #[error("release record {secret}: no data.release")]
    Missing {
        /// `namespace/name` of the Secret.
        secret: String,
    },
}

/// Encodes a release document as Helm's `encodeRelease` does: JSON, gzip (best
/// compression), standard base64. The result is the Secret's `data.release` *value* (the
/// API's own base64 of `data` comes on top).
pub fn encode(release: &Json) -> String {
    let bytes = serde_json::to_vec(release).unwrap_or_default();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&bytes);
    let compressed = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(compressed)
}

/// Decodes a Secret's `data.release` value as Helm's `decodeRelease` does: standard base64,
/// gunzip when the gzip magic leads (older records are plain JSON), JSON.
///
/// # Errors
/// [`CodecError`] naming `secret` (`namespace/name`) and the failing step.
pub fn decode(secret: &str, data: &str) -> Result<Json, CodecError> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|source| CodecError::Base64 {
            secret: secret.to_string(),
            source,
        })?;
    let plain = if b.len() > 3 && b[..3] == MAGIC_GZIP {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&b[..])
            .read_to_end(&mut out)
            .map_err(|source| CodecError::Gzip {
                secret: secret.to_string(),
                source,
            })?;
        out
    } else {
        b
    };
    serde_json::from_slice(&plain).map_err(|source| CodecError::Json {
        secret: secret.to_string(),
        source,
    })
}

/// One Helm release revision, as its record holds it (values are never printed in clear:
/// see [`Release::values_digest`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Release {
    /// Release name.
    pub name: String,
    /// Release namespace.
    pub namespace: String,
    /// Revision number (`version` in the record).
    pub revision: i64,
    /// `info.status` (`deployed`, `superseded`, `failed`, `pending-upgrade`, ...).
    pub status: String,
    /// `chart.metadata.name`.
    pub chart: String,
    /// `chart.metadata.version`.
    pub chart_version: String,
    /// The top-level keys of the user-supplied values (`config`).
    pub values_keys: Vec<String>,
    /// sha256 of the user-supplied values' JSON (compact, keys as stored), hex.
    pub values_digest: String,
    /// The record's Secret name.
    pub secret: String,
    /// The user-supplied values (`config`); never serialized.
    #[serde(skip)]
    pub values: Json,
    /// The manifest Helm applied; never serialized.
    #[serde(skip)]
    pub manifest: String,
}

impl Release {
    /// Reads a release record Secret (as the API returns it: `data` base64).
    ///
    /// # Errors
    /// [`CodecError`] naming the Secret.
    pub fn from_secret(s: &Json) -> Result<Release, CodecError> {
        let name = crate::cluster::name_of(s).to_string();
        let ns = crate::cluster::namespace_of(s).to_string();
        let id = format!("{ns}/{name}");
        let outer = s
            .pointer("/data/release")
            .and_then(Json::as_str)
            .ok_or_else(|| CodecError::Missing { secret: id.clone() })?;
        let inner = base64::engine::general_purpose::STANDARD
            .decode(outer)
            .map_err(|source| CodecError::Base64 {
                secret: id.clone(),
                source,
            })?;
        let r = decode(&id, &String::from_utf8_lossy(&inner))?;
        let values = r.get("config").cloned().unwrap_or(json!({}));
        let values_keys = values
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let values_digest = {
            use sha2::{Digest, Sha256};
            let h = Sha256::digest(serde_json::to_vec(&values).unwrap_or_default());
            h.iter().map(|b| format!("{b:02x}")).collect()
        };
        let text = |p: &str| {
            r.pointer(p)
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string()
        };
        Ok(Release {
            name: text("/name"),
            namespace: text("/namespace"),
            revision: r["version"].as_i64().unwrap_or(0),
            status: text("/info/status"),
            chart: text("/chart/metadata/name"),
            chart_version: text("/chart/metadata/version"),
            values_keys,
            values_digest,
            secret: name,
            values,
            manifest: text("/manifest"),
        })
    }
}

/// The record Secret of release `name` revision `revision`, as Helm's Secret driver writes
/// it (`newSecretsObject` in `pkg/storage/driver/secrets.go`): name, type, the labels Helm
/// queries by, `data.release` = [`encode`] of `release` (base64 once more, as `data` is).
pub fn record_secret(
    namespace: &str,
    name: &str,
    revision: i64,
    status: &str,
    release: &Json,
) -> Json {
    let value = encode(release);
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": RELEASE_SECRET_TYPE,
        "metadata": {
            "name": format!("sh.helm.release.v1.{name}.v{revision}"),
            "namespace": namespace,
            "labels": {"name": name, "owner": "helm", "status": status, "version": revision.to_string()},
        },
        "data": {"release": base64::engine::general_purpose::STANDARD.encode(value)},
    })
}

/// The record Secrets of release `name` in `namespace` that Helm still sees
/// (`name=<name>,owner=helm`), newest revision first.
///
/// # Errors
/// API errors listing Secrets.
pub async fn records(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<Vec<Json>, ClusterError> {
    let sample = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": namespace, "name": "x"}});
    let mut out: Vec<Json> = cluster
        .list(&sample, &format!("name={name},owner=helm"))
        .await?
        .into_iter()
        .filter(|s| s["type"] == RELEASE_SECRET_TYPE)
        .collect();
    let rev = |s: &Json| {
        s.pointer("/metadata/labels/version")
            .and_then(Json::as_str)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    out.sort_by_key(|s| std::cmp::Reverse(rev(s)));
    Ok(out)
}

/// What [`find`] found of a release.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Found {
    /// The current revision: the newest `deployed` one, else the newest.
    pub current: Release,
    /// Every revision number Helm holds, newest first.
    pub revisions: Vec<i64>,
}

/// Why a release could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// Listing the records failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A record is unreadable.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Finds release `name` in `namespace` (`None`: Helm holds no record of it).
///
/// # Errors
/// [`FindError`].
pub async fn find(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<Option<Found>, FindError> {
    let recs = records(cluster, namespace, name).await?;
    if recs.is_empty() {
        return Ok(None);
    }
    let revisions = recs
        .iter()
        .filter_map(|s| s.pointer("/metadata/labels/version").and_then(Json::as_str))
        .filter_map(|v| v.parse().ok())
        .collect();
    let pick = recs
        .iter()
        .find(|s| s.pointer("/metadata/labels/status").and_then(Json::as_str) == Some("deployed"))
        .unwrap_or(&recs[0]);
    Ok(Some(Found {
        current: Release::from_secret(pick)?,
        revisions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_is_the_release_and_gzip_is_detected() {
        let r = json!({"name": "keystone", "version": 3, "info": {"status": "deployed"},
            "chart": {"metadata": {"name": "keystone", "version": "2025.2.1"}},
            "config": {"a": {"b": "s3cret-value"}}, "manifest": "---\n"});
        let enc = encode(&r);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&enc)
            .unwrap();
        assert_eq!(raw[..3], MAGIC_GZIP);
        assert_eq!(decode("ns/s", &enc).unwrap(), r);
        // Records from before compression: plain JSON in base64.
        let plain =
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&r).unwrap());
        assert_eq!(decode("ns/s", &plain).unwrap(), r);
        let secret = record_secret("openstack", "keystone", 3, "deployed", &r);
        let got = Release::from_secret(&secret).unwrap();
        assert_eq!((got.revision, got.chart_version.as_str()), (3, "2025.2.1"));
        assert_eq!(got.values_keys, vec!["a".to_string()]);
        assert!(!serde_json::to_string(&got)
            .unwrap()
            .contains("s3cret-value"));
    }

    #[test]
    fn bad_records_name_the_secret_and_the_step() {
        let e = decode("openstack/sh.helm.release.v1.k.v1", "!!").unwrap_err();
        assert!(
            e.to_string()
                .contains("openstack/sh.helm.release.v1.k.v1: not base64"),
            "{e}"
        );
        let gz = base64::engine::general_purpose::STANDARD.encode([0x1f, 0x8b, 0x08, 0, 1, 2]);
        assert!(matches!(decode("a/b", &gz), Err(CodecError::Gzip { .. })));
        let notjson = base64::engine::general_purpose::STANDARD.encode(b"nope");
        assert!(matches!(
            decode("a/b", &notjson),
            Err(CodecError::Json { .. })
        ));
    }
}
