//! The load generator: closed-loop HTTP/1.1 `GET`s over keep-alive connections, summed up in one JSON line.
//!
//! [`run`] opens [`LoadOptions::connections`] connections to one target; each sends a request, reads the whole
//! answer, and sends the next at once (closed loop: the offered load is what the target answers), for the
//! warmup and then the measured window. Only what completes inside the measured window is counted. A benchmark
//! runs it in a pod (the stack image has no shell and no `wrk`) against Bulkhead's gateway and against a stack
//! Service directly, and compares the two lines.
//!
//! Every answered request's latency (from sending the request to the end of the answer's body; connecting is
//! not part of it) is kept in microseconds, so the percentiles are exact. Four bytes a request: a 10 s run at
//! 50 000 requests a second keeps 2 MB.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use hyper::http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use crate::probe::is_credential_header;
use crate::redact::Redactor;

/// The generator's `User-Agent`, unless a header sets one.
pub const USER_AGENT_VALUE: &str = "bulkhead-stack-load";

/// How long a connection waits before connecting again after connecting failed, so a target that refuses does
/// not turn the generator into a busy loop.
pub const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// What to send, how hard and for how long.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Path and optional query of every `GET`.
    pub path: PathAndQuery,
    /// Extra request headers, in order, sent as given. A `Host` or `User-Agent` among them replaces the
    /// generator's own (the target, and [`USER_AGENT_VALUE`]).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Concurrent keep-alive connections, each with one request in flight (at least 1).
    pub connections: usize,
    /// The measured window, after the warmup.
    pub duration: Duration,
    /// Requests are sent but not counted for this long first.
    pub warmup: Duration,
    /// The budget of each name resolution, each connection attempt, and each request (sending it and reading the
    /// whole answer).
    pub timeout: Duration,
}

impl LoadOptions {
    /// `GET /` over 16 connections: 1 s of warmup, 10 s measured, 2 s per request.
    pub fn new() -> Self {
        Self {
            path: PathAndQuery::from_static("/"),
            headers: Vec::new(),
            connections: 16,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }

    /// The values of the credential-bearing headers (see [`is_credential_header`]), kept out of the output.
    fn redactor(&self) -> Redactor {
        let mut redactor = Redactor::default();
        for (name, value) in &self.headers {
            if is_credential_header(name) {
                redactor.add_header_value(&String::from_utf8_lossy(value.as_bytes()));
            }
        }
        redactor
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Latencies of the answered requests in milliseconds (microsecond precision); all 0 when none was answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// The percentiles (nearest rank) of `micros`, which this sorts.
    pub fn of(micros: &mut [u32]) -> Self {
        micros.sort_unstable();
        let Some(&max) = micros.last() else {
            return Self::default();
        };
        let sum: u64 = micros.iter().map(|&m| u64::from(m)).sum();
        let count = micros.len() as u64;
        Self {
            p50: millis(percentile(micros, 50)),
            p90: millis(percentile(micros, 90)),
            p99: millis(percentile(micros, 99)),
            max: millis(u64::from(max)),
            // Microseconds rounded to the nearest one, so the mean too has three decimals in milliseconds.
            mean: millis((sum + count / 2) / count),
        }
    }
}

/// The nearest-rank percentile of sorted, non-empty `micros`: the smallest sample with at least `percent`
/// percent of the samples at or below it.
fn percentile(micros: &[u32], percent: u64) -> u64 {
    let count = micros.len() as u64;
    let rank = (count * percent).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1)
        .unwrap_or(usize::MAX)
        .min(micros.len() - 1);
    u64::from(micros[index])
}

/// Microseconds as milliseconds (three decimals).
fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The one line [`run`] prints.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The target as given (`host:port`).
    pub target: String,
    pub connections: usize,
    /// The measured window (the warmup not included).
    pub duration_ms: u64,
    /// Requests answered (any status) within the measured window: `ok + non_2xx`.
    pub requests: u64,
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Answers with any other status.
    pub non_2xx: u64,
    /// Failures within the measured window: connecting, a timeout, a connection closed before the whole answer.
    /// They are not requests.
    pub errors: u64,
    /// `requests` per second of the measured window (three decimals).
    pub rps: f64,
    /// Over the `requests`, whatever their status.
    pub latency_ms: Latency,
    /// How many answers had each status.
    pub statuses: BTreeMap<u16, u64>,
    /// What the first of the `errors` was (credential header values redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl LoadReport {
    /// The report as one line of JSON.
    pub fn to_line(&self) -> String {
        crate::probe::to_line(self)
    }

    /// Whether at least one request got a 2xx answer (exit code 0).
    pub fn succeeded(&self) -> bool {
        self.ok > 0
    }
}

/// What one connection loop (or all, merged) saw.
#[derive(Debug, Default)]
struct Stats {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<(Instant, String)>,
}

impl Stats {
    fn merge(&mut self, other: Self) {
        self.latencies_us.extend(other.latencies_us);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.errors += other.errors;
        if let Some((at, text)) = other.first_error
            && self.first_error.as_ref().is_none_or(|(first, _)| at < *first)
        {
            self.first_error = Some((at, text));
        }
    }
}

/// Everything the connection loops share.
#[derive(Debug)]
struct Plan {
    target: String,
    addresses: Vec<SocketAddr>,
    path: PathAndQuery,
    headers: HeaderMap,
    timeout: Duration,
    /// Start of the measured window.
    counted_from: Instant,
    /// End of the measured window, and of the run.
    end: Instant,
}

impl Plan {
    /// Counts a failure that happened at `at`, when that is inside the measured window.
    fn error(&self, stats: &mut Stats, at: Instant, text: impl Into<String>) {
        if at < self.counted_from || at > self.end {
            return;
        }
        stats.errors += 1;
        if stats.first_error.is_none() {
            stats.first_error = Some((at, text.into()));
        }
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.path.clone().into();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Sends load to `target` (`host:port`, the host an IP address or a name, resolved once at the start) as
/// `options` says, and sums it up.
pub async fn run(target: &str, options: &LoadOptions) -> LoadReport {
    let connections = options.connections.max(1);
    let mut report = LoadReport {
        target: target.to_owned(),
        connections,
        duration_ms: u64::try_from(options.duration.as_millis()).unwrap_or(u64::MAX),
        requests: 0,
        ok: 0,
        non_2xx: 0,
        errors: 0,
        rps: 0.0,
        latency_ms: Latency::default(),
        statuses: BTreeMap::new(),
        first_error: None,
    };
    let redactor = options.redactor();
    let fail = |mut report: LoadReport, text: String| {
        report.errors = 1;
        report.first_error = Some(redactor.text(&text).into_owned());
        report
    };
    let addresses: Vec<SocketAddr> = match timeout(options.timeout, tokio::net::lookup_host(target)).await {
        Err(_) => return fail(report, format!("resolving {target} timed out")),
        Ok(Err(err)) => return fail(report, format!("cannot resolve {target}: {err}")),
        Ok(Ok(addresses)) => addresses.collect(),
    };
    if addresses.is_empty() {
        return fail(report, format!("{target} resolved to no address"));
    }
    let mut headers = HeaderMap::new();
    if !options.headers.iter().any(|(name, _)| name == HOST) {
        match HeaderValue::from_str(target) {
            Ok(host) => {
                headers.insert(HOST, host);
            }
            Err(_) => return fail(report, format!("{target:?} cannot be a Host header")),
        }
    }
    if !options.headers.iter().any(|(name, _)| name == USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    }
    for (name, value) in &options.headers {
        headers.append(name, value.clone());
    }
    let start = Instant::now();
    let plan = Arc::new(Plan {
        target: target.to_owned(),
        addresses,
        path: options.path.clone(),
        headers,
        timeout: options.timeout,
        counted_from: start + options.warmup,
        end: start + options.warmup + options.duration,
    });
    let loops: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection_loop(Arc::clone(&plan))))
        .collect();
    let mut stats = Stats::default();
    for handle in loops {
        match handle.await {
            Ok(one) => stats.merge(one),
            Err(err) => plan.error(&mut stats, plan.end, format!("a connection's task failed: {err}")),
        }
    }

    report.ok = stats
        .statuses
        .iter()
        .filter(|(status, _)| (200..300).contains(*status))
        .map(|(_, count)| count)
        .sum();
    report.requests = stats.latencies_us.len() as u64;
    report.non_2xx = report.requests - report.ok;
    report.errors = stats.errors;
    let seconds = options.duration.as_secs_f64();
    if seconds > 0.0 {
        report.rps = (report.requests as f64 / seconds * 1000.0).round() / 1000.0;
    }
    report.latency_ms = Latency::of(&mut stats.latencies_us);
    report.statuses = stats.statuses;
    report.first_error = stats
        .first_error
        .map(|(_, text)| redactor.text(&text).into_owned());
    report
}

/// One connection's closed loop: connect (again) when needed, send, read the whole answer, repeat until the
/// end of the run. What is in flight at the end is dropped uncounted.
async fn connection_loop(plan: Arc<Plan>) -> Stats {
    let mut stats = Stats::default();
    // The open connection and how many answers it has given.
    let mut open: Option<(SendRequest<Empty<Bytes>>, u64)> = None;
    loop {
        let now = Instant::now();
        if now >= plan.end {
            break;
        }
        let deadline = (now + plan.timeout).min(plan.end);
        let (mut sender, answered) = match open.take() {
            Some((sender, answered)) if !sender.is_closed() => (sender, answered),
            _ => match timeout_at(deadline, connect(&plan)).await {
                Ok(Ok(sender)) => (sender, 0),
                Ok(Err(text)) => {
                    plan.error(&mut stats, Instant::now(), text);
                    sleep_until((Instant::now() + CONNECT_BACKOFF).min(plan.end)).await;
                    continue;
                }
                Err(_) if deadline >= plan.end => break,
                Err(_) => {
                    let text = format!(
                        "connecting to {} timed out after {} ms",
                        plan.target,
                        plan.timeout.as_millis()
                    );
                    plan.error(&mut stats, Instant::now(), text);
                    continue;
                }
            },
        };
        match timeout_at(deadline, sender.ready()).await {
            Ok(Ok(())) => {}
            // The server closed a connection it had answered on (keep-alive ended): connect again.
            Ok(Err(_)) if answered > 0 => continue,
            Ok(Err(err)) => {
                let text = format!(
                    "the connection to {} closed at once: {}",
                    plan.target,
                    describe(&err)
                );
                plan.error(&mut stats, Instant::now(), text);
                continue;
            }
            Err(_) if deadline >= plan.end => break,
            Err(_) => {
                let text = format!("the connection to {} did not become ready in time", plan.target);
                plan.error(&mut stats, Instant::now(), text);
                continue;
            }
        }

        let request = plan.request();
        let sent = Instant::now();
        let deadline = (sent + plan.timeout).min(plan.end);
        let outcome = timeout_at(deadline, exchange(&mut sender, request)).await;
        let done = Instant::now();
        match outcome {
            Ok(Ok(status)) => {
                if done > plan.end {
                    break;
                }
                if done >= plan.counted_from {
                    let micros = u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX);
                    stats.latencies_us.push(micros);
                    *stats.statuses.entry(status).or_default() += 1;
                }
                open = Some((sender, answered + 1));
            }
            Ok(Err(text)) => plan.error(&mut stats, done, text),
            Err(_) if deadline >= plan.end => break,
            Err(_) => {
                let text = format!("no complete answer within {} ms", plan.timeout.as_millis());
                plan.error(&mut stats, done, text);
            }
        }
    }
    stats
}

/// Opens a connection to the first of the target's addresses that accepts one.
async fn connect(plan: &Plan) -> Result<SendRequest<Empty<Bytes>>, String> {
    let mut last = format!("{} resolved to no address", plan.target);
    for &address in &plan.addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|err| format!("connected to {address}, but HTTP failed: {}", describe(&err)))?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                return Ok(sender);
            }
            Err(err) => last = format!("connecting to {address}: {err}"),
        }
    }
    Err(last)
}

/// Sends `request` and reads the whole answer; its status.
async fn exchange(
    sender: &mut SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
) -> Result<u16, String> {
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| format!("the request failed: {}", describe(&err)))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|err| format!("reading the answer failed: {}", describe(&err)))?;
    }
    Ok(status)
}

/// An error and its causes, `: `-separated (hyper's own text leaves the cause out).
fn describe(err: &hyper::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_ordered() {
        let mut micros: Vec<u32> = (1..=1000).rev().collect();
        let latency = Latency::of(&mut micros);
        assert_eq!(latency.p50, 0.5);
        assert_eq!(latency.p90, 0.9);
        assert_eq!(latency.p99, 0.99);
        assert_eq!(latency.max, 1.0);
        assert_eq!(latency.mean, 0.501); // 500.5 µs, rounded to the microsecond

        let latency = Latency::of(&mut [1234]);
        assert_eq!(
            (latency.p50, latency.p99, latency.max, latency.mean),
            (1.234, 1.234, 1.234, 1.234)
        );

        let mut skewed = vec![100; 98];
        skewed.extend([5_000, 2_000_000]);
        let latency = Latency::of(&mut skewed);
        assert_eq!((latency.p50, latency.p90), (0.1, 0.1));
        assert_eq!(latency.p99, 5.0);
        assert_eq!(latency.max, 2000.0);
        assert!(latency.p50 <= latency.p90 && latency.p90 <= latency.p99 && latency.p99 <= latency.max);

        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn the_report_is_one_line_with_the_documented_fields() {
        let report = LoadReport {
            target: "stack.bk-acme:8080".into(),
            connections: 16,
            duration_ms: 10_000,
            requests: 12_345,
            ok: 12_340,
            non_2xx: 5,
            errors: 2,
            rps: 1234.5,
            latency_ms: Latency::of(&mut [900, 1100, 1500, 30_000]),
            statuses: BTreeMap::from([(200, 12_340), (503, 5)]),
            first_error: Some("no complete answer within 2000 ms".into()),
        };
        let line = report.to_line();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with(
                r#"{"target":"stack.bk-acme:8080","connections":16,"duration_ms":10000,"requests":12345,"ok":12340,"non_2xx":5,"errors":2,"rps":1234.5,"latency_ms":{"p50":1.1,"p90":30.0,"p99":30.0,"max":30.0,"mean":8.375},"statuses":{"200":12340,"503":5},"first_error":"#
            ),
            "{line}"
        );
        assert!(report.succeeded());

        let failed = LoadReport {
            ok: 0,
            first_error: None,
            ..report
        };
        let value: serde_json::Value = serde_json::from_str(&failed.to_line()).unwrap();
        assert!(value.get("first_error").is_none());
        assert!(!failed.succeeded());
    }

    #[test]
    fn credential_header_values_are_kept_out_of_errors() {
        let mut options = LoadOptions::new();
        options.headers.push((
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer abc.def.ghi"),
        ));
        options.headers.push((
            HeaderName::from_static("x-bulkhead-org"),
            HeaderValue::from_static("org_visible"),
        ));
        let redactor = options.redactor();
        assert_eq!(
            redactor.text("sent abc.def.ghi for org_visible"),
            "sent <redacted> for org_visible"
        );
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_one_error() {
        let report = run("127.0.0.1", &LoadOptions::new()).await;
        assert_eq!((report.requests, report.errors), (0, 1));
        assert!(
            report.first_error.as_deref().unwrap().contains("cannot resolve"),
            "{report:?}"
        );
        assert!(!report.succeeded());
    }
}
