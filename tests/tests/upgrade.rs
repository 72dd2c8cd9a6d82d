//! PR-based upgrades (`stackwave diff|check|plan --repo --from --to`): repositories built with
//! the git CLI from the Genestack corpus — a Caracal-era (2024.1) state and upgrade branches
//! modelled on the hazards of Genestack's real Epoxy pull request — checked rule by rule,
//! with the CLI's exit codes; a Genestack base pinned in Git moving between two tags; a
//! one-line nova values change against two renders of the reference pipeline; the agent's
//! pre-apply gate.

use clap::Parser;
use serde_json::Value as Json;
use stackwave::render::cache::RenderCache;
use stackwave::upgrade::check::{check, Context, Finding, Report, Severity};
use stackwave::upgrade::{diff, render_both, Options, Upgrade};
use stackwave_tests::{git, shared_dir};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The services of the test cloud (catalog components; nova needs the first five).
const SERVICES: [&str; 7] = [
    "memcached",
    "keystone",
    "placement",
    "glance",
    "libvirt",
    "neutron",
    "nova",
];

/// `stackwave ARGS --repo DIR --from A --to B --offline --cache-dir CACHE`.
fn range_argv(args: &[&str], dir: &Path, from: &str, to: &str, cache: &Path) -> Vec<String> {
    let mut argv: Vec<String> = vec!["stackwave".into()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv.extend([
        "--repo".into(),
        dir.display().to_string(),
        "--from".into(),
        from.into(),
        "--to".into(),
        to.into(),
        "--offline".into(),
        "--cache-dir".into(),
        cache.display().to_string(),
    ]);
    argv
}

/// `--server URL` (the in-process server) or `--kubeconfig F` (`STACKWAVE_TEST_KUBECONFIG`).
fn target_argv(tc: &stackwave_tests::TestCluster) -> Vec<String> {
    match (tc.url(), tc.kubeconfig()) {
        (Some(u), _) => vec!["--server".into(), u],
        (None, Some(k)) => vec!["--kubeconfig".into(), k.display().to_string()],
        _ => Vec::new(),
    }
}

struct Cloud {
    dir: PathBuf,
    cache: PathBuf,
    shared: PathBuf,
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stackwave-upgrade-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Cloud {
    fn new(name: &str) -> Option<Cloud> {
        let Some(shared) = shared_dir() else {
            eprintln!("SKIPPED: ../shared is not there");
            return None;
        };
        let root = tmp(name);
        let dir = root.join("cloud");
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        Some(Cloud {
            dir,
            cache: root.join("cache"),
            shared,
        })
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.join(path)).unwrap();
    }

    fn commit(&self, msg: &str) -> String {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "--allow-empty", "-m", msg]);
        git(&self.dir, &["rev-parse", "HEAD"]).trim().to_string()
    }

    fn genestack(&self) -> PathBuf {
        self.shared.join("corpus/genestack")
    }

    /// `stackwave.yaml` over the corpus base and charts.
    fn config(&self, components: &[&str], extra: &str) -> String {
        format!(
            "genestack:\n  path: {}\ncharts:\n  path: {}\ncomponents: [{}]\n{extra}",
            self.genestack().display(),
            self.shared.join("corpus/charts").display(),
            components.join(", ")
        )
    }

    /// An operator values file setting every image of `svc` that carries an OpenStack release
    /// to `release` (the base's tags with their release replaced).
    fn images(&self, svc: &str, release: &str) {
        let mut tags = BTreeMap::new();
        let dir = self.genestack().join("base-helm-configs").join(svc);
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let Ok(docs) = kustomize_rs::yaml::parse_documents(&text) else {
                continue;
            };
            if let Some(m) = docs
                .first()
                .and_then(|d| d.get_path(&["images", "tags"]))
                .and_then(|t| t.as_map())
            {
                for (k, v) in m.iter() {
                    if let Some(s) = v.as_str().filter(|s| s.contains(":2026.1")) {
                        tags.insert(k.clone(), s.replace(":2026.1", &format!(":{release}")));
                    }
                }
            }
        }
        assert!(!tags.is_empty(), "no released images for {svc}");
        let mut y = "images:\n  tags:\n".to_string();
        for (k, v) in tags {
            y.push_str(&format!("    {k}: \"{v}\"\n"));
        }
        self.write(&format!("helm-configs/{svc}/zz-images.yaml"), &y);
    }

    fn pins(&self, pins: &[(&str, &str)]) {
        let mut y = "charts:\n".to_string();
        for (k, v) in pins {
            y.push_str(&format!("  {k}: {v}\n"));
        }
        self.write("helm-chart-versions.yaml", &y);
    }

    fn rabbitmq(&self, version: &str) {
        self.write(
            "kustomize/rabbitmq-operator/base/kustomization.yaml",
            &format!("resources:\n  - https://github.com/rabbitmq/cluster-operator/releases/download/v{version}/cluster-operator.yml\n"),
        );
    }

    fn options(&self, from: &str, to: &str) -> Options {
        Options {
            repo: self.dir.display().to_string(),
            from: from.into(),
            to: to.into(),
            cache_dir: self.cache.clone(),
            offline: true,
            secrets: vec![
                self.genestack().join("secrets.yaml"),
                self.genestack().join("cluster-state.yaml"),
            ],
        }
    }

    /// The check report (renders both sides, as `stackwave check` does).
    fn check(&self, from: &str, to: &str) -> Report {
        let opts = self.options(from, to);
        let up = Upgrade::open(&opts).unwrap();
        let cache = RenderCache::with_depth(2);
        let (a, b) = render_both(&up, &cache, &opts).unwrap();
        let d = diff::diff(&up.from.commit, &up.to.commit, &a, &b);
        check(&Context {
            up: &up,
            rendered: Ok((&a, &b, &d)),
            live_secrets: None,
        })
        .unwrap()
    }

    /// Exit code of the CLI (`stackwave ARGS --repo DIR --from A --to B ...`), in process.
    fn cli(&self, args: &[&str], from: &str, to: &str) -> i32 {
        let g = self.genestack();
        let mut argv = range_argv(args, &self.dir, from, to, &self.cache);
        argv.extend([
            "--secrets".into(),
            g.join("secrets.yaml").display().to_string(),
            "--secrets".into(),
            g.join("cluster-state.yaml").display().to_string(),
        ]);
        stackwave::cli::run(stackwave::cli::Cli::parse_from(argv))
    }

    /// The Caracal-era state: every service on 2024.1 images and 2024.1 chart pins, memcached
    /// from the Bitnami chart (a repository-carried catalog entry), operators at older
    /// versions, and a plain-manifests component.
    fn caracal(&self) -> String {
        for s in ["keystone", "placement", "glance", "neutron", "nova"] {
            self.images(s, "2024.1");
        }
        self.write(
            "components/memcached.yaml",
            "name: memcached\nkind: helm\nwave: 2\nrelease:\n  name: memcached\n  namespace: openstack\n\
             chart:\n  name: memcached\n  repo: https://charts.bitnami.com/bitnami\n  versionKey: memcached\n\
             values:\n  dir: memcached\n  globalOverrides: false\npostRender:\n  overlay: memcached/overlay\n",
        );
        self.pins(&CARACAL_PINS);
        self.rabbitmq("2.17.0");
        self.write(
            "manifests/extra/kustomization.yaml",
            "resources:\n  - cm.yaml\n",
        );
        self.write(
            "manifests/extra/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: openstack\ndata:\n  a: b\n",
        );
        self.write(
            "stackwave.yaml",
            &self.config(
                &SERVICES,
                "manifests:\n  - name: extra\n    path: manifests/extra\n    wave: 0\n",
            ),
        );
        self.commit("Caracal (2024.1) cloud")
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        // The repository, its caches and exported trees.
        if let Some(root) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

const CARACAL_PINS: [(&str, &str); 10] = [
    ("keystone", "2024.1.5+aaaaaaaaa"),
    ("placement", "2024.1.3+aaaaaaaaa"),
    ("glance", "2024.1.4+aaaaaaaaa"),
    ("neutron", "2024.1.6+aaaaaaaaa"),
    ("nova", "2024.1.7+aaaaaaaaa"),
    ("libvirt", "2024.1.2+aaaaaaaaa"),
    ("memcached", "7.4.0"),
    ("longhorn", "1.10.2"),
    ("mariadb-operator", "0.36.0"),
    ("metallb", "v0.13.12"),
];

fn epoxy_pins(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut pins: BTreeMap<&str, &str> = [
        ("keystone", "2025.1.2+bbbbbbbbb"),
        ("placement", "2025.1.1+bbbbbbbbb"),
        ("glance", "2025.1.3+bbbbbbbbb"),
        ("neutron", "2025.1.2+bbbbbbbbb"),
        ("nova", "2025.1.4+bbbbbbbbb"),
        ("libvirt", "2025.1.4+ed289c1cd"),
        ("memcached", "7.4.0"),
        ("longhorn", "1.11.1"),
        ("mariadb-operator", "0.37.1"),
        ("metallb", "v0.15.2"),
    ]
    .into_iter()
    .collect();
    pins.extend(overrides.iter().copied());
    pins.into_iter().collect()
}

fn find<'a>(r: &'a Report, rule: &str, component: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.rule == rule && f.component == component)
        .unwrap_or_else(|| panic!("no {rule} finding for {component}: {:#?}", r.findings))
}

fn rules_of(r: &Report, severity: Severity) -> BTreeSet<(String, String)> {
    r.findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| (f.rule.clone(), f.component.clone()))
        .collect()
}

/// The hazards branch: keystone, glance and nova to Epoxy, neutron left on Caracal, placement
/// accidentally back to 2023.2, memcached's chart source switched, a longhorn chart downgrade,
/// mariadb-operator and the RabbitMQ operator jumping hops, glance rebuilt at the same
/// version, barbican (new Secrets) added, the plain-manifests component dropped, nova's
/// cell-setup Job image changed.
fn hazards(c: &Cloud) -> String {
    for s in ["keystone", "glance", "nova", "barbican"] {
        c.images(s, "2025.1");
    }
    c.images("placement", "2023.2");
    c.remove("components/memcached.yaml");
    c.pins(&epoxy_pins(&[
        ("longhorn", "1.9.1"),
        ("mariadb-operator", "25.8.4"),
        ("glance", "2024.1.4+ccccccccc"),
        ("placement", "2024.1.3+aaaaaaaaa"),
        ("neutron", "2024.1.6+aaaaaaaaa"),
        ("memcached", "2025.2.2+c31cd6c96"),
    ]));
    c.rabbitmq("2.19.1");
    let mut comps = SERVICES.to_vec();
    comps.push("barbican");
    c.write(
        "stackwave.yaml",
        &c.config(&comps, "backups:\n  nova: s3://backups/nova-2024.1-final\n"),
    );
    c.commit("Epoxy upgrade with hazards")
}

#[test]
fn every_rule_fires_with_its_severity_and_exit_code() {
    let Some(c) = Cloud::new("hazards") else {
        return;
    };
    let base = c.caracal();
    let to = hazards(&c);
    let r = c.check(&base, &to);
    for f in &r.findings {
        eprintln!(
            "{} {} {}: {}",
            f.severity.as_str(),
            f.rule,
            f.component,
            f.message
        );
    }
    let errors = rules_of(&r, Severity::Error);
    let want: BTreeSet<(String, String)> = [
        ("chart-downgrade", "longhorn"),
        ("chart-source-switch", "memcached"),
        ("skipped-hops", "mariadb-operator"),
        ("skipped-hops", "rabbitmq-operator"),
        ("image-downgrade", "placement"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(errors, want);
    let m = &find(&r, "chart-downgrade", "longhorn").message;
    assert!(m.contains("1.10.2 → 1.9.1"), "{m}");
    let m = &find(&r, "chart-source-switch", "memcached").message;
    assert!(
        m.contains("charts.bitnami.com")
            && m.contains("uninstall")
            && m.contains("release-2026.1-memcached-3d311a975f1b37a2.yaml"),
        "{m}"
    );
    let m = &find(&r, "skipped-hops", "mariadb-operator").message;
    assert!(m.contains("0.36.0 → 0.37.1 → 0.38.1 → 25.8.4"), "{m}");
    assert!(
        m.contains("maintenance-mariadb-operator-galera-0.36.0-to-26.3.0.txt"),
        "{m}"
    );
    let m = &find(&r, "skipped-hops", "rabbitmq-operator").message;
    assert!(
        m.contains("2.17.0 → 2.17.1 → 2.17.2 → 2.18.0 → 2.19.0 → 2.19.1"),
        "{m}"
    );
    let m = &find(&r, "image-downgrade", "placement").message;
    assert!(m.contains("2024.1 → 2023.2"), "{m}");
    // Warnings: who is left behind, migrations without a backup, new Secrets, a removal.
    let f = find(&r, "mixed-release", "neutron");
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message.contains("2024.1") && f.message.contains("nova") && f.message.contains("2025.1"),
        "{}",
        f.message
    );
    assert!(!r
        .findings
        .iter()
        .any(|f| f.rule == "mixed-release" && f.component == "nova"));
    for svc in ["keystone", "glance"] {
        let f = find(&r, "irreversible-migration", svc);
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.message.contains("backup"), "{}", f.message);
    }
    let f = find(&r, "irreversible-migration", "nova");
    assert_eq!(f.severity, Severity::Info, "a backup is recorded for nova");
    assert!(
        f.message.contains("s3://backups/nova-2024.1-final"),
        "{}",
        f.message
    );
    assert!(!r
        .findings
        .iter()
        .any(|f| f.rule == "irreversible-migration" && f.component == "neutron"));
    let new_secrets: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.rule == "secret-new")
        .collect();
    assert!(new_secrets
        .iter()
        .all(|f| f.severity == Severity::Warning && f.component == "barbican"));
    assert!(
        new_secrets
            .iter()
            .any(|f| f.message.contains("openstack/barbican-db-password")),
        "{new_secrets:#?}"
    );
    assert!(
        !new_secrets
            .iter()
            .any(|f| f.message.contains("keystone-admin")),
        "keystone-admin was read before"
    );
    assert_eq!(
        find(&r, "component-removed", "extra").severity,
        Severity::Warning
    );
    // Info: a rebuild, the skipped cluster rule, nova's non-hook Job that is replaced.
    assert_eq!(find(&r, "chart-rebuild", "glance").severity, Severity::Info);
    let f = find(&r, "secret-missing", "*");
    assert_eq!(f.severity, Severity::Info);
    assert!(
        f.message.contains("skipped") && f.message.contains("--server"),
        "{}",
        f.message
    );
    let jobs: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.rule == "job-replace")
        .collect();
    assert!(
        jobs.iter()
            .all(|f| f.severity == Severity::Info && f.component == "nova"),
        "{jobs:#?}"
    );
    assert!(
        jobs.iter()
            .any(|f| f.message.contains("openstack/nova-cell-setup")),
        "{jobs:#?}"
    );
    assert!(
        !jobs.iter().any(|f| f.message.contains("nova-db-sync")),
        "hooks are Helm's: {jobs:#?}"
    );
    // JSON shape.
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["from"], base.as_str());
    assert_eq!(j["to"], to.as_str());
    let f0 = &j["findings"][0];
    for k in ["rule", "severity", "component", "message"] {
        assert!(f0[k].is_string(), "{f0}");
    }
    assert_eq!(f0["severity"], "error", "errors first");
    // The comment's findings table: errors first.
    let md = stackwave::upgrade::markdown::findings(&r);
    let table = md
        .find("| severity | rule | component | message |")
        .unwrap();
    let first = md.find("| error | `").unwrap();
    let warning = md.find("| warning | `").unwrap();
    assert!(table < first && first < warning, "{md}");
    // Exit codes.
    assert_eq!(c.cli(&["check"], &base, &to), 1);
    assert_eq!(c.cli(&["-o", "markdown", "check"], &base, &to), 1);
    assert_eq!(c.cli(&["-o", "json", "check"], &base, &to), 1);
    assert_eq!(c.cli(&["check"], &base, &base), 0);
    assert_eq!(c.cli(&["check"], &base, "no-such-branch"), 2);
}

#[test]
fn a_clean_upgrade_exits_0_and_acknowledged_findings_pass() {
    let Some(c) = Cloud::new("clean") else {
        return;
    };
    let base = c.caracal();
    git(&c.dir, &["checkout", "-q", "-b", "clean"]);
    for s in ["keystone", "placement", "glance", "neutron", "nova"] {
        c.images(s, "2025.1");
    }
    c.pins(&epoxy_pins(&[]));
    c.rabbitmq("2.17.1");
    c.write(
        "stackwave.yaml",
        &c.config(
            &SERVICES,
            "manifests:\n  - name: extra\n    path: manifests/extra\n    wave: 0\n",
        ),
    );
    let clean = c.commit("clean Epoxy upgrade");
    let r = c.check(&base, &clean);
    assert!(
        rules_of(&r, Severity::Error).is_empty(),
        "{:#?}",
        r.findings
    );
    assert!(
        !r.findings.iter().any(|f| f.rule == "mixed-release"),
        "{:#?}",
        r.findings
    );
    assert_eq!(c.cli(&["check"], &base, &clean), 0);
    // Database migrations are warnings: `--fail-on warning` fails.
    assert_eq!(c.cli(&["check", "--fail-on", "warning"], &base, &clean), 1);
    assert_eq!(c.cli(&["diff"], &base, &clean), 1);
    assert_eq!(c.cli(&["diff"], &clean, &clean), 0);
    assert_eq!(c.cli(&["plan"], &base, &clean), 0);

    // The hazards branch, every error acknowledged, passes; the findings stay, marked.
    git(&c.dir, &["checkout", "-q", "-b", "hazards", &base]);
    let to = hazards(&c);
    let mut cfg = std::fs::read_to_string(c.dir.join("stackwave.yaml")).unwrap();
    cfg.push_str(
        "acknowledge:\n  - {rule: chart-downgrade, component: longhorn}\n  - {rule: chart-source-switch, component: memcached}\n\
         \x20 - {rule: skipped-hops, component: mariadb-operator}\n  - {rule: skipped-hops, component: rabbitmq-operator}\n",
    );
    c.write("stackwave.yaml", &cfg);
    let partly = c.commit("acknowledge all but the image downgrade");
    assert_eq!(c.cli(&["check"], &to, &to), 0);
    let r = c.check(&base, &partly);
    let open: Vec<&Finding> = r.failing(Severity::Error);
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].rule, "image-downgrade");
    assert!(find(&r, "chart-source-switch", "memcached").acknowledged);
    assert_eq!(c.cli(&["check"], &base, &partly), 1);
    cfg.push_str("  - {rule: image-downgrade, component: placement}\n");
    c.write("stackwave.yaml", &cfg);
    let acked = c.commit("acknowledge the image downgrade too");
    assert_eq!(c.cli(&["check"], &base, &acked), 0);
}

/// Objects of a render, keyed `Kind/namespace/name` (namespace filled as the agent does).
fn objects(text: &str) -> BTreeMap<String, Json> {
    stackwave::reconcile::objects_of(text)
        .unwrap()
        .into_iter()
        .filter(|o| !stackwave::reconcile::is_test_hook(o))
        .map(|o| {
            let ns = o["metadata"]["namespace"].as_str().unwrap_or("openstack");
            (
                format!(
                    "{}/{ns}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                ),
                o,
            )
        })
        .collect()
}

#[test]
fn a_one_line_nova_values_change_diffs_exactly_as_two_reference_renders() {
    let Some(c) = Cloud::new("nova-line") else {
        return;
    };
    if stackwave_tests::oracle_tools().is_none() {
        eprintln!("SKIPPED: reference tools missing (scripts/setup)");
        return;
    }
    c.write("stackwave.yaml", &c.config(&["nova"], ""));
    c.write(
        "helm-configs/nova/nova-settings.yaml",
        "conf:\n  nova:\n    DEFAULT:\n      debug: false\n",
    );
    let a = c.commit("nova");
    c.write(
        "helm-configs/nova/nova-settings.yaml",
        "conf:\n  nova:\n    DEFAULT:\n      debug: true\n",
    );
    let b = c.commit("nova: debug");
    let opts = c.options(&a, &b);
    let up = Upgrade::open(&opts).unwrap();
    let cache = RenderCache::with_depth(2);
    let (x, y) = render_both(&up, &cache, &opts).unwrap();
    let d = diff::diff(&up.from.commit, &up.to.commit, &x, &y);
    let ours: BTreeSet<String> = d
        .component("nova")
        .map(|n| n.objects.iter().map(|o| o.id()).collect())
        .unwrap_or_default();
    assert_eq!(d.components.len(), 1);
    // The reference pipeline, on both trees.
    let trees = [up.from.dir.clone(), up.to.dir.clone()];
    let [ra, rb] = trees.map(|t| objects(&stackwave_tests::oracle(&c.shared, "nova", Some(&t))));
    let theirs: BTreeSet<String> = ra
        .keys()
        .chain(rb.keys())
        .filter(|k| ra.get(*k) != rb.get(*k))
        .cloned()
        .collect();
    eprintln!("changed objects: {theirs:#?}");
    assert_eq!(ours, theirs);
    assert!(ours.contains("Secret/openstack/nova-etc"), "{ours:#?}");
    // Every workload whose config-hash annotation moves, and nothing else but config Secrets.
    for id in &ours {
        let o = d
            .component("nova")
            .unwrap()
            .objects
            .iter()
            .find(|o| &o.id() == id)
            .unwrap();
        assert!(
            o.kind == "Secret"
                || o.fields
                    .iter()
                    .all(|f| f.path.ends_with("configmap-etc-hash")),
            "{id}: {:#?}",
            o.fields
        );
    }
    let text = serde_json::to_string(&d).unwrap();
    assert!(
        !text.contains("debug = True") && !text.contains("password"),
        "values leak: {text}"
    );
    let j: Json = serde_json::from_str(&text).unwrap();
    let obj = &j["components"][0]["objects"][0];
    for k in ["action", "apiVersion", "kind", "namespace", "name"] {
        assert!(obj[k].is_string(), "{obj}");
    }
    assert_eq!(cache.stats().misses, 2, "each side renders nova once");
    // Warm: both sides come from the one cache.
    let (x2, y2) = render_both(&up, &cache, &opts).unwrap();
    assert_eq!(cache.stats().misses, 2);
    assert_eq!(cache.stats().hits, 2);
    assert_eq!(diff::diff(&up.from.commit, &up.to.commit, &x2, &y2), d);
    // The pull-request comment: summary first, the component collapsed, values masked.
    let md = stackwave::upgrade::markdown::diff(&d);
    let summary = md.find(&diff::summary(&d)).unwrap();
    let details = md.find("<details>").unwrap();
    assert!(summary < details, "{md}");
    assert!(
        md.contains("`data.nova.conf`: `*** (before)` → `*** (after)`"),
        "{md}"
    );
    assert!(!md.contains("debug = True"), "{md}");
}

/// A local Git repository holding a Genestack base (the corpus base, one file changed between
/// two tags).
fn base_repo(shared: &Path, root: &Path) -> PathBuf {
    let b = root.join("genestack-base");
    std::fs::create_dir_all(&b).unwrap();
    let g = shared.join("corpus/genestack");
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(g.join("base-helm-configs"))
        .arg(g.join("base-kustomize"))
        .arg(g.join("helm-chart-versions.yaml"))
        .arg(&b)
        .status()
        .unwrap();
    assert!(st.success());
    git(&b, &["init", "-q", "-b", "main"]);
    git(&b, &["add", "-A"]);
    git(&b, &["commit", "-q", "-m", "release 1"]);
    git(&b, &["tag", "release-1"]);
    let v = std::fs::read_to_string(b.join("helm-chart-versions.yaml")).unwrap();
    std::fs::write(
        b.join("helm-chart-versions.yaml"),
        v.replace("longhorn: 1.11.1", "longhorn: 1.10.2"),
    )
    .unwrap();
    let ks = b.join("base-helm-configs/keystone/keystone-helm-overrides.yaml");
    let k = std::fs::read_to_string(&ks).unwrap();
    std::fs::write(&ks, k.replace(":2026.1-latest", ":2025.1-latest")).unwrap();
    git(&b, &["commit", "-q", "-am", "release 2"]);
    git(&b, &["tag", "release-2"]);
    b
}

#[test]
fn a_genestack_base_pinned_in_git_moves_between_two_tags() {
    let Some(c) = Cloud::new("pinned") else {
        return;
    };
    let base = base_repo(&c.shared, c.dir.parent().unwrap());
    let cfg = |tag: &str| {
        format!(
            "genestack:\n  git:\n    url: file://{}\n    ref: {tag}\ncharts:\n  path: {}\ncomponents: [memcached, keystone]\n",
            base.display(),
            c.shared.join("corpus/charts").display()
        )
    };
    c.write("stackwave.yaml", &cfg("release-1"));
    let a = c.commit("base release-1");
    c.write("stackwave.yaml", &cfg("release-2"));
    let b = c.commit("base release-2");
    let mut opts = c.options(&a, &b);
    opts.offline = false;
    let up = Upgrade::open(&opts).unwrap();
    assert!(up.from.base_ref.as_deref().unwrap().contains("release-1"));
    assert!(up.to.base_ref.as_deref().unwrap().contains("release-2"));
    assert_ne!(up.from.genestack, up.to.genestack);
    let cache = RenderCache::with_depth(2);
    let (x, y) = render_both(&up, &cache, &opts).unwrap();
    let d = diff::diff(&up.from.commit, &up.to.commit, &x, &y);
    let names: Vec<&str> = d.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["keystone"], "only keystone's base values moved");
    let k = d.component("keystone").unwrap();
    assert!(
        k.objects.iter().any(|o| o
            .fields
            .iter()
            .any(|f| f.to.as_str().is_some_and(|s| s.ends_with(":2025.1-latest")))),
        "{k:#?}"
    );
    let r = check(&Context {
        up: &up,
        rendered: Ok((&x, &y, &d)),
        live_secrets: None,
    })
    .unwrap();
    assert_eq!(
        find(&r, "chart-downgrade", "longhorn").severity,
        Severity::Error
    );
    assert_eq!(
        find(&r, "image-downgrade", "keystone").severity,
        Severity::Error
    );
    assert_eq!(c.cli(&["check"], &a, &b), 1);
    assert_eq!(c.cli(&["check"], &a, &a), 0);
}

#[test]
fn the_plan_orders_waves_and_lists_hops() {
    let Some(c) = Cloud::new("plan") else {
        return;
    };
    let base = c.caracal();
    let to = hazards(&c);
    let opts = c.options(&base, &to);
    let up = Upgrade::open(&opts).unwrap();
    let p = stackwave::upgrade::plan::plan(&up, Err("not rendered in this test".into())).unwrap();
    let wave_of = |c: &str| {
        p.waves
            .iter()
            .find(|w| w.components.iter().any(|x| x == c))
            .map(|w| w.index)
    };
    assert!(wave_of("keystone") < wave_of("placement"), "{p:#?}");
    // setup-openstack.sh installs placement and nova in one parallel step (the catalog keeps
    // them in one wave); openstack-helm's dependency init containers hold nova's pods until
    // placement's endpoint answers. Never nova first.
    assert!(wave_of("placement") <= wave_of("nova"), "{p:#?}");
    assert!(wave_of("keystone") < wave_of("nova"), "{p:#?}");
    assert_eq!(
        wave_of("neutron"),
        None,
        "neutron's inputs do not change: {p:#?}"
    );
    let m = p
        .hops
        .iter()
        .find(|s| s.component == "mariadb-operator")
        .unwrap();
    assert_eq!(m.versions, ["0.36.0", "0.37.1", "0.38.1", "25.8.4"]);
    assert!(
        p.text()
            .contains("revision 3: set helm-chart-versions.yaml charts.mariadb-operator to 25.8.4"),
        "{}",
        p.text()
    );
}

/// A desired-state repository built with the git CLI and an agent following it (a state
/// directory with a store, the instance of its `file://` URL) on the test cluster.
struct AgentRepo {
    root: PathBuf,
    dir: PathBuf,
    agent: stackwave::reconcile::Agent,
    source: stackwave::source::Source,
    tc: stackwave_tests::TestCluster,
}

impl AgentRepo {
    /// An empty repository `name` and an agent whose inventories of `components` are cleaned
    /// up after the test.
    async fn new(name: &str, components: &[&str]) -> AgentRepo {
        use stackwave::cluster::instance::{Instance, DEFAULT_NAME};
        use stackwave::cluster::inventory::{inventory_name, INVENTORY_NAMESPACE};
        let root = tmp(name);
        let tc = stackwave_tests::TestCluster::start(
            kube_standin::Rules::default().with_delay(std::time::Duration::from_millis(100)),
        )
        .await;
        let dir = root.join("repo");
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        let url = format!("file://{}", dir.display());
        let instance = Instance::new(DEFAULT_NAME, &url).unwrap();
        for c in components {
            tc.cleanup_later(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": inventory_name(&instance, c), "namespace": INVENTORY_NAMESPACE}}));
        }
        let store = stackwave::record::Store::open(
            &root.join("state/revisions.sqlite"),
            &root.join("state/store.key"),
        )
        .unwrap();
        let mut agent = stackwave::reconcile::Agent::new(
            tc.cluster.clone(),
            store,
            stackwave::component::Catalog::builtin().unwrap(),
            stackwave::reconcile::Settings {
                health_timeout: std::time::Duration::from_secs(if tc.in_process() {
                    5
                } else {
                    20
                }),
                cache_dir: root.join("cache"),
                ..Default::default()
            },
        )
        .unwrap();
        agent.set_instance(instance).unwrap();
        let source = stackwave::source::Source::open(&url, "main", &root.join("state")).unwrap();
        AgentRepo {
            root,
            dir,
            agent,
            source,
            tc,
        }
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn commit(&self, msg: &str) -> String {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "-m", msg]);
        git(&self.dir, &["rev-parse", "HEAD"]).trim().to_string()
    }

    /// One loop iteration: fetch the branch head, export it, sync.
    async fn sync(&mut self) -> stackwave::reconcile::Outcome {
        let c = self.source.fetch().unwrap();
        let dir = self
            .source
            .export(&c.id, &self.root.join("checkout"))
            .unwrap();
        self.agent.sync(&dir, &c, &|_| {}).await.unwrap()
    }

    /// `data.<key>` of the ConfigMap `ns/name`, if it exists.
    async fn config_value(&self, ns: &str, name: &str, key: &str) -> Option<String> {
        self.tc
            .cluster
            .get(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns}}))
            .await
            .unwrap()
            .map(|o| o["data"][key].as_str().unwrap_or("").to_string())
    }

    /// The chart version the `operator-version` ConfigMap of the hop test's chart carries.
    async fn operator_version(&self, ns: &str) -> Option<String> {
        self.config_value(ns, "operator-version", "chartVersion")
            .await
    }

    /// Upgrade options over this repository, offline, without `--secrets`.
    fn options(&self, from: &str, to: &str, cache: &str) -> Options {
        Options {
            repo: self.dir.display().to_string(),
            from: from.into(),
            to: to.into(),
            cache_dir: self.root.join(cache),
            offline: true,
            secrets: Vec::new(),
        }
    }

    /// `diff --repo --from --to` with the agent's state directory and the test cluster as
    /// flags (`--server` or `--kubeconfig`), in process; its exit code.
    async fn cli_diff(&self, from: &str, to: &str) -> i32 {
        let mut argv = range_argv(&["diff"], &self.dir, from, to, &self.root.join("cache"));
        argv.extend([
            "--state".into(),
            self.root.join("state").display().to_string(),
        ]);
        argv.extend(target_argv(&self.tc));
        tokio::task::spawn_blocking(move || {
            stackwave::cli::run(stackwave::cli::Cli::parse_from(argv))
        })
        .await
        .unwrap()
    }
}

/// A manifests component `app` in namespace `ns`: the Namespace and `extra` documents.
fn app_component(r: &AgentRepo, ns: &str, extra: &str, cfg_extra: &str) -> String {
    let cfg = format!(
        "genestack:\n  path: base\nmanifests:\n  - name: app\n    path: manifests/app\n    wave: 0\ncomponents: []\n{cfg_extra}"
    );
    r.write("stackwave.yaml", &cfg);
    r.write(
        "manifests/app/kustomization.yaml",
        "resources:\n  - ns.yaml\n  - objects.yaml\n",
    );
    r.write(
        "manifests/app/ns.yaml",
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
    );
    r.write("manifests/app/objects.yaml", extra);
    cfg
}

fn config_map(ns: &str, name: &str, key: &str, v: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  {key}: \"{v}\"\n")
}

/// The agent checks each new commit against the last applied one before applying it: a chart
/// downgrade is refused (recorded once, reported, the applied revision stays), and applies
/// once `stackwave.yaml` acknowledges it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_a_downgrade_until_it_is_acknowledged() {
    use stackwave::reconcile::Outcome;
    let mut r = AgentRepo::new("gate", &["app"]).await;
    let ns = r.tc.ns("upgrade-gate");
    let cfg = app_component(&r, &ns, &config_map(&ns, "settings", "v", "1"), "");
    r.write("helm-chart-versions.yaml", "charts:\n  longhorn: 1.10.2\n");
    r.commit("longhorn 1.10.2");
    let out = r.sync().await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(
        r.config_value(&ns, "settings", "v").await.as_deref(),
        Some("1")
    );

    r.write("helm-chart-versions.yaml", "charts:\n  longhorn: 1.9.1\n");
    r.write(
        "manifests/app/objects.yaml",
        &config_map(&ns, "settings", "v", "2"),
    );
    r.commit("longhorn 1.9.1 (a downgrade) and a settings change");
    let out = r.sync().await;
    let Outcome::Refused { reason } = &out else {
        panic!("not refused: {out:?}")
    };
    eprintln!("refused: {reason}");
    assert!(
        reason.contains("chart-downgrade (longhorn)") && reason.contains("1.10.2 → 1.9.1"),
        "{reason}"
    );
    assert!(
        matches!(r.sync().await, Outcome::Refused { .. }),
        "refused again on the next loop"
    );
    assert_eq!(
        r.config_value(&ns, "settings", "v").await.as_deref(),
        Some("1"),
        "the last good revision stays"
    );
    let revs = r.agent.store.revisions().unwrap();
    assert_eq!(revs.len(), 2, "recorded once: {revs:?}");
    assert_eq!(revs[0].outcome, "refused");

    r.write(
        "stackwave.yaml",
        &format!("{cfg}acknowledge:\n  - {{rule: chart-downgrade, component: longhorn}}\n"),
    );
    r.commit("acknowledge the longhorn downgrade");
    let out = r.sync().await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(
        r.config_value(&ns, "settings", "v").await.as_deref(),
        Some("2")
    );
    r.tc.cleanup().await;
    let _ = std::fs::remove_dir_all(&r.root);
}

/// `diff --from A --to B --server`: revision A applied by the agent, one live field changed by
/// hand (another field manager), then B previewed — the A→B change in `objects`, and in
/// `live` what applying B does to the cluster: the same change and the hand edit undone;
/// Secret values masked everywhere; exit 1, and 0 once B is applied and live matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_from_to_against_the_live_cluster_shows_the_change_and_a_hand_edit() {
    use stackwave::reconcile::Outcome;
    use stackwave::upgrade::command::{run_diff, LiveTarget};
    let mut r = AgentRepo::new("live-diff", &["app"]).await;
    let ns = r.tc.ns("upgrade-live");
    let objects = |v: &str, password: &str| {
        format!(
            "{}---\n{}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: {ns}\nstringData:\n  password: {password}\n",
            config_map(&ns, "settings", "v", v),
            config_map(&ns, "other", "w", "a"),
        )
    };
    app_component(&r, &ns, &objects("1", "pw-before-xyzzy"), "");
    let a = r.commit("settings 1");
    let out = r.sync().await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");

    // A hand change, as `kubectl edit` makes it (an update by another field manager).
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        r.tc.cluster.client().clone(),
        &ns,
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    api.patch(
        "other",
        &kube::api::PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &kube::api::Patch::Merge(serde_json::json!({"data": {"w": "hand"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        r.config_value(&ns, "other", "w").await.as_deref(),
        Some("hand")
    );

    r.write(
        "manifests/app/objects.yaml",
        &objects("2", "pw-after-plugh"),
    );
    let b = r.commit("settings 2, a new password");
    let target = LiveTarget {
        server: r.tc.url(),
        kubeconfig: r.tc.kubeconfig(),
        state: r.root.join("state"),
    };
    let opts = r.options(&a, &b, "cache");
    let d = tokio::task::spawn_blocking(move || run_diff(&opts, Some(&target)))
        .await
        .unwrap()
        .unwrap();
    let json = serde_json::to_value(&d).unwrap();
    let text = serde_json::to_string(&json).unwrap();
    for secret in [
        "pw-before-xyzzy",
        "pw-after-plugh",
        "cHctYmVmb3JlLXh5enp5",
        "cHctYWZ0ZXItcGx1Z2g",
    ] {
        assert!(!text.contains(secret), "a Secret value leaked: {text}");
    }
    assert_eq!(json["components"].as_array().unwrap().len(), 1, "{json:#}");
    let app = &json["components"][0];
    assert_eq!(app["name"], "app");
    let ids = |list: &Json| -> Vec<(String, String, Vec<(String, Json, Json)>)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["action"].as_str().unwrap().to_string(),
                    format!(
                        "{}/{}",
                        o["kind"].as_str().unwrap(),
                        o["name"].as_str().unwrap()
                    ),
                    o["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| {
                            (
                                f["path"].as_str().unwrap().to_string(),
                                f["from"].clone(),
                                f["to"].clone(),
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    };
    let s = |v: &str| Json::from(v);
    let settings = (
        "changed".to_string(),
        "ConfigMap/settings".to_string(),
        vec![("data.v".to_string(), s("1"), s("2"))],
    );
    assert_eq!(
        ids(&app["objects"]),
        vec![
            settings.clone(),
            (
                "changed".into(),
                "Secret/creds".into(),
                vec![(
                    "stringData.password".into(),
                    s("*** (before)"),
                    s("*** (after)")
                )]
            ),
        ],
        "the revision change: {json:#}"
    );
    let live = ids(&app["live"]);
    assert_eq!(
        live.iter()
            .map(|(_, id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["ConfigMap/other", "ConfigMap/settings", "Secret/creds"],
        "against live: {json:#}"
    );
    assert_eq!(
        live[0],
        (
            "changed".into(),
            "ConfigMap/other".into(),
            vec![("data.w".into(), s("hand"), s("a"))]
        ),
        "the hand edit is undone: {json:#}"
    );
    assert_eq!(live[1], settings, "{json:#}");
    assert!(
        live[2].2.iter().all(|(p, from, to)| (p.starts_with("data.")
            || p.starts_with("stringData."))
            && from == &s("*** (before)")
            && to == &s("*** (after)")),
        "the Secret's data changes, masked: {live:?}"
    );
    let t = diff::text(&d);
    assert!(
        t.contains("against the live cluster") && t.contains("data.w: hand → a"),
        "{t}"
    );
    let m = stackwave::upgrade::markdown::diff(&d);
    assert!(
        m.contains("Against the live cluster") && m.contains("`data.w`: `hand` → `a`"),
        "{m}"
    );
    assert_eq!(r.cli_diff(&a, &b).await, 1);

    let out = r.sync().await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(r.cli_diff(&b, &b).await, 0, "B applied: live matches");
    r.tc.cleanup().await;
    let _ = std::fs::remove_dir_all(&r.root);
}

/// A Git repository of a chart `mariadb-operator`, one tag `mariadb-operator-<v>` per
/// version: the ConfigMap `operator-version` carries the chart's version, and each version's
/// `extra` documents (none when empty) go in `templates/extra.yaml`; its `file://` URL.
fn operator_chart_repo(root: &Path, versions: &[(&str, &str)]) -> String {
    let repo = root.join("operator-chart");
    std::fs::create_dir_all(repo.join("chart/templates")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join("chart/templates/version.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: operator-version\n  namespace: {{ .Release.Namespace }}\ndata:\n  chartVersion: {{ .Chart.Version | quote }}\n",
    )
    .unwrap();
    for (v, extra) in versions {
        std::fs::write(
            repo.join("chart/Chart.yaml"),
            format!("apiVersion: v2\nname: mariadb-operator\nversion: {v}\n"),
        )
        .unwrap();
        let e = repo.join("chart/templates/extra.yaml");
        if extra.is_empty() {
            let _ = std::fs::remove_file(&e);
        } else {
            std::fs::write(&e, extra).unwrap();
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", v]);
        git(&repo, &["tag", &format!("mariadb-operator-{v}")]);
    }
    format!("file://{}", repo.display())
}

/// `upgrade: {hops: true}`: a mariadb-operator pin jumping 0.36.0 → 25.8.4 over the hops
/// 0.37.1 and 0.38.1 of `policies/hops.yaml` is refused without the opt-in; with it the agent
/// applies 0.37.1, then 0.38.1 (each a recorded, health-gated revision of kind `hop`), then
/// the commit — the store's revision sequence and the chart versions applied, in order. Then
/// 25.8.4 → 26.3.0 over 25.10.4, whose chart never becomes healthy: the hop is recorded
/// failed, the commit is not applied, the applied revision stays, nothing is pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_applies_an_operator_hop_by_hop_with_the_opt_in() {
    use stackwave::reconcile::Outcome;
    use stackwave::record::RevisionKind;
    if !stackwave_tests::helm_or_skip() {
        return;
    }
    let mut r = AgentRepo::new("hops", &["mariadb-operator"]).await;
    let ns = r.tc.ns("upgrade-hops");
    r.tc.cluster
        .apply(
            &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            &Default::default(),
        )
        .await
        .unwrap();
    let legacy = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: {{ .Release.Namespace }}\ndata: {}\n";
    let never_ready = [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata:",
        "  name: operator",
        "  namespace: {{ .Release.Namespace }}",
        "spec:",
        "  replicas: 1",
        "  selector:",
        "    matchLabels: {app: operator}",
        "  template:",
        "    metadata:",
        "      labels: {app: operator}",
        "    spec:",
        "      containers:",
        "        - name: operator",
        "          image: registry.invalid/operator:25.10.4",
        "",
    ]
    .join("\n");
    let url = operator_chart_repo(
        &r.root,
        &[
            ("0.36.0", ""),
            ("0.37.1", ""),
            ("0.38.1", ""),
            ("25.8.4", legacy),
            ("25.10.4", &never_ready),
            ("26.3.0", ""),
        ],
    );
    r.write(
        "components/mariadb-operator.yaml",
        &format!(
            "name: mariadb-operator\nkind: helm\nwave: 0\nrelease:\n  name: mariadb-operator\n  namespace: {ns}\n\
             chart:\n  name: mariadb-operator\n  git: {{url: \"{url}\", path: chart, ref: \"mariadb-operator-{{version}}\"}}\n  versionKey: mariadb-operator\n\
             values:\n  dir: mariadb-operator\n  base: []\n  globalOverrides: false\n"
        ),
    );
    r.write("base/helm-chart-versions.yaml", "charts: {}\n");
    let cfg = "genestack:\n  path: base\ncomponents: [mariadb-operator]\n";
    r.write("stackwave.yaml", cfg);
    let pin = |v: &str| format!("charts:\n  mariadb-operator: {v}\n");
    r.write("helm-chart-versions.yaml", &pin("0.36.0"));
    let a = r.commit("mariadb-operator 0.36.0");
    let out = r.sync().await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(r.operator_version(&ns).await.as_deref(), Some("0.36.0"));

    r.write("helm-chart-versions.yaml", &pin("25.8.4"));
    r.commit("mariadb-operator 25.8.4");
    let out = r.sync().await;
    let Outcome::Refused { reason } = &out else {
        panic!("not refused: {out:?}")
    };
    assert!(
        reason.contains("skipped-hops (mariadb-operator)")
            && reason.contains("upgrade: {hops: true}"),
        "{reason}"
    );
    assert_eq!(r.operator_version(&ns).await.as_deref(), Some("0.36.0"));

    r.write("stackwave.yaml", &format!("{cfg}upgrade:\n  hops: true\n"));
    let c = r.commit("let the agent hop");
    let opts = r.options(&a, &c, "cache-plan");
    let p = stackwave::upgrade::plan::plan(&Upgrade::open(&opts).unwrap(), Err("inputs".into()))
        .unwrap();
    assert!(p.apply_hops, "{p:?}");
    assert!(
        p.text().contains("the agent applies these hops itself"),
        "{}",
        p.text()
    );

    let out = r.sync().await;
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(r.operator_version(&ns).await.as_deref(), Some("25.8.4"));
    let mut revs = r.agent.store.revisions().unwrap();
    revs.reverse();
    let seq: Vec<(RevisionKind, &str, &str)> = revs
        .iter()
        .map(|x| (x.kind, x.outcome.as_str(), x.message.as_str()))
        .collect();
    let short = &c[..10];
    assert_eq!(
        seq,
        [
            (RevisionKind::Commit, "healthy", "mariadb-operator 0.36.0"),
            (RevisionKind::Commit, "refused", "mariadb-operator 25.8.4"),
            (
                RevisionKind::Hop,
                "healthy",
                format!("hop 1/2 toward {short}: mariadb-operator 0.36.0 → 0.37.1").as_str()
            ),
            (
                RevisionKind::Hop,
                "healthy",
                format!("hop 2/2 toward {short}: mariadb-operator 0.37.1 → 0.38.1").as_str()
            ),
            (RevisionKind::Commit, "healthy", "let the agent hop"),
        ],
        "{revs:#?}"
    );
    assert!(revs[2..].iter().all(|x| x.commit == c), "{revs:#?}");
    // The chart version each healthy revision applied, in order.
    let applied: Vec<String> = revs
        .iter()
        .filter(|x| x.outcome == "healthy")
        .map(|x| {
            let objs = r.agent.store.objects_of(x.id).unwrap();
            let (_, objs) = objs.iter().find(|(c, _)| c == "mariadb-operator").unwrap();
            objs.iter()
                .find(|o| o["metadata"]["name"] == "operator-version")
                .and_then(|o| o["data"]["chartVersion"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(applied, ["0.36.0", "0.37.1", "0.38.1", "25.8.4"]);
    let healthy = r.agent.store.newest_healthy().unwrap();

    // A hop that never becomes healthy stops the sequence there. (25.10.4 drops `legacy`:
    // one of two objects, over the delete guard's share for so small a component.)
    r.agent.settings.max_delete_share = 1.0;
    r.write("helm-chart-versions.yaml", &pin("26.3.0"));
    let d = r.commit("mariadb-operator 26.3.0");
    let out = r.sync().await;
    assert!(matches!(out, Outcome::Failed { .. }), "{out:?}");
    let newest = &r.agent.store.revisions().unwrap()[0];
    assert_eq!(
        (
            newest.kind,
            newest.outcome.as_str(),
            newest.message.as_str(),
            newest.commit.as_str()
        ),
        (
            RevisionKind::Hop,
            "failed",
            format!(
                "hop 1/1 toward {}: mariadb-operator 25.8.4 → 25.10.4",
                &d[..10]
            )
            .as_str(),
            d.as_str()
        )
    );
    assert_eq!(
        r.agent.store.newest_healthy().unwrap(),
        healthy,
        "the applied revision stays"
    );
    assert_eq!(
        r.config_value(&ns, "legacy", "x").await,
        Some(String::new()),
        "nothing pruned after the failed hop"
    );
    r.tc.cleanup().await;
    let _ = std::fs::remove_dir_all(&r.root);
}

/// The policy data cites real material: every hop path's runbooks exist in the corpus and
/// name the versions the path lists; every chart-source note's release note says the old
/// release must go first.
#[test]
fn policy_data_matches_the_corpus_it_was_transcribed_from() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIPPED: ../shared is not there");
        return;
    };
    let g = shared.join("corpus/genestack");
    let hops = stackwave::upgrade::rules::hops::hops().unwrap();
    assert!(hops.paths.len() >= 5);
    for p in &hops.paths {
        let mut text = String::new();
        for s in &p.sources {
            text.push_str(
                &std::fs::read_to_string(g.join(s)).unwrap_or_else(|e| panic!("{s}: {e}")),
            );
        }
        for v in &p.hops {
            assert!(
                text.contains(v.as_str()),
                "{}: hop {v} is in none of {:?}",
                p.component,
                p.sources
            );
        }
    }
    let sw = stackwave::upgrade::rules::charts::switches().unwrap();
    for s in &sw.switches {
        let note = std::fs::read_to_string(g.join(&s.source)).unwrap();
        let doc = kustomize_rs::yaml::parse_one(&note).unwrap();
        let upgrade = doc
            .get("upgrade")
            .and_then(|u| u.as_seq())
            .expect("upgrade notes");
        let said: String = upgrade.iter().filter_map(|u| u.as_str()).collect();
        assert!(
            said.contains("remove existing") && said.contains(&s.component),
            "{said}"
        );
        assert!(s.first.contains("uninstall"), "{}", s.first);
        let svc = "memcached.openstack.svc.cluster.local";
        assert!(said.contains(svc) && s.first.contains(svc), "{said}");
    }
}

/// With a cluster, a Secret the new revision reads that does not exist is a `secret-missing`
/// error (and `check --server` exits 1); Secrets that exist are not reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cluster_missing_secrets_are_errors() {
    let Some(c) = Cloud::new("secret-missing") else {
        return;
    };
    let tc = stackwave_tests::TestCluster::start(kube_standin::Rules::default()).await;
    let ns = tc.fixed_ns("openstack");
    c.write("stackwave.yaml", &c.config(&["memcached", "keystone"], ""));
    let a = c.commit("keystone");
    c.write(
        "stackwave.yaml",
        &c.config(&["memcached", "keystone", "barbican"], ""),
    );
    let b = c.commit("barbican");
    let opts = c.options(&a, &b);
    let up = Upgrade::open(&opts).unwrap();
    let mut objs = vec![
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    ];
    for ((sns, name), _) in up.to.bound_secrets() {
        if name != "barbican-db-password" {
            objs.push(serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": sns}, "stringData": {"password": "x"}}));
        }
    }
    for o in &objs {
        tc.cluster.apply(o, &Default::default()).await.unwrap();
    }
    let (server, kubeconfig) = (tc.url(), tc.kubeconfig());
    let live =
        stackwave::upgrade::command::live_secrets(&up, server.as_deref(), kubeconfig.as_deref())
            .await
            .unwrap();
    let r = check(&Context {
        up: &up,
        rendered: Err("not rendered here".into()),
        live_secrets: Some(&live),
    })
    .unwrap();
    let missing: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.rule == "secret-missing")
        .collect();
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert_eq!(missing[0].severity, Severity::Error);
    assert_eq!(missing[0].component, "barbican");
    assert!(
        missing[0]
            .message
            .contains("openstack/barbican-db-password"),
        "{}",
        missing[0].message
    );
    let f = find(&r, "job-replace", "*");
    assert!(
        f.severity == Severity::Info && f.message.contains("skipped"),
        "{}",
        f.message
    );
    let target = target_argv(&tc);
    let code = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = std::iter::once("check")
            .chain(target.iter().map(String::as_str))
            .collect();
        c.cli(&args, &a, &b)
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    tc.cleanup().await;
}
