//! Charts fetched from an HTTP Helm repository (served on loopback by the test): index lookup
//! by pinned version, sha256 digest check, the digest-keyed cache, offline use, and clear
//! errors for unknown versions and corrupted archives.

use stackwave::component::Catalog;
use stackwave::render::charts::{ChartStore, Fetcher};
use stackwave::render::{objects::Objects, render_component, values::Sources, Inputs};
use stackwave_tests::{git, shared_or_skip};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Serves `files` (path → body) until the returned flag's thread is dropped (n requests max).
fn serve(files: Vec<(String, Vec<u8>)>, n: usize) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 8192];
            let len = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..len]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(body);
                }
                None => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    base
}

/// A fresh temporary directory for one test, and the corpus memcached chart packed as a
/// `.tgz` (as a chart repository or registry serves it).
fn packed_memcached(shared: &Path, name: &str) -> (std::path::PathBuf, Vec<u8>) {
    let tmp = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let tgz = tmp.join("memcached.tgz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(shared.join("corpus/charts"))
        .arg("memcached")
        .status()
        .unwrap();
    assert!(st.success());
    let body = std::fs::read(&tgz).unwrap();
    (tmp, body)
}

/// The pinned memcached version, the archive's sha256 and a repository `index.yaml` listing it
/// as `memcached-<pin>.tgz`.
fn memcached_index(body: &[u8]) -> (&'static str, String, String) {
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pin = "2025.2.2+c31cd6c96";
    let index = format!("apiVersion: v1\nentries:\n  memcached:\n  - name: memcached\n    version: {pin}\n    digest: {digest}\n    urls: [memcached-{pin}.tgz]\n");
    (pin, digest, index)
}

fn inputs(shared: &Path, store: ChartStore, repo: &str) -> Inputs {
    let g = shared.join("corpus/genestack");
    let mut objects = Objects::default();
    objects.load_file(&g.join("secrets.yaml")).unwrap();
    let mut catalog = Catalog::builtin().unwrap();
    catalog.components.get_mut("memcached").unwrap().chart.repo = Some(repo.to_string());
    Inputs {
        sources: Sources {
            genestack: g,
            overrides: None,
        },
        charts: store,
        objects,
        catalog,
    }
}

#[test]
fn fetches_verifies_caches_and_works_offline() {
    let Some(shared) = shared_or_skip("fetches_verifies_caches_and_works_offline") else {
        return;
    };
    if stackwave::render::helm::Helm::get().is_err()
        && std::env::var("STACKWAVE_SKIP_HELM").is_ok_and(|v| v == "1")
    {
        return;
    }
    let (tmp, body) = packed_memcached(&shared, "sw-chartrepo");
    let (pin, digest, index) = memcached_index(&body);
    let repo = serve(
        vec![
            ("/index.yaml".into(), index.into_bytes()),
            (format!("/memcached-{pin}.tgz"), body.clone()),
        ],
        2,
    );
    let fetcher = Fetcher {
        cache_dir: tmp.join("cache"),
        offline: false,
        timeout: Duration::from_secs(5),
    };
    let golden = std::fs::read_to_string(shared.join("corpus/goldens/memcached.yaml")).unwrap();
    let got = render_component(
        &inputs(&shared, ChartStore::Repos(fetcher.clone()), &repo),
        "memcached",
    )
    .unwrap();
    assert_eq!(
        got.text().unwrap(),
        golden,
        "a fetched chart renders like the local one"
    );

    // The server is gone (it served its two requests): offline renders come from the cache.
    let offline = Fetcher {
        offline: true,
        ..fetcher.clone()
    };
    let again = render_component(
        &inputs(&shared, ChartStore::Repos(offline), &repo),
        "memcached",
    )
    .unwrap();
    assert_eq!(again.text().unwrap(), golden);

    // An unknown version and a corrupted archive are named.
    let bad_index = format!("apiVersion: v1\nentries:\n  memcached:\n  - name: memcached\n    version: 9.9.9\n    digest: {digest}\n    urls: [m.tgz]\n");
    let repo2 = serve(vec![("/index.yaml".into(), bad_index.into_bytes())], 1);
    let fresh = Fetcher {
        cache_dir: tmp.join("cache2"),
        ..fetcher.clone()
    };
    let err = render_component(
        &inputs(&shared, ChartStore::Repos(fresh.clone()), &repo2),
        "memcached",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("version 2025.2.2+c31cd6c96 not found") && err.contains("9.9.9"),
        "{err}"
    );
    let mut corrupt = body.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let repo3 = serve(
        vec![
            ("/index.yaml".into(), format!("apiVersion: v1\nentries:\n  memcached:\n  - version: {pin}\n    digest: {digest}\n    urls: [m.tgz]\n").into_bytes()),
            ("/m.tgz".into(), corrupt),
        ],
        2,
    );
    let err = render_component(
        &inputs(&shared, ChartStore::Repos(fresh), &repo3),
        "memcached",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("digest mismatch"), "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn charts_from_a_git_repository_by_pinned_tag() {
    let Some(shared) = shared_or_skip("charts_from_a_git_repository_by_pinned_tag") else {
        return;
    };
    if stackwave::render::helm::Helm::get().is_err()
        && std::env::var("STACKWAVE_SKIP_HELM").is_ok_and(|v| v == "1")
    {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("sw-chartgit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let repo = tmp.join("charts-repo");
    std::fs::create_dir_all(repo.join("charts")).unwrap();
    let st = Command::new("cp")
        .arg("-r")
        .arg(shared.join("corpus/charts/memcached"))
        .arg(repo.join("charts/"))
        .status()
        .unwrap();
    assert!(st.success());
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "memcached chart"]);
    let pin = "2025.2.2+c31cd6c96";
    git(&repo, &["tag", &format!("memcached-{pin}")]);
    // A later commit on main breaks the chart: the pinned tag must still be what renders.
    std::fs::write(repo.join("charts/memcached/Chart.yaml"), "broken: [\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "break the chart on main"]);

    let url = format!("file://{}", repo.display());
    let with_git = |r: &str| {
        let mut i = inputs(&shared, ChartStore::Dir(tmp.join("none")), "unused");
        let c = i.catalog.components.get_mut("memcached").unwrap();
        c.chart.repo = None;
        c.chart.git = Some(stackwave::component::GitChart {
            url: url.clone(),
            path: "charts/memcached".into(),
            r#ref: r.into(),
        });
        i
    };
    let fetcher = Fetcher {
        cache_dir: tmp.join("cache"),
        offline: false,
        timeout: Duration::from_secs(5),
    };
    let golden = std::fs::read_to_string(shared.join("corpus/goldens/memcached.yaml")).unwrap();
    let mut i = with_git("memcached-{version}");
    i.charts = ChartStore::Repos(fetcher.clone());
    let got = render_component(&i, "memcached").unwrap();
    assert_eq!(
        got.text().unwrap(),
        golden,
        "the chart at the pinned tag renders like the local one"
    );

    // Offline: the mirror and the exported chart serve again with the remote gone.
    std::fs::remove_dir_all(&repo).unwrap();
    let mut i = with_git("memcached-{version}");
    i.charts = ChartStore::Repos(Fetcher {
        offline: true,
        ..fetcher.clone()
    });
    assert_eq!(
        render_component(&i, "memcached").unwrap().text().unwrap(),
        golden
    );

    // A ref that does not exist is an unknown chart version, named.
    let mut i = with_git("release-{version}");
    i.charts = ChartStore::Repos(Fetcher {
        offline: true,
        ..fetcher
    });
    let err = render_component(&i, "memcached").unwrap_err().to_string();
    assert!(
        err.contains("release-2025.2.2+c31cd6c96") && err.contains(pin),
        "{err}"
    );
}

/// A loopback OCI registry (distribution API v2, pull only) holding one Helm chart artifact,
/// demanding HTTP Basic credentials `user`/`secret`. Serves until the process ends; counts
/// the requests it answered.
fn serve_registry(
    repo: &str,
    tag: &str,
    chart: Vec<u8>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use sha2::Digest;
    let hexd = |b: &[u8]| -> String {
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let config =
        br#"{"name":"memcached","version":"2025.2.2+c31cd6c96","apiVersion":"v2"}"#.to_vec();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":"sha256:{}","size":{}}}]}}"#,
        hexd(&config),
        config.len(),
        hexd(&chart),
        chart.len()
    )
    .into_bytes();
    let routes: Vec<(String, &'static str, Vec<u8>)> = vec![
        ("/v2/".into(), "application/json", b"{}".to_vec()),
        (
            format!("/v2/{repo}/manifests/{tag}"),
            "application/vnd.oci.image.manifest.v1+json",
            manifest,
        ),
        (
            format!("/v2/{repo}/blobs/sha256:{}", hexd(&config)),
            "application/vnd.cncf.helm.config.v1+json",
            config,
        ),
        (
            format!("/v2/{repo}/blobs/sha256:{}", hexd(&chart)),
            "application/octet-stream",
            chart,
        ),
    ];
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = hits.clone();
    std::thread::spawn(move || loop {
        let Ok((mut s, _)) = l.accept() else { return };
        let mut buf = vec![0u8; 16384];
        let len = s.read(&mut buf).unwrap_or(0);
        let req = String::from_utf8_lossy(&buf[..len]).to_string();
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = req
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .split('?')
            .next()
            .unwrap_or("/")
            .to_string();
        // base64("user:secret")
        let authed = req
            .lines()
            .any(|h| h.eq_ignore_ascii_case("authorization: Basic dXNlcjpzZWNyZXQ="));
        let reply = if !authed {
            (
                "401 Unauthorized",
                "application/json",
                br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_vec(),
                "WWW-Authenticate: Basic realm=\"test\"\r\n".to_string(),
            )
        } else {
            match routes.iter().find(|(p, _, _)| *p == path) {
                Some((_, ct, body)) => ("200 OK", *ct, body.clone(), {
                    let d: String = sha2::Sha256::digest(body)
                        .iter()
                        .map(|x| format!("{x:02x}"))
                        .collect();
                    format!("Docker-Content-Digest: sha256:{d}\r\n")
                }),
                None => (
                    "404 Not Found",
                    "application/json",
                    br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                        .to_vec(),
                    String::new(),
                ),
            }
        };
        let _ = write!(
            s,
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
            reply.0,
            reply.1,
            reply.2.len(),
            reply.3
        );
        let _ = s.write_all(&reply.2);
    });
    (addr, hits)
}

#[test]
fn charts_from_an_oci_registry_with_credentials() {
    let Some(shared) = shared_or_skip("charts_from_an_oci_registry_with_credentials") else {
        return;
    };
    if stackwave::render::helm::Helm::get().is_err()
        && std::env::var("STACKWAVE_SKIP_HELM").is_ok_and(|v| v == "1")
    {
        return;
    }
    let (tmp, body) = packed_memcached(&shared, "sw-chartoci");
    let pin = "2025.2.2+c31cd6c96";
    let (registry, hits) = serve_registry("openstack-helm/memcached", "2025.2.2_c31cd6c96", body);
    // Docker-style credentials, as `helm registry login` writes them.
    let auth = tmp.join("registry.json");
    std::fs::write(
        &auth,
        format!(r#"{{"auths":{{"{registry}":{{"auth":"dXNlcjpzZWNyZXQ="}}}}}}"#),
    )
    .unwrap();
    // Only this test reads HELM_REGISTRY_CONFIG.
    std::env::set_var("HELM_REGISTRY_CONFIG", &auth);

    let with_oci = |oci: String, offline: bool| {
        let mut i = inputs(&shared, ChartStore::Dir(tmp.join("none")), "unused");
        let c = i.catalog.components.get_mut("memcached").unwrap();
        c.chart.repo = None;
        c.chart.oci = Some(oci);
        i.charts = ChartStore::Repos(Fetcher {
            cache_dir: tmp.join("cache"),
            offline,
            timeout: Duration::from_secs(5),
        });
        i
    };
    let golden = std::fs::read_to_string(shared.join("corpus/goldens/memcached.yaml")).unwrap();
    let oci = format!("oci://{registry}/openstack-helm");
    let got = render_component(&with_oci(oci.clone(), false), "memcached").unwrap();
    assert_eq!(
        got.text().unwrap(),
        golden,
        "the pulled chart renders like the local one"
    );
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    // Offline: served from the digest-keyed cache without a request.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let again = render_component(&with_oci(oci.clone(), true), "memcached").unwrap();
    assert_eq!(again.text().unwrap(), golden);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), before);

    // A repository path without that tag: an unknown version, named with the registry.
    let err = render_component(
        &with_oci(format!("oci://{registry}/elsewhere"), false),
        "memcached",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(pin) && err.contains("elsewhere"), "{err}");

    // Wrong credentials are a fetch error naming the artifact, not a panic.
    std::fs::write(
        &auth,
        format!(r#"{{"auths":{{"{registry}":{{"username":"user","password":"wrong"}}}}}}"#),
    )
    .unwrap();
    let fresh = |oci: String| {
        let mut i = with_oci(oci, false);
        i.charts = ChartStore::Repos(Fetcher {
            cache_dir: tmp.join("cache-fresh"),
            offline: false,
            timeout: Duration::from_secs(5),
        });
        i
    };
    let err = render_component(&fresh(oci), "memcached")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("openstack-helm/memcached:2025.2.2_c31cd6c96"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The agent with no local charts and a Genestack base pinned in Git (`genestack.git` in
/// stackwave.yaml): charts come from the catalog's repository (served on loopback), the base
/// from its tag; a commit on the base's main branch changes nothing until the desired state
/// moves the tag, and a base remote that disappeared keeps working from the mirror.
#[tokio::test(flavor = "multi_thread")]
async fn agent_with_a_pinned_genestack_base_and_charts_from_a_repository() {
    use stackwave::reconcile::{Agent, Outcome, Settings};
    let Some(shared) =
        shared_or_skip("agent_with_a_pinned_genestack_base_and_charts_from_a_repository")
    else {
        return;
    };
    if stackwave::render::helm::Helm::get().is_err()
        && std::env::var("STACKWAVE_SKIP_HELM").is_ok_and(|v| v == "1")
    {
        return;
    }
    let (tmp, body) = packed_memcached(&shared, "sw-pinned-base");
    let (pin, _, index) = memcached_index(&body);
    let chart_repo = serve(
        vec![
            ("/index.yaml".into(), index.into_bytes()),
            (format!("/memcached-{pin}.tgz"), body),
        ],
        20,
    );

    // The base repository: release-1, then release-2 with a smaller cache, then a commit on
    // main that breaks the base's chart pins (never tagged, never applied).
    let base = tmp.join("genestack");
    let st = Command::new("cp")
        .arg("-r")
        .arg(shared.join("corpus/genestack"))
        .arg(&base)
        .status()
        .unwrap();
    assert!(st.success());
    git(&base, &["init", "-q", "-b", "main"]);
    git(&base, &["add", "-A"]);
    git(&base, &["commit", "-q", "-m", "genestack base"]);
    git(&base, &["tag", "release-1"]);
    let ov = base.join("base-helm-configs/memcached/memcached-helm-overrides.yaml");
    let text = std::fs::read_to_string(&ov).unwrap();
    std::fs::write(&ov, text.replace("memory: 6144", "memory: 4096")).unwrap();
    git(&base, &["commit", "-q", "-am", "smaller cache"]);
    git(&base, &["tag", "release-2"]);
    std::fs::write(base.join("helm-chart-versions.yaml"), "broken: [\n").unwrap();
    git(&base, &["commit", "-q", "-am", "break main"]);

    let desired = tmp.join("desired");
    std::fs::create_dir_all(desired.join("ns")).unwrap();
    std::fs::write(
        desired.join("ns/kustomization.yaml"),
        "resources: [ns.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        desired.join("ns/ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: openstack\n",
    )
    .unwrap();
    let write_cfg = |r: &str| {
        std::fs::write(
            desired.join("stackwave.yaml"),
            format!(
                "genestack:\n  git:\n    url: file://{}\n    ref: {r}\nmanifests:\n- name: ns\n  path: ns\ncomponents: [memcached]\n",
                base.display()
            ),
        )
        .unwrap();
    };

    // The chart's release namespace is fixed (`openstack`): the stand-in acts there, and it
    // goes at cleanup with the components' inventories.
    let tc = stackwave_tests::TestCluster::start(
        kube_standin::Rules::default().with_delay(Duration::from_millis(100)),
    )
    .await;
    tc.fixed_ns("openstack");
    for c in ["ns", "memcached"] {
        tc.cleanup_later(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": stackwave::cluster::inventory::inventory_name(&Default::default(), c),
                "namespace": stackwave::cluster::inventory::INVENTORY_NAMESPACE}}));
    }
    let cluster = tc.cluster.clone();
    let mut catalog = Catalog::builtin().unwrap();
    catalog.components.get_mut("memcached").unwrap().chart.repo = Some(chart_repo);
    let store = stackwave::record::Store::in_memory().unwrap();
    let mut agent = Agent::new(
        cluster.clone(),
        store,
        catalog,
        Settings {
            health_timeout: Duration::from_secs(20),
            cache_dir: tmp.join("cache"),
            ..Default::default()
        },
    )
    .unwrap();
    let commit = |id: &str| stackwave::source::Commit {
        id: id.into(),
        author: "t <t@example.org>".into(),
        summary: id.into(),
        time: 0,
    };
    let memory = |cluster: stackwave::cluster::Cluster| async move {
        let sts = cluster
            .get(
                &serde_json::json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "memcached-memcached", "namespace": "openstack"}}),
            )
            .await
            .unwrap()
            .expect("memcached StatefulSet applied");
        let containers = sts
            .pointer("/spec/template/spec/containers")
            .and_then(|e| e.as_array())
            .cloned()
            .unwrap_or_default();
        containers
            .iter()
            .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
            .find(|e| e["name"] == "MEMCACHED_MEMORY")
            .map(|e| e["value"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };

    write_cfg("release-1");
    let out = agent.sync(&desired, &commit("c1"), &|_| {}).await.unwrap();
    assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
    assert_eq!(memory(cluster.clone()).await, "6144");

    // Moving the pin applies the base's release-2 (and not its broken main).
    write_cfg("release-2");
    let out = agent.sync(&desired, &commit("c2"), &|_| {}).await.unwrap();
    assert!(
        matches!(&out, Outcome::Healthy { changed, .. } if changed == &["memcached"]),
        "{out:?}"
    );
    assert_eq!(memory(cluster.clone()).await, "4096");

    // The base remote is gone: the pinned tag resolves from the mirror, nothing changes.
    std::fs::remove_dir_all(&base).unwrap();
    let out = agent.sync(&desired, &commit("c3"), &|_| {}).await.unwrap();
    assert_eq!(out, Outcome::Unchanged);

    // An unknown tag is refused, naming the base and the ref; the applied state stays.
    write_cfg("release-9");
    let out = agent.sync(&desired, &commit("c4"), &|_| {}).await.unwrap();
    match out {
        Outcome::Refused { reason } => {
            assert!(
                reason.contains("genestack base") && reason.contains("release-9"),
                "{reason}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(memory(cluster).await, "4096");
    let _ = std::fs::remove_dir_all(&tmp);
}
