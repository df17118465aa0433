//! Starting and stopping the gateway: the proxy listener (HTTP/1.1 and HTTP/2 via hyper-util's auto builder,
//! with header size and read-time limits), the admin listener (`/livez`, `/readyz`, `/metrics`), the key
//! refresh tasks and the route source; graceful shutdown lets in-flight requests finish within a grace period.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tracing::{info, warn};

use crate::audit::AuditSink;
use crate::cache::TokenCache;
use crate::config::{RouteSource, Settings};
use crate::frames::{Reset, Watched};
use crate::keys::fetch::{FetchPolicy, Fetcher};
use crate::keys::{KeyStore, StartKeyError};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::ratelimit::RateLimiter;
use crate::routes::{RouteTable, Routes, RoutesFileError, UpstreamResolver};
use crate::upstream::Upstreams;
use crate::upstream::bytes_body::Body;
use crate::verify::Verifier;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The static routes file is unusable.
    #[error("routes: {0}")]
    Routes(#[from] RoutesFileError),
    /// A configured key is refused (see [`KeyStore::load_at_start`]).
    #[error("keys: {0}")]
    Keys(#[from] StartKeyError),
    /// `routes.source: kubernetes` without a cluster client.
    #[error("routes.source is kubernetes but no cluster client is available")]
    NoCluster,
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What the embedding program supplies.
pub struct StartOptions {
    /// Where audit lines go.
    pub audit: Arc<dyn AuditSink>,
    /// The cluster client for `routes.source: kubernetes`.
    pub kube: Option<kube::Client>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("audit", &self.audit)
            .field("kube", &self.kube.is_some())
            .finish()
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct Running {
    /// The proxy listener's address.
    pub addr: SocketAddr,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    /// The shared request state.
    pub proxy: Arc<Proxy>,
    /// The key store.
    pub keys: Arc<KeyStore>,
    /// The route table.
    pub routes: Arc<Routes>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    admin: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, closes every WebSocket tunnel (reason `shutdown`), lets in-flight requests finish
    /// (within the grace period), waits for the tunnels' close lines, stops background tasks and closes the
    /// audit trail (its shutdown checkpoint).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.proxy.tunnels.close_all();
        let _ = self.server.await;
        let _ = self.admin.await;
        // A tunnel's close line is written as soon as its copy loop sees the signal; bounded all the same.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.proxy.tunnels.drained()).await;
        for task in self.background {
            task.abort();
        }
        self.proxy.audit.close();
    }
}

/// Starts the gateway: loads every issuer's keys once (a refused PEM key stops the start; other failures leave
/// the issuer unready, not the gateway down), fills the route table, binds both listeners and returns.
pub async fn start(settings: Settings, options: StartOptions) -> Result<Running, StartError> {
    crate::install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    let file = &settings.file;
    let fetcher = Fetcher::new(FetchPolicy {
        timeout: Duration::from_millis(file.keys.fetch_timeout_ms),
        max_bytes: file.keys.max_jwks_bytes,
    });
    let keys = Arc::new(KeyStore::new(
        settings.issuer_keys.clone(),
        fetcher,
        settings.key_policy.clone(),
        metrics.clone(),
    ));
    keys.load_at_start().await?; // other failures are logged inside; the refresh task retries
    let mut background = keys.spawn_refresh();

    let routes = Arc::new(Routes::new());
    match file.routes.source {
        RouteSource::File => {
            let path = file.routes.file.clone().unwrap_or_default();
            let table = RouteTable::read_static(&path)?;
            metrics.routes(table.routable());
            routes.store(table);
        }
        RouteSource::Kubernetes => {
            let client = options.kube.ok_or(StartError::NoCluster)?;
            let resolver = UpstreamResolver {
                suffix: file.routes.service_suffix.clone(),
                overrides: file.routes.upstream_overrides.clone(),
            };
            background.push(tokio::spawn(crate::routes::watch::run(
                client,
                routes.clone(),
                resolver,
                metrics.clone(),
            )));
        }
    }

    let verifier = Verifier::new(
        settings.issuer_policies.clone(),
        settings.algorithms.clone(),
        settings.time,
        file.tokens.max_bytes,
        keys.clone(),
        TokenCache::new(file.cache.max_entries),
        metrics.clone(),
    )
    .with_typ(settings.typ.clone());
    let proxy = Arc::new(
        Proxy::new(
            verifier,
            routes.clone(),
            Upstreams::new(
                Duration::from_millis(file.proxy.connect_timeout_ms),
                Duration::from_secs(file.proxy.pool_idle_seconds),
            ),
            options.audit,
            metrics.clone(),
            file.proxy.clone(),
            file.rate_limit.map(|r| RateLimiter::new(r.per_second, r.burst)),
        )
        .with_cors(settings.cors.clone()),
    );

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let listener = bind(file.listen).await?;
    let admin_listener = bind(file.admin).await?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: file.listen,
        source,
    })?;
    let admin_addr = admin_listener.local_addr().map_err(|source| StartError::Bind {
        addr: file.admin,
        source,
    })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let grace = Duration::from_secs(file.proxy.shutdown_grace_seconds);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(file.proxy.header_read_timeout_ms))
        .max_buf_size(file.proxy.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(file.proxy.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        // RFC 8441: WebSockets over HTTP/2 streams.
        .enable_connect_protocol();
    let server_proxy = proxy.clone();
    let error_proxy = proxy.clone();
    let reset_proxy = proxy.clone();
    let in_flight = tower::limit::GlobalConcurrencyLimitLayer::new(file.proxy.max_in_flight);
    let server = tokio::spawn(serve(
        listener,
        builder,
        shutdown_rx.clone(),
        grace,
        move |req: Request<Incoming>, peer| {
            // One semaphore for the whole listener: at most max_in_flight requests are decided or forwarded at
            // once; LoadShed turns "no permit" into an immediate 503 instead of a queue.
            let proxy = server_proxy.clone();
            let limited = tower::ServiceBuilder::new()
                .load_shed()
                .layer(in_flight.clone())
                .service_fn(move |req: Request<Incoming>| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
                });
            let proxy = server_proxy.clone();
            let (method, uri) = (req.method().clone(), req.uri().clone());
            async move {
                match limited.oneshot(req).await {
                    Ok(response) => response,
                    Err(_overloaded) => proxy.overloaded(method, uri),
                }
            }
        },
        move |err: &(dyn std::error::Error + 'static)| error_proxy.connection_error(err),
        Some(move |reset| reset_proxy.protocol_error(reset)),
    ));
    let admin_state = (keys.clone(), routes.clone(), metrics.clone(), proxy.audit.clone());
    let admin = tokio::spawn(serve(
        admin_listener,
        auto::Builder::new(TokioExecutor::new()),
        shutdown_rx,
        grace,
        move |req, _peer| {
            let (keys, routes, metrics, audit) = admin_state.clone();
            async move { admin_response(&req, &keys, &routes, &metrics, audit.as_ref()) }
        },
        |_: &(dyn std::error::Error + 'static)| {},
        None::<fn(Reset)>,
    ));
    info!(%addr, %admin_addr, "gateway listening");
    Ok(Running {
        addr,
        admin_addr,
        proxy,
        keys,
        routes,
        shutdown,
        server,
        admin,
        background,
    })
}

/// Accepts connections until shutdown; `on_error` sees each connection's error (a malformed or oversized head
/// that hyper answered itself, before any request reached `handler`), `on_reset` each stream or connection the
/// HTTP/2 layer refused on its own (see [`crate::frames`]).
async fn serve<F, Fut, E, P>(
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    handler: F,
    on_error: E,
    on_reset: Option<P>,
) where
    E: Fn(&(dyn std::error::Error + 'static)) + Clone + Send + Sync + 'static,
    P: Fn(Reset) + Clone + Send + Sync + Unpin + 'static,
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        warn!(error = %err, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req, peer).await) }
                });
                let report = on_reset.clone();
                let stream = Watched::new(stream, move |reset| {
                    if let Some(report) = &report {
                        report(reset);
                    }
                });
                // Upgrades are served (WebSocket tunnels); the upgraded connection leaves `graceful`, so tunnels
                // are closed by their own signal at shutdown.
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                let on_error = on_error.clone();
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        on_error(err.as_ref());
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => warn!("grace period over; dropping remaining connections"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r
}

fn admin_response(
    req: &Request<Incoming>,
    keys: &KeyStore,
    routes: &Routes,
    metrics: &Metrics,
    audit: &dyn AuditSink,
) -> Response<Body> {
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if !keys.is_ready() {
                text(StatusCode::SERVICE_UNAVAILABLE, "keys not loaded\n")
            } else if !routes.is_synced() {
                text(StatusCode::SERVICE_UNAVAILABLE, "routes not synced\n")
            } else if !audit.healthy() {
                text(StatusCode::SERVICE_UNAVAILABLE, "audit output failing\n")
            } else {
                text(StatusCode::OK, "ok\n")
            }
        }
        "/metrics" => match metrics.encode() {
            Ok(body) => {
                let mut r = text(StatusCode::OK, body);
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
