//! WebSocket tunnels: an HTTP/1.1 `Upgrade: websocket` request, or an HTTP/2 extended CONNECT (RFC 8441) for
//! `websocket`, that passed every gate is forwarded to the route's own stack (always as an HTTP/1.1
//! handshake); once the stack answers 101 the gateway copies bytes both ways, counting them, without reading
//! the WebSocket messages.
//!
//! The gateway follows frame boundaries (headers only, never payloads) for one thing: to tell which side sent
//! the first close frame, so `client_closed` and `stack_closed` name the side that ended the conversation
//! rather than the side whose TCP connection happened to end first (a WebSocket server closes TCP first).
//!
//! A tunnel is closed when the token it was opened with expires (`exp` plus the configured leeway), after
//! `proxy.max_tunnel_seconds`, or when the gateway shuts down, whichever comes first; either side closing ends
//! it too. An org holds at most `proxy.max_tunnels_per_org` tunnels at once; its count is held by a
//! [`TunnelPermit`] that every close path drops. Each tunnel writes a `tunnel_open` audit line when the 101 is
//! sent and a `tunnel_close` line when it ends, with the bytes each way, the duration and one of the fixed
//! reasons of [`CloseReason`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, StatusCode};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::audit::{AuditEvent, AuditSink, Closed, TunnelRecord};
use crate::denial::{Gate, GateError};
use crate::metrics::Metrics;

/// The protocol every tunnel carries today.
pub const WEBSOCKET: &str = "websocket";

/// The GUID a WebSocket server appends to the client's key (RFC 6455 §1.3).
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (for the stack's side of an HTTP/2 WebSocket).
pub fn websocket_key() -> Option<HeaderValue> {
    use base64::Engine as _;
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).ok()?;
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(nonce)).ok()
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with: base64 of SHA-1 of the key and the GUID.
pub fn websocket_accept(key: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(WEBSOCKET_GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(context.finish());
    // Base64 is always a valid header value.
    HeaderValue::from_str(&accept).unwrap_or(HeaderValue::from_static(""))
}

/// Time the other direction gets to finish once one side has closed (a WebSocket closing handshake is one
/// frame each way, then the server closes first).
const LINGER: Duration = Duration::from_secs(2);

/// Bytes read from one side before they are written to the other.
const BUFFER: usize = 16 * 1024;

/// Why a tunnel was refused before the stack saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// The org already holds its maximum of open tunnels.
    #[error("tunnel limit")]
    Limit,
    /// The gateway is shutting down and opens no more tunnels.
    #[error("shutting down")]
    ShuttingDown,
}

impl GateError for TunnelError {
    const GATE: Gate = Gate::RateLimit;

    fn reason(&self) -> &'static str {
        match self {
            TunnelError::Limit => "org_tunnel_limit",
            TunnelError::ShuttingDown => "shutting_down",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            TunnelError::Limit => StatusCode::TOO_MANY_REQUESTS,
            TunnelError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Why a tunnel ended: the `reason` of its `tunnel_close` line and the label of its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client closed its side first.
    ClientClosed,
    /// The stack closed its side first.
    StackClosed,
    /// The token's `exp` plus the leeway passed.
    TokenExpired,
    /// `proxy.max_tunnel_seconds` passed.
    MaxDuration,
    /// The gateway is shutting down.
    Shutdown,
    /// A read or write failed, or an upgrade did not complete.
    Error,
}

impl CloseReason {
    /// The fixed reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::StackClosed => "stack_closed",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::MaxDuration => "max_duration",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Error => "error",
        }
    }
}

/// What a tunnel's audit lines say about it, owned by the tunnel's task.
#[derive(Debug, Clone)]
pub struct TunnelMeta {
    /// The request id.
    pub request_id: String,
    /// The org id.
    pub org: String,
    /// The Tenant.
    pub tenant: String,
    /// The Customer.
    pub customer: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// `act.sub`.
    pub impersonator: Option<String>,
    /// The path (already capped for the audit line).
    pub path: String,
    /// `HTTP/1.1` (an upgrade) or `HTTP/2` (an extended CONNECT), on the client's side.
    pub http_version: &'static str,
}

impl TunnelMeta {
    fn record(&self, closes_at: Timestamp, closed: Option<Closed>) -> TunnelRecord<'_> {
        TunnelRecord {
            time: Timestamp::now(),
            request_id: &self.request_id,
            org: &self.org,
            tenant: &self.tenant,
            customer: self.customer.as_deref(),
            subject: self.subject.as_deref(),
            impersonator: self.impersonator.as_deref(),
            path: &self.path,
            protocol: WEBSOCKET,
            http_version: self.http_version,
            closes_at,
            closed,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    per_org: HashMap<String, usize>,
}

/// The open tunnels: the per-org limit, the shutdown signal every tunnel watches, and the count the gateway
/// waits on at shutdown until every close line is written.
#[derive(Debug)]
pub struct Tunnels {
    max_per_org: usize,
    max_duration: Duration,
    counts: Mutex<Counts>,
    live: watch::Sender<usize>,
    shutdown: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

/// One org's hold on a tunnel slot; released when dropped, on every path.
#[derive(Debug)]
pub struct TunnelPermit {
    tunnels: Arc<Tunnels>,
    org: String,
}

impl Drop for TunnelPermit {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.tunnels.counts.lock()
            && let Some(n) = counts.per_org.get_mut(&self.org)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_org.remove(&self.org);
            }
        }
        self.tunnels.live.send_modify(|n| *n = n.saturating_sub(1));
        self.tunnels.metrics.tunnels_open(*self.tunnels.live.borrow());
    }
}

impl Tunnels {
    /// At most `max_per_org` tunnels per org, none longer than `max_duration`.
    pub fn new(max_per_org: usize, max_duration: Duration, metrics: Arc<Metrics>) -> Tunnels {
        Tunnels {
            max_per_org,
            max_duration,
            counts: Mutex::default(),
            live: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
            metrics,
        }
    }

    /// Takes one of `org`'s tunnel slots, or refuses when it holds them all (or the gateway is stopping).
    pub fn acquire(self: &Arc<Self>, org: &str) -> Result<TunnelPermit, TunnelError> {
        if *self.shutdown.borrow() {
            return Err(TunnelError::ShuttingDown);
        }
        let mut counts = self.counts.lock().map_err(|_| TunnelError::Limit)?;
        let n = counts.per_org.entry(org.to_owned()).or_default();
        if *n >= self.max_per_org {
            if *n == 0 {
                counts.per_org.remove(org);
            }
            return Err(TunnelError::Limit);
        }
        *n += 1;
        drop(counts);
        self.live.send_modify(|n| *n += 1);
        self.metrics.tunnels_open(*self.live.borrow());
        Ok(TunnelPermit {
            tunnels: self.clone(),
            org: org.to_owned(),
        })
    }

    /// Tunnels open now.
    pub fn open(&self) -> usize {
        *self.live.borrow()
    }

    /// Tunnels `org` holds now.
    pub fn open_for(&self, org: &str) -> usize {
        self.counts
            .lock()
            .map(|c| c.per_org.get(org).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Closes every tunnel (reason `shutdown`) and refuses new ones.
    pub fn close_all(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until every tunnel has closed and written its close line.
    pub async fn drained(&self) {
        let mut live = self.live.subscribe();
        let _ = live.wait_for(|n| *n == 0).await;
    }

    /// When a tunnel opened now with a token expiring at `exp` (seconds since the epoch) plus `leeway`
    /// must close, and the reason it then closes with.
    pub fn deadline(&self, exp: i64, leeway: i64) -> (Instant, SystemTime, CloseReason) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let expiry = UNIX_EPOCH + Duration::from_secs(u64::try_from(exp.saturating_add(leeway)).unwrap_or(0));
        let until_expiry = expiry.duration_since(wall).unwrap_or(Duration::ZERO);
        if until_expiry <= self.max_duration {
            (now + until_expiry, expiry, CloseReason::TokenExpired)
        } else {
            (
                now + self.max_duration,
                wall + self.max_duration,
                CloseReason::MaxDuration,
            )
        }
    }
}

/// One accepted upgrade, from the 101 until its close line.
#[derive(Debug)]
pub struct Tunnel {
    /// What its audit lines say.
    pub meta: TunnelMeta,
    /// The org's slot.
    pub permit: TunnelPermit,
    /// When it must close at the latest.
    pub deadline: Instant,
    /// The same, on the wall clock (for the audit lines).
    pub closes_at: SystemTime,
    /// Why it closes at the deadline.
    pub deadline_reason: CloseReason,
}

impl Tunnel {
    /// Writes the open line. Call once the 101 is decided; [`Tunnel::run`] writes the close line.
    pub fn opened(&self, audit: &dyn AuditSink) {
        audit.record(&AuditEvent::TunnelOpen(self.meta.record(self.closes_at(), None)));
    }

    fn closes_at(&self) -> Timestamp {
        Timestamp::try_from(self.closes_at).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Waits for both upgrades, copies bytes until a side closes, the deadline or shutdown, and writes the
    /// close line. The permit is released when this returns (or if the task is dropped).
    pub async fn run<C, S, CE, SE>(
        self,
        client: impl Future<Output = Result<C, CE>>,
        stack: impl Future<Output = Result<S, SE>>,
        audit: Arc<dyn AuditSink>,
    ) where
        C: AsyncRead + AsyncWrite + Unpin,
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let mut shutdown = self.permit.tunnels.shutdown.subscribe();
        let (deadline, deadline_reason) = (self.deadline, self.deadline_reason);
        let stop = async move {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => CloseReason::Shutdown,
                () = tokio::time::sleep_until(deadline) => deadline_reason,
            }
        };
        tokio::pin!(stop);
        let upgraded = tokio::select! {
            reason = &mut stop => Err(reason),
            sides = async { tokio::join!(client, stack) } => match sides {
                (Ok(c), Ok(s)) => Ok((c, s)),
                _ => Err(CloseReason::Error),
            },
        };
        let (reason, up, down) = match upgraded {
            Err(reason) => (reason, 0, 0),
            Ok((client, stack)) => relay(client, stack, stop).await,
        };
        let metrics = &self.permit.tunnels.metrics;
        metrics.tunnel_closed(reason.as_str(), up, down);
        let closed = Closed {
            reason: reason.as_str(),
            bytes_client_to_stack: up,
            bytes_stack_to_client: down,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        audit.record(&AuditEvent::TunnelClose(
            self.meta.record(self.closes_at(), Some(closed)),
        ));
        drop(self.permit);
    }
}

/// Follows the WebSocket frame boundaries of one direction (RFC 6455 §5.2: a 2 to 14 byte header, then the
/// payload, skipped unread) to notice its first close frame. A header no WebSocket peer would send (a
/// reserved opcode, a fragmented or long control frame) ends the watching: the bytes are still copied, and the
/// close is then told by which TCP side ended first.
#[derive(Debug, Default)]
struct FrameWatch {
    header: [u8; 14],
    have: usize,
    skip: u64,
    close_seen_at: Option<Instant>,
    lost: bool,
}

/// Opcode of a close frame.
const CLOSE: u8 = 0x8;

impl FrameWatch {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.close_seen_at.is_none() && !self.lost {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(bytes.len());
                bytes = &bytes[n..];
                self.skip -= n as u64;
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some((opcode, payload)) = frame_header(&self.header[..self.have]) {
                let fin = self.header[0] & 0x80 != 0;
                let control = opcode & 0x8 != 0;
                let known = matches!(opcode, 0x0..=0x2 | 0x8..=0xa);
                if !known || (control && (!fin || payload > 125 || self.header[0] & 0x70 != 0)) {
                    self.lost = true;
                    return;
                }
                if opcode == CLOSE {
                    self.close_seen_at = Some(Instant::now());
                }
                self.skip = payload;
                self.have = 0;
            }
        }
    }
}

/// The opcode and payload length of a complete frame header, or `None` while more header bytes are needed.
fn frame_header(h: &[u8]) -> Option<(u8, u64)> {
    let (&first, &second) = (h.first()?, h.get(1)?);
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let (extended, short) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    if h.len() < 2 + extended + mask {
        return None;
    }
    let payload = short.unwrap_or_else(|| {
        h[2..2 + extended]
            .iter()
            .fold(0u64, |len, b| (len << 8) | u64::from(*b))
    });
    Some((first & 0x0f, payload))
}

/// One direction of a tunnel: a buffer between a read from one side and the writes to the other, the bytes
/// written, and the frame watch.
#[derive(Debug)]
struct Half {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    unflushed: bool,
    done: bool,
    count: u64,
    frames: FrameWatch,
}

impl Half {
    fn new() -> Half {
        Half {
            buf: vec![0u8; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            unflushed: false,
            done: false,
            count: 0,
            frames: FrameWatch::default(),
        }
    }

    /// Copies `from` into `to` until `from` ends, then ends `to`.
    fn poll_copy<R, W>(&mut self, cx: &mut Context<'_>, from: &mut R, to: &mut W) -> Poll<std::io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.start == self.end && !self.eof {
                let mut read = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut *from).poll_read(cx, &mut read) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => {
                        if self.unflushed {
                            ready!(Pin::new(&mut *to).poll_flush(cx))?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                }
                let n = read.filled().len();
                if n == 0 {
                    self.eof = true;
                } else {
                    self.frames.feed(&self.buf[..n]);
                    (self.start, self.end) = (0, n);
                }
            }
            while self.start < self.end {
                let n = ready!(Pin::new(&mut *to).poll_write(cx, &self.buf[self.start..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                self.start += n;
                self.count += n as u64;
                self.unflushed = true;
            }
            if self.eof {
                ready!(Pin::new(&mut *to).poll_shutdown(cx))?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Copies both ways until one side closes (the other then gets [`LINGER`] to finish), a copy fails, or `stop`
/// says why to close. Returns the reason and the bytes client → stack and stack → client. Both directions are
/// polled by one future over the two connections, without splitting them.
async fn relay<C, S>(
    mut client: C,
    mut stack: S,
    stop: Pin<&mut impl Future<Output = CloseReason>>,
) -> (CloseReason, u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stop = stop;
    let (mut up, mut down) = (Half::new(), Half::new());
    let first = {
        let both = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = up.poll_copy(cx, &mut client, &mut stack) {
                up.done = true;
                return Poll::Ready(match result {
                    Ok(()) => CloseReason::ClientClosed,
                    Err(_) => CloseReason::Error,
                });
            }
            if let Poll::Ready(result) = down.poll_copy(cx, &mut stack, &mut client) {
                down.done = true;
                return Poll::Ready(match result {
                    Ok(()) => CloseReason::StackClosed,
                    Err(_) => CloseReason::Error,
                });
            }
            Poll::Pending
        });
        tokio::select! {
            reason = &mut stop => reason,
            reason = both => reason,
        }
    };
    // One side closed cleanly: the other direction may still carry the closing handshake's answer.
    let reason = if matches!(first, CloseReason::ClientClosed | CloseReason::StackClosed) {
        let rest = std::future::poll_fn(|cx| {
            if !up.done {
                ready!(up.poll_copy(cx, &mut client, &mut stack)).ok();
                up.done = true;
            }
            if !down.done {
                ready!(down.poll_copy(cx, &mut stack, &mut client)).ok();
                down.done = true;
            }
            Poll::Ready(())
        });
        tokio::select! {
            reason = &mut stop => reason,
            () = tokio::time::sleep(LINGER) => first,
            () = rest => first,
        }
    } else {
        first
    };
    // A clean close is the doing of the side whose close frame came first, whichever TCP side ended first.
    let reason = match (reason, up.frames.close_seen_at, down.frames.close_seen_at) {
        (CloseReason::ClientClosed | CloseReason::StackClosed, Some(up), Some(down)) if down < up => {
            CloseReason::StackClosed
        }
        (CloseReason::ClientClosed | CloseReason::StackClosed, Some(_), _) => CloseReason::ClientClosed,
        (CloseReason::ClientClosed | CloseReason::StackClosed, None, Some(_)) => CloseReason::StackClosed,
        (reason, _, _) => reason,
    };
    (reason, up.count, down.count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_per_org_limit_is_released_by_every_dropped_permit() {
        let tunnels = Arc::new(Tunnels::new(2, Duration::from_secs(60), Arc::new(Metrics::new())));
        let a1 = tunnels.acquire("org_a").unwrap();
        let a2 = tunnels.acquire("org_a").unwrap();
        assert_eq!(tunnels.acquire("org_a").unwrap_err(), TunnelError::Limit);
        let b = tunnels.acquire("org_b").unwrap();
        assert_eq!(tunnels.open(), 3);
        drop(a1);
        let a3 = tunnels.acquire("org_a").unwrap();
        drop((a2, a3, b));
        assert_eq!(tunnels.open(), 0);
        assert_eq!(tunnels.open_for("org_a"), 0);
        tunnels.close_all();
        assert_eq!(tunnels.acquire("org_b").unwrap_err(), TunnelError::ShuttingDown);
    }

    #[test]
    fn the_deadline_is_the_earlier_of_expiry_plus_leeway_and_the_maximum() {
        let tunnels = Tunnels::new(1, Duration::from_secs(60), Arc::new(Metrics::new()));
        let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
        let (_, _, reason) = tunnels.deadline(now + 10, 5);
        assert_eq!(reason, CloseReason::TokenExpired);
        let (_, _, reason) = tunnels.deadline(now + 600, 5);
        assert_eq!(reason, CloseReason::MaxDuration);
        let (at, _, reason) = tunnels.deadline(now - 100, 5);
        assert_eq!(reason, CloseReason::TokenExpired);
        assert!(at <= Instant::now(), "an already expired token closes at once");
    }

    #[test]
    fn close_lines_carry_the_close_fields_and_open_lines_do_not() {
        let meta = TunnelMeta {
            request_id: "r1".into(),
            org: "org_a".into(),
            tenant: "acme".into(),
            customer: None,
            subject: Some("user_1".into()),
            impersonator: None,
            path: "/ws".into(),
            http_version: "HTTP/1.1",
        };
        let at = Timestamp::UNIX_EPOCH;
        let open = serde_json::to_value(AuditEvent::TunnelOpen(meta.record(at, None))).unwrap();
        assert_eq!(open["event"], "tunnel_open");
        assert_eq!(open["protocol"], "websocket");
        assert!(open.get("reason").is_none() && open.get("bytes_client_to_stack").is_none());
        let closed = Closed {
            reason: CloseReason::TokenExpired.as_str(),
            bytes_client_to_stack: 3,
            bytes_stack_to_client: 4,
            duration_ms: 1.5,
        };
        let close = serde_json::to_value(AuditEvent::TunnelClose(meta.record(at, Some(closed)))).unwrap();
        assert_eq!(close["event"], "tunnel_close");
        assert_eq!(close["reason"], "token_expired");
        assert_eq!(close["bytes_client_to_stack"], 3);
        assert_eq!(close["bytes_stack_to_client"], 4);
        assert_eq!(close["org"], "org_a");
    }

    #[test]
    fn the_accept_proof_is_the_one_of_rfc_6455() {
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let (a, b) = (websocket_key().unwrap(), websocket_key().unwrap());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }

    #[test]
    fn frame_watch_skips_payloads_and_finds_the_close_frame_across_reads() {
        // A masked text frame with a 200-byte payload (16-bit length) whose payload holds a close opcode byte,
        // then a masked close frame, fed in awkward pieces.
        let mut bytes = vec![0x81, 0x80 | 126, 0, 200, 1, 2, 3, 4];
        bytes.extend(std::iter::repeat_n(0x88, 200));
        bytes.extend([0x88, 0x82, 9, 9, 9, 9, 0x03, 0xe8]);
        let mut watch = FrameWatch::default();
        let (head, tail) = bytes.split_at(3);
        watch.feed(head);
        let (middle, last) = tail.split_at(200);
        watch.feed(middle);
        assert!(watch.close_seen_at.is_none(), "a payload byte is not a frame");
        watch.feed(last);
        assert!(watch.close_seen_at.is_some());
        let mut not_websocket = FrameWatch::default();
        not_websocket.feed(b"hello");
        assert!(not_websocket.lost && not_websocket.close_seen_at.is_none());
        assert_eq!(
            frame_header(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            Some((0x2, 65536))
        );
        assert_eq!(frame_header(&[0x82, 127, 0]), None);
    }

    #[tokio::test]
    async fn relay_counts_bytes_each_way_and_names_the_side_that_closed() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (stack, mut stack_peer) = tokio::io::duplex(64);
        let relayed = tokio::spawn(async move {
            let stop = std::future::pending::<CloseReason>();
            tokio::pin!(stop);
            relay(client, stack, stop.as_mut()).await
        });
        client_peer.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        stack_peer.read_exact(&mut got).await.unwrap();
        stack_peer.write_all(b"hi").await.unwrap();
        let mut got = [0u8; 2];
        client_peer.read_exact(&mut got).await.unwrap();
        drop(stack_peer);
        let mut rest = Vec::new();
        client_peer.read_to_end(&mut rest).await.unwrap();
        drop(client_peer);
        assert_eq!(relayed.await.unwrap(), (CloseReason::StackClosed, 5, 2));
    }
}
