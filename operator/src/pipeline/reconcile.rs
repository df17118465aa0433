//! The reconcile pipeline shared by the Tenant and Customer controllers, the top of [`crate::pipeline`]:
//!
//! read (the object, its Tenant, the caches) → validate (pure) → check conflicts → namespace → build the desired
//! objects (pure) → server-side apply and prune → database → status (pure, then written only when it changed).
//! Deletion runs [`cleanup`] under the operator's finalizer. Each step returns its own error; [`ReconcileError`]
//! gathers them, with the category each one reports.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_crds::FINALIZER;
use bulkhead_crds::v1alpha1::ResourceStatus;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use crate::cluster::events;
use crate::cluster::observe::Owner;
use crate::cluster::pace::Pacer;
use crate::pipeline::apply::{self, ApplyError, Report};
use crate::pipeline::build;
use crate::pipeline::cleanup::{self, CleanupError};
use crate::pipeline::conditions::types;
use crate::pipeline::context::{Context, RESYNC, WAIT};
use crate::pipeline::database::{self, DatabaseError};
use crate::pipeline::finalizer::{FinalizerError, add_finalizer};
use crate::pipeline::managed::{self, Managed};
use crate::pipeline::namespace::{self, NamespaceState};
use crate::pipeline::outcome::{DatabaseState, Outcome, Stack};
use crate::pipeline::status::{StatusError, finish};

/// Errors of one reconcile, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The finalizer could not be added.
    #[error(transparent)]
    Finalizer(#[from] FinalizerError),
    /// The namespace could not be read.
    #[error("reading namespace {name}: {source}")]
    NamespaceRead {
        /// The namespace.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The apply step failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The cleanup step failed.
    #[error(transparent)]
    Cleanup(#[from] CleanupError),
    /// The status step failed.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The database step failed on the Kubernetes side (its Postgres failures are status, not errors).
    #[error(transparent)]
    Database(#[from] DatabaseError),
}

impl ReconcileError {
    /// A fixed category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Finalizer(e) => e.category(),
            ReconcileError::NamespaceRead { .. } => "namespace_read",
            ReconcileError::Apply(e) => e.category(),
            ReconcileError::Cleanup(e) => e.category(),
            ReconcileError::Status(_) => "status_patch",
            ReconcileError::Database(e) => e.category(),
        }
    }
}

/// Reports a reconcile's end to the full pass when dropped.
struct Ended<'a>(&'a Pacer<Owner>, Owner);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.done(&self.1);
    }
}

/// Reconciles one object.
pub async fn reconcile<K: Managed>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let _timer = ctx.metrics.reconcile_started(K::CONTROLLER);
    // However it ends, this reconcile frees its place in the full pass's window.
    let _paced = Ended(&ctx.pass, object.owner());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    if object.meta().deletion_timestamp.is_some() {
        if !object.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(Action::await_change());
        }
        return Ok(cleanup::run(object.as_ref(), &ctx, &now).await?);
    }
    // The finalizer goes on before anything is created, so no object can outlive its cleanup.
    let object = if object.finalizers().iter().any(|f| f == FINALIZER) {
        object
    } else {
        let added = add_finalizer(&ctx.client, object.as_ref()).await?;
        ctx.echoes.wrote(
            added.meta().uid.as_deref().unwrap_or_default(),
            added.meta().resource_version.as_deref(),
        );
        Arc::new(added)
    };

    let previous = object.current_status();
    let accepted = previous.and_then(|s| s.accepted_identity.as_ref());
    let identity = match object.validate(accepted) {
        Ok(identity) => identity,
        Err(errors) => {
            let outcome = Outcome::Invalid(errors.to_string());
            finish(&ctx, object.as_ref(), &outcome, None, &now).await?;
            return Ok(Action::await_change());
        }
    };
    if let Some(holder) = managed::org_conflict(&ctx, object.as_ref()) {
        finish(
            &ctx,
            object.as_ref(),
            &Outcome::OrgIdConflict { holder },
            Some(identity),
            &now,
        )
        .await?;
        return Ok(Action::requeue(WAIT));
    }
    let mut plan = match object.plan(&ctx) {
        Ok(plan) => plan,
        Err(outcome) => {
            finish(&ctx, object.as_ref(), &outcome, Some(identity), &now).await?;
            return Ok(Action::requeue(WAIT));
        }
    };
    let ns_name = plan.subject(false).namespace();
    let state = namespace::inspect(
        &ctx.client,
        &ctx.stores,
        &ns_name,
        &plan.tenant,
        plan.customer.as_deref(),
        &plan.uid,
    )
    .await
    .map_err(|source| ReconcileError::NamespaceRead {
        name: ns_name.clone(),
        source,
    })?;
    let namespace_exists = matches!(state, NamespaceState::Ours(_));
    match state {
        NamespaceState::Foreign(detail) => {
            let outcome = Outcome::NamespaceConflict {
                namespace: ns_name,
                detail,
            };
            finish(&ctx, object.as_ref(), &outcome, Some(identity), &now).await?;
            return Ok(Action::requeue(WAIT));
        }
        NamespaceState::Terminating => {
            let outcome = Outcome::NamespaceTerminating { namespace: ns_name };
            finish(&ctx, object.as_ref(), &outcome, Some(identity), &now).await?;
            return Ok(Action::requeue(WAIT));
        }
        NamespaceState::Ours(ns) if ns.labels().contains_key(bulkhead_crds::labels::ORPHANED) => {
            namespace::clear_orphan_marks(&ctx.client, &ns_name)
                .await
                .map_err(|source| ReconcileError::NamespaceRead {
                    name: ns_name.clone(),
                    source,
                })?;
            events::publish(&ctx.recorder, object.as_ref(), EventType::Normal, "NamespaceAdopted", "Adopt",
                format!("Namespace {ns_name} was orphaned by an earlier deletion with Retain and is back in service.")).await;
        }
        NamespaceState::Ours(_) | NamespaceState::Absent => {}
    }

    // The credentials Secret is read before the apply, so the pod template carries the rotation it is at.
    let found = if plan.database.enabled && namespace_exists {
        database::read_secret(&ctx, &ns_name).await?
    } else {
        database::Found::default()
    };
    if plan.database.enabled && ctx.database.is_some() {
        plan.credentials_revision = database::revision_after(object.as_ref(), &found);
    }
    let subject = plan.subject(false);
    let desired = build::desired(&subject, &ctx.settings);
    let policies: Vec<String> = desired.network_policies.iter().map(|p| p.name_any()).collect();
    let mut report = Report::default();
    let deployment = apply::apply(&ctx.client, &ctx.stores, &subject, desired, &mut report).await?;
    record(&ctx, object.as_ref(), &report, previous).await;

    // The Deployment's own status says whether the stack is available; when its spec was just written, its
    // controller has not caught up yet and the next change of the Deployment triggers another reconcile.
    let stack = match deployment {
        Some(d) => Stack::of(&d),
        None => Stack::RollingOut {
            available: 0,
            replicas: plan.stack.replicas,
        },
    };
    let database = if plan.database.enabled {
        Some(database::ensure(&ctx, object.as_ref(), &plan, &ns_name, found).await?)
    } else {
        None
    };
    // No watch reports drift inside Postgres, so a database is looked at more often than the rest.
    let next = match (&database, &ctx.database) {
        (Some(DatabaseState::NotReady { .. }), _) => WAIT,
        (Some(DatabaseState::Ready(_)), Some(db)) => db.settings().resync.min(RESYNC),
        _ => RESYNC,
    };
    let outcome = Outcome::Provisioned {
        namespace: ns_name,
        policies,
        stack,
        database,
    };
    finish(&ctx, object.as_ref(), &outcome, Some(identity), &now).await?;
    Ok(Action::requeue(next))
}

/// Counts and reports what an apply changed: one Event per object, naming it as the related object.
async fn record<K: Managed>(ctx: &Context, object: &K, report: &Report, previous: Option<&ResourceStatus>) {
    if report.writes() == 0 {
        return;
    }
    let was_provisioned = previous.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == types::NAMESPACE_READY && c.status == "True")
    });
    ctx.metrics.objects_applied(K::CONTROLLER, report.writes());
    info!(
        controller = K::CONTROLLER,
        name = %object.name_any(),
        created = %apply::describe(&report.created),
        updated = %apply::describe(&report.updated),
        reverted = %apply::describe(&report.reverted),
        pruned = %apply::describe(&report.pruned),
        removed = %apply::describe(&report.removed),
        "applied"
    );
    let drift =
        report.reverted.len() + report.removed.len() + if was_provisioned { report.created.len() } else { 0 };
    if drift > 0 {
        ctx.metrics.drift_repaired(K::CONTROLLER, drift);
    }
    if !was_provisioned && !report.created.is_empty() {
        // First provisioning: one event for the lot, not one per object.
        let note = format!("Created {}.", apply::describe(&report.created));
        events::publish(
            &ctx.recorder,
            object,
            EventType::Normal,
            "Created",
            "Create",
            note,
        )
        .await;
    }
    // Repairs and changes name each object, so each keeps its own event instead of folding into a series.
    let recreated: &[ObjectReference] = if was_provisioned { &report.created } else { &[] };
    let groups: [(&[ObjectReference], EventType, &str, &str, &str); 5] = [
        (
            recreated,
            EventType::Warning,
            "DriftRecreated",
            "Repair",
            "was deleted by hand and has been recreated",
        ),
        (
            &report.reverted,
            EventType::Warning,
            "DriftReverted",
            "Repair",
            "was edited by hand and has been set back",
        ),
        (
            &report.removed,
            EventType::Warning,
            "DriftRemoved",
            "Repair",
            "was not made by Bulkhead and was deleted: a Bulkhead namespace holds Bulkhead's policies only",
        ),
        (
            &report.updated,
            EventType::Normal,
            "Updated",
            "Update",
            "was updated to match the spec",
        ),
        (
            &report.pruned,
            EventType::Normal,
            "Pruned",
            "Delete",
            "is no longer desired and was deleted",
        ),
    ];
    for (refs, type_, reason, action, what) in groups {
        for related in refs {
            let note = format!("{} {what}.", apply::describe(std::slice::from_ref(related)));
            events::publish_related(
                &ctx.recorder,
                object,
                related.clone(),
                type_,
                reason,
                action,
                note,
            )
            .await;
        }
    }
}

/// Decides when to retry after an error, counts it and reports it.
pub fn error_policy<K: Managed>(object: Arc<K>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(K::CONTROLLER, error.category());
    warn!(controller = K::CONTROLLER, name = %object.name_any(), category = error.category(), error = %error, "reconcile failed");
    let recorder = ctx.recorder.clone();
    let reason = events::failure_reason(error.category());
    let note = error.to_string();
    tokio::spawn(async move {
        events::publish(
            &recorder,
            object.as_ref(),
            EventType::Warning,
            reason,
            "Reconcile",
            note,
        )
        .await;
    });
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error() -> kube::Error {
        kube::Error::SerdeError(serde_json::from_str::<u8>("x").unwrap_err())
    }

    /// A step's error keeps its category (the metric label and Event reason) and message whichever step it
    /// surfaces through: a status write or finalizer removal during cleanup reports as it does elsewhere.
    #[test]
    fn each_error_keeps_its_category_and_message_through_the_step_that_raised_it() {
        let finalizer = || FinalizerError::Patch {
            name: "acme".into(),
            source: api_error(),
        };
        let status = || StatusError::Patch {
            name: "acme".into(),
            source: api_error(),
        };
        let cases: Vec<(ReconcileError, &str, &str)> = vec![
            (finalizer().into(), "finalizer", "updating finalizers of acme: "),
            (
                ReconcileError::NamespaceRead {
                    name: "bk-acme".into(),
                    source: api_error(),
                },
                "namespace_read",
                "reading namespace bk-acme: ",
            ),
            (status().into(), "status_patch", "writing status of acme: "),
            (
                CleanupError::from(status()).into(),
                "status_patch",
                "writing status of acme: ",
            ),
            (
                CleanupError::from(finalizer()).into(),
                "finalizer",
                "updating finalizers of acme: ",
            ),
            (
                CleanupError::Scale {
                    namespace: "bk-acme".into(),
                    source: api_error(),
                }
                .into(),
                "cleanup",
                "scaling the stack in bk-acme to zero: ",
            ),
        ];
        for (error, category, message) in cases {
            assert_eq!(error.category(), category, "{error}");
            assert!(error.to_string().starts_with(message), "{error}");
        }
    }
}
