//! The identity of one Stackwave instance: which agent owns an object, an inventory, an Event.
//!
//! Several Stackwave agents may share a cluster (two regions, a staging copy, one agent per
//! test) with the same component names. Every ownership mark Stackwave leaves in the cluster —
//! the inventory ConfigMap's name and labels, the labels [`super::inventory::mark`]
//! puts on applied objects, the drift Events — carries the instance's [`Instance::id`], so one
//! agent never reads another's inventory or prunes another's objects.
//!
//! The id is the first 10 hex digits of sha256 over the configured name (`--instance`, default
//! [`DEFAULT_NAME`]) and the repository URL the agent follows (credentials removed; a local
//! source by its canonical path), so two agents following different repositories differ even
//! with the default name, and two agents following the same repository differ once given
//! different names.

use super::ClusterError;
use sha2::{Digest, Sha256};

/// Label on every object (and inventory) an instance applies: its [`Instance::id`].
pub const INSTANCE_LABEL: &str = "stackwave.io/instance";
/// Label naming the instance in readable form (its configured name, a DNS label, so a valid
/// label value). Older Stackwave versions wrote it as an annotation of the same key; nothing
/// reads it, and the next apply removes the annotation (see [`super::COMPONENT_LABEL`]).
pub const INSTANCE_NAME_LABEL: &str = "stackwave.io/instance-name";
/// The instance name when none is configured.
pub const DEFAULT_NAME: &str = "stackwave";

/// One agent's identity: a configured name plus the repository it follows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    /// The configured name (a DNS label: lowercase letters, digits, `-`; at most 40 characters).
    pub name: String,
    /// The repository followed: a remote URL without credentials (`https://host/path`), or a
    /// local source's canonical path.
    pub repo: String,
}

impl Default for Instance {
    /// The default name with no repository (tests and tools that follow none).
    fn default() -> Self {
        Instance {
            name: DEFAULT_NAME.into(),
            repo: String::new(),
        }
    }
}

/// The repository as the identity sees it: a local source (`file://` URL or a path) as its
/// canonical absolute path, so `./cloud`, `/srv/cloud` and `file:///srv/cloud` are one
/// repository ([`crate::source::local_path`]); a remote URL without credentials
/// (`https://user:token@host/p` → `https://host/p`, so a rotated token keeps the identity and no
/// secret enters a mark). SCP-like `git@host:path` stays as it is.
fn normalized(url: &str) -> String {
    if let Some(p) = crate::source::local_path(url) {
        if let Ok(c) = std::fs::canonicalize(&p) {
            return c.display().to_string();
        }
    }
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

impl Instance {
    /// An instance named `name` following `repo`.
    ///
    /// # Errors
    /// A name that is empty, longer than 40 characters, or not a DNS label (it becomes part of
    /// label values and object names).
    pub fn new(name: &str, repo: &str) -> Result<Instance, ClusterError> {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok {
            return Err(ClusterError::Invalid(format!(
                "instance name {name:?}: must be 1-40 lowercase letters, digits or '-', starting and ending with a letter or digit"
            )));
        }
        Ok(Instance {
            name: name.to_string(),
            repo: normalized(repo),
        })
    }

    /// The short id in every ownership mark: 10 hex digits of sha256(`name` NUL `repo`).
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update([0]);
        h.update(self.repo.as_bytes());
        h.finalize()[..5]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `live` carries this instance's label.
    pub fn marks(&self, live: &serde_json::Value) -> bool {
        instance_of(live) == Some(self.id().as_str())
    }
}

/// The instance id an object's [`INSTANCE_LABEL`] names, if any.
pub fn instance_of(live: &serde_json::Value) -> Option<&str> {
    live.pointer("/metadata/labels")
        .and_then(|l| l.get(INSTANCE_LABEL))
        .and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_name_and_repo_and_ignore_credentials() {
        let a = Instance::new("region-a", "https://git.example/cloud").unwrap();
        let b = Instance::new("region-b", "https://git.example/cloud").unwrap();
        let c = Instance::new("region-a", "https://git.example/other").unwrap();
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(a.id().len(), 10);
        let tok = Instance::new("region-a", "https://ops:s3cret@git.example/cloud").unwrap();
        assert_eq!(tok.repo, "https://git.example/cloud");
        assert_eq!(
            tok.id(),
            a.id(),
            "a token in the URL is not part of the identity"
        );
        assert_eq!(
            Instance::new("x", "git@host:cloud.git").unwrap().repo,
            "git@host:cloud.git"
        );
        // One local repository however it is spelled.
        let dir = std::env::temp_dir().join(format!("stackwave-instance-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let canonical = std::fs::canonicalize(&dir).unwrap().display().to_string();
        for spelled in [
            dir.display().to_string(),
            format!("file://{}", dir.display()),
            format!("{}/sub/..", dir.display()),
        ] {
            assert_eq!(
                Instance::new("x", &spelled).unwrap().repo,
                canonical,
                "{spelled}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        for bad in ["", "Upper", "-x", "x-", "a_b", &"x".repeat(41)] {
            assert!(Instance::new(bad, "r").is_err(), "{bad:?}");
        }
    }
}
