//! The source against real remote Git servers on loopback: smart HTTP (`git http-backend`
//! behind a small HTTP server that demands credentials) and SSH (a real `sshd` with its own
//! host key). Credentials come from a secret directory (Flux's key names); SSH host keys are
//! verified against known_hosts unless told otherwise.

use stackwave::source::auth::Auth;
use stackwave::source::{head_of, Source};
use stackwave_tests::git;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sw-remote-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A bare repository `<root>/repo.git` with one commit on `main`; returns the commit id.
fn bare_repo(root: &Path) -> String {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("stackwave.yaml"), "components: []\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "desired state"]);
    git(
        root,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"],
    );
    git(&work, &["rev-parse", "HEAD"]).trim().to_string()
}

/// One HTTP request: method, target, headers (names lower-cased), body.
type Request = (String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one HTTP request; chunked bodies decoded.
fn read_request(s: &mut BufReader<std::net::TcpStream>) -> Option<Request> {
    let mut line = String::new();
    s.read_line(&mut line).ok()?;
    let mut it = line.split_whitespace();
    let (method, target) = (it.next()?.to_string(), it.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        s.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            s.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            s.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = get("content-length").and_then(|n| n.parse::<usize>().ok()) {
        body.resize(n, 0);
        s.read_exact(&mut body).ok()?;
    }
    Some((method, target, headers, body))
}

/// Serves `root` over smart HTTP with `git http-backend`, answering 401 unless the request
/// carries `Authorization: <expected>`. Serves until the process ends.
fn serve_smart_http(root: PathBuf, expected: String) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { return };
            let mut out = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            let Some((method, target, headers, body)) = read_request(&mut r) else {
                continue;
            };
            let auth = headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone());
            if auth.as_deref() != Some(expected.as_str()) {
                let _ = write!(out, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let ctype = headers
                .iter()
                .find(|(k, _)| k == "content-type")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let mut child = Command::new("git")
                .arg("http-backend")
                .env("GIT_PROJECT_ROOT", &root)
                .env("GIT_HTTP_EXPORT_ALL", "1")
                .env("REQUEST_METHOD", &method)
                .env("PATH_INFO", path)
                .env("QUERY_STRING", query)
                .env("CONTENT_TYPE", ctype)
                .env("CONTENT_LENGTH", body.len().to_string())
                .env("REMOTE_USER", "tester")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&body).unwrap();
            let cgi = child.wait_with_output().unwrap().stdout;
            let split = cgi
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| (i, 4))
                .or_else(|| cgi.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
                .unwrap_or((cgi.len(), 0));
            let head = String::from_utf8_lossy(&cgi[..split.0]).to_string();
            let payload = &cgi[split.0 + split.1..];
            let mut status = "200 OK".to_string();
            let mut hs = String::new();
            for h in head.lines() {
                match h.split_once(':') {
                    Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().into(),
                    Some(_) => hs.push_str(&format!("{h}\r\n")),
                    None => {}
                }
            }
            let _ = write!(
                out,
                "HTTP/1.1 {status}\r\n{hs}Content-Length: {}\r\nConnection: close\r\n\r\n",
                payload.len()
            );
            let _ = out.write_all(payload);
        }
    });
    url
}

fn secret(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (k, v) in files {
        std::fs::write(dir.join(k), v).unwrap();
    }
    dir.to_path_buf()
}

#[test]
fn https_remote_with_a_token_from_the_secret() {
    use base64::Engine;
    let root = tmp("http");
    let head = bare_repo(&root);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("deploy:tok3n")
    );
    let url = format!("{}/repo.git", serve_smart_http(root.clone(), basic));
    let fetch = |secret_dir: Option<PathBuf>, state: &str| {
        Source::open(&url, "main", &root.join(state))
            .unwrap()
            .with_auth(Auth {
                secret_dir,
                ..Default::default()
            })
            .fetch()
    };
    let good = secret(
        &root.join("s-good"),
        &[("username", "deploy"), ("password", "tok3n\n")],
    );
    assert_eq!(fetch(Some(good.clone()), "st1").unwrap().id, head);
    let auth = Auth {
        secret_dir: Some(good),
        ..Default::default()
    };
    assert_eq!(head_of(&url, "main", &auth).unwrap(), head);

    let err = fetch(None, "st2").unwrap_err().to_string();
    assert!(
        err.contains(&url) && err.to_lowercase().contains("auth"),
        "{err}"
    );
    let wrong = secret(
        &root.join("s-wrong"),
        &[("username", "deploy"), ("password", "guess")],
    );
    let err = fetch(Some(wrong), "st3").unwrap_err().to_string();
    assert!(err.to_lowercase().contains("auth"), "{err}");

    // A bearer token goes in an Authorization header.
    let root2 = tmp("http-bearer");
    let head2 = bare_repo(&root2);
    let url2 = format!(
        "{}/repo.git",
        serve_smart_http(root2.clone(), "Bearer s3cr3t".into())
    );
    let bearer = secret(&root2.join("s"), &[("bearerToken", "s3cr3t\n")]);
    let got = Source::open(&url2, "main", &root2.join("st"))
        .unwrap()
        .with_auth(Auth {
            secret_dir: Some(bearer),
            ..Default::default()
        })
        .fetch()
        .unwrap();
    assert_eq!(got.id, head2);
}

/// A real sshd on loopback, as root's account, accepting `client.pub`. Killed on drop.
struct Sshd {
    child: std::process::Child,
    port: u16,
    host_pub: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(st.success());
}

fn start_sshd(root: &Path, authorized: &Path) -> Option<Sshd> {
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(sshd) = sshd else {
        if std::env::var("STACKWAVE_SKIP_SSHD").is_ok_and(|v| v == "1") {
            return None;
        }
        panic!(
            "sshd not found: scripts/setup installs openssh-server (or set STACKWAVE_SKIP_SSHD=1)"
        );
    };
    let _ = std::fs::create_dir_all("/run/sshd");
    let hostkey = root.join("host_key");
    keygen(&hostkey);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f", "/dev/null"])
        .arg("-o")
        .arg(format!("Port={port}"))
        .args(["-o", "ListenAddress=127.0.0.1"])
        .arg("-o")
        .arg(format!("HostKey={}", hostkey.display()))
        .arg("-o")
        .arg(format!("AuthorizedKeysFile={}", authorized.display()))
        .args(["-o", "StrictModes=no", "-o", "PasswordAuthentication=no"])
        .args([
            "-o",
            "KbdInteractiveAuthentication=no",
            "-o",
            "PidFile=none",
        ])
        .args(["-o", "PermitRootLogin=prohibit-password"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the port to accept connections.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let host_pub = std::fs::read_to_string(root.join("host_key.pub")).unwrap();
    Some(Sshd {
        child,
        port,
        host_pub,
    })
}

#[test]
fn ssh_remote_with_a_key_and_verified_host() {
    let root = tmp("ssh");
    let head = bare_repo(&root);
    keygen(&root.join("client"));
    keygen(&root.join("stranger"));
    let authorized = root.join("authorized_keys");
    std::fs::copy(root.join("client.pub"), &authorized).unwrap();
    let Some(sshd) = start_sshd(&root, &authorized) else {
        return;
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let url = format!(
        "ssh://{user}@127.0.0.1:{}{}",
        sshd.port,
        root.join("repo.git").display()
    );
    let identity = std::fs::read_to_string(root.join("client")).unwrap();
    let key_field = |pubkey: &str| {
        let f: Vec<&str> = pubkey.split_whitespace().collect();
        format!("{} {}", f[0], f[1])
    };
    let known = format!("[127.0.0.1]:{} {}\n", sshd.port, key_field(&sshd.host_pub));
    let fetch = |auth: Auth, state: &str| {
        Source::open(&url, "main", &root.join(state))
            .unwrap()
            .with_auth(auth)
            .fetch()
    };
    let empty_known = root.join("empty_known_hosts");
    std::fs::write(&empty_known, "").unwrap();

    // The key and a known_hosts naming the server's key: fetched.
    let good = secret(
        &root.join("s-good"),
        &[("identity", &identity), ("known_hosts", &known)],
    );
    let auth = Auth {
        secret_dir: Some(good),
        ..Default::default()
    };
    assert_eq!(fetch(auth.clone(), "st1").unwrap().id, head);
    assert_eq!(head_of(&url, "main", &auth).unwrap(), head);

    // An unknown host is refused by default, naming it and its key's fingerprint.
    let nohosts = secret(&root.join("s-nohosts"), &[("identity", &identity)]);
    let err = fetch(
        Auth {
            secret_dir: Some(nohosts.clone()),
            known_hosts: Some(empty_known.clone()),
            ..Default::default()
        },
        "st2",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("127.0.0.1") && err.contains("SHA256:"),
        "{err}"
    );
    // ... unless verification is explicitly turned off.
    assert_eq!(
        fetch(
            Auth {
                secret_dir: Some(nohosts),
                known_hosts: Some(empty_known),
                insecure_skip_host_key: true,
                ..Default::default()
            },
            "st3"
        )
        .unwrap()
        .id,
        head
    );

    // A host whose key changed is refused.
    let other_pub = std::fs::read_to_string(root.join("stranger.pub")).unwrap();
    let changed = format!("[127.0.0.1]:{} {}\n", sshd.port, key_field(&other_pub));
    let s = secret(
        &root.join("s-changed"),
        &[("identity", &identity), ("known_hosts", &changed)],
    );
    let err = fetch(
        Auth {
            secret_dir: Some(s),
            ..Default::default()
        },
        "st4",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("differs"), "{err}");

    // A key the server does not accept fails (once, not in a loop).
    let stranger = std::fs::read_to_string(root.join("stranger")).unwrap();
    let s = secret(
        &root.join("s-stranger"),
        &[("identity", &stranger), ("known_hosts", &known)],
    );
    let err = fetch(
        Auth {
            secret_dir: Some(s),
            ..Default::default()
        },
        "st5",
    )
    .unwrap_err()
    .to_string();
    assert!(err.to_lowercase().contains("auth"), "{err}");
}
