//! The Bulkhead operator: reconciles `Tenant` and `Customer` resources into isolated stacks, and reports on the
//! isolation it keeps (`verify`).
//!
//! The modules form layers; each imports only from the layers below it, never from above or in a circle (a test
//! in `e2e/tests/layering.rs` holds this):
//!
//! - [`process`]: the operator process: `run` (caches, controllers, leader election, admin endpoints, the
//!   Postgres sweep), the CRD install and wait, the RBAC it needs.
//! - [`verify`]: the isolation report, read from the live state and judged with the pipeline's own builder.
//! - [`pipeline`]: the reconcile pipeline and its steps: read → validate → conflicts → build (pure) → apply →
//!   database → status, and deletion (`cleanup`).
//! - [`cluster`]: Kubernetes plumbing: the caches and triggers, drift comparison, Events, the leader lease.
//! - [`postgres`]: the PostgreSQL layer: connection, credentials, naming, SQL and provisioning.
//! - [`settings`] and [`metrics`]: configuration and the operator's metrics, shared by everything above.
//!
//! `docs/architecture.md` walks through the data flow and which module does each step.

pub mod cluster;
pub mod metrics;
pub mod pipeline;
pub mod postgres;
pub mod process;
pub mod settings;
pub mod verify;

pub use process::run::{Options, RunError, run};
