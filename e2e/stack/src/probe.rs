//! The probe: can this pod reach that address? One attempt, one JSON line.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// The largest answer body the probe reads with `--http`.
const MAX_ANSWER: usize = 1 << 20;

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The TCP connection (and the HTTP exchange, when asked for) succeeded.
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

/// The probe's single line of output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The target as given (`host:port`).
    pub target: String,
    pub result: Outcome,
    /// The connected address, or what went wrong.
    pub detail: String,
    pub elapsed_ms: u64,
    /// With `--http`: the answer's status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// With `--http`: the answer's body, parsed as JSON (a string when it is not JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<serde_json::Value>,
}

impl Report {
    /// The report as one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            format!(r#"{{"target":"","result":"error","detail":"cannot encode the report: {err}"}}"#)
        })
    }

    /// Whether the probe succeeded (exit code 0).
    pub fn succeeded(&self) -> bool {
        self.result == Outcome::Connected
    }
}

/// How to probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions {
    /// The budget for everything: name resolution, connection and, with `http`, the answer.
    pub timeout: Duration,
    /// Send `GET /` after connecting and read the answer.
    pub http: bool,
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
pub async fn probe(target: &str, options: ProbeOptions) -> Report {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut report = Report {
        target: target.to_owned(),
        result: Outcome::Connected,
        detail: String::new(),
        elapsed_ms: 0,
        status: None,
        answer: None,
    };
    match attempt(target, options.http, deadline, &mut report).await {
        Ok(()) => {}
        Err(failure) => {
            report.result = failure.outcome;
            report.detail = failure.detail;
        }
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

async fn attempt(target: &str, http: bool, deadline: Instant, report: &mut Report) -> Result<(), Failure> {
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
    if !http {
        return Ok(());
    }
    match timeout_at(deadline, exchange(stream, target)).await {
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
            report.answer =
                Some(serde_json::from_slice(&body).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
                }));
            Ok(())
        }
    }
}

fn connect_failure(address: SocketAddr, err: &io::Error) -> Failure {
    let outcome = match err.kind() {
        io::ErrorKind::ConnectionRefused => Outcome::Refused,
        io::ErrorKind::TimedOut => Outcome::Timeout,
        _ => Outcome::Error,
    };
    Failure::new(outcome, format!("connecting to {address}: {err}"))
}

/// Sends `GET /` on the connection and returns the answer's status and body.
async fn exchange(stream: TcpStream, target: &str) -> Result<(u16, Bytes), String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get("/")
        .header(hyper::header::HOST, target)
        .header(hyper::header::USER_AGENT, "bulkhead-stack-probe")
        .body(Empty::<Bytes>::new())
        .map_err(|err| err.to_string())?;
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

    #[test]
    fn the_report_is_one_line_with_the_documented_fields() {
        let report = Report {
            target: "198.18.0.5:8080".into(),
            result: Outcome::Refused,
            detail: "connecting to 198.18.0.5:8080: Connection refused".into(),
            elapsed_ms: 3,
            status: None,
            answer: None,
        };
        let line = report.to_line();
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"target":"198.18.0.5:8080","result":"refused","detail":"#));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["elapsed_ms"], 3);
        assert!(value.get("answer").is_none());
        assert!(!report.succeeded());
    }

    #[tokio::test]
    async fn a_target_without_a_port_is_an_error() {
        let options = ProbeOptions {
            timeout: Duration::from_secs(5),
            http: false,
        };
        let report = probe("127.0.0.1", options).await;
        assert_eq!(report.result, Outcome::Error);
        assert!(report.detail.contains("cannot resolve"), "{}", report.detail);
    }
}
