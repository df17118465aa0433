//! Feeds the route table from Tenant and Customer resources with two kube reflectors. The table is rebuilt
//! from both stores after every change once both have listed, and swapped in whole.

use std::sync::Arc;

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use kube::{Api, Client};
use tracing::{info, warn};

use super::{RouteTable, Routes, UpstreamResolver};
use crate::metrics::Metrics;

/// What one watch event means for the table.
enum Signal {
    /// The kind finished its (re)list.
    Listed(Kind),
    /// An object changed.
    Changed,
    /// Nothing to do yet.
    Nothing,
    /// The watch failed (it retries with backoff).
    Failed(String),
}

#[derive(Clone, Copy)]
enum Kind {
    Tenant,
    Customer,
}

fn signal<K>(kind: Kind, event: Result<Event<K>, watcher::Error>) -> Signal {
    match event {
        Ok(Event::InitDone) => Signal::Listed(kind),
        Ok(Event::Apply(_) | Event::Delete(_)) => Signal::Changed,
        Ok(Event::Init | Event::InitApply(_)) => Signal::Nothing,
        Err(err) => Signal::Failed(err.to_string()),
    }
}

/// Watches Tenants and Customers until the streams end (they retry with backoff, so in practice: until the task
/// is aborted).
pub async fn run(client: Client, routes: Arc<Routes>, resolver: UpstreamResolver, metrics: Arc<Metrics>) {
    let (tenants, tenant_writer) = reflector::store::<Tenant>();
    let (customers, customer_writer) = reflector::store::<Customer>();
    let tenant_events = reflector(
        tenant_writer,
        watcher(Api::<Tenant>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .map(|e| signal(Kind::Tenant, e));
    let customer_events = reflector(
        customer_writer,
        watcher(Api::<Customer>::all(client), watcher::Config::default()).default_backoff(),
    )
    .map(|e| signal(Kind::Customer, e));
    let events = futures::stream::select(tenant_events, customer_events);
    let mut events = std::pin::pin!(events);
    let (mut tenants_listed, mut customers_listed) = (false, false);
    while let Some(signal) = events.next().await {
        let rebuild = match signal {
            Signal::Listed(Kind::Tenant) => {
                tenants_listed = true;
                true
            }
            Signal::Listed(Kind::Customer) => {
                customers_listed = true;
                true
            }
            Signal::Changed => true,
            Signal::Nothing => false,
            Signal::Failed(error) => {
                warn!(%error, "watching Tenants/Customers failed; retrying, routes unchanged");
                false
            }
        };
        if rebuild && tenants_listed && customers_listed {
            let t: Vec<Tenant> = tenants.state().iter().map(|t| (**t).clone()).collect();
            let c: Vec<Customer> = customers.state().iter().map(|c| (**c).clone()).collect();
            let table = RouteTable::build(&t, &c, &resolver);
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

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config)
}
