//! `bench-operator`: how fast and how frugally the operator converges N Tenants on the local control plane,
//! side by side with the floor: a plain client loop applying the same objects directly.
//!
//! Both runs get a fresh control plane with API audit logging; writes are counted from the audit log for the
//! operator's own user (so the controller-manager's writes are not counted), and the operator's peak RSS is
//! read from /proc. Prints one Markdown table; `--write FILE` also stores it (docs/benchmarks.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::Tenant;
use bulkhead_e2e::operator::{http_get, install_rbac};
use bulkhead_e2e::{ControlPlane, bench, control_plane::OPERATOR_USER, wait};
use bulkhead_operator::pipeline::build::{self, Desired, Subject};
use bulkhead_operator::pipeline::outcome::Stack;
use bulkhead_operator::settings::Settings;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "bench-operator",
    about = "Benchmark the operator against a plain apply loop"
)]
struct Args {
    /// How many Tenants (database disabled, stacks at zero replicas).
    #[arg(long, default_value_t = 200)]
    tenants: usize,
    /// Requests in flight at once, for the floor loop and for creating the Tenants.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The operator binary (default: bulkhead-operator next to this binary; build both with --release).
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Also write the results table into this Markdown file, replacing the section for this N.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Skip the one-Tenant-after-another floor (at 10,000 Tenants it alone takes many minutes).
    #[arg(long)]
    skip_plain_loop: bool,
    /// Install the CRDs without their CEL validation rules, to see what the rules cost the API server (not how
    /// Bulkhead is installed: the figures are not comparable with the default run's).
    #[arg(long)]
    without_cel: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    bench::exit("bench-operator", run(Args::parse()).await)
}

fn tenant(i: usize) -> Tenant {
    let mut t = Tenant::new(
        &format!("bench-{i:04}"),
        bulkhead_crds::v1alpha1::TenantSpec {
            org_id: format!("org_bench_{i:04}"),
            display_name: None,
            stack: bulkhead_crds::v1alpha1::StackSpec {
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
    );
    t.metadata.uid = Some(format!("bench-uid-{i}"));
    t
}

struct Measured {
    seconds: f64,
    writes: usize,
    by_resource: BTreeMap<String, usize>,
    /// CPU the control plane's processes (etcd, API server, controller-manager) spent until converged, in ticks.
    plane_ticks: u64,
}

async fn run(args: Args) -> Result<(), String> {
    let n = args.tenants;
    if args.without_cel && args.write.is_some() {
        return Err(
            "--without-cel measures Bulkhead as it is not installed: print the table, do not --write it"
                .into(),
        );
    }
    let operator_bin = bench::sibling(
        args.operator_bin.as_deref(),
        "bulkhead-operator",
        "bulkhead-operator",
    )?;
    let profile = bench::profile();
    eprintln!("floor: applying the objects of {n} Tenants with a plain client loop...");
    let sequential = if args.skip_plain_loop {
        None
    } else {
        eprintln!("floor: the same objects applied one Tenant after another...");
        Some(floor(n, 1, args.without_cel).await?)
    };
    eprintln!(
        "floor: the same objects applied {} Tenants at a time...",
        args.concurrency
    );
    let parallel = floor(n, args.concurrency, args.without_cel).await?;
    eprintln!("operator: converging {n} Tenants...");
    let op = operator(n, args.concurrency, &operator_bin, args.without_cel).await?;

    let c = args.concurrency;
    let per_tenant = |w: usize| w as f64 / n as f64;
    let table = format!(
        "### {n} Tenants ({profile} build, {cores} cores)\n\n\
| measure | operator | floor: plain loop | floor: {c} in flight | target |\n\
| --- | ---: | ---: | ---: | --- |\n\
| time until all {n} are Ready (floor: applied, Deployments available) | {:.1} s | {} | {:.1} s | {} **{:.2}× the {c}-way loop** |\n\
| API writes per Tenant until converged | {:.1} | {} | {:.1} | |\n\
| control-plane CPU per Tenant until converged (etcd, API server, controller-manager) | {:.1} ms | {} | {:.1} ms | |\n\
| operator CPU per Tenant until converged | {:.1} ms | | | |\n\
| API writes during a full resync after convergence | {} | | | 0 |\n\
| restart: from process start until every Tenant is reconciled again | {:.1} s | | | |\n\
| operator CPU at steady state (20 s, nothing changing) | {:.1}% of a core | | | near zero |\n\
| operator peak RSS: converging · after a restart | {:.1} MiB · {:.1} MiB | | | < 100 MiB at 1000, < 300 MiB at 10,000 |\n\n\
Operator writes by resource: {}.\n\
Floor writes by resource: {}.\n\
Writes during the resync by resource: {}.\n",
        op.converge.seconds,
        sequential
            .as_ref()
            .map_or("not run".to_owned(), |m| format!("{:.1} s", m.seconds)),
        parallel.seconds,
        sequential.as_ref().map_or(String::new(), |m| format!(
            "≤ 1.5× plain loop: **{:.2}×**;",
            op.converge.seconds / m.seconds
        )),
        op.converge.seconds / parallel.seconds,
        per_tenant(op.converge.writes),
        sequential
            .as_ref()
            .map_or("not run".to_owned(), |m| format!("{:.1}", per_tenant(m.writes))),
        per_tenant(parallel.writes),
        ticks_ms(op.converge.plane_ticks) / n as f64,
        sequential.as_ref().map_or("not run".to_owned(), |m| format!(
            "{:.1} ms",
            ticks_ms(m.plane_ticks) / n as f64
        )),
        ticks_ms(parallel.plane_ticks) / n as f64,
        ticks_ms(op.converging_ticks) / n as f64,
        op.resync_writes,
        op.restart_seconds,
        op.idle_cpu_percent,
        op.peak_rss_kib.0 as f64 / 1024.0,
        op.peak_rss_kib.1 as f64 / 1024.0,
        breakdown(&op.converge.by_resource),
        breakdown(&parallel.by_resource),
        if op.resync_by_resource.is_empty() {
            "none".to_owned()
        } else {
            breakdown(&op.resync_by_resource)
        },
        cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    );
    println!("{table}");
    if let Some(path) = args.write {
        write_section(&path, n, &table).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn breakdown(map: &BTreeMap<String, usize>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces (or appends) the `### N Tenants` section of a Markdown file.
fn write_section(path: &Path, n: usize, table: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let heading = format!("### {n} Tenants (");
    let mut out = String::new();
    let mut skipping = false;
    let mut replaced = false;
    for line in text.lines() {
        if line.starts_with(&heading) {
            skipping = true;
            replaced = true;
            out.push_str(table);
            out.push('\n');
            continue;
        }
        if skipping && (line.starts_with("### ") || line.starts_with("## ")) {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(table);
        out.push('\n');
    }
    std::fs::write(path, out)
}

async fn fresh_plane(without_cel: bool) -> Result<ControlPlane, String> {
    let plane = ControlPlane::start_with(true).await.map_err(|e| e.to_string())?;
    let crds = if without_cel {
        plane.install_crds_without_cel().await
    } else {
        plane.install_crds().await
    };
    crds.map_err(|e| e.to_string())?;
    install_rbac(&plane).await.map_err(|e| e.to_string())?;
    Ok(plane)
}

/// Writes by the operator's user once no new ones have arrived for two seconds.
async fn settled_writes(audit: &Path) -> Result<(usize, BTreeMap<String, usize>), String> {
    let mut last = count_writes(audit)?;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = count_writes(audit)?;
        if now.0 == last.0 {
            return Ok(now);
        }
        last = now;
    }
}

/// Writes by the operator's user, from the audit log.
fn count_writes(audit: &Path) -> Result<(usize, BTreeMap<String, usize>), String> {
    let text = std::fs::read_to_string(audit).map_err(|e| format!("reading {}: {e}", audit.display()))?;
    let mut by_resource = BTreeMap::new();
    let mut total = 0;
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["stage"] != "ResponseComplete" || event["user"]["username"] != OPERATOR_USER {
            continue;
        }
        let verb = event["verb"].as_str().unwrap_or_default();
        if !matches!(verb, "create" | "update" | "patch" | "delete") {
            continue;
        }
        let resource = event["objectRef"]["resource"].as_str().unwrap_or("?");
        let key = match event["objectRef"]["subresource"].as_str() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        };
        *by_resource.entry(key).or_insert(0) += 1;
        total += 1;
    }
    Ok((total, by_resource))
}

async fn apply<K>(api: Api<K>, object: &K) -> Result<(), String>
where
    K: kube::Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        &object.name_any(),
        &PatchParams::apply("bench-floor").force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("applying {}: {e}", object.name_any()))
}

/// The floor: the same objects, applied by a plain loop under the operator's identity.
async fn floor(n: usize, concurrency: usize, without_cel: bool) -> Result<Measured, String> {
    let plane = fresh_plane(without_cel).await?;
    let client = plane.operator().await.map_err(|e| e.to_string())?;
    let settings = Settings::default();
    let plane_before = plane_ticks(&plane);
    let each_before = each_ticks(&plane);
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let settings = settings.clone();
            async move {
                let t = tenant(i);
                let name = t.name_any();
                let subject = Subject {
                    tenant: &name,
                    customer: None,
                    uid: "bench",
                    stack: &t.spec.stack,
                    quota: &t.spec.quota,
                    egress: &t.spec.network.allow_egress,
                    database_enabled: false,
                    database_server: None,
                    credentials_revision: None,
                    retired: false,
                };
                let ns = subject.namespace();
                let Desired {
                    namespace,
                    network_policies,
                    resource_quota,
                    limit_range,
                    service_account,
                    deployment,
                    service,
                } = build::desired(&subject, &settings);
                apply(Api::all(client.clone()), &namespace).await?;
                for p in &network_policies {
                    apply(Api::namespaced(client.clone(), &ns), p).await?;
                }
                apply(Api::namespaced(client.clone(), &ns), &resource_quota).await?;
                apply(Api::namespaced(client.clone(), &ns), &limit_range).await?;
                apply(Api::namespaced(client.clone(), &ns), &service_account).await?;
                apply(Api::namespaced(client.clone(), &ns), &deployment).await?;
                apply(Api::namespaced(client.clone(), &ns), &service).await?;
                Ok::<(), String>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    // The operator's Ready includes an available stack, which the controller-manager reports: wait for the same.
    let deployments: Api<Deployment> = Api::all(plane.admin().await.map_err(|e| e.to_string())?);
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=bulkhead");
    wait::until(
        Duration::from_secs(1800),
        "every floor Deployment to be available",
        || async {
            let list = deployments.list(&managed).await.ok()?;
            let available = list
                .items
                .iter()
                .filter(|d| matches!(Stack::of(d), Stack::Available { .. }))
                .count();
            (available >= n).then_some(())
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    let plane_ticks = plane_ticks(&plane) - plane_before;
    debug_ticks("floor", &each_before, n);
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let _ = std::fs::copy(plane.audit_log(), "/tmp/bench-floor-audit.log");
    }
    let (writes, by_resource) = count_writes(&plane.audit_log())?;
    Ok(Measured {
        seconds,
        writes,
        by_resource,
        plane_ticks,
    })
}

struct OperatorRun {
    converge: Measured,
    resync_writes: usize,
    resync_by_resource: BTreeMap<String, usize>,
    /// From the restarted process's start until it has reconciled every Tenant.
    restart_seconds: f64,
    /// The restarted operator's CPU while nothing changes, in percent of one core.
    idle_cpu_percent: f64,
    /// Peak RSS while converging, and of the restarted process through its full pass and the idle window.
    peak_rss_kib: (u64, u64),
    /// The operator's CPU from its start until converged, in ticks.
    converging_ticks: u64,
}

fn spawn_operator(plane: &ControlPlane, bin: &Path, port: u16, name: &str) -> Result<Child, String> {
    let log =
        std::fs::File::create(plane.dir().join(format!("operator-{name}.log"))).map_err(|e| e.to_string())?;
    Command::new(bin)
        .args([
            "run",
            "--log-format",
            "json",
            "--context",
            "operator",
            "--admin-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))
}

/// CPU time the process has used (user and system), in clock ticks of 1/100 s.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    field(11) + field(12)
}

/// The CPU ticks of each process of the control plane.
fn each_ticks(plane: &ControlPlane) -> Vec<(u32, u64)> {
    plane.pids().into_iter().map(|p| (p, cpu_ticks(p))).collect()
}

/// With `BENCH_DEBUG`, prints each control-plane process's CPU per Tenant since `before`.
fn debug_ticks(run: &str, before: &[(u32, u64)], n: usize) {
    if std::env::var_os("BENCH_DEBUG").is_none() {
        return;
    }
    for (pid, ticks) in before {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        eprintln!(
            "debug: {run}: {} {:.1} ms per Tenant",
            name.trim(),
            ticks_ms(cpu_ticks(*pid) - ticks) / n as f64
        );
    }
}

/// The CPU ticks of every process of the control plane.
fn plane_ticks(plane: &ControlPlane) -> u64 {
    plane.pids().into_iter().map(cpu_ticks).sum()
}

/// Ticks of `/proc/<pid>/stat` in milliseconds (Linux counts them at USER_HZ, 100 a second).
fn ticks_ms(ticks: u64) -> f64 {
    ticks as f64 * 10.0
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

async fn metric(port: u16, prefix: &str) -> f64 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let body = http_get(addr, "/metrics")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn is_ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

async fn operator(
    n: usize,
    concurrency: usize,
    bin: &Path,
    without_cel: bool,
) -> Result<OperatorRun, String> {
    let plane = fresh_plane(without_cel).await?;
    let admin = plane.admin().await.map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut first = spawn_operator(&plane, bin, port, "first")?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait::until(Duration::from_secs(30), "the operator to be ready", || async {
        (http_get(addr, "/readyz").await.ok()?.0 == 200).then_some(())
    })
    .await
    .map_err(|e| e.to_string())?;

    let plane_before = plane_ticks(&plane);
    let each_before = each_ticks(&plane);
    let start = Instant::now();
    let api: Api<Tenant> = Api::all(admin.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let mut t = tenant(i);
                t.metadata.uid = None;
                api.create(&PostParams::default(), &t)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    // Watch rather than poll: listing hundreds of Tenants every few milliseconds would load the API server the
    // operator is being measured against.
    let mut ready = std::collections::BTreeSet::new();
    let mut events = std::pin::pin!(watcher(api.clone(), watcher::Config::default()).applied_objects());
    while ready.len() < n {
        match events.try_next().await {
            Ok(Some(t)) if is_ready(&t) => {
                ready.insert(t.name_any());
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("the Tenant watch ended".into()),
            Err(e) => return Err(format!("watching Tenants: {e}")),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let converged_plane_ticks = plane_ticks(&plane) - plane_before;
    debug_ticks("operator", &each_before, n);
    let converging_ticks = cpu_ticks(first.id());
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let _ = std::fs::copy(plane.audit_log(), "/tmp/bench-audit.log");
        eprintln!(
            "debug: operator cpu ticks {}; reconciles {}",
            cpu_ticks(first.id()),
            metric(port, "bulkhead_operator_reconciles_total{controller=\"tenant\"}").await
        );
    }
    // Trailing writes (events after the last status) belong to the convergence.
    let (writes, by_resource) = settled_writes(&plane.audit_log()).await?;
    let converging_peak = peak_rss_kib(first.id());

    // A full resync: a fresh process lists everything and reconciles every Tenant once.
    let _ = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    let _ = first.wait();
    let restarted = Instant::now();
    let mut second = spawn_operator(&plane, bin, port, "second")?;
    wait::until(
        Duration::from_secs(600),
        "the restarted operator to reconcile every Tenant",
        || async {
            (metric(port, "bulkhead_operator_reconciles_total{controller=\"tenant\"}").await >= n as f64)
                .then_some(())
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let restart_seconds = restarted.elapsed().as_secs_f64();
    let (after, mut after_by) = settled_writes(&plane.audit_log()).await?;
    // Steady state: nothing changes, so the operator should do next to nothing.
    let idle = Duration::from_secs(20);
    let before_idle = cpu_ticks(second.id());
    tokio::time::sleep(idle).await;
    let idle_cpu_percent = (cpu_ticks(second.id()) - before_idle) as f64 / idle.as_secs_f64();
    for (k, v) in &by_resource {
        if let Some(total) = after_by.get_mut(k) {
            *total -= v;
        }
    }
    after_by.retain(|_, v| *v > 0);
    let peak = (converging_peak, peak_rss_kib(second.id()));
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let _ = second.wait();
    Ok(OperatorRun {
        converge: Measured {
            seconds,
            writes,
            by_resource,
            plane_ticks: converged_plane_ticks,
        },
        resync_writes: after - writes,
        resync_by_resource: after_by,
        restart_seconds,
        idle_cpu_percent,
        peak_rss_kib: peak,
        converging_ticks,
    })
}
