//! The record stage: every applied revision in an embedded SQLite store (no external database).
//!
//! A revision holds the commit (hash, author, message, time), per component the rendered
//! digest and its objects, per wave the result and timing, and the outcome. Rendered objects
//! are stored content-addressed (sha256 of the canonical JSON), so a revision costs only what
//! changed, and every body is encrypted at rest with ChaCha20-Poly1305 (rendered OpenStack
//! configs carry passwords, not only Secrets do). The key is a 32-byte file, created `0600` on
//! first use (in-cluster: a mounted Secret).

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// SQLite failure.
    #[error("revision store: {0}")]
    Db(#[from] rusqlite::Error),
    /// Key or I/O failure.
    #[error("revision store: {0}")]
    Io(String),
    /// A read-only open found no store there (nothing was created).
    #[error("revision store: {0} does not exist (nothing created; is the state directory right?)")]
    Missing(String),
    /// A control-state value that does not parse.
    #[error("revision store: state {key}: {source}")]
    State {
        /// The key.
        key: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A state change the revision's state does not allow (or no such revision).
    #[error("revision store: revision {revision} cannot become {to} (it is {})", .from.map_or("missing", RevisionState::as_str))]
    Transition {
        /// The revision.
        revision: i64,
        /// Its state (`None`: no such revision).
        from: Option<RevisionState>,
        /// The state asked for.
        to: RevisionState,
    },
    /// A stored revision state or kind this build does not know.
    #[error("revision store: revision {revision} has unknown state or kind '{value}'")]
    UnknownState {
        /// The revision.
        revision: i64,
        /// The stored text.
        value: String,
    },
    /// Decryption failure (wrong key or corruption).
    #[error("revision store: object {0} cannot be decrypted (wrong key or corrupted)")]
    Decrypt(String),
}

/// A revision summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Revision {
    /// Revision number.
    pub id: i64,
    /// Commit hash.
    pub commit: String,
    /// Author.
    pub author: String,
    /// Commit message (first line).
    pub message: String,
    /// When it was applied (seconds since the epoch).
    pub applied_at: i64,
    /// How the revision ended (or that it is still being applied).
    pub outcome: RevisionState,
    /// What made the revision: a commit, a rollback or an adoption.
    pub kind: RevisionKind,
    /// Components and their rendered digests.
    pub components: Vec<(String, String)>,
}

/// The state of a revision, as stored in the `revisions.outcome` column (the lowercase
/// names below; [`RevisionState::as_str`]). Transitions ([`RevisionState::can_become`]):
/// a revision begins `applying` and ends in exactly one of the others; `interrupted` (the
/// agent restarted mid-revision) becomes `applying` again when the next sync of its commit
/// continues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevisionState {
    /// Being applied (waves in progress).
    Applying,
    /// Every wave healthy, pruned: what the cluster runs.
    Healthy,
    /// A wave failed or timed out; later waves untouched, nothing pruned.
    Failed,
    /// Refused before any wave applied (preflight).
    Refused,
    /// A newer commit arrived while a wave waited for health; stopped there.
    Superseded,
    /// The agent process ended mid-revision; the next sync of its commit continues it.
    Interrupted,
}

impl RevisionState {
    /// Every state, in the order above.
    pub const ALL: [RevisionState; 6] = [
        RevisionState::Applying,
        RevisionState::Healthy,
        RevisionState::Failed,
        RevisionState::Refused,
        RevisionState::Superseded,
        RevisionState::Interrupted,
    ];

    /// The stored name (`applying`, `healthy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionState::Applying => "applying",
            RevisionState::Healthy => "healthy",
            RevisionState::Failed => "failed",
            RevisionState::Refused => "refused",
            RevisionState::Superseded => "superseded",
            RevisionState::Interrupted => "interrupted",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(s: &str) -> Option<RevisionState> {
        RevisionState::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether a revision in this state may move to `next`: `applying` ends in any other
    /// state, `interrupted` resumes as `applying`; the end states are final.
    pub fn can_become(self, next: RevisionState) -> bool {
        use RevisionState::*;
        match (self, next) {
            (Applying, Applying) => false,
            (Applying, _) => true,
            (Interrupted, Applying) => true,
            _ => false,
        }
    }

    /// Whether the revision ended (it will not change again by itself).
    pub fn is_final(self) -> bool {
        !matches!(self, RevisionState::Applying | RevisionState::Interrupted)
    }
}

impl std::fmt::Display for RevisionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for RevisionState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What made a revision, stored in the `revisions.kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevisionKind {
    /// A commit of the followed repository, rendered and applied.
    Commit,
    /// A rollback: a stored revision's objects re-applied.
    Rollback,
    /// Objects already in the cluster taken over (`stackwave adopt`).
    Adopted,
    /// One hop of an operator's upgrade path applied on the way to a commit (`upgrade:
    /// {hops: true}` in `stackwave.yaml`, [`crate::upgrade::gate`]): the last applied tree
    /// with one pin moved to the next required version; recorded with the commit it leads to.
    Hop,
}

impl RevisionKind {
    /// The stored name (`commit`, `rollback`, `adopted`, `hop`).
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionKind::Commit => "commit",
            RevisionKind::Rollback => "rollback",
            RevisionKind::Adopted => "adopted",
            RevisionKind::Hop => "hop",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(s: &str) -> Option<RevisionKind> {
        [
            RevisionKind::Commit,
            RevisionKind::Rollback,
            RevisionKind::Adopted,
            RevisionKind::Hop,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for RevisionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The author stores before schema version 1 recorded on rollback revisions (their only
/// mark of a rollback); the migration turns such rows into [`RevisionKind::Rollback`].
pub const LEGACY_ROLLBACK_AUTHOR: &str = "stackwave rollback";

/// The store.
pub struct Store {
    conn: Mutex<Connection>,
    cipher: ChaCha20Poly1305,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (sha TEXT PRIMARY KEY, nonce BLOB NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS revisions (id INTEGER PRIMARY KEY AUTOINCREMENT, commit_id TEXT NOT NULL, author TEXT, message TEXT,
  applied_at INTEGER NOT NULL, outcome TEXT NOT NULL, detail TEXT, kind TEXT NOT NULL DEFAULT 'commit');
CREATE TABLE IF NOT EXISTS revision_components (rev INTEGER NOT NULL, component TEXT NOT NULL, digest TEXT NOT NULL,
  PRIMARY KEY (rev, component));
CREATE TABLE IF NOT EXISTS revision_objects (rev INTEGER NOT NULL, component TEXT NOT NULL, idx INTEGER NOT NULL,
  object_id TEXT NOT NULL, sha TEXT NOT NULL, PRIMARY KEY (rev, component, idx));
CREATE TABLE IF NOT EXISTS revision_waves (rev INTEGER NOT NULL, wave INTEGER NOT NULL, ok INTEGER NOT NULL,
  millis INTEGER NOT NULL, message TEXT, PRIMARY KEY (rev, wave));
CREATE TABLE IF NOT EXISTS revision_irreversible (rev INTEGER NOT NULL, component TEXT NOT NULL, PRIMARY KEY (rev, component));
CREATE TABLE IF NOT EXISTS agent_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revision_images (rev INTEGER NOT NULL, image TEXT NOT NULL, image_id TEXT, PRIMARY KEY (rev, image));
";

/// The schema version this build writes (`PRAGMA user_version`). Version 0 stores (no
/// `kind` column; rollbacks marked only by the author [`LEGACY_ROLLBACK_AUTHOR`]) are
/// migrated on open by [`migrate`].
pub const SCHEMA_VERSION: i64 = 1;

/// Brings a store's schema to [`SCHEMA_VERSION`], once, in one transaction: version 0 → 1
/// adds `revisions.kind` (rows whose author is [`LEGACY_ROLLBACK_AUTHOR`] become
/// `rollback`, the others `commit`) and checks that every stored outcome is a
/// [`RevisionState`] (a store holding an unknown one is refused, unchanged).
///
/// # Errors
/// SQLite errors; [`RecordError::UnknownState`].
fn migrate(conn: &mut Connection) -> Result<(), RecordError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    // Immediate: a second process opening the same old store waits, then finds it migrated.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let has_kind = {
        let mut st = tx.prepare("SELECT name FROM pragma_table_info('revisions')")?;
        let cols: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        cols.iter().any(|c| c == "kind")
    };
    if !has_kind {
        tx.execute_batch("ALTER TABLE revisions ADD COLUMN kind TEXT NOT NULL DEFAULT 'commit'")?;
        tx.execute(
            "UPDATE revisions SET kind = 'rollback' WHERE author = ?1",
            params![LEGACY_ROLLBACK_AUTHOR],
        )?;
    }
    {
        let mut st = tx.prepare("SELECT id, outcome FROM revisions")?;
        let rows: Vec<(i64, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        if let Some((id, s)) = rows.iter().find(|(_, s)| RevisionState::parse(s).is_none()) {
            return Err(RecordError::UnknownState {
                revision: *id,
                value: s.clone(),
            });
        }
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// sha256 of an object's canonical JSON (keys sorted).
pub fn object_sha(o: &Json) -> String {
    fn canon(v: &Json) -> Json {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Json::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), canon(&m[k])))
                        .collect(),
                )
            }
            Json::Array(a) => Json::Array(a.iter().map(canon).collect()),
            other => other.clone(),
        }
    }
    Sha256::digest(canon(o).to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn load_key(path: &Path) -> Result<[u8; 32], RecordError> {
    if let Ok(b) = std::fs::read(path) {
        return <[u8; 32]>::try_from(b.as_slice())
            .map_err(|_| RecordError::Io(format!("{}: the key must be 32 bytes", path.display())));
    }
    let key: [u8; 32] = rand::random();
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| RecordError::Io(format!("{}: {e}", p.display())))?;
    }
    {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts
            .open(path)
            .map_err(|e| RecordError::Io(format!("{}: {e}", path.display())))?;
        f.write_all(&key)
            .map_err(|e| RecordError::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(key)
}

impl Store {
    /// Opens (or creates) a store at `db` with the key at `key_file`.
    ///
    /// # Errors
    /// I/O and SQLite errors; a key of the wrong size.
    pub fn open(db: &Path, key_file: &Path) -> Result<Store, RecordError> {
        let key = load_key(key_file)?;
        Store::open_with_key(db, &key)
    }

    /// Opens an existing store for a read-only command (`status`, `history`, `diff`): unlike
    /// [`Store::open`] it creates nothing — no directory, no database, no key.
    ///
    /// # Errors
    /// [`RecordError::Missing`] naming the database or key file that is absent; SQLite errors;
    /// a key of the wrong size.
    pub fn open_existing(db: &Path, key_file: &Path) -> Result<Store, RecordError> {
        for f in [db, key_file] {
            if !f.is_file() {
                return Err(RecordError::Missing(f.display().to_string()));
            }
        }
        let conn = Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Tables a newer version added (`IF NOT EXISTS`: only inside the existing file).
        let mut conn = conn;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        let key = load_key(key_file)?;
        Ok(Store {
            conn: Mutex::new(conn),
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    /// Opens (or creates) a store at `db` with a key held elsewhere (in the cluster: the
    /// Secret [`crate::keyring`] reads).
    ///
    /// # Errors
    /// I/O and SQLite errors.
    pub fn open_with_key(db: &Path, key: &[u8; 32]) -> Result<Store, RecordError> {
        if let Some(p) = db.parent() {
            std::fs::create_dir_all(p)
                .map_err(|e| RecordError::Io(format!("{}: {e}", p.display())))?;
        }
        let conn = Connection::open(db)?;
        // The agent and CLI commands (`rollback`, `suspend`, `status`) share the file.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
        let mut conn = conn;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        })
    }

    /// Whether `key` decrypts this store's objects (checked on one object; true for a store
    /// without objects).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn key_fits(&self, key: &[u8; 32]) -> Result<bool, RecordError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn()
            .query_row("SELECT nonce, body FROM objects LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
        Ok(row.is_none_or(|(n, b)| cipher.decrypt(Nonce::from_slice(&n), b.as_slice()).is_ok()))
    }

    /// Re-encrypts every stored object with `new` (fresh nonces) in one SQLite transaction,
    /// so the file holds either all old or all new ciphertexts; returns the store under the
    /// new key and the number of objects re-encrypted.
    ///
    /// # Errors
    /// [`RecordError::Decrypt`]: an object the current key cannot decrypt (nothing changed);
    /// SQLite errors.
    pub fn rekey(self, new: &[u8; 32]) -> Result<(Store, usize), RecordError> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(new));
        let n = {
            let mut c = self.conn();
            let tx = c.transaction()?;
            let rows: Vec<(String, Vec<u8>, Vec<u8>)> = {
                let mut st = tx.prepare("SELECT sha, nonce, body FROM objects")?;
                let it = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                it.collect::<Result<_, _>>()?
            };
            for (sha, nonce, body) in &rows {
                let plain = self
                    .cipher
                    .decrypt(Nonce::from_slice(nonce), body.as_slice())
                    .map_err(|_| RecordError::Decrypt(sha.clone()))?;
                let fresh: [u8; 12] = rand::random();
                let sealed = cipher
                    .encrypt(Nonce::from_slice(&fresh), plain.as_slice())
                    .map_err(|_| RecordError::Io("encryption failed".into()))?;
                tx.execute(
                    "UPDATE objects SET nonce = ?2, body = ?3 WHERE sha = ?1",
                    params![sha, fresh.to_vec(), sealed],
                )?;
            }
            tx.commit()?;
            rows.len()
        };
        let Store { conn, .. } = self;
        Ok((Store { conn, cipher }, n))
    }

    /// Records that `components` were marked irreversible (`stackwave.yaml` `irreversible:`)
    /// in revision `rev`: a rollback to an earlier revision may not change them unless forced.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn mark_irreversible(&self, rev: i64, components: &[String]) -> Result<(), RecordError> {
        let c = self.conn();
        for comp in components {
            c.execute(
                "INSERT OR IGNORE INTO revision_irreversible (rev, component) VALUES (?1, ?2)",
                params![rev, comp],
            )?;
        }
        Ok(())
    }

    /// The components revision `rev` marked irreversible.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn irreversible_of(&self, rev: i64) -> Result<Vec<String>, RecordError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT component FROM revision_irreversible WHERE rev = ?1 ORDER BY component",
        )?;
        let out = st
            .query_map(params![rev], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// Records the image IDs (digests) actually running for image references of revision
    /// `rev`, as read from Pod status (`image` → `imageID`).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_image_ids(
        &self,
        rev: i64,
        ids: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), RecordError> {
        let c = self.conn();
        for (image, id) in ids {
            c.execute(
                "INSERT INTO revision_images (rev, image, image_id) VALUES (?1, ?2, ?3) ON CONFLICT(rev, image) DO UPDATE SET image_id = excluded.image_id",
                params![rev, image, id],
            )?;
        }
        Ok(())
    }

    /// The images of revision `rev`: reference → image ID (`None` until seen running).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn images_of(&self, rev: i64) -> Result<Vec<(String, Option<String>)>, RecordError> {
        let c = self.conn();
        let mut st =
            c.prepare("SELECT image, image_id FROM revision_images WHERE rev = ?1 ORDER BY image")?;
        let out = st
            .query_map(params![rev], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// A throw-away store in memory with a random key (for commands that need an agent but
    /// record nothing, like `stackwave diff`).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn in_memory() -> Result<Store, RecordError> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        let key: [u8; 32] = rand::random();
        Ok(Store {
            conn: Mutex::new(conn),
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    /// The agent's control state kept beside the history, so CLI commands in another
    /// process and a restarted agent see it: `agent` (the loop's state as one unit,
    /// [`crate::reconcile::state::AgentState`]), `suspended` and `last_loop`. `None` when
    /// unset.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn state(&self, key: &str) -> Result<Option<String>, RecordError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT value FROM agent_state WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Sets (`Some`) or clears (`None`) a control-state key (see [`Store::state`]).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_state(&self, key: &str, value: Option<&str>) -> Result<(), RecordError> {
        let c = self.conn();
        match value {
            Some(v) => c.execute(
                "INSERT INTO agent_state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, v],
            )?,
            None => c.execute("DELETE FROM agent_state WHERE key = ?1", params![key])?,
        };
        Ok(())
    }

    /// Reads the control-state `keys` and writes what `change` returns for them (`Some`
    /// sets, `None` clears) in one immediate transaction, so a process's read-modify-write
    /// never interleaves with another's (the agent and CLI commands share the store).
    ///
    /// # Errors
    /// SQLite errors, and whatever `change` returns.
    pub fn update_states(
        &self,
        keys: &[&str],
        change: impl FnOnce(
            &std::collections::BTreeMap<String, String>,
        ) -> Result<Vec<(String, Option<String>)>, RecordError>,
    ) -> Result<(), RecordError> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut current = std::collections::BTreeMap::new();
        for k in keys {
            let v: Option<String> = tx
                .query_row(
                    "SELECT value FROM agent_state WHERE key = ?1",
                    params![k],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(v) = v {
                current.insert(k.to_string(), v);
            }
        }
        for (k, v) in change(&current)? {
            match v {
                Some(v) => tx.execute(
                    "INSERT INTO agent_state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![k, v],
                )?,
                None => tx.execute("DELETE FROM agent_state WHERE key = ?1", params![k])?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores an object (once per content); returns its sha.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_object(&self, o: &Json) -> Result<String, RecordError> {
        let sha = object_sha(o);
        let c = self.conn();
        let exists: Option<i64> = c
            .query_row("SELECT 1 FROM objects WHERE sha = ?1", params![sha], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            let nonce: [u8; 12] = rand::random();
            let body = self
                .cipher
                .encrypt(Nonce::from_slice(&nonce), o.to_string().as_bytes())
                .map_err(|_| RecordError::Io("encryption failed".into()))?;
            c.execute(
                "INSERT INTO objects (sha, nonce, body) VALUES (?1, ?2, ?3)",
                params![sha, nonce.to_vec(), body],
            )?;
        }
        Ok(sha)
    }

    /// Loads an object by sha.
    ///
    /// # Errors
    /// Missing objects, wrong key.
    pub fn get_object(&self, sha: &str) -> Result<Json, RecordError> {
        let (nonce, body): (Vec<u8>, Vec<u8>) = self.conn().query_row(
            "SELECT nonce, body FROM objects WHERE sha = ?1",
            params![sha],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(&nonce), body.as_slice())
            .map_err(|_| RecordError::Decrypt(sha.to_string()))?;
        serde_json::from_slice(&plain).map_err(|_| RecordError::Decrypt(sha.to_string()))
    }

    /// Starts a revision of `kind` ([`RevisionState::Applying`]).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn begin(
        &self,
        kind: RevisionKind,
        commit: &str,
        author: &str,
        message: &str,
    ) -> Result<i64, RecordError> {
        let c = self.conn();
        c.execute("INSERT INTO revisions (commit_id, author, message, applied_at, outcome, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", params![commit, author, message, now(), RevisionState::Applying.as_str(), kind.as_str()])?;
        Ok(c.last_insert_rowid())
    }

    /// Records a component's rendered digest and objects (in apply order).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_component(
        &self,
        rev: i64,
        component: &str,
        digest: &str,
        objects: &[Json],
    ) -> Result<(), RecordError> {
        let shas: Vec<(String, String)> = objects
            .iter()
            .map(|o| Ok((crate::cluster::object_id(o), self.put_object(o)?)))
            .collect::<Result<_, RecordError>>()?;
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute("INSERT OR REPLACE INTO revision_components (rev, component, digest) VALUES (?1, ?2, ?3)", params![rev, component, digest])?;
        tx.execute(
            "DELETE FROM revision_objects WHERE rev = ?1 AND component = ?2",
            params![rev, component],
        )?;
        for (i, (id, sha)) in shas.iter().enumerate() {
            tx.execute("INSERT INTO revision_objects (rev, component, idx, object_id, sha) VALUES (?1, ?2, ?3, ?4, ?5)", params![rev, component, i as i64, id, sha])?;
        }
        for o in objects {
            for img in images(o) {
                tx.execute(
                    "INSERT OR IGNORE INTO revision_images (rev, image) VALUES (?1, ?2)",
                    params![rev, img],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a wave result.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_wave(
        &self,
        rev: i64,
        wave: i32,
        ok: bool,
        millis: u128,
        message: &str,
    ) -> Result<(), RecordError> {
        self.conn().execute("INSERT OR REPLACE INTO revision_waves (rev, wave, ok, millis, message) VALUES (?1, ?2, ?3, ?4, ?5)", params![rev, wave, ok as i64, millis as i64, message])?;
        Ok(())
    }

    /// Moves a revision to `outcome`, with its detail (why it failed, was refused, ...),
    /// when its state allows it ([`RevisionState::can_become`]).
    ///
    /// # Errors
    /// SQLite errors; [`RecordError::Transition`] (nothing changed) for a move the states do
    /// not allow, or a revision that does not exist.
    pub fn finish(
        &self,
        rev: i64,
        outcome: RevisionState,
        detail: &str,
    ) -> Result<(), RecordError> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let from: Option<String> = tx
            .query_row(
                "SELECT outcome FROM revisions WHERE id = ?1",
                params![rev],
                |r| r.get(0),
            )
            .optional()?;
        let from = from.as_deref().and_then(RevisionState::parse);
        if !from.is_some_and(|f| f.can_become(outcome)) {
            return Err(RecordError::Transition {
                revision: rev,
                from,
                to: outcome,
            });
        }
        tx.execute(
            "UPDATE revisions SET outcome = ?2, detail = ?3 WHERE id = ?1",
            params![rev, outcome.as_str(), detail],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// All revisions, newest first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn revisions(&self) -> Result<Vec<Revision>, RecordError> {
        let c = self.conn();
        let mut st = c.prepare("SELECT id, commit_id, author, message, applied_at, outcome, kind FROM revisions ORDER BY id DESC")?;
        let rows: Vec<(Revision, String, String)> = st
            .query_map([], |r| {
                Ok((
                    Revision {
                        id: r.get(0)?,
                        commit: r.get(1)?,
                        author: r.get(2)?,
                        message: r.get(3)?,
                        applied_at: r.get(4)?,
                        outcome: RevisionState::Applying,
                        kind: RevisionKind::Commit,
                        components: Vec::new(),
                    },
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut revs = Vec::with_capacity(rows.len());
        for (mut r, outcome, kind) in rows {
            let id = r.id;
            let unknown = |value: &String| RecordError::UnknownState {
                revision: id,
                value: value.clone(),
            };
            r.outcome = RevisionState::parse(&outcome).ok_or_else(|| unknown(&outcome))?;
            r.kind = RevisionKind::parse(&kind).ok_or_else(|| unknown(&kind))?;
            revs.push(r);
        }
        let mut st = c.prepare(
            "SELECT component, digest FROM revision_components WHERE rev = ?1 ORDER BY component",
        )?;
        for r in revs.iter_mut() {
            r.components = st
                .query_map(params![r.id], |x| Ok((x.get(0)?, x.get(1)?)))?
                .collect::<Result<_, _>>()?;
        }
        Ok(revs)
    }

    /// The number of the newest healthy revision (one indexed query; what the loop checks
    /// every iteration, where [`Store::revisions`] would read the whole history).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn newest_healthy(&self) -> Result<Option<i64>, RecordError> {
        Ok(self.conn().query_row(
            "SELECT MAX(id) FROM revisions WHERE outcome = ?1",
            params![RevisionState::Healthy.as_str()],
            |r| r.get(0),
        )?)
    }

    /// The stored objects of a revision, per component, in apply order.
    ///
    /// # Errors
    /// SQLite and decryption errors.
    pub fn objects_of(&self, rev: i64) -> Result<Vec<(String, Vec<Json>)>, RecordError> {
        let rows: Vec<(String, String)> = {
            let c = self.conn();
            let mut st = c.prepare("SELECT component, sha FROM revision_objects WHERE rev = ?1 ORDER BY component, idx")?;
            let rows = st
                .query_map(params![rev], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            rows
        };
        let mut out: Vec<(String, Vec<Json>)> = Vec::new();
        for (comp, sha) in rows {
            let o = self.get_object(&sha)?;
            match out.last_mut() {
                Some((c, v)) if *c == comp => v.push(o),
                _ => out.push((comp, vec![o])),
            }
        }
        Ok(out)
    }

    /// Bytes the store occupies in objects (to measure cost per revision).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn object_bytes(&self) -> Result<i64, RecordError> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM objects",
            [],
            |r| r.get(0),
        )?)
    }

    /// Keeps the newest `keep` revisions, plus those in `also` (the applied revision, a
    /// rollback pin), and drops objects no kept revision refers to. Returns how many
    /// revisions were dropped.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn retain(&self, keep: usize, also: &[i64]) -> Result<usize, RecordError> {
        let c = self.conn();
        let also: Vec<String> = also.iter().map(|r| r.to_string()).collect();
        let dropped = c.execute(
            &format!(
                "DELETE FROM revisions WHERE id NOT IN (SELECT id FROM revisions ORDER BY id DESC LIMIT ?1) AND id NOT IN ({})",
                if also.is_empty() { "-1".to_string() } else { also.join(",") }
            ),
            params![keep as i64],
        )?;
        if dropped == 0 {
            return Ok(0);
        }
        for t in [
            "revision_components",
            "revision_objects",
            "revision_waves",
            "revision_images",
            "revision_irreversible",
        ] {
            c.execute(
                &format!("DELETE FROM {t} WHERE rev NOT IN (SELECT id FROM revisions)"),
                [],
            )?;
        }
        c.execute(
            "DELETE FROM objects WHERE sha NOT IN (SELECT sha FROM revision_objects)",
            [],
        )?;
        Ok(dropped)
    }
}

/// Container images an object's pod templates reference.
pub fn images(o: &Json) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Json, out: &mut Vec<String>) {
        match v {
            Json::Object(m) => {
                for (k, c) in m {
                    if k == "containers" || k == "initContainers" {
                        if let Some(items) = c.as_array() {
                            for it in items {
                                if let Some(i) = it.get("image").and_then(Json::as_str) {
                                    out.push(i.to_string());
                                }
                            }
                        }
                    }
                    walk(c, out);
                }
            }
            Json::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(o, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_addressed_encrypted_revisions() {
        let dir = std::env::temp_dir().join(format!("sw-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(&dir.join("db.sqlite"), &dir.join("key")).unwrap();
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "c3VwZXJzZWNyZXQ="}});
        let r1 = s.begin(RevisionKind::Commit, "abc", "me", "first").unwrap();
        s.record_component(r1, "keystone", "d1", std::slice::from_ref(&secret))
            .unwrap();
        s.finish(r1, RevisionState::Healthy, "").unwrap();
        // An ended revision does not change again.
        let e = s.finish(r1, RevisionState::Failed, "late").unwrap_err();
        assert!(
            matches!(
                e,
                RecordError::Transition {
                    from: Some(RevisionState::Healthy),
                    ..
                }
            ),
            "{e}"
        );
        assert!(s.finish(9999, RevisionState::Failed, "").is_err());
        assert_eq!(s.revisions().unwrap()[0].outcome, RevisionState::Healthy);
        let bytes1 = s.object_bytes().unwrap();
        let r2 = s
            .begin(RevisionKind::Commit, "def", "me", "second")
            .unwrap();
        s.record_component(r2, "keystone", "d1", std::slice::from_ref(&secret))
            .unwrap();
        assert_eq!(
            s.object_bytes().unwrap(),
            bytes1,
            "an unchanged object costs nothing more"
        );
        assert_eq!(s.objects_of(r1).unwrap()[0].1[0], secret);
        // Nothing on disk in clear.
        drop(s);
        let raw = std::fs::read(dir.join("db.sqlite")).unwrap();
        assert!(
            !raw.windows(16).any(|w| w == b"c3VwZXJzZWNyZXQ="),
            "secret bytes must not be on disk in clear"
        );
        let s = Store::open(&dir.join("db.sqlite"), &dir.join("key")).unwrap();
        assert_eq!(s.revisions().unwrap().len(), 2);
        let r3 = s.begin(RevisionKind::Commit, "0a1", "me", "third").unwrap();
        s.record_component(
            r3,
            "keystone",
            "d3",
            &[serde_json::json!({"kind": "ConfigMap"})],
        )
        .unwrap();
        // Keep the newest one and revision 1 (say, the pin): revision 2 goes, with nothing
        // else lost (revision 1's objects are shared with 2 and stay).
        assert_eq!(s.retain(1, &[r1]).unwrap(), 1);
        let ids: Vec<i64> = s.revisions().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![r3, r1]);
        assert_eq!(s.objects_of(r1).unwrap()[0].1[0], secret);
        assert_eq!(s.retain(1, &[r1]).unwrap(), 0);
        s.retain(1, &[]).unwrap();
        assert_eq!(s.revisions().unwrap().len(), 1);
        assert!(s.object_bytes().unwrap() > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A version 0 store (the schema and rows as the previous release wrote them) in a fresh
    /// directory: `rows` are `(commit_id, author, message, applied_at, outcome)` values.
    fn v0_store(name: &str, rows: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sw-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("db.sqlite");
        Connection::open(&db)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE revisions (id INTEGER PRIMARY KEY AUTOINCREMENT, commit_id TEXT NOT NULL, author TEXT, message TEXT,
                   applied_at INTEGER NOT NULL, outcome TEXT NOT NULL, detail TEXT);
                 INSERT INTO revisions (commit_id, author, message, applied_at, outcome) VALUES {rows};"
            ))
            .unwrap();
        (dir, db)
    }

    /// A store written before schema version 1 (no `kind`; a rollback known only by its
    /// author) opens migrated: states parsed, kinds derived, the old author kept.
    #[test]
    fn migrates_a_version_0_store() {
        let (dir, db) = v0_store(
            "v0",
            "('c1', 'dev', 'first', 1, 'healthy'),
             ('c2', 'dev', 'second', 2, 'failed'),
             ('c1', 'stackwave rollback', 'rollback to revision 1', 3, 'healthy'),
             ('c3', 'dev', 'third', 4, 'superseded'),
             ('c4', 'dev', 'fourth', 5, 'interrupted'),
             ('c5', 'dev', 'fifth', 6, 'refused'),
             ('c6', 'dev', 'sixth', 7, 'applying')",
        );
        let s = Store::open(&db, &dir.join("key")).unwrap();
        let revs = s.revisions().unwrap();
        let got: Vec<(i64, RevisionState, RevisionKind, &str)> = revs
            .iter()
            .map(|r| (r.id, r.outcome, r.kind, r.author.as_str()))
            .collect();
        use RevisionKind::*;
        use RevisionState::*;
        assert_eq!(
            got,
            vec![
                (7, Applying, Commit, "dev"),
                (6, Refused, Commit, "dev"),
                (5, Interrupted, Commit, "dev"),
                (4, Superseded, Commit, "dev"),
                (3, Healthy, Rollback, "stackwave rollback"),
                (2, Failed, Commit, "dev"),
                (1, Healthy, Commit, "dev"),
            ]
        );
        assert_eq!(s.newest_healthy().unwrap(), Some(3));
        // New revisions carry their kind; the migration does not run twice.
        let r = s.begin(Adopted, "c7", "dev", "adopt").unwrap();
        drop(s);
        let s = Store::open(&db, &dir.join("key")).unwrap();
        let revs = s.revisions().unwrap();
        assert_eq!((revs[0].id, revs[0].kind), (r, Adopted));
        let kind_of = |id: i64| revs.iter().find(|r| r.id == id).map(|r| r.kind);
        assert_eq!(kind_of(3), Some(Rollback));
        assert_eq!(kind_of(1), Some(Commit));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store holding a state this build does not know is refused, not misread.
    #[test]
    fn unknown_stored_state_is_refused() {
        let (dir, db) = v0_store("unk", "('c1', 'dev', 'x', 1, 'rolled-back-to')");
        let err = Store::open(&db, &dir.join("key")).err().unwrap();
        assert!(err.to_string().contains("rolled-back-to"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn state_transitions() {
        use RevisionState::*;
        for s in RevisionState::ALL {
            assert_eq!(RevisionState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(Applying.can_become(s), s != Applying, "applying -> {s}");
            assert_eq!(
                Interrupted.can_become(s),
                s == Applying,
                "interrupted -> {s}"
            );
        }
        for end in [Healthy, Failed, Refused, Superseded] {
            assert!(end.is_final());
            assert!(RevisionState::ALL.iter().all(|n| !end.can_become(*n)));
        }
        assert!(!Applying.is_final() && !Interrupted.is_final());
        assert_eq!(RevisionState::parse("rolled-back-to"), None);
    }
}
