//! Gate `token`: exactly one `Authorization: Bearer <token>` header, size-capped, in token68 syntax.
//!
//! Tokens are read from that header only: never from the query string, a form body or a cookie.

use http::{HeaderMap, StatusCode, header::AUTHORIZATION};

use crate::denial::{Gate, GateError};

/// Why the `Authorization` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// More than one `Authorization` header.
    #[error("more than one Authorization header")]
    Multiple,
    /// The header is longer than the configured cap.
    #[error("Authorization header too large")]
    TooLarge,
    /// The scheme is not `Bearer`.
    #[error("scheme is not Bearer")]
    NotBearer,
    /// `Bearer` with nothing after it.
    #[error("empty bearer token")]
    Empty,
    /// Anything else: extra spaces, characters outside token68, non-ASCII.
    #[error("malformed Authorization header")]
    Malformed,
}

impl GateError for BearerError {
    const GATE: Gate = Gate::Token;

    fn reason(&self) -> &'static str {
        match self {
            BearerError::Missing => "missing",
            BearerError::Multiple => "multiple_authorization_headers",
            BearerError::TooLarge => "too_large",
            BearerError::NotBearer => "not_bearer",
            BearerError::Empty => "empty",
            BearerError::Malformed => "malformed",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            BearerError::Missing | BearerError::NotBearer | BearerError::Empty => StatusCode::UNAUTHORIZED,
            BearerError::Multiple | BearerError::Malformed => StatusCode::BAD_REQUEST,
            BearerError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }
}

/// The bearer token of the request's single `Authorization` header, whose whole value is at most `max_bytes`.
pub fn bearer_token(headers: &HeaderMap, max_bytes: usize) -> Result<&str, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Multiple);
    }
    // The size cap comes before any other work on the value.
    if value.len() > max_bytes {
        return Err(BearerError::TooLarge);
    }
    // The common case in one pass over the token: `Bearer ` and token68. Token68 bytes are visible ASCII, so
    // whatever passes here passes every check below; anything else goes through them for its reason.
    let bytes = value.as_bytes();
    if bytes.len() > 7
        && bytes[..7].eq_ignore_ascii_case(b"bearer ")
        && is_token68_bytes(&bytes[7..])
        && let Ok(token) = std::str::from_utf8(&bytes[7..])
    {
        return Ok(token);
    }
    let value = value.to_str().map_err(|_| BearerError::Malformed)?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(if value.eq_ignore_ascii_case("bearer") {
            BearerError::Empty
        } else {
            BearerError::NotBearer
        });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::NotBearer);
    }
    if rest.is_empty() {
        return Err(BearerError::Empty);
    }
    if !is_token68(rest) {
        return Err(BearerError::Malformed);
    }
    Ok(rest)
}

/// The token68 characters before the `=` padding, as a table (the check runs over every token of every request).
const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// RFC 9110 §11.2 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    is_token68_bytes(s.as_bytes())
}

fn is_token68_bytes(s: &[u8]) -> bool {
    let body = match s.iter().rposition(|b| *b != b'=') {
        Some(last) => &s[..=last],
        None => return false,
    };
    body.iter().all(|b| TOKEN68[usize::from(*b)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accepts_one_bearer_in_any_case() {
        assert_eq!(bearer_token(&with(&["Bearer a.b.c"]), 100), Ok("a.b.c"));
        assert_eq!(bearer_token(&with(&["bearer a.b.c"]), 100), Ok("a.b.c"));
        assert_eq!(bearer_token(&with(&["BEARER a.b-_c"]), 100), Ok("a.b-_c"));
    }

    #[test]
    fn refuses_each_malformed_shape_with_its_reason() {
        let cases: &[(&[&str], BearerError)] = &[
            (&[], BearerError::Missing),
            (&["Bearer a.b.c", "Bearer a.b.c"], BearerError::Multiple),
            (&["Bearer "], BearerError::Empty),
            (&["Bearer"], BearerError::Empty),
            (&["Bearer  a.b.c"], BearerError::Malformed),
            (&["Bearer a.b.c "], BearerError::Malformed),
            (&["Bearer a b"], BearerError::Malformed),
            (&["Bearer a.b.c,x"], BearerError::Malformed),
            (&["Bearer ==="], BearerError::Malformed),
            (&["Basic dXNlcjpwYXNz"], BearerError::NotBearer),
            (&["a.b.c"], BearerError::NotBearer),
        ];
        for (values, want) in cases {
            assert_eq!(bearer_token(&with(values), 100), Err(*want), "{values:?}");
        }
    }

    #[test]
    fn size_cap_counts_the_whole_header_value() {
        let token = "a".repeat(93);
        assert_eq!(
            bearer_token(&with(&[&format!("Bearer {token}")]), 100),
            Ok(token.as_str())
        );
        let token = "a".repeat(94);
        assert_eq!(
            bearer_token(&with(&[&format!("Bearer {token}")]), 100),
            Err(BearerError::TooLarge)
        );
        assert_eq!(
            BearerError::TooLarge.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn non_ascii_values_are_malformed() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_bytes(b"Bearer a\xffb").unwrap());
        assert_eq!(bearer_token(&h, 100), Err(BearerError::Malformed));
    }
}
