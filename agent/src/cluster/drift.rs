//! Drift: for each desired object, which fields Stackwave owns now differ live.
//!
//! Computed from a server-side dry-run apply (what the object would become) against the live
//! object, restricted to the fields in Stackwave's managed-fields entry — not by diffing whole
//! objects, so fields other controllers own (HPA replicas, defaults) are not drift. Ignore rules
//! (`policies/drift-ignore.yaml`) drop JSON pointers by GVK/name or everything a field manager
//! owns. Secret values are masked in both the structured and the readable output.

use super::{object_id, ApplyOptions, Cluster, ClusterError, FIELD_MANAGER};
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
    /// Only when an HPA exists for the object (`hpa`); informational.
    #[serde(default)]
    pub when: String,
}

#[derive(serde::Deserialize)]
struct IgnoreFile {
    ignore: Vec<IgnoreRule>,
}

/// The shipped ignore rules.
pub fn default_ignore() -> Vec<IgnoreRule> {
    kustomize_rs::yaml::parse_one(include_str!("../../../policies/drift-ignore.yaml"))
        .ok()
        .and_then(|v| serde_json::from_value::<IgnoreFile>(crate::component::to_json(&v)).ok())
        .map(|f| f.ignore)
        .unwrap_or_default()
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

/// Fields (as JSON pointers over maps; lists compared whole) Stackwave's apply owns.
fn owned_pointers(live: &Json) -> Vec<String> {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e["manager"] == FIELD_MANAGER && e["operation"] == "Apply")
    {
        fn go(v: &Json, path: String, out: &mut Vec<String>) {
            let Json::Object(m) = v else { return };
            let fields: Vec<(&String, &Json)> =
                m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
            let has_items = m.keys().any(|k| k.starts_with("k:") || k.starts_with("v:"));
            if (fields.is_empty() && !path.is_empty()) || has_items {
                out.push(path);
                return;
            }
            for (k, c) in fields {
                go(
                    c,
                    format!("{path}/{}", k[2..].replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        go(&e["fieldsV1"], String::new(), &mut out);
    }
    out
}

fn ignored(o: &Json, pointer: &str, rules: &[IgnoreRule], live: &Json) -> bool {
    let kind = o["kind"].as_str().unwrap_or("");
    let group = o["apiVersion"]
        .as_str()
        .and_then(|a| a.rsplit_once('/'))
        .map(|(g, _)| g)
        .unwrap_or("");
    let name = o
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or("");
    rules.iter().any(|r| {
        let sel = (r.group.is_empty() || r.group == group)
            && (r.kind.is_empty() || r.kind == kind)
            && (r.name.is_empty() || r.name == name);
        if !sel {
            return false;
        }
        if r.pointers
            .iter()
            .any(|p| pointer == p || pointer.starts_with(&format!("{p}/")))
        {
            return true;
        }
        if !r.manager.is_empty() {
            let by_manager = live
                .pointer("/metadata/managedFields")
                .and_then(Json::as_array)
                .is_some_and(|es| {
                    es.iter().any(|e| {
                        e["manager"] == r.manager.as_str() && {
                            let mut fv = e["fieldsV1"].clone();
                            pointer.split('/').skip(1).all(|seg| {
                                let next = fv
                                    .get(format!("f:{}", seg.replace("~1", "/").replace("~0", "~")))
                                    .cloned();
                                match next {
                                    Some(n) => {
                                        fv = n;
                                        true
                                    }
                                    None => false,
                                }
                            })
                        }
                    })
                });
            return by_manager;
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

/// Drift of one desired object (empty when in sync; an absent object drifts at `/`).
///
/// # Errors
/// API errors (other than the object being absent).
pub async fn drift(
    cluster: &Cluster,
    desired: &Json,
    rules: &[IgnoreRule],
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
    let would = cluster
        .apply(
            desired,
            &ApplyOptions {
                dry_run: true,
                force: true,
                ..Default::default()
            },
        )
        .await?
        .live;
    let mut out = Vec::new();
    for p in owned_pointers(&would) {
        if p.starts_with("/metadata/managedFields") || ignored(desired, &p, rules, &live) {
            continue;
        }
        let (w, l) = (
            would.pointer(&p).cloned().unwrap_or(Json::Null),
            live.pointer(&p).cloned().unwrap_or(Json::Null),
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
