//! Benchmark: the reconcile loop over the real Genestack sandbox (`stackwave demo`'s:
//! repo-template, `../shared` base and charts, the in-process API server). Prints
//! - time from commit to first apply (first commit, and a one-component change),
//! - the no-op loop's cost: wall time, CPU time of this process and API requests,
//! - rollback time (to the first revision) and time to its first apply,
//! - revision-store bytes per revision (a one-component change),
//! - peak RSS of this process (agent, renderer and API server together: an upper bound).
//!
//! There is no reference tool to divide by here (Flux and Argo CD need a real cluster); the
//! numbers are absolute. Run: `scripts/setup && cargo bench -p stackwave --bench loop`.

use stackwave::demo::{commit_all, sandbox, DemoOptions};
use stackwave::reconcile::{Outcome, Progress};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::rusage;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared/corpus");
    if !shared.join("genestack").is_dir() {
        println!("skipped: needs ../shared");
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let opts = DemoOptions {
            genestack: shared.join("genestack"),
            charts: Some(shared.join("charts")),
            bootstrap: vec![
                shared.join("genestack/secrets.yaml"),
                shared.join("genestack/cluster-state.yaml"),
            ]
            .into_iter()
            .filter(|p| p.is_file())
            .collect(),
            template: root.join("repo-template"),
            workdir: std::env::temp_dir().join(format!("stackwave-bench-loop-{}", std::process::id())),
            cache_dir: None,
        };
        let mut sb = sandbox(&opts).await.expect("sandbox");
        let first_apply: Mutex<Option<Duration>> = Mutex::new(None);
        let requests = |sb: &stackwave::demo::Sandbox| {
            sb.server
                .store
                .lock()
                .map(|s| s.requests.values().sum::<u64>())
                .unwrap_or(0)
        };
        let t0 = Instant::now();
        let c = sb.source.fetch().expect("fetch");
        let dir = sb.source.export(&c.id, &sb.state.join("checkout")).expect("export");
        let fa = &first_apply;
        let on = move |p: Progress| {
            if matches!(p, Progress::Applied { .. }) {
                fa.lock().unwrap().get_or_insert(t0.elapsed());
            }
        };
        let out = sb.agent.sync(&dir, &c, &on).await.expect("sync");
        assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
        println!(
            "first commit (9 components): first apply after {:?}, healthy after {:?}",
            first_apply.lock().unwrap().unwrap_or_default(),
            t0.elapsed()
        );

        // No-op loops: same commit, then a drift check (what each poll costs when nothing
        // changed).
        let runs = 5;
        let (cpu0, _) = rusage();
        let req0 = requests(&sb);
        let t = Instant::now();
        for _ in 0..runs {
            let out = sb.agent.sync(&dir, &c, &|_| {}).await.expect("sync");
            assert_eq!(out, Outcome::Unchanged);
            sb.agent.drift(false).await.expect("drift");
        }
        let (cpu1, _) = rusage();
        println!(
            "no-op loop (render from cache + drift check of every object): {:?} wall, {:?} CPU, {} API requests per loop",
            t.elapsed() / runs,
            (cpu1 - cpu0) / runs,
            (requests(&sb) - req0) / runs as u64
        );

        // A one-component change.
        let bytes0 = sb.agent.store.object_bytes().expect("store");
        // nova-conductor: keystone-api's replicas belong to its HPA.
        let f = sb.repo_dir.join("helm-configs/nova/nova-helm-overrides.yaml");
        let mut text = std::fs::read_to_string(&f).expect("nova overrides");
        text.push_str("pod:\n  replicas:\n    conductor: 2\n");
        std::fs::write(&f, text).expect("write");
        commit_all(&sb.repo, "nova: two conductors").expect("commit");
        let t1 = Instant::now();
        *first_apply.lock().unwrap() = None;
        let c2 = sb.source.fetch().expect("fetch");
        let dir2 = sb.source.export(&c2.id, &sb.state.join("checkout")).expect("export");
        let on2 = |p: Progress| {
            if matches!(p, Progress::Applied { .. }) {
                first_apply.lock().unwrap().get_or_insert(t1.elapsed());
            }
        };
        let out = sb.agent.sync(&dir2, &c2, &on2).await.expect("sync");
        assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
        println!(
            "one-component change: first apply {:?} after the fetch began, healthy after {:?}; history grew {} bytes for the revision",
            first_apply.lock().unwrap().unwrap_or_default(),
            t1.elapsed(),
            sb.agent.store.object_bytes().expect("store") - bytes0
        );

        let first_rev = sb
            .agent
            .store
            .revisions()
            .expect("store")
            .iter()
            .map(|r| r.id)
            .min()
            .unwrap_or(1);
        let t2 = Instant::now();
        *first_apply.lock().unwrap() = None;
        let on3 = |p: Progress| {
            if matches!(p, Progress::Applied { .. }) {
                first_apply.lock().unwrap().get_or_insert(t2.elapsed());
            }
        };
        let out = sb.agent.rollback(first_rev, false, &on3).await.expect("rollback");
        assert!(matches!(out, Outcome::Healthy { .. }), "{out:?}");
        println!(
            "rollback to revision {first_rev}: first apply after {:?}, healthy after {:?}",
            first_apply.lock().unwrap().unwrap_or_default(),
            t2.elapsed()
        );
        let (_, rss) = rusage();
        println!("peak RSS (agent + renderer + in-process API server): {} MiB", rss / 1024);
        let _ = std::fs::remove_dir_all(&opts.workdir);
    });
}
