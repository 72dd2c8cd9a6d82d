//! A watch-fed cache of every listable resource, as the controllers' informers keep
//! (`k8s.io/client-go/tools/cache` Reflector: list, then watch from the list's
//! resourceVersion; on `410 Gone`, list again).

use futures_util::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::core::ApiResource;
use kube::discovery::{verbs, Discovery, Scope};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// `(group, plural)`.
pub type Key = (String, String);

/// A served resource.
#[derive(Debug, Clone)]
pub struct Kind {
    /// Its group, version, kind and plural.
    pub ar: ApiResource,
    /// Namespaced (else cluster-scoped).
    pub namespaced: bool,
    /// Has a `/status` subresource.
    pub status: bool,
}

impl Kind {
    /// `(group, plural)`.
    pub fn key(&self) -> Key {
        (self.ar.group.clone(), self.ar.plural.clone())
    }
}

/// The cached objects.
#[derive(Default)]
pub struct State {
    /// Served resources by key.
    pub kinds: BTreeMap<Key, Kind>,
    /// Objects by key, then `(namespace, name)`.
    pub objects: HashMap<Key, BTreeMap<(String, String), Json>>,
    /// Keys whose first list has arrived.
    pub synced: HashSet<Key>,
    /// uids of objects seen deleted (the newest [`TOMBSTONES`]): a write's answer arriving
    /// after the watch's `DELETED` must not bring the object back.
    gone: (HashSet<String>, std::collections::VecDeque<String>),
}

/// How many deleted uids the cache remembers.
const TOMBSTONES: usize = 4096;

impl State {
    /// Whether every served resource has been listed once.
    pub fn synced(&self) -> bool {
        self.kinds.keys().all(|k| self.synced.contains(k))
    }

    /// The served resource of `group`/`kind`, if any.
    pub fn kind_of(&self, group: &str, kind: &str) -> Option<&Kind> {
        self.kinds
            .values()
            .find(|k| k.ar.group == group && k.ar.kind == kind)
    }

    /// The objects of one resource.
    pub fn objects_of<'a>(&'a self, group: &str, plural: &str) -> impl Iterator<Item = &'a Json> {
        self.objects
            .get(&(group.to_string(), plural.to_string()))
            .into_iter()
            .flat_map(|m| m.values())
    }
}

/// The cache, shared by the reflectors (writers) and the controllers (readers).
#[derive(Default)]
pub struct Cache {
    /// The state.
    pub state: RwLock<State>,
    /// Woken on every change.
    pub changed: tokio::sync::Notify,
    version: AtomicU64,
}

/// `metadata.resourceVersion` as a number (etcd revisions are; opaque ones read as 0).
fn rv_of(o: &Json) -> u64 {
    o.pointer("/metadata/resourceVersion")
        .and_then(Json::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An object as JSON, with its kind's `apiVersion`/`kind` (list items may lack them) and
/// without managedFields (the controllers never read them).
pub fn to_json(kind: &Kind, mut o: DynamicObject) -> Json {
    o.metadata.managed_fields = None;
    let mut j = serde_json::to_value(&o).unwrap_or(Json::Null);
    if j.is_object() {
        j["apiVersion"] = json!(kind.ar.api_version);
        j["kind"] = json!(kind.ar.kind);
    }
    j
}

fn ns_name(o: &Json) -> (String, String) {
    let at = |p: &str| {
        o.pointer(p)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    (at("/metadata/namespace"), at("/metadata/name"))
}

impl Cache {
    /// A counter moved by every change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    fn touched(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Stores `o` unless the cache holds a newer version of it, or it was deleted already.
    pub fn upsert(&self, key: &Key, o: Json) {
        let uid = o
            .pointer("/metadata/uid")
            .and_then(Json::as_str)
            .unwrap_or("");
        if let Ok(mut s) = self.state.write() {
            if s.gone.0.contains(uid) {
                return;
            }
            let slot = s.objects.entry(key.clone()).or_default();
            let id = ns_name(&o);
            if slot.get(&id).is_some_and(|old| rv_of(old) > rv_of(&o)) {
                return;
            }
            slot.insert(id, o);
        }
        self.touched();
    }

    /// Drops `o` (deleted) and remembers its uid.
    pub fn remove(&self, key: &Key, o: &Json) {
        if let Ok(mut s) = self.state.write() {
            if let Some(m) = s.objects.get_mut(key) {
                m.remove(&ns_name(o));
            }
            let uid = o
                .pointer("/metadata/uid")
                .and_then(Json::as_str)
                .unwrap_or("");
            if !uid.is_empty() && s.gone.0.insert(uid.to_string()) {
                s.gone.1.push_back(uid.to_string());
                if s.gone.1.len() > TOMBSTONES {
                    if let Some(old) = s.gone.1.pop_front() {
                        s.gone.0.remove(&old);
                    }
                }
            }
        }
        self.touched();
    }

    fn replace_all(&self, key: &Key, items: Vec<Json>) {
        if let Ok(mut s) = self.state.write() {
            s.objects.insert(
                key.clone(),
                items.into_iter().map(|o| (ns_name(&o), o)).collect(),
            );
            s.synced.insert(key.clone());
        }
        self.touched();
    }

    /// Sets the served resources; those gone are dropped with their objects.
    pub fn set_kinds(&self, kinds: Vec<Kind>) {
        if let Ok(mut s) = self.state.write() {
            let keep: BTreeMap<Key, Kind> = kinds.into_iter().map(|k| (k.key(), k)).collect();
            s.objects.retain(|k, _| keep.contains_key(k));
            s.synced.retain(|k| keep.contains_key(k));
            s.kinds = keep;
        }
        self.touched();
    }
}

/// The resources a controller manager would watch: everything served that can be listed and
/// watched, except Events (nothing here reads them).
///
/// # Errors
/// Discovery's errors.
pub async fn discover(client: &kube::Client) -> Result<Vec<Kind>, kube::Error> {
    let d = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for g in d.groups() {
        for (ar, caps) in g.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::WATCH) {
                continue;
            }
            if ar.plural == "events" {
                continue;
            }
            let status = caps.subresources.iter().any(|(s, _)| s.plural == "status");
            out.push(Kind {
                namespaced: caps.scope == Scope::Namespaced,
                status,
                ar,
            });
        }
    }
    Ok(out)
}

/// Puts one watched object into the cache (or drops it when `deleted`); its resourceVersion.
fn observe(cache: &Cache, kind: &Kind, o: DynamicObject, deleted: bool) -> Option<String> {
    let j = to_json(kind, o);
    let rv = j
        .pointer("/metadata/resourceVersion")
        .and_then(Json::as_str)
        .map(str::to_string);
    if deleted {
        cache.remove(&kind.key(), &j);
    } else {
        cache.upsert(&kind.key(), j);
    }
    rv
}

/// Keeps the cache's copy of one resource current until aborted.
pub async fn reflect(client: kube::Client, kind: Kind, cache: std::sync::Arc<Cache>) {
    let api: Api<DynamicObject> = Api::all_with(client, &kind.ar);
    let key = kind.key();
    let mut rv: Option<String> = None;
    loop {
        let from = match rv.clone() {
            Some(v) => v,
            None => match api.list(&ListParams::default()).await {
                Ok(list) => {
                    let items = list.items.into_iter().map(|o| to_json(&kind, o)).collect();
                    cache.replace_all(&key, items);
                    match list.metadata.resource_version {
                        Some(v) => v,
                        None => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    }
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        rv = Some(from.clone());
        let wp = WatchParams::default().timeout(290);
        let stream = match api.watch(&wp, &from).await {
            Ok(s) => s,
            Err(_) => {
                rv = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                    rv = observe(&cache, &kind, o, false).or(rv);
                }
                Ok(WatchEvent::Deleted(o)) => rv = observe(&cache, &kind, o, true).or(rv),
                Ok(WatchEvent::Bookmark(b)) => rv = Some(b.metadata.resource_version),
                // 410 Gone (history compacted) or a broken stream: list again.
                Ok(WatchEvent::Error(_)) | Err(_) => {
                    rv = None;
                    break;
                }
            }
        }
    }
}
