//! `bulkhead-operator`: run the operator, print or apply the CRDs, print the RBAC.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use tracing::info;

use bulkhead_operator::Options;
use bulkhead_operator::cluster::leader::LeaseConfig;
use bulkhead_operator::postgres::connect::AdminSecretRef;
use bulkhead_operator::process::crd_apply;
use bulkhead_operator::settings::{
    DatabaseSettings, PeerPods, PostgresEndpoint, ServerSettings, Settings, parse_labels, parse_server,
};
use bulkhead_process::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-operator",
    version,
    about = "Reconciles Bulkhead Tenants and Customers into isolated stacks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator against the cluster from --kubeconfig, $KUBECONFIG, ~/.kube/config or the in-cluster
    /// service account.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (pipe into `kubectl apply -f -`), or install and upgrade
    /// them with `crds apply`.
    Crds(CrdsArgs),
    /// Print the operator's RBAC as the chart ships it (Helm template).
    Rbac,
    /// Read the live state (read-only) and report whether the isolation contract holds: network reachability
    /// under every NetworkPolicy in the cluster, the gateway's route table, every object each Tenant and
    /// Customer needs, and what every Bulkhead Postgres role can reach. Exit 0 when it holds, 1 when a check
    /// failed (the violations are listed first), 2 when the state could not be read.
    Verify(Box<VerifyArgs>),
}

/// How `verify` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    /// The human report.
    Text,
    /// The JSON document (schema `bulkhead.dev/verify/v1`, see docs/verify.md).
    Json,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    peers: PeersArgs,
    /// An address outside the cluster (`ip:port`), standing for "the outside" in the matrix.
    #[arg(long, default_value = bulkhead_operator::verify::DEFAULT_OUTSIDE)]
    outside: SocketAddr,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value = "text")]
    output: ReportFormat,
    /// Also write the JSON document to this file.
    #[arg(long)]
    json_file: Option<PathBuf>,
    /// Log filter in RUST_LOG syntax (logs go to stderr).
    #[arg(long, env = "RUST_LOG", default_value = "warn")]
    log: String,
    /// Print the JSON Schema of the JSON document and exit, without reading any cluster.
    #[arg(long)]
    print_schema: bool,
}

#[derive(Debug, clap::Args)]
struct CrdsArgs {
    #[command(subcommand)]
    action: Option<CrdsAction>,
}

#[derive(Debug, Subcommand)]
enum CrdsAction {
    /// Server-side apply the CRDs built into this binary (field manager `bulkhead-crds`), wait until they are
    /// established, and print one line per CRD. A CRD applied by a newer Bulkhead is left alone.
    Apply(CrdsApplyArgs),
}

/// Which cluster to talk to.
#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// Kubeconfig file to use instead of the usual lookup.
    #[arg(long, env = "BULKHEAD_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, env = "BULKHEAD_CONTEXT")]
    context: Option<String>,
}

/// How to log.
#[derive(Debug, clap::Args)]
struct LogArgs {
    /// Log line format.
    #[arg(long, env = "BULKHEAD_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Log filter in RUST_LOG syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,kube=warn")]
    log: String,
}

#[derive(Debug, clap::Args)]
struct CrdsApplyArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    logging: LogArgs,
    /// Seconds to wait in all for the CRDs to be applied and established.
    #[arg(long, env = "BULKHEAD_CRDS_TIMEOUT_SECONDS", default_value = "60",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_seconds: u64,
}

/// Where the gateway, cluster DNS and Postgres are: what the NetworkPolicies open (`run`) and what `verify`
/// holds them against.
#[derive(Debug, clap::Args)]
struct PeersArgs {
    /// Namespace of the gateway's pods: the only source allowed to reach a stack.
    #[arg(long, env = "BULKHEAD_GATEWAY_NAMESPACE", default_value = "bulkhead-system")]
    gateway_namespace: String,
    /// Labels of the gateway's pods, as key=value,key=value.
    #[arg(
        long,
        env = "BULKHEAD_GATEWAY_POD_LABELS",
        default_value = "app.kubernetes.io/name=bulkhead,app.kubernetes.io/component=gateway"
    )]
    gateway_pod_labels: String,
    /// Namespace of the cluster DNS pods.
    #[arg(long, env = "BULKHEAD_DNS_NAMESPACE", default_value = "kube-system")]
    dns_namespace: String,
    /// Labels of the cluster DNS pods, as key=value,key=value.
    #[arg(long, env = "BULKHEAD_DNS_POD_LABELS", default_value = "k8s-app=kube-dns")]
    dns_pod_labels: String,
    /// Address range of the Postgres server (e.g. 10.0.5.17/32); stacks with a database may reach it.
    #[arg(long, env = "BULKHEAD_POSTGRES_CIDR")]
    postgres_cidr: Option<String>,
    /// Port of the Postgres server as stacks reach it: opened in their egress policy (default 5432) and
    /// written into their credentials Secret (default: the admin DSN's port).
    #[arg(long, env = "BULKHEAD_POSTGRES_PORT")]
    postgres_port: Option<u16>,
    /// The Secret holding the admin DSN, as namespace/name (key `dsn`, optional `ca.crt`). Without it,
    /// resources with `database.enabled` report DatabaseReady=False, NotConfigured.
    #[arg(long, env = "BULKHEAD_POSTGRES_ADMIN_SECRET")]
    postgres_admin_secret: Option<String>,
    /// The name of the server --postgres-admin-secret connects to: what a Tenant without
    /// `spec.database.server` uses, and what `server: <this name>` names.
    #[arg(long, env = "BULKHEAD_POSTGRES_DEFAULT_SERVER",
          default_value = bulkhead_operator::settings::DEFAULT_SERVER)]
    postgres_default_server: String,
    /// Another PostgreSQL server Tenants and Customers may name in `spec.database.server`, as
    /// `name=NAME,secret=NAMESPACE/NAME[,host=HOST][,port=PORT][,cidr=CIDR]` (repeat the flag for each; in the
    /// environment, `;`-separated). `host` and `port` are what stacks connect to (default: the DSN's);
    /// `cidr` and `port` (default 5432) are what their egress policy opens. Needs --postgres-admin-secret.
    #[arg(
        long = "postgres-server",
        env = "BULKHEAD_POSTGRES_SERVERS",
        value_delimiter = ';'
    )]
    postgres_servers: Vec<String>,
}

/// The parts of [`Settings`] that [`PeersArgs`] gives.
struct Peers {
    gateway: PeerPods,
    dns: PeerPods,
    postgres: Option<PostgresEndpoint>,
    admin_secret: Option<AdminSecretRef>,
    default_server: String,
    servers: BTreeMap<String, ServerSettings>,
}

/// Checks a CIDR given on the command line as the specs' egress CIDRs are checked.
fn check_cidr(flag: &str, cidr: &str) -> Result<(), String> {
    let probe = bulkhead_crds::v1alpha1::NetworkSpec {
        allow_egress: vec![bulkhead_crds::v1alpha1::EgressRule {
            cidr: cidr.to_owned(),
            ports: vec![],
        }],
    };
    bulkhead_crds::validate::network_cidr(&probe).map_err(|e| format!("{flag}: {e}"))
}

impl PeersArgs {
    fn peers(&self) -> Result<Peers, String> {
        let postgres = match &self.postgres_cidr {
            Some(cidr) => {
                check_cidr("--postgres-cidr", cidr)?;
                Some(PostgresEndpoint {
                    cidr: cidr.clone(),
                    port: self.postgres_port.unwrap_or(5432),
                })
            }
            None => None,
        };
        let mut servers = BTreeMap::new();
        for text in self.postgres_servers.iter().filter(|t| !t.trim().is_empty()) {
            let (name, server) =
                parse_server(text).map_err(|e| format!("--postgres-server `{text}`: {e}"))?;
            if let Some(endpoint) = &server.endpoint {
                check_cidr("--postgres-server", &endpoint.cidr)?;
            }
            if name == self.postgres_default_server || servers.insert(name.clone(), server).is_some() {
                return Err(format!("--postgres-server: server `{name}` is configured twice"));
            }
        }
        if !servers.is_empty() && self.postgres_admin_secret.is_none() {
            return Err("--postgres-server needs --postgres-admin-secret (the default server)".into());
        }
        Ok(Peers {
            default_server: self.postgres_default_server.clone(),
            servers,
            gateway: PeerPods {
                namespace: self.gateway_namespace.clone(),
                pod_labels: parse_labels(&self.gateway_pod_labels)
                    .map_err(|e| format!("--gateway-pod-labels: {e}"))?,
            },
            dns: PeerPods {
                namespace: self.dns_namespace.clone(),
                pod_labels: parse_labels(&self.dns_pod_labels)
                    .map_err(|e| format!("--dns-pod-labels: {e}"))?,
            },
            postgres,
            admin_secret: self
                .postgres_admin_secret
                .as_deref()
                .map(str::parse::<AdminSecretRef>)
                .transpose()
                .map_err(|e| format!("--postgres-admin-secret: {e}"))?,
        })
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Address for /metrics, /livez and /readyz.
    #[arg(long, env = "BULKHEAD_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    admin_addr: SocketAddr,
    #[command(flatten)]
    logging: LogArgs,
    #[command(flatten)]
    peers: PeersArgs,
    /// Host of the Postgres server as stacks reach it, written into their credentials Secret (default: the
    /// admin DSN's host).
    #[arg(long, env = "BULKHEAD_POSTGRES_HOST")]
    postgres_host: Option<String>,
    /// Query parameters appended to the stacks' DATABASE_URL, e.g. `sslmode=require`.
    #[arg(long, env = "BULKHEAD_POSTGRES_URL_PARAMS")]
    postgres_url_params: Option<String>,
    /// Seconds between checks of each database for drift (password, role attributes, grants).
    #[arg(long, env = "BULKHEAD_DATABASE_RESYNC_SECONDS", default_value = "60",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    database_resync_seconds: u64,
    /// Connections of the Postgres server kept free when handing out connection limits (for the admin, the
    /// operator itself and maintenance). A login role is created, or its limit raised, only while the limits
    /// of Bulkhead's login roles plus this fit in max_connections minus the server's reserved connections.
    #[arg(long, env = "BULKHEAD_POSTGRES_CONNECTION_RESERVE",
          default_value_t = bulkhead_operator::settings::DEFAULT_CONNECTION_RESERVE)]
    postgres_connection_reserve: u32,
    /// Seconds between sweeps of the shared database for what crosses a tenant's boundary: grants (repaired and
    /// reported at once rather than at the tenant's next resync) and sessions of one tenant holding a lock on
    /// another tenant's relation (terminated and reported).
    #[arg(long, env = "BULKHEAD_GRANT_SWEEP_SECONDS", default_value = "5",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    grant_sweep_seconds: u64,
    /// Run several replicas: only the holder of the Lease reconciles.
    #[arg(long, env = "BULKHEAD_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "bulkhead-system")]
    lease_namespace: String,
    /// This replica's identity in the election (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

impl RunArgs {
    fn options(&self) -> Result<Options, String> {
        let peers = self.peers.peers()?;
        let settings = Settings {
            gateway: peers.gateway,
            dns: peers.dns,
            postgres: peers.postgres,
            database: peers.admin_secret.map(|admin_secret| DatabaseSettings {
                default_server: peers.default_server,
                servers: peers.servers,
                admin_secret,
                host: self.postgres_host.clone(),
                port: self.peers.postgres_port,
                url_params: self.postgres_url_params.clone(),
                resync: std::time::Duration::from_secs(self.database_resync_seconds),
                connection_reserve: self.postgres_connection_reserve,
                grant_sweep: std::time::Duration::from_secs(self.grant_sweep_seconds),
            }),
        };
        let leader_election = self.leader_elect.then(|| {
            let identity = self.identity.clone().unwrap_or_else(default_identity);
            LeaseConfig::new(&self.lease_namespace, &identity)
        });
        Ok(Options {
            settings,
            leader_election,
            pass_window: None,
        })
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!(
        "{}-{}",
        if host.is_empty() {
            "bulkhead-operator"
        } else {
            &host
        },
        std::process::id()
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds(CrdsArgs { action: None }) => {
            print_generated(bulkhead_crds::generate::crds_yaml().map_err(|e| e.to_string()))
        }
        Command::Crds(CrdsArgs {
            action: Some(CrdsAction::Apply(args)),
        }) => {
            let (format, filter) = (args.logging.log_format, args.logging.log.clone());
            bulkhead_process::serve("bulkhead-operator crds apply", format, &filter, crds_apply(args))
        }
        Command::Rbac => {
            print_generated(bulkhead_operator::process::rbac::chart_yaml().map_err(|e| e.to_string()))
        }
        Command::Run(args) => {
            let (format, filter) = (args.logging.log_format, args.logging.log.clone());
            bulkhead_process::serve("bulkhead-operator", format, &filter, run(*args))
        }
        Command::Verify(args) => verify_main(*args),
    }
}

/// `verify`: exit 0 when the contract holds, 1 when a check failed, 2 when no report could be made.
fn verify_main(args: VerifyArgs) -> ExitCode {
    if args.print_schema {
        print!("{}", bulkhead_operator::verify::report::json_schema());
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bulkhead-operator verify: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(verify(args)) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("bulkhead-operator verify: {message}");
            ExitCode::from(2)
        }
    }
}

async fn verify(args: VerifyArgs) -> Result<u8, String> {
    let peers = args.peers.peers()?;
    let settings = Settings {
        gateway: peers.gateway,
        dns: peers.dns,
        postgres: peers.postgres,
        database: peers.admin_secret.map(|secret| DatabaseSettings {
            default_server: peers.default_server,
            servers: peers.servers,
            ..DatabaseSettings::new(secret)
        }),
    };
    let client = client(&args.cluster)
        .await
        .map_err(|e| format!("{}: {e}", e.category()))?;
    let options = bulkhead_operator::verify::Options {
        settings,
        outside: args.outside,
        context: args.cluster.context.clone(),
    };
    let report = bulkhead_operator::verify::run(&client, &options)
        .await
        .map_err(|e| format!("{}: {e}", e.category()))?;
    if let Some(path) = &args.json_file {
        std::fs::write(path, report.to_json() + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    match args.output {
        ReportFormat::Text => print!("{}", report.render()),
        ReportFormat::Json => println!("{}", report.to_json()),
    }
    Ok(report.exit_code())
}

fn print_generated(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bulkhead-operator: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Errors while connecting to the cluster.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    /// The kubeconfig file named by --kubeconfig could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: KubeconfigError,
    },
    /// The kubeconfig does not give a usable configuration (say, the context does not exist).
    #[error("loading the kubeconfig: {0}")]
    Kubeconfig(#[source] KubeconfigError),
    /// Neither a kubeconfig nor the in-cluster service account was found.
    #[error("finding the cluster: {0}")]
    Infer(#[source] InferConfigError),
    /// The client could not be built from the configuration.
    #[error("building the API client: {0}")]
    Build(#[source] kube::Error),
}

impl ClientError {
    /// A fixed category for logs and exit messages.
    fn category(&self) -> &'static str {
        match self {
            ClientError::Read { .. } | ClientError::Kubeconfig(_) | ClientError::Infer(_) => "kubeconfig",
            ClientError::Build(_) => "client",
        }
    }
}

/// The API client from --kubeconfig and --context, $KUBECONFIG, ~/.kube/config or the in-cluster account.
async fn client(args: &ClusterArgs) -> Result<Client, ClientError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|source| ClientError::Read {
                path: path.clone(),
                source,
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(ClientError::Kubeconfig)?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(ClientError::Kubeconfig)?,
        None => Config::infer().await.map_err(ClientError::Infer)?,
    };
    info!(server = %config.cluster_url, "connecting");
    Client::try_from(config).map_err(ClientError::Build)
}

async fn crds_apply(args: CrdsApplyArgs) -> Result<(), String> {
    let client = client(&args.cluster)
        .await
        .map_err(|e| format!("{}: {e}", e.category()))?;
    let timeout = Duration::from_secs(args.timeout_seconds);
    let applied = crd_apply::apply(&client, timeout)
        .await
        .map_err(|e| format!("{}: {e}", e.category()))?;
    for crd in applied {
        println!("{crd}");
    }
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), String> {
    let run_options = args.options()?;
    let client = client(&args.cluster)
        .await
        .map_err(|e| format!("{}: {e}", e.category()))?;
    let admin = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .map_err(|e| format!("binding the admin address {}: {e}", args.admin_addr))?;
    info!(admin = %args.admin_addr, "serving /metrics, /livez, /readyz");
    let stop = bulkhead_process::shutdown::signal();
    let stop = async move {
        stop.await;
        info!("shutdown requested; finishing in-flight reconciles");
    };
    bulkhead_operator::run(client, admin, run_options, stop)
        .await
        .map_err(|e| e.to_string())
}
