//! Gate `session`: Clerk's session status. A `pending` session belongs to a user who has not yet chosen or
//! joined a required organisation, and is refused.

use http::StatusCode;
use serde_json::{Map, Value};

use crate::denial::{Gate, GateError};

/// Why the session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// `sts` is `pending`.
    #[error("session pending")]
    Pending,
    /// `sts` is not a string.
    #[error("sts invalid")]
    Invalid,
    /// `sub` is present and not a short printable-ASCII string.
    #[error("sub invalid")]
    InvalidSubject,
    /// `act` is present and not an object with such a `sub`.
    #[error("act invalid")]
    InvalidActor,
}

/// Longest accepted `sub` (and `act.sub`, `sid`).
pub const MAX_SUBJECT_LEN: usize = 256;

/// Who the token speaks for: `sub`, the impersonating `act.sub` and the session id `sid`, each checked to be
/// printable ASCII of bounded length so that they can travel in headers and audit lines as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// `sub`.
    pub subject: Option<String>,
    /// `act.sub`: the impersonator, while Clerk impersonation is active.
    pub impersonator: Option<String>,
    /// `sid`.
    pub session: Option<String>,
}

impl GateError for SessionError {
    const GATE: Gate = Gate::Session;

    fn reason(&self) -> &'static str {
        match self {
            SessionError::Pending => "pending",
            SessionError::Invalid => "invalid",
            SessionError::InvalidSubject => "invalid_subject",
            SessionError::InvalidActor => "invalid_actor",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            SessionError::Pending => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Refuses `sts: "pending"` and an ill-typed `sts`.
pub fn check(claims: &Map<String, Value>) -> Result<(), SessionError> {
    match claims.get("sts") {
        None => Ok(()),
        Some(Value::String(s)) if s == "pending" => Err(SessionError::Pending),
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err(SessionError::Invalid),
    }
}

fn printable(value: Option<&Value>, err: SessionError) -> Result<Option<String>, SessionError> {
    match value {
        None => Ok(None),
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= MAX_SUBJECT_LEN && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(err),
    }
}

/// Reads `sub`, `act.sub` and `sid`.
pub fn subject(claims: &Map<String, Value>) -> Result<Subject, SessionError> {
    let impersonator = match claims.get("act") {
        None => None,
        Some(Value::Object(act)) => {
            Some(printable(act.get("sub"), SessionError::InvalidActor)?.ok_or(SessionError::InvalidActor)?)
        }
        Some(_) => return Err(SessionError::InvalidActor),
    };
    Ok(Subject {
        subject: printable(claims.get("sub"), SessionError::InvalidSubject)?,
        impersonator,
        session: printable(claims.get("sid"), SessionError::InvalidSubject)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pending_is_refused() {
        let c = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(check(&c(json!({}))), Ok(()));
        assert_eq!(check(&c(json!({"sts": "active"}))), Ok(()));
        assert_eq!(check(&c(json!({"sts": "pending"}))), Err(SessionError::Pending));
        assert_eq!(check(&c(json!({"sts": ["pending"]}))), Err(SessionError::Invalid));
        assert_eq!(SessionError::Pending.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn subject_and_impersonator_are_printable_strings() {
        let c = |v: Value| v.as_object().unwrap().clone();
        let s = subject(&c(
            json!({"sub": "user_1", "sid": "sess_1", "act": {"sub": "user_admin"}}),
        ))
        .unwrap();
        assert_eq!(s.subject.as_deref(), Some("user_1"));
        assert_eq!(s.impersonator.as_deref(), Some("user_admin"));
        assert_eq!(s.session.as_deref(), Some("sess_1"));
        assert_eq!(subject(&c(json!({}))), Ok(Subject::default()));
        assert_eq!(
            subject(&c(json!({"sub": "a\r\nb"}))),
            Err(SessionError::InvalidSubject)
        );
        assert_eq!(subject(&c(json!({"sub": 1}))), Err(SessionError::InvalidSubject));
        assert_eq!(subject(&c(json!({"act": "x"}))), Err(SessionError::InvalidActor));
        assert_eq!(subject(&c(json!({"act": {}}))), Err(SessionError::InvalidActor));
    }
}
