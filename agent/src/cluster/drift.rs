//! Drift: for each desired object, which fields Stackwave owns now differ live.
//!
//! Computed from a server-side dry-run apply (what the object would become) against the live
//! object, restricted to the fields in Stackwave's managed-fields entry — not by diffing whole
//! objects, so fields other controllers own (HPA replicas, defaults) are not drift. Ignore rules
//! (`policies/drift-ignore.yaml`) drop JSON pointers by GVK/name or everything a field manager
//! owns. Secret values are masked in both the structured and the readable output.

use super::hpa::Targets;
use super::instance::{Instance, INSTANCE_LABEL};
use super::{object_id, ApplyOptions, Cluster, ClusterError, FIELD_MANAGER};
use kube_fieldpath as fieldpath;
use serde_json::{json, Value as Json};

/// One drifted field.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldDrift {
    /// `Kind/namespace/name`.
    pub object: String,
    /// JSON pointer of the field.
    pub path: String,
    /// What Stackwave wants (masked for Secrets).
    pub desired: Json,
    /// What is live (masked for Secrets; `null` when missing).
    pub live: Json,
}

/// An ignore rule.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct IgnoreRule {
    /// API group ("" = any).
    #[serde(default)]
    pub group: String,
    /// Kind ("" = any).
    #[serde(default)]
    pub kind: String,
    /// Name ("" = any).
    #[serde(default)]
    pub name: String,
    /// JSON pointers to ignore.
    #[serde(default)]
    pub pointers: Vec<String>,
    /// A field manager whose fields are ignored.
    #[serde(default)]
    pub manager: String,
    /// A condition the rule holds under: `hpa` — only when an autoscaling/v2
    /// HorizontalPodAutoscaler targets the object ([`super::hpa`]; Stackwave then also stops
    /// applying the pointers). Empty: always. Any other value never holds.
    #[serde(default)]
    pub when: String,
}

/// The shipped ignore rules (`policies/drift-ignore.yaml`).
///
/// # Errors
/// A malformed file, naming it and the line ([`super::policy::load`]).
pub fn default_ignore() -> Result<Vec<IgnoreRule>, super::policy::PolicyError> {
    super::policy::ignore(super::policy::PolicyTexts::SHIPPED.drift_ignore)
}

const MASK: &str = "<masked>";

fn leaves(v: &Json, path: String, out: &mut Vec<(String, Json)>) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                leaves(
                    c,
                    format!("{path}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        other => out.push((path, other.clone())),
    }
}

/// Leaf fields Stackwave's apply owns (field paths through maps and keyed list items).
fn owned_paths(live: &Json) -> Vec<Vec<fieldpath::Pe>> {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
    else {
        return Vec::new();
    };
    let mut out: Vec<Vec<fieldpath::Pe>> = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e["manager"] == FIELD_MANAGER && e["operation"] == "Apply")
    {
        let set = fieldpath::from_fields_v1(&e["fieldsV1"]);
        // Keep leaves: paths no other owned path extends.
        for p in &set {
            let is_prefix = set
                .iter()
                .any(|q| q.len() > p.len() && q[..p.len()] == p[..]);
            if !is_prefix {
                out.push(p.clone());
            }
        }
    }
    out
}

/// A JSON pointer for a field path (keyed items as `[k=v]` segments).
fn pointer_of(path: &[fieldpath::Pe]) -> String {
    let mut s = String::new();
    for pe in path {
        match pe {
            fieldpath::Pe::Field(f) => {
                s.push('/');
                s.push_str(&f.replace('~', "~0").replace('/', "~1"));
            }
            other => {
                let text = fieldpath::path_string(std::slice::from_ref(other));
                s.push('/');
                s.push_str(&text);
            }
        }
    }
    s
}

fn ignored(
    o: &Json,
    path: &[fieldpath::Pe],
    pointer: &str,
    rules: &[IgnoreRule],
    live: &Json,
    targets: &Targets,
) -> bool {
    rules.iter().any(|r| {
        let holds = match r.when.as_str() {
            "" => true,
            super::hpa::WHEN_HPA => targets.targets(o),
            _ => false,
        };
        if !holds || !super::hpa::selects(r, o) {
            return false;
        }
        if r.pointers
            .iter()
            .any(|p| pointer == p || pointer.starts_with(&format!("{p}/")))
        {
            return true;
        }
        if !r.manager.is_empty() {
            return live
                .pointer("/metadata/managedFields")
                .and_then(Json::as_array)
                .is_some_and(|es| {
                    es.iter()
                        .filter(|e| e["manager"] == r.manager.as_str())
                        .any(|e| {
                            let set = fieldpath::from_fields_v1(&e["fieldsV1"]);
                            set.iter()
                                .any(|q| q.len() <= path.len() && q[..] == path[..q.len()])
                        })
                });
        }
        false
    })
}

fn mask(o: &Json, pointer: &str, v: Json) -> Json {
    if o["kind"] == "Secret"
        && (pointer.starts_with("/data") || pointer.starts_with("/stringData"))
        && !v.is_null()
    {
        json!(MASK)
    } else {
        v
    }
}

/// Drift of one desired object (empty when in sync; an absent object drifts at `/`); the
/// HPAs of its namespace are listed for `when: hpa` rules.
///
/// # Errors
/// API errors (other than the object being absent).
pub async fn drift(
    cluster: &Cluster,
    desired: &Json,
    rules: &[IgnoreRule],
) -> Result<Vec<FieldDrift>, ClusterError> {
    let targets = Targets::load(cluster, [super::namespace_of(desired)]).await?;
    drift_one(cluster, desired, rules, &targets).await
}

async fn drift_one(
    cluster: &Cluster,
    desired: &Json,
    rules: &[IgnoreRule],
    targets: &Targets,
) -> Result<Vec<FieldDrift>, ClusterError> {
    let id = object_id(desired);
    let Some(live) = cluster.get(desired).await? else {
        return Ok(vec![FieldDrift {
            object: id,
            path: "/".into(),
            desired: json!("present"),
            live: Json::Null,
        }]);
    };
    drift_with_live(cluster, desired, &live, rules, targets).await
}

/// Drift of one desired object against its `live` state, exactly: a server-side dry-run
/// apply shows what the object would become, and the fields Stackwave would own there are
/// compared with `live` (minus ignore rules; Secret values masked).
///
/// # Errors
/// API errors (the dry run rejected, naming the object).
pub async fn drift_with_live(
    cluster: &Cluster,
    desired: &Json,
    live: &Json,
    rules: &[IgnoreRule],
    targets: &Targets,
) -> Result<Vec<FieldDrift>, ClusterError> {
    let id = object_id(desired);
    // One PATCH (dryRun=All); the live object is already in hand.
    let would = cluster.dry_run_apply(desired).await?;
    let mut out = Vec::new();
    for path in owned_paths(&would) {
        let p = pointer_of(&path);
        if p.starts_with("/metadata/managedFields")
            || ignored(desired, &path, &p, rules, live, targets)
        {
            continue;
        }
        let (w, l) = (
            fieldpath::value_at(&would, &path)
                .cloned()
                .unwrap_or(Json::Null),
            fieldpath::value_at(live, &path)
                .cloned()
                .unwrap_or(Json::Null),
        );
        if w != l {
            out.push(FieldDrift {
                object: id.clone(),
                path: p.clone(),
                desired: mask(desired, &p, w),
                live: mask(desired, &p, l),
            });
        }
    }
    Ok(out)
}

/// Whether every field of `desired` is present with the same value in `live`: maps
/// field by field, lists of objects item by item (each desired item contained in some live
/// item, so keyed lists match whatever their keys), other lists and scalars exactly. A
/// desired `null` (a field to remove) wants the field absent; a desired empty list or map
/// is satisfied by an absent field too, since the API server drops them (`omitempty` in the
/// `k8s.io/api` types: `volumeMounts: []` is not stored).
///
/// When this holds, a dry-run apply of `desired` changes none of the fields Stackwave owns
/// (they are a subset of `desired`'s), so there is no drift and no request is needed. When it
/// does not hold, the difference may still be normalization (`0.5` vs `500m`) or a field an
/// ignore rule drops: [`drift_with_live`] decides.
pub fn contains(live: &Json, desired: &Json) -> bool {
    match (live, desired) {
        (Json::Object(l), Json::Object(d)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => contains(lv, dv),
            None => vacuous(dv),
        }),
        (Json::Array(l), Json::Array(d)) if d.iter().all(Json::is_object) && !d.is_empty() => {
            d.iter().all(|di| l.iter().any(|li| contains(li, di)))
        }
        (l, d) => l == d,
    }
}

/// Whether a desired value is satisfied by an absent field: `null`, an empty list, or a map
/// of such values only.
fn vacuous(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Array(a) => a.is_empty(),
        Json::Object(m) => m.values().all(vacuous),
        _ => false,
    }
}

/// Drift of many desired objects at the cost of one list request per kind and namespace:
/// live objects are listed by Stackwave's `managed-by` label; objects whose desired fields
/// are all live ([`contains`]) are in sync without further requests; the rest go through
/// the exact dry-run comparison ([`drift_with_live`]); objects not listed are fetched one by
/// one (their label may have been removed). The HPAs of the objects' namespaces are listed
/// once for `when: hpa` rules. Returns, per desired object index, its drifts.
///
/// # Errors
/// API errors (naming the kind or object).
pub async fn drift_all(
    cluster: &Cluster,
    desired: &[Json],
    rules: &[IgnoreRule],
) -> Result<Vec<(usize, Vec<FieldDrift>)>, ClusterError> {
    let targets = Targets::load(cluster, desired.iter().map(super::namespace_of)).await?;
    drift_all_with(cluster, desired, rules, &targets).await
}

/// [`drift_all`] with the HPA targets already listed (one drift pass over many components
/// lists them once).
///
/// # Errors
/// API errors (naming the kind or object).
pub async fn drift_all_with(
    cluster: &Cluster,
    desired: &[Json],
    rules: &[IgnoreRule],
    targets: &Targets,
) -> Result<Vec<(usize, Vec<FieldDrift>)>, ClusterError> {
    let selector = format!("{}={}", super::MANAGED_BY.0, super::MANAGED_BY.1);
    let mut groups: std::collections::BTreeMap<(String, String, String), Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, o) in desired.iter().enumerate() {
        let key = (
            o["apiVersion"].as_str().unwrap_or("").to_string(),
            o["kind"].as_str().unwrap_or("").to_string(),
            o.pointer("/metadata/namespace")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string(),
        );
        groups.entry(key).or_default().push(i);
    }
    let mut out = Vec::new();
    for idx in groups.values() {
        let live: std::collections::HashMap<String, Json> = cluster
            .list(&desired[idx[0]], &selector)
            .await?
            .into_iter()
            .map(|l| (super::name_of(&l).to_string(), l))
            .collect();
        for &i in idx {
            let o = &desired[i];
            let found = match live.get(super::name_of(o)) {
                Some(l) if contains(l, o) => Vec::new(),
                Some(l) => drift_with_live(cluster, o, l, rules, targets).await?,
                None => drift_one(cluster, o, rules, targets).await?,
            };
            if !found.is_empty() {
                out.push((i, found));
            }
        }
    }
    Ok(out)
}

/// A readable diff of drifted fields (Secret values masked), unified-diff style.
pub fn render(drifts: &[FieldDrift]) -> String {
    let mut s = String::new();
    let mut last = "";
    for d in drifts {
        if d.object != last {
            s.push_str(&format!(
                "--- live {}\n+++ desired {}\n",
                d.object, d.object
            ));
            last = &d.object;
        }
        let mut lv = Vec::new();
        leaves(&d.live, d.path.clone(), &mut lv);
        let mut dv = Vec::new();
        leaves(&d.desired, d.path.clone(), &mut dv);
        for (p, v) in lv {
            s.push_str(&format!("-{p}: {v}\n"));
        }
        for (p, v) in dv {
            s.push_str(&format!("+{p}: {v}\n"));
        }
    }
    s
}

/// Records drift on one object as a Kubernetes Event (`v1` Event, type `Warning`, reason
/// `DriftDetected` or `DriftCorrected`, reporting component `stackwave`), in the object's
/// namespace (`default` for cluster-scoped objects). The message names the drifted field
/// paths only, never values, so Secret material cannot leak into Events. The Event name is
/// derived from the instance, the object and the paths, so a drift that persists updates one
/// Event (server-side apply) instead of adding one per loop, and two Stackwave instances never
/// write each other's Events; the Event carries the instance label and
/// `reportingInstance: stackwave-<instance id>`.
///
/// Shape follows `k8s.io/api/core/v1` `Event` (involvedObject, reason, message, source,
/// firstTimestamp/lastTimestamp, count).
///
/// # Errors
/// API errors from the apply.
pub async fn record_event(
    cluster: &Cluster,
    object: &Json,
    fields: &[&FieldDrift],
    corrected: bool,
    instance: &Instance,
) -> Result<(), ClusterError> {
    use sha2::{Digest, Sha256};
    let meta = |k: &str| {
        object
            .pointer(&format!("/metadata/{k}"))
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (name, ns) = (meta("name"), meta("namespace"));
    let paths: Vec<&str> = fields.iter().map(|f| f.path.as_str()).collect();
    let mut h = Sha256::new();
    h.update(instance.id().as_bytes());
    h.update(object_id(object).as_bytes());
    for p in &paths {
        h.update(p.as_bytes());
    }
    let hash: String = h.finalize()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now());
    let reason = if corrected {
        "DriftCorrected"
    } else {
        "DriftDetected"
    };
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.stackwave-drift-{hash}", if name.is_empty() { "object" } else { &name }),
            "namespace": if ns.is_empty() { "default" } else { &ns },
            "labels": {super::MANAGED_BY.0: super::MANAGED_BY.1, INSTANCE_LABEL: instance.id()},
        },
        "involvedObject": {
            "apiVersion": object["apiVersion"],
            "kind": object["kind"],
            "name": name,
            "namespace": ns,
        },
        "reason": reason,
        "message": format!(
            "{} field(s) differ from the applied revision{}: {}",
            paths.len(),
            if corrected { " (re-applied)" } else { "" },
            paths.join(", ")
        ),
        "type": "Warning",
        "source": {"component": "stackwave"},
        "reportingComponent": "stackwave",
        "reportingInstance": format!("stackwave-{}", instance.id()),
        "firstTimestamp": now.to_string(),
        "lastTimestamp": now.to_string(),
        "count": 1,
    });
    cluster
        .apply(
            &event,
            &ApplyOptions {
                force: true,
                ..Default::default()
            },
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment() {
        let live = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"},
            {"name": "b", "image": "y"}
        ]}}}});
        assert!(contains(&live, &json!({"spec": {"replicas": 2}})));
        assert!(!contains(&live, &json!({"spec": {"replicas": 3}})));
        assert!(contains(
            &live,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "y"}]}}}})
        ));
        assert!(!contains(
            &live,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "z"}]}}}})
        ));
        // Fields to remove, and empty lists/maps the API server does not store.
        assert!(contains(&live, &json!({"spec": {"paused": null}})));
        assert!(contains(
            &live,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "volumeMounts": []}]}}}})
        ));
        assert!(contains(&live, &json!({"metadata": {"annotations": {}}})));
        assert!(!contains(&live, &json!({"spec": {"paused": false}})));
        assert!(!contains(
            &live,
            &json!({"spec": {"volumes": [{"name": "v"}]}})
        ));
    }
}
