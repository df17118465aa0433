//! Lookups across the cached Tenants and Customers that would otherwise scan every one of them: who claims an
//! org id, and which Customers a Tenant has. Each reconcile asks these questions, so at thousands of resources a
//! scan per reconcile makes a full pass quadratic. The indexes follow the resource watches, lists included.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use kube::ResourceExt;
use kube::runtime::watcher;

use crate::cluster::observe::Owner;

/// The indexes over the resources, shared by the watches that fill them and the reconciles that read them. One
/// index per watch, so that a relist of one kind replaces only what that kind put in.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// Org id → the names of the Tenants claiming it (those not being deleted).
    tenant_orgs: Index<String>,
    /// Org id → the names of the Customers claiming it (those not being deleted).
    customer_orgs: Index<String>,
    /// Tenant name → the names of the Customers that name it.
    customers_of: Index<String>,
}

impl Resources {
    /// Follows one event of the Tenant watch.
    pub fn tenant_event(&self, event: &watcher::Event<Tenant>) {
        self.tenant_orgs
            .follow(event, |t| (t.name_any(), claim(t, &t.spec.org_id)));
    }

    /// Follows one event of the Customer watch.
    pub fn customer_event(&self, event: &watcher::Event<Customer>) {
        self.customer_orgs
            .follow(event, |c| (c.name_any(), claim(c, &c.spec.org_id)));
        self.customers_of
            .follow(event, |c| (c.name_any(), Some(c.spec.tenant_ref.clone())));
    }

    /// The Tenants and Customers claiming `org`, Tenants first, each by name.
    pub fn claims(&self, org: &str) -> Vec<Owner> {
        let tenants = self.tenant_orgs.get(org).into_iter().map(Owner::Tenant);
        let customers = self.customer_orgs.get(org).into_iter().map(Owner::Customer);
        tenants.chain(customers).collect()
    }

    /// The names of the Customers that name `tenant`, including those being deleted.
    pub fn customers_of(&self, tenant: &str) -> Vec<String> {
        self.customers_of.get(tenant)
    }
}

/// The org id a resource claims: none while it is being deleted.
fn claim<K: kube::Resource>(object: &K, org: &str) -> Option<String> {
    object.meta().deletion_timestamp.is_none().then(|| org.to_owned())
}

/// Values by key, where each value sits under at most one key (an object under the one key it names now).
#[derive(Debug)]
pub struct Index<V>(Arc<RwLock<Entries<V>>>);

impl<V> Clone for Index<V> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<V> Default for Index<V> {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(Entries {
            by_key: HashMap::new(),
            key_of: HashMap::new(),
            listing: None,
        })))
    }
}

#[derive(Debug)]
struct Entries<V> {
    by_key: HashMap<String, BTreeSet<V>>,
    key_of: HashMap<V, String>,
    /// What a list in progress has seen; it replaces everything once the list is complete.
    listing: Option<Vec<(V, String)>>,
}

impl<V: Clone + Ord + Hash> Index<V> {
    fn entries(&self) -> std::sync::RwLockWriteGuard<'_, Entries<V>> {
        // Every change is one whole step, so the entries are consistent even after a panic elsewhere.
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The values under `key`, in order.
    pub fn get(&self, key: &str) -> Vec<V> {
        let entries = self.0.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .by_key
            .get(key)
            .map(|values| values.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Puts `value` under `key`, moving it from any other key; `None` takes it out.
    pub fn set(&self, value: V, key: Option<String>) {
        self.entries().set(value, key);
    }

    /// Follows a watch: `entry` says which value an object is and under which key it belongs, if any.
    pub fn follow<K>(&self, event: &watcher::Event<K>, entry: impl Fn(&K) -> (V, Option<String>)) {
        let mut entries = self.entries();
        match event {
            watcher::Event::Apply(object) => {
                let (value, key) = entry(object);
                entries.set(value, key);
            }
            watcher::Event::Delete(object) => entries.set(entry(object).0, None),
            watcher::Event::Init => entries.listing = Some(Vec::new()),
            watcher::Event::InitApply(object) => {
                if let (value, Some(key)) = entry(object) {
                    entries.listing.get_or_insert_with(Vec::new).push((value, key));
                }
            }
            watcher::Event::InitDone => {
                let listed = entries.listing.take().unwrap_or_default();
                entries.by_key.clear();
                entries.key_of.clear();
                for (value, key) in listed {
                    entries.set(value, Some(key));
                }
            }
        }
    }
}

impl<V: Clone + Ord + Hash> Entries<V> {
    fn set(&mut self, value: V, key: Option<String>) {
        if let Some(old) = self.key_of.remove(&value)
            && let Some(values) = self.by_key.get_mut(&old)
        {
            values.remove(&value);
            if values.is_empty() {
                self.by_key.remove(&old);
            }
        }
        if let Some(key) = key {
            self.by_key.entry(key.clone()).or_default().insert(value.clone());
            self.key_of.insert(value, key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::verify::sample;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn tenant(name: &str, org: &str) -> Tenant {
        let mut t = sample::tenant(name, false).unwrap();
        t.spec.org_id = org.into();
        t
    }

    fn customer(name: &str, tenant: &str, org: &str) -> Customer {
        let mut c = sample::customer(name, tenant).unwrap();
        c.spec.org_id = org.into();
        c
    }

    fn deleting<K: kube::Resource>(mut object: K) -> K {
        let meta: &mut ObjectMeta = object.meta_mut();
        meta.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        object
    }

    fn t(name: &str) -> Owner {
        Owner::Tenant(name.into())
    }

    fn c(name: &str) -> Owner {
        Owner::Customer(name.into())
    }

    #[test]
    fn an_org_lists_every_claim_and_follows_changes() {
        let index = Resources::default();
        index.tenant_event(&watcher::Event::Apply(tenant("acme", "org_1")));
        index.customer_event(&watcher::Event::Apply(customer("dental", "acme", "org_1")));
        index.tenant_event(&watcher::Event::Apply(tenant("globex", "org_2")));
        assert_eq!(index.claims("org_1"), [t("acme"), c("dental")]);
        assert_eq!(index.claims("org_2"), [t("globex")]);
        // A changed org moves the claim; nothing stays behind under the old one.
        index.tenant_event(&watcher::Event::Apply(tenant("globex", "org_3")));
        assert!(index.claims("org_2").is_empty());
        assert_eq!(index.claims("org_3"), [t("globex")]);
        // A resource being deleted claims nothing; a deleted one is gone.
        index.tenant_event(&watcher::Event::Apply(deleting(tenant("acme", "org_1"))));
        assert_eq!(index.claims("org_1"), [c("dental")]);
        index.customer_event(&watcher::Event::Delete(customer("dental", "acme", "org_1")));
        assert!(index.claims("org_1").is_empty());
        assert_eq!(index.customer_orgs.0.read().unwrap().key_of.len(), 0);
        assert_eq!(index.tenant_orgs.0.read().unwrap().key_of.len(), 1);
    }

    #[test]
    fn a_tenant_lists_its_customers() {
        let index = Resources::default();
        index.customer_event(&watcher::Event::Apply(customer("dental", "acme", "org_1")));
        index.customer_event(&watcher::Event::Apply(customer("clinic", "acme", "org_2")));
        index.customer_event(&watcher::Event::Apply(customer("shop", "globex", "org_3")));
        assert_eq!(index.customers_of("acme"), ["clinic", "dental"]);
        assert_eq!(index.customers_of("globex"), ["shop"]);
        assert!(index.customers_of("initech").is_empty());
        // A Customer being deleted still waits on its Tenant.
        index.customer_event(&watcher::Event::Apply(deleting(customer(
            "dental", "acme", "org_1",
        ))));
        assert_eq!(index.customers_of("acme"), ["clinic", "dental"]);
        index.customer_event(&watcher::Event::Delete(customer("dental", "acme", "org_1")));
        assert_eq!(index.customers_of("acme"), ["clinic"]);
    }

    #[test]
    fn a_relist_replaces_everything_once_complete() {
        let index = Resources::default();
        index.tenant_event(&watcher::Event::Apply(tenant("acme", "org_1")));
        index.tenant_event(&watcher::Event::Apply(tenant("globex", "org_2")));
        index.customer_event(&watcher::Event::Apply(customer("dental", "acme", "org_1")));
        index.tenant_event(&watcher::Event::Init);
        index.tenant_event(&watcher::Event::InitApply(tenant("globex", "org_2")));
        index.tenant_event(&watcher::Event::InitApply(deleting(tenant("initech", "org_4"))));
        // Until the list is complete the old entries answer.
        assert_eq!(index.claims("org_1"), [t("acme"), c("dental")]);
        index.tenant_event(&watcher::Event::InitDone);
        // acme was deleted while the watch was down; initech is being deleted. Customers' claims stay.
        assert_eq!(index.claims("org_1"), [c("dental")]);
        assert!(index.claims("org_4").is_empty());
        assert_eq!(index.claims("org_2"), [t("globex")]);
    }
}
