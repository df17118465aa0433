//! The token gates, in the fixed order documented in docs/gateway.md. Each is a pure function returning a typed
//! error that names its gate and a fixed reason ([`crate::denial::GateError`]).
//!
//! Order: [`bearer`] → [`parse`] → [`typ`] → [`alg`] → [`kid`] → key and signature (in [`crate::verify`]) → [`time`] →
//! [`issuer`] → [`audience`] → [`session`] → [`org`] (version, then org shape) → route.

pub mod alg;
pub mod audience;
pub mod bearer;
pub mod issuer;
pub mod kid;
pub mod org;
pub mod parse;
pub mod request;
pub mod session;
pub mod time;
pub mod typ;
