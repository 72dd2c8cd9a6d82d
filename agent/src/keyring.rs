//! Where the revision store's encryption key lives, and its rotation.
//!
//! Locally the key is a `0600` file beside the database (`store.key`, [`crate::record`]). In a
//! cluster (`--store-key-secret NAME`) it is the Secret `NAMESPACE/NAME`, data key `key` (32
//! bytes), created on first start when absent (a create that loses a race to another replica
//! re-reads the winner's Secret, so both use one key). The key is never logged and never
//! written to the volume.
//!
//! `stackwave store rotate-key` re-encrypts every stored object under a new key: the new key
//! is first saved beside the old one (Secret data `next`, or the file `store.key.next`), then
//! the objects are re-encrypted in one SQLite transaction, then the new key replaces the old.
//! A rotation cut short at any point leaves a store that opens: [`open_store`] keeps whichever
//! of the two keys decrypts it and finishes the swap.

use crate::cluster::Cluster;
use crate::record::{RecordError, Store};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The Secret data key holding the store key.
pub const KEY_FIELD: &str = "key";
/// The Secret data key holding the next key during a rotation.
pub const NEXT_FIELD: &str = "next";

/// Where the key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file (local use: `<state>/store.key`).
    File(PathBuf),
    /// A Kubernetes Secret.
    Secret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// Flags choosing the key's place (`run`, `sync`, `store rotate-key`).
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Keep the revision store's key in this Kubernetes Secret (created when absent) instead
    /// of the file `<state>/store.key`.
    #[arg(long)]
    pub store_key_secret: Option<String>,
    /// Namespace of --store-key-secret.
    #[arg(long, default_value = crate::lease::DEFAULT_LEASE_NAMESPACE)]
    pub store_key_namespace: String,
}

impl KeyArgs {
    /// The key source for a state directory.
    pub fn source(&self, state: &Path) -> KeySource {
        match &self.store_key_secret {
            Some(name) => KeySource::Secret {
                namespace: self.store_key_namespace.clone(),
                name: name.clone(),
            },
            None => KeySource::File(state.join("store.key")),
        }
    }
}

/// Why the key could not be had or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the Secret failed.
    #[error("store key Secret {namespace}/{name}: {source}")]
    Api {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The Secret exists but its `key` is not 32 bytes.
    #[error("store key Secret {namespace}/{name}: data.{field} must be 32 bytes")]
    Malformed {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The data key.
        field: &'static str,
    },
    /// Neither the key nor the next key decrypts the store.
    #[error("{0}: no key decrypts the revision store")]
    NoKey(String),
    /// A Secret key source, but no cluster to read it from.
    #[error("store key Secret {0}: no API server given (--server or --kubeconfig)")]
    NoCluster(String),
    /// The key file or the store.
    #[error(transparent)]
    Store(#[from] RecordError),
    /// Writing the key file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn key_of(
    s: &Secret,
    field: &'static str,
    namespace: &str,
    name: &str,
) -> Result<Option<[u8; 32]>, KeyError> {
    match s.data.as_ref().and_then(|d| d.get(field)) {
        None => Ok(None),
        Some(b) => {
            <[u8; 32]>::try_from(b.0.as_slice())
                .map(Some)
                .map_err(|_| KeyError::Malformed {
                    namespace: namespace.into(),
                    name: name.into(),
                    field,
                })
        }
    }
}

struct SecretKey<'a> {
    api: kube::Api<Secret>,
    namespace: &'a str,
    name: &'a str,
}

impl<'a> SecretKey<'a> {
    fn new(cluster: Option<&Cluster>, namespace: &'a str, name: &'a str) -> Result<Self, KeyError> {
        let c = cluster.ok_or_else(|| KeyError::NoCluster(format!("{namespace}/{name}")))?;
        Ok(SecretKey {
            api: kube::Api::namespaced(c.client().clone(), namespace),
            namespace,
            name,
        })
    }

    fn err(&self, source: kube::Error) -> KeyError {
        KeyError::Api {
            namespace: self.namespace.into(),
            name: self.name.into(),
            source,
        }
    }

    /// The Secret, created with a fresh key when absent (a lost create race re-reads).
    async fn get_or_create(&self) -> Result<Secret, KeyError> {
        if let Some(s) = self.api.get_opt(self.name).await.map_err(|e| self.err(e))? {
            return Ok(s);
        }
        let key: [u8; 32] = rand::random();
        let s = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(self.name.into()),
                namespace: Some(self.namespace.into()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "stackwave".to_string(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                KEY_FIELD.to_string(),
                ByteString(key.to_vec()),
            )])),
            ..Default::default()
        };
        match self.api.create(&Default::default(), &s).await {
            Ok(s) => Ok(s),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.api.get(self.name).await.map_err(|e| self.err(e))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Replaces the Secret's data (conditional on the resourceVersion read).
    async fn put(
        &self,
        mut s: Secret,
        data: BTreeMap<String, ByteString>,
    ) -> Result<Secret, KeyError> {
        s.data = Some(data);
        s.string_data = None;
        self.api
            .replace(self.name, &Default::default(), &s)
            .await
            .map_err(|e| self.err(e))
    }
}

/// Opens (or creates) the store in `state` with the key from `source` (see the module
/// docs), finishing a rotation that was cut short.
///
/// # Errors
/// [`KeyError`]: the Secret unreadable or malformed, no key fitting the store, store errors.
pub async fn open_store(
    cluster: Option<&Cluster>,
    state: &Path,
    source: &KeySource,
) -> Result<Store, KeyError> {
    let db = state.join("revisions.sqlite");
    match source {
        KeySource::File(f) => open_file_store(&db, f),
        KeySource::Secret { namespace, name } => {
            let sk = SecretKey::new(cluster, namespace, name)?;
            let s = sk.get_or_create().await?;
            let key = key_of(&s, KEY_FIELD, namespace, name)?.ok_or(KeyError::Malformed {
                namespace: namespace.clone(),
                name: name.clone(),
                field: KEY_FIELD,
            })?;
            let next = key_of(&s, NEXT_FIELD, namespace, name)?;
            let store = Store::open_with_key(&db, &key)?;
            let Some(next) = next else { return Ok(store) };
            // A rotation was cut short: keep the key that decrypts the store.
            let (keep, store) = if store.key_fits(&key)? {
                (key, store)
            } else if store.key_fits(&next)? {
                drop(store);
                (next, Store::open_with_key(&db, &next)?)
            } else {
                return Err(KeyError::NoKey(db.display().to_string()));
            };
            sk.put(
                s,
                BTreeMap::from([(KEY_FIELD.to_string(), ByteString(keep.to_vec()))]),
            )
            .await?;
            Ok(store)
        }
    }
}

fn next_file(key_file: &Path) -> PathBuf {
    let mut n = key_file.as_os_str().to_owned();
    n.push(".next");
    PathBuf::from(n)
}

fn read_key_file(f: &Path) -> Result<[u8; 32], KeyError> {
    let b = std::fs::read(f).map_err(|source| KeyError::Io {
        path: f.to_path_buf(),
        source,
    })?;
    <[u8; 32]>::try_from(b.as_slice())
        .map_err(|_| RecordError::Io(format!("{}: the key must be 32 bytes", f.display())).into())
}

fn write_key_file(f: &Path, key: &[u8; 32]) -> Result<(), KeyError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| KeyError::Io {
        path: f.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut file = opts.open(f).map_err(io)?;
    file.write_all(key).map_err(io)?;
    file.sync_all().map_err(io)
}

fn open_file_store(db: &Path, key_file: &Path) -> Result<Store, KeyError> {
    let next = next_file(key_file);
    if !next.is_file() {
        return Ok(Store::open(db, key_file)?);
    }
    let (key, new) = (read_key_file(key_file)?, read_key_file(&next)?);
    let store = Store::open_with_key(db, &key)?;
    if store.key_fits(&key)? {
        let _ = std::fs::remove_file(&next);
        return Ok(store);
    }
    if store.key_fits(&new)? {
        drop(store);
        std::fs::rename(&next, key_file).map_err(|source| KeyError::Io {
            path: key_file.to_path_buf(),
            source,
        })?;
        return Ok(Store::open_with_key(db, &new)?);
    }
    Err(KeyError::NoKey(db.display().to_string()))
}

/// `stackwave store rotate-key`: re-encrypts the store in `state` under a new random key and
/// saves it where `source` says; returns the number of objects re-encrypted.
///
/// # Errors
/// As [`open_store`]; the store or the key's place unwritable (the store then still opens
/// with one of the two keys).
pub async fn rotate(
    cluster: Option<&Cluster>,
    state: &Path,
    source: &KeySource,
) -> Result<usize, KeyError> {
    let db = state.join("revisions.sqlite");
    if !db.is_file() {
        return Err(RecordError::Missing(db.display().to_string()).into());
    }
    let store = open_store(cluster, state, source).await?;
    let new: [u8; 32] = rand::random();
    match source {
        KeySource::File(f) => {
            let next = next_file(f);
            write_key_file(&next, &new)?;
            let (_, n) = store.rekey(&new)?;
            std::fs::rename(&next, f).map_err(|source| KeyError::Io {
                path: f.clone(),
                source,
            })?;
            Ok(n)
        }
        KeySource::Secret { namespace, name } => {
            let sk = SecretKey::new(cluster, namespace, name)?;
            let s = sk.get_or_create().await?;
            let key = key_of(&s, KEY_FIELD, namespace, name)?;
            let mut data = BTreeMap::from([(NEXT_FIELD.to_string(), ByteString(new.to_vec()))]);
            if let Some(k) = key {
                data.insert(KEY_FIELD.to_string(), ByteString(k.to_vec()));
            }
            let s = sk.put(s, data).await?;
            let (_, n) = store.rekey(&new)?;
            sk.put(
                s,
                BTreeMap::from([(KEY_FIELD.to_string(), ByteString(new.to_vec()))]),
            )
            .await?;
            Ok(n)
        }
    }
}
