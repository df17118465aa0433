//! The chart's admission policies (`charts/bulkhead/templates/admission-policies.yaml`) from a client's side: the
//! identities they treat apart (the operator's ServiceAccount, the break-glass group), acted as by impersonation,
//! and how to recognise a refusal by one of them.

use kube::Client;

use crate::HarnessError;

/// The chart's default `admissionPolicies.breakGlassGroup`.
pub const BREAK_GLASS_GROUP: &str = "bulkhead:break-glass";

/// Only the operator writes what it manages in Bulkhead namespaces.
pub const MANAGED_OBJECTS: &str = "bulkhead-managed-objects";
/// Only the operator writes NetworkPolicies in Bulkhead namespaces.
pub const NETWORK_POLICIES: &str = "bulkhead-network-policies";
/// Only the operator sets a namespace's Bulkhead labels.
pub const NAMESPACE_LABELS: &str = "bulkhead-namespace-labels";
/// The operator writes only in Bulkhead namespaces.
pub const OPERATOR_SCOPE: &str = "bulkhead-operator-scope";
/// Every policy the chart renders, each with a binding of the same name.
pub const POLICIES: [&str; 4] = [
    MANAGED_OBJECTS,
    NETWORK_POLICIES,
    NAMESPACE_LABELS,
    OPERATOR_SCOPE,
];

/// The user name of the operator's ServiceAccount in `namespace` (the release namespace).
pub fn operator_account(namespace: &str) -> String {
    format!("system:serviceaccount:{namespace}:bulkhead-operator")
}

/// A client for `config` acting as `user` in `groups` (impersonation: `config`'s own identity must be allowed to
/// impersonate them, as a cluster admin is). A ServiceAccount's user name gets its ServiceAccount groups from the
/// API server.
pub fn impersonating(mut config: kube::Config, user: &str, groups: &[&str]) -> Result<Client, HarnessError> {
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups =
        (!groups.is_empty()).then(|| groups.iter().map(|g| (*g).to_owned()).collect());
    Client::try_from(config).map_err(HarnessError::Client)
}

/// When `error` is a refusal by the admission policy `policy`: its HTTP code and message.
pub fn refusal(error: &kube::Error, policy: &str) -> Option<(u16, String)> {
    match error {
        kube::Error::Api(status)
            if status
                .message
                .contains(&format!("ValidatingAdmissionPolicy '{policy}'")) =>
        {
            Some((status.code, status.message.clone()))
        }
        _ => None,
    }
}
