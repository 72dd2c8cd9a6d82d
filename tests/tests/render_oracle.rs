//! `stackwave render` against the reference pipeline run live (`../shared/tools/genestack-oracle`
//! with Helm's SDK and `kubectl kustomize` from `.tools/venv`): the charts without goldens, and
//! renders through this repository's `repo-template/` overrides (global overrides, operator
//! values, a kustomize overlay layered over Genestack's).

use stackwave::render::render_component;
use stackwave_tests::{genestack_inputs, oracle, oracle_tools as tools, shared_or_skip};
use std::path::Path;

fn ours(shared: &Path, svc: &str, overrides: Option<&Path>) -> String {
    render_component(&genestack_inputs(shared, overrides), svc)
        .unwrap_or_else(|e| panic!("{svc}: {e}"))
        .text()
        .unwrap()
}

#[test]
fn matches_the_reference_pipeline() {
    let Some(shared) = shared_or_skip("matches_the_reference_pipeline") else {
        return;
    };
    if tools().is_none() && std::env::var("STACKWAVE_SKIP_HELM").is_ok_and(|v| v == "1") {
        eprintln!("skipped: no reference tools");
        return;
    }
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../repo-template");
    let cases: Vec<(&str, Option<&Path>)> = vec![
        ("cinder", None),
        ("horizon", None),
        ("octavia", None),
        ("keystone", Some(template.as_path())),
        ("nova", Some(template.as_path())),
    ];
    let mut failures = Vec::new();
    for (svc, o) in &cases {
        let (a, b) = (ours(&shared, svc, *o), oracle(&shared, svc, *o));
        if a != b {
            failures.push(format!("{svc} (overrides: {o:?})"));
        }
    }
    println!(
        "reference pipeline: {} passed, {} failed",
        cases.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "differs from genestack-oracle: {failures:#?}"
    );
    // The template's overrides really took effect.
    let k = ours(&shared, "keystone", Some(&template));
    assert!(k.contains("cloud.example.com/site: lab") && k.contains("replicas: 3"));
}
