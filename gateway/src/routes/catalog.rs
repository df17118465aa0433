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
    /// Org → every resource claiming it (almost always one: a list, not a set, saves a table per org).
    claims: HashMap<String, Vec<Claimant>>,
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

    /// The catalog of these resources, as the first list of each kind leaves it: synced.
    pub fn from_lists(
        resolver: UpstreamResolver,
        tenants: impl IntoIterator<Item = Tenant>,
        customers: impl IntoIterator<Item = Customer>,
    ) -> Catalog {
        let mut catalog = Catalog::new(resolver);
        catalog.tenant_event(Event::Init);
        for t in tenants {
            catalog.tenant_event(Event::InitApply(t));
        }
        catalog.tenant_event(Event::InitDone);
        catalog.customer_event(Event::Init);
        for c in customers {
            catalog.customer_event(Event::InitApply(c));
        }
        catalog.customer_event(Event::InitDone);
        catalog
    }

    /// Applies one Tenant watch event; true if the table changed.
    pub fn tenant_event(&mut self, event: Event<Tenant>) -> bool {
        match Step::of(event, TenantRecord::of, &mut self.relisting_tenants) {
            Step::Set(name, record) => self.set_tenant(name, record),
            Step::Listed(records) => {
                self.tenants = records;
                self.tenants_listed = true;
                self.rebuild();
                true
            }
            Step::Relisting => false,
        }
    }

    /// Applies one Customer watch event; true if the table changed.
    pub fn customer_event(&mut self, event: Event<Customer>) -> bool {
        match Step::of(event, CustomerRecord::of, &mut self.relisting_customers) {
            Step::Set(name, record) => self.set_customer(name, record),
            Step::Listed(records) => {
                self.customers = records;
                self.customers_listed = true;
                self.rebuild();
                true
            }
            Step::Relisting => false,
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
            claim(&mut self.claims, &record.org, claimant);
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
            claim(&mut self.claims, &record.org, claimant);
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
        let mut claims: HashMap<String, Vec<Claimant>> = HashMap::new();
        let mut customers_of: HashMap<String, HashSet<String>> = HashMap::new();
        for t in self.tenants.values() {
            claim(&mut claims, &t.org, Claimant::Tenant(t.name.clone()));
        }
        for c in self.customers.values() {
            claim(&mut claims, &c.org, Claimant::Customer(c.name.clone()));
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

/// What one watch event of either kind asks of the catalog.
enum Step<R> {
    /// Replace (or with `None` remove) one resource's record.
    Set(String, Option<R>),
    /// A relist ended: these are all the records of the kind.
    Listed(HashMap<String, R>),
    /// A relist started or went on (its records are gathered in the catalog's `relisting_*`).
    Relisting,
}

impl<R> Step<R> {
    /// The step of `event`, gathering a relist's records in `relisting`.
    fn of<K: ResourceExt>(
        event: Event<K>,
        record: fn(&K) -> R,
        relisting: &mut Option<HashMap<String, R>>,
    ) -> Step<R> {
        match event {
            Event::Apply(object) => Step::Set(object.name_any(), Some(record(&object))),
            Event::Delete(object) => Step::Set(object.name_any(), None),
            Event::Init => {
                *relisting = Some(HashMap::new());
                Step::Relisting
            }
            Event::InitApply(object) => {
                relisting
                    .get_or_insert_with(HashMap::new)
                    .insert(object.name_any(), record(&object));
                Step::Relisting
            }
            Event::InitDone => Step::Listed(relisting.take().unwrap_or_default()),
        }
    }
}

/// Adds `claimant` to `org`'s claimants.
fn claim(claims: &mut HashMap<String, Vec<Claimant>>, org: &str, claimant: Claimant) {
    match claims.get_mut(org) {
        Some(claimants) if claimants.contains(&claimant) => {}
        Some(claimants) => claimants.push(claimant),
        None => {
            claims.insert(org.to_owned(), vec![claimant]);
        }
    }
}

/// Removes `claimant` from `org`'s claimants, and the org once nobody claims it.
fn unclaim(claims: &mut HashMap<String, Vec<Claimant>>, org: &str, claimant: &Claimant) {
    if let Some(set) = claims.get_mut(org) {
        set.retain(|c| c != claimant);
        if set.is_empty() {
            claims.remove(org);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::routes::tests::{condition, customer, resolver, tenant};
    use crate::routes::{RouteError, SHARDS, shard_of};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    /// xorshift64*: a fixed, dependency-free pseudo-random sequence.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A Tenant in one of the states routing tells apart: ready (most often), not ready, Routable=False, in a
    /// foreign namespace, being deleted, without status, with no valid port.
    fn tenant_as(name: &str, org: &str, state: usize) -> Tenant {
        let mut t = tenant(name, org, state != 3);
        match state {
            4 => t.status.as_mut().unwrap().conditions[1] = condition("Routable", false, "StackNotReady"),
            5 => t.status.as_mut().unwrap().namespace = Some("kube-system".into()),
            6 => t.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).unwrap())),
            7 => t.status = None,
            8 => t.spec.stack.port = 0,
            _ => {}
        }
        t
    }

    /// A Customer in one of the states routing tells apart, including an own stack port (valid or not).
    fn customer_as(tenant_ref: &str, name: &str, org: &str, state: usize) -> Customer {
        let port = match state {
            8 => Some(9000),
            9 => Some(0),
            _ => None,
        };
        let mut c = customer(tenant_ref, name, org, state != 3, port);
        match state {
            4 => c.status.as_mut().unwrap().conditions[1] = condition("Routable", false, "StackNotReady"),
            5 => c.status.as_mut().unwrap().namespace = Some("bk-other".into()),
            6 => c.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).unwrap())),
            7 => c.status = None,
            _ => {}
        }
        c
    }

    fn relist_tenants(catalog: &mut Catalog, tenants: &[Option<Tenant>]) -> bool {
        catalog.tenant_event(Event::Init);
        for t in tenants.iter().flatten() {
            catalog.tenant_event(Event::InitApply(t.clone()));
        }
        catalog.tenant_event(Event::InitDone)
    }

    fn relist_customers(catalog: &mut Catalog, customers: &[Option<Customer>]) -> bool {
        catalog.customer_event(Event::Init);
        for c in customers.iter().flatten() {
            catalog.customer_event(Event::InitApply(c.clone()));
        }
        catalog.customer_event(Event::InitDone)
    }

    /// The incremental table equals a full build over the same objects, org by org and as a whole.
    fn assert_same(
        step: usize,
        table: &RouteTable,
        tenants: &[Option<Tenant>],
        customers: &[Option<Customer>],
        orgs: &BTreeSet<String>,
    ) {
        let t: Vec<Tenant> = tenants.iter().flatten().cloned().collect();
        let c: Vec<Customer> = customers.iter().flatten().cloned().collect();
        let built = RouteTable::build(&t, &c, &resolver());
        for org in orgs {
            assert_eq!(table.lookup(org), built.lookup(org), "step {step}, {org}");
        }
        assert_eq!(table.routable(), built.routable(), "step {step}");
        assert_eq!(
            table.routable(),
            table.routes().count(),
            "step {step}: kept count"
        );
        assert_eq!(table.conflicts(), built.conflicts(), "step {step}");
        assert_eq!(table, &built, "step {step}");
    }

    #[test]
    fn every_change_gives_the_table_a_full_build_gives() {
        const TENANTS: usize = 50;
        const CUSTOMERS: usize = 100;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut tenants: Vec<Option<Tenant>> = vec![None; TENANTS];
        let mut customers: Vec<Option<Customer>> = vec![None; CUSTOMERS];
        let mut orgs: BTreeSet<String> = BTreeSet::new();
        let (mut seen_conflict, mut seen_customer_route, mut seen_customer_cut) = (false, false, false);

        // A first population, listed before any change.
        for (i, slot) in tenants.iter_mut().enumerate().take(30) {
            *slot = Some(tenant_as(&format!("t{i}"), &format!("org_t{i}"), rng.below(9)));
        }
        for (i, slot) in customers.iter_mut().enumerate().take(60) {
            let tenant_ref = format!("t{}", rng.below(TENANTS + 5));
            *slot = Some(customer_as(
                &tenant_ref,
                &format!("c{i}"),
                &format!("org_c{i}"),
                rng.below(10),
            ));
        }
        let mut catalog = Catalog::new(resolver());
        assert!(relist_tenants(&mut catalog, &tenants));
        assert!(!catalog.is_synced(), "Customers have not listed yet");
        assert!(relist_customers(&mut catalog, &customers));
        assert!(catalog.is_synced());
        let all_orgs = |tenants: &[Option<Tenant>], customers: &[Option<Customer>]| -> Vec<String> {
            tenants
                .iter()
                .flatten()
                .map(|t| t.spec.org_id.clone())
                .chain(customers.iter().flatten().map(|c| c.spec.org_id.clone()))
                .collect()
        };
        orgs.extend(all_orgs(&tenants, &customers));
        assert_same(0, catalog.table(), &tenants, &customers, &orgs);

        for step in 1..=600 {
            let before = catalog.table().clone();
            let existing = all_orgs(&tenants, &customers);
            let other_org = |rng: &mut Rng| existing[rng.below(existing.len().max(1))].clone();
            let roll = rng.below(100);
            let changed = if roll < 3 {
                // A relist that missed a deletion and a change while the watch was down.
                let i = rng.below(TENANTS);
                tenants[i] = None;
                let j = rng.below(TENANTS);
                if tenants[j].is_some() {
                    tenants[j] = Some(tenant_as(&format!("t{j}"), &format!("org_r{step}"), rng.below(9)));
                }
                relist_tenants(&mut catalog, &tenants)
            } else if roll < 6 {
                customers[rng.below(CUSTOMERS)] = None;
                relist_customers(&mut catalog, &customers)
            } else if roll < 50 {
                let i = rng.below(TENANTS);
                let name = format!("t{i}");
                match (&tenants[i], rng.below(6)) {
                    (None, _) => {
                        let t = tenant_as(&name, &format!("org_t{i}_{step}"), rng.below(9));
                        tenants[i] = Some(t.clone());
                        catalog.tenant_event(Event::Apply(t))
                    }
                    (Some(t), 0) => {
                        // Becomes ready, not ready, unroutable, ...
                        let t = tenant_as(&name, &t.spec.org_id, rng.below(9));
                        tenants[i] = Some(t.clone());
                        catalog.tenant_event(Event::Apply(t))
                    }
                    (Some(_), 1) => {
                        let t = tenant_as(&name, &format!("org_s{}", rng.below(30)), rng.below(3));
                        tenants[i] = Some(t.clone());
                        catalog.tenant_event(Event::Apply(t))
                    }
                    (Some(_), 2) => {
                        // Takes another resource's org.
                        let t = tenant_as(&name, &other_org(&mut rng), rng.below(9));
                        tenants[i] = Some(t.clone());
                        catalog.tenant_event(Event::Apply(t))
                    }
                    (Some(t), 3) => {
                        let gone = t.clone();
                        tenants[i] = None;
                        catalog.tenant_event(Event::Delete(gone))
                    }
                    (Some(t), 4) => {
                        // Deleted, then made again under another org.
                        let gone = t.clone();
                        let mut changed = catalog.tenant_event(Event::Delete(gone));
                        let t = tenant_as(&name, &format!("org_t{i}_{step}"), rng.below(9));
                        tenants[i] = Some(t.clone());
                        changed |= catalog.tenant_event(Event::Apply(t));
                        changed
                    }
                    (Some(t), _) => {
                        // The same Tenant again: nothing routing needs has changed.
                        let t = t.clone();
                        catalog.tenant_event(Event::Apply(t))
                    }
                }
            } else {
                let i = rng.below(CUSTOMERS);
                let name = format!("c{i}");
                let tenant_ref = format!("t{}", rng.below(TENANTS + 5));
                match (&customers[i], rng.below(5)) {
                    (None, _) => {
                        let c = customer_as(&tenant_ref, &name, &format!("org_c{i}_{step}"), rng.below(10));
                        customers[i] = Some(c.clone());
                        catalog.customer_event(Event::Apply(c))
                    }
                    (Some(c), 0) => {
                        let c = customer_as(&c.spec.tenant_ref, &name, &c.spec.org_id, rng.below(10));
                        customers[i] = Some(c.clone());
                        catalog.customer_event(Event::Apply(c))
                    }
                    (Some(c), 1) => {
                        let c = customer_as(&c.spec.tenant_ref, &name, &other_org(&mut rng), rng.below(10));
                        customers[i] = Some(c.clone());
                        catalog.customer_event(Event::Apply(c))
                    }
                    (Some(c), 2) => {
                        let gone = c.clone();
                        customers[i] = None;
                        catalog.customer_event(Event::Delete(gone))
                    }
                    (Some(c), 3) => {
                        let gone = c.clone();
                        let mut changed = catalog.customer_event(Event::Delete(gone));
                        let c = customer_as(&tenant_ref, &name, &format!("org_c{i}_{step}"), rng.below(10));
                        customers[i] = Some(c.clone());
                        changed |= catalog.customer_event(Event::Apply(c));
                        changed
                    }
                    (Some(c), _) => {
                        // Moves to another Tenant.
                        let c = customer_as(&tenant_ref, &name, &c.spec.org_id, rng.below(3));
                        customers[i] = Some(c.clone());
                        catalog.customer_event(Event::Apply(c))
                    }
                }
            };
            orgs.extend(all_orgs(&tenants, &customers));
            assert_same(step, catalog.table(), &tenants, &customers, &orgs);
            if !changed {
                assert_eq!(catalog.table(), &before, "step {step}: reported unchanged");
            }
            let table = catalog.table();
            seen_conflict |= !table.conflicts().is_empty();
            seen_customer_route |= table.routes().any(|r| r.customer.is_some());
            // A Customer that routed before this step and no longer does although it still exists.
            seen_customer_cut |= before.routes().any(|r| {
                r.customer.is_some()
                    && table.lookup(&r.org) == Err(RouteError::NoRoute)
                    && customers.iter().flatten().any(|c| c.spec.org_id == r.org)
            });
        }
        assert!(
            seen_conflict && seen_customer_route && seen_customer_cut,
            "the sequence exercises the rules"
        );
    }

    /// The shards holding `orgs`.
    fn shards_of(orgs: &[&str]) -> BTreeSet<usize> {
        orgs.iter().map(|org| shard_of(org)).collect()
    }

    /// Asserts that `next` shares with `prev` exactly the shards not in `touched`.
    fn assert_shares_all_but(prev: &RouteTable, next: &RouteTable, touched: &BTreeSet<usize>) {
        assert_eq!(next.shards.len(), SHARDS);
        for (i, (a, b)) in prev.shards.iter().zip(&next.shards).enumerate() {
            assert_eq!(!Arc::ptr_eq(a, b), touched.contains(&i), "shard {i}");
        }
    }

    #[test]
    fn a_change_copies_only_the_shards_of_the_orgs_it_touches() {
        let tenants: Vec<Tenant> = (0..1200)
            .map(|i| tenant(&format!("t{i}"), &format!("org_t{i}"), true))
            .collect();
        let customers: Vec<Customer> = (0..1200)
            .map(|i| {
                customer(
                    &format!("t{i}"),
                    &format!("c{i}"),
                    &format!("org_c{i}"),
                    true,
                    None,
                )
            })
            .chain([
                customer("t7", "dental", "org_dental", true, None),
                customer("t7", "vet", "org_vet", true, Some(9000)),
            ])
            .collect();
        let mut catalog = Catalog::from_lists(resolver(), tenants, customers);
        assert_eq!(catalog.table().routable(), 2402);
        assert_eq!(
            catalog.table().lookup("org_vet").unwrap().upstream,
            "stack.bk-t7-vet.svc:9000"
        );

        // Tenant t7 stops being Ready: its own route and its three Customers' go, and nothing else moves.
        let prev = catalog.table().clone();
        assert!(catalog.tenant_event(Event::Apply(tenant("t7", "org_t7", false))));
        let next = catalog.table().clone();
        let touched = shards_of(&["org_t7", "org_c7", "org_dental", "org_vet"]);
        assert!(touched.len() < SHARDS / 8);
        assert_shares_all_but(&prev, &next, &touched);
        for org in ["org_t7", "org_c7", "org_dental", "org_vet"] {
            assert_eq!(next.lookup(org), Err(RouteError::NoRoute), "{org}");
        }
        assert_eq!(next.lookup("org_t8").unwrap().tenant, "t8");
        assert_eq!(next.routable(), 2398);

        // Ready again under a new org: the old org's shard, the new one's and the Customers' are copied.
        let prev = next;
        assert!(catalog.tenant_event(Event::Apply(tenant("t7", "org_new", true))));
        let next = catalog.table().clone();
        assert_shares_all_but(
            &prev,
            &next,
            &shards_of(&["org_new", "org_c7", "org_dental", "org_vet"]),
        );
        assert_eq!(next.lookup("org_new").unwrap().tenant, "t7");
        assert_eq!(
            next.lookup("org_dental").unwrap().customer.as_deref(),
            Some("dental")
        );
        assert_eq!(next.routable(), 2402);

        // A Customer takes a Tenant's org: only those two orgs' shards are copied, and the org is a conflict.
        let prev = next;
        assert!(catalog.customer_event(Event::Apply(customer("t7", "vet", "org_t9", true, None))));
        let next = catalog.table().clone();
        assert_shares_all_but(&prev, &next, &shards_of(&["org_vet", "org_t9"]));
        assert_eq!(next.lookup("org_t9"), Err(RouteError::Conflict));
        assert_eq!(next.lookup("org_vet"), Err(RouteError::NoRoute));
        assert_eq!(next.conflicts(), vec!["org_t9"]);

        // A change routing does not read (a status message) copies nothing and publishes nothing.
        let prev = next;
        let mut t = tenant("t3", "org_t3", true);
        t.status.as_mut().unwrap().conditions[0].message = "all good".into();
        assert!(!catalog.tenant_event(Event::Apply(t)));
        assert_shares_all_but(&prev, catalog.table(), &BTreeSet::new());

        // Deleting a Tenant removes its route and cuts its Customers.
        assert!(catalog.tenant_event(Event::Delete(tenant("t4", "org_t4", true))));
        assert_eq!(catalog.table().lookup("org_t4"), Err(RouteError::NoRoute));
        assert_eq!(catalog.table().lookup("org_c4"), Err(RouteError::NoRoute));
    }

    #[test]
    fn nothing_is_synced_until_both_kinds_have_listed() {
        let mut catalog = Catalog::new(resolver());
        assert!(!catalog.customer_event(Event::Apply(customer("acme", "d", "org_d", true, None))));
        assert!(catalog.customer_event(Event::InitDone));
        assert!(!catalog.is_synced());
        catalog.tenant_event(Event::Init);
        catalog.tenant_event(Event::InitApply(tenant("acme", "org_a", true)));
        assert!(catalog.tenant_event(Event::InitDone));
        assert!(catalog.is_synced());
        // The relist of Customers replaced the earlier record wholesale: it listed none.
        assert_eq!(catalog.table().lookup("org_d"), Err(RouteError::NoRoute));
        assert_eq!(catalog.table().routable(), 1);
    }
}
