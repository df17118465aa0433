//! The probe: can this pod reach that address? One JSON line per attempt.
//!
//! [`probe`] makes one attempt at one target; [`probe_all`] attempts several targets at once; [`repeat`]
//! attempts one target again and again until the outcome switches (how long a connection is still let through
//! after a NetworkPolicy change). With HTTP options the probe also sends a request and reports the answer's
//! status and body. Credential-bearing request headers never come back in the output: see
//! [`is_credential_header`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper::http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::redact::Redactor;

/// The largest answer body the probe reads with HTTP.
const MAX_ANSWER: usize = 1 << 20;
/// The most of a non-JSON answer body that is printed (bytes, cut at a character boundary).
pub const MAX_BODY_PRINTED: usize = 4096;
/// The probe's `User-Agent`, unless a `--header` sets one.
pub const USER_AGENT_VALUE: &str = "bulkhead-stack-probe";

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The TCP connection (and the HTTP exchange, when asked for) succeeded, whatever the HTTP status.
    Connected,
    /// The target answered with a reset: reachable, nothing listening (or a policy that rejects).
    Refused,
    /// No answer in time: typically a policy that drops.
    Timeout,
    /// Anything else: the name did not resolve, the network is unreachable, the HTTP exchange failed.
    Error,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connected => "connected",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Error => "error",
        })
    }
}

/// One line of the probe's output: one attempt at one target.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The target as given (`host:port`).
    pub target: String,
    pub result: Outcome,
    /// The connected address, or what went wrong.
    pub detail: String,
    pub elapsed_ms: u64,
    /// With HTTP: the answer's status code (any status counts as connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// With HTTP: the answer's body when it is JSON, parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<serde_json::Value>,
    /// With HTTP: the answer's body when it is not JSON, as text (invalid UTF-8 replaced), at most
    /// [`MAX_BODY_PRINTED`] bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Whether `body` was cut short.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    /// With [`repeat`]: the attempt's number, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
    /// With [`repeat`]: when the attempt started, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

impl Report {
    /// The report as one line of JSON.
    pub fn to_line(&self) -> String {
        to_line(self)
    }

    /// Whether the probe connected (exit code 0).
    pub fn succeeded(&self) -> bool {
        self.result == Outcome::Connected
    }
}

/// Any serializable value as one line of JSON.
pub fn to_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|err| {
        format!(r#"{{"target":"","result":"error","detail":"cannot encode the report: {err}"}}"#)
    })
}

/// The HTTP request the probe sends after connecting.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Path and optional query of the `GET`.
    pub path: PathAndQuery,
    /// Extra request headers, in order, sent as given. A `Host` or `User-Agent` among them replaces the
    /// probe's own (the target, and [`USER_AGENT_VALUE`]).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Default for HttpOptions {
    /// `GET /` without extra headers.
    fn default() -> Self {
        Self {
            path: PathAndQuery::from_static("/"),
            headers: Vec::new(),
        }
    }
}

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The budget for one attempt: name resolution, connection and, with `http`, the answer.
    pub timeout: Duration,
    /// Send a `GET` after connecting and read the answer.
    pub http: Option<HttpOptions>,
}

impl ProbeOptions {
    /// A plain TCP connection.
    pub fn tcp(timeout: Duration) -> Self {
        Self { timeout, http: None }
    }

    /// A TCP connection and an HTTP request.
    pub fn http(timeout: Duration, http: HttpOptions) -> Self {
        Self {
            timeout,
            http: Some(http),
        }
    }

    /// The values of the credential-bearing headers, to be kept out of the output.
    fn redactor(&self) -> Redactor {
        let mut redactor = Redactor::default();
        for (name, value) in self.http.iter().flat_map(|http| &http.headers) {
            if is_credential_header(name) {
                redactor.add_header_value(&String::from_utf8_lossy(value.as_bytes()));
            }
        }
        redactor
    }
}

/// Whether a request header carries credentials, so its value is hidden wherever it would show up in the
/// output (an upstream that echoes it back, a body that quotes it): `Authorization`, `Proxy-Authorization`,
/// `Cookie`, and any name containing `auth`, `cookie`, `token`, `secret`, `password`, `session` or `key`.
/// Other headers (such as spoofed identity headers) stay visible in the answer, since the point is to see
/// whether they arrived.
pub fn is_credential_header(name: &HeaderName) -> bool {
    const WORDS: [&str; 7] = ["auth", "cookie", "token", "secret", "password", "session", "key"];
    let name = name.as_str();
    WORDS.iter().any(|word| name.contains(word))
}

/// Why a `--header` argument was rejected. Never carries the argument itself, which may hold a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// No `:` separating the name from the value.
    NoColon,
    /// The name is empty or has characters a header name cannot have.
    BadName,
    /// The value has characters a header value cannot have (control characters, line breaks).
    BadValue,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoColon => "expected `Name: value`, found no ':'",
            Self::BadName => "the part before the first ':' is not a valid header name",
            Self::BadValue => "the value has characters a header value cannot have",
        })
    }
}

impl std::error::Error for HeaderError {}

/// Parses `Name: value` (the name up to the first `:`; spaces and tabs around the value dropped).
pub fn parse_header(raw: &str) -> Result<(HeaderName, HeaderValue), HeaderError> {
    let (name, value) = raw.split_once(':').ok_or(HeaderError::NoColon)?;
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::BadName)?;
    let value = value.trim_matches([' ', '\t']);
    let value = HeaderValue::from_str(value).map_err(|_| HeaderError::BadValue)?;
    Ok((name, value))
}

/// Parses a request path such as `/x` or `/x?y=1`.
pub fn parse_path(raw: &str) -> Result<PathAndQuery, String> {
    if !raw.starts_with('/') {
        return Err(format!("{raw:?} does not start with '/'"));
    }
    raw.parse::<PathAndQuery>()
        .map_err(|err| format!("{raw:?} is not a valid path: {err}"))
}

struct Failure {
    outcome: Outcome,
    detail: String,
}

impl Failure {
    fn new(outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            detail: detail.into(),
        }
    }
}

/// Probes `target` (`host:port`, the host an IP address or a name) once.
pub async fn probe(target: &str, options: &ProbeOptions) -> Report {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut report = Report {
        target: target.to_owned(),
        result: Outcome::Connected,
        detail: String::new(),
        elapsed_ms: 0,
        status: None,
        answer: None,
        body: None,
        body_truncated: false,
        attempt: None,
        at_ms: None,
    };
    let redactor = options.redactor();
    if let Err(failure) = attempt(target, options.http.as_ref(), deadline, &redactor, &mut report).await {
        report.result = failure.outcome;
        report.detail = failure.detail;
    }
    redactor.string(&mut report.detail);
    report.elapsed_ms = millis(started.elapsed());
    report
}

/// Probes every target at once, each with the same options; the reports come in the order of `targets`.
pub async fn probe_all(targets: &[String], options: &ProbeOptions) -> Vec<Report> {
    let options = Arc::new(options.clone());
    let tasks: Vec<_> = targets
        .iter()
        .map(|target| {
            let (target, options) = (target.clone(), Arc::clone(&options));
            tokio::spawn(async move { probe(&target, &options).await })
        })
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    for (task, target) in tasks.into_iter().zip(targets) {
        reports.push(task.await.unwrap_or_else(|err| Report {
            target: target.clone(),
            result: Outcome::Error,
            detail: format!("the probe task failed: {err}"),
            elapsed_ms: 0,
            status: None,
            answer: None,
            body: None,
            body_truncated: false,
            attempt: None,
            at_ms: None,
        }));
    }
    reports
}

/// The outcome [`repeat`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Until {
    /// Any failure to connect: refused, timeout, or error (unreachable, no name, a failed HTTP exchange).
    Refused,
    /// A successful connection (and HTTP exchange, with HTTP).
    Connected,
}

impl Until {
    /// Whether an attempt's outcome is the one waited for.
    pub fn matches(self, outcome: Outcome) -> bool {
        (outcome == Outcome::Connected) == (self == Self::Connected)
    }
}

/// How [`repeat`] repeats.
#[derive(Debug, Clone, Copy)]
pub struct RepeatOptions {
    pub until: Until,
    /// From the start of one attempt to the start of the next (the next starts at once when an attempt takes
    /// longer).
    pub interval: Duration,
    /// No attempt starts later than this after the first; the last one still runs to its end.
    pub max: Duration,
}

/// The last line of [`repeat`].
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Always `true`: tells the summary from the attempts.
    pub summary: bool,
    pub target: String,
    pub until: Until,
    /// Whether an attempt had the outcome waited for.
    pub matched: bool,
    /// When the first matching attempt started (ms since the Unix epoch); `null` when none matched.
    pub first_match_at_ms: Option<u64>,
    /// When the first attempt started (ms since the Unix epoch).
    pub started_at_ms: u64,
    pub attempts: u64,
    pub connected_attempts: u64,
    /// From the start of the first attempt to the end of the last.
    pub elapsed_ms: u64,
}

/// Probes `target` every `repeat.interval` until an attempt's outcome matches `repeat.until` or `repeat.max` has
/// passed; hands each attempt's report (with `attempt` and `at_ms`) to `each` as soon as it is done.
pub async fn repeat(
    target: &str,
    options: &ProbeOptions,
    repeat: &RepeatOptions,
    mut each: impl FnMut(&Report),
) -> Summary {
    let started = Instant::now();
    let last_start = started + repeat.max;
    let mut summary = Summary {
        summary: true,
        target: target.to_owned(),
        until: repeat.until,
        matched: false,
        first_match_at_ms: None,
        started_at_ms: unix_millis(),
        attempts: 0,
        connected_attempts: 0,
        elapsed_ms: 0,
    };
    loop {
        let attempt_started = Instant::now();
        let at_ms = unix_millis();
        let mut report = probe(target, options).await;
        summary.attempts += 1;
        report.attempt = Some(summary.attempts);
        report.at_ms = Some(at_ms);
        if report.succeeded() {
            summary.connected_attempts += 1;
        }
        each(&report);
        if repeat.until.matches(report.result) {
            summary.matched = true;
            summary.first_match_at_ms = Some(at_ms);
            break;
        }
        let next = (attempt_started + repeat.interval).max(Instant::now());
        if next > last_start {
            break;
        }
        sleep_until(next).await;
    }
    summary.elapsed_ms = millis(started.elapsed());
    summary
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (0 for a clock set before 1970).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

async fn attempt(
    target: &str,
    http: Option<&HttpOptions>,
    deadline: Instant,
    redactor: &Redactor,
    report: &mut Report,
) -> Result<(), Failure> {
    let addresses: Vec<SocketAddr> = match timeout_at(deadline, tokio::net::lookup_host(target)).await {
        Err(_) => return Err(Failure::new(Outcome::Timeout, "resolving the name timed out")),
        Ok(Err(err)) => {
            return Err(Failure::new(
                Outcome::Error,
                format!("cannot resolve {target}: {err}"),
            ));
        }
        Ok(Ok(addresses)) => addresses.collect(),
    };
    let mut last = Failure::new(Outcome::Error, format!("{target} resolved to no address"));
    let mut connected = None;
    for address in addresses {
        match timeout_at(deadline, TcpStream::connect(address)).await {
            Err(_) => {
                last = Failure::new(Outcome::Timeout, format!("connecting to {address} timed out"));
                break;
            }
            Ok(Err(err)) => last = connect_failure(address, &err),
            Ok(Ok(stream)) => {
                connected = Some((address, stream));
                break;
            }
        }
    }
    let Some((address, stream)) = connected else {
        return Err(last);
    };
    report.detail = address.to_string();
    let Some(http) = http else {
        return Ok(());
    };
    match timeout_at(deadline, exchange(stream, target, http)).await {
        Err(_) => Err(Failure::new(
            Outcome::Timeout,
            format!("connected to {address}, but no HTTP answer in time"),
        )),
        Ok(Err(detail)) => Err(Failure::new(
            Outcome::Error,
            format!("connected to {address}, but HTTP failed: {detail}"),
        )),
        Ok(Ok((status, body))) => {
            report.status = Some(status);
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(mut answer) => {
                    redactor.json(&mut answer);
                    report.answer = Some(answer);
                }
                Err(_) => {
                    let text = String::from_utf8_lossy(&body);
                    let (text, truncated) = truncate(&redactor.text(&text), MAX_BODY_PRINTED);
                    report.body = Some(text);
                    report.body_truncated = truncated;
                }
            }
            Ok(())
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary, and whether anything was cut.
fn truncate(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

fn connect_failure(address: SocketAddr, err: &io::Error) -> Failure {
    let outcome = match err.kind() {
        io::ErrorKind::ConnectionRefused => Outcome::Refused,
        io::ErrorKind::TimedOut => Outcome::Timeout,
        _ => Outcome::Error,
    };
    Failure::new(outcome, format!("connecting to {address}: {err}"))
}

/// Sends the `GET` on the connection and returns the answer's status and body. Errors never quote the
/// request's headers.
async fn exchange(stream: TcpStream, target: &str, http: &HttpOptions) -> Result<(u16, Bytes), String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let given = |name: &HeaderName| http.headers.iter().any(|(n, _)| n == name);
    let mut request = Request::get(http.path.as_str());
    if !given(&HOST) {
        request = request.header(HOST, target);
    }
    if !given(&USER_AGENT) {
        request = request.header(USER_AGENT, USER_AGENT_VALUE);
    }
    for (name, value) in &http.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|err| format!("building the request: {err}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|err| format!("reading the answer: {err}"))?
        .to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(result: Outcome) -> Report {
        Report {
            target: "198.18.0.5:8080".into(),
            result,
            detail: "connecting to 198.18.0.5:8080: Connection refused".into(),
            elapsed_ms: 3,
            status: None,
            answer: None,
            body: None,
            body_truncated: false,
            attempt: None,
            at_ms: None,
        }
    }

    #[test]
    fn the_report_is_one_line_with_the_documented_fields() {
        let report = report(Outcome::Refused);
        let line = report.to_line();
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"target":"198.18.0.5:8080","result":"refused","detail":"#));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["elapsed_ms"], 3);
        for absent in ["status", "answer", "body", "body_truncated", "attempt", "at_ms"] {
            assert!(value.get(absent).is_none(), "{absent} in {line}");
        }
        assert!(!report.succeeded());
    }

    #[test]
    fn an_http_report_has_status_and_body_and_a_repeated_one_its_time() {
        let mut report = report(Outcome::Connected);
        report.status = Some(403);
        report.body = Some("forbidden".into());
        report.body_truncated = true;
        report.attempt = Some(2);
        report.at_ms = Some(1_700_000_000_123);
        let value: serde_json::Value = serde_json::from_str(&report.to_line()).unwrap();
        assert_eq!(value["result"], "connected");
        assert_eq!(value["status"], 403);
        assert_eq!(value["body"], "forbidden");
        assert_eq!(value["body_truncated"], true);
        assert_eq!(value["attempt"], 2);
        assert_eq!(value["at_ms"], 1_700_000_000_123_u64);
    }

    #[test]
    fn the_summary_line_names_the_first_match() {
        let summary = Summary {
            summary: true,
            target: "10.0.0.1:80".into(),
            until: Until::Refused,
            matched: false,
            first_match_at_ms: None,
            started_at_ms: 5,
            attempts: 3,
            connected_attempts: 3,
            elapsed_ms: 250,
        };
        let value: serde_json::Value = serde_json::from_str(&to_line(&summary)).unwrap();
        assert_eq!(value["summary"], true);
        assert_eq!(value["until"], "refused");
        assert_eq!(value["matched"], false);
        assert!(value["first_match_at_ms"].is_null());
        assert_eq!(value["attempts"], 3);
        assert_eq!(value["connected_attempts"], 3);
    }

    #[test]
    fn refused_means_any_failure_to_connect() {
        for outcome in [Outcome::Refused, Outcome::Timeout, Outcome::Error] {
            assert!(Until::Refused.matches(outcome));
            assert!(!Until::Connected.matches(outcome));
        }
        assert!(Until::Connected.matches(Outcome::Connected));
        assert!(!Until::Refused.matches(Outcome::Connected));
    }

    #[test]
    fn headers_are_parsed_and_errors_never_quote_them() {
        let (name, value) = parse_header("Authorization: Bearer abc.def").unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer abc.def");
        let (name, value) = parse_header("X-Bulkhead-Org:org_1:x\t").unwrap();
        assert_eq!(name, "x-bulkhead-org");
        assert_eq!(value, "org_1:x");
        assert_eq!(parse_header("X-Empty:").unwrap().1, "");
        assert_eq!(parse_header("Bearer abc.def"), Err(HeaderError::NoColon));
        assert_eq!(
            parse_header("Authorization Bearer abc:def"),
            Err(HeaderError::BadName)
        );
        assert_eq!(parse_header(": x"), Err(HeaderError::BadName));
        assert_eq!(parse_header("X-A: a\nb"), Err(HeaderError::BadValue));
        for err in [HeaderError::NoColon, HeaderError::BadName, HeaderError::BadValue] {
            assert!(!err.to_string().contains("abc"));
        }
    }

    #[test]
    fn credential_headers_are_recognised_by_name() {
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "x-auth-token",
            "x-api-key",
        ] {
            assert!(is_credential_header(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["x-bulkhead-org", "x-bulkhead-tenant", "accept", "host"] {
            assert!(!is_credential_header(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn paths_must_be_absolute() {
        assert_eq!(parse_path("/x?y=1").unwrap().as_str(), "/x?y=1");
        assert!(parse_path("x").is_err());
        assert!(parse_path("/a b").is_err());
    }

    #[test]
    fn long_bodies_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("short", 10), ("short".to_owned(), false));
        let (cut, truncated) = truncate("aé", 2);
        assert_eq!((cut.as_str(), truncated), ("a", true));
        let (cut, truncated) = truncate(&"x".repeat(5000), MAX_BODY_PRINTED);
        assert_eq!((cut.len(), truncated), (MAX_BODY_PRINTED, true));
    }

    #[tokio::test]
    async fn a_target_without_a_port_is_an_error() {
        let report = probe("127.0.0.1", &ProbeOptions::tcp(Duration::from_secs(5))).await;
        assert_eq!(report.result, Outcome::Error);
        assert!(report.detail.contains("cannot resolve"), "{}", report.detail);
    }
}
