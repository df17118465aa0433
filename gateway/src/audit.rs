//! One JSON audit line per decision: who (subject, impersonator), which org/tenant/customer, what (method,
//! path without the query), which gate decided and why, when, how long, and the SHA-256 of the token, never
//! the token. The query string is left out because clients put tokens there.
//!
//! # The chain
//!
//! [`StdoutAudit`] chains its lines so that a removed, edited, reordered or cut-off line shows
//! ([`verify`] checks a log; `bulkhead-gateway audit verify FILE...` runs it). Every line, whatever its
//! `event`, starts with three fields:
//!
//! ```text
//! {"prev":"<hex SHA-256 of the previous line>","instance":"<instance id>","seq":<n>,"event":...}
//! ```
//!
//! - `instance` names one chain: the configured name (the pod name in the chart) and a nonce drawn at start
//!   ([`ChainConfig::new`]), so every process, a restarted one too, writes a chain of its own. Several
//!   replicas' lines may be interleaved in one log; each chain is checked on its own.
//! - `seq` counts the chain's lines from 0, without gaps.
//! - `prev` is the lowercase hex SHA-256 of the exact bytes of the chain's previous line, without its newline;
//!   the first line's is [`GENESIS`] (64 zeros).
//! - Line 0 is a `"event":"checkpoint"` line of `"kind":"start"`; one of `"kind":"periodic"` follows every
//!   `audit.checkpoint_seconds`, and one of `"kind":"shutdown"` ends the chain once the gateway has decided
//!   its last request. Each carries `time`, `records` (the chain's lines before it that are not checkpoints)
//!   and `interval_seconds`. A chain without its shutdown checkpoint was cut off, or its process is still
//!   running or was killed; the last periodic checkpoint bounds what can have gone unnoticed.
//!
//! The request path does no hashing: it writes `prev` as 64 zeros, the instance id (encoded once) and the
//! sequence number in front of the event, serialized straight into the shared buffer as before. The writer
//! thread fills each `prev` in, hashing every line once (SHA-256, with the CPU's SHA extensions where
//! present), just before the bytes go out; lines leave in buffer order, which is chain order.
//!
//! A hash chain without a key shows tampering by anyone who does not rewrite every later line as well; the
//! protection comes from shipping the lines off the node as they are written (see docs/gateway.md), so a
//! second copy exists that the writer of the first cannot reach.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

pub mod verify;

/// Longest path written to an audit line.
const MAX_PATH: usize = 1024;

/// The `prev` of a chain's first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where `prev`'s 64 hex digits sit in every chained line: right after `{"prev":"`.
const PREV_AT: usize = 9;

/// One entry of the audit trail, told apart by its `event` field (`"event":"request"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent<'a> {
    /// One request's decision.
    Request(AuditRecord<'a>),
    /// A stream or connection the HTTP/2 layer refused on its own, before any request existed.
    ProtocolError(ProtocolRecord),
    /// A WebSocket tunnel opened (after its request's 101).
    TunnelOpen(TunnelRecord<'a>),
    /// A WebSocket tunnel closed: bytes each way, duration, reason.
    TunnelClose(TunnelRecord<'a>),
}

/// A refusal by the HTTP/2 layer: the frame it sent, the stream and the error code's name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtocolRecord {
    /// Time of the refusal.
    #[serde(serialize_with = "display")]
    pub time: Timestamp,
    /// Always `deny`.
    pub decision: &'static str,
    /// `http2`.
    pub protocol: &'static str,
    /// `rst_stream` or `goaway`.
    pub frame: &'static str,
    /// The refused stream (for a GOAWAY, the last stream the server processed).
    pub stream: u32,
    /// The error code's name (`protocol_error`, `refused_stream`, ...).
    pub reason: &'static str,
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
    /// The request method; `null` when the HTTP layer refused a request it could not read.
    pub method: Option<&'a str>,
    /// The request path, without the query (at most 1024 bytes: see [`audit_path`]); `null` when unknown.
    pub path: Option<&'a str>,
    /// The status sent to the client.
    pub status: u16,
    /// Milliseconds from request to response head.
    pub latency_ms: f64,
    /// SHA-256 of the bearer token (lowercase hex in the line).
    #[serde(serialize_with = "hex")]
    pub token_sha256: Option<[u8; 32]>,
}

/// Something written as one JSON object into an audit line.
pub trait JsonLine {
    /// Appends the object to `out`; false (with `out` possibly extended) if it cannot be serialized.
    fn write_json(&self, out: &mut Vec<u8>) -> bool;
}

impl<T: Serialize> JsonLine for T {
    fn write_json(&self, out: &mut Vec<u8>) -> bool {
        serde_json::to_writer(out, self).is_ok()
    }
}

/// A request decision's line, written by hand: the same bytes as serde_json writes for
/// `AuditEvent::Request` (a test holds them equal), at a fraction of the cost, because the keys are literals and
/// a value that needs no escaping is copied as it is. Every request writes one.
#[derive(Debug)]
pub struct RequestLine<'r, 'a>(pub &'r AuditRecord<'a>);

impl JsonLine for RequestLine<'_, '_> {
    fn write_json(&self, out: &mut Vec<u8>) -> bool {
        let r = self.0;
        out.extend_from_slice(b"{\"event\":\"request\",\"time\":\"");
        write_time(out, &r.time);
        out.extend_from_slice(b"\",\"request_id\":");
        json_str(out, r.request_id);
        for (key, value) in [
            (&b",\"decision\":"[..], Some(r.decision)),
            (b",\"gate\":", Some(r.gate)),
            (b",\"reason\":", Some(r.reason)),
            (b",\"issuer\":", r.issuer),
            (b",\"kid\":", r.kid),
            (b",\"subject\":", r.subject),
            (b",\"org\":", r.org),
            (b",\"tenant\":", r.tenant),
            (b",\"customer\":", r.customer),
            (b",\"impersonator\":", r.impersonator),
            (b",\"method\":", r.method),
            (b",\"path\":", r.path),
        ] {
            out.extend_from_slice(key);
            match value {
                Some(v) => json_str(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b",\"status\":");
        if serde_json::to_writer(&mut *out, &r.status).is_err() {
            return false;
        }
        out.extend_from_slice(b",\"latency_ms\":");
        if serde_json::to_writer(&mut *out, &r.latency_ms).is_err() {
            return false;
        }
        out.extend_from_slice(b",\"token_sha256\":");
        match &r.token_sha256 {
            Some(digest) => {
                out.push(b'"');
                out.extend_from_slice(&hex_digest(digest));
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        true
    }
}

/// A JSON string: copied between quotes when no byte needs escaping (serde_json escapes only `"`, `\` and
/// control characters), otherwise written by serde_json.
fn json_str(out: &mut Vec<u8>, value: &str) {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, value).is_err() {
        // Writing a str to a Vec cannot fail; an empty string keeps the line well-formed regardless.
        out.extend_from_slice(b"\"\"");
    }
}

/// A timestamp as its RFC 3339 text (as jiff displays it). The date and time of day are made once per second
/// and kept; the fraction is written by hand.
fn write_time(out: &mut Vec<u8>, time: &Timestamp) {
    use std::cell::Cell;
    use std::io::Write as _;
    thread_local! {
        static SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
    }
    let second = time.as_second();
    let nanos = time.subsec_nanosecond();
    if !(0..=253_402_207_200).contains(&second) || nanos < 0 {
        // Outside years 1970..=9999 (never, for a decision's time): jiff's own text.
        let _ = write!(out, "{time}");
        return;
    }
    let (cached, mut text) = SECOND.get();
    if cached != second {
        let mut whole = Vec::with_capacity(20);
        let _ = write!(whole, "{}", Timestamp::from_second(second).unwrap_or(*time));
        match whole.get(..19) {
            Some(head) => text.copy_from_slice(head),
            None => {
                let _ = write!(out, "{time}");
                return;
            }
        }
        SECOND.set((second, text));
    }
    out.extend_from_slice(&text);
    if nanos > 0 {
        let mut digits = [0u8; 10];
        digits[0] = b'.';
        let mut n = nanos.unsigned_abs();
        for d in digits[1..].iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let mut len = digits.len();
        while digits[len - 1] == b'0' {
            len -= 1;
        }
        out.extend_from_slice(&digits[..len]);
    }
    out.push(b'Z');
}

/// One `tunnel_open` or `tunnel_close` audit line. The close fields are absent from the open line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TunnelRecord<'a> {
    /// When the line was written (RFC 3339).
    #[serde(serialize_with = "display")]
    pub time: Timestamp,
    /// The request id of the upgrade request (its own `request` line carries the same id).
    pub request_id: &'a str,
    /// The org id (verified).
    pub org: &'a str,
    /// The routed Tenant.
    pub tenant: &'a str,
    /// The routed Customer.
    pub customer: Option<&'a str>,
    /// `sub` (verified).
    pub subject: Option<&'a str>,
    /// `act.sub` (verified).
    pub impersonator: Option<&'a str>,
    /// The request path, without the query.
    pub path: &'a str,
    /// `websocket`.
    pub protocol: &'static str,
    /// The client's HTTP version: `HTTP/1.1` (an upgrade) or `HTTP/2` (an extended CONNECT).
    pub http_version: &'static str,
    /// When the tunnel will be closed at the latest (the earlier of token expiry plus leeway and the maximum
    /// duration), RFC 3339.
    #[serde(serialize_with = "display")]
    pub closes_at: Timestamp,
    /// What the close line adds.
    #[serde(flatten)]
    pub closed: Option<Closed>,
}

/// The close line's own fields.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Closed {
    /// Why the tunnel ended.
    pub reason: &'static str,
    /// Bytes copied from the client to the stack.
    pub bytes_client_to_stack: u64,
    /// Bytes copied from the stack to the client.
    pub bytes_stack_to_client: u64,
    /// Milliseconds from the 101 to the close.
    pub duration_ms: f64,
}

fn display<S: serde::Serializer>(value: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn hex<S: serde::Serializer>(digest: &Option<[u8; 32]>, serializer: S) -> Result<S::Ok, S::Error> {
    let Some(digest) = digest else {
        return serializer.serialize_none();
    };
    let out = hex_digest(digest);
    // Only ASCII digits were written.
    serializer.serialize_str(std::str::from_utf8(&out).unwrap_or_default())
}

/// A SHA-256 digest as 64 lowercase hex digits.
pub(crate) fn hex_digest(digest: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

/// SHA-256 of one line's bytes (without its newline).
pub(crate) fn line_digest(line: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(line).into()
}

/// Which checkpoint a `"event":"checkpoint"` line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// Line 0 of every chain.
    Start,
    /// Written every `audit.checkpoint_seconds`.
    Periodic,
    /// The chain's end: the gateway decided its last request.
    Shutdown,
}

/// A checkpoint line's own fields (after `prev`, `instance` and `seq`).
#[derive(Debug, Serialize)]
struct CheckpointLine {
    event: &'static str,
    kind: CheckpointKind,
    #[serde(serialize_with = "display")]
    time: Timestamp,
    /// The chain's lines before this one that are not checkpoints.
    records: u64,
    interval_seconds: u64,
}

/// How a [`StdoutAudit`] names its chain and how often it writes a periodic checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// The chain's `instance`: unique to this process.
    pub instance: String,
    /// Time between two periodic checkpoints.
    pub checkpoint_every: Duration,
}

impl ChainConfig {
    /// A chain for the gateway named `name` (the pod name): the instance id is `name.` followed by 16 hex
    /// digits, the start time in seconds and 32 random bits, so a restarted process starts a chain of its own.
    pub fn new(name: &str, checkpoint_every: Duration) -> ChainConfig {
        use aws_lc_rs::rand::SecureRandom as _;
        let mut random = [0u8; 4];
        // Without randomness the start time alone still tells restarts apart (they are seconds apart).
        let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut random);
        let seconds = Timestamp::now().as_second();
        ChainConfig {
            instance: format!("{name}.{:08x}{:08x}", seconds as u32, u32::from_be_bytes(random)),
            checkpoint_every,
        }
    }
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

    /// Ends the trail once the gateway has decided its last request: a chained sink writes its shutdown
    /// checkpoint and writes out what it holds.
    fn close(&self) {}
}

/// The writer audit lines go to.
type Output = Box<dyn std::io::Write + Send>;

/// Chained audit lines as JSON on standard output (logs go to standard error). The request path appends its
/// line to a buffer; a writer thread of its own links the lines (see [the chain](self#the-chain)) and writes
/// the buffer out every few milliseconds, or at once when it grows large. So a request costs no syscall, no
/// hash and no thread switch for its audit line, and lines keep their order. When the buffer is at its limit
/// (standard output stalled) the request path waits: no line is ever dropped. When a write fails, the bytes
/// not written are kept and retried first, and the sink reports itself unhealthy until a write succeeds again.
pub struct StdoutAudit {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StdoutAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutAudit")
            .field("instance", &self.shared.chain.instance)
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer early when the buffer is large.
    wake: std::sync::Condvar,
    /// Wakes requests waiting for room.
    room: std::sync::Condvar,
    /// Held while a chunk is taken, linked and written, so chunks reach the output in the order they were
    /// taken.
    out: Mutex<Out>,
    /// Cleared when a write fails, set again when one succeeds.
    healthy: std::sync::atomic::AtomicBool,
    chain: ChainConfig,
    /// `instance` as a JSON string, encoded once.
    instance_json: Box<[u8]>,
}

/// Lines not yet taken by the writer, and the chain's counters (assigned under the same lock as the bytes, so
/// sequence numbers follow buffer order).
struct Pending {
    buf: Vec<u8>,
    /// The next line's `seq`.
    seq: u64,
    /// Lines so far that are not checkpoints.
    records: u64,
    /// The shutdown checkpoint is written.
    closed: bool,
}

/// The writer's side.
struct Out {
    output: Output,
    /// The chunk being written: bytes a failed write left are written before anything newer; in the steady
    /// state it is the spare buffer the pending one is swapped with, so neither is reallocated.
    chunk: Vec<u8>,
    /// SHA-256 of the last line linked (none before the first line: its `prev` stays [`GENESIS`]).
    last: Option<[u8; 32]>,
}

/// Buffered bytes that make the writer go at once.
const WRITE_AT: usize = 64 * 1024;
/// Buffered bytes beyond which the request path waits for the writer.
const LIMIT: usize = 16 * 1024 * 1024;
/// The longest a line waits in the buffer.
const INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

impl Pending {
    /// Appends one chained line: `{"prev":"<zeros>","instance":...,"seq":n` and then the event's own object
    /// with its opening brace turned into a comma. Nothing is appended when the event does not serialize to
    /// a non-empty object.
    fn append(&mut self, instance_json: &[u8], event: &impl JsonLine) -> bool {
        let before = self.buf.len();
        self.buf.extend_from_slice(b"{\"prev\":\"");
        self.buf.extend_from_slice(GENESIS.as_bytes());
        self.buf.extend_from_slice(b"\",\"instance\":");
        self.buf.extend_from_slice(instance_json);
        self.buf.extend_from_slice(b",\"seq\":");
        let at = if serde_json::to_writer(&mut self.buf, &self.seq).is_ok() {
            self.buf.len()
        } else {
            usize::MAX
        };
        // Serialized straight into the buffer; a failure (there is none for these types) leaves no partial line.
        if event.write_json(&mut self.buf) && self.buf.get(at..at + 2) == Some(b"{\"".as_slice()) {
            self.buf[at] = b',';
            self.buf.push(b'\n');
            self.seq += 1;
            true
        } else {
            self.buf.truncate(before);
            false
        }
    }
}

/// Fills in the `prev` of every line in `lines` (whole lines, each ending in a newline), chaining on from
/// `last`.
fn link(lines: &mut [u8], last: &mut Option<[u8; 32]>) {
    let mut start = 0;
    while let Some(length) = memchr::memchr(b'\n', &lines[start..]) {
        let line = &mut lines[start..start + length];
        start += length + 1;
        if let (Some(digest), Some(prev)) = (last.as_ref(), line.get_mut(PREV_AT..PREV_AT + 64)) {
            prev.copy_from_slice(&hex_digest(digest));
        }
        *last = Some(line_digest(line));
    }
}

impl Shared {
    /// Takes whatever is buffered, links it and writes it out, after anything a failed write left.
    fn write_out(&self) {
        use std::sync::atomic::Ordering;
        let Ok(mut out) = self.out.lock() else {
            return;
        };
        let Out { output, chunk, last } = &mut *out;
        let start = chunk.len();
        match self.pending.lock() {
            // A failing output holds at most LIMIT bytes here; beyond, new lines wait in `pending`, and at its
            // limit the request path waits too.
            Ok(_) if chunk.len() >= LIMIT => {}
            Ok(mut pending) if chunk.is_empty() => std::mem::swap(&mut pending.buf, chunk),
            Ok(mut pending) => {
                chunk.extend_from_slice(&pending.buf);
                pending.buf.clear();
            }
            Err(_) => return,
        }
        self.room.notify_all();
        link(&mut chunk[start..], last);
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

    /// Appends a checkpoint line, unless the shutdown checkpoint is written already.
    fn checkpoint(&self, kind: CheckpointKind) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if !pending.closed {
            self.append_checkpoint(&mut pending, kind);
        }
    }

    fn append_checkpoint(&self, pending: &mut Pending, kind: CheckpointKind) {
        let line = CheckpointLine {
            event: "checkpoint",
            kind,
            time: Timestamp::now(),
            records: pending.records,
            interval_seconds: self.chain.checkpoint_every.as_secs(),
        };
        if pending.append(&self.instance_json, &line) && kind == CheckpointKind::Shutdown {
            pending.closed = true;
        }
    }
}

impl StdoutAudit {
    /// Starts the writer thread, writing to standard output.
    pub fn start(chain: ChainConfig) -> std::io::Result<StdoutAudit> {
        StdoutAudit::start_with(Box::new(std::io::stdout()), chain)
    }

    /// Starts the writer thread, writing to `output`; the chain's start checkpoint is its first line.
    pub fn start_with(output: Output, chain: ChainConfig) -> std::io::Result<StdoutAudit> {
        let instance_json = serde_json::to_vec(&chain.instance)?.into_boxed_slice();
        let every = chain.checkpoint_every.max(Duration::from_secs(1));
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                seq: 0,
                records: 0,
                closed: false,
            }),
            wake: std::sync::Condvar::new(),
            room: std::sync::Condvar::new(),
            out: Mutex::new(Out {
                output,
                chunk: Vec::new(),
                last: None,
            }),
            healthy: std::sync::atomic::AtomicBool::new(true),
            chain,
            instance_json,
        });
        // Out before the gateway takes its first request: an output that fails already fails the start line.
        shared.checkpoint(CheckpointKind::Start);
        shared.write_out();
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut next_checkpoint = Instant::now() + every;
                loop {
                    if let Ok(pending) = writer.pending.lock() {
                        let _ = writer
                            .wake
                            .wait_timeout_while(pending, INTERVAL, |p| p.buf.len() < WRITE_AT);
                    }
                    if Instant::now() >= next_checkpoint {
                        writer.checkpoint(CheckpointKind::Periodic);
                        next_checkpoint = Instant::now() + every;
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

    /// This sink's chain.
    pub fn chain(&self) -> &ChainConfig {
        &self.shared.chain
    }
}

impl AuditSink for StdoutAudit {
    fn record(&self, event: &AuditEvent<'_>) {
        let Ok(mut pending) = self.shared.pending.lock() else {
            tracing::error!("the audit buffer is poisoned; an audit line was lost");
            return;
        };
        while pending.buf.len() >= LIMIT {
            pending = match self.shared.room.wait(pending) {
                Ok(p) => p,
                Err(_) => return,
            };
        }
        let appended = match event {
            AuditEvent::Request(record) => pending.append(&self.shared.instance_json, &RequestLine(record)),
            other => pending.append(&self.shared.instance_json, other),
        };
        if appended {
            pending.records += 1;
            if pending.closed {
                // A decision after the shutdown checkpoint (a connection that outlived the grace period): the
                // chain ends with a shutdown checkpoint again, which counts it.
                self.shared
                    .append_checkpoint(&mut pending, CheckpointKind::Shutdown);
            }
        }
        if pending.buf.len() >= WRITE_AT {
            self.shared.wake.notify_one();
        }
    }

    fn healthy(&self) -> bool {
        self.shared.healthy.load(std::sync::atomic::Ordering::Acquire)
    }

    fn close(&self) {
        self.shared.checkpoint(CheckpointKind::Shutdown);
        self.shared.write_out();
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
    fn a_request_line_written_by_hand_is_what_serde_json_writes() {
        let times = [
            "2026-11-26T07:00:00Z",
            "2026-11-26T07:00:00.5Z",
            "2026-11-26T07:00:00.000000001Z",
            "2026-11-26T07:00:00.123456789Z",
            "2026-11-26T07:00:00.120Z",
            "2026-12-31T23:59:59.999999999Z",
            "1970-01-01T00:00:00Z",
            "9999-12-30T21:59:59.1Z",
        ];
        let odd = [
            "",
            "plain",
            "quote\"d",
            "back\\slash",
            "tab\tnew\nline\u{1}",
            "ümlaut ✓",
            "\u{7f}del",
            "</script>",
        ];
        for (i, time) in times.iter().enumerate() {
            for (j, text) in odd.iter().enumerate() {
                let r = AuditRecord {
                    time: time.parse().unwrap(),
                    request_id: text,
                    issuer: Some(text),
                    kid: (j % 2 == 0).then_some(*text),
                    subject: Some("user_1"),
                    org: Some(text),
                    tenant: (i % 2 == 0).then_some("acme"),
                    customer: Some(text),
                    impersonator: (j % 3 == 0).then_some(*text),
                    method: (i % 3 != 0).then_some("GET"),
                    path: Some(text),
                    latency_ms: [0.0, 1.5, 0.123456789, 1e-7, 12345.678][(i + j) % 5],
                    token_sha256: (j % 2 == 1).then_some([i as u8; 32]),
                    ..line(200 + j as u16)
                };
                let mut fast = Vec::new();
                assert!(RequestLine(&r).write_json(&mut fast));
                let slow = serde_json::to_vec(&AuditEvent::Request(r.clone())).unwrap();
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(slow).unwrap(),
                    "{time} {text:?}"
                );
            }
        }
    }

    #[test]
    fn a_record_is_one_json_object_with_every_field() {
        let r = AuditRecord {
            request_id: "r1",
            decision: "deny",
            gate: "signature",
            reason: "invalid",
            issuer: Some("https://i"),
            kid: Some("k"),
            path: Some("/x"),
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
            method: Some("GET"),
            path: Some("/"),
            status: n,
            latency_ms: 0.0,
            token_sha256: None,
        }
    }

    #[test]
    fn a_failing_output_makes_the_sink_unhealthy_and_loses_no_line() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let budget = Arc::new(AtomicUsize::new(usize::MAX));
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = StdoutAudit::start_with(
            Box::new(Flaky {
                budget: budget.clone(),
                written: written.clone(),
            }),
            chain("gw-0.test", 3600),
        )
        .unwrap();
        assert!(sink.healthy());
        let start = written.lock().unwrap().len();
        assert!(start > 0, "the start checkpoint is out at once");
        budget.store(30, Ordering::SeqCst); // fails part-way through the first request line
        sink.record(&AuditEvent::Request(line(1)));
        sink.record(&AuditEvent::Request(line(2)));
        sink.flush();
        assert!(!sink.healthy(), "a failed write is reported");
        assert_eq!(written.lock().unwrap().len(), start + 30);
        sink.record(&AuditEvent::Request(line(3)));
        sink.flush();
        assert!(!sink.healthy());
        budget.store(usize::MAX, Ordering::SeqCst);
        sink.flush();
        assert!(sink.healthy(), "recovers once a write succeeds");
        sink.close();
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let statuses: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["status"].as_u64())
            .collect();
        assert_eq!(
            statuses,
            vec![1, 2, 3],
            "every line once, whole, in order: {text}"
        );
        let report = verify_text(&text);
        assert_eq!(report.finding, None, "{text}");
        assert!(report.chains[0].closed, "the retried lines keep their chain");
    }

    fn chain(instance: &str, seconds: u64) -> ChainConfig {
        ChainConfig {
            instance: instance.into(),
            checkpoint_every: Duration::from_secs(seconds),
        }
    }

    /// Checks `text` as one log file.
    fn verify_text(text: &str) -> verify::Report {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, text).unwrap();
        verify::verify(&[path]).unwrap()
    }

    /// An output the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_chained_to_the_one_before() {
        let out = Captured::default();
        let sink = StdoutAudit::start_with(Box::new(out.clone()), chain("gw-0.x", 3600)).unwrap();
        sink.record(&AuditEvent::Request(line(200)));
        sink.flush(); // lines linked in two chunks chain on
        sink.record(&AuditEvent::Request(line(201)));
        sink.close();
        sink.close(); // one shutdown checkpoint only
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let values: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(lines[0].starts_with(&format!(
            "{{\"prev\":\"{GENESIS}\",\"instance\":\"gw-0.x\",\"seq\":0,\"event\":\"checkpoint\","
        )));
        for (i, v) in values.iter().enumerate() {
            assert_eq!(
                (v["instance"].as_str(), v["seq"].as_u64()),
                (Some("gw-0.x"), Some(i as u64))
            );
            if i > 0 {
                let digest = hex_digest(&line_digest(lines[i - 1].as_bytes()));
                assert_eq!(v["prev"].as_str().unwrap().as_bytes(), digest.as_slice());
            }
        }
        let kinds: Vec<_> = values
            .iter()
            .map(|v| (v["event"].as_str().unwrap(), v["kind"].as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("checkpoint", Some("start")),
                ("request", None),
                ("request", None),
                ("checkpoint", Some("shutdown"))
            ]
        );
        assert_eq!(
            (values[0]["records"].as_u64(), values[3]["records"].as_u64()),
            (Some(0), Some(2))
        );
        assert_eq!(values[1]["status"], 200, "the event's own fields follow");
        assert_eq!(verify_text(&text).finding, None);
    }

    #[test]
    fn a_decision_after_the_shutdown_checkpoint_is_closed_again() {
        let out = Captured::default();
        let sink = StdoutAudit::start_with(Box::new(out.clone()), chain("gw-0.y", 3600)).unwrap();
        sink.close();
        sink.record(&AuditEvent::Request(line(499)));
        sink.flush();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{}/{}/{}", v["event"], v["kind"], v["records"])
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                r#""checkpoint"/"start"/0"#,
                r#""checkpoint"/"shutdown"/0"#,
                r#""request"/null/null"#,
                r#""checkpoint"/"shutdown"/1"#
            ]
        );
        let report = verify_text(&text);
        assert_eq!(report.finding, None);
        assert!(report.chains[0].closed);
    }

    #[test]
    fn a_periodic_checkpoint_is_written_while_idle() {
        let out = Captured::default();
        let sink = StdoutAudit::start_with(Box::new(out.clone()), chain("gw-0.p", 1)).unwrap();
        sink.record(&AuditEvent::Request(line(200)));
        std::thread::sleep(Duration::from_millis(1300));
        sink.close();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let periodic: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["kind"] == "periodic")
            .collect();
        assert_eq!(periodic.len(), 1, "{text}");
        assert_eq!(
            (
                periodic[0]["records"].as_u64(),
                periodic[0]["interval_seconds"].as_u64()
            ),
            (Some(1), Some(1))
        );
        let report = verify_text(&text);
        assert_eq!(report.finding, None);
        assert_eq!(report.chains[0].records, 1);
    }

    #[test]
    fn instance_ids_differ_between_starts() {
        let a = ChainConfig::new("gw-0", Duration::from_secs(60));
        let b = ChainConfig::new("gw-0", Duration::from_secs(60));
        assert_ne!(a.instance, b.instance);
        assert!(
            a.instance.starts_with("gw-0.") && a.instance.len() == "gw-0.".len() + 16,
            "{}",
            a.instance
        );
    }
}
