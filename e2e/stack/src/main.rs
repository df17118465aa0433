//! `bulkhead-stack`: serve (the default), or probe a target.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use bulkhead_stack::probe::{self, ProbeOptions};
use bulkhead_stack::server::{self, Identity};

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-stack",
    version,
    about = "Echo server naming its namespace and pod, and a TCP/HTTP probe, for Bulkhead's traffic tests",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answer every request with 200 and JSON: namespace, pod, method, path and the headers (without
    /// Authorization and Cookie). `GET /healthz` answers `ok`. The default.
    Serve(ServeArgs),
    /// Connect to HOST:PORT once and print the result as one JSON line; exit 0 when connected, 1 otherwise.
    Probe(ProbeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The TCP port to listen on (all addresses).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// HOST:PORT, the host an IP address or a DNS name.
    target: String,
    /// The budget for resolving, connecting and (with --http) the answer.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// After connecting, send `GET /` and include the answer's JSON body under "answer".
    #[arg(long)]
    http: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bulkhead-stack: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Probe(args)) => runtime.block_on(run_probe(args)),
    };
    // A name lookup that outlived the probe's timeout may still hold a blocking thread: do not wait for it.
    runtime.shutdown_background();
    code
}

async fn serve(args: ServeArgs) -> ExitCode {
    // As PID 1 in a container the process has no default signal actions: handle both signals explicitly.
    let (mut terminate, mut interrupt) =
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
            (Err(err), _) | (_, Err(err)) => {
                eprintln!("bulkhead-stack: cannot handle signals: {err}");
                return ExitCode::FAILURE;
            }
        };
    let listener = match TcpListener::bind(("0.0.0.0", args.port)).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("bulkhead-stack: cannot listen on port {}: {err}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let identity = Identity::from_env();
    eprintln!(
        "bulkhead-stack: serving on port {} (namespace {:?}, pod {:?})",
        args.port, identity.namespace, identity.pod
    );
    let stopped = async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    };
    server::serve(listener, identity, stopped).await;
    ExitCode::SUCCESS
}

async fn run_probe(args: ProbeArgs) -> ExitCode {
    let options = ProbeOptions {
        timeout: Duration::from_millis(args.timeout_ms),
        http: args.http,
    };
    let report = probe::probe(&args.target, options).await;
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{}", report.to_line())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
