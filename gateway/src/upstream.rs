//! Pooled HTTP clients to the stacks: one client, with its own connection pool, per route (Tenant, Customer,
//! address). Connections are never shared between tenants, even when two routes resolve to one address.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes_body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::routes::Route;

/// Request and response bodies on the proxy path.
pub mod bytes_body {
    /// A boxed body of `Bytes` with a boxed error.
    pub type Body = http_body_util::combinators::BoxBody<hyper::body::Bytes, BoxError>;
    /// A boxed error.
    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
}

/// A client to one stack.
pub type StackClient = Client<HttpConnector, Body>;

type PoolKey = (String, Option<String>, String);

/// The clients, by route.
#[derive(Debug)]
pub struct Upstreams {
    clients: RwLock<HashMap<PoolKey, StackClient>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl Upstreams {
    /// No clients yet; each is made on first use.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Upstreams {
        Upstreams {
            clients: RwLock::new(HashMap::new()),
            connect_timeout,
            idle_timeout,
        }
    }

    /// The client of `route`'s pool.
    pub fn client(&self, route: &Arc<Route>) -> StackClient {
        let key = (
            route.tenant.clone(),
            route.customer.clone(),
            route.upstream.clone(),
        );
        if let Ok(clients) = self.clients.read()
            && let Some(client) = clients.get(&key)
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
            Ok(mut clients) => clients.entry(key).or_insert(client).clone(),
            Err(_) => client,
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
