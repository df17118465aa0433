//! Deletion of a Tenant or Customer, under the operator's finalizer.
//!
//! - `Retain` (the default): the namespace and its data stay; the namespace is marked orphaned, the stack is
//!   scaled to zero, the NetworkPolicies stay in force, and the resource stops being routable.
//! - `Delete`: the namespace is deleted, with everything in it, and the database's schema (or database) and
//!   roles are dropped first. Retain keeps them, and the credentials Secret with the namespace.
//!
//! Either way nothing is touched that is not the resource's own (a foreign namespace is left alone), a Tenant
//! waits until its Customers are gone, and running it twice is harmless. While the CRDs themselves are being
//! deleted every resource is treated as `Retain`, so uninstalling or reinstalling the CRDs never deletes tenant
//! data.

use bulkhead_crds::labels;
use bulkhead_crds::v1alpha1::DeletionPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::info;

use crate::cluster::events;
use crate::pipeline::build;
use crate::pipeline::context::{Context, WAIT};
use crate::pipeline::database::{self, Teardown};
use crate::pipeline::finalizer::{FinalizerError, remove_finalizer};
use crate::pipeline::managed::Managed;
use crate::pipeline::namespace::{self, NamespaceState};
use crate::pipeline::outcome::Outcome;
use crate::pipeline::status::{StatusError, finish};

/// Errors of the cleanup step.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The CRD could not be read to tell a CRD deletion from a resource deletion.
    #[error("reading CRD {name}: {source}")]
    Crd {
        /// The CRD.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The namespace could not be read, marked or deleted.
    #[error("{action} namespace {name}: {source}")]
    Namespace {
        /// What was attempted.
        action: &'static str,
        /// The namespace.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The stack could not be scaled to zero.
    #[error("scaling the stack in {namespace} to zero: {source}")]
    Scale {
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The status could not be written.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The finalizer could not be removed.
    #[error(transparent)]
    Finalizer(#[from] FinalizerError),
}

impl CleanupError {
    /// A fixed category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            CleanupError::Crd { .. } | CleanupError::Namespace { .. } | CleanupError::Scale { .. } => {
                "cleanup"
            }
            CleanupError::Status(_) => "status_patch",
            CleanupError::Finalizer(e) => e.category(),
        }
    }
}

/// Runs the cleanup for a resource being deleted and releases its finalizer when done.
pub async fn run<K: Managed>(object: &K, ctx: &Context, now: &Time) -> Result<Action, CleanupError> {
    if let Some(blocker) = object.deletion_blocker(ctx) {
        finish(ctx, object, &Outcome::Deleting(blocker), None, now).await?;
        return Ok(Action::requeue(WAIT));
    }
    let crd_name = format!("{}.{}", K::plural(&()), K::group(&()));
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let crd_deleting = crds
        .get_opt(&crd_name)
        .await
        .map_err(|source| CleanupError::Crd {
            name: crd_name.clone(),
            source,
        })?
        .is_none_or(|crd| crd.metadata.deletion_timestamp.is_some());
    let policy = if crd_deleting {
        DeletionPolicy::Retain
    } else {
        object.deletion_policy()
    };

    let (tenant, customer) = object.owner_names();
    // The database goes first: while it cannot be dropped, the finalizer stays and nothing else is removed.
    let isolation = object
        .current_status()
        .and_then(|s| s.accepted_identity.as_ref())
        .and_then(|a| a.database_isolation);
    if let (DeletionPolicy::Delete, Some(isolation)) = (policy, isolation) {
        match database::teardown(ctx, &tenant, customer.as_deref(), isolation).await {
            Teardown::Done => {
                events::publish(
                    &ctx.recorder,
                    object,
                    EventType::Normal,
                    "DatabaseDropped",
                    "Delete",
                    "The schema (or database) and its roles were dropped (deletionPolicy: Delete).".into(),
                )
                .await;
            }
            Teardown::Waiting(message) => {
                finish(ctx, object, &Outcome::Deleting(message), None, now).await?;
                return Ok(Action::requeue(WAIT));
            }
        }
    }
    let ns_name = bulkhead_crds::naming::namespace(&tenant, customer.as_deref());
    let uid = object.uid().unwrap_or_default();
    let state = namespace::inspect(
        &ctx.client,
        &ctx.stores,
        &ns_name,
        &tenant,
        customer.as_deref(),
        &uid,
    )
    .await
    .map_err(|source| CleanupError::Namespace {
        action: "reading",
        name: ns_name.clone(),
        source,
    })?;
    match (state, policy) {
        (NamespaceState::Ours(ns), DeletionPolicy::Retain) => {
            retire(ctx, &ns, now).await?;
            let why = if crd_deleting {
                " (the CRD is being deleted, so Retain applies)"
            } else {
                ""
            };
            events::publish(&ctx.recorder, object, EventType::Normal, "Orphaned", "Retain", format!(
                "Namespace {ns_name} and its data are kept{why}: marked {}=true, stack scaled to zero, network policies kept.",
                labels::ORPHANED
            )).await;
        }
        (NamespaceState::Ours(_), DeletionPolicy::Delete) => {
            let api: Api<Namespace> = Api::all(ctx.client.clone());
            match api.delete(&ns_name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(CleanupError::Namespace {
                        action: "deleting",
                        name: ns_name,
                        source,
                    });
                }
            }
            events::publish(
                &ctx.recorder,
                object,
                EventType::Normal,
                "NamespaceDeleted",
                "Delete",
                format!(
                    "Namespace {ns_name} and everything in it is being deleted (deletionPolicy: Delete)."
                ),
            )
            .await;
        }
        // Absent, already terminating, or not ours: nothing of ours to clean up.
        (NamespaceState::Absent | NamespaceState::Terminating | NamespaceState::Foreign(_), _) => {}
    }
    info!(kind = K::KIND, name = %object.name_any(), ?policy, crd_deleting, "cleanup done; releasing finalizer");
    remove_finalizer(&ctx.client, object).await?;
    Ok(Action::await_change())
}

/// Marks the namespace orphaned and scales the stack to zero. Uses merge patches, so the rest of what Bulkhead
/// applied (network policies above all) stays exactly as it was.
async fn retire(ctx: &Context, ns: &Namespace, now: &Time) -> Result<(), CleanupError> {
    let name = ns.name_any();
    let params = PatchParams {
        field_manager: Some(crate::cluster::FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    if !ns.labels().contains_key(labels::ORPHANED) {
        let at = now.0.to_string();
        let patch = serde_json::json!({
            "metadata": {"labels": {labels::ORPHANED: "true"}, "annotations": {labels::ORPHANED_AT: at}}
        });
        Api::<Namespace>::all(ctx.client.clone())
            .patch(&name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|source| CleanupError::Namespace {
                action: "marking",
                name: name.clone(),
                source,
            })?;
    }
    let scale = serde_json::json!({"spec": {"replicas": 0}});
    match Api::<Deployment>::namespaced(ctx.client.clone(), &name)
        .patch(build::STACK, &params, &Patch::Merge(&scale))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(CleanupError::Scale {
            namespace: name,
            source,
        }),
    }
}
