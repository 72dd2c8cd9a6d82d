//! Benchmark: render every golden component with `stackwave render` — cold (a fresh process)
//! and warm (in-process, served by the render cache; the fastest of 20) — next to the reference pipeline
//! (`../shared/tools/genestack-oracle`: Helm's SDK through Python plus `kubectl kustomize`),
//! and print both ratios.
//!
//! Run: `scripts/setup && cargo bench -p stackwave --bench render`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The corpus helpers the tests use (`tests/src/corpus.rs`): the golden components, the
/// corpus arguments, the render inputs.
#[path = "../../tests/src/corpus.rs"]
mod corpus;
use corpus::{genestack_inputs, CORPUS_ARGS, GOLDENS as SERVICES};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared");
    let venv = root.join(".tools/venv/bin");
    if !shared.join("corpus/goldens").is_dir() || !venv.join("kubectl").is_file() {
        println!("skipped: needs ../shared and scripts/setup");
        return;
    }
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_stackwave"));
    let args = |svc: &str| -> Vec<String> {
        CORPUS_ARGS
            .iter()
            .map(|s| s.to_string())
            .chain(["--component".to_string(), svc.to_string()])
            .collect()
    };
    let inputs = genestack_inputs(&shared, None);
    let cache = stackwave::render::cache::RenderCache::new();
    let (mut t_ref, mut t_cold, mut t_warm) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    println!(
        "{:<12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "component", "oracle", "cold", "warm", "cold x", "warm x"
    );
    for svc in SERVICES {
        let start = Instant::now();
        let out = Command::new(venv.join("python"))
            .arg(shared.join("tools/genestack-oracle"))
            .args(["--service", svc])
            .args(CORPUS_ARGS)
            .arg("--kubectl")
            .arg(venv.join("kubectl"))
            .current_dir(&shared)
            .output()
            .expect("oracle");
        let r = start.elapsed();
        assert!(
            out.status.success(),
            "oracle failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let start = Instant::now();
        let mine = Command::new(&ours)
            .arg("render")
            .args(args(svc))
            .current_dir(&shared)
            .output()
            .expect("stackwave");
        let c = start.elapsed();
        assert!(
            mine.status.success() && mine.stdout == out.stdout,
            "{svc}: stackwave differs from the oracle"
        );
        cache.render(&inputs, svc).expect("prime cache");
        // Warm: the fastest of 20 cache hits (the minimum is robust to a loaded machine).
        let mut w = Duration::MAX;
        for _ in 0..20 {
            let start = Instant::now();
            let (_, hit) = cache.render(&inputs, svc).expect("warm render");
            w = w.min(start.elapsed());
            assert!(hit);
        }
        t_ref += r;
        t_cold += c;
        t_warm += w;
        println!(
            "{svc:<12} {r:>12.2?} {c:>12.2?} {w:>12.2?} {:>8.1}x {:>8.0}x",
            r.as_secs_f64() / c.as_secs_f64(),
            r.as_secs_f64() / w.as_secs_f64()
        );
    }
    println!(
        "genestack renders ({} components): oracle {:.2?}, stackwave cold {:.2?} ({:.1}x faster), warm {:.2?} ({:.0}x faster)",
        SERVICES.len(),
        t_ref,
        t_cold,
        t_ref.as_secs_f64() / t_cold.as_secs_f64(),
        t_warm,
        t_ref.as_secs_f64() / t_warm.as_secs_f64()
    );
}
