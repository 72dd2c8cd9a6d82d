//! `stackwave render` against the shared goldens (`../shared/corpus/goldens`): every golden
//! must be reproduced byte for byte, through Helm's Go SDK (libhelm_c, installed by
//! `scripts/setup`). Without the shared corpus the test is skipped; without libhelm_c it
//! fails (CI installs it), unless `STACKWAVE_SKIP_HELM=1`.

use stackwave::render::{objects::Objects, render_component};
use stackwave_tests::{genestack_inputs, shared_or_skip, GOLDENS};

fn helm_available() -> bool {
    match stackwave::render::helm::Helm::get() {
        Ok(_) => true,
        Err(e) if std::env::var("STACKWAVE_SKIP_HELM").is_ok_and(|v| v == "1") => {
            eprintln!("skipped: {e}");
            false
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn goldens_render_byte_for_byte() {
    let Some(shared) = shared_or_skip("goldens_render_byte_for_byte") else {
        return;
    };
    if !helm_available() {
        return;
    }
    let inp = genestack_inputs(&shared, None);
    let mut failures = Vec::new();
    for svc in GOLDENS {
        let want =
            std::fs::read_to_string(shared.join(format!("corpus/goldens/{svc}.yaml"))).unwrap();
        let got = render_component(&inp, svc).unwrap_or_else(|e| panic!("{svc}: {e}"));
        let text = got.text().unwrap();
        // The objects are the render's output; the text is a view of them: parsing the view
        // gives the same objects.
        assert_eq!(
            got.objects().unwrap(),
            stackwave::reconcile::objects_of(&text).unwrap(),
            "{svc}: objects differ from the parsed text view"
        );
        if text != want {
            let line = text
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0)
                + 1;
            failures.push(format!("{svc}: differs from the golden at line {line}"));
        }
    }
    println!(
        "goldens: {} passed, {} failed",
        GOLDENS.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn an_empty_overrides_tree_changes_nothing() {
    let Some(shared) = shared_or_skip("an_empty_overrides_tree_changes_nothing") else {
        return;
    };
    if !helm_available() {
        return;
    }
    let empty = std::env::temp_dir().join(format!("sw-empty-overrides-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let a = render_component(&genestack_inputs(&shared, None), "memcached").unwrap();
    let b = render_component(&genestack_inputs(&shared, Some(&empty)), "memcached").unwrap();
    assert_eq!(a.text().unwrap(), b.text().unwrap());
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn bad_inputs_name_the_file_and_cause() {
    let Some(shared) = shared_or_skip("bad_inputs_name_the_file_and_cause") else {
        return;
    };
    if !helm_available() {
        return;
    }
    // A malformed operator values file.
    let o = std::env::temp_dir().join(format!("sw-bad-overrides-{}", std::process::id()));
    std::fs::create_dir_all(o.join("helm-configs/memcached")).unwrap();
    std::fs::write(o.join("helm-configs/memcached/zz.yaml"), "pod: [unclosed\n").unwrap();
    let err = render_component(&genestack_inputs(&shared, Some(&o)), "memcached")
        .unwrap_err()
        .to_string();
    assert!(err.contains("zz.yaml"), "{err}");
    // A missing Secret names the Secret, never a value.
    let mut inp = genestack_inputs(&shared, None);
    inp.objects = Objects::default();
    let err = render_component(&inp, "keystone").unwrap_err().to_string();
    assert!(
        err.contains("Secret openstack/keystone-admin not found"),
        "{err}"
    );
    // An unknown chart version.
    let g = std::env::temp_dir().join(format!("sw-bad-genestack-{}", std::process::id()));
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(g.join("helm-chart-versions.yaml"), "charts: {}\n").unwrap();
    let mut inp = genestack_inputs(&shared, None);
    inp.sources.genestack = g.clone();
    let err = render_component(&inp, "memcached").unwrap_err().to_string();
    assert!(
        err.contains("no version for chart key 'memcached'"),
        "{err}"
    );
    for d in [o, g] {
        let _ = std::fs::remove_dir_all(d);
    }
}
