//! Pure conversion of JWKS documents and PEM files into keys bound to their algorithms.
//!
//! `jsonwebtoken`'s own `DecodingKey::from_jwk` turns `kty: oct` into an HMAC key and ignores `alg`, `use`,
//! `key_ops` and `crv`; this module checks all of them itself and refuses symmetric keys outright. Whatever the
//! source, the key itself then passes the one rule set of [`PublicKey::check`].

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature::ParsedPublicKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use super::public::KeyRefusal;
use super::public::PublicKey;
use crate::gates::alg::parse_name;
use crate::gates::kid::MAX_KID_LEN;
use crate::gates::parse::strict_value;

/// A verification key bound to the algorithms it may verify.
pub struct BoundKey {
    /// The key id (exact match).
    pub kid: String,
    /// The algorithms this key may verify (a subset of the issuer's allow-list, one family).
    pub algorithms: Vec<Algorithm>,
    /// The key parsed once per algorithm, so verifying a signature does not parse it (and, for RSA, set up its
    /// Montgomery context) again on every request. Every algorithm of `algorithms` has its parsed key.
    pub parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl BoundKey {
    /// Checks `key` against the rules every key must pass, binds it to its family's algorithms (only `declared`,
    /// when given) within `allowed`, and parses it for each.
    fn new(
        kid: String,
        key: &PublicKey,
        declared: Option<Algorithm>,
        allowed: &[Algorithm],
    ) -> Result<BoundKey, KeyRefusal> {
        key.check()?;
        let family = key.family();
        let candidates = match declared {
            Some(alg) if family.contains(&alg) => vec![alg],
            Some(_) => return Err(KeyRefusal::AlgConflict),
            None => family,
        };
        let algorithms: Vec<Algorithm> = candidates.into_iter().filter(|a| allowed.contains(a)).collect();
        if algorithms.is_empty() {
            return Err(KeyRefusal::AlgNotAllowed);
        }
        let parsed = key.parse_for(&algorithms)?;
        Ok(BoundKey {
            kid,
            algorithms,
            parsed,
        })
    }

    /// Whether `signature` (base64url, as in the token) is this key's signature of `input` under `alg`. The
    /// caller has checked that `alg` is one of this key's algorithms.
    pub fn verify(&self, alg: Algorithm, input: &[u8], signature: &str) -> bool {
        self.parsed
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, parsed)| {
                URL_SAFE_NO_PAD
                    .decode(signature)
                    .is_ok_and(|sig| parsed.verify_sig(input, &sig).is_ok())
            })
    }
}

impl std::fmt::Debug for BoundKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// One issuer's keys, by kid, and a digest of the source they came from (to notice changes).
#[derive(Debug, Default)]
pub struct KeySet {
    /// Keys by exact kid.
    pub keys: HashMap<String, Arc<BoundKey>>,
    /// SHA-256 of the source document(s).
    pub digest: [u8; 32],
}

/// Why a whole key document was refused (the last good keys stay in force).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyDocError {
    /// Not JSON, or JSON with duplicate keys.
    #[error("invalid JSON")]
    Json,
    /// No `keys` array.
    #[error("no keys array")]
    NoKeys,
    /// More keys than allowed.
    #[error("too many keys")]
    TooManyKeys,
    /// Not one usable key.
    #[error("no usable key")]
    NoUsableKey,
}

impl KeyDocError {
    /// A fixed reason string for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyDocError::Json => "invalid_json",
            KeyDocError::NoKeys => "no_keys_array",
            KeyDocError::TooManyKeys => "too_many_keys",
            KeyDocError::NoUsableKey => "no_usable_key",
        }
    }
}

/// A JWK left out of a key set: its kid (if it had one) and why.
pub type Skipped = (Option<String>, KeyRefusal);

/// The keys of a JWKS document usable by an issuer allowing `allowed`, and the JWKs skipped with their reasons.
pub fn key_set_from_jwks(
    bytes: &[u8],
    allowed: &[Algorithm],
    max_keys: usize,
) -> Result<(KeySet, Vec<Skipped>), KeyDocError> {
    let doc = strict_value(bytes).map_err(|_| KeyDocError::Json)?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(KeyDocError::NoKeys)?;
    if keys.len() > max_keys {
        return Err(KeyDocError::TooManyKeys);
    }
    let mut skipped = Vec::new();
    let mut bound: HashMap<String, Arc<BoundKey>> = HashMap::new();
    let mut duplicates = Vec::new();
    for jwk in keys {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        let Some(object) = jwk.as_object() else {
            skipped.push((kid, KeyRefusal::Components));
            continue;
        };
        match bind_jwk(object, allowed) {
            Ok(key) => {
                if bound.contains_key(&key.kid) {
                    duplicates.push(key.kid.clone());
                } else {
                    bound.insert(key.kid.clone(), Arc::new(key));
                }
            }
            Err(refusal) => skipped.push((kid, refusal)),
        }
    }
    for kid in duplicates {
        bound.remove(&kid);
        skipped.push((Some(kid), KeyRefusal::DuplicateKid));
    }
    if bound.is_empty() {
        return Err(KeyDocError::NoUsableKey);
    }
    Ok((
        KeySet {
            keys: bound,
            digest: Sha256::digest(bytes).into(),
        },
        skipped,
    ))
}

fn b64(object: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyRefusal> {
    let s = object
        .get(name)
        .and_then(Value::as_str)
        .ok_or(KeyRefusal::Components)?;
    URL_SAFE_NO_PAD.decode(s).map_err(|_| KeyRefusal::Components)
}

/// Binds one JWK to its algorithms.
pub fn bind_jwk(jwk: &Map<String, Value>, allowed: &[Algorithm]) -> Result<BoundKey, KeyRefusal> {
    let kid = match jwk.get("kid") {
        Some(Value::String(k))
            if !k.is_empty() && k.len() <= MAX_KID_LEN && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.clone()
        }
        _ => return Err(KeyRefusal::Kid),
    };
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(KeyRefusal::NotForSignatures),
    }
    // RFC 7517 §4.3: when present, `key_ops` lists what the key may be used for; a verification key needs
    // `verify`. A value that is not an array of strings allows nothing.
    if let Some(ops) = jwk.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verify {
            return Err(KeyRefusal::KeyOps);
        }
    }
    let declared = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(parse_name(name).ok_or(KeyRefusal::AlgConflict)?),
        Some(_) => return Err(KeyRefusal::AlgConflict),
    };
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(KeyRefusal::Unsupported)?;
    let key = match kty {
        "oct" => return Err(KeyRefusal::Symmetric),
        "RSA" => PublicKey::rsa(&b64(jwk, "n")?, &b64(jwk, "e")?),
        "EC" => {
            let (alg, len) = match jwk.get("crv").and_then(Value::as_str) {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                _ => return Err(KeyRefusal::Unsupported),
            };
            let x = b64(jwk, "x")?;
            let y = b64(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err(KeyRefusal::Components);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::Ec { alg, point }
        }
        "OKP" => {
            if jwk.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                return Err(KeyRefusal::Unsupported);
            }
            PublicKey::Ed25519(b64(jwk, "x")?)
        }
        _ => return Err(KeyRefusal::Unsupported),
    };
    BoundKey::new(kid, &key, declared, allowed)
}

/// Binds a public key in PEM to one configured algorithm, under the same rules as a JWK.
pub fn bind_pem(
    kid: &str,
    alg: Algorithm,
    pem: &[u8],
    allowed: &[Algorithm],
) -> Result<BoundKey, KeyRefusal> {
    if !allowed.contains(&alg) || !crate::gates::alg::is_asymmetric(alg) {
        return Err(KeyRefusal::AlgNotAllowed);
    }
    let key = PublicKey::from_pem(pem)?;
    BoundKey::new(kid.to_owned(), &key, Some(alg), allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject as _;
    use serde_json::json;

    const ALL: [Algorithm; 4] = [
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ];

    fn rsa_jwk(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode([0xc5u8; 256]), "e": "AQAB"})
    }

    fn test_key(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// The uncompressed point of a test EC public key (the last bytes of its SubjectPublicKeyInfo).
    fn point(name: &str, len: usize) -> Vec<u8> {
        let der = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&test_key(name)).unwrap();
        der.as_ref()[der.as_ref().len() - (1 + 2 * len)..].to_vec()
    }

    /// An EC JWK: the test key's real point on P-256 and P-384, filler coordinates otherwise.
    fn ec_jwk(kid: &str, crv: &str, len: usize) -> Value {
        let point = match (crv, len) {
            ("P-256", 32) => point("ec-a.pub.pem", 32),
            ("P-384", 48) => point("ec384.pub.pem", 48),
            _ => [vec![4u8], vec![7u8; 2 * len]].concat(),
        };
        let (x, y) = point[1..].split_at(len);
        json!({"kty": "EC", "kid": kid, "crv": crv, "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
    }

    fn bind(v: Value, allowed: &[Algorithm]) -> Result<Vec<Algorithm>, KeyRefusal> {
        bind_jwk(v.as_object().unwrap(), allowed).map(|k| k.algorithms)
    }

    #[test]
    fn pem_and_jwk_keys_verify_through_the_parsed_key_and_refuse_forgeries() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
        let read = |name: &str| std::fs::read(format!("{dir}{name}")).unwrap();
        let cases = [
            (
                "rsa-a",
                Algorithm::RS256,
                jsonwebtoken::EncodingKey::from_rsa_pem(&read("rsa-a.pem")),
            ),
            (
                "rsa-a",
                Algorithm::PS256,
                jsonwebtoken::EncodingKey::from_rsa_pem(&read("rsa-a.pem")),
            ),
            (
                "ec-a",
                Algorithm::ES256,
                jsonwebtoken::EncodingKey::from_ec_pem(&read("ec-a.pem")),
            ),
            (
                "ed",
                Algorithm::EdDSA,
                jsonwebtoken::EncodingKey::from_ed_pem(&read("ed.pem")),
            ),
        ];
        for (name, alg, signing) in cases {
            let key = bind_pem("k", alg, &read(&format!("{name}.pub.pem")), &[alg]).unwrap();
            assert_eq!(key.parsed.len(), 1, "{name} {alg:?} has its parsed key");
            let input = b"eyJhbGciOiJ4In0.eyJzdWIiOiJ5In0";
            let sig = jsonwebtoken::crypto::sign(input, &signing.unwrap(), alg).unwrap();
            assert!(key.verify(alg, input, &sig), "{name} {alg:?}");
            assert!(
                !key.verify(alg, b"eyJhbGciOiJ4In0.eyJzdWIiOiJ6In0", &sig),
                "{name} {alg:?} other input"
            );
            let other = format!("{}A", &sig[..sig.len() - 1]);
            assert!(
                !key.verify(alg, input, &other) || other == sig,
                "{name} {alg:?} other signature"
            );
            assert!(!key.verify(alg, input, "not base64!"), "{name} {alg:?}");
        }
        // JWK keys get parsed keys too: the EC and Ed25519 public keys above, as JWKs (the point and the
        // Ed25519 key are the last bytes of their SubjectPublicKeyInfo).
        let spki = |name: &str| {
            rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&read(name))
                .unwrap()
                .as_ref()
                .to_vec()
        };
        let ec = spki("ec-a.pub.pem");
        let point = &ec[ec.len() - 64..];
        let ec_jwk = json!({"kty": "EC", "kid": "e", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[..32]), "y": URL_SAFE_NO_PAD.encode(&point[32..])});
        let ed = spki("ed.pub.pem");
        let ed_jwk = json!({"kty": "OKP", "kid": "d", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&ed[ed.len() - 32..])});
        for v in [ec_jwk, ed_jwk] {
            let key = bind_jwk(v.as_object().unwrap(), &ALL).unwrap();
            assert_eq!(key.parsed.len(), key.algorithms.len(), "{v}");
        }
        // RSA from (n, e): the components go through aws-lc-rs' own DER encoding.
        let key = bind_jwk(rsa_jwk("r").as_object().unwrap(), &ALL).unwrap();
        assert_eq!(key.algorithms, [Algorithm::RS256, Algorithm::PS256]);
        assert_eq!(key.parsed.len(), 2);
    }

    #[test]
    fn keys_are_bound_to_their_family_within_the_allow_list() {
        assert_eq!(
            bind(rsa_jwk("r"), &ALL),
            Ok(vec![Algorithm::RS256, Algorithm::PS256])
        );
        assert_eq!(
            bind(rsa_jwk("r"), &[Algorithm::RS256]),
            Ok(vec![Algorithm::RS256])
        );
        let mut with_alg = rsa_jwk("r");
        with_alg["alg"] = json!("PS256");
        assert_eq!(bind(with_alg, &ALL), Ok(vec![Algorithm::PS256]));
        assert_eq!(bind(ec_jwk("e", "P-256", 32), &ALL), Ok(vec![Algorithm::ES256]));
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": URL_SAFE_NO_PAD.encode([1u8; 32])});
        assert_eq!(bind(ed, &ALL), Ok(vec![Algorithm::EdDSA]));
    }

    #[test]
    fn refuses_symmetric_conflicting_and_malformed_keys() {
        let mut hs = rsa_jwk("r");
        hs["alg"] = json!("HS256");
        let mut es_on_rsa = rsa_jwk("r");
        es_on_rsa["alg"] = json!("ES256");
        let mut enc = rsa_jwk("r");
        enc["use"] = json!("enc");
        let mut no_kid = rsa_jwk("r");
        no_kid.as_object_mut().unwrap().remove("kid");
        let short_rsa =
            json!({"kty": "RSA", "kid": "s", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]), "e": "AQAB"});
        let cases = [
            (
                json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}),
                KeyRefusal::Symmetric,
            ),
            (hs, KeyRefusal::AlgConflict),
            (es_on_rsa, KeyRefusal::AlgConflict),
            (enc, KeyRefusal::NotForSignatures),
            (no_kid, KeyRefusal::Kid),
            (short_rsa, KeyRefusal::WeakRsa),
            (ec_jwk("e", "P-521", 66), KeyRefusal::Unsupported),
            (ec_jwk("e", "P-256", 48), KeyRefusal::Components),
            (
                json!({"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"}),
                KeyRefusal::Components,
            ),
            (json!({"kty": "PQC", "kid": "x"}), KeyRefusal::Unsupported),
        ];
        for (jwk, want) in cases {
            assert_eq!(bind(jwk.clone(), &ALL), Err(want), "{jwk}");
        }
        assert_eq!(
            bind(ec_jwk("e", "P-384", 48), &ALL),
            Err(KeyRefusal::AlgNotAllowed)
        );
    }

    #[test]
    fn a_document_keeps_its_usable_keys_and_drops_duplicate_kids() {
        let doc = json!({"keys": [
            rsa_jwk("a"), rsa_jwk("b"), rsa_jwk("b"),
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}
        ]});
        let (set, skipped) = key_set_from_jwks(doc.to_string().as_bytes(), &ALL, 10).unwrap();
        assert_eq!(set.keys.keys().collect::<Vec<_>>(), vec!["a"]);
        assert!(skipped.contains(&(Some("b".into()), KeyRefusal::DuplicateKid)));
        assert!(skipped.contains(&(Some("h".into()), KeyRefusal::Symmetric)));
    }

    #[test]
    fn unusable_documents_are_errors() {
        let cases: [(&[u8], KeyDocError); 6] = [
            (b"not json", KeyDocError::Json),
            (br#"{"keys":[],"keys":[]}"#, KeyDocError::Json),
            (b"{}", KeyDocError::NoKeys),
            (br#"{"keys":{}}"#, KeyDocError::NoKeys),
            (br#"{"keys":[]}"#, KeyDocError::NoUsableKey),
            (
                br#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#,
                KeyDocError::NoUsableKey,
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(key_set_from_jwks(doc, &ALL, 10).map(|_| ()), Err(want));
        }
        let many = json!({"keys": (0..11).map(|i| rsa_jwk(&i.to_string())).collect::<Vec<_>>()});
        assert_eq!(
            key_set_from_jwks(many.to_string().as_bytes(), &ALL, 10).map(|_| ()),
            Err(KeyDocError::TooManyKeys)
        );
    }

    #[test]
    fn key_ops_must_allow_verify_when_present() {
        let with_ops = |ops: Value| {
            let mut jwk = rsa_jwk("r");
            jwk["key_ops"] = ops;
            bind(jwk, &[Algorithm::RS256])
        };
        assert_eq!(with_ops(json!(["verify"])), Ok(vec![Algorithm::RS256]));
        assert_eq!(with_ops(json!(["sign", "verify"])), Ok(vec![Algorithm::RS256]));
        for ops in [
            json!(["sign"]),
            json!([]),
            json!(["encrypt", "wrapKey"]),
            json!("verify"),
            json!(null),
        ] {
            assert_eq!(with_ops(ops.clone()), Err(KeyRefusal::KeyOps), "{ops}");
        }
    }

    #[test]
    fn pem_keys_pass_the_same_rules_and_bind_to_their_configured_algorithm() {
        let rsa = test_key("rsa-a.pub.pem");
        let ec = test_key("ec-a.pub.pem");
        assert_eq!(
            bind_pem("k", Algorithm::PS256, &rsa, &ALL).map(|k| k.algorithms),
            Ok(vec![Algorithm::PS256])
        );
        let wide = [
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::HS256,
        ];
        let cases = [
            (Algorithm::ES256, &rsa, KeyRefusal::AlgConflict),
            (Algorithm::ES384, &ec, KeyRefusal::AlgConflict),
            (Algorithm::RS384, &rsa, KeyRefusal::AlgNotAllowed),
            (Algorithm::HS256, &rsa, KeyRefusal::AlgNotAllowed),
        ];
        for (alg, pem, want) in cases {
            assert_eq!(bind_pem("k", alg, pem, &wide).map(|_| ()), Err(want), "{alg:?}");
        }
        assert_eq!(
            bind_pem("k", Algorithm::RS256, &test_key("ec-a.pem"), &wide).map(|_| ()),
            Err(KeyRefusal::Pem),
            "a private key file"
        );
    }
}
