//! Benchmark: build every Genestack kustomize case of the shared corpus with the lean
//! `kustomize` binary of this crate and with the reference `kubectl kustomize` (kustomize
//! v5.8.1), process to process, and print the cost ratios.
//!
//! Run: `scripts/setup && cargo bench -p kustomize-rs --bench kustomize`. The reference is
//! found through `$KUBECTL`, then `.tools/venv/bin/kubectl`, then `kubectl` on `PATH`.
//! `KUSTOMIZE_BENCH_ROUNDS` sets the rounds (default 15); `KUSTOMIZE_BENCH_VALGRIND=1` adds
//! instruction counts from `valgrind --tool=cachegrind` (one run of each tool per case, ~5 s
//! per `kubectl` run) where `perf stat -e instructions` has no hardware counter.
//!
//! Each case runs both tools `ROUNDS` times as fresh processes, interleaved (so both see the
//! same machine load). **The headline is CPU time**: the user + system time each process
//! used, from `getrusage(RUSAGE_CHILDREN)` deltas around its `wait` (so all of `kubectl`'s
//! threads count), the median over the rounds; the ratio is `kubectl`'s over ours, and the
//! summary prints its geometric mean and its minimum over the cases. CPU time does not grow
//! while a process waits for a core, so it holds on a machine shared with other work, where
//! wall time does not (a 1 ms process waits for a core as long as a 40 ms one). Where the
//! kernel exposes a hardware instruction counter (`perf stat -e instructions:u`), the
//! retired user-space instructions are counted too, in runs of their own (median of 3;
//! deterministic to a few per cent). Wall times (the fastest and the median run of each) and the in-process
//! library time are printed as secondary columns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Rounds per case unless `KUSTOMIZE_BENCH_ROUNDS` says otherwise.
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

/// How retired instructions are counted, if at all.
#[derive(Clone, Copy, PartialEq)]
enum Counter {
    /// Not counted.
    None,
    /// `perf stat -x, -e instructions:u`, 3 runs per tool and case.
    Perf,
    /// `valgrind --tool=cachegrind --cache-sim=no` (its `I refs`), one run per tool and case.
    Valgrind,
}

/// The counter this machine offers: `perf` when its hardware counter reads, else valgrind
/// when asked for.
fn counter() -> Counter {
    let perf = Command::new("perf")
        .args(["stat", "-x,", "-e", "instructions:u", "true"])
        .stdout(Stdio::null())
        .output();
    if let Ok(o) = perf {
        if o.status.success() && parse_perf(&String::from_utf8_lossy(&o.stderr)).is_some() {
            return Counter::Perf;
        }
    }
    let want_valgrind = std::env::var("KUSTOMIZE_BENCH_VALGRIND").is_ok_and(|v| v == "1");
    let has_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if want_valgrind && has_valgrind {
        Counter::Valgrind
    } else {
        Counter::None
    }
}

/// The count of `perf stat -x,` output (`12345,,instructions:u,...`); `None` when the event
/// is `<not supported>` or `<not counted>`.
fn parse_perf(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find(|l| l.contains("instructions"))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.trim().parse().ok())
}

/// The `I refs` count of cachegrind's summary (`==123== I   refs:      232,092,643`).
fn parse_cachegrind(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.split_once("I   refs:"))
        .and_then(|(_, n)| n.trim().replace(',', "").parse().ok())
}

/// One run of a build as a fresh process.
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// Runs `cmd pre... arg` in `dir` (under `wrapper` when it is not empty: `perf stat ...`,
/// `valgrind ...`), output discarded, stderr kept.
fn exec(
    wrapper: &[&str],
    cmd: &Path,
    pre: &[&str],
    dir: &Path,
    arg: &str,
) -> std::io::Result<Output> {
    let mut c = match wrapper.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(cmd);
            c
        }
        None => Command::new(cmd),
    };
    c.args(pre)
        .arg(arg)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
}

/// Runs one build as a fresh process.
fn run(cmd: &Path, pre: &[&str], dir: &Path, arg: &str) -> Sample {
    let cpu0 = children_cpu();
    let start = Instant::now();
    let out = exec(&[], cmd, pre, dir, arg).expect("run build");
    let wall = start.elapsed();
    let cpu = children_cpu().saturating_sub(cpu0);
    assert!(
        out.status.success(),
        "{} failed in {}: {}",
        cmd.display(),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Sample { wall, cpu }
}

/// Retired user-space instructions of a build, in runs of their own (not the timed ones:
/// `perf` and valgrind cost more than our whole build): the median of 3 runs under `perf
/// stat`, or one run under cachegrind.
fn instructions(counter: Counter, cmd: &Path, pre: &[&str], dir: &Path, arg: &str) -> Option<u64> {
    let (wrapper, runs, parse): (&[&str], usize, fn(&str) -> Option<u64>) = match counter {
        Counter::None => return None,
        Counter::Perf => (
            &["perf", "stat", "-x,", "-e", "instructions:u", "--"],
            3,
            parse_perf,
        ),
        Counter::Valgrind => (
            &[
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
            ],
            1,
            parse_cachegrind,
        ),
    };
    let mut counts = Vec::new();
    for _ in 0..runs {
        let out = exec(wrapper, cmd, pre, dir, arg).ok()?;
        counts.push(parse(&String::from_utf8_lossy(&out.stderr))?);
    }
    Some(median(counts))
}

/// The median of the samples (the upper one of an even count).
fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

/// Geometric mean and minimum (with its case) of per-case ratios.
#[derive(Default)]
struct Summary {
    log_sum: f64,
    n: usize,
    min: Option<(f64, String)>,
}

impl Summary {
    fn add(&mut self, ratio: f64, case: &str) {
        self.log_sum += ratio.ln();
        self.n += 1;
        if self.min.as_ref().is_none_or(|(m, _)| ratio < *m) {
            self.min = Some((ratio, case.to_string()));
        }
    }

    fn geomean(&self) -> f64 {
        (self.log_sum / self.n.max(1) as f64).exp()
    }

    fn min(&self) -> String {
        self.min
            .as_ref()
            .map(|(m, c)| format!("{m:.1}x ({c})"))
            .unwrap_or_default()
    }
}

/// Seconds as milliseconds, for the table.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/kustomize/cases");
    let Ok(rd) = std::fs::read_dir(&shared) else {
        println!("SKIPPED: kustomize bench: {} not found", shared.display());
        return;
    };
    let Some(kubectl) = kubectl() else {
        println!("SKIPPED: kustomize bench: no kubectl (run scripts/setup)");
        return;
    };
    let rounds = std::env::var("KUSTOMIZE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r: &usize| r > 0)
        .unwrap_or(ROUNDS);
    let counter = counter();
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_kustomize"));
    let mut cases: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("genestack-"))
        })
        .collect();
    cases.sort();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "kustomize (lean binary) vs kubectl kustomize, {} Genestack cases, {rounds} rounds each, interleaved; load average {}",
        cases.len(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "HEADLINE: CPU time (user+sys) per process, median of the rounds; ratio = kubectl / ours"
    );
    let instr_head = match counter {
        Counter::None => "",
        Counter::Perf => "; instructions (perf, median of 3): ours, kubectl, ratio",
        Counter::Valgrind => "; instructions (cachegrind, 1 run): ours, kubectl, ratio",
    };
    println!(
        "secondary: wall time ratios (fastest run, median run), in-process library build (median) vs kubectl median wall{instr_head}"
    );
    println!(
        "{:<42} {:>8} {:>8} {:>7} | {:>7} {:>7} {:>8} {:>8} {:>7}{}",
        "case",
        "cpu ours",
        "kubectl",
        "RATIO",
        "fastest",
        "median",
        "wall ms",
        "kubectl",
        "in-proc",
        if counter == Counter::None {
            String::new()
        } else {
            format!(" | {:>9} {:>9} {:>7}", "Mi ours", "kubectl", "ratio")
        }
    );
    let (mut s_cpu, mut s_min, mut s_wall, mut s_lib, mut s_instr) = (
        Summary::default(),
        Summary::default(),
        Summary::default(),
        Summary::default(),
        Summary::default(),
    );
    for c in &cases {
        let meta = std::fs::read_to_string(c.join("case.yaml")).unwrap_or_default();
        let build_dir = meta
            .lines()
            .find_map(|l| l.strip_prefix("build_dir:"))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| ".".into());
        let input = c.join("input");
        let name = c
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(run(&ours, &["build"], &input, &build_dir));
            b.push(run(&kubectl, &["kustomize"], &input, &build_dir));
        }
        let mut lib = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            kustomize_rs::build_dir(&input.join(&build_dir), &Default::default())
                .expect("library build");
            lib.push(start.elapsed());
        }
        let (a_cpu, b_cpu) = (
            median(a.iter().map(|s| s.cpu).collect()),
            median(b.iter().map(|s| s.cpu).collect()),
        );
        let (a_min, b_min) = (
            a.iter().map(|s| s.wall).min().unwrap_or_default(),
            b.iter().map(|s| s.wall).min().unwrap_or_default(),
        );
        let (a_wall, b_wall) = (
            median(a.iter().map(|s| s.wall).collect()),
            median(b.iter().map(|s| s.wall).collect()),
        );
        let l = median(lib);
        let r_cpu = b_cpu.as_secs_f64() / a_cpu.as_secs_f64().max(1e-6);
        let r_min = b_min.as_secs_f64() / a_min.as_secs_f64();
        let r_wall = b_wall.as_secs_f64() / a_wall.as_secs_f64();
        let r_lib = b_wall.as_secs_f64() / l.as_secs_f64();
        s_cpu.add(r_cpu, &name);
        s_min.add(r_min, &name);
        s_wall.add(r_wall, &name);
        s_lib.add(r_lib, &name);
        let instr = instructions(counter, &ours, &["build"], &input, &build_dir).zip(instructions(
            counter,
            &kubectl,
            &["kustomize"],
            &input,
            &build_dir,
        ));
        let instr_cols = match instr {
            Some((ia, ib)) => {
                let r = ib as f64 / ia.max(1) as f64;
                s_instr.add(r, &name);
                format!(
                    " | {:>9.2} {:>9.2} {r:>6.1}x",
                    ia as f64 / 1e6,
                    ib as f64 / 1e6
                )
            }
            None if counter != Counter::None => " | (no count)".to_string(),
            None => String::new(),
        };
        println!(
            "{name:<42} {:>6.2}ms {:>6.2}ms {r_cpu:>6.1}x | {r_min:>6.1}x {r_wall:>6.1}x {:>8.2} {:>8.2} {r_lib:>6.0}x{instr_cols}",
            ms(a_cpu),
            ms(b_cpu),
            ms(a_wall),
            ms(b_wall),
        );
    }
    println!(
        "HEADLINE CPU time ratio: geometric mean {:.1}x, minimum {} over {} Genestack cases",
        s_cpu.geomean(),
        s_cpu.min(),
        s_cpu.n
    );
    if s_instr.n > 0 {
        println!(
            "instruction count ratio: geometric mean {:.1}x, minimum {}",
            s_instr.geomean(),
            s_instr.min()
        );
    } else if counter == Counter::None {
        println!(
            "instruction counts: not measured (no hardware counter for `perf stat -e instructions:u`; set KUSTOMIZE_BENCH_VALGRIND=1 to count with valgrind)"
        );
    }
    println!(
        "secondary, wall time ratio: geometric mean {:.1}x fastest run (minimum {}), {:.1}x median run (minimum {}); in-process {:.0}x",
        s_min.geomean(),
        s_min.min(),
        s_wall.geomean(),
        s_wall.min(),
        s_lib.geomean()
    );
}
