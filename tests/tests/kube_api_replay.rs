//! The recorded kube-apiserver v1.36 behaviour (`../shared/corpus/kube-api`, both
//! `scenarios/` and `scenarios-next/`) replayed with `../shared/tools/kube-api-replay` against
//! the test server as `stackwave api-server` starts it (an API server alone, no stand-in):
//! every scenario of both directories must be replayed and match the real server exactly.

use stackwave_tests::shared_or_skip;

#[tokio::test(flavor = "multi_thread")]
async fn recorded_scenarios_replay_against_the_test_server() {
    let Some(shared) = shared_or_skip("recorded_scenarios_replay_against_the_test_server") else {
        return;
    };
    let server = kube_testserver::start().await.expect("test server");
    let out = std::env::temp_dir().join(format!("sw-replay-{}.json", std::process::id()));
    let url = server.url.clone();
    let tool = shared.join("tools/kube-api-replay");
    let corpus = shared.join("corpus/kube-api");
    let dirs = [corpus.join("scenarios"), corpus.join("scenarios-next")];
    // The scenarios the corpus holds: each must be replayed and pass.
    let mut expected: Vec<String> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).expect("scenario directory"))
        .filter_map(|e| {
            let p = e.ok()?.path();
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            (p.extension()? == "json").then_some(stem)
        })
        .collect();
    expected.sort();
    let out2 = out.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(tool).args(["--server", &url, "--json"]).arg(&out2);
        for d in &dirs {
            cmd.arg("--scenarios").arg(d);
        }
        cmd.output()
    })
    .await
    .unwrap()
    .expect("python3 runs the replay tool");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("replay results")).unwrap();
    let _ = std::fs::remove_file(&out);
    let passed: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["passed"] == true)
        .filter_map(|r| r["scenario"].as_str())
        .collect();
    eprintln!(
        "kube-api replay: {} of {} scenarios pass: {passed:?}",
        passed.len(),
        results.as_array().unwrap().len()
    );
    let all = results.as_array().unwrap();
    let mut replayed: Vec<String> = all
        .iter()
        .filter_map(|r| r["scenario"].as_str().map(str::to_string))
        .collect();
    replayed.sort();
    assert!(
        expected.len() >= 20,
        "only {} scenarios in the corpus",
        expected.len()
    );
    assert_eq!(
        replayed, expected,
        "every scenario of both directories is replayed"
    );
    for r in all {
        assert_eq!(r["passed"], true, "{}: {}", r["scenario"], r["failures"]);
    }
}
