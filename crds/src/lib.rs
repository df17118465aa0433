//! Bulkhead's custom resources (`bulkhead.dev/v1alpha1` `Tenant` and `Customer`), their pure spec validation and
//! the generator for the checked-in CRD YAML.
//!
//! This crate does no I/O: the operator, the gateway and the test harness all depend on it.

pub mod generate;
pub mod image_ref;
pub mod naming;
pub mod quantity;
pub mod rules;
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
    /// Standard label naming the larger application.
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    /// Standard label naming the component of a pod or object.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// Set on a namespace whose Tenant or Customer was deleted with `deletionPolicy: Retain`.
    pub const ORPHANED: &str = "bulkhead.dev/orphaned";
    /// Annotation: the UID of the resource that owns a namespace.
    pub const OWNER_UID: &str = "bulkhead.dev/owner-uid";
    /// Annotation: when the namespace was orphaned (RFC 3339).
    pub const ORPHANED_AT: &str = "bulkhead.dev/orphaned-at";
}

/// The finalizer Bulkhead puts on Tenants and Customers so that their cleanup runs before they go away.
pub const FINALIZER: &str = "bulkhead.dev/cleanup";
