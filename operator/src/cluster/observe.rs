//! Watching the objects Bulkhead manages. One watch per kind (selected by the managed-by label) keeps a cache
//! used to skip writes when nothing changed, and turns every change, including a hand deletion, into a
//! reconcile of the Tenant or Customer the object belongs to.
//!
//! NetworkPolicies are the exception: every one in the cluster is watched, because a Bulkhead namespace holds
//! Bulkhead's policies and nothing else. A policy someone else made in such a namespace carries none of
//! Bulkhead's labels; the namespace's labels name its owner, which is reconciled and deletes it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_crds::labels;
use bulkhead_crds::v1alpha1::{Customer, Tenant};
use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::warn;

use crate::cluster::cache::Cache;
use crate::cluster::pace::Pacer;

/// Caches of every managed kind.
#[derive(Clone)]
pub struct Stores {
    /// Every namespace: Bulkhead's, and foreign ones that may be in the way.
    pub namespaces: Cache<Namespace>,
    /// Every NetworkPolicy in the cluster, Bulkhead's and others'.
    pub network_policies: Cache<NetworkPolicy>,
    /// Managed ResourceQuotas.
    pub resource_quotas: Cache<ResourceQuota>,
    /// Managed LimitRanges.
    pub limit_ranges: Cache<LimitRange>,
    /// Managed ServiceAccounts.
    pub service_accounts: Cache<ServiceAccount>,
    /// Managed Deployments.
    pub deployments: Cache<Deployment>,
    /// Managed Services.
    pub services: Cache<Service>,
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
    /// The full pass, handed to the controllers a window at a time.
    pub pass: Arc<Pacer<Owner>>,
}

impl Triggers {
    /// Asks for reconciles of `owners` as part of a full pass: behind every change, a window at a time.
    pub fn pass(&self, owners: impl IntoIterator<Item = Owner>) {
        self.pass.enqueue(owners);
    }

    /// Asks for a reconcile of `owner` now.
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// Starts one watch per managed kind. The caches fill once the returned futures are polled.
pub fn start(client: &Client, triggers: &Triggers) -> (Stores, Watches) {
    let mut watches: Watches = Vec::new();
    let mut watch = |w| watches.push(w);
    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
    // All namespaces, not only managed ones: a foreign namespace in the way must be seen to be refused.
    let namespaces = reflect::<Namespace>(
        Api::all(client.clone()),
        None,
        // Its phase says whether it is being deleted.
        Status::Read,
        triggers,
        by_labels,
        &mut watch,
    );
    // All NetworkPolicies: one that Bulkhead did not make in a namespace it manages is found and deleted.
    let namespace_cache = namespaces.clone();
    let network_policies = reflect::<NetworkPolicy>(
        Api::all(client.clone()),
        None,
        Status::Ignored,
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
            Status::Ignored,
            triggers,
            by_labels,
            &mut watch,
        ),
        limit_ranges: reflect::<LimitRange>(
            Api::all(client.clone()),
            Some(&managed),
            Status::Ignored,
            triggers,
            by_labels,
            &mut watch,
        ),
        service_accounts: reflect::<ServiceAccount>(
            Api::all(client.clone()),
            Some(&managed),
            Status::Ignored,
            triggers,
            by_labels,
            &mut watch,
        ),
        deployments: reflect::<Deployment>(
            Api::all(client.clone()),
            Some(&managed),
            // Its availability is the stack's readiness.
            Status::Read,
            triggers,
            by_labels,
            &mut watch,
        ),
        services: reflect::<Service>(
            Api::all(client.clone()),
            Some(&managed),
            Status::Ignored,
            triggers,
            by_labels,
            &mut watch,
        ),
    };
    (stores, watches)
}

/// Whether reconciles read a kind's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// A change of the status alone reconciles the owner.
    Read,
    /// A change of the status alone is taken into the cache and reconciles nothing.
    Ignored,
}

/// Whether two versions of an object differ only in their status (and so in their resource version).
fn same_but_status<K: Serialize>(before: &K, after: &K) -> bool {
    let strip = |object: &K| {
        let mut value = serde_json::to_value(object).ok()?;
        let map = value.as_object_mut()?;
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        Some(value)
    };
    match (strip(before), strip(after)) {
        (Some(before), Some(after)) => before == after,
        _ => false,
    }
}

/// The owner an object's own labels name.
fn by_labels<K: Resource>(object: &K) -> Vec<Owner> {
    owner_by_labels(object.labels()).into_iter().collect()
}

fn reflect<K>(
    api: Api<K>,
    selector: Option<&str>,
    status: Status,
    triggers: &Triggers,
    owners: impl Fn(&K) -> Vec<Owner> + Send + 'static,
    watch: &mut impl FnMut(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
) -> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let cache = Cache::default();
    let config = match selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let stream = watcher(api, config).modify(lean).default_backoff();
    watch(Box::pin(drive(
        stream,
        cache.clone(),
        status,
        triggers.clone(),
        owners,
    )));
    cache
}

/// Keeps the cache and turns every change into reconciles: of the owners the object names now and of those
/// it named before the change, so that an object relabelled away from its owner (or stripped of its labels)
/// still brings that owner back to repair it. Each reconcile is asked for only once the cache holds the change;
/// those of a (re)list join the paced full pass.
async fn drive<K, S>(
    stream: S,
    cache: Cache<K>,
    status: Status,
    triggers: Triggers,
    owners: impl Fn(&K) -> Vec<Owner>,
) where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    // The owners a (re)list names, reconciled once it is complete.
    let mut listed = Vec::new();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                warn!(kind = %K::kind(&()), error = %err, "watch error; retrying");
                continue;
            }
        };
        // The operator's own write coming back, or a change of a status no reconcile reads of this kind (the
        // controller-manager's quota usage): nothing to reconcile.
        let echo = cache.is_echo(&event);
        let mut found = Vec::new();
        let mut touch = |object: &K| {
            let before = cache.get(&ObjectRef::from_obj(object));
            if echo
                || (status == Status::Ignored
                    && before.as_deref().is_some_and(|b| same_but_status(b, object)))
            {
                return;
            }
            found.extend(before.iter().flat_map(|b| owners(b)));
            found.extend(owners(object));
        };
        match &event {
            watcher::Event::Apply(object) | watcher::Event::Delete(object) => touch(object),
            watcher::Event::InitApply(object) => touch(object),
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitDone => {}
        }
        // Objects deleted while the watch was down are not in the new list; their owners repair too.
        let gone = cache.apply(&event);
        found.extend(gone.iter().flat_map(|g| owners(g)));
        if matches!(event, watcher::Event::InitApply(_)) {
            listed.append(&mut found);
            continue;
        }
        found.sort();
        found.dedup();
        if matches!(event, watcher::Event::InitDone) {
            // A (re)list: every owner it names gets looked at, paced behind real changes.
            found.append(&mut listed);
            triggers.pass(found);
        } else {
            found.into_iter().for_each(|owner| triggers.send(owner));
        }
    }
}

/// Drops what no reconcile reads before an object enters a cache: the field-manager bookkeeping and the copy of
/// the whole object `kubectl apply` keeps in an annotation. Both are large and grow with every cached object.
pub fn lean<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// The annotation in which `kubectl apply` keeps the object as last applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Waits until every cache has its first full list.
pub async fn synced(stores: &Stores) {
    stores.namespaces.ready().await;
    stores.network_policies.ready().await;
    stores.resource_quotas.ready().await;
    stores.limit_ranges.ready().await;
    stores.service_accounts.ready().await;
    stores.deployments.ready().await;
    stores.services.ready().await;
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
    fn only_a_change_beside_the_status_counts_for_a_kind_whose_status_is_ignored() {
        use k8s_openapi::api::core::v1::{ResourceQuotaSpec, ResourceQuotaStatus};
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let quota = |version: &str, pods: &str, used: Option<&str>| ResourceQuota {
            metadata: ObjectMeta {
                name: Some("quota".into()),
                namespace: Some("bulkhead-acme".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ResourceQuotaSpec {
                hard: Some(BTreeMap::from([("pods".to_owned(), Quantity(pods.into()))])),
                ..ResourceQuotaSpec::default()
            }),
            status: used.map(|used| ResourceQuotaStatus {
                used: Some(BTreeMap::from([("pods".to_owned(), Quantity(used.into()))])),
                ..ResourceQuotaStatus::default()
            }),
        };
        // The controller-manager counting usage: a new version, a new status, nothing else.
        assert!(same_but_status(
            &quota("1", "10", None),
            &quota("2", "10", Some("0"))
        ));
        assert!(same_but_status(
            &quota("2", "10", Some("0")),
            &quota("3", "10", Some("4"))
        ));
        // Someone raising the limit.
        assert!(!same_but_status(
            &quota("3", "10", Some("4")),
            &quota("4", "100", Some("4"))
        ));
        let mut relabelled = quota("5", "10", Some("4"));
        relabelled.metadata.labels = Some(map(&[("app.kubernetes.io/managed-by", "someone")]));
        assert!(!same_but_status(&quota("4", "10", Some("4")), &relabelled));
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
