//! One JSON audit line per decision: who (subject, impersonator), which org/tenant/customer, what (method,
//! path without the query), which gate decided and why, when, how long, and the SHA-256 of the token, never
//! the token. The query string is left out because clients put tokens there.

use std::io::Write as _;
use std::sync::Mutex;

use serde::Serialize;

/// Longest path written to an audit line.
const MAX_PATH: usize = 1024;

/// One decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 time of the decision.
    pub time: String,
    /// The gateway's request id (also sent to the stack and the client).
    pub request_id: String,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The gate that decided (`none` for an allowed request).
    pub gate: &'static str,
    /// The fixed reason (`ok` for an allowed request).
    pub reason: &'static str,
    /// `iss` (as claimed, for denials before the signature gate).
    pub issuer: Option<String>,
    /// `kid` (as claimed, for denials before the signature gate).
    pub kid: Option<String>,
    /// `sub` (verified).
    pub subject: Option<String>,
    /// The org id (verified).
    pub org: Option<String>,
    /// The routed Tenant.
    pub tenant: Option<String>,
    /// The routed Customer.
    pub customer: Option<String>,
    /// `act.sub` (verified).
    pub impersonator: Option<String>,
    /// The request method.
    pub method: String,
    /// The request path, without the query.
    pub path: String,
    /// The status sent to the client.
    pub status: u16,
    /// Milliseconds from request to response head.
    pub latency_ms: f64,
    /// Hex SHA-256 of the bearer token.
    pub token_sha256: Option<String>,
}

/// Caps a path for the audit line.
pub fn audit_path(path: &str) -> String {
    let mut end = path.len().min(MAX_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_owned()
}

/// Where audit lines go.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Writes one record.
    fn record(&self, record: &AuditRecord);
}

/// Audit lines as JSON on standard output (logs go to standard error), written by a thread of their own: the
/// request path hands a line over and goes on; the writer batches whatever has queued into one write. When the
/// queue is full (standard output stalled) the request path waits: no line is ever dropped.
#[derive(Debug)]
pub struct StdoutAudit {
    lines: std::sync::mpsc::SyncSender<Message>,
}

enum Message {
    Line(Vec<u8>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Lines that may wait for the writer before the request path blocks.
const QUEUE: usize = 65_536;

impl StdoutAudit {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<StdoutAudit> {
        let (lines, queue) = std::sync::mpsc::sync_channel::<Message>(QUEUE);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
                while let Ok(first) = queue.recv() {
                    let mut acks = Vec::new();
                    let mut next = Some(first);
                    while let Some(message) = next {
                        match message {
                            Message::Line(line) => {
                                if out.write_all(&line).is_err() {
                                    tracing::error!("cannot write an audit line to stdout");
                                }
                            }
                            Message::Flush(ack) => acks.push(ack),
                        }
                        next = queue.try_recv().ok();
                    }
                    if out.flush().is_err() {
                        tracing::error!("cannot write audit lines to stdout");
                    }
                    for ack in acks {
                        let _ = ack.send(());
                    }
                }
            })?;
        Ok(StdoutAudit { lines })
    }

    /// Waits until every line recorded so far is written (at shutdown).
    pub fn flush(&self) {
        let (ack, done) = std::sync::mpsc::channel();
        if self.lines.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Line(_) => "Line",
            Message::Flush(_) => "Flush",
        })
    }
}

impl AuditSink for StdoutAudit {
    fn record(&self, record: &AuditRecord) {
        if let Ok(mut line) = serde_json::to_vec(record) {
            line.push(b'\n');
            if self.lines.send(Message::Line(line)).is_err() {
                tracing::error!("the audit writer has stopped; an audit line was lost");
            }
        }
    }
}

/// Audit lines kept in memory, as JSON values (for tests and embedding).
#[derive(Debug, Default)]
pub struct MemoryAudit {
    lines: Mutex<Vec<serde_json::Value>>,
}

impl MemoryAudit {
    /// Every line recorded so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, record: &AuditRecord) {
        if let (Ok(value), Ok(mut lines)) = (serde_json::to_value(record), self.lines.lock()) {
            lines.push(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_json_object_with_every_field() {
        let r = AuditRecord {
            time: "2026-11-26T07:00:00Z".into(),
            request_id: "r1".into(),
            decision: "deny",
            gate: "signature",
            reason: "invalid",
            issuer: Some("https://i".into()),
            kid: Some("k".into()),
            subject: None,
            org: None,
            tenant: None,
            customer: None,
            impersonator: None,
            method: "GET".into(),
            path: "/x".into(),
            status: 401,
            latency_ms: 0.5,
            token_sha256: Some("ab".repeat(32)),
        };
        let sink = MemoryAudit::default();
        sink.record(&r);
        let v = &sink.lines()[0];
        for field in [
            "time",
            "request_id",
            "decision",
            "gate",
            "reason",
            "issuer",
            "kid",
            "subject",
            "org",
            "tenant",
            "customer",
            "impersonator",
            "method",
            "path",
            "status",
            "latency_ms",
            "token_sha256",
        ] {
            assert!(v.get(field).is_some(), "{field}");
        }
        assert_eq!(v["gate"], "signature");
        assert_eq!(audit_path(&"é".repeat(1000)).len(), 1024);
    }
}
