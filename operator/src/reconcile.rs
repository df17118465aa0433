//! The reconcile pipeline shared by the Tenant and Customer controllers.
//!
//! read (the object handed in by the controller) → validate (pure) → desired status (pure) → write status
//! (server-side apply on the status subresource, only when it changed).

use std::sync::Arc;
use std::time::Duration;

use bulkhead_crds::v1alpha1::ResourceStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use tracing::{info, warn};

use crate::conditions::{self, Wanted, reasons, types};
use crate::managed::Managed;
use crate::metrics::Metrics;

/// How often a converged object is looked at again even without a change (a safety net, not the trigger).
pub const RESYNC: Duration = Duration::from_secs(300);

/// Shared state of the controllers.
pub struct Context {
    /// The API client, under the operator's own identity.
    pub client: Client,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
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

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The object handed in has no name (never happens for objects read from the API).
    #[error("object has no name")]
    MissingName,
    /// The status step failed.
    #[error(transparent)]
    Status(#[from] StatusError),
}

impl ReconcileError {
    /// A fixed category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::MissingName => "missing_name",
            ReconcileError::Status(StatusError::Patch { .. }) => "status_patch",
        }
    }
}

/// Computes the status an object should have now (pure).
pub fn desired_status<K: Managed>(object: &K, now: &Time) -> ResourceStatus {
    let current = object.current_status().cloned().unwrap_or_default();
    let generation = object.meta().generation;
    let (wanted, accepted_identity) = match object.validate(current.accepted_identity.as_ref()) {
        Ok(identity) => (
            Wanted {
                type_: types::READY,
                status: false,
                reason: reasons::PENDING,
                message: "The spec is valid; waiting for its namespace, network policies and stack to be provisioned."
                    .into(),
            },
            Some(identity),
        ),
        Err(errors) => (
            Wanted {
                type_: types::READY,
                status: false,
                reason: reasons::INVALID,
                message: format!("The spec was refused and nothing was changed: {errors}"),
            },
            current.accepted_identity.clone(),
        ),
    };
    ResourceStatus {
        observed_generation: generation,
        namespace: current.namespace.clone(),
        conditions: conditions::set(&current.conditions, wanted, generation, now),
        accepted_identity,
    }
}

/// Reconciles one object.
pub async fn reconcile<K: Managed>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let _timer = ctx.metrics.reconcile_started(K::CONTROLLER);
    let name = object.meta().name.clone().ok_or(ReconcileError::MissingName)?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = desired_status(object.as_ref(), &now);
    if object.current_status() != Some(&status) {
        write_status::<K>(&ctx.client, &name, &status).await?;
        let ready = status.conditions.iter().find(|c| c.type_ == types::READY);
        info!(
            controller = K::CONTROLLER,
            name,
            generation = status.observed_generation,
            reason = ready.map(|c| c.reason.as_str()),
            "status updated"
        );
    }
    Ok(Action::requeue(RESYNC))
}

/// Decides when to retry after an error, and counts it.
pub fn error_policy<K: Managed>(object: Arc<K>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(K::CONTROLLER, error.category());
    warn!(
        controller = K::CONTROLLER,
        name = object.meta().name.as_deref(),
        category = error.category(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(Duration::from_secs(5))
}

async fn write_status<K: Managed>(
    client: &Client,
    name: &str,
    status: &ResourceStatus,
) -> Result<(), StatusError> {
    let api: Api<K> = Api::all(client.clone());
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(crate::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| StatusError::Patch {
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_crds::v1alpha1::{Tenant, TenantSpec};
    use k8s_openapi::jiff::Timestamp;

    fn tenant(yaml: &str) -> Tenant {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const VALID: &str = "
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: {name: acme, generation: 4}
spec:
  orgId: org_acme
  stack: {image: 'registry.example.com/acme/portal:1.4.2', port: 8080}
";

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn a_valid_spec_is_pending_and_its_identity_recorded() {
        let status = desired_status(&tenant(VALID), &at(10));
        assert_eq!(status.observed_generation, Some(4));
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str(), ready.reason.as_str()),
            ("Ready", "False", "Pending")
        );
        assert_eq!(ready.observed_generation, Some(4));
        assert_eq!(status.accepted_identity.unwrap().org_id, "org_acme");
    }

    #[test]
    fn an_invalid_spec_is_refused_naming_the_field_and_keeps_the_old_identity() {
        let mut t = tenant(VALID);
        let accepted = desired_status(&t, &at(10));
        t.status = Some(accepted.clone());
        t.spec = TenantSpec {
            org_id: "org other".into(),
            ..t.spec
        };
        let status = desired_status(&t, &at(20));
        let ready = &status.conditions[0];
        assert_eq!(ready.reason, "Invalid");
        assert!(ready.message.contains("spec.orgId"), "{}", ready.message);
        assert_eq!(ready.last_transition_time, at(10), "status stayed False");
        assert_eq!(status.accepted_identity, accepted.accepted_identity);
    }

    #[test]
    fn a_converged_object_needs_no_write() {
        let mut t = tenant(VALID);
        t.status = Some(desired_status(&t, &at(10)));
        assert_eq!(Some(&desired_status(&t, &at(99))), t.status.as_ref());
    }
}
