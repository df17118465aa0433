//! Gates `version` and `org`: which claim holds the org id, and whether its value has the org id shape.
//!
//! For Clerk tokens the version decides the path and there is no fallback: `v: 2` reads `o.id` only (a v2
//! template may add a user-writable custom `org_id`), a token without `v` reads the v1 `org_id` only.

use http::StatusCode;
use serde_json::{Map, Value};

use crate::denial::{Gate, GateError};

/// Where the org id is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgClaim {
    /// Clerk session tokens: `v: 2` → `o.id`; no `v` → `org_id`; any other `v` is refused.
    Clerk,
    /// A fixed path of object keys, e.g. `["org", "id"]`.
    Path(Vec<String>),
}

/// The accepted shape of an org id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgShape {
    /// A prefix the id must start with (Clerk: `org_`), followed by at least one character.
    pub prefix: Option<String>,
    /// Longest accepted id, in bytes.
    pub max_len: usize,
}

/// Why the claim version was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// `v` is present and not a supported version.
    #[error("unsupported claim version")]
    Unsupported,
}

impl GateError for VersionError {
    const GATE: Gate = Gate::Version;

    fn reason(&self) -> &'static str {
        match self {
            VersionError::Unsupported => "unsupported",
        }
    }
}

/// Why the org claim was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrgError {
    /// The claim is absent: the session has no active organisation.
    #[error("no active org")]
    NoActiveOrg,
    /// A container on the path (e.g. `o`) is not an object.
    #[error("org container invalid")]
    InvalidContainer,
    /// The value is not a string (null, number, array, object).
    #[error("org not a string")]
    NotString,
    /// The value is empty.
    #[error("org empty")]
    Empty,
    /// The value is longer than allowed.
    #[error("org too long")]
    TooLong,
    /// The value does not have the org id shape.
    #[error("org shape")]
    BadShape,
}

impl GateError for OrgError {
    const GATE: Gate = Gate::Org;

    fn reason(&self) -> &'static str {
        match self {
            OrgError::NoActiveOrg => "no_active_org",
            OrgError::InvalidContainer => "invalid_container",
            OrgError::NotString => "not_a_string",
            OrgError::Empty => "empty",
            OrgError::TooLong => "too_long",
            OrgError::BadShape => "bad_shape",
        }
    }

    fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }
}

/// Gate `version`: the path of the org claim for these claims.
pub fn org_path<'a>(claims: &Map<String, Value>, claim: &'a OrgClaim) -> Result<Vec<&'a str>, VersionError> {
    match claim {
        OrgClaim::Path(path) => Ok(path.iter().map(String::as_str).collect()),
        OrgClaim::Clerk => match claims.get("v") {
            None => Ok(vec!["org_id"]),
            Some(v) if v.as_i64() == Some(2) => Ok(vec!["o", "id"]),
            Some(_) => Err(VersionError::Unsupported),
        },
    }
}

/// Gate `org`: the org id at `path`, if it has `shape`.
pub fn org_id<'c>(
    claims: &'c Map<String, Value>,
    path: &[&str],
    shape: &OrgShape,
) -> Result<&'c str, OrgError> {
    let (last, containers) = path.split_last().ok_or(OrgError::NoActiveOrg)?;
    let mut object = claims;
    for key in containers {
        match object.get(*key) {
            None => return Err(OrgError::NoActiveOrg),
            Some(Value::Object(inner)) => object = inner,
            Some(_) => return Err(OrgError::InvalidContainer),
        }
    }
    let org = match object.get(*last) {
        None => return Err(OrgError::NoActiveOrg),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(OrgError::NotString),
    };
    check_shape(org, shape)?;
    Ok(org)
}

/// The org id shape: the Tenant CRD's (`[A-Za-z0-9][A-Za-z0-9_.:-]*`), within `max_len`, after the prefix if
/// one is configured. ASCII only, so homoglyphs and control characters never match.
pub fn check_shape(org: &str, shape: &OrgShape) -> Result<(), OrgError> {
    if org.is_empty() {
        return Err(OrgError::Empty);
    }
    if org.len() > shape.max_len {
        return Err(OrgError::TooLong);
    }
    let b = org.as_bytes();
    let charset_ok = b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'));
    if !charset_ok {
        return Err(OrgError::BadShape);
    }
    if let Some(prefix) = &shape.prefix {
        match org.strip_prefix(prefix.as_str()) {
            Some(rest) if !rest.is_empty() => {}
            _ => return Err(OrgError::BadShape),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clerk_shape() -> OrgShape {
        OrgShape {
            prefix: Some("org_".into()),
            max_len: 64,
        }
    }

    fn org_of(v: Value) -> Result<String, String> {
        let claims = v.as_object().unwrap().clone();
        let path = org_path(&claims, &OrgClaim::Clerk).map_err(|e| format!("version:{}", e.reason()))?;
        org_id(&claims, &path, &clerk_shape())
            .map(str::to_owned)
            .map_err(|e| format!("org:{}", e.reason()))
    }

    #[test]
    fn clerk_version_picks_the_path_without_fallback() {
        assert_eq!(org_of(json!({"org_id": "org_a"})), Ok("org_a".into()));
        assert_eq!(org_of(json!({"v": 2, "o": {"id": "org_b"}})), Ok("org_b".into()));
        // v2 with a custom org_id: routed by o.id only.
        assert_eq!(
            org_of(json!({"v": 2, "o": {"id": "org_b"}, "org_id": "org_a"})),
            Ok("org_b".into())
        );
        assert_eq!(
            org_of(json!({"v": 2, "org_id": "org_a"})),
            Err("org:no_active_org".into())
        );
        assert_eq!(org_of(json!({"v": 2})), Err("org:no_active_org".into()));
        // No v but an `o`: v1 reads org_id only.
        assert_eq!(
            org_of(json!({"o": {"id": "org_b"}})),
            Err("org:no_active_org".into())
        );
        assert_eq!(
            org_of(json!({"v": 3, "o": {"id": "org_b"}})),
            Err("version:unsupported".into())
        );
        assert_eq!(
            org_of(json!({"v": "2", "o": {"id": "org_b"}})),
            Err("version:unsupported".into())
        );
        assert_eq!(org_of(json!({"v": 2.5})), Err("version:unsupported".into()));
        assert_eq!(
            org_of(json!({"v": 2, "o": "org_b"})),
            Err("org:invalid_container".into())
        );
    }

    #[test]
    fn org_values_of_the_wrong_shape_are_refused() {
        let cases = [
            (json!(null), "org:not_a_string"),
            (json!(""), "org:empty"),
            (json!(7), "org:not_a_string"),
            (json!(["org_a"]), "org:not_a_string"),
            (json!({"id": "org_a"}), "org:not_a_string"),
            (json!("ORG_aaa"), "org:bad_shape"),
            (json!("org_"), "org:bad_shape"),
            (json!("оrg_aaa"), "org:bad_shape"), // Cyrillic о
            (json!("org_a\u{0}"), "org:bad_shape"),
            (json!("org_a/../b"), "org:bad_shape"),
            (json!(format!("org_{}", "a".repeat(61))), "org:too_long"),
        ];
        for (value, want) in cases {
            assert_eq!(
                org_of(json!({ "org_id": value })),
                Err(want.to_owned()),
                "{value}"
            );
        }
        assert_eq!(
            org_of(json!({ "org_id": format!("org_{}", "a".repeat(60)) })).map(|s| s.len()),
            Ok(64)
        );
    }

    #[test]
    fn configured_paths_are_followed_exactly() {
        let claims = json!({"tenant": {"org": "acme"}, "org_id": "org_x"});
        let claims = claims.as_object().unwrap();
        let claim = OrgClaim::Path(vec!["tenant".into(), "org".into()]);
        let path = org_path(claims, &claim).unwrap();
        let shape = OrgShape {
            prefix: None,
            max_len: 128,
        };
        assert_eq!(org_id(claims, &path, &shape), Ok("acme"));
        assert_eq!(org_id(claims, &["missing"], &shape), Err(OrgError::NoActiveOrg));
        assert_eq!(
            org_id(claims, &["org_id", "x"], &shape),
            Err(OrgError::InvalidContainer)
        );
    }
}
