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
use serde_json::{Value, json};
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
    let config = config_a(&format!(
        r#"routes:
  source: file
  file: "{{dir}}/routes.yaml"
proxy:
  upstream_timeout_ms: 300
  max_body_bytes: 1024
{extra}
"#
    ));
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("a.json", jwks)]).await;
    World { gw, a, key }
}

/// An HTTP/2 connection to `addr` (prior knowledge), its connection task running.
async fn h2_client(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn every_http2_stream_is_authenticated_on_its_own() {
    let w = world("").await;
    let token = w.key.sign(&claims_a("org_a"));
    let mut sender = h2_client(w.gw.running.addr).await;
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
    let mut sender = h2_client(w.gw.running.addr).await;
    let req = Request::post("http://gateway.test/cl")
        .header("authorization", format!("Bearer {token}"))
        .header("content-length", "10")
        .body(Full::new(Bytes::from_static(b"short")))
        .unwrap();
    let err = sender.send_request(req).await.expect_err("the stream is reset");
    assert!(format!("{err:?}").contains("PROTOCOL_ERROR"), "{err:?}");
    // The gateway's h2 layer resets the stream and drops the request's future. The head may already have
    // gone to the stack, whose request then never completes; the audit line says the client's request was cut,
    // and the reset itself has a line of its own.
    let lines = [w.gw.audit_line_after(0).await, w.gw.audit_line_after(1).await];
    let reset = lines
        .iter()
        .find(|l| l["event"] == "protocol_error")
        .expect("the reset is audited");
    assert_eq!(
        (&reset["frame"], &reset["stream"]),
        (&json!("rst_stream"), &json!(1)),
        "{reset}"
    );
    let line = lines
        .iter()
        .find(|l| l["event"] == "request")
        .expect("the request is audited");
    assert_eq!(
        (line["gate"].as_str(), line["reason"].as_str()),
        (Some("request"), Some("client_cancelled")),
        "{line}"
    );
    assert_eq!(line["status"], 499);
    assert_eq!(line["org"], "org_a");
    assert_eq!(w.a.complete(), 0, "no complete request reached the stack");
}

/// HPACK integer with an `n`-bit prefix whose high bits are `flags`.
fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name, no Huffman coding (RFC 7541 §6.2.2).
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Sends one raw HTTP/2 GET with `extra` header bytes and returns the first frame about stream 1 (or GOAWAY):
/// (type, first payload byte).
async fn raw_h2_get(addr: std::net::SocketAddr, token: &str, extra: (&[u8], &[u8])) -> (u8, Option<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut block = vec![0x82, 0x86, 0x84]; // :method GET, :scheme http, :path /
    block.push(0x01); // :authority, literal without indexing, indexed name 1
    hpack_int(&mut block, 0, 7, 1);
    block.push(b'g');
    hpack_literal(&mut block, b"authorization", format!("Bearer {token}").as_bytes());
    hpack_literal(&mut block, extra.0, extra.1);
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    bytes.extend(frame(0x1, 0x5, 1, &block)); // HEADERS, END_STREAM | END_HEADERS
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    loop {
        let mut head = [0u8; 9];
        if stream.read_exact(&mut head).await.is_err() {
            return (0xff, None); // closed
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.unwrap();
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if head[3] == 0x4 && head[4] & 0x1 == 0 {
            stream.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap(); // SETTINGS ACK
        }
        if (id == 1 && matches!(head[3], 0x1 | 0x3)) || head[3] == 0x7 {
            return (head[3], payload.first().copied());
        }
    }
}

#[tokio::test]
async fn a_crlf_in_an_http2_header_value_never_reaches_the_stack() {
    let w = world("").await;
    let token = w.key.sign(&claims_a("org_a"));
    // Control: the same raw request with a clean header is answered 200 (HEADERS, indexed :status 200 = 0x88).
    let ok = raw_h2_get(w.gw.running.addr, &token, (b"x-note", b"fine")).await;
    assert_eq!(ok, (0x1, Some(0x88)), "raw h2 control request");
    assert_eq!(w.a.count(), 1);
    for value in [&b"a\r\nx-org-id: org_b"[..], b"a\nb", b"a\0b"] {
        let (kind, _) = raw_h2_get(w.gw.running.addr, &token, (b"x-note", value)).await;
        assert!(
            matches!(kind, 0x3 | 0x7 | 0xff),
            "stream reset, GOAWAY or close, not an answer: {kind}"
        );
    }
    assert_eq!(
        w.a.count(),
        1,
        "no request with a CR, LF or NUL in a header reached the stack"
    );
}

#[tokio::test]
async fn http2_streams_the_protocol_layer_refuses_are_audited_as_their_own_event() {
    let w = world("").await;
    let token = w.key.sign(&claims_a("org_a"));
    for (case, name, value) in [
        ("uppercase header name", &b"X-Note"[..], &b"v"[..]),
        ("connection-specific header", b"connection", b"keep-alive"),
        ("transfer-encoding", b"transfer-encoding", b"chunked"),
    ] {
        let before = w.gw.audit_count();
        let (kind, _) = raw_h2_get(w.gw.running.addr, &token, (name, value)).await;
        assert!(
            matches!(kind, 0x3 | 0x7),
            "{case}: refused by the HTTP/2 layer, got frame {kind}"
        );
        let line = w.gw.audit_line_after(before).await;
        assert_eq!(line["event"], "protocol_error", "{case}: {line}");
        assert_eq!(
            (&line["decision"], &line["protocol"], &line["reason"]),
            (&json!("deny"), &json!("http2"), &json!("protocol_error")),
            "{case}: {line}"
        );
        let frame = if kind == 0x3 { "rst_stream" } else { "goaway" };
        assert_eq!(line["frame"], frame, "{case}: {line}");
        if kind == 0x3 {
            assert_eq!(line["stream"], 1, "{case}: {line}");
        }
        assert!(line["time"].is_string(), "{case}: {line}");
    }
    assert_eq!(w.a.count(), 0, "no refused stream reached the stack");
    // A clean request on the same kind of connection leaves only its decision line.
    let before = w.gw.audit_count();
    let ok = raw_h2_get(w.gw.running.addr, &token, (b"x-note", b"fine")).await;
    assert_eq!(ok, (0x1, Some(0x88)));
    let line = w.gw.audit_line_after(before).await;
    assert_eq!(
        (&line["event"], &line["status"]),
        (&json!("request"), &json!(200))
    );
    let metrics = reqwest_free_get(w.gw.running.admin_addr, "/metrics").await;
    assert!(
        metrics.contains(
            r#"bulkhead_gateway_http2_refusals_total{frame="rst_stream",reason="protocol_error"} "#
        ),
        "{metrics}"
    );
}

/// The body of a plain HTTP/1.1 GET to `addr`.
async fn reqwest_free_get(addr: std::net::SocketAddr, path: &str) -> String {
    raw(
        addr,
        request("GET", path, &[("Connection", "close")], "").as_bytes(),
    )
    .await
}

/// A stack that answers with the gateway's identity headers of its own (echoed or forged).
async fn echoing_identity_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Bulkhead-Org: org_a\r\n\
                    x-bulkhead-tenant: acme\r\nx-bulkhead-customer: one\r\nx-bulkhead-subject: user_1\r\n\
                    x-bulkhead-request-id: forged\r\nX_Bulkhead_Impersonator: admin\r\nX-App: kept\r\n\r\nok";
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn identity_headers_a_stack_sets_never_reach_the_client() {
    let key = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let routes = format!(
        "routes:\n  - {{org: org_a, upstream: '{}', tenant: acme}}\n",
        echoing_identity_upstream().await
    );
    let config = config_a(
        r#"routes:
  source: file
  file: "{dir}/routes.yaml"
"#,
    );
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("a.json", jwks)]).await;
    let token = key.sign(&claims_a("org_a"));
    let answer = gw.get_with(&token, "/", &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-app"), vec!["kept"]);
    for name in [
        "x-bulkhead-org",
        "x-bulkhead-tenant",
        "x-bulkhead-customer",
        "x-bulkhead-subject",
        "x_bulkhead_impersonator",
    ] {
        assert!(
            answer.header(name).is_empty(),
            "{name} reached the client: {answer:?}"
        );
    }
    let ids = answer.header("x-bulkhead-request-id");
    assert_eq!(ids.len(), 1, "{answer:?}");
    assert_ne!(ids[0], "forged");
    assert_eq!(gw.last_audit()["request_id"], ids[0].as_str());
}

/// A stack that answers every request with a head and the first chunk of a chunked body, then stalls.
async fn stalling_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            held.push(stream);
        }
    });
    addr
}

#[tokio::test]
async fn a_stack_that_stalls_mid_body_is_cut_after_the_idle_timeout() {
    let key = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let routes = format!(
        "routes:\n  - {{org: org_a, upstream: '{}', tenant: acme}}\n",
        stalling_upstream().await
    );
    let config = config_a(
        "routes:\n  source: file\n  file: \"{dir}/routes.yaml\"\nproxy:\n  upstream_body_idle_ms: 300\n",
    );
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("a.json", jwks)]).await;
    let auth = format!("Bearer {}", key.sign(&claims_a("org_a")));
    // Without the idle timeout this read would never end; the bound only turns a hang into a failure.
    let text = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        gw.raw(request("GET", "/", &[("Authorization", &auth)], "").as_bytes()),
    )
    .await
    .expect("the gateway cut the stalled body");
    let answer = Answer::parse(&text);
    assert_eq!(answer.status, 200, "the head had arrived: {text}");
    assert!(answer.body.contains("hello"), "{text}");
    assert!(
        !answer.body.contains("0\r\n\r\n"),
        "the body must not look complete: {text}"
    );
    assert_eq!(gw.last_audit()["reason"], "ok");
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
async fn a_head_that_does_not_arrive_in_time_is_cut_and_audited() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world("  header_read_timeout_ms: 200").await;
    let mut stream = TcpStream::connect(w.gw.running.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: g\r\nX-Slow: ")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await; // returns once the gateway closes the connection
    assert!(
        answer.is_empty(),
        "hyper closes without an answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let line = w.gw.audit_line_after(0).await;
    assert_eq!(
        (line["gate"].as_str(), line["reason"].as_str()),
        (Some("request"), Some("header_timeout"))
    );
    assert_eq!(line["status"], 408, "recorded as Request Timeout");
    assert_eq!(w.a.count(), 0);
}

/// A stack that holds each request until released: (address, one permit per arrived request, release).
async fn held_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<tokio::sync::Semaphore>,
    std::sync::Arc<tokio::sync::Notify>,
) {
    use std::sync::Arc;
    use tokio::sync::{Notify, Semaphore};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let arrived = Arc::new(Semaphore::new(0));
    let release = Arc::new(Notify::new());
    let (a, r) = (arrived.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (a, r) = (a.clone(), r.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let (a, r) = (a.clone(), r.clone());
                    async move {
                        a.add_permits(1);
                        r.notified().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            "late",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (upstream, arrived, release)
}

#[tokio::test]
async fn over_max_in_flight_requests_are_shed_with_503() {
    let (upstream, arrived, release) = held_upstream().await;
    let key = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let config =
        config_a("routes:\n  source: file\n  file: \"{dir}/routes.yaml\"\nproxy:\n  max_in_flight: 1\n");
    let routes = format!("routes:\n  - {{org: org_a, upstream: '{upstream}', tenant: acme}}\n");
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("a.json", jwks)]).await;
    let addr = gw.running.addr;
    let auth = format!("Bearer {}", key.sign(&claims_a("org_a")));
    let first = {
        let auth = auth.clone();
        tokio::spawn(async move {
            raw(
                addr,
                request("GET", "/held", &[("Authorization", &auth)], "").as_bytes(),
            )
            .await
        })
    };
    arrived.acquire().await.unwrap().forget(); // the one permitted request is at the stack
    let shed = gw.get_with(&auth["Bearer ".len()..], "/second", &[]).await;
    assert_eq!(
        (shed.status, shed.denial()),
        (503, ("request".into(), "overloaded".into()))
    );
    let line = gw.last_audit();
    assert_eq!(
        (line["reason"].as_str(), line["path"].as_str()),
        (Some("overloaded"), Some("/second"))
    );
    release.notify_one();
    assert_eq!(Answer::parse(&first.await.unwrap()).status, 200);
    // The permit is back: the next request goes through (and is held, then released).
    let third = tokio::spawn(async move {
        raw(
            addr,
            request("GET", "/third", &[("Authorization", &auth)], "").as_bytes(),
        )
        .await
    });
    arrived.acquire().await.unwrap().forget();
    release.notify_one();
    assert_eq!(Answer::parse(&third.await.unwrap()).status, 200);
    gw.running.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let (upstream, arrived, release) = held_upstream().await;
    let key = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let config = config_a("routes:\n  source: file\n  file: \"{dir}/routes.yaml\"\n");
    let routes = format!("routes:\n  - {{org: org_a, upstream: '{upstream}', tenant: acme}}\n");
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("a.json", jwks)]).await;
    let addr = gw.running.addr;
    let token = key.sign(&claims_a("org_a"));
    let in_flight = tokio::spawn(async move {
        raw(
            addr,
            request("GET", "/", &[("Authorization", &format!("Bearer {token}"))], "").as_bytes(),
        )
        .await
    });
    arrived.acquire().await.unwrap().forget(); // the request is at the stack
    let Gateway { running, audit, .. } = gw;
    let shutdown = tokio::spawn(running.shutdown());
    // New connections are refused once the listener is closed.
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener still accepts after shutdown began");
    release.notify_one();
    let answer = Answer::parse(&in_flight.await.unwrap());
    assert_eq!((answer.status, answer.body.as_str()), (200, "late"));
    shutdown.await.unwrap();
    assert_eq!(audit.lines().len(), 1);
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
async fn cors_preflights_are_answered_by_the_gateway_and_never_reach_a_stack() {
    const APP: &str = "https://app.example.com";
    let w = world("cors: {allowed_origins: ['https://app.example.com']}").await;
    let options = |origin: &'static str, method: &'static str, headers: &'static str| {
        let gw = &w.gw;
        async move {
            let mut h = vec![("Origin", origin), ("Access-Control-Request-Method", method)];
            if !headers.is_empty() {
                h.push(("Access-Control-Request-Headers", headers));
            }
            Answer::parse(&gw.raw(request("OPTIONS", "/api", &h, "").as_bytes()).await)
        }
    };

    let ok = options(APP, "POST", "authorization, content-type").await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), vec![APP]);
    assert_eq!(
        ok.header("access-control-allow-headers"),
        vec!["authorization, content-type"]
    );
    assert_eq!(ok.header("vary"), vec!["origin"]);
    let line = w.gw.last_audit();
    assert_eq!(
        (&line["decision"], &line["gate"], &line["reason"]),
        (&json!("allow"), &json!("cors"), &json!("preflight"))
    );
    assert_eq!(line["tenant"], Value::Null);

    for (origin, method, headers, reason) in [
        ("https://evil.example", "GET", "", "origin_not_allowed"),
        (APP, "CONNECT", "", "method_not_allowed"),
        (APP, "GET", "x-org-id", "headers_not_allowed"),
    ] {
        let refused = options(origin, method, headers).await;
        assert_eq!(
            (refused.status, refused.denial()),
            (403, ("cors".into(), reason.into())),
            "{reason}"
        );
        assert!(
            refused.header("access-control-allow-origin").is_empty(),
            "{reason}"
        );
        assert_eq!(w.gw.last_audit()["reason"], reason);
    }
    assert_eq!(w.a.count(), 0, "no preflight reached a stack");

    // Real requests from the allowed origin: the gateway's CORS headers replace the stack's, on answers and
    // on denials alike; another origin gets none.
    let token = w.key.sign(&claims_a("org_a"));
    let answer = w.gw.get_with(&token, "/", &[("Origin", APP)]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), vec![APP]);
    assert_eq!(
        answer.header("access-control-expose-headers"),
        vec!["x-bulkhead-request-id"]
    );
    let denied = w.gw.get("/", &[("Origin", APP)]).await;
    assert_eq!(
        (denied.status, denied.denial()),
        (401, ("token".into(), "missing".into()))
    );
    assert_eq!(denied.header("access-control-allow-origin"), vec![APP]);
    let foreign =
        w.gw.get_with(&token, "/", &[("Origin", "https://evil.example")])
            .await;
    assert_eq!(foreign.status, 200);
    assert!(foreign.header("access-control-allow-origin").is_empty());
    assert_eq!(w.a.count(), 2);

    // Without a policy a preflight is just a request without a token.
    let plain = world("").await;
    let h = [("Origin", APP), ("Access-Control-Request-Method", "GET")];
    let refused = Answer::parse(&plain.gw.raw(request("OPTIONS", "/", &h, "").as_bytes()).await);
    assert_eq!(
        (refused.status, refused.denial()),
        (401, ("token".into(), "missing".into()))
    );
    assert_eq!(plain.a.count(), 0);
}

#[tokio::test]
async fn nothing_is_forwarded_while_audit_lines_cannot_be_written() {
    let w = world("").await;
    let admin = w.gw.running.admin_addr;
    let readyz = || async move {
        Answer::parse(
            &raw(
                admin,
                b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
            .await,
        )
    };
    let token = w.key.sign(&claims_a("org_a"));
    assert_eq!(w.gw.get_with(&token, "/", &[]).await.status, 200);
    assert_eq!(w.a.count(), 1);

    w.gw.audit.set_healthy(false);
    let refused = w.gw.get_with(&token, "/", &[]).await;
    assert_eq!(
        (refused.status, refused.denial()),
        (503, ("request".into(), "audit_unavailable".into()))
    );
    assert_eq!(w.a.count(), 1, "a valid token reached no stack");
    let not_ready = readyz().await;
    assert_eq!(
        (not_ready.status, not_ready.body.as_str()),
        (503, "audit output failing\n")
    );

    w.gw.audit.set_healthy(true);
    assert_eq!(w.gw.get_with(&token, "/", &[]).await.status, 200);
    assert_eq!(w.a.count(), 2);
    assert_eq!(readyz().await.status, 200);
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
