//! Bulkhead's gateway: verifies each request's JWT through a fixed order of gates, routes it to the stack of
//! the tenant or customer that owns the token's org, and to nothing else.
//!
//! `docs/gateway.md` documents it and `docs/architecture.md` shows where it sits. Every module here is named
//! after what it does; the pure ones ([`gates`], [`headers`], [`routes`], [`keys::jwk`], [`cache`]) carry the
//! unit tests.

#![warn(missing_docs)]

pub mod audit;
pub mod cache;
pub mod config;
pub mod cors;
pub mod denial;
pub mod frames;
pub mod gates;
pub mod headers;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod mint;
pub mod proxy;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod stream;
pub mod tunnel;
pub mod upstream;
pub mod verify;

/// Installs aws-lc-rs as the process-wide rustls provider (the JWKS client and the cluster client both use
/// rustls; with two providers compiled in, rustls will not choose). Idempotent; call before building clients.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all this asks for.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
