//! What routing needs of each Tenant and Customer, indexed by org and by Tenant, and the route table kept up to
//! date from it one change at a time.
//!
//! A Tenant change recomputes the entries of its old org, its new org and its Customers' orgs; a Customer change
//! those of its old and new org. Only entries that differ are written, so the next table copies only the shards
//! holding them. A relist of one kind replaces that kind's records and rebuilds the whole table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bulkhead_crds::naming;
use bulkhead_crds::v1alpha1::{Customer, Tenant};
use kube::ResourceExt;
use kube::runtime::watcher::Event;

use super::{Entry, Route, RouteTable, UpstreamResolver, port, routable};

/// What routing needs of a Tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// The Tenant's name.
    pub name: String,
    /// `spec.orgId`.
    pub org: String,
    /// Ready, not Routable=False, not being deleted, in the namespace the naming rules give.
    pub routable: bool,
    /// `spec.stack.port`, as written.
    pub port: i32,
    /// The namespace the naming rules give.
    pub namespace: String,
}

impl TenantRecord {
    /// The record of `tenant`.
    pub fn of(tenant: &Tenant) -> TenantRecord {
        let name = tenant.name_any();
        let namespace = naming::tenant_namespace(&name);
        TenantRecord {
            routable: routable(
                tenant.status.as_ref(),
                tenant.metadata.deletion_timestamp.is_some(),
                &namespace,
            ),
            org: tenant.spec.org_id.clone(),
            port: tenant.spec.stack.port,
            namespace,
            name,
        }
    }
}

/// What routing needs of a Customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    /// The Customer's name.
    pub name: String,
    /// `spec.orgId`.
    pub org: String,
    /// `spec.tenantRef`.
    pub tenant_ref: String,
    /// Ready, not Routable=False, not being deleted, in the namespace the naming rules give.
    pub routable: bool,
    /// The port of its own stack, if it has one (else its Tenant's stack port applies).
    pub port: Option<i32>,
    /// The namespace the naming rules give.
    pub namespace: String,
}

impl CustomerRecord {
    /// The record of `customer`.
    pub fn of(customer: &Customer) -> CustomerRecord {
        let name = customer.name_any();
        let namespace = naming::customer_namespace(&customer.spec.tenant_ref, &name);
        CustomerRecord {
            routable: routable(
                customer.status.as_ref(),
                customer.metadata.deletion_timestamp.is_some(),
                &namespace,
            ),
            org: customer.spec.org_id.clone(),
            tenant_ref: customer.spec.tenant_ref.clone(),
            port: customer.spec.stack.as_ref().map(|s| s.port),
            namespace,
            name,
        }
    }
}

/// A resource claiming an org, by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Claimant {
    Tenant(String),
    Customer(String),
}

/// The records of every Tenant and Customer, their indexes, and the route table they give.
#[derive(Debug)]
pub struct Catalog {
    resolver: UpstreamResolver,
    tenants: HashMap<String, TenantRecord>,
    customers: HashMap<String, CustomerRecord>,
    /// Org → every resource claiming it.
    claims: HashMap<String, HashSet<Claimant>>,
    /// Tenant name → the Customers naming it.
    customers_of: HashMap<String, HashSet<String>>,
    /// Tenants seen so far in a relist.
    relisting_tenants: Option<HashMap<String, TenantRecord>>,
    /// Customers seen so far in a relist.
    relisting_customers: Option<HashMap<String, CustomerRecord>>,
    tenants_listed: bool,
    customers_listed: bool,
    table: RouteTable,
}

impl Catalog {
    /// An empty catalog; not synced until both kinds have listed.
    pub fn new(resolver: UpstreamResolver) -> Catalog {
        Catalog {
            resolver,
            tenants: HashMap::new(),
            customers: HashMap::new(),
            claims: HashMap::new(),
            customers_of: HashMap::new(),
            relisting_tenants: None,
            relisting_customers: None,
            tenants_listed: false,
            customers_listed: false,
            table: RouteTable::default(),
        }
    }

    /// Whether both kinds have listed, so the table stands for the cluster.
    pub fn is_synced(&self) -> bool {
        self.tenants_listed && self.customers_listed
    }

    /// The current table.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// Applies one Tenant watch event; true if the table changed.
    pub fn tenant_event(&mut self, event: Event<Tenant>) -> bool {
        match event {
            Event::Apply(t) => self.set_tenant(t.name_any(), Some(TenantRecord::of(&t))),
            Event::Delete(t) => self.set_tenant(t.name_any(), None),
            Event::Init => {
                self.relisting_tenants = Some(HashMap::new());
                false
            }
            Event::InitApply(t) => {
                let record = TenantRecord::of(&t);
                self.relisting_tenants
                    .get_or_insert_with(HashMap::new)
                    .insert(record.name.clone(), record);
                false
            }
            Event::InitDone => {
                self.tenants = self.relisting_tenants.take().unwrap_or_default();
                self.tenants_listed = true;
                self.rebuild();
                true
            }
        }
    }

    /// Applies one Customer watch event; true if the table changed.
    pub fn customer_event(&mut self, event: Event<Customer>) -> bool {
        match event {
            Event::Apply(c) => self.set_customer(c.name_any(), Some(CustomerRecord::of(&c))),
            Event::Delete(c) => self.set_customer(c.name_any(), None),
            Event::Init => {
                self.relisting_customers = Some(HashMap::new());
                false
            }
            Event::InitApply(c) => {
                let record = CustomerRecord::of(&c);
                self.relisting_customers
                    .get_or_insert_with(HashMap::new)
                    .insert(record.name.clone(), record);
                false
            }
            Event::InitDone => {
                self.customers = self.relisting_customers.take().unwrap_or_default();
                self.customers_listed = true;
                self.rebuild();
                true
            }
        }
    }

    /// Replaces (or with `None` removes) the Tenant `name`; true if the table changed.
    fn set_tenant(&mut self, name: String, record: Option<TenantRecord>) -> bool {
        let old = match &record {
            Some(record) => self.tenants.insert(name.clone(), record.clone()),
            None => self.tenants.remove(&name),
        };
        if old == record {
            return false;
        }
        let claimant = Claimant::Tenant(name.clone());
        let mut orgs: Vec<String> = Vec::new();
        if let Some(old) = old {
            unclaim(&mut self.claims, &old.org, &claimant);
            orgs.push(old.org);
        }
        if let Some(record) = record {
            self.claims
                .entry(record.org.clone())
                .or_default()
                .insert(claimant);
            orgs.push(record.org);
        }
        if let Some(customers) = self.customers_of.get(&name) {
            orgs.extend(
                customers
                    .iter()
                    .filter_map(|c| self.customers.get(c))
                    .map(|c| c.org.clone()),
            );
        }
        self.recompute(orgs)
    }

    /// Replaces (or with `None` removes) the Customer `name`; true if the table changed.
    fn set_customer(&mut self, name: String, record: Option<CustomerRecord>) -> bool {
        let old = match &record {
            Some(record) => self.customers.insert(name.clone(), record.clone()),
            None => self.customers.remove(&name),
        };
        if old == record {
            return false;
        }
        let claimant = Claimant::Customer(name.clone());
        let mut orgs: Vec<String> = Vec::new();
        if let Some(old) = old {
            unclaim(&mut self.claims, &old.org, &claimant);
            if let Some(set) = self.customers_of.get_mut(&old.tenant_ref) {
                set.remove(&name);
                if set.is_empty() {
                    self.customers_of.remove(&old.tenant_ref);
                }
            }
            orgs.push(old.org);
        }
        if let Some(record) = record {
            self.claims
                .entry(record.org.clone())
                .or_default()
                .insert(claimant);
            self.customers_of
                .entry(record.tenant_ref.clone())
                .or_default()
                .insert(name);
            orgs.push(record.org);
        }
        self.recompute(orgs)
    }

    /// Writes the entries of `orgs` that differ from the table's; true if any did.
    fn recompute(&mut self, mut orgs: Vec<String>) -> bool {
        orgs.sort_unstable();
        orgs.dedup();
        let changes: Vec<(String, Option<Entry>)> = orgs
            .into_iter()
            .filter_map(|org| {
                let entry = self.entry_of(&org);
                (self.table.entry(&org) != entry.as_ref()).then_some((org, entry))
            })
            .collect();
        if changes.is_empty() {
            return false;
        }
        self.table = self.table.with_changes(changes);
        true
    }

    /// Rebuilds both indexes and the whole table from the records.
    fn rebuild(&mut self) {
        let mut claims: HashMap<String, HashSet<Claimant>> = HashMap::new();
        let mut customers_of: HashMap<String, HashSet<String>> = HashMap::new();
        for t in self.tenants.values() {
            claims
                .entry(t.org.clone())
                .or_default()
                .insert(Claimant::Tenant(t.name.clone()));
        }
        for c in self.customers.values() {
            claims
                .entry(c.org.clone())
                .or_default()
                .insert(Claimant::Customer(c.name.clone()));
            customers_of
                .entry(c.tenant_ref.clone())
                .or_default()
                .insert(c.name.clone());
        }
        self.claims = claims;
        self.customers_of = customers_of;
        let entries = self
            .claims
            .keys()
            .filter_map(|org| Some((org.clone(), self.entry_of(org)?)))
            .collect();
        self.table = RouteTable::from_entries(entries);
    }

    /// The entry `org` should have, by the same rules as [`RouteTable::build`].
    fn entry_of(&self, org: &str) -> Option<Entry> {
        let claimants = self.claims.get(org)?;
        if claimants.len() > 1 {
            return Some(Entry::Conflict);
        }
        let route = match claimants.iter().next()? {
            Claimant::Tenant(name) => {
                let t = self.tenants.get(name).filter(|t| t.routable)?;
                let port = port(t.port)?;
                Route::new(
                    org.to_owned(),
                    t.name.clone(),
                    None,
                    Some(t.namespace.clone()),
                    self.resolver.resolve(&t.namespace, port),
                )
            }
            Claimant::Customer(name) => {
                let c = self.customers.get(name).filter(|c| c.routable)?;
                let t = self.tenants.get(&c.tenant_ref).filter(|t| t.routable)?;
                let port = port(c.port.unwrap_or(t.port))?;
                Route::new(
                    org.to_owned(),
                    c.tenant_ref.clone(),
                    Some(c.name.clone()),
                    Some(c.namespace.clone()),
                    self.resolver.resolve(&c.namespace, port),
                )
            }
        };
        Some(Entry::Routable(Arc::new(route)))
    }
}

/// Removes `claimant` from `org`'s claimants, and the org once nobody claims it.
fn unclaim(claims: &mut HashMap<String, HashSet<Claimant>>, org: &str, claimant: &Claimant) {
    if let Some(set) = claims.get_mut(org) {
        set.remove(claimant);
        if set.is_empty() {
            claims.remove(org);
        }
    }
}
