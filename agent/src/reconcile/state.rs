//! The agent's persisted loop state ([`AgentState`]): one serde value kept in the revision
//! store under the control-state key [`KEY`], read and written as a unit. Stores written
//! before it kept seven separate keys ([`LEGACY_KEYS`]); [`AgentState::load`] reads those
//! once, saves the unit and removes them.
//!
//! Every change is a read-modify-write in one store transaction ([`AgentState::update`]):
//! the running agent and CLI commands (`rollback`, `resume`) share the store, and each
//! changes only its own fields.

use crate::cluster::instance::Instance;
use crate::record::{RecordError, Store};
use std::collections::{BTreeMap, BTreeSet};

/// The control-state key the unit is stored under.
pub const KEY: &str = "agent";

/// The keys older stores kept the same state under, one value each.
pub const LEGACY_KEYS: [&str; 7] = [
    "pin",
    "pinned_from",
    "wave_of",
    "detect_only",
    "prune_pending",
    "instance",
    "drift",
];

/// What the last drift check found (for `stackwave status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriftSummary {
    /// When (seconds since the epoch).
    pub checked_at: i64,
    /// Whether drifted objects were corrected (false: detect-only).
    pub corrected: bool,
    /// Component → fields found drifted.
    pub fields: BTreeMap<String, usize>,
}

/// The loop state that outlives an agent process.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AgentState {
    /// Pinned to this rolled-back revision until a newer commit arrives or `resume`.
    pub pin: Option<i64>,
    /// The commit that was current when the agent was pinned (the one not to re-apply).
    pub pinned_from: Option<String>,
    /// Component → the wave it was last planned in (rollbacks reuse it; `manifests:`
    /// entries are not in the catalog).
    pub wave_of: BTreeMap<String, i32>,
    /// Components whose drift is reported, never corrected (`detectOnly:` of the last
    /// commit rendered).
    pub detect_only: Vec<String>,
    /// Components whose last prune was skipped (inventory unreadable, prune or inventory
    /// write failed): the next sync is not `Unchanged` until they prune.
    pub prune_pending: BTreeSet<String>,
    /// The instance identity `run` set ([`crate::cluster::instance`]), so `rollback` and
    /// `diff` act as that `run`.
    pub instance: Option<Instance>,
    /// The last drift check.
    pub drift: Option<DriftSummary>,
}

fn corrupt(key: &str) -> impl FnOnce(serde_json::Error) -> RecordError + '_ {
    move |source| RecordError::State {
        key: key.to_string(),
        source,
    }
}

impl AgentState {
    /// The state from the legacy keys' values (what the agent before the unit read from
    /// them: unparsable `pin`, `wave_of`, `detect_only`, `instance` and `drift` values were
    /// ignored; an unparsable `prune_pending` was an error, and still is).
    ///
    /// # Errors
    /// [`RecordError::State`] for `prune_pending`.
    pub fn from_legacy(values: &BTreeMap<String, String>) -> Result<AgentState, RecordError> {
        let get = |k: &str| values.get(k).map(String::as_str);
        fn json<T: serde::de::DeserializeOwned>(v: Option<&str>) -> Option<T> {
            v.and_then(|v| serde_json::from_str(v).ok())
        }
        Ok(AgentState {
            pin: get("pin").and_then(|p| p.parse().ok()),
            pinned_from: get("pinned_from").map(str::to_string),
            wave_of: json(get("wave_of")).unwrap_or_default(),
            detect_only: json(get("detect_only")).unwrap_or_default(),
            prune_pending: match get("prune_pending") {
                Some(p) => serde_json::from_str(p).map_err(corrupt("prune_pending"))?,
                None => BTreeSet::new(),
            },
            instance: json(get("instance")),
            drift: json(get("drift")),
        })
    }

    fn from_values(values: &BTreeMap<String, String>) -> Result<AgentState, RecordError> {
        match values.get(KEY) {
            Some(v) => serde_json::from_str(v).map_err(corrupt(KEY)),
            None => AgentState::from_legacy(values),
        }
    }

    fn keys() -> Vec<&'static str> {
        std::iter::once(KEY).chain(LEGACY_KEYS).collect()
    }

    /// Reads the state without writing anything (read-only commands): the unit, or, in a
    /// store not yet migrated, the legacy keys.
    ///
    /// # Errors
    /// Store failures; a unit that does not parse.
    pub fn read(store: &Store) -> Result<AgentState, RecordError> {
        let mut values = BTreeMap::new();
        for k in AgentState::keys() {
            if let Some(v) = store.state(k)? {
                values.insert(k.to_string(), v);
            }
        }
        AgentState::from_values(&values)
    }

    /// Reads the state and, in a store not yet migrated, saves it as the unit and removes
    /// the legacy keys (once, in one transaction).
    ///
    /// # Errors
    /// As [`AgentState::read`].
    pub fn load(store: &Store) -> Result<AgentState, RecordError> {
        AgentState::update(store, |_| {})
    }

    /// Changes the stored state with `change` (read, changed and saved in one store
    /// transaction; the legacy keys removed) and returns the new state.
    ///
    /// # Errors
    /// As [`AgentState::read`].
    pub fn update(
        store: &Store,
        change: impl FnOnce(&mut AgentState),
    ) -> Result<AgentState, RecordError> {
        let mut out = None;
        store.update_states(&AgentState::keys(), |values| {
            let mut s = AgentState::from_values(values)?;
            change(&mut s);
            let mut writes: Vec<(String, Option<String>)> = LEGACY_KEYS
                .iter()
                .filter(|k| values.contains_key(**k))
                .map(|k| (k.to_string(), None))
                .collect();
            let text = serde_json::to_string(&s).map_err(corrupt(KEY))?;
            if values.get(KEY) != Some(&text) {
                writes.push((KEY.to_string(), Some(text)));
            }
            out = Some(s);
            Ok(writes)
        })?;
        Ok(out.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys_migrate_once_into_the_unit() {
        let store = Store::in_memory().unwrap();
        let instance = Instance {
            name: "east".into(),
            repo: "https://git.example/cloud".into(),
        };
        for (k, v) in [
            ("pin", "3".to_string()),
            ("pinned_from", "abc123".to_string()),
            ("wave_of", r#"{"keystone":2,"glance":3}"#.to_string()),
            ("detect_only", r#"["nova"]"#.to_string()),
            ("prune_pending", r#"["glance"]"#.to_string()),
            ("instance", serde_json::to_string(&instance).unwrap()),
            (
                "drift",
                r#"{"checked_at":17,"corrected":true,"fields":{"keystone":2}}"#.to_string(),
            ),
            ("suspended", "maintenance".to_string()),
        ] {
            store.set_state(k, Some(&v)).unwrap();
        }
        let want = AgentState {
            pin: Some(3),
            pinned_from: Some("abc123".into()),
            wave_of: [("glance".to_string(), 3), ("keystone".to_string(), 2)].into(),
            detect_only: vec!["nova".into()],
            prune_pending: ["glance".to_string()].into(),
            instance: Some(instance),
            drift: Some(DriftSummary {
                checked_at: 17,
                corrected: true,
                fields: [("keystone".to_string(), 2)].into(),
            }),
        };
        // Reading writes nothing.
        assert_eq!(AgentState::read(&store).unwrap(), want);
        assert!(store.state(KEY).unwrap().is_none());
        assert_eq!(AgentState::load(&store).unwrap(), want);
        for k in LEGACY_KEYS {
            assert_eq!(store.state(k).unwrap(), None, "{k} left behind");
        }
        assert!(store.state(KEY).unwrap().is_some());
        // Keys that are not the loop's stay.
        assert_eq!(
            store.state("suspended").unwrap().as_deref(),
            Some("maintenance")
        );
        // A later change keeps every other field.
        let after = AgentState::update(&store, |s| s.pin = None).unwrap();
        assert_eq!(
            after,
            AgentState {
                pin: None,
                ..want.clone()
            }
        );
        assert_eq!(AgentState::read(&store).unwrap(), after);
    }

    #[test]
    fn a_corrupt_prune_pending_is_an_error_other_legacy_values_are_ignored() {
        let store = Store::in_memory().unwrap();
        store.set_state("wave_of", Some("{not json")).unwrap();
        store.set_state("pin", Some("x")).unwrap();
        assert_eq!(AgentState::load(&store).unwrap(), AgentState::default());
        let store = Store::in_memory().unwrap();
        store.set_state("prune_pending", Some("[1")).unwrap();
        let e = AgentState::load(&store).unwrap_err();
        assert!(e.to_string().contains("prune_pending"), "{e}");
    }
}
