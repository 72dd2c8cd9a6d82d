//! Apply (server-side apply, `ssa`): one object applied, and the inventory entries recorded for what was
//! applied.

use super::Applier;
use crate::cluster::inventory::{self, ObjRef};
use crate::cluster::{Action, ApplyOptions, ClusterError};
use serde_json::Value as Json;

/// One object applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Object id (`Kind/namespace/name`).
    pub id: String,
    /// What the API server did.
    pub action: Action,
}

impl Change {
    /// The action in lowercase (`created`, `configured`, `unchanged`, `replaced`, ...).
    pub fn action_text(&self) -> String {
        format!("{:?}", self.action).to_lowercase()
    }
}

impl Applier<'_> {
    /// Applies one object of a revision: forced, Jobs replaced on immutable-field errors,
    /// the fields HPAs own released.
    ///
    /// # Errors
    /// API errors (naming the object).
    pub async fn apply(&self, o: &Json) -> Result<Change, ClusterError> {
        let release = self
            .released
            .get(&crate::cluster::object_id(o))
            .cloned()
            .unwrap_or_default();
        let a = self
            .cluster
            .apply(
                o,
                &ApplyOptions {
                    force: true,
                    replace_immutable: o["kind"] == "Job",
                    release,
                    ..Default::default()
                },
            )
            .await?;
        Ok(Change {
            id: a.id,
            action: a.action,
        })
    }

    /// Takes over this instance's entries of a legacy (unscoped) inventory of `component`
    /// ([`inventory::claim_legacy`]). Returns a note of what moved or why nothing did (a
    /// failure leaves the legacy inventory as it was); `None` when there was nothing.
    pub async fn claim_legacy(&self, component: &str, desired: &[ObjRef]) -> Option<String> {
        match inventory::claim_legacy(self.cluster, self.instance, component, desired).await {
            Ok(c) if c.claimed.is_empty() => None,
            Ok(c) => Some(format!(
                "inventory of {component}: took over {} entr{} of the legacy {} ({} left there for other instances)",
                c.claimed.len(),
                if c.claimed.len() == 1 { "y" } else { "ies" },
                inventory::legacy_name(component),
                c.left
            )),
            Err(e) => Some(format!("legacy inventory of {component} not claimed: {e}")),
        }
    }

    /// Adds applied objects to `component`'s inventory, right after their apply and before
    /// any health wait, so a revision that never becomes healthy leaves nothing a later
    /// prune cannot find (kustomize-controller likewise records its inventory right after
    /// apply). A read-modify-write: a failed read writes nothing (never an inventory without
    /// the entries it could not read). Returns notes of what went wrong (a legacy inventory
    /// claimed, a failed update).
    pub async fn record_inventory(&self, component: &str, refs: &[ObjRef]) -> Vec<String> {
        let mut notes: Vec<String> = self
            .claim_legacy(component, refs)
            .await
            .into_iter()
            .collect();
        let added = inventory::update(self.cluster, self.instance, component, |old| {
            let mut inv = old.to_vec();
            inv.extend(refs.iter().filter(|r| !old.contains(r)).cloned());
            inv
        })
        .await;
        if let Err(e) = added {
            notes.push(format!("inventory of {component} not updated: {e}"));
        }
        notes
    }
}
