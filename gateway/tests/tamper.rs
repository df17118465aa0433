//! Tampering: changing any one character of a valid token, anywhere in header, claims or signature, never
//! yields a verified identity (and never a different org). Exhaustive over every position, plus a bounded
//! proptest over arbitrary multi-character edits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bulkhead_gateway::cache::TokenCache;
use bulkhead_gateway::gates::audience::AudiencePolicy;
use bulkhead_gateway::gates::org::{OrgClaim, OrgShape};
use bulkhead_gateway::gates::time::TimePolicy;
use bulkhead_gateway::keys::fetch::{FetchPolicy, Fetcher};
use bulkhead_gateway::keys::{IssuerKeysConfig, KeySource, KeyStore, KeyStorePolicy, PemKey};
use bulkhead_gateway::metrics::Metrics;
use bulkhead_gateway::verify::{IssuerPolicy, Seen, Verifier};
use common::*;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::Algorithm;
use proptest::prelude::*;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fn verifier(runtime: &tokio::runtime::Runtime) -> Verifier {
    let metrics = Arc::new(Metrics::new());
    let keys = Arc::new(KeyStore::new(
        vec![IssuerKeysConfig {
            issuer: ISS_A.into(),
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            source: KeySource::Pem(vec![
                PemKey {
                    kid: "r".into(),
                    algorithm: Algorithm::RS256,
                    path: key_path("rsa-a.pub.pem"),
                },
                PemKey {
                    kid: "e".into(),
                    algorithm: Algorithm::ES256,
                    path: key_path("ec-a.pub.pem"),
                },
            ]),
        }],
        Fetcher::new(FetchPolicy {
            timeout: std::time::Duration::from_secs(1),
            max_bytes: 1024,
        }),
        KeyStorePolicy {
            refresh: std::time::Duration::from_secs(3600),
            retry: std::time::Duration::from_secs(3600),
            unknown_kid_refetch: std::time::Duration::from_secs(3600),
            max_keys: 8,
        },
        metrics.clone(),
    ));
    assert_eq!(runtime.block_on(keys.load(0)).ok(), Some(true));
    Verifier::new(
        vec![IssuerPolicy {
            issuer: ISS_A.into(),
            audience: AudiencePolicy::default(),
            org_claim: OrgClaim::Clerk,
            org_shape: OrgShape {
                prefix: Some("org_".into()),
                max_len: 64,
            },
        }],
        vec![Algorithm::RS256, Algorithm::ES256],
        TimePolicy {
            leeway: 30,
            max_lifetime: 3600,
        },
        8192,
        keys,
        TokenCache::new(0),
        metrics,
    )
}

fn check(runtime: &tokio::runtime::Runtime, v: &Verifier, token: &str) -> Result<String, String> {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
    headers.insert(http::header::AUTHORIZATION, value);
    runtime
        .block_on(v.verify(&headers, now(), &mut Seen::default()))
        .map(|id| id.org.clone())
        .map_err(|d| format!("{}/{}", d.gate.as_str(), d.reason))
}

#[test]
fn changing_any_one_character_never_verifies() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v = verifier(&runtime);
    for key in [
        TestKey::load("rsa-a.pem", "r", Algorithm::RS256),
        TestKey::load("ec-a.pem", "e", Algorithm::ES256),
    ] {
        let token = key.sign(&claims_a("org_a"));
        assert_eq!(check(&runtime, &v, &token), Ok("org_a".into()));
        let bytes = token.as_bytes();
        for position in 0..bytes.len() {
            for &replacement in ALPHABET {
                if replacement == bytes[position] {
                    continue;
                }
                let mut tampered = bytes.to_vec();
                tampered[position] = replacement;
                let tampered = String::from_utf8(tampered).unwrap();
                let result = check(&runtime, &v, &tampered);
                assert!(
                    result.is_err(),
                    "position {position} -> {}: {result:?}",
                    replacement as char
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_edits_never_verify(edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..ALPHABET.len()), 1..6)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let v = verifier(&runtime);
        let token = TestKey::load("ec-a.pem", "e", Algorithm::ES256).sign(&claims_a("org_a"));
        let mut bytes = token.clone().into_bytes();
        for (index, letter) in &edits {
            let i = index.index(bytes.len());
            bytes[i] = ALPHABET[*letter];
        }
        let edited = String::from_utf8(bytes).unwrap();
        let result = check(&runtime, &v, &edited);
        if edited == token {
            prop_assert_eq!(result, Ok("org_a".to_owned()));
        } else {
            prop_assert!(result.is_err(), "{:?}", result);
        }
    }
}
