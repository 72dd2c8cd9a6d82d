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
use std::path::Path;

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
    pub fn parse(text: &str, file: &str) -> Result<AllowedSigners, String> {
        let mut signers = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |why: String| format!("{file}:{}: {why}", i + 1);
            let f = fields(line);
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
                None => return Err(at("no key".into())),
            };
            let key_text = format!(
                "{} {}",
                f.get(key_at).map(String::as_str).unwrap_or(""),
                f.get(key_at + 1).map(String::as_str).unwrap_or("")
            );
            let key = PublicKey::from_openssh(&key_text)
                .map_err(|e| at(format!("unparsable public key: {e}")))?;
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
                    "valid-after" => {
                        s.valid_after =
                            Some(timestamp(v).ok_or_else(|| at(format!("bad valid-after {v}")))?)
                    }
                    "valid-before" => {
                        s.valid_before =
                            Some(timestamp(v).ok_or_else(|| at(format!("bad valid-before {v}")))?)
                    }
                    _ => {}
                }
            }
            if !ca {
                signers.push(s);
            }
        }
        if signers.is_empty() {
            return Err(format!("{file}: no allowed signer keys"));
        }
        Ok(AllowedSigners { signers })
    }

    /// Reads and parses an allowed-signers file.
    ///
    /// # Errors
    /// The file cannot be read, or [`AllowedSigners::parse`] fails.
    pub fn load(path: &Path) -> Result<AllowedSigners, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        AllowedSigners::parse(&text, &path.display().to_string())
    }

    /// Checks an SSH signature over `data` made at `time` (seconds since the epoch): the
    /// principal(s) and key fingerprint of the allowed signer, or why it is refused.
    ///
    /// # Errors
    /// Not an SSH signature, wrong namespace, a key not allowed (or not at `time`, or not for
    /// namespace `git`), a signature that does not verify.
    pub fn check(&self, signature: &[u8], data: &[u8], time: i64) -> Result<String, String> {
        let sig = SshSig::from_pem(signature).map_err(|_| {
            if signature.starts_with(b"-----BEGIN PGP") {
                "signed with OpenPGP, not SSH".to_string()
            } else {
                "unreadable SSH signature".to_string()
            }
        })?;
        if sig.namespace() != "git" {
            return Err(format!(
                "signature namespace is {:?}, not \"git\"",
                sig.namespace()
            ));
        }
        let fp = PublicKey::from(sig.public_key().clone()).fingerprint(Default::default());
        let signer = self
            .signers
            .iter()
            .find(|s| s.key.key_data() == sig.public_key())
            .ok_or_else(|| format!("signed by {fp}, which is not an allowed signer"))?;
        if signer
            .namespaces
            .as_ref()
            .is_some_and(|n| !n.iter().any(|x| x == "git"))
        {
            return Err(format!(
                "{fp} ({}) may not sign git commits",
                signer.principals
            ));
        }
        if signer.valid_after.is_some_and(|a| time < a)
            || signer.valid_before.is_some_and(|b| time > b)
        {
            return Err(format!(
                "{fp} ({}) was not valid when the commit was made",
                signer.principals
            ));
        }
        signer.key.verify("git", data, &sig).map_err(|_| {
            format!(
                "bad signature by {fp} ({}): the commit was changed after signing",
                signer.principals
            )
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
) -> Result<String, String> {
    let oid = Oid::from_str(id).map_err(|e| e.message().to_string())?;
    let time = repo
        .find_commit(oid)
        .map_err(|e| e.message().to_string())?
        .committer()
        .when()
        .seconds();
    let (sig, data) = match repo.extract_signature(&oid, None) {
        Ok(x) => x,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Err("the commit is not signed".into())
        }
        Err(e) => return Err(e.message().to_string()),
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
        let err = AllowedSigners::parse("x@y ssh-ed25519 AAAAnotakey\n", "f").unwrap_err();
        assert!(err.starts_with("f:1: "), "{err}");
        assert!(AllowedSigners::parse("# nothing\n", "f").is_err());
        let err =
            AllowedSigners::parse(&format!("x valid-after=\"2026\" {KEY}\n"), "f").unwrap_err();
        assert!(err.contains("valid-after"), "{err}");
    }
}
