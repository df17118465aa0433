//! The gates of the fixed verification order and the denial a failed gate produces.
//!
//! Every denial names its gate and a fixed reason string; both go into the JSON body, the audit line and the
//! metrics. Nothing else about the failure (no parser message, no key material) leaves the gateway.

use http::StatusCode;
use serde::Serialize;

/// The gates in their fixed order (docs/gateway.md), plus the request framing check before them and the upstream after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Request framing and method checks that come before any token work.
    Request,
    /// A CORS preflight, answered by the gateway itself (only with `cors:` configured).
    Cors,
    /// `Authorization: Bearer` presence, count, size and syntax.
    Token,
    /// Base64url and JSON structure of the token's parts.
    Parse,
    /// Explicit typing: the header's `typ`, when present, is `JWT` or a configured type.
    Typ,
    /// The algorithm allow-list.
    Alg,
    /// The key id's presence and shape.
    Kid,
    /// The issuer's key for that kid, and the key's binding to the algorithm.
    Key,
    /// The signature.
    Signature,
    /// `exp`, `nbf`, `iat` and the maximum lifetime.
    Time,
    /// The issuer allow-list and the binding of the key to its issuer.
    Iss,
    /// `azp` and `aud` policy.
    Aud,
    /// Clerk session status (`sts`).
    Session,
    /// The claim version (`v`) that picks the org claim's path.
    Version,
    /// The org claim's presence and shape.
    Org,
    /// The route table: org → tenant stack.
    Route,
    /// The optional per-org rate limit.
    RateLimit,
    /// The tenant's upstream, after every other gate passed.
    Upstream,
}

impl Gate {
    /// The gate's fixed name, as used in bodies, audit lines and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Request => "request",
            Gate::Cors => "cors",
            Gate::Token => "token",
            Gate::Parse => "parse",
            Gate::Typ => "typ",
            Gate::Alg => "alg",
            Gate::Kid => "kid",
            Gate::Key => "key",
            Gate::Signature => "signature",
            Gate::Time => "time",
            Gate::Iss => "iss",
            Gate::Aud => "aud",
            Gate::Session => "session",
            Gate::Version => "version",
            Gate::Org => "org",
            Gate::Route => "route",
            Gate::RateLimit => "rate_limit",
            Gate::Upstream => "upstream",
        }
    }
}

/// A refusal: which gate said no, why (a fixed string), and the HTTP status that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// The gate that refused.
    pub gate: Gate,
    /// A fixed snake_case reason.
    pub reason: &'static str,
    /// The status of the answer.
    pub status: StatusCode,
}

/// A typed gate error that knows its gate, fixed reason and status.
pub trait GateError {
    /// The gate this error belongs to.
    const GATE: Gate;
    /// The fixed reason string.
    fn reason(&self) -> &'static str;
    /// The HTTP status (401 unless the error says otherwise).
    fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
    /// The denial this error becomes.
    fn denial(&self) -> Denial {
        Denial {
            gate: Self::GATE,
            reason: self.reason(),
            status: self.status(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    gate: &'static str,
    reason: &'static str,
}

impl Denial {
    /// A denial from its parts.
    pub const fn new(gate: Gate, reason: &'static str, status: StatusCode) -> Denial {
        Denial { gate, reason, status }
    }

    /// The JSON body `{"error","gate","reason"}`; `error` is the status's canonical phrase.
    pub fn body(&self) -> Vec<u8> {
        let body = Body {
            error: self.status.canonical_reason().unwrap_or("error"),
            gate: self.gate.as_str(),
            reason: self.reason,
        };
        // Serialising three plain strings cannot fail; fall back to an empty object all the same.
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_exactly_error_gate_reason() {
        let d = Denial::new(Gate::Route, "no_route", StatusCode::FORBIDDEN);
        let v: serde_json::Value = serde_json::from_slice(&d.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "Forbidden", "gate": "route", "reason": "no_route"})
        );
    }

    #[test]
    fn gate_names_match_their_serde_names() {
        for gate in [
            Gate::Request,
            Gate::Token,
            Gate::RateLimit,
            Gate::Upstream,
            Gate::Iss,
        ] {
            let json = serde_json::to_value(gate).unwrap();
            assert_eq!(json, serde_json::Value::String(gate.as_str().into()));
        }
    }
}
