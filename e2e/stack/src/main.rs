//! `bulkhead-stack`: serve (the default), probe targets, check what the pod's `DATABASE_URL` may do, or send load.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{ArgGroup, CommandFactory as _, Parser, Subcommand};
use hyper::header::{HeaderName, HeaderValue};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use bulkhead_stack::db::{self, Database, DbOptions};
use bulkhead_stack::load::{self, LoadOptions};
use bulkhead_stack::probe::{self, HttpOptions, ProbeOptions, RepeatOptions, Until};
use bulkhead_stack::server::{self, Identity};

/// Exit code of usage and environment errors (also clap's).
const USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-stack",
    version,
    about = "Echo server naming its namespace and pod, TCP/HTTP probes, database checks and an HTTP load \
             generator, for Bulkhead's isolation tests and benchmarks",
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
    /// Connect to each HOST:PORT (at once) and print one JSON line per target, in the order given.
    Probe(ProbeArgs),
    /// Check what DATABASE_URL may do: its own schema, and other schemas and databases (one JSON line each).
    Db(DbArgs),
    /// Send GET requests to HOST:PORT over keep-alive connections, back to back (a closed loop), and print one
    /// JSON line with the throughput and latencies.
    Load(LoadArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The TCP port to listen on (all addresses).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
}

#[derive(Debug, clap::Args)]
#[command(after_help = PROBE_HELP)]
struct ProbeArgs {
    /// HOST:PORT, the host an IP address or a DNS name; several are probed concurrently.
    #[arg(required = true, value_name = "HOST:PORT")]
    targets: Vec<String>,
    /// The budget of each attempt for resolving, connecting and (with HTTP) the whole answer.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    timeout_ms: u64,
    /// After connecting, send `GET /` and report the answer's status and body.
    #[arg(long)]
    http: bool,
    /// The request path (and query) to GET instead of `/`; implies --http.
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    /// A request header, `Name: value`, sent as given (repeatable); implies --http. The values of credential
    /// headers (names with auth, cookie, token, secret, password, session or key) are never printed, not even
    /// when the server echoes them.
    #[arg(long = "header", value_name = "NAME: VALUE", allow_hyphen_values = true)]
    headers: Vec<String>,
    /// Exit 0 once every probe ran, whatever the outcomes (the lines tell them).
    #[arg(long)]
    report_only: bool,
    /// Probe the (single) target again and again until the outcome is this (`refused` is any failure to
    /// connect: refused, timeout, unreachable), then print a summary line.
    #[arg(long, value_enum, value_name = "OUTCOME")]
    repeat_until: Option<Until>,
    /// With --repeat-until: from the start of one attempt to the start of the next.
    #[arg(long, value_name = "MS", default_value_t = 100, requires = "repeat_until",
          value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// With --repeat-until: give up when no attempt matched this long after the first started.
    #[arg(long, value_name = "MS", default_value_t = 30_000, requires = "repeat_until")]
    max_ms: u64,
}

const PROBE_HELP: &str = "\
Output: one JSON line per target (or per attempt), e.g.
  {\"target\":\"10.0.0.7:8080\",\"result\":\"connected\",\"detail\":\"10.0.0.7:8080\",\"elapsed_ms\":2}
  {\"target\":\"gw:8080\",\"result\":\"connected\",\"detail\":\"10.0.0.9:8080\",\"elapsed_ms\":4,\"status\":200,\"answer\":{...}}
  {\"target\":\"gw:8080\",\"result\":\"connected\",\"detail\":\"10.0.0.9:8080\",\"elapsed_ms\":3,\"status\":401,\"body\":\"unauthorized\"}
  {\"target\":\"10.0.0.8:5432\",\"result\":\"timeout\",\"detail\":\"connecting to 10.0.0.8:5432 timed out\",\"elapsed_ms\":1000}
result: connected | refused | timeout | error. Any HTTP status counts as connected. A JSON answer body is under
\"answer\", any other under \"body\" (at most 4 KiB; \"body_truncated\":true when cut).
With --repeat-until every attempt's line also has \"attempt\" (from 1) and \"at_ms\" (start, ms since the Unix
epoch); the last line is
  {\"summary\":true,\"target\":...,\"until\":\"refused\",\"matched\":true,\"first_match_at_ms\":...,
   \"started_at_ms\":...,\"attempts\":12,\"connected_attempts\":11,\"elapsed_ms\":1105}

Exit: 0 when every target connected (with --repeat-until: when an attempt matched), 1 otherwise; with
--report-only 0 whenever the probes ran. 2 on usage errors.";

#[derive(Debug, clap::Args)]
#[command(
    after_help = DB_HELP,
    group(ArgGroup::new("checks").required(true).multiple(true)
        .args(["own", "other_schemas", "other_databases"]))
)]
struct DbArgs {
    /// Create table bulkhead_probe (if missing) in the login's own schema (current_schema()), insert a row,
    /// count the rows.
    #[arg(long)]
    own: bool,
    /// Try `SELECT count(*) FROM "NAME".bulkhead_probe` and creating a table in schema NAME (in a transaction
    /// that is rolled back) with DATABASE_URL's login (repeatable).
    #[arg(long = "other-schema", value_name = "NAME")]
    other_schemas: Vec<String>,
    /// Try logging in to database NAME with DATABASE_URL's credentials (repeatable).
    #[arg(long = "other-database", value_name = "NAME")]
    other_databases: Vec<String>,
    /// The budget for each login and each statement.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    timeout_ms: u64,
}

const DB_HELP: &str = "\
Environment: DATABASE_URL, a postgres:// or postgresql:// URL (plain TCP: sslmode=require cannot work). Neither
the URL nor the password is ever printed.

Output: one JSON line per check, in the order --own, each --other-schema, each --other-database, e.g.
  {\"check\":\"own\",\"ok\":true,\"schema\":\"bk_acme\",\"database\":\"app\",\"user\":\"bk_acme_login\",\"rows\":1}
  {\"check\":\"other-schema\",\"schema\":\"bk_other\",\"ok\":false,\"sqlstate\":\"42501\",
   \"message\":\"permission denied for schema bk_other\",\"select\":{\"ok\":false,\"sqlstate\":\"42501\",\"message\":...},
   \"create\":{\"ok\":false,\"sqlstate\":\"42501\",\"message\":...}}
  {\"check\":\"other-database\",\"database\":\"bk_other\",\"ok\":false,\"sqlstate\":\"42501\",
   \"message\":\"permission denied for database \\\"bk_other\\\"\"}
A failed --own names the failed \"step\" (connect, inspect, create, insert, count). An --other-schema is ok when
the select or the create succeeded. \"sqlstate\" is absent when the server gave none (network error, timeout).

Exit: 0 when the checks ran, whatever their outcomes; 1 when the login with DATABASE_URL itself failed, so
--own and --other-schema could not run (their lines say \"step\":\"connect\"); 2 on usage errors and a missing or
invalid DATABASE_URL.";

#[derive(Debug, clap::Args)]
#[command(after_help = LOAD_HELP)]
struct LoadArgs {
    /// HOST:PORT, the host an IP address or a DNS name (resolved once, before the warmup).
    #[arg(value_name = "HOST:PORT")]
    target: String,
    /// The request path (and query) of every GET.
    #[arg(long, value_name = "PATH", default_value = "/")]
    path: String,
    /// A request header, `Name: value`, sent as given with every request (repeatable). `Host` defaults to
    /// HOST:PORT, `User-Agent` to bulkhead-stack-load. Header values are never printed.
    #[arg(long = "header", value_name = "NAME: VALUE", allow_hyphen_values = true)]
    headers: Vec<String>,
    /// Keep-alive connections, each with one request in flight at a time.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    connections: u16,
    /// The measured window, after the warmup.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    duration_ms: u64,
    /// Send requests for this long first without counting them (connections opened, caches warm).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    warmup_ms: u64,
    /// The budget of the name resolution, of each connection attempt, and of each request (until the whole
    /// answer is read). A request cut by it is an error and its connection is replaced.
    #[arg(long, value_name = "MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
}

const LOAD_HELP: &str = "\
Each connection sends a GET, reads the whole answer and sends the next at once, for --warmup-ms and then
--duration-ms; it connects again when the server closes the connection (10 ms after a failed attempt).
Only what completes within the measured window counts; requests in flight at its end are dropped uncounted.
Latency: from sending a request to the end of its answer's body (connecting not included), in ms with
microsecond precision; percentiles by nearest rank over every answered request, whatever its status (all 0
when none was answered).

Output: one JSON line, e.g.
  {\"target\":\"gw.bulkhead-system:8080\",\"connections\":16,\"duration_ms\":10000,\"requests\":84210,
   \"ok\":84210,\"non_2xx\":0,\"errors\":0,\"rps\":8421.0,
   \"latency_ms\":{\"p50\":1.702,\"p90\":2.911,\"p99\":5.387,\"max\":21.064,\"mean\":1.893},
   \"statuses\":{\"200\":84210}}
requests = ok (2xx) + non_2xx, the answers within the window; rps = requests / duration. errors (failed or
timed-out connection attempts and requests within the window) are not requests; when there are any,
\"first_error\" says what the first was (never quoting a header value).

Exit: 0 when at least one request got a 2xx answer, 1 otherwise, 2 on usage errors.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let load = match &cli.command {
        Some(Command::Load(args)) => Some(load_options(args)),
        _ => None,
    };
    // The load generator uses every core the pod may use; everything else needs one thread.
    let mut builder = if load.is_some() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bulkhead-stack: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Probe(args)) => {
            let (options, repeat) = probe_options(&args);
            runtime.block_on(run_probe(args, options, repeat))
        }
        Some(Command::Db(args)) => runtime.block_on(run_db(args)),
        Some(Command::Load(args)) => match load {
            Some(options) => runtime.block_on(run_load(args, options)),
            None => ExitCode::from(USAGE),
        },
    };
    // A name lookup that outlived the probe's timeout may still hold a blocking thread: do not wait for it.
    runtime.shutdown_background();
    code
}

/// Prints a usage error (never quoting a header's value) and exits with 2.
fn usage_error(kind: ErrorKind, message: String) -> ! {
    Cli::command().error(kind, message).exit()
}

/// Parses every `--header`, or exits with a usage error that names the header by its position, never by its
/// value.
fn parse_headers(raw: &[String]) -> Vec<(HeaderName, HeaderValue)> {
    raw.iter()
        .enumerate()
        .map(|(index, raw)| {
            probe::parse_header(raw).unwrap_or_else(|err| {
                usage_error(
                    ErrorKind::ValueValidation,
                    format!("--header number {}: {err}", index + 1),
                )
            })
        })
        .collect()
}

fn load_options(args: &LoadArgs) -> LoadOptions {
    LoadOptions {
        path: probe::parse_path(&args.path)
            .unwrap_or_else(|err| usage_error(ErrorKind::ValueValidation, format!("--path: {err}"))),
        headers: parse_headers(&args.headers),
        connections: usize::from(args.connections),
        duration: Duration::from_millis(args.duration_ms),
        warmup: Duration::from_millis(args.warmup_ms),
        timeout: Duration::from_millis(args.timeout_ms),
    }
}

fn probe_options(args: &ProbeArgs) -> (ProbeOptions, Option<RepeatOptions>) {
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut options = ProbeOptions::tcp(timeout);
    if args.http || args.path.is_some() || !args.headers.is_empty() {
        let mut http = HttpOptions::default();
        if let Some(path) = &args.path {
            http.path = probe::parse_path(path)
                .unwrap_or_else(|err| usage_error(ErrorKind::ValueValidation, format!("--path: {err}")));
        }
        http.headers = parse_headers(&args.headers);
        options.http = Some(http);
    }
    let repeat = args.repeat_until.map(|until| {
        if args.targets.len() != 1 {
            usage_error(
                ErrorKind::WrongNumberOfValues,
                "--repeat-until takes exactly one target".to_owned(),
            );
        }
        RepeatOptions {
            until,
            interval: Duration::from_millis(args.interval_ms),
            max: Duration::from_millis(args.max_ms),
        }
    });
    (options, repeat)
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

/// Writes one line to stdout and flushes it, so a reader sees each attempt as it happens.
fn print_line(line: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_ok()
}

async fn run_probe(args: ProbeArgs, options: ProbeOptions, repeat: Option<RepeatOptions>) -> ExitCode {
    let succeeded = match (repeat, args.targets.as_slice()) {
        (Some(repeat), [target]) => {
            let mut printed = true;
            let summary = probe::repeat(target, &options, &repeat, |report| {
                printed &= print_line(&report.to_line());
            })
            .await;
            printed &= print_line(&probe::to_line(&summary));
            if !printed {
                return ExitCode::FAILURE;
            }
            summary.matched
        }
        _ => {
            let reports = probe::probe_all(&args.targets, &options).await;
            if !reports.iter().all(|report| print_line(&report.to_line())) {
                return ExitCode::FAILURE;
            }
            reports.iter().all(probe::Report::succeeded)
        }
    };
    if succeeded || args.report_only {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_db(args: DbArgs) -> ExitCode {
    // Read here rather than through clap's `env`, which would show the URL in --help and in errors.
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            eprintln!("bulkhead-stack db: DATABASE_URL is not set");
            return ExitCode::from(USAGE);
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("bulkhead-stack db: DATABASE_URL is not valid UTF-8");
            return ExitCode::from(USAGE);
        }
    };
    let database = match Database::from_url(&url) {
        Ok(database) => database,
        Err(err) => {
            eprintln!("bulkhead-stack db: DATABASE_URL is {err}");
            return ExitCode::from(USAGE);
        }
    };
    let options = DbOptions {
        timeout: Duration::from_millis(args.timeout_ms),
        own: args.own,
        other_schemas: args.other_schemas,
        other_databases: args.other_databases,
    };
    let run = db::run(&database, &options).await;
    if !run.checks.iter().all(|check| print_line(&check.to_line())) || run.login_failed {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn run_load(args: LoadArgs, options: LoadOptions) -> ExitCode {
    let report = load::run(&args.target, &options).await;
    if !print_line(&report.to_line()) || !report.succeeded() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
