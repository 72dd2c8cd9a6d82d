//! A newcomer without the local corpus: the catalog's Genestack release is fetched from its
//! Git repository (a local `file://` repository built from the corpus tree stands in for
//! GitHub) into `<cache>/genestack/<ref>`, renders exactly like the corpus, keeps working
//! from the cache when the remote is gone, and an unreachable remote is named. The demo runs
//! on such a base with the Secrets it generates (no corpus fixtures).

use stackwave::catalog::GenestackRelease;
use std::path::{Path, PathBuf};

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "sw-newcomer-{name}-{}-{}",
        std::process::id(),
        stackwave_tests::random_suffix()
    ))
}

#[test]
fn the_release_is_fetched_cached_and_renders_like_the_corpus() {
    let Some(shared) = stackwave_tests::shared_dir() else {
        eprintln!("SKIPPED: ../shared is not present");
        return;
    };
    let remote = stackwave_tests::genestack_remote(&shared, "2026.1-test", true);
    let cache = temp("cache");
    let release = GenestackRelease {
        url: format!("file://{}", remote.display()),
        r#ref: "2026.1-test".into(),
    };
    let dir = stackwave::fetch::genestack_base(&release, &cache).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        dir.starts_with(cache.join("genestack/2026.1-test")),
        "{}",
        dir.display()
    );
    for f in [
        "helm-chart-versions.yaml",
        "base-helm-configs/keystone/keystone-helm-overrides.yaml",
    ] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(shared.join("corpus/genestack").join(f)).unwrap(),
            "{f}"
        );
    }
    // The remote gone: the pinned tag resolves from the mirror.
    std::fs::remove_dir_all(&remote).unwrap();
    let again =
        stackwave::fetch::genestack_base(&release, &cache).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, dir);

    // Unreachable, nothing cached: the error names the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = GenestackRelease {
        url: format!("http://127.0.0.1:{port}/rackerlabs/genestack"),
        r#ref: "2026.1-test".into(),
    };
    let e = stackwave::fetch::genestack_base(&gone, &temp("cache-empty")).unwrap_err();
    assert!(e.to_string().contains(&gone.url), "{e}");

    // The fetched base renders the goldens byte for byte.
    if stackwave_tests::helm_or_skip() {
        let mut inputs = stackwave_tests::genestack_inputs(&shared, None);
        inputs.sources.genestack = dir.clone();
        for svc in stackwave_tests::GOLDENS {
            let want =
                std::fs::read_to_string(shared.join(format!("corpus/goldens/{svc}.yaml"))).unwrap();
            let got = stackwave::render::render_component(&inputs, svc).unwrap();
            assert!(
                got.text().unwrap() == want,
                "{svc}: the fetched base renders differently"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn an_explicit_base_is_used_as_given() {
    let b = stackwave::fetch::choose_base(
        Some(Path::new("/srv/genestack")),
        None,
        Path::new("/nonexistent-cache"),
    )
    .unwrap();
    assert_eq!(b.genestack, Path::new("/srv/genestack"));
    assert!(b.charts.is_none());
    assert!(b.note.contains("/srv/genestack"));
    // The built-in release pin is GitHub's Genestack.
    let r = GenestackRelease::builtin().unwrap();
    assert_eq!(r.url, "https://github.com/rackerlabs/genestack");
}

/// `stackwave demo`'s sandbox on a fetched base without fixtures: generated Secrets and the
/// CNI's Services stand in, and the first commit becomes healthy. The demo is defined on its
/// in-process server, so the test skips against another one.
#[test]
fn the_demo_runs_on_a_fetched_base_with_generated_secrets() {
    let Some(shared) = stackwave_tests::shared_dir() else {
        eprintln!("SKIPPED: ../shared is not present");
        return;
    };
    if std::env::var_os("STACKWAVE_TEST_KUBECONFIG").is_some() {
        eprintln!("SKIPPED: the demo sandbox runs its own in-process API server");
        return;
    }
    if !stackwave_tests::helm_or_skip() {
        return;
    }
    let remote = stackwave_tests::genestack_remote(&shared, "demo-test", true);
    let cache = temp("demo-cache");
    let base = stackwave::fetch::genestack_base(
        &GenestackRelease {
            url: format!("file://{}", remote.display()),
            r#ref: "demo-test".into(),
        },
        &cache,
    )
    .unwrap();
    assert!(!base.join("secrets.yaml").exists());
    let workdir = temp("demo");
    let opts = stackwave::demo::DemoOptions {
        genestack: base,
        charts: Some(shared.join("corpus/charts")),
        bootstrap: vec![],
        template: Path::new(env!("CARGO_MANIFEST_DIR")).join("../repo-template"),
        workdir: workdir.clone(),
        cache_dir: Some(cache.clone()),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut sb = stackwave::demo::sandbox(&opts).await.unwrap();
        // Every Secret a binding of an enabled component reads is there, with a value.
        let cfg = stackwave::reconcile::read_config(&sb.repo_dir).unwrap();
        let catalog = stackwave::component::Catalog::builtin().unwrap();
        let want = stackwave::fetch::generated_secrets(&catalog, &cfg.components);
        assert!(want.len() > 10, "{}", want.len());
        for s in &want {
            let live = sb
                .cluster
                .get(s)
                .await
                .unwrap()
                .expect("bootstrapped Secret");
            let keys = s["stringData"].as_object().unwrap();
            for k in keys.keys() {
                assert!(
                    live["data"][k].as_str().is_some_and(|v| !v.is_empty()),
                    "{k}"
                );
            }
        }
        let c = sb.source.fetch().unwrap();
        let dir = sb.source.export(&c.id, &sb.state.join("checkout")).unwrap();
        let out = sb.agent.sync(&dir, &c, &|_| {}).await.unwrap();
        assert!(
            matches!(out, stackwave::reconcile::Outcome::Healthy { .. }),
            "{out:?}"
        );
    });
    for d in [&workdir, &remote, &cache] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn without_charts_drops_the_charts_entry_only() {
    let cfg = "genestack:\n  path: x\ncharts:\n  # comment\n  path: ../charts\nmanifests:\n  - name: a\ncomponents: [keystone]\n";
    assert_eq!(
        stackwave::fetch::without_charts(cfg),
        "genestack:\n  path: x\nmanifests:\n  - name: a\ncomponents: [keystone]\n"
    );
}
