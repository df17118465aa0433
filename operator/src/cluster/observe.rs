//! Watching the objects Bulkhead manages. One reflector per kind (selected by the managed-by label) keeps a
//! cache used to skip writes when nothing changed, and turns every change, including a hand deletion, into a
//! reconcile of the Tenant or Customer the object belongs to.
//!
//! NetworkPolicies are the exception: every one in the cluster is watched, because a Bulkhead namespace holds
//! Bulkhead's policies and nothing else. A policy someone else made in such a namespace carries none of
//! Bulkhead's labels; the namespace's labels name its owner, which is reconciled and deletes it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

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
    /// Every namespace: Bulkhead's, and foreign ones that may be in the way.
    pub namespaces: Store<Namespace>,
    /// Every NetworkPolicy in the cluster, Bulkhead's and others'.
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
    /// Asks for a reconcile of `owner`.
    pub fn send(&self, owner: Owner) {
        match owner {
            Owner::Tenant(name) => {
                let _ = self.tenants.unbounded_send(ObjectRef::new(&name));
            }
            Owner::Customer(name) => {
                let _ = self.customers.unbounded_send(ObjectRef::new(&name));
            }
        }
    }
}

/// The Tenant or Customer an object or a namespace belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// A Tenant, by name.
    Tenant(String),
    /// A Customer, by name.
    Customer(String),
}

/// The owner named by an object's labels (pure).
pub fn owner_by_labels(object_labels: &BTreeMap<String, String>) -> Option<Owner> {
    if let Some(customer) = object_labels.get(labels::CUSTOMER) {
        Some(Owner::Customer(customer.clone()))
    } else {
        object_labels
            .get(labels::TENANT)
            .map(|tenant| Owner::Tenant(tenant.clone()))
    }
}

/// The owner of a namespace that Bulkhead manages, from the namespace's labels (pure). A namespace without the
/// managed-by label has none: Bulkhead never touches what is in it.
pub fn namespace_owner(namespace: &Namespace) -> Option<Owner> {
    let l = namespace.labels();
    if l.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGED_BY_VALUE) {
        return None;
    }
    owner_by_labels(l)
}

/// Who to reconcile when a NetworkPolicy changes (pure): the owner of the Bulkhead namespace it lives in,
/// whoever made the policy, and the owner its own labels name (the same one for Bulkhead's policies).
pub fn policy_owners(policy_labels: &BTreeMap<String, String>, namespace: Option<&Namespace>) -> Vec<Owner> {
    let mut owners: Vec<Owner> = namespace
        .and_then(namespace_owner)
        .into_iter()
        .chain(owner_by_labels(policy_labels))
        .collect();
    owners.sort();
    owners.dedup();
    owners
}

/// The futures that keep the caches filled; run them until shutdown.
pub type Watches = Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;

/// Starts one reflector per managed kind. The stores fill once the returned futures are polled.
pub fn start(client: &Client, triggers: &Triggers) -> (Stores, Watches) {
    let mut watches: Watches = Vec::new();
    let mut watch = |w| watches.push(w);
    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
    // All namespaces, not only managed ones: a foreign namespace in the way must be seen to be refused.
    let namespaces = reflect::<Namespace>(Api::all(client.clone()), None, triggers, by_labels, &mut watch);
    // All NetworkPolicies: one that Bulkhead did not make in a namespace it manages is found and deleted.
    let namespace_cache = namespaces.clone();
    let network_policies = reflect::<NetworkPolicy>(
        Api::all(client.clone()),
        None,
        triggers,
        move |policy: &NetworkPolicy| {
            let namespace = policy
                .namespace()
                .and_then(|ns| namespace_cache.get(&ObjectRef::new(&ns)));
            policy_owners(policy.labels(), namespace.as_deref())
        },
        &mut watch,
    );
    let stores = Stores {
        namespaces,
        network_policies,
        resource_quotas: reflect::<ResourceQuota>(
            Api::all(client.clone()),
            Some(&managed),
            triggers,
            by_labels,
            &mut watch,
        ),
        limit_ranges: reflect::<LimitRange>(
            Api::all(client.clone()),
            Some(&managed),
            triggers,
            by_labels,
            &mut watch,
        ),
        service_accounts: reflect::<ServiceAccount>(
            Api::all(client.clone()),
            Some(&managed),
            triggers,
            by_labels,
            &mut watch,
        ),
        deployments: reflect::<Deployment>(
            Api::all(client.clone()),
            Some(&managed),
            triggers,
            by_labels,
            &mut watch,
        ),
        services: reflect::<Service>(
            Api::all(client.clone()),
            Some(&managed),
            triggers,
            by_labels,
            &mut watch,
        ),
    };
    (stores, watches)
}

/// The owner an object's own labels name.
fn by_labels<K: Resource>(object: &K) -> Vec<Owner> {
    owner_by_labels(object.labels()).into_iter().collect()
}

fn reflect<K>(
    api: Api<K>,
    selector: Option<&str>,
    triggers: &Triggers,
    owners: impl Fn(&K) -> Vec<Owner> + Send + 'static,
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
    watch(Box::pin(drive(stream, triggers, owners)));
    reader
}

async fn drive<K, S>(stream: S, triggers: Triggers, owners: impl Fn(&K) -> Vec<Owner>)
where
    K: Resource<DynamicType = ()> + Send,
    S: Stream<Item = Result<K, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(object) => owners(&object).into_iter().for_each(|owner| triggers.send(owner)),
            Err(err) => warn!(kind = %K::kind(&()), error = %err, "watch error; retrying"),
        }
    }
}

/// Waits until every cache has its first full list.
pub async fn synced(stores: &Stores) {
    store_synced(&stores.namespaces).await;
    store_synced(&stores.network_policies).await;
    store_synced(&stores.resource_quotas).await;
    store_synced(&stores.limit_ranges).await;
    store_synced(&stores.service_accounts).await;
    store_synced(&stores.deployments).await;
    store_synced(&stores.services).await;
}

/// Waits until a cache has synced. The store's readiness signal wakes only its most recent waiter (the
/// controller's own runner polls it too), so poll again on a short timer instead of waiting once.
pub async fn store_synced<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(result) = tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            return result.is_ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn namespace(pairs: &[(&str, &str)]) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("bk-acme".into()),
                labels: Some(map(pairs)),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    #[test]
    fn labels_name_a_customer_before_its_tenant() {
        assert_eq!(
            owner_by_labels(&map(&[(labels::TENANT, "acme"), (labels::CUSTOMER, "dental")])),
            Some(Owner::Customer("dental".into()))
        );
        assert_eq!(
            owner_by_labels(&map(&[(labels::TENANT, "acme")])),
            Some(Owner::Tenant("acme".into()))
        );
        assert_eq!(owner_by_labels(&map(&[("app", "x")])), None);
    }

    #[test]
    fn only_a_namespace_bulkhead_manages_has_an_owner() {
        let managed = (labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
        assert_eq!(
            namespace_owner(&namespace(&[managed, (labels::TENANT, "acme")])),
            Some(Owner::Tenant("acme".into()))
        );
        assert_eq!(
            namespace_owner(&namespace(&[
                managed,
                (labels::TENANT, "acme"),
                (labels::CUSTOMER, "dental")
            ])),
            Some(Owner::Customer("dental".into()))
        );
        assert_eq!(namespace_owner(&namespace(&[(labels::TENANT, "acme")])), None);
        assert_eq!(namespace_owner(&namespace(&[managed])), None);
    }

    #[test]
    fn a_policy_without_labels_in_a_bulkhead_namespace_triggers_the_namespaces_owner() {
        let managed = (labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
        let acme = namespace(&[managed, (labels::TENANT, "acme")]);
        assert_eq!(
            policy_owners(&BTreeMap::new(), Some(&acme)),
            [Owner::Tenant("acme".into())]
        );
        // Bulkhead's own policy: one trigger, not two.
        assert_eq!(
            policy_owners(&map(&[managed, (labels::TENANT, "acme")]), Some(&acme)),
            [Owner::Tenant("acme".into())]
        );
        // Labels naming someone else do not hide a policy from its namespace's owner.
        assert_eq!(
            policy_owners(&map(&[(labels::TENANT, "globex")]), Some(&acme)),
            [Owner::Tenant("acme".into()), Owner::Tenant("globex".into())]
        );
        // Outside Bulkhead's namespaces (or with the namespace not cached yet) only the policy's labels count.
        let foreign = namespace(&[("team", "payments")]);
        assert!(policy_owners(&BTreeMap::new(), Some(&foreign)).is_empty());
        assert!(policy_owners(&BTreeMap::new(), None).is_empty());
        assert_eq!(
            policy_owners(&map(&[(labels::TENANT, "acme")]), None),
            [Owner::Tenant("acme".into())]
        );
    }
}
