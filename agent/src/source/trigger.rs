//! What wakes the loop before its poll interval ends: a Git host's webhook (HMAC- or
//! token-verified) or, for local sources, a file watcher (`notify`).
//!
//! Webhook formats accepted on `POST /hook`:
//! - **GitHub**: `X-GitHub-Event` and `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
//!   body>` (GitHub docs, "Validating webhook deliveries"). `ping` is answered, not acted on;
//!   only `push` events trigger.
//! - **GitLab**: `X-Gitlab-Event` and `X-Gitlab-Token: <secret>` (GitLab docs, "Webhooks",
//!   secret token; GitLab sends the token itself, not a signature). Only `Push Hook` triggers.
//! - **Generic**: `X-Signature: sha256=<hex>` or `sha512=<hex>`, the HMAC of the body (the
//!   format of Flux notification-controller's `generic-hmac` receiver,
//!   `docs/spec/v1/receivers.md`).
//!
//! A push whose JSON body names another branch (`"ref": "refs/heads/other"`) is ignored. A
//! missing or wrong signature is refused with 401 and triggers nothing; the secret and the
//! body never reach logs.

use hmac::{Hmac, Mac};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A wake-up signal shared by the loop and what triggers it. Triggers that arrive while an
/// iteration runs are kept (one pending wake-up at most), so none is lost and none piles up.
#[derive(Clone, Default)]
pub struct Trigger {
    notify: Arc<tokio::sync::Notify>,
    reason: Arc<Mutex<Option<String>>>,
}

impl Trigger {
    /// A new trigger with nothing pending.
    pub fn new() -> Trigger {
        Trigger::default()
    }

    /// Wakes the loop now (or at the end of the running iteration); `why` is what
    /// [`Trigger::wait`] returns.
    pub fn fire(&self, why: &str) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
        self.notify.notify_one();
    }

    /// Waits up to `timeout` for a trigger: `Some(why)` when one fired, `None` when the time
    /// ran out (the poll interval).
    pub async fn wait(&self, timeout: Duration) -> Option<String> {
        match tokio::time::timeout(timeout, self.notify.notified()).await {
            Ok(()) => Some(
                self.reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or_else(|| "trigger".into()),
            ),
            Err(_) => None,
        }
    }
}

/// What a webhook delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Verified; fetch now. The text names the provider and event.
    Trigger(String),
    /// Verified, but nothing to do (a ping, another event, another branch).
    Ignore(String),
    /// Not verified: missing or wrong signature/token, unknown format.
    Reject(String),
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks `sha256=<hex>` / `sha512=<hex>` against the HMAC of `body` (constant time).
fn hmac_ok(sig: &str, body: &[u8], secret: &[u8]) -> bool {
    let Some((alg, hex)) = sig.trim().split_once('=') else {
        return false;
    };
    let Some(mac) = hex_decode(hex) else {
        return false;
    };
    match alg {
        "sha256" => Hmac::<sha2::Sha256>::new_from_slice(secret)
            .map(|mut m| {
                m.update(body);
                m.verify_slice(&mac).is_ok()
            })
            .unwrap_or(false),
        "sha512" => Hmac::<sha2::Sha512>::new_from_slice(secret)
            .map(|mut m| {
                m.update(body);
                m.verify_slice(&mac).is_ok()
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// The branch filter: a JSON body with a `ref` other than `refs/heads/<branch>` is ignored.
fn branch_verdict(body: &[u8], branch: &str, what: String) -> Verdict {
    let r = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_string));
    match r {
        Some(r) if r != format!("refs/heads/{branch}") => {
            Verdict::Ignore(format!("{what} for {r}, not refs/heads/{branch}"))
        }
        _ => Verdict::Trigger(what),
    }
}

/// Verifies one webhook delivery (see the module docs for the formats) and decides.
pub fn verify(headers: &http::HeaderMap, body: &[u8], secret: &[u8], branch: &str) -> Verdict {
    if let Some(event) = header(headers, "x-github-event") {
        let Some(sig) = header(headers, "x-hub-signature-256") else {
            return Verdict::Reject("GitHub delivery without X-Hub-Signature-256".into());
        };
        if !hmac_ok(sig, body, secret) {
            return Verdict::Reject("GitHub signature does not match the secret".into());
        }
        return match event {
            "push" => branch_verdict(body, branch, "github push".into()),
            other => Verdict::Ignore(format!("github {other} event")),
        };
    }
    if let Some(event) = header(headers, "x-gitlab-event") {
        use subtle::ConstantTimeEq;
        let token = header(headers, "x-gitlab-token").unwrap_or("");
        if token.is_empty() || !bool::from(token.as_bytes().ct_eq(secret)) {
            return Verdict::Reject("GitLab token missing or wrong".into());
        }
        return match event {
            "Push Hook" => branch_verdict(body, branch, "gitlab push".into()),
            other => Verdict::Ignore(format!("gitlab {other}")),
        };
    }
    match header(headers, "x-signature") {
        Some(sig) if hmac_ok(sig, body, secret) => branch_verdict(body, branch, "webhook".into()),
        Some(_) => Verdict::Reject("X-Signature does not match the secret".into()),
        None => Verdict::Reject(
            "no X-GitHub-Event, X-Gitlab-Event or X-Signature header: unverifiable delivery".into(),
        ),
    }
}

/// Serves `POST /hook` on `addr` in the background: verified deliveries fire `trigger`
/// (202 Accepted), verified ones with nothing to do get 200, unverified ones 401. `secret` is
/// the shared secret (GitHub/generic HMAC key, GitLab token); `branch` the one followed.
///
/// # Errors
/// The address cannot be bound, or the secret is empty.
pub async fn serve_webhook(
    addr: std::net::SocketAddr,
    secret: Vec<u8>,
    branch: String,
    trigger: Trigger,
) -> Result<std::net::SocketAddr, TriggerError> {
    if secret.is_empty() {
        return Err(TriggerError::EmptySecret);
    }
    let bind = |source| TriggerError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    let secret = Arc::new(secret);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let (secret, branch, trigger) = (secret.clone(), branch.clone(), trigger.clone());
            async move {
                match verify(&headers, &body, &secret, &branch) {
                    Verdict::Trigger(why) => {
                        trigger.fire(&why);
                        (
                            http::StatusCode::ACCEPTED,
                            format!("fetch triggered: {why}\n"),
                        )
                    }
                    Verdict::Ignore(why) => (http::StatusCode::OK, format!("ignored: {why}\n")),
                    Verdict::Reject(why) => {
                        tracing::warn!(reason = %why, "webhook refused");
                        (http::StatusCode::UNAUTHORIZED, format!("refused: {why}\n"))
                    }
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(bound)
}

/// Why a trigger could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// An empty webhook secret (every delivery would verify).
    #[error("webhook secret is empty: refusing to accept unverifiable deliveries")]
    EmptySecret,
    /// The webhook address cannot be bound.
    #[error("webhook address {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file (the secret, the watched path) cannot be read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The path cannot be watched (out of inotify watches, ...).
    #[error("watching {}: {source}", path.display())]
    Watch {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: notify::Error,
    },
}

/// Reads a webhook secret from a file (a mounted Secret), without its trailing newline.
///
/// # Errors
/// The file cannot be read, naming it.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, TriggerError> {
    let mut b = std::fs::read(path).map_err(|source| TriggerError::File {
        path: path.to_path_buf(),
        source,
    })?;
    while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        b.pop();
    }
    Ok(b)
}

/// What a watched local source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A Git work tree (`.git/` inside).
    WorkTree,
    /// A bare Git repository.
    Bare,
    /// A plain directory (see [`super::local_dir`]).
    Plain,
}

/// Whether a changed path under a watched source means "fetch again": in a Git repository
/// only its refs (`refs/…`, `packed-refs`, `HEAD`) — a commit, a reset, a push into it —
/// count, not work-tree edits nobody committed; in a plain directory everything but `.git/`
/// counts.
fn relevant(root: &Path, layout: Layout, p: &Path) -> bool {
    let rel = p.strip_prefix(root).unwrap_or(p);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    let refs = |x: &[String]| {
        matches!(
            x.first().map(String::as_str),
            Some("refs" | "packed-refs" | "HEAD")
        )
    };
    match layout {
        Layout::WorkTree => parts.first().map(String::as_str) == Some(".git") && refs(&parts[1..]),
        Layout::Bare => refs(&parts),
        Layout::Plain => parts.first().map(String::as_str) != Some(".git"),
    }
}

/// Watches a local source (`notify`, recursive) and fires `trigger` when it changes (see
/// [`relevant`]'s rule). Keep the returned watcher alive for as long as the watch should last.
///
/// # Errors
/// The path cannot be watched (missing, out of inotify watches), naming it.
pub fn watch(path: &Path, trigger: Trigger) -> Result<notify::RecommendedWatcher, TriggerError> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let root: PathBuf = path.canonicalize().map_err(|source| TriggerError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let layout = if root.join(".git").exists() {
        Layout::WorkTree
    } else if git2::Repository::open_bare(&root).is_ok() {
        Layout::Bare
    } else {
        Layout::Plain
    };
    let r2 = root.clone();
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if !matches!(
            ev.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) {
            return;
        }
        if let Some(p) = ev.paths.iter().find(|p| relevant(&r2, layout, p)) {
            let rel = p.strip_prefix(&r2).unwrap_or(p);
            trigger.fire(&format!("{} changed", rel.display()));
        }
    })
    .map_err(|source| TriggerError::Watch {
        path: root.clone(),
        source,
    })?;
    w.watch(&root, RecursiveMode::Recursive)
        .map_err(|source| TriggerError::Watch {
            path: root.clone(),
            source,
        })?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(alg: &str, secret: &[u8], body: &[u8]) -> String {
        let mac = match alg {
            "sha256" => {
                let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
                m.update(body);
                m.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut m = Hmac::<sha2::Sha512>::new_from_slice(secret).unwrap();
                m.update(body);
                m.finalize().into_bytes().to_vec()
            }
        };
        format!(
            "{alg}={}",
            mac.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn github_gitlab_and_generic_deliveries() {
        let secret = b"s3cret";
        let push = br#"{"ref":"refs/heads/main","after":"abc"}"#;
        let other = br#"{"ref":"refs/heads/feature"}"#;
        let gh = |ev: &str, body: &[u8], key: &[u8]| {
            verify(
                &headers(&[
                    ("X-GitHub-Event", ev),
                    ("X-Hub-Signature-256", &sign("sha256", key, body)),
                ]),
                body,
                secret,
                "main",
            )
        };
        assert_eq!(
            gh("push", push, secret),
            Verdict::Trigger("github push".into())
        );
        assert!(matches!(gh("push", push, b"wrong"), Verdict::Reject(_)));
        assert!(matches!(gh("ping", b"{}", secret), Verdict::Ignore(_)));
        assert!(matches!(gh("push", other, secret), Verdict::Ignore(m) if m.contains("feature")));
        // A body changed after signing no longer verifies.
        let h = headers(&[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sign("sha256", secret, push)),
        ]);
        assert!(matches!(
            verify(&h, other, secret, "main"),
            Verdict::Reject(_)
        ));
        let h = headers(&[("X-GitHub-Event", "push")]);
        assert!(matches!(
            verify(&h, push, secret, "main"),
            Verdict::Reject(_)
        ));

        let gl = |token: &str| {
            verify(
                &headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", token)]),
                push,
                secret,
                "main",
            )
        };
        assert_eq!(gl("s3cret"), Verdict::Trigger("gitlab push".into()));
        assert!(matches!(gl("s3cre"), Verdict::Reject(_)));
        assert!(matches!(gl(""), Verdict::Reject(_)));

        for alg in ["sha256", "sha512"] {
            let h = headers(&[("X-Signature", &sign(alg, secret, b"anything"))]);
            assert_eq!(
                verify(&h, b"anything", secret, "main"),
                Verdict::Trigger("webhook".into())
            );
        }
        let h = headers(&[("X-Signature", "sha1=00")]);
        assert!(matches!(
            verify(&h, b"x", secret, "main"),
            Verdict::Reject(_)
        ));
        assert!(matches!(
            verify(&http::HeaderMap::new(), b"x", secret, "main"),
            Verdict::Reject(_)
        ));
    }

    #[test]
    fn watched_paths_that_count() {
        let root = Path::new("/r");
        use Layout::*;
        assert!(relevant(
            root,
            WorkTree,
            Path::new("/r/.git/refs/heads/main")
        ));
        assert!(relevant(root, WorkTree, Path::new("/r/.git/packed-refs")));
        assert!(!relevant(
            root,
            WorkTree,
            Path::new("/r/.git/objects/ab/cdef")
        ));
        assert!(!relevant(root, WorkTree, Path::new("/r/stackwave.yaml")));
        assert!(!relevant(root, WorkTree, Path::new("/r/refs/heads/x")));
        assert!(relevant(root, Bare, Path::new("/r/refs/heads/main")));
        assert!(!relevant(root, Bare, Path::new("/r/objects/pack/p.pack")));
        assert!(relevant(
            root,
            Plain,
            Path::new("/r/helm-configs/nova/x.yaml")
        ));
        assert!(!relevant(root, Plain, Path::new("/r/.git/index")));
    }
}
