//! The status step: the status computed purely from what the reconcile concluded, then written only when it
//! changed, with an Event when the Ready reason changes.

use bulkhead_crds::v1alpha1::{AcceptedIdentity, ResourceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::info;

use crate::cluster::events;
use crate::pipeline::conditions::{self, Wanted, reasons, types};
use crate::pipeline::context::Context;
use crate::pipeline::managed::Managed;
use crate::pipeline::outcome::{DatabaseState, Outcome, Stack};

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
                        conditions::database_reasons::PROVISIONED,
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

/// Errors of the status step.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The status could not be written.
    #[error("writing status of {name}: {source}")]
    Patch {
        /// The object's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Computes the status for `outcome`, writes it if it changed, and reports a change of the Ready reason.
pub async fn finish<K: Managed>(
    ctx: &Context,
    object: &K,
    outcome: &Outcome,
    identity: Option<AcceptedIdentity>,
    now: &Time,
) -> Result<(), StatusError> {
    let uid = object.meta().uid.as_deref().unwrap_or_default();
    let version = object.meta().resource_version.as_deref();
    // A reconcile that follows another at once may hold the object from before that one's status write: it
    // builds on what was written, or it would write the same status again with new timestamps.
    let superseded = ctx.statuses.over(uid, version);
    let previous = superseded.as_ref().or(object.current_status());
    let status = compute(previous, object.meta().generation, outcome, identity, now);
    if previous == Some(&status) {
        return Ok(());
    }
    let name = object.name_any();
    let written = write_status::<K>(&ctx.client, &name, &status).await?;
    ctx.echoes.wrote(uid, written.meta().resource_version.as_deref());
    ctx.statuses.wrote_over(uid, version, status.clone());
    let reason_of = |s: Option<&ResourceStatus>| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == types::READY))
            .map(|c| c.reason.clone())
    };
    let (before, after) = (reason_of(previous), reason_of(Some(&status)));
    if before != after {
        let ready = status.conditions.iter().find(|c| c.type_ == types::READY);
        let message = ready.map(|c| c.message.clone()).unwrap_or_default();
        info!(
            controller = K::CONTROLLER,
            name,
            reason = after.as_deref(),
            "ready condition changed"
        );
        let database_down = matches!(
            outcome,
            Outcome::Provisioned {
                database: Some(DatabaseState::NotReady { .. }),
                ..
            }
        );
        let warning = matches!(
            outcome,
            Outcome::Invalid(_)
                | Outcome::OrgIdConflict { .. }
                | Outcome::NamespaceConflict { .. }
                | Outcome::QuotaExceeded(_)
        ) || database_down;
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        // Events are for actions and problems. Becoming Ready, waiting on a rollout or on the Tenant show in the
        // status; the actions behind them (creating, repairing) have events of their own.
        let transient = !database_down
            && matches!(
                outcome,
                Outcome::Provisioned { .. } | Outcome::TenantNotReady { .. }
            );
        if !transient {
            events::publish(
                &ctx.recorder,
                object,
                type_,
                outcome.reason(),
                "Reconcile",
                message,
            )
            .await;
        }
    }
    Ok(())
}

async fn write_status<K: Managed>(
    client: &Client,
    name: &str,
    status: &ResourceStatus,
) -> Result<K, StatusError> {
    let api: Api<K> = Api::all(client.clone());
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(crate::cluster::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| StatusError::Patch {
        name: name.to_owned(),
        source,
    })
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
