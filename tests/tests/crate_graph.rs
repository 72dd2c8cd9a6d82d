//! The in-cluster build of `stackwave` (`--no-default-features`, what `deploy/Dockerfile`
//! builds) links no Kubernetes API test server and no controller stand-in; both come only
//! with the `demo` feature. The field-path codec both the agent and the test server use is
//! the small `kube-fieldpath` crate.

use std::path::Path;
use std::process::Command;

/// The package names (`name vX`) in `cargo tree -p stackwave -e normal` with these flags.
fn normal_deps(flags: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["tree", "-p", "stackwave", "-e", "normal", "--offline"])
        .args(["--prefix", "none", "--format", "{p}"])
        .args(flags)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {flags:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn in_cluster_build_has_no_test_server() {
    let deps = normal_deps(&["--no-default-features"]);
    assert!(deps.iter().any(|d| d == "kube-fieldpath"), "{deps:?}");
    assert!(deps.iter().any(|d| d == "kube"), "{deps:?}");
    for banned in ["kube-testserver", "kube-standin"] {
        assert!(
            !deps.iter().any(|d| d == banned),
            "the in-cluster build links {banned}"
        );
    }
}

#[test]
fn demo_feature_brings_the_test_server() {
    let deps = normal_deps(&[]);
    for wanted in ["kube-testserver", "kube-standin", "kube-fieldpath"] {
        assert!(
            deps.iter().any(|d| d == wanted),
            "default build lacks {wanted}"
        );
    }
}

#[test]
fn image_builds_without_default_features() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docker = std::fs::read_to_string(root.join("deploy/Dockerfile")).expect("Dockerfile");
    let builds: Vec<&str> = docker
        .lines()
        .filter(|l| l.contains("cargo build"))
        .collect();
    assert!(!builds.is_empty(), "deploy/Dockerfile builds nothing");
    for b in builds {
        assert!(
            b.contains("--no-default-features"),
            "deploy/Dockerfile builds with the demo feature: {b}"
        );
    }
}
