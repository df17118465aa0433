//! The audit chain end to end: the real binary serves requests with its audit lines on stdout and stops on
//! SIGTERM; `bulkhead-gateway audit verify` passes that output untouched, and names the line when a line is
//! deleted, edited or moved, or the tail is cut off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use common::binary::{BIN, announced, terminate};

#[tokio::test]
async fn the_binary_chains_its_audit_lines_and_audit_verify_names_tampering() {
    let up = Upstream::start("A").await;
    let dir = tempfile::tempdir().unwrap();
    let rsa = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let mut child = spawn_gateway(dir.path(), &rsa, &up, "gw-test");
    let addr = announced(&mut child).0;
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });

    let token = rsa.sign(&claims_a("org_a"));
    let bearer = format!("Bearer {token}");
    for i in 0..4 {
        let allowed = request("GET", &format!("/ok/{i}"), &[("Authorization", &bearer)], "");
        assert_eq!(Answer::parse(&raw(addr, allowed.as_bytes()).await).status, 200);
        let denied = request("GET", &format!("/no/{i}"), &[], "");
        assert_eq!(Answer::parse(&raw(addr, denied.as_bytes()).await).status, 401);
    }
    // Past one checkpoint interval (1 s in the config): a periodic checkpoint is in the chain.
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let denied = request("GET", "/late", &[], "");
    assert_eq!(Answer::parse(&raw(addr, denied.as_bytes()).await).status, 401);

    assert!(terminate(&mut child).success());
    let text = reader.join().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let values: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let requests = values.iter().filter(|v| v["event"] == "request").count();
    assert_eq!(requests, 9, "{text}");
    let instance = values[0]["instance"].as_str().unwrap().to_owned();
    assert!(instance.starts_with("gw-test."), "{instance}");
    let kinds: Vec<&str> = values
        .iter()
        .filter(|v| v["event"] == "checkpoint")
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"start"));
    assert_eq!(kinds.last(), Some(&"shutdown"));
    assert!(kinds.contains(&"periodic"), "{kinds:?}");

    // Untouched: intact, exit 0.
    let log = dir.path().join("audit.log");
    std::fs::write(&log, &text).unwrap();
    let out = passes(&[&log]);
    assert!(
        out.contains(&format!("chain {instance}: seq 0 to {}", lines.len() - 1)) && out.contains("intact"),
        "{out}"
    );

    // One line deleted (line 3, seq 2).
    let tampered = dir.path().join("deleted.log");
    write_lines(
        &tampered,
        lines.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, l)| *l),
    );
    refused(
        &[&tampered],
        &format!("{}:3: seq 2 of chain {instance} deleted", tampered.display()),
    );

    // A decision edited (line 4, seq 3: allow → deny).
    let tampered = dir.path().join("edited.log");
    let edited: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 3 {
                l.replacen(":\"allow\"", ":\"deny\"", 1)
            } else {
                (*l).to_owned()
            }
        })
        .collect();
    assert_ne!(edited[3], lines[3], "line 4 is an allowed request: {}", lines[3]);
    write_lines(&tampered, edited.iter().map(String::as_str));
    refused(
        &[&tampered],
        &format!("{}:4: seq 3 of chain {instance} was altered", tampered.display()),
    );

    // Two lines swapped (lines 5 and 6).
    let tampered = dir.path().join("swapped.log");
    let mut swapped = lines.clone();
    swapped.swap(4, 5);
    write_lines(&tampered, swapped.into_iter());
    refused(
        &[&tampered],
        &format!(
            "{path}:5: chain {instance} has seq 5 where seq 4 belongs; seq 4 is at {path}:6: reordered",
            path = tampered.display()
        ),
    );

    // The tail cut off (the shutdown checkpoint and the line before it): exit 3, naming where the chain ends.
    let tampered = dir.path().join("cut.log");
    let kept = lines.len() - 2;
    write_lines(&tampered, lines[..kept].iter().copied());
    let open = verify(&[&tampered]);
    assert_eq!(open.status.code(), Some(3));
    let message = String::from_utf8(open.stderr).unwrap();
    assert!(
        message.contains(&format!(
            "chain {instance} ends at seq {} ({}:{kept}) without a shutdown checkpoint",
            kept - 1,
            tampered.display()
        )),
        "{message}"
    );
    let allowed = Command::new(BIN)
        .args(["audit", "verify", "--allow-open"])
        .arg(&tampered)
        .output()
        .unwrap();
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "--allow-open makes an open chain a warning"
    );

    // Cut mid-line.
    let tampered = dir.path().join("partial.log");
    std::fs::write(&tampered, &text[..text.len() - 10]).unwrap();
    refused(
        &[&tampered],
        &format!("{}:{}: partial line", tampered.display(), lines.len()),
    );

    // As a rotated set, in order: intact; with the middle file missing: named.
    let parts = [
        dir.path().join("0.log.1"),
        dir.path().join("0.log.2"),
        dir.path().join("0.log"),
    ];
    write_lines(&parts[0], lines[..4].iter().copied());
    write_lines(&parts[1], lines[4..8].iter().copied());
    write_lines(&parts[2], lines[8..].iter().copied());
    passes(&[&parts[0], &parts[1], &parts[2]]);
    let message = refused(
        &[&parts[0], &parts[2]],
        &format!("{}:1: seq 4 to 7 of chain {instance} deleted", parts[2].display()),
    );
    assert!(message.contains("a file of the set may be missing"), "{message}");

    // A file that cannot be read: exit 2.
    let missing = verify(&[&dir.path().join("nothing.log")]);
    assert_eq!(missing.status.code(), Some(2));
}

#[tokio::test]
async fn two_replicas_in_one_log_verify_as_two_chains() {
    let up = Upstream::start("A").await;
    let dir = tempfile::tempdir().unwrap();
    let rsa = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let bearer = format!("Bearer {}", rsa.sign(&claims_a("org_a")));
    let mut outputs = Vec::new();
    let mut children = Vec::new();
    for name in ["gw-0", "gw-1"] {
        let mut child = spawn_gateway(dir.path(), &rsa, &up, name);
        let addr = announced(&mut child).0;
        let mut stdout = child.stdout.take().unwrap();
        outputs.push(std::thread::spawn(move || {
            let mut text = String::new();
            stdout.read_to_string(&mut text).unwrap();
            text
        }));
        children.push((child, addr));
    }
    for i in 0..3 {
        for (_, addr) in &children {
            let get = request("GET", &format!("/r/{i}"), &[("Authorization", &bearer)], "");
            assert_eq!(Answer::parse(&raw(*addr, get.as_bytes()).await).status, 200);
        }
    }
    for (child, _) in &mut children {
        assert!(terminate(child).success());
    }
    let texts: Vec<String> = outputs.into_iter().map(|t| t.join().unwrap()).collect();
    // The pipeline's view: whole lines of both pods, interleaved.
    let (a, b): (Vec<&str>, Vec<&str>) = (texts[0].lines().collect(), texts[1].lines().collect());
    let mut mixed = Vec::new();
    for i in 0..a.len().max(b.len()) {
        mixed.extend(b.get(i));
        mixed.extend(a.get(i));
    }
    let log = dir.path().join("both.log");
    write_lines(&log, mixed.iter().copied());
    let out = passes(&[&log]);
    assert!(
        out.contains("chain gw-1.") && out.contains("chain gw-0.") && out.contains("2 chains"),
        "{out}"
    );

    // A line of gw-1's chain removed: the finding names that chain and line.
    let gw1: Value = serde_json::from_str(b[2]).unwrap();
    let victim = mixed.iter().position(|l| *l == b[2]).unwrap();
    mixed.remove(victim);
    let tampered = dir.path().join("tampered.log");
    write_lines(&tampered, mixed.iter().copied());
    let message = refused(
        &[&tampered],
        &format!("seq 2 of chain {} deleted", gw1["instance"].as_str().unwrap()),
    );
    assert!(
        message.contains(&format!("{}:{}:", tampered.display(), victim + 2)),
        "{message}"
    );
}

/// `audit verify` of `files` passes (exit status 0); its report.
fn passes(files: &[&Path]) -> String {
    let ok = verify(files);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    String::from_utf8(ok.stdout).unwrap()
}

/// `audit verify` of `files` fails (exit status 1) and its message, returned, contains `expected`.
fn refused(files: &[&Path], expected: &str) -> String {
    let failed = verify(files);
    assert_eq!(failed.status.code(), Some(1), "{expected}");
    let message = String::from_utf8(failed.stderr).unwrap();
    assert!(message.contains(expected), "{expected} in {message}");
    message
}

fn verify(files: &[&Path]) -> std::process::Output {
    Command::new(BIN)
        .args(["audit", "verify"])
        .args(files)
        .output()
        .unwrap()
}

fn write_lines<'a>(path: &Path, lines: impl Iterator<Item = &'a str>) {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Starts the binary routing org_a to `up`, with a 1 s checkpoint interval, the instance name `name`, both
/// listeners on port 0, JSON logs on a piped stderr and audit lines on a piped stdout.
fn spawn_gateway(dir: &Path, key: &TestKey, up: &Upstream, name: &str) -> std::process::Child {
    common::binary::spawn_gateway(
        dir,
        key,
        &format!(
            "routes:\n  - {{org: org_a, upstream: '{}', tenant: acme}}\n",
            up.addr
        ),
        "audit:\n  checkpoint_seconds: 1\n",
        &[("BULKHEAD_GATEWAY_INSTANCE", name)],
        Stdio::piped(),
    )
}
