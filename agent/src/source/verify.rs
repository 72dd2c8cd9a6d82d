//! Signed-commit verification: only commits signed (SSH signatures, `gpg.format=ssh`) by a key
//! in an allowed-signers file are applied.
//!
//! The file has OpenSSH's `allowed_signers` format (ssh-keygen(1), "ALLOWED SIGNERS"), the
//! one `git config gpg.ssh.allowedSignersFile` reads: one key per line,
//! `principals [options] keytype base64-key [comment]`, `#` comments. Options honoured:
//! `namespaces="git,..."` (the key may only sign those namespaces), `valid-after=` and
//! `valid-before=` (`YYYYMMDD[HHMM[SS]][Z]`, read as UTC, compared with the committer time
//! as git does with `-Overify-time`). `cert-authority` lines are skipped: certificates are not
//! supported.
//!
//! A commit is accepted when its `gpgsig` header is an SSH signature (`-----BEGIN SSH
//! SIGNATURE-----`, format `PROTOCOL.sshsig`) in namespace `git`, made by an allowed key, over
//! the commit object without that header — what `git verify-commit` checks through
//! `ssh-keygen -Y verify` (git `gpg-interface.c`).

use git2::{Oid, Repository};
use ssh_key::{PublicKey, SshSig};
use std::path::{Path, PathBuf};

/// Why an allowed-signers file is refused (naming the file, and the line).
#[derive(Debug, thiserror::Error)]
pub enum SignersError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A line names principals but no key.
    #[error("{file}:{line}: no key")]
    NoKey {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
    },
    /// A line's key does not parse.
    #[error("{file}:{line}: unparsable public key: {source}")]
    Key {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// Cause.
        #[source]
        source: ssh_key::Error,
    },
    /// A `valid-after`/`valid-before` date does not parse.
    #[error("{file}:{line}: bad {option} {value}")]
    Validity {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// `valid-after` or `valid-before`.
        option: &'static str,
        /// The date as written.
        value: String,
    },
    /// No usable key (it would refuse everything).
    #[error("{0}: no allowed signer keys")]
    Empty(String),
}

/// Why a commit's signature is refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The allowed signers could not be read.
    #[error(transparent)]
    Signers(#[from] SignersError),
    /// An OpenPGP signature (only SSH signatures are verified).
    #[error("signed with OpenPGP, not SSH")]
    OpenPgp,
    /// Not an SSH signature.
    #[error("unreadable SSH signature")]
    Unreadable,
    /// The signature's namespace is not `git`.
    #[error("signature namespace is {0:?}, not \"git\"")]
    Namespace(String),
    /// The key (its fingerprint) is not an allowed signer.
    #[error("signed by {0}, which is not an allowed signer")]
    NotAllowed(String),
    /// The signer's `namespaces=` exclude `git`.
    #[error("{fingerprint} ({principals}) may not sign git commits")]
    NotForGit {
        /// Key fingerprint.
        fingerprint: String,
        /// The signer's principals.
        principals: String,
    },
    /// The commit time is outside the signer's validity.
    #[error("{fingerprint} ({principals}) was not valid when the commit was made")]
    NotValidThen {
        /// Key fingerprint.
        fingerprint: String,
        /// The signer's principals.
        principals: String,
    },
    /// The signature does not verify.
    #[error("bad signature by {fingerprint} ({principals}): the commit was changed after signing")]
    BadSignature {
        /// Key fingerprint.
        fingerprint: String,
        /// The signer's principals.
        principals: String,
    },
    /// The commit carries no signature.
    #[error("the commit is not signed")]
    Unsigned,
    /// A plain directory source has no commits to sign.
    #[error("a plain directory source cannot be signed; use a Git repository")]
    PlainDirectory,
    /// Git could not read the commit.
    #[error("{}", .0.message())]
    Git(#[source] git2::Error),
}

/// One allowed key.
#[derive(Debug, Clone)]
struct Signer {
    principals: String,
    key: PublicKey,
    namespaces: Option<Vec<String>>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

/// The keys allowed to sign the commits the agent applies.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    signers: Vec<Signer>,
}

/// Splits a line at unquoted whitespace.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits options at unquoted commas.
fn options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `YYYYMMDD[HHMM[SS]][Z]` as seconds since the epoch (UTC).
fn timestamp(s: &str) -> Option<i64> {
    let d = s.trim_end_matches('Z');
    if !matches!(d.len(), 8 | 12 | 14) || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| d.get(a..b).and_then(|x| x.parse::<i8>().ok());
    let year: i16 = d.get(0..4)?.parse().ok()?;
    let date = jiff::civil::date(year, n(4, 6)?, n(6, 8)?);
    let (h, m, sec) = match d.len() {
        8 => (0, 0, 0),
        12 => (n(8, 10)?, n(10, 12)?, 0),
        _ => (n(8, 10)?, n(10, 12)?, n(12, 14)?),
    };
    date.at(h, m, sec, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_second())
}

impl AllowedSigners {
    /// Parses an allowed-signers file's text; `file` names it in errors.
    ///
    /// # Errors
    /// A line without a parsable key, or with a malformed validity date, named by file and
    /// line number. A file with no usable key is an error too (it would refuse everything).
    pub fn parse(text: &str, file: &str) -> Result<AllowedSigners, SignersError> {
        let mut signers = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = fields(line);
            let (file, line) = (file.to_string(), i + 1);
            let principals = f.first().cloned().unwrap_or_default();
            // Options are present when the second field is not a key type.
            let (opts, key_at) = match f.get(1) {
                Some(x)
                    if PublicKey::from_openssh(&format!(
                        "{x} {}",
                        f.get(2).map(String::as_str).unwrap_or("")
                    ))
                    .is_ok() =>
                {
                    (Vec::new(), 1)
                }
                Some(x) => (options(x), 2),
                None => return Err(SignersError::NoKey { file, line }),
            };
            let key_text = format!(
                "{} {}",
                f.get(key_at).map(String::as_str).unwrap_or(""),
                f.get(key_at + 1).map(String::as_str).unwrap_or("")
            );
            let key = PublicKey::from_openssh(&key_text).map_err(|source| SignersError::Key {
                file: file.clone(),
                line,
                source,
            })?;
            let mut s = Signer {
                principals,
                key,
                namespaces: None,
                valid_after: None,
                valid_before: None,
            };
            let mut ca = false;
            for o in opts {
                let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
                match k.to_ascii_lowercase().as_str() {
                    "cert-authority" => ca = true,
                    "namespaces" => {
                        s.namespaces = Some(v.split(',').map(|x| x.trim().to_string()).collect())
                    }
                    option @ ("valid-after" | "valid-before") => {
                        let t = timestamp(v).ok_or_else(|| SignersError::Validity {
                            file: file.clone(),
                            line,
                            option: if option == "valid-after" {
                                "valid-after"
                            } else {
                                "valid-before"
                            },
                            value: v.to_string(),
                        })?;
                        if option == "valid-after" {
                            s.valid_after = Some(t);
                        } else {
                            s.valid_before = Some(t);
                        }
                    }
                    _ => {}
                }
            }
            if !ca {
                signers.push(s);
            }
        }
        if signers.is_empty() {
            return Err(SignersError::Empty(file.to_string()));
        }
        Ok(AllowedSigners { signers })
    }

    /// Reads and parses an allowed-signers file.
    ///
    /// # Errors
    /// The file cannot be read, or [`AllowedSigners::parse`] fails.
    pub fn load(path: &Path) -> Result<AllowedSigners, SignersError> {
        let text = std::fs::read_to_string(path).map_err(|source| SignersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        AllowedSigners::parse(&text, &path.display().to_string())
    }

    /// Checks an SSH signature over `data` made at `time` (seconds since the epoch): the
    /// principal(s) and key fingerprint of the allowed signer, or why it is refused.
    ///
    /// # Errors
    /// Not an SSH signature, wrong namespace, a key not allowed (or not at `time`, or not for
    /// namespace `git`), a signature that does not verify.
    pub fn check(&self, signature: &[u8], data: &[u8], time: i64) -> Result<String, VerifyError> {
        let sig = SshSig::from_pem(signature).map_err(|_| {
            if signature.starts_with(b"-----BEGIN PGP") {
                VerifyError::OpenPgp
            } else {
                VerifyError::Unreadable
            }
        })?;
        if sig.namespace() != "git" {
            return Err(VerifyError::Namespace(sig.namespace().to_string()));
        }
        let fp = PublicKey::from(sig.public_key().clone()).fingerprint(Default::default());
        let signer = self
            .signers
            .iter()
            .find(|s| s.key.key_data() == sig.public_key())
            .ok_or_else(|| VerifyError::NotAllowed(fp.to_string()))?;
        let who = || (fp.to_string(), signer.principals.clone());
        if signer
            .namespaces
            .as_ref()
            .is_some_and(|n| !n.iter().any(|x| x == "git"))
        {
            let (fingerprint, principals) = who();
            return Err(VerifyError::NotForGit {
                fingerprint,
                principals,
            });
        }
        if signer.valid_after.is_some_and(|a| time < a)
            || signer.valid_before.is_some_and(|b| time > b)
        {
            let (fingerprint, principals) = who();
            return Err(VerifyError::NotValidThen {
                fingerprint,
                principals,
            });
        }
        signer.key.verify("git", data, &sig).map_err(|_| {
            let (fingerprint, principals) = who();
            VerifyError::BadSignature {
                fingerprint,
                principals,
            }
        })?;
        Ok(format!("{} ({fp})", signer.principals))
    }
}

/// Verifies commit `id` of `repo` against `signers`: the signer's principal(s) and key
/// fingerprint, or why the commit is refused (unsigned, or see [`AllowedSigners::check`]).
///
/// # Errors
/// The refusal reason.
pub fn verify_commit(
    repo: &Repository,
    id: &str,
    signers: &AllowedSigners,
) -> Result<String, VerifyError> {
    let oid = Oid::from_str(id).map_err(VerifyError::Git)?;
    let time = repo
        .find_commit(oid)
        .map_err(VerifyError::Git)?
        .committer()
        .when()
        .seconds();
    let (sig, data) = match repo.extract_signature(&oid, None) {
        Ok(x) => x,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(VerifyError::Unsigned),
        Err(e) => return Err(VerifyError::Git(e)),
    };
    signers.check(&sig, &data, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn allowed_signers_lines() {
        let text = format!(
            "# ops\n\nops@example.org {KEY} laptop\nci@example.org namespaces=\"file\" {KEY}\n\"a@x,b@x\" valid-after=\"20260101\",valid-before=\"20261231235959Z\" {KEY}\n* cert-authority {KEY}\n"
        );
        let s = AllowedSigners::parse(&text, "allowed_signers").unwrap();
        assert_eq!(s.signers.len(), 3, "cert-authority lines are skipped");
        assert_eq!(s.signers[0].principals, "ops@example.org");
        assert_eq!(s.signers[1].namespaces, Some(vec!["file".to_string()]));
        assert_eq!(s.signers[2].valid_after, Some(1767225600));
        assert_eq!(s.signers[2].valid_before, Some(1798761599));
        let err = AllowedSigners::parse("x@y ssh-ed25519 AAAAnotakey\n", "f")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f:1: "), "{err}");
        assert!(AllowedSigners::parse("# nothing\n", "f").is_err());
        let err = AllowedSigners::parse(&format!("x valid-after=\"2026\" {KEY}\n"), "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("valid-after"), "{err}");
    }
}
