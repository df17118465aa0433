//! Gate `alg`: the header's algorithm is one of the configured asymmetric algorithms.
//!
//! The token's `alg` never picks a key: it is only checked against the allow-list here and against the key's own
//! bound algorithms at gate `key`. HMAC algorithms cannot be configured at all.

use std::str::FromStr;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::denial::{Gate, GateError};

/// Why the algorithm was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AlgError {
    /// No `alg`.
    #[error("alg missing")]
    Missing,
    /// `alg` is `none` in any case.
    #[error("alg none")]
    None,
    /// An HMAC algorithm.
    #[error("symmetric alg")]
    Symmetric,
    /// A known asymmetric algorithm that is not configured.
    #[error("alg not allowed")]
    NotAllowed,
    /// Not a string, or not an algorithm name.
    #[error("alg unknown")]
    Unknown,
}

impl GateError for AlgError {
    const GATE: Gate = Gate::Alg;

    fn reason(&self) -> &'static str {
        match self {
            AlgError::Missing => "missing",
            AlgError::None => "none",
            AlgError::Symmetric => "symmetric",
            AlgError::NotAllowed => "not_allowed",
            AlgError::Unknown => "unknown",
        }
    }
}

/// Whether `alg` is asymmetric (RSA, RSA-PSS, ECDSA or EdDSA).
pub fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Parses an algorithm name exactly as JOSE spells it (`RS256`, not `rs256`).
pub fn parse_name(name: &str) -> Option<Algorithm> {
    let alg = Algorithm::from_str(name).ok()?;
    // from_str is exact today; keep the round trip as the guarantee.
    (format!("{alg:?}") == name).then_some(alg)
}

/// The header's algorithm, if it is in `allowed`.
pub fn check(header: &Map<String, Value>, allowed: &[Algorithm]) -> Result<Algorithm, AlgError> {
    let value = header.get("alg").ok_or(AlgError::Missing)?;
    let Value::String(name) = value else {
        return Err(AlgError::Unknown);
    };
    if name.eq_ignore_ascii_case("none") {
        return Err(AlgError::None);
    }
    let alg = parse_name(name).ok_or(AlgError::Unknown)?;
    if !is_asymmetric(alg) {
        return Err(AlgError::Symmetric);
    }
    if !allowed.contains(&alg) {
        return Err(AlgError::NotAllowed);
    }
    Ok(alg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn accepts_configured_algorithms_only() {
        let allowed = [Algorithm::RS256, Algorithm::ES256];
        assert_eq!(
            check(&header(json!({"alg": "RS256"})), &allowed),
            Ok(Algorithm::RS256)
        );
        assert_eq!(
            check(&header(json!({"alg": "ES256"})), &allowed),
            Ok(Algorithm::ES256)
        );
        let cases = [
            (json!({}), AlgError::Missing),
            (json!({"alg": "none"}), AlgError::None),
            (json!({"alg": "None"}), AlgError::None),
            (json!({"alg": "NONE"}), AlgError::None),
            (json!({"alg": "HS256"}), AlgError::Symmetric),
            (json!({"alg": "HS512"}), AlgError::Symmetric),
            (json!({"alg": "PS256"}), AlgError::NotAllowed),
            (json!({"alg": "EdDSA"}), AlgError::NotAllowed),
            (json!({"alg": "ES384"}), AlgError::NotAllowed),
            (json!({"alg": "rs256"}), AlgError::Unknown),
            (json!({"alg": "RS256 "}), AlgError::Unknown),
            (json!({"alg": ["RS256"]}), AlgError::Unknown),
            (json!({"alg": null}), AlgError::Unknown),
            (json!({"alg": "ES512"}), AlgError::Unknown),
        ];
        for (h, want) in cases {
            assert_eq!(check(&header(h.clone()), &allowed), Err(want), "{h}");
        }
    }
}
