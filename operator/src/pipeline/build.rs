//! Pure construction of every object a Tenant or Customer needs. [`Desired`] lists them all in one struct, and
//! `apply` destructures it without `..`, so an object added here cannot be forgotten there. One module per
//! object (or family of objects); `subject` says who is being built and what the objects are called.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::settings::Settings;

mod namespace;
mod policies;
mod quota;
mod stack;
mod subject;

use namespace::namespace;
use policies::network_policies;
pub use quota::quota_values;
use quota::{limit_range, resource_quota};
use stack::{deployment, service, service_account};
pub use subject::{LIMITS, NAMESPACE_NAME_LABEL, QUOTA, STACK, STACK_SERVICE_ACCOUNT, Subject, policy};

/// Every object one Tenant or Customer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Its namespace.
    pub namespace: Namespace,
    /// Default deny plus exactly the allowed flows.
    pub network_policies: Vec<NetworkPolicy>,
    /// The namespace's quota.
    pub resource_quota: ResourceQuota,
    /// Default and maximum container resources.
    pub limit_range: LimitRange,
    /// The stack's identity, with no API token mounted.
    pub service_account: ServiceAccount,
    /// The stack.
    pub deployment: Deployment,
    /// The stack's Service, the gateway's upstream.
    pub service: Service,
}

/// Builds every object for `subject` (pure).
pub fn desired(subject: &Subject<'_>, settings: &Settings) -> Desired {
    Desired {
        namespace: namespace(subject),
        network_policies: network_policies(subject, settings),
        resource_quota: resource_quota(subject),
        limit_range: limit_range(subject),
        service_account: service_account(subject),
        deployment: deployment(subject),
        service: service(subject),
    }
}

#[cfg(test)]
mod tests;
