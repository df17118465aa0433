//! Gate `request`: framing and method checks before any token work. Ambiguous framing (both `Content-Length`
//! and `Transfer-Encoding`) is refused rather than resolved, protocol upgrades and CONNECT are not proxied, and
//! a declared body over the limit is refused up front.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, Method, StatusCode};

use crate::denial::{Gate, GateError};

/// Why the request was refused before authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("ambiguous framing")]
    AmbiguousFraming,
    /// An `Upgrade` request (WebSocket, h2c): not proxied.
    #[error("upgrade unsupported")]
    Upgrade,
    /// CONNECT or TRACE.
    #[error("method not allowed")]
    Method,
    /// `Content-Length` (or, while streaming, the body) over the body limit.
    #[error("body too large")]
    BodyTooLarge,
    /// The body broke off or was malformed while it streamed to the stack.
    #[error("body invalid")]
    BodyInvalid,
    /// The gateway already has its maximum of requests in flight.
    #[error("overloaded")]
    Overloaded,
    /// Audit lines cannot be written: nothing is forwarded without its audit line.
    #[error("audit unavailable")]
    AuditUnavailable,
}

impl GateError for RequestError {
    const GATE: Gate = Gate::Request;

    fn reason(&self) -> &'static str {
        match self {
            RequestError::AmbiguousFraming => "ambiguous_framing",
            RequestError::Upgrade => "upgrade_unsupported",
            RequestError::Method => "method_not_allowed",
            RequestError::BodyTooLarge => "body_too_large",
            RequestError::BodyInvalid => "body_invalid",
            RequestError::Overloaded => "overloaded",
            RequestError::AuditUnavailable => "audit_unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            RequestError::Method => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Overloaded | RequestError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Checks method and framing headers.
pub fn check(method: &Method, headers: &HeaderMap, max_body: u64) -> Result<(), RequestError> {
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(RequestError::Method);
    }
    if headers.contains_key(UPGRADE) {
        return Err(RequestError::Upgrade);
    }
    if headers.contains_key(CONTENT_LENGTH) && headers.contains_key(TRANSFER_ENCODING) {
        return Err(RequestError::AmbiguousFraming);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body) {
        return Err(RequestError::BodyTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(*n, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn refuses_ambiguous_or_unsupported_requests() {
        assert_eq!(check(&Method::GET, &h(&[]), 10), Ok(()));
        assert_eq!(check(&Method::POST, &h(&[("content-length", "10")]), 10), Ok(()));
        assert_eq!(
            check(&Method::POST, &h(&[("content-length", "11")]), 10),
            Err(RequestError::BodyTooLarge)
        );
        assert_eq!(
            check(
                &Method::POST,
                &h(&[("content-length", "3"), ("transfer-encoding", "chunked")]),
                10
            ),
            Err(RequestError::AmbiguousFraming)
        );
        assert_eq!(
            check(&Method::GET, &h(&[("upgrade", "websocket")]), 10),
            Err(RequestError::Upgrade)
        );
        assert_eq!(check(&Method::CONNECT, &h(&[]), 10), Err(RequestError::Method));
        assert_eq!(check(&Method::TRACE, &h(&[]), 10), Err(RequestError::Method));
    }
}
