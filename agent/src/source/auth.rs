//! Credentials and host verification for Git remotes.
//!
//! Credentials come from a directory of files — a Kubernetes Secret mounted as a volume —
//! with the key names of Flux's `GitRepository` secrets (fluxcd/source-controller
//! `docs/spec/v1/gitrepositories.md`, "Secret reference"):
//! - SSH: `identity` (private key, OpenSSH or PEM), optional `password` (its passphrase),
//!   `known_hosts`;
//! - HTTPS: `username` and `password` (a token as password works for GitHub, GitLab, Gitea),
//!   or `bearerToken` (sent as `Authorization: Bearer`).
//!
//! SSH host keys are always verified against a known_hosts file (OpenSSH format, sshd(8)
//! "SSH_KNOWN_HOSTS FILE FORMAT": comma-separated host patterns with `*`/`?` wildcards and
//! `!` negation, `[host]:port` for other ports, hashed `|1|salt|hash` names, `@revoked`
//! markers): the secret's `known_hosts`, else `--known-hosts`, else `~/.ssh/known_hosts`,
//! else `/etc/ssh/ssh_known_hosts`. An unknown or changed host key refuses the connection,
//! naming the host and the key's SHA256 fingerprint; `insecure_skip_host_key` turns this off.
//! HTTPS certificates are verified by libgit2 (OpenSSL, the system's CA bundle).

use git2::{Cred, CredentialType, RemoteCallbacks};
use std::path::PathBuf;

/// How to authenticate to a remote and verify its host.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Directory holding `identity`, `known_hosts`, `username`, `password`, `bearerToken`.
    pub secret_dir: Option<PathBuf>,
    /// known_hosts file used when the secret has none.
    pub known_hosts: Option<PathBuf>,
    /// Accept any SSH host key (never for production).
    pub insecure_skip_host_key: bool,
    /// Why the last host-key check refused (libgit2 replaces a callback's message with its
    /// own "invalid or unknown remote ssh hostkey"; [`Auth::explain`] puts ours back).
    pub refusal: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

fn read(dir: &Option<PathBuf>, name: &str) -> Option<String> {
    let p = dir.as_ref()?.join(name);
    std::fs::read_to_string(p).ok()
}

fn trimmed(s: Option<String>) -> Option<String> {
    s.map(|x| x.trim_end_matches(['\n', '\r']).to_string())
        .filter(|x| !x.is_empty())
}

/// Host and port of an SSH URL (`ssh://[user@]host[:port]/path` or scp-like
/// `user@host:path`); `None` for other schemes.
pub fn ssh_host(url: &str) -> Option<(String, u16)> {
    if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next()?;
        let hostport = authority.rsplit('@').next()?;
        if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h.split_once(']')?;
            let port = after
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(22);
            return Some((h.to_string(), port));
        }
        return Some(match hostport.split_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (hostport.to_string(), 22),
        });
    }
    if url.contains("://") {
        return None;
    }
    let (before, _) = url.split_once(':')?;
    let host = before.rsplit('@').next()?;
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_string(), 22))
}

/// `*`/`?` glob match (known_hosts patterns), case-insensitive.
fn glob(pattern: &str, text: &str) -> bool {
    fn m(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], t) || (!t.is_empty() && m(p, &t[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => m(&p[1..], &t[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), text.as_bytes())
}

/// Whether a hashed name `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` is `name`.
fn hashed_match(entry: &str, name: &str) -> bool {
    use base64::Engine;
    use hmac::Mac;
    let mut parts = entry.trim_start_matches("|1|").splitn(2, '|');
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Whether the hostnames field of a known_hosts line matches `name` (`host` or
/// `[host]:port`): a negated pattern that matches wins over positive ones.
fn hosts_match(field: &str, name: &str) -> bool {
    if field.starts_with("|1|") {
        return hashed_match(field, name);
    }
    let mut hit = false;
    for p in field.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, name) {
                return false;
            }
        } else if glob(p, name) {
            hit = true;
        }
    }
    hit
}

/// What a known_hosts file says about a host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// A line lists this key for the host.
    Known,
    /// The host is listed, with other keys only (the key changed: possible attack).
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
    /// The host is not listed.
    Unknown,
}

/// Checks a host key (SSH wire-format blob) for `host`:`port` against known_hosts text.
pub fn check_host_key(known_hosts: &str, host: &str, port: u16, key: &[u8]) -> HostKeyCheck {
    use base64::Engine;
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let mut listed = false;
    let mut known = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f: Vec<&str> = line.split_whitespace().collect();
        let marker = f
            .first()
            .filter(|x| x.starts_with('@'))
            .map(|x| x.to_string());
        if marker.is_some() {
            f.remove(0);
        }
        if f.len() < 3 || !hosts_match(f[0], &name) {
            continue;
        }
        let same = base64::engine::general_purpose::STANDARD
            .decode(f[2])
            .is_ok_and(|k| k == key);
        match marker.as_deref() {
            Some("@revoked") if same => return HostKeyCheck::Revoked,
            Some(_) => {}
            None => {
                listed = true;
                known |= same;
            }
        }
    }
    match (known, listed) {
        (true, _) => HostKeyCheck::Known,
        (false, true) => HostKeyCheck::Mismatch,
        (false, false) => HostKeyCheck::Unknown,
    }
}

impl Auth {
    /// The known_hosts text to verify SSH hosts with, and where it came from.
    fn known_hosts_text(&self) -> Option<(String, String)> {
        if let Some(t) = read(&self.secret_dir, "known_hosts") {
            return Some((t, "the secret's known_hosts".into()));
        }
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/known_hosts"));
        [
            self.known_hosts.clone(),
            home,
            Some(PathBuf::from("/etc/ssh/ssh_known_hosts")),
        ]
        .into_iter()
        .flatten()
        .find_map(|p: PathBuf| {
            std::fs::read_to_string(&p)
                .ok()
                .map(|t| (t, p.display().to_string()))
        })
    }

    /// The message of a Git error, with the host-key refusal reason when that was the cause.
    pub fn explain(&self, e: &git2::Error) -> String {
        let why = self
            .refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match why {
            Some(w) if e.class() == git2::ErrorClass::Ssh => w,
            _ => e.message().to_string(),
        }
    }

    /// Extra HTTP headers (a bearer token).
    pub fn headers(&self) -> Vec<String> {
        trimmed(read(&self.secret_dir, "bearerToken"))
            .map(|t| vec![format!("Authorization: Bearer {t}")])
            .unwrap_or_default()
    }

    /// libgit2 callbacks for `url`: credentials from the secret (each kind offered once, so
    /// a wrong credential fails instead of looping) and the SSH host-key check.
    pub fn callbacks<'a>(&'a self, url: &str) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        let mut tried = CredentialType::empty();
        cb.credentials(move |_url, user_from_url, allowed| {
            let user = user_from_url.unwrap_or("git");
            if allowed.contains(CredentialType::SSH_KEY) && !tried.contains(CredentialType::SSH_KEY)
            {
                tried |= CredentialType::SSH_KEY;
                if let Some(key) = read(&self.secret_dir, "identity") {
                    let pass = trimmed(read(&self.secret_dir, "password"));
                    return Cred::ssh_key_from_memory(user, None, &key, pass.as_deref());
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
                && !tried.contains(CredentialType::USER_PASS_PLAINTEXT)
            {
                tried |= CredentialType::USER_PASS_PLAINTEXT;
                if let Some(pass) = trimmed(read(&self.secret_dir, "password")) {
                    let u = trimmed(read(&self.secret_dir, "username"))
                        .unwrap_or_else(|| user.to_string());
                    return Cred::userpass_plaintext(&u, &pass);
                }
            }
            if allowed.contains(CredentialType::USERNAME)
                && !tried.contains(CredentialType::USERNAME)
            {
                tried |= CredentialType::USERNAME;
                return Cred::username(user);
            }
            Err(git2::Error::from_str(
                "authentication failed (no matching credential in the secret, or it was refused)",
            ))
        });
        let target = ssh_host(url);
        cb.certificate_check(move |cert, host| {
            let Some(hk) = cert.as_hostkey() else {
                return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
            };
            if self.insecure_skip_host_key {
                return Ok(git2::CertificateCheckStatus::CertificateOk);
            }
            let (h, port) = target.clone().unwrap_or((host.to_string(), 22));
            let Some(key) = hk.hostkey() else {
                return Err(git2::Error::from_str(&format!("{h}: the server sent no host key")));
            };
            let fp = {
                use base64::Engine;
                use sha2::Digest;
                let d = sha2::Sha256::digest(key);
                format!(
                    "SHA256:{}",
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(d)
                )
            };
            let Some((text, from)) = self.known_hosts_text() else {
                let why = format!(
                    "host key of {h} ({fp}) cannot be verified: no known_hosts (add one to the secret or pass --known-hosts)"
                );
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                return Err(git2::Error::from_str(&why));
            };
            let refuse = |why: String| {
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                Err(git2::Error::from_str(&why))
            };
            match check_host_key(&text, &h, port, key) {
                HostKeyCheck::Known => Ok(git2::CertificateCheckStatus::CertificateOk),
                HostKeyCheck::Mismatch => refuse(format!(
                    "host key of {h} ({fp}) differs from the one in {from}: refusing (possible man-in-the-middle)"
                )),
                HostKeyCheck::Revoked => {
                    refuse(format!("host key of {h} ({fp}) is revoked in {from}"))
                }
                HostKeyCheck::Unknown => refuse(format!(
                    "host {h} is not in {from} (its key is {fp}): refusing an unverified host"
                )),
            }
        });
        cb
    }

    /// Fetch options for `url` carrying [`Auth::callbacks`] and [`Auth::headers`].
    pub fn fetch_options<'a>(&'a self, url: &str, headers: &'a [String]) -> git2::FetchOptions<'a> {
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(self.callbacks(url));
        let h: Vec<&str> = headers.iter().map(String::as_str).collect();
        fo.custom_headers(&h);
        fo.download_tags(git2::AutotagOption::None);
        fo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls() {
        assert_eq!(
            ssh_host("ssh://git@example.org/x.git"),
            Some(("example.org".into(), 22))
        );
        assert_eq!(
            ssh_host("ssh://git@example.org:2222/x.git"),
            Some(("example.org".into(), 2222))
        );
        assert_eq!(ssh_host("ssh://[::1]:2222/x"), Some(("::1".into(), 2222)));
        assert_eq!(
            ssh_host("git@github.com:org/repo.git"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(ssh_host("https://github.com/org/repo"), None);
        assert_eq!(ssh_host("/srv/repo"), None);
    }

    #[test]
    fn known_hosts_lines() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b"\x00\x00\x00\x0bssh-ed25519key-one".to_vec();
        let other = b"\x00\x00\x00\x0bssh-ed25519key-two".to_vec();
        let (k1, k2) = (b64.encode(&key), b64.encode(&other));
        let text = format!(
            "# comment\ngit.example.org,10.0.0.1 ssh-ed25519 {k1}\n[git.example.org]:2222 ssh-ed25519 {k2}\n*.corp,!bad.corp ssh-ed25519 {k1}\n@revoked * ssh-ed25519 {k2}\n"
        );
        assert_eq!(
            check_host_key(&text, "git.example.org", 22, &key),
            HostKeyCheck::Known
        );
        assert_eq!(
            check_host_key(&text, "10.0.0.1", 22, &key),
            HostKeyCheck::Known
        );
        assert_eq!(
            check_host_key(&text, "GIT.example.org", 22, &key),
            HostKeyCheck::Known
        );
        assert_eq!(
            check_host_key(&text, "git.example.org", 22, b"x"),
            HostKeyCheck::Mismatch
        );
        assert_eq!(
            check_host_key(&text, "git.example.org", 2222, &other),
            HostKeyCheck::Revoked
        );
        assert_eq!(
            check_host_key(&text, "git.example.org", 2222, &key),
            HostKeyCheck::Mismatch
        );
        assert_eq!(
            check_host_key(&text, "a.corp", 22, &key),
            HostKeyCheck::Known
        );
        assert_eq!(
            check_host_key(&text, "bad.corp", 22, &key),
            HostKeyCheck::Unknown
        );
        assert_eq!(
            check_host_key(&text, "elsewhere", 22, &key),
            HostKeyCheck::Unknown
        );
        // A hashed name (ssh-keygen -H): salt and HMAC-SHA1 of "hashed.example.org".
        use hmac::Mac;
        let salt = b"0123456789abcdef0123";
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"hashed.example.org");
        let h = format!(
            "|1|{}|{} ssh-ed25519 {k1}\n",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            check_host_key(&h, "hashed.example.org", 22, &key),
            HostKeyCheck::Known
        );
        assert_eq!(
            check_host_key(&h, "other.example.org", 22, &key),
            HostKeyCheck::Unknown
        );
    }
}
