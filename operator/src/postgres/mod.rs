//! Per-tenant places in the shared PostgreSQL server: deterministic names and the pure SQL that provisions,
//! hardens and removes them. (Connecting and running it lands with the provisioning work of issue 4.)

pub mod naming;
pub mod provision;
pub mod sql;
