//! `stackwave init`: the scaffold mirrors `/etc/genestack`, plans, and renders every golden
//! byte for byte (it changes nothing by itself); a Git-pinned base is fetched from its
//! repository (a local `file://` repository made from the corpus stands in for GitHub), and
//! an unreachable one is named.

use stackwave::init::{init, InitError, InitOptions};
use std::path::{Path, PathBuf};

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "sw-scaffold-{name}-{}-{}",
        std::process::id(),
        stackwave_tests::random_suffix()
    ))
}

fn options(dir: &Path, shared: &Path) -> InitOptions {
    InitOptions {
        dir: dir.to_path_buf(),
        genestack_url: None,
        genestack_ref: None,
        genestack_path: Some(shared.join("corpus/genestack")),
        charts_path: Some(shared.join("corpus/charts")),
        cache_dir: dir.with_extension("cache"),
        regions: vec![],
        git: false,
    }
}

#[test]
fn the_scaffold_mirrors_etc_genestack_and_plans() {
    let Some(shared) = stackwave_tests::shared_dir() else {
        eprintln!("SKIPPED: ../shared is not present");
        return;
    };
    let dir = temp("layout");
    let mut o = options(&dir, &shared);
    o.regions = vec!["sjc".into(), "dfw".into()];
    o.git = true;
    let s = init(&o).unwrap_or_else(|e| panic!("{e}"));
    let catalog = stackwave::catalog::Effective::builtin().unwrap();
    for prefix in ["", "regions/sjc/", "regions/dfw/"] {
        for f in [
            "stackwave.yaml",
            "helm-chart-versions.yaml",
            "openstack-components.yaml",
            "helm-configs/global_overrides/.gitkeep",
            "manifests/README.md",
        ] {
            let f = format!("{prefix}{f}");
            assert!(s.files.contains(&f), "{f} not written: {:?}", s.files);
            assert!(dir.join(&f).is_file(), "{f}");
        }
        let mut stubs = 0;
        for e in catalog.entries.values().filter(|e| !e.component.example) {
            if !e.component.values.dir.is_empty() {
                let v = format!("{prefix}helm-configs/{}/.gitkeep", e.component.values.dir);
                assert!(dir.join(&v).is_file(), "{v}");
            }
            if let Some(p) = &e.component.post_render {
                let k = dir.join(format!(
                    "{prefix}kustomize/{}/kustomization.yaml",
                    p.overlay
                ));
                let in_base = shared
                    .join("corpus/genestack/base-kustomize")
                    .join(&p.overlay)
                    .join("kustomization.yaml")
                    .is_file();
                if in_base || !p.overlay.ends_with("/overlay") {
                    // Never shadow the base's own overlay.
                    assert!(!k.exists(), "{}", k.display());
                } else {
                    stubs += 1;
                    assert_eq!(
                        std::fs::read_to_string(&k).unwrap(),
                        stackwave::render::postrender::OVERLAY_STUB,
                        "{}",
                        k.display()
                    );
                }
            }
        }
        assert!(stubs > 0);
    }
    // Copied from the base, as Genestack's bootstrap copies them.
    for f in ["helm-chart-versions.yaml", "openstack-components.yaml"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(shared.join("corpus/genestack").join(f)).unwrap()
        );
    }
    // Committed, nothing left over.
    let c = s.commit.clone().expect("a first commit with --git");
    assert_eq!(
        stackwave_tests::git(&dir, &["rev-parse", "HEAD"]).trim(),
        c.as_str()
    );
    assert_eq!(stackwave_tests::git(&dir, &["status", "--porcelain"]), "");
    let tracked = stackwave_tests::git(&dir, &["ls-files"]);
    assert_eq!(tracked.lines().count(), s.files.len());

    // `components: auto`: the infrastructure layer and the services openstack-components.yaml
    // enables; the plan puts every dependency first.
    let text = std::fs::read_to_string(dir.join("stackwave.yaml")).unwrap();
    assert!(text.contains("\ncomponents: auto\n"), "{text}");
    for prefix in ["", "regions/sjc"] {
        let root = dir.join(prefix);
        let cfg = stackwave::reconcile::read_config(&root).unwrap();
        for svc in [
            "keystone",
            "glance",
            "placement",
            "barbican",
            "neutron",
            "nova",
            "skyline",
        ] {
            assert!(
                cfg.components.iter().any(|c| c == svc),
                "{svc}: {:?}",
                cfg.components
            );
        }
        for infra in [
            "kube-ovn",
            "cert-manager",
            "mariadb-operator",
            "rabbitmq-cluster",
            "memcached",
        ] {
            assert!(
                cfg.components.iter().any(|c| c == infra),
                "{infra}: {:?}",
                cfg.components
            );
        }
        assert!(
            !cfg.components.iter().any(|c| c == "octavia"),
            "octavia is off in openstack-components.yaml"
        );
        let eff = stackwave::catalog::Effective::of_repo(&root).unwrap();
        let waves = stackwave::reconcile::plan_waves(&eff.catalog(), &cfg).unwrap();
        let wave_of = |c: &str| {
            waves
                .iter()
                .find(|w| w.components.iter().any(|x| x == c))
                .map(|w| w.index)
                .unwrap_or_else(|| panic!("{c} not planned: {waves:?}"))
        };
        for c in &cfg.components {
            for d in &catalog.entries[c].component.depends_on {
                assert!(wave_of(d) < wave_of(c), "{d} before {c}: {waves:?}");
            }
        }
    }

    // The next steps name the commands.
    let steps = stackwave::init::next_steps(&s, &o.regions);
    assert!(
        steps.contains(&format!("stackwave plan --repo {}", dir.display())),
        "{steps}"
    );
    assert!(steps.contains("regions/<name>"), "{steps}");

    // A second init into the same directory is refused; so is a bad region name.
    let e = init(&o).unwrap_err();
    assert!(matches!(e, InitError::NotEmpty(_)), "{e}");
    assert!(e.to_string().contains(&dir.display().to_string()));
    let mut bad = options(&temp("badregion"), &shared);
    bad.regions = vec!["../up".into()];
    assert!(matches!(init(&bad).unwrap_err(), InitError::BadRegion(_)));
    assert!(!bad.dir.exists(), "nothing written for a refused init");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The scaffold (root and a region tree) as the overrides of every golden component renders
/// the golden byte for byte: it is neutral until the operator edits it.
#[test]
fn the_scaffold_renders_the_goldens() {
    let Some(shared) = stackwave_tests::shared_dir() else {
        eprintln!("SKIPPED: ../shared is not present");
        return;
    };
    if !stackwave_tests::helm_or_skip() {
        return;
    }
    let dir = temp("render");
    let mut o = options(&dir, &shared);
    o.regions = vec!["sjc".into()];
    init(&o).unwrap();
    for root in [dir.clone(), dir.join("regions/sjc")] {
        let mut inputs = stackwave_tests::genestack_inputs(&shared, Some(&root));
        inputs.catalog = stackwave::catalog::for_checkout(&inputs.catalog, &root).unwrap();
        for svc in stackwave_tests::GOLDENS {
            let want =
                std::fs::read_to_string(shared.join(format!("corpus/goldens/{svc}.yaml"))).unwrap();
            let got = stackwave::render::render_component(&inputs, svc)
                .unwrap_or_else(|e| panic!("{svc} over {}: {e}", root.display()));
            assert!(
                got.text().unwrap() == want,
                "{svc} over {}: differs from the golden",
                root.display()
            );
        }
    }
    // Beyond the goldens: every enabled component the corpus can render renders the same
    // over the scaffold as over no overrides at all (components whose chart is not in the
    // corpus, or whose base render is not deterministic, are counted and skipped).
    let cfg = stackwave::reconcile::read_config(&dir).unwrap();
    let plain = stackwave_tests::genestack_inputs(&shared, None);
    let mut over = stackwave_tests::genestack_inputs(&shared, Some(&dir));
    over.catalog = stackwave::catalog::for_checkout(&over.catalog, &dir).unwrap();
    let (mut same, mut skipped) = (0, Vec::new());
    for c in &cfg.components {
        let (Ok(a), Ok(a2)) = (
            stackwave::render::render_component(&plain, c),
            stackwave::render::render_component(&plain, c),
        ) else {
            skipped.push(c.clone());
            continue;
        };
        if a.text().ok() != a2.text().ok() {
            skipped.push(c.clone());
            continue;
        }
        let b = stackwave::render::render_component(&over, c)
            .unwrap_or_else(|e| panic!("{c} over the scaffold: {e}"));
        assert!(
            a.text().ok() == b.text().ok(),
            "{c}: the scaffold changes its render"
        );
        same += 1;
    }
    println!("scaffold-neutral renders: {same}; skipped: {skipped:?}");
    assert!(same > stackwave_tests::GOLDENS.len(), "{same} {skipped:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--genestack-ref`: the base is fetched from its Git repository (a local `file://` one here)
/// and pinned in stackwave.yaml; the files Genestack's bootstrap copies come from that tag.
#[test]
fn a_git_pinned_base_is_fetched_and_pinned() {
    let Some(shared) = stackwave_tests::shared_dir() else {
        eprintln!("SKIPPED: ../shared is not present");
        return;
    };
    let remote = stackwave_tests::genestack_remote(&shared, "release-test.1", false);
    let url = format!("file://{}", remote.display());
    let dir = temp("gitbase");
    let o = InitOptions {
        genestack_url: Some(url.clone()),
        genestack_ref: Some("release-test.1".into()),
        genestack_path: None,
        charts_path: None,
        ..options(&dir, &shared)
    };
    let s = init(&o).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.base, format!("{url}@release-test.1"));
    let cfg = stackwave::reconcile::read_config(&dir).unwrap();
    let g = cfg.genestack.git.expect("genestack.git");
    assert_eq!(
        (g.url.as_str(), g.r#ref.as_str()),
        (url.as_str(), "release-test.1")
    );
    assert!(cfg.genestack.path.is_none() && cfg.charts.is_none());
    assert_eq!(
        std::fs::read(dir.join("helm-chart-versions.yaml")).unwrap(),
        std::fs::read(shared.join("corpus/genestack/helm-chart-versions.yaml")).unwrap()
    );
    // The mirror sits under <cache>/genestack/<ref>.
    assert!(o.cache_dir.join("genestack/release-test.1").is_dir());

    // An unknown tag and an unreachable repository are named.
    let missing = InitOptions {
        genestack_ref: Some("no-such-tag".into()),
        dir: temp("gitbase-missing"),
        ..o.clone()
    };
    let e = init(&missing).unwrap_err().to_string();
    assert!(e.contains(&url) && e.contains("no-such-tag"), "{e}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("http://127.0.0.1:{port}/rackerlabs/genestack");
    let unreachable = InitOptions {
        genestack_url: Some(gone.clone()),
        dir: temp("gitbase-gone"),
        ..o.clone()
    };
    let e = init(&unreachable).unwrap_err().to_string();
    assert!(e.contains(&gone), "{e}");
    assert!(!unreachable.dir.exists());
    for d in [&dir, &remote, &o.cache_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}
