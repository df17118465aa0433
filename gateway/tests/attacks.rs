//! The attack checklist of anchors-gateway.md §2 against the real gateway over loopback. Each case names its
//! checklist line and asserts the status, the gate and reason in the body, the audit line, and that no upstream
//! saw anything. Positive controls show that org A and org B reach exactly their own upstreams with one set of
//! identity headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// A spoofing case: its name, the extra headers, the path.
type Spoof<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

struct World {
    gw: Gateway,
    jwks: JwksServer,
    a: Upstream,
    b: Upstream,
    d: Upstream,
    rsa_a: TestKey,
    ec_a: TestKey,
    ec_b: TestKey,
}

impl World {
    fn upstream_total(&self) -> usize {
        self.a.count() + self.b.count() + self.d.count()
    }

    /// Sends `bytes`; expects a denial by `gate`/`reason` with `status`, one matching audit line, no upstream.
    async fn denied(&self, case: &str, bytes: &[u8], status: u16, gate: &str, reason: &str) {
        let before_up = self.upstream_total();
        let before_audit = self.gw.audit_count();
        let answer = Answer::parse(&self.gw.raw(bytes).await);
        assert_eq!(answer.status, status, "{case}: {answer:?}");
        assert_eq!(answer.denial(), (gate.to_owned(), reason.to_owned()), "{case}");
        assert_eq!(
            self.upstream_total(),
            before_up,
            "{case}: an upstream saw the request"
        );
        assert_eq!(self.gw.audit_count(), before_audit + 1, "{case}: one audit line");
        let line = self.gw.last_audit();
        assert_eq!(line["decision"], "deny", "{case}");
        assert_eq!(
            (line["gate"].as_str(), line["reason"].as_str()),
            (Some(gate), Some(reason)),
            "{case}"
        );
        assert_eq!(line["status"], status, "{case}");
        assert!(
            line["tenant"].is_null(),
            "{case}: no tenant on a denial before the route"
        );
    }

    async fn denied_token(&self, case: &str, token: &str, status: u16, gate: &str, reason: &str) {
        let auth = format!("Bearer {token}");
        self.denied(
            case,
            request("GET", "/x", &[("Authorization", &auth)], "").as_bytes(),
            status,
            gate,
            reason,
        )
        .await;
        let line = self.gw.last_audit().to_string();
        if token.len() > 16 {
            assert!(!line.contains(token), "{case}: the token is in the audit line");
        }
    }

    /// Framing the HTTP parser itself refuses: 400, nothing forwarded, and an audit line for hyper's decision.
    async fn refused_by_parser(&self, case: &str, bytes: &[u8]) {
        let before_up = self.upstream_total();
        let before_audit = self.gw.audit_count();
        let answer = Answer::parse(&self.gw.raw(bytes).await);
        assert_eq!(answer.status, 400, "{case}: {answer:?}");
        assert_eq!(
            self.upstream_total(),
            before_up,
            "{case}: an upstream saw the request"
        );
        let line = self.gw.audit_line_after(before_audit).await;
        assert_eq!(
            (
                line["gate"].as_str(),
                line["reason"].as_str(),
                line["status"].as_u64()
            ),
            (Some("request"), Some("malformed_http"), Some(400)),
            "{case}"
        );
        // The request was never read: its method and path are recorded as unknown, not made up.
        assert_eq!(
            (&line["event"], &line["method"], &line["path"]),
            (&json!("request"), &Value::Null, &Value::Null),
            "{case}"
        );
    }
}

async fn world() -> World {
    let rsa_a = TestKey::load("rsa-a.pem", "a-rsa", Algorithm::RS256);
    let ec_a = TestKey::load("ec-a.pem", "a-ec", Algorithm::ES256);
    let ec_b = TestKey::load("ec-b.pem", "b1", Algorithm::ES256);
    let p384 = TestKey::load("ec384.pem", "a-p384", Algorithm::ES384);
    let jwks = JwksServer::start(&[
        rsa_a.jwk(true),
        ec_a.jwk(false),
        p384.jwk(false),
        json!({"kty": "oct", "kid": "a-hmac", "k": URL_SAFE_NO_PAD.encode(b"secret")}),
    ])
    .await;
    let (a, b, d) = (
        Upstream::start("A").await,
        Upstream::start("B").await,
        Upstream::start("D").await,
    );
    let routes = format!(
        "routes:\n  - {{org: org_a, upstream: '{}', tenant: acme}}\n  - {{org: org_b, upstream: '{}', tenant: beta}}\n  - {{org: org_d, upstream: '{}', tenant: acme, customer: dental}}\n  - {{org: org_c, upstream: '{}', tenant: acme}}\n  - {{org: org_c, upstream: '{}', tenant: beta}}\n",
        a.addr, b.addr, d.addr, a.addr, b.addr
    );
    let config = format!(
        r#"
listen: 127.0.0.1:0
admin: 127.0.0.1:0
issuers:
  - issuer: {ISS_A}
    algorithms: [RS256, ES256, PS256]
    jwks_url: {}
    allowed_azp: [{AZP}]
    require_azp: true
    aud: {{mode: forbid}}
  - issuer: {ISS_B}
    algorithms: [ES256]
    jwks_file: "{{dir}}/b.json"
keys:
  refresh_seconds: 3600
  retry_seconds: 3600
  unknown_kid_refetch_seconds: 3600
routes:
  source: file
  file: "{{dir}}/routes.yaml"
"#,
        jwks.url()
    );
    let b_jwks = json!({"keys": [ec_b.jwk(false)]}).to_string();
    let gw = Gateway::start(&config, &[("routes.yaml", routes), ("b.json", b_jwks)]).await;
    World {
        gw,
        jwks,
        a,
        b,
        d,
        rsa_a,
        ec_a,
        ec_b,
    }
}

fn with(mut claims: Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    f(claims.as_object_mut().unwrap());
    claims
}

fn hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret);
    bulkhead_gateway::mint::sign_raw(
        &json!({"alg": "HS256", "kid": kid}).to_string(),
        &claims.to_string(),
        &key,
        Algorithm::HS256,
    )
    .unwrap()
}

#[tokio::test]
async fn positive_controls_reach_exactly_their_own_upstream() {
    let w = world().await;
    let ok =
        w.gw.get_with(&w.rsa_a.sign(&claims_a("org_a")), "/hello?x=1", &[])
            .await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "A"));
    let seen = w.a.last();
    assert_eq!(seen.path, "/hello?x=1");
    assert_eq!(seen.all("x-bulkhead-org"), vec!["org_a"]);
    assert_eq!(seen.all("x-bulkhead-tenant"), vec!["acme"]);
    assert_eq!(seen.all("x-bulkhead-subject"), vec!["user_1"]);
    assert!(seen.all("x-bulkhead-customer").is_empty());
    assert!(
        seen.all("authorization").is_empty(),
        "Authorization is stripped by default"
    );
    let line = w.gw.last_audit();
    assert_eq!(
        (
            line["decision"].as_str(),
            line["org"].as_str(),
            line["tenant"].as_str()
        ),
        (Some("allow"), Some("org_a"), Some("acme"))
    );
    assert_eq!(line["status"], 200);
    assert_eq!(line["token_sha256"].as_str().map(str::len), Some(64));

    // Issuer B, Clerk v1 token, keys from a JWKS file.
    let now = now();
    let b = w
        .ec_b
        .sign(&json!({"iss": ISS_B, "sub": "user_b", "exp": now + 60, "org_id": "org_b"}));
    let ok = w.gw.get_with(&b, "/", &[]).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "B"));
    assert_eq!(w.b.last().all("x-bulkhead-org"), vec!["org_b"]);
    assert_eq!(w.b.last().all("x-bulkhead-tenant"), vec!["beta"]);

    // A Customer's org goes to the Customer's upstream, with its customer header.
    let ok = w.gw.get_with(&w.ec_a.sign(&claims_a("org_d")), "/", &[]).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "D"));
    assert_eq!(w.d.last().all("x-bulkhead-customer"), vec!["dental"]);
    assert_eq!(w.d.last().all("x-bulkhead-tenant"), vec!["acme"]);

    assert_eq!(
        (w.a.count(), w.b.count(), w.d.count()),
        (1, 1, 1),
        "each upstream saw exactly its own request"
    );

    // Expired within the leeway still passes; `act` is allowed and audited.
    let t = w.rsa_a.sign(&with(claims_a("org_a"), |c| {
        c.insert("exp".into(), json!(now - 10));
        c.insert("act".into(), json!({"sub": "user_admin", "iss": "x", "sid": "s"}));
    }));
    assert_eq!(w.gw.get_with(&t, "/", &[]).await.status, 200);
    assert_eq!(w.gw.last_audit()["impersonator"], "user_admin");
    assert_eq!(w.a.last().all("x-bulkhead-impersonator"), vec!["user_admin"]);

    // v2 with a custom org_id is routed by o.id only.
    let t = w.rsa_a.sign(&with(claims_a("org_a"), |c| {
        c.insert("org_id".into(), json!("org_b"));
    }));
    assert_eq!(w.gw.get_with(&t, "/", &[]).await.body, "A");
    w.gw.running.shutdown().await;
}

#[tokio::test]
async fn line1_token_transport() {
    let w = world().await;
    let good = w.rsa_a.sign(&claims_a("org_a"));
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("no token", request("GET", "/", &[], ""), 401, "token", "missing"),
        (
            "empty Bearer",
            request("GET", "/", &[("Authorization", "Bearer ")], ""),
            401,
            "token",
            "empty",
        ),
        (
            "double space",
            request("GET", "/", &[("Authorization", &format!("Bearer  {good}"))], ""),
            400,
            "token",
            "malformed",
        ),
        (
            "two Authorization headers",
            request(
                "GET",
                "/",
                &[
                    ("Authorization", &format!("Bearer {good}")),
                    ("Authorization", &format!("Bearer {good}")),
                ],
                "",
            ),
            400,
            "token",
            "multiple_authorization_headers",
        ),
        (
            "token only in query",
            request("GET", &format!("/?access_token={good}&token={good}"), &[], ""),
            401,
            "token",
            "missing",
        ),
        (
            "token only in form",
            request(
                "POST",
                "/",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                &format!("access_token={good}"),
            ),
            401,
            "token",
            "missing",
        ),
        (
            "token only in cookie",
            request("GET", "/", &[("Cookie", &format!("__session={good}"))], ""),
            401,
            "token",
            "missing",
        ),
        (
            "Basic scheme",
            request("GET", "/", &[("Authorization", "Basic dXNlcjpwYXNz")], ""),
            401,
            "token",
            "not_bearer",
        ),
    ];
    for (case, req, status, gate, reason) in cases {
        w.denied(case, req.as_bytes(), status, gate, reason).await;
    }
    // The query never ends up in an audit line.
    assert!(
        !w.gw
            .audit
            .lines()
            .iter()
            .any(|l| l.to_string().contains("access_token"))
    );
}

#[tokio::test]
async fn line2_algorithms_and_keys() {
    let w = world().await;
    let c = claims_a("org_a");
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = |h: Value| format!("{}.{}.{}", b64(&h), b64(&c), URL_SAFE_NO_PAD.encode(b"x"));
    for (case, alg) in [("alg none", "none"), ("alg None", "None"), ("alg NONE", "NONE")] {
        w.denied_token(
            case,
            &unsigned(json!({"alg": alg, "kid": "a-rsa"})),
            401,
            "alg",
            "none",
        )
        .await;
    }
    w.denied_token(
        "alg missing",
        &unsigned(json!({"kid": "a-rsa"})),
        401,
        "alg",
        "missing",
    )
    .await;

    let pem = std::fs::read(key_path("rsa-a.pub.pem")).unwrap();
    w.denied_token(
        "HS256 keyed with the PEM bytes",
        &hs256(&pem, "a-rsa", &c),
        401,
        "alg",
        "symmetric",
    )
    .await;
    let der = URL_SAFE_NO_PAD
        .decode(w.rsa_a.jwk(false)["n"].as_str().unwrap())
        .unwrap();
    w.denied_token(
        "HS256 keyed with the JWK n",
        &hs256(&der, "a-rsa", &c),
        401,
        "alg",
        "symmetric",
    )
    .await;
    w.denied_token(
        "HS256 keyed with the key path",
        &hs256(
            key_path("rsa-a.pub.pem").to_str().unwrap().as_bytes(),
            "a-rsa",
            &c,
        ),
        401,
        "alg",
        "symmetric",
    )
    .await;
    w.denied_token(
        "HS256 with the kty:oct kid",
        &hs256(b"secret", "a-hmac", &c),
        401,
        "alg",
        "symmetric",
    )
    .await;
    w.denied_token(
        "RS256 naming the kty:oct kid",
        &w.rsa_a
            .sign_with_header(&json!({"alg": "RS256", "kid": "a-hmac"}), &c),
        401,
        "key",
        "unknown_kid",
    )
    .await;

    let wrong_rsa = TestKey::load("rsa-b.pem", "a-rsa", Algorithm::RS256);
    w.denied_token("wrong RSA key", &wrong_rsa.sign(&c), 401, "signature", "invalid")
        .await;
    let p384 = TestKey::load("ec384.pem", "a-ec", Algorithm::ES384);
    w.denied_token(
        "ES256 header signed with a P-384 key",
        &p384.sign_with_header(&json!({"alg": "ES256", "kid": "a-ec"}), &c),
        401,
        "signature",
        "invalid",
    )
    .await;
    w.denied_token(
        "ES384 (P-384 key not allowed)",
        &TestKey::load("ec384.pem", "a-p384", Algorithm::ES384).sign(&c),
        401,
        "alg",
        "not_allowed",
    )
    .await;
    w.denied_token(
        "EdDSA when not allowed",
        &TestKey::load("ed.pem", "a-ed", Algorithm::EdDSA).sign(&c),
        401,
        "alg",
        "not_allowed",
    )
    .await;
    let ps_on_rs = TestKey::load("rsa-a.pem", "a-rsa", Algorithm::PS256);
    w.denied_token(
        "PS256 on a JWK whose alg is RS256",
        &ps_on_rs.sign(&c),
        401,
        "key",
        "alg_mismatch",
    )
    .await;
    let es_header_rsa_kid = w
        .ec_a
        .sign_with_header(&json!({"alg": "ES256", "kid": "a-rsa"}), &c);
    w.denied_token(
        "ES256 naming an RSA key",
        &es_header_rsa_kid,
        401,
        "key",
        "alg_mismatch",
    )
    .await;
    // ECDSA psychic signature: r = s = 0.
    let input = format!("{}.{}", b64(&json!({"alg": "ES256", "kid": "a-ec"})), b64(&c));
    let zero = format!("{input}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    w.denied_token("ECDSA r=s=0", &zero, 401, "signature", "invalid")
        .await;
}

#[tokio::test]
async fn line3_kid_header_and_structure() {
    let w = world().await;
    let c = claims_a("org_a");
    let signed = |h: Value| w.rsa_a.sign_with_header(&h, &c);
    w.denied_token(
        "kid missing",
        &signed(json!({"alg": "RS256"})),
        401,
        "kid",
        "missing",
    )
    .await;
    let fetches = w.jwks.fetch_count();
    w.denied_token(
        "kid unknown",
        &signed(json!({"alg": "RS256", "kid": "nope"})),
        401,
        "key",
        "unknown_kid",
    )
    .await;
    assert_eq!(w.jwks.fetch_count(), fetches + 1, "one refetch on an unknown kid");
    w.denied_token(
        "kid unknown again",
        &signed(json!({"alg": "RS256", "kid": "nope2"})),
        401,
        "key",
        "unknown_kid",
    )
    .await;
    assert_eq!(w.jwks.fetch_count(), fetches + 1, "the refetch is rate limited");
    w.denied_token(
        "kid traversal",
        &signed(json!({"alg": "RS256", "kid": "../../etc/passwd"})),
        401,
        "key",
        "unknown_kid",
    )
    .await;
    w.denied_token(
        "kid 200 chars",
        &signed(json!({"alg": "RS256", "kid": "k".repeat(200)})),
        401,
        "kid",
        "too_long",
    )
    .await;
    w.denied_token(
        "kid 10 kB",
        &signed(json!({"alg": "RS256", "kid": "k".repeat(10_000)})),
        431,
        "token",
        "too_large",
    )
    .await;
    let other_issuers_kid = w.ec_b.sign_with_header(&json!({"alg": "ES256", "kid": "b1"}), &c);
    w.denied_token(
        "another issuer's kid",
        &other_issuers_kid,
        401,
        "key",
        "unknown_kid",
    )
    .await;

    let attacker = format!("http://{}/attacker", w.jwks.addr);
    for field in ["jku", "x5u"] {
        let t = signed(json!({"alg": "RS256", "kid": "a-rsa", field: attacker}));
        w.denied_token(
            &format!("{field} to attacker"),
            &t,
            401,
            "parse",
            "key_reference_in_header",
        )
        .await;
    }
    let t = signed(json!({"alg": "RS256", "kid": "a-rsa", "jwk": w.rsa_a.jwk(true)}));
    w.denied_token("embedded jwk", &t, 401, "parse", "key_reference_in_header")
        .await;
    let t = signed(json!({"alg": "RS256", "kid": "a-rsa", "x5c": ["MIIB"]}));
    w.denied_token("embedded x5c", &t, 401, "parse", "key_reference_in_header")
        .await;
    assert_eq!(
        w.jwks.other_hits.load(Ordering::SeqCst),
        0,
        "no outbound fetch to a token-named URL"
    );
    let t = signed(json!({"alg": "RS256", "kid": "a-rsa", "crit": ["exp"], "exp": 1}));
    w.denied_token("unknown crit", &t, 401, "parse", "crit_unsupported")
        .await;
    w.denied_token(
        "JWE five parts",
        "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
        401,
        "parse",
        "encrypted_token",
    )
    .await;
    let good = w.rsa_a.sign(&c);
    let (input, _) = good.rsplit_once('.').unwrap();
    w.denied_token(
        "empty signature",
        &format!("{input}."),
        401,
        "parse",
        "empty_part",
    )
    .await;
    // Flip the last base64 char of the signature to one with non-zero trailing bits where canonical had zero.
    let sig = good.rsplit_once('.').unwrap().1;
    let last = sig.chars().last().unwrap();
    let noncanonical = format!(
        "{}.{}{}",
        input,
        &sig[..sig.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    let answer = w.gw.get_with(&noncanonical, "/", &[]).await;
    assert_eq!(answer.status, 401);
    assert!(
        [
            ("parse".to_owned(), "invalid_base64".to_owned()),
            ("signature".to_owned(), "invalid".to_owned())
        ]
        .contains(&answer.denial()),
        "non-canonical base64: {answer:?}"
    );
    assert_eq!(w.upstream_total(), 0);
}

#[tokio::test]
async fn line4_time_claims_and_duplicates() {
    let w = world().await;
    let now = now();
    let exp = |v: Value| {
        w.rsa_a.sign(&with(claims_a("org_a"), |c| {
            c.insert("exp".into(), v);
        }))
    };
    let no_exp = w.rsa_a.sign(&with(claims_a("org_a"), |c| {
        c.remove("exp");
    }));
    w.denied_token("exp missing", &no_exp, 401, "time", "exp_missing")
        .await;
    for (case, v) in [
        ("exp \"123\"", json!("123")),
        ("exp float", json!(now as f64 + 30.5)),
        ("exp negative", json!(-1)),
        ("exp 1e300", json!(1e300)),
        ("exp null", json!(null)),
    ] {
        w.denied_token(case, &exp(v), 401, "time", "exp_invalid").await;
    }
    w.denied_token(
        "expired past the leeway",
        &exp(json!(now - 31)),
        401,
        "time",
        "expired",
    )
    .await;
    let nbf = w.rsa_a.sign(&with(claims_a("org_a"), |c| {
        c.insert("nbf".into(), json!(now + 120));
    }));
    w.denied_token("future nbf", &nbf, 401, "time", "not_yet_valid")
        .await;
    w.denied_token(
        "lifetime over max",
        &exp(json!(now + 7200)),
        401,
        "time",
        "lifetime_too_long",
    )
    .await;

    let header = r#"{"alg":"RS256","kid":"a-rsa"}"#;
    let base = format!(r#""iss":"{ISS_A}","sub":"u","azp":"{AZP}","v":2,"o":{{"id":"org_a"}}"#);
    for (case, claims) in [
        (
            "duplicate exp",
            format!(r#"{{{base},"exp":{},"exp":{}}}"#, now + 60, now - 1000),
        ),
        (
            "duplicate iss",
            format!(r#"{{{base},"exp":{},"iss":"https://evil"}}"#, now + 60),
        ),
        (
            "duplicate org",
            format!(r#"{{{base},"exp":{},"o":{{"id":"org_b"}}}}"#, now + 60),
        ),
        (
            "duplicate org inside o",
            format!(
                r#"{{"iss":"{ISS_A}","sub":"u","azp":"{AZP}","v":2,"exp":{},"o":{{"id":"org_a","id":"org_b"}}}}"#,
                now + 60
            ),
        ),
    ] {
        w.denied_token(
            case,
            &w.rsa_a.sign_raw(header, &claims),
            401,
            "parse",
            "duplicate_key",
        )
        .await;
    }
}

#[tokio::test]
async fn line5_issuer_and_audience() {
    let w = world().await;
    let iss = |v: Value| {
        w.rsa_a.sign(&with(claims_a("org_a"), |c| {
            c.insert("iss".into(), v);
        }))
    };
    w.denied_token(
        "iss wrong",
        &iss(json!("https://evil.example")),
        401,
        "iss",
        "not_allowed",
    )
    .await;
    w.denied_token(
        "iss trailing slash",
        &iss(json!(format!("{ISS_A}/"))),
        401,
        "iss",
        "not_allowed",
    )
    .await;
    w.denied_token("iss array", &iss(json!([ISS_A])), 401, "iss", "invalid")
        .await;
    w.denied_token(
        "Clerk dev issuer on prod",
        &iss(json!("https://happy-cat-1.clerk.accounts.dev")),
        401,
        "iss",
        "not_allowed",
    )
    .await;
    w.denied_token(
        "issuer B's iss on issuer A's key",
        &iss(json!(ISS_B)),
        401,
        "key",
        "unknown_kid",
    )
    .await;
    let azp = |v: Option<Value>| {
        w.rsa_a.sign(&with(claims_a("org_a"), |c| {
            match v {
                Some(v) => c.insert("azp".into(), v),
                None => c.remove("azp"),
            };
        }))
    };
    w.denied_token(
        "azp disallowed",
        &azp(Some(json!("https://evil.example"))),
        401,
        "aud",
        "azp_not_allowed",
    )
    .await;
    w.denied_token("azp missing", &azp(None), 401, "aud", "azp_missing")
        .await;
    let aud = w.rsa_a.sign(&with(claims_a("org_a"), |c| {
        c.insert("aud".into(), json!("api"));
    }));
    w.denied_token("aud on a session route", &aud, 401, "aud", "aud_present")
        .await;
}

#[tokio::test]
async fn line6_org_claim() {
    let w = world().await;
    let v1 = |org: Value| {
        w.rsa_a.sign(&with(claims_a("x"), |c| {
            c.remove("v");
            c.remove("o");
            c.insert("org_id".into(), org);
        }))
    };
    let v2_without_o = w.rsa_a.sign(&with(claims_a("x"), |c| {
        c.remove("o");
    }));
    w.denied_token(
        "org missing (v2 without o)",
        &v2_without_o,
        403,
        "org",
        "no_active_org",
    )
    .await;
    for (case, org, reason) in [
        ("org null", json!(null), "not_a_string"),
        ("org empty", json!(""), "empty"),
        ("org number", json!(42), "not_a_string"),
        ("org array", json!(["org_a"]), "not_a_string"),
        ("org object", json!({"id": "org_a"}), "not_a_string"),
        ("org ORG_aaa", json!("ORG_aaa"), "bad_shape"),
        ("org homoglyph", json!("оrg_a"), "bad_shape"),
        ("org NUL", json!("org_a\u{0}"), "bad_shape"),
        (
            "org over 64 chars",
            json!(format!("org_{}", "a".repeat(61))),
            "too_long",
        ),
    ] {
        w.denied_token(case, &v1(org), 403, "org", reason).await;
    }
    w.denied_token("org unmapped", &v1(json!("org_zzz")), 403, "route", "no_route")
        .await;
    w.denied_token(
        "org claimed twice",
        &v1(json!("org_c")),
        403,
        "route",
        "org_conflict",
    )
    .await;
    let v2_with_org_id = w.rsa_a.sign(&with(claims_a("x"), |c| {
        c.remove("o");
        c.insert("org_id".into(), json!("org_a"));
    }));
    w.denied_token("v2 + org_id only", &v2_with_org_id, 403, "org", "no_active_org")
        .await;
    let o_without_v = w.rsa_a.sign(&with(claims_a("org_a"), |c| {
        c.remove("v");
    }));
    w.denied_token("no v + o", &o_without_v, 403, "org", "no_active_org")
        .await;
    let v3 = w.rsa_a.sign(&with(claims_a("org_a"), |c| {
        c.insert("v".into(), json!(3));
    }));
    w.denied_token("v 3", &v3, 401, "version", "unsupported").await;
    let pending = w.rsa_a.sign(&with(claims_a("org_a"), |c| {
        c.insert("sts".into(), json!("pending"));
    }));
    w.denied_token("sts pending", &pending, 403, "session", "pending")
        .await;
}

#[tokio::test]
async fn line7_spoofing_always_routes_by_the_token() {
    let w = world().await;
    let token = w.rsa_a.sign(&claims_a("org_a"));
    let auth = format!("Bearer {token}");
    let spoofs: Vec<Spoof<'_>> = vec![
        ("X-Org-Id", vec![("X-Org-Id", "org_b")], "/"),
        ("x-ORG-id", vec![("x-ORG-id", "org_b")], "/"),
        ("X_Org_Id", vec![("X_Org_Id", "org_b")], "/"),
        ("X-Tenant-Id", vec![("X-Tenant-Id", "beta")], "/"),
        (
            "X-Bulkhead-Org",
            vec![("X-Bulkhead-Org", "org_b"), ("x-bulkhead-tenant", "beta")],
            "/",
        ),
        (
            "X-Forwarded-Host",
            vec![("X-Forwarded-Host", "beta.example")],
            "/",
        ),
        (
            "Forwarded",
            vec![("Forwarded", "host=beta.example;for=1.2.3.4")],
            "/",
        ),
        ("X-Forwarded-For", vec![("X-Forwarded-For", "10.1.2.3")], "/"),
        ("path /t/orgB", vec![], "/t/org_b/data"),
        ("query org_id", vec![], "/?org_id=org_b"),
        (
            "Connection: x-org-id",
            vec![("Connection", "x-org-id"), ("X-Org-Id", "org_b")],
            "/",
        ),
    ];
    for (case, headers, path) in spoofs {
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend(headers);
        let answer = w.gw.get(path, &all).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "A"), "{case}");
        let seen = w.a.last();
        assert_eq!(seen.path, path, "{case}");
        assert_eq!(seen.all("x-bulkhead-org"), vec!["org_a"], "{case}");
        assert_eq!(seen.all("x-bulkhead-tenant"), vec!["acme"], "{case}");
        for gone in [
            "x-org-id",
            "x_org_id",
            "x-tenant-id",
            "x-forwarded-host",
            "forwarded",
        ] {
            assert!(seen.all(gone).is_empty(), "{case}: {gone} reached the stack");
        }
        assert_eq!(
            seen.all("host"),
            vec![w.a.addr.to_string()],
            "{case}: Host is the upstream's"
        );
        assert_eq!(
            seen.all("x-forwarded-for"),
            vec!["127.0.0.1"],
            "{case}: the peer, set by the gateway"
        );
    }
    // Host: a Host naming another tenant changes nothing either.
    let req =
        format!("GET / HTTP/1.1\r\nHost: beta.example\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n");
    assert_eq!(Answer::parse(&w.gw.raw(req.as_bytes()).await).body, "A", "Host");
    assert_eq!(w.b.count(), 0, "B never saw A's requests");
}

#[tokio::test]
async fn line8_smuggling_and_connections() {
    let w = world().await;
    let token = w.rsa_a.sign(&claims_a("org_a"));
    let auth = format!("Authorization: Bearer {token}\r\n");
    let head = |extra: &str| format!("POST / HTTP/1.1\r\nHost: g\r\n{auth}{extra}Connection: close\r\n\r\n");

    // CL+TE: hyper resolves it as RFC 9112 §6.3 requires (Transfer-Encoding wins, Content-Length is dropped,
    // the connection is closed), and the gateway re-frames the body: the stack sees one framing only, so no
    // desync is possible between gateway and stack. (The request gate would refuse both if hyper passed them.)
    let cl_te = head("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n") + "0\r\n\r\n";
    let answer = Answer::parse(&w.gw.raw(cl_te.as_bytes()).await);
    assert!(
        answer.head.to_ascii_lowercase().contains("connection: close"),
        "CL+TE: {answer:?}"
    );
    if answer.status == 200 {
        let seen = w.a.last();
        assert!(
            seen.all("content-length").iter().all(|v| v == "0"),
            "CL+TE: stack saw {:?}",
            seen.headers
        );
        assert!(
            seen.all("transfer-encoding").len() <= 1
                && (seen.all("content-length").is_empty() || seen.all("transfer-encoding").is_empty())
        );
    } else {
        assert_eq!(answer.status, 400, "CL+TE: {answer:?}");
    }
    let after_cl_te = w.upstream_total();
    let before_parser = after_cl_te;
    w.refused_by_parser(
        "TE: chunked, identity",
        (head("Transfer-Encoding: chunked, identity\r\n") + "0\r\n\r\n").as_bytes(),
    )
    .await;
    w.refused_by_parser(
        "Transfer-Encoding : chunked",
        (head("Transfer-Encoding : chunked\r\n") + "0\r\n\r\n").as_bytes(),
    )
    .await;
    w.refused_by_parser(
        "two Content-Lengths",
        (head("Content-Length: 1\r\nContent-Length: 2\r\n") + "ab").as_bytes(),
    )
    .await;
    // A bare LF in a chunk extension is caught by hyper while the body streams, after the head was accepted:
    // the stack's request is aborted mid-body and never completes (the test upstream records heads, so it may
    // count one), and the client is told its body was invalid.
    let lf = (head("Transfer-Encoding: chunked\r\n") + "1;a=b\nx\r\n0\r\n\r\n").into_bytes();
    let answer = Answer::parse(&w.gw.raw(&lf).await);
    assert_eq!(answer.status, 400, "LF-only chunk extension: {answer:?}");
    assert_eq!(answer.denial(), ("request".into(), "body_invalid".into()));
    let after_lf = w.upstream_total();
    assert!(w.upstream_total() <= before_parser + 1);
    w.refused_by_parser(
        "obs-fold",
        format!("GET / HTTP/1.1\r\nHost: g\r\n{auth}X-A: 1\r\n  folded\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let upgrade = format!(
        "GET / HTTP/1.1\r\nHost: g\r\n{auth}Connection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n"
    );
    w.denied(
        "Upgrade without a WebSocket handshake",
        upgrade.as_bytes(),
        400,
        "request",
        "websocket_invalid",
    )
    .await;
    let h2c = format!(
        "GET / HTTP/1.1\r\nHost: g\r\n{auth}Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    );
    w.denied(
        "Upgrade: h2c",
        h2c.as_bytes(),
        400,
        "request",
        "upgrade_unsupported",
    )
    .await;
    assert_eq!(w.upstream_total(), after_lf);

    // Pipelined: an authenticated request, then one without a token on the same connection.
    let pipelined = format!(
        "GET /first HTTP/1.1\r\nHost: g\r\n{auth}\r\nGET /second HTTP/1.1\r\nHost: g\r\nX-Org-Id: org_a\r\nConnection: close\r\n\r\n"
    );
    let text = w.gw.raw(pipelined.as_bytes()).await;
    let second = text.find("HTTP/1.1 401").expect("second answer is 401");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text[second..].contains(r#""gate":"token","reason":"missing""#),
        "{text}"
    );
    assert_eq!(
        w.a.count(),
        after_lf + 1,
        "only the authenticated request reached A"
    );
    assert_eq!(w.a.last().path, "/first");
    let line = w.gw.last_audit();
    assert_eq!(
        (line["gate"].as_str(), line["path"].as_str()),
        (Some("token"), Some("/second"))
    );
}

#[tokio::test]
async fn line9_oversized_headers() {
    let w = world().await;
    let big = format!("Bearer {}", "a".repeat(12 * 1024));
    w.denied(
        "12 kB Authorization",
        request("GET", "/", &[("Authorization", &big)], "").as_bytes(),
        431,
        "token",
        "too_large",
    )
    .await;
    let c = claims_a("org_a");
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "a-ec"}).to_string()),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    let huge_sig = format!("{input}.{}", "A".repeat(22_000));
    w.denied_token("22k-char ES256 signature", &huge_sig, 431, "token", "too_large")
        .await;
    // A head larger than the server's limit never reaches the gates: hyper answers 431 and the gateway audits it.
    let huge_head = format!(
        "GET / HTTP/1.1\r\nHost: g\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "p".repeat(100 * 1024)
    );
    let before_audit = w.gw.audit_count();
    let answer = Answer::parse(&w.gw.raw(huge_head.as_bytes()).await);
    // The client may instead see a reset: hyper closes with the rest of the head unread.
    assert!(answer.status == 431 || answer.status == 0, "{answer:?}");
    let line = w.gw.audit_line_after(before_audit).await;
    assert_eq!(
        (line["gate"].as_str(), line["reason"].as_str()),
        (Some("request"), Some("head_too_large"))
    );
    assert_eq!((&line["method"], &line["path"]), (&Value::Null, &Value::Null));
    assert_eq!(w.upstream_total(), 0);
}
