//! Kubernetes plumbing shared by the pipeline and the process: the watches of managed objects and the triggers
//! they fire ([`observe`]), their compact caches ([`cache`]), indexes over the Tenants and Customers
//! ([`index`]), the pacing of full passes ([`pace`]), drift comparison ([`diff`]), the operator's own writes seen
//! again ([`echo`]), Events ([`events`]) and the leader lease ([`leader`]).
//!
//! The bottom layer: it knows nothing of the pipeline and imports nothing else from this crate.

pub mod cache;
pub mod diff;
pub mod echo;
pub mod events;
pub mod index;
pub mod leader;
pub mod observe;
pub mod pace;

/// The field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "bulkhead-operator";
