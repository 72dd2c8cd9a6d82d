//! `stackwave adopt`: the command line over [`super::plan`] and [`super::apply`].

use crate::cli::{Output, TargetArgs};
use crate::cluster::instance::Instance;
use crate::component::Catalog;
use crate::reconcile::{Agent, Settings};
use crate::record::Store;
use crate::source::Source;
use clap::Args;

/// Arguments of `adopt`.
#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// Git URL (or directory) of the desired-state repository.
    #[arg(long)]
    pub repo: String,
    /// Branch to render.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The instance name `stackwave run` will use (with the repository, it names the
    /// inventories and ownership marks adoption writes).
    #[arg(long, default_value = crate::cluster::instance::DEFAULT_NAME)]
    pub instance: String,
    /// Only these components (default: every component of stackwave.yaml).
    #[arg(long = "component")]
    pub components: Vec<String>,
    /// State directory (revision store, Git mirror) and cluster.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Take over the components whose render matches (default: a dry run that changes
    /// nothing).
    #[arg(long)]
    pub apply: bool,
    /// With --apply, adopt this component even though its render differs (its pods may
    /// roll, as the plan says).
    #[arg(long, requires = "apply")]
    pub force: Vec<String>,
    /// With --apply, delete the Helm release records instead of relabelling them.
    #[arg(long, requires = "apply")]
    pub delete_helm_records: bool,
}

/// The plan as text: per component the release, call-outs first, differences, Helm-only
/// objects, the effect.
pub fn plan_text(p: &super::Plan) -> String {
    let mut s = format!("commit {}\n", &p.commit[..p.commit.len().min(10)]);
    for c in &p.components {
        match &c.release {
            None => s.push_str(&format!("{}: no Helm release found (nothing to adopt)\n", c.component)),
            Some(f) => s.push_str(&format!(
                "{}: Helm release {}/{} revision {} ({}), chart {} {}, values {} key(s) sha256 {} (revisions held: {})\n",
                c.component,
                f.current.namespace,
                f.current.name,
                f.current.revision,
                f.current.status,
                f.current.chart,
                f.current.chart_version,
                f.current.values_keys.len(),
                &f.current.values_digest[..12.min(f.current.values_digest.len())],
                f.revisions.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
            )),
        }
        for x in &c.callouts {
            s.push_str(&format!("  ! {x}\n"));
        }
        for d in c.differences() {
            s.push_str(&format!(
                "  ~ {} {}: live {} -> adopted {}\n",
                d.object, d.path, d.live, d.adopted
            ));
        }
        for o in c.objects.iter().filter(|o| o.rolls.is_empty()) {
            if let Some([a, b]) = o.generation {
                s.push_str(&format!("  ^ {}: generation {a} -> {b} by the adoption write (pod template unchanged, no restart)\n", o.object));
            }
        }
        for o in &c.helm_only {
            s.push_str(&format!(
                "  = {o}: installed by Helm, not rendered: left as is, unmanaged\n"
            ));
        }
        let effect = match &c.effect {
            super::Effect::NoRestart => "no-restart".to_string(),
            super::Effect::Rolls { workloads } => format!(
                "rolls {}",
                workloads
                    .iter()
                    .map(|(w, f)| format!("{w} ({})", f.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        s.push_str(&format!(
            "  {} objects compared, effect: {effect}, {}\n",
            c.objects.len(),
            if c.matches {
                "adoptable"
            } else {
                "not adoptable as is"
            }
        ));
    }
    s
}

/// Runs `stackwave adopt`; the exit code: 0 planned (or adopted) and every component
/// matches, 1 error, 2 some component differs (not adopted).
pub async fn run(a: AdoptArgs, output: Output) -> i32 {
    match go(a, output).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

async fn go(a: AdoptArgs, output: Output) -> Result<i32, String> {
    let cluster = crate::run::connect(a.target.server.as_deref(), a.target.kubeconfig.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let _lock = if a.apply {
        Some(crate::control::lock(&a.target.state).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let store = Store::open(
        &a.target.state.join("revisions.sqlite"),
        &a.target.state.join("store.key"),
    )
    .map_err(|e| e.to_string())?;
    let catalog = Catalog::builtin().map_err(|e| e.to_string())?;
    let settings = Settings {
        cache_dir: a.target.state.join("cache"),
        ..Default::default()
    };
    let mut agent = Agent::new(cluster, store, catalog, settings).map_err(|e| e.to_string())?;
    agent
        .set_instance(Instance::new(&a.instance, &a.repo).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    agent.restore().map_err(|e| e.to_string())?;
    let source = Source::open(&a.repo, &a.branch, &a.target.state).map_err(|e| e.to_string())?;
    let commit = source.fetch().map_err(|e| e.to_string())?;
    let dir = source
        .export(&commit.id, &a.target.state.join("checkout"))
        .map_err(|e| format!("checkout failed: {e}"))?;
    let quiet = |_p: crate::reconcile::Progress| {};
    let plan = super::plan(&mut agent, &dir, &commit.id, &a.components, &quiet)
        .await
        .map_err(|e| e.to_string())?;
    let all_match = plan
        .components
        .iter()
        .all(|c| c.matches || c.release.is_none());
    if !a.apply {
        crate::cli::emit(output, &plan, || plan_text(&plan));
        return Ok(if all_match { 0 } else { 2 });
    }
    let progress: &dyn Fn(crate::reconcile::Progress) = if output == Output::Json {
        &quiet
    } else {
        &crate::run::print_progress
    };
    let report = super::apply(&mut agent, &plan, &a.force, a.delete_helm_records, progress)
        .await
        .map_err(|e| e.to_string())?;
    crate::run::clear_progress();
    let doc = serde_json::json!({"plan": plan, "report": report});
    crate::cli::emit(output, &doc, || {
        let mut s = plan_text(&plan);
        for x in &report.adopted {
            s.push_str(&format!(
                "adopted {}: {} objects, {} Helm record(s) retired, generation changed: {}\n",
                x.component,
                x.objects,
                x.records.len(),
                if x.generation_changed.is_empty() {
                    "none".to_string()
                } else {
                    x.generation_changed.join(", ")
                }
            ));
        }
        for (c, why) in &report.skipped {
            s.push_str(&format!("not adopted {c}: {why}\n"));
        }
        if let Some(r) = report.revision {
            s.push_str(&format!(
                "recorded revision {r} ({})\n",
                super::ADOPTED_AUTHOR
            ));
        }
        s
    });
    Ok(
        if report.skipped.iter().all(|(_, w)| w == "no Helm release") {
            0
        } else {
            2
        },
    )
}
