//! Cluster objects the install scripts look up (Secrets, and e.g. the `ovn-nb` Service), read
//! from the cluster or — offline — from files: `--secrets FILE` (multi-document Secret YAML)
//! and `--cluster-state FILE`.
//!
//! Secret payloads are decoded only on request and are never printed: errors name the Secret
//! and key. [`Objects::secret_digest`] gives a sha256 for cache keys instead of the value.

use base64::Engine;
use kustomize_rs::yaml::{parse_documents, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Objects keyed by (kind, namespace, name); an empty namespace is `default`.
/// Why a lookup object or Secret key could not be had (names the file or object, never a
/// value).
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// A lookup file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A lookup file is not YAML.
    #[error("{}: {source}", path.display())]
    Yaml {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: kustomize_rs::yaml::YamlError,
    },
    /// No such Secret.
    #[error("Secret {namespace}/{name} not found")]
    NoSecret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The Secret has no such key.
    #[error("Secret {namespace}/{name} has no key {key}")]
    NoKey {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Key.
        key: String,
    },
    /// The key's `data` value is not base64.
    #[error("Secret {namespace}/{name} key {key} is not valid base64")]
    Base64 {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Key.
        key: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Objects {
    map: BTreeMap<(String, String, String), Value>,
}

impl Objects {
    /// Adds every object of a multi-document YAML file.
    ///
    /// # Errors
    /// Unreadable or malformed files (naming the file, never a value).
    pub fn load_file(&mut self, path: &Path) -> Result<(), ObjectsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ObjectsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let docs = parse_documents(&text).map_err(|source| ObjectsError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
        for d in docs {
            self.insert(d);
        }
        Ok(())
    }

    /// Adds one object.
    pub fn insert(&mut self, obj: Value) {
        let kind = obj.str_at(&["kind"]).unwrap_or("").to_string();
        let name = obj.str_at(&["metadata", "name"]).unwrap_or("").to_string();
        if kind.is_empty() || name.is_empty() {
            return;
        }
        let ns = obj
            .str_at(&["metadata", "namespace"])
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        self.map.insert((kind, ns, name), obj);
    }

    /// An object.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        let ns = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        self.map
            .get(&(kind.to_string(), ns.to_string(), name.to_string()))
    }

    /// Every object of a kind, by namespace then name.
    pub fn list<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.map
            .iter()
            .filter(move |((k, _, _), _)| k == kind)
            .map(|(_, v)| v)
    }

    /// The decoded bytes of a Secret key (`data` base64-decoded, else `stringData`).
    ///
    /// # Errors
    /// Missing Secret or key, or invalid base64 — naming them, never the value.
    pub fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Vec<u8>, ObjectsError> {
        let who = || (namespace.to_string(), name.to_string());
        let s = self
            .get("Secret", namespace, name)
            .ok_or_else(|| ObjectsError::NoSecret {
                namespace: who().0,
                name: who().1,
            })?;
        if let Some(v) = s.get_path(&["data", key]).and_then(Value::as_str) {
            let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            return base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|_| ObjectsError::Base64 {
                    namespace: who().0,
                    name: who().1,
                    key: key.to_string(),
                });
        }
        if let Some(v) = s
            .get_path(&["stringData", key])
            .and_then(Value::scalar_string)
        {
            return Ok(v.into_bytes());
        }
        Err(ObjectsError::NoKey {
            namespace: who().0,
            name: who().1,
            key: key.to_string(),
        })
    }

    /// sha256 of a Secret key's value, for cache keys (the value itself is never stored).
    pub fn secret_digest(&self, namespace: &str, name: &str, key: &str) -> String {
        match self.secret_value(namespace, name, key) {
            Ok(v) => hex(&Sha256::digest(&v)),
            Err(e) => format!("missing:{e}"),
        }
    }
}

pub use crate::digest::hex;

/// Converts a JSON object (e.g. from the API) to the engine's tree.
pub fn from_json(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::Uint))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Seq(a.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => {
            Value::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}
