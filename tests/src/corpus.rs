//! The shared Genestack corpus as the tests and the benchmarks use it (one definition for
//! both: `agent/benches/render.rs` includes this file with `#[path]`, since a bench cannot
//! depend on the test crate). Depends on `stackwave` and `std` only.

use std::path::Path;

/// The arguments, relative to `../shared`, that name the corpus for
/// `../shared/tools/genestack-oracle` and `stackwave render` alike.
pub const CORPUS_ARGS: [&str; 6] = [
    "--genestack",
    "corpus/genestack",
    "--charts",
    "corpus/charts",
    "--secrets",
    "corpus/genestack/secrets.yaml",
];

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
