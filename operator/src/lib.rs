//! The Bulkhead operator: reconciles `Tenant` and `Customer` resources into isolated stacks, and reports on the
//! isolation it keeps (`verify`).
//!
//! The modules form layers, top first; each imports only from its own folder or the layers below it, never in
//! a circle (`e2e/tests/layering.rs` holds both rules):
//!
//! 1. [`process`]: the operator process: `run` (caches, controllers, leader election, admin endpoints, the
//!    Postgres sweep), the CRD install and wait, the RBAC it needs.
//! 2. [`verify`]: the isolation report, read from the live state and judged with the pipeline's own builder.
//! 3. [`pipeline`]: the reconcile pipeline and its steps: read → validate → conflicts → namespace → build (pure)
//!    → apply → database → status, and deletion (`cleanup`).
//! 4. [`settings`]: where the gateway, DNS and Postgres are.
//! 5. [`cluster`] (Kubernetes plumbing: caches and triggers, drift comparison, Events, the leader lease),
//!    [`postgres`] (connection, credentials, naming, SQL, provisioning) and [`metrics`]: they import nothing
//!    else from this crate.
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
