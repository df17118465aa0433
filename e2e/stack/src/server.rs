//! The echo server: every request gets 200 and a JSON description of where it landed and what arrived.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;

/// Request headers that are never echoed, since they carry credentials.
const HIDDEN_HEADERS: [&str; 2] = ["authorization", "cookie"];

/// How long connections may take to finish their requests after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(5);

/// Where the server runs, as the downward API tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub pod: String,
}

impl Identity {
    /// Reads `POD_NAMESPACE` and `POD_NAME`; unset variables give empty strings.
    pub fn from_env() -> Self {
        Self {
            namespace: std::env::var("POD_NAMESPACE").unwrap_or_default(),
            pod: std::env::var("POD_NAME").unwrap_or_default(),
        }
    }
}

/// The body of every answer except `GET /healthz`.
#[derive(Debug, Serialize)]
struct Echo<'a> {
    namespace: &'a str,
    pod: &'a str,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    headers: BTreeMap<String, String>,
}

/// Serves HTTP/1.1 (with keep-alive) on `listener` until `shutdown` completes, then stops accepting and gives
/// open connections a few seconds to finish.
pub async fn serve<F>(listener: TcpListener, identity: Identity, shutdown: F)
where
    F: Future<Output = ()>,
{
    let identity = Arc::new(identity);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // Out of descriptors or an aborted handshake: not a reason to stop serving.
                        eprintln!("bulkhead-stack: accept: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let identity = Arc::clone(&identity);
                let service = service_fn(move |request: Request<Incoming>| {
                    let answer = respond(&identity, &request);
                    async move { Ok::<_, Infallible>(answer) }
                });
                let connection = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

fn respond<B>(identity: &Identity, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() == Method::GET && request.uri().path() == "/healthz" {
        return answer("text/plain; charset=utf-8", Bytes::from_static(b"ok"));
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        if HIDDEN_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let echo = Echo {
        namespace: &identity.namespace,
        pod: &identity.pod,
        method: request.method().as_str(),
        path: request.uri().path(),
        query: request.uri().query(),
        headers,
    };
    match serde_json::to_vec(&echo) {
        Ok(body) => answer("application/json", Bytes::from(body)),
        // Strings and maps of strings always serialize; answer anyway rather than drop the request.
        Err(err) => answer("text/plain; charset=utf-8", Bytes::from(err.to_string())),
    }
}

fn answer(content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            namespace: "bk-acme".into(),
            pod: "stack-0".into(),
        }
    }

    #[test]
    fn credentials_are_not_echoed_and_repeated_headers_are_joined() {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/orders?id=7")
            .header("authorization", "Bearer secret")
            .header("cookie", "session=secret")
            .header("x-bulkhead-org", "org_1")
            .header("accept", "text/html")
            .header("accept", "application/json")
            .body(())
            .unwrap();
        let response = respond(&identity(), &request);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = response.into_body();
        let bytes = futures_body(body);
        let echo: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(echo["namespace"], "bk-acme");
        assert_eq!(echo["pod"], "stack-0");
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["path"], "/orders");
        assert_eq!(echo["query"], "id=7");
        assert_eq!(echo["headers"]["x-bulkhead-org"], "org_1");
        assert_eq!(echo["headers"]["accept"], "text/html, application/json");
        assert!(echo["headers"].get("authorization").is_none());
        assert!(echo["headers"].get("cookie").is_none());
        assert!(!String::from_utf8_lossy(&bytes).contains("secret"));
    }

    #[test]
    fn healthz_answers_ok() {
        let request = Request::builder().uri("/healthz").body(()).unwrap();
        let response = respond(&identity(), &request);
        assert_eq!(response.status(), 200);
        assert_eq!(&futures_body(response.into_body())[..], b"ok");
    }

    fn futures_body(body: Full<Bytes>) -> Bytes {
        use http_body_util::BodyExt as _;
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(body.collect()).unwrap().to_bytes()
    }
}
