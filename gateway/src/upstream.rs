//! Pooled HTTP clients to the stacks: one client, with its own connection pool, per route (Tenant, Customer,
//! address). Connections are never shared between tenants, even when two routes resolve to one address.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes_body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::routes::{Route, Routes};

/// Request and response bodies on the proxy path.
pub mod bytes_body {
    /// A boxed body of `Bytes` with a boxed error.
    pub type Body = http_body_util::combinators::BoxBody<hyper::body::Bytes, BoxError>;
    /// A boxed error.
    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
}

/// A client to one stack.
pub type StackClient = Client<HttpConnector, Body>;

/// The clients, by route.
#[derive(Debug)]
pub struct Upstreams {
    /// By [`crate::routes::Made::pool`].
    clients: RwLock<HashMap<String, StackClient>>,
    /// The route table generation the pools were last pruned against.
    pruned_at: std::sync::atomic::AtomicU64,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl Upstreams {
    /// No clients yet; each is made on first use.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Upstreams {
        Upstreams {
            clients: RwLock::new(HashMap::new()),
            pruned_at: std::sync::atomic::AtomicU64::new(0),
            connect_timeout,
            idle_timeout,
        }
    }

    /// The client of `route`'s pool.
    pub fn client(&self, route: &Arc<Route>) -> StackClient {
        let key = route.made.pool.as_str();
        if let Ok(clients) = self.clients.read()
            && let Some(client) = clients.get(key)
        {
            return client.clone();
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.idle_timeout)
            .pool_timer(TokioTimer::new())
            .build(connector);
        match self.clients.write() {
            Ok(mut clients) => clients.entry(key.to_owned()).or_insert(client).clone(),
            Err(_) => client,
        }
    }

    /// Drops the pools of routes that are no longer in `routes` (once per route table change), so a removed
    /// tenant's idle connections and client go away with its route.
    pub fn prune(&self, routes: &Routes) {
        use std::sync::atomic::Ordering;
        let generation = routes.generation();
        if self.pruned_at.swap(generation, Ordering::AcqRel) == generation {
            return;
        }
        let table = routes.load();
        let live: std::collections::HashSet<&str> = table.routes().map(|r| r.made.pool.as_str()).collect();
        if let Ok(mut clients) = self.clients.write() {
            clients.retain(|key, _| live.contains(key.as_str()));
        }
    }

    /// The number of pools.
    pub fn len(&self) -> usize {
        self.clients.read().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether there are no pools.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{RouteTable, StaticRoute};

    fn table(orgs: &[(&str, &str, &str)]) -> RouteTable {
        let routes: Vec<StaticRoute> = orgs
            .iter()
            .map(|(org, tenant, upstream)| StaticRoute {
                org: (*org).into(),
                tenant: (*tenant).into(),
                customer: None,
                upstream: (*upstream).into(),
            })
            .collect();
        RouteTable::from_static(&routes).unwrap()
    }

    #[tokio::test]
    async fn one_pool_per_route_and_removed_routes_lose_theirs() {
        let upstreams = Upstreams::new(Duration::from_secs(1), Duration::from_secs(1));
        let routes = Routes::new();
        // Two tenants on one address still get two pools.
        routes.store(table(&[
            ("org_a", "acme", "127.0.0.1:1"),
            ("org_b", "beta", "127.0.0.1:1"),
        ]));
        let t = routes.load();
        for org in ["org_a", "org_b", "org_a"] {
            upstreams.client(&t.lookup(org).unwrap());
        }
        assert_eq!(upstreams.len(), 2);
        upstreams.prune(&routes);
        assert_eq!(upstreams.len(), 2, "nothing removed yet");
        routes.store(table(&[("org_a", "acme", "127.0.0.1:1")]));
        upstreams.prune(&routes);
        assert_eq!(upstreams.len(), 1);
    }
}
