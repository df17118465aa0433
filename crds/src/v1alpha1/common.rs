//! Types shared by `Tenant` and `Customer`.

use std::borrow::Cow;

use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Quota applied when `quota.cpu` is not set.
pub const DEFAULT_QUOTA_CPU: &str = "2";
/// Quota applied when `quota.memory` is not set.
pub const DEFAULT_QUOTA_MEMORY: &str = "4Gi";
/// Quota applied when `quota.pods` is not set.
pub const DEFAULT_QUOTA_PODS: i32 = 20;
/// The login role's connection limit when `database.connectionLimit` is not set.
pub const DEFAULT_CONNECTION_LIMIT: i32 = 20;
/// The stack port used when `stack.port` is not set.
pub const DEFAULT_STACK_PORT: i32 = 8080;

/// The workload Bulkhead runs in a Tenant's or Customer's namespace: one Deployment and one Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackSpec {
    /// The container image, e.g. `registry.example.com/acme/portal:1.4.2` or pinned by `@sha256:` digest.
    #[schemars(length(max = crate::rules::MAX_IMAGE_LEN))]
    #[x_kube(validation = crate::rules::image())]
    pub image: String,

    /// The port the stack listens on; the gateway forwards to it. 1024 to 65535, because the stack runs as
    /// non-root without capabilities.
    #[serde(default = "default_port")]
    #[x_kube(validation = crate::rules::stack_port())]
    pub port: i32,

    /// How many replicas of the stack to run (0 to 100).
    #[serde(default = "default_replicas")]
    #[x_kube(validation = crate::rules::replicas())]
    pub replicas: i32,

    /// Plain environment variables for the stack's container. Names starting with `BULKHEAD_` and the
    /// database variables Bulkhead injects (`DATABASE_URL`, `PG*`) are reserved. Keyed by name: each name once;
    /// at most 256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::rules::MAX_ENV))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,

    /// CPU and memory requests and limits for the stack's container.
    #[serde(default)]
    pub resources: StackResources,
}

fn default_port() -> i32 {
    DEFAULT_STACK_PORT
}

fn default_replicas() -> i32 {
    1
}

/// A plain environment variable.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct EnvVar {
    /// The variable's name: letters, digits and `_`, not starting with a digit.
    #[schemars(length(max = crate::rules::MAX_ENV_NAME_LEN))]
    #[x_kube(validation = crate::rules::env_name(), validation = crate::rules::env_name_not_reserved())]
    pub name: String,
    /// The variable's value (empty when absent), at most 32768 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::rules::MAX_ENV_VALUE_LEN))]
    pub value: Option<String>,
}

/// CPU and memory requests and limits for one container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(
    validation = crate::rules::request_within_limit("cpu"),
    validation = crate::rules::request_within_limit("memory")
)]
pub struct StackResources {
    /// The resources the scheduler reserves for the container.
    #[serde(default)]
    pub requests: CpuMemory,
    /// The most the container may use.
    #[serde(default)]
    pub limits: CpuMemory,
}

/// A pair of CPU and memory quantities.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct CpuMemory {
    /// CPU, as a Kubernetes quantity (`500m`, `2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::quantity(), validation = crate::rules::not_negative())]
    pub cpu: Option<Quantity>,
    /// Memory, as a Kubernetes quantity (`256Mi`, `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::quantity(), validation = crate::rules::not_negative())]
    pub memory: Option<Quantity>,
}

/// A place in the shared PostgreSQL server.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(
    validation = crate::rules::isolation_immutable(),
    validation = crate::rules::server_immutable()
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Whether to provision a schema (or database), a login role and a credentials Secret. Default false.
    #[serde(default)]
    pub enabled: bool,

    /// `Schema` (default): an own schema and role in the shared database. `Database`: an own database and role,
    /// for tenants that cannot accept schema mode's catalog-level leaks. Immutable once set.
    #[serde(default)]
    pub isolation: DatabaseIsolation,

    /// The most connections the login role may hold at once (1 to 1000). Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::connection_limit())]
    pub connection_limit: Option<i32>,

    /// The PostgreSQL server to provision on, by the name the operator is configured with (like a
    /// StorageClass). Absent: a Tenant uses the operator's default server; a Customer uses its Tenant's
    /// server, so that a Customer's data sits next to its Tenant's. A name the operator does not know gets
    /// nothing provisioned (DatabaseReady=False, UnknownServer), never another server. Immutable once the
    /// database has been enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::rules::MAX_NAME_LEN))]
    #[x_kube(validation = crate::rules::resource_ref())]
    pub server: Option<String>,
}

/// How a Tenant's or Customer's data is separated from others' in the shared PostgreSQL server.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DatabaseIsolation {
    /// An own schema and role in the shared database.
    #[default]
    Schema,
    /// An own database and role.
    Database,
}

/// Resource limits for a namespace, enforced by a ResourceQuota.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct QuotaSpec {
    /// Total CPU limit of the namespace (default `2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = crate::rules::quantity(),
        validation = crate::rules::not_negative(),
        validation = crate::rules::not_zero()
    )]
    pub cpu: Option<Quantity>,
    /// Total memory limit of the namespace (default `4Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = crate::rules::quantity(),
        validation = crate::rules::not_negative(),
        validation = crate::rules::not_zero()
    )]
    pub memory: Option<Quantity>,
    /// Most pods in the namespace (default 20, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::rules::pods())]
    pub pods: Option<i32>,
}

/// Extra network access for a stack. Bulkhead's namespaces deny everything that is not listed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Extra egress destinations the stack may reach (default none, at most 128).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::rules::MAX_EGRESS_RULES))]
    pub allow_egress: Vec<EgressRule>,
}

/// One allowed egress destination.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct EgressRule {
    /// The destination, as an IPv4 or IPv6 CIDR (`203.0.113.0/24`). `0.0.0.0/0` and `::/0` are refused.
    #[schemars(length(max = crate::rules::MAX_CIDR_LEN))]
    #[x_kube(
        validation = crate::rules::cidr(),
        validation = crate::rules::cidr_not_everything(),
        validation = crate::rules::cidr_network()
    )]
    pub cidr: String,
    /// The destination ports (at most 32). Empty means every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::rules::MAX_EGRESS_PORTS))]
    pub ports: Vec<EgressPort>,
}

/// A destination port.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct EgressPort {
    /// The port number, 1 to 65535.
    #[x_kube(validation = crate::rules::port())]
    pub port: i32,
    /// The protocol: `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A transport protocol.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum Protocol {
    /// TCP.
    #[default]
    TCP,
    /// UDP.
    UDP,
    /// SCTP.
    SCTP,
}

/// What happens to a resource's namespace and database objects when the resource is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the namespace, its data and the database objects; scale the stack to zero and remove the route.
    #[default]
    Retain,
    /// Remove the namespace and the database objects, with their data.
    Delete,
}

/// The observed state of a Tenant or Customer, written only by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The namespace that holds the resource's stack, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// Standard conditions, one per type: `Ready`, `NamespaceReady`, `NetworkIsolated`, `DatabaseReady`,
    /// `StackReady`, `Routable`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The identity fields (`orgId`, `tenantRef`, `database.isolation`, `database.server`) as first accepted; later specs must keep
    /// them unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_identity: Option<AcceptedIdentity>,
}

/// The identity fields of a spec as the operator first accepted them. They are immutable: a later spec that
/// changes one is refused.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedIdentity {
    /// The accepted `spec.orgId`.
    pub org_id: String,
    /// The accepted `spec.tenantRef` (Customers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_ref: Option<String>,
    /// The accepted `spec.database.isolation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_isolation: Option<DatabaseIsolation>,
    /// The accepted `spec.database.server` (absent: the default), recorded with `databaseIsolation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_server: Option<String>,
}

/// A Kubernetes resource quantity (`500m`, `2`, `1Gi`), kept as written. It accepts a YAML number too, like
/// Kubernetes' own quantities; [`crate::quantity::parse`] checks and reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantity(pub String);

impl Quantity {
    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Self {
        Quantity(s.to_owned())
    }
}

impl Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Str(String),
            Int(i64),
            Float(f64),
        }
        Ok(Quantity(match Raw::deserialize(deserializer)? {
            Raw::Str(s) => s,
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
        }))
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "A Kubernetes quantity, e.g. 500m, 2, 256Mi, 1Gi."
        })
    }
}

/// The schema of a standard condition list: a list map keyed by `type`, so that server-side apply merges
/// conditions by type.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "description": "Standard conditions, one per type.",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"]
    })
}
