//! Observability, proven: the alert rules (`deploy/alerts/rules.yaml`) pass their
//! `promtool test rules` unit test and match the PrometheusRule shipped in `deploy/`; and a
//! real Prometheus server (Debian package `prometheus`) on loopback, scraping a running agent,
//! sees the drift alert go `firing` after an out-of-band edit and resolve once the agent
//! corrects it, and evaluates every expression of the Grafana dashboard.
//!
//! The cluster is the API test server, or the real one `STACKWAVE_TEST_KUBECONFIG` names.
//! Tests needing `promtool` or `prometheus` print `SKIPPED:` when they are not installed
//! (`scripts/setup` installs them).

use serde_json::{json, Value as Json};
use stackwave_tests::{free_port, http_get};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_file(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v =
        kustomize_rs::yaml::parse_one(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    stackwave::component::to_json(&v)
}

/// An installed Prometheus tool (`promtool`, `prometheus`): on `PATH` or in `/usr/bin`.
fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn rules() -> Json {
    yaml_file(&root().join("deploy/alerts/rules.yaml"))
}

fn alert_rules(groups: &Json) -> Vec<Json> {
    groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn promtool_unit_tests_cover_every_rule_and_pass() {
    let Some(promtool) = tool("promtool") else {
        eprintln!("SKIPPED: promtool not installed (scripts/setup installs Debian's prometheus)");
        return;
    };
    let dir = root().join("deploy/alerts");
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "rules_test.yaml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert is expected to fire somewhere in the unit test, and to stay silent somewhere.
    let t = yaml_file(&dir.join("rules_test.yaml"));
    let cases: Vec<&Json> = t["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["alert_rule_test"].as_array().unwrap())
        .collect();
    for r in alert_rules(&rules()) {
        let name = r["alert"].as_str().unwrap();
        let of = |firing: bool| {
            cases.iter().any(|c| {
                c["alertname"] == name
                    && c["exp_alerts"]
                        .as_array()
                        .is_some_and(|a| a.is_empty() != firing)
            })
        };
        assert!(of(true), "{name}: no promtool case where it fires");
        assert!(of(false), "{name}: no promtool case where it stays silent");
    }
}

#[test]
fn prometheusrule_carries_the_rule_file_and_every_alert_is_actionable() {
    let groups = rules();
    let pr = yaml_file(&root().join("deploy/prometheusrule.yaml"));
    assert_eq!(pr["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pr["kind"], "PrometheusRule");
    // kube-prometheus-stack's default ruleSelector: `release: <its release name>`.
    assert_eq!(pr["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        pr["spec"]["groups"], groups["groups"],
        "deploy/prometheusrule.yaml spec.groups differs from deploy/alerts/rules.yaml groups"
    );
    let runbook = std::fs::read_to_string(root().join("deploy/alerts/runbook.md")).unwrap();
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let all = alert_rules(&groups);
    assert!(all.len() >= 6, "{all:?}");
    for r in &all {
        let name = r["alert"].as_str().unwrap();
        let sev = r["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        // A component label: static, or the series' own (`component` of per-component metrics).
        assert!(
            r["labels"]["component"].is_string()
                || r["expr"].as_str().unwrap().contains("stackwave_drift")
                || r["expr"]
                    .as_str()
                    .unwrap()
                    .contains("stackwave_component_healthy"),
            "{name}: no component label"
        );
        for a in ["summary", "description", "runbook_url"] {
            assert!(r["annotations"][a].is_string(), "{name}: no {a}");
        }
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url.rsplit_once('#').map(|(_, a)| a).unwrap_or("");
        assert_eq!(anchor, name.to_lowercase(), "{name}: runbook_url {url}");
        assert!(anchors.contains(anchor), "{name}: no section in runbook.md");
    }
}

/// The cluster the live tests use: the shared test environment (the API test server started
/// here, or the real one named by `STACKWAVE_TEST_KUBECONFIG`) with the controller stand-in
/// as a separate client; objects `never_ready` names (`Kind/name`) never turn ready. Returns
/// the environment, a client, and the server URL or kubeconfig for the CLI. The only place
/// this file gets a cluster; a test's namespace must be given to `TestCluster::fixed_ns` for
/// the stand-in to act there.
async fn test_cluster(
    never_ready: &[&str],
) -> (
    stackwave_tests::TestCluster,
    stackwave::cluster::Cluster,
    Option<String>,
    Option<PathBuf>,
) {
    let mut rules = kube_standin::Rules::default();
    for p in never_ready {
        rules = rules.never_ready(p);
    }
    let tc = stackwave_tests::TestCluster::start(rules).await;
    let (c, url, kc) = (tc.cluster.clone(), tc.url(), tc.kubeconfig());
    (tc, c, url, kc)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server process, killed when dropped.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Instant query through `/api/v1/query`: the API's whole answer.
    fn query(&self, q: &str) -> Json {
        let (code, body) = http_get(self.port, &format!("/api/v1/query?query={}", urlencode(q)))
            .unwrap_or_else(|e| panic!("query {q}: {e}"));
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("query {q}: HTTP {code}, not JSON ({e}): {body}"))
    }

    /// The value of a one-series query, if it has one.
    fn value(&self, q: &str) -> Option<f64> {
        let r = self.query(q);
        r["data"]["result"].as_array()?.first()?["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// `/api/v1/alerts`: the pending and firing alerts.
    fn alerts(&self) -> Vec<Json> {
        let (_, body) = http_get(self.port, "/api/v1/alerts").unwrap();
        let v: Json = serde_json::from_str(&body).unwrap();
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The rules with every `for:` shortened to 2s (the live test's overlay).
fn fast_rules() -> String {
    std::fs::read_to_string(root().join("deploy/alerts/rules.yaml"))
        .unwrap()
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 2s\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect()
}

fn start_prometheus(bin: &Path, dir: &Path, agent_port: u16) -> Prometheus {
    std::fs::write(dir.join("rules.yaml"), fast_rules()).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n- rules.yaml\nscrape_configs:\n- job_name: stackwave\n  static_configs:\n  - targets: ['127.0.0.1:{agent_port}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = dir.join("prometheus.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Prometheus { child, port, log }
}

/// Polls `f` every 250 ms until it gives a value, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Family name → type, from an exposition's `# TYPE` lines.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// The value of the sample line `series` (name and labels as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Every `expr` of a dashboard (panels, rows, annotations), with Grafana's interval
/// variables given values.
fn dashboard_exprs(d: &Json, out: &mut Vec<String>) {
    match d {
        Json::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Json::String(e)) => out.push(
                        e.replace("$__rate_interval", "1m")
                            .replace("$__range", "5m")
                            .replace("$__interval", "1s"),
                    ),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Json::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// A desired-state directory: one `manifests:` component `app` holding namespace `ns`, the
/// ConfigMap `settings` (`data.mode: desired`) and `more` objects.
fn write_repo(repo: &Path, ns: &str, more: &[Json]) {
    let app = repo.join("manifests/app");
    let _ = std::fs::remove_dir_all(&app);
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(repo.join("empty")).unwrap();
    std::fs::write(
        repo.join("stackwave.yaml"),
        "genestack:\n  path: empty\ncharts:\n  path: empty\nmanifests:\n- name: app\n  path: manifests/app\ncomponents: []\n",
    )
    .unwrap();
    let mut objs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": ns}, "data": {"mode": "desired"}}),
    ];
    objs.extend(more.iter().cloned());
    let mut k = "resources:\n".to_string();
    for (i, o) in objs.iter().enumerate() {
        std::fs::write(app.join(format!("o{i}.yaml")), o.to_string()).unwrap();
        k.push_str(&format!("- o{i}.yaml\n"));
    }
    std::fs::write(app.join("kustomization.yaml"), k).unwrap();
}

/// Removes a test's temporary directory and, on a real cluster, its namespace.
async fn clean_up(cluster: &stackwave::cluster::Cluster, real: bool, ns: &str, tmp: &Path) {
    if real {
        let nss: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(cluster.client().clone());
        let _ = nss.delete(ns, &Default::default()).await;
    }
    let _ = std::fs::remove_dir_all(tmp);
}

/// The drift alert of component `app` in Prometheus's alert list, and its state.
fn drift_alert(p: &Prometheus) -> Option<String> {
    p.alerts()
        .into_iter()
        .find(|a| {
            a["labels"]["alertname"] == "StackwaveDriftPresent" && a["labels"]["component"] == "app"
        })
        .and_then(|a| a["state"].as_str().map(String::from))
}

#[tokio::test(flavor = "multi_thread")]
async fn live_prometheus_fires_and_resolves_the_drift_alert() {
    let Some(bin) = tool("prometheus") else {
        eprintln!("SKIPPED: prometheus not installed (scripts/setup installs Debian's prometheus)");
        return;
    };
    let (_server, cluster, server, kubeconfig) = test_cluster(&[]).await;
    let tmp = std::env::temp_dir().join(format!("stackwave-alerts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (repo, state, prom_dir) = (tmp.join("repo"), tmp.join("state"), tmp.join("prometheus"));
    for d in [&repo, &state, &prom_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The desired state: a plain directory (snapshotted per fetch) with one ConfigMap.
    let ns = format!("stackwave-alerts-{}", std::process::id());
    _server.fixed_ns(&ns);
    write_repo(&repo, &ns, &[]);

    // The agent, in-process on its own thread and runtime, every second.
    let agent_port = free_port();
    let opts = stackwave::run::RunOptions {
        repo: repo.display().to_string(),
        branch: "main".into(),
        instance: "alerts".into(),
        state: state.clone(),
        server,
        kubeconfig,
        interval: Duration::from_secs(1),
        once: false,
        detect_only: false,
        settings: stackwave::reconcile::Settings {
            health_timeout: Duration::from_secs(60),
            cache_dir: tmp.join("cache"),
            ..Default::default()
        },
        metrics_addr: Some(([127, 0, 0, 1], agent_port).into()),
        webhook_addr: None,
        webhook_secret_file: None,
        watch: false,
        auth: Default::default(),
        allowed_signers: None,
        lease: None,
        store_key: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::select! {
                r = stackwave::run::run(opts) => r.map(|_| ()),
                _ = stopped => Ok(()),
            }
        })
    });

    // Probes: alive at once, ready after the first reconcile.
    wait_for("the agent's /healthz", Duration::from_secs(60), || {
        http_get(agent_port, "/healthz")
            .ok()
            .filter(|(c, _)| *c == 200)
    });
    wait_for("the agent's /readyz", Duration::from_secs(60), || {
        http_get(agent_port, "/readyz")
            .ok()
            .filter(|(c, _)| *c == 200)
    });
    // What one healthy revision exports.
    let text = wait_for("revision 1 in /metrics", Duration::from_secs(30), || {
        let (_, t) = http_get(agent_port, "/metrics").ok()?;
        t.contains("stackwave_revisions_total{outcome=\"healthy\"} 1")
            .then_some(t)
    });
    let fam = families(&text);
    for (name, ty) in [
        ("stackwave_reconcile_duration_seconds", "histogram"),
        ("stackwave_wave_duration_seconds", "histogram"),
        ("stackwave_git_fetch_duration_seconds", "histogram"),
        ("stackwave_objects_applied_total", "counter"),
        ("stackwave_objects_pruned_total", "counter"),
        ("stackwave_drift_fields", "gauge"),
        ("stackwave_drift_objects", "gauge"),
        ("stackwave_applied_revision_info", "gauge"),
        ("stackwave_component_healthy", "gauge"),
        (
            "stackwave_last_successful_reconcile_timestamp_seconds",
            "gauge",
        ),
    ] {
        assert_eq!(
            fam.get(name).map(String::as_str),
            Some(ty),
            "{name}:\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "stackwave_objects_applied_total{component=\"app\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "stackwave_component_healthy{component=\"app\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "stackwave_wave_duration_seconds_count{wave=\"0\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "stackwave_applied_revision"), Some(1.0));
    let info = text
        .lines()
        .find(|l| l.starts_with("stackwave_applied_revision_info{"))
        .unwrap_or_else(|| panic!("no info series:\n{text}"));
    assert!(
        info.contains("revision=\"1\"") && info.ends_with(" 1"),
        "{info}"
    );
    assert!(sample(&text, "stackwave_git_fetch_duration_seconds_count").is_some_and(|n| n >= 1.0));
    assert!(sample(
        &text,
        "stackwave_last_successful_reconcile_timestamp_seconds"
    )
    .is_some_and(|t| t > 1.0e9));
    assert_eq!(sample(&text, "stackwave_git_fetch_errors_total"), Some(0.0));

    let prom = start_prometheus(&bin, &prom_dir, agent_port);
    wait_for(
        "Prometheus scraping the agent",
        Duration::from_secs(60),
        || {
            (http_get(prom.port, "/-/ready").ok()?.0 == 200).then_some(())?;
            (prom.value("up{job=\"stackwave\"}")? == 1.0).then_some(())
        },
    );
    assert_eq!(drift_alert(&prom), None, "no drift yet");

    // Suspended (drift reported, not corrected), someone edits the ConfigMap.
    stackwave::control::suspend(&state, "alert test").unwrap();
    wait_for(
        "stackwave_suspended 1 in Prometheus",
        Duration::from_secs(30),
        || (prom.value("stackwave_suspended")? == 1.0).then_some(()),
    );
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(cluster.client().clone(), &ns);
    api.patch(
        "settings",
        &kube::api::PatchParams::apply("kubectl-edit").force(),
        &kube::api::Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings"}, "data": {"mode": "edited by hand"}})),
    )
    .await
    .unwrap();
    let mut seen = BTreeSet::new();
    wait_for(
        "StackwaveDriftPresent firing",
        Duration::from_secs(60),
        || {
            let s = drift_alert(&prom)?;
            seen.insert(s.clone());
            (s == "firing").then_some(())
        },
    );
    assert!(prom
        .value("stackwave_drift_fields{component=\"app\"}")
        .is_some_and(|v| v >= 1.0));
    assert!(prom.value("stackwave_drift_objects{component=\"app\"}") == Some(1.0));

    // Resumed: the agent corrects the ConfigMap and the alert resolves.
    stackwave::control::resume(&state).unwrap();
    wait_for(
        "StackwaveDriftPresent resolved",
        Duration::from_secs(60),
        || drift_alert(&prom).is_none().then_some(()),
    );
    let live = api.get("settings").await.unwrap();
    assert_eq!(
        live.data.unwrap()["mode"],
        "desired",
        "the agent corrected the edit"
    );
    assert_eq!(
        prom.value("stackwave_drift_fields{component=\"app\"}"),
        Some(0.0)
    );

    // The dashboard: every expression evaluates, over metrics the agent exports.
    let (_, text) = http_get(agent_port, "/metrics").unwrap();
    let exported = families(&text);
    let dash: Json = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/dashboards/stackwave.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dash["panels"][1]["datasource"]["uid"], "prometheus");
    let mut exprs = Vec::new();
    dashboard_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    for e in &exprs {
        let r = prom.query(e);
        assert_eq!(r["status"], "success", "{e}: {r}");
        for name in e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("stackwave_"))
        {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| exported.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(
                exported.contains_key(family),
                "{e}: {name} is not exported:\n{text}"
            );
        }
    }
    // Panels with data: the revision and the component's health.
    assert_eq!(prom.value("max(stackwave_applied_revision)"), Some(1.0));
    assert_eq!(
        prom.value("min by (component) (stackwave_component_healthy)"),
        Some(1.0)
    );
    let log = prom.log();
    assert!(
        !log.contains("level=error"),
        "Prometheus logged errors:\n{log}"
    );
    eprintln!("drift alert states seen: {seen:?}");

    drop(prom);
    let _ = stop.send(());
    agent.join().unwrap().unwrap();
    clean_up(&cluster, !_server.in_process(), &ns, &tmp).await;
}

/// What the wave and rollback metrics say after real syncs: a healthy revision, one whose
/// wave never becomes healthy (timeout counted, component unhealthy, no success time moved),
/// then a rollback to the first (counted, pinned, the info metric naming it, the stuck object
/// pruned).
#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_wave_and_a_rollback_show_in_the_metrics() {
    use stackwave::reconcile::{Agent, Outcome, Settings};
    let (server, cluster, _, _) = test_cluster(&["Deployment/stuck"]).await;
    let real = !server.in_process();
    let tmp = std::env::temp_dir().join(format!("stackwave-alerts-timeout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let repo = tmp.join("repo");
    let ns = format!("stackwave-alerts-t-{}", std::process::id());
    server.fixed_ns(&ns);
    let timeout = Duration::from_secs(if real { 30 } else { 2 });
    let mut agent = Agent::new(
        cluster.clone(),
        stackwave::record::Store::in_memory().unwrap(),
        stackwave::component::Catalog::builtin().unwrap(),
        Settings {
            health_timeout: timeout,
            cancel_stuck_after: None,
            cache_dir: tmp.join("cache"),
            ..Default::default()
        },
    )
    .unwrap();
    agent
        .set_instance(
            stackwave::cluster::instance::Instance::new(
                "alerts-timeout",
                &repo.display().to_string(),
            )
            .unwrap(),
        )
        .unwrap();
    let commit = |n: char, summary: &str| stackwave::source::Commit {
        id: n.to_string().repeat(40),
        author: "Test <test@example.org>".into(),
        summary: summary.into(),
        time: 0,
    };
    write_repo(&repo, &ns, &[]);
    let out = agent
        .sync(&repo, &commit('a', "settings"), &|_| {})
        .await
        .unwrap();
    assert!(
        matches!(out, Outcome::Healthy { revision: 1, .. }),
        "{out:?}"
    );
    let first_success = agent.metrics.last_success.get();
    assert!(first_success > 1.0e9);

    // On the test server `stuck` never turns ready; on a real cluster its image cannot be pulled.
    let image = if real {
        "registry.invalid/none:0"
    } else {
        "nginx:1.27"
    };
    let stuck = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "stuck", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "stuck"}},
            "template": {"metadata": {"labels": {"app": "stuck"}},
                "spec": {"containers": [{"name": "stuck", "image": image}]}}}});
    write_repo(&repo, &ns, &[stuck]);
    let out = agent
        .sync(&repo, &commit('b', "a stuck deployment"), &|_| {})
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            Outcome::Failed {
                revision: 2,
                wave: 0,
                ..
            }
        ),
        "{out:?}"
    );
    let text = agent.metrics.encode();
    let at = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series}:\n{text}"));
    assert_eq!(at("stackwave_wave_timeouts_total{wave=\"0\"}"), 1.0);
    assert_eq!(at("stackwave_component_healthy{component=\"app\"}"), 0.0);
    assert_eq!(at("stackwave_revisions_total{outcome=\"failed\"}"), 1.0);
    assert_eq!(at("stackwave_revisions_total{outcome=\"healthy\"}"), 1.0);
    assert_eq!(at("stackwave_reconcile_duration_seconds_count"), 2.0);
    assert_eq!(at("stackwave_wave_duration_seconds_count{wave=\"0\"}"), 2.0);
    assert!(at("stackwave_wave_duration_seconds_sum{wave=\"0\"}") >= timeout.as_secs_f64());
    // Revision 1 applied Namespace + ConfigMap; revision 2 re-applied them and the Deployment.
    assert_eq!(
        at("stackwave_objects_applied_total{component=\"app\"}"),
        5.0
    );
    assert_eq!(
        agent.metrics.last_success.get(),
        first_success,
        "a failure is no success"
    );
    assert_eq!(at("stackwave_applied_revision"), 1.0);

    let out = agent.rollback(1, false, &|_| {}).await.unwrap();
    assert!(
        matches!(out, Outcome::Healthy { revision: 3, .. }),
        "{out:?}"
    );
    let text = agent.metrics.encode();
    let at = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series}:\n{text}"));
    assert_eq!(at("stackwave_rollbacks_total"), 1.0);
    assert_eq!(at("stackwave_pinned"), 1.0);
    assert_eq!(at("stackwave_applied_revision"), 3.0);
    let info = format!(
        "stackwave_applied_revision_info{{commit=\"{}\",revision=\"3\"}}",
        commit('a', "").id
    );
    assert_eq!(at(&info), 1.0);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("stackwave_applied_revision_info{"))
            .count(),
        1,
        "{text}"
    );
    assert_eq!(
        at("stackwave_objects_pruned_total{component=\"app\"}"),
        1.0,
        "the stuck Deployment"
    );
    assert_eq!(at("stackwave_component_healthy{component=\"app\"}"), 1.0);
    // A later refresh (the loop's) does not count the same rollback again.
    agent.refresh().unwrap();
    assert_eq!(agent.metrics.rollbacks.get(), 1);

    clean_up(&cluster, real, &ns, &tmp).await;
}

/// Render-cache hits and misses as the agent counts them: the first render of a catalog
/// component (Genestack's memcached chart from `../shared`, through Helm) misses, an identical
/// second render hits.
#[tokio::test(flavor = "multi_thread")]
async fn render_cache_hits_and_misses_are_counted() {
    let Some(shared) = stackwave_tests::shared_or_skip("render_cache_hits_and_misses_are_counted")
    else {
        return;
    };
    if let Err(e) = stackwave::render::helm::Helm::get() {
        eprintln!("SKIPPED: libhelm_c not available ({e}); run scripts/setup");
        return;
    }
    let (_server, cluster, _, _) = test_cluster(&[]).await;
    let dir = std::env::temp_dir().join(format!("stackwave-alerts-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("stackwave.yaml"),
        format!(
            "genestack:\n  path: {}\ncharts:\n  path: {}\ncomponents: [memcached]\n",
            shared.join("corpus/genestack").display(),
            shared.join("corpus/charts").display()
        ),
    )
    .unwrap();
    let agent = stackwave::reconcile::Agent::new(
        cluster,
        stackwave::record::Store::in_memory().unwrap(),
        stackwave::component::Catalog::builtin().unwrap(),
        stackwave::reconcile::Settings {
            cache_dir: dir.join("cache"),
            ..Default::default()
        },
    )
    .unwrap();
    for _ in 0..2 {
        agent.render_all(&dir, &|_| {}).await.unwrap();
    }
    let text = agent.metrics.encode();
    assert_eq!(
        sample(&text, "stackwave_render_cache_misses_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "stackwave_render_cache_hits_total"),
        Some(1.0),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
