//! Watching the objects Bulkhead manages. One reflector per kind (selected by the managed-by label) keeps a
//! cache used to skip writes when nothing changed, and turns every change, including a hand deletion, into a
//! reconcile of the Tenant or Customer the object belongs to.

use std::fmt::Debug;

use bulkhead_crds::labels;
use bulkhead_crds::v1alpha1::{Customer, Tenant};
use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

/// Caches of every managed kind.
#[derive(Clone)]
pub struct Stores {
    /// Managed namespaces.
    pub namespaces: Store<Namespace>,
    /// Managed NetworkPolicies.
    pub network_policies: Store<NetworkPolicy>,
    /// Managed ResourceQuotas.
    pub resource_quotas: Store<ResourceQuota>,
    /// Managed LimitRanges.
    pub limit_ranges: Store<LimitRange>,
    /// Managed ServiceAccounts.
    pub service_accounts: Store<ServiceAccount>,
    /// Managed Deployments.
    pub deployments: Store<Deployment>,
    /// Managed Services.
    pub services: Store<Service>,
}

impl Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

/// Where to send reconcile triggers.
#[derive(Clone, Debug)]
pub struct Triggers {
    /// Reconciles of Tenants.
    pub tenants: UnboundedSender<ObjectRef<Tenant>>,
    /// Reconciles of Customers.
    pub customers: UnboundedSender<ObjectRef<Customer>>,
}

impl Triggers {
    /// Triggers the owner named by an object's labels.
    fn owner_of(&self, object_labels: &std::collections::BTreeMap<String, String>) {
        if let Some(customer) = object_labels.get(labels::CUSTOMER) {
            let _ = self.customers.unbounded_send(ObjectRef::new(customer));
        } else if let Some(tenant) = object_labels.get(labels::TENANT) {
            let _ = self.tenants.unbounded_send(ObjectRef::new(tenant));
        }
    }
}

/// The futures that keep the caches filled; run them until shutdown.
pub type Watches = Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;

/// Starts one reflector per managed kind. The stores fill once the returned futures are polled.
pub fn start(client: &Client, triggers: &Triggers) -> (Stores, Watches) {
    let mut watches: Watches = Vec::new();
    let mut watch = |w| watches.push(w);
    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
    let stores = Stores {
        // All namespaces, not only managed ones: a foreign namespace in the way must be seen to be refused.
        namespaces: reflect::<Namespace>(Api::all(client.clone()), None, triggers, &mut watch),
        network_policies: reflect::<NetworkPolicy>(
            Api::all(client.clone()),
            Some(&managed),
            triggers,
            &mut watch,
        ),
        resource_quotas: reflect::<ResourceQuota>(
            Api::all(client.clone()),
            Some(&managed),
            triggers,
            &mut watch,
        ),
        limit_ranges: reflect::<LimitRange>(Api::all(client.clone()), Some(&managed), triggers, &mut watch),
        service_accounts: reflect::<ServiceAccount>(
            Api::all(client.clone()),
            Some(&managed),
            triggers,
            &mut watch,
        ),
        deployments: reflect::<Deployment>(Api::all(client.clone()), Some(&managed), triggers, &mut watch),
        services: reflect::<Service>(Api::all(client.clone()), Some(&managed), triggers, &mut watch),
    };
    (stores, watches)
}

fn reflect<K>(
    api: Api<K>,
    selector: Option<&str>,
    triggers: &Triggers,
    watch: &mut impl FnMut(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let config = match selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let stream = watcher(api, config)
        // Field-manager bookkeeping is large and never read here.
        .modify(|object| object.meta_mut().managed_fields = None)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let triggers = triggers.clone();
    watch(Box::pin(drive(stream, triggers)));
    reader
}

async fn drive<K, S>(stream: S, triggers: Triggers)
where
    K: Resource<DynamicType = ()> + Send,
    S: Stream<Item = Result<K, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(object) => triggers.owner_of(object.labels()),
            Err(err) => warn!(kind = %K::kind(&()), error = %err, "watch error; retrying"),
        }
    }
}

/// Waits until every cache has its first full list.
pub async fn synced(stores: &Stores) {
    crate::run::synced(&stores.namespaces).await;
    crate::run::synced(&stores.network_policies).await;
    crate::run::synced(&stores.resource_quotas).await;
    crate::run::synced(&stores.limit_ranges).await;
    crate::run::synced(&stores.service_accounts).await;
    crate::run::synced(&stores.deployments).await;
    crate::run::synced(&stores.services).await;
}
