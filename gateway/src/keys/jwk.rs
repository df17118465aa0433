//! Pure conversion of JWKS documents and PEM files into keys bound to their algorithms.
//!
//! `jsonwebtoken`'s own `DecodingKey::from_jwk` turns `kty: oct` into an HMAC key and ignores `alg`, `use` and
//! `crv`; this module checks all of them itself and refuses symmetric keys outright.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::gates::alg::parse_name;
use crate::gates::kid::MAX_KID_LEN;
use crate::gates::parse::strict_value;

/// RSA keys shorter than this (in bytes of modulus) are refused.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// A verification key bound to the algorithms it may verify.
pub struct BoundKey {
    /// The key id (exact match).
    pub kid: String,
    /// The algorithms this key may verify (a subset of the issuer's allow-list, one family).
    pub algorithms: Vec<Algorithm>,
    /// The key, for jsonwebtoken (used when no parsed key could be made).
    pub key: DecodingKey,
    /// The key parsed once per algorithm, so verifying a signature does not parse it (and, for RSA, set up its
    /// Montgomery context) again on every request.
    pub parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl BoundKey {
    fn new(kid: String, algorithms: Vec<Algorithm>, key: DecodingKey, der: Option<&[u8]>) -> BoundKey {
        let parsed = der
            .map(|der| {
                algorithms
                    .iter()
                    .filter_map(|alg| {
                        let params = verification_algorithm(*alg)?;
                        ParsedPublicKey::new(params, der).ok().map(|p| (*alg, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        BoundKey {
            kid,
            algorithms,
            key,
            parsed,
        }
    }

    /// Whether `signature` (base64url, as in the token) is this key's signature of `input` under `alg`. The
    /// caller has checked that `alg` is one of this key's algorithms.
    pub fn verify(&self, alg: Algorithm, input: &[u8], signature: &str) -> bool {
        match self.parsed.iter().find(|(a, _)| *a == alg) {
            Some((_, parsed)) => URL_SAFE_NO_PAD
                .decode(signature)
                .is_ok_and(|sig| parsed.verify_sig(input, &sig).is_ok()),
            None => jsonwebtoken::crypto::verify(signature, input, &self.key, alg).unwrap_or(false),
        }
    }
}

/// aws-lc-rs' verification parameters for a JWS algorithm (the same ones jsonwebtoken's aws_lc backend uses).
fn verification_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
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

/// Why one JWK was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwkRefusal {
    /// No usable `kid`.
    #[error("missing or invalid kid")]
    Kid,
    /// `use` is present and not `sig`.
    #[error("use is not sig")]
    NotForSignatures,
    /// `kty: oct`: a symmetric key.
    #[error("symmetric key")]
    Symmetric,
    /// An unsupported key type or curve.
    #[error("unsupported key type or curve")]
    Unsupported,
    /// `alg` is not an asymmetric algorithm of the key's type.
    #[error("alg conflicts with the key type")]
    AlgConflict,
    /// None of the key's algorithms is allowed for its issuer.
    #[error("alg not allowed for the issuer")]
    AlgNotAllowed,
    /// Missing or malformed key components.
    #[error("invalid key components")]
    Components,
    /// RSA modulus under 2048 bits.
    #[error("RSA key too short")]
    WeakRsa,
    /// Two keys share the kid; both are dropped.
    #[error("duplicate kid")]
    DuplicateKid,
}

impl JwkRefusal {
    /// A fixed reason string for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            JwkRefusal::Kid => "kid",
            JwkRefusal::NotForSignatures => "use_not_sig",
            JwkRefusal::Symmetric => "symmetric",
            JwkRefusal::Unsupported => "unsupported",
            JwkRefusal::AlgConflict => "alg_conflict",
            JwkRefusal::AlgNotAllowed => "alg_not_allowed",
            JwkRefusal::Components => "components",
            JwkRefusal::WeakRsa => "weak_rsa",
            JwkRefusal::DuplicateKid => "duplicate_kid",
        }
    }
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
    /// A PEM file does not hold a public key of the configured algorithm.
    #[error("invalid PEM key")]
    Pem,
    /// A configured algorithm is not asymmetric or not allowed.
    #[error("algorithm not allowed")]
    Alg,
}

impl KeyDocError {
    /// A fixed reason string for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyDocError::Json => "invalid_json",
            KeyDocError::NoKeys => "no_keys_array",
            KeyDocError::TooManyKeys => "too_many_keys",
            KeyDocError::NoUsableKey => "no_usable_key",
            KeyDocError::Pem => "invalid_pem",
            KeyDocError::Alg => "alg_not_allowed",
        }
    }
}

/// A JWK left out of a key set: its kid (if it had one) and why.
pub type Skipped = (Option<String>, JwkRefusal);

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
            skipped.push((kid, JwkRefusal::Components));
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
        skipped.push((Some(kid), JwkRefusal::DuplicateKid));
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

fn b64(object: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JwkRefusal> {
    let s = object
        .get(name)
        .and_then(Value::as_str)
        .ok_or(JwkRefusal::Components)?;
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JwkRefusal::Components)
}

/// Binds one JWK to its algorithms.
pub fn bind_jwk(jwk: &Map<String, Value>, allowed: &[Algorithm]) -> Result<BoundKey, JwkRefusal> {
    let kid = match jwk.get("kid") {
        Some(Value::String(k))
            if !k.is_empty() && k.len() <= MAX_KID_LEN && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.clone()
        }
        _ => return Err(JwkRefusal::Kid),
    };
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(JwkRefusal::NotForSignatures),
    }
    let declared = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(parse_name(name).ok_or(JwkRefusal::AlgConflict)?),
        Some(_) => return Err(JwkRefusal::AlgConflict),
    };
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(JwkRefusal::Unsupported)?;
    let (family, key, der): (Vec<Algorithm>, DecodingKey, Option<Vec<u8>>) = match kty {
        "oct" => return Err(JwkRefusal::Symmetric),
        "RSA" => {
            let n = b64(jwk, "n")?;
            let e = b64(jwk, "e")?;
            let n_trimmed = n.iter().skip_while(|b| **b == 0).count();
            if n_trimmed < MIN_RSA_MODULUS_BYTES {
                return Err(JwkRefusal::WeakRsa);
            }
            if e.is_empty() || e.len() > 8 {
                return Err(JwkRefusal::Components);
            }
            (
                vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                DecodingKey::from_rsa_raw_components(&n, &e),
                aws_lc_rs::rsa::PublicKeyComponents { n: &n[..], e: &e[..] }
                    .as_der()
                    .ok()
                    .map(|d| d.as_ref().to_vec()),
            )
        }
        "EC" => {
            let (alg, len) = match jwk.get("crv").and_then(Value::as_str) {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                _ => return Err(JwkRefusal::Unsupported),
            };
            let x = b64(jwk, "x")?;
            let y = b64(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err(JwkRefusal::Components);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (vec![alg], DecodingKey::from_ec_der(&point), Some(point))
        }
        "OKP" => {
            if jwk.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                return Err(JwkRefusal::Unsupported);
            }
            let x = b64(jwk, "x")?;
            if x.len() != 32 {
                return Err(JwkRefusal::Components);
            }
            (vec![Algorithm::EdDSA], DecodingKey::from_ed_der(&x), Some(x))
        }
        _ => return Err(JwkRefusal::Unsupported),
    };
    let candidates = match declared {
        Some(alg) if family.contains(&alg) => vec![alg],
        Some(_) => return Err(JwkRefusal::AlgConflict),
        None => family,
    };
    let algorithms: Vec<Algorithm> = candidates.into_iter().filter(|a| allowed.contains(a)).collect();
    if algorithms.is_empty() {
        return Err(JwkRefusal::AlgNotAllowed);
    }
    Ok(BoundKey::new(kid, algorithms, key, der.as_deref()))
}

/// Binds a public key in PEM to one configured algorithm.
pub fn bind_pem(
    kid: &str,
    alg: Algorithm,
    pem: &[u8],
    allowed: &[Algorithm],
) -> Result<BoundKey, KeyDocError> {
    if !allowed.contains(&alg) || !crate::gates::alg::is_asymmetric(alg) {
        return Err(KeyDocError::Alg);
    }
    let key = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem),
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => return Err(KeyDocError::Alg),
    }
    .map_err(|_| KeyDocError::Pem)?;
    // A `PUBLIC KEY` (SubjectPublicKeyInfo) PEM is parsed once more for the fast path; other PEM forms verify
    // through jsonwebtoken.
    let der = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem).ok();
    Ok(BoundKey::new(
        kid.to_owned(),
        vec![alg],
        key,
        der.as_ref().map(|d| d.as_ref()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn ec_jwk(kid: &str, crv: &str, len: usize) -> Value {
        let c = URL_SAFE_NO_PAD.encode(vec![7u8; len]);
        json!({"kty": "EC", "kid": kid, "crv": crv, "x": c, "y": c})
    }

    fn bind(v: Value, allowed: &[Algorithm]) -> Result<Vec<Algorithm>, JwkRefusal> {
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
                JwkRefusal::Symmetric,
            ),
            (hs, JwkRefusal::AlgConflict),
            (es_on_rsa, JwkRefusal::AlgConflict),
            (enc, JwkRefusal::NotForSignatures),
            (no_kid, JwkRefusal::Kid),
            (short_rsa, JwkRefusal::WeakRsa),
            (ec_jwk("e", "P-521", 66), JwkRefusal::Unsupported),
            (ec_jwk("e", "P-256", 48), JwkRefusal::Components),
            (
                json!({"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"}),
                JwkRefusal::Components,
            ),
            (json!({"kty": "PQC", "kid": "x"}), JwkRefusal::Unsupported),
        ];
        for (jwk, want) in cases {
            assert_eq!(bind(jwk.clone(), &ALL), Err(want), "{jwk}");
        }
        assert_eq!(
            bind(ec_jwk("e", "P-384", 48), &ALL),
            Err(JwkRefusal::AlgNotAllowed)
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
        assert!(skipped.contains(&(Some("b".into()), JwkRefusal::DuplicateKid)));
        assert!(skipped.contains(&(Some("h".into()), JwkRefusal::Symmetric)));
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
}
