//! The render cache (a warm re-render of unchanged inputs makes no Helm call; any input change
//! misses) and non-determinism detection (templates whose output changes between two renders
//! of the same inputs are named).

use stackwave::render::cache::RenderCache;
use stackwave::render::{helm, nondeterministic_templates};
use stackwave_tests::{genestack_inputs as inputs, shared_or_skip};

/// `helm::calls()` counts Helm calls process-wide: the tests in this binary take turns so
/// one test's renders never show up in another's count.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ready(test: &str) -> Option<std::path::PathBuf> {
    let shared = shared_or_skip(test)?;
    if helm::Helm::get().is_err() && std::env::var("STACKWAVE_SKIP_HELM").is_ok_and(|v| v == "1") {
        return None;
    }
    Some(shared)
}

#[test]
fn warm_renders_cost_no_helm_call_and_changes_miss() {
    let _turn = serial();
    let Some(shared) = ready("warm_renders_cost_no_helm_call_and_changes_miss") else {
        return;
    };
    let o = std::env::temp_dir().join(format!("sw-cache-{}", std::process::id()));
    std::fs::create_dir_all(o.join("helm-configs/keystone")).unwrap();
    std::fs::write(
        o.join("helm-configs/keystone/a.yaml"),
        "pod:\n  replicas:\n    api: 2\n",
    )
    .unwrap();
    let cache = RenderCache::new();
    let inp = inputs(&shared, Some(&o));
    let (cold, hit) = cache.render(&inp, "keystone").unwrap();
    assert!(!hit);
    let before = helm::calls();
    let (warm, hit) = cache.render(&inp, "keystone").unwrap();
    assert!(hit, "unchanged inputs must hit");
    assert_eq!(helm::calls(), before, "a warm render must not call Helm");
    assert_eq!(cold.text().unwrap(), warm.text().unwrap());
    // A values change misses and shows up in the output.
    std::fs::write(
        o.join("helm-configs/keystone/a.yaml"),
        "pod:\n  replicas:\n    api: 4\n",
    )
    .unwrap();
    let (changed, hit) = cache.render(&inp, "keystone").unwrap();
    assert!(
        !hit && changed.text().unwrap() != cold.text().unwrap()
            && changed.text().unwrap().contains("replicas: 4")
    );
    // A Secret change misses too.
    let mut inp2 = inputs(&shared, Some(&o));
    let s = kustomize_rs::yaml::parse_one(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: keystone-admin, namespace: openstack}\ndata: {password: bmV3LXBhc3N3b3Jk}\n",
    )
    .unwrap();
    inp2.objects.insert(s);
    let (_, hit) = cache.render(&inp2, "keystone").unwrap();
    assert!(!hit);
    assert_eq!(cache.stats().hits, 1);
    // Three different inputs rendered, one entry kept: the newest (Secret material of the
    // older renders is not held).
    assert_eq!(cache.len(), 1, "one entry per component");
    drop(warm);
    assert_eq!(
        std::sync::Arc::strong_count(&cold),
        1,
        "the first render is not kept"
    );
    let (_, hit) = cache.render(&inp2, "keystone").unwrap();
    assert!(hit, "the newest inputs are the ones kept");
    cache.retain(&|c| c != "keystone");
    assert!(cache.is_empty());
    let _ = std::fs::remove_dir_all(&o);
}

#[test]
fn nondeterministic_templates_are_reported() {
    let _turn = serial();
    let Some(shared) = ready("nondeterministic_templates_are_reported") else {
        return;
    };
    let mut inp = inputs(&shared, None);
    assert!(
        nondeterministic_templates(&inp, "glance")
            .unwrap()
            .is_empty(),
        "bound secrets make glance deterministic"
    );
    // Without the memcache_secret_key bindings, openstack-helm falls back to randAlphaNum 64.
    let k = inp.catalog.components.get_mut("glance").unwrap();
    k.bindings
        .retain(|b| b.secret.as_deref() != Some("os-memcached"));
    let bad = nondeterministic_templates(&inp, "glance").unwrap();
    // The config itself, and the Deployment whose pod annotation hashes it.
    assert_eq!(
        bad,
        vec![
            "glance/templates/configmap-etc.yaml".to_string(),
            "glance/templates/deployment-api.yaml".to_string()
        ]
    );
    println!("nondeterministic without the binding: {bad:?}");
}

#[test]
fn kustomize_helm_charts_inflate_with_the_builtin_renderer() {
    let _turn = serial();
    let Some(shared) = ready("kustomize_helm_charts_inflate_with_the_builtin_renderer") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("sw-helmcharts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("charts")).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(shared.join("corpus/charts/memcached"))
        .arg(dir.join("charts"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        dir.join("values.yaml"),
        "pod:\n  replicas:\n    server: 2\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        "helmCharts:\n- name: memcached\n  releaseName: mc\n  namespace: caching\n  valuesFile: values.yaml\n  valuesInline:\n    pod:\n      replicas:\n        server: 3\nnamePrefix: x-\n",
    )
    .unwrap();
    let store = stackwave::render::charts::ChartStore::Dir(shared.join("corpus/charts"));
    let opts = kustomize_rs::Options {
        helm: Some(stackwave::render::inflate::inflator(store)),
        ..Default::default()
    };
    let out = kustomize_rs::build_dir(&dir, &opts).unwrap();
    assert!(
        out.contains("name: x-mc-memcached"),
        "prefix applied to inflated objects"
    );
    assert!(
        out.contains("replicas: 3"),
        "valuesInline overrides valuesFile"
    );
    assert!(out.contains("namespace: caching"));
    // Without a renderer, helmCharts is a clear error.
    let err = kustomize_rs::build_dir(&dir, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("helmCharts"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cache key is what the render read: a new input the component's kustomization starts
/// to reference (a file under its overlay) misses, and so does a later change of that file;
/// files the render never reads — another component's overlay, a file in this overlay that
/// nothing references — do not.
#[test]
fn the_key_is_what_the_render_read() {
    use stackwave::render::reads::Input;
    let _turn = serial();
    let Some(shared) = ready("the_key_is_what_the_render_read") else {
        return;
    };
    let o = std::env::temp_dir().join(format!("sw-cache-reads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&o);
    let overlay = o.join("kustomize/keystone/overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::create_dir_all(o.join("kustomize/glance/overlay")).unwrap();
    let cache = RenderCache::new();
    let inp = inputs(&shared, Some(&o));
    let (cold, hit) = cache.render(&inp, "keystone").unwrap();
    assert!(!hit);
    let key = cache.key("keystone").unwrap();
    assert!(cache.render(&inp, "keystone").unwrap().1, "unchanged: hit");

    // Unrelated files: never read by keystone's render.
    std::fs::write(
        o.join("kustomize/glance/overlay/kustomization.yaml"),
        "resources:\n  - ../base\n",
    )
    .unwrap();
    std::fs::write(overlay.join("notes.md"), "not referenced\n").unwrap();
    let (_, hit) = cache.render(&inp, "keystone").unwrap();
    assert!(hit, "files the render does not read must not miss");
    assert_eq!(cache.key("keystone").unwrap(), key);

    // A new kind of input: the overlay gets a kustomization that references a new file.
    let extra = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sw-extra\n  namespace: openstack\ndata:\n  a: \"1\"\n";
    std::fs::write(overlay.join("extra.yaml"), extra).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources:\n  - ../base\n  - extra.yaml\n",
    )
    .unwrap();
    let (with_extra, hit) = cache.render(&inp, "keystone").unwrap();
    assert!(!hit, "a new referenced overlay file must miss");
    let text = with_extra.text().unwrap();
    assert!(text.contains("name: sw-extra") && !cold.text().unwrap().contains("sw-extra"));
    assert_ne!(cache.key("keystone").unwrap(), key);
    let reads = cache.reads("keystone").unwrap();
    assert!(reads.contains(&Input::File(overlay.join("extra.yaml"))));
    assert!(!reads.contains(&Input::File(overlay.join("notes.md"))));
    assert!(
        cache.render(&inp, "keystone").unwrap().1,
        "unchanged again: hit"
    );

    // The new file is now an input: changing it misses and shows.
    std::fs::write(overlay.join("extra.yaml"), extra.replace("\"1\"", "\"2\"")).unwrap();
    let (changed, hit) = cache.render(&inp, "keystone").unwrap();
    assert!(!hit);
    assert!(changed.text().unwrap().contains("a: \"2\""));
    let _ = std::fs::remove_dir_all(&o);
}
