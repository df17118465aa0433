//! `bulkhead-stack probe` as a process against real sockets on the loopback interface: several targets in one
//! run, HTTP paths and headers (and that credentials never come back), and repeating until the outcome switches.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

mod common;

use std::net::SocketAddr;
use std::process::{Output, Stdio};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

use common::{HANG_GUARD, closed_port, output_lines, stack};

/// A bearer token as the gateway would get it; must never show up in the probe's output.
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJlLXNlY3JldA";

/// Runs `bulkhead-stack probe ARGS` and returns its output and JSON lines.
async fn run(args: &[&str]) -> (Output, Vec<serde_json::Value>) {
    output_lines(stack().arg("probe").args(args)).await
}

/// Accepts connections and closes them at once, until the task is aborted (which closes the listener).
fn accept_and_close(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    })
}

/// An upstream that is careless with credentials: it echoes every request header, Authorization included.
/// `GET /text…` answers 403 with plain text quoting the Authorization header; `GET /big` answers 10 000 bytes
/// of text; anything else answers 200 with JSON `{"path": …, "headers": {…}}`.
async fn leaky_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer_leakily(stream));
        }
    });
    address
}

async fn answer_leakily(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or_default()
        .to_owned();
    let headers: serde_json::Map<String, serde_json::Value> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().into()))
        .collect();
    let (status, content_type, body) = if path.starts_with("/text") {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        (
            "403 Forbidden",
            "text/plain",
            format!("forbidden, you sent: {authorization}"),
        )
    } else if path == "/big" {
        ("200 OK", "text/plain", "x".repeat(10_000))
    } else {
        let echo = serde_json::json!({"path": path, "headers": headers});
        ("200 OK", "application/json", echo.to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[tokio::test]
async fn several_targets_are_probed_in_one_run_and_reported_in_order() {
    let open = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open_address = open.local_addr().unwrap().to_string();
    let server = accept_and_close(open);
    let closed = closed_port().await.to_string();
    let targets = [
        open_address.as_str(),
        closed.as_str(),
        "127.0.0.1",
        open_address.as_str(),
    ];

    let (output, lines) = run(&[&targets[..], &["--timeout-ms", "5000"]].concat()).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "one target did not connect: {lines:?}"
    );
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (line, target) in lines.iter().zip(targets) {
        assert_eq!(line["target"], target);
        assert!(line["elapsed_ms"].is_u64());
    }
    let results: Vec<_> = lines
        .iter()
        .map(|line| line["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["connected", "refused", "error", "connected"]);

    let (output, lines) = run(&[&targets[..], &["--report-only"]].concat()).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "--report-only: every probe ran: {lines:?}"
    );
    assert_eq!(lines.len(), 4);

    let (output, lines) = run(&[&open_address, &open_address]).await;
    assert_eq!(output.status.code(), Some(0), "every target connected: {lines:?}");
    assert_eq!(lines.len(), 2);
    server.abort();
}

#[tokio::test]
async fn http_paths_and_headers_are_sent_and_credentials_never_printed() {
    let upstream = leaky_upstream().await.to_string();
    let authorization = format!("Authorization: Bearer {TOKEN}");
    let (output, lines) = run(&[
        &upstream,
        "--path",
        "/api/orders?page=2",
        "--header",
        &authorization,
        "--header",
        "X-Bulkhead-Org: org_spoofed",
        "--header",
        "X-Auth-Request-Email: mallory@example.com",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains(TOKEN), "the token came back: {stdout}");
    assert!(!stdout.contains("mallory@example.com"), "{stdout}");
    let [line] = lines.as_slice() else {
        panic!("one line: {lines:?}")
    };
    assert_eq!(line["result"], "connected");
    assert_eq!(line["status"], 200);
    assert!(line.get("body").is_none());
    let answer = &line["answer"];
    assert_eq!(answer["path"], "/api/orders?page=2");
    // Sent (the upstream saw them), but shown only as redacted.
    assert_eq!(answer["headers"]["authorization"], "<redacted>");
    assert_eq!(answer["headers"]["x-auth-request-email"], "<redacted>");
    // Identity headers are not credentials: the suite must see whether a spoofed one got through.
    assert_eq!(answer["headers"]["x-bulkhead-org"], "org_spoofed");
    assert_eq!(answer["headers"]["host"], upstream.as_str());
    assert_eq!(answer["headers"]["user-agent"], "bulkhead-stack-probe");

    // A refusal is still a connection; a text body that quotes the token is redacted too.
    let (output, lines) = run(&[&upstream, "--path", "/text", "--header", &authorization]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains(TOKEN), "{stdout}");
    assert_eq!(lines[0]["result"], "connected");
    assert_eq!(lines[0]["status"], 403);
    assert_eq!(lines[0]["body"], "forbidden, you sent: <redacted>");
    assert!(lines[0].get("answer").is_none());
    assert!(lines[0].get("body_truncated").is_none());

    // A user agent and host of one's own replace the probe's.
    let (_, lines) = run(&[
        &upstream,
        "--header",
        "User-Agent: curl/8",
        "--header",
        "Host: api.bk-acme.example",
    ])
    .await;
    assert_eq!(lines[0]["answer"]["headers"]["user-agent"], "curl/8");
    assert_eq!(lines[0]["answer"]["headers"]["host"], "api.bk-acme.example");

    // Bodies that are not JSON are cut at 4 KiB.
    let (_, lines) = run(&[&upstream, "--http", "--path", "/big"]).await;
    assert_eq!(lines[0]["body"].as_str().unwrap().len(), 4096);
    assert_eq!(lines[0]["body_truncated"], true);
}

#[tokio::test]
async fn http_against_the_echo_server_of_the_stack() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let identity = bulkhead_stack::server::Identity {
        namespace: "bk-acme".into(),
        pod: "stack-0".into(),
    };
    let server = tokio::spawn(bulkhead_stack::server::serve(
        listener,
        identity,
        std::future::pending(),
    ));
    let authorization = format!("Authorization: Bearer {TOKEN}");
    let closed = closed_port().await.to_string();
    let (output, lines) = run(&[
        &target,
        &closed,
        "--report-only",
        "--timeout-ms",
        "5000",
        "--header",
        &authorization,
        "--header",
        "X-Bulkhead-Tenant: other",
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&output.stdout).contains(TOKEN));
    assert_eq!(lines[0]["answer"]["namespace"], "bk-acme");
    assert_eq!(lines[0]["answer"]["path"], "/");
    assert_eq!(lines[0]["answer"]["headers"]["x-bulkhead-tenant"], "other");
    assert!(lines[0]["answer"]["headers"].get("authorization").is_none());
    assert_eq!(lines[1]["target"], closed.as_str());
    assert_eq!(lines[1]["result"], "refused");
    assert!(lines[1].get("status").is_none());
    server.abort();
}

#[tokio::test]
async fn usage_errors_exit_2_without_quoting_header_values() {
    let closed = closed_port().await.to_string();
    for args in [
        vec![closed.as_str(), "--header", "Authorization Bearer sekrit-value"],
        vec![closed.as_str(), "--header", "Authorization Bearer sekrit-value:x"],
        vec![closed.as_str(), "--path", "no-slash"],
        vec![closed.as_str(), closed.as_str(), "--repeat-until", "refused"],
        vec![closed.as_str(), "--interval-ms", "10"],
        vec![],
    ] {
        let (output, lines) = run(&args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(lines.is_empty(), "{args:?}: {lines:?}");
        assert!(!stderr.contains("sekrit"), "{stderr}");
    }
}

/// Runs `probe … --repeat-until …` and returns its lines as they come, and the process.
fn spawn_repeat(
    args: &[&str],
) -> (
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    tokio::process::Child,
) {
    let mut child = stack()
        .arg("probe")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line:?}"));
            if send.send(value).is_err() {
                break;
            }
        }
    });
    (receive, child)
}

async fn next_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>) -> serde_json::Value {
    tokio::time::timeout(HANG_GUARD, lines.recv())
        .await
        .expect("a line in time")
        .expect("a line before the end")
}

/// Reads the rest of the lines and the exit code.
async fn finish(
    mut lines: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    mut child: tokio::process::Child,
) -> (Vec<serde_json::Value>, Option<i32>) {
    let status = tokio::time::timeout(HANG_GUARD, child.wait())
        .await
        .expect("the probe gives up by --max-ms")
        .unwrap();
    let mut rest = Vec::new();
    while let Some(line) = tokio::time::timeout(HANG_GUARD, lines.recv()).await.unwrap() {
        rest.push(line);
    }
    (rest, status.code())
}

#[tokio::test]
async fn repeat_until_refused_sees_the_listener_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = accept_and_close(listener);
    let (mut lines, child) = spawn_repeat(&[
        &target,
        "--repeat-until",
        "refused",
        "--interval-ms",
        "50",
        "--max-ms",
        "30000",
        "--timeout-ms",
        "2000",
    ]);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let line = next_line(&mut lines).await;
        assert_eq!(line["result"], "connected", "{line}");
        seen.push(line);
    }
    server.abort();
    let _ = server.await;
    let closed_at = bulkhead_stack::probe::unix_millis();
    let (rest, code) = finish(lines, child).await;
    seen.extend(rest);
    assert_eq!(code, Some(0), "matched: {seen:?}");

    let (summary, attempts) = seen.split_last().unwrap();
    assert_eq!(summary["summary"], true, "{summary}");
    assert_eq!(summary["target"], target.as_str());
    assert_eq!(summary["until"], "refused");
    assert_eq!(summary["matched"], true);
    assert_eq!(summary["attempts"], attempts.len());
    let connected = attempts.iter().filter(|a| a["result"] == "connected").count();
    assert!(connected >= 3);
    assert_eq!(summary["connected_attempts"], connected);
    // Only the last attempt was refused, and it is the first match.
    let (last, before) = attempts.split_last().unwrap();
    assert_eq!(last["result"], "refused", "{last}");
    assert!(before.iter().all(|a| a["result"] == "connected"), "{before:?}");
    assert_eq!(summary["first_match_at_ms"], last["at_ms"]);
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["attempt"], n + 1);
        assert_eq!(attempt["target"], target.as_str());
    }
    let times: Vec<u64> = attempts.iter().map(|a| a["at_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Wall-clock times: the refused attempt started after the close (a clock jump aside), and near now.
    assert!(
        times[times.len() - 1] + 1000 >= closed_at,
        "{times:?} vs {closed_at}"
    );
    assert!(times[0] >= closed_at.saturating_sub(HANG_GUARD.as_millis() as u64));
    // Attempts are spaced by the interval.
    assert!(times[1] >= times[0] + 40, "{times:?}");
}

#[tokio::test]
async fn repeat_until_connected_sees_the_listener_open() {
    let address = closed_port().await;
    let target = address.to_string();
    let (mut lines, child) = spawn_repeat(&[
        &target,
        "--repeat-until",
        "connected",
        "--interval-ms",
        "30",
        "--max-ms",
        "30000",
    ]);
    for _ in 0..2 {
        assert_eq!(next_line(&mut lines).await["result"], "refused");
    }
    let server = accept_and_close(TcpListener::bind(address).await.unwrap());
    let (rest, code) = finish(lines, child).await;
    assert_eq!(code, Some(0), "{rest:?}");
    let summary = rest.last().unwrap();
    assert_eq!(summary["matched"], true);
    assert_eq!(summary["until"], "connected");
    assert_eq!(summary["connected_attempts"], 1);
    assert_eq!(rest[rest.len() - 2]["result"], "connected");
    server.abort();
}

#[tokio::test]
async fn repeat_gives_up_after_max_ms() {
    let target = closed_port().await.to_string();
    let (output, lines) = run(&[
        &target,
        "--repeat-until",
        "connected",
        "--interval-ms",
        "20",
        "--max-ms",
        "200",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{lines:?}");
    let (summary, attempts) = lines.split_last().unwrap();
    assert_eq!(summary["matched"], false);
    assert!(summary["first_match_at_ms"].is_null());
    assert_eq!(summary["connected_attempts"], 0);
    assert_eq!(summary["attempts"], attempts.len());
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert!(attempts.iter().all(|a| a["result"] == "refused"));
    // The last attempt starts within one interval of --max-ms.
    assert!(summary["elapsed_ms"].as_u64().unwrap() >= 200 - 20, "{summary}");

    let (output, lines) = run(&[
        &target,
        "--repeat-until",
        "connected",
        "--max-ms",
        "0",
        "--report-only",
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "--report-only: {lines:?}");
    assert_eq!(lines.len(), 2, "one attempt, then the summary: {lines:?}");
}
