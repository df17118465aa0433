//! Gate `aud`: the issuer's `azp` (authorized party, Clerk's CSRF defence) and `aud` policies.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::denial::{Gate, GateError};

/// What to do with `aud`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "mode", content = "values")]
pub enum AudPolicy {
    /// `aud` is not looked at.
    #[default]
    Ignore,
    /// A token carrying `aud` is refused (Clerk session tokens carry none; an `aud` means another kind of token).
    Forbid,
    /// `aud` (a string or an array of strings) must contain one of these.
    Require(Vec<String>),
}

/// The `azp` and `aud` policy of an issuer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AudiencePolicy {
    /// Allowed `azp` values; empty means `azp` is not checked.
    pub allowed_azp: Vec<String>,
    /// Whether a token without `azp` is refused (only with a non-empty `allowed_azp`).
    pub require_azp: bool,
    /// The `aud` policy.
    pub aud: AudPolicy,
}

/// Why `azp` or `aud` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AudError {
    /// `azp` is required and absent.
    #[error("azp missing")]
    AzpMissing,
    /// `azp` is not a string.
    #[error("azp invalid")]
    AzpInvalid,
    /// `azp` is not allowed.
    #[error("azp not allowed")]
    AzpNotAllowed,
    /// `aud` is present where the policy forbids it.
    #[error("aud present")]
    AudPresent,
    /// `aud` is required and absent.
    #[error("aud missing")]
    AudMissing,
    /// `aud` is neither a string nor an array of strings.
    #[error("aud invalid")]
    AudInvalid,
    /// No `aud` value is allowed.
    #[error("aud not allowed")]
    AudNotAllowed,
}

impl GateError for AudError {
    const GATE: Gate = Gate::Aud;

    fn reason(&self) -> &'static str {
        match self {
            AudError::AzpMissing => "azp_missing",
            AudError::AzpInvalid => "azp_invalid",
            AudError::AzpNotAllowed => "azp_not_allowed",
            AudError::AudPresent => "aud_present",
            AudError::AudMissing => "aud_missing",
            AudError::AudInvalid => "aud_invalid",
            AudError::AudNotAllowed => "aud_not_allowed",
        }
    }
}

/// Checks `azp` and `aud` against `policy`.
pub fn check(claims: &Map<String, Value>, policy: &AudiencePolicy) -> Result<(), AudError> {
    if !policy.allowed_azp.is_empty() {
        match claims.get("azp") {
            None if policy.require_azp => return Err(AudError::AzpMissing),
            None => {}
            Some(Value::String(azp)) if !policy.allowed_azp.iter().any(|a| a == azp) => {
                return Err(AudError::AzpNotAllowed);
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(AudError::AzpInvalid),
        }
    }
    match (&policy.aud, claims.get("aud")) {
        (AudPolicy::Ignore, _) => Ok(()),
        (AudPolicy::Forbid, None) => Ok(()),
        (AudPolicy::Forbid, Some(_)) => Err(AudError::AudPresent),
        (AudPolicy::Require(_), None) => Err(AudError::AudMissing),
        (AudPolicy::Require(allowed), Some(aud)) => {
            let values: Vec<&str> = match aud {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().ok_or(AudError::AudInvalid))
                    .collect::<Result<_, _>>()?,
                _ => return Err(AudError::AudInvalid),
            };
            if values.iter().any(|v| allowed.iter().any(|a| a == v)) {
                Ok(())
            } else {
                Err(AudError::AudNotAllowed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn azp_policy() {
        let p = AudiencePolicy {
            allowed_azp: vec!["https://app.example".into()],
            require_azp: true,
            aud: AudPolicy::Ignore,
        };
        assert_eq!(check(&claims(json!({"azp": "https://app.example"})), &p), Ok(()));
        assert_eq!(check(&claims(json!({})), &p), Err(AudError::AzpMissing));
        assert_eq!(
            check(&claims(json!({"azp": "https://evil.example"})), &p),
            Err(AudError::AzpNotAllowed)
        );
        assert_eq!(
            check(&claims(json!({"azp": ["https://app.example"]})), &p),
            Err(AudError::AzpInvalid)
        );
        let lenient = AudiencePolicy {
            require_azp: false,
            ..p
        };
        assert_eq!(check(&claims(json!({})), &lenient), Ok(()));
        assert_eq!(
            check(&claims(json!({"azp": "x"})), &AudiencePolicy::default()),
            Ok(())
        );
    }

    #[test]
    fn aud_policies() {
        let forbid = AudiencePolicy {
            aud: AudPolicy::Forbid,
            ..Default::default()
        };
        assert_eq!(check(&claims(json!({})), &forbid), Ok(()));
        assert_eq!(
            check(&claims(json!({"aud": "api"})), &forbid),
            Err(AudError::AudPresent)
        );
        let require = AudiencePolicy {
            aud: AudPolicy::Require(vec!["api".into()]),
            ..Default::default()
        };
        assert_eq!(check(&claims(json!({"aud": "api"})), &require), Ok(()));
        assert_eq!(check(&claims(json!({"aud": ["x", "api"]})), &require), Ok(()));
        assert_eq!(check(&claims(json!({})), &require), Err(AudError::AudMissing));
        assert_eq!(
            check(&claims(json!({"aud": "x"})), &require),
            Err(AudError::AudNotAllowed)
        );
        assert_eq!(
            check(&claims(json!({"aud": ["api", 1]})), &require),
            Err(AudError::AudInvalid)
        );
        assert_eq!(
            check(&claims(json!({"aud": {"a": 1}})), &require),
            Err(AudError::AudInvalid)
        );
    }
}
