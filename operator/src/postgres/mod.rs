//! Per-tenant places in the shared PostgreSQL server: deterministic names, the pure SQL that provisions,
//! hardens and removes them, the credentials Secret's pure parts, and the connection to the server.
//!
//! A bottom layer: it imports nothing else from this crate. Inside it, [`naming`], [`sql`] and [`error`] are the
//! leaves; [`provision`], [`lockdown`] and [`capacity`] run SQL on the server.

pub mod capacity;
pub mod connect;
pub mod credentials;
pub mod error;
pub mod lockdown;
pub mod naming;
pub mod provision;
pub mod sql;
