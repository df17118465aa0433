//! Bulkhead's custom resources (`bulkhead.dev/v1alpha1` `Tenant` and `Customer`), their pure spec validation and
//! the generator for the checked-in CRD YAML.
//!
//! This crate does no I/O: the operator, the gateway and the test harness all depend on it.

pub mod generate;
pub mod image_ref;
pub mod quantity;
pub mod v1alpha1;
pub mod validate;

/// The API group of every Bulkhead resource.
pub const GROUP: &str = "bulkhead.dev";

/// Label and annotation keys that Bulkhead puts on the objects it manages.
pub mod labels {
    /// The Tenant a managed object belongs to.
    pub const TENANT: &str = "bulkhead.dev/tenant";
    /// The Customer a managed object belongs to (absent on a Tenant's own objects).
    pub const CUSTOMER: &str = "bulkhead.dev/customer";
    /// Standard label marking objects that Bulkhead manages.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The value of [`MANAGED_BY`] on Bulkhead's objects.
    pub const MANAGED_BY_VALUE: &str = "bulkhead";
}
