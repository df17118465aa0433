//! Feeds the route table from Tenant and Customer watches. Each event updates a [`Catalog`] of what routing needs
//! of each resource; once both kinds have listed, every table the catalog changes is swapped in whole.

use std::sync::Arc;

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tracing::{info, warn};

use super::catalog::Catalog;
use super::{Routes, UpstreamResolver};
use crate::metrics::Metrics;

/// One event of either watch.
enum Change {
    Tenant(Result<Event<Tenant>, watcher::Error>),
    Customer(Result<Event<Customer>, watcher::Error>),
}

/// Watches Tenants and Customers until the streams end (they retry with backoff, so in practice: until the task
/// is aborted).
pub async fn run(client: Client, routes: Arc<Routes>, resolver: UpstreamResolver, metrics: Arc<Metrics>) {
    let tenant_events = watcher::watcher(Api::<Tenant>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map(Change::Tenant);
    let customer_events = watcher::watcher(Api::<Customer>::all(client), watcher::Config::default())
        .default_backoff()
        .map(Change::Customer);
    let events = futures::stream::select(tenant_events, customer_events);
    let mut events = std::pin::pin!(events);
    let mut catalog = Catalog::new(resolver);
    while let Some(change) = events.next().await {
        let changed = match change {
            Change::Tenant(Ok(event)) => catalog.tenant_event(event),
            Change::Customer(Ok(event)) => catalog.customer_event(event),
            Change::Tenant(Err(error)) | Change::Customer(Err(error)) => {
                warn!(%error, "watching Tenants/Customers failed; retrying, routes unchanged");
                false
            }
        };
        if changed && catalog.is_synced() {
            let table = catalog.table().clone();
            let count = table.routable();
            let first = !routes.is_synced();
            routes.store(table);
            metrics.routes(count);
            if first {
                info!(routable = count, "route table synced");
            }
        }
    }
}
