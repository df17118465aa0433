//! The Bulkhead operator: reconciles `Tenant` and `Customer` resources into isolated stacks.
//!
//! Each controller runs the same plain pipeline: read the resource → validate it (pure) → compute its status
//! (pure) → write the status with server-side apply under one field manager. Later steps (desired objects,
//! apply, prune) slot in between without changing that shape.

pub mod admin;
pub mod conditions;
pub mod crd_wait;
pub mod managed;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod telemetry;

pub use run::{RunError, run};

/// The field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "bulkhead-operator";
