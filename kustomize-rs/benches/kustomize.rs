//! Benchmark: build every Genestack kustomize case of the shared corpus with the lean
//! `kustomize` binary of this crate and with the reference `kubectl kustomize` (kustomize
//! v5.8.1), process to process, and print the time ratios.
//!
//! Run: `scripts/setup && cargo bench -p kustomize-rs --bench kustomize`. The reference is
//! found through `$KUBECTL`, then `.tools/venv/bin/kubectl`, then `kubectl` on `PATH`.
//!
//! Each case runs both tools `ROUNDS` times as fresh processes, interleaved (so both see the
//! same machine load). Per case it prints the fastest and the median wall time of each and
//! their ratios, the ratio of the CPU time (user + system) the two processes used, and the
//! in-process library time; the summary prints the geometric means of the per-case ratios.
//! On a machine shared with other work the median wall-time ratio moves with the load (a 1 ms
//! process waits for a core as long as a 40 ms one); the fastest run of each (the one that
//! waited least) and the CPU time are what the tools cost.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 15;

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

/// User + system CPU time of the waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: `getrusage` writes into the zeroed struct it is given and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN is a valid `who`.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs one build as a fresh process; returns (wall, CPU) time.
fn run(cmd: &Path, pre: &[&str], dir: &Path, arg: &str) -> (Duration, Duration) {
    let cpu0 = children_cpu();
    let start = Instant::now();
    let out = Command::new(cmd)
        .args(pre)
        .arg(arg)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run build");
    let wall = start.elapsed();
    assert!(
        out.status.success(),
        "{} failed in {}: {}",
        cmd.display(),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, children_cpu().saturating_sub(cpu0))
}

/// (fastest, median) of the samples.
fn min_median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

fn main() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/kustomize/cases");
    let Ok(rd) = std::fs::read_dir(&shared) else {
        println!("SKIPPED: {} not found", shared.display());
        return;
    };
    let Some(kubectl) = kubectl() else {
        println!("SKIPPED: no kubectl (run scripts/setup)");
        return;
    };
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_kustomize"));
    let mut cases: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("genestack-"))
        })
        .collect();
    cases.sort();
    // Sums of the logarithms of the per-case ratios (for the geometric means).
    let (mut log_min, mut log_wall, mut log_cpu, mut log_lib) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    println!(
        "{:<42} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7}",
        "case (wall times: fastest, median)",
        "kustomize",
        "",
        "kubectl",
        "",
        "in-proc",
        "fastest",
        "median",
        "cpu",
        "in-proc"
    );
    for c in &cases {
        let meta = std::fs::read_to_string(c.join("case.yaml")).unwrap_or_default();
        let build_dir = meta
            .lines()
            .find_map(|l| l.strip_prefix("build_dir:"))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| ".".into());
        let input = c.join("input");
        let (mut ours_wall, mut ref_wall) = (Vec::new(), Vec::new());
        let (mut ours_cpu, mut ref_cpu) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..ROUNDS {
            let (w, u) = run(&ours, &["build"], &input, &build_dir);
            ours_wall.push(w);
            ours_cpu += u;
            let (w, u) = run(&kubectl, &["kustomize"], &input, &build_dir);
            ref_wall.push(w);
            ref_cpu += u;
        }
        let mut lib = Vec::new();
        for _ in 0..ROUNDS {
            let start = Instant::now();
            kustomize_rs::build_dir(&input.join(&build_dir), &Default::default())
                .expect("library build");
            lib.push(start.elapsed());
        }
        let ((a_min, a), (b_min, b), (_, l)) =
            (min_median(ours_wall), min_median(ref_wall), min_median(lib));
        let name = c
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let r_min = b_min.as_secs_f64() / a_min.as_secs_f64();
        let r_wall = b.as_secs_f64() / a.as_secs_f64();
        let r_cpu = ref_cpu.as_secs_f64() / ours_cpu.as_secs_f64().max(1e-9);
        let r_lib = b.as_secs_f64() / l.as_secs_f64();
        log_min += r_min.ln();
        log_wall += r_wall.ln();
        log_cpu += r_cpu.ln();
        log_lib += r_lib.ln();
        println!(
            "{name:<42} {a_min:>9.2?} {a:>9.2?} {b_min:>9.2?} {b:>9.2?} {l:>9.2?} {r_min:>6.1}x {r_wall:>6.1}x {r_cpu:>6.1}x {r_lib:>6.0}x"
        );
    }
    let n = cases.len().max(1) as f64;
    println!(
        "geometric mean of per-case ratios ({} Genestack cases, {ROUNDS} rounds), process to process: {:.1}x fastest wall time, {:.1}x median wall time, {:.1}x CPU time; {:.0}x in-process (median)",
        cases.len(),
        (log_min / n).exp(),
        (log_wall / n).exp(),
        (log_cpu / n).exp(),
        (log_lib / n).exp()
    );
}
