//! The render cache: a rendered component is reused while every input is unchanged, so a warm
//! re-render costs no Helm call and no kustomize build.
//!
//! The key is the sha256 of everything the render reads: engine versions (Stackwave, helm-c,
//! Helm SDK), the component definition, the chart's digest, the bytes of every values file
//! (the component's and those its variables read), each binding's Secret *digest* (never the
//! value) and looked-up object, and the post-render kustomize trees.
//!
//! Rendered output holds Secret material, so entries live in memory only (never on disk),
//! and the cache is bounded: it keeps **one entry per component** — the render of the newest
//! inputs digest, which is the component's current desired state (the agent holds the same
//! objects to apply and check drift against). A render with new inputs replaces the old
//! entry, so an earlier render (and any Secret values it carried) is dropped as soon as no
//! caller holds its `Arc`; [`RenderCache::retain`] drops components no longer rendered and
//! [`RenderCache::clear`] everything.

use super::charts::dir_digest;
use super::{plan, values, Inputs, RenderError, Rendered};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// An in-memory cache of rendered components: component → (input digest, render), at most
/// one entry per component.
#[derive(Debug, Default)]
pub struct RenderCache {
    entries: Mutex<HashMap<String, (String, Arc<Rendered>)>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Cache statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Renders served from the cache.
    pub hits: u64,
    /// Renders that ran Helm.
    pub misses: u64,
}

fn tree_stamp(dir: &Path) -> (u64, u128) {
    fn walk(d: &Path, n: &mut u64, newest: &mut u128) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                walk(&e.path(), n, newest);
            } else {
                *n += md.len();
                let t = md
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                *newest = (*newest).max(t);
            }
        }
    }
    let (mut n, mut newest) = (0, 0);
    walk(dir, &mut n, &mut newest);
    (n, newest)
}

/// Digest of a directory tree, memoised per process while its file sizes and newest
/// modification time are unchanged.
fn tree_digest(dir: &Path) -> String {
    /// Path → ((size, mtime ns), digest).
    type Memo = HashMap<PathBuf, ((u64, u128), String)>;
    static MEMO: Mutex<Option<Memo>> = Mutex::new(None);
    let stamp = tree_stamp(dir);
    if let Ok(mut g) = MEMO.lock() {
        let m = g.get_or_insert_with(HashMap::new);
        if let Some((s, d)) = m.get(dir) {
            if *s == stamp {
                return d.clone();
            }
        }
        let d = dir_digest(dir);
        m.insert(dir.to_path_buf(), (stamp, d.clone()));
        return d;
    }
    dir_digest(dir)
}

fn add(h: &mut Sha256, tag: &str, bytes: &[u8]) {
    h.update(tag.as_bytes());
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The cache key of a component's render.
///
/// # Errors
/// As [`plan`].
pub fn input_digest(inputs: &Inputs, name: &str) -> Result<String, RenderError> {
    if let Some(c) = inputs
        .catalog
        .get(name)
        .filter(|c| c.kind != crate::component::ComponentKind::Helm)
    {
        let mut h = Sha256::new();
        add(&mut h, "stackwave", env!("CARGO_PKG_VERSION").as_bytes());
        add(
            &mut h,
            "component",
            serde_json::to_string(c).unwrap_or_default().as_bytes(),
        );
        for p in super::apps::inputs_read(inputs, c) {
            let d = if p.is_dir() {
                tree_digest(&p)
            } else {
                super::objects::hex(&Sha256::digest(std::fs::read(&p).unwrap_or_default()))
            };
            add(&mut h, &p.display().to_string(), d.as_bytes());
        }
        return Ok(super::objects::hex(&h.finalize()));
    }
    let p = plan(inputs, name)?;
    let c = p.component;
    let mut h = Sha256::new();
    add(&mut h, "stackwave", env!("CARGO_PKG_VERSION").as_bytes());
    if let Ok(helm) = super::helm::Helm::get() {
        add(&mut h, "helm-c", helm.c_version().as_bytes());
        add(&mut h, "helm-sdk", helm.sdk_version().as_bytes());
    }
    add(
        &mut h,
        "component",
        serde_json::to_string(c).unwrap_or_default().as_bytes(),
    );
    add(
        &mut h,
        "chart",
        format!("{}@{}#{}", p.chart_name, p.version, p.located.digest).as_bytes(),
    );
    let mut specs = vec![&c.values];
    for v in c.vars.values() {
        if let Some(o) = inputs.catalog.get(&v.values_of) {
            specs.push(&o.values);
        }
    }
    for spec in specs {
        for f in values::value_files(&inputs.sources, spec) {
            add(
                &mut h,
                &f.display().to_string(),
                &std::fs::read(&f).unwrap_or_default(),
            );
        }
    }
    for b in &c.bindings {
        add(&mut h, "binding", b.path.as_bytes());
        for d in values::binding_extra_inputs(b, &inputs.objects) {
            add(&mut h, "binding-input", d.as_bytes());
        }
        if let (Some(s), Some(k)) = (&b.secret, &b.key) {
            let ns = b.namespace.as_deref().unwrap_or(&c.release.namespace);
            add(
                &mut h,
                "secret",
                inputs.objects.secret_digest(ns, s, k).as_bytes(),
            );
        }
        if let Some(o) = &b.object {
            let obj = inputs
                .objects
                .get(&o.kind, &o.namespace, &o.name)
                .map(|v| kustomize_rs::yaml::to_yaml(v).unwrap_or_default())
                .unwrap_or_default();
            add(&mut h, "object", obj.as_bytes());
        }
    }
    add(
        &mut h,
        "base-kustomize",
        tree_digest(&inputs.sources.genestack.join("base-kustomize")).as_bytes(),
    );
    if let Some(o) = &inputs.sources.overrides {
        add(
            &mut h,
            "kustomize-overrides",
            tree_digest(&o.join("kustomize")).as_bytes(),
        );
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl RenderCache {
    /// An empty cache.
    pub fn new() -> RenderCache {
        RenderCache::default()
    }

    /// Renders a component, or returns the cached render of identical inputs. The flag says
    /// whether it came from the cache.
    ///
    /// # Errors
    /// As [`super::render_component`]; failures are not cached.
    pub fn render(
        &self,
        inputs: &Inputs,
        name: &str,
    ) -> Result<(Arc<Rendered>, bool), RenderError> {
        let key = input_digest(inputs, name)?;
        let cached = self.entries.lock().ok().and_then(|m| {
            m.get(name)
                .filter(|(digest, _)| *digest == key)
                .map(|(_, r)| r.clone())
        });
        if let Some(r) = cached {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((r, true));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // The older render of this component goes now, before the new one is made.
        if let Ok(mut m) = self.entries.lock() {
            m.remove(name);
        }
        let r = Arc::new(super::render_component(inputs, name)?);
        if let Ok(mut m) = self.entries.lock() {
            m.insert(name.to_string(), (key, r.clone()));
        }
        Ok((r, false))
    }

    /// How many renders are held (at most one per component).
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the renders of components `keep` does not name (components removed from the
    /// repository).
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        if let Ok(mut m) = self.entries.lock() {
            m.retain(|name, _| keep(name));
        }
    }

    /// Drops every render.
    pub fn clear(&self) {
        if let Ok(mut m) = self.entries.lock() {
            m.clear();
        }
    }

    /// Hit and miss counts.
    pub fn stats(&self) -> Stats {
        Stats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}
