//! Helpers shared by the integration tests: locating the shared corpus and reading the
//! kustomize conformance cases.

use std::path::{Path, PathBuf};

/// `../shared` next to the workspace root, if present.
pub fn shared_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let s = root.parent()?.join("shared");
    s.is_dir().then_some(s)
}

/// One kustomize conformance case (`corpus/kustomize/cases/<name>`).
#[derive(Debug, Clone)]
pub struct Case {
    /// Case name from `case.yaml`.
    pub name: String,
    /// The case directory.
    pub dir: PathBuf,
    /// `build_dir`, relative to `input/`.
    pub build_dir: String,
    /// Extra CLI arguments.
    pub args: Vec<String>,
    /// Expected stdout, or `None` when the build must fail.
    pub expected: Option<String>,
}

fn scalar(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
        .to_string()
}

/// Reads every case under `cases_dir`.
pub fn read_cases(cases_dir: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(cases_dir) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(meta) = std::fs::read_to_string(dir.join("case.yaml")) else {
            continue;
        };
        let mut c = Case {
            name: String::new(),
            dir: dir.clone(),
            build_dir: ".".into(),
            args: Vec::new(),
            expected: None,
        };
        for line in meta.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim() {
                "name" => c.name = scalar(v),
                "build_dir" => c.build_dir = scalar(v),
                "args" => {
                    let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
                    c.args = inner
                        .split(',')
                        .map(scalar)
                        .filter(|s| !s.is_empty())
                        .collect();
                }
                _ => {}
            }
        }
        c.expected = std::fs::read_to_string(dir.join("expected.yaml")).ok();
        out.push(c);
    }
    out
}

/// Builds a case with the library, as `stackwave kustomize build` would.
pub fn build_case(c: &Case) -> Result<String, kustomize_rs::Error> {
    let mut opts = kustomize_rs::Options::default();
    for a in &c.args {
        match a.as_str() {
            "--load-restrictor=LoadRestrictionsNone" => {
                opts.load_restrictor = kustomize_rs::LoadRestrictor::None
            }
            "--reorder=none" => opts.reorder = Some(kustomize_rs::Reorder::None),
            "--reorder=legacy" => opts.reorder = Some(kustomize_rs::Reorder::Legacy),
            _ => {}
        }
    }
    let input = c.dir.join("input");
    kustomize_rs::build_dir(&input.join(&c.build_dir), &opts)
}

/// The components with a golden render in `corpus/goldens/`.
pub const GOLDENS: [&str; 8] = [
    "keystone",
    "glance",
    "placement",
    "nova",
    "neutron",
    "barbican",
    "memcached",
    "libvirt",
];

/// Render inputs over the shared corpus: the Genestack base, the local charts, the fake
/// Secrets and cluster state loaded as lookup objects, the builtin catalog, and an optional
/// operator overrides tree.
///
/// # Panics
/// When the corpus files or the builtin catalog cannot be read (a broken checkout).
pub fn genestack_inputs(shared: &Path, overrides: Option<&Path>) -> stackwave::render::Inputs {
    let g = shared.join("corpus/genestack");
    let mut objects = stackwave::render::objects::Objects::default();
    objects
        .load_file(&g.join("secrets.yaml"))
        .expect("secrets.yaml");
    objects
        .load_file(&g.join("cluster-state.yaml"))
        .expect("cluster-state.yaml");
    stackwave::render::Inputs {
        sources: stackwave::render::values::Sources {
            genestack: g,
            overrides: overrides.map(Path::to_path_buf),
        },
        charts: stackwave::render::charts::ChartStore::Dir(shared.join("corpus/charts")),
        objects,
        catalog: stackwave::component::Catalog::builtin().expect("builtin catalog"),
    }
}

/// Runs the `git` CLI in `dir` as a fixed test identity (no signing); returns its stdout.
/// Panics, naming the command and git's stderr, when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Test Operator",
            "-c",
            "user.email=ops@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git CLI");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
