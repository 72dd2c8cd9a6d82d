//! Revision against revision: the objects each component adds, removes and changes between
//! two renders, with a field-level diff of each changed object.
//!
//! Objects are matched by `apiVersion` group, kind, namespace and name. Both sides go through
//! [`crate::diff::normalize`] (the live diff's normaliser), so a Secret's `data`/`stringData`
//! values never appear: a changed key reads `*** (before)` → `*** (after)`, an added or
//! removed key `null` on the other side. Fields are paths of dotted keys; list items are
//! addressed by their `name` when every item of the list has one (`containers[nova-api]`),
//! else by index (`args[2]`).
//!
//! With a cluster (`diff --from --to --server|--kubeconfig`), each component also carries
//! `live`: what applying the new revision would change in the live cluster, from the live
//! diff's server-side dry run ([`crate::diff::diff_component`] through
//! [`crate::reconcile::Agent::diff`]), as the same object changes (`fields` from live to
//! after-apply) — the revision-to-revision change and any hand change the apply would undo.

use super::Side;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// What happens to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Only in the new revision.
    Added,
    /// Only in the old revision (the agent prunes it).
    Removed,
    /// In both, different.
    Changed,
}

impl Action {
    /// `added`, `removed`, `changed` (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Added => "added",
            Action::Removed => "removed",
            Action::Changed => "changed",
        }
    }
}

/// One field that differs (values masked for Secrets).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Field {
    /// Dotted path (`spec.template.metadata.annotations.configmap-etc-hash`).
    pub path: String,
    /// Old value (`null`: absent).
    pub from: Json,
    /// New value (`null`: absent).
    pub to: Json,
}

/// One object that differs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectChange {
    /// What happens.
    pub action: Action,
    /// `apiVersion`.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// For `changed`: the fields that differ, in document order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
}

impl ObjectChange {
    /// `Kind/namespace/name` (`Kind/name` when cluster-scoped).
    pub fn id(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A component's changes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComponentChange {
    /// Component name.
    pub name: String,
    /// Objects added, removed and changed (sorted by kind, namespace, name).
    pub objects: Vec<ObjectChange>,
    /// With a cluster only: what applying the new revision changes in the live cluster
    /// (`added`: created, `changed`: updated, `removed`: pruned from the inventory; `fields`
    /// from live to after the apply), sorted likewise; empty when live already matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Vec<ObjectChange>>,
}

/// The whole diff (`diff -o json`): `{"from", "to", "components": [...]}`; components without
/// changes are left out.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diff {
    /// Old commit.
    pub from: String,
    /// New commit.
    pub to: String,
    /// Changed components, by name.
    pub components: Vec<ComponentChange>,
}

impl Diff {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    /// The changes of one component.
    pub fn component(&self, name: &str) -> Option<&ComponentChange> {
        self.components.iter().find(|c| c.name == name)
    }

    /// The diff with every component's `live` changes ([`live_changes`]) set: components
    /// that only differ from live are added (with no revision changes).
    pub fn with_live(mut self, mut live: BTreeMap<String, Vec<ObjectChange>>) -> Diff {
        for c in &mut self.components {
            c.live = Some(live.remove(&c.name).unwrap_or_default());
        }
        self.components
            .extend(live.into_iter().map(|(name, l)| ComponentChange {
                name,
                objects: Vec::new(),
                live: Some(l),
            }));
        self.components.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }
}

fn by_id(objects: &mut [ObjectChange]) {
    objects.sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
}

/// The live diff's object diffs ([`crate::diff::ObjectDiff`], masked) as object changes per
/// component: create → `added`, update → `changed` with its fields (live → after the apply),
/// delete → `removed`.
pub fn live_changes(diffs: &[crate::diff::ObjectDiff]) -> BTreeMap<String, Vec<ObjectChange>> {
    use crate::diff::Change;
    let mut out: BTreeMap<String, Vec<ObjectChange>> = BTreeMap::new();
    for d in diffs {
        let (action, fields) = match (d.change, &d.live, &d.after) {
            (Change::Update, Some(l), Some(a)) => (Action::Changed, object_fields(l, a)),
            (Change::Delete, _, _) => (Action::Removed, Vec::new()),
            _ => (Action::Added, Vec::new()),
        };
        let Some(o) = d.after.as_ref().or(d.live.as_ref()) else {
            continue;
        };
        out.entry(d.component.clone())
            .or_default()
            .push(change(action, o, fields));
    }
    for v in out.values_mut() {
        by_id(v);
    }
    out
}

fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

fn key(o: &Json) -> (String, String, String, String) {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    (
        group(&s("/apiVersion")).to_string(),
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name"),
    )
}

fn change(action: Action, o: &Json, fields: Vec<Field>) -> ObjectChange {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    ObjectChange {
        action,
        api_version: s("/apiVersion"),
        kind: s("/kind"),
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name"),
        fields,
    }
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

/// Items of a list keyed by `name` when every item has a distinct one.
fn named(items: &[Json]) -> Option<BTreeMap<&str, &Json>> {
    let m: BTreeMap<&str, &Json> = items
        .iter()
        .map(|i| i.get("name").and_then(Json::as_str).map(|n| (n, i)))
        .collect::<Option<_>>()?;
    (m.len() == items.len()).then_some(m)
}

/// Leaf-level differences of `a` → `b` under `path`.
fn fields(path: &str, a: Option<&Json>, b: Option<&Json>, out: &mut Vec<Field>) {
    match (a, b) {
        (Some(Json::Object(x)), Some(Json::Object(y))) => {
            for (k, v) in x {
                fields(&join(path, k), Some(v), y.get(k), out);
            }
            for (k, v) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                fields(&join(path, k), None, Some(v), out);
            }
        }
        (Some(Json::Array(x)), Some(Json::Array(y))) => match (named(x), named(y)) {
            (Some(nx), Some(ny)) => {
                for (n, v) in &nx {
                    fields(&format!("{path}[{n}]"), Some(v), ny.get(n).copied(), out);
                }
                for (n, v) in ny.iter().filter(|(n, _)| !nx.contains_key(*n)) {
                    fields(&format!("{path}[{n}]"), None, Some(v), out);
                }
            }
            _ => {
                for i in 0..x.len().max(y.len()) {
                    fields(&format!("{path}[{i}]"), x.get(i), y.get(i), out);
                }
            }
        },
        (a, b) if a == b => {}
        (a, b) => out.push(Field {
            path: path.to_string(),
            from: a.cloned().unwrap_or(Json::Null),
            to: b.cloned().unwrap_or(Json::Null),
        }),
    }
}

/// The field-level diff of two versions of one object (Secret values masked).
pub fn object_fields(old: &Json, new: &Json) -> Vec<Field> {
    let a = crate::diff::normalize(old, Some(new), true);
    let b = crate::diff::normalize(new, Some(old), false);
    let mut out = Vec::new();
    fields("", Some(&a), Some(&b), &mut out);
    out
}

/// A component's objects of one side, by [`key`].
type Index<'a> = BTreeMap<(String, String, String, String), &'a Json>;

fn index<'a>(side: &'a Side, name: &str) -> Index<'a> {
    side.get(name)
        .into_iter()
        .flatten()
        .map(|o| (key(o), o))
        .collect()
}

/// Compares two rendered revisions.
pub fn diff(from_commit: &str, to_commit: &str, from: &Side, to: &Side) -> Diff {
    let mut names: Vec<&String> = from.keys().chain(to.keys()).collect();
    names.sort();
    names.dedup();
    let mut components = Vec::new();
    for name in names {
        let (old, new) = (index(from, name), index(to, name));
        let mut objects = Vec::new();
        for (k, o) in &old {
            match new.get(k) {
                None => objects.push(change(Action::Removed, o, Vec::new())),
                Some(n) => {
                    let f = object_fields(o, n);
                    if !f.is_empty() {
                        objects.push(change(Action::Changed, n, f));
                    }
                }
            }
        }
        for (_, n) in new.iter().filter(|(k, _)| !old.contains_key(*k)) {
            objects.push(change(Action::Added, n, Vec::new()));
        }
        by_id(&mut objects);
        if !objects.is_empty() {
            components.push(ComponentChange {
                name: name.clone(),
                objects,
                live: None,
            });
        }
    }
    Diff {
        from: from_commit.to_string(),
        to: to_commit.to_string(),
        components,
    }
}

/// A value as one short line (strings unquoted, long values cut at 120 characters).
pub fn brief(v: &Json) -> String {
    let s = match v {
        Json::Null => "(absent)".to_string(),
        Json::String(s) => s.replace('\n', "\\n"),
        other => other.to_string(),
    };
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// The readable diff: a summary line per component first, then each object and its fields.
pub fn text(d: &Diff) -> String {
    let mut out = format!(
        "diff {} → {}: {}\n",
        super::revision::short(&d.from),
        super::revision::short(&d.to),
        summary(d)
    );
    for c in &d.components {
        out.push_str(&format!("  {}: {}", c.name, counts(&c.objects)));
        if let Some(l) = &c.live {
            out.push_str(&format!("; live: {}", counts(l)));
        }
        out.push('\n');
    }
    for c in &d.components {
        out.push_str(&format!("\n== {}\n", c.name));
        objects_text(&c.objects, "", &mut out);
        if let Some(l) = c.live.as_ref().filter(|l| !l.is_empty()) {
            out.push_str("  against the live cluster (live → after applying the new revision):\n");
            objects_text(l, "  ", &mut out);
        }
    }
    out
}

fn objects_text(objects: &[ObjectChange], indent: &str, out: &mut String) {
    for o in objects {
        let mark = match o.action {
            Action::Added => '+',
            Action::Removed => '-',
            Action::Changed => '~',
        };
        out.push_str(&format!("{indent}{mark} {}\n", o.id()));
        for f in &o.fields {
            out.push_str(&format!(
                "{indent}    {}: {} → {}\n",
                f.path,
                brief(&f.from),
                brief(&f.to)
            ));
        }
    }
}

/// `N added, N removed, N changed` over some objects.
pub fn counts(objects: &[ObjectChange]) -> String {
    let n = |a: Action| objects.iter().filter(|o| o.action == a).count();
    format!(
        "{} added, {} removed, {} changed",
        n(Action::Added),
        n(Action::Removed),
        n(Action::Changed)
    )
}

/// `no changes`, or the components and object counts (and, with a cluster, the live
/// counts).
pub fn summary(d: &Diff) -> String {
    if d.is_empty() {
        return "no changes".into();
    }
    let all: Vec<ObjectChange> = d
        .components
        .iter()
        .flat_map(|c| c.objects.iter().cloned())
        .collect();
    let mut s = format!(
        "{} component(s) change; objects: {}",
        d.components.len(),
        counts(&all)
    );
    if d.components.iter().any(|c| c.live.is_some()) {
        let live: Vec<ObjectChange> = d
            .components
            .iter()
            .flat_map(|c| c.live.iter().flatten().cloned())
            .collect();
        s.push_str(&format!("; against live: {}", counts(&live)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_are_masked_and_lists_keyed_by_name() {
        let a = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"},
            "data": {"nova.conf": "b2xk", "same": "eA=="}});
        let b = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"},
            "data": {"nova.conf": "bmV3", "same": "eA==", "added": "eQ=="}});
        let f = object_fields(&a, &b);
        let text = serde_json::to_string(&f).unwrap();
        assert!(
            !text.contains("b2xk") && !text.contains("bmV3") && !text.contains("eQ=="),
            "{text}"
        );
        assert_eq!(f.len(), 2, "{text}");
        assert_eq!(f[0].path, "data.nova.conf");
        assert_eq!(f[0].from, json!("*** (before)"));
        assert_eq!(f[1].path, "data.added");
        assert_eq!(f[1].from, Json::Null);
        let d1 = json!({"kind": "Deployment", "spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}});
        let d2 = json!({"kind": "Deployment", "spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "a", "image": "x:1"}]}});
        let f = object_fields(&d1, &d2);
        assert_eq!(
            f,
            vec![Field {
                path: "spec.containers[b].image".into(),
                from: json!("y:1"),
                to: json!("y:2")
            }]
        );
    }

    #[test]
    fn live_changes_join_the_revision_diff_per_component() {
        use crate::diff::{Change, ObjectDiff};
        let cm = |v: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "n"}, "data": {"v": v}})
        };
        let od = |component: &str, change, live: Option<Json>, after: Option<Json>| ObjectDiff {
            component: component.into(),
            object: "ConfigMap/n/c".into(),
            change,
            diff: String::new(),
            live,
            after,
        };
        let live = live_changes(&[
            od("b", Change::Update, Some(cm("hand")), Some(cm("2"))),
            od("c", Change::Create, None, Some(cm("1"))),
            od("c", Change::Delete, Some(cm("1")), None),
        ]);
        assert_eq!(live["b"][0].action, Action::Changed);
        assert_eq!(
            live["b"][0].fields,
            vec![Field {
                path: "data.v".into(),
                from: json!("hand"),
                to: json!("2")
            }]
        );
        let actions: Vec<Action> = live["c"].iter().map(|o| o.action).collect();
        assert!(actions.contains(&Action::Added) && actions.contains(&Action::Removed));
        let side = |v: &str| Side::from([("a".to_string(), vec![cm(v)])]);
        let d = diff("x", "y", &side("1"), &side("2")).with_live(live);
        let names: Vec<(&str, usize, usize)> = d
            .components
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.objects.len(),
                    c.live.as_ref().map_or(9, Vec::len),
                )
            })
            .collect();
        // `a` changes between revisions but already matches live; `b` and `c` differ only live.
        assert_eq!(names, [("a", 1, 0), ("b", 0, 1), ("c", 0, 2)]);
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(j["components"][1]["live"][0]["fields"][0]["from"], "hand");
        let plain = diff("x", "y", &side("1"), &side("2"));
        assert!(serde_json::to_value(&plain).unwrap()["components"][0]
            .get("live")
            .is_none());
    }
}
