//! `bench-verify`: how long `bulkhead-operator verify` takes, and how much memory, on a large installation.
//!
//! The installation: N Bulkhead namespaces (default 1000), each with the objects the operator builds for a
//! Tenant with a database (five NetworkPolicies: default deny, gateway, DNS, same namespace, Postgres) and a
//! Ready status, plus F foreign policies (default 200) spread over namespaces Bulkhead does not manage, with
//! pods and a mix of selectors, ipBlocks with excepts and named ports.
//!
//! Two rows:
//! - **read and judge**: the installation is written into a real API server (the control-plane harness), and a
//!   fresh process runs verify's `run` against it, under verify's own ClusterRole: every list call, the route
//!   table, the contract per namespace, the matrix and the report (text and JSON). No Postgres: the database
//!   side is timed by `make bench-grants`, whose catalog scans it shares;
//! - **judge only**: the same state handed to the pure part in memory, to show where the time goes.
//!
//! Each row reports wall time and the process's peak RSS (`VmHWM`). Prints one Markdown table; `--write FILE`
//! also stores it between the `verify-bench` markers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::Tenant;
use bulkhead_e2e::ControlPlane;

use bulkhead_operator::verify::sample;
use bulkhead_operator::verify::{self, snapshot::Snapshot};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "bench-verify",
    about = "verify's time and memory on a large installation"
)]
struct Args {
    /// Bulkhead namespaces (Tenants).
    #[arg(long, default_value = "1000")]
    namespaces: usize,
    /// Foreign NetworkPolicies, in namespaces Bulkhead does not manage.
    #[arg(long, default_value = "200")]
    foreign: usize,
    /// Runs of each row; the table shows the median and the worst.
    #[arg(long, default_value = "3")]
    runs: usize,
    /// Also write the table into this Markdown file, between the verify-bench markers.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Internal: run verify once against this kubeconfig and print `<seconds> <peak RSS KiB> <cells> <checks>`.
    #[arg(long, hide = true)]
    measure: Option<PathBuf>,
}

const FOREIGN_PER_NAMESPACE: usize = 4;
const OUTSIDE: &str = "198.51.100.10:443";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.measure {
        Some(kubeconfig) => measure(kubeconfig).await,
        None => run(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-verify: {message}");
            ExitCode::FAILURE
        }
    }
}

fn options() -> verify::Options {
    verify::Options {
        settings: sample::settings(),
        outside: OUTSIDE
            .parse()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([198, 51, 100, 10], 443))),
        context: Some("verifier".into()),
    }
}

/// This process's peak resident set, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn foreign_policy(i: usize, namespace: &str, managed: usize) -> Result<NetworkPolicy, String> {
    let target = format!("bk-t{:04}", i % managed.max(1));
    let spec = match i % 4 {
        // Lets a team reach one Tenant's namespace: egress only (the Tenant's own policies still refuse it).
        0 => json!({"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": target}}}]}]}),
        1 => {
            json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["api", "web"]}]},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                        {"key": "team", "operator": "Exists"}]}, "podSelector": {"matchLabels": {"app": "web"}}}],
                                 "ports": [{"port": "http", "protocol": "TCP"}]}]})
        }
        2 => json!({"podSelector": {}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "198.18.0.0/15"]}}],
                                "ports": [{"port": 443}, {"port": 8000, "endPort": 8100}]}]}),
        _ => json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{}], "egress": [{"to": [{"podSelector": {}}]}]}),
    };
    serde_json::from_value(
        json!({"metadata": {"name": format!("foreign-{i}"), "namespace": namespace}, "spec": spec}),
    )
    .map_err(|e| e.to_string())
}

/// The installation, as a snapshot (what the API server would hold, statuses and pods included).
fn installation(managed: usize, foreign: usize) -> Result<Snapshot, String> {
    let e = |e: serde_json::Error| e.to_string();
    let tenants = (0..managed)
        .map(|i| sample::tenant(&format!("t{i:04}"), true))
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    let mut s = sample::installation(tenants, Vec::new(), &sample::settings());
    let teams = foreign.div_ceil(FOREIGN_PER_NAMESPACE);
    for t in 0..teams {
        let namespace = format!("team-{t:03}");
        s.namespaces.push(sample::namespace(
            &namespace,
            BTreeMap::from([("team".to_owned(), format!("t{t}"))]),
        ));
        for app in ["api", "web"] {
            let labels = BTreeMap::from([("app".to_owned(), app.to_owned())]);
            let ip = sample::pod_ip(s.pods.len());
            s.pods.push(sample::pod(&namespace, app, &labels, ip, 8000));
        }
    }
    for i in 0..foreign {
        s.network_policies.push(foreign_policy(
            i,
            &format!("team-{:03}", i / FOREIGN_PER_NAMESPACE),
            managed,
        )?);
    }
    Ok(s)
}

/// Judges the snapshot and renders the report, as `run` does after reading.
fn judge(snapshot: &Snapshot) -> (usize, usize, usize) {
    let options = options();
    let (network, routing, mut checks) = verify::judge(snapshot, &options);
    let places = network.matrix.places.len();
    let cells = network.matrix.sources.len() * network.matrix.destinations.len();
    checks.extend(network.checks);
    checks.extend(routing.checks);
    let report = verify::Report::new(
        String::new(),
        verify::report::Identity::default(),
        network.matrix,
        routing.table,
        checks,
    );
    let text = report.render();
    let json = report.to_json();
    std::hint::black_box((text.len(), json.len()));
    (places, cells, report.checks.len())
}

/// A create that found the object there already (the control plane's own namespaces) is fine.
fn already_there(e: kube::Error, name: &str) -> Result<(), String> {
    match e {
        kube::Error::Api(status) if status.code == 409 => Ok(()),
        e => Err(format!("creating {name}: {e}")),
    }
}

/// Creates `objects`, 32 at a time, each through the Api `api_for` gives it.
async fn create_each<K>(objects: Vec<K>, api_for: impl Fn(&K) -> Api<K>) -> Result<(), String>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(objects.into_iter().map(|mut o| {
        o.meta_mut().uid = None;
        let api = api_for(&o);
        async move {
            api.create(&PostParams::default(), &o)
                .await
                .map(drop)
                .or_else(|e| already_there(e, &o.name_any()))
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await
    .map(drop)
}

/// Creates namespaced objects.
async fn create_all<K>(client: &Client, objects: Vec<K>) -> Result<(), String>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    create_each(objects, |o| {
        Api::namespaced(client.clone(), &o.namespace().unwrap_or_default())
    })
    .await
}

/// Creates cluster-scoped objects.
async fn create_cluster<K>(client: &Client, objects: Vec<K>) -> Result<(), String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    create_each(objects, |_| Api::all(client.clone())).await
}

/// Writes the installation into the API server, statuses included (pods keep their IPs: nothing schedules them).
async fn populate(client: &Client, s: &Snapshot) -> Result<(), String> {
    // Tenants first: each namespace records its Tenant's UID, which the API server assigns.
    create_cluster(
        client,
        s.tenants
            .iter()
            .cloned()
            .map(|mut t| {
                t.status = None;
                t
            })
            .collect::<Vec<_>>(),
    )
    .await?;
    let uids: BTreeMap<String, String> = Api::<Tenant>::all(client.clone())
        .list(&Default::default())
        .await
        .map_err(|e| format!("listing Tenants: {e}"))?
        .items
        .into_iter()
        .map(|t| (t.name_any(), t.metadata.uid.unwrap_or_default()))
        .collect();
    let mut namespaces = s.namespaces.clone();
    for ns in &mut namespaces {
        let tenant = ns.labels().get(bulkhead_crds::labels::TENANT).cloned();
        if let (Some(tenant), Some(annotations)) = (tenant, ns.metadata.annotations.as_mut())
            && let Some(uid) = uids.get(&tenant)
        {
            annotations.insert(bulkhead_crds::labels::OWNER_UID.to_owned(), uid.clone());
        }
    }
    create_cluster(client, namespaces).await?;
    let (a, b, c, d) = futures::join!(
        create_all(client, s.network_policies.clone()),
        create_all(client, s.resource_quotas.clone()),
        create_all(client, s.limit_ranges.clone()),
        create_all(client, s.service_accounts.clone()),
    );
    a?;
    b?;
    c?;
    d?;
    let (a, b, c) = futures::join!(
        create_all(client, s.deployments.clone()),
        create_all(client, s.services.clone()),
        create_all(
            client,
            s.pods
                .iter()
                .cloned()
                .map(|mut p| {
                    p.status = None;
                    p
                })
                .collect::<Vec<_>>()
        ),
    );
    a?;
    b?;
    c?;
    futures::stream::iter(s.pods.iter().map(|p| {
        let client = client.clone();
        async move {
            let api: Api<Pod> = Api::namespaced(client, &p.namespace().unwrap_or_default());
            api.patch_status(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": p.status})),
            )
            .await
            .map(drop)
            .map_err(|e| format!("pod status: {e}"))
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    futures::stream::iter(s.tenants.iter().map(|t| {
        let client = client.clone();
        async move {
            Api::<Tenant>::all(client)
                .patch_status(
                    &t.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": t.status})),
                )
                .await
                .map(drop)
                .map_err(|e| format!("tenant status: {e}"))
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    Api::<ConfigMap>::namespaced(client.clone(), "bulkhead-system")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
            "metadata": {"name": "bulkhead-gateway", "namespace": "bulkhead-system"},
            "data": {"gateway.yaml": sample::GATEWAY_CONFIG}}))
            .map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| format!("gateway ConfigMap: {e}"))?;
    bind_verifier(client).await
}

async fn bind_verifier(client: &Client) -> Result<(), String> {
    use bulkhead_operator::process::rbac;
    let user = json!([{"kind": "User", "name": bulkhead_e2e::control_plane::VERIFIER_USER,
                       "apiGroup": "rbac.authorization.k8s.io"}]);
    let e = |e: kube::Error| e.to_string();
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &rbac::verify_cluster_role())
        .await
        .map_err(e)?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({
            "metadata": {"name": rbac::VERIFIER},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rbac::VERIFIER},
            "subjects": user})).map_err(|e| e.to_string())?)
        .await
        .map_err(e)?;
    Api::<Role>::namespaced(client.clone(), "bulkhead-system")
        .create(
            &PostParams::default(),
            &rbac::verify_role("bulkhead-system", None),
        )
        .await
        .map_err(e)?;
    Api::<RoleBinding>::namespaced(client.clone(), "bulkhead-system")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
            "metadata": {"name": rbac::VERIFIER, "namespace": "bulkhead-system"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rbac::VERIFIER},
            "subjects": user}))
            .map_err(|e| e.to_string())?,
        )
        .await
        .map_err(e)?;
    Ok(())
}

/// The child: one `verify` run against the kubeconfig's `verifier` context.
async fn measure(kubeconfig: &std::path::Path) -> Result<(), String> {
    let started = Instant::now();
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(
        file,
        &kube::config::KubeConfigOptions {
            context: Some("verifier".into()),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    let report = verify::run(&client, &options())
        .await
        .map_err(|e| e.to_string())?;
    let text = report.render();
    let json = report.to_json();
    let elapsed = started.elapsed();
    std::hint::black_box((text.len(), json.len()));
    let cells = report.matrix.sources.len() * report.matrix.destinations.len();
    let failed = report.summary.fail;
    if let Some(first) = report.checks.iter().find(|c| c.verdict == verify::Verdict::Fail) {
        eprintln!(
            "bench-verify: {failed} checks failed, the first: {} {}: {}",
            first.id, first.subject, first.summary
        );
    }
    println!(
        "{} {} {cells} {} {failed}",
        elapsed.as_secs_f64(),
        peak_rss_kib(),
        report.checks.len()
    );
    Ok(())
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

async fn run(args: &Args) -> Result<(), String> {
    let runs = args.runs.max(1);
    let snapshot = installation(args.namespaces, args.foreign)?;
    let policies = snapshot.network_policies.len();
    // The pure part, in this process (nothing else has grown it yet).
    let mut judged = Vec::new();
    let mut shape = (0, 0, 0);
    for _ in 0..runs {
        let started = Instant::now();
        shape = judge(&snapshot);
        judged.push(started.elapsed());
    }
    let judge_rss = peak_rss_kib();

    eprintln!(
        "bench-verify: writing {} namespaces and {policies} policies into the control plane",
        snapshot.namespaces.len()
    );
    let plane = ControlPlane::start_with_crds().await.map_err(|e| e.to_string())?;
    let admin = plane.admin().await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    populate(&admin, &snapshot).await?;
    let populated = started.elapsed();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut read = Vec::new();
    let mut read_rss = 0u64;
    let mut failed = String::new();
    for _ in 0..runs {
        let out = std::process::Command::new(&exe)
            .arg("--measure")
            .arg(plane.kubeconfig_path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "the measuring run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let seconds: f64 = fields
            .first()
            .and_then(|f| f.parse().ok())
            .ok_or("no time printed")?;
        read.push(Duration::from_secs_f64(seconds));
        read_rss = read_rss.max(fields.get(1).and_then(|f| f.parse().ok()).unwrap_or(0));
        failed = fields.get(4).map(|f| (*f).to_owned()).unwrap_or_default();
    }
    let (read_median, read_worst) = median(read);
    let (judge_median, judge_worst) = median(judged);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let mut table = format!(
        "### `verify` on {} Bulkhead namespaces, {} policies ({} foreign) ({}, `make bench-verify`)\n\n",
        args.namespaces,
        policies,
        args.foreign,
        bulkhead_e2e::report::today()
    );
    table.push_str(&format!(
        "{} places in the matrix, {} cells, {} checks; {runs} runs per row, release build, 2 cores. Target: under 2 s.\n\n",
        shape.0, shape.1, shape.2
    ));
    table.push_str("| row | median | worst | peak RSS | target |\n|---|---|---|---|---|\n");
    table.push_str(&format!(
        "| read and judge (a fresh process against the control plane, under verify's ClusterRole) | {} | {} | {} MiB | {} |\n",
        ms(read_median),
        ms(read_worst),
        read_rss / 1024,
        if read_worst < Duration::from_secs(2) { "met" } else { "MISSED" }
    ));
    table.push_str(&format!(
        "| judge only (in memory: matrix, routes, contract, report) | {} | {} | {} MiB | - |\n",
        ms(judge_median),
        ms(judge_worst),
        judge_rss / 1024
    ));
    table.push_str(&format!(
        "\nWriting the installation into the API server took {:.0} s (not part of the figures). Failing checks in the read run: {failed} (expected 0).\n",
        populated.as_secs_f64()
    ));
    println!("{table}");
    if let Some(path) = &args.write {
        bulkhead_e2e::report::replace_marked(path, "verify-bench", "## verify", &table)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
