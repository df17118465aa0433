//! One set of key rules on every loading path. Each defect (RSA modulus of 512 or 1024 bits, RSA exponent 1 or
//! even, an EC point off its curve, `key_ops` without `verify`) is refused from PEM files in the configuration
//! (the gateway does not start, and says which key), from a JWKS file and from a JWKS URL (the key is skipped
//! with a log line and a metric, the good keys of the same document still load and verify).
//!
//! The defective keys are built here from the test keys in `tests/keys/`: their components are changed and
//! encoded again (as a JWK, or as a SubjectPublicKeyInfo in PEM), so no weak key file is kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bulkhead_gateway::audit::MemoryAudit;
use bulkhead_gateway::config::{FileConfig, Settings};
use bulkhead_gateway::server::{self, StartOptions};
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

/// A modulus of exactly `bits` bits (odd, with the top bit set).
fn modulus(bits: usize) -> Vec<u8> {
    let mut n = vec![0xc5u8; bits / 8];
    n[0] |= 0x80;
    n
}

fn b64(value: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value.as_str().unwrap()).unwrap()
}

fn rsa_a() -> TestKey {
    TestKey::load("rsa-a.pem", "good-rsa", Algorithm::RS256)
}

fn ec_a() -> TestKey {
    TestKey::load("ec-a.pem", "good-ec", Algorithm::ES256)
}

/// The real modulus of `rsa-a`.
fn rsa_a_n() -> Vec<u8> {
    b64(&rsa_a().jwk(false)["n"])
}

/// The point of `ec-a` with the last byte of y changed: not on P-256.
fn off_curve_point() -> (Vec<u8>, Vec<u8>) {
    let jwk = ec_a().jwk(false);
    let mut y = b64(&jwk["y"]);
    *y.last_mut().unwrap() ^= 1;
    (b64(&jwk["x"]), y)
}

/// The defects, as (kid, reason): every loading path must refuse each of them.
const DEFECTS: [(&str, &str); 5] = [
    ("rsa-512", "weak_rsa"),
    ("rsa-1024", "weak_rsa"),
    ("rsa-e1", "rsa_exponent"),
    ("rsa-e-even", "rsa_exponent"),
    ("ec-off-curve", "ec_point"),
];

/// The RSA (n, e) or EC (x, y) of a defect.
fn components(kid: &str) -> (Vec<u8>, Vec<u8>) {
    let f4 = vec![1, 0, 1];
    match kid {
        "rsa-512" => (modulus(512), f4),
        "rsa-1024" => (modulus(1024), f4),
        "rsa-e1" => (rsa_a_n(), vec![1]),
        "rsa-e-even" => (rsa_a_n(), vec![1, 0, 2]), // 65538: large enough, but even
        "ec-off-curve" => off_curve_point(),
        other => panic!("{other}"),
    }
}

fn defect_jwk(kid: &str) -> Value {
    let (a, b) = components(kid);
    if kid.starts_with("ec") {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": URL_SAFE_NO_PAD.encode(a), "y": URL_SAFE_NO_PAD.encode(b)})
    } else {
        json!({"kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode(a), "e": URL_SAFE_NO_PAD.encode(b)})
    }
}

// DER, just enough for a SubjectPublicKeyInfo.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    match len {
        0..0x80 => out.push(len as u8),
        0x80..0x100 => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        vec![0]
    } else {
        Vec::new()
    };
    content.extend(trimmed);
    der(0x02, &content)
}

fn spki_pem(algorithm: &[u8], key: &[u8]) -> String {
    let mut bits = vec![0u8];
    bits.extend_from_slice(key);
    let spki = der(0x30, &[der(0x30, algorithm), der(0x03, &bits)].concat());
    let body: Vec<String> = STANDARD
        .encode(spki)
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        body.join("\n")
    )
}

fn rsa_pem(n: &[u8], e: &[u8]) -> String {
    let rsa_encryption = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let algorithm = [der(0x06, &rsa_encryption), vec![0x05, 0x00]].concat();
    spki_pem(&algorithm, &der(0x30, &[integer(n), integer(e)].concat()))
}

fn ec_pem(x: &[u8], y: &[u8]) -> String {
    let ec_public_key = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let p256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let algorithm = [der(0x06, &ec_public_key), der(0x06, &p256)].concat();
    spki_pem(&algorithm, &[&[4u8][..], x, y].concat())
}

fn defect_pem(kid: &str) -> String {
    let (a, b) = components(kid);
    if kid.starts_with("ec") {
        ec_pem(&a, &b)
    } else {
        rsa_pem(&a, &b)
    }
}

#[test]
fn the_encoders_reproduce_the_test_keys() {
    // The defective PEM files differ from these only in the changed component.
    let jwk = rsa_a().jwk(false);
    let file = std::fs::read_to_string(key_path("rsa-a.pub.pem")).unwrap();
    assert_eq!(rsa_pem(&b64(&jwk["n"]), &b64(&jwk["e"])), file);
    let jwk = ec_a().jwk(false);
    let file = std::fs::read_to_string(key_path("ec-a.pub.pem")).unwrap();
    assert_eq!(ec_pem(&b64(&jwk["x"]), &b64(&jwk["y"])), file);
}

fn routes(upstream: &str) -> String {
    format!("routes:\n  - {{org: org_a, upstream: '{upstream}', tenant: acme}}\n")
}

fn config(source: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nissuers:\n  - issuer: {ISS_A}\n    algorithms: [RS256, ES256]\n{source}\nkeys: {{refresh_seconds: 3600, retry_seconds: 3600, unknown_kid_refetch_seconds: 0}}\nroutes: {{source: file, file: \"{{dir}}/routes.yaml\"}}\n"
    )
}

async fn start(config: &str, dir: &tempfile::TempDir) -> Result<server::Running, server::StartError> {
    let text = config.replace("{dir}", dir.path().to_str().unwrap());
    let settings = Settings::from_file(FileConfig::parse(&text).unwrap()).unwrap();
    server::start(
        settings,
        StartOptions {
            audit: Arc::new(MemoryAudit::default()),
            kube: None,
        },
    )
    .await
}

#[tokio::test]
async fn a_pem_key_that_breaks_a_rule_stops_the_start_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("routes.yaml"), routes("127.0.0.1:9")).unwrap();
    let good = format!(
        "      - {{kid: good-rsa, algorithm: RS256, path: \"{}\"}}\n",
        key_path("rsa-a.pub.pem").display()
    );
    for (kid, reason) in DEFECTS {
        let path = dir.path().join(format!("{kid}.pem"));
        std::fs::write(&path, defect_pem(kid)).unwrap();
        let alg = if kid.starts_with("ec") { "ES256" } else { "RS256" };
        let pem_keys = format!(
            "    pem_keys:\n{good}      - {{kid: {kid}, algorithm: {alg}, path: \"{}\"}}",
            path.display()
        );
        let error = match start(&config(&pem_keys), &dir).await {
            Ok(running) => {
                running.shutdown().await;
                panic!("{kid}: the gateway started");
            }
            Err(error) => error.to_string(),
        };
        assert!(error.contains(&format!("issuer {ISS_A}")), "{kid}: {error}");
        assert!(
            error.contains(&format!("PEM key {kid} ({})", path.display())),
            "{kid}: {error}"
        );
        let why = match reason {
            "weak_rsa" => "RSA modulus shorter than 2048 bits",
            "rsa_exponent" => "RSA public exponent even or smaller than 65537",
            _ => "EC point not on the curve",
        };
        assert!(error.ends_with(why), "{kid}: {error}");
    }
    // The same configuration with only the good key starts.
    let running = start(&config(&format!("    pem_keys:\n{good}")), &dir)
        .await
        .unwrap();
    assert!(running.keys.is_ready());
    running.shutdown().await;
}

/// A tracing subscriber for the current thread that keeps what it writes.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A JWKS with two good keys (the EC one with `key_ops: [verify]`), every defect, and an RSA key whose
/// `key_ops` allow only `sign`.
fn mixed_jwks() -> Vec<Value> {
    let mut good_ec = ec_a().jwk(false);
    good_ec["key_ops"] = json!(["verify"]);
    let mut sign_only = TestKey::load("rsa-b.pem", "key-ops-sign", Algorithm::RS256).jwk(false);
    sign_only["key_ops"] = json!(["sign"]);
    let mut keys = vec![rsa_a().jwk(false), good_ec, sign_only];
    keys.extend(DEFECTS.iter().map(|(kid, _)| defect_jwk(kid)));
    keys
}

async fn metrics(gw: &Gateway) -> String {
    let req = "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    Answer::parse(&raw(gw.running.admin_addr, req.as_bytes()).await).body
}

/// Starts a gateway whose issuer A has `source` (the mixed JWKS) and checks what was kept and what skipped.
async fn skipped_and_counted(source: &str, files: &[(&str, String)]) {
    let logs = Logs::default();
    let _guard = logs.capture();
    let up = Upstream::start("A").await;
    let mut files = files.to_vec();
    files.push(("routes.yaml", routes(&up.addr.to_string())));
    let gw = Gateway::start(&config(source), &files).await;

    // The good keys of the same document load and verify.
    for key in [rsa_a(), ec_a()] {
        let answer = gw.get_with(&key.sign(&claims_a("org_a")), "/", &[]).await;
        assert_eq!(answer.status, 200, "{}: {answer:?}", key.kid);
    }
    // The refused ones are not there, even for tokens their (valid) private keys sign.
    for (file, kid) in [
        ("rsa-a.pem", "rsa-e1"),
        ("rsa-a.pem", "rsa-e-even"),
        ("rsa-b.pem", "key-ops-sign"),
    ] {
        let token = TestKey::load(file, kid, Algorithm::RS256).sign(&claims_a("org_a"));
        let answer = gw.get_with(&token, "/", &[]).await;
        assert_eq!(
            answer.denial(),
            ("key".into(), "unknown_kid".into()),
            "{kid}: {answer:?}"
        );
    }
    assert_eq!(up.count(), 2);

    let text = metrics(&gw).await;
    for (reason, count) in [
        ("weak_rsa", 2),
        ("rsa_exponent", 2),
        ("ec_point", 1),
        ("key_ops_not_verify", 1),
    ] {
        let line =
            format!(r#"bulkhead_gateway_keys_skipped_total{{issuer="{ISS_A}",reason="{reason}"}} {count}"#);
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    let keys = format!(r#"bulkhead_gateway_keys{{issuer="{ISS_A}"}} 2"#);
    assert!(text.lines().any(|l| l == keys), "{keys} in:\n{text}");

    let lines = logs.lines();
    let mut expected: Vec<(&str, &str)> = DEFECTS.to_vec();
    expected.push(("key-ops-sign", "key_ops_not_verify"));
    for (kid, reason) in expected {
        let found = lines.iter().filter(|l| {
            l.contains("JWK skipped")
                && l.contains(&format!("kid=\"{kid}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        });
        assert_eq!(
            found.count(),
            1,
            "one log line for {kid} ({reason}) in:\n{lines:#?}"
        );
    }
    gw.running.shutdown().await;
}

#[tokio::test]
async fn jwks_file_keys_that_break_a_rule_are_skipped_logged_and_counted() {
    let doc = json!({"keys": mixed_jwks()}).to_string();
    skipped_and_counted("    jwks_file: \"{dir}/a.json\"", &[("a.json", doc)]).await;
}

#[tokio::test]
async fn jwks_url_keys_that_break_a_rule_are_skipped_logged_and_counted() {
    let jwks = JwksServer::start(&mixed_jwks()).await;
    skipped_and_counted(&format!("    jwks_url: {}", jwks.url()), &[]).await;
}
