//! The reconcile pipeline shared by the Tenant and Customer controllers, and its steps.
//!
//! [`reconcile`] runs them in order: read (the object, its Tenant, the caches) → validate (pure, through
//! [`managed`]) → [`conflicts`] → [`namespace`] → [`build`] the desired objects (pure) → [`apply`] (server-side
//! apply, one field manager, prune) → [`database`] → [`status`] (computed purely, written only when it changed).
//! Deletion runs [`cleanup`] under the operator's [`finalizer`].
//!
//! Inside the pipeline the order is: `reconcile` on top; the steps below it (`cleanup`, `namespace`, `apply`,
//! `database`, `status`, `finalizer`); then what the steps share: [`managed`] (what differs between Tenants and
//! Customers), [`context`], [`outcome`] (what the steps concluded), [`build`], [`conflicts`] and [`conditions`].
//! A step never imports `reconcile` or another step's caller. Below the pipeline: [`crate::cluster`],
//! [`crate::postgres`], [`crate::settings`] and [`crate::metrics`].

pub mod apply;
pub mod build;
pub mod cleanup;
pub mod conditions;
pub mod conflicts;
pub mod context;
pub mod database;
pub mod finalizer;
pub mod managed;
pub mod namespace;
pub mod outcome;
pub mod reconcile;
pub mod status;
