//! `sandbox`: the whole product on one machine, on a real one-node Kubernetes cluster.
//!
//! Starts the local cluster ([`Cluster`]) and a throwaway PostgreSQL 15 that pods reach at the host's address
//! on the cluster's link (unless `--no-postgres`), imports the images `make images` wrote, installs the CRDs and
//! runs the operator and the gateway as pods in `bulkhead-system`. It applies `examples/`, running the local
//! test stack image wherever an example's image is not on the node (nothing can be pulled here) and saying so,
//! and waits until every example is Ready. Then it sends requests through the gateway's Service (each org's
//! token, a spoofed identity, no token, an unknown org), prints which pod answered each and what identity it
//! received, probes from inside stack pods what they may reach (another Tenant's stack, PostgreSQL), runs
//! `verify` in-process with the operator's settings and holds its reachability matrix against one probed with
//! real connections from a stack pod of every example, prints the status table and keeps running, reprinting
//! the table when it changes, until Ctrl-C, SIGTERM, SIGHUP or its standard output goes away (`--once`: stops
//! after printing).
//!
//! Everything it starts is owned by the cluster and PostgreSQL harnesses, which stop it when dropped (at the end,
//! on an error, on a stop request, on a panic) and, through watchdogs, when this process is killed outright.
//! Output never panics: a closed pipe or terminal is a reason to stop and clean up, not to crash.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_e2e::cluster::{HOST_IP, NODE_IP, POD_CIDR};
use bulkhead_e2e::console::{self, line as say};
use bulkhead_e2e::gateway::Issuer;
use bulkhead_e2e::install::{self, Database};
use bulkhead_e2e::local_images::{self, Archive};
use bulkhead_e2e::postgres::{Postgres, PostgresError, SUPERUSER};
use bulkhead_e2e::suite::matrix::Verdict;
use bulkhead_e2e::suite::probes::{self, ProbePod};
use bulkhead_e2e::{Cluster, HarnessError, apply, signals, table};
use bulkhead_operator::settings::{DatabaseSettings, PeerPods, PostgresEndpoint, Settings};
use bulkhead_operator::verify::{self, Report, network::Place};
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject};

#[derive(Debug, Parser)]
#[command(
    name = "sandbox",
    about = "Run Bulkhead on a local one-node cluster with the examples applied"
)]
struct Args {
    /// Folder whose *.yaml files are applied (subfolders are not).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    examples: PathBuf,
    /// Folder holding operator.tar, gateway.tar and stack.tar (`make images`).
    #[arg(long, default_value_os_t = local_images::default_dir())]
    images: PathBuf,
    /// The gateway binary that mints the demo tokens (default: the static one `make images` built).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Print everything once every example is Ready, then stop and clean up (for scripts and tests).
    #[arg(long)]
    once: bool,
    /// How long to wait for every example to be Ready before printing anyway.
    #[arg(long, default_value = "180")]
    settle_seconds: u64,
    /// Run without PostgreSQL: resources with a database report DatabaseReady=False, NotConfigured.
    #[arg(long)]
    no_postgres: bool,
}

/// The shared database Schema-isolated resources get their schemas in.
const SHARED_DB: &str = "bulkhead";
/// An org id no example holds.
const UNKNOWN_ORG: &str = "org_NoSuchTenant";
/// The lock file the cluster harness serializes clusters with (one per machine).
/// The bound of one request through the gateway.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Set once everything is up and the sandbox waits for a stop request.
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Set once what the sandbox started has been stopped (and that said).
static STOPPED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
enum SandboxError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error("{0}")]
    Setup(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            console::error(format!("sandbox: cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(supervise(args));
    // Everything the sandbox started is stopped by now; a blocking task that is still waiting (for another
    // cluster's lock, say) must not keep the process alive.
    runtime.shutdown_background();
    code
}

/// Runs the sandbox until it finishes or a stop is requested; either way, what it started is stopped before
/// this returns.
async fn supervise(args: Args) -> ExitCode {
    let mut stop = Box::pin(stop_requested());
    let mut sandbox = Box::pin(run(args));
    let stopped = tokio::select! {
        // The stop future goes first, so the signal handlers are in place before anything starts.
        biased;
        why = &mut stop => Err(why),
        result = &mut sandbox => Ok(result),
    };
    match stopped {
        Ok(Ok(code)) => code,
        Ok(Err(err)) => {
            console::error(format!("sandbox: {err}"));
            ExitCode::FAILURE
        }
        Err(why) => {
            if why == Stop::StdoutGone {
                console::error("sandbox: standard output is gone; stopping and cleaning up");
            }
            let running = RUNNING.load(Ordering::Relaxed);
            // Dropping the run stops what it started (see `Started`), whatever it was doing.
            drop(sandbox);
            if !STOPPED.load(Ordering::Relaxed) {
                say("Stopped before the cluster was up; nothing the sandbox started is left.");
            }
            if running {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(130)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Signal,
    StdoutGone,
}

/// Ctrl-C, SIGTERM or SIGHUP, or nobody reading standard output any more.
async fn stop_requested() -> Stop {
    tokio::select! {
        () = signals::shutdown() => Stop::Signal,
        () = console::stdout_closed() => Stop::StdoutGone,
    }
}

/// What the sandbox started. Dropping it (the end of `--once`, an error, a stop request, a panic) stops the
/// cluster (and with it every pod: operator, gateway, stacks) and then PostgreSQL.
#[derive(Default)]
struct Started {
    cluster: Option<Cluster>,
    postgres: Option<Postgres>,
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.cluster.is_none() && self.postgres.is_none() {
            return;
        }
        say(match (&self.cluster, &self.postgres) {
            (Some(_), Some(_)) => "Stopping the cluster (operator, gateway, stacks) and PostgreSQL...",
            (Some(_), None) => "Stopping the cluster (operator, gateway, stacks)...",
            _ => "Stopping PostgreSQL...",
        });
        drop(self.cluster.take());
        drop(self.postgres.take());
        say("Stopped; nothing the sandbox started is left.");
        STOPPED.store(true, Ordering::Relaxed);
    }
}

async fn run(args: Args) -> Result<ExitCode, SandboxError> {
    let examples = args
        .examples
        .canonicalize()
        .map_err(|e| SandboxError::Setup(format!("examples folder {}: {e}", args.examples.display())))?;
    let files = apply::manifest_files(&examples)?;
    let mut manifests = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| SandboxError::Setup(format!("reading {}: {e}", file.display())))?;
        let origin = file.display().to_string();
        let objects = apply::parse_manifests(&text, &origin)?;
        manifests.push((origin, objects));
    }
    let archives = local_images::archives(&args.images)?;
    let image = |name: &str| {
        archives
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.reference.clone())
            .ok_or_else(|| SandboxError::Setup(format!("no {name} image")))
    };
    let (operator_image, gateway_image, stack_image) =
        (image("operator")?, image("gateway")?, image("stack")?);
    let gateway_bin = gateway_binary(args.gateway_bin.clone())?;

    let mut started = Started::default();
    say(
        "Starting the local cluster (control plane, containerd, kubelet, kube-proxy, kube-router, CoreDNS)...",
    );
    if another_cluster_runs() {
        say("Another local cluster is running on this machine; waiting until it stops (one at a time)...");
    }
    let begun = Instant::now();
    let cluster = started.cluster.insert(Cluster::start().await?);
    say(format!(
        "Cluster ready after {:.1?}: API server {}, node {NODE_IP}, network namespace {}; files in {}.",
        begun.elapsed(),
        cluster.plane().server(),
        cluster.netns(),
        cluster.dir().display()
    ));
    let client = cluster.admin().await?;

    // PostgreSQL (which listens on the host's end of the cluster's link, so it starts after the cluster), the
    // images and the CRDs, at once.
    let step = Instant::now();
    let (postgres, imported, crds) = tokio::join!(
        async {
            if args.no_postgres {
                Ok(None)
            } else {
                // Pods connect from their own addresses; the node's covers traffic it masquerades.
                Postgres::start_reachable(HOST_IP, &[POD_CIDR, &format!("{NODE_IP}/32")])
                    .await
                    .map(Some)
            }
        },
        import_all(cluster, &archives),
        cluster.plane().install_crds(),
    );
    started.postgres = postgres?;
    imported?;
    crds?;
    say(format!(
        "Imported {} into the node's containerd and installed the CRDs ({:.1?}).",
        archives
            .iter()
            .map(|a| a.reference.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        step.elapsed()
    ));

    install::namespace(&client).await?;
    let database = match &started.postgres {
        Some(pg) => Some(prepare_postgres(pg, &client).await?),
        None => None,
    };
    install::operator(&client, &operator_image, database.as_ref()).await?;
    let mut operator_line = format!(
        "Operator: Deployment {ns}/{op} ({operator_image}), ServiceAccount {op} bound to the chart's ClusterRole \
         and Role; gateway pods {ns} {{{labels}}}, DNS pods kube-system {{k8s-app=kube-dns}}",
        ns = install::NAMESPACE,
        op = install::OPERATOR,
        labels = install::gateway_pod_labels(),
    );
    if let Some(db) = &database {
        operator_line.push_str(&format!(
            ", PostgreSQL {}:{} (admin DSN in Secret {}/{}).",
            db.host,
            db.port,
            install::NAMESPACE,
            install::POSTGRES_ADMIN_SECRET
        ));
    } else {
        operator_line.push_str("; no PostgreSQL (--no-postgres).");
    }
    say(operator_line);

    let issuer = Issuer::generate(cluster.dir())?;
    let config = issuer.gateway_config(
        install::GATEWAY_PORT,
        install::GATEWAY_ADMIN_PORT,
        install::GATEWAY_CONFIG_DIR,
    );
    install::gateway(&client, &gateway_image, &config, issuer.public_pem()).await?;
    let gateway_addr = install::gateway_address(&client).await?;
    say(format!(
        "Gateway: Deployment and Service {}/{} ({gateway_image}) at http://{gateway_addr}; routes from Tenants and \
         Customers, tokens of {} (ES256 key {}), may only read Tenants and Customers.",
        install::NAMESPACE,
        install::GATEWAY,
        bulkhead_e2e::gateway::ISSUER,
        bulkhead_e2e::gateway::KID,
    ));

    let substituted = substitute_images(cluster, &mut manifests, &stack_image).await?;
    announce(&substituted, &stack_image);
    let applied = apply::apply_objects(&client, manifests).await?;
    say(format!(
        "Applied {} resources from {}; waiting until every one is Ready...",
        applied.len(),
        examples.display()
    ));

    let settle = Duration::from_secs(args.settle_seconds);
    let no_postgres = args.no_postgres;
    let step = Instant::now();
    let settled = bulkhead_e2e::wait::until(settle, "every example to be Ready", || async {
        let rows = table::rows(&client).await.ok()?;
        (rows.len() >= applied.len() && rows.iter().all(|r| settled(r, no_postgres))).then_some(rows)
    })
    .await;
    let (rows, all_ready) = match settled {
        Ok(rows) => {
            say(format!("Every example settled after {:.1?}.", step.elapsed()));
            (rows, true)
        }
        Err(_) => {
            console::error(format!(
                "sandbox: not every example was Ready within {settle:?}\n{}",
                install::diagnose(
                    &client,
                    install::NAMESPACE,
                    "app.kubernetes.io/component=operator",
                    30
                )
                .await
            ));
            (table::rows(&client).await?, false)
        }
    };
    if let Err(err) = install::wait_available(&client, install::GATEWAY, Duration::from_secs(60)).await {
        let diagnosis = install::diagnose(
            &client,
            install::NAMESPACE,
            "app.kubernetes.io/component=gateway",
            30,
        )
        .await;
        return Err(SandboxError::Setup(format!("{err}\n{diagnosis}")));
    }

    let demo_ok = demo(&client, &gateway_bin, &issuer, gateway_addr, &rows).await?;
    let postgres_addr = database.as_ref().map(|db| SocketAddr::from((db.host, db.port)));
    let egress_ok = egress(cluster, &client, &rows, postgres_addr).await?;
    let verify_ok = verify_against_probes(&client, &rows, database.as_ref()).await?;
    let mut shown = table::render(&rows);
    say("");
    say(shown.trim_end());
    say("");
    print_places(
        cluster,
        started.postgres.as_ref(),
        &gateway_bin,
        &issuer,
        gateway_addr,
        &rows,
    )
    .await?;

    let code = if all_ready && demo_ok && egress_ok && verify_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if args.once {
        return Ok(code);
    }
    say(format!(
        "Running (sandbox pid {}); the table is reprinted when it changes. Press Ctrl-C to stop and clean up.",
        std::process::id()
    ));
    RUNNING.store(true, Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if console::stdout_gone() {
            return Ok(code);
        }
        if let Ok(rows) = table::rows(&client).await {
            let now = table::render(&rows);
            if now != shown {
                say("");
                say(now.trim_end());
                shown = now;
            }
        }
    }
}

/// Ready, or (without PostgreSQL) as far as it can get: waiting for its database.
fn settled(row: &table::Row, no_postgres: bool) -> bool {
    row.observed && (row.ready == "True" || (no_postgres && row.reason == "DatabaseNotReady"))
}

/// The gateway binary for minting tokens: the one given, the static one of `make images`, or the one next to
/// this binary.
fn gateway_binary(given: Option<PathBuf>) -> Result<PathBuf, SandboxError> {
    const NAME: &str = "bulkhead-gateway";
    if let Some(given) = given {
        return if given.is_file() {
            Ok(given)
        } else {
            Err(SandboxError::Setup(format!(
                "--gateway-bin {}: no such file",
                given.display()
            )))
        };
    }
    let candidates = [local_images::static_binaries_dir().join(NAME)]
        .into_iter()
        .chain(
            std::env::current_exe()
                .ok()
                .and_then(|exe| Some(exe.parent()?.join(NAME))),
        );
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(SandboxError::Setup(format!(
        "no {NAME} binary to mint tokens with: run `make images` (or pass --gateway-bin)"
    )))
}

/// Whether another process holds the local cluster's lock (so our start will wait for it).
fn another_cluster_runs() -> bool {
    std::fs::File::options()
        .write(true)
        .open(bulkhead_e2e::cluster::LOCK_FILE)
        .is_ok_and(|file| matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

async fn import_all(cluster: &Cluster, archives: &[Archive]) -> Result<(), HarnessError> {
    for archive in archives {
        local_images::import(cluster, &archive.path).await?;
    }
    Ok(())
}

/// Creates the shared database and the admin Secret the operator reads; returns where pods reach the server.
async fn prepare_postgres(pg: &Postgres, client: &kube::Client) -> Result<Database, SandboxError> {
    let admin = pg.admin().await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {SHARED_DB}"))
        .await
        .map_err(|e| SandboxError::Setup(format!("creating database {SHARED_DB}: {e}")))?;
    let dsn = pg.dsn_via(
        &HOST_IP.to_string(),
        SUPERUSER,
        pg.superuser_password(),
        SHARED_DB,
    );
    let database = Database {
        host: HOST_IP,
        port: pg.port(),
        admin_dsn: format!("{dsn}?sslmode=disable"),
    };
    install::postgres_admin_secret(client, &database).await?;
    say(format!(
        "PostgreSQL 15 on 127.0.0.1:{port} and, for pods, {HOST_IP}:{port} (database {SHARED_DB}); files in {}.",
        pg.dir().display(),
        port = pg.port(),
    ));
    Ok(database)
}

/// One example whose stack runs the local stack image instead of its own.
#[derive(Debug)]
struct Substitution {
    kind: String,
    name: String,
    image: String,
    port: i64,
}

/// What the examples run: the substitutions made, and the Customers that use their Tenant's stack.
#[derive(Debug, Default)]
struct Substituted {
    replaced: Vec<Substitution>,
    inheriting: Vec<String>,
}

/// Replaces the stack image of every Tenant and Customer whose image is not on the node with `local`, and sets
/// `PORT` to its stack port (the port the local stack serves on).
async fn substitute_images(
    cluster: &Cluster,
    manifests: &mut [(String, Vec<DynamicObject>)],
    local: &str,
) -> Result<Substituted, SandboxError> {
    let mut result = Substituted::default();
    let mut present: BTreeMap<String, bool> = BTreeMap::new();
    for (_, objects) in manifests.iter_mut() {
        for object in objects.iter_mut() {
            let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
            if kind != "Tenant" && kind != "Customer" {
                continue;
            }
            let name = object.metadata.name.clone().unwrap_or_default();
            let Some(stack) = object.data.get_mut("spec").and_then(|s| s.get_mut("stack")) else {
                if kind == "Customer" {
                    result.inheriting.push(name);
                }
                continue;
            };
            let Some(image) = stack.get("image").and_then(|i| i.as_str()).map(str::to_owned) else {
                continue;
            };
            let on_node = match present.get(&image) {
                Some(known) => *known,
                None => {
                    let known = local_images::present(cluster, &image).await?;
                    present.insert(image.clone(), known);
                    known
                }
            };
            if on_node {
                continue;
            }
            let port = stack
                .get("port")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(i64::from(bulkhead_crds::v1alpha1::DEFAULT_STACK_PORT));
            stack["image"] = serde_json::Value::from(local);
            let env = stack
                .as_object_mut()
                .map(|s| s.entry("env").or_insert_with(|| serde_json::json!([])));
            if let Some(serde_json::Value::Array(env)) = env {
                env.retain(|v| v.get("name").and_then(|n| n.as_str()) != Some("PORT"));
                env.push(serde_json::json!({"name": "PORT", "value": port.to_string()}));
            }
            result.replaced.push(Substitution {
                kind,
                name,
                image,
                port,
            });
        }
    }
    // Tenants first: Customers without a stack of their own run their Tenant's.
    result
        .replaced
        .sort_by(|a, b| (a.kind != "Tenant", &a.name).cmp(&(b.kind != "Tenant", &b.name)));
    Ok(result)
}

fn announce(substituted: &Substituted, local: &str) {
    if substituted.replaced.is_empty() {
        return;
    }
    say(format!(
        "Local stack image: nothing can be pulled on this node, so these examples run {local} (the test stack: it \
         answers with its namespace, pod and request headers) instead of their own image; examples/ is unchanged:"
    ));
    for s in &substituted.replaced {
        say(format!(
            "  {} {}: {} is not on the node -> runs {local} (PORT={})",
            s.kind, s.name, s.image, s.port
        ));
    }
    if !substituted.inheriting.is_empty() {
        say(format!(
            "  Customers {} have no stack of their own and run their Tenant's.",
            substituted.inheriting.join(", ")
        ));
    }
}

/// A request the demo sends, and what must come of it.
#[derive(Debug)]
struct Case {
    label: String,
    token: Option<String>,
    headers: Vec<(String, String)>,
    expect: Expect,
}

#[derive(Debug, Clone)]
enum Expect {
    /// Answered by a pod of `namespace`, with exactly these identity headers.
    Stack {
        namespace: String,
        identity: BTreeMap<String, String>,
    },
    /// Refused by the gateway.
    Denied {
        status: u16,
        gate: &'static str,
        reason: &'static str,
    },
}

/// Identity headers shown and checked: the gateway's own (but the per-request id) and the spoofed ones.
fn identity_header(name: &str) -> bool {
    (name.starts_with("x-bulkhead-") && name != "x-bulkhead-request-id") || name == "x-org-id"
}

/// Whether the gateway routes a resource: it is Ready, and so is its Tenant.
fn routable(row: &table::Row, rows: &[table::Row]) -> bool {
    let ready = |r: &table::Row| r.ready == "True";
    ready(row)
        && (row.kind == "Tenant"
            || rows
                .iter()
                .any(|t| t.kind == "Tenant" && t.name == row.tenant && ready(t)))
}

/// The requests: each resource's token (answered by its stack when it is routable, refused when not), the first
/// Tenant's token with the second one's identity spoofed in headers, no token, and a valid token for an org
/// nobody holds.
async fn cases(gateway: &Path, issuer: &Issuer, rows: &[table::Row]) -> Result<Vec<Case>, SandboxError> {
    let mut cases = Vec::new();
    for row in rows {
        let subject = format!("user_{}", row.name.replace('-', "_"));
        let token = issuer.token(gateway, &row.org, &subject).await?;
        if !routable(row, rows) {
            cases.push(Case {
                label: format!("{}'s token", row.name),
                token: Some(token),
                headers: Vec::new(),
                expect: Expect::Denied {
                    status: 403,
                    gate: "route",
                    reason: "no_route",
                },
            });
            continue;
        }
        let tenant = if row.kind == "Tenant" {
            &row.name
        } else {
            &row.tenant
        };
        let mut identity = BTreeMap::from([
            ("x-bulkhead-org".to_owned(), row.org.clone()),
            ("x-bulkhead-tenant".to_owned(), tenant.clone()),
            ("x-bulkhead-subject".to_owned(), subject),
        ]);
        if row.kind == "Customer" {
            identity.insert("x-bulkhead-customer".into(), row.name.clone());
        }
        cases.push(Case {
            label: format!("{}'s token", row.name),
            token: Some(token),
            headers: Vec::new(),
            expect: Expect::Stack {
                namespace: row.namespace.clone(),
                identity,
            },
        });
    }
    // The first Tenant's token, with headers claiming the second Tenant: answered exactly like the token alone.
    let tenants: Vec<&table::Row> = rows
        .iter()
        .filter(|r| r.kind == "Tenant" && routable(r, rows))
        .collect();
    if let [first, second, ..] = tenants[..]
        && let Some(alone) = cases
            .iter()
            .find(|c| c.label == format!("{}'s token", first.name))
    {
        let spoofed = Case {
            label: format!(
                "{}'s token + X-Bulkhead-Tenant/X-Org-Id of {}",
                first.name, second.name
            ),
            token: alone.token.clone(),
            headers: vec![
                ("X-Bulkhead-Tenant".into(), second.name.clone()),
                ("X-Org-Id".into(), second.org.clone()),
            ],
            expect: alone.expect.clone(),
        };
        cases.push(spoofed);
    }
    cases.push(Case {
        label: "no token".into(),
        token: None,
        headers: Vec::new(),
        expect: Expect::Denied {
            status: 401,
            gate: "token",
            reason: "missing",
        },
    });
    cases.push(Case {
        label: format!("a valid token for an unknown org ({UNKNOWN_ORG})"),
        token: Some(issuer.token(gateway, UNKNOWN_ORG, "user_eve").await?),
        headers: Vec::new(),
        expect: Expect::Denied {
            status: 403,
            gate: "route",
            reason: "no_route",
        },
    });
    Ok(cases)
}

/// What came back, as the demo table shows it.
#[derive(Debug)]
struct Answer {
    status: u16,
    answered_by: String,
    received: String,
    ok: bool,
}

async fn send(client: &kube::Client, gateway_addr: SocketAddr, case: &Case) -> Answer {
    let headers: Vec<(&str, &str)> = case
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let sent = tokio::time::timeout(
        REQUEST_TIMEOUT,
        bulkhead_e2e::gateway::get(gateway_addr, case.token.as_deref(), &headers),
    )
    .await;
    let (status, body) = match sent {
        Ok(Ok(answer)) => answer,
        Ok(Err(err)) => return failed(err.to_string()),
        Err(_) => return failed(format!("no answer within {REQUEST_TIMEOUT:?}")),
    };
    let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null);
    match &case.expect {
        Expect::Stack { namespace, identity } => {
            let (ns, pod) = (
                json["namespace"].as_str().unwrap_or_default(),
                json["pod"].as_str().unwrap_or_default(),
            );
            let received: BTreeMap<String, String> = json["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .filter(|(name, _)| identity_header(name))
                        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            // The pod the answer names must exist in that namespace (asked of the API server, not the pod).
            let exists = !pod.is_empty()
                && Api::<Pod>::namespaced(client.clone(), ns)
                    .get_opt(pod)
                    .await
                    .ok()
                    .flatten()
                    .is_some();
            let answered_by = if pod.is_empty() {
                body.trim().chars().take(80).collect()
            } else if exists {
                format!("{ns}/{pod}")
            } else {
                format!("{ns}/{pod} (no such pod)")
            };
            Answer {
                status,
                ok: status == 200 && ns == namespace && exists && &received == identity,
                answered_by,
                received: received
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        }
        Expect::Denied {
            status: wanted,
            gate,
            reason,
        } => Answer {
            status,
            ok: status == *wanted && json["gate"] == *gate && json["reason"] == *reason,
            answered_by: "gateway".into(),
            received: body.trim().to_owned(),
        },
    }
}

fn failed(why: String) -> Answer {
    Answer {
        status: 0,
        answered_by: "-".into(),
        received: why,
        ok: false,
    }
}

/// Sends the demo requests through the gateway's Service and prints what answered each. Returns whether every
/// answer was the expected one.
async fn demo(
    client: &kube::Client,
    gateway: &Path,
    issuer: &Issuer,
    gateway_addr: SocketAddr,
    rows: &[table::Row],
) -> Result<bool, SandboxError> {
    let cases = cases(gateway, issuer, rows).await?;
    // The gateway picks up Ready resources from its watch; wait until every token is routed.
    let tokens: Vec<&Case> = cases.iter().filter(|c| c.headers.is_empty()).collect();
    let _ = bulkhead_e2e::wait::until(
        Duration::from_secs(60),
        "the gateway to route every Ready resource",
        || async {
            for case in &tokens {
                if matches!(case.expect, Expect::Stack { .. }) && !send(client, gateway_addr, case).await.ok {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let mut answers = Vec::new();
    for case in &cases {
        answers.push(send(client, gateway_addr, case).await);
    }
    let header = [
        "REQUEST",
        "STATUS",
        "CHECK",
        "ANSWERED BY",
        "IDENTITY IT RECEIVED",
    ];
    let cells: Vec<[String; 5]> = cases
        .iter()
        .zip(&answers)
        .map(|(case, answer)| {
            [
                case.label.clone(),
                answer.status.to_string(),
                if answer.ok { "ok" } else { "FAILED" }.to_owned(),
                answer.answered_by.clone(),
                answer.received.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cols: [&str; 5]| {
        let mut out = String::new();
        for (i, (col, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                out.push_str(col);
            } else {
                out.push_str(&format!("{col:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    say("");
    say(format!(
        "Requests through the gateway Service (http://{gateway_addr}):"
    ));
    say("");
    say(render(header));
    for row in &cells {
        say(render([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    let failed: Vec<&str> = cases
        .iter()
        .zip(&answers)
        .filter(|(_, a)| !a.ok)
        .map(|(c, _)| c.label.as_str())
        .collect();
    say("");
    if failed.is_empty() {
        let mut shown = Vec::new();
        if cases.iter().any(|c| matches!(c.expect, Expect::Stack { .. })) {
            shown.push(
                "each Ready resource's token reached a pod of its own namespace only, with one set of identity \
                 headers"
                    .to_owned(),
            );
        }
        if cases.iter().any(|c| !c.headers.is_empty()) {
            shown.push("spoofed identity headers changed nothing".to_owned());
        }
        let mut refused = vec!["no token"];
        if rows.iter().any(|r| !routable(r, rows)) {
            refused.push("the tokens of resources that are not Ready");
        }
        refused.push("an unknown org");
        let last = refused.pop().unwrap_or_default();
        shown.push(format!("{} and {last} were refused", refused.join(", ")));
        say(format!(
            "All {} requests answered as expected: {}.",
            cases.len(),
            shown.join("; ")
        ));
    } else {
        say(format!("Unexpected answers: {}.", failed.join("; ")));
    }
    Ok(failed.is_empty())
}

/// One probe from inside a stack pod.
#[derive(Debug)]
struct Probe {
    from: String,
    to: String,
    target: String,
    reachable: bool,
}

/// The first running stack pod of `namespace`.
async fn stack_pod(client: &kube::Client, namespace: &str) -> Option<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&kube::api::ListParams::default())
        .await
        .ok()?;
    pods.items
        .into_iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .and_then(|p| p.metadata.name)
}

/// What the stacks themselves may reach, probed from inside their pods with the stack's own `probe`: another
/// Tenant's stack by its DNS name (the name resolves: DNS is allowed; the connection is not), and PostgreSQL
/// from a stack with a database (allowed) and from one without (not). Prints a table; returns whether every
/// probe ended as the policies say.
async fn egress(
    cluster: &Cluster,
    client: &kube::Client,
    rows: &[table::Row],
    postgres: Option<SocketAddr>,
) -> Result<bool, SandboxError> {
    let ready: Vec<&table::Row> = rows.iter().filter(|r| routable(r, rows)).collect();
    let with_db = ready.iter().find(|r| r.database == "Provisioned");
    let without_db = ready.iter().find(|r| r.database.is_empty());
    let mut probes = Vec::new();
    if let Some(from) = ready.first()
        && let Some(other) = ready
            .iter()
            .find(|r| r.kind == "Tenant" && r.name != from.name && r.name != from.tenant)
    {
        let port = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), &other.namespace)
            .get_opt("stack")
            .await
            .ok()
            .flatten()
            .and_then(|s| s.spec?.ports?.first().map(|p| p.port))
            .unwrap_or(8080);
        probes.push(Probe {
            from: from.namespace.clone(),
            to: format!("{}'s stack", other.name),
            target: format!("stack.{}.svc:{port}", other.namespace),
            reachable: false,
        });
    }
    if let Some(pg) = postgres {
        for (row, reachable) in [(with_db, true), (without_db, false)] {
            if let Some(row) = row {
                probes.push(Probe {
                    from: row.namespace.clone(),
                    to: "PostgreSQL".into(),
                    target: pg.to_string(),
                    reachable,
                });
            }
        }
    }
    if probes.is_empty() {
        return Ok(true);
    }
    let header = ["FROM A STACK POD IN", "TO", "RESULT", "CHECK"];
    let mut cells: Vec<[String; 4]> = Vec::new();
    let mut all_ok = true;
    for probe in &probes {
        let Some(pod) = stack_pod(client, &probe.from).await else {
            all_ok = false;
            cells.push([
                probe.from.clone(),
                probe.target.clone(),
                "no running stack pod".into(),
                "FAILED".into(),
            ]);
            continue;
        };
        let (_, out) = cluster
            .exec(
                &probe.from,
                &pod,
                &["/bulkhead-stack", "probe", &probe.target, "--timeout-ms", "3000"],
            )
            .await?;
        let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
        let result = report["result"].as_str().unwrap_or("error");
        let detail = report["detail"].as_str().unwrap_or_default();
        // A name that resolved is one the DNS policy let through: the probe got as far as connecting.
        let resolved = result == "connected" || detail.starts_with("connecting to");
        let ok = (result == "connected") == probe.reachable && resolved;
        all_ok &= ok;
        let shown = if result == "connected" {
            format!("connected ({detail})")
        } else {
            format!("{result}: {detail}")
        };
        cells.push([
            format!("{}/{pod}", probe.from),
            format!("{} ({})", probe.to, probe.target),
            shown,
            if ok { "ok" } else { "FAILED" }.into(),
        ]);
    }
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cols: [&str; 4]| {
        cols.iter()
            .zip(widths)
            .map(|(col, w)| format!("{col:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    say("");
    say("What the stacks themselves may reach (probes inside their pods; every other egress is denied):");
    say("");
    say(render(header));
    for row in &cells {
        say(render([&row[0], &row[1], &row[2], &row[3]]));
    }
    Ok(all_ok)
}

/// How long one probe of the matrix may take before it counts as refused.
const MATRIX_PROBE_TIMEOUT_MS: u64 = 3000;

/// verify's options for the installation the sandbox made: the gateway's and DNS's pods and PostgreSQL exactly
/// as `install::operator_args` tells the operator, and `outside` for the outside.
fn verify_options(database: Option<&Database>, outside: SocketAddr) -> Result<verify::Options, SandboxError> {
    let peers = Settings::default();
    let admin_secret = match database {
        Some(_) => Some(
            format!("{}/{}", install::NAMESPACE, install::POSTGRES_ADMIN_SECRET)
                .parse()
                .map_err(|e| SandboxError::Setup(format!("the admin Secret's reference: {e}")))?,
        ),
        None => None,
    };
    Ok(verify::Options {
        settings: Settings {
            gateway: PeerPods {
                namespace: install::NAMESPACE.to_owned(),
                pod_labels: peers.gateway.pod_labels,
            },
            dns: peers.dns,
            postgres: database.map(|db| PostgresEndpoint {
                cidr: format!("{}/32", db.host),
                port: db.port,
            }),
            database: database.zip(admin_secret).map(|(db, secret)| DatabaseSettings {
                host: Some(db.host.to_string()),
                port: Some(db.port),
                ..DatabaseSettings::new(secret)
            }),
        },
        outside,
        context: None,
    })
}

/// A destination of the probed matrix.
#[derive(Debug)]
struct Target {
    /// The place verify knows it as.
    place: Place,
    /// What it is, for the list of differing cells.
    what: String,
    /// `ip:port`, as probed.
    address: String,
}

/// One probed cell.
#[derive(Debug)]
struct Cell {
    connected: bool,
    detail: String,
    /// verify's prediction (`None`: verify has no such cell).
    predicted: Option<bool>,
}

impl Cell {
    fn agrees(&self) -> bool {
        self.predicted == Some(self.connected)
    }
}

/// Probes `targets` from `pod` at once with the stack's `probe`; returns (connected, the probe's words) per
/// target, in order.
async fn probe_all(
    client: &kube::Client,
    pod: &ProbePod,
    targets: &[Target],
) -> Result<Vec<(bool, String)>, HarnessError> {
    let addresses: Vec<String> = targets.iter().map(|t| t.address.clone()).collect();
    let timeout = Duration::from_millis(MATRIX_PROBE_TIMEOUT_MS);
    Ok(probes::probe_targets(client, pod, timeout, &addresses)
        .await?
        .into_iter()
        .map(|(verdict, detail)| (verdict == Verdict::Allowed, detail))
        .collect())
}

/// verify's verdict: one line, then each failure and warning.
fn print_verdict(report: &Report) {
    let s = &report.summary;
    if s.holds {
        say(format!(
            "verify: the isolation contract holds (exit {}; {} checks passed, {} warnings)",
            report.exit_code(),
            s.pass,
            s.warn
        ));
    } else {
        say(format!(
            "verify: THE ISOLATION CONTRACT IS BROKEN (exit {}; {} checks failed, {} passed, {} warnings)",
            report.exit_code(),
            s.fail,
            s.pass,
            s.warn
        ));
    }
    for check in report
        .checks
        .iter()
        .filter(|c| c.verdict != verify::Verdict::Pass)
    {
        say(format!(
            "  {} {} {}: {}",
            check.verdict.as_str().to_uppercase(),
            check.id,
            check.subject,
            check.summary
        ));
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `verify` in-process against the sandbox's cluster, with the operator's settings, and probes the whole
/// matrix with real connections: from a stack pod of every example to every example stack's pod IP and
/// Service, cluster DNS (TCP 53), the API server's Service, PostgreSQL and an address outside the cluster (a
/// port the sandbox listens on at the host's end of the cluster's link, which no policy opens). Prints verify's
/// verdict, the probed grid and whether verify's matrix equals it; returns whether the contract holds and every
/// cell is equal.
async fn verify_against_probes(
    client: &kube::Client,
    rows: &[table::Row],
    database: Option<&Database>,
) -> Result<bool, SandboxError> {
    let listener = std::net::TcpListener::bind((HOST_IP, 0))
        .map_err(|e| SandboxError::Setup(format!("listening on {HOST_IP} for the outside: {e}")))?;
    let outside = listener
        .local_addr()
        .map_err(|e| SandboxError::Setup(format!("the outside listener's address: {e}")))?;
    let options = verify_options(database, outside)?;
    let settings = &options.settings;
    say("");
    say(format!(
        "verify, in-process with the operator's settings (gateway pods {} {{{}}}, DNS pods {} {{{}}}{}); the \
         outside is {outside}, where the sandbox listens:",
        settings.gateway.namespace,
        labels_text(&settings.gateway.pod_labels),
        settings.dns.namespace,
        labels_text(&settings.dns.pod_labels),
        match &settings.postgres {
            Some(pg) => format!(
                ", PostgreSQL {} port {}, admin Secret {}/{}",
                pg.cidr,
                pg.port,
                install::NAMESPACE,
                install::POSTGRES_ADMIN_SECRET
            ),
            None => ", no PostgreSQL".to_owned(),
        },
    ));
    let report = match verify::run(client, &options).await {
        Ok(report) => {
            print_verdict(&report);
            Some(report)
        }
        Err(err) => {
            say(format!("verify: no report, the cluster could not be read: {err}"));
            None
        }
    };

    // The sources, and every destination (a stack: its pod IP, then its Service).
    let mut sources = Vec::new();
    let mut unprobed = Vec::new();
    let mut targets = Vec::new();
    for ns in rows
        .iter()
        .map(|r| r.namespace.as_str())
        .filter(|ns| !ns.is_empty())
    {
        let pod = match probes::stack_pod(client, ns).await {
            Ok(pod) => pod,
            Err(err) => {
                unprobed.push(format!("{ns}: {err}"));
                continue;
            }
        };
        let service =
            probes::service_address(client, ns, bulkhead_operator::pipeline::build::STACK, None).await?;
        let port = service.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
        let place = Place::Bulkhead {
            namespace: ns.to_owned(),
        };
        targets.push(Target {
            place: place.clone(),
            what: format!("{ns}'s pod"),
            address: format!("{}:{port}", pod.ip),
        });
        targets.push(Target {
            place,
            what: format!("{ns}'s Service"),
            address: service,
        });
        sources.push(pod);
    }
    targets.push(Target {
        place: Place::Dns,
        what: "cluster DNS (TCP)".into(),
        address: probes::service_address(client, &settings.dns.namespace, "kube-dns", Some(53)).await?,
    });
    targets.push(Target {
        place: Place::ApiServer,
        what: "the API server".into(),
        address: probes::service_address(client, "default", "kubernetes", None).await?,
    });
    if let Some(db) = database {
        targets.push(Target {
            place: Place::Postgres,
            what: "PostgreSQL".into(),
            address: SocketAddr::from((db.host, db.port)).to_string(),
        });
    }
    targets.push(Target {
        place: Place::Outside,
        what: "the outside".into(),
        address: outside.to_string(),
    });

    let probed = futures::future::join_all(sources.iter().map(|pod| probe_all(client, pod, &targets))).await;
    // The probes are done: the outside stops listening.
    drop(listener);
    let mut grid: Vec<(&ProbePod, Vec<Cell>)> = Vec::new();
    for (pod, results) in sources.iter().zip(probed) {
        let results = match results {
            Ok(results) => results,
            Err(err) => {
                unprobed.push(format!("{}/{}: {err}", pod.namespace, pod.pod));
                continue;
            }
        };
        let from = Place::Bulkhead {
            namespace: pod.namespace.clone(),
        };
        let cells = targets
            .iter()
            .zip(results)
            .map(|(target, (connected, detail))| Cell {
                connected,
                detail,
                predicted: report.as_ref().and_then(|r| r.matrix.cell(&from, &target.place)),
            })
            .collect();
        grid.push((pod, cells));
    }

    // The grid: one column per place; a stack's column holds two marks, its pod's and its Service's.
    let mut columns: Vec<(Place, Vec<usize>)> = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        match columns.iter_mut().find(|(place, _)| *place == target.place) {
            Some((_, members)) => members.push(i),
            None => columns.push((target.place.clone(), vec![i])),
        }
    }
    let mut lines: Vec<Vec<String>> = vec![
        std::iter::once("SOURCE POD".to_owned())
            .chain(columns.iter().map(|(place, _)| place.label()))
            .collect(),
    ];
    for (pod, cells) in &grid {
        let mut line = vec![format!("{}/{}", pod.namespace, pod.pod)];
        for (_, members) in &columns {
            line.push(
                members
                    .iter()
                    .map(|i| match &cells[*i] {
                        cell if !cell.agrees() => '!',
                        cell if cell.connected => 'A',
                        _ => '.',
                    })
                    .collect(),
            );
        }
        lines.push(line);
    }
    let mut widths = vec![0; columns.len() + 1];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    say("");
    say(format!(
        "The matrix probed with real connections ({MATRIX_PROBE_TIMEOUT_MS} ms each) from a stack pod of every \
         example; a stack's column shows its pod IP, then its Service (A: connected, .: refused, !: verify \
         predicts otherwise):"
    ));
    say("");
    for line in &lines {
        say(line
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end());
    }
    say("");

    let cells: usize = grid.iter().map(|(_, cells)| cells.len()).sum();
    let mut differing = Vec::new();
    for (pod, cells) in &grid {
        for (target, cell) in targets.iter().zip(cells) {
            if !cell.agrees() {
                differing.push(format!(
                    "  {}/{} -> {} ({}): probed {}, verify {}",
                    pod.namespace,
                    pod.pod,
                    target.what,
                    target.address,
                    cell.detail,
                    match cell.predicted {
                        Some(true) => "allowed",
                        Some(false) => "refused",
                        None => "has no such cell",
                    }
                ));
            }
        }
    }
    if differing.is_empty() && cells > 0 {
        say(format!("verify's matrix equals the probed one: {cells} cells"));
    } else {
        say(format!(
            "verify's matrix differs from the probed one in {} of {cells} cells:",
            differing.len()
        ));
        for line in &differing {
            say(line);
        }
    }
    for line in &unprobed {
        say(format!("  not probed: {line}"));
    }
    Ok(report.is_some_and(|r| r.summary.holds) && differing.is_empty() && unprobed.is_empty() && cells > 0)
}

/// Where to look further: kubectl, logs, tokens, the database catalog.
async fn print_places(
    cluster: &Cluster,
    pg: Option<&Postgres>,
    gateway: &Path,
    issuer: &Issuer,
    gateway_addr: SocketAddr,
    rows: &[table::Row],
) -> Result<(), SandboxError> {
    let kubeconfig = cluster.plane().kubeconfig_path().display().to_string();
    say(format!(
        "kubectl:       KUBECONFIG={kubeconfig} kubectl get tenants,customers,pods -A"
    ));
    say(format!(
        "logs:          KUBECONFIG={kubeconfig} kubectl -n {ns} logs deploy/{op}   (the gateway's audit: deploy/{gw})",
        ns = install::NAMESPACE,
        op = install::OPERATOR,
        gw = install::GATEWAY,
    ));
    if let Some(row) = rows.iter().find(|r| routable(r, rows)) {
        say(format!(
            "try:           curl -H \"Authorization: Bearer $({})\" http://{gateway_addr}/",
            issuer.token_command(gateway, &row.org)
        ));
    }
    if let Some(pg) = pg {
        print_catalog(pg).await;
        // The password goes into a file only root can read, never onto the screen.
        let pgpass = cluster.dir().join("pgpass");
        std::fs::write(
            &pgpass,
            format!(
                "127.0.0.1:{}:*:{SUPERUSER}:{}\n",
                pg.port(),
                pg.superuser_password()
            ),
        )
        .and_then(|()| std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| SandboxError::Setup(format!("writing {}: {e}", pgpass.display())))?;
        say(format!(
            "psql:          PGPASSFILE={} psql -h 127.0.0.1 -p {} -U {SUPERUSER} {SHARED_DB}   (throwaway superuser)",
            pgpass.display(),
            pg.port()
        ));
    }
    say(format!(
        "files:         cluster {}{}",
        cluster.dir().display(),
        pg.map(|pg| format!(", PostgreSQL {}", pg.dir().display()))
            .unwrap_or_default()
    ));
    Ok(())
}

/// Lists the schemas and databases the operator made, straight from the catalog.
async fn print_catalog(pg: &Postgres) {
    let Ok(admin) = pg.connect_as(SUPERUSER, pg.superuser_password(), SHARED_DB).await else {
        return;
    };
    let list = |sql: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query(sql, &[])
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.get::<_, String>(0))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        }
    };
    let schemas = list("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'bk\\_%' ORDER BY 1").await;
    let databases =
        list("SELECT datname::text FROM pg_database WHERE datname LIKE 'bk\\_%' ORDER BY 1").await;
    say(format!(
        "schemas:       {} (in database {SHARED_DB})",
        or_none(&schemas)
    ));
    say(format!("databases:     {}", or_none(&databases)));
}

fn or_none(list: &str) -> &str {
    if list.is_empty() { "none" } else { list }
}
