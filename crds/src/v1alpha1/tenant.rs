use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{DatabaseSpec, DeletionPolicy, NetworkSpec, QuotaSpec, ResourceStatus, StackSpec};

/// A Tenant is one organisation served by the platform (for an MSP: the MSP itself). Bulkhead gives it its own
/// namespace, default-deny network policies, quota, stack and database place, and routes requests whose token
/// carries `spec.orgId` to it, and only those.
// Each printcolumn(...) repeats the same keys; clippy reads them as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "bulkhead.dev",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    shortname = "tnt",
    category = "bulkhead",
    validation = crate::rules::resource_name(),
    status = "ResourceStatus",
    doc = "A Tenant: one organisation with its own isolated namespace, stack and database place, reached only by tokens carrying its orgId.",
    printcolumn(
        name = "Org",
        type_ = "string",
        json_path = ".spec.orgId",
        description = "The org claim value routed to this Tenant"
    ),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.namespace",
        description = "The Tenant's namespace"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the Tenant is fully provisioned"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the Tenant is (not) Ready",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// The value of the token's org claim that routes to this Tenant (for Clerk: `org_...`). Unique across all
    /// Tenants and Customers; immutable once set. 1 to 128 characters: letters, digits, `_`, `-`, `.`, `:`, starting
    /// with a letter or digit.
    #[schemars(length(max = crate::rules::MAX_ORG_ID_LEN))]
    #[x_kube(validation = crate::rules::org_id(), validation = crate::rules::immutable())]
    pub org_id: String,

    /// A human-readable name shown in tools and audit records. At most 256 characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::rules::MAX_DISPLAY_NAME_LEN))]
    #[x_kube(validation = crate::rules::display_name())]
    pub display_name: Option<String>,

    /// The workload Bulkhead runs in the Tenant's namespace; Customers of this Tenant use it as their template.
    pub stack: StackSpec,

    /// The Tenant's place in the shared PostgreSQL server.
    #[serde(default)]
    pub database: DatabaseSpec,

    /// Resource limits for the Tenant's namespace. Customers' quotas must fit inside it.
    #[serde(default)]
    pub quota: QuotaSpec,

    /// Extra network access for the Tenant's stack. Everything not listed here is denied.
    #[serde(default)]
    pub network: NetworkSpec,

    /// What happens to the namespace and database objects when the Tenant is deleted. `Retain` (default) keeps
    /// them; `Delete` removes them and their data.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}
