//! Gate `request`: framing and method checks before any token work. Ambiguous framing (both `Content-Length`
//! and `Transfer-Encoding`) is refused rather than resolved, the only protocol upgrade let through is a
//! well-formed WebSocket opening handshake (h2c and every other `Upgrade` value are refused), CONNECT is not
//! proxied (an HTTP/2 extended CONNECT for `websocket` is checked by [`extended_connect`] instead), and a
//! declared body over the limit is refused up front.

use http::header::{
    CONNECTION, CONTENT_LENGTH, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, StatusCode};

use crate::denial::{Gate, GateError};

/// Why the request was refused before authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("ambiguous framing")]
    AmbiguousFraming,
    /// An `Upgrade` to anything but `websocket` (h2c, several protocols, ...): not proxied.
    #[error("upgrade unsupported")]
    Upgrade,
    /// `Upgrade: websocket` without a well-formed opening handshake (RFC 6455 §4.1).
    #[error("websocket handshake invalid")]
    WebSocketInvalid,
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
            RequestError::WebSocketInvalid => "websocket_invalid",
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
        websocket(method, headers)?;
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

/// Exactly one `Sec-WebSocket-Version`, and it is `13`.
fn version_13(headers: &HeaderMap) -> bool {
    headers.get_all(SEC_WEBSOCKET_VERSION).iter().count() == 1
        && headers.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13")
}

/// No body announced: no `Transfer-Encoding`, and any `Content-Length` is 0.
fn without_body(headers: &HeaderMap) -> bool {
    !headers.contains_key(TRANSFER_ENCODING)
        && headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .all(|v| v.as_bytes() == b"0")
}

/// Checks an HTTP/2 extended CONNECT (RFC 8441) whose `:protocol` is `protocol`: only `websocket`, with
/// `Sec-WebSocket-Version: 13` and no body. The other checks of [`check`] apply as to the GET it stands for.
pub fn extended_connect(protocol: &str, headers: &HeaderMap, max_body: u64) -> Result<(), RequestError> {
    if !protocol.eq_ignore_ascii_case("websocket") {
        return Err(RequestError::Upgrade);
    }
    let version_ok = version_13(headers);
    let no_body = without_body(headers);
    if !version_ok || !no_body {
        return Err(RequestError::WebSocketInvalid);
    }
    check(&Method::GET, headers, max_body)
}

/// Checks a request that carries `Upgrade`: exactly one value, `websocket`, on a GET that says
/// `Connection: upgrade`, with one 16-byte `Sec-WebSocket-Key` and `Sec-WebSocket-Version: 13`.
pub fn websocket(method: &Method, headers: &HeaderMap) -> Result<(), RequestError> {
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let is_websocket = upgrades
        .next()
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !is_websocket || upgrades.next().is_some() {
        return Err(RequestError::Upgrade);
    }
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    // A base64 encoding of 16 bytes: 22 characters and two `=`.
    let key_ok = keys.next().is_some_and(|k| {
        let k = k.as_bytes();
        k.len() == 24
            && k.ends_with(b"==")
            && k[..22]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    }) && keys.next().is_none();
    let version_ok = version_13(headers);
    // The handshake has no body: bytes after the head belong to the tunnel.
    let no_body = without_body(headers);
    if method != Method::GET || !connection_upgrade || !key_ok || !version_ok || !no_body {
        return Err(RequestError::WebSocketInvalid);
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
            Err(RequestError::WebSocketInvalid)
        );
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ];
        assert_eq!(check(&Method::GET, &h(&ws), 10), Ok(()));
        assert_eq!(
            check(&Method::POST, &h(&ws), 10),
            Err(RequestError::WebSocketInvalid)
        );
        for (name, value, want) in [
            ("upgrade", "h2c", RequestError::Upgrade),
            ("upgrade", "websocket, h2c", RequestError::Upgrade),
            ("upgrade", "WebSocket/13", RequestError::Upgrade),
            ("connection", "close", RequestError::WebSocketInvalid),
            ("sec-websocket-key", "short", RequestError::WebSocketInvalid),
            ("sec-websocket-version", "8", RequestError::WebSocketInvalid),
            ("content-length", "5", RequestError::WebSocketInvalid),
            ("transfer-encoding", "chunked", RequestError::WebSocketInvalid),
        ] {
            let mut headers = h(&ws);
            headers.insert(name, HeaderValue::from_static(value));
            assert_eq!(check(&Method::GET, &headers, 10), Err(want), "{name}: {value}");
        }
        let h2 = [("sec-websocket-version", "13")];
        assert_eq!(extended_connect("websocket", &h(&h2), 10), Ok(()));
        assert_eq!(
            extended_connect("connect-udp", &h(&h2), 10),
            Err(RequestError::Upgrade)
        );
        assert_eq!(
            extended_connect("websocket", &h(&[]), 10),
            Err(RequestError::WebSocketInvalid)
        );
        let mut twice = h(&ws);
        twice.append("upgrade", HeaderValue::from_static("h2c"));
        assert_eq!(check(&Method::GET, &twice, 10), Err(RequestError::Upgrade));
        assert_eq!(check(&Method::CONNECT, &h(&[]), 10), Err(RequestError::Method));
        assert_eq!(check(&Method::TRACE, &h(&[]), 10), Err(RequestError::Method));
    }
}
