//! Reading the Events the operator publishes.

use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};

/// The notes of every Event with `reason`, in any namespace (the operator's Events about Tenants and Customers
/// are stored in `default`, those about namespaced objects beside them).
pub async fn notes(client: &Client, reason: &str) -> Result<Vec<String>, kube::Error> {
    let api: Api<Event> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect())
}
