//! Server-side apply for the test server: typing objects into field sets, conflicts and
//! merging (the field-path codec is `kube-fieldpath`), after `sigs.k8s.io/structured-merge-diff` (fieldpath sets, `merge/update.go`)
//! and Kubernetes `apiserver/pkg/endpoints/handlers/fieldmanager`.
//!
//! Lists are associative when the embedded OpenAPI schema gives them merge keys
//! (`x-kubernetes-list-map-keys` / `x-kubernetes-patch-merge-key`), sets when their strategy is
//! `merge` without keys, and atomic otherwise (owned as one leaf). Custom resources use their
//! CRD's `x-kubernetes-list-type`/`-map-keys` where the schema gives them.

use kustomize_rs::openapi::Schema;
use serde_json::{Map, Value as Json};
use std::collections::BTreeSet;

/// Field paths, field sets and the `fieldsV1` codec live in `kube-fieldpath` (shared with the
/// agent); re-exported here so the server's modules name them in one place.
pub use kube_fieldpath::{from_fields_v1, path_string, remove_at, to_fields_v1, value_at};
pub use kube_fieldpath::{FieldSet, Path, Pe};

/// How a list is merged (associative by keys, a set, or atomic).
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// Merged as a set of values.
    Set,
    /// Merged by these key fields.
    Map(Vec<String>),
}

/// Schema position: the builtin OpenAPI tables, or a CRD's structural schema node.
#[derive(Debug, Clone)]
pub enum Pos {
    /// Builtin (or unknown).
    Builtin(Option<Schema>),
    /// A CRD `openAPIV3Schema` node.
    Crd(Json),
    /// A builtin field that is atomic by itself (`x-kubernetes-map-type: atomic` on the field,
    /// e.g. a Service's `spec.selector`).
    Atomic,
}

/// Builtin types that are `+structType=atomic` / `x-kubernetes-map-type: atomic` in
/// Kubernetes v1.36 (`k8s.io/api`, `apimachinery/pkg/apis/meta/v1`): owned and replaced as one
/// value under server-side apply (`f:selector: {}`, never `f:selector/f:matchLabels`).
const ATOMIC_TYPES: &str = include_str!("../data/atomic-types.txt");

impl Pos {
    /// Whether the value here is owned as one leaf (an atomic struct or map).
    pub fn is_atomic(&self) -> bool {
        match self {
            Pos::Builtin(Some(kustomize_rs::openapi::Schema::Builtin(def))) => ATOMIC_TYPES
                .lines()
                .map(str::trim)
                .any(|l| !l.starts_with('#') && l == *def),
            Pos::Builtin(_) => false,
            Pos::Atomic => true,
            Pos::Crd(node) => {
                node.get("x-kubernetes-map-type").and_then(Json::as_str) == Some("atomic")
            }
        }
    }

    fn field(&self, name: &str) -> (Pos, ListKind) {
        match self {
            Pos::Atomic => (Pos::Atomic, ListKind::Atomic),
            Pos::Builtin(Some(kustomize_rs::openapi::Schema::Builtin(def)))
                if ATOMIC_TYPES.lines().any(|l| {
                    l.trim()
                        .strip_prefix(*def)
                        .and_then(|r| r.strip_prefix('.'))
                        == Some(name)
                }) =>
            {
                (Pos::Atomic, ListKind::Atomic)
            }
            Pos::Builtin(s) => {
                let fi = s.as_ref().and_then(|s| s.field(name));
                let kind = match &fi {
                    Some(f) if f.array && !f.merge_keys.is_empty() && f.is_associative() => {
                        ListKind::Map(f.merge_keys.clone())
                    }
                    Some(f) if f.array && f.is_associative() => ListKind::Set,
                    _ => ListKind::Atomic,
                };
                (Pos::Builtin(fi.and_then(|f| f.schema)), kind)
            }
            Pos::Crd(node) => {
                let p = node
                    .get("properties")
                    .and_then(|p| p.get(name))
                    .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()));
                let Some(p) = p else {
                    return (Pos::Crd(Json::Null), ListKind::Atomic);
                };
                let kind = match p.get("x-kubernetes-list-type").and_then(Json::as_str) {
                    Some("map") => ListKind::Map(
                        p.get("x-kubernetes-list-map-keys")
                            .and_then(Json::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|k| k.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    Some("set") => ListKind::Set,
                    _ => ListKind::Atomic,
                };
                let next = if p.get("type").and_then(Json::as_str) == Some("array") {
                    p.get("items").cloned().unwrap_or(Json::Null)
                } else {
                    p.clone()
                };
                (Pos::Crd(next), kind)
            }
        }
    }
}

fn key_of(item: &Json, keys: &[String]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        } else if k == "protocol" {
            // Key fields take their schema default when unset: ports are TCP.
            m.insert(k.clone(), Json::from("TCP"));
        }
    }
    if m.is_empty() {
        return None;
    }
    let mut sorted: Vec<(String, Json)> = m.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Json::Object(sorted.into_iter().collect()).to_string())
}

/// The `metadata` fields managed fields track; the rest (name, namespace, uid,
/// resourceVersion, generation, creationTimestamp, managedFields) the field manager strips
/// (k8s.io/apiserver `pkg/endpoints/handlers/fieldmanager/internal/stripmeta.go`).
pub const TRACKED_METADATA: &[&str] = &[
    "annotations",
    "finalizers",
    "generateName",
    "labels",
    "ownerReferences",
];

/// The fields an object sets (top-level identity fields and status excluded).
pub fn field_set(obj: &Json, pos: &Pos) -> FieldSet {
    let mut out = FieldSet::new();
    if let Json::Object(m) = obj {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" | "status" => continue,
                "metadata" => {
                    if let Json::Object(md) = v {
                        for (mk, mv) in md {
                            if TRACKED_METADATA.contains(&mk.as_str()) {
                                let (p, lk) = pos.field("metadata");
                                let (p2, lk2) = p.field(mk);
                                let _ = lk;
                                walk(
                                    mv,
                                    &p2,
                                    &lk2,
                                    vec![Pe::Field("metadata".into()), Pe::Field(mk.clone())],
                                    &mut out,
                                );
                            }
                        }
                    }
                }
                _ => {
                    let (p, lk) = pos.field(k);
                    walk(v, &p, &lk, vec![Pe::Field(k.clone())], &mut out);
                }
            }
        }
    }
    out
}

/// The fields of a status subresource write.
pub fn status_field_set(obj: &Json, pos: &Pos) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(s) = obj.get("status") {
        let (p, lk) = pos.field("status");
        walk(s, &p, &lk, vec![Pe::Field("status".into())], &mut out);
    }
    out
}

fn walk(v: &Json, pos: &Pos, lk: &ListKind, path: Path, out: &mut FieldSet) {
    match (v, lk) {
        (Json::Object(m), _) if !m.is_empty() && !pos.is_atomic() => {
            for (k, c) in m {
                let (p, l) = pos.field(k);
                let mut np = path.clone();
                np.push(Pe::Field(k.clone()));
                walk(c, &p, &l, np, out);
            }
        }
        (Json::Array(items), ListKind::Map(keys)) => {
            for it in items {
                match key_of(it, keys) {
                    Some(k) => {
                        let mut np = path.clone();
                        np.push(Pe::Key(k));
                        out.insert(np.clone());
                        if pos.is_atomic() {
                            continue;
                        }
                        if let Json::Object(m) = it {
                            for (f, c) in m {
                                let (p, l) = pos.field(f);
                                let mut fp = np.clone();
                                fp.push(Pe::Field(f.clone()));
                                walk(c, &p, &l, fp, out);
                            }
                        }
                    }
                    None => {
                        out.insert(path.clone());
                    }
                }
            }
        }
        (Json::Array(items), ListKind::Set) => {
            for it in items {
                let mut np = path.clone();
                np.push(Pe::Value(it.to_string()));
                out.insert(np);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// Merges an applied configuration into the live object: maps recursively, associative lists
/// by key and sets by value (in the order [`merge_items`] gives), everything else replaced.
pub fn merge(live: &mut Json, applied: &Json, pos: &Pos, lk: &ListKind) {
    match (live, applied, lk) {
        (Json::Object(l), Json::Object(a), _) => {
            for (k, av) in a {
                let (p, kind) = pos.field(k);
                match l.get_mut(k) {
                    Some(lv) if !lv.is_null() => merge(lv, av, &p, &kind),
                    _ => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Json::Array(l), Json::Array(a), ListKind::Map(_) | ListKind::Set) => {
            if let Some(out) = merge_items(l, a, pos, lk) {
                *l = out;
            } else {
                *l = a.clone();
            }
        }
        (live, applied, _) => *live = applied.clone(),
    }
}

/// The path element of a list item: its key for an associative list, its value for a set
/// (`None` for an atomic list, or an item without any key field).
fn item_pe(item: &Json, lk: &ListKind) -> Option<Pe> {
    match lk {
        ListKind::Map(keys) => key_of(item, keys).map(Pe::Key),
        ListKind::Set => Some(Pe::Value(item.to_string())),
        ListKind::Atomic => None,
    }
}

/// Merges the items of an associative list or set, in the order structured-merge-diff gives
/// (`typed/merge.go`, `visitListItems`): live items the applied list does not name stay where
/// they are; items both name are merged and come in the applied list's order, each where its
/// live predecessor in that order was; new items follow the applied item before them. So
/// live `[A, B, EXTRA]` with applied `[B, A]` gives `[B, EXTRA, A]`, as kube-apiserver v1.36
/// answers (corpus `ssa-lists`). `None` when an item has no key (the list is then replaced).
fn merge_items(live: &[Json], applied: &[Json], pos: &Pos, lk: &ListKind) -> Option<Vec<Json>> {
    let lhs: Vec<Pe> = live.iter().map(|i| item_pe(i, lk)).collect::<Option<_>>()?;
    let rhs: Vec<Pe> = applied
        .iter()
        .map(|i| item_pe(i, lk))
        .collect::<Option<_>>()?;
    let in_lhs = |pe: &Pe| lhs.iter().position(|x| x == pe);
    let in_rhs = |pe: &Pe| rhs.iter().position(|x| x == pe);
    let merged_item = |pe: &Pe, ri: usize| -> Json {
        match (lk, in_lhs(pe)) {
            (ListKind::Map(_), Some(li)) => {
                let mut m = live[li].clone();
                merge(&mut m, &applied[ri], pos, &ListKind::Atomic);
                m
            }
            _ => applied[ri].clone(),
        }
    };
    let mut shared = rhs.iter().filter(|pe| in_lhs(pe).is_some());
    let mut next_shared = shared.next();
    let mut done: BTreeSet<&Pe> = BTreeSet::new();
    let mut out = Vec::with_capacity(live.len().max(applied.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            if lhs[li] == rhs[ri] {
                done.insert(&rhs[ri]);
                out.push(merged_item(&rhs[ri], ri));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if in_rhs(&lhs[li]).is_some() && next_shared.is_some_and(|n| *n != lhs[li]) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            if in_rhs(&lhs[li]).is_none() {
                out.push(live[li].clone());
                li += 1;
                continue;
            }
            if done.contains(&lhs[li]) {
                li += 1;
                continue;
            }
        }
        if ri < rhs.len() {
            done.insert(&rhs[ri]);
            out.push(merged_item(&rhs[ri], ri));
            if next_shared == Some(&rhs[ri]) {
                next_shared = shared.next();
            }
            ri += 1;
        }
    }
    Some(out)
}

/// The first associative-list or set entry an applied configuration names twice, as
/// structured-merge-diff reports it when it types the patch (`typed/helpers.go`,
/// `indexListPathElements`): `.spec.setItems: duplicate entries for key [="x"]`.
pub fn duplicate_entry(obj: &Json, pos: &Pos) -> Option<String> {
    fn go(v: &Json, pos: &Pos, lk: &ListKind, path: &mut Path) -> Option<String> {
        match v {
            Json::Object(m) if !pos.is_atomic() => {
                for (k, c) in m {
                    let (p, l) = pos.field(k);
                    path.push(Pe::Field(k.clone()));
                    let found = go(c, &p, &l, path);
                    path.pop();
                    if found.is_some() {
                        return found;
                    }
                }
                None
            }
            Json::Array(items) if *lk != ListKind::Atomic => {
                let mut seen = BTreeSet::new();
                for it in items {
                    let pe = item_pe(it, lk)?;
                    if !seen.insert(pe.clone()) {
                        let key = path_string(std::slice::from_ref(&pe));
                        return Some(format!(
                            "{}: duplicate entries for key {key}",
                            path_string(path)
                        ));
                    }
                    if matches!(lk, ListKind::Map(_)) {
                        path.push(pe);
                        let found = go(it, pos, &ListKind::Atomic, path);
                        path.pop();
                        if found.is_some() {
                            return found;
                        }
                    }
                }
                None
            }
            _ => None,
        }
    }
    go(obj, pos, &ListKind::Atomic, &mut Vec::new())
}

/// A path from [`crate::schema::unknown_fields`] as structured-merge-diff prints it: list
/// items by key (`.spec.template.spec.containers[name="app"].bogus`), by value in a set,
/// by index otherwise.
pub fn typed_path(obj: &Json, pos: &Pos, path: &[crate::schema::Seg]) -> String {
    use crate::schema::Seg;
    let (mut cur, mut pos, mut lk) = (obj, pos.clone(), ListKind::Atomic);
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                out.push('.');
                out.push_str(f);
                (pos, lk) = pos.field(f);
                cur = cur.get(f).unwrap_or(&Json::Null);
            }
            Seg::Item(i) => {
                let item = cur.get(*i).unwrap_or(&Json::Null);
                match item_pe(item, &lk) {
                    Some(pe) => out.push_str(&path_string(std::slice::from_ref(&pe))),
                    None => out.push_str(&format!("[{i}]")),
                }
                cur = item;
                lk = ListKind::Atomic;
            }
        }
    }
    out
}

/// Top-level merge entry.
pub fn merge_object(live: &mut Json, applied: &Json, pos: &Pos) {
    merge(live, applied, pos, &ListKind::Atomic);
}

/// What an update (create, PUT, merge or JSON patch) changed, as the manager of an `Update`
/// operation comes to own it: leaf paths of `new` whose value differs from `old` (all of them
/// when there is no `old`), plus — as `.` entries — every map node the update created
/// (absent before). Map nodes are builtin fields without a struct schema (`labels`, `data`,
/// `selector` of a Service...) and every object node of a custom resource; builtin structs
/// (`spec`, `metadata`) get no `.` (structured-merge-diff `typed/tofieldset.go` as the
/// recorded kube-apiserver shows it: `f:labels: {".": {}, ...}` on create, none on a later
/// merge patch of an existing map).
///
/// With `status` (a `/status` write) only the status is looked at, without it everything but
/// the status. Custom resources own every created node, lists (`f:conditions: {".": {}}`)
/// included; builtin structs only when they are pointers in Go (`data/pointer-structs.txt`).
pub fn changed_fields(old: Option<&Json>, new: &Json, pos: &Pos, status: bool) -> FieldSet {
    let before = |p: &Path| old.and_then(|o| value_at(o, p));
    // A list item that was there before is not itself changed by an update that changes
    // some of its fields: the manager gets those fields, not the item (`.` stays with whoever
    // created it) — as recorded from kube-apiserver v1.36 (ssa-conflict).
    let fields = if status {
        status_field_set(new, pos)
    } else {
        field_set(new, pos)
    };
    let mut out: FieldSet = fields
        .into_iter()
        .filter(|p| {
            let (b, n) = (before(p), value_at(new, p));
            // A map emptied by removals (`spec: {}` once its finalizers went) is not a change
            // of its own either: removals give no ownership.
            let emptied = b.is_some_and(Json::is_object)
                && n.is_some_and(|x| x.as_object().is_some_and(|m| m.is_empty()));
            b != n && !(b.is_some() && matches!(p.last(), Some(Pe::Key(_)))) && !emptied
        })
        .collect();
    let mut nodes = Vec::new();
    map_nodes(new, pos, Vec::new(), &mut nodes, status);
    out.extend(nodes.into_iter().filter(|p| before(p).is_none()));
    out
}

/// Drops what Go's `omitempty` drops from a builtin object on the way to storage: empty maps
/// (fields without a struct schema: `data: {}`, `labels: {}`) and empty lists; empty structs
/// (`securityContext: {}`, `resources: {}`) stay. Custom resources keep everything.
pub fn drop_empty(v: &mut Json, pos: &Pos) {
    if !matches!(pos, Pos::Builtin(_)) {
        return;
    }
    let Json::Object(m) = v else { return };
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        let (p, _) = pos.field(&k);
        let Some(c) = m.get_mut(&k) else { continue };
        match c {
            Json::Object(cm) => {
                let is_map = matches!(p, Pos::Builtin(None) | Pos::Atomic);
                if !cm.is_empty() {
                    if !is_map {
                        drop_empty(c, &p);
                    }
                } else if is_map && k != "status" {
                    m.shift_remove(&k);
                }
            }
            Json::Array(items) => {
                if items.is_empty() {
                    m.shift_remove(&k);
                } else {
                    for it in items.iter_mut() {
                        drop_empty(it, &p);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether field `name` of the builtin struct at `parent` is a pointer in Go.
fn is_pointer_struct(parent: &Pos, name: &str) -> bool {
    const POINTERS: &str = include_str!("../data/pointer-structs.txt");
    static SET: std::sync::OnceLock<BTreeSet<(&str, &str)>> = std::sync::OnceLock::new();
    let Pos::Builtin(Some(kustomize_rs::openapi::Schema::Builtin(def))) = parent else {
        return false;
    };
    SET.get_or_init(|| {
        POINTERS
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .collect()
    })
    .contains(&(*def, name))
}

/// Paths of the map-like object nodes of `v` (see [`changed_fields`]), within the parts of
/// an object [`field_set`] covers.
fn map_nodes(v: &Json, pos: &Pos, path: Path, out: &mut Vec<Path>, status: bool) {
    let Json::Object(m) = v else { return };
    for (k, c) in m {
        if path.is_empty()
            && (matches!(k.as_str(), "apiVersion" | "kind") || (k == "status") != status)
        {
            continue;
        }
        if path == [Pe::Field("metadata".into())] && !matches!(k.as_str(), "labels" | "annotations")
        {
            continue;
        }
        let (p, lk) = pos.field(k);
        let mut np = path.clone();
        np.push(Pe::Field(k.clone()));
        match c {
            Json::Object(cm) if !cm.is_empty() && !p.is_atomic() => {
                let map_like = match &p {
                    Pos::Builtin(s) => s.is_none() || is_pointer_struct(pos, k),
                    Pos::Crd(_) => true,
                    Pos::Atomic => false,
                };
                // `metadata` is a value struct (ObjectMeta) whatever the kind.
                if map_like && !(path.is_empty() && k == "metadata") {
                    out.push(np.clone());
                }
                map_nodes(c, &p, np, out, status);
            }
            Json::Array(items) => {
                if matches!(pos, Pos::Crd(_)) && !items.is_empty() && lk != ListKind::Atomic {
                    out.push(np.clone());
                }
                if let ListKind::Map(keys) = &lk {
                    for it in items {
                        if let Some(key) = key_of(it, keys) {
                            let mut ip = np.clone();
                            ip.push(Pe::Key(key));
                            map_nodes(it, &p, ip, out, status);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
