//! The catalog travels with the desired state: a repository's own `components/<name>.yaml`
//! replace or add catalog entries, validated like the built-in ones (errors name the file),
//! and `stackwave catalog --repo` says where each entry comes from; `plan` and `render` use
//! the effective catalog.

use stackwave::catalog::{CatalogLoadError, Effective, Origin};
use std::path::{Path, PathBuf};

fn temp_repo(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "sw-repo-catalog-{name}-{}-{}",
        std::process::id(),
        stackwave_tests::random_suffix()
    ));
    std::fs::create_dir_all(d.join("components")).unwrap();
    std::fs::write(
        d.join("stackwave.yaml"),
        "genestack: {path: ../genestack}\ncomponents: [memcached, keystone, glance, my-exporter]\n",
    )
    .unwrap();
    d
}

fn write(dir: &Path, rel: &str, text: &str) {
    std::fs::write(dir.join(rel), text).unwrap();
}

/// The built-in keystone entry with its wave moved (a newer Genestack release's script).
fn keystone_moved() -> String {
    let (_, text) = stackwave::component::BUILTIN
        .iter()
        .find(|(f, _)| *f == "components/keystone.yaml")
        .expect("built-in keystone");
    let wave = stackwave::catalog::Effective::builtin().unwrap().entries["keystone"]
        .component
        .wave;
    let out = text.replace(&format!("\nwave: {wave}\n"), "\nwave: 100\n");
    assert_ne!(&out, text, "the built-in keystone entry has `wave: {wave}`");
    out
}

const EXPORTER: &str = "# A component this repository adds.
name: my-exporter
wave: 9
dependsOn: [keystone]
release: {name: my-exporter, namespace: monitoring}
chart:
  name: my-exporter
  oci: oci://registry.example.com/charts
values: {dir: my-exporter, globalOverrides: false}
";

#[test]
fn every_builtin_entry_validates_and_is_marked_builtin() {
    let c = Effective::builtin().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.entries.len(), stackwave::component::BUILTIN.len());
    for (name, e) in &c.entries {
        assert_eq!(
            e.origin,
            Origin::Builtin {
                file: format!("components/{name}.yaml")
            }
        );
    }
    stackwave::catalog::validate(&c).unwrap();
}

#[test]
fn a_repository_replaces_and_adds_entries_and_plans_with_them() {
    let repo = temp_repo("override");
    write(&repo, "components/keystone.yaml", &keystone_moved());
    write(&repo, "components/my-exporter.yaml", EXPORTER);
    let eff = Effective::of_repo(&repo).unwrap_or_else(|e| panic!("{e}"));
    let ks = &eff.entries["keystone"];
    assert_eq!(ks.component.wave, 100);
    assert_eq!(
        ks.origin,
        Origin::Repo {
            file: repo.join("components/keystone.yaml"),
            replaces: Some("components/keystone.yaml".into())
        }
    );
    assert_eq!(
        eff.entries["my-exporter"].origin,
        Origin::Repo {
            file: repo.join("components/my-exporter.yaml"),
            replaces: None
        }
    );
    assert_eq!(
        eff.entries["glance"].origin,
        Origin::Builtin {
            file: "components/glance.yaml".into()
        }
    );
    // The listing names each entry's source.
    let text = eff.text();
    let line = |c: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{c} ")))
            .unwrap_or_else(|| panic!("no {c} in\n{text}"))
            .to_string()
    };
    assert!(
        line("keystone").ends_with(&format!(
            "repo {} (replaces built-in components/keystone.yaml)",
            repo.join("components/keystone.yaml").display()
        )),
        "{text}"
    );
    assert!(line("my-exporter").contains("oci://registry.example.com/charts"));
    assert!(line("glance").ends_with("built-in components/glance.yaml"));
    let json = serde_json::to_value(&eff).unwrap();
    assert_eq!(json["entries"]["keystone"]["origin"]["source"], "repo");
    assert_eq!(json["entries"]["glance"]["origin"]["source"], "builtin");

    // `plan` of that checkout: keystone moved to wave 100, the added component (wave 9) after
    // it, as it depends on keystone.
    let cfg = stackwave::reconcile::read_config(&repo).unwrap();
    let waves = stackwave::reconcile::plan_waves(&eff.catalog(), &cfg).unwrap();
    let wave_of = |c: &str| {
        waves
            .iter()
            .find(|w| w.components.iter().any(|x| x == c))
            .map(|w| w.index)
    };
    let builtin_wave = |c: &str| Effective::builtin().unwrap().entries[c].component.wave;
    assert_eq!(wave_of("memcached"), Some(builtin_wave("memcached")));
    assert_eq!(wave_of("keystone"), Some(100));
    assert_eq!(wave_of("my-exporter"), Some(101));
    // Without the repository entry the built-in catalog does not know my-exporter.
    let builtin = Effective::builtin().unwrap().catalog();
    let e = stackwave::reconcile::plan_waves(&builtin, &cfg).unwrap_err();
    assert!(e.to_string().contains("my-exporter"), "{e}");

    // The checkout-level hook the agent uses gives the same entries.
    let via_agent = stackwave::catalog::for_checkout(&builtin, &repo).unwrap();
    assert_eq!(via_agent.get("keystone").map(|c| c.wave), Some(100));
    assert!(via_agent.get("my-exporter").is_some());
    let _ = std::fs::remove_dir_all(&repo);
}

#[test]
fn bad_repository_entries_are_refused_naming_the_file() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "typo",
            "components/memcached.yaml",
            "name: memcached\nrelease: {name: memcached, namespace: openstack}\nchart: {name: memcached, verison: 1}\nvalues: {dir: memcached}\n",
            "unknown field `chart.verison`",
        ),
        (
            "renamed",
            "components/cache.yaml",
            "name: memcached\nrelease: {name: memcached, namespace: openstack}\nchart: {name: memcached}\nvalues: {dir: memcached}\n",
            "describes component `memcached`, but the file is named for `cache`",
        ),
        (
            "two-sources",
            "components/x.yaml",
            "name: x\nrelease: {name: x, namespace: openstack}\nchart: {name: x, repo: 'https://a', oci: 'oci://b'}\nvalues: {dir: x}\n",
            "chart: give at most one of `repo`, `oci`, `git` and `genestackPath`",
        ),
        (
            "missing-dep",
            "components/x.yaml",
            "name: x\ndependsOn: [nosuch]\nrelease: {name: x, namespace: openstack}\nchart: {name: x}\nvalues: {dir: x}\n",
            "dependsOn names component `nosuch`",
        ),
        (
            "yaml",
            "components/x.yaml",
            "name: x\nrelease: [\n",
            "components/x.yaml",
        ),
        (
            "mistyped",
            "components/x.yaml",
            "name: x\nwave: soon\nrelease: {name: x, namespace: openstack}\nchart: {name: x}\nvalues: {dir: x}\n",
            "wave: invalid type: string \"soon\"",
        ),
        (
            "half-binding",
            "components/x.yaml",
            "name: x\nrelease: {name: x, namespace: openstack}\nchart: {name: x}\nvalues: {dir: x}\nbindings: [{path: a.b, secret: s}]\n",
            "bindings.0: `secret` and `key` go together",
        ),
    ];
    for (name, file, text, want) in cases {
        let repo = temp_repo(name);
        write(&repo, file, text);
        let e = Effective::of_repo(&repo).unwrap_err();
        let msg = e.to_string();
        let path = repo.join(file).display().to_string();
        assert!(msg.contains(&path), "{name}: {msg} does not name {path}");
        assert!(msg.contains(want), "{name}: {msg} lacks {want}");
        assert!(!matches!(e, CatalogLoadError::Read { .. }), "{name}: {msg}");
        // The agent's hook refuses the same checkout with the same message.
        let builtin = Effective::builtin().unwrap().catalog();
        let e2 = stackwave::catalog::for_checkout(&builtin, &repo).unwrap_err();
        assert_eq!(e2.to_string(), msg);
        let _ = std::fs::remove_dir_all(&repo);
    }
}

#[test]
fn the_catalog_command_parses() {
    use clap::Parser;
    let cli =
        stackwave::cli::Cli::try_parse_from(["stackwave", "catalog", "--repo", "x", "-o", "json"])
            .unwrap();
    assert!(matches!(
        cli.command,
        stackwave::cli::Command::Catalog { repo: Some(ref r) } if r == Path::new("x")
    ));
    let cli = stackwave::cli::Cli::try_parse_from(["stackwave", "plan", "--repo", "x"]).unwrap();
    assert!(matches!(
        cli.command,
        stackwave::cli::Command::Plan { ref range, .. } if range.repo.as_deref() == Some("x") && !range.is_range()
    ));
}

/// `render --overrides R` renders with R's own catalog entries: a repository entry that moves
/// memcached's values directory reads that directory.
#[test]
fn render_uses_the_repository_catalog() {
    let Some(shared) = stackwave_tests::shared_dir() else {
        eprintln!("SKIPPED: ../shared is not present");
        return;
    };
    if !stackwave_tests::helm_or_skip() {
        return;
    }
    let repo = temp_repo("render");
    let (_, text) = stackwave::component::BUILTIN
        .iter()
        .find(|(f, _)| *f == "components/memcached.yaml")
        .unwrap();
    assert!(text.contains("dir: memcached"));
    write(
        &repo,
        "components/memcached.yaml",
        &text.replace("dir: memcached", "dir: memcached-site"),
    );
    std::fs::create_dir_all(repo.join("helm-configs/memcached-site")).unwrap();
    write(
        &repo,
        "helm-configs/memcached-site/site.yaml",
        "pod:\n  replicas:\n    server: 7\n",
    );
    let mut inputs = stackwave_tests::genestack_inputs(&shared, Some(&repo));
    let plain = stackwave::render::render_component(&inputs, "memcached").unwrap();
    inputs.catalog = stackwave::catalog::for_checkout(&inputs.catalog, &repo).unwrap();
    let site = stackwave::render::render_component(&inputs, "memcached").unwrap();
    assert!(!plain.text().unwrap().contains("replicas: 7"));
    let site = site.text().unwrap();
    assert!(site.contains("replicas: 7"), "{site}");
    let _ = std::fs::remove_dir_all(&repo);
}
