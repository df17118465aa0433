//! The operator process: what `bulkhead-operator run` starts and what it installs.
//!
//! The top layer: it may import every other layer ([`crate::pipeline`], [`crate::cluster`], [`crate::verify`],
//! [`crate::postgres`], the settings and metrics); nothing imports it but the crate root (which re-exports
//! [`run`](run::run)) and the binary.

pub mod admin;
pub mod crd_apply;
pub mod crd_wait;
pub mod rbac;
pub mod run;
