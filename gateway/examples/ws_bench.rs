//! The two peers of the WebSocket benchmark rows, each on one current-thread runtime:
//!
//!   ws_bench echo 127.0.0.1:18082
//!       a WebSocket echo server (every text or binary message sent back as it came)
//!   ws_bench load ws://127.0.0.1:18444/ws [--token T] [--connections 64] [--seconds 10] [--size 64]
//!       opens the connections, then on each sends a message and waits for its echo, over and over, until the
//!       time is up; prints `MESSAGES_PER_SECOND <n> P50_MS <ms> P99_MS <ms> ERRORS <n>` on one line.
//!
//! The benchmark runs the load once against the echo server directly and once through the gateway.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[allow(clippy::expect_used)] // a benchmark peer: start-up failures end it
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("echo") => {
            let listen: SocketAddr = args.get(1).and_then(|a| a.parse().ok()).expect("listen address");
            runtime.block_on(echo(listen));
        }
        Some("load") => {
            let url = args.get(1).expect("ws:// URL").clone();
            let flag = |name: &str| {
                args.iter()
                    .position(|a| a == name)
                    .and_then(|i| args.get(i + 1))
                    .cloned()
            };
            let number = |name: &str, default: u64| flag(name).map_or(default, |v| v.parse().expect(name));
            let load = Load {
                url,
                token: flag("--token"),
                connections: number("--connections", 64),
                duration: Duration::from_secs(number("--seconds", 10)),
                size: usize::try_from(number("--size", 64)).expect("--size"),
            };
            runtime.block_on(load.run());
        }
        _ => {
            eprintln!(
                "usage: ws_bench echo ADDR | ws_bench load URL [--token T] [--connections N] [--seconds S] [--size B]"
            );
            std::process::exit(2);
        }
    }
}

#[allow(clippy::expect_used)]
async fn echo(listen: SocketAddr) {
    let listener = TcpListener::bind(listen).await.expect("bind");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let (mut tx, mut rx) = ws.split();
            while let Some(Ok(message)) = rx.next().await {
                if (message.is_text() || message.is_binary()) && tx.send(message).await.is_err() {
                    return;
                }
            }
        });
    }
}

struct Load {
    url: String,
    token: Option<String>,
    connections: u64,
    duration: Duration,
    size: usize,
}

impl Load {
    #[allow(clippy::expect_used)]
    async fn run(self) {
        let mut sockets = Vec::new();
        for _ in 0..self.connections {
            let mut req = self.url.as_str().into_client_request().expect("URL");
            if let Some(token) = &self.token {
                req.headers_mut()
                    .insert("authorization", format!("Bearer {token}").parse().expect("token"));
            }
            let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
                .await
                .expect("WebSocket handshake");
            sockets.push(ws);
        }
        let payload = "x".repeat(self.size);
        let end = Instant::now() + self.duration;
        let started = Instant::now();
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|mut ws| {
                let payload = payload.clone();
                tokio::spawn(async move {
                    let mut rtts: Vec<Duration> = Vec::new();
                    let mut errors = 0u64;
                    while Instant::now() < end {
                        let sent = Instant::now();
                        if ws.send(Message::text(payload.as_str())).await.is_err() {
                            errors += 1;
                            break;
                        }
                        match ws.next().await {
                            Some(Ok(m)) if m.len() == payload.len() => rtts.push(sent.elapsed()),
                            _ => {
                                errors += 1;
                                break;
                            }
                        }
                    }
                    let _ = ws.close(None).await;
                    (rtts, errors)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            if let Ok((rtts, e)) = task.await {
                all.extend(rtts);
                errors += e;
            } else {
                errors += 1;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let at = |q: f64| {
            all.get(((all.len() as f64 - 1.0) * q).round() as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "MESSAGES_PER_SECOND {:.0} P50_MS {:.2} P99_MS {:.2} ERRORS {errors}",
            all.len() as f64 / elapsed,
            at(0.50),
            at(0.99)
        );
    }
}
