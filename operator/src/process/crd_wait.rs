//! Waiting for Bulkhead's CRDs to be installed and established before the controllers start, so that a fresh
//! install where the operator starts first does not crash-loop.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, CustomResourceExt};
use tracing::info;

use bulkhead_crds::v1alpha1::{Customer, Tenant};

/// Errors while waiting for the CRDs.
#[derive(Debug, thiserror::Error)]
pub enum CrdWaitError {
    /// The CRDs could not be read (for example, RBAC does not allow it).
    #[error("reading CRD {name}: {source}")]
    Read {
        /// The CRD's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl CrdWaitError {
    /// A fixed category for metrics labels and events.
    pub fn category(&self) -> &'static str {
        "crd_read"
    }
}

/// Whether the API server serves a CRD: its condition `Established` is `True` (pure).
pub fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}

/// Returns once every Bulkhead CRD exists with condition `Established=True`. Polls every two seconds and logs
/// what it is waiting for.
pub async fn wait_established(client: &Client) -> Result<(), CrdWaitError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names = [Tenant::crd_name(), Customer::crd_name()];
    let mut logged = false;
    loop {
        let mut missing = Vec::new();
        for name in names {
            let crd = api.get_opt(name).await.map_err(|source| CrdWaitError::Read {
                name: name.into(),
                source,
            })?;
            if !crd.as_ref().is_some_and(is_established) {
                missing.push(name);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if !logged {
            info!(crds = ?missing, "waiting for CRDs to be installed and established (bulkhead-operator crds | kubectl apply -f -)");
            logged = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
