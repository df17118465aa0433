//! Pure helpers for standard `Condition` lists: one condition per type, `lastTransitionTime` kept while the
//! status does not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types Bulkhead writes.
pub mod types {
    /// Everything is provisioned and the org is routable.
    pub const READY: &str = "Ready";
    /// The namespace exists and belongs to this resource.
    pub const NAMESPACE_READY: &str = "NamespaceReady";
    /// Default deny and the allowed flows are in force.
    pub const NETWORK_ISOLATED: &str = "NetworkIsolated";
    /// The stack's rollout has finished.
    pub const STACK_READY: &str = "StackReady";
    /// The gateway may route the org id to this resource.
    pub const ROUTABLE: &str = "Routable";
    /// The schema (or database), roles and credentials Secret are in place.
    pub const DATABASE_READY: &str = "DatabaseReady";
}

/// Reasons Bulkhead writes; each is a fixed CamelCase word users can alert on.
pub mod reasons {
    /// The spec failed validation; the message names each refused field.
    pub const INVALID: &str = "Invalid";
    /// The spec is valid and the work to provision it has not finished.
    pub const PENDING: &str = "Pending";
    /// An older resource holds the same org id.
    pub const ORG_ID_CONFLICT: &str = "OrgIdConflict";
    /// The namespace exists and was not created by Bulkhead for this resource.
    pub const NAMESPACE_CONFLICT: &str = "NamespaceConflict";
    /// The namespace is being deleted.
    pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
    /// A Customer's Tenant does not exist.
    pub const TENANT_MISSING: &str = "TenantMissing";
    /// A Customer's Tenant is not Ready.
    pub const TENANT_NOT_READY: &str = "TenantNotReady";
    /// A Customer's quota does not fit its Tenant's.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// Everything is in place.
    pub const PROVISIONED: &str = "Provisioned";
    /// The stack's rollout has not finished.
    pub const STACK_NOT_READY: &str = "StackNotReady";
    /// The database is enabled and not in place (see the `DatabaseReady` condition).
    pub const DATABASE_NOT_READY: &str = "DatabaseNotReady";
    /// The resource is being deleted.
    pub const DELETING: &str = "Deleting";
    /// The namespace was created or adopted.
    pub const CREATED: &str = "Created";
    /// The NetworkPolicies were applied.
    pub const POLICIES_APPLIED: &str = "PoliciesApplied";
    /// The stack is available.
    pub const AVAILABLE: &str = "Available";
    /// The stack is rolling out.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// The resource is routable.
    pub const ROUTABLE: &str = "Routable";
}

/// Reasons of the `DatabaseReady` condition besides the connection failures of `postgres::connect::Failure`.
pub mod database_reasons {
    /// Schema (or database), roles and Secret are in place.
    pub const PROVISIONED: &str = "Provisioned";
    /// `database.enabled` is set but the operator has no admin Secret configured.
    pub const NOT_CONFIGURED: &str = "NotConfigured";
    /// A role, schema or database with Bulkhead's name exists and is not Bulkhead's.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// Creating the login role, or raising its limit, would hand out more connections than the server has.
    pub const CONNECTION_CAPACITY_EXCEEDED: &str = "ConnectionCapacityExceeded";
    /// `spec.database.server` (for a Customer: its own, else its Tenant's) names a server the operator is not
    /// configured with; nothing is provisioned.
    pub const UNKNOWN_SERVER: &str = "UnknownServer";
    /// The resource now resolves to another server than the one its place was provisioned on.
    pub const SERVER_CHANGED: &str = "ServerChanged";
}

/// The message of a condition is capped by the API at 32768 bytes.
const MAX_MESSAGE: usize = 32 * 1024;

/// A condition as the reconciler wants it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The condition type.
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// A CamelCase reason.
    pub reason: &'static str,
    /// A sentence a person can act on.
    pub message: String,
}

/// Returns `existing` with `wanted` set: other types are kept, `lastTransitionTime` is kept when the status is
/// unchanged and set to `now` otherwise.
pub fn set(existing: &[Condition], wanted: Wanted, generation: Option<i64>, now: &Time) -> Vec<Condition> {
    let status = if wanted.status { "True" } else { "False" };
    let mut message = wanted.message;
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    let previous = existing.iter().find(|c| c.type_ == wanted.type_);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.clone(),
    };
    let condition = Condition {
        type_: wanted.type_.to_owned(),
        status: status.to_owned(),
        reason: wanted.reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| c.type_ != wanted.type_)
        .cloned()
        .collect();
    out.push(condition);
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn invalid(message: &str) -> Wanted {
        Wanted {
            type_: types::READY,
            status: false,
            reason: reasons::INVALID,
            message: message.into(),
        }
    }

    #[test]
    fn adds_a_missing_condition_with_now_as_transition_time() {
        let out = set(&[], invalid("spec.orgId: bad"), Some(3), &at(100));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].type_, "Ready");
        assert_eq!(out[0].status, "False");
        assert_eq!(out[0].reason, "Invalid");
        assert_eq!(out[0].message, "spec.orgId: bad");
        assert_eq!(out[0].observed_generation, Some(3));
        assert_eq!(out[0].last_transition_time, at(100));
    }

    #[test]
    fn keeps_transition_time_while_status_is_unchanged() {
        let first = set(&[], invalid("a"), Some(1), &at(100));
        let pending = Wanted {
            reason: reasons::PENDING,
            ..invalid("b")
        };
        let second = set(&first, pending, Some(2), &at(200));
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].reason, "Pending");
        let ready = Wanted {
            status: true,
            reason: "Provisioned",
            ..invalid("ok")
        };
        let third = set(&second, ready, Some(2), &at(300));
        assert_eq!(third[0].last_transition_time, at(300));
    }

    #[test]
    fn leaves_other_types_alone_and_keeps_one_per_type() {
        let other = Condition {
            type_: "NamespaceReady".into(),
            status: "True".into(),
            reason: "Created".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: at(5),
        };
        let out = set(std::slice::from_ref(&other), invalid("x"), Some(1), &at(9));
        let out = set(&out, invalid("y"), Some(1), &at(10));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], other);
        assert_eq!(out[1].message, "y");
    }

    #[test]
    fn caps_huge_messages_on_a_char_boundary() {
        let out = set(&[], invalid(&"é".repeat(40_000)), None, &at(1));
        assert!(out[0].message.len() <= MAX_MESSAGE);
        assert!(out[0].message.ends_with('…'));
    }
}
