//! `bulkhead-gateway`: run the gateway, mint a test token, or verify an audit log's chains.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing::info;

use bulkhead_gateway::audit::verify as audit_verify;
use bulkhead_gateway::audit::{ChainConfig, StdoutAudit};
use bulkhead_gateway::config::{FileConfig, RouteSource, Settings};
use bulkhead_gateway::gates::alg::parse_name;
use bulkhead_gateway::mint::{self, Mint, OrgPlacement};
use bulkhead_gateway::server::{self, StartOptions};
use bulkhead_process::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-gateway",
    version,
    about = "Verifies each request's JWT and routes it to its tenant's stack by the org claim only"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway. Audit lines go to standard output, logs to standard error.
    Run(RunArgs),
    /// Mint a token from a local private key (demos and tests only).
    Token(TokenArgs),
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the chains of an audit log, or of a rotated set given oldest first. Exit status: 0 every chain
    /// intact and ended by its shutdown checkpoint; 1 a line deleted, altered, reordered, duplicated or cut
    /// off (the first one is named); 2 usage or read error; 3 intact, but a chain ends without its shutdown
    /// checkpoint (truncated, or its gateway is still running or was killed).
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The log files, oldest first (`-` for standard input).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// A chain without its shutdown checkpoint is a warning, not exit status 3 (a log of running gateways).
    #[arg(long)]
    allow_open: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The configuration file (YAML).
    #[arg(long, env = "BULKHEAD_GATEWAY_CONFIG")]
    config: PathBuf,
    /// Proxy listener address (overrides the file).
    #[arg(long, env = "BULKHEAD_GATEWAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Admin listener address for /livez, /readyz, /metrics (overrides the file).
    #[arg(long, env = "BULKHEAD_GATEWAY_ADMIN")]
    admin: Option<SocketAddr>,
    /// Log line format.
    #[arg(long, env = "BULKHEAD_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Log filter in RUST_LOG syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,kube=warn")]
    log: String,
    /// This gateway's name in its audit chain's instance id (overrides `audit.instance`; the pod name).
    #[arg(long, env = "BULKHEAD_GATEWAY_INSTANCE")]
    instance: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OrgVersion {
    /// Clerk v2: `v: 2`, `o.id`.
    V2,
    /// Clerk v1: `org_id`.
    V1,
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// Private key in PEM (PKCS#8, or PKCS#1/SEC1).
    #[arg(long)]
    key: PathBuf,
    /// Algorithm: RS256, PS256, ES256, ES384 or EdDSA.
    #[arg(long, default_value = "RS256")]
    alg: String,
    /// Key id.
    #[arg(long)]
    kid: String,
    /// Issuer.
    #[arg(long)]
    iss: String,
    /// Org id (omit for a token without an active org).
    #[arg(long)]
    org: Option<String>,
    /// Clerk claim version that places the org id.
    #[arg(long, value_enum, default_value = "v2")]
    version: OrgVersion,
    /// A dotted path for the org id instead of the Clerk layout.
    #[arg(long)]
    org_path: Option<String>,
    /// Subject.
    #[arg(long, default_value = "user_demo")]
    sub: String,
    /// Seconds until expiry.
    #[arg(long, default_value_t = 300)]
    exp_in: i64,
    /// How many tokens to print, one per line, each with its own `jti` (for benchmarks).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Extra claims as a JSON object, merged last (e.g. '{"azp":"https://app.example"}').
    #[arg(long)]
    claims: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(args) => match token(&args) {
            Ok(tokens) => {
                let mut out = std::io::stdout().lock();
                for token in tokens {
                    if writeln!(out, "{token}").is_err() {
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("bulkhead-gateway token: {message}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let (format, filter) = (args.log_format, args.log.clone());
            bulkhead_process::serve("bulkhead-gateway", format, &filter, run(args))
        }
        Command::Audit(AuditCommand::Verify(args)) => verify(&args),
    }
}

/// `audit verify`: the chains on standard output, the finding or open chains on standard error.
fn verify(args: &VerifyArgs) -> ExitCode {
    let report = match audit_verify::verify(&args.files) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("bulkhead-gateway audit verify: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(finding) = &report.finding {
        eprintln!("bulkhead-gateway audit verify: FAILED: {finding}");
        return ExitCode::FAILURE;
    }
    let mut out = std::io::stdout().lock();
    for chain in report.chains.iter().filter(|c| c.closed) {
        let _ = writeln!(out, "{chain}");
    }
    let open = report.open().count();
    for chain in report.open() {
        eprintln!("bulkhead-gateway audit verify: {chain}");
    }
    let _ = writeln!(
        out,
        "{} chain{}, {} lines: intact{}",
        report.chains.len(),
        if report.chains.len() == 1 { "" } else { "s" },
        report.lines(),
        if open == 0 {
            String::new()
        } else {
            format!("; {open} without a shutdown checkpoint")
        }
    );
    if open > 0 && !args.allow_open {
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

fn token(args: &TokenArgs) -> Result<Vec<String>, String> {
    let algorithm = parse_name(&args.alg).ok_or_else(|| format!("unknown algorithm {}", args.alg))?;
    let pem = std::fs::read(&args.key).map_err(|e| format!("reading {}: {e}", args.key.display()))?;
    let key = mint::encoding_key(&pem, algorithm).map_err(|e| e.to_string())?;
    let extra = match &args.claims {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err("--claims must be a JSON object".into()),
        },
        None => serde_json::Map::new(),
    };
    let placement = match (&args.org_path, args.version) {
        (Some(path), _) => OrgPlacement::Path(path.split('.').map(str::to_owned).collect()),
        (None, OrgVersion::V2) => OrgPlacement::ClerkV2,
        (None, OrgVersion::V1) => OrgPlacement::ClerkV1,
    };
    let spec = Mint {
        algorithm,
        kid: args.kid.clone(),
        issuer: args.iss.clone(),
        subject: args.sub.clone(),
        org: args.org.clone(),
        placement,
        expires_in: args.exp_in,
        extra,
    };
    if args.count <= 1 {
        return mint::mint(&spec, &key)
            .map(|t| vec![t])
            .map_err(|e| e.to_string());
    }
    // Many tokens (benchmarks): each with its own `jti`, so every one is distinct; signed on every core.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = args.count.div_ceil(threads);
    let chunks: Vec<Result<Vec<String>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (spec, key) = (&spec, &key);
                scope.spawn(move || {
                    let start = t * per_thread;
                    let end = (start + per_thread).min(args.count);
                    (start..end)
                        .map(|i| {
                            let mut one = spec.clone();
                            one.extra
                                .insert("jti".into(), serde_json::json!(format!("bench-{i}")));
                            mint::mint(&one, key).map_err(|e| e.to_string())
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a minting thread panicked".into()))
            })
            .collect()
    });
    let mut tokens = Vec::with_capacity(args.count);
    for chunk in chunks {
        tokens.extend(chunk?);
    }
    Ok(tokens)
}

async fn run(args: RunArgs) -> Result<(), String> {
    let mut file = FileConfig::read(&args.config).map_err(|e| e.to_string())?;
    if let Some(listen) = args.listen {
        file.listen = listen;
    }
    if let Some(admin) = args.admin {
        file.admin = admin;
    }
    if let Some(instance) = args.instance {
        file.audit.instance = instance;
    }
    let settings = Settings::from_file(file).map_err(|e| e.to_string())?;
    bulkhead_gateway::install_crypto_provider();
    let kube = if settings.file.routes.source == RouteSource::Kubernetes {
        let config = kube::Config::infer().await.map_err(|e| e.to_string())?;
        Some(kube::Client::try_from(config).map_err(|e| format!("building the API client: {e}"))?)
    } else {
        None
    };
    // Installed before the gateway announces it is listening, so an early stop request is honoured.
    let stop = bulkhead_process::shutdown::signal();
    let chain = ChainConfig::new(
        &settings.file.audit.instance,
        Duration::from_secs(settings.file.audit.checkpoint_seconds),
    );
    let audit = Arc::new(StdoutAudit::start(chain).map_err(|e| format!("starting the audit writer: {e}"))?);
    info!(instance = %audit.chain().instance, "audit chain started");
    let running = server::start(
        settings,
        StartOptions {
            audit: audit.clone(),
            kube,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    stop.await;
    info!("shutdown requested; finishing in-flight requests");
    running.shutdown().await;
    // Every decision taken is in the audit log before the process ends.
    audit.flush();
    info!("gateway stopped");
    Ok(())
}
