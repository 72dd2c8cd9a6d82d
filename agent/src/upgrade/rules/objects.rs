//! `job-replace` (info, needs the renders) and `component-removed` (warning).
//!
//! A Job's pod template is immutable (kube-apiserver `pkg/apis/batch/validation`
//! `ValidateJobUpdate`): a non-hook Job whose template changes is deleted and re-created by the
//! agent (the immutable-field policy), so it runs again. Helm hooks are re-created by Helm's
//! own hook policy and are left out.

use crate::upgrade::check::{Context, Finding, Severity};
use crate::upgrade::diff::Action;

/// Adds the object findings.
pub fn check(ctx: &Context, out: &mut Vec<Finding>) {
    let to_names = ctx.up.to.components();
    for c in ctx
        .up
        .from
        .components()
        .iter()
        .filter(|c| !to_names.contains(c))
    {
        out.push(Finding::new(
            "component-removed",
            Severity::Warning,
            c,
            format!("{c} is no longer in stackwave.yaml: the agent prunes all of its objects"),
        ));
    }
    match &ctx.rendered {
        Err(why) => out.push(Finding::new(
            "job-replace",
            Severity::Info,
            "*",
            format!("skipped: the revisions could not be rendered ({why})"),
        )),
        Ok((_, to, diff)) => {
            for comp in &diff.components {
                for o in comp.objects.iter().filter(|o| {
                    o.kind == "Job"
                        && o.action == Action::Changed
                        && o.fields.iter().any(|f| f.path.starts_with("spec.template"))
                }) {
                    let hook = to.get(&comp.name).into_iter().flatten().any(|j| {
                        j["kind"] == "Job"
                            && j["metadata"]["name"] == o.name.as_str()
                            && j.pointer("/metadata/annotations/helm.sh~1hook").is_some()
                    });
                    if !hook {
                        out.push(Finding::new(
                            "job-replace",
                            Severity::Info,
                            &comp.name,
                            format!(
                                "Job {}/{} changes its pod template: it is deleted and re-created (runs again)",
                                o.namespace, o.name
                            ),
                        ));
                    }
                }
            }
        }
    }
}
