//! The request path: request gate → token gates → route → rate limit → sanitised forward to the tenant's
//! pooled client; one audit line and one metric per decision. Every request is decided on its own, whatever
//! connection it came on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::ext::Protocol;
use hyper_util::rt::TokioIo;

use crate::audit::{AuditEvent, AuditRecord, AuditSink, ProtocolRecord, audit_path};
use crate::config::ProxyFile;
use crate::cors::CorsPolicy;
use crate::denial::{Denial, Gate, GateError};
use crate::frames::Reset;
use crate::gates::request;
use crate::headers::{self, REQUEST_ID_NAME, Stamp};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::routes::{Route, Routes};
use crate::stream::IdleTimeout;
use crate::tunnel::{Tunnel, TunnelMeta, Tunnels, WEBSOCKET, websocket_accept, websocket_key};
use crate::upstream::Upstreams;
use crate::upstream::bytes_body::Body;
use crate::verify::{Identity, Seen, Verifier};

/// The stack did not answer well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting failed.
    #[error("connect failed")]
    Connect,
    /// No response head in time.
    #[error("timeout")]
    Timeout,
    /// Any other failure.
    #[error("failed")]
    Failed,
}

impl GateError for UpstreamError {
    const GATE: Gate = Gate::Upstream;

    fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect_failed",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Failed => "failed",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Tells a failure of the client's own body (too large, malformed mid-stream) from a failure of the stack.
fn classify(err: &hyper_util::client::legacy::Error) -> Denial {
    if err.is_connect() {
        return UpstreamError::Connect.denial();
    }
    let mut client_body = false;
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            return request::RequestError::BodyTooLarge.denial();
        }
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            client_body = true;
        }
        source = e.source();
    }
    if client_body {
        request::RequestError::BodyInvalid.denial()
    } else {
        UpstreamError::Failed.denial()
    }
}

/// The gateway's id of one request: the instance (48 bits of its start time in nanoseconds) and a counter,
/// in hex. Made once, as the header value sent to the stack and to the client, and read back for the audit line.
#[derive(Debug, Clone)]
struct RequestId(HeaderValue);

impl RequestId {
    fn new(instance: u64, n: u64) -> RequestId {
        fn hex(out: &mut Vec<u8>, value: u64, min_digits: u32) {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let digits = (64 - value.leading_zeros()).div_ceil(4).max(min_digits);
            out.extend(
                (0..digits)
                    .rev()
                    .map(|i| DIGITS[((value >> (4 * i)) & 0xf) as usize]),
            );
        }
        let mut text = Vec::with_capacity(12 + 1 + 16);
        hex(&mut text, instance & 0xffff_ffff_ffff, 12);
        text.push(b'-');
        hex(&mut text, n, 8);
        // Only hex digits and '-': always a valid header value.
        RequestId(HeaderValue::from_maybe_shared(Bytes::from(text)).unwrap_or(HeaderValue::from_static("0")))
    }

    fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

/// Status recorded for a request whose client went away before the answer (nginx's convention).
const CLIENT_CLOSED: u16 = 499;

/// One request's decision, written to the audit log and metrics exactly once: by [`Decision::finish`], or on
/// drop if the request was cancelled first.
struct Decision<'a> {
    proxy: &'a Proxy,
    started: Instant,
    request_id: RequestId,
    /// The request's method and URI; `None` for a request the HTTP layer refused before it could be read.
    target: Option<(Method, Uri)>,
    seen: Seen,
    route: Option<Arc<Route>>,
    done: bool,
}

impl Decision<'_> {
    fn finish(&mut self, gate: &'static str, reason: &'static str, status: StatusCode) {
        self.write(gate, reason, status.as_u16(), gate == "none");
    }

    fn write(&mut self, gate: &'static str, reason: &'static str, status: u16, allowed: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let latency = self.started.elapsed();
        self.proxy.metrics.decision(allowed, gate, reason, latency);
        let seen = &self.seen;
        self.proxy.audit.record(&AuditEvent::Request(AuditRecord {
            time: k8s_openapi::jiff::Timestamp::now(),
            request_id: self.request_id.as_str(),
            decision: if allowed { "allow" } else { "deny" },
            gate,
            reason,
            issuer: seen.issuer(),
            kid: seen.kid(),
            subject: seen.subject(),
            org: seen.org(),
            tenant: self.route.as_ref().map(|r| r.tenant.as_str()),
            customer: self.route.as_ref().and_then(|r| r.customer.as_deref()),
            impersonator: seen.impersonator(),
            method: self.target.as_ref().map(|(m, _)| m.as_str()),
            path: self.target.as_ref().map(|(_, u)| audit_path(u.path())),
            status,
            latency_ms: latency.as_secs_f64() * 1000.0,
            token_sha256: seen.token_sha256,
        }));
    }
}

impl Drop for Decision<'_> {
    fn drop(&mut self) {
        // Cancelled before an answer: allowed if it had passed every gate (it may have reached the stack).
        let allowed = self.route.is_some();
        self.write("request", "client_cancelled", CLIENT_CLOSED, allowed);
    }
}

/// Everything a request needs.
#[derive(Debug)]
pub struct Proxy {
    /// The token gates.
    pub verifier: Verifier,
    /// The route table.
    pub routes: Arc<Routes>,
    /// Pooled clients per route.
    pub upstreams: Upstreams,
    /// Audit lines.
    pub audit: Arc<dyn AuditSink>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Limits and timeouts.
    pub settings: ProxyFile,
    /// Per-org rate limit.
    pub rate_limit: Option<RateLimiter>,
    /// CORS policy for browser clients.
    pub cors: Option<CorsPolicy>,
    /// The open WebSocket tunnels.
    pub tunnels: Arc<Tunnels>,
    counter: AtomicU64,
    instance: u64,
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn full(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

impl Proxy {
    /// A proxy over its parts.
    pub fn new(
        verifier: Verifier,
        routes: Arc<Routes>,
        upstreams: Upstreams,
        audit: Arc<dyn AuditSink>,
        metrics: Arc<Metrics>,
        settings: ProxyFile,
        rate_limit: Option<RateLimiter>,
    ) -> Proxy {
        let instance = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let tunnels = Arc::new(Tunnels::new(
            settings.max_tunnels_per_org,
            Duration::from_secs(settings.max_tunnel_seconds),
            metrics.clone(),
        ));
        Proxy {
            verifier,
            routes,
            upstreams,
            audit,
            metrics,
            settings,
            rate_limit,
            cors: None,
            tunnels,
            counter: AtomicU64::new(0),
            instance,
        }
    }

    /// The same proxy with a CORS policy.
    pub fn with_cors(self, cors: Option<CorsPolicy>) -> Proxy {
        Proxy { cors, ..self }
    }

    fn request_id(&self) -> RequestId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        RequestId::new(self.instance, n)
    }

    async fn authorize<B>(
        &self,
        req: &Request<B>,
        seen: &mut Seen,
    ) -> Result<(Arc<Identity>, Arc<Route>), Denial> {
        match req.extensions().get::<Protocol>() {
            // HTTP/2 extended CONNECT: the WebSocket handshake of RFC 8441.
            Some(protocol) if req.method() == Method::CONNECT && req.version() == Version::HTTP_2 => {
                request::extended_connect(protocol.as_str(), req.headers(), self.settings.max_body_bytes)
            }
            Some(_) => Err(request::RequestError::Upgrade),
            None => request::check(req.method(), req.headers(), self.settings.max_body_bytes),
        }
        .map_err(|e| e.denial())?;
        if req.headers().contains_key(UPGRADE) && req.version() != Version::HTTP_11 {
            // An upgrade exists in HTTP/1.1 only.
            return Err(request::RequestError::Upgrade.denial());
        }
        let identity = self.verifier.verify(req.headers(), now_seconds(), seen).await?;
        let route = self.routes.lookup(&identity.org).map_err(|e| e.denial())?;
        if let Some(rl) = &self.rate_limit {
            rl.check(&identity.org, Instant::now()).map_err(|e| e.denial())?;
        }
        Ok((identity, route))
    }

    /// Decides and answers one request. The audit line is written by a guard, so a request whose client goes
    /// away mid-way (its future dropped) still leaves one, with reason `client_cancelled`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let mut decision = Decision {
            proxy: self,
            started: Instant::now(),
            request_id: self.request_id(),
            target: Some((req.method().clone(), req.uri().clone())),
            seen: Seen::default(),
            route: None,
            done: false,
        };
        if !self.audit.healthy() {
            // Fail closed: a request whose audit line cannot be written is not decided at all. (Its line is kept
            // and written once the output works again.)
            let denial = request::RequestError::AuditUnavailable.denial();
            let response = self.denial_response(denial, &decision.request_id);
            decision.finish(denial.gate.as_str(), denial.reason, response.status());
            return response;
        }
        let origin = self.cors.as_ref().and_then(|c| c.allowed_origin(req.headers()));
        if let Some(cors) = &self.cors
            && CorsPolicy::is_preflight(req.method(), req.headers())
        {
            // Answered here, before any token gate: a preflight carries no token and never reaches a stack.
            return match cors.preflight(req.headers()) {
                Ok(headers) => {
                    let mut response = Response::new(full(Vec::new()));
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    *response.headers_mut() = headers;
                    response
                        .headers_mut()
                        .insert(REQUEST_ID_NAME, decision.request_id.0.clone());
                    decision.write(
                        Gate::Cors.as_str(),
                        "preflight",
                        StatusCode::NO_CONTENT.as_u16(),
                        true,
                    );
                    response
                }
                Err(err) => {
                    let denial = err.denial();
                    let response = self.denial_response(denial, &decision.request_id);
                    decision.finish(denial.gate.as_str(), denial.reason, response.status());
                    response
                }
            };
        }
        let denial = match self.authorize(&req, &mut decision.seen).await {
            Err(denial) => denial,
            Ok((identity, route)) => {
                decision.route = Some(route.clone());
                let forwarded =
                    if req.headers().contains_key(UPGRADE) || req.extensions().get::<Protocol>().is_some() {
                        // Only a well-formed WebSocket handshake (HTTP/1.1 upgrade or HTTP/2 extended CONNECT)
                        // passed the request gate.
                        self.tunnel(req, peer, &identity, &route, &mut decision).await
                    } else {
                        self.forward(req, peer, &identity, &route, &decision.request_id)
                            .await
                    };
                match forwarded {
                    Ok(mut response) => {
                        if let Some(cors) = &self.cors {
                            cors.decorate(origin, response.headers_mut());
                        }
                        decision.finish("none", "ok", response.status());
                        return response;
                    }
                    Err(denial) => denial,
                }
            }
        };
        let mut response = self.denial_response(denial, &decision.request_id);
        if let Some(cors) = &self.cors {
            cors.decorate(origin, response.headers_mut());
        }
        decision.finish(denial.gate.as_str(), denial.reason, response.status());
        response
    }

    /// Answers (and records) a request refused because the gateway has its maximum of requests in flight.
    pub fn overloaded(&self, method: Method, uri: Uri) -> Response<Body> {
        let mut decision = Decision {
            proxy: self,
            started: Instant::now(),
            request_id: self.request_id(),
            target: Some((method, uri)),
            seen: Seen::default(),
            route: None,
            done: false,
        };
        let denial = request::RequestError::Overloaded.denial();
        let response = self.denial_response(denial, &decision.request_id);
        decision.finish(denial.gate.as_str(), denial.reason, response.status());
        response
    }

    /// Records a decision hyper made on its own, before any request reached [`Proxy::handle`]: a head it could
    /// not parse (400) or that was too large (431), or one that did not arrive in time (408). The request was
    /// never read, so its method and path are recorded as unknown (`null`). Connection resets and closes are
    /// not decisions and are not recorded; HTTP/2's own refusals are recorded by [`Proxy::protocol_error`].
    pub fn connection_error(&self, err: &(dyn std::error::Error + 'static)) {
        let Some(err) = err.downcast_ref::<hyper::Error>() else {
            return;
        };
        let (reason, status) = if err.is_parse_too_large() {
            ("head_too_large", StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        } else if err.is_parse() {
            ("malformed_http", StatusCode::BAD_REQUEST)
        } else if err.is_timeout() {
            ("header_timeout", StatusCode::REQUEST_TIMEOUT)
        } else {
            return;
        };
        let mut decision = Decision {
            proxy: self,
            started: Instant::now(),
            request_id: self.request_id(),
            target: None,
            seen: Seen::default(),
            route: None,
            done: false,
        };
        decision.finish(Gate::Request.as_str(), reason, status);
    }

    /// Records a stream or connection the HTTP/2 layer refused on its own (see [`crate::frames`]).
    pub fn protocol_error(&self, reset: Reset) {
        self.metrics.protocol_error(reset.frame, reset.error);
        self.audit.record(&AuditEvent::ProtocolError(ProtocolRecord {
            time: k8s_openapi::jiff::Timestamp::now(),
            decision: "deny",
            protocol: "http2",
            frame: reset.frame,
            stream: reset.stream,
            reason: reset.error,
        }));
    }

    fn denial_response(&self, denial: Denial, request_id: &RequestId) -> Response<Body> {
        let mut response = Response::new(full(denial.body()));
        *response.status_mut() = denial.status;
        let h = response.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(REQUEST_ID_NAME, request_id.0.clone());
        if denial.status == StatusCode::UNAUTHORIZED {
            h.insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }

    /// Sanitises the request's headers and points it at the route's upstream.
    fn prepare(
        &self,
        parts: &mut http::request::Parts,
        peer: SocketAddr,
        identity: &Identity,
        route: &Arc<Route>,
        request_id: &RequestId,
    ) -> Result<(), Denial> {
        let stamp = Stamp {
            route: &route.made,
            subject: identity.subject.as_deref(),
            impersonator: identity.impersonator.as_deref(),
            request_id: &request_id.0,
            client_ip: peer.ip(),
        };
        headers::sanitize_request(&mut parts.headers, &stamp, self.settings.forward_authorization);
        // The client's path and query, moved (not copied) onto the route's upstream.
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(
            route
                .made
                .authority
                .clone()
                .ok_or(UpstreamError::Failed.denial())?,
        );
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = Uri::from_parts(uri).map_err(|_| UpstreamError::Failed.denial())?;
        parts.version = Version::HTTP_11;
        Ok(())
    }

    /// Sends a prepared request to the route's pooled client, within the upstream timeout.
    async fn send(&self, route: &Arc<Route>, req: Request<Body>) -> Result<Response<Incoming>, Denial> {
        self.upstreams.prune(&self.routes);
        let client = self.upstreams.client(route);
        let timeout = Duration::from_millis(self.settings.upstream_timeout_ms);
        match tokio::time::timeout(timeout, client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout.denial()),
            Ok(Err(err)) => Err(classify(&err)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        identity: &Identity,
        route: &Arc<Route>,
        request_id: &RequestId,
    ) -> Result<Response<Body>, Denial> {
        let (mut parts, body) = req.into_parts();
        self.prepare(&mut parts, peer, identity, route, request_id)?;
        let limit = usize::try_from(self.settings.max_body_bytes).unwrap_or(usize::MAX);
        let body = Limited::new(body, limit).boxed();
        let response = self.send(route, Request::from_parts(parts, body)).await?;
        Ok(self.pass_on(response, request_id))
    }

    /// The stack's response for the client: sanitised headers, the request id, the body streamed frame by frame
    /// under the idle timeout.
    fn pass_on(&self, response: Response<Incoming>, request_id: &RequestId) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        headers::sanitize_response(&mut parts.headers);
        parts.headers.insert(REQUEST_ID_NAME, request_id.0.clone());
        let idle = Duration::from_millis(self.settings.upstream_body_idle_ms);
        Response::from_parts(parts, IdleTimeout::new(body, idle).boxed())
    }

    /// Forwards a WebSocket opening handshake to the route's stack. A 101 from the stack becomes a tunnel
    /// (its own task, holding one of the org's tunnel slots) and the 101 to the client; any other answer is
    /// passed on as an ordinary response and no tunnel is opened.
    ///
    /// An HTTP/2 extended CONNECT becomes an HTTP/1.1 handshake to the stack: GET with a key the gateway makes
    /// and whose `Sec-WebSocket-Accept` it checks; the client gets 200 and the stream carries the frames.
    async fn tunnel(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        identity: &Identity,
        route: &Arc<Route>,
        decision: &mut Decision<'_>,
    ) -> Result<Response<Body>, Denial> {
        let permit = self.tunnels.acquire(&identity.org).map_err(|e| e.denial())?;
        let h2 = req.version() == Version::HTTP_2;
        let client_upgrade = hyper::upgrade::on(&mut req);
        let (mut parts, _empty) = req.into_parts();
        self.prepare(&mut parts, peer, identity, route, &decision.request_id)?;
        // Sanitation removed every hop-by-hop header; the handshake needs exactly these two back.
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(UPGRADE, HeaderValue::from_static(WEBSOCKET));
        let key = if h2 {
            parts.method = Method::GET;
            parts.extensions.remove::<Protocol>();
            let key = websocket_key().ok_or(UpstreamError::Failed.denial())?;
            parts.headers.insert(SEC_WEBSOCKET_KEY, key.clone());
            Some(key)
        } else {
            None
        };
        let mut response = self
            .send(route, Request::from_parts(parts, full(Vec::new())))
            .await?;
        let request_id = decision.request_id.clone();
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(self.pass_on(response, &request_id));
        }
        let is_websocket = response
            .headers()
            .get(UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(WEBSOCKET.as_bytes()));
        let accepted = key.as_ref().is_none_or(|key| {
            response.headers().get(SEC_WEBSOCKET_ACCEPT) == Some(&websocket_accept(key.as_bytes()))
        });
        if !is_websocket || !accepted {
            // A stack switching to anything else, or not to the handshake the gateway made, is not followed.
            return Err(UpstreamError::Failed.denial());
        }
        let stack_upgrade = hyper::upgrade::on(&mut response);
        let (mut parts, _empty) = response.into_parts();
        headers::sanitize_response(&mut parts.headers);
        if h2 {
            // RFC 8441 §5: a 2xx opens the stream; the HTTP/1.1 handshake's accept proof means nothing here.
            parts.status = StatusCode::OK;
            parts.headers.remove(SEC_WEBSOCKET_ACCEPT);
            parts.headers.remove(http::header::CONTENT_LENGTH);
        } else {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(UPGRADE, HeaderValue::from_static(WEBSOCKET));
        }
        parts.headers.insert(REQUEST_ID_NAME, request_id.0.clone());
        let (deadline, closes_at, deadline_reason) =
            self.tunnels.deadline(identity.exp, self.verifier.leeway());
        let tunnel = Tunnel {
            meta: TunnelMeta {
                request_id: request_id.as_str().to_owned(),
                org: identity.org.clone(),
                tenant: route.tenant.clone(),
                customer: route.customer.clone(),
                subject: identity.subject.clone(),
                impersonator: identity.impersonator.clone(),
                path: decision
                    .target
                    .as_ref()
                    .map(|(_, uri)| audit_path(uri.path()).to_owned())
                    .unwrap_or_default(),
                http_version: if h2 { "HTTP/2" } else { "HTTP/1.1" },
            },
            permit,
            deadline,
            closes_at,
            deadline_reason,
        };
        // The request's own line (101) first, then the tunnel's open line; the close line follows from the task.
        decision.finish("none", "ok", parts.status);
        tunnel.opened(self.audit.as_ref());
        let audit = self.audit.clone();
        tokio::spawn(tunnel.run(
            async move { client_upgrade.await.map(TokioIo::new) },
            async move { stack_upgrade.await.map(TokioIo::new) },
            audit,
        ));
        Ok(Response::from_parts(parts, full(Vec::new())))
    }
}
