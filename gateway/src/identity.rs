//! What a verified token says: the identity the gates hand to routing, the cache and the audit line. A leaf
//! shared by [`crate::verify`] (which produces it) and [`crate::cache`] (which keeps it).

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The issuer whose key verified the token.
    pub issuer: String,
    /// The key id.
    pub kid: String,
    /// `sub`.
    pub subject: Option<String>,
    /// The org id read from the configured claim.
    pub org: String,
    /// `act.sub`, while impersonating.
    pub impersonator: Option<String>,
    /// `sid`.
    pub session: Option<String>,
    /// `exp`.
    pub exp: i64,
}
