//! Pure computation of a Tenant's or Customer's status from what the reconcile found and did.

use bulkhead_crds::v1alpha1::{AcceptedIdentity, ResourceStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{self, Wanted, reasons, types};
use crate::database::{self, DatabaseState};

/// How the stack's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stack {
    /// Every desired replica is updated and available (or zero replicas are desired).
    Available {
        /// Replicas desired.
        replicas: i32,
    },
    /// The rollout has not finished.
    RollingOut {
        /// Replicas available.
        available: i32,
        /// Replicas desired.
        replicas: i32,
    },
}

impl Stack {
    /// Reads a Deployment's rollout state.
    pub fn of(deployment: &Deployment) -> Stack {
        let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let current = status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
        let available = status.available_replicas.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0);
        if replicas == 0 || (current && available >= replicas && updated >= replicas) {
            Stack::Available { replicas }
        } else {
            Stack::RollingOut { available, replicas }
        }
    }
}

/// What a reconcile concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The spec was refused; nothing was changed.
    Invalid(String),
    /// Another, older resource holds the org id.
    OrgIdConflict {
        /// `Kind/name` of the holder.
        holder: String,
    },
    /// The namespace exists and is not ours.
    NamespaceConflict {
        /// The namespace.
        namespace: String,
        /// Why it is not ours.
        detail: String,
    },
    /// The namespace is being deleted; provisioning waits.
    NamespaceTerminating {
        /// The namespace.
        namespace: String,
    },
    /// A Customer's Tenant does not exist.
    TenantMissing {
        /// The Tenant's name.
        tenant: String,
    },
    /// A Customer's Tenant is not Ready.
    TenantNotReady {
        /// The Tenant's name.
        tenant: String,
    },
    /// A Customer's quota does not fit its Tenant's remaining quota.
    QuotaExceeded(String),
    /// Everything was applied.
    Provisioned {
        /// The namespace.
        namespace: String,
        /// The NetworkPolicies in force.
        policies: Vec<String>,
        /// The stack's rollout.
        stack: Stack,
        /// The database, when enabled.
        database: Option<DatabaseState>,
    },
    /// The resource is being deleted and cleanup is waiting.
    Deleting(String),
}

impl Outcome {
    /// The `Ready` reason this outcome leads to.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Invalid(_) => reasons::INVALID,
            Outcome::OrgIdConflict { .. } => reasons::ORG_ID_CONFLICT,
            Outcome::NamespaceConflict { .. } => reasons::NAMESPACE_CONFLICT,
            Outcome::NamespaceTerminating { .. } => reasons::NAMESPACE_TERMINATING,
            Outcome::TenantMissing { .. } => reasons::TENANT_MISSING,
            Outcome::TenantNotReady { .. } => reasons::TENANT_NOT_READY,
            Outcome::QuotaExceeded(_) => reasons::QUOTA_EXCEEDED,
            Outcome::Provisioned {
                database: Some(DatabaseState::NotReady { .. }),
                ..
            } => reasons::DATABASE_NOT_READY,
            Outcome::Provisioned {
                stack: Stack::Available { .. },
                ..
            } => reasons::PROVISIONED,
            Outcome::Provisioned { .. } => reasons::STACK_NOT_READY,
            Outcome::Deleting(_) => reasons::DELETING,
        }
    }
}

/// The status after a reconcile with `outcome` (pure). Conditions the outcome says nothing about are kept.
pub fn compute(
    previous: Option<&ResourceStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    identity: Option<AcceptedIdentity>,
    now: &Time,
) -> ResourceStatus {
    let previous = previous.cloned().unwrap_or_default();
    let mut list = previous.conditions.clone();
    let mut set = |type_: &'static str, status: bool, reason: &'static str, message: String| {
        list = conditions::set(
            &list,
            Wanted {
                type_,
                status,
                reason,
                message,
            },
            generation,
            now,
        );
    };
    let reason = outcome.reason();
    let mut namespace = previous.namespace.clone();
    match outcome {
        Outcome::Invalid(message) => {
            set(
                types::READY,
                false,
                reason,
                format!("The spec was refused and nothing was changed: {message}"),
            );
        }
        Outcome::OrgIdConflict { holder } => {
            let message = format!(
                "{holder} already claims this orgId and is older; this resource is not provisioned and not routable until that one is deleted or the orgId changed (recreate this resource)."
            );
            set(types::ROUTABLE, false, reason, message.clone());
            set(types::READY, false, reason, message);
        }
        Outcome::NamespaceConflict {
            namespace: ns,
            detail,
        } => {
            let message = format!(
                "Namespace {ns} exists and was not created by Bulkhead for this resource ({detail}); nothing in it was changed. Delete or rename it, or rename this resource."
            );
            set(types::NAMESPACE_READY, false, reason, message.clone());
            set(types::ROUTABLE, false, reason, message.clone());
            set(types::READY, false, reason, message);
        }
        Outcome::NamespaceTerminating { namespace: ns } => {
            let message = format!("Namespace {ns} is being deleted; provisioning resumes once it is gone.");
            set(types::NAMESPACE_READY, false, reason, message.clone());
            set(types::ROUTABLE, false, reason, message.clone());
            set(types::READY, false, reason, message);
        }
        Outcome::TenantMissing { tenant } => {
            let message = format!("Tenant {tenant} (spec.tenantRef) does not exist; waiting for it.");
            set(types::ROUTABLE, false, reason, message.clone());
            set(types::READY, false, reason, message);
        }
        Outcome::TenantNotReady { tenant } => {
            let message = format!(
                "Tenant {tenant} is not provisioned yet (its NetworkIsolated condition is not True); waiting for it."
            );
            set(types::ROUTABLE, false, reason, message.clone());
            set(types::READY, false, reason, message);
        }
        Outcome::QuotaExceeded(message) => {
            set(types::ROUTABLE, false, reason, message.clone());
            set(types::READY, false, reason, message.clone());
        }
        Outcome::Provisioned {
            namespace: ns,
            policies,
            stack,
            database: db,
        } => {
            namespace = Some(ns.clone());
            set(
                types::NAMESPACE_READY,
                true,
                reasons::CREATED,
                format!("Namespace {ns} exists and is managed by Bulkhead."),
            );
            set(
                types::NETWORK_ISOLATED,
                true,
                reasons::POLICIES_APPLIED,
                format!("Default deny in force; allowed flows: {}.", policies.join(", ")),
            );
            match stack {
                Stack::Available { replicas } => {
                    set(
                        types::STACK_READY,
                        true,
                        reasons::AVAILABLE,
                        format!("{replicas}/{replicas} replicas available."),
                    );
                    set(
                        types::ROUTABLE,
                        true,
                        reasons::ROUTABLE,
                        "The org id routes to this resource's stack.".into(),
                    );
                    set(
                        types::READY,
                        true,
                        reason,
                        "Namespace, network isolation and stack are in place.".into(),
                    );
                }
                Stack::RollingOut { available, replicas } => {
                    let message =
                        format!("{available}/{replicas} replicas available; waiting for the rollout.");
                    set(types::STACK_READY, false, reasons::ROLLING_OUT, message.clone());
                    set(types::ROUTABLE, false, reasons::STACK_NOT_READY, message.clone());
                    set(types::READY, false, reason, message);
                }
            }
            match db {
                Some(DatabaseState::Ready(message)) => {
                    set(
                        types::DATABASE_READY,
                        true,
                        database::reasons::PROVISIONED,
                        message.clone(),
                    );
                }
                Some(DatabaseState::NotReady { reason: why, message }) => {
                    set(types::DATABASE_READY, false, why, message.clone());
                    set(
                        types::READY,
                        false,
                        reason,
                        format!("Database not ready: {message}"),
                    );
                }
                None => {}
            }
        }
        Outcome::Deleting(message) => {
            set(types::ROUTABLE, false, reason, message.clone());
            set(types::READY, false, reason, message.clone());
        }
    }
    if let Outcome::Provisioned { database: None, .. } = outcome {
        list.retain(|c| c.type_ != types::DATABASE_READY);
    }
    ResourceStatus {
        observed_generation: generation,
        namespace,
        conditions: list,
        accepted_identity: identity.or(previous.accepted_identity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn condition<'a>(status: &'a ResourceStatus, type_: &str) -> (&'a str, &'a str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_}"));
        (c.status.as_str(), c.reason.as_str())
    }

    fn provisioned(stack: Stack) -> Outcome {
        Outcome::Provisioned {
            namespace: "bk-acme".into(),
            policies: vec!["bulkhead-default-deny".into()],
            stack,
            database: None,
        }
    }

    #[test]
    fn provisioned_and_available_is_ready_and_routable() {
        let s = compute(
            None,
            Some(2),
            &provisioned(Stack::Available { replicas: 2 }),
            None,
            &at(1),
        );
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.namespace.as_deref(), Some("bk-acme"));
        for t in [
            "NamespaceReady",
            "NetworkIsolated",
            "StackReady",
            "Routable",
            "Ready",
        ] {
            assert_eq!(condition(&s, t).0, "True", "{t}");
        }
        assert_eq!(condition(&s, "Ready").1, "Provisioned");
    }

    #[test]
    fn a_rolling_stack_is_not_ready_nor_routable() {
        let s = compute(
            None,
            Some(1),
            &provisioned(Stack::RollingOut {
                available: 0,
                replicas: 2,
            }),
            None,
            &at(1),
        );
        assert_eq!(condition(&s, "StackReady"), ("False", "RollingOut"));
        assert_eq!(condition(&s, "Routable"), ("False", "StackNotReady"));
        assert_eq!(condition(&s, "Ready"), ("False", "StackNotReady"));
        assert_eq!(condition(&s, "NetworkIsolated").0, "True");
    }

    #[test]
    fn conflicts_make_the_resource_unroutable() {
        let s = compute(
            None,
            Some(1),
            &Outcome::OrgIdConflict {
                holder: "Tenant/acme".into(),
            },
            None,
            &at(1),
        );
        assert_eq!(condition(&s, "Routable"), ("False", "OrgIdConflict"));
        assert_eq!(condition(&s, "Ready"), ("False", "OrgIdConflict"));
        let s = compute(
            None,
            Some(1),
            &Outcome::NamespaceConflict {
                namespace: "bk-acme".into(),
                detail: "no Bulkhead labels".into(),
            },
            None,
            &at(1),
        );
        assert_eq!(condition(&s, "NamespaceReady"), ("False", "NamespaceConflict"));
        assert!(s.conditions.iter().all(|c| c.status == "False"));
    }

    #[test]
    fn an_invalid_edit_keeps_what_was_provisioned() {
        let ready = compute(
            None,
            Some(1),
            &provisioned(Stack::Available { replicas: 1 }),
            None,
            &at(1),
        );
        let s = compute(
            Some(&ready),
            Some(2),
            &Outcome::Invalid("spec.orgId: bad".into()),
            None,
            &at(2),
        );
        assert_eq!(condition(&s, "Ready"), ("False", "Invalid"));
        assert_eq!(condition(&s, "NetworkIsolated").0, "True", "nothing was changed");
        assert_eq!(s.namespace.as_deref(), Some("bk-acme"));
        assert_eq!(s.observed_generation, Some(2));
    }

    #[test]
    fn the_database_decides_readiness_and_its_condition_goes_when_disabled() {
        let with = |database| Outcome::Provisioned {
            namespace: "bk-acme".into(),
            policies: vec![],
            stack: Stack::Available { replicas: 1 },
            database,
        };
        let down = compute(
            None,
            Some(1),
            &with(Some(DatabaseState::NotReady {
                reason: "Unreachable",
                message: "connection refused".into(),
            })),
            None,
            &at(1),
        );
        assert_eq!(condition(&down, "DatabaseReady"), ("False", "Unreachable"));
        assert_eq!(condition(&down, "Ready"), ("False", "DatabaseNotReady"));
        assert_eq!(condition(&down, "Routable").0, "True", "the stack still serves");
        let up = compute(
            Some(&down),
            Some(1),
            &with(Some(DatabaseState::Ready("Schema x".into()))),
            None,
            &at(2),
        );
        assert_eq!(condition(&up, "DatabaseReady"), ("True", "Provisioned"));
        assert_eq!(condition(&up, "Ready"), ("True", "Provisioned"));
        let off = compute(Some(&up), Some(2), &with(None), None, &at(3));
        assert!(off.conditions.iter().all(|c| c.type_ != "DatabaseReady"));
    }
}
