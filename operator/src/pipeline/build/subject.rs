//! Who is being built (a Tenant or Customer, resolved) and what its objects are called.

use std::collections::BTreeMap;

use bulkhead_crds::labels;
use bulkhead_crds::naming;
use bulkhead_crds::v1alpha1::{EgressRule, QuotaSpec, StackSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Name of the stack's Deployment, Service and container.
pub const STACK: &str = "stack";
/// Name of the stack's ServiceAccount.
pub const STACK_SERVICE_ACCOUNT: &str = "bulkhead-stack";
/// Name of the ResourceQuota.
pub const QUOTA: &str = "bulkhead-quota";
/// Name of the LimitRange.
pub const LIMITS: &str = "bulkhead-limits";
/// Names of the NetworkPolicies.
pub mod policy {
    /// Denies all ingress and egress for every pod in the namespace.
    pub const DEFAULT_DENY: &str = "bulkhead-default-deny";
    /// Lets the gateway's pods reach the stack port.
    pub const ALLOW_GATEWAY: &str = "bulkhead-allow-gateway";
    /// Lets pods query cluster DNS.
    pub const ALLOW_DNS: &str = "bulkhead-allow-dns";
    /// Lets pods of the namespace talk to each other.
    pub const ALLOW_SAME_NAMESPACE: &str = "bulkhead-allow-same-namespace";
    /// Lets pods reach the Postgres server.
    pub const ALLOW_POSTGRES: &str = "bulkhead-allow-postgres";
    /// Lets pods reach the spec's extra egress destinations.
    pub const ALLOW_EGRESS: &str = "bulkhead-allow-egress";
}
/// The label every namespace carries with its own name (set by the API server from Kubernetes 1.21 on).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The Tenant or Customer being built, with everything resolved (a Customer's stack template and egress come
/// from its Tenant).
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The Tenant's name (for a Customer: its Tenant's).
    pub tenant: &'a str,
    /// The Customer's name, for a Customer.
    pub customer: Option<&'a str>,
    /// The resource's UID, recorded on the namespace.
    pub uid: &'a str,
    /// The stack to run.
    pub stack: &'a StackSpec,
    /// The namespace's quota.
    pub quota: &'a QuotaSpec,
    /// Extra egress destinations.
    pub egress: &'a [EgressRule],
    /// Whether the database is enabled (opens egress to Postgres, injects the credentials Secret).
    pub database_enabled: bool,
    /// The PostgreSQL server the database is on, as named in the spec (for a Customer: its own, else its
    /// Tenant's); `None` is the default server. The egress policy opens this server only.
    pub database_server: Option<&'a str>,
    /// The password rotation last carried out, recorded on the pod template so a rotation rolls the stack.
    pub credentials_revision: Option<&'a str>,
    /// Deleted with `Retain`: stack scaled to zero, namespace marked orphaned, network policies kept.
    pub retired: bool,
}

impl Subject<'_> {
    /// The namespace this subject lives in.
    pub fn namespace(&self) -> String {
        naming::namespace(self.tenant, self.customer)
    }

    /// The labels that tie an object to this subject.
    pub fn owner_labels(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([
            (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
            (labels::PART_OF.to_owned(), "bulkhead".to_owned()),
            (labels::TENANT.to_owned(), self.tenant.to_owned()),
        ]);
        if let Some(customer) = self.customer {
            out.insert(labels::CUSTOMER.to_owned(), customer.to_owned());
        }
        out
    }

    pub(super) fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut out = self.owner_labels();
        out.insert(labels::COMPONENT.to_owned(), STACK.to_owned());
        out
    }

    pub(super) fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(labels::COMPONENT.to_owned(), STACK.to_owned())])
    }

    pub(super) fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace()),
            labels: Some(self.owner_labels()),
            ..ObjectMeta::default()
        }
    }
}
