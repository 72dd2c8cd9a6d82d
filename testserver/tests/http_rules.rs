//! Rules the test server's HTTP handlers apply, over real HTTP: delete preconditions, watch
//! bookmarks, streaming lists and their `ListOptions` validation.

use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request (connection closed after it): status and body (de-chunked).
async fn request(url: &str, method: &str, path: &str, body: Option<&Json>) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let payload = body.map(Json::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: rules-test/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(payload.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (headers, rest) = text.split_once("\r\n\r\n").expect("response head");
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let chunked = headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return (status, rest.to_string());
    }
    let (mut out, mut rest) = (String::new(), rest);
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    (status, out)
}

fn lines(body: &str) -> Vec<Json> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("watch event"))
        .collect()
}

async fn server() -> kube_testserver::TestServer {
    kube_testserver::start().await.expect("test server")
}

async fn configmap(url: &str, name: &str, tier: &str) -> Json {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"tier": tier}}});
    let (code, text) = request(
        url,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(&body),
    )
    .await;
    assert_eq!(code, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_preconditions_are_checked() {
    let s = server().await;
    let cm = configmap(&s.url, "p", "x").await;
    let path = "/api/v1/namespaces/default/configmaps/p";
    let (code, text) = request(
        &s.url,
        "DELETE",
        path,
        Some(&json!({"preconditions": {"resourceVersion": "1"}})),
    )
    .await;
    assert_eq!(code, 409, "{text}");
    let status: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        format!(
            "Operation cannot be fulfilled on configmaps \"p\": StorageError: invalid object, Code: 4, Key: /registry/configmaps/default/p, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta: {}",
            cm["metadata"]["resourceVersion"].as_str().unwrap()
        )
    );
    let (code, _) = request(
        &s.url,
        "DELETE",
        path,
        Some(&json!({"preconditions": {"uid": "not-it"}})),
    )
    .await;
    assert_eq!(code, 409);
    // The object is still there; the right preconditions delete it.
    let ok = json!({"preconditions": {"uid": cm["metadata"]["uid"], "resourceVersion": cm["metadata"]["resourceVersion"]}});
    assert_eq!(request(&s.url, "GET", path, None).await.0, 200);
    assert_eq!(request(&s.url, "DELETE", path, Some(&ok)).await.0, 200);
    assert_eq!(request(&s.url, "GET", path, None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn bookmarks_come_once_the_type_moved_past_the_watch() {
    let s = server().await;
    let a = configmap(&s.url, "a", "x").await;
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (url, from) = (s.url.clone(), rv.clone());
    let watch = tokio::spawn(async move {
        request(
            &url,
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?watch=1&labelSelector=tier%3Dx&allowWatchBookmarks=true&timeoutSeconds=3&resourceVersion={from}"),
            None,
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let other = configmap(&s.url, "b", "y").await;
    let (code, body) = watch.await.unwrap();
    assert_eq!(code, 200);
    let events = lines(&body);
    assert_eq!(
        events.first(),
        Some(
            &json!({"type": "BOOKMARK", "object": {"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"resourceVersion": other["metadata"]["resourceVersion"]}}})
        ),
        "{body}"
    );
    // From the type's current resourceVersion nothing moves: no bookmark at all.
    let now = other["metadata"]["resourceVersion"].as_str().unwrap();
    let (_, idle) = request(
        &s.url,
        "GET",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=3&resourceVersion={now}"),
        None,
    )
    .await;
    assert!(lines(&idle).is_empty(), "{idle}");
    // Without allowWatchBookmarks, no bookmark either.
    let (_, plain) = request(
        &s.url,
        "GET",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=3&resourceVersion={rv}"
        ),
        None,
    )
    .await;
    let kinds: Vec<Json> = lines(&plain).iter().map(|e| e["type"].clone()).collect();
    assert_eq!(kinds, [json!("ADDED")], "{plain}");
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let s = server().await;
    configmap(&s.url, "b", "x").await;
    configmap(&s.url, "a", "x").await;
    configmap(&s.url, "c", "y").await;
    let (code, body) = request(
        &s.url,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=tier%3Dx&timeoutSeconds=1&resourceVersion=0",
        None,
    )
    .await;
    assert_eq!(code, 200);
    let events = lines(&body);
    let names: Vec<Json> = events
        .iter()
        .map(|e| e["object"]["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("a"), json!("b"), Json::Null], "{body}");
    let end = &events[2];
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"],
        json!({"k8s.io/initial-events-end": "true"})
    );
    // A reflector's watch from "0" with bookmarks is defaulted to a streaming list.
    let (_, defaulted) = request(
        &s.url,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=1",
        None,
    )
    .await;
    let last = lines(&defaulted).pop().unwrap();
    assert_eq!(
        last["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // Validation (ValidateListOptions): every error at once.
    let (code, text) = request(
        &s.url,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=Exact&resourceVersion=5",
        None,
    )
    .await;
    assert_eq!(code, 422);
    let st: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(st["details"]["causes"].as_array().map(Vec::len), Some(2));
    let (code, text) = request(
        &s.url,
        "GET",
        "/api/v1/namespaces/default/configmaps?sendInitialEvents=false",
        None,
    )
    .await;
    assert_eq!(code, 422);
    assert!(
        text.contains("sendInitialEvents is forbidden for list"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn field_selectors_follow_each_resource_s_conversion() {
    let s = server().await;
    let (code, text) = request(
        &s.url,
        "GET",
        "/api/v1/namespaces/default/secrets?fieldSelector=type%3DOpaque",
        None,
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let (code, text) = request(
        &s.url,
        "GET",
        "/api/v1/namespaces/default/secrets?fieldSelector=data%3Dx",
        None,
    )
    .await;
    assert_eq!(code, 400);
    assert!(text.contains("field label not supported: data"), "{text}");
    let (_, text) = request(
        &s.url,
        "GET",
        "/api/v1/namespaces/default/configmaps?fieldSelector=data%3Dx",
        None,
    )
    .await;
    assert!(
        text.contains(r#"\"data\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_core_events_watch_sees_events_api_writes_in_core_form() {
    let s = server().await;
    let before = configmap(&s.url, "anchor", "x").await;
    let rv = before["metadata"]["resourceVersion"].as_str().unwrap();
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000001Z", "reportingController": "example.com/c",
        "reportingInstance": "i", "action": "A", "reason": "R", "type": "Normal", "note": "hi",
        "regarding": {"kind": "ConfigMap", "namespace": "default", "name": "anchor"}});
    let (code, text) = request(
        &s.url,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        Some(&ev),
    )
    .await;
    assert_eq!(code, 201, "{text}");
    let (_, body) = request(
        &s.url,
        "GET",
        &format!("/api/v1/namespaces/default/events?watch=1&timeoutSeconds=1&resourceVersion={rv}&fieldSelector=involvedObject.name%3Danchor"),
        None,
    )
    .await;
    let events = lines(&body);
    assert_eq!(events.len(), 1, "{body}");
    let o = &events[0]["object"];
    assert_eq!(
        (&o["apiVersion"], &o["message"], &o["source"]),
        (&json!("v1"), &json!("hi"), &json!({}))
    );
}
