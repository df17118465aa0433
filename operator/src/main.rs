//! `bulkhead-operator`: run the operator, or print the CRDs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::{error, info};

use bulkhead_operator::telemetry::{self, LogFormat};

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
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML (pipe into `kubectl apply -f -`).
    Crds,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Kubeconfig file to use instead of the usual lookup.
    #[arg(long, env = "BULKHEAD_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, env = "BULKHEAD_CONTEXT")]
    context: Option<String>,
    /// Address for /metrics, /livez and /readyz.
    #[arg(long, env = "BULKHEAD_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    admin_addr: SocketAddr,
    /// Log line format.
    #[arg(long, env = "BULKHEAD_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Log filter in RUST_LOG syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,kube=warn")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => match bulkhead_crds::generate::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("bulkhead-operator: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            if let Err(err) = telemetry::init(args.log_format, &args.log) {
                eprintln!("bulkhead-operator: {err}");
                return ExitCode::FAILURE;
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(err) => {
                    error!(error = %err, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    error!(error = %message, "operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let options = KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| e.to_string())?
        }
        None if args.context.is_some() => {
            let options = KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            Config::from_kubeconfig(&options)
                .await
                .map_err(|e| e.to_string())?
        }
        None => Config::infer().await.map_err(|e| e.to_string())?,
    };
    info!(server = %config.cluster_url, "connecting");
    let client = Client::try_from(config).map_err(|e| format!("building the API client: {e}"))?;
    let admin = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .map_err(|e| format!("binding the admin address {}: {e}", args.admin_addr))?;
    info!(admin = %args.admin_addr, "serving /metrics, /livez, /readyz");
    bulkhead_operator::run(client, admin, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    info!("shutdown requested; finishing in-flight reconciles");
}
