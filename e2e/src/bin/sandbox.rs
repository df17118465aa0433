//! `sandbox`: the whole product on one machine without a cluster.
//!
//! Starts the local control plane and a throwaway PostgreSQL 15 (unless `--no-postgres`), installs the CRDs,
//! stores the database admin DSN in a Secret, runs the operator against it (the `bulkhead-operator`
//! binary next to this one, or in-process when there is none), applies `examples/`, prints a status table of
//! Tenants and Customers and keeps running, reprinting the table when it changes, until Ctrl-C. Then it stops
//! everything it started and removes its temp dir.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use bulkhead_e2e::gateway::{EchoUpstream, GatewayProcess};
use bulkhead_e2e::postgres::{Postgres, SUPERUSER};
use bulkhead_e2e::{ControlPlane, apply, table};
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};

#[derive(Debug, Parser)]
#[command(
    name = "sandbox",
    about = "Run Bulkhead on a local control plane with the examples applied"
)]
struct Args {
    /// Folder whose *.yaml files are applied (subfolders are not).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    examples: PathBuf,
    /// The operator binary to run (default: bulkhead-operator next to this binary; in-process if absent).
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Print the table once everything is observed, then stop and clean up (for scripts and tests).
    #[arg(long)]
    once: bool,
    /// How long to wait for the operator to observe every example before printing anyway.
    #[arg(long, default_value = "60")]
    settle_seconds: u64,
    /// Run without PostgreSQL: resources with a database report DatabaseReady=False, NotConfigured.
    #[arg(long)]
    no_postgres: bool,
    /// The gateway binary (default: bulkhead-gateway next to this binary; the gateway is left out if absent).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
}

/// The shared database the sandbox's Tenants get their schemas in.
const SHARED_DB: &str = "bulkhead";
/// The admin Secret, as the operator's flag names it.
const ADMIN_SECRET: (&str, &str) = ("bulkhead-system", "postgres-admin");

enum Operator {
    Process(Child),
    InProcess(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), bulkhead_operator::RunError>>,
    ),
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("sandbox: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut args: Args) -> Result<ExitCode, String> {
    args.examples = args
        .examples
        .canonicalize()
        .map_err(|e| format!("examples folder {}: {e}", args.examples.display()))?;
    let files = apply::manifest_files(&args.examples).map_err(|e| e.to_string())?;
    if args.no_postgres {
        println!("Starting the local control plane (etcd, kube-apiserver, kube-controller-manager)...");
    } else {
        println!(
            "Starting the local control plane (etcd, kube-apiserver, kube-controller-manager) and PostgreSQL 15..."
        );
    }
    let (plane, pg) = tokio::join!(ControlPlane::start_with_crds(), async {
        if args.no_postgres {
            Ok(None)
        } else {
            Postgres::start().await.map(Some)
        }
    });
    let plane = plane.map_err(|e| e.to_string())?;
    let pg = pg.map_err(|e| e.to_string())?;
    let client = plane.admin().await.map_err(|e| e.to_string())?;
    println!(
        "Control plane ready at {}; Bulkhead CRDs installed.",
        plane.server()
    );
    if let Some(pg) = &pg {
        prepare_postgres(pg, &client).await?;
        println!(
            "PostgreSQL 15 ready at 127.0.0.1:{} (database {SHARED_DB}); admin DSN in Secret {}/{}.",
            pg.port(),
            ADMIN_SECRET.0,
            ADMIN_SECRET.1
        );
    }

    let operator_log = plane.dir().join("operator.log");
    let operator = start_operator(&args, &plane, pg.as_ref(), &operator_log).await?;

    let applied = apply::apply_files(&client, &files)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "Applied {} resources from {}.",
        applied.len(),
        args.examples.display()
    );

    let settle = Duration::from_secs(args.settle_seconds);
    let settled = bulkhead_e2e::wait::until(settle, "the operator to observe every resource", || async {
        let rows = table::rows(&client).await.ok()?;
        (rows.len() >= applied.len() && rows.iter().all(table::Row::settled)).then_some(rows)
    })
    .await;
    let rows = match settled {
        Ok(rows) => rows,
        Err(_) => {
            eprintln!(
                "sandbox: not every resource was observed within {settle:?}; see {}",
                operator_log.display()
            );
            table::rows(&client).await.map_err(|e| e.to_string())?
        }
    };
    let all_observed = rows.iter().all(|r| r.observed);
    let mut shown = table::render(&rows);
    println!("\n{shown}");
    println!(
        "kubectl:       KUBECONFIG={} kubectl get tenants,customers",
        plane.kubeconfig_path().display()
    );
    println!("operator logs: {}", operator_log.display());
    if let Some(pg) = &pg {
        print_places(pg).await;
        println!(
            "psql:          psql 'postgresql://{SUPERUSER}:{}@127.0.0.1:{}/{SHARED_DB}' (throwaway superuser)",
            pg.superuser_password(),
            pg.port()
        );
    }

    let gateway = match sibling_binary(args.gateway_bin.clone(), "bulkhead-gateway") {
        Some(binary) => Some(demo_gateway(&binary, plane.dir(), &rows).await?),
        None => {
            println!(
                "No bulkhead-gateway binary next to this one (cargo build -p bulkhead-gateway): no gateway."
            );
            None
        }
    };

    if !args.once {
        println!("Running; the table is reprinted when it changes. Press Ctrl-C to stop and clean up.");
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            if let Ok(rows) = table::rows(&client).await {
                let now = table::render(&rows);
                if now != shown {
                    println!("\n{now}");
                    shown = now;
                }
            }
        }
    }

    println!("Stopping the operator and the control plane...");
    stop_operator(operator).await;
    drop(gateway);
    drop(pg);
    drop(plane);
    println!("Stopped; temp files removed.");
    Ok(if all_observed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A binary given on the command line, or the one of that name next to this binary.
fn sibling_binary(given: Option<PathBuf>, name: &str) -> Option<PathBuf> {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(name)));
    given.or(sibling.filter(|p| p.is_file()))
}

/// A request the sandbox sends through the gateway: what it is, its bearer token, extra headers.
type DemoRequest<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>);

/// Starts the two example upstreams and the gateway in front of them (routing the Tenants' org ids), sends a
/// few requests through it and prints what each reached.
async fn demo_gateway(
    binary: &std::path::Path,
    dir: &std::path::Path,
    rows: &[table::Row],
) -> Result<(EchoUpstream, EchoUpstream, GatewayProcess), String> {
    let org = |name: &str| {
        rows.iter()
            .find(|r| r.kind == "Tenant" && r.name == name)
            .map(|r| r.org.clone())
            .ok_or_else(|| format!("the examples have no Tenant {name}"))
    };
    let (acme_org, globex_org) = (org("acme")?, org("globex")?);
    let acme = EchoUpstream::start("acme").await.map_err(|e| e.to_string())?;
    let globex = EchoUpstream::start("globex").await.map_err(|e| e.to_string())?;
    let routes = [
        (acme_org.as_str(), "acme", acme.addr),
        (globex_org.as_str(), "globex", globex.addr),
    ];
    let gw = GatewayProcess::start(binary, dir, &routes).await.map_err(|e| {
        format!(
            "starting the gateway: {e}; see {}",
            dir.join("gateway.log").display()
        )
    })?;
    let token = |org: &str, sub: &str| gw.token(org, sub).map_err(|e| e.to_string());
    let (acme_token, globex_token) = (token(&acme_org, "user_alice")?, token(&globex_org, "user_bob")?);
    let stray_token = token("org_NoSuchTenant", "user_eve")?;
    let cases: [DemoRequest<'_>; 5] = [
        ("acme's token", Some(&acme_token), vec![]),
        ("globex's token", Some(&globex_token), vec![]),
        (
            "acme's token + X-Bulkhead-Tenant: globex",
            Some(&acme_token),
            vec![("X-Bulkhead-Tenant", "globex"), ("X-Org-Id", &globex_org)],
        ),
        ("no token", None, vec![]),
        ("a valid token for an unknown org", Some(&stray_token), vec![]),
    ];
    println!(
        "\nGateway on http://{} (admin http://{}), routing the Tenants' org ids to two example upstreams:\n",
        gw.addr, gw.admin
    );
    println!("{:<42}  {:<6}  ANSWER", "REQUEST", "STATUS");
    for (what, bearer, extra) in cases {
        let (status, body) = bulkhead_e2e::gateway::get(gw.addr, bearer, &extra)
            .await
            .map_err(|e| e.to_string())?;
        let answer = body.trim().lines().map(str::trim).collect::<Vec<_>>().join("; ");
        println!("{what:<42}  {status:<6}  {answer}");
    }
    println!("\ntoken:         {}", gw.token_command(&acme_org));
    println!("audit log:     {}", dir.join("gateway-audit.log").display());
    Ok((acme, globex, gw))
}

/// Creates the shared database, the operator's namespace and the admin Secret.
async fn prepare_postgres(pg: &Postgres, client: &kube::Client) -> Result<(), String> {
    let admin = pg.admin().await.map_err(|e| e.to_string())?;
    admin
        .batch_execute(&format!("CREATE DATABASE {SHARED_DB}"))
        .await
        .map_err(|e| format!("creating database {SHARED_DB}: {e}"))?;
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ADMIN_SECRET.0}}))
        .map_err(|e| e.to_string())?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| format!("creating namespace {}: {e}", ADMIN_SECRET.0))?;
    let dsn = pg.dsn(SUPERUSER, pg.superuser_password(), SHARED_DB);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ADMIN_SECRET.1, "namespace": ADMIN_SECRET.0},
        "stringData": {"dsn": format!("{dsn}?sslmode=disable")}
    }))
    .map_err(|e| e.to_string())?;
    Api::<Secret>::namespaced(client.clone(), ADMIN_SECRET.0)
        .create(&PostParams::default(), &secret)
        .await
        .map_err(|e| format!("creating the admin Secret: {e}"))?;
    Ok(())
}

/// Lists the schemas and databases the operator made, straight from the catalog.
async fn print_places(pg: &Postgres) {
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
    println!("schemas:       {} (in database {SHARED_DB})", or_none(&schemas));
    println!("databases:     {}", or_none(&databases));
}

fn or_none(list: &str) -> &str {
    if list.is_empty() { "none" } else { list }
}

/// The operator's database flags for the sandbox's server.
fn postgres_flags(pg: &Postgres) -> Vec<String> {
    vec![
        "--postgres-admin-secret".into(),
        format!("{}/{}", ADMIN_SECRET.0, ADMIN_SECRET.1),
        "--postgres-cidr".into(),
        "127.0.0.1/32".into(),
        "--postgres-port".into(),
        pg.port().to_string(),
    ]
}

async fn start_operator(
    args: &Args,
    plane: &ControlPlane,
    pg: Option<&Postgres>,
    log_path: &std::path::Path,
) -> Result<Operator, String> {
    let binary = sibling_binary(args.operator_bin.clone(), "bulkhead-operator");
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("choosing a port for the operator's admin endpoints: {e}"))?
        .port();
    match binary {
        Some(binary) => {
            let log = std::fs::File::create(log_path)
                .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
            let child = Command::new(&binary)
                .args([
                    "run",
                    "--log-format",
                    "plain",
                    "--admin-addr",
                    &format!("127.0.0.1:{admin_port}"),
                ])
                .arg("--kubeconfig")
                .arg(plane.kubeconfig_path())
                .args(pg.map(postgres_flags).unwrap_or_default())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .spawn()
                .map_err(|e| format!("starting {}: {e}", binary.display()))?;
            println!(
                "Operator {} running (pid {}); metrics on http://127.0.0.1:{admin_port}/metrics",
                binary.display(),
                child.id()
            );
            Ok(Operator::Process(child))
        }
        None => {
            let client = plane.admin().await.map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", admin_port))
                .await
                .map_err(|e| format!("binding the operator's admin port: {e}"))?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let mut options = bulkhead_operator::Options::default();
            if let Some(pg) = pg {
                let secret = format!("{}/{}", ADMIN_SECRET.0, ADMIN_SECRET.1);
                let mut database = bulkhead_operator::settings::DatabaseSettings::new(
                    secret.parse().map_err(|e: String| e)?,
                );
                database.port = Some(pg.port());
                options.settings.database = Some(database);
                options.settings.postgres = Some(bulkhead_operator::settings::PostgresEndpoint {
                    cidr: "127.0.0.1/32".into(),
                    port: pg.port(),
                });
            }
            let handle = tokio::spawn(bulkhead_operator::run(client, listener, options, async move {
                let _ = rx.await;
            }));
            println!(
                "No bulkhead-operator binary next to this one (build it with `cargo build -p bulkhead-operator`); running the operator in-process. Metrics on http://127.0.0.1:{admin_port}/metrics"
            );
            Ok(Operator::InProcess(tx, handle))
        }
    }
}

async fn stop_operator(operator: Operator) {
    match operator {
        Operator::Process(mut child) => {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Operator::InProcess(stop, handle) => {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }
}

async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
