//! Key rotation and key outages against the running gateway: a rotated-in key works at once through the
//! unknown-kid refetch, a rotated-out key stops working (even for a token verified and cached before), every
//! JWKS failure keeps the last good keys and fails closed on unknown kids, and key files are reloaded on change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

fn config(jwks_url: &str, upstream: &str, refetch_seconds: u64) -> (String, String) {
    let config = format!(
        r#"
listen: 127.0.0.1:0
admin: 127.0.0.1:0
issuers:
  - issuer: {ISS_A}
    algorithms: [RS256, ES256]
    jwks_url: {jwks_url}
  - issuer: {ISS_B}
    algorithms: [ES256]
    jwks_file: "{{dir}}/b.json"
keys:
  refresh_seconds: 3600
  retry_seconds: 3600
  unknown_kid_refetch_seconds: {refetch_seconds}
  fetch_timeout_ms: 500
  max_jwks_bytes: 65536
routes:
  source: file
  file: "{{dir}}/routes.yaml"
"#
    );
    let routes = format!("routes:\n  - {{org: org_a, upstream: '{upstream}', tenant: acme}}\n");
    (config, routes)
}

fn token(key: &TestKey, sub: &str) -> String {
    let mut claims = claims_a("org_a");
    claims["sub"] = json!(sub);
    key.sign(&claims)
}

async fn readyz(gw: &Gateway) -> u16 {
    let req = "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    Answer::parse(&raw(gw.running.admin_addr, req.as_bytes()).await).status
}

#[tokio::test]
async fn rotation_new_key_works_at_once_and_the_old_one_stops() {
    let old = TestKey::load("rsa-a.pem", "k-old", Algorithm::RS256);
    let new = TestKey::load("ec-a.pem", "k-new", Algorithm::ES256);
    let b = TestKey::load("ec-b.pem", "b1", Algorithm::ES256);
    let jwks = JwksServer::start(&[old.jwk(true)]).await;
    let up = Upstream::start("A").await;
    let (config, routes) = config(&jwks.url(), &up.addr.to_string(), 0);
    let b_jwks = json!({"keys": [b.jwk(false)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("b.json", b_jwks)]).await;

    let cached = token(&old, "user_cached");
    assert_eq!(gw.get_with(&cached, "/", &[]).await.status, 200);
    assert_eq!(
        gw.get_with(&cached, "/", &[]).await.status,
        200,
        "served from the cache"
    );

    // Rotation: the new key is published and the old one removed.
    jwks.serve_keys(&[new.jwk(false)]);
    let fetches = jwks.fetch_count();
    let answer = gw.get_with(&token(&new, "user_new"), "/", &[]).await;
    assert_eq!(
        answer.status, 200,
        "the unknown kid triggered one refetch: {answer:?}"
    );
    assert_eq!(jwks.fetch_count(), fetches + 1);

    // The rotated-out key no longer verifies anything, not even the token verified before the rotation.
    let answer = gw.get_with(&cached, "/", &[]).await;
    assert_eq!(
        (answer.status, answer.denial()),
        (401, ("key".into(), "unknown_kid".into()))
    );
    let answer = gw.get_with(&token(&old, "user_fresh"), "/", &[]).await;
    assert_eq!(answer.denial(), ("key".into(), "unknown_kid".into()));
    assert_eq!(up.count(), 3);
    gw.running.shutdown().await;
}

#[tokio::test]
async fn outage_keeps_last_good_keys_and_fails_closed_on_unknown_kids() {
    let good = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let unknown = TestKey::load("ec-a.pem", "k9", Algorithm::ES256);
    let b = TestKey::load("ec-b.pem", "b1", Algorithm::ES256);
    let jwks = JwksServer::start(&[good.jwk(true)]).await;
    let up = Upstream::start("A").await;
    let (config, routes) = config(&jwks.url(), &up.addr.to_string(), 0);
    let b_jwks = json!({"keys": [b.jwk(false)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("b.json", b_jwks)]).await;
    assert_eq!(gw.get_with(&token(&good, "u0"), "/", &[]).await.status, 200);

    let redirect_target = format!("http://{}/attacker-jwks", jwks.addr);
    let modes = [
        ("JWKS 500", JwksMode::Status(500)),
        ("JWKS bad JSON", JwksMode::Serve("{not json".into())),
        ("JWKS empty", JwksMode::Serve(r#"{"keys":[]}"#.into())),
        (
            "JWKS only a kty:oct key",
            JwksMode::Serve(r#"{"keys":[{"kty":"oct","kid":"k9","k":"c2VjcmV0"}]}"#.into()),
        ),
        ("JWKS 10 MB", JwksMode::Huge(10 * 1024 * 1024)),
        ("JWKS cross-host redirect", JwksMode::Redirect(redirect_target)),
        ("JWKS timeout", JwksMode::Hang),
    ];
    for (i, (case, mode)) in modes.into_iter().enumerate() {
        jwks.set(mode);
        assert!(
            gw.running.keys.load(0).await.is_err(),
            "{case}: the refresh must fail"
        );
        let answer = gw.get_with(&token(&good, &format!("u{}", i + 1)), "/", &[]).await;
        assert_eq!(
            answer.status, 200,
            "{case}: the last good key must still work: {answer:?}"
        );
        let answer = gw.get_with(&token(&unknown, &format!("x{i}")), "/", &[]).await;
        assert_eq!(
            (answer.status, answer.denial()),
            (401, ("key".into(), "unknown_kid".into())),
            "{case}: an unknown kid fails closed"
        );
        assert_eq!(
            readyz(&gw).await,
            200,
            "{case}: still ready on the last good keys"
        );
    }
    assert_eq!(
        jwks.other_hits.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
    gw.running.shutdown().await;
}

#[tokio::test]
async fn an_issuer_whose_keys_never_loaded_answers_503_until_they_do() {
    let good = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let b = TestKey::load("ec-b.pem", "b1", Algorithm::ES256);
    let jwks = JwksServer::start(&[]).await;
    jwks.set(JwksMode::Status(503));
    let up = Upstream::start("A").await;
    let (config, routes) = config(&jwks.url(), &up.addr.to_string(), 3600);
    let b_jwks = json!({"keys": [b.jwk(false)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("b.json", b_jwks)]).await;
    assert_eq!(readyz(&gw).await, 503);
    let answer = gw.get_with(&token(&good, "u"), "/", &[]).await;
    assert_eq!(
        (answer.status, answer.denial()),
        (503, ("key".into(), "keys_unavailable".into()))
    );
    assert_eq!(gw.last_audit()["reason"], "keys_unavailable");

    jwks.serve_keys(&[good.jwk(true)]);
    assert_eq!(gw.running.keys.load(0).await.ok(), Some(true));
    assert_eq!(readyz(&gw).await, 200);
    assert_eq!(gw.get_with(&token(&good, "u2"), "/", &[]).await.status, 200);
    assert_eq!(up.count(), 1);
    gw.running.shutdown().await;
}

#[tokio::test]
async fn key_files_are_reloaded_when_they_change_and_bad_files_keep_the_old_keys() {
    let jwks_a = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let b1 = TestKey::load("ec-b.pem", "b1", Algorithm::ES256);
    let b2 = TestKey::load("ec-a.pem", "b2", Algorithm::ES256);
    let jwks = JwksServer::start(&[jwks_a.jwk(true)]).await;
    let up = Upstream::start("A").await;
    let (config, routes) = config(&jwks.url(), &up.addr.to_string(), 3600);
    let gw = Gateway::start(
        &config,
        &[
            ("routes.yaml", routes),
            ("b.json", json!({"keys": [b1.jwk(false)]}).to_string()),
        ],
    )
    .await;
    let b_token = |key: &TestKey, sub: &str| {
        key.sign(&json!({"iss": ISS_B, "sub": sub, "exp": now() + 60, "org_id": "org_a"}))
    };
    assert_eq!(gw.get_with(&b_token(&b1, "1"), "/", &[]).await.status, 200);
    let path = gw.dir.path().join("b.json");

    assert_eq!(
        gw.running.keys.load(1).await.ok(),
        Some(false),
        "unchanged file: nothing swapped"
    );
    std::fs::write(&path, "{broken").unwrap();
    assert!(gw.running.keys.load(1).await.is_err());
    assert_eq!(
        gw.get_with(&b_token(&b1, "2"), "/", &[]).await.status,
        200,
        "last good keys kept"
    );

    std::fs::write(&path, json!({"keys": [b2.jwk(false)]}).to_string()).unwrap();
    assert_eq!(gw.running.keys.load(1).await.ok(), Some(true));
    assert_eq!(gw.get_with(&b_token(&b2, "3"), "/", &[]).await.status, 200);
    let answer = gw.get_with(&b_token(&b1, "4"), "/", &[]).await;
    assert_eq!(answer.denial(), ("key".into(), "unknown_kid".into()));
    gw.running.shutdown().await;
}
