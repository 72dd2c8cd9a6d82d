//! Benchmark: build every Genestack kustomize case with `stackwave kustomize build` and with
//! the reference `kubectl kustomize` (kustomize v5.8.1), and print the time ratio.
//!
//! Run: `scripts/setup && cargo bench -p stackwave --bench kustomize`. The reference is found
//! through `$KUBECTL`, then `.tools/venv/bin/kubectl`, then `kubectl` on `PATH`.
//! Each tool builds each case `ROUNDS` times as a fresh process (what an operator or the
//! install scripts pay); the in-process library time is printed too. Each case prints its
//! process-to-process and in-process ratios; the summary prints their geometric means.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ROUNDS: u32 = 10;

fn kubectl() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(k));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/kubectl");
    if local.is_file() {
        return Some(local);
    }
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .ok()
        .map(|_| PathBuf::from("kubectl"))
}

fn time_cmd(cmd: &Path, pre: &[&str], dir: &Path, arg: &str) -> Duration {
    let start = Instant::now();
    for _ in 0..ROUNDS {
        let out = Command::new(cmd)
            .args(pre)
            .arg(arg)
            .current_dir(dir)
            .output()
            .expect("run build");
        assert!(
            out.status.success(),
            "{} failed: {}",
            cmd.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    start.elapsed() / ROUNDS
}

fn main() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/kustomize/cases");
    let Ok(rd) = std::fs::read_dir(&shared) else {
        println!("skipped: {} not found", shared.display());
        return;
    };
    let Some(kubectl) = kubectl() else {
        println!("skipped: no kubectl (run scripts/setup)");
        return;
    };
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_stackwave"));
    let mut cases: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("genestack-"))
        })
        .collect();
    cases.sort();
    let (mut t_ours, mut t_ref, mut t_lib) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    // Sums of the logarithms of the per-case ratios (for the geometric means).
    let (mut log_proc, mut log_lib) = (0.0f64, 0.0f64);
    println!(
        "{:<48} {:>12} {:>12} {:>12} {:>8} {:>8}",
        "case", "stackwave", "kubectl", "in-process", "ratio", "in-proc"
    );
    for c in &cases {
        let meta = std::fs::read_to_string(c.join("case.yaml")).unwrap_or_default();
        let build_dir = meta
            .lines()
            .find_map(|l| l.strip_prefix("build_dir:"))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| ".".into());
        let input = c.join("input");
        let a = time_cmd(&ours, &["kustomize", "build"], &input, &build_dir);
        let b = time_cmd(&kubectl, &["kustomize"], &input, &build_dir);
        let start = Instant::now();
        for _ in 0..ROUNDS {
            kustomize_rs::build_dir(&input.join(&build_dir), &Default::default())
                .expect("library build");
        }
        let l = start.elapsed() / ROUNDS;
        t_ours += a;
        t_ref += b;
        t_lib += l;
        let name = c
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let (r_proc, r_lib) = (
            b.as_secs_f64() / a.as_secs_f64(),
            b.as_secs_f64() / l.as_secs_f64(),
        );
        log_proc += r_proc.ln();
        log_lib += r_lib.ln();
        println!("{name:<48} {a:>12.2?} {b:>12.2?} {l:>12.2?} {r_proc:>7.1}x {r_lib:>7.0}x");
    }
    println!(
        "genestack kustomize builds ({} cases, {ROUNDS} rounds): stackwave {:.2?}/build, kubectl kustomize {:.2?}/build, ratio {:.1}x faster (process to process); in-process {:.2?}/build, {:.0}x",
        cases.len(),
        t_ours / cases.len() as u32,
        t_ref / cases.len() as u32,
        t_ref.as_secs_f64() / t_ours.as_secs_f64(),
        t_lib / cases.len() as u32,
        t_ref.as_secs_f64() / t_lib.as_secs_f64()
    );
    let n = cases.len().max(1) as f64;
    println!(
        "geometric mean of per-case ratios: {:.1}x process to process, {:.0}x in-process",
        (log_proc / n).exp(),
        (log_lib / n).exp()
    );
}
