//! Version `v1alpha1` of the `bulkhead.dev` API.

mod common;
mod customer;
mod tenant;

pub use common::*;
pub use customer::*;
pub use tenant::*;
