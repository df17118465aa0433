//! Gate `kid`: the header names its key with a short printable-ASCII `kid`, matched exactly (never as a path,
//! pattern or query) within the issuer's own keys at gate `key`.

use serde_json::{Map, Value};

use crate::denial::{Gate, GateError};

/// Longest accepted key id.
pub const MAX_KID_LEN: usize = 128;

/// Why the key id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KidError {
    /// No `kid`.
    #[error("kid missing")]
    Missing,
    /// Not a string, empty, or with characters outside printable ASCII.
    #[error("kid invalid")]
    Invalid,
    /// Longer than [`MAX_KID_LEN`].
    #[error("kid too long")]
    TooLong,
}

impl GateError for KidError {
    const GATE: Gate = Gate::Kid;

    fn reason(&self) -> &'static str {
        match self {
            KidError::Missing => "missing",
            KidError::Invalid => "invalid",
            KidError::TooLong => "too_long",
        }
    }
}

/// The header's key id.
pub fn check(header: &Map<String, Value>) -> Result<&str, KidError> {
    let value = header.get("kid").ok_or(KidError::Missing)?;
    let Value::String(kid) = value else {
        return Err(KidError::Invalid);
    };
    if kid.len() > MAX_KID_LEN {
        return Err(KidError::TooLong);
    }
    if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KidError::Invalid);
    }
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn accepts_printable_kids_and_refuses_the_rest() {
        assert_eq!(check(&header(json!({"kid": "ins_2abc"}))), Ok("ins_2abc"));
        // A traversal-looking kid is just an unknown exact string: shape-valid here, unknown at gate `key`.
        assert_eq!(
            check(&header(json!({"kid": "../../etc/passwd"}))),
            Ok("../../etc/passwd")
        );
        let long = "k".repeat(10_000);
        let cases = [
            (json!({}), KidError::Missing),
            (json!({"kid": ""}), KidError::Invalid),
            (json!({"kid": 7}), KidError::Invalid),
            (json!({"kid": null}), KidError::Invalid),
            (json!({"kid": "a b"}), KidError::Invalid),
            (json!({"kid": "a\u{0}b"}), KidError::Invalid),
            (json!({"kid": "ключ"}), KidError::Invalid),
            (json!({ "kid": long }), KidError::TooLong),
        ];
        for (h, want) in cases {
            assert_eq!(check(&header(h.clone())), Err(want), "{h}");
        }
    }
}
