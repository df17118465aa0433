//! `isolation-suite`: installs Bulkhead with its Helm chart into the cluster of a kubeconfig and proves the
//! isolation contract with real traffic between real pods (see `bulkhead_e2e::suite`). The same binary runs
//! on the local cluster (`make test`) and on kind (`make kind-test`).
//!
//! Exit status: 0 when every cell and check holds (with `--sabotage`: when the sabotage was seen), 1 when one
//! does not, 2 when the suite could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bulkhead_e2e::suite::{self, Config, Images, PostgresTarget};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "isolation-suite",
    about = "Install Bulkhead with Helm into a cluster and prove tenant isolation with real traffic"
)]
struct Args {
    /// The kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context.
    #[arg(long)]
    context: Option<String>,
    /// The helm binary.
    #[arg(long, env = "BULKHEAD_HELM", default_value = "helm")]
    helm: PathBuf,
    /// The chart to install.
    #[arg(long, default_value = "charts/bulkhead")]
    chart: PathBuf,
    /// A previous chart version (directory or .tgz) to install first and upgrade from.
    #[arg(long)]
    previous_chart: Option<PathBuf>,
    /// Bulkhead's namespace.
    #[arg(long, default_value = "bulkhead-system")]
    namespace: String,
    /// The Helm release.
    #[arg(long, default_value = "bulkhead")]
    release: String,
    /// The operator image.
    #[arg(long, default_value = "bulkhead.dev/operator:0.1.0")]
    operator_image: String,
    /// The gateway image.
    #[arg(long, default_value = "bulkhead.dev/gateway:0.1.0")]
    gateway_image: String,
    /// The test stack image (`make images`: target/images/stack.tar).
    #[arg(long, default_value = "bulkhead.dev/stack:0.1.0")]
    stack_image: String,
    /// The pull policy of every image (`Never` where images are imported into the node).
    #[arg(long, default_value = "IfNotPresent")]
    pull_policy: String,
    /// The PostgreSQL host as pods reach it.
    #[arg(long)]
    postgres_host: String,
    /// Its port.
    #[arg(long, default_value_t = 5432)]
    postgres_port: u16,
    /// The CIDR the stacks' egress policy opens (default: the host as a /32, when it is an IPv4 address).
    #[arg(long)]
    postgres_cidr: Option<String>,
    /// A file holding the admin DSN (never printed); or set BULKHEAD_POSTGRES_ADMIN_DSN.
    #[arg(long)]
    postgres_admin_dsn_file: Option<PathBuf>,
    /// `host:port` outside the cluster that accepts TCP connections (stacks must not reach it).
    #[arg(long)]
    outside: String,
    /// How long one connection attempt may take before it counts as refused, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    probe_timeout_ms: u64,
    /// Break isolation on purpose and expect the suite to see it (exit 0 only if it does).
    #[arg(long)]
    sabotage: bool,
    /// Install the chart without its admission policies (`admissionPolicies.enabled=false`): the drift window is
    /// then opened by a plain cluster admin and closed by the operator's repair alone.
    #[arg(long)]
    without_admission_policies: bool,
    /// Record the run's output in this Markdown file (between `isolation-suite` markers, or
    /// `isolation-suite-sabotage` ones with --sabotage).
    #[arg(long)]
    record: Option<PathBuf>,
}

fn config(args: &Args) -> Result<Config, String> {
    let admin_dsn = match (
        &args.postgres_admin_dsn_file,
        std::env::var("BULKHEAD_POSTGRES_ADMIN_DSN"),
    ) {
        (Some(file), _) => std::fs::read_to_string(file)
            .map_err(|e| format!("reading --postgres-admin-dsn-file {}: {e}", file.display()))?
            .trim()
            .to_owned(),
        (None, Ok(dsn)) => dsn,
        (None, Err(_)) => {
            return Err(
                "the admin DSN is needed: --postgres-admin-dsn-file or BULKHEAD_POSTGRES_ADMIN_DSN".into(),
            );
        }
    };
    let cidr = match args.postgres_cidr.clone() {
        Some(cidr) => cidr,
        None => match args.postgres_host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => format!("{ip}/32"),
            Err(_) => {
                return Err("--postgres-cidr is needed when --postgres-host is not an IPv4 address".into());
            }
        },
    };
    Ok(Config {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        helm: args.helm.clone(),
        chart: args.chart.clone(),
        previous_chart: args.previous_chart.clone(),
        namespace: args.namespace.clone(),
        release: args.release.clone(),
        images: Images {
            operator: args.operator_image.clone(),
            gateway: args.gateway_image.clone(),
            stack: args.stack_image.clone(),
            pull_policy: args.pull_policy.clone(),
        },
        postgres: Some(PostgresTarget {
            host: args.postgres_host.clone(),
            port: args.postgres_port,
            cidr,
            admin_dsn,
        }),
        outside: args.outside.clone(),
        probe_timeout: Duration::from_millis(args.probe_timeout_ms),
        sabotage: args.sabotage,
        admission_policies: !args.without_admission_policies,
    })
}

/// Writes what the suite printed into `path`, with the date and what it ran against.
fn record(path: &std::path::Path, sabotage: bool, passed: bool) -> Result<(), String> {
    let (marker, heading) = if sabotage {
        (
            "isolation-suite-sabotage",
            "## A sabotaged run: isolation broken on purpose",
        )
    } else {
        ("isolation-suite", "## A recorded run")
    };
    let body = format!(
        "Recorded {} by `isolation-suite{}`: {}.\n\n```text\n{}```\n",
        bulkhead_e2e::report::today(),
        if sabotage { " --sabotage" } else { "" },
        match (sabotage, passed) {
            (false, true) => "every cell and check as the contract says",
            (false, false) => "FAILED",
            (true, true) => "the suite saw the sabotage, and the operator repaired it",
            (true, false) => "the suite did NOT see the sabotage",
        },
        bulkhead_e2e::suite::transcript()
    );
    bulkhead_e2e::report::replace_marked(path, marker, heading, &body)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config(&args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("isolation-suite: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("isolation-suite: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(suite::run(&config));
    if let (Ok(passed), Some(path)) = (&result, &args.record)
        && let Err(err) = record(path, config.sabotage, *passed)
    {
        eprintln!("isolation-suite: {err}");
        return ExitCode::from(2);
    }
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("isolation-suite: {err}");
            ExitCode::from(2)
        }
    }
}
