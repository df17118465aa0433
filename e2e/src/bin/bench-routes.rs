//! `bench-routes`: the gateway's route table at N Tenants on the local control plane (API server only).
//!
//! N Tenants are created and their status written Ready directly (no operator). The gateway then runs as its
//! own process, so its memory and CPU are read from /proc, and this measures: the time from its start until all
//! N routes are loaded; its peak RSS, and RSS per route against the same gateway on a cluster with no Tenants;
//! its CPU while nothing changes; for new Tenants made Ready one at a time, the time from the status write until
//! a request for the Tenant's org is routed; the same for a route that changes (an existing Tenant turning
//! Routable=False and back); and the cost of one request through the gateway at N routes beside the same
//! requests through a gateway holding 10 routes, in alternating rounds.
//!
//! "Routed" is seen from outside, as a client sees it: requests with a valid token for the org get 403
//! `route/no_route` until the route is in the table, then the answer of a local upstream that the probe Tenants'
//! namespaces are pointed at (`routes.upstream_overrides`). Prints one Markdown table; `--write FILE` replaces
//! the section `scale-gateway-{N}` of that file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bulkhead_crds::naming;
use bulkhead_crds::v1alpha1::{StackSpec, Tenant, TenantSpec};
use bulkhead_e2e::gateway::{ISSUER, Issuer, KID, PUBLIC_KEY_FILE};
use bulkhead_e2e::operator::http_get;
use bulkhead_e2e::{ControlPlane, bench, report};
use bulkhead_gateway::mint::{self, Mint, OrgPlacement};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use jsonwebtoken::Algorithm;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Parser)]
#[command(
    name = "bench-routes",
    about = "The gateway's route table at N Tenants: load time, memory, CPU, time until routable"
)]
struct Args {
    /// How many Ready Tenants exist before the gateway starts.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// New Tenants made Ready one at a time, each timed until routable.
    #[arg(long, default_value_t = 20)]
    new: usize,
    /// Route changes timed (an existing Tenant turning Routable=False, then back: two changes each).
    #[arg(long, default_value_t = 5)]
    flips: usize,
    /// Requests in flight at once while creating the Tenants.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of each request round (N routes and 10 routes alternate).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Request rounds per gateway.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Keep-alive connections of each request round.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// The gateway binary (default: bulkhead-gateway next to this binary; build both with --release).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Also write the table into this Markdown file, replacing the section for this N.
    #[arg(long)]
    write: Option<PathBuf>,
}

/// Tenants whose namespaces point at the local upstream, so requests for their orgs can be answered.
const PROBES: usize = 10;
/// The answer of the local upstream.
const UPSTREAM_BODY: &str = "stack\n";

#[tokio::main]
async fn main() -> ExitCode {
    bench::exit("bench-routes", run(Args::parse()).await)
}

fn name(i: usize) -> String {
    format!("bench-{i:05}")
}

fn org(i: usize) -> String {
    format!("org_bench{i:05}")
}

fn new_name(j: usize) -> String {
    format!("bench-new-{j:03}")
}

fn new_org(j: usize) -> String {
    format!("org_benchnew{j:03}")
}

fn tenant(name: &str, org: &str) -> Tenant {
    Tenant::new(
        name,
        TenantSpec {
            org_id: org.into(),
            display_name: None,
            stack: StackSpec {
                image: "registry.example.com/portal:1.0".into(),
                port: 8080,
                replicas: 0,
                env: vec![],
                resources: Default::default(),
            },
            database: Default::default(),
            quota: Default::default(),
            network: Default::default(),
            deletion_policy: Default::default(),
        },
    )
}

/// A status as the operator writes it once the Tenant is provisioned; `routable` false: Ready but its stack is
/// not serving (Routable=False), which takes it out of the route table.
fn status(name: &str, routable: bool) -> Patch<serde_json::Value> {
    let condition = |type_: &str, ok: bool| {
        json!({"type": type_, "status": if ok { "True" } else { "False" },
               "reason": if ok { "Provisioned" } else { "StackNotReady" },
               "message": "written by bench-routes", "lastTransitionTime": "2026-01-01T00:00:00Z"})
    };
    Patch::Merge(json!({"status": {
        "namespace": naming::tenant_namespace(name),
        "conditions": [condition("Ready", true), condition("Routable", routable)],
    }}))
}

async fn create_ready(api: &Api<Tenant>, name: &str, org: &str) -> Result<(), String> {
    api.create(&PostParams::default(), &tenant(name, org))
        .await
        .map_err(|e| format!("creating Tenant {name}: {e}"))?;
    api.patch_status(name, &PatchParams::default(), &status(name, true))
        .await
        .map_err(|e| format!("writing the status of Tenant {name}: {e}"))?;
    Ok(())
}

/// Answers every request on every connection with 200 and [`UPSTREAM_BODY`] (requests without bodies only).
async fn upstream() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("binding the upstream: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{UPSTREAM_BODY}",
                    UPSTREAM_BODY.len()
                );
                let mut buf = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = find(&buf, b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A keep-alive HTTP/1.1 connection sending GETs with a bearer token.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Result<Client, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to the gateway: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// One GET; the status and body.
    async fn get(&mut self, token: &str) -> Result<(u16, String), String> {
        let request =
            format!("GET /bench HTTP/1.1\r\nhost: bench.local\r\nauthorization: Bearer {token}\r\n\r\n");
        self.stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("writing a request: {e}"))?;
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            self.read(&mut chunk).await?;
        };
        let head = String::from_utf8_lossy(self.buf.get(..head_end).unwrap_or_default()).to_ascii_lowercase();
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("an answer without a status")?;
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("an answer without content-length")?;
        while self.buf.len() < head_end + length {
            self.read(&mut chunk).await?;
        }
        let body = String::from_utf8_lossy(self.buf.get(head_end..head_end + length).unwrap_or_default())
            .into_owned();
        self.buf.drain(..head_end + length);
        Ok((code, body))
    }

    async fn read(&mut self, chunk: &mut [u8]) -> Result<(), String> {
        match self.stream.read(chunk).await {
            Ok(0) => Err("the gateway closed the connection".into()),
            Ok(n) => {
                self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(())
            }
            Err(e) => Err(format!("reading an answer: {e}")),
        }
    }
}

/// A running gateway process, stopped (by its pid) when dropped.
struct Gateway {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Gateway {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The routable orgs, from the gateway's own metric.
    async fn routes(&self) -> Option<usize> {
        let (code, body) = http_get(self.admin, "/metrics").await.ok()?;
        if code != 200 {
            return None;
        }
        body.lines()
            .find_map(|l| l.strip_prefix("bulkhead_gateway_routes "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as usize)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Everything the gateways of one run share: the issuer's key, the upstream, the kubeconfig, a directory.
struct Setup<'a> {
    bin: &'a Path,
    dir: &'a Path,
    kubeconfig: &'a Path,
    upstream: SocketAddr,
}

impl Setup<'_> {
    /// Starts a gateway whose `routes:` section is `routes`, named `name` (its log file).
    fn spawn(&self, name: &str, routes: &str) -> Result<Gateway, String> {
        let (port, admin) = (free_port()?, free_port()?);
        let config = format!(
            "listen: 127.0.0.1:{port}\n\
             admin: 127.0.0.1:{admin}\n\
             issuers:\n\
             \x20 - issuer: {ISSUER}\n\
             \x20   algorithms: [ES256]\n\
             \x20   org_claim: clerk\n\
             \x20   pem_keys: [{{kid: {KID}, algorithm: ES256, path: \"{}\"}}]\n\
             audit:\n\
             \x20 instance: {name}\n\
             {routes}",
            self.dir.join(PUBLIC_KEY_FILE).display()
        );
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new(self.bin)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .args(["--log-format", "json", "--log", "warn"])
            .env("KUBECONFIG", self.kubeconfig)
            .stdin(Stdio::null())
            // The audit lines; the same for every gateway measured.
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        Ok(Gateway {
            child,
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        })
    }

    /// The `routes:` section reading Tenants and Customers, with the probe namespaces on the upstream.
    fn kubernetes_routes(&self, new: usize) -> String {
        let mut out = String::from("routes:\n  source: kubernetes\n  upstream_overrides:\n");
        let names = (0..PROBES).map(name).chain((0..new).map(new_name));
        for n in names {
            out.push_str(&format!(
                "    {}: \"{}\"\n",
                naming::tenant_namespace(&n),
                self.upstream
            ));
        }
        out
    }

    /// The `routes:` section of a static file with the probe Tenants' routes only.
    fn file_routes(&self) -> Result<String, String> {
        let mut file = String::from("routes:\n");
        for i in 0..PROBES {
            file.push_str(&format!(
                "  - {{org: {}, upstream: \"{}\", tenant: {}}}\n",
                org(i),
                self.upstream,
                name(i)
            ));
        }
        let path = self.dir.join("routes-10.yaml");
        std::fs::write(&path, file).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(format!(
            "routes:\n  source: file\n  file: \"{}\"\n",
            path.display()
        ))
    }
}

/// Waits until the gateway is ready and holds `want` routes; the time since `start`.
async fn until_loaded(gw: &Gateway, want: usize, start: Instant) -> Result<Duration, String> {
    let deadline = Duration::from_secs(600);
    loop {
        if gw.routes().await == Some(want)
            && http_get(gw.admin, "/readyz").await.ok().map(|r| r.0) == Some(200)
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > deadline {
            return Err(format!(
                "the gateway did not load {want} routes within {deadline:?} (it has {:?})",
                gw.routes().await
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends requests for the org of `token` until `done(status, body)`; the time since `start`.
async fn until_answer(
    gw: &Gateway,
    token: &str,
    start: Instant,
    what: &str,
    done: impl Fn(u16, &str) -> bool,
) -> Result<Duration, String> {
    let deadline = Duration::from_secs(30);
    let mut client = Client::connect(gw.listen).await?;
    loop {
        let (code, body) = client.get(token).await?;
        if done(code, &body) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > deadline {
            return Err(format!(
                "{what}: not seen within {deadline:?} (last answer {code} {})",
                body.trim()
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn routed(code: u16, body: &str) -> bool {
    code == 200 && body == UPSTREAM_BODY
}

fn unrouted(code: u16, body: &str) -> bool {
    code == 403 && body.contains("no_route")
}

/// Resident and peak resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time the process has used (user and system), in clock ticks of 1/100 s.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Requests over `connections` keep-alive connections for `seconds`, each connection walking `tokens`; every
/// answer must be the upstream's. Requests per second and the median and 99th percentile of one request.
async fn load(gw: &Gateway, tokens: &[String], connections: usize, seconds: u64) -> Result<Round, String> {
    let run = Duration::from_secs(seconds);
    let start = Instant::now();
    let per_connection = futures::future::try_join_all((0..connections).map(|c| async move {
        let mut client = Client::connect(gw.listen).await?;
        let mut times = Vec::new();
        let mut k = c;
        while start.elapsed() < run {
            let token = tokens.get(k % tokens.len().max(1)).ok_or("no tokens")?;
            let sent = Instant::now();
            let (code, body) = client.get(token).await?;
            times.push(sent.elapsed());
            if !routed(code, &body) {
                return Err(format!("a request was not routed: {code} {}", body.trim()));
            }
            k += 1;
        }
        Ok::<_, String>(times)
    }))
    .await?;
    let elapsed = start.elapsed().as_secs_f64();
    let mut times: Vec<Duration> = per_connection.into_iter().flatten().collect();
    let rate = times.len() as f64 / elapsed;
    let p50 = median(&mut times);
    let p99 = times.get(times.len() * 99 / 100).copied().unwrap_or_default();
    Ok((rate, p50, p99))
}

/// One request round: requests per second, and the median and 99th percentile of one request.
type Round = (f64, Duration, Duration);

struct Figures {
    n: usize,
    load_time: Duration,
    rss_at_load_kib: u64,
    empty_rss_kib: u64,
    peak_rss_kib: u64,
    idle_cpu_percent: f64,
    idle_seconds: u64,
    new_routable: Vec<Duration>,
    changes: Vec<Duration>,
    /// Per round: (requests/s, p50, p99) at N routes and at 10.
    rounds: Vec<(Round, Round)>,
    connections: usize,
    load_before: String,
    load_after: String,
    create_time: Duration,
}

async fn run(args: Args) -> Result<(), String> {
    let n = args.tenants;
    if n < PROBES {
        return Err(format!("--tenants must be at least {PROBES}"));
    }
    let bin = bench::sibling(
        args.gateway_bin.as_deref(),
        "bulkhead-gateway",
        "bulkhead-gateway",
    )?;
    let profile = bench::profile();
    let load_before = bench::load_average();
    let dir = tempfile::Builder::new()
        .prefix("bench-routes-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let issuer = Issuer::generate(dir.path()).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join(PUBLIC_KEY_FILE), issuer.public_pem()).map_err(|e| e.to_string())?;
    let pem = std::fs::read(issuer.private_key()).map_err(|e| e.to_string())?;
    let key = mint::encoding_key(&pem, Algorithm::ES256).map_err(|e| e.to_string())?;
    let token = |org: &str| {
        mint::mint(
            &Mint {
                algorithm: Algorithm::ES256,
                kid: KID.into(),
                issuer: ISSUER.into(),
                subject: "user_bench".into(),
                org: Some(org.into()),
                placement: OrgPlacement::ClerkV2,
                expires_in: 3000,
                extra: Default::default(),
            },
            &key,
        )
        .map_err(|e| format!("minting a token: {e}"))
    };

    eprintln!("starting the control plane...");
    let plane = ControlPlane::start_with_crds().await.map_err(|e| e.to_string())?;
    let client = plane.admin().await.map_err(|e| e.to_string())?;
    let api: Api<Tenant> = Api::all(client);
    let setup = Setup {
        bin: &bin,
        dir: dir.path(),
        kubeconfig: plane.kubeconfig_path(),
        upstream: upstream().await?,
    };
    let routes = setup.kubernetes_routes(args.new);

    // The same gateway with no Tenants: the memory that is not the route table's.
    let empty = setup.spawn("gateway-empty", &routes)?;
    until_loaded(&empty, 0, Instant::now()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty_rss_kib = rss_kib(empty.pid()).0;
    empty.stop();

    eprintln!("creating {n} Ready Tenants...");
    let created = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move { create_ready(&api, &name(i), &org(i)).await }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let create_time = created.elapsed();

    eprintln!("starting the gateway on {n} Tenants...");
    let started = Instant::now();
    let gw = setup.spawn("gateway", &routes)?;
    let load_time = until_loaded(&gw, n, started).await?;
    let (rss_at_load_kib, _) = rss_kib(gw.pid());
    let probe_tokens: Vec<String> = (0..PROBES).map(|i| token(&org(i))).collect::<Result<_, _>>()?;
    for t in &probe_tokens {
        until_answer(&gw, t, Instant::now(), "a probe Tenant routed", routed).await?;
    }

    let idle = Duration::from_secs(10);
    eprintln!("idle CPU over {idle:?}...");
    let before = cpu_ticks(gw.pid());
    tokio::time::sleep(idle).await;
    let idle_cpu_percent = (cpu_ticks(gw.pid()).saturating_sub(before)) as f64 / idle.as_secs_f64();

    eprintln!("{} new Tenants, one at a time...", args.new);
    let mut new_routable = Vec::new();
    for j in 0..args.new {
        let (name, org) = (new_name(j), new_org(j));
        api.create(&PostParams::default(), &tenant(&name, &org))
            .await
            .map_err(|e| format!("creating Tenant {name}: {e}"))?;
        let t = token(&org)?;
        until_answer(
            &gw,
            &t,
            Instant::now(),
            "a new Tenant not routed before Ready",
            unrouted,
        )
        .await?;
        let start = Instant::now();
        api.patch_status(&name, &PatchParams::default(), &status(&name, true))
            .await
            .map_err(|e| format!("writing the status of Tenant {name}: {e}"))?;
        new_routable.push(until_answer(&gw, &t, start, &format!("Tenant {name} routable"), routed).await?);
    }

    eprintln!("{} route changes...", 2 * args.flips);
    let mut changes = Vec::new();
    let (flip, flip_token) = (name(0), probe_tokens.first().cloned().unwrap_or_default());
    for _ in 0..args.flips {
        for routable in [false, true] {
            let start = Instant::now();
            api.patch_status(&flip, &PatchParams::default(), &status(&flip, routable))
                .await
                .map_err(|e| format!("writing the status of Tenant {flip}: {e}"))?;
            let what = format!("Tenant {flip} routable={routable}");
            changes.push(if routable {
                until_answer(&gw, &flip_token, start, &what, routed).await?
            } else {
                until_answer(&gw, &flip_token, start, &what, unrouted).await?
            });
        }
    }
    let total = n + args.new;
    if gw.routes().await != Some(total) {
        return Err(format!(
            "the gateway holds {:?} routes, expected {total}",
            gw.routes().await
        ));
    }

    eprintln!("requests at {total} routes and at {PROBES}, alternating...");
    let small = setup.spawn("gateway-10", &setup.file_routes()?)?;
    until_loaded(&small, PROBES, Instant::now()).await?;
    // Warm both: pools, token cache, the probe routes.
    load(&gw, &probe_tokens, args.connections, 1).await?;
    load(&small, &probe_tokens, args.connections, 1).await?;
    let mut rounds = Vec::new();
    for _ in 0..args.rounds {
        let big = load(&gw, &probe_tokens, args.connections, args.seconds).await?;
        let little = load(&small, &probe_tokens, args.connections, args.seconds).await?;
        rounds.push((big, little));
    }
    small.stop();
    let (_, peak_rss_kib) = rss_kib(gw.pid());
    gw.stop();

    let figures = Figures {
        n: total,
        load_time,
        rss_at_load_kib,
        empty_rss_kib,
        peak_rss_kib,
        idle_cpu_percent,
        idle_seconds: idle.as_secs(),
        new_routable,
        changes,
        rounds,
        connections: args.connections,
        load_before,
        load_after: bench::load_average(),
        create_time,
    };
    let body = render(&figures, n, profile);
    println!("### Gateway at {n} routes\n\n{body}");
    if let Some(path) = args.write {
        report::replace_marked(
            &path,
            &format!("scale-gateway-{n}"),
            &format!("### Gateway at {n} routes"),
            &body,
        )
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    drop(plane);
    Ok(())
}

fn render(f: &Figures, n: usize, profile: &str) -> String {
    let mut new = f.new_routable.clone();
    let mut changes = f.changes.clone();
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    let per_route = (f.rss_at_load_kib.saturating_sub(f.empty_rss_kib)) as f64 * 1024.0 / n as f64;
    let mut big_rate: Vec<f64> = f.rounds.iter().map(|r| r.0.0).collect();
    let mut small_rate: Vec<f64> = f.rounds.iter().map(|r| r.1.0).collect();
    let mut big_p50: Vec<Duration> = f.rounds.iter().map(|r| r.0.1).collect();
    let mut small_p50: Vec<Duration> = f.rounds.iter().map(|r| r.1.1).collect();
    let mut big_p99: Vec<Duration> = f.rounds.iter().map(|r| r.0.2).collect();
    let mut small_p99: Vec<Duration> = f.rounds.iter().map(|r| r.1.2).collect();
    let median_f = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let (br, sr) = (median_f(&mut big_rate), median_f(&mut small_rate));
    let (b50, s50) = (median(&mut big_p50), median(&mut small_p50));
    let (b99, s99) = (median(&mut big_p99), median(&mut small_p99));
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    format!(
        "Measured {date} by `bench-routes --tenants {n}` ({profile} build, {cores} cores shared with other work; \
load average {lb} before, {la} after). Local control plane (API server only); Tenant statuses written directly; \
the gateway a separate process. Creating the {n} Ready Tenants took {create:.1} s.\n\n\
| measure | value | target |\n\
| --- | ---: | --- |\n\
| gateway start → all {n} routes loaded (ready, metric at {n}) | {load:.2} s | |\n\
| gateway RSS with {n} routes · with no Tenants · per route | {rss:.1} MiB · {empty:.1} MiB · {per_route:.0} B | |\n\
| gateway peak RSS (through everything below) | {peak:.1} MiB | |\n\
| gateway CPU while nothing changes ({idle} s) | {cpu:.2}% of a core | near zero |\n\
| new Tenant: Ready status write → routable ({k}, one at a time): median · max | {nm} · {nx} | |\n\
| route change (Routable=False and back, {c}): status write → applied: median · max | {cm} · {cx} | < 100 ms |\n\
| requests/s through the gateway, {conns} connections: {total} routes · 10 routes (median of {r} rounds) | {br:.0} · {sr:.0} (**{ratio:+.1}%**) | within 10% |\n\
| one request, median · p99: {total} routes | {b50} · {b99} | |\n\
| one request, median · p99: 10 routes | {s50} · {s99} | |\n\n\
The 10-route gateway reads the same 10 probe routes from a static file; both answer the same requests (10 orgs \
in turn, cached tokens) from the same local upstream, in alternating rounds. \"Routable\" is the first request \
for the org that reaches the upstream; requests are sent 1 ms apart, so times include up to ~1 ms of polling.\n",
        date = report::today(),
        cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        lb = f.load_before,
        la = f.load_after,
        create = f.create_time.as_secs_f64(),
        load = f.load_time.as_secs_f64(),
        rss = f.rss_at_load_kib as f64 / 1024.0,
        empty = f.empty_rss_kib as f64 / 1024.0,
        peak = f.peak_rss_kib as f64 / 1024.0,
        idle = f.idle_seconds,
        cpu = f.idle_cpu_percent,
        k = f.new_routable.len(),
        nm = ms(median(&mut new)),
        nx = ms(max(&f.new_routable)),
        c = f.changes.len(),
        cm = ms(median(&mut changes)),
        cx = ms(max(&f.changes)),
        conns = f.connections,
        total = f.n,
        r = f.rounds.len(),
        ratio = if sr > 0.0 { (br / sr - 1.0) * 100.0 } else { 0.0 },
        b50 = us(b50),
        b99 = us(b99),
        s50 = us(s50),
        s99 = us(s99),
    )
}
