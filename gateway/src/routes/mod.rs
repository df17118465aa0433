//! The route table: org id → the stack of the one Tenant or Customer that claims it.
//!
//! Built purely from Tenant and Customer resources: only resources that are Ready (and not Routable=False,
//! not being deleted) are routable; an org claimed by two resources is unroutable whatever their state; a
//! Customer routes to its own namespace and only while its Tenant is routable too. Snapshots are swapped
//! atomically, so a request sees one whole table.
//!
//! A table is split into a fixed number of shards by a hash of the org. The watch keeps a [`catalog::Catalog`]
//! of what routing needs from each resource and, on a change, recomputes only the orgs it touches: the next
//! snapshot copies the shards holding those orgs and shares every other shard with the previous one.

pub mod catalog;
pub mod fixtures;
pub mod watch;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bulkhead_crds::naming;
use bulkhead_crds::v1alpha1::{Customer, ResourceStatus, Tenant};
use http::StatusCode;
use http::header::HeaderValue;
use http::uri::Authority;
use kube::ResourceExt;
use serde::Deserialize;

use crate::denial::{Gate, GateError};
use crate::gates::org::{OrgShape, check_shape};

/// The Service every stack is exposed by, in its resource's namespace.
pub const STACK_SERVICE: &str = "stack";

/// Where the org's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The org id.
    pub org: String,
    /// The Tenant.
    pub tenant: String,
    /// The Customer, if the org is a Customer's.
    pub customer: Option<String>,
    /// The stack's namespace (none for static routes).
    pub namespace: Option<String>,
    /// The stack's `host:port`.
    pub upstream: String,
    /// What the request path needs of the route, made once when the table is built.
    pub made: Made,
}

/// A route's header values, upstream authority and pool key, made once per route table rather than on every
/// request. `None` where a value cannot be a header value or authority (never for a validated route: org ids
/// pass a shape check, names are DNS labels, upstreams parse as `host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// `x-bulkhead-org`.
    pub org: Option<HeaderValue>,
    /// `x-bulkhead-tenant`.
    pub tenant: Option<HeaderValue>,
    /// `x-bulkhead-customer`.
    pub customer: Option<HeaderValue>,
    /// `Host`.
    pub host: Option<HeaderValue>,
    /// The upstream as a URI authority.
    pub authority: Option<Authority>,
    /// The route's connection pool: one per Tenant, Customer and address.
    pub pool: String,
}

impl Route {
    /// A route, with its [`Made`] parts.
    pub fn new(
        org: String,
        tenant: String,
        customer: Option<String>,
        namespace: Option<String>,
        upstream: String,
    ) -> Route {
        let value = |s: &str| HeaderValue::from_str(s).ok();
        let made = Made {
            org: value(&org),
            tenant: value(&tenant),
            customer: customer.as_deref().and_then(value),
            host: value(&upstream),
            authority: upstream.parse().ok(),
            // Newlines appear in none of the three.
            pool: format!(
                "{tenant}\n{}\n{upstream}",
                customer.as_deref().unwrap_or_default()
            ),
        };
        Route {
            org,
            tenant,
            customer,
            namespace,
            upstream,
            made,
        }
    }
}

/// One org's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Exactly one routable resource claims the org.
    Routable(Arc<Route>),
    /// Several resources claim the org: nobody gets it.
    Conflict,
}

/// Why the route gate refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No routable resource claims the org.
    #[error("no route")]
    NoRoute,
    /// More than one resource claims the org.
    #[error("org claimed twice")]
    Conflict,
    /// The route table has not been filled yet.
    #[error("routes not synced")]
    NotSynced,
}

impl GateError for RouteError {
    const GATE: Gate = Gate::Route;

    fn reason(&self) -> &'static str {
        match self {
            RouteError::NoRoute => "no_route",
            RouteError::Conflict => "org_conflict",
            RouteError::NotSynced => "not_synced",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            RouteError::NotSynced => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// How a stack's namespace and port become an address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamResolver {
    /// DNS suffix: `stack.<namespace>.<suffix>:<port>`.
    pub suffix: String,
    /// Namespace → `host:port` overrides (tests, sandboxes without cluster DNS).
    pub overrides: HashMap<String, String>,
}

impl UpstreamResolver {
    /// The address of the stack in `namespace` listening on `port`.
    pub fn resolve(&self, namespace: &str, port: u16) -> String {
        match self.overrides.get(namespace) {
            Some(addr) => addr.clone(),
            None => format!("{STACK_SERVICE}.{namespace}.{}:{port}", self.suffix),
        }
    }
}

/// The number of shards of a [`RouteTable`].
pub const SHARDS: usize = 256;

/// One org's slot in a [`Shard`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    org: Box<str>,
    entry: Entry,
}

/// One shard: the entries of the orgs that hash to it, ordered by the orgs' hashes (then the orgs), with the
/// hashes in an array of their own. A lookup hashes the org once (the same hash chose the shard), binary-searches
/// that small array of integers, which takes a cache line or a few, and compares the org once: no second hash,
/// no probe sequence over scattered keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Shard {
    hashes: Vec<u64>,
    slots: Vec<Slot>,
}

impl Shard {
    /// Where `org` is (`Ok`), or where it would go (`Err`).
    fn position(&self, hash: u64, org: &str) -> Result<usize, usize> {
        let mut i = self.hashes.partition_point(|h| *h < hash);
        while self.hashes.get(i) == Some(&hash) {
            match self.slots.get(i).map(|s| (*s.org).cmp(org)) {
                Some(std::cmp::Ordering::Equal) => return Ok(i),
                Some(std::cmp::Ordering::Less) => i += 1,
                _ => break,
            }
        }
        Err(i)
    }

    fn get(&self, hash: u64, org: &str) -> Option<&Entry> {
        let i = self.position(hash, org).ok()?;
        self.slots.get(i).map(|s| &s.entry)
    }

    /// Sets `org`'s entry; the one it replaced, if any.
    fn insert(&mut self, hash: u64, org: String, entry: Entry) -> Option<Entry> {
        match self.position(hash, &org) {
            Ok(i) => self
                .slots
                .get_mut(i)
                .map(|s| std::mem::replace(&mut s.entry, entry)),
            Err(i) => {
                self.hashes.insert(i, hash);
                self.slots.insert(
                    i,
                    Slot {
                        org: org.into_boxed_str(),
                        entry,
                    },
                );
                None
            }
        }
    }

    /// Removes `org`'s entry; the one removed, if any.
    fn remove(&mut self, hash: u64, org: &str) -> Option<Entry> {
        let i = self.position(hash, org).ok()?;
        self.hashes.remove(i);
        Some(self.slots.remove(i).entry)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.slots.iter().map(|s| (&*s.org, &s.entry))
    }
}

/// The hash of `org`, which picks its shard (low bits) and orders it within the shard: eight bytes at a time
/// with a multiply and a rotation, then MurmurHash3's finalizer, so ids that differ only in their last
/// characters spread over every shard. Unkeyed: the orgs in a table are those of the cluster's own resources,
/// and an org a token names that is in no resource costs one binary search like any other.
fn hash_of(org: &str) -> u64 {
    let bytes = org.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut mix = |word: [u8; 8]| {
        hash = (hash ^ u64::from_le_bytes(word))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(31);
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        mix(word);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        mix(word);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    hash
}

/// The shard of the org with this hash.
fn shard_index(hash: u64) -> usize {
    (hash % SHARDS as u64) as usize
}

/// The shard of `org`.
#[cfg(test)]
fn shard_of(org: &str) -> usize {
    shard_index(hash_of(org))
}

/// A snapshot of every org's entry, in [`SHARDS`] shards shared between successive snapshots where unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    shards: Vec<Arc<Shard>>,
    /// The number of [`Entry::Routable`] entries.
    routable: usize,
}

impl Default for RouteTable {
    fn default() -> RouteTable {
        let empty = Arc::new(Shard::default());
        RouteTable {
            shards: vec![empty; SHARDS],
            routable: 0,
        }
    }
}

fn condition_true(status: Option<&ResourceStatus>, type_: &str) -> Option<bool> {
    let c = status?.conditions.iter().find(|c| c.type_ == type_)?;
    Some(c.status == "True")
}

/// Ready=True, Routable not False, not being deleted, and the namespace the naming rules give.
fn routable(status: Option<&ResourceStatus>, deleting: bool, expected_namespace: &str) -> bool {
    !deleting
        && condition_true(status, "Ready") == Some(true)
        && condition_true(status, "Routable") != Some(false)
        && status.and_then(|s| s.namespace.as_deref()) == Some(expected_namespace)
}

fn port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p > 0)
}

impl RouteTable {
    /// The table for these resources.
    pub fn build(tenants: &[Tenant], customers: &[Customer], resolver: &UpstreamResolver) -> RouteTable {
        let mut claims: HashMap<&str, usize> = HashMap::new();
        for org in tenants
            .iter()
            .map(|t| t.spec.org_id.as_str())
            .chain(customers.iter().map(|c| c.spec.org_id.as_str()))
        {
            *claims.entry(org).or_default() += 1;
        }
        let mut entries: HashMap<String, Entry> = claims
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(org, _)| ((*org).to_owned(), Entry::Conflict))
            .collect();
        let mut tenant_routes: HashMap<String, &Tenant> = HashMap::new();
        for t in tenants {
            let name = t.name_any();
            let namespace = naming::tenant_namespace(&name);
            if routable(
                t.status.as_ref(),
                t.metadata.deletion_timestamp.is_some(),
                &namespace,
            ) {
                tenant_routes.insert(name, t);
            }
        }
        for (name, t) in &tenant_routes {
            let org = &t.spec.org_id;
            if claims.get(org.as_str()) != Some(&1) {
                continue;
            }
            let Some(port) = port(t.spec.stack.port) else {
                continue;
            };
            let namespace = naming::tenant_namespace(name);
            entries.insert(
                org.clone(),
                Entry::Routable(Arc::new(Route::new(
                    org.clone(),
                    name.clone(),
                    None,
                    Some(namespace.clone()),
                    resolver.resolve(&namespace, port),
                ))),
            );
        }
        for c in customers {
            let org = &c.spec.org_id;
            if claims.get(org.as_str()) != Some(&1) {
                continue;
            }
            let Some(tenant) = tenant_routes.get(&c.spec.tenant_ref) else {
                continue;
            };
            let name = c.name_any();
            let namespace = naming::customer_namespace(&c.spec.tenant_ref, &name);
            if !routable(
                c.status.as_ref(),
                c.metadata.deletion_timestamp.is_some(),
                &namespace,
            ) {
                continue;
            }
            let stack_port = c.spec.stack.as_ref().unwrap_or(&tenant.spec.stack).port;
            let Some(port) = port(stack_port) else { continue };
            entries.insert(
                org.clone(),
                Entry::Routable(Arc::new(Route::new(
                    org.clone(),
                    c.spec.tenant_ref.clone(),
                    Some(name),
                    Some(namespace.clone()),
                    resolver.resolve(&namespace, port),
                ))),
            );
        }
        RouteTable::from_entries(entries)
    }

    /// The table of these entries.
    fn from_entries(entries: HashMap<String, Entry>) -> RouteTable {
        let mut sorted: Vec<(u64, String, Entry)> = entries
            .into_iter()
            .map(|(org, entry)| (hash_of(&org), org, entry))
            .collect();
        sorted.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut shards: Vec<Shard> = (0..SHARDS).map(|_| Shard::default()).collect();
        let mut routable = 0;
        for (hash, org, entry) in sorted {
            if matches!(entry, Entry::Routable(_)) {
                routable += 1;
            }
            if let Some(shard) = shards.get_mut(shard_index(hash)) {
                // In order: each lands at the end of its shard.
                shard.hashes.push(hash);
                shard.slots.push(Slot {
                    org: org.into_boxed_str(),
                    entry,
                });
            }
        }
        RouteTable {
            shards: shards.into_iter().map(Arc::new).collect(),
            routable,
        }
    }

    /// This table with each org's entry replaced (`None`: removed). Only the shards holding those orgs are
    /// copied; every other shard is shared with `self`.
    fn with_changes(&self, changes: impl IntoIterator<Item = (String, Option<Entry>)>) -> RouteTable {
        let mut next = self.clone();
        let mut copied: HashMap<usize, Shard> = HashMap::new();
        for (org, entry) in changes {
            let hash = hash_of(&org);
            let index = shard_index(hash);
            let Some(shared) = next.shards.get(index) else {
                continue;
            };
            let shard = copied.entry(index).or_insert_with(|| Shard::clone(shared));
            let added = matches!(entry, Some(Entry::Routable(_)));
            let old = match entry {
                Some(entry) => shard.insert(hash, org, entry),
                None => shard.remove(hash, &org),
            };
            let removed = matches!(old, Some(Entry::Routable(_)));
            next.routable = (next.routable + usize::from(added)).saturating_sub(usize::from(removed));
        }
        for (index, shard) in copied {
            if let Some(slot) = next.shards.get_mut(index) {
                *slot = Arc::new(shard);
            }
        }
        next
    }

    /// The entry of `org`, if any resource claims it.
    fn entry(&self, org: &str) -> Option<&Entry> {
        let hash = hash_of(org);
        self.shards.get(shard_index(hash))?.get(hash, org)
    }

    /// Every org's entry.
    fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    /// The route of `org`.
    pub fn lookup(&self, org: &str) -> Result<Arc<Route>, RouteError> {
        match self.entry(org) {
            Some(Entry::Routable(route)) => Ok(route.clone()),
            Some(Entry::Conflict) => Err(RouteError::Conflict),
            None => Err(RouteError::NoRoute),
        }
    }

    /// The number of routable orgs.
    pub fn routable(&self) -> usize {
        self.routable
    }

    /// Every org claimed more than once (unroutable), sorted.
    pub fn conflicts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .entries()
            .filter(|(_, e)| matches!(e, Entry::Conflict))
            .map(|(org, _)| org)
            .collect();
        out.sort_unstable();
        out
    }

    /// Every routable route.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.entries().filter_map(|(_, e)| match e {
            Entry::Routable(r) => Some(r),
            Entry::Conflict => None,
        })
    }
}

/// A static routes file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// The routes.
    pub routes: Vec<StaticRoute>,
}

/// One static route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    /// The org id.
    pub org: String,
    /// `host:port` of the stack.
    pub upstream: String,
    /// The Tenant.
    pub tenant: String,
    /// The Customer, if any.
    #[serde(default)]
    pub customer: Option<String>,
}

/// Why a static routes file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RoutesFileError {
    /// Reading failed.
    #[error("reading {0}: {1}")]
    Read(String, #[source] std::io::Error),
    /// Parsing failed.
    #[error("parsing {0}: {1}")]
    Parse(String, String),
    /// A route is invalid.
    #[error("route {index}: {message}")]
    Invalid {
        /// Its position.
        index: usize,
        /// Why.
        message: String,
    },
}

impl RouteTable {
    /// The table of a static routes file (YAML). An org listed twice is a conflict, as with resources.
    pub fn from_static(routes: &[StaticRoute]) -> Result<RouteTable, RoutesFileError> {
        let shape = OrgShape {
            prefix: None,
            max_len: bulkhead_crds::validate::MAX_ORG_ID_LEN,
        };
        let mut entries: HashMap<String, Entry> = HashMap::new();
        for (index, r) in routes.iter().enumerate() {
            check_shape(&r.org, &shape).map_err(|_| RoutesFileError::Invalid {
                index,
                message: "org is not an org id".into(),
            })?;
            if r.upstream.parse::<http::uri::Authority>().is_err() || r.upstream.contains('@') {
                return Err(RoutesFileError::Invalid {
                    index,
                    message: "upstream must be host:port".into(),
                });
            }
            let route = Entry::Routable(Arc::new(Route::new(
                r.org.clone(),
                r.tenant.clone(),
                r.customer.clone(),
                None,
                r.upstream.clone(),
            )));
            let entry = if entries.contains_key(&r.org) {
                Entry::Conflict
            } else {
                route
            };
            entries.insert(r.org.clone(), entry);
        }
        Ok(RouteTable::from_entries(entries))
    }

    /// Reads a static routes file.
    pub fn read_static(path: &Path) -> Result<RouteTable, RoutesFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RoutesFileError::Read(shown.clone(), e))?;
        let file: RoutesFile =
            serde_saphyr::from_str(&text).map_err(|e| RoutesFileError::Parse(shown, e.to_string()))?;
        RouteTable::from_static(&file.routes)
    }
}

/// The current route table, swapped atomically, and whether it has been filled from its source.
#[derive(Debug, Default)]
pub struct Routes {
    table: ArcSwap<RouteTable>,
    synced: AtomicBool,
    generation: std::sync::atomic::AtomicU64,
}

impl Routes {
    /// An empty, unsynced table.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Replaces the table and marks it synced.
    pub fn store(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.synced.store(true, Ordering::Release);
    }

    /// The current table.
    pub fn load(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Moves on every [`Routes::store`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the table has been filled from its source.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The route of `org`, or why there is none.
    pub fn lookup(&self, org: &str) -> Result<Arc<Route>, RouteError> {
        if !self.is_synced() {
            return Err(RouteError::NotSynced);
        }
        self.table.load().lookup(org)
    }
}

#[cfg(test)]
pub(super) mod tests {
    pub(super) use super::fixtures::{condition, customer, tenant};
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    pub(super) fn resolver() -> UpstreamResolver {
        UpstreamResolver {
            suffix: "svc".into(),
            overrides: HashMap::new(),
        }
    }

    #[test]
    fn ready_tenants_and_customers_route_to_their_own_namespaces() {
        let table = RouteTable::build(
            &[tenant("acme", "org_a", true)],
            &[
                customer("acme", "dental", "org_d", true, Some(9000)),
                customer("acme", "vet", "org_v", true, None),
            ],
            &resolver(),
        );
        let a = table.lookup("org_a").unwrap();
        assert_eq!(a.upstream, "stack.bk-acme.svc:8080");
        assert_eq!((a.tenant.as_str(), a.customer.as_deref()), ("acme", None));
        let d = table.lookup("org_d").unwrap();
        assert_eq!(d.upstream, "stack.bk-acme-dental.svc:9000");
        assert_eq!(
            (d.tenant.as_str(), d.customer.as_deref()),
            ("acme", Some("dental"))
        );
        assert_eq!(
            table.lookup("org_v").unwrap().upstream,
            "stack.bk-acme-vet.svc:8080",
            "tenant's port"
        );
        assert_eq!(table.lookup("org_x"), Err(RouteError::NoRoute));
        assert_eq!(table.routable(), 3);
    }

    #[test]
    fn only_ready_resources_route() {
        let mut deleting = tenant("gone", "org_g", true);
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).unwrap()));
        let mut unroutable = tenant("half", "org_h", true);
        unroutable.status.as_mut().unwrap().conditions[1] = condition("Routable", false, "StackNotReady");
        let mut moved = tenant("moved", "org_m", true);
        moved.status.as_mut().unwrap().namespace = Some("kube-system".into());
        let mut no_status = tenant("new", "org_n", true);
        no_status.status = None;
        let table = RouteTable::build(
            &[
                tenant("acme", "org_a", false),
                deleting,
                unroutable,
                moved,
                no_status,
            ],
            &[],
            &resolver(),
        );
        for org in ["org_a", "org_g", "org_h", "org_m", "org_n"] {
            assert_eq!(table.lookup(org), Err(RouteError::NoRoute), "{org}");
        }
    }

    #[test]
    fn an_org_claimed_twice_is_unroutable_even_if_one_claimant_is_not_ready() {
        let table = RouteTable::build(
            &[
                tenant("acme", "org_a", true),
                tenant("copycat", "org_a", false),
                tenant("beta", "org_b", true),
            ],
            &[customer("beta", "c", "org_b", true, None)],
            &resolver(),
        );
        assert_eq!(table.lookup("org_a"), Err(RouteError::Conflict));
        assert_eq!(table.lookup("org_b"), Err(RouteError::Conflict));
        assert_eq!(table.routable(), 0);
    }

    #[test]
    fn a_customer_of_an_unroutable_tenant_is_unroutable() {
        let table = RouteTable::build(
            &[tenant("acme", "org_a", false)],
            &[
                customer("acme", "dental", "org_d", true, None),
                customer("ghost", "x", "org_x", true, None),
            ],
            &resolver(),
        );
        assert_eq!(table.lookup("org_d"), Err(RouteError::NoRoute));
        assert_eq!(table.lookup("org_x"), Err(RouteError::NoRoute));
    }

    #[test]
    fn overrides_replace_cluster_dns() {
        let mut r = resolver();
        r.overrides.insert("bk-acme".into(), "127.0.0.1:9001".into());
        let table = RouteTable::build(&[tenant("acme", "org_a", true)], &[], &r);
        assert_eq!(table.lookup("org_a").unwrap().upstream, "127.0.0.1:9001");
    }

    #[test]
    fn static_routes_follow_the_same_conflict_rule() {
        let r = |org: &str, up: &str| StaticRoute {
            org: org.into(),
            upstream: up.into(),
            tenant: "t".into(),
            customer: None,
        };
        let table = RouteTable::from_static(&[
            r("org_a", "127.0.0.1:1"),
            r("org_b", "127.0.0.1:2"),
            r("org_b", "127.0.0.1:3"),
        ])
        .unwrap();
        assert_eq!(table.lookup("org_a").unwrap().upstream, "127.0.0.1:1");
        assert_eq!(table.lookup("org_b"), Err(RouteError::Conflict));
        assert!(RouteTable::from_static(&[r("org_a", "http://x/")]).is_err());
        assert!(RouteTable::from_static(&[r("bad org", "x:1")]).is_err());
    }

    #[test]
    fn orgs_spread_over_every_shard() {
        for pattern in ["org_", "org_2x", "user_"] {
            let mut sizes = vec![0usize; SHARDS];
            for i in 0..10 * SHARDS {
                sizes[shard_of(&format!("{pattern}{i:06}"))] += 1;
            }
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            // A uniform hash leaves no shard empty and none far above the average here.
            assert!(
                *min >= 1 && *max <= 25,
                "{pattern}: shard sizes {min}..{max}, 10 on average"
            );
        }
    }

    #[test]
    fn an_unsynced_table_answers_503() {
        let routes = Routes::new();
        assert_eq!(routes.lookup("org_a"), Err(RouteError::NotSynced));
        routes.store(RouteTable::default());
        assert_eq!(routes.lookup("org_a"), Err(RouteError::NoRoute));
    }
}
