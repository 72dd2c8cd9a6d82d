//! Adoption of a Helm-installed cloud (`stackwave adopt`): take over what Genestack's
//! `bin/install-<svc>.sh` scripts installed without restarting a pod.
//!
//! Per component: the Helm release is found from its records ([`release`]); Stackwave's
//! render of the same commit is compared with the live objects by the API server's dry runs
//! ([`compare`]); the predicted effect is `no-restart` or the workloads that would roll.
//! Adopting a matching component applies the render (field manager `stackwave`, forced: only
//! the ownership marks change), then moves Helm's managed-field entries into Stackwave's
//! apply entry ([`migrate`], client-go's `csaupgrade` rule), writes the inventory, retires the
//! release records (relabelled, or deleted), and records a revision authored
//! [`ADOPTED_AUTHOR`]. A component that does not match is never touched.
//!
//! The agent's first sync calls [`guard`]: Helm-installed components without a Stackwave
//! inventory are refused (pointing at `stackwave adopt`) unless `stackwave.yaml` says
//! `adopt: auto`, which adopts the matching ones and leaves the rest out of the revision.

pub mod cli;
pub mod compare;
pub mod migrate;
pub mod release;

use crate::cluster::inventory::{self, ObjRef};
use crate::cluster::{ApplyOptions, Cluster, ClusterError, FIELD_MANAGER};
use crate::reconcile::{Agent, Progress};
use crate::record::RecordError;
use compare::{Compared, HELM_MANAGER};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;

/// The author of revisions `stackwave adopt` records: the way an adopted revision is told
/// from a commit or a rollback until the revision store has a kind of its own (the lead maps
/// it onto `RevisionKind::Adopted`).
pub const ADOPTED_AUTHOR: &str = "stackwave adopt";

/// Why adoption could not be planned or done.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The checkout did not render (the component and cause are in the message).
    #[error("render: {0}")]
    Render(String),
    /// A component asked for is not in the repository's `components:`.
    #[error("component {0} is not in stackwave.yaml's components")]
    UnknownComponent(String),
    /// A release record could not be listed or read.
    #[error("component {component}: Helm release: {source}")]
    Release {
        /// The component.
        component: String,
        /// The cause.
        #[source]
        source: release::FindError,
    },
    /// An API request failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The revision store failed.
    #[error(transparent)]
    Store(#[from] RecordError),
    /// The source could not be fetched or exported.
    #[error("{0}")]
    Source(String),
}

/// What adopting a component would do to its pods.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "effect")]
pub enum Effect {
    /// No pod template changes.
    NoRestart,
    /// These workloads would roll, for these pod-template fields.
    Rolls {
        /// `Kind/namespace/name` → fields.
        workloads: BTreeMap<String, Vec<String>>,
    },
}

/// The adoption plan of one component.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentPlan {
    /// Component name.
    pub component: String,
    /// The Helm release found (`None`: Helm holds no record of it; nothing to adopt).
    pub release: Option<release::Found>,
    /// Mismatches between the release and the repository (chart version, status, user
    /// values — named by path, never by value): the repository does not describe the
    /// running cloud yet.
    pub callouts: Vec<String>,
    /// Every rendered object compared.
    pub objects: Vec<Compared>,
    /// Objects Helm installed that Stackwave does not render (they stay as they are,
    /// unmanaged: Stackwave neither applies nor prunes them).
    pub helm_only: Vec<String>,
    /// The predicted effect.
    pub effect: Effect,
    /// Whether the render equals the live objects field by field (adoptable).
    pub matches: bool,
    /// The rendered objects (marked as applied).
    #[serde(skip)]
    pub desired: Vec<Json>,
}

impl ComponentPlan {
    /// Every difference of every object.
    pub fn differences(&self) -> impl Iterator<Item = &compare::Difference> {
        self.objects.iter().flat_map(|o| o.differences.iter())
    }
}

/// The plan of one `adopt` run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The commit rendered.
    pub commit: String,
    /// Per component.
    pub components: Vec<ComponentPlan>,
}

/// A dynamic API for `o`'s kind and namespace.
///
/// # Errors
/// Unknown kinds.
pub(crate) async fn api_for(
    cluster: &Cluster,
    o: &Json,
) -> Result<kube::Api<kube::api::DynamicObject>, ClusterError> {
    let (ar, caps) = cluster.resolve(o).await?;
    Ok(match caps.scope {
        kube::discovery::Scope::Namespaced => kube::Api::namespaced_with(
            cluster.client().clone(),
            crate::cluster::namespace_of(o),
            &ar,
        ),
        kube::discovery::Scope::Cluster => kube::Api::all_with(cluster.client().clone(), &ar),
    })
}

/// The `helm.sh/chart` label values of rendered objects (`<chart>-<version>`).
fn chart_labels(objs: &[Json]) -> std::collections::BTreeSet<String> {
    objs.iter()
        .filter_map(|o| {
            o.pointer("/metadata/labels/helm.sh~1chart")
                .and_then(Json::as_str)
        })
        .map(str::to_string)
        .collect()
}

/// How many differing value paths a call-out names before it says how many more there are.
const VALUE_PATHS_SHOWN: usize = 8;

/// The call-out for user values that differ between a release and the repository's render
/// (`None`: equal). Helm records the values it was given (`-f` files merged, then `--set`)
/// as the release's `config`, Stackwave gives Helm [`crate::render::Rendered::values`]: a
/// hand `helm upgrade --set` the repository does not carry shows here, even when it changed
/// no object. Paths only (JSON pointers); values may be Secrets and are never shown.
pub fn values_callout(r: &release::Release, repo: &Json) -> Option<String> {
    let mut paths = Vec::new();
    compare::differing(&r.values, repo, "", &mut paths);
    if paths.is_empty() {
        return None;
    }
    let more = paths.len().saturating_sub(VALUE_PATHS_SHOWN);
    paths.truncate(VALUE_PATHS_SHOWN);
    Some(format!(
        "values: release {} revision {} was installed with user values the repository does not give at {}{} (a hand `helm upgrade --set`? values not shown)",
        r.name,
        r.revision,
        paths.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

/// Plans one component from its rendered objects and the user values its render gave Helm
/// (`None`: not a Helm chart, or not known; the values are then not compared).
///
/// # Errors
/// API errors, unreadable release records.
pub async fn plan_component(
    cluster: &Cluster,
    catalog: &crate::component::Catalog,
    component: &str,
    desired: &[Json],
    values: Option<&Json>,
) -> Result<ComponentPlan, AdoptError> {
    let rel = catalog.get(component).map(|c| c.release.clone());
    let found = match &rel {
        Some(r) => release::find(cluster, &r.namespace, &r.name)
            .await
            .map_err(|source| AdoptError::Release {
                component: component.to_string(),
                source,
            })?,
        None => None,
    };
    let mut objects = Vec::new();
    for o in desired {
        let mut live = cluster.get(o).await?;
        // A controller writing status between the read and the dry-run PUT (409): read again.
        let mut answer = compare::compare(cluster, o, live.as_ref()).await;
        for _ in 0..7 {
            if !matches!(
                &answer,
                Err(ClusterError::Conflict { .. } | ClusterError::Api { code: 409, .. })
            ) {
                break;
            }
            live = cluster.get(o).await?;
            answer = compare::compare(cluster, o, live.as_ref()).await;
        }
        let c = match answer {
            Ok(c) => c,
            // A dry run the server refuses is a difference, reported with its cause.
            Err(e) => Compared {
                object: crate::cluster::object_id(o),
                live: live.is_some(),
                differences: vec![compare::Difference {
                    object: crate::cluster::object_id(o),
                    path: "/".into(),
                    live: Json::from("present"),
                    adopted: Json::from(format!("refused: {e}")),
                }],
                rolls: Vec::new(),
                generation: None,
            },
        };
        objects.push(c);
    }
    let mut callouts = Vec::new();
    let mut helm_only = Vec::new();
    if let (Some(f), Some(r)) = (&found, &rel) {
        let labels = chart_labels(desired);
        let installed = format!("{}-{}", f.current.chart, f.current.chart_version);
        if !labels.is_empty() && !labels.contains(&installed) {
            callouts.push(format!(
                "chart: release {} revision {} runs {installed}, the repository renders {}",
                f.current.name,
                f.current.revision,
                labels.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(c) = values.and_then(|v| values_callout(&f.current, v)) {
            callouts.push(c);
        }
        if f.current.status != "deployed" {
            callouts.push(format!(
                "release {} revision {} is {}, not deployed",
                f.current.name, f.current.revision, f.current.status
            ));
        }
        let rendered: Vec<ObjRef> = desired.iter().map(ObjRef::of).collect();
        for mut o in crate::reconcile::objects_of(&f.current.manifest).unwrap_or_default() {
            let (av, kind) = (
                o["apiVersion"].as_str().unwrap_or("").to_string(),
                o["kind"].as_str().unwrap_or("").to_string(),
            );
            if o.pointer("/metadata/namespace").is_none()
                && !kustomize_rs::openapi::is_cluster_scoped(&av, &kind)
            {
                o["metadata"]["namespace"] = json!(r.namespace);
            }
            if !rendered.contains(&ObjRef::of(&o)) {
                helm_only.push(crate::cluster::object_id(&o));
            }
        }
    }
    let mut workloads: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in &objects {
        if !o.rolls.is_empty() {
            workloads.insert(o.object.clone(), o.rolls.clone());
        }
    }
    let matches = found.is_some() && objects.iter().all(|o| o.differences.is_empty());
    Ok(ComponentPlan {
        component: component.to_string(),
        release: found,
        callouts,
        objects,
        helm_only,
        effect: if workloads.is_empty() {
            Effect::NoRestart
        } else {
            Effect::Rolls { workloads }
        },
        matches,
        desired: desired.to_vec(),
    })
}

/// Plans the adoption of `only` (every component of the checkout when empty): renders the
/// checkout as the agent would and compares each component with the cluster.
///
/// # Errors
/// Render errors, unknown components, API errors.
pub async fn plan(
    agent: &mut Agent,
    checkout: &Path,
    commit: &str,
    only: &[String],
    progress: &dyn Fn(Progress),
) -> Result<Plan, AdoptError> {
    let r = agent
        .render_all(checkout, progress)
        .await
        .map_err(|e| AdoptError::Render(e.to_string()))?;
    let (cfg, rendered, values) = (r.config, r.objects, r.values);
    agent.applied.released = r.released;
    if let Some(c) = only.iter().find(|c| !cfg.components.contains(c)) {
        return Err(AdoptError::UnknownComponent(c.clone()));
    }
    let mut components = Vec::new();
    for c in cfg
        .components
        .iter()
        .filter(|c| only.is_empty() || only.contains(c))
    {
        let objs = rendered.get(c).cloned().unwrap_or_default();
        components.push(
            plan_component(
                &agent.cluster,
                &agent.render.catalog,
                c,
                &objs,
                values.get(c),
            )
            .await?,
        );
    }
    Ok(Plan {
        commit: commit.to_string(),
        components,
    })
}

/// What adopting one component did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Adopted {
    /// Component.
    pub component: String,
    /// Objects applied.
    pub objects: usize,
    /// Workloads whose `metadata.generation` the adoption moved: empty for a matching render
    /// (the ownership marks are labels and no annotation changes, so even a Deployment keeps
    /// its generation, [`compare::Compared::generation`]); a forced component lists those its
    /// differences changed.
    pub generation_changed: Vec<String>,
    /// Release record Secrets retired (relabelled or deleted).
    pub records: Vec<String>,
}

/// The outcome of `adopt --apply`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The revision recorded (`None` when nothing was adopted).
    pub revision: Option<i64>,
    /// Components adopted.
    pub adopted: Vec<Adopted>,
    /// Components left untouched, with why.
    pub skipped: Vec<(String, String)>,
}

/// Takes over one planned component: Helm's managed fields migrated, the render applied,
/// the inventory written, the release records retired.
///
/// # Errors
/// API errors (the component may then be half taken over; running `adopt --apply` again
/// continues it).
pub async fn take_over(
    agent: &Agent,
    p: &ComponentPlan,
    delete_records: bool,
    progress: &dyn Fn(Progress),
) -> Result<Adopted, AdoptError> {
    let cluster = &agent.cluster;
    let mut generation_changed = Vec::new();
    for o in &p.desired {
        let before = cluster.get(o).await?;
        let id = crate::cluster::object_id(o);
        let a = cluster
            .apply(
                o,
                &ApplyOptions {
                    force: true,
                    release: agent.applied.released.get(&id).cloned().unwrap_or_default(),
                    ..Default::default()
                },
            )
            .await?;
        // Then Helm's entries move into Stackwave's (csaupgrade: before or after the first
        // apply; after it, the object is already what the dry run showed, and the fields
        // only Helm held stay until Stackwave next changes the object).
        migrate::migrate(cluster, &a.live, &[HELM_MANAGER], FIELD_MANAGER).await?;
        let generation = |v: &Json| v.pointer("/metadata/generation").cloned();
        if let Some(b) = &before {
            if generation(b) != generation(&a.live) && b.pointer("/spec/template").is_some() {
                generation_changed.push(id.clone());
            }
        }
        progress(Progress::Applied {
            id,
            action: "adopted".into(),
        });
    }
    let refs: Vec<ObjRef> = p.desired.iter().map(ObjRef::of).collect();
    inventory::update(cluster, agent.instance(), &p.component, |old| {
        let mut inv = old.to_vec();
        inv.extend(refs.iter().filter(|r| !old.contains(r)).cloned());
        inv
    })
    .await?;
    let records = match &p.release {
        Some(f) => retire(cluster, &f.current, &agent.instance().id(), delete_records).await?,
        None => Vec::new(),
    };
    Ok(Adopted {
        component: p.component.clone(),
        objects: p.desired.len(),
        generation_changed,
        records,
    })
}

/// Retires a release's records so Helm no longer sees them (`owner` no longer `helm`, so
/// `helm upgrade` finds no deployed release and refuses), labelled [`release::ADOPTED_LABEL`]
/// = the instance id; or deletes them. Returns their names.
///
/// # Errors
/// API errors.
pub async fn retire(
    cluster: &Cluster,
    r: &release::Release,
    instance_id: &str,
    delete: bool,
) -> Result<Vec<String>, ClusterError> {
    let mut out = Vec::new();
    for s in release::records(cluster, &r.namespace, &r.name).await? {
        if delete {
            cluster.delete(&s).await?;
        } else {
            let api = api_for(cluster, &s).await?;
            let patch = json!({"metadata": {"labels": {"owner": "stackwave", release::ADOPTED_LABEL: instance_id}}});
            api.patch(
                crate::cluster::name_of(&s),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(|e| cluster.error(&crate::cluster::object_id(&s), e))?;
        }
        out.push(crate::cluster::name_of(&s).to_string());
    }
    Ok(out)
}

/// Records the adopted revision (separate so the lead can map it onto a revision kind):
/// author [`ADOPTED_AUTHOR`], the adopted components' objects plus those already applied,
/// outcome `healthy`; the agent's applied state follows.
///
/// # Errors
/// Store failures.
pub fn record_adopted(
    agent: &mut Agent,
    commit: &str,
    adopted: &[(String, Vec<Json>)],
) -> Result<i64, RecordError> {
    let names: Vec<&str> = adopted.iter().map(|(c, _)| c.as_str()).collect();
    let rev = agent.store.begin(
        crate::record::RevisionKind::Adopted,
        commit,
        ADOPTED_AUTHOR,
        &format!("adopted from Helm: {}", names.join(", ")),
    )?;
    let mut all: BTreeMap<String, Vec<Json>> = agent.applied.objects.clone();
    for (c, objs) in adopted {
        all.insert(c.clone(), objs.clone());
    }
    for (c, objs) in &all {
        let d = crate::reconcile::digest(objs);
        agent.store.record_component(rev, c, &d, objs)?;
        agent.applied.digests.insert(c.clone(), d);
    }
    agent
        .store
        .finish(rev, crate::record::RevisionState::Healthy, "")?;
    agent.applied.objects = all;
    agent.applied.current = Some(rev);
    Ok(rev)
}

/// `adopt --apply`: takes over every planned component that matches (or is in `force`),
/// then records one adopted revision.
///
/// # Errors
/// API and store errors.
pub async fn apply(
    agent: &mut Agent,
    plan: &Plan,
    force: &[String],
    delete_records: bool,
    progress: &dyn Fn(Progress),
) -> Result<Report, AdoptError> {
    let mut adopted = Vec::new();
    let mut skipped = Vec::new();
    let mut done = Vec::new();
    for p in &plan.components {
        if p.release.is_none() {
            skipped.push((p.component.clone(), "no Helm release".to_string()));
            continue;
        }
        if !p.matches && !force.contains(&p.component) {
            skipped.push((
                p.component.clone(),
                format!(
                    "render differs from the live objects in {} field(s); not touched (--force {} to adopt anyway)",
                    p.differences().count(),
                    p.component
                ),
            ));
            continue;
        }
        adopted.push(take_over(agent, p, delete_records, progress).await?);
        done.push((p.component.clone(), p.desired.clone()));
    }
    let revision = if done.is_empty() {
        None
    } else {
        Some(record_adopted(agent, &plan.commit, &done)?)
    };
    Ok(Report {
        revision,
        adopted,
        skipped,
    })
}

/// Whether `stackwave.yaml` of `checkout` says `adopt: auto`.
pub fn auto(checkout: &Path) -> bool {
    std::fs::read_to_string(checkout.join("stackwave.yaml"))
        .ok()
        .and_then(|t| kustomize_rs::yaml::parse_one(&t).ok())
        .map(|v| crate::component::to_json(&v))
        .is_some_and(|v| v["adopt"] == "auto")
}

/// The agent's guard before applying a commit (called from the reconcile loop): every
/// rendered component the agent never applied whose Helm release Helm still sees, and which
/// has no Stackwave inventory, is Helm's. Without `adopt: auto` the revision is refused,
/// naming them and `stackwave adopt`; with it, matching components are taken over (managed
/// fields migrated, records retired; the revision then applies them) and the others leave
/// `rendered` (reported, untouched).
///
/// # Errors
/// The refusal reason.
pub async fn guard(
    agent: &Agent,
    checkout: &Path,
    rendered: &mut BTreeMap<String, Vec<Json>>,
    values: &BTreeMap<String, Json>,
    progress: &dyn Fn(Progress),
) -> Result<(), String> {
    let mut helm_owned = Vec::new();
    for c in rendered
        .keys()
        .filter(|c| !agent.applied.digests.contains_key(*c))
    {
        let Some(r) = agent.render.catalog.get(c).map(|x| x.release.clone()) else {
            continue;
        };
        let found = release::find(&agent.cluster, &r.namespace, &r.name)
            .await
            .map_err(|e| format!("component {c}: Helm release not read: {e}"))?;
        let Some(found) = found else { continue };
        let inv = inventory::read(&agent.cluster, agent.instance(), c)
            .await
            .map_err(|e| format!("component {c}: inventory not read: {e}"))?;
        if inv.is_empty() {
            helm_owned.push((c.clone(), found));
        }
    }
    if helm_owned.is_empty() {
        return Ok(());
    }
    if !auto(checkout) {
        let names: Vec<String> = helm_owned
            .iter()
            .map(|(c, f)| {
                format!(
                    "{c} (Helm release {}/{} revision {})",
                    f.current.namespace, f.current.name, f.current.revision
                )
            })
            .collect();
        return Err(format!(
            "Helm manages {} and Stackwave has no inventory for {}: not overwriting them; run `stackwave adopt --repo <repo>` to take them over without restarts (or set `adopt: auto` in stackwave.yaml)",
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" }
        ));
    }
    for (c, _) in helm_owned {
        let p = plan_component(
            &agent.cluster,
            &agent.render.catalog,
            &c,
            &rendered[&c],
            values.get(&c),
        )
        .await
        .map_err(|e| e.to_string())?;
        if p.matches {
            take_over(agent, &p, false, progress)
                .await
                .map_err(|e| format!("adopt: auto: taking over {c}: {e}"))?;
            progress(Progress::Note(format!(
                "adopt: auto: taking over {c} from Helm (render matches, no restart){}",
                p.callouts
                    .iter()
                    .map(|x| format!("; {x}"))
                    .collect::<String>()
            )));
        } else {
            let first: Vec<String> = p
                .differences()
                .take(3)
                .map(|d| format!("{} {}", d.object, d.path))
                .collect();
            progress(Progress::Note(format!(
                "adopt: auto: {c} not adopted, left to Helm (render differs: {}); fix the repository or `stackwave adopt --force {c}`",
                first.join(", ")
            )));
            rendered.remove(&c);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_set_value_is_called_out_by_path_never_by_value() {
        let doc = json!({"name": "keystone", "namespace": "openstack", "version": 3,
            "info": {"status": "deployed"}, "chart": {"metadata": {"name": "keystone", "version": "1"}},
            "config": {"pod": {"replicas": {"api": 3}}, "endpoints": {"admin": {"password": "hunter2-secret"}}}});
        let secret = release::record_secret("openstack", "keystone", 3, "deployed", &doc);
        let r = release::Release::from_secret(&secret).unwrap();
        let repo = json!({"pod": {"replicas": {"api": 1}}, "endpoints": {"admin": {"password": "other-secret"}}});
        let c = values_callout(&r, &repo).unwrap();
        assert!(
            c.contains("release keystone revision 3")
                && c.contains("/pod/replicas/api")
                && c.contains("/endpoints/admin/password"),
            "{c}"
        );
        assert!(
            !c.contains("hunter2") && !c.contains("other-secret") && !c.contains(": 3"),
            "{c}"
        );
        assert_eq!(values_callout(&r, &r.values.clone()), None);
        // Many paths: the first ones, then how many more.
        let many: serde_json::Map<String, Json> =
            (0..12).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let c = values_callout(&r, &Json::Object(many)).unwrap();
        assert!(c.contains("and 6 more"), "{c}");
    }
}
