//! Explicit typing against the running gateway: a validly signed token whose header `typ` is not `JWT` or a
//! configured type is refused at gate `typ`, in the answer and in the audit line; no `typ`, `JWT` and the
//! configured type (in any case, with or without `application/`) are accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

async fn gateway(tokens: &str) -> (Gateway, Upstream, TestKey) {
    let key = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let up = Upstream::start("A").await;
    let config = config_a(&format!(
        "{tokens}routes:\n  source: file\n  file: \"{{dir}}/routes.yaml\"\n"
    ));
    let routes = format!(
        "routes:\n  - {{org: org_a, upstream: '{}', tenant: acme}}\n",
        up.addr
    );
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("a.json", jwks)]).await;
    (gw, up, key)
}

fn token(key: &TestKey, typ: Option<Value>) -> String {
    let mut header = json!({"alg": "RS256", "kid": key.kid});
    if let Some(typ) = typ {
        header["typ"] = typ;
    }
    key.sign_with_header(&header, &claims_a("org_a"))
}

async fn refused(gw: &Gateway, token: &str, reason: &str, case: &str) {
    let answer = gw.get_with(token, "/", &[]).await;
    assert_eq!(
        (answer.status, answer.denial()),
        (401, ("typ".into(), reason.into())),
        "{case}: {answer:?}"
    );
    let line = gw.last_audit();
    assert_eq!(
        (line["gate"].as_str(), line["reason"].as_str()),
        (Some("typ"), Some(reason)),
        "{case}: {line}"
    );
}

#[tokio::test]
async fn typ_is_absent_jwt_or_configured() {
    let (gw, up, key) = gateway("tokens:\n  allowed_typ: [at+jwt]\n").await;
    for typ in [
        None,
        Some("JWT"),
        Some("jwt"),
        Some("at+jwt"),
        Some("AT+JWT"),
        Some("application/at+jwt"),
    ] {
        let answer = gw.get_with(&token(&key, typ.map(Value::from)), "/", &[]).await;
        assert_eq!(answer.status, 200, "{typ:?}: {answer:?}");
    }
    assert_eq!(up.count(), 6);
    for typ in ["JWE", "JOSE", "logout+jwt", "application/jwe"] {
        refused(&gw, &token(&key, Some(json!(typ))), "not_allowed", typ).await;
    }
    refused(&gw, &token(&key, Some(json!(["JWT"]))), "invalid", "array").await;
    refused(&gw, &token(&key, Some(Value::Null)), "invalid", "null").await;
    assert_eq!(up.count(), 6, "no refused token reached the stack");
    gw.running.shutdown().await;
}

#[tokio::test]
async fn without_configuration_only_jwt_is_accepted() {
    let (gw, up, key) = gateway("").await;
    assert_eq!(
        gw.get_with(&token(&key, Some(json!("JWT"))), "/", &[])
            .await
            .status,
        200
    );
    refused(&gw, &token(&key, Some(json!("at+jwt"))), "not_allowed", "at+jwt").await;
    refused(&gw, &token(&key, Some(json!("JWE"))), "not_allowed", "JWE").await;
    assert_eq!(up.count(), 1);
    gw.running.shutdown().await;
}
