//! Test harness: the real gateway on loopback, recording upstreams (one per org), a controllable JWKS server,
//! test keys from `tests/keys/` (test-only keys, never used anywhere else), raw HTTP/1.1 over TCP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod binary;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_gateway::audit::MemoryAudit;
use bulkhead_gateway::config::{FileConfig, Settings};
use bulkhead_gateway::mint::{self, sign_raw};
use bulkhead_gateway::server::{self, Running, StartOptions};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const ISS_A: &str = "https://clerk.a.example";

/// A gateway config on port 0 with one issuer, `ISS_A` (RS256, keys from `{dir}/a.json`), followed by `rest`
/// (the routes and any other sections).
pub fn config_a(rest: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nissuers:\n  - issuer: {ISS_A}\n    algorithms: [RS256]\n    jwks_file: \"{{dir}}/a.json\"\n{rest}"
    )
}
pub const ISS_B: &str = "https://clerk.b.example";
pub const AZP: &str = "https://app.example";

pub fn key_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// A test signing key with its kid and algorithm.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub key: Arc<EncodingKey>,
    pub file: &'static str,
}

impl TestKey {
    pub fn load(file: &'static str, kid: &str, alg: Algorithm) -> TestKey {
        let pem = std::fs::read(key_path(file)).unwrap();
        TestKey {
            kid: kid.into(),
            alg,
            key: Arc::new(mint::encoding_key(&pem, alg).unwrap()),
            file,
        }
    }

    /// The public JWK, with kid (and alg when `with_alg`).
    pub fn jwk(&self, with_alg: bool) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        let mut v = serde_json::to_value(&jwk).unwrap();
        if !with_alg {
            v.as_object_mut().unwrap().remove("alg");
        }
        v
    }

    /// Signs these claims with this key's kid and alg.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": format!("{:?}", self.alg), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// Signs with an explicit header (alg in the header may lie; the signature uses this key's alg).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        sign_raw(&header.to_string(), &claims.to_string(), &self.key, self.alg).unwrap()
    }

    /// Signs raw JSON texts.
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        sign_raw(header, claims, &self.key, self.alg).unwrap()
    }
}

pub fn now() -> i64 {
    mint::now()
}

/// Valid Clerk v2 claims for `org` from issuer A.
pub fn claims_a(org: &str) -> Value {
    let now = now();
    json!({"iss": ISS_A, "sub": "user_1", "sid": "sess_1", "azp": AZP, "iat": now, "nbf": now, "exp": now + 60,
           "v": 2, "o": {"id": org, "rol": "admin"}})
}

/// What an upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Whether the body arrived whole (`None` while it is still streaming).
    pub body_complete: Option<bool>,
}

impl Seen {
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A recording upstream answering `200 <name>`.
#[derive(Clone)]
pub struct Upstream {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        serve(listener, move |req: Request<Incoming>| {
            let record = record.clone();
            async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let index = {
                    let mut seen = record.lock().unwrap();
                    seen.push(Seen {
                        method: req.method().to_string(),
                        path: req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        headers,
                        body_complete: None,
                    });
                    seen.len() - 1
                };
                let complete = req.into_body().collect().await.is_ok();
                record.lock().unwrap()[index].body_complete = Some(complete);
                // A CORS header of the stack's own, which a gateway with a `cors:` policy replaces.
                let mut response = Response::new(Full::new(Bytes::from(name)));
                response.headers_mut().insert(
                    "access-control-allow-origin",
                    http::HeaderValue::from_static("https://stack.example"),
                );
                response
            }
        });
        Upstream { name, addr, seen }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Requests whose body arrived whole.
    pub fn complete(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.body_complete == Some(true))
            .count()
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// How the JWKS server answers.
#[derive(Debug, Clone)]
pub enum JwksMode {
    Serve(String),
    Status(u16),
    Huge(usize),
    Redirect(String),
    Hang,
}

/// A controllable JWKS server; also records requests to any other path (an attacker's key URL).
#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    pub mode: Arc<Mutex<JwksMode>>,
    pub fetches: Arc<AtomicUsize>,
    pub other_hits: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(keys: &[Value]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = JwksServer {
            addr,
            mode: Arc::new(Mutex::new(JwksMode::Serve(json!({ "keys": keys }).to_string()))),
            fetches: Arc::default(),
            other_hits: Arc::default(),
        };
        let s = server.clone();
        serve(listener, move |req: Request<Incoming>| {
            let s = s.clone();
            async move {
                if req.uri().path() != "/jwks.json" {
                    s.other_hits.fetch_add(1, Ordering::SeqCst);
                    return Response::new(Full::new(Bytes::from("{}")));
                }
                s.fetches.fetch_add(1, Ordering::SeqCst);
                let mode = s.mode.lock().unwrap().clone();
                match mode {
                    JwksMode::Serve(body) => Response::new(Full::new(Bytes::from(body))),
                    JwksMode::Status(code) => {
                        let mut r = Response::new(Full::new(Bytes::from("oops")));
                        *r.status_mut() = StatusCode::from_u16(code).unwrap();
                        r
                    }
                    JwksMode::Huge(n) => Response::new(Full::new(Bytes::from(vec![b' '; n]))),
                    JwksMode::Redirect(to) => {
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::FOUND;
                        r.headers_mut().insert("location", to.parse().unwrap());
                        r
                    }
                    JwksMode::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Response::new(Full::new(Bytes::new()))
                    }
                }
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn serve_keys(&self, keys: &[Value]) {
        *self.mode.lock().unwrap() = JwksMode::Serve(json!({ "keys": keys }).to_string());
    }

    pub fn set(&self, mode: JwksMode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn fetch_count(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A started gateway with its audit sink.
pub struct Gateway {
    pub running: Running,
    pub audit: Arc<MemoryAudit>,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts the gateway from YAML config text; `{dir}` in it is replaced by a temp dir path.
    pub async fn start(config: &str, files: &[(&str, String)]) -> Gateway {
        Gateway::start_with(config, files, None).await
    }

    /// Like [`Gateway::start`], with a cluster client for `routes.source: kubernetes`.
    pub async fn start_with(config: &str, files: &[(&str, String)], kube: Option<kube::Client>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let text = config.replace("{dir}", dir.path().to_str().unwrap());
        let file = FileConfig::parse(&text).unwrap();
        let settings = Settings::from_file(file).unwrap();
        let audit = Arc::new(MemoryAudit::default());
        let running = server::start(
            settings,
            StartOptions {
                audit: audit.clone(),
                kube,
            },
        )
        .await
        .unwrap();
        Gateway { running, audit, dir }
    }

    pub fn last_audit(&self) -> Value {
        self.audit.lines().last().cloned().unwrap_or(Value::Null)
    }

    /// Waits (bounded) for the audit line of a request still being decided.
    pub async fn audit_line_after(&self, count: usize) -> Value {
        for _ in 0..400 {
            if let Some(line) = self.audit.lines().get(count) {
                return line.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no audit line #{count}");
    }

    pub fn audit_count(&self) -> usize {
        self.audit.lines().len()
    }

    /// Sends raw bytes and reads the whole answer (the request should say `Connection: close`).
    pub async fn raw(&self, bytes: &[u8]) -> String {
        raw(self.running.addr, bytes).await
    }

    /// A GET with these headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        Answer::parse(&self.raw(request("GET", path, headers, "").as_bytes()).await)
    }

    /// A GET with `Authorization: Bearer <token>` and extra headers.
    pub async fn get_with(&self, token: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let auth = format!("Bearer {token}");
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.get(path, &all).await
    }
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: gateway.test\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("Connection: close\r\n\r\n");
    r.push_str(body);
    r
}

pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A server may answer and close before reading everything (an oversized head): keep what it said.
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed HTTP/1.1 answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn parse(text: &str) -> Answer {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    /// Every value of a response header (any case).
    pub fn header(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// (gate, reason) of a JSON denial body.
    pub fn denial(&self) -> (String, String) {
        let v: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        (
            v["gate"].as_str().unwrap_or("?").to_owned(),
            v["reason"].as_str().unwrap_or("?").to_owned(),
        )
    }
}
