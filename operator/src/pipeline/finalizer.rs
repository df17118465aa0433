//! The operator's finalizer on Tenants and Customers: added before anything is created, removed once the
//! cleanup is done, so no object outlives its cleanup.

use bulkhead_crds::FINALIZER;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::pipeline::managed::Managed;

/// Errors of the finalizer step.
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError {
    /// The finalizer could not be added or removed.
    #[error("updating finalizers of {name}: {source}")]
    Patch {
        /// The object's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl FinalizerError {
    /// A fixed category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        "finalizer"
    }
}

/// Adds the operator's finalizer, failing if the list changed meanwhile.
pub async fn add_finalizer<K: Managed>(client: &Client, object: &K) -> Result<K, FinalizerError> {
    let name = object.name_any();
    let api: Api<K> = Api::all(client.clone());
    // A JSON patch that fails if the list changed meanwhile, so no other finalizer is lost.
    let patch = match &object.meta().finalizers {
        Some(list) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}
        ]),
        None => json!([{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]),
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| FinalizerError::Patch {
        name: name.clone(),
        source: kube::Error::SerdeError(e),
    })?;
    api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|source| FinalizerError::Patch { name, source })
}

/// Removes the operator's finalizer, keeping any others.
pub async fn remove_finalizer<K: Managed>(client: &Client, object: &K) -> Result<(), FinalizerError> {
    let name = object.name_any();
    let list = object.finalizers().to_vec();
    let kept: Vec<&String> = list.iter().filter(|f| *f != FINALIZER).collect();
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": list},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept}
    ]))
    .map_err(|e| FinalizerError::Patch {
        name: name.clone(),
        source: kube::Error::SerdeError(e),
    })?;
    let api: Api<K> = Api::all(client.clone());
    match api
        .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(FinalizerError::Patch { name, source }),
    }
}
