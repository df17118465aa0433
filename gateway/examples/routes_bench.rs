//! The route table at 10, 1,000 and 10,000 routes (half Tenants, half Customers, one Customer per Tenant on
//! average), in one process:
//!
//!   cargo run --release -p bulkhead-gateway --example routes_bench
//!
//! prints a markdown table: the median time of one lookup of a present org (as the request path does it), of a
//! full build from the resources, of one Tenant change applied incrementally (record, indexes, the changed
//! shards, and the snapshot the watch publishes), and the resident memory the table and the watch's catalog
//! grow by, per route. The memory figures are rough: RSS growth from /proc/self/statm (4 KiB pages assumed)
//! around building each, so allocator reuse can hide some of it.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use bulkhead_gateway::routes::catalog::Catalog;
use bulkhead_gateway::routes::{RouteTable, UpstreamResolver, fixtures};
use kube::runtime::watcher::Event;

/// xorshift64*: the same pseudo-random orgs and changes on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

fn tenant(i: usize, ready: bool) -> Tenant {
    fixtures::tenant(&format!("tenant-{i}"), &format!("org_t{i:06}"), ready)
}

fn customer(i: usize, tenants: usize) -> Customer {
    let tenant_ref = format!("tenant-{}", i % tenants.max(1));
    fixtures::customer(
        &tenant_ref,
        &format!("customer-{i}"),
        &format!("org_c{i:06}"),
        true,
        None,
    )
}

/// Resident bytes, from /proc/self/statm (0 where unreadable).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

struct Row {
    routes: usize,
    lookup_ns: f64,
    build: Duration,
    change: Duration,
    table_bytes: f64,
    catalog_bytes: f64,
}

fn measure(n: usize, rng: &mut Rng) -> Row {
    let resolver = UpstreamResolver {
        suffix: "svc.cluster.local".into(),
        overrides: Default::default(),
    };
    let tenant_count = n / 2;
    let tenants: Vec<Tenant> = (0..tenant_count).map(|i| tenant(i, true)).collect();
    let customers: Vec<Customer> = (0..n - tenant_count).map(|i| customer(i, tenant_count)).collect();

    let before = rss();
    let table = RouteTable::build(&tenants, &customers, &resolver);
    let table_bytes = rss().saturating_sub(before) as f64 / n as f64;
    assert_eq!(table.routable(), n, "every route is routable");

    let builds = if n >= 10_000 { 7 } else { 51 };
    let build = median(
        (0..builds)
            .map(|_| {
                let start = Instant::now();
                black_box(RouteTable::build(
                    black_box(&tenants),
                    black_box(&customers),
                    &resolver,
                ));
                start.elapsed()
            })
            .collect(),
    );

    let orgs: Vec<String> = table.routes().map(|r| r.org.clone()).collect();
    let picks: Vec<usize> = (0..4096).map(|_| rng.below(orgs.len())).collect();
    const BATCH: usize = 20_000;
    let batches: Vec<Duration> = (0..101)
        .map(|_| {
            let start = Instant::now();
            for k in 0..BATCH {
                let org = &orgs[picks[k % picks.len()]];
                let _ = black_box(table.lookup(black_box(org)));
            }
            start.elapsed()
        })
        .collect();
    let lookup_ns = median(batches).as_nanos() as f64 / BATCH as f64;

    let before = rss();
    let mut catalog = Catalog::from_lists(resolver, tenants.clone(), customers.clone());
    let catalog_bytes = rss().saturating_sub(before) as f64 / n as f64;
    assert_eq!(catalog.table(), &table, "the catalog's table is the built one");

    // Each change flips one Tenant between Ready and not, which also cuts or restores its Customers.
    let mut ready = vec![true; tenant_count];
    let change = median(
        (0..200)
            .map(|_| {
                let i = rng.below(tenant_count);
                ready[i] = !ready[i];
                let event = Event::Apply(tenant(i, ready[i]));
                let start = Instant::now();
                let changed = catalog.tenant_event(event);
                let snapshot = Arc::new(catalog.table().clone());
                let elapsed = start.elapsed();
                assert!(changed);
                black_box(snapshot);
                elapsed
            })
            .collect(),
    );
    Row {
        routes: n,
        lookup_ns,
        build,
        change,
        table_bytes,
        catalog_bytes,
    }
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let rows: Vec<Row> = [10, 1_000, 10_000]
        .into_iter()
        .map(|n| measure(n, &mut rng))
        .collect();
    println!(
        "| routes | lookup, median (ns) | full build, median | one Tenant change, incremental, median | \
         memory per route, table (RSS, rough) | memory per route, table + watch catalog (RSS, rough) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} | {:.3} ms | {:.1} µs | {:.0} B | {:.0} B |",
            r.routes,
            r.lookup_ns,
            r.build.as_secs_f64() * 1e3,
            r.change.as_secs_f64() * 1e6,
            r.table_bytes,
            r.catalog_bytes,
        );
    }
}
