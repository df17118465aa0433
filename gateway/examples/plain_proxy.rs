//! The HTTP stack of the gateway with nothing of the gateway in it: a hyper 1 server on one current-thread
//! runtime forwarding every request to one upstream through hyper-util's pooled client. No token, no headers
//! touched, no audit. The benchmark runs it as a second floor, so the table shows both what the HTTP stack
//! costs against nginx and what the gateway's own work costs on top of it.
//!
//!   cargo run --release --example plain_proxy -- 127.0.0.1:18447 127.0.0.1:18081

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

#[allow(clippy::expect_used)] // a benchmark peer: start-up failures end it
fn main() {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args.next().and_then(|a| a.parse().ok()).expect("listen address");
    let upstream = args.next().expect("upstream host:port");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build(connector);
        let listener = TcpListener::bind(listen).await.expect("bind");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (client, upstream) = (client.clone(), upstream.clone());
                    async move {
                        let (mut parts, body) = req.into_parts();
                        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                        parts.uri = Uri::try_from(format!("http://{upstream}{path}")).unwrap_or_default();
                        let answer = match client.request(Request::from_parts(parts, body.boxed())).await {
                            Ok(response) => response.map(|b| b.boxed()),
                            Err(_) => {
                                let mut r =
                                    http::Response::new(Empty::new().map_err(|never| match never {}).boxed());
                                *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                                r
                            }
                        };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
