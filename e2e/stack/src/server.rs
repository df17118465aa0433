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

/// Where the server runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub pod: String,
}

impl Identity {
    /// Reads `POD_NAMESPACE` and `POD_NAME` (the downward API). A pod whose spec sets neither (a Deployment the
    /// stack does not control, such as the one Bulkhead's operator makes) still names itself: the kubelet sets
    /// the pod's hostname to its name and puts `<namespace>.svc.<cluster domain>` first in its DNS search path.
    /// What cannot be found is an empty string.
    pub fn from_env() -> Self {
        let from_var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            namespace: from_var("POD_NAMESPACE")
                .or_else(|| {
                    std::fs::read_to_string("/etc/resolv.conf")
                        .ok()
                        .and_then(|text| namespace_from_resolv_conf(&text))
                })
                .unwrap_or_default(),
            pod: from_var("POD_NAME")
                .or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                        .filter(|h| !h.is_empty())
                })
                .unwrap_or_default(),
        }
    }
}

/// The namespace of a pod's `resolv.conf` as the kubelet writes it for the `ClusterFirst` DNS policy:
/// `search <namespace>.svc.<cluster domain> svc.<cluster domain> <cluster domain> …`.
pub fn namespace_from_resolv_conf(text: &str) -> Option<String> {
    let mut search = text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("search")).then_some(words)
    })?;
    let first = search.next()?;
    let (namespace, rest) = first.split_once('.')?;
    (rest.starts_with("svc.") && !namespace.is_empty()).then(|| namespace.to_owned())
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
    fn the_namespace_comes_from_the_pods_dns_search_path() {
        let kubelet = "search bk-acme.svc.cluster.local svc.cluster.local cluster.local\nnameserver 198.19.0.10\noptions ndots:5\n";
        assert_eq!(namespace_from_resolv_conf(kubelet).as_deref(), Some("bk-acme"));
        for other in [
            "nameserver 1.1.1.1\n",
            "search example.com\n",
            "search svc.cluster.local cluster.local\n",
            "search\n",
        ] {
            assert_eq!(namespace_from_resolv_conf(other), None, "{other}");
        }
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
