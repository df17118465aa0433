//! Gate `typ`: explicit typing (RFC 8725 §3.11). A token whose header declares a type is accepted only when
//! that type is `JWT` or one the configuration lists (`tokens.allowed_typ`, e.g. `at+jwt`); a token without
//! `typ` is accepted. Another kind of JOSE object signed by the same issuer (a logout token, an ID token typed
//! for another audience, a JWE's inner token) is thereby not mistaken for an access token.
//!
//! Comparison follows RFC 7515 §4.1.9: `typ` is a media type, so it is compared ASCII case-insensitively, and a
//! value without `/` stands for `application/<value>` (`at+jwt` and `application/AT+JWT` are the same type).

use serde_json::{Map, Value};

use crate::denial::{Gate, GateError};

/// Why the declared type was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TypError {
    /// A type other than `JWT` and the configured ones.
    #[error("typ not allowed")]
    NotAllowed,
    /// `typ` is not a string.
    #[error("typ invalid")]
    Invalid,
}

impl GateError for TypError {
    const GATE: Gate = Gate::Typ;

    fn reason(&self) -> &'static str {
        match self {
            TypError::NotAllowed => "not_allowed",
            TypError::Invalid => "invalid",
        }
    }
}

/// The types accepted besides an absent `typ`, in their compared form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypPolicy {
    accepted: Vec<String>,
}

impl Default for TypPolicy {
    /// `JWT` only.
    fn default() -> Self {
        TypPolicy {
            accepted: vec![normalize("JWT")],
        }
    }
}

/// The form types are compared in: lower case, without an `application/` prefix.
fn normalize(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// Whether `typ` is a bare media type (`type/subtype` or a subtype alone; RFC 6838 name characters, no
/// parameters).
fn is_media_type(typ: &str) -> bool {
    let name = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match typ.split_once('/') {
        Some((kind, sub)) => name(kind) && name(sub),
        None => name(typ),
    }
}

impl TypPolicy {
    /// `JWT` and `extra`; every value must be a bare media type.
    pub fn new(extra: &[String]) -> Result<TypPolicy, String> {
        let mut policy = TypPolicy::default();
        for typ in extra {
            if !is_media_type(typ) {
                return Err(format!("{typ:?} is not a media type such as at+jwt"));
            }
            let typ = normalize(typ);
            if !policy.accepted.contains(&typ) {
                policy.accepted.push(typ);
            }
        }
        Ok(policy)
    }
}

/// Checks the header's `typ` against `policy`.
pub fn check(header: &Map<String, Value>, policy: &TypPolicy) -> Result<(), TypError> {
    match header.get("typ") {
        None => Ok(()),
        Some(Value::String(typ)) if policy.accepted.contains(&normalize(typ)) => Ok(()),
        Some(Value::String(_)) => Err(TypError::NotAllowed),
        Some(_) => Err(TypError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn accepts_absent_jwt_and_configured_types_in_any_case() {
        let policy = TypPolicy::new(&["at+jwt".into()]).unwrap();
        for typ in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("application/jwt"),
            Some("at+jwt"),
            Some("AT+JWT"),
            Some("application/at+jwt"),
            Some("Application/At+Jwt"),
        ] {
            let h = match typ {
                Some(t) => json!({"alg": "RS256", "typ": t}),
                None => json!({"alg": "RS256"}),
            };
            assert_eq!(check(&header(h), &policy), Ok(()), "{typ:?}");
        }
    }

    #[test]
    fn refuses_other_types() {
        let default = TypPolicy::default();
        let configured = TypPolicy::new(&["application/at+jwt".into()]).unwrap();
        let cases = [
            (json!("JWE"), TypError::NotAllowed),
            (json!("at+jwt"), TypError::NotAllowed),
            (json!("JOSE"), TypError::NotAllowed),
            (json!("logout+jwt"), TypError::NotAllowed),
            (json!("JWT "), TypError::NotAllowed),
            (json!(""), TypError::NotAllowed),
            (json!("text/jwt"), TypError::NotAllowed),
            (json!(null), TypError::Invalid),
            (json!(["JWT"]), TypError::Invalid),
        ];
        for (typ, want) in cases {
            let h = header(json!({"alg": "RS256", "typ": typ}));
            assert_eq!(check(&h, &default), Err(want), "{typ}");
            if typ != json!("at+jwt") {
                assert_eq!(check(&h, &configured), Err(want), "{typ}");
            }
        }
        assert_eq!(check(&header(json!({"typ": "at+JWT"})), &configured), Ok(()));
    }

    #[test]
    fn configured_values_must_be_media_types() {
        for bad in [
            "",
            "at+jwt; charset=utf-8",
            "at jwt",
            "a/b/c",
            "/jwt",
            "jwt/",
            "é",
        ] {
            assert!(TypPolicy::new(&[bad.into()]).is_err(), "{bad:?}");
        }
        assert!(TypPolicy::new(&["application/secevent+jwt".into(), "dpop+jwt".into()]).is_ok());
    }
}
