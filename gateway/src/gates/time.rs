//! Gate `time`: `exp` is required, `nbf` and `iat` are checked when present, all three must be integer
//! NumericDates, a small leeway applies, and the token may not live longer than the configured maximum.

use serde_json::{Map, Value};

use crate::denial::{Gate, GateError};

/// The time policy of an issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePolicy {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: i64,
    /// Longest accepted lifetime, in seconds: both `exp - now` and `exp - iat` must stay within it.
    pub max_lifetime: i64,
}

/// Why the time claims were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// No `exp`.
    #[error("exp missing")]
    ExpMissing,
    /// `exp` is not a non-negative integer.
    #[error("exp invalid")]
    ExpInvalid,
    /// `exp` is past, beyond the leeway.
    #[error("expired")]
    Expired,
    /// `nbf` is not a non-negative integer.
    #[error("nbf invalid")]
    NbfInvalid,
    /// `nbf` is in the future, beyond the leeway.
    #[error("not yet valid")]
    NotYetValid,
    /// `iat` is not a non-negative integer.
    #[error("iat invalid")]
    IatInvalid,
    /// `iat` is in the future, beyond the leeway.
    #[error("issued in the future")]
    IssuedInFuture,
    /// The token lives longer than the maximum lifetime.
    #[error("lifetime too long")]
    LifetimeTooLong,
}

impl GateError for TimeError {
    const GATE: Gate = Gate::Time;

    fn reason(&self) -> &'static str {
        match self {
            TimeError::ExpMissing => "exp_missing",
            TimeError::ExpInvalid => "exp_invalid",
            TimeError::Expired => "expired",
            TimeError::NbfInvalid => "nbf_invalid",
            TimeError::NotYetValid => "not_yet_valid",
            TimeError::IatInvalid => "iat_invalid",
            TimeError::IssuedInFuture => "issued_in_future",
            TimeError::LifetimeTooLong => "lifetime_too_long",
        }
    }
}

/// An integer NumericDate: `None` when absent, `Err(())` when present but not a non-negative integer
/// (strings, floats, `null`, 1e300, negatives).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Option<Result<i64, ()>> {
    let value = claims.get(name)?;
    Some(match value {
        Value::Number(n) => n.as_i64().filter(|v| *v >= 0).ok_or(()),
        _ => Err(()),
    })
}

/// Checks the time claims at `now` (seconds since the epoch) and returns `exp`.
pub fn check(claims: &Map<String, Value>, now: i64, policy: TimePolicy) -> Result<i64, TimeError> {
    let exp = match numeric_date(claims, "exp") {
        None => return Err(TimeError::ExpMissing),
        Some(Err(())) => return Err(TimeError::ExpInvalid),
        Some(Ok(exp)) => exp,
    };
    let nbf = numeric_date(claims, "nbf")
        .transpose()
        .map_err(|()| TimeError::NbfInvalid)?;
    let iat = numeric_date(claims, "iat")
        .transpose()
        .map_err(|()| TimeError::IatInvalid)?;
    if now >= exp.saturating_add(policy.leeway) {
        return Err(TimeError::Expired);
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(policy.leeway)
    {
        return Err(TimeError::NotYetValid);
    }
    if let Some(iat) = iat
        && iat > now.saturating_add(policy.leeway)
    {
        return Err(TimeError::IssuedInFuture);
    }
    let from = iat.unwrap_or(now).min(now);
    if exp.saturating_sub(from) > policy.max_lifetime {
        return Err(TimeError::LifetimeTooLong);
    }
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const POLICY: TimePolicy = TimePolicy {
        leeway: 30,
        max_lifetime: 3600,
    };

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn accepts_a_current_token() {
        let c = claims(json!({"exp": NOW + 60, "nbf": NOW - 5, "iat": NOW - 5}));
        assert_eq!(check(&c, NOW, POLICY), Ok(NOW + 60));
    }

    #[test]
    fn leeway_applies_to_exp_and_nbf_and_no_further() {
        assert_eq!(
            check(&claims(json!({"exp": NOW - 29})), NOW, POLICY),
            Ok(NOW - 29)
        );
        assert_eq!(
            check(&claims(json!({"exp": NOW - 30})), NOW, POLICY),
            Err(TimeError::Expired)
        );
        assert!(check(&claims(json!({"exp": NOW + 60, "nbf": NOW + 30})), NOW, POLICY).is_ok());
        assert_eq!(
            check(&claims(json!({"exp": NOW + 60, "nbf": NOW + 31})), NOW, POLICY),
            Err(TimeError::NotYetValid)
        );
        assert_eq!(
            check(&claims(json!({"exp": NOW + 60, "iat": NOW + 31})), NOW, POLICY),
            Err(TimeError::IssuedInFuture)
        );
    }

    #[test]
    fn ill_typed_dates_are_invalid_not_absent() {
        for exp in [
            json!("123"),
            json!(1.5),
            json!(-1),
            json!(1e300),
            json!(null),
            json!([NOW]),
            json!(true),
        ] {
            assert_eq!(
                check(&claims(json!({ "exp": exp })), NOW, POLICY),
                Err(TimeError::ExpInvalid),
                "{exp}"
            );
        }
        assert_eq!(check(&claims(json!({})), NOW, POLICY), Err(TimeError::ExpMissing));
        assert_eq!(
            check(&claims(json!({"exp": NOW + 60, "nbf": "0"})), NOW, POLICY),
            Err(TimeError::NbfInvalid)
        );
        assert_eq!(
            check(&claims(json!({"exp": NOW + 60, "iat": 1.0})), NOW, POLICY),
            Err(TimeError::IatInvalid)
        );
    }

    #[test]
    fn max_lifetime_counts_from_iat_or_now() {
        assert!(check(&claims(json!({"exp": NOW + 3600})), NOW, POLICY).is_ok());
        assert_eq!(
            check(&claims(json!({"exp": NOW + 3601})), NOW, POLICY),
            Err(TimeError::LifetimeTooLong)
        );
        assert_eq!(
            check(&claims(json!({"exp": NOW + 60, "iat": NOW - 3600})), NOW, POLICY),
            Err(TimeError::LifetimeTooLong)
        );
        assert_eq!(
            check(&claims(json!({"exp": i64::MAX})), NOW, POLICY),
            Err(TimeError::LifetimeTooLong)
        );
    }
}
