//! Minting test tokens from a local private key, for demos and tests (`bulkhead-gateway token`). Never used on
//! the request path.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

/// Where the org id goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgPlacement {
    /// Clerk v2: `v: 2`, `o: {id}`.
    ClerkV2,
    /// Clerk v1: `org_id`.
    ClerkV1,
    /// A dotted path.
    Path(Vec<String>),
}

/// What to put in a token.
#[derive(Debug, Clone)]
pub struct Mint {
    /// The algorithm (RS256, ES256, PS256, EdDSA).
    pub algorithm: Algorithm,
    /// `kid`.
    pub kid: String,
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// The org id, if any.
    pub org: Option<String>,
    /// Where the org id goes.
    pub placement: OrgPlacement,
    /// Seconds until `exp`.
    pub expires_in: i64,
    /// Extra claims, merged last.
    pub extra: Map<String, Value>,
}

/// Why minting failed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The key does not fit the algorithm.
    #[error("key: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Reads a PKCS#8 (or PKCS#1 RSA / SEC1 EC) private key in PEM for `algorithm`.
pub fn encoding_key(pem: &[u8], algorithm: Algorithm) -> Result<EncodingKey, MintError> {
    match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        _ => EncodingKey::from_rsa_pem(pem),
    }
    .map_err(MintError::Key)
}

/// Signs the exact header and claims JSON texts given (duplicate keys and odd values included), so that tests can
/// build any token a client could.
pub fn sign_raw(
    header_json: &str,
    claims_json: &str,
    key: &EncodingKey,
    algorithm: Algorithm,
) -> Result<String, MintError> {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(claims_json)
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, algorithm).map_err(MintError::Sign)?;
    Ok(format!("{input}.{signature}"))
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The claims of `mint` at `now`.
pub fn claims(mint: &Mint, now: i64) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(mint.issuer));
    claims.insert("sub".into(), json!(mint.subject));
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(now + mint.expires_in));
    claims.insert("sid".into(), json!("sess_test"));
    match (&mint.placement, &mint.org) {
        (OrgPlacement::ClerkV2, org) => {
            claims.insert("v".into(), json!(2));
            if let Some(org) = org {
                claims.insert("o".into(), json!({"id": org, "rol": "admin"}));
            }
        }
        (OrgPlacement::ClerkV1, Some(org)) => {
            claims.insert("org_id".into(), json!(org));
        }
        (OrgPlacement::Path(path), Some(org)) => {
            let mut value = json!(org);
            for key in path.iter().skip(1).rev() {
                value = json!({ key.as_str(): value });
            }
            if let Some(first) = path.first() {
                claims.insert(first.clone(), value);
            }
        }
        _ => {}
    }
    for (k, v) in &mint.extra {
        claims.insert(k.clone(), v.clone());
    }
    claims
}

/// Mints a token signed with `key`.
pub fn mint(spec: &Mint, key: &EncodingKey) -> Result<String, MintError> {
    let header = json!({"alg": format!("{:?}", spec.algorithm), "kid": spec.kid, "typ": "JWT"});
    let claims = Value::Object(claims(spec, now()));
    sign_raw(&header.to_string(), &claims.to_string(), key, spec.algorithm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_placements() {
        let mut m = Mint {
            algorithm: Algorithm::RS256,
            kid: "k".into(),
            issuer: "i".into(),
            subject: "user_1".into(),
            org: Some("org_a".into()),
            placement: OrgPlacement::ClerkV2,
            expires_in: 60,
            extra: Map::new(),
        };
        let c = claims(&m, 100);
        assert_eq!(
            (c["v"].clone(), c["o"]["id"].clone(), c["exp"].clone()),
            (json!(2), json!("org_a"), json!(160))
        );
        m.placement = OrgPlacement::ClerkV1;
        assert_eq!(claims(&m, 100)["org_id"], "org_a");
        m.placement = OrgPlacement::Path(vec!["t".into(), "org".into()]);
        assert_eq!(claims(&m, 100)["t"]["org"], "org_a");
    }
}
