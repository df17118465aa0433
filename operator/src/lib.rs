//! The Bulkhead operator: reconciles `Tenant` and `Customer` resources into isolated stacks.
//!
//! Each controller runs the same plain pipeline (see `reconcile.rs`): read → validate (pure) → check conflicts →
//! build the desired objects (pure, `build.rs`) → server-side apply and prune (`apply.rs`) → status (pure,
//! `status.rs`). Deletion runs `cleanup.rs` under the operator's finalizer.

pub mod admin;
pub mod apply;
pub mod build;
pub mod cleanup;
pub mod conditions;
pub mod conflicts;
pub mod crd_apply;
pub mod crd_wait;
pub mod database;
pub mod diff;
pub mod events;
pub mod leader;
pub mod managed;
pub mod metrics;
pub mod namespace;
pub mod observe;
pub mod postgres;
pub mod rbac;
pub mod reconcile;
pub mod run;
pub mod settings;
pub mod status;
pub mod verify;

pub use run::{Options, RunError, run};

/// The field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "bulkhead-operator";
