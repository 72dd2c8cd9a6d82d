//! The recorded kube-apiserver v1.36 behaviour (`../shared/corpus/kube-api`) replayed with
//! `../shared/tools/kube-api-replay` against the test server as `stackwave api-server` starts
//! it (an API server alone, no stand-in): every scenario must match the real server exactly.

use stackwave_tests::shared_dir;

#[tokio::test(flavor = "multi_thread")]
async fn recorded_scenarios_replay_against_the_test_server() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared is not present");
        return;
    };
    let server = kube_testserver::start().await.expect("test server");
    let out = std::env::temp_dir().join(format!("sw-replay-{}.json", std::process::id()));
    let url = server.url.clone();
    let tool = shared.join("tools/kube-api-replay");
    let out2 = out.clone();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(tool)
            .args(["--server", &url, "--json"])
            .arg(&out2)
            .output()
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
    assert!(all.len() >= 15, "only {} scenarios replayed", all.len());
    for r in all {
        assert_eq!(r["passed"], true, "{}: {}", r["scenario"], r["failures"]);
    }
}
