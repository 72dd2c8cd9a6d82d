//! Guards: checks over the applied state (before) and a newly rendered one (after) that
//! refuse a revision before it touches the cluster. Pure: no cluster, no store.
//!
//! - A component that rendered no objects is refused (an empty render would prune the whole
//!   component; it is far more often a broken overlay than an intent).
//! - A revision that would delete more than [`Limits::max_delete_share`] of the managed
//!   objects is refused.
//!
//! Both are lifted by [`Limits::allow_destructive`].

use crate::cluster::inventory::ObjRef;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// What the guards allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest share of the managed objects one revision may delete (0.10 = 10%).
    pub max_delete_share: f64,
    /// Lift every guard.
    pub allow_destructive: bool,
}

/// Why a revision was refused by a guard.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// A component rendered no objects.
    #[error("component {component} rendered no objects (refused; allow destructive changes to apply it)")]
    EmptyComponent {
        /// The component.
        component: String,
    },
    /// Too large a share of the managed objects would be deleted.
    #[error("revision would delete {deleting} of {managed} managed objects (more than {:.0}%)", .max_share * 100.0)]
    TooManyDeletes {
        /// Objects that would be deleted.
        deleting: usize,
        /// Objects managed now.
        managed: usize,
        /// [`Limits::max_delete_share`].
        max_share: f64,
    },
}

/// Checks a rendered revision (`after`: component → objects) against the applied state
/// (`before`), in the order above; the first guard that fails refuses.
///
/// # Errors
/// The [`Refusal`].
pub fn check(
    before: &BTreeMap<String, Vec<Json>>,
    after: &BTreeMap<String, Vec<Json>>,
    limits: &Limits,
) -> Result<(), Refusal> {
    if limits.allow_destructive {
        return Ok(());
    }
    if let Some((c, _)) = after.iter().find(|(_, o)| o.is_empty()) {
        return Err(Refusal::EmptyComponent {
            component: c.clone(),
        });
    }
    let managed: Vec<ObjRef> = before.values().flatten().map(ObjRef::of).collect();
    let kept: BTreeSet<ObjRef> = after.values().flatten().map(ObjRef::of).collect();
    let deleting = managed.iter().filter(|r| !kept.contains(r)).count();
    if !managed.is_empty() && deleting as f64 / managed.len() as f64 > limits.max_delete_share {
        return Err(Refusal::TooManyDeletes {
            deleting,
            managed: managed.len(),
            max_share: limits.max_delete_share,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str) -> Json {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}})
    }

    fn state(comps: &[(&str, usize)]) -> BTreeMap<String, Vec<Json>> {
        comps
            .iter()
            .map(|(c, n)| {
                (
                    c.to_string(),
                    (0..*n).map(|i| cm(&format!("{c}-{i}"))).collect(),
                )
            })
            .collect()
    }

    const LIMITS: Limits = Limits {
        max_delete_share: 0.10,
        allow_destructive: false,
    };

    #[test]
    fn an_empty_component_is_refused() {
        let before = state(&[("a", 5)]);
        let after = state(&[("a", 5), ("b", 0)]);
        assert_eq!(
            check(&before, &after, &LIMITS),
            Err(Refusal::EmptyComponent {
                component: "b".into()
            })
        );
        let allow = Limits {
            allow_destructive: true,
            ..LIMITS
        };
        assert_eq!(check(&before, &after, &allow), Ok(()));
    }

    #[test]
    fn deletes_up_to_the_share_pass_and_beyond_are_refused() {
        let before = state(&[("a", 20)]);
        // 2 of 20 = 10%: not more than 10%, passes.
        assert_eq!(check(&before, &state(&[("a", 18)]), &LIMITS), Ok(()));
        // 3 of 20 = 15%.
        let e = check(&before, &state(&[("a", 17)]), &LIMITS).unwrap_err();
        assert_eq!(
            e,
            Refusal::TooManyDeletes {
                deleting: 3,
                managed: 20,
                max_share: 0.10
            }
        );
        assert_eq!(
            e.to_string(),
            "revision would delete 3 of 20 managed objects (more than 10%)"
        );
        // A component leaving the repository deletes all of its objects.
        let two = state(&[("a", 5), ("b", 5)]);
        assert!(check(&two, &state(&[("a", 5)]), &LIMITS).is_err());
        // An object moving between components is not a delete.
        let mut moved = state(&[("a", 4), ("b", 5)]);
        moved.get_mut("b").unwrap().push(cm("a-4"));
        assert_eq!(check(&two, &moved, &LIMITS), Ok(()));
    }

    #[test]
    fn nothing_applied_yet_passes() {
        assert_eq!(
            check(&BTreeMap::new(), &state(&[("a", 3)]), &LIMITS),
            Ok(())
        );
        assert_eq!(check(&BTreeMap::new(), &BTreeMap::new(), &LIMITS), Ok(()));
    }
}
