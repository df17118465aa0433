//! Watches what the HTTP layer decides on its own. On an HTTP/2 connection, the HTTP/2 library refuses some
//! streams before any request reaches the gateway (an uppercase header name, a connection-specific header, a
//! malformed pseudo-header): it sends a stream reset or a GOAWAY and no request exists to audit. This module
//! wraps each accepted connection, recognises HTTP/2 by its client preface, and reads the frame headers of what
//! the server writes; each RST_STREAM or GOAWAY it sends with an error code is reported, so the refusal gets an
//! audit line of its own. HTTP/1.1 connections pass through after the first bytes, untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types with an error code.
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;

/// A refusal the HTTP/2 layer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    /// `rst_stream` or `goaway`.
    pub frame: &'static str,
    /// The reset stream, or a GOAWAY's last processed stream.
    pub stream: u32,
    /// The error code's name in lowercase (RFC 9113 §7), `unknown` for an unassigned one.
    pub error: &'static str,
}

/// The name of an HTTP/2 error code.
pub fn error_name(code: u32) -> &'static str {
    match code {
        0x0 => "no_error",
        0x1 => "protocol_error",
        0x2 => "internal_error",
        0x3 => "flow_control_error",
        0x4 => "settings_timeout",
        0x5 => "stream_closed",
        0x6 => "frame_size_error",
        0x7 => "refused_stream",
        0x8 => "cancel",
        0x9 => "compression_error",
        0xa => "connect_error",
        0xb => "enhance_your_calm",
        0xc => "inadequate_security",
        0xd => "http_1_1_required",
        _ => "unknown",
    }
}

/// Reads frame headers out of the server's byte stream, in whatever pieces it is written.
#[derive(Debug, Default)]
pub struct Scanner {
    /// The current frame's 9-byte header and, for the two frame types of interest, the first 8 payload bytes.
    head: [u8; 17],
    /// Bytes of `head` filled.
    have: usize,
    /// Payload bytes of the current frame still to pass over.
    skip: usize,
}

impl Scanner {
    fn length(&self) -> usize {
        (usize::from(self.head[0]) << 16) | (usize::from(self.head[1]) << 8) | usize::from(self.head[2])
    }

    /// Payload bytes to keep for the current frame: the error code of RST_STREAM, the last stream and error
    /// code of GOAWAY.
    fn keep(&self) -> usize {
        let keep = match self.head[3] {
            RST_STREAM => 4,
            GOAWAY => 8,
            _ => 0,
        };
        if self.length() >= keep { keep } else { 0 }
    }

    fn word(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.head[at],
            self.head[at + 1],
            self.head[at + 2],
            self.head[at + 3],
        ])
    }

    /// Feeds bytes the server wrote; calls `report` for each stream reset or GOAWAY with an error. Graceful
    /// closes (`no_error`) and cancellations (`cancel`: the other side went away, or the gateway dropped a
    /// response it had already audited) are not refusals and are not reported.
    pub fn feed(&mut self, mut bytes: &[u8], report: &mut impl FnMut(Reset)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let want = if self.have < 9 { 9 } else { 9 + self.keep() };
            let n = (want - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < want || (self.have == 9 && self.keep() > 0) {
                continue;
            }
            let keep = self.keep();
            if keep > 0 {
                let (frame, stream, code) = if self.head[3] == RST_STREAM {
                    ("rst_stream", self.word(5) & 0x7fff_ffff, self.word(9))
                } else {
                    ("goaway", self.word(9) & 0x7fff_ffff, self.word(13))
                };
                if code != 0x0 && code != 0x8 {
                    report(Reset {
                        frame,
                        stream,
                        error: error_name(code),
                    });
                }
            }
            self.skip = self.length() - keep;
            self.have = 0;
        }
    }
}

/// What a connection turned out to be.
#[derive(Debug)]
enum Mode {
    /// This many bytes of the HTTP/2 preface seen so far.
    Sniffing(usize),
    /// Not HTTP/2: nothing more to watch.
    Other,
    /// HTTP/2: the server's frames are read.
    Http2(Scanner),
}

/// An accepted connection, watched for the HTTP/2 layer's refusals (see the module docs).
#[derive(Debug)]
pub struct Watched<IO, R> {
    io: IO,
    mode: Mode,
    report: R,
}

impl<IO, R: FnMut(Reset)> Watched<IO, R> {
    /// Wraps `io`; `report` is called for each refusal the server sends.
    pub fn new(io: IO, report: R) -> Self {
        Watched {
            io,
            mode: Mode::Sniffing(0),
            report,
        }
    }

    fn sniff(&mut self, read: &[u8]) {
        let Mode::Sniffing(seen) = self.mode else {
            return;
        };
        let n = read.len().min(PREFACE.len() - seen);
        self.mode = if read[..n] != PREFACE[seen..seen + n] {
            Mode::Other
        } else if seen + n == PREFACE.len() {
            Mode::Http2(Scanner::default())
        } else {
            Mode::Sniffing(seen + n)
        };
    }

    fn wrote(&mut self, bytes: &[u8]) {
        if let Mode::Http2(scanner) = &mut self.mode {
            scanner.feed(bytes, &mut self.report);
        }
    }
}

impl<IO: AsyncRead + Unpin, R: FnMut(Reset) + Unpin> AsyncRead for Watched<IO, R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && matches!(this.mode, Mode::Sniffing(_)) {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                this.sniff(read);
            }
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin, R: FnMut(Reset) + Unpin> AsyncWrite for Watched<IO, R> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.wrote(&buf[..n]);
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = poll {
            for buf in bufs {
                if n == 0 {
                    break;
                }
                let take = n.min(buf.len());
                this.wrote(&buf[..take]);
                n -= take;
            }
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn stream_of_frames() -> Vec<u8> {
        let mut bytes = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]); // SETTINGS
        bytes.extend(frame(0x1, 1, &[0x88])); // HEADERS
        bytes.extend(frame(0x0, 1, &[7u8; 300])); // DATA
        bytes.extend(frame(RST_STREAM, 3, &1u32.to_be_bytes())); // PROTOCOL_ERROR
        bytes.extend(frame(RST_STREAM, 5, &8u32.to_be_bytes())); // CANCEL: not a refusal
        bytes.extend(frame(0x0, 7, &[0u8; 0])); // empty DATA
        let mut goaway = 5u32.to_be_bytes().to_vec();
        goaway.extend(0xbu32.to_be_bytes());
        goaway.extend(b"debug data");
        bytes.extend(frame(GOAWAY, 0, &goaway));
        bytes.extend(frame(0x6, 0, &[1u8; 8])); // PING
        bytes
    }

    fn expected() -> Vec<Reset> {
        vec![
            Reset {
                frame: "rst_stream",
                stream: 3,
                error: "protocol_error",
            },
            Reset {
                frame: "goaway",
                stream: 5,
                error: "enhance_your_calm",
            },
        ]
    }

    #[test]
    fn refusals_are_found_in_the_server_frames_whatever_the_write_sizes() {
        let bytes = stream_of_frames();
        for piece in [bytes.len(), 1, 2, 5, 9, 13, 64] {
            let mut scanner = Scanner::default();
            let mut seen = Vec::new();
            for chunk in bytes.chunks(piece) {
                scanner.feed(chunk, &mut |r| seen.push(r));
            }
            assert_eq!(seen, expected(), "written in pieces of {piece}");
        }
    }

    #[test]
    fn only_a_connection_that_starts_with_the_preface_is_read_as_http2() {
        let noop = |_: Reset| {};
        let mut h2 = Watched::new((), noop);
        h2.sniff(&PREFACE[..10]);
        h2.sniff(&PREFACE[10..]);
        assert!(matches!(h2.mode, Mode::Http2(_)));
        let mut h1 = Watched::new((), noop);
        h1.sniff(b"PRI * HTTP/1.1\r\n");
        assert!(matches!(h1.mode, Mode::Other));
        let mut get = Watched::new((), noop);
        get.sniff(b"G");
        assert!(matches!(get.mode, Mode::Other));
        // An HTTP/1.1 server's answer that happens to contain a reset-shaped frame is never read.
        let mut seen = Vec::new();
        let mut h1 = Watched::new((), |r| seen.push(r));
        h1.sniff(b"GET / HTTP/1.1\r\n");
        h1.wrote(&stream_of_frames());
        assert!(seen.is_empty());
    }

    #[test]
    fn every_assigned_error_code_has_a_name() {
        let names: Vec<&str> = (0..=0xd).map(error_name).collect();
        assert!(!names.contains(&"unknown"));
        assert_eq!(error_name(0xe), "unknown");
    }
}
