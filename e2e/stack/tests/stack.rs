//! The server over real sockets and the probe as a process, both on the loopback interface.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use bulkhead_stack::probe::{self, HttpOptions, Outcome, ProbeOptions};
use bulkhead_stack::server::{self, Identity};
use common::{HANG_GUARD, closed_port, output_lines, stack};

struct Running {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(HANG_GUARD, self.task)
            .await
            .expect("the server stops after the signal")
            .unwrap();
    }
}

async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let identity = Identity {
        namespace: "bk-acme".into(),
        pod: "stack-7d9f-abcde".into(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, identity, async move {
        let _ = stopped.await;
    }));
    Running {
        address,
        stop: Some(stop),
        task,
    }
}

/// Writes `raw` and reads until the server closes the connection.
async fn exchange(address: SocketAddr, raw: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes after Connection: close")
        .unwrap();
    String::from_utf8(answer).unwrap()
}

fn body_of(response: &str) -> serde_json::Value {
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn the_server_names_its_pod_and_echoes_the_request_without_credentials() {
    let server = start().await;
    let response = exchange(
        server.address,
        "POST /api/orders?page=2 HTTP/1.1\r\nHost: stack.bk-acme\r\nAuthorization: Bearer eyJ.secret\r\n\
         Cookie: session=secret\r\nX-Bulkhead-Org: org_acme\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    let echo = body_of(&response);
    assert_eq!(echo["namespace"], "bk-acme");
    assert_eq!(echo["pod"], "stack-7d9f-abcde");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/api/orders");
    assert_eq!(echo["query"], "page=2");
    let headers = echo["headers"].as_object().unwrap();
    assert_eq!(headers["host"], "stack.bk-acme");
    assert_eq!(headers["x-bulkhead-org"], "org_acme");
    assert_eq!(headers["content-length"], "2");
    assert!(!headers.contains_key("authorization"));
    assert!(!headers.contains_key("cookie"));
    assert!(!response.contains("secret"), "{response}");
    server.stop().await;
}

#[tokio::test]
async fn the_server_keeps_connections_alive_and_answers_healthz() {
    let server = start().await;
    // Two pipelined requests on one connection: both are answered before the close the second asks for.
    let response = exchange(
        server.address,
        "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.matches("HTTP/1.1 200 ").count(), 2, "{response}");
    let second_start = response[1..].find("HTTP/1.1 200 ").unwrap() + 1;
    let (first, second) = response.split_at(second_start);
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    assert!(first.ends_with("\r\n\r\nok"), "{first}");
    assert_eq!(body_of(second)["path"], "/second");
    server.stop().await;
}

fn options(http: bool) -> ProbeOptions {
    let timeout = Duration::from_secs(10);
    if http {
        ProbeOptions::http(timeout, HttpOptions::default())
    } else {
        ProbeOptions::tcp(timeout)
    }
}

#[tokio::test]
async fn the_probe_connects_to_a_listening_port_and_is_refused_by_a_closed_one() {
    let server = start().await;
    let connected = probe::probe(&server.address.to_string(), &options(false)).await;
    assert_eq!(connected.result, Outcome::Connected, "{}", connected.detail);
    assert_eq!(connected.detail, server.address.to_string());
    assert!(connected.succeeded());
    assert!(connected.answer.is_none());

    let answered = probe::probe(&format!("localhost:{}", server.address.port()), &options(true)).await;
    assert_eq!(answered.result, Outcome::Connected, "{}", answered.detail);
    assert_eq!(answered.status, Some(200));
    let answer = answered.answer.unwrap();
    assert_eq!(answer["namespace"], "bk-acme");
    assert_eq!(answer["pod"], "stack-7d9f-abcde");

    let closed = closed_port().await;
    let refused = probe::probe(&closed.to_string(), &options(false)).await;
    assert_eq!(refused.result, Outcome::Refused, "{}", refused.detail);
    assert!(!refused.succeeded());
    server.stop().await;
}

/// Runs `bulkhead-stack probe ARGS` and returns its output and its one JSON line.
async fn run_probe(args: &[&str]) -> (Output, serde_json::Value) {
    let (output, lines) = output_lines(stack().arg("probe").args(args)).await;
    let [line] = <[_; 1]>::try_from(lines).unwrap_or_else(|lines| panic!("exactly one line: {lines:?}"));
    (output, line)
}

#[tokio::test]
async fn the_probe_binary_prints_one_json_line_and_exits_by_the_result() {
    let server = start().await;
    let target = server.address.to_string();
    let (output, line) = run_probe(&[&target, "--http", "--timeout-ms", "10000"]).await;
    assert_eq!(output.status.code(), Some(0), "{line}");
    assert_eq!(line["target"], target.as_str());
    assert_eq!(line["result"], "connected");
    assert!(line["elapsed_ms"].is_u64());
    assert_eq!(line["answer"]["namespace"], "bk-acme");
    assert_eq!(line["answer"]["headers"]["user-agent"], "bulkhead-stack-probe");

    let closed = closed_port().await.to_string();
    let (output, line) = run_probe(&[&closed]).await;
    assert_eq!(output.status.code(), Some(1), "{line}");
    assert_eq!(line["target"], closed.as_str());
    assert_eq!(line["result"], "refused");
    assert!(line["detail"].as_str().unwrap().contains(&closed));
    assert!(line.get("answer").is_none());
    server.stop().await;
}
