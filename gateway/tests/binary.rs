//! The `bulkhead-gateway` binary: `token` mints a token the running binary accepts, `run` serves with audit
//! lines on stdout, and SIGTERM stops it cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use common::binary::{BIN, announced, spawn_gateway, terminate};

fn mint(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("token").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn token_places_the_org_by_version_or_path() {
    let key = key_path("ec-a.pem");
    let key = key.to_str().unwrap();
    // An ES256 token from the test key for `org`, with `extra` flags.
    let mint_es = |org: &str, extra: &[&str]| {
        let mut args = vec![
            "--key", key, "--alg", "ES256", "--kid", "k", "--iss", ISS_A, "--org", org,
        ];
        args.extend_from_slice(extra);
        mint(&args)
    };
    let v2 = mint_es("org_a", &[]);
    let c = claims_of(&v2);
    assert_eq!(
        (c["v"].clone(), c["o"]["id"].clone(), c["iss"].clone()),
        (json!(2), json!("org_a"), json!(ISS_A))
    );
    let v1 = mint_es("org_a", &["--version", "v1"]);
    assert_eq!(claims_of(&v1)["org_id"], "org_a");
    let path = mint_es(
        "acme",
        &[
            "--org-path",
            "t.org",
            "--exp-in",
            "30",
            "--claims",
            r#"{"azp":"x"}"#,
        ],
    );
    let c = claims_of(&path);
    assert_eq!(
        (c["t"]["org"].clone(), c["azp"].clone()),
        (json!("acme"), json!("x"))
    );
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 30);
    let bad = Command::new(BIN)
        .args([
            "token", "--key", key, "--alg", "HS256", "--kid", "k", "--iss", ISS_A,
        ])
        .output()
        .unwrap();
    assert!(
        !bad.status.success(),
        "an HMAC token cannot be minted from an EC key"
    );
}

#[tokio::test]
async fn run_serves_audits_to_stdout_and_stops_on_sigterm() {
    let (up, _dir, _, mut child) = org_a_gateway().await;
    // Port 0 for both listeners; the addresses are read from the JSON log line that announces them.
    let (addr, admin_addr) = announced(&mut child);
    let ready = "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    assert_eq!(
        Answer::parse(&raw(admin_addr, ready.as_bytes()).await).status,
        200
    );

    let key = key_path("rsa-a.pem");
    let token = mint(&[
        "--key",
        key.to_str().unwrap(),
        "--kid",
        "k1",
        "--iss",
        ISS_A,
        "--org",
        "org_a",
    ]);
    let req = request(
        "GET",
        "/bin",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    let answer = Answer::parse(&raw(addr, req.as_bytes()).await);
    assert_eq!((answer.status, answer.body.as_str()), (200, "A"));
    assert_eq!(up.count(), 1);

    let status = terminate(&mut child);
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let lines: Vec<Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .filter(|l: &Value| l["event"] == "request")
        .collect();
    assert_eq!(lines.len(), 1, "one audit line per decision on stdout: {lines:?}");
    assert_eq!(
        (lines[0]["decision"].as_str(), lines[0]["path"].as_str()),
        (Some("allow"), Some("/bin"))
    );
    assert!(!lines[0].to_string().contains(&token));
}

#[tokio::test]
async fn a_closed_log_pipe_does_not_stop_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let mut child = spawn_gateway(dir.path(), &rsa, "routes: []\n", "", &[], Stdio::null());
    let listening = {
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "stderr ended before the announcement"
            );
            let value = serde_json::from_str::<Value>(&line).unwrap_or(Value::Null);
            if value["message"] == "gateway listening" {
                break value;
            }
        }
        // The reader is dropped here: every later log line meets a broken pipe.
    };
    let addr: std::net::SocketAddr = listening["addr"].as_str().unwrap().parse().unwrap();
    let answer = Answer::parse(&raw(addr, request("GET", "/", &[], "").as_bytes()).await);
    assert_eq!(answer.status, 401, "still answering with its log pipe gone");
    let status = terminate(&mut child);
    assert!(
        status.success(),
        "exit after SIGTERM with a broken log pipe: {status:?}"
    );
}

#[tokio::test]
async fn a_closed_audit_pipe_stops_forwarding_until_lines_can_be_written() {
    let (up, _dir, rsa, mut child) = org_a_gateway().await;
    let (addr, admin_addr) = announced(&mut child);
    // The audit reader goes away: every later write to stdout meets a broken pipe.
    drop(child.stdout.take());
    let token = rsa.sign(&claims_a("org_a"));
    let get = request("GET", "/", &[("Authorization", &format!("Bearer {token}"))], "");
    // This one is decided while the output still looks fine; its line is the first to fail.
    assert_eq!(Answer::parse(&raw(addr, get.as_bytes()).await).status, 200);
    let ready = "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let mut readyz = 0;
    for _ in 0..500 {
        readyz = Answer::parse(&raw(admin_addr, ready.as_bytes()).await).status;
        if readyz == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(readyz, 503, "unready once audit lines cannot be written");
    let refused = Answer::parse(&raw(addr, get.as_bytes()).await);
    assert_eq!(
        (refused.status, refused.denial()),
        (503, ("request".into(), "audit_unavailable".into()))
    );
    assert_eq!(up.count(), 1, "nothing forwarded without its audit line");
    let status = terminate(&mut child);
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

/// A recording upstream "A" and the binary routing org_a (tokens signed by the returned key) to it, with audit
/// lines on a piped stdout; the temp dir must outlive the child.
async fn org_a_gateway() -> (Upstream, tempfile::TempDir, TestKey, std::process::Child) {
    let up = Upstream::start("A").await;
    let dir = tempfile::tempdir().unwrap();
    let rsa = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let routes = format!(
        "routes:\n  - {{org: org_a, upstream: '{}', tenant: acme}}\n",
        up.addr
    );
    let child = spawn_gateway(dir.path(), &rsa, &routes, "", &[], Stdio::piped());
    (up, dir, rsa, child)
}
