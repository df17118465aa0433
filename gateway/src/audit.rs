//! One JSON audit line per decision: who (subject, impersonator), which org/tenant/customer, what (method,
//! path without the query), which gate decided and why, when, how long, and the SHA-256 of the token, never
//! the token. The query string is left out because clients put tokens there.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

/// Longest path written to an audit line.
const MAX_PATH: usize = 1024;

/// One entry of the audit trail, told apart by its `event` field (`"event":"request"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent<'a> {
    /// One request's decision.
    Request(AuditRecord<'a>),
    /// A WebSocket tunnel opened (after its request's 101).
    TunnelOpen(crate::tunnel::TunnelRecord<'a>),
    /// A WebSocket tunnel closed: bytes each way, duration, reason.
    TunnelClose(crate::tunnel::TunnelRecord<'a>),
}

/// One decision. Borrows everything, so recording a line copies nothing but the serialized bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord<'a> {
    /// Time of the decision (RFC 3339 in the line).
    #[serde(serialize_with = "display")]
    pub time: Timestamp,
    /// The gateway's request id (also sent to the stack and the client).
    pub request_id: &'a str,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The gate that decided (`none` for an allowed request).
    pub gate: &'static str,
    /// The fixed reason (`ok` for an allowed request).
    pub reason: &'static str,
    /// `iss` (as claimed, for denials before the signature gate).
    pub issuer: Option<&'a str>,
    /// `kid` (as claimed, for denials before the signature gate).
    pub kid: Option<&'a str>,
    /// `sub` (verified).
    pub subject: Option<&'a str>,
    /// The org id (verified).
    pub org: Option<&'a str>,
    /// The routed Tenant.
    pub tenant: Option<&'a str>,
    /// The routed Customer.
    pub customer: Option<&'a str>,
    /// `act.sub` (verified).
    pub impersonator: Option<&'a str>,
    /// The request method.
    pub method: &'a str,
    /// The request path, without the query (at most 1024 bytes: see [`audit_path`]).
    pub path: &'a str,
    /// The status sent to the client.
    pub status: u16,
    /// Milliseconds from request to response head.
    pub latency_ms: f64,
    /// SHA-256 of the bearer token (lowercase hex in the line).
    #[serde(serialize_with = "hex")]
    pub token_sha256: Option<[u8; 32]>,
}

fn display<S: serde::Serializer>(value: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn hex<S: serde::Serializer>(digest: &Option<[u8; 32]>, serializer: S) -> Result<S::Ok, S::Error> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let Some(digest) = digest else {
        return serializer.serialize_none();
    };
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    // Only ASCII digits were written.
    serializer.serialize_str(std::str::from_utf8(&out).unwrap_or_default())
}

/// Caps a path for the audit line.
pub fn audit_path(path: &str) -> &str {
    let mut end = path.len().min(MAX_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// Where audit lines go.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Writes one entry.
    fn record(&self, event: &AuditEvent<'_>);

    /// Whether lines are reaching their destination. While not, the gateway forwards nothing (503
    /// `request/audit_unavailable`) and `/readyz` fails: no request reaches a stack without its audit line.
    fn healthy(&self) -> bool {
        true
    }
}

/// The writer audit lines go to.
type Output = Box<dyn std::io::Write + Send>;

/// Audit lines as JSON on standard output (logs go to standard error). The request path appends its line to a
/// buffer; a writer thread of its own writes the buffer out every few milliseconds, or at once when it grows
/// large. So a request costs no syscall and no thread switch for its audit line, and lines keep their order.
/// When the buffer is at its limit (standard output stalled) the request path waits: no line is ever dropped.
/// When a write fails, the bytes not written are kept and retried first, and the sink reports itself unhealthy
/// until a write succeeds again.
pub struct StdoutAudit {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StdoutAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutAudit")
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Wakes the writer early when the buffer is large.
    wake: std::sync::Condvar,
    /// Wakes requests waiting for room.
    room: std::sync::Condvar,
    /// Held while a chunk is taken and written, so chunks reach the output in the order they were taken: the
    /// output, and the chunk being written (bytes a failed write left are written before anything newer; in
    /// the steady state it is the spare buffer the pending one is swapped with, so neither is reallocated).
    out: Mutex<(Output, Vec<u8>)>,
    /// Cleared when a write fails, set again when one succeeds.
    healthy: std::sync::atomic::AtomicBool,
}

/// Buffered bytes that make the writer go at once.
const WRITE_AT: usize = 64 * 1024;
/// Buffered bytes beyond which the request path waits for the writer.
const LIMIT: usize = 16 * 1024 * 1024;
/// The longest a line waits in the buffer.
const INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

impl Shared {
    /// Takes whatever is buffered and writes it out, after anything a failed write left.
    fn write_out(&self) {
        use std::sync::atomic::Ordering;
        let Ok(mut out) = self.out.lock() else {
            return;
        };
        let (output, chunk) = &mut *out;
        match self.pending.lock() {
            // A failing output holds at most LIMIT bytes here; beyond, new lines wait in `pending`, and at its
            // limit the request path waits too.
            Ok(_) if chunk.len() >= LIMIT => {}
            Ok(mut pending) if chunk.is_empty() => std::mem::swap(&mut *pending, chunk),
            Ok(mut pending) => {
                chunk.extend_from_slice(&pending);
                pending.clear();
            }
            Err(_) => return,
        }
        self.room.notify_all();
        if chunk.is_empty() {
            return;
        }
        let mut written = 0;
        let result = loop {
            match output.write(&chunk[written..]) {
                Ok(0) => break Err(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                Ok(n) => {
                    written += n;
                    if written == chunk.len() {
                        break output.flush();
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
        };
        chunk.drain(..written);
        match result {
            Ok(()) => {
                if !self.healthy.swap(true, Ordering::AcqRel) {
                    tracing::warn!("audit output recovered; forwarding again");
                }
            }
            Err(err) => {
                if self.healthy.swap(false, Ordering::AcqRel) {
                    tracing::error!(error = %err, "cannot write audit lines; refusing requests until it works again");
                }
            }
        }
    }
}

impl StdoutAudit {
    /// Starts the writer thread, writing to standard output.
    pub fn start() -> std::io::Result<StdoutAudit> {
        StdoutAudit::start_with(Box::new(std::io::stdout()))
    }

    /// Starts the writer thread, writing to `output`.
    pub fn start_with(output: Output) -> std::io::Result<StdoutAudit> {
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            wake: std::sync::Condvar::new(),
            room: std::sync::Condvar::new(),
            out: Mutex::new((output, Vec::new())),
            healthy: std::sync::atomic::AtomicBool::new(true),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                loop {
                    if let Ok(pending) = writer.pending.lock() {
                        let _ = writer
                            .wake
                            .wait_timeout_while(pending, INTERVAL, |p| p.len() < WRITE_AT);
                    }
                    writer.write_out();
                }
            })?;
        Ok(StdoutAudit { shared })
    }

    /// Writes out every line recorded so far (at shutdown).
    pub fn flush(&self) {
        self.shared.write_out();
    }
}

impl AuditSink for StdoutAudit {
    fn record(&self, event: &AuditEvent<'_>) {
        let Ok(mut pending) = self.shared.pending.lock() else {
            tracing::error!("the audit buffer is poisoned; an audit line was lost");
            return;
        };
        while pending.len() >= LIMIT {
            pending = match self.shared.room.wait(pending) {
                Ok(p) => p,
                Err(_) => return,
            };
        }
        // Serialized straight into the buffer; a failure (there is none for this type) leaves no partial line.
        let before = pending.len();
        if serde_json::to_writer(&mut *pending, event).is_ok() {
            pending.push(b'\n');
        } else {
            pending.truncate(before);
        }
        if pending.len() >= WRITE_AT {
            self.shared.wake.notify_one();
        }
    }

    fn healthy(&self) -> bool {
        self.shared.healthy.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Audit lines kept in memory, as JSON values (for tests and embedding).
#[derive(Debug)]
pub struct MemoryAudit {
    lines: Mutex<Vec<serde_json::Value>>,
    healthy: std::sync::atomic::AtomicBool,
}

impl Default for MemoryAudit {
    fn default() -> Self {
        MemoryAudit {
            lines: Mutex::default(),
            healthy: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

impl MemoryAudit {
    /// Makes [`AuditSink::healthy`] answer `healthy` (to test what the gateway does when audit output fails).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, std::sync::atomic::Ordering::Release);
    }

    /// Every line recorded so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: &AuditEvent<'_>) {
        if let (Ok(value), Ok(mut lines)) = (serde_json::to_value(event), self.lines.lock()) {
            lines.push(value);
        }
    }

    fn healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_json_object_with_every_field() {
        let r = AuditRecord {
            request_id: "r1",
            decision: "deny",
            gate: "signature",
            reason: "invalid",
            issuer: Some("https://i"),
            kid: Some("k"),
            path: "/x",
            latency_ms: 0.5,
            token_sha256: Some([0xab; 32]),
            ..line(401)
        };
        let sink = MemoryAudit::default();
        sink.record(&AuditEvent::Request(r));
        let v = &sink.lines()[0];
        for field in [
            "event",
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
        assert_eq!(v["event"], "request");
        assert_eq!(v["gate"], "signature");
        assert_eq!(v["time"], "2026-11-26T07:00:00Z");
        assert_eq!(v["token_sha256"], "ab".repeat(32));
        assert_eq!(v["subject"], serde_json::Value::Null);
        assert_eq!(audit_path(&"é".repeat(1000)).len(), 1024);
    }

    /// An output that takes at most 7 bytes per write and fails once its byte budget is spent.
    struct Flaky {
        budget: Arc<std::sync::atomic::AtomicUsize>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl std::io::Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            use std::sync::atomic::Ordering;
            let budget = self.budget.load(Ordering::SeqCst);
            if budget == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(7).min(budget);
            self.budget.store(budget - n, Ordering::SeqCst);
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(n: u16) -> AuditRecord<'static> {
        AuditRecord {
            time: "2026-11-26T07:00:00Z".parse().unwrap(),
            request_id: "r",
            decision: "allow",
            gate: "none",
            reason: "ok",
            issuer: None,
            kid: None,
            subject: None,
            org: None,
            tenant: None,
            customer: None,
            impersonator: None,
            method: "GET",
            path: "/",
            status: n,
            latency_ms: 0.0,
            token_sha256: None,
        }
    }

    #[test]
    fn a_failing_output_makes_the_sink_unhealthy_and_loses_no_line() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let budget = Arc::new(AtomicUsize::new(30)); // fails part-way through the first line
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = StdoutAudit::start_with(Box::new(Flaky {
            budget: budget.clone(),
            written: written.clone(),
        }))
        .unwrap();
        assert!(sink.healthy());
        sink.record(&AuditEvent::Request(line(1)));
        sink.record(&AuditEvent::Request(line(2)));
        sink.flush();
        assert!(!sink.healthy(), "a failed write is reported");
        assert_eq!(written.lock().unwrap().len(), 30);
        sink.record(&AuditEvent::Request(line(3)));
        sink.flush();
        assert!(!sink.healthy());
        budget.store(usize::MAX, Ordering::SeqCst);
        sink.flush();
        assert!(sink.healthy(), "recovers once a write succeeds");
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let statuses: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            statuses,
            vec![1, 2, 3],
            "every line once, whole, in order: {text}"
        );
    }
}
