//! Gate `iss`: after the signature, the token's `iss` must be an allow-listed issuer and the very issuer whose
//! key verified it. Keys never cross issuers. Comparison is exact: a trailing slash is another issuer.

use serde_json::{Map, Value};

use crate::denial::{Gate, GateError};

/// Why the issuer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssError {
    /// No `iss`.
    #[error("iss missing")]
    Missing,
    /// `iss` is not a string.
    #[error("iss invalid")]
    Invalid,
    /// `iss` is not on the allow-list.
    #[error("iss not allowed")]
    NotAllowed,
    /// `iss` is allowed, but the verifying key belongs to another issuer.
    #[error("key belongs to another issuer")]
    KeyIssuerMismatch,
}

impl GateError for IssError {
    const GATE: Gate = Gate::Iss;

    fn reason(&self) -> &'static str {
        match self {
            IssError::Missing => "missing",
            IssError::Invalid => "invalid",
            IssError::NotAllowed => "not_allowed",
            IssError::KeyIssuerMismatch => "key_issuer_mismatch",
        }
    }
}

/// Checks `iss` against the allow-list and the issuer of the key that verified the token.
pub fn check<'a>(
    claims: &'a Map<String, Value>,
    allowed: &[&str],
    key_issuer: &str,
) -> Result<&'a str, IssError> {
    let iss = match claims.get("iss") {
        None => return Err(IssError::Missing),
        Some(Value::String(iss)) => iss.as_str(),
        Some(_) => return Err(IssError::Invalid),
    };
    if !allowed.contains(&iss) {
        return Err(IssError::NotAllowed);
    }
    if iss != key_issuer {
        return Err(IssError::KeyIssuerMismatch);
    }
    Ok(iss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "https://clerk.a.example";
    const B: &str = "https://clerk.b.example";

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn exact_match_with_the_keys_issuer() {
        let allowed = [A, B];
        assert_eq!(check(&claims(json!({ "iss": A })), &allowed, A), Ok(A));
        let cases = [
            (json!({}), IssError::Missing),
            (json!({ "iss": [A] }), IssError::Invalid),
            (json!({ "iss": null }), IssError::Invalid),
            (json!({ "iss": format!("{A}/") }), IssError::NotAllowed),
            (
                json!({ "iss": "https://x.clerk.accounts.dev" }),
                IssError::NotAllowed,
            ),
            (json!({ "iss": "HTTPS://CLERK.A.EXAMPLE" }), IssError::NotAllowed),
            (json!({ "iss": B }), IssError::KeyIssuerMismatch),
        ];
        for (c, want) in cases {
            assert_eq!(check(&claims(c.clone()), &allowed, A), Err(want), "{c}");
        }
    }
}
