//! Long-lived connections through the gateway: WebSocket tunnels to the org's own stack (round trip, token
//! expiry, maximum duration, per-org limit, refused upgrades, shutdown) and streamed bodies (server-sent events)
//! passed on unbuffered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use futures::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request as WsRequest, Response as WsResponse};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket echo stack answering each text message `m` with `<name>:m` (and `bye` with a close frame of its
/// own); it records every handshake's
/// headers and counts the TCP connections it accepted.
#[derive(Clone)]
struct EchoStack {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<Head>>>,
}

/// One handshake's headers, as (name, value) pairs.
type Head = Vec<(String, String)>;

impl EchoStack {
    async fn start(name: &'static str) -> EchoStack {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stack = EchoStack {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            heads: Arc::default(),
        };
        let s = stack.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let heads = s.heads.clone();
                tokio::spawn(async move {
                    let record = |req: &WsRequest, res: WsResponse| {
                        let head = req
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                            .collect();
                        heads.lock().unwrap().push(head);
                        Ok(res)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, record).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        let answer = match msg {
                            Message::Text(t) if t.as_str() == "bye" => Message::Close(None),
                            Message::Text(t) => Message::text(format!("{name}:{t}")),
                            Message::Binary(b) => Message::Binary(b),
                            _ => continue,
                        };
                        if ws.send(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        stack
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn last_head(&self, name: &str) -> Vec<String> {
        let heads = self.heads.lock().unwrap();
        heads
            .last()
            .unwrap()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

struct World {
    gw: Gateway,
    a: EchoStack,
    b: EchoStack,
    plain: Upstream,
    key: TestKey,
}

/// The gateway with org_a → echo stack A, org_b → echo stack B, org_c → a plain HTTP stack; `proxy` and
/// `tokens` lines are added to those sections.
async fn world(proxy: &str, tokens: &str) -> World {
    let key = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let (a, b, plain) = (
        EchoStack::start("A").await,
        EchoStack::start("B").await,
        Upstream::start("C").await,
    );
    let routes = format!(
        "routes:\n  - {{org: org_a, upstream: '{}', tenant: acme}}\n  - {{org: org_b, upstream: '{}', tenant: beta}}\n  - {{org: org_c, upstream: '{}', tenant: plain}}\n",
        a.addr, b.addr, plain.addr
    );
    let config = config_a(&format!(
        "routes:\n  source: file\n  file: \"{{dir}}/routes.yaml\"\nproxy:\n  upstream_timeout_ms: 2000\n{proxy}\ntokens:\n  max_bytes: 8192\n{tokens}\n"
    ));
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("a.json", jwks)]).await;
    World { gw, a, b, plain, key }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to the gateway at `/ws` with this bearer token (none when empty); the handshake's error
/// (with the gateway's answer) when it is refused. On success, also the request id.
async fn open(addr: SocketAddr, token: &str) -> Result<(Ws, String), WsError> {
    let mut req = format!("ws://{addr}/ws?session=1").into_client_request().unwrap();
    if !token.is_empty() {
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    req.headers_mut().insert("x-org-id", "org_b".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(req).await?;
    let id = response
        .headers()
        .get("x-bulkhead-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    Ok((ws, id))
}

/// The status and (gate, reason) of a refused handshake.
fn refusal(err: WsError) -> (u16, (String, String)) {
    match err {
        WsError::Http(response) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap_or(Value::Null);
            (
                response.status().as_u16(),
                (
                    body["gate"].as_str().unwrap_or("?").to_owned(),
                    body["reason"].as_str().unwrap_or("?").to_owned(),
                ),
            )
        }
        other => panic!("not an HTTP refusal: {other}"),
    }
}

async fn echo(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an echo within 10 s")
        .unwrap()
        .unwrap();
    answer.into_text().unwrap().to_string()
}

/// Reads until the connection ends (a close frame, end of stream or a reset), bounded.
async fn until_closed(ws: &mut Ws, bound: Duration) {
    tokio::time::timeout(bound, async { while let Some(Ok(_)) = ws.next().await {} })
        .await
        .expect("the tunnel closes in time");
}

/// Waits (bounded) for the audit line with this event and request id.
async fn audit_event(gw: &Gateway, event: &str, request_id: &str) -> Value {
    for _ in 0..1000 {
        if let Some(line) = gw
            .audit
            .lines()
            .into_iter()
            .find(|l| l["event"] == event && l["request_id"] == request_id)
        {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {event} line for {request_id}: {:?}", gw.audit.lines());
}

fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn a_websocket_message_round_trips_to_the_orgs_own_stack() {
    let w = world("", "").await;
    let addr = w.gw.running.addr;
    let (mut ws_a, id_a) = open(addr, &w.key.sign(&claims_a("org_a"))).await.unwrap();
    let (mut ws_b, id_b) = open(addr, &w.key.sign(&claims_a("org_b"))).await.unwrap();
    assert_eq!(echo(&mut ws_a, "hello").await, "A:hello");
    assert_eq!(echo(&mut ws_b, "hello").await, "B:hello");
    assert_eq!(echo(&mut ws_a, "again").await, "A:again");
    assert_eq!((w.a.accepted(), w.b.accepted()), (1, 1));
    // The stack saw the gateway's identity, the handshake, and nothing of the client's identity or token.
    assert_eq!(w.a.last_head("x-bulkhead-org"), vec!["org_a"]);
    assert_eq!(w.a.last_head("x-bulkhead-tenant"), vec!["acme"]);
    assert_eq!(w.a.last_head("upgrade"), vec!["websocket"]);
    assert_eq!(w.a.last_head("connection"), vec!["upgrade"]);
    assert!(w.a.last_head("authorization").is_empty());
    assert!(w.a.last_head("x-org-id").is_empty());
    assert_eq!(w.gw.running.proxy.tunnels.open(), 2);

    ws_a.close(None).await.unwrap();
    until_closed(&mut ws_a, Duration::from_secs(10)).await;
    let request = audit_event(&w.gw, "request", &id_a).await;
    assert_eq!(
        (&request["decision"], &request["status"], &request["org"]),
        (&json!("allow"), &json!(101), &json!("org_a"))
    );
    let opened = audit_event(&w.gw, "tunnel_open", &id_a).await;
    assert_eq!(
        (
            &opened["tenant"],
            &opened["protocol"],
            &opened["path"],
            &opened["http_version"]
        ),
        (
            &json!("acme"),
            &json!("websocket"),
            &json!("/ws"),
            &json!("HTTP/1.1")
        )
    );
    let closed = audit_event(&w.gw, "tunnel_close", &id_a).await;
    assert_eq!(closed["reason"], "client_closed", "{closed}");
    // Two masked text frames and a close frame up; two echoes and the close answer down.
    assert!(closed["bytes_client_to_stack"].as_u64().unwrap() >= 2 * 6 + 5 + 5);
    assert!(closed["bytes_stack_to_client"].as_u64().unwrap() >= 2 * 2 + 7 + 7);
    assert!(closed["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        !w.gw
            .audit
            .lines()
            .iter()
            .any(|l| l.to_string().contains("Bearer")),
        "no token in any line"
    );

    // The stack ends the other conversation.
    ws_b.send(Message::text("bye")).await.unwrap();
    until_closed(&mut ws_b, Duration::from_secs(10)).await;
    let closed = audit_event(&w.gw, "tunnel_close", &id_b).await;
    assert_eq!(
        (&closed["reason"], &closed["tenant"]),
        (&json!("stack_closed"), &json!("beta"))
    );
    for _ in 0..500 {
        if w.gw.running.proxy.tunnels.open() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.gw.running.proxy.tunnels.open(), 0);
    let metrics = raw(
        w.gw.running.admin_addr,
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    for line in [
        "bulkhead_gateway_tunnels 0",
        r#"bulkhead_gateway_tunnels_closed_total{reason="client_closed"} 1"#,
        r#"bulkhead_gateway_tunnels_closed_total{reason="stack_closed"} 1"#,
        r#"bulkhead_gateway_tunnel_bytes_total{direction="client_to_stack"}"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn a_tunnel_that_outlives_its_token_is_closed_at_expiry_plus_leeway() {
    let w = world("", "  leeway_seconds: 1").await;
    let now = now();
    let exp = now + 2;
    let mut claims = claims_a("org_a");
    claims["exp"] = json!(exp);
    let (mut ws, id) = open(w.gw.running.addr, &w.key.sign(&claims)).await.unwrap();
    assert_eq!(echo(&mut ws, "before expiry").await, "A:before expiry");
    until_closed(&mut ws, Duration::from_secs(15)).await;
    let closed_at = now_f64();
    let deadline = (exp + 1) as f64;
    assert!(
        closed_at >= deadline,
        "closed at {closed_at}, before exp + leeway {deadline}"
    );
    assert!(
        closed_at < deadline + 5.0,
        "closed at {closed_at}, long after {deadline}"
    );
    let closed = audit_event(&w.gw, "tunnel_close", &id).await;
    assert_eq!(closed["reason"], "token_expired", "{closed}");
    assert!(closed["bytes_client_to_stack"].as_u64().unwrap() > 0);
    assert!(closed["bytes_stack_to_client"].as_u64().unwrap() > 0);
    let opened = audit_event(&w.gw, "tunnel_open", &id).await;
    let closes_at: k8s_openapi::jiff::Timestamp = opened["closes_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(closes_at.as_second(), exp + 1);
    assert_eq!(w.gw.running.proxy.tunnels.open(), 0);
}

#[tokio::test]
async fn a_tunnel_closes_after_the_maximum_duration_when_that_comes_first() {
    let w = world("  max_tunnel_seconds: 1", "").await;
    let started = std::time::Instant::now();
    let (mut ws, id) = open(w.gw.running.addr, &w.key.sign(&claims_a("org_a")))
        .await
        .unwrap();
    assert_eq!(echo(&mut ws, "x").await, "A:x");
    until_closed(&mut ws, Duration::from_secs(15)).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    let closed = audit_event(&w.gw, "tunnel_close", &id).await;
    assert_eq!(closed["reason"], "max_duration", "{closed}");
}

#[tokio::test]
async fn tunnels_over_the_per_org_limit_are_refused_and_other_orgs_are_unaffected() {
    let w = world("  max_tunnels_per_org: 1", "").await;
    let addr = w.gw.running.addr;
    let token_a = w.key.sign(&claims_a("org_a"));
    let (mut first, first_id) = open(addr, &token_a).await.unwrap();
    assert_eq!(echo(&mut first, "1").await, "A:1");

    let refused = refusal(open(addr, &token_a).await.unwrap_err());
    assert_eq!(refused, (429, ("rate_limit".into(), "org_tunnel_limit".into())));
    assert_eq!(w.a.accepted(), 1, "the refused upgrade never reached the stack");
    let line =
        w.gw.audit
            .lines()
            .into_iter()
            .find(|l| l["reason"] == "org_tunnel_limit")
            .expect("the refusal is audited");
    assert_eq!(
        (&line["event"], &line["decision"], &line["org"], &line["status"]),
        (&json!("request"), &json!("deny"), &json!("org_a"), &json!(429))
    );

    // Another org still opens its tunnel.
    let (mut other, _) = open(addr, &w.key.sign(&claims_a("org_b"))).await.unwrap();
    assert_eq!(echo(&mut other, "2").await, "B:2");

    // Closing the first gives org_a its slot back.
    first.close(None).await.unwrap();
    until_closed(&mut first, Duration::from_secs(10)).await;
    audit_event(&w.gw, "tunnel_close", &first_id).await;
    let (mut again, _) = open(addr, &token_a).await.unwrap();
    assert_eq!(echo(&mut again, "3").await, "A:3");
    assert_eq!(w.gw.running.proxy.tunnels.open_for("org_a"), 1);
}

#[tokio::test]
async fn an_upgrade_without_a_valid_token_never_reaches_the_stack() {
    let w = world("", "").await;
    let addr = w.gw.running.addr;
    let other_key = TestKey::load("rsa-b.pem", "k1", Algorithm::RS256);
    let mut expired = claims_a("org_a");
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 180);
    expired["nbf"] = json!(now() - 180);
    for (token, status, gate, reason) in [
        (String::new(), 401, "token", "missing"),
        (other_key.sign(&claims_a("org_a")), 401, "signature", "invalid"),
        (w.key.sign(&expired), 401, "time", "expired"),
        (w.key.sign(&claims_a("org_nobody")), 403, "route", "no_route"),
    ] {
        let refused = refusal(open(addr, &token).await.unwrap_err());
        assert_eq!(refused, (status, (gate.into(), reason.into())), "{gate}/{reason}");
    }
    assert_eq!(w.a.accepted() + w.b.accepted(), 0);
    assert!(
        !w.gw
            .audit
            .lines()
            .iter()
            .any(|l| l["event"] != "request" || l["decision"] != "deny")
    );
    assert_eq!(w.gw.running.proxy.tunnels.open(), 0);
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let w = world("  max_tunnels_per_org: 1", "").await;
    let auth = format!("Bearer {}", w.key.sign(&claims_a("org_a")));
    let key = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let version = ("Sec-WebSocket-Version", "13");
    for (headers, reason) in [
        (
            vec![
                ("Connection", "Upgrade, HTTP2-Settings"),
                ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
            ],
            "upgrade_unsupported",
        ),
        (
            vec![
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket, h2c"),
                key,
                version,
            ],
            "upgrade_unsupported",
        ),
        (
            vec![("Connection", "Upgrade"), ("Upgrade", "TLS/1.2"), key, version],
            "upgrade_unsupported",
        ),
        (
            vec![("Connection", "Upgrade"), ("Upgrade", "websocket")],
            "websocket_invalid",
        ),
        (vec![("Upgrade", "websocket"), key, version], "websocket_invalid"),
    ] {
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend(headers.iter().copied());
        // `request` adds `Connection: close` after these; the gateway answers before any upgrade.
        let answer = w.gw.get("/ws", &all).await;
        assert_eq!(
            (answer.status, answer.denial()),
            (400, ("request".into(), reason.into())),
            "{headers:?}"
        );
    }
    assert_eq!(w.a.accepted(), 0);

    // A stack that answers a WebSocket handshake with an ordinary response: passed on, no tunnel, and the
    // org's one slot is free again for the next attempt.
    let auth_c = format!("Bearer {}", w.key.sign(&claims_a("org_c")));
    for _ in 0..2 {
        let answer =
            w.gw.get(
                "/ws",
                &[
                    ("Authorization", &auth_c),
                    ("Connection", "Upgrade"),
                    ("Upgrade", "websocket"),
                    key,
                    version,
                ],
            )
            .await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "C"));
    }
    assert_eq!(w.plain.last().all("upgrade"), vec!["websocket"]);
    assert_eq!(w.gw.running.proxy.tunnels.open(), 0);
    assert!(!w.gw.audit.lines().iter().any(|l| l["event"] == "tunnel_open"));

    // HTTP/2: a plain CONNECT is refused, and so is an extended CONNECT to anything but websocket.
    let mut h2 = h2_client(w.gw.running.addr).await;
    let connect = Request::connect("gateway.test:443")
        .header("authorization", &auth)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = h2.send_request(connect).await.unwrap();
    assert_eq!(answer.status(), 405);
    let answer = h2
        .send_request(extended_connect("connect-udp", &auth))
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("upgrade_unsupported"));
    assert_eq!(w.a.accepted(), 0);
}

/// An HTTP/2 connection to `addr` (prior knowledge), its connection task running, after one round trip (so
/// the server's SETTINGS, which allow extended CONNECT, have arrived).
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let ping = Request::get("http://gateway.test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(h2.send_request(ping).await.unwrap().status(), 401);
    h2
}

/// An RFC 8441 extended CONNECT to `/ws` for `protocol`, with this `Authorization` value (none when empty).
fn extended_connect(protocol: &'static str, auth: &str) -> Request<Full<Bytes>> {
    let mut req = Request::connect("http://gateway.test/ws")
        .header("sec-websocket-version", "13")
        .header("x-org-id", "org_b");
    if !auth.is_empty() {
        req = req.header("authorization", auth);
    }
    let mut req = req.body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static(protocol));
    req
}

#[tokio::test]
async fn websockets_over_http2_extended_connect_reach_the_orgs_own_stack() {
    use tokio_tungstenite::tungstenite::protocol::Role;
    let w = world("", "").await;
    let mut h2 = h2_client(w.gw.running.addr).await;

    // Without a token: refused, and the stack never sees it.
    let refused = h2.send_request(extended_connect("websocket", "")).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(w.a.accepted(), 0);

    // Two WebSockets on one HTTP/2 connection, each to its own org's stack.
    let mut streams = Vec::new();
    for org in ["org_a", "org_b"] {
        let auth = format!("Bearer {}", w.key.sign(&claims_a(org)));
        let mut response = h2
            .send_request(extended_connect("websocket", &auth))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{org}");
        assert!(response.headers().get("sec-websocket-accept").is_none());
        let id = response.headers()["x-bulkhead-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        streams.push((ws, id));
    }
    for ((ws, _), name) in streams.iter_mut().zip(["A", "B"]) {
        ws.send(Message::text("over h2")).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(answer.into_text().unwrap().as_str(), format!("{name}:over h2"));
    }
    // The stack got an HTTP/1.1 handshake made by the gateway, with the gateway's identity headers.
    assert_eq!(w.a.last_head("x-bulkhead-org"), vec!["org_a"]);
    assert_eq!(w.a.last_head("upgrade"), vec!["websocket"]);
    assert_eq!(w.a.last_head("sec-websocket-key").len(), 1);
    assert!(w.a.last_head("authorization").is_empty() && w.a.last_head("x-org-id").is_empty());

    let (mut ws, id) = streams.remove(0);
    ws.close(None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await
    .unwrap();
    let request = audit_event(&w.gw, "request", &id).await;
    assert_eq!(
        (&request["status"], &request["method"]),
        (&json!(200), &json!("CONNECT"))
    );
    let closed = audit_event(&w.gw, "tunnel_close", &id).await;
    assert_eq!(
        (&closed["reason"], &closed["http_version"], &closed["tenant"]),
        (&json!("client_closed"), &json!("HTTP/2"), &json!("acme"))
    );
    assert!(closed["bytes_stack_to_client"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn tunnels_close_on_gateway_shutdown() {
    let w = world("", "").await;
    let (mut ws, id) = open(w.gw.running.addr, &w.key.sign(&claims_a("org_a")))
        .await
        .unwrap();
    assert_eq!(echo(&mut ws, "x").await, "A:x");
    let Gateway { running, audit, dir } = w.gw;
    let proxy = running.proxy.clone();
    tokio::time::timeout(Duration::from_secs(15), running.shutdown())
        .await
        .expect("shutdown does not wait for the tunnel's client");
    until_closed(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(proxy.tunnels.open(), 0);
    let closed = audit
        .lines()
        .into_iter()
        .find(|l| l["event"] == "tunnel_close" && l["request_id"] == id.as_str())
        .expect("the close line is written before shutdown returns");
    assert_eq!(closed["reason"], "shutdown");
    assert!(closed["bytes_client_to_stack"].as_u64().unwrap() > 0);
    drop(dir);
}

#[tokio::test]
async fn a_streamed_event_reaches_the_client_before_the_stack_finishes() {
    // The stack sends its first event and holds the response open until the test has seen that event at the
    // client; only then does it send the second and finish. A gateway that buffered would never deliver it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stack_addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<()>();
    let seen_rx = Arc::new(Mutex::new(Some(seen_rx)));
    let finished = Arc::new(AtomicBool::new(false));
    let stack_finished = finished.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = service_fn(move |_req: Request<Incoming>| {
            let seen = seen_rx.lock().unwrap().take();
            let finished = stack_finished.clone();
            async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                tokio::spawn(async move {
                    tx.send(Ok(Frame::data(Bytes::from_static(b"data: one\n\n"))))
                        .await
                        .unwrap();
                    if let Some(seen) = seen {
                        let _ = seen.await;
                    }
                    tx.send(Ok(Frame::data(Bytes::from_static(b"data: two\n\n"))))
                        .await
                        .unwrap();
                    finished.store(true, Ordering::SeqCst);
                });
                let body = StreamBody::new(tokio_stream(rx));
                let mut response = Response::new(body);
                response
                    .headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                Ok::<_, Infallible>(response)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .await;
    });
    let key = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let config = config_a("routes:\n  source: file\n  file: \"{dir}/routes.yaml\"\n");
    let routes = format!("routes:\n  - {{org: org_a, upstream: '{stack_addr}', tenant: acme}}\n");
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("a.json", jwks)]).await;

    let tcp = TcpStream::connect(gw.running.addr).await.unwrap();
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/events")
        .header("host", "gateway.test")
        .header("accept", "text/event-stream")
        .header(
            "authorization",
            format!("Bearer {}", key.sign(&claims_a("org_a"))),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut received = Vec::new();
    while !received.ends_with(b"\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the first event arrives while the stack still holds the response open")
            .unwrap()
            .unwrap();
        received.extend_from_slice(&frame.into_data().unwrap());
    }
    assert_eq!(received, b"data: one\n\n");
    assert!(!finished.load(Ordering::SeqCst), "the stack has not finished yet");
    seen_tx.send(()).unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "data: two\n\n");
    assert!(finished.load(Ordering::SeqCst));
}

/// An mpsc receiver as a stream of frames.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
