//! Helpers shared by the integration tests: locating the shared corpus and reading the
//! kustomize conformance cases.

use std::path::{Path, PathBuf};

/// `../shared` next to the workspace root, if present.
pub fn shared_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let s = root.parent()?.join("shared");
    s.is_dir().then_some(s)
}

/// `../shared`, or — when it is absent — `None` after printing
/// `SKIPPED: <test>: ../shared absent`. The line is written straight to the process's stderr,
/// not through `eprintln!`, so the test harness's output capture cannot hide it: it shows in
/// every `cargo test` run, and `.ci/run` fails when it appears while `../shared` is present.
pub fn shared_or_skip(test: &str) -> Option<PathBuf> {
    let s = shared_dir();
    if s.is_none() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED: {test}: ../shared absent"
        );
    }
    s
}

/// One kustomize conformance case (`corpus/kustomize/cases/<name>`).
#[derive(Debug, Clone)]
pub struct Case {
    /// Case name from `case.yaml`.
    pub name: String,
    /// The case directory.
    pub dir: PathBuf,
    /// `build_dir`, relative to `input/`.
    pub build_dir: String,
    /// Extra CLI arguments.
    pub args: Vec<String>,
    /// Expected stdout, or `None` when the build must fail.
    pub expected: Option<String>,
}

fn scalar(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
        .to_string()
}

/// Reads every case under `cases_dir`.
pub fn read_cases(cases_dir: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(cases_dir) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(meta) = std::fs::read_to_string(dir.join("case.yaml")) else {
            continue;
        };
        let mut c = Case {
            name: String::new(),
            dir: dir.clone(),
            build_dir: ".".into(),
            args: Vec::new(),
            expected: None,
        };
        for line in meta.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim() {
                "name" => c.name = scalar(v),
                "build_dir" => c.build_dir = scalar(v),
                "args" => {
                    let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
                    c.args = inner
                        .split(',')
                        .map(scalar)
                        .filter(|s| !s.is_empty())
                        .collect();
                }
                _ => {}
            }
        }
        c.expected = std::fs::read_to_string(dir.join("expected.yaml")).ok();
        out.push(c);
    }
    out
}

/// Builds a case with the library, as `stackwave kustomize build` would.
pub fn build_case(c: &Case) -> Result<String, kustomize_rs::Error> {
    let mut opts = kustomize_rs::Options::default();
    for a in &c.args {
        match a.as_str() {
            "--load-restrictor=LoadRestrictionsNone" => {
                opts.load_restrictor = kustomize_rs::LoadRestrictor::None
            }
            "--reorder=none" => opts.reorder = Some(kustomize_rs::Reorder::None),
            "--reorder=legacy" => opts.reorder = Some(kustomize_rs::Reorder::Legacy),
            _ => {}
        }
    }
    let input = c.dir.join("input");
    kustomize_rs::build_dir(&input.join(&c.build_dir), &opts)
}

pub mod corpus;
pub use corpus::{genestack_inputs, CORPUS_ARGS, GOLDENS};

/// Runs the `git` CLI in `dir` as a fixed test identity (no signing); returns its stdout.
/// Panics, naming the command and git's stderr, when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Test Operator",
            "-c",
            "user.email=ops@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git CLI");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One test's cluster: the server named by `STACKWAVE_TEST_KUBECONFIG` when set, else an
/// in-process API test server; in both cases the controller stand-in (`kube-standin`) runs
/// beside it as a separate client, acting only in this test's namespaces (see
/// [`TestCluster::ns`]), so tests can share a server.
///
/// Cleanup: on a server the test did not start, dropping the `TestCluster` (also when the test
/// panics) deletes the namespaces made with [`TestCluster::ns`] and the cluster-scoped objects
/// given to [`TestCluster::cleanup_later`], and waits until the namespaces are gone (the
/// stand-in deletes their content and finalizes them), so the suites can run again on the
/// same server. An in-process server simply goes away with the test.
pub struct TestCluster {
    /// A client of the server.
    pub cluster: stackwave::cluster::Cluster,
    /// The in-process server, when the test started one.
    pub server: Option<kube_testserver::TestServer>,
    /// The stand-in (scoped to this test's namespaces).
    pub standin: kube_standin::Handle,
    /// The random suffix of this test's namespace names.
    pub suffix: String,
    kubeconfig: Option<PathBuf>,
    leftovers: std::sync::Mutex<(Vec<String>, Vec<serde_json::Value>)>,
    /// The rules as given (before scoping) and the fixed-name namespaces in scope.
    scope: std::sync::Mutex<(kube_standin::Rules, Vec<String>)>,
}

/// How long cleanup waits for a namespace to go away.
const CLEANUP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A random lowercase suffix for names (5 characters of `[a-z0-9]`).
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    let mut n = h.finish();
    (0..5)
        .map(|_| {
            let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

impl TestCluster {
    /// Connects to `STACKWAVE_TEST_KUBECONFIG`'s server, or starts an in-process one, and
    /// starts the stand-in with `rules` (their `namespaces` are set to this test's).
    ///
    /// # Panics
    /// When the kubeconfig cannot be read or the server cannot start.
    pub async fn start(rules: kube_standin::Rules) -> TestCluster {
        match std::env::var_os("STACKWAVE_TEST_KUBECONFIG") {
            Some(kc) => {
                let kc = PathBuf::from(kc);
                let connect = || stackwave::cluster::Cluster::connect_kubeconfig(&kc);
                let msg = "STACKWAVE_TEST_KUBECONFIG names a readable kubeconfig";
                let cluster = connect().await.expect(msg);
                let standin = connect().await.expect(msg).client().clone();
                TestCluster::with(cluster, standin, None, Some(kc.clone()), rules)
            }
            None => {
                let s = kube_testserver::start().await.expect("test server");
                let connect = || stackwave::cluster::Cluster::connect_url(&s.url).expect("client");
                let (cluster, standin) = (connect(), connect().client().clone());
                TestCluster::with(cluster, standin, Some(s), None, rules)
            }
        }
    }

    /// Connects to a server at `url` that the test did not start (no auth), as
    /// `STACKWAVE_TEST_KUBECONFIG` would: cleanup on drop.
    ///
    /// # Panics
    /// When the URL is not a valid server URL.
    pub fn connect(url: &str, rules: kube_standin::Rules) -> TestCluster {
        let connect = || stackwave::cluster::Cluster::connect_url(url).expect("client");
        let (cluster, standin) = (connect(), connect().client().clone());
        TestCluster::with(cluster, standin, None, None, rules)
    }

    fn with(
        cluster: stackwave::cluster::Cluster,
        standin_client: kube::Client,
        server: Option<kube_testserver::TestServer>,
        kubeconfig: Option<PathBuf>,
        rules: kube_standin::Rules,
    ) -> TestCluster {
        let suffix = random_suffix();
        // A client of its own, as a controller manager is.
        let standin = kube_standin::spawn(standin_client, scoped(rules.clone(), &suffix, &[]));
        TestCluster {
            cluster,
            server,
            standin,
            suffix,
            kubeconfig,
            leftovers: Default::default(),
            scope: std::sync::Mutex::new((rules, Vec::new())),
        }
    }

    /// Whether the server is the in-process one this test started.
    pub fn in_process(&self) -> bool {
        self.server.is_some()
    }

    /// The in-process server's URL, if this test started one.
    pub fn url(&self) -> Option<String> {
        self.server.as_ref().map(|s| s.url.clone())
    }

    /// The kubeconfig of `STACKWAVE_TEST_KUBECONFIG`, when that is the server.
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        self.kubeconfig.clone()
    }

    /// A unique namespace name for this test (`{base}-{suffix}`), deleted at cleanup. The
    /// stand-in acts in it.
    pub fn ns(&self, base: &str) -> String {
        let name = format!("{base}-{}", self.suffix);
        if let Ok(mut l) = self.leftovers.lock() {
            if !l.0.contains(&name) {
                l.0.push(name.clone());
            }
        }
        name
    }

    /// A namespace whose name is fixed (e.g. a chart's release namespace): the stand-in acts
    /// in it, and it is deleted at cleanup. Only one test at a time may use a given name.
    pub fn fixed_ns(&self, name: &str) -> String {
        if let Ok(mut l) = self.leftovers.lock() {
            if !l.0.iter().any(|n| n == name) {
                l.0.push(name.to_string());
            }
        }
        if let Ok(mut s) = self.scope.lock() {
            s.1.push(name.to_string());
            self.standin
                .set_rules(scoped(s.0.clone(), &self.suffix, &s.1));
        }
        name.to_string()
    }

    /// A unique name for a cluster-scoped object of this test (`{base}-{suffix}`).
    pub fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.suffix)
    }

    /// Deletes `object` (cluster-scoped, or outside this test's namespaces) at cleanup.
    pub fn cleanup_later(&self, object: serde_json::Value) {
        if let Ok(mut l) = self.leftovers.lock() {
            l.1.push(object);
        }
    }

    /// Replaces the stand-in's rules (scoped to this test's namespaces).
    pub fn set_rules(&self, rules: kube_standin::Rules) {
        if let Ok(mut s) = self.scope.lock() {
            s.0 = rules;
            self.standin
                .set_rules(scoped(s.0.clone(), &self.suffix, &s.1));
        }
    }

    /// Deletes what the test made and waits for its namespaces to go (see the type's docs).
    pub async fn cleanup(&self) {
        let (namespaces, objects) = self
            .leftovers
            .lock()
            .map(|mut l| (std::mem::take(&mut l.0), std::mem::take(&mut l.1)))
            .unwrap_or_default();
        cleanup(&self.cluster, namespaces, objects).await;
    }
}

fn scoped(mut rules: kube_standin::Rules, suffix: &str, fixed: &[String]) -> kube_standin::Rules {
    rules.namespaces = vec![format!("*-{suffix}")];
    rules.namespaces.extend(fixed.iter().cloned());
    rules
}

async fn cleanup(
    cluster: &stackwave::cluster::Cluster,
    namespaces: Vec<String>,
    objects: Vec<serde_json::Value>,
) {
    let ns_of = |n: &str| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}});
    for o in &objects {
        if let Err(e) = cluster.delete(o).await {
            eprintln!("cleanup: {}: {e}", stackwave::cluster::object_id(o));
        }
    }
    for n in &namespaces {
        if let Err(e) = cluster.delete(&ns_of(n)).await {
            eprintln!("cleanup: namespace {n}: {e}");
        }
    }
    let deadline = tokio::time::Instant::now() + CLEANUP_WAIT;
    for n in &namespaces {
        loop {
            match cluster.get(&ns_of(n)).await {
                Ok(None) => break,
                _ if tokio::time::Instant::now() > deadline => {
                    eprintln!("cleanup: namespace {n} still there after {CLEANUP_WAIT:?}");
                    break;
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.server.is_some() {
            return;
        }
        let has_work = self
            .leftovers
            .lock()
            .map(|l| !l.0.is_empty() || !l.1.is_empty())
            .unwrap_or(false);
        if !has_work {
            return;
        }
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            // The stand-in keeps running on the runtime's workers while this thread waits.
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(self.cleanup()))
            }
            _ => eprintln!(
                "cleanup skipped (not on a multi-thread tokio runtime): namespaces {:?}",
                self.leftovers
                    .lock()
                    .map(|l| l.0.clone())
                    .unwrap_or_default()
            ),
        }
    }
}

/// Fault injection between the agent's client and the API server, in the client's own
/// `tower` stack — so it works unchanged against a real (TLS) API server, where a proxy on
/// loopback would see only an encrypted tunnel.
pub mod fault {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    /// How a failed request fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum How {
        /// As a dropped connection: a transport error, no response.
        Drop,
        /// A `500 Internal Server Error` with a `metav1.Status` body, as kube-apiserver sends
        /// when etcd fails.
        Status500,
    }

    /// Fails GETs whose path ends with `suffix` once armed ([`FailGets::arm`]), passing every
    /// other request through.
    #[derive(Clone)]
    pub struct FailGets {
        suffix: Arc<str>,
        how: How,
        /// Matching GETs still let through before failing.
        pass: Arc<AtomicUsize>,
        left: Arc<AtomicUsize>,
        failed: Arc<AtomicUsize>,
    }

    impl FailGets {
        /// Fails nothing until [`FailGets::arm`].
        pub fn new(suffix: &str, how: How) -> FailGets {
            FailGets {
                suffix: suffix.into(),
                how,
                pass: Arc::default(),
                left: Arc::default(),
                failed: Arc::default(),
            }
        }

        /// Lets the next `pass` matching GETs through, then fails `n`.
        pub fn arm(&self, pass: usize, n: usize) {
            self.pass.store(pass, Ordering::SeqCst);
            self.left.store(n, Ordering::SeqCst);
        }

        /// How many requests were failed so far.
        pub fn failed(&self) -> usize {
            self.failed.load(Ordering::SeqCst)
        }

        fn take(&self) -> bool {
            if self.left.load(Ordering::SeqCst) == 0 {
                return false;
            }
            let dec = |n: usize| n.checked_sub(1);
            if self
                .pass
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, dec)
                .is_ok()
            {
                return false;
            }
            self.left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    impl<S> tower::Layer<S> for FailGets {
        type Service = Service<S>;
        fn layer(&self, inner: S) -> Service<S> {
            Service {
                inner,
                fault: self.clone(),
            }
        }
    }

    /// The service [`FailGets`] wraps a client's stack in.
    #[derive(Clone)]
    pub struct Service<S> {
        inner: S,
        fault: FailGets,
    }

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    type Resp = http::Response<Box<kube::client::DynBody>>;

    fn status_500(path: &str) -> Resp {
        use http_body_util::BodyExt;
        let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("fault injected: etcdserver: request timed out (GET {path})"),
            "reason": "InternalError", "code": 500});
        let full = http_body_util::Full::new(bytes::Bytes::from(body.to_string()))
            .map_err(|never| -> BoxError { match never {} });
        let mut r = http::Response::new(Box::new(full) as Box<kube::client::DynBody>);
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }

    impl<S, B> tower::Service<http::Request<B>> for Service<S>
    where
        S: tower::Service<http::Request<B>, Response = Resp>,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        type Response = S::Response;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            self.inner.poll_ready(cx).map_err(Into::into)
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            if req.method() == http::Method::GET
                && req.uri().path().ends_with(&*self.fault.suffix)
                && self.fault.take()
            {
                self.fault.failed.fetch_add(1, Ordering::SeqCst);
                let path = req.uri().path().to_string();
                let how = self.fault.how;
                return Box::pin(async move {
                    match how {
                        How::Drop => Err(Box::new(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            format!("fault injected: connection dropped on GET {path}"),
                        )) as BoxError),
                        How::Status500 => Ok(status_500(&path)),
                    }
                });
            }
            let f = self.inner.call(req);
            Box::pin(async move { f.await.map_err(Into::into) })
        }
    }
}

impl TestCluster {
    /// Another client of the same server (the in-process one or `STACKWAVE_TEST_KUBECONFIG`'s)
    /// whose requests go through `fault` first.
    ///
    /// # Panics
    /// When the server's configuration cannot be read.
    pub async fn cluster_with_fault(&self, fault: &fault::FailGets) -> stackwave::cluster::Cluster {
        let config = match &self.kubeconfig {
            Some(kc) => {
                let kc = kube::config::Kubeconfig::read_from(kc).expect("kubeconfig");
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .expect("kubeconfig")
            }
            // The in-process server, or a URL without auth ([`TestCluster::connect`]).
            None => kube::Config::new(self.cluster.server().parse().expect("server URL")),
        };
        let server = config.cluster_url.to_string();
        let client = kube::client::ClientBuilder::try_from(config)
            .expect("client")
            .with_layer(fault)
            .build();
        stackwave::cluster::Cluster::with_client(client, &server)
    }
}

/// The reference tools of `scripts/setup` (`.tools/venv`: python with helm-python-sdk, kubectl),
/// when installed.
pub fn oracle_tools() -> Option<(PathBuf, PathBuf)> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin");
    let (py, kubectl) = (venv.join("python"), venv.join("kubectl"));
    (py.is_file() && kubectl.is_file()).then_some((py, kubectl))
}

/// Runs `../shared/tools/genestack-oracle` for `svc` over the corpus (its Secrets), with operator
/// overrides; returns what it prints.
///
/// # Panics
/// When the tools are missing or the oracle fails (naming the service and its stderr).
pub fn oracle(shared: &Path, svc: &str, overrides: Option<&Path>) -> String {
    let (py, kubectl) = oracle_tools().expect("reference tools (scripts/setup)");
    let mut c = std::process::Command::new(py);
    c.arg(shared.join("tools/genestack-oracle"))
        .args(CORPUS_ARGS)
        .args(["--service", svc])
        .arg("--kubectl")
        .arg(kubectl)
        .current_dir(shared);
    if let Some(o) = overrides {
        c.arg("--overrides").arg(o);
    }
    let out = c.output().expect("run genestack-oracle");
    assert!(
        out.status.success(),
        "oracle failed for {svc}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A Git repository (branch `main`, one commit tagged `tag`) holding a copy of the corpus's
/// Genestack tree, standing in for GitHub's rackerlabs/genestack in fetch tests; without
/// the corpus's fake fixtures (`secrets.yaml`, `cluster-state.yaml`) when `without_fixtures`,
/// as the real repository has none.
///
/// # Panics
/// When the copy or git fails.
pub fn genestack_remote(shared: &Path, tag: &str, without_fixtures: bool) -> PathBuf {
    let remote = std::env::temp_dir().join(format!(
        "sw-genestack-remote-{}-{}",
        std::process::id(),
        random_suffix()
    ));
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(shared.join("corpus/genestack"))
        .arg(&remote)
        .status()
        .expect("cp");
    assert!(st.success());
    if without_fixtures {
        for f in ["secrets.yaml", "cluster-state.yaml"] {
            std::fs::remove_file(remote.join(f)).expect("fixture");
        }
    }
    git(&remote, &["init", "-q", "-b", "main"]);
    git(&remote, &["add", "-A"]);
    git(&remote, &["commit", "-q", "-m", "Genestack release"]);
    git(&remote, &["tag", tag]);
    remote
}

/// Whether libhelm_c loads; without it, panics unless `STACKWAVE_SKIP_HELM=1`, then prints
/// `SKIPPED` and returns false.
pub fn helm_or_skip() -> bool {
    match stackwave::render::helm::Helm::get() {
        Ok(_) => true,
        Err(e) if std::env::var("STACKWAVE_SKIP_HELM").is_ok_and(|v| v == "1") => {
            eprintln!("SKIPPED: {e}");
            false
        }
        Err(e) => panic!("{e} (run scripts/setup)"),
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0 (no chunked bodies): status and body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}
