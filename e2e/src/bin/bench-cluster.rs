//! `bench-cluster`: how fast the local one-node cluster starts, starts a pod, and enforces a NetworkPolicy,
//! measured side by side in one run.
//!
//! - cluster start-up: from nothing to cluster DNS ready, with the time of each step;
//! - pod start: creating a pod until it is Ready (and until it answers TCP), for several pods in turn;
//! - policy latency: with a server answering, the time from the API server accepting a default-deny policy
//!   until the first refused connection, and from deleting it until the first accepted one again. Connections
//!   are made from the host (outside every namespace, so no policy allows it) every 10 ms with a 100 ms
//!   timeout, which bounds the resolution.
//!
//! Prints one Markdown table; `--write FILE` also stores it between the `cluster-bench` markers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_e2e::{Cluster, versions};
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, PostParams};

#[derive(Debug, Parser)]
#[command(
    name = "bench-cluster",
    about = "Local cluster start-up, pod start and NetworkPolicy latency"
)]
struct Args {
    /// Pods started one after another for the pod start figures.
    #[arg(long, default_value = "5")]
    pods: usize,
    /// Deny/allow cycles for the policy latency figures.
    #[arg(long, default_value = "5")]
    cycles: usize,
    /// Also write the table into this Markdown file, between the cluster-bench markers.
    #[arg(long)]
    write: Option<PathBuf>,
}

const NAMESPACE: &str = "bench";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-cluster: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let cluster = Cluster::start().await.map_err(|e| e.to_string())?;
    let startup: Vec<(String, Duration)> = cluster.timings().to_vec();
    let client = cluster.admin().await.map_err(|e| e.to_string())?;
    let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))
        .map_err(|e| e.to_string())?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(|e| e.to_string())?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);

    let mut ready = Vec::new();
    let mut answering = Vec::new();
    let mut server = None;
    for i in 0..args.pods.max(1) {
        let name = format!("server-{i}");
        let started = Instant::now();
        pods.create(&PostParams::default(), &server_pod(&name)?)
            .await
            .map_err(|e| e.to_string())?;
        let ip = bulkhead_e2e::wait::pod_ready_ip(&pods, &name, Duration::from_secs(120))
            .await
            .map_err(|e| e.to_string())?;
        ready.push(started.elapsed());
        let addr: SocketAddr = format!("{ip}:8080")
            .parse()
            .map_err(|e| format!("pod address {ip}: {e}"))?;
        while !connects(addr).await {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("{name} never answered on {addr}"));
            }
        }
        answering.push(started.elapsed());
        server = Some(addr);
    }
    let server = server.ok_or("no server pod")?;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    let deny: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }))
    .map_err(|e| e.to_string())?;
    let mut to_refused = Vec::new();
    let mut to_accepted = Vec::new();
    for _ in 0..args.cycles.max(1) {
        policies
            .create(&PostParams::default(), &deny)
            .await
            .map_err(|e| e.to_string())?;
        let applied = Instant::now();
        to_refused.push(until(server, false, applied).await?);
        policies
            .delete("default-deny", &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let deleted = Instant::now();
        to_accepted.push(until(server, true, deleted).await?);
    }
    drop(cluster);

    let versions = versions::read().map_err(|e| e.to_string())?;
    let version = |key: &str| versions.get(key).cloned().unwrap_or_default();
    let mut table = format!(
        "### Local cluster: start-up, pod start and NetworkPolicy latency ({}, `make bench-cluster`)\n\n\
         Kubernetes {}, etcd {}, containerd 1.6 (Debian), kube-router {} (firewall only), CoreDNS {}; one run.\n\n\
         | measure | median | min | max | samples |\n|---|---|---|---|---|\n",
        bulkhead_e2e::report::today(),
        version("KUBERNETES_VERSION"),
        version("ETCD_VERSION"),
        version("KUBE_ROUTER_VERSION"),
        version("COREDNS_VERSION"),
    );
    if let Some((_, total)) = startup.last() {
        table.push_str(&row("cluster start-up, nothing to DNS ready", &[*total]));
    }
    table.push_str(&row("pod start: created to Ready", &ready));
    table.push_str(&row("pod start: created to answering TCP", &answering));
    table.push_str(&row(
        "deny policy accepted to first refused connection",
        &to_refused,
    ));
    table.push_str(&row(
        "deny policy deleted to first accepted connection",
        &to_accepted,
    ));
    table.push_str("\nStart-up steps (cumulative): ");
    table.push_str(
        &startup
            .iter()
            .map(|(what, at)| format!("{what} {}", ms(*at)))
            .collect::<Vec<_>>()
            .join("; "),
    );
    table.push_str(".\n");
    println!("{table}");
    if let Some(path) = args.write {
        write_section(&path, &table).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn server_pod(name: &str) -> Result<Pod, String> {
    let image = versions::get("AGNHOST_IMAGE").map_err(|e| e.to_string())?;
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "server"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "agnhost",
                "image": image,
                "imagePullPolicy": "Never",
                "args": ["netexec", "--http-port=8080", "--udp-port=-1"],
            }],
        },
    }))
    .map_err(|e| e.to_string())
}

async fn connects(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Probes every 10 ms until a connection's outcome is `accepted`; the time since `since`.
async fn until(addr: SocketAddr, accepted: bool, since: Instant) -> Result<Duration, String> {
    loop {
        if connects(addr).await == accepted {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(60) {
            let want = if accepted { "accepted" } else { "refused" };
            return Err(format!("connections to {addr} were not {want} within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn row(what: &str, samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let (Some(min), Some(max)) = (sorted.first(), sorted.last()) else {
        return String::new();
    };
    let median = sorted[sorted.len() / 2];
    format!(
        "| {what} | {} | {} | {} | {} |\n",
        ms(median),
        ms(*min),
        ms(*max),
        sorted.len()
    )
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Records the table between the cluster-bench markers.
fn write_section(path: &Path, table: &str) -> std::io::Result<()> {
    bulkhead_e2e::report::replace_marked(path, "cluster-bench", "## Local cluster", table)
}
