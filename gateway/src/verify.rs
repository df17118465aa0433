//! The token pipeline: runs the gates in their fixed order, with the key store and the verified-token cache,
//! and returns the verified identity or the first gate's denial. Records what it learned on the way for the
//! audit line (never the token itself: only its SHA-256).

use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use jsonwebtoken::Algorithm;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cache::TokenCache;
use crate::denial::{Denial, Gate, GateError};
use crate::gates::audience::AudiencePolicy;
use crate::gates::org::{OrgClaim, OrgShape};
use crate::gates::time::TimePolicy;
use crate::gates::typ::{self, TypPolicy};
use crate::gates::{alg, audience, bearer, issuer, kid, org, parse, session, time};
use crate::keys::{KeyStore, Lookup};
use crate::metrics::Metrics;

pub use crate::identity::Identity;

/// Longest value of an unverified field copied into an audit line.
const MAX_AUDIT_FIELD: usize = 256;

/// An issuer's claim policy.
#[derive(Debug, Clone)]
pub struct IssuerPolicy {
    /// The exact `iss`.
    pub issuer: String,
    /// `azp`/`aud` policy.
    pub audience: AudiencePolicy,
    /// Where the org id is.
    pub org_claim: OrgClaim,
    /// What an org id looks like.
    pub org_shape: OrgShape,
}

/// Why the key gate refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key with that kid for the issuer, even after the one allowed refetch.
    #[error("unknown kid")]
    UnknownKid,
    /// The key exists and is not bound to the token's algorithm.
    #[error("alg not bound to the key")]
    AlgMismatch,
    /// The issuer's keys have never been loaded.
    #[error("keys unavailable")]
    Unavailable,
}

impl GateError for KeyError {
    const GATE: Gate = Gate::Key;

    fn reason(&self) -> &'static str {
        match self {
            KeyError::UnknownKid => "unknown_kid",
            KeyError::AlgMismatch => "alg_mismatch",
            KeyError::Unavailable => "keys_unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            KeyError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Why the signature gate refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature does not verify with the key.
    #[error("invalid signature")]
    Invalid,
}

impl GateError for SignatureError {
    const GATE: Gate = Gate::Signature;

    fn reason(&self) -> &'static str {
        "invalid"
    }
}

/// What the pipeline saw, for the audit line. Once every token gate has passed, `identity` holds the verified
/// identity and the other fields are unused; before that they hold what the token claimed (`issuer`, `kid`)
/// and what was verified before a later gate refused (`subject`, `impersonator`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// SHA-256 of the token.
    pub token_sha256: Option<[u8; 32]>,
    /// `iss` as claimed.
    pub issuer: Option<String>,
    /// `kid` as claimed.
    pub kid: Option<String>,
    /// `sub` (verified).
    pub subject: Option<String>,
    /// `act.sub` (verified).
    pub impersonator: Option<String>,
    /// The verified identity.
    pub identity: Option<Arc<Identity>>,
}

impl Seen {
    /// `iss`: verified, or as claimed.
    pub fn issuer(&self) -> Option<&str> {
        match &self.identity {
            Some(id) => Some(&id.issuer),
            None => self.issuer.as_deref(),
        }
    }

    /// `kid`: verified, or as claimed.
    pub fn kid(&self) -> Option<&str> {
        match &self.identity {
            Some(id) => Some(&id.kid),
            None => self.kid.as_deref(),
        }
    }

    /// `sub` (verified).
    pub fn subject(&self) -> Option<&str> {
        match &self.identity {
            Some(id) => id.subject.as_deref(),
            None => self.subject.as_deref(),
        }
    }

    /// The org id (verified and shape-checked).
    pub fn org(&self) -> Option<&str> {
        self.identity.as_ref().map(|id| id.org.as_str())
    }

    /// `act.sub` (verified).
    pub fn impersonator(&self) -> Option<&str> {
        match &self.identity {
            Some(id) => id.impersonator.as_deref(),
            None => self.impersonator.as_deref(),
        }
    }
}

fn clipped(value: Option<&Value>) -> Option<String> {
    let s = value?.as_str()?;
    let mut end = s.len().min(MAX_AUDIT_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(s[..end].to_owned())
}

/// SHA-256 of a token: the cache key, and (in hex) what audit lines record instead of the token.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Runs the token gates.
#[derive(Debug)]
pub struct Verifier {
    policies: Vec<IssuerPolicy>,
    allowed_issuers: Vec<String>,
    algorithms: Vec<Algorithm>,
    time: TimePolicy,
    typ: TypPolicy,
    max_token_bytes: usize,
    keys: Arc<KeyStore>,
    cache: TokenCache,
    metrics: Arc<Metrics>,
}

impl Verifier {
    /// A verifier over `keys`, whose issuers are `policies` in the same order, allowing the union of
    /// `algorithms` at gate `alg` (each key then narrows it to its own).
    pub fn new(
        policies: Vec<IssuerPolicy>,
        algorithms: Vec<Algorithm>,
        time: TimePolicy,
        max_token_bytes: usize,
        keys: Arc<KeyStore>,
        cache: TokenCache,
        metrics: Arc<Metrics>,
    ) -> Verifier {
        let allowed_issuers = policies.iter().map(|p| p.issuer.clone()).collect();
        Verifier {
            policies,
            allowed_issuers,
            algorithms,
            time,
            typ: TypPolicy::default(),
            max_token_bytes,
            keys,
            cache,
            metrics,
        }
    }

    /// Accepts the header types of `typ` (by default only `JWT`, and tokens without `typ`).
    pub fn with_typ(mut self, typ: TypPolicy) -> Verifier {
        self.typ = typ;
        self
    }

    /// The clock skew tolerated on `exp`, in seconds (a tunnel closes at `exp` plus this).
    pub fn leeway(&self) -> i64 {
        self.time.leeway
    }

    /// The key store.
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Verifies the request's bearer token at `now` (seconds since the epoch).
    pub async fn verify(
        &self,
        headers: &HeaderMap,
        now: i64,
        seen: &mut Seen,
    ) -> Result<Arc<Identity>, Denial> {
        let token = bearer::bearer_token(headers, self.max_token_bytes).map_err(|e| e.denial())?;
        let hash = token_sha256(token);
        seen.token_sha256 = Some(hash);
        let generation = self.keys.generation();
        if let Some(identity) = self.cache.get(&hash, now, generation) {
            self.metrics.cache(true);
            seen.identity = Some(identity.clone());
            return Ok(identity);
        }
        self.metrics.cache(false);

        let token = parse::parse(token).map_err(|e| e.denial())?;
        seen.kid = clipped(token.header.get("kid"));
        seen.issuer = clipped(token.claims.get("iss"));
        typ::check(&token.header, &self.typ).map_err(|e| e.denial())?;
        let alg = alg::check(&token.header, &self.algorithms).map_err(|e| e.denial())?;
        let kid = kid::check(&token.header).map_err(|e| e.denial())?;

        let iss_claim = token.claims.get("iss").and_then(Value::as_str);
        let mut lookup = self.keys.lookup(iss_claim, kid);
        if let Lookup::UnknownKid { refetch: Some(index) } = lookup {
            self.keys.refetch_for_unknown_kid(index).await;
            lookup = self.keys.lookup(iss_claim, kid);
        }
        let (issuer_index, key) = match lookup {
            Lookup::Found { issuer, key } => (issuer, key),
            Lookup::UnknownKid { .. } => return Err(KeyError::UnknownKid.denial()),
            Lookup::Unavailable => return Err(KeyError::Unavailable.denial()),
        };
        if !key.algorithms.contains(&alg) {
            return Err(KeyError::AlgMismatch.denial());
        }
        let valid = key.verify(alg, token.signing_input.as_bytes(), token.signature);
        if !valid {
            return Err(SignatureError::Invalid.denial());
        }

        let policy = self
            .policies
            .get(issuer_index)
            .ok_or(KeyError::UnknownKid.denial())?;
        let claims = &token.claims;
        let exp = time::check(claims, now, self.time).map_err(|e| e.denial())?;
        let allowed: Vec<&str> = self.allowed_issuers.iter().map(String::as_str).collect();
        issuer::check(claims, &allowed, &policy.issuer).map_err(|e| e.denial())?;
        audience::check(claims, &policy.audience).map_err(|e| e.denial())?;
        let who = session::subject(claims).map_err(|e| e.denial())?;
        seen.subject = who.subject.clone();
        seen.impersonator = who.impersonator.clone();
        session::check(claims).map_err(|e| e.denial())?;
        let path = org::org_path(claims, &policy.org_claim).map_err(|e| e.denial())?;
        let org_id = org::org_id(claims, &path, &policy.org_shape).map_err(|e| e.denial())?;

        let identity = Arc::new(Identity {
            issuer: policy.issuer.clone(),
            kid: kid.to_owned(),
            subject: who.subject,
            org: org_id.to_owned(),
            impersonator: who.impersonator,
            session: who.session,
            exp,
        });
        seen.identity = Some(identity.clone());
        self.cache.insert(hash, identity.clone(), now, generation);
        Ok(identity)
    }
}
