//! The render's reads: every input a render looks at — repository files and directory
//! listings, values files, the post-render kustomize trees (through kustomize-rs's
//! [`kustomize_rs::fs::Observer`]), the chart, bound Secret values and looked-up objects,
//! the component definitions and the engine versions — goes through one [`Reader`], which
//! records each as an [`Input`] with the digest of what was seen (a Secret's value only as
//! its sha256).
//!
//! The render cache ([`super::cache`]) keys a render by the digest of its [`Reads`] and serves
//! it again only while every recorded read still gives the same digest, checked in the order
//! they were made — the way a build system validates a cached step against the files its
//! recorded dependency list names (ninja's depfiles, Shake's `need` traces). Nothing is listed
//! by hand, so a new kind of input cannot be left out of the key: what the render did not
//! read cannot change its output, and what it read is in the key.

use super::charts::{ChartError, Located};
use super::objects::Objects;
use super::Inputs;
use crate::digest::sha256_hex;
use kustomize_rs::yaml::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One input a render read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// A file's bytes (a failed read — absent, unreadable — is a fact too).
    File(PathBuf),
    /// The names in a directory (absent when it is not one).
    Listing(PathBuf),
    /// Whether a path is a file, a directory, or nothing.
    Kind(PathBuf),
    /// A bound Secret key's value (digest only).
    Secret {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Key.
        key: String,
    },
    /// A looked-up object (its YAML).
    Object {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The chart a component uses, as its store locates it (its content digest).
    Chart {
        /// The component whose chart source is used.
        component: String,
        /// Chart name.
        name: String,
        /// Pinned version.
        version: String,
    },
    /// A component's catalog definition.
    Definition(String),
    /// The engine: Stackwave's version and the Helm library's versions.
    Engine,
    /// Where the render looks: the Genestack base and overrides directories and the chart
    /// store (the paths every other read is relative to; a pinned base at a new commit is a
    /// new directory).
    Sources,
}

/// An input and the digest of what was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// What was read.
    pub input: Input,
    /// sha256 of what was seen (or a marker such as `absent`).
    pub digest: String,
}

/// What one render read, in order (each input once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads(pub Vec<Read>);

fn kind_of(p: &Path) -> &'static str {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => "dir",
        Ok(m) if m.is_file() => "file",
        Ok(_) => "other",
        Err(_) => "absent",
    }
}

fn file_digest(r: Result<&[u8], std::io::ErrorKind>) -> String {
    match r {
        Ok(b) => sha256_hex(b),
        Err(k) => format!("unreadable:{k:?}"),
    }
}

/// The digest of a file as it is on disk now.
fn read_digest(p: &Path) -> String {
    match std::fs::read(p) {
        Ok(b) => file_digest(Ok(&b)),
        Err(e) => file_digest(Err(e.kind())),
    }
}

fn listing(dir: &Path) -> Option<Vec<String>> {
    let rd = std::fs::read_dir(dir).ok()?;
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Some(names)
}

fn listing_digest(names: Option<&[String]>) -> String {
    match names {
        Some(n) => sha256_hex(n.join("\0").as_bytes()),
        None => "absent".into(),
    }
}

fn object_digest(o: Option<&Value>) -> String {
    match o.map(kustomize_rs::yaml::to_yaml) {
        Some(Ok(y)) => sha256_hex(y.as_bytes()),
        Some(Err(e)) => format!("unprintable:{e}"),
        None => "absent".into(),
    }
}

fn engine_digest() -> String {
    let helm = super::helm::Helm::get()
        .map(|h| format!("{}/{}", h.c_version(), h.sdk_version()))
        .unwrap_or_default();
    sha256_hex(format!("stackwave {} helm {helm}", env!("CARGO_PKG_VERSION")).as_bytes())
}

fn sources_digest(inputs: &Inputs) -> String {
    sha256_hex(format!("{:?}\n{:?}", inputs.sources, inputs.charts).as_bytes())
}

fn definition_digest(inputs: &Inputs, name: &str) -> String {
    match inputs.catalog.get(name) {
        Some(c) => sha256_hex(serde_json::to_string(c).unwrap_or_default().as_bytes()),
        None => "absent".into(),
    }
}

fn chart_digest(r: &Result<Located, ChartError>) -> String {
    match r {
        Ok(l) => l.digest.clone(),
        Err(e) => format!("error:{e}"),
    }
}

impl Input {
    /// The digest this input gives now.
    pub fn current(&self, inputs: &Inputs) -> String {
        match self {
            Input::File(p) => read_digest(p),
            Input::Listing(p) => listing_digest(listing(p).as_deref()),
            Input::Kind(p) => kind_of(p).into(),
            Input::Secret {
                namespace,
                name,
                key,
            } => inputs.objects.secret_digest(namespace, name, key),
            Input::Object {
                kind,
                namespace,
                name,
            } => object_digest(inputs.objects.get(kind, namespace, name)),
            Input::Chart {
                component,
                name,
                version,
            } => match inputs.catalog.get(component) {
                Some(c) => chart_digest(&inputs.locate_chart(&c.chart, name, version)),
                None => "absent".into(),
            },
            Input::Definition(n) => definition_digest(inputs, n),
            Input::Engine => engine_digest(),
            Input::Sources => sources_digest(inputs),
        }
    }
}

impl Reads {
    /// sha256 over every (input, digest), in order: the render's cache key.
    pub fn digest(&self) -> String {
        let mut text = String::new();
        for r in &self.0 {
            text.push_str(&format!("{:?}\t{}\n", r.input, r.digest));
        }
        sha256_hex(text.as_bytes())
    }

    /// Whether every recorded read still gives its digest (checked in order, stopping at the
    /// first that differs: later reads may depend on earlier ones).
    pub fn still_hold(&self, inputs: &Inputs) -> bool {
        self.0.iter().all(|r| r.input.current(inputs) == r.digest)
    }

    /// Whether this input was read.
    pub fn contains(&self, input: &Input) -> bool {
        self.0.iter().any(|r| r.input == *input)
    }
}

#[derive(Debug, Default)]
struct Log {
    seen: HashSet<Input>,
    reads: Vec<Read>,
}

/// The one reader a render reads its inputs through; it records each read.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    log: Arc<Mutex<Log>>,
}

impl Reader {
    /// A reader with nothing recorded.
    pub fn new() -> Reader {
        Reader::default()
    }

    fn record(&self, input: Input, digest: impl FnOnce() -> String) {
        if let Ok(mut l) = self.log.lock() {
            if l.seen.insert(input.clone()) {
                let digest = digest();
                l.reads.push(Read { input, digest });
            }
        }
    }

    /// Reads a file.
    ///
    /// # Errors
    /// The I/O error (recorded as such).
    pub fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let r = std::fs::read(path);
        self.record(Input::File(path.to_path_buf()), || {
            file_digest(r.as_ref().map(Vec::as_slice).map_err(std::io::Error::kind))
        });
        r
    }

    /// Reads a file as UTF-8 text.
    ///
    /// # Errors
    /// The I/O error, or invalid UTF-8.
    pub fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        String::from_utf8(self.read(path)?)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// The names in a directory, sorted bytewise (`None` when it is not one).
    pub fn list(&self, dir: &Path) -> Option<Vec<String>> {
        let names = listing(dir);
        self.record(Input::Listing(dir.to_path_buf()), || {
            listing_digest(names.as_deref())
        });
        names
    }

    /// Whether anything is at the path (symlinks followed).
    pub fn exists(&self, path: &Path) -> bool {
        let k = kind_of(path);
        self.record(Input::Kind(path.to_path_buf()), || k.into());
        k != "absent"
    }

    /// Whether a directory is at the path.
    pub fn is_dir(&self, path: &Path) -> bool {
        let k = kind_of(path);
        self.record(Input::Kind(path.to_path_buf()), || k.into());
        k == "dir"
    }

    /// Whether a regular file is at the path.
    pub fn is_file(&self, path: &Path) -> bool {
        let k = kind_of(path);
        self.record(Input::Kind(path.to_path_buf()), || k.into());
        k == "file"
    }

    /// A bound Secret key's value (its digest is what is recorded).
    ///
    /// # Errors
    /// The Secret or key is missing (named).
    pub fn secret_value(
        &self,
        objects: &Objects,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Vec<u8>, super::objects::ObjectsError> {
        self.record(
            Input::Secret {
                namespace: namespace.into(),
                name: name.into(),
                key: key.into(),
            },
            || objects.secret_digest(namespace, name, key),
        );
        objects.secret_value(namespace, name, key)
    }

    /// A looked-up object.
    pub fn object<'a>(
        &self,
        objects: &'a Objects,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<&'a Value> {
        let o = objects.get(kind, namespace, name);
        self.record(
            Input::Object {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
            },
            || object_digest(o),
        );
        o
    }

    /// Locates a component's chart in the inputs' store.
    ///
    /// # Errors
    /// As [`super::charts::ChartStore::locate`].
    pub fn chart(
        &self,
        inputs: &Inputs,
        component: &crate::component::Component,
        name: &str,
        version: &str,
    ) -> Result<Located, ChartError> {
        let r = inputs.locate_chart(&component.chart, name, version);
        self.record(
            Input::Chart {
                component: component.name.clone(),
                name: name.into(),
                version: version.into(),
            },
            || chart_digest(&r),
        );
        r
    }

    /// A component's definition from the catalog.
    pub fn definition<'a>(
        &self,
        inputs: &'a Inputs,
        name: &str,
    ) -> Option<&'a crate::component::Component> {
        self.record(Input::Definition(name.into()), || {
            definition_digest(inputs, name)
        });
        inputs.catalog.get(name)
    }

    /// The engine versions and where the render looks (recorded once per render, first).
    pub fn engine(&self, inputs: &Inputs) {
        self.record(Input::Engine, engine_digest);
        self.record(Input::Sources, || sources_digest(inputs));
    }

    /// An observer for a kustomize build's file system: each file it reads and each path it
    /// probes on disk becomes a recorded read.
    pub fn kustomize_observer(&self) -> kustomize_rs::fs::Observer {
        let me = self.clone();
        kustomize_rs::fs::Observer(Arc::new(move |a| match a {
            kustomize_rs::fs::Access::Read(p, bytes) => {
                me.record(Input::File(p.to_path_buf()), || match bytes {
                    Some(b) => sha256_hex(b),
                    None => read_digest(p),
                })
            }
            kustomize_rs::fs::Access::IsFile(p) | kustomize_rs::fs::Access::IsDir(p) => {
                me.record(Input::Kind(p.to_path_buf()), || kind_of(p).into())
            }
        }))
    }

    /// What was read so far.
    pub fn reads(&self) -> Reads {
        Reads(self.log.lock().map(|l| l.reads.clone()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_recorded_once_and_revalidated() {
        let d = std::env::temp_dir().join(format!("sw-reads-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("a.yaml"), "a: 1\n").unwrap();
        let r = Reader::new();
        assert_eq!(r.read(&d.join("a.yaml")).unwrap(), b"a: 1\n");
        assert!(r.read(&d.join("missing.yaml")).is_err());
        assert_eq!(r.list(&d), Some(vec!["a.yaml".to_string()]));
        let _ = r.read(&d.join("a.yaml"));
        let reads = r.reads();
        assert_eq!(reads.0.len(), 3, "{reads:?}");
        assert!(reads.contains(&Input::File(d.join("missing.yaml"))));
        // The digests are what is on disk now; a change to any read input shows.
        for read in &reads.0 {
            let now = match &read.input {
                Input::File(p) => read_digest(p),
                Input::Listing(p) => listing_digest(listing(p).as_deref()),
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(now, read.digest);
        }
        let key = reads.digest();
        std::fs::write(d.join("missing.yaml"), "now: here\n").unwrap();
        let r2 = Reader::new();
        let _ = r2.read(&d.join("a.yaml"));
        let _ = r2.read(&d.join("missing.yaml"));
        let _ = r2.list(&d);
        assert_ne!(r2.reads().digest(), key);
        let _ = std::fs::remove_dir_all(&d);
    }
}
