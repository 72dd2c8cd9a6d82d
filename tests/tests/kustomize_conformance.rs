//! The kustomize conformance corpora, built in-process: the shared corpus
//! (`../shared/corpus/kustomize/cases`; every `genestack-*` case must match and the pass count
//! must not fall below the recorded floor), the shared real-world kubebuilder kustomizations
//! (`../shared/corpus/kustomize/realworld-cases`, all must match), and the project's own
//! feature cases (`kustomize-rs/tests/cases`, all must match). Each case matches
//! `kubectl kustomize` (kustomize v5.8.1) byte for byte, or fails when kustomize fails.

use stackwave_tests::{build_case, read_cases, shared_or_skip, Case};
use std::path::Path;

/// The lowest acceptable number of passing cases in the shared corpus.
const PASS_FLOOR: usize = 216;

/// Builds every case, prints `<label>: N passed, M failed` and the failures; returns the
/// number that passed and one line per failure.
fn run_cases(label: &str, cases: &[Case]) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failures = Vec::new();
    for c in cases {
        let got = std::panic::catch_unwind(|| build_case(c));
        let ok = match (&got, &c.expected) {
            (Ok(Ok(out)), Some(exp)) => out == exp,
            (Ok(Err(_)), None) => true,
            _ => false,
        };
        if ok {
            passed += 1;
            continue;
        }
        let why = match &got {
            Err(_) => "panicked".to_string(),
            Ok(Err(e)) if c.expected.is_some() => format!("error: {e}"),
            Ok(Ok(_)) if c.expected.is_none() => "expected a build error".to_string(),
            _ => "output differs".to_string(),
        };
        failures.push(format!("{}: {why}", c.name));
    }
    println!(
        "{label} (in-process): {passed} passed, {} failed",
        failures.len()
    );
    for f in &failures {
        println!("  FAIL {f}");
    }
    (passed, failures)
}

/// The cases of `../shared/corpus/kustomize/<sub>` (at least `min` of them), or `None` (and a
/// SKIPPED note) when the shared material is absent.
fn shared_cases(sub: &str, min: usize) -> Option<Vec<Case>> {
    let shared = shared_or_skip(&format!("kustomize_conformance {sub}"))?;
    let cases = read_cases(&shared.join("corpus/kustomize").join(sub));
    assert!(
        cases.len() >= min,
        "expected the shared corpus {sub}, found {} cases",
        cases.len()
    );
    Some(cases)
}

#[test]
fn conformance_cases_match_kubectl_kustomize() {
    let Some(cases) = shared_cases("cases", 200) else {
        return;
    };
    let (passed, failures) = run_cases("kustomize conformance", &cases);
    let genestack: Vec<&String> = failures
        .iter()
        .filter(|f| f.starts_with("genestack-"))
        .collect();
    assert!(
        genestack.is_empty(),
        "genestack cases failing: {genestack:#?}"
    );
    assert!(
        passed >= PASS_FLOOR,
        "{passed} cases passed, below the floor of {PASS_FLOOR}"
    );
}

#[test]
fn realworld_kubebuilder_cases_match_kubectl_kustomize() {
    let Some(cases) = shared_cases("realworld-cases", 50) else {
        return;
    };
    let (_, failures) = run_cases("kustomize real-world cases", &cases);
    assert!(failures.is_empty(), "failing: {failures:#?}");
}

#[test]
fn project_feature_cases_match_kubectl_kustomize() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kustomize-rs/tests/cases");
    let cases = read_cases(&dir);
    assert!(!cases.is_empty(), "no cases under {}", dir.display());
    let (_, mut failures) = run_cases("kustomize project cases", &cases);
    // Error cases also name what kustomize's error names (the file, field or object).
    let mut error_cases = 0;
    for c in cases.iter().filter(|c| c.expected.is_none()) {
        let needles = error_contains(&c.dir);
        assert!(
            !needles.is_empty(),
            "{}: an error case needs `error_contains` in case.yaml",
            c.name
        );
        let kind = error_kind(&c.dir);
        assert!(
            kind.is_some(),
            "{}: an error case needs `error_kind` in case.yaml",
            c.name
        );
        error_cases += 1;
        if let Err(e) = build_case(c) {
            let msg = e.to_string();
            for n in needles.iter().filter(|n| !msg.contains(n.as_str())) {
                failures.push(format!("{}: error {msg:?} does not name {n:?}", c.name));
            }
            if kind.as_deref() != Some(e.kind()) {
                failures.push(format!(
                    "{}: error kind {} (expected {kind:?}): {msg}",
                    c.name,
                    e.kind()
                ));
            }
        }
    }
    println!("  ({error_cases} error cases checked for their error kind and what they name)");
    assert!(failures.is_empty(), "failing: {failures:#?}");
}

/// The `error_kind: "..."` of a case: the [`kustomize_rs::Error::kind`] its error must have.
fn error_kind(case_dir: &Path) -> Option<String> {
    let meta = std::fs::read_to_string(case_dir.join("case.yaml")).unwrap_or_default();
    meta.lines()
        .find_map(|l| l.strip_prefix("error_kind:"))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// The `error_contains: ["...", ...]` list of a case (JSON strings on one line).
fn error_contains(case_dir: &Path) -> Vec<String> {
    let meta = std::fs::read_to_string(case_dir.join("case.yaml")).unwrap_or_default();
    let Some(list) = meta.lines().find_map(|l| l.strip_prefix("error_contains:")) else {
        return Vec::new();
    };
    serde_json::from_str(list.trim())
        .unwrap_or_else(|e| panic!("{}: bad error_contains: {e}", case_dir.display()))
}

#[test]
fn malformed_inputs_fail_cleanly() {
    let dir = std::env::temp_dir().join(format!("kz-malformed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("resources: [a.yaml]\n", "a: [1, 2\n", "a.yaml"),
        ("resources: [missing.yaml]\n", "", "missing.yaml"),
        ("bogusField: 1\n", "", "bogusField"),
        (
            "patches:\n- path: p.yaml\nresources: [a.yaml]\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
            "p.yaml",
        ),
    ];
    for (i, (kust, file, needle)) in cases.iter().enumerate() {
        let d = dir.join(format!("c{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("kustomization.yaml"), kust).unwrap();
        if !file.is_empty() {
            std::fs::write(d.join("a.yaml"), file).unwrap();
        }
        let err = kustomize_rs::build_dir(&d, &Default::default()).expect_err(kust);
        assert!(
            err.to_string().contains(needle),
            "error for {kust:?} should name {needle:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Serves one body over HTTP on loopback for `n` requests, then stops.
fn serve(body: &'static str, n: usize) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/crds.yaml", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                body.len(),
                body
            );
        }
    });
    (url, h)
}

#[test]
fn remote_resources_are_fetched_cached_and_served_offline() {
    let dir = std::env::temp_dir().join(format!("kz-remote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (url, server) = serve(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: remote\ndata:\n  k: v\n",
        1,
    );
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("resources:\n- {url}\nnamePrefix: p-\n"),
    )
    .unwrap();
    let cache = dir.join("cache");
    let mut opts = kustomize_rs::Options::default();
    opts.remote.cache_dir = Some(cache.clone());
    let online = kustomize_rs::build_dir(&dir, &opts).unwrap();
    server.join().unwrap();
    assert!(online.contains("name: p-remote"), "{online}");
    // The server is gone: offline builds use the cache; without a cache they fail clearly.
    opts.remote.offline = true;
    assert_eq!(kustomize_rs::build_dir(&dir, &opts).unwrap(), online);
    opts.remote.cache_dir = Some(dir.join("empty-cache"));
    let err = kustomize_rs::build_dir(&dir, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&url) && err.contains("offline"), "{err}");
    // Online with the server gone and no cache: an error naming the URL.
    opts.remote.offline = false;
    opts.remote.timeout = std::time::Duration::from_secs(2);
    let err = kustomize_rs::build_dir(&dir, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&url), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
