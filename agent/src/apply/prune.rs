//! Prune: what left a component deleted once the whole revision is healthy. An inventory
//! that cannot be read is never taken for an empty one: that component's prune is skipped
//! (nothing deleted) and its inventory left as it is.

use super::Applier;
use crate::cluster::inventory::{self, ObjRef};

/// What pruning one component did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneResult {
    /// Deleted objects (ids).
    pub deleted: Vec<String>,
    /// Objects left in place and why (protected, another instance's, ...).
    pub skipped: Vec<(String, String)>,
    /// Whether the inventory was read and the deletes tried (else nothing was deleted).
    pub ran: bool,
    /// Whether the prune must be tried again (the inventory could not be read, a delete
    /// or the inventory write failed).
    pub pending: bool,
    /// What went wrong or was taken over, one line each.
    pub notes: Vec<String>,
}

impl Applier<'_> {
    /// Deletes the objects of `component`'s inventory that are not in `desired`
    /// ([`inventory::prune`]: reverse order, ownership marks and protections honoured), then
    /// rewrites the inventory: `desired`, the entries kept, and entries someone added since
    /// the read (the write is conditional on the read `resourceVersion`, re-run on 409).
    pub async fn prune(&self, component: &str, desired: &[ObjRef]) -> PruneResult {
        let c = component;
        let mut out = PruneResult::default();
        out.notes.extend(self.claim_legacy(c, desired).await);
        let old = match inventory::read(self.cluster, self.instance, c).await {
            Ok(old) => old,
            Err(e) => {
                out.notes.push(format!(
                    "prune of {c} skipped, nothing deleted: inventory not read: {e}"
                ));
                out.pending = true;
                return out;
            }
        };
        match inventory::prune(self.cluster, self.instance, c, &old, desired, self.protect).await {
            Ok((p, keep)) => {
                out.ran = true;
                out.deleted = p.deleted;
                out.skipped = p.skipped;
                let written = inventory::update(self.cluster, self.instance, c, |cur| {
                    let mut inv = desired.to_vec();
                    inv.extend(keep.iter().filter(|k| !desired.contains(k)).cloned());
                    let added: Vec<ObjRef> = cur
                        .iter()
                        .filter(|r| !old.contains(r) && !inv.contains(r))
                        .cloned()
                        .collect();
                    inv.extend(added);
                    inv
                })
                .await;
                if let Err(e) = written {
                    out.notes.push(format!("inventory of {c} not updated: {e}"));
                    out.pending = true;
                }
            }
            Err(e) => {
                out.notes.push(format!("prune of {c} skipped: {e}"));
                out.pending = true;
            }
        }
        out
    }
}
