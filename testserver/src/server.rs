//! The HTTP front end: routes Kubernetes API paths to the store.

use crate::resources::ApiResource;
use crate::store::{ApiError, FieldValidation, Store, Write, WriteOpts};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A running test server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The state (for tests that inspect or change it directly).
    pub store: Arc<Mutex<Store>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

#[derive(Clone)]
struct App {
    store: Arc<Mutex<Store>>,
}

/// Starts a server on a free loopback port (call inside a tokio runtime). It is an API server
/// alone, as `../shared/corpus/kube-api` records kube-apiserver: `Foreground`/`Orphan`
/// deletions and terminating namespaces wait for a garbage collector / namespace controller
/// (run `kube-standin` beside it for those).
///
/// # Errors
/// When no port can be bound.
pub async fn start() -> std::io::Result<TestServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let store = Arc::new(Mutex::new(Store::new()));
    let app = App {
        store: store.clone(),
    };
    let router = axum::Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
        let app = app.clone();
        async move { handle(app, m, u, h, b).await }
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(TestServer {
        url: format!("http://{addr}"),
        store,
        shutdown: Some(tx),
    })
}

fn respond(code: u16, body: &Json) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// Whether the client asks for a `meta.k8s.io/v1` Table (`Accept: application/json;as=Table;
/// v=v1;g=meta.k8s.io`, as `kubectl get` does).
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.contains("as=Table"))
}

/// A custom resource list as a Table: a Name column, then the CRD's printer columns (or
/// Age when it has none), each cell its `jsonPath` (a plain `.a.b` path) of the object, and
/// the object as PartialObjectMetadata (apiextensions-apiserver
/// `pkg/registry/customresource/tableconvertor`).
fn table(r: &crate::resources::ApiResource, items: &[Json], meta: Json) -> Json {
    const NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME, "priority": 0}),
    ];
    let mut paths = Vec::new();
    let defaults =
        [json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})];
    let declared = if r.columns.is_empty() {
        &defaults[..]
    } else {
        &r.columns[..]
    };
    for c in declared {
        let path = c["jsonPath"].as_str().unwrap_or("").to_string();
        let description = c["description"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!("Custom resource definition column (in JSONPath format): {path}")
            });
        columns.push(json!({"name": c["name"], "type": c["type"], "format": c["format"].as_str().unwrap_or(""), "description": description, "priority": c["priority"].as_i64().unwrap_or(0)}));
        paths.push(path);
    }
    let rows: Vec<Json> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Json::Null)];
            for p in &paths {
                let ptr = p.replace('.', "/");
                cells.push(o.pointer(&ptr).cloned().unwrap_or(Json::Null));
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows})
}

/// A response with one `Warning: 299 - "<text>"` header per warning (RFC 7234 form, as
/// k8s.io/apiserver `pkg/warning` writes them).
fn respond_warning(code: u16, body: &Json, warnings: Vec<String>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    for w in warnings {
        b = b.header("warning", format!("299 - {w:?}"));
    }
    b.body(Body::from(body.to_string())).unwrap_or_default()
}

/// Dotted paths of the keys a JSON document repeats within one object (`data`,
/// `metadata.name`); nothing for a body that is not JSON.
fn duplicate_json_fields(body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;
    struct Dups<'a> {
        path: String,
        out: &'a RefCell<Vec<String>>,
    }
    impl<'de> DeserializeSeed<'de> for Dups<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Dups<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = m.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    k.clone()
                } else {
                    format!("{}.{k}", self.path)
                };
                if !seen.insert(k) {
                    self.out.borrow_mut().push(path.clone());
                }
                m.next_value_seed(Dups {
                    path,
                    out: self.out,
                })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
            while s
                .next_element_seed(Dups {
                    path: self.path.clone(),
                    out: self.out,
                })?
                .is_some()
            {}
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    let out = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let seed = Dups {
        path: String::new(),
        out: &out,
    };
    if seed.deserialize(&mut de).is_err() {
        return Vec::new();
    }
    out.into_inner()
}

fn error(e: ApiError) -> Response {
    respond(e.code, &e.body())
}

/// Query parameters, percent- and `+`-decoded (`application/x-www-form-urlencoded`).
fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Parses a request body (JSON or YAML).
fn parse_body(b: &Bytes) -> Result<Json, ApiError> {
    if b.is_empty() {
        return Ok(Json::Null);
    }
    if let Ok(j) = serde_json::from_slice::<Json>(b) {
        return Ok(j);
    }
    let text =
        std::str::from_utf8(b).map_err(|_| ApiError::bad_request("body is not UTF-8".into()))?;
    let v = kustomize_rs::yaml::parse_one(text).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding YAML: error converting YAML to JSON: {}",
            go_yaml_error(&e)
        ))
    })?;
    Ok(crate::store::from_kustomize_value(&v))
}

/// A YAML syntax error as go-yaml (through `sigs.k8s.io/yaml`) words it: `yaml: line N:
/// <problem>`, where a parser error names libyaml's problem without its context and the
/// 0-based line of the problem mark, and a scanner error the 1-based line (go-yaml
/// `decode.go`, `parser.fail`). Our parser (saphyr) words parser errors `while parsing <context>,
/// <problem>` with 1-based lines.
fn go_yaml_error(e: &kustomize_rs::yaml::YamlError) -> String {
    let parser_error = e.message.starts_with("while parsing")
        || e.message.starts_with("did not find expected <")
        || e.message.starts_with("found incompatible");
    let problem = match e.message.split_once(", ") {
        Some((context, problem)) if context.starts_with("while parsing") => problem,
        _ => e.message.as_str(),
    };
    // libyaml's wording where saphyr's differs.
    let problem = match problem {
        "expected ',' or ']'" => "did not find expected ',' or ']'",
        p => p,
    };
    let line = if parser_error {
        e.line.saturating_sub(1)
    } else {
        e.line
    };
    if line == 0 {
        format!("yaml: {problem}")
    } else {
        format!("yaml: line {line}: {problem}")
    }
}

fn discovery(store: &Store, segs: &[&str]) -> Option<Json> {
    match segs {
        ["version"] => Some(
            json!({"major": "1", "minor": "36", "gitVersion": "v1.36.2-kube-testserver", "platform": "linux/amd64"}),
        ),
        ["api"] => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}),
        ),
        ["api", "v1"] => Some(resource_list(store, "", "v1")),
        ["apis"] => {
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for r in store.resources.iter().filter(|r| !r.group.is_empty()) {
                match groups.iter_mut().find(|(g, _)| *g == r.group) {
                    Some((_, vs)) => {
                        if !vs.contains(&r.version) {
                            vs.push(r.version.clone());
                        }
                    }
                    None => groups.push((r.group.clone(), vec![r.version.clone()])),
                }
            }
            let groups: Vec<Json> = groups.iter().map(|(g, vs)| group_json(g, vs)).collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["apis", g] => {
            let vs: Vec<String> = store
                .resources
                .iter()
                .filter(|r| r.group == *g)
                .map(|r| r.version.clone())
                .fold(Vec::new(), |mut a, v| {
                    if !a.contains(&v) {
                        a.push(v);
                    }
                    a
                });
            (!vs.is_empty()).then(|| {
                let mut gj = group_json(g, &vs);
                gj["kind"] = json!("APIGroup");
                gj["apiVersion"] = json!("v1");
                gj
            })
        }
        ["apis", g, v] => store
            .resources
            .iter()
            .any(|r| r.group == *g && r.version == *v)
            .then(|| resource_list(store, g, v)),
        _ => None,
    }
}

/// The media type of aggregated discovery (`apidiscovery.k8s.io/v2`), as clients ask for it
/// in `Accept` and as the server labels the answer.
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Aggregated discovery of the core group (`/api`, `core == true`) or of every named group
/// (`/apis`): one `APIGroupDiscoveryList` with each version's resources and subresources
/// (`k8s.io/api/apidiscovery/v2`; responseKind group/version left empty as the real server
/// does).
fn aggregated(store: &Store, core: bool) -> Json {
    /// group → (version → resource entries), in the order first seen.
    type Groups = Vec<(String, Vec<(String, Vec<Json>)>)>;
    let mut groups: Groups = Vec::new();
    for r in store
        .resources
        .iter()
        .filter(|r| r.group.is_empty() == core)
    {
        let kind = json!({"group": "", "version": "", "kind": r.kind});
        let mut e = json!({
            "resource": r.plural,
            "responseKind": kind,
            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": r.singular,
            "verbs": r.discovery()["verbs"].clone(),
        });
        if !r.short.is_empty() {
            e["shortNames"] = json!(r.short);
        }
        if r.status {
            e["subresources"] = json!([{"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}]);
        }
        let g = match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some(g) => g,
            None => {
                groups.push((r.group.clone(), Vec::new()));
                groups.last_mut().expect("just pushed")
            }
        };
        match g.1.iter_mut().find(|(v, _)| *v == r.version) {
            Some((_, rs)) => rs.push(e),
            None => g.1.push((r.version.clone(), vec![e])),
        }
    }
    let items: Vec<Json> = groups
        .into_iter()
        .map(|(g, vs)| {
            let meta = if g.is_empty() {
                json!({})
            } else {
                json!({"name": g})
            };
            let versions: Vec<Json> = vs
                .into_iter()
                .map(|(v, rs)| json!({"version": v, "resources": rs, "freshness": "Current"}))
                .collect();
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn group_json(g: &str, vs: &[String]) -> Json {
    let versions: Vec<Json> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Json::Null)})
}

fn resource_list(store: &Store, g: &str, v: &str) -> Json {
    let mut res: Vec<Json> = Vec::new();
    for r in store
        .resources
        .iter()
        .filter(|r| r.group == g && r.version == v)
    {
        res.push(r.discovery());
        if r.kind == "Namespace" && r.group.is_empty() {
            res.push(json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["update"]}));
        }
        if r.status {
            res.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if g.is_empty() {
        v.to_string()
    } else {
        format!("{g}/{v}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res})
}

struct Target {
    resource: ApiResource,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn route(store: &Store, segs: &[&str]) -> Option<Target> {
    let (g, v, rest) = match segs {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let find = |p: &str| store.resource(g, v, p).cloned();
    if let ["namespaces", ns, plural, tail @ ..] = rest {
        if let Some(r) = find(plural).filter(|r| r.namespaced) {
            return Some(Target {
                resource: r,
                ns: ns.to_string(),
                name: tail.first().map(|s| s.to_string()),
                sub: tail.get(1).map(|s| s.to_string()),
            });
        }
    }
    let (plural, tail) = rest.split_first()?;
    let r = find(plural)?;
    // A namespaced kind is listed across namespaces at the cluster path, never addressed there.
    if r.namespaced && !tail.is_empty() {
        return None;
    }
    Some(Target {
        resource: r,
        ns: String::new(),
        name: tail.first().map(|s| s.to_string()),
        sub: tail.get(1).map(|s| s.to_string()),
    })
}

async fn handle(app: App, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let q = query(&uri);
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .split('/')
        .next()
        .unwrap_or("unknown")
        .to_string();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if method == Method::GET {
        let store = match app.store.lock() {
            Ok(s) => s,
            Err(_) => return respond(500, &json!({"message": "store poisoned"})),
        };
        let accept = headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let wants_aggregated = accept
            .split(',')
            .any(|m| m.replace(' ', "") == AGGREGATED.to_ascii_lowercase());
        if wants_aggregated && matches!(segs.as_slice(), ["api"] | ["apis"]) {
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-type", AGGREGATED)
                .body(Body::from(aggregated(&store, segs == ["api"]).to_string()))
                .unwrap_or_default();
        }
        if let Some(d) = discovery(&store, &segs) {
            return respond(200, &d);
        }
    }
    let target = {
        let Ok(store) = app.store.lock() else {
            return respond(500, &json!({}));
        };
        route(&store, &segs)
    };
    let Some(t) = target else {
        let served = app.store.lock().is_ok_and(|store| {
            let group = match segs.as_slice() {
                ["api", ..] => Some(""),
                ["apis", g, ..] => Some(*g),
                _ => None,
            };
            group.is_some_and(|g| store.resources.iter().any(|r| r.group == g))
        });
        // An unserved group has no handler at all: the Go mux's plain-text 404.
        if !served {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .header("content-type", "text/plain; charset=utf-8")
                .body(Body::from("404 page not found\n"))
                .unwrap_or_default();
        }
        return error(ApiError::no_route());
    };
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    if let Some(v) = q.get("dryRun").filter(|v| *v != "All") {
        let options = match method {
            Method::POST => "CreateOptions",
            Method::PUT => "UpdateOptions",
            Method::DELETE => "DeleteOptions",
            _ => "PatchOptions",
        };
        let msg = format!("Unsupported value: [\"{v}\"]: supported values: \"All\"");
        return error(ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{options}.meta.k8s.io \"\" is invalid: dryRun: {msg}"),
            details: json!({"group": "meta.k8s.io", "kind": options, "causes": [{"reason": "FieldValueNotSupported", "message": msg, "field": "dryRun"}]}),
        });
    }
    if let Ok(mut s) = app.store.lock() {
        // Dry runs are counted apart: they write nothing.
        let key = if dry_run {
            format!("{} (dry run)", method.as_str())
        } else {
            method.as_str().to_string()
        };
        *s.requests.entry(key).or_insert(0) += 1;
    }
    let manager = q.get("fieldManager").cloned().unwrap_or(ua);
    let status = t.sub.as_deref() == Some("status");
    if t.sub.as_deref() == Some("finalize") && t.resource.kind == "Namespace" {
        let Some(n) = t.name.clone() else {
            return error(ApiError::no_route());
        };
        if method != Method::PUT {
            return error(ApiError {
                code: 405,
                reason: "MethodNotAllowed",
                message: "the server does not allow this method on the requested resource".into(),
                details: json!({}),
            });
        }
        let b = match parse_body(&body) {
            Ok(b) => b,
            Err(e) => return error(e),
        };
        let opts = WriteOpts {
            manager,
            dry_run,
            ..Default::default()
        };
        let Ok(mut store) = app.store.lock() else {
            return respond(500, &json!({}));
        };
        return match store.finalize_namespace(&t.resource, &n, b, &opts) {
            Ok(o) => respond(200, &o),
            Err(e) => error(e),
        };
    }
    if t.sub.is_some() && !status {
        return error(ApiError::no_route());
    }
    if status && !t.resource.status {
        return error(ApiError::no_route());
    }
    let validation = match q.get("fieldValidation").map(String::as_str) {
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        _ => FieldValidation::Warn,
    };
    let opts = WriteOpts {
        manager,
        dry_run,
        status,
        validation,
    };
    // Repeated JSON keys: refused under Strict, a warning otherwise (sigs.k8s.io/json strict
    // decoding). Apply bodies are typed by structured-merge-diff instead.
    let mut warnings = Vec::new();
    if matches!(method, Method::POST | Method::PUT | Method::PATCH)
        && !content_type.starts_with("application/apply-patch")
    {
        let dups: Vec<String> = duplicate_json_fields(&body)
            .iter()
            .map(|d| format!("duplicate field {d:?}"))
            .collect();
        if !dups.is_empty() && validation == FieldValidation::Strict {
            return error(ApiError::bad_request(format!(
                "{kind} in version {:?} cannot be handled as a {kind}: strict decoding error: {}",
                t.resource.version,
                dups.join(", "),
                kind = t.resource.kind
            )));
        }
        if validation == FieldValidation::Warn {
            warnings = dups;
        }
    }
    match (method.clone(), &t.name) {
        (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(app, t, q).await
        }
        (Method::GET, None) => {
            let lo = match crate::listopts::parse(&q, false, t.resource.field_selectors.as_deref())
            {
                Ok(l) => l,
                Err(e) => return error(e),
            };
            let Ok(store) = app.store.lock() else {
                return respond(500, &json!({}));
            };
            // Builtin list items carry no apiVersion/kind (the list's own say what they are);
            // custom resources, served as unstructured, keep theirs and an empty `continue`.
            let custom = t.resource.schema.is_some();
            let (items, more) = lo.page(store.list(&t.resource, &t.ns, &lo.labels));
            let items: Vec<Json> = items
                .into_iter()
                .map(|mut o| {
                    if let (Some(m), false) = (o.as_object_mut(), custom) {
                        m.remove("apiVersion");
                        m.remove("kind");
                    }
                    o
                })
                .collect();
            let mut meta = json!({"resourceVersion": store.resource_version().to_string()});
            if let Some((token, remaining)) = more {
                meta["continue"] = json!(token);
                meta["remainingItemCount"] = json!(remaining);
            } else if custom {
                meta["continue"] = json!("");
            }
            if custom && wants_table(&headers) {
                return respond(200, &table(&t.resource, &items, meta));
            }
            respond(
                200,
                &json!({"kind": format!("{}List", t.resource.kind), "apiVersion": t.resource.group_version(), "metadata": meta, "items": items}),
            )
        }
        (Method::DELETE, None) => {
            // deletecollection: every selected object is deleted; the answer lists them.
            let lo = match crate::listopts::parse(&q, false, t.resource.field_selectors.as_deref())
            {
                Ok(l) => l,
                Err(e) => return error(e),
            };
            let Ok(mut store) = app.store.lock() else {
                return respond(500, &json!({}));
            };
            let (selected, _) = lo.page(store.list(&t.resource, &t.ns, &lo.labels));
            let mut items = Vec::new();
            for o in selected {
                let (name, ns) = (
                    crate::store::meta(&o, "name"),
                    crate::store::meta(&o, "namespace"),
                );
                if store.delete(&t.resource, &ns, &name, dry_run, None).is_ok() {
                    let mut o = o;
                    if let Some(m) = o.as_object_mut() {
                        m.remove("apiVersion");
                        m.remove("kind");
                    }
                    items.push(o);
                }
            }
            respond(
                200,
                &json!({"kind": format!("{}List", t.resource.kind), "apiVersion": t.resource.group_version(), "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": items}),
            )
        }
        (Method::GET, Some(n)) => {
            let Ok(store) = app.store.lock() else {
                return respond(500, &json!({}));
            };
            match store.get(&t.resource, &t.ns, n) {
                Ok(o) => respond(200, &o),
                Err(e) => error(e),
            }
        }
        (Method::POST, None) => {
            let b = match parse_body(&body) {
                Ok(b) => b,
                Err(e) => return error(e),
            };
            if let Err(e) = body_matches(&t, &b, None, false) {
                return error(e);
            }
            let ns = if t.ns.is_empty() {
                b.pointer("/metadata/namespace")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string()
            } else {
                t.ns.clone()
            };
            let mut b = b;
            let mut name = crate::store::meta(&b, "name");
            let prefix = b
                .pointer("/metadata/generateName")
                .and_then(Json::as_str)
                .unwrap_or("");
            if name.is_empty() && !prefix.is_empty() {
                name = generate_name(prefix);
                b["metadata"]["name"] = json!(name);
            }
            if name.is_empty() {
                return error(ApiError { code: 422, reason: "Invalid", message: format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", t.resource.kind), details: Json::Null });
            }
            let Ok(mut store) = app.store.lock() else {
                return respond(500, &json!({}));
            };
            match store.write(&t.resource, &ns, &name, Write::Create, b, &opts) {
                Ok(w) => respond_warning(201, &w.object, [warnings, w.warnings].concat()),
                Err(e) => error(e),
            }
        }
        (Method::PUT, Some(n)) | (Method::PATCH, Some(n)) => {
            let mut b = match parse_body(&body) {
                Ok(b) => b,
                Err(e) => return error(e),
            };
            let apply = content_type.starts_with("application/apply-patch");
            if apply {
                apply_name_from_live(&app, &t, n, &mut b);
            }
            let full = method == Method::PUT || apply;
            if full {
                if let Err(e) = body_matches(
                    &t,
                    &b,
                    Some(n),
                    content_type.starts_with("application/apply-patch"),
                ) {
                    return error(e);
                }
            }
            let how = match (method.as_str(), content_type.as_str()) {
                ("PUT", _) => Write::Replace,
                (_, "application/apply-patch+yaml") | (_, "application/apply-patch+json") => {
                    if !q.contains_key("fieldManager") {
                        return error(patch_options_invalid(
                            "fieldManager",
                            "FieldValueRequired",
                            "Required value: is required for apply patch",
                        ));
                    }
                    Write::Apply {
                        force: q.get("force").is_some_and(|f| f == "true"),
                    }
                }
                _ if q.contains_key("force") => {
                    return error(patch_options_invalid(
                        "force",
                        "FieldValueForbidden",
                        "Forbidden: may not be specified for non-apply patch",
                    ));
                }
                (_, "application/json-patch+json") => Write::JsonPatch,
                (_, "application/merge-patch+json") => Write::MergePatch,
                (_, "application/strategic-merge-patch+json") => Write::StrategicMergePatch,
                _ => {
                    return respond(
                        415,
                        &ApiError {
                            code: 415,
                            reason: "UnsupportedMediaType",
                            message: "415: Unsupported Media Type".into(),
                            details: json!({}),
                        }
                        .body(),
                    )
                }
            };
            let Ok(mut store) = app.store.lock() else {
                return respond(500, &json!({}));
            };
            match store.write(&t.resource, &t.ns, n, how, b, &opts) {
                Ok(w) => respond_warning(
                    if w.created { 201 } else { 200 },
                    &w.object,
                    [warnings, w.warnings].concat(),
                ),
                Err(e) => error(e),
            }
        }
        (Method::DELETE, Some(n)) => {
            let b = parse_body(&body).unwrap_or(Json::Null);
            let policy = q.get("propagationPolicy").cloned().or_else(|| {
                b.get("propagationPolicy")
                    .and_then(Json::as_str)
                    .map(str::to_string)
            });
            let Ok(mut store) = app.store.lock() else {
                return respond(500, &json!({}));
            };
            // DeleteOptions.preconditions, checked against the stored object (concurrency.rs).
            if let (Some(pre), Some(obj)) = (
                b.get("preconditions").filter(|p| p.is_object()),
                store.stored(&t.resource, &t.ns, n),
            ) {
                if let Err(e) =
                    crate::concurrency::check_delete_preconditions(&t.resource, &t.ns, n, pre, obj)
                {
                    return error(e);
                }
            }
            match store.delete(&t.resource, &t.ns, n, dry_run, policy.as_deref()) {
                Ok(o) => {
                    if t.resource.kind == "CustomResourceDefinition" && !dry_run {
                        // The CRD finalizer works after the answer, as kube-apiserver's does.
                        let store = app.store.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            if let Ok(mut s) = store.lock() {
                                s.finish_crd_deletions();
                            }
                        });
                    }
                    respond(200, &o)
                }
                Err(e) => error(e),
            }
        }
        _ => respond(
            405,
            &ApiError {
                code: 405,
                reason: "MethodNotAllowed",
                message: "the server does not allow this method on the requested resource".into(),
                details: json!({}),
            }
            .body(),
        ),
    }
}

/// Watches a resource (`?watch=1`), as kube-apiserver's watch cache serves it
/// (`k8s.io/apiserver/pkg/storage/cacher`): with no `resourceVersion` or `0`, synthetic
/// `ADDED` events for the objects that exist, then changes; from a past resourceVersion, the
/// changes since (from the history), then new ones — or one `ERROR` event (410 `Expired`)
/// when that history is gone. With a label or field selector, a change that moves an object
/// into the selection is `ADDED` and one that moves it out is `DELETED` (the previous object
/// with the change's resourceVersion; cacher.go `convertToWatchEvent`).
///
/// `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan`, listopts.rs) is a
/// streaming list: the selected objects as `ADDED` events in key order, then — with
/// `allowWatchBookmarks=true` — a `BOOKMARK` annotated `k8s.io/initial-events-end: "true"`
/// at the store's current resourceVersion, then changes. With `allowWatchBookmarks=true`,
/// `BOOKMARK` events carry only kind, apiVersion and `metadata.resourceVersion`.
async fn watch(app: App, t: Target, q: HashMap<String, String>) -> Response {
    let lo = match crate::listopts::parse(&q, true, t.resource.field_selectors.as_deref()) {
        Ok(l) => l,
        Err(e) => return error(e),
    };
    let (group, plural) = crate::events::storage_resource(&t.resource.group, &t.resource.plural);
    let (group, plural, ns) = (group.to_string(), plural.to_string(), t.ns.clone());
    let watched = t.resource.clone();
    let selects = move |o: &Json| -> bool {
        let ons = o
            .pointer("/metadata/namespace")
            .and_then(Json::as_str)
            .unwrap_or("");
        if !ns.is_empty() && ons != ns {
            return false;
        }
        lo.fields_match(o)
            && lo
                .labels
                .as_ref()
                .is_none_or(|s| s.matches(&crate::store::labels(o)))
    };
    let selects_now = selects.clone();
    let translate = move |ev: &crate::store::Event| -> Option<(&'static str, Json)> {
        let selects = &selects_now;
        if ev.resource != (group.clone(), plural.clone()) {
            return None;
        }
        let object = crate::events::served_as(&ev.object, &watched);
        let prev = ev
            .prev
            .as_ref()
            .map(|p| crate::events::served_as(p, &watched));
        let now = selects(&object);
        match (ev.kind, now, prev.as_deref().map(selects)) {
            ("MODIFIED", true, Some(false)) => Some(("ADDED", object.into_owned())),
            ("MODIFIED", false, Some(true)) => {
                let mut gone = prev.map(|p| p.into_owned()).unwrap_or(Json::Null);
                gone["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
                Some(("DELETED", gone))
            }
            (kind, true, _) => Some((kind, object.into_owned())),
            _ => None,
        }
    };
    let from = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0");
    let flag = |k: &str| q.get(k).map(String::as_str);
    let bookmarks = matches!(flag("allowWatchBookmarks"), Some("true" | "1"));
    // A streaming list: asked for, or defaulted for a bookmark-allowing watch from "" or "0"
    // (apimachinery internalversion `SetListOptionsDefaults`, the WatchList feature).
    let streaming = matches!(flag("sendInitialEvents"), Some("true" | "1"))
        || (bookmarks
            && from.is_none()
            && !q.contains_key("sendInitialEvents")
            && !q.contains_key("resourceVersionMatch"));
    let (kind, api_version) = (t.resource.kind.clone(), t.resource.group_version());
    let bookmark = move |rv: u64, end: bool| -> String {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        format!(
            "{}\n",
            json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}})
        )
    };
    let resource = {
        let (g, p) = crate::events::storage_resource(&t.resource.group, &t.resource.plural);
        (g.to_string(), p.to_string())
    };
    let (initial, mut rx, mut type_rv, watch_rv, end_bookmark) = {
        let Ok(store) = app.store.lock() else {
            return respond(500, &json!({}));
        };
        let rx = store.events.subscribe();
        // The resource type's latest resourceVersion, as the watch cache knows it.
        let type_rv = store
            .history
            .iter()
            .filter(|e| e.resource == resource)
            .map(|e| e.rv)
            .max()
            .unwrap_or(0);
        let from_rv = from.and_then(|v| v.parse::<u64>().ok());
        let watch_rv = from_rv.unwrap_or_else(|| store.resource_version());
        let end_bookmark = (streaming && bookmarks).then(|| store.resource_version());
        let initial: Vec<(&'static str, Json)> = match from.map(|v| v.parse::<u64>()) {
            _ if streaming => store
                .list(&t.resource, &t.ns, &None)
                .into_iter()
                .filter(|o| selects(o))
                .map(|o| ("ADDED", o))
                .collect(),
            None => store
                .list(&t.resource, &t.ns, &None)
                .into_iter()
                .filter(|o| selects(o))
                .map(|o| ("ADDED", o))
                .collect(),
            Some(Ok(rv)) if rv >= store.history_floor() => store
                .history
                .iter()
                .filter(|e| e.rv > rv)
                .filter_map(&translate)
                .collect(),
            Some(Ok(rv)) => vec![(
                "ERROR",
                ApiError {
                    code: 410,
                    reason: "Expired",
                    message: format!(
                        "too old resource version: {rv} ({})",
                        store.history_floor() + 1
                    ),
                    details: Json::Null,
                }
                .body(),
            )],
            Some(Err(_)) => {
                return error(ApiError::bad_request(format!(
                    "invalid resource version: {}",
                    from.map_or("", |v| v.as_str())
                )))
            }
        };
        (initial, rx, type_rv, watch_rv, end_bookmark)
    };
    let expired = initial.first().is_some_and(|(k, _)| *k == "ERROR");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(30);
    let (tx, body_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        for (kind, o) in initial {
            let line = format!("{}\n", json!({"type": kind, "object": o}));
            if tx.send(Ok(Bytes::from(line))).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        if let Some(rv) = end_bookmark {
            if tx.send(Ok(Bytes::from(bookmark(rv, true)))).await.is_err() {
                return;
            }
        }
        let start = tokio::time::Instant::now();
        let deadline = start + std::time::Duration::from_secs(timeout);
        // Bookmarks (cacher.go `nextBookmarkTime`): 2 s before the deadline, or every
        // minute, whichever is sooner; one is sent only when the resource type has moved
        // past the watch's resourceVersion, and carries the type's latest one.
        let next_bookmark = |now: tokio::time::Instant| {
            let pre_timeout = deadline
                .checked_sub(std::time::Duration::from_secs(2))
                .unwrap_or(start);
            let at = (now + std::time::Duration::from_secs(60)).min(pre_timeout);
            (bookmarks && at > now).then_some(at)
        };
        let mut due = next_bookmark(start);
        loop {
            let ev = tokio::select! {
                ev = tokio::time::timeout_at(deadline, rx.recv()) => ev,
                _ = tokio::time::sleep_until(due.unwrap_or(deadline)), if due.is_some() => {
                    let now = tokio::time::Instant::now();
                    due = next_bookmark(now);
                    if type_rv > watch_rv && tx.send(Ok(Bytes::from(bookmark(type_rv, false)))).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Ok(Ok(ev)) = ev else { return };
            if ev.resource == resource {
                type_rv = type_rv.max(ev.rv);
            }
            let Some((kind, object)) = translate(&ev) else {
                continue;
            };
            let line = format!("{}\n", json!({"type": kind, "object": object}));
            if tx.send(Ok(Bytes::from(line))).await.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream_from(body_rx);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A 422 about the request's `PatchOptions` (k8s.io/apimachinery
/// `pkg/apis/meta/v1/validation` ValidatePatchOptions): `field` is the option.
fn patch_options_invalid(field: &str, reason: &str, message: &str) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {message}"),
        details: json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": reason, "message": message, "field": field}]}),
    }
}

/// Checks a full body (create, update, apply) against the request's URL, as the real server's
/// handlers do (k8s.io/apiserver `pkg/endpoints/handlers`: create.go, update.go, patch.go):
/// an apply body must name the URL's kind (`invalid object type: group/version, Kind=kind`),
/// and a body's name and namespace, when given, must be the URL's.
/// A name from `generateName`: the prefix (cut to 58 characters) and five random characters
/// from apimachinery's alphabet (`pkg/util/rand`, `String`; `names.SimpleNameGenerator`).
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos
        ^ COUNTER
            .fetch_add(0x9e37_79b9_7f4a_7c15, std::sync::atomic::Ordering::Relaxed)
            .rotate_left(17)
        | 1;
    let mut out: String = prefix.chars().take(58).collect();
    for _ in 0..5 {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        out.push(ALPHABET[(r >> 32) as usize % ALPHABET.len()] as char);
    }
    out
}

/// An apply body without `metadata.name` to an object that exists takes the live object's
/// name: kube-apiserver checks the name of the *result* of applying the patch to the live
/// object (`checkName` after `applyPatcher.applyPatchToCurrentObject`,
/// `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`), so only an apply that
/// would create the object is refused for a missing name.
fn apply_name_from_live(app: &App, t: &Target, name: &str, b: &mut Json) {
    let named = b
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .is_some_and(|n| !n.is_empty());
    if named || !b.is_object() {
        return;
    }
    let exists = app
        .store
        .lock()
        .is_ok_and(|s| s.get(&t.resource, &t.ns, name).is_ok());
    if exists {
        let meta = &mut b["metadata"];
        if !meta.is_object() {
            *meta = json!({});
        }
        meta["name"] = json!(name);
    }
}

fn body_matches(t: &Target, b: &Json, url_name: Option<&str>, apply: bool) -> Result<(), ApiError> {
    let meta = |k: &str| b.pointer(&format!("/metadata/{k}")).and_then(Json::as_str);
    if apply {
        let av = b["apiVersion"].as_str().unwrap_or("");
        let kind = b["kind"].as_str().unwrap_or("");
        if av != t.resource.group_version() || kind != t.resource.kind {
            let (g, v) = av.rsplit_once('/').unwrap_or(("", av));
            return Err(ApiError::bad_request(format!(
                "invalid object type: {g}/{v}, Kind={kind}"
            )));
        }
    }
    if let (Some(u), true) = (url_name, apply && meta("name").is_none_or(str::is_empty)) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({u} based on URL) was undeterminable: name must be provided"
        )));
    }
    if let (Some(u), Some(n)) = (url_name, meta("name")) {
        if u != n {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({u})"
            )));
        }
    }
    if let Some(ns) = meta("namespace").filter(|ns| !ns.is_empty()) {
        if !t.ns.is_empty() && ns != t.ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
    }
    Ok(())
}
