//! The whole cloud for `stackwave demo`, offline: the demo repository enables
//! `components: auto` (Genestack's infrastructure waves, then OpenStack); what cannot be had
//! offline is said and stood in for, as data:
//!
//! - a component whose catalog entry Stackwave ships a stand-in for
//!   (`agent/data/demo-standins/components/<name>.yaml`, e.g. the rabbitmq operators, whose
//!   kustomize bases are remote release URLs) gets that entry copied into the demo
//!   repository's own `components/` ([`crate::catalog`]), with its files under
//!   `kustomize/`;
//! - a Helm component whose chart is not in the local charts directory is left out, named.
//!
//! The resulting list replaces `components: auto` in the demo repository's `stackwave.yaml`.

use crate::component::ComponentKind;
use std::path::Path;

/// The stand-in tree (`components/`, `kustomize/`), relative to the agent crate.
const STANDINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo-standins");

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let (p, d) = (e.path(), dst.join(e.file_name()));
        if p.is_dir() {
            copy_tree(&p, &d)?;
        } else {
            std::fs::copy(&p, &d)?;
        }
    }
    Ok(())
}

/// The remote resources (`https://`) a base kustomization lists, for the message.
fn remote_resources(genestack: &Path, path: &str) -> Vec<String> {
    let k = genestack
        .join("base-kustomize")
        .join(path)
        .join("kustomization.yaml");
    std::fs::read_to_string(k)
        .map(|t| {
            t.lines()
                .filter_map(|l| l.trim().strip_prefix("- "))
                .filter(|r| r.starts_with("https://") || r.starts_with("http://"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Resolves the demo repository's components offline (see the module docs); returns the
/// lines to print. `charts`: the local charts directory (`None`: charts come from their
/// catalog sources, so every Helm component stays).
///
/// # Errors
/// Unreadable configuration or catalog, I/O.
pub fn prepare(
    repo: &Path,
    genestack: &Path,
    charts: Option<&Path>,
) -> Result<Vec<String>, crate::demo::DemoError> {
    let cfg = crate::reconcile::read_config(repo).map_err(|e| e.to_string())?;
    let builtin = crate::component::Catalog::builtin().map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    let standins = Path::new(STANDINS);
    let mut used = false;
    for c in &cfg.components {
        let entry = standins.join("components").join(format!("{c}.yaml"));
        if entry.is_file() {
            let from = builtin
                .get(c)
                .and_then(|b| b.kustomize.as_ref())
                .map(|k| remote_resources(genestack, &k.path))
                .unwrap_or_default();
            notes.push(format!(
                "{c}: {} cannot be had offline; standing in with its CRDs (the demo repository carries components/{c}.yaml)",
                if from.is_empty() { "its input".to_string() } else { from.join(", ") }
            ));
            used = true;
        }
    }
    if used {
        copy_tree(standins, repo).map_err(|e| format!("{}: {e}", standins.display()))?;
    }
    let catalog = crate::catalog::for_checkout(&builtin, repo).map_err(|e| e.to_string())?;
    let mut keep = Vec::new();
    for c in &cfg.components {
        let Some(e) = catalog.get(c) else { continue };
        if let (ComponentKind::Helm, Some(dir), None) = (e.kind, charts, &e.chart.genestack_path) {
            let d = e.chart.dir.as_deref().unwrap_or(&e.chart.name);
            if !dir.join(d).join("Chart.yaml").is_file() {
                notes.push(format!(
                    "{c}: chart {} is not in {} (offline): left out",
                    e.chart.name,
                    dir.display()
                ));
                continue;
            }
        }
        keep.push(c.clone());
    }
    // Components that depend on a left-out one go too, named.
    loop {
        let before = keep.len();
        let snapshot = keep.clone();
        keep.retain(|c| {
            let missing = catalog
                .get(c)
                .and_then(|e| e.depends_on.iter().find(|d| !snapshot.contains(d)).cloned());
            if let Some(d) = &missing {
                notes.push(format!(
                    "{c}: left out: it depends on {d}, which is left out"
                ));
            }
            missing.is_none()
        });
        if keep.len() == before {
            break;
        }
    }
    let path = repo.join("stackwave.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let list: String = keep.iter().map(|c| format!("  - {c}\n")).collect();
    let text = text.replace("\ncomponents: auto\n", &format!("\ncomponents:\n{list}"));
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    notes.push(format!(
        "the whole cloud: {} components (components: auto, as setup-infrastructure.sh then setup-openstack.sh)",
        keep.len()
    ));
    Ok(notes)
}

/// The cluster's own objects the demo puts in first (`agent/data/demo-cluster.yaml`: labelled
/// Nodes, kube-ovn's TLS Secret).
pub const CLUSTER: &str = include_str!("../data/demo-cluster.yaml");

/// Applies `objects` then [`CLUSTER`] as field manager `genestack-bootstrap` (what the
/// scripts and the cluster made, so the agent's own applies never take those fields over;
/// Nodes get their `status` through `/status`, as a kubelet writes it), with the Namespaces
/// those objects are in. The release namespaces of `--create-namespace` components are the
/// agent's to create ([`crate::reconcile::prepare::add_created_namespaces`]), not the
/// bootstrap's. Returns how many objects.
///
/// # Errors
/// API errors, naming the object.
pub async fn bootstrap(
    cluster: &crate::cluster::Cluster,
    objects: Vec<serde_json::Value>,
) -> Result<usize, crate::demo::DemoError> {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    let mut objs = objects;
    objs.extend(crate::reconcile::objects_of(CLUSTER).map_err(|e| e.to_string())?);
    let mut namespaces = std::collections::BTreeSet::new();
    for o in &objs {
        if let Some(ns) = o.pointer("/metadata/namespace").and_then(|v| v.as_str()) {
            namespaces.insert(ns.to_string());
        }
    }
    let mut all: Vec<serde_json::Value> = namespaces
        .iter()
        .map(|n| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
        .collect();
    all.extend(objs);
    let pp = PatchParams::apply("genestack-bootstrap").force();
    for o in &all {
        let mut body = o.clone();
        let status = body.as_object_mut().and_then(|m| m.remove("status"));
        let id = format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap_or("")
        );
        let (ar, caps) = cluster
            .resolve(&body)
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
        let api: Api<DynamicObject> = match (
            caps.scope,
            o.pointer("/metadata/namespace").and_then(|v| v.as_str()),
        ) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(cluster.client().clone(), ns, &ar)
            }
            _ => Api::all_with(cluster.client().clone(), &ar),
        };
        api.patch(&name, &pp, &Patch::Apply(&body))
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        if let (Some(status), "Node") = (status, o["kind"].as_str().unwrap_or("")) {
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
            .map_err(|e| format!("{id} status: {e}"))?;
        }
    }
    Ok(all.len())
}

/// Objects applied per wave during one sync, from its [`crate::reconcile::Progress`] events.
#[derive(Debug, Default)]
pub struct WaveCounts {
    /// (wave, components, objects applied), in wave order.
    waves: std::sync::Mutex<Vec<(i32, Vec<String>, usize)>>,
}

impl WaveCounts {
    /// Takes one progress event.
    pub fn observe(&self, p: &crate::reconcile::Progress) {
        let Ok(mut w) = self.waves.lock() else { return };
        match p {
            crate::reconcile::Progress::WaveStart { wave, components } => {
                w.push((*wave, components.clone(), 0));
            }
            crate::reconcile::Progress::Applied { .. } => {
                if let Some(last) = w.last_mut() {
                    last.2 += 1;
                }
            }
            _ => {}
        }
    }

    /// One line per wave: `wave N: M objects (components)`; empty when no wave ran.
    pub fn text(&self) -> String {
        let Ok(w) = self.waves.lock() else {
            return String::new();
        };
        if w.is_empty() {
            return String::new();
        }
        let mut out = String::from("objects applied per wave:\n");
        for (wave, comps, n) in w.iter() {
            out.push_str(&format!(
                "  wave {wave:>2}: {n:>4} objects  ({})\n",
                comps.join(", ")
            ));
        }
        out.push_str(&format!(
            "  total: {} objects in {} waves\n",
            w.iter().map(|x| x.2).sum::<usize>(),
            w.len()
        ));
        out
    }
}
