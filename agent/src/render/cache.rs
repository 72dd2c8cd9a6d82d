//! The render cache: a rendered component is reused while every input is unchanged, so a warm
//! re-render costs no Helm call and no kustomize build.
//!
//! The key is what the render read: a render records every input it reads through its
//! [`Reader`](super::reads::Reader) (files, listings, kustomize trees, the chart, Secret
//! *digests* — never values —, looked-up objects, definitions, engine versions), and a cached
//! render is served again only while each of those reads still gives the digest it gave
//! ([`Reads::still_hold`]), as a build system validates a step against its recorded
//! dependencies. Nothing here re-derives the inputs, so the key cannot disagree with the
//! render.
//!
//! Rendered output holds Secret material, so entries live in memory only (never on disk),
//! and the cache is bounded: it keeps **one entry per component** — the render of the newest
//! inputs digest, which is the component's current desired state (the agent holds the same
//! objects to apply and check drift against). A render with new inputs replaces the old
//! entry, so an earlier render (and any Secret values it carried) is dropped as soon as no
//! caller holds its `Arc`; [`RenderCache::retain`] drops components no longer rendered and
//! [`RenderCache::clear`] everything. [`RenderCache::with_depth`] keeps the `n` newest renders
//! per component instead (the upgrade stage renders two revisions with one cache, so a warm
//! `diff --from --to` finds both sides; see [`crate::upgrade`]).

use super::reads::Reads;
use super::{Inputs, RenderError, Rendered};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One component's held renders, oldest first: what each read, and the render.
type Entries = Vec<(Arc<Reads>, Arc<Rendered>)>;

/// An in-memory cache of rendered components: component → (what its render read, the
/// render), at most `depth` entries per component (one by default).
#[derive(Debug, Default)]
pub struct RenderCache {
    entries: Mutex<HashMap<String, Entries>>,
    /// Renders kept per component, newest last (0 means 1).
    depth: usize,
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

impl RenderCache {
    /// An empty cache.
    pub fn new() -> RenderCache {
        RenderCache::default()
    }

    /// An empty cache keeping the `depth` newest renders of each component (at least one).
    pub fn with_depth(depth: usize) -> RenderCache {
        RenderCache {
            depth,
            ..RenderCache::default()
        }
    }

    /// Renders a component, or returns a held render while everything it read is unchanged.
    /// The flag says whether it came from the cache.
    ///
    /// # Errors
    /// As [`super::render_component`]; failures are not cached.
    pub fn render(
        &self,
        inputs: &Inputs,
        name: &str,
    ) -> Result<(Arc<Rendered>, bool), RenderError> {
        let cached = self.entries.lock().ok().and_then(|m| {
            m.get(name)?
                .iter()
                .rev()
                .find(|(reads, _)| reads.still_hold(inputs))
                .map(|(_, r)| r.clone())
        });
        if let Some(r) = cached {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((r, true));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let depth = self.depth.max(1);
        // The oldest render beyond the depth goes now, before the new one is made.
        if let Ok(mut m) = self.entries.lock() {
            if let Some(v) = m.get_mut(name) {
                let excess = (v.len() + 1).saturating_sub(depth);
                v.drain(..excess.min(v.len()));
            }
        }
        let (r, reads) = super::render_recorded(inputs, name)?;
        let r = Arc::new(r);
        if let Ok(mut m) = self.entries.lock() {
            m.entry(name.to_string())
                .or_default()
                .push((Arc::new(reads), r.clone()));
        }
        Ok((r, false))
    }

    /// The key of a component's newest held render: the digest of what it read (`None` when
    /// none is held).
    pub fn key(&self, name: &str) -> Option<String> {
        self.entries
            .lock()
            .ok()
            .and_then(|m| m.get(name)?.last().map(|(reads, _)| reads.digest()))
    }

    /// What a component's newest held render read (`None` when none is held).
    pub fn reads(&self, name: &str) -> Option<Reads> {
        self.entries
            .lock()
            .ok()
            .and_then(|m| m.get(name)?.last().map(|(reads, _)| Reads::clone(reads)))
    }

    /// How many renders are held (at most the depth per component).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
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
