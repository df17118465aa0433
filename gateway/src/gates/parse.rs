//! Gate `parse`: the token is three strict base64url parts whose header and claims are JSON objects without
//! duplicate keys (at any depth), and whose header names no key by reference (`jku`, `x5u`, `jwk`, `x5c`) and
//! no critical extension.
//!
//! Duplicate keys are refused because parsers disagree on which copy wins (HAProxy takes the first,
//! serde_json the last): a signed token with two `org_id`s means two things to two readers.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::denial::{Gate, GateError};

/// Header parameters that point at or embed a key. Keys come only from the issuer's configured source.
const KEY_REFERENCES: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// Why the token's structure was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Five parts: a JWE, which the gateway does not accept.
    #[error("encrypted token (JWE)")]
    Encrypted,
    /// Not three `.`-separated parts.
    #[error("not three parts")]
    Malformed,
    /// A part is empty (e.g. an empty signature).
    #[error("empty part")]
    EmptyPart,
    /// A part is not canonical unpadded base64url.
    #[error("invalid base64url")]
    Base64,
    /// A part is not JSON.
    #[error("invalid JSON")]
    Json,
    /// A JSON object repeats a key.
    #[error("duplicate JSON key")]
    DuplicateKey,
    /// The header or claims are JSON but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// The header references or embeds a key.
    #[error("key reference in header")]
    KeyReference,
    /// The header lists critical extensions.
    #[error("critical header extension")]
    Crit,
}

impl GateError for ParseError {
    const GATE: Gate = Gate::Parse;

    fn reason(&self) -> &'static str {
        match self {
            ParseError::Encrypted => "encrypted_token",
            ParseError::Malformed => "malformed",
            ParseError::EmptyPart => "empty_part",
            ParseError::Base64 => "invalid_base64",
            ParseError::Json => "invalid_json",
            ParseError::DuplicateKey => "duplicate_key",
            ParseError::NotObject => "not_an_object",
            ParseError::KeyReference => "key_reference_in_header",
            ParseError::Crit => "crit_unsupported",
        }
    }
}

/// A structurally valid, not yet verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedToken<'a> {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `base64(header) "." base64(claims)`: what the signature covers.
    pub signing_input: &'a str,
    /// The signature, still base64url.
    pub signature: &'a str,
    /// The signature's decoded bytes.
    pub signature_bytes: Vec<u8>,
}

/// Splits, decodes and parses a compact JWS.
pub fn parse(token: &str) -> Result<ParsedToken<'_>, ParseError> {
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        5 => return Err(ParseError::Encrypted),
        _ => return Err(ParseError::Malformed),
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ParseError::EmptyPart);
    }
    let header_bytes = decode_part(parts[0])?;
    let claims_bytes = decode_part(parts[1])?;
    let signature_bytes = decode_part(parts[2])?;
    let header = strict_object(&header_bytes)?;
    if KEY_REFERENCES.iter().any(|k| header.contains_key(*k)) {
        return Err(ParseError::KeyReference);
    }
    if header.contains_key("crit") {
        return Err(ParseError::Crit);
    }
    if header.contains_key("enc") {
        return Err(ParseError::Encrypted);
    }
    let claims = strict_object(&claims_bytes)?;
    let signing_input_len = parts[0].len() + 1 + parts[1].len();
    Ok(ParsedToken {
        header,
        claims,
        signing_input: &token[..signing_input_len],
        signature: parts[2],
        signature_bytes,
    })
}

/// Canonical unpadded base64url (the engine refuses padding and non-zero trailing bits).
fn decode_part(part: &str) -> Result<Vec<u8>, ParseError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| ParseError::Base64)
}

/// Parses `bytes` as a JSON object, refusing duplicate keys at any depth.
pub fn strict_object(bytes: &[u8]) -> Result<Map<String, Value>, ParseError> {
    match strict_value(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(ParseError::NotObject),
    }
}

/// Parses `bytes` as JSON, refusing duplicate keys at any depth.
pub fn strict_value(bytes: &[u8]) -> Result<Value, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict::deserialize(&mut de).map_err(|e| {
        // The only data error a self-describing parse can raise is ours: the duplicate key.
        if e.is_data() {
            ParseError::DuplicateKey
        } else {
            ParseError::Json
        }
    })?;
    de.end().map_err(|_| ParseError::Json)?;
    Ok(value.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value without duplicate object keys")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom("duplicate key"));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(claims), b64("sig"))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            r#"{"alg":"RS256","kid":"k"}"#,
            r#"{"sub":"u","o":{"id":"org_a"}}"#,
        );
        let p = parse(&t).unwrap();
        assert_eq!(p.header["alg"], "RS256");
        assert_eq!(p.claims["o"]["id"], "org_a");
        assert_eq!(p.signature_bytes, b"sig");
        assert_eq!(format!("{}.{}", p.signing_input, p.signature), t);
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        for (h, c) in [
            (r#"{"alg":"RS256","alg":"HS256"}"#, r#"{}"#),
            (r#"{"alg":"RS256"}"#, r#"{"org_id":"org_a","org_id":"org_b"}"#),
            (r#"{"alg":"RS256"}"#, r#"{"o":{"id":"org_a","id":"org_b"}}"#),
            (r#"{"alg":"RS256"}"#, r#"{"exp":1,"exp":2}"#),
            (r#"{"alg":"RS256"}"#, r#"{"a":[{"x":1,"x":1}]}"#),
        ] {
            assert_eq!(parse(&token(h, c)), Err(ParseError::DuplicateKey), "{h} {c}");
        }
    }

    #[test]
    fn refuses_structural_problems_with_their_reasons() {
        let ok_h = b64(r#"{"alg":"RS256"}"#);
        let ok_c = b64("{}");
        let cases = [
            ("a.b".to_owned(), ParseError::Malformed),
            ("a.b.c.d".to_owned(), ParseError::Malformed),
            ("a.b.c.d.e".to_owned(), ParseError::Encrypted),
            (format!("{ok_h}.{ok_c}."), ParseError::EmptyPart),
            (format!("{ok_h}==.{ok_c}.c2ln"), ParseError::Base64),
            (format!("{ok_h}.{ok_c}.c2l"), ParseError::Base64), // "si" with non-zero trailing bits: c2k is canonical
            (format!("{ok_h}.{ok_c}.c2l+"), ParseError::Base64), // standard alphabet, not url-safe
            (token("not json", "{}"), ParseError::Json),
            (token(r#"{"alg":"RS256"} x"#, "{}"), ParseError::Json),
            (token(r#"["RS256"]"#, "{}"), ParseError::NotObject),
            (token(r#"{"alg":"RS256"}"#, "1"), ParseError::NotObject),
            (
                token(r#"{"alg":"RS256","jku":"http://x"}"#, "{}"),
                ParseError::KeyReference,
            ),
            (
                token(r#"{"alg":"RS256","x5u":"http://x"}"#, "{}"),
                ParseError::KeyReference,
            ),
            (
                token(r#"{"alg":"RS256","jwk":{}}"#, "{}"),
                ParseError::KeyReference,
            ),
            (
                token(r#"{"alg":"RS256","x5c":[]}"#, "{}"),
                ParseError::KeyReference,
            ),
            (token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}"), ParseError::Crit),
            (
                token(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#, "{}"),
                ParseError::Encrypted,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(parse(&t), Err(want), "{t}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(strict_value(deep.as_bytes()), Err(ParseError::Json));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_base64_shaped_input(s in "[A-Za-z0-9_.=+/-]{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn json_objects_round_trip(keys in proptest::collection::btree_set("[a-z]{1,8}", 0..10)) {
            let map: Map<String, Value> = keys.iter().map(|k| (k.clone(), Value::from(k.len()))).collect();
            let bytes = serde_json::to_vec(&map).unwrap();
            proptest::prop_assert_eq!(strict_object(&bytes).unwrap(), map);
        }
    }
}
