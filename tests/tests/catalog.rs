//! The component catalog against Genestack's scripts (issue 13): every install script listed
//! in `../shared/corpus/genestack/install-scripts.yaml` has an entry transcribed from it at
//! the corpus commit; every entry's bindings are the script's `--set`/`--set-string`/
//! `--set-file` flags (`tests/data/script-flags.yaml`, transcribed from the scripts); every
//! entry validates against the corpus (chart source, pins, values files, overlays, bindings);
//! quirks warn unless the entry opts into the intended behaviour; `components: auto` plans
//! Genestack's install order (`tests/data/install-order.yaml`, from the two setup scripts).

use kustomize_rs::yaml::{parse_documents, parse_one};
use stackwave::component::{Binding, BindingType, Catalog, Component, ComponentKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/genestack");
    p.join("install-scripts.yaml").is_file().then_some(p)
}

fn data(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    stackwave::component::to_json(&parse_one(&text).unwrap())
}

fn scripts_listing(dir: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(dir.join("install-scripts.yaml")).unwrap();
    let v = stackwave::component::to_json(&parse_one(&text).unwrap());
    let commit = v["commit"].as_str().unwrap().to_string();
    let install = v["install"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    (commit, install)
}

#[test]
fn every_install_script_has_a_catalog_entry() {
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/corpus/genestack not present");
        return;
    };
    let (commit, scripts) = scripts_listing(&dir);
    assert_eq!(
        scripts.len(),
        49,
        "install-scripts.yaml lists 49 install scripts"
    );
    let cat = Catalog::builtin().unwrap();
    let mut missing = Vec::new();
    for s in &scripts {
        let svc = s
            .strip_prefix("install-")
            .and_then(|x| x.strip_suffix(".sh"))
            .unwrap();
        match cat.get(svc) {
            None => missing.push(format!("{s}: no components/{svc}.yaml")),
            Some(c) => {
                let src = c
                    .source
                    .as_ref()
                    .unwrap_or_else(|| panic!("{svc}: no source"));
                assert_eq!(&src.script, s, "{svc}: transcribed from another script");
                assert_eq!(src.commit, commit, "{svc}: transcribed at another commit");
            }
        }
    }
    assert!(missing.is_empty(), "scripts without an entry: {missing:#?}");
    // Every entry names a script of the listing (or a setup script) at the same commit.
    let setup = ["setup-infrastructure.sh", "setup-openstack.sh"];
    for c in cat.components.values() {
        let src = c
            .source
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no source", c.name));
        assert!(
            scripts.contains(&src.script) || setup.contains(&src.script.as_str()),
            "{}: unknown script {}",
            c.name,
            src.script
        );
        assert_eq!(src.commit, commit, "{}", c.name);
    }
}

/// A binding written in the flag table's notation (see `tests/data/script-flags.yaml`).
fn binding_as_flag(c: &Component, b: &Binding) -> (String, String, String) {
    let flag = match b.kind {
        BindingType::Set => "--set",
        BindingType::SetString => "--set-string",
        BindingType::SetFile => "--set-file",
    };
    let template = b.template.clone().unwrap_or_else(|| "{value}".into());
    let out = stackwave::render::values::expand_template(&template, |token| {
        Ok::<String, ()>(if token == "value" {
            let ns = b.namespace.as_deref().unwrap_or(&c.release.namespace);
            format!(
                "$(Secret {ns}/{} .data.{})",
                b.secret
                    .as_deref()
                    .expect("a {value} binding names a Secret"),
                b.key.as_deref().expect("a Secret binding names a key")
            )
        } else if let Some(r) = token.strip_prefix("secret:") {
            let mut it = r.splitn(3, '/');
            let (ns, name, key) = (
                it.next().unwrap(),
                it.next().unwrap(),
                it.next().expect("secret:NS/NAME/KEY"),
            );
            format!("$(Secret {ns}/{name} .data.{key})")
        } else if let Some(f) = token.strip_prefix("field:") {
            let o = b
                .object
                .as_ref()
                .expect("a field placeholder names an object");
            let mut path = String::new();
            for seg in f.split('.') {
                if seg.chars().all(|ch| ch.is_ascii_digit()) {
                    path.push_str(&format!("[{seg}]"));
                } else {
                    path.push('.');
                    path.push_str(seg);
                }
            }
            format!("$({} {}/{} {path})", o.kind, o.namespace, o.name)
        } else if let Some(v) = token.strip_prefix("var:") {
            assert!(c.vars.contains_key(v), "{}: unknown variable {v}", c.name);
            format!("${v}")
        } else if token == "count" || token.starts_with("addresses:") {
            let q = b.nodes.as_ref().expect("a nodes placeholder names nodes");
            match token.strip_prefix("addresses:") {
                Some(sep) => format!(
                    "$(Nodes {} {} join {sep})",
                    q.label_selector, q.address_type
                ),
                None => format!("$(Nodes {} {} count)", q.label_selector, q.address_type),
            }
        } else if let Some(n) = token.strip_prefix("freePort:") {
            format!("$(FreeServicePort {n})")
        } else {
            panic!("{}: unknown placeholder {{{token}}}", c.name)
        })
    })
    .expect("a template the catalog can expand");
    (flag.to_string(), b.path.clone(), out)
}

#[test]
fn every_entry_binds_exactly_the_scripts_flags() {
    let table = data("script-flags.yaml");
    let cat = Catalog::builtin().unwrap();
    let scripts = table["scripts"].as_object().unwrap();
    if let Some(dir) = corpus() {
        let (commit, listed) = scripts_listing(&dir);
        assert_eq!(
            table["commit"],
            commit.as_str(),
            "flag table at the corpus commit"
        );
        let mut have: Vec<&String> = scripts.keys().collect();
        have.sort();
        let mut want: Vec<&String> = listed.iter().collect();
        want.sort();
        assert_eq!(have, want, "the flag table covers every install script");
    }
    let mut checked = 0;
    for (script, spec) in scripts {
        let vars: BTreeMap<String, String> = spec["vars"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, String, String)> = spec["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let mut value = f[2].as_str().unwrap().to_string();
                // Longest names first, so `$A_B` is not cut by `$A`.
                let mut names: Vec<&String> = vars.keys().collect();
                names.sort_by_key(|n| std::cmp::Reverse(n.len()));
                for n in names {
                    value = value.replace(&format!("${n}"), &vars[n]);
                }
                (
                    f[0].as_str().unwrap().to_string(),
                    f[1].as_str().unwrap().to_string(),
                    value,
                )
            })
            .collect();
        let entries: Vec<&Component> = cat
            .components
            .values()
            .filter(|c| c.source.as_ref().is_some_and(|s| &s.script == script))
            .collect();
        assert!(!entries.is_empty(), "{script}: no entry");
        let got: Vec<(String, String, String)> = entries
            .iter()
            .flat_map(|c| c.bindings.iter().map(|b| binding_as_flag(c, b)))
            .collect();
        assert_eq!(
            got, want,
            "{script}: the entry's bindings are the script's flags"
        );
        checked += want.len();
    }
    assert!(checked > 200, "{checked} flags checked");
}

fn kustomize_dir_exists(genestack: &Path, rel: &str) -> bool {
    let base = genestack.join("base-kustomize");
    if base.join(rel).join("kustomization.yaml").is_file() {
        return true;
    }
    // `<svc>/overlay` missing from base-kustomize is stubbed to `../base`, as Genestack's
    // bootstrap writes it into /etc/genestack/kustomize (and the oracle stubs it).
    rel.strip_suffix("/overlay")
        .is_some_and(|svc| base.join(svc).join("base/kustomization.yaml").is_file())
}

#[test]
fn every_entry_validates_against_the_corpus() {
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/corpus/genestack not present");
        return;
    };
    let cat = Catalog::builtin().unwrap();
    let pins_text = std::fs::read_to_string(dir.join("helm-chart-versions.yaml")).unwrap();
    let pins = parse_documents(&pins_text).unwrap();
    let pinned = |k: &str| pins.iter().any(|d| d.get_path(&["charts", k]).is_some());
    let sources = stackwave::render::values::Sources {
        genestack: dir.clone(),
        overrides: None,
    };
    let mut problems = Vec::new();
    let mut p = |c: &Component, what: String| problems.push(format!("{}: {what}", c.name));
    for c in cat.components.values() {
        for d in &c.depends_on {
            if cat.get(d).is_none() {
                p(c, format!("dependsOn {d}: no such entry"));
            }
            if cat.get(d).is_some_and(|x| x.wave >= c.wave) {
                p(c, format!("dependsOn {d}, which is not in an earlier wave"));
            }
        }
        if c.example {
            continue;
        }
        match c.kind {
            ComponentKind::Helm => {
                let ch = &c.chart;
                let n = [ch.repo.is_some(), ch.oci.is_some(), ch.git.is_some()]
                    .iter()
                    .filter(|x| **x)
                    .count();
                match &ch.genestack_path {
                    Some(gp) if !dir.join(gp).join("Chart.yaml").is_file() => {
                        p(c, format!("chart directory {gp} has no Chart.yaml"))
                    }
                    Some(_) if n != 0 => p(c, "a Genestack chart directory and a remote".into()),
                    None if n != 1 => p(c, format!("{n} chart sources (need one)")),
                    _ => {}
                }
                if let Some(oci) = &ch.oci {
                    if !oci.starts_with("oci://") {
                        p(c, format!("oci source {oci} is not oci://"));
                    }
                }
                let key = ch.version_key.clone().unwrap_or_else(|| ch.name.clone());
                let no_pin_quirk = c.quirks.iter().any(|q| q.id == "no-pinned-version");
                if ch.genestack_path.is_none() && !pinned(&key) && !no_pin_quirk {
                    p(c, format!("no pin {key} in helm-chart-versions.yaml"));
                }
                if no_pin_quirk && pinned(&key) {
                    p(c, format!("quirk no-pinned-version, but {key} is pinned"));
                }
                for b in c.values.base.iter().flatten() {
                    if !dir.join(b).exists() && !b.ends_with("/rules") {
                        p(c, format!("values base {b} does not exist"));
                    }
                }
                for f in stackwave::render::values::value_files(
                    &stackwave::render::reads::Reader::new(),
                    &sources,
                    &c.values,
                ) {
                    let text = std::fs::read_to_string(&f).unwrap();
                    if let Err(e) = parse_documents(&text) {
                        p(c, format!("values file {}: {e}", f.display()));
                    }
                }
                let no_overlay_quirk = c.quirks.iter().any(|q| q.id == "no-post-render-overlay");
                if let Some(pr) = &c.post_render {
                    if kustomize_dir_exists(&dir, &pr.overlay) == no_overlay_quirk {
                        p(
                            c,
                            format!("post-render overlay {} does not exist", pr.overlay),
                        );
                    }
                }
                for b in &c.bindings {
                    // Resolvable: every placeholder names what it reads (panics name it).
                    let _ = binding_as_flag(c, b);
                    if b.secret.is_some() != b.key.is_some() {
                        p(c, format!("binding {}: a Secret needs a key", b.path));
                    }
                }
                for v in c.vars.values() {
                    if cat.get(&v.values_of).is_none() {
                        p(c, format!("variable reads {}: no such entry", v.values_of));
                    }
                }
            }
            ComponentKind::Kustomize => {
                let k = c.kustomize.as_ref().expect("kind kustomize has kustomize:");
                if !kustomize_dir_exists(&dir, &k.path) {
                    p(c, format!("kustomize path {} does not exist", k.path));
                }
            }
            ComponentKind::Manifests => {
                if c.manifests.is_empty() {
                    p(c, "kind manifests lists no file".into());
                }
                for m in &c.manifests {
                    let f = dir.join(m);
                    match std::fs::read_to_string(&f) {
                        Err(e) => p(c, format!("{m}: {e}")),
                        Ok(t) => {
                            if let Err(e) = parse_documents(&t) {
                                p(c, format!("{m}: {e}"));
                            }
                        }
                    }
                }
            }
        }
        for pr in &c.prepare {
            if let Some(a) = &pr.apply {
                if !dir.join(a).is_file() {
                    p(c, format!("prepare applies {a}, which does not exist"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn quirks_warn_unless_the_entry_opts_into_the_intended_behaviour() {
    let cat = Catalog::builtin().unwrap();
    for (name, id) in [
        ("sealed-secrets", "post-render-drops-chart"),
        ("topolvm", "version-not-pinned"),
        ("kube-ovn", "tls-secret-must-exist"),
    ] {
        let c = cat.get(name).unwrap();
        let w = c.quirk_warnings();
        assert!(
            w.iter()
                .any(|x| x.starts_with(&format!("component {name}: {id}: "))),
            "{name}: {w:?}"
        );
    }
    // The script's behaviour by default: sealed-secrets post-renders through `base`.
    let ss = cat.get("sealed-secrets").unwrap();
    assert_eq!(
        ss.post_render.as_ref().unwrap().overlay,
        "sealed-secrets/base"
    );
    // An entry that opts in gets the intended behaviour and no warning for that quirk.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components");
    let text = std::fs::read_to_string(root.join("sealed-secrets.yaml")).unwrap();
    let opted = format!("{text}intended: [post-render-drops-chart]\n");
    let c = stackwave::component::parse(&opted, "sealed-secrets.yaml").unwrap();
    assert!(c.post_render.is_none(), "intended: the whole chart is kept");
    assert!(c.quirk_warnings().is_empty());
    let text = std::fs::read_to_string(root.join("topolvm.yaml")).unwrap();
    let c = stackwave::component::parse(&format!("{text}intended: [version-not-pinned]\n"), "t")
        .unwrap();
    assert!(c.chart.pinned);
    // Naming a quirk the entry does not have is an error naming the file.
    let err = stackwave::component::parse(&format!("{text}intended: [nope]\n"), "topolvm.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("topolvm.yaml") && err.contains("nope"),
        "{err}"
    );
}

#[test]
fn components_auto_plans_genestacks_install_order() {
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/corpus/genestack not present");
        return;
    };
    let order = data("install-order.yaml");
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    // The services the corpus's openstack-components.yaml enables.
    let oc = std::fs::read_to_string(dir.join("openstack-components.yaml")).unwrap();
    let oc = stackwave::component::to_json(&parse_documents(&oc).unwrap()[0]);
    let on = |n: &str| oc["components"][n] == serde_json::Value::Bool(true);
    let mut want: Vec<Vec<String>> = names(&order["infrastructure"])
        .into_iter()
        .map(|n| vec![n])
        .collect();
    want.push(vec![order["openstack"]["first"]
        .as_str()
        .unwrap()
        .to_string()]);
    let mut parallel: Vec<String> = names(&order["openstack"]["parallel"])
        .into_iter()
        .filter(|n| on(n))
        .collect();
    parallel.sort();
    assert!(
        parallel.len() >= 3,
        "the corpus enables services: {parallel:?}"
    );
    want.push(parallel);
    let last = order["openstack"]["last"].as_str().unwrap();
    if on(last) {
        want.push(vec![last.to_string()]);
    }

    // A repository whose stackwave.yaml says `components: auto`, on the corpus's Genestack base.
    let repo = std::env::temp_dir().join(format!("stackwave-auto-{}", std::process::id()));
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("stackwave.yaml"),
        format!("genestack:\n  path: {}\ncomponents: auto\n", dir.display()),
    )
    .unwrap();
    let cfg = stackwave::reconcile::read_config(&repo).unwrap();
    let cat = Catalog::builtin().unwrap();
    let waves = stackwave::reconcile::plan_waves(&cat, &cfg).unwrap();
    let got: Vec<Vec<String>> = waves.iter().map(|w| w.components.clone()).collect();
    assert_eq!(got, want, "components: auto plans the setup scripts' order");
    let auto = cfg.components.clone();

    // `components:` left out, or given no value, is `auto`; an explicit `[]` enables none.
    for tail in ["", "components:\n", "components: ~\n"] {
        std::fs::write(
            repo.join("stackwave.yaml"),
            format!("genestack:\n  path: {}\n{tail}", dir.display()),
        )
        .unwrap();
        let cfg = stackwave::reconcile::read_config(&repo).unwrap();
        assert_eq!(cfg.components, auto, "{tail:?} is components: auto");
    }
    std::fs::write(
        repo.join("stackwave.yaml"),
        format!("genestack:\n  path: {}\ncomponents: []\n", dir.display()),
    )
    .unwrap();
    let cfg = stackwave::reconcile::read_config(&repo).unwrap();
    assert!(cfg.components.is_empty(), "{:?}", cfg.components);
    assert!(stackwave::reconcile::plan_waves(&cat, &cfg)
        .unwrap()
        .is_empty());

    // An explicit list still means exactly that list; another word is an error naming the file.
    std::fs::write(
        repo.join("stackwave.yaml"),
        format!(
            "genestack:\n  path: {}\ncomponents: [memcached]\n",
            dir.display()
        ),
    )
    .unwrap();
    let cfg = stackwave::reconcile::read_config(&repo).unwrap();
    assert_eq!(cfg.components, ["memcached"]);
    std::fs::write(
        repo.join("stackwave.yaml"),
        format!("genestack:\n  path: {}\ncomponents: all\n", dir.display()),
    )
    .unwrap();
    let err = stackwave::reconcile::read_config(&repo).unwrap_err();
    assert!(
        err.to_string().contains("stackwave.yaml") && err.to_string().contains("auto"),
        "{err}"
    );
    std::fs::remove_dir_all(&repo).ok();
}

/// The reference tools (`scripts/setup`): Python with helm-python-sdk, and kubectl.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin");
    let (py, kubectl) = (venv.join("python"), venv.join("kubectl"));
    (py.is_file() && kubectl.is_file()).then_some((py, kubectl))
}

/// The corpus and the reference tools, or `None` after printing why the test is skipped.
fn corpus_and_tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/corpus/genestack not present");
        return None;
    };
    let Some((py, kubectl)) = tools() else {
        eprintln!("SKIPPED: no reference tools in .tools/venv (scripts/setup)");
        return None;
    };
    Some((dir, py, kubectl))
}

/// Drops the documents of `Secret kube-ovn-tls`: without a cluster, kube-ovn's
/// `templates/ovn-tls-secret.yaml` finds no Secret through `lookup` and calls
/// genCA/genSignedCert, so that one document differs on every render (charts/INFRA.md
/// note 6); everything else must match byte for byte.
fn without_random_tls(text: &str) -> String {
    text.split("\n---\n")
        .filter(|d| !(d.contains("\nkind: Secret\n") && d.contains("\n  name: kube-ovn-tls\n")))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn infrastructure_charts_render_as_their_install_scripts() {
    let Some((dir, py, kubectl)) = corpus_and_tools() else {
        return;
    };
    let shared = dir.join("../..");
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("helpers/infra-oracle");
    let mut inputs = stackwave_tests::genestack_inputs(&shared, None);
    // The master nodes install-kube-ovn.sh reads with kubectl (the helper passes the same).
    for (i, ip) in ["192.0.2.21", "192.0.2.22", "192.0.2.23"]
        .iter()
        .enumerate()
    {
        inputs.objects.insert(
            parse_one(&format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: master-{i}\n  labels:\n    \
                 kube-ovn/role: master\nstatus:\n  addresses:\n  - type: Hostname\n    \
                 address: master-{i}\n  - type: InternalIP\n    address: {ip}\n"
            ))
            .unwrap(),
        );
    }
    // A worker that is not a master must not count.
    inputs.objects.insert(
        parse_one(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-0\nstatus:\n  addresses:\n  \
             - type: InternalIP\n    address: 192.0.2.99\n",
        )
        .unwrap(),
    );
    let components = [
        "mariadb-operator-crds",
        "mariadb-operator",
        "metallb",
        "cert-manager",
        "sealed-secrets",
        "topolvm",
        "kube-ovn",
        "envoy-gateway",
        "postgres-operator",
        "redis-operator",
        "kube-prometheus-stack",
        // chart.genestackPath: the chart directory of the Genestack checkout.
        "openstack-exporter",
    ];
    let mut failures = Vec::new();
    for c in components {
        let out = std::process::Command::new(&py)
            .arg(&helper)
            .arg("--shared")
            .arg(&shared)
            .args(["--component", c])
            .arg("--kubectl")
            .arg(&kubectl)
            .output()
            .expect("run infra-oracle");
        assert!(
            out.status.success(),
            "infra-oracle {c}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = String::from_utf8(out.stdout).unwrap();
        let got = stackwave::render::render_component(&inputs, c)
            .unwrap_or_else(|e| panic!("{c}: {e}"))
            .text()
            .unwrap();
        let (got, want) = if c == "kube-ovn" {
            assert!(
                got.contains("192.0.2.21,192.0.2.22,192.0.2.23"),
                "MASTER_NODES bound"
            );
            (without_random_tls(&got), without_random_tls(&want))
        } else {
            (got, want)
        };
        if got != want {
            let at = got
                .bytes()
                .zip(want.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            failures.push(format!(
                "{c}: differs at byte {at}: ours {:?} / reference {:?}",
                got.get(at.saturating_sub(80)..(at + 80).min(got.len()))
                    .unwrap_or(""),
                want.get(at.saturating_sub(80)..(at + 80).min(want.len()))
                    .unwrap_or("")
            ));
        }
    }
    println!(
        "infrastructure renders: {} match, {} differ",
        components.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Copies a directory tree (for a scratch copy of `base-kustomize/`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (s, d) = (e.path(), to.join(e.file_name()));
        if s.is_dir() {
            copy_tree(&s, &d);
        } else {
            std::fs::copy(&s, &d).unwrap();
        }
    }
}

#[test]
fn kustomize_and_manifest_entries_render_as_kubectl_applies_them() {
    let Some((dir, _, kubectl)) = corpus_and_tools() else {
        return;
    };
    let inputs = stackwave_tests::genestack_inputs(&dir.join("../.."), None);
    // A scratch copy of base-kustomize with Genestack's overlay stubs, as /etc/genestack has.
    let scratch = std::env::temp_dir().join(format!("stackwave-kust-{}", std::process::id()));
    copy_tree(&dir.join("base-kustomize"), &scratch);
    let cat = Catalog::builtin().unwrap();
    let mut checked = 0;
    for c in cat.components.values() {
        let Some(k) = c.kustomize.as_ref() else {
            continue;
        };
        let kust = scratch.join(&k.path).join("kustomization.yaml");
        let base =
            std::fs::read_to_string(scratch.join(&k.path).join("../base/kustomization.yaml"));
        let remote = std::fs::read_to_string(scratch.join(&k.path).join("kustomization.yaml"))
            .or(base)
            .is_ok_and(|t| t.contains("https://"));
        if remote {
            // The rabbitmq operators are remote release manifests: not fetched in tests.
            continue;
        }
        if !kust.is_file() {
            std::fs::create_dir_all(kust.parent().unwrap()).unwrap();
            std::fs::write(&kust, stackwave::render::postrender::OVERLAY_STUB).unwrap();
        }
        let out = std::process::Command::new(&kubectl)
            .args(["kustomize", &k.path])
            .current_dir(&scratch)
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let got = stackwave::render::render_component(&inputs, &c.name)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name))
            .text()
            .unwrap();
        assert_eq!(got, String::from_utf8(out.stdout).unwrap(), "{}", c.name);
        checked += 1;
    }
    std::fs::remove_dir_all(&scratch).ok();
    assert!(checked >= 5, "{checked} kustomize entries compared");
    // metallb-pools: the pools file's documents, in order.
    let got = stackwave::render::render_component(&inputs, "metallb-pools")
        .unwrap()
        .text()
        .unwrap();
    let want =
        std::fs::read_to_string(dir.join("manifests/metallb/metallb-openstack-service-lb.yml"))
            .unwrap();
    let kinds = |t: &str| -> Vec<String> {
        parse_documents(t)
            .unwrap()
            .iter()
            .filter_map(|d| d.str_at(&["kind"]).map(str::to_string))
            .collect()
    };
    assert!(!kinds(&want).is_empty());
    assert_eq!(kinds(&got), kinds(&want));
    assert_eq!(
        parse_documents(&got).unwrap(),
        parse_documents(&want)
            .unwrap()
            .into_iter()
            .filter(|d| !matches!(d, kustomize_rs::yaml::Value::Null))
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_first_operator_values_file_switches_each_chart_by_its_own_key() {
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/corpus/genestack not present");
        return;
    };
    // install-mariadb-operator.sh reads chart.service_name for the operator and
    // chart.service_crds for the CRD chart from the same first file (swapped here, so a wrong
    // key shows).
    let o = std::env::temp_dir().join(format!("stackwave-chartkey-{}", std::process::id()));
    std::fs::create_dir_all(o.join("helm-configs/mariadb-operator")).unwrap();
    std::fs::write(
        o.join("helm-configs/mariadb-operator/a.yaml"),
        "chart:\n  service_name: mariadb-operator-crds\n  service_crds: mariadb-operator\n",
    )
    .unwrap();
    // install-topolvm.sh reads no chart block.
    std::fs::create_dir_all(o.join("helm-configs/topolvm")).unwrap();
    std::fs::write(
        o.join("helm-configs/topolvm/a.yaml"),
        "chart:\n  service_name: metallb\n",
    )
    .unwrap();
    let inputs = stackwave_tests::genestack_inputs(&dir.join("../.."), Some(&o));
    let chart = |c: &str| {
        stackwave::render::plan(&inputs, &stackwave::render::reads::Reader::new(), c)
            .unwrap()
            .chart_name
    };
    assert_eq!(chart("mariadb-operator"), "mariadb-operator-crds");
    assert_eq!(chart("mariadb-operator-crds"), "mariadb-operator");
    assert_eq!(chart("topolvm"), "topolvm");
    std::fs::remove_dir_all(&o).ok();
}

/// `chart.genestackPath` (install-openstack-exporter.sh installs
/// `${GENESTACK_BASE_DIR}/base-helm-configs/openstack-api-exporter-chart`): the chart is found
/// in the Genestack checkout whatever the chart store, at its Chart.yaml version; a path with
/// no chart, or one leaving the checkout, is an error naming it. `helm.skipCrds`
/// (`--skip-crds`): a chart's `crds/` are left out of the render.
#[test]
fn genestack_path_charts_are_found_and_skip_crds_leaves_crds_out() {
    let Some(dir) = corpus() else {
        eprintln!("SKIPPED: ../shared/corpus/genestack not present");
        return;
    };
    let mut inputs = stackwave_tests::genestack_inputs(&dir.join("../.."), None);
    let reads = stackwave::render::reads::Reader::new();
    let p = stackwave::render::plan(&inputs, &reads, "openstack-exporter").unwrap();
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap();
    assert_eq!(
        canon(&p.located.path),
        canon(&dir.join("base-helm-configs/openstack-api-exporter-chart"))
    );
    assert_eq!(p.version, "0.1.0", "the chart's own version (no --version)");
    // Not under the charts directory (nor any remote): the checkout's directory is used.
    inputs.charts = stackwave::render::charts::ChartStore::Dir(dir.join("no-charts-here"));
    assert!(stackwave::render::plan(&inputs, &reads, "openstack-exporter").is_ok());
    let mut broken = inputs.catalog.components["openstack-exporter"].clone();
    for (rel, want) in [
        ("base-helm-configs/no-such-chart", "has no Chart.yaml"),
        (
            "../genestack/base-helm-configs/openstack-api-exporter-chart",
            "inside the Genestack checkout",
        ),
        ("/etc/genestack", "inside the Genestack checkout"),
    ] {
        broken.chart.genestack_path = Some(rel.into());
        inputs
            .catalog
            .components
            .insert("openstack-exporter".into(), broken.clone());
        let e = stackwave::render::plan(&inputs, &reads, "openstack-exporter")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("openstack-exporter") && e.contains(rel) && e.contains(want),
            "{e}"
        );
    }

    if !stackwave_tests::helm_or_skip() {
        return;
    }
    let inputs = stackwave_tests::genestack_inputs(&dir.join("../.."), None);
    let crds = |inputs: &stackwave::render::Inputs| {
        let r = stackwave::render::render_component(inputs, "postgres-operator").unwrap();
        parse_documents(&r.crds)
            .unwrap()
            .iter()
            .filter(|d| d.str_at(&["kind"]) == Some("CustomResourceDefinition"))
            .count()
    };
    assert_eq!(
        crds(&inputs),
        3,
        "postgres-operator's crds/ (charts/INFRA.md)"
    );
    let mut skipping = inputs.clone();
    let pg = skipping
        .catalog
        .components
        .get_mut("postgres-operator")
        .unwrap();
    pg.helm.skip_crds = true;
    assert_eq!(crds(&skipping), 0, "--skip-crds");
}
