//! The applier: the verbs the reconcile loop runs against the cluster for one revision, one
//! file per verb, each returning what it did as a value (after fluxcd/pkg `ssa`'s
//! `ResourceManager`: `manager_apply.go`, `manager_wait.go`, `manager_delete.go`, each
//! returning a `ChangeSet`) — the loop decides what to report, count and record.
//!
//! - [`ssa`]: server-side apply of one object (forced; Jobs replaced on immutable-field
//!   errors; fields HPAs own handed over) and the inventory entries recorded right after.
//! - [`wait`]: health gating of a wave's objects ([`Stop`] says why it stopped waiting).
//! - [`prune`]: deleting what left a component, never without a good inventory read.

pub mod prune;
pub mod ssa;
pub mod wait;

pub use prune::PruneResult;
pub use ssa::Change;
pub use wait::{Gate, Stop, Target, WaitOptions};

use crate::cluster::health::Rule;
use crate::cluster::instance::Instance;
use crate::cluster::inventory::Protect;
use crate::cluster::Cluster;
use std::collections::BTreeMap;

/// Object id (`Kind/namespace/name`) → JSON pointers Stackwave releases to an HPA.
pub type Released = BTreeMap<String, Vec<String>>;

/// What the applier works with: the cluster, whose objects it acts as, and the policies.
#[derive(Clone, Copy)]
pub struct Applier<'a> {
    /// The cluster.
    pub cluster: &'a Cluster,
    /// The instance whose inventories and marks it writes.
    pub instance: &'a Instance,
    /// Fields released to HPAs, per object id ([`crate::cluster::hpa`]).
    pub released: &'a Released,
    /// Health rules ([`crate::cluster::health`]).
    pub health_rules: &'a [Rule],
    /// Kinds never pruned.
    pub protect: &'a [Protect],
}
