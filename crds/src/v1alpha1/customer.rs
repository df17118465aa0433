use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{DatabaseSpec, DeletionPolicy, QuotaSpec, ResourceStatus, StackSpec};

/// A Customer is one client organisation of a Tenant. It gets a namespace, stack and database place of its own,
/// isolated from its Tenant's other Customers, and is reached only by tokens carrying its own `spec.orgId`.
// Each printcolumn(...) repeats the same keys; clippy reads them as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "bulkhead.dev",
    version = "v1alpha1",
    kind = "Customer",
    plural = "customers",
    shortname = "cust",
    category = "bulkhead",
    validation = crate::rules::resource_name(),
    status = "ResourceStatus",
    doc = "A Customer: one client organisation of a Tenant, isolated from the Tenant's other Customers.",
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenantRef",
        description = "The Tenant this Customer belongs to"
    ),
    printcolumn(
        name = "Org",
        type_ = "string",
        json_path = ".spec.orgId",
        description = "The org claim value routed to this Customer"
    ),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.namespace",
        description = "The Customer's namespace"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the Customer is fully provisioned"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the Customer is (not) Ready",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSpec {
    /// The name of the Tenant this Customer belongs to. Immutable once set.
    #[schemars(length(max = crate::rules::MAX_NAME_LEN))]
    #[x_kube(validation = crate::rules::resource_ref(), validation = crate::rules::immutable())]
    pub tenant_ref: String,

    /// The value of the token's org claim that routes to this Customer. Unique across all Tenants and Customers;
    /// immutable once set. Same shape as a Tenant's `orgId`.
    #[schemars(length(max = crate::rules::MAX_ORG_ID_LEN))]
    #[x_kube(validation = crate::rules::org_id(), validation = crate::rules::immutable())]
    pub org_id: String,

    /// A human-readable name shown in tools and audit records. At most 256 characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::rules::MAX_DISPLAY_NAME_LEN))]
    #[x_kube(validation = crate::rules::display_name())]
    pub display_name: Option<String>,

    /// The Customer's own stack. When absent, the Tenant's stack is used as the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackSpec>,

    /// The Customer's place in the shared PostgreSQL server.
    #[serde(default)]
    pub database: DatabaseSpec,

    /// Resource limits for the Customer's namespace; must fit inside the Tenant's remaining quota.
    #[serde(default)]
    pub quota: QuotaSpec,

    /// What happens to the namespace and database objects when the Customer is deleted. `Retain` (default) keeps
    /// them; `Delete` removes them and their data.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}
