//! The proxy path over loopback: HTTP/2 requests are each authenticated on their own, upstream failures and
//! body limits answer with their gate, the rate limit, Authorization forwarding, and the admin endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

struct World {
    gw: Gateway,
    a: Upstream,
    key: TestKey,
}

/// A listener that accepts connections and never answers.
async fn silent_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// An address nothing listens on.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

async fn world(extra: &str) -> World {
    let key = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let a = Upstream::start("A").await;
    let routes = format!(
        "routes:\n  - {{org: org_a, upstream: '{}', tenant: acme}}\n  - {{org: org_slow, upstream: '{}', tenant: slow}}\n  - {{org: org_dead, upstream: '{}', tenant: dead}}\n",
        a.addr,
        silent_upstream().await,
        closed_port().await
    );
    let config = format!(
        r#"
listen: 127.0.0.1:0
admin: 127.0.0.1:0
issuers:
  - issuer: {ISS_A}
    algorithms: [RS256]
    jwks_file: "{{dir}}/a.json"
routes:
  source: file
  file: "{{dir}}/routes.yaml"
proxy:
  upstream_timeout_ms: 300
  max_body_bytes: 1024
{extra}
"#
    );
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("a.json", jwks)]).await;
    World { gw, a, key }
}

#[tokio::test]
async fn every_http2_stream_is_authenticated_on_its_own() {
    let w = world("").await;
    let token = w.key.sign(&claims_a("org_a"));
    let tcp = TcpStream::connect(w.gw.running.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let send = |auth: Option<String>, org_header: &'static str| {
        let mut b = Request::get("http://gateway.test/h2").header("x-org-id", org_header);
        if let Some(auth) = auth {
            b = b.header("authorization", auth);
        }
        b.body(Full::new(Bytes::new())).unwrap()
    };
    let ok = sender
        .send_request(send(Some(format!("Bearer {token}")), "org_b"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.into_body().collect().await.unwrap().to_bytes(), "A");
    let seen = w.a.last();
    assert_eq!(seen.all("x-bulkhead-org"), vec!["org_a"]);
    assert!(seen.all("x-org-id").is_empty());

    // Same connection, no token: the earlier stream's identity is not inherited.
    let denied = sender.send_request(send(None, "org_a")).await.unwrap();
    assert_eq!(denied.status(), 401);
    let body = denied.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["gate"].as_str(), v["reason"].as_str()),
        (Some("token"), Some("missing"))
    );
    assert_eq!(w.a.count(), 1);
}

#[tokio::test]
async fn an_http2_body_shorter_than_its_content_length_never_completes_upstream() {
    let w = world("").await;
    let token = w.key.sign(&claims_a("org_a"));
    let tcp = TcpStream::connect(w.gw.running.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://gateway.test/cl")
        .header("authorization", format!("Bearer {token}"))
        .header("content-length", "10")
        .body(Full::new(Bytes::from_static(b"short")))
        .unwrap();
    let err = sender.send_request(req).await.expect_err("the stream is reset");
    assert!(format!("{err:?}").contains("PROTOCOL_ERROR"), "{err:?}");
    // The gateway's h2 layer resets the stream and drops the request's future. The head may already have
    // gone to the stack, whose request then never completes; the audit line says the client's request was cut.
    let line = w.gw.audit_line_after(0).await;
    assert_eq!(
        (line["gate"].as_str(), line["reason"].as_str()),
        (Some("request"), Some("client_cancelled")),
        "{line}"
    );
    assert_eq!(line["status"], 499);
    assert_eq!(line["org"], "org_a");
    assert_eq!(w.a.complete(), 0, "no complete request reached the stack");
}

#[tokio::test]
async fn upstream_failures_and_body_limits_answer_with_their_gate() {
    let w = world("").await;
    let slow = w.key.sign(&claims_a("org_slow"));
    let answer = w.gw.get_with(&slow, "/", &[]).await;
    assert_eq!(
        (answer.status, answer.denial()),
        (504, ("upstream".into(), "timeout".into()))
    );
    let line = w.gw.last_audit();
    assert_eq!(
        (line["tenant"].as_str(), line["status"].as_u64()),
        (Some("slow"), Some(504))
    );

    let dead = w.key.sign(&claims_a("org_dead"));
    let answer = w.gw.get_with(&dead, "/", &[]).await;
    assert_eq!(
        (answer.status, answer.denial()),
        (502, ("upstream".into(), "connect_failed".into()))
    );
    assert!(!answer.body.contains("127.0.0.1"), "no internals in the body");

    let token = w.key.sign(&claims_a("org_a"));
    let auth = format!("Bearer {token}");
    let declared = request("POST", "/", &[("Authorization", &auth)], &"x".repeat(2000));
    let answer = Answer::parse(&w.gw.raw(declared.as_bytes()).await);
    assert_eq!(
        (answer.status, answer.denial()),
        (413, ("request".into(), "body_too_large".into()))
    );
    let chunk = "x".repeat(2000);
    let streamed = format!(
        "POST / HTTP/1.1\r\nHost: g\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let answer = Answer::parse(&w.gw.raw(streamed.as_bytes()).await);
    assert_eq!(
        (answer.status, answer.denial()),
        (413, ("request".into(), "body_too_large".into()))
    );
    let small = request("POST", "/", &[("Authorization", &auth)], "hello");
    assert_eq!(Answer::parse(&w.gw.raw(small.as_bytes()).await).status, 200);
}

#[tokio::test]
async fn per_org_rate_limit_and_authorization_forwarding() {
    let w = world("  forward_authorization: true\nrate_limit: {per_second: 0.001, burst: 2}").await;
    let token = w.key.sign(&claims_a("org_a"));
    assert_eq!(w.gw.get_with(&token, "/", &[]).await.status, 200);
    assert_eq!(w.a.last().all("authorization"), vec![format!("Bearer {token}")]);
    assert_eq!(w.gw.get_with(&token, "/", &[]).await.status, 200);
    let answer = w.gw.get_with(&token, "/", &[]).await;
    assert_eq!(
        (answer.status, answer.denial()),
        (429, ("rate_limit".into(), "org_rate_limited".into()))
    );
    assert_eq!(w.a.count(), 2);
}

#[tokio::test]
async fn admin_endpoints_report_health_and_metrics_without_org_labels() {
    let w = world("").await;
    let admin = w.gw.running.admin_addr;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(
        Answer::parse(&raw(admin, get("/livez").as_bytes()).await).status,
        200
    );
    assert_eq!(
        Answer::parse(&raw(admin, get("/readyz").as_bytes()).await).status,
        200
    );
    let token = w.key.sign(&claims_a("org_a"));
    assert_eq!(w.gw.get_with(&token, "/", &[]).await.status, 200);
    assert_eq!(w.gw.get("/", &[]).await.status, 401);
    let metrics = Answer::parse(&raw(admin, get("/metrics").as_bytes()).await);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains(r#"bulkhead_gateway_decisions_total{decision="deny",gate="token",reason="missing"} 1"#),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains(r#"bulkhead_gateway_decisions_total{decision="allow",gate="none",reason="ok"} 1"#)
    );
    assert!(!metrics.body.contains("org_a"), "no per-org labels");
    assert_eq!(
        Answer::parse(&raw(admin, get("/nope").as_bytes()).await).status,
        404
    );
}
