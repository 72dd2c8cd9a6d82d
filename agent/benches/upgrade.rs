//! Benchmark: `diff --from --to` over the whole corpus — every catalog component whose chart is
//! in `../shared/corpus/charts`, rendered on both sides of a change that touches all of them
//! (a global override) — cold (empty Git/tree cache, empty render cache) and warm (the same
//! render cache again: both sides are served from it).
//!
//! Run: `scripts/setup && cargo bench -p stackwave --bench upgrade`.

use stackwave::render::cache::RenderCache;
use stackwave::upgrade::{diff, render_both, Options, Upgrade};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git");
    assert!(st.success(), "git {args:?}");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared");
    let charts = shared.join("corpus/charts");
    let genestack = shared.join("corpus/genestack");
    if !charts.is_dir() || stackwave::render::helm::Helm::get().is_err() {
        println!("skipped: needs ../shared and libhelm_c (scripts/setup)");
        return;
    }
    let catalog = stackwave::component::Catalog::builtin().expect("catalog");
    let components: Vec<String> = catalog
        .components
        .values()
        .filter(|c| charts.join(&c.chart.name).join("Chart.yaml").is_file())
        .map(|c| c.name.clone())
        .collect();
    let work = std::env::temp_dir().join(format!("stackwave-bench-upgrade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let repo = work.join("cloud");
    std::fs::create_dir_all(repo.join("helm-configs/global_overrides")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join("stackwave.yaml"),
        format!(
            "genestack:\n  path: {}\ncharts:\n  path: {}\ncomponents: [{}]\n",
            genestack.display(),
            charts.display(),
            components.join(", ")
        ),
    )
    .unwrap();
    let g = repo.join("helm-configs/global_overrides/bench.yaml");
    std::fs::write(&g, "pod:\n  replicas:\n    api: 1\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    std::fs::write(&g, "pod:\n  replicas:\n    api: 2\n").unwrap();
    git(
        &repo,
        &["commit", "-q", "-am", "two API replicas everywhere"],
    );
    let opts = Options {
        repo: repo.display().to_string(),
        from: "HEAD~1".into(),
        to: "HEAD".into(),
        cache_dir: work.join("cache"),
        offline: true,
        secrets: vec![
            genestack.join("secrets.yaml"),
            genestack.join("cluster-state.yaml"),
        ],
    };
    let cache = RenderCache::with_depth(2);
    let run = |label: &str| {
        let t = Instant::now();
        let up = Upgrade::open(&opts).expect("open");
        let (a, b) = render_both(&up, &cache, &opts).expect("render");
        let d = diff::diff(&up.from.commit, &up.to.commit, &a, &b);
        let objects: usize = d.components.iter().map(|c| c.objects.len()).sum();
        println!(
            "diff --from --to, {} components, {label}: {:>8.1} ms ({} components / {objects} objects change; render cache {:?})",
            components.len(),
            t.elapsed().as_secs_f64() * 1e3,
            d.components.len(),
            cache.stats()
        );
    };
    run("cold");
    run("warm");
    run("warm");
    let _ = std::fs::remove_dir_all(&work);
}
