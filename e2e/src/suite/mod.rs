//! The isolation suite: installs Bulkhead with its Helm chart into any cluster (a kubeconfig is all it needs),
//! runs two Tenants with two Customers each and one namespace Bulkhead does not manage, and proves the isolation
//! contract with real connections from real pods:
//!
//! - the traffic matrix: every stack, the gateway and the outsider to every stack (Service and pod IP), to the
//!   outsider, the API server, DNS, PostgreSQL and an address outside the cluster ([`matrix`]);
//! - the database: each stack's `DATABASE_URL` works from its own pod and fails against every other one's
//!   schema or database ([`checks`]);
//! - the gateway end to end: each org's token is answered by a pod of that org's namespace only, bad tokens and
//!   spoofed identity headers never reach a pod, and every decision has its audit line ([`checks`]);
//! - the drift window, the operator down, and a Retained deletion ([`drift`]).
//!
//! The same code runs on the local cluster (`make test`) and on kind in users' CI (`make kind-test`); only how
//! the cluster is made and the images are loaded differs.

pub mod agreement;
pub mod checks;
pub mod deploy;
pub mod drift;
pub mod matrix;
pub mod probes;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kube::Client;

use crate::HarnessError;

/// The field manager of everything the suite writes.
pub const FIELD_MANAGER: &str = "bulkhead-isolation-suite";

/// What to install and where things are.
#[derive(Clone)]
pub struct Config {
    /// The kubeconfig (else the usual lookup: `$KUBECONFIG`, `~/.kube/config`, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context.
    pub context: Option<String>,
    /// The helm binary.
    pub helm: PathBuf,
    /// The chart to install.
    pub chart: PathBuf,
    /// A previous chart version to install first, then upgrade from.
    pub previous_chart: Option<PathBuf>,
    /// Bulkhead's namespace (the release's).
    pub namespace: String,
    /// The Helm release name.
    pub release: String,
    /// The images.
    pub images: Images,
    /// The PostgreSQL the stacks use (the suite needs one; a benchmark without databases does not).
    pub postgres: Option<PostgresTarget>,
    /// `host:port` of something outside the cluster that accepts TCP connections.
    pub outside: String,
    /// How long one connection attempt may take before it counts as refused.
    pub probe_timeout: Duration,
    /// Break isolation on purpose (delete the default-deny policies, add hand-made ones that open everything,
    /// stop the operator) to show that the suite sees it: the run is then expected to fail.
    pub sabotage: bool,
    /// Install the chart's admission policies (its default). Without them, the drift window's changes are made by
    /// a plain cluster admin, and only the operator's repair stands against them.
    pub admission_policies: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("kubeconfig", &self.kubeconfig)
            .field("chart", &self.chart)
            .field("previous_chart", &self.previous_chart)
            .field("namespace", &self.namespace)
            .field("images", &self.images)
            .field("postgres", &self.postgres)
            .field("outside", &self.outside)
            .field("sabotage", &self.sabotage)
            .field("admission_policies", &self.admission_policies)
            .finish_non_exhaustive()
    }
}

/// The images of `make images`, as the cluster knows them.
#[derive(Debug, Clone)]
pub struct Images {
    /// The operator's.
    pub operator: String,
    /// The gateway's.
    pub gateway: String,
    /// The test stack's (an echo server that names its pod, with the probes the suite runs).
    pub stack: String,
    /// `Never` where images are imported into the node, `IfNotPresent` on kind.
    pub pull_policy: String,
}

/// The PostgreSQL server the stacks reach.
#[derive(Clone)]
pub struct PostgresTarget {
    /// The host stacks connect to (an address or a DNS name).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The CIDR the stacks' egress policy opens (the server's address as pods reach it).
    pub cidr: String,
    /// The admin DSN the operator provisions with (a secret: never printed).
    pub admin_dsn: String,
}

impl fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("cidr", &self.cidr)
            .field("admin_dsn", &"<redacted>")
            .finish()
    }
}

/// One named check with its outcome, printed as a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

impl Check {
    /// A check that held when `ok`.
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            if self.ok { "ok    " } else { "FAILED" },
            self.name,
            self.detail
        )
    }
}

/// The SHA-256 of `text`, in lowercase hex.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Everything the suite printed, for `--record`.
static TRANSCRIPT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Prints a line at once (the suite's output is read as it runs).
pub fn say(line: impl AsRef<str>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
    if let Ok(mut transcript) = TRANSCRIPT.lock() {
        transcript.push_str(line.as_ref());
        transcript.push('\n');
    }
}

/// What [`say`] printed so far.
pub fn transcript() -> String {
    TRANSCRIPT.lock().map(|t| t.clone()).unwrap_or_default()
}

fn print_checks(title: &str, checks: &[Check]) -> bool {
    say(format!("\n== {title}"));
    for check in checks {
        say(check.to_string());
    }
    checks.iter().all(|c| c.ok)
}

fn print_matrix(title: &str, m: &matrix::Matrix) -> bool {
    say(format!("\n== {title}"));
    say(m.render().trim_end());
    for failure in m.failures() {
        say(format!("FAILED {failure}"));
    }
    m.counts().passed()
}

/// The kube configuration of `config`'s kubeconfig and context.
async fn kube_config(config: &Config) -> Result<kube::Config, HarnessError> {
    let options = kube::config::KubeConfigOptions {
        context: config.context.clone(),
        ..kube::config::KubeConfigOptions::default()
    };
    match &config.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| HarnessError::Manifest(format!("reading {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| HarnessError::Manifest(format!("loading the kubeconfig: {e}")))
}

/// The kube client for `config`'s kubeconfig and context.
pub async fn client(config: &Config) -> Result<Client, HarnessError> {
    Client::try_from(kube_config(config).await?).map_err(|source| HarnessError::Api {
        what: "building a client".into(),
        source,
    })
}

/// The user the suite makes its hand changes to managed objects as: a cluster admin (`system:masters`) in the
/// chart's break-glass group, impersonated by the kubeconfig's identity. The chart's admission policies refuse
/// those changes to anyone else; the suite makes them to show what the operator's drift repair does with
/// whatever gets past.
pub const BREAK_GLASS_USER: &str = "bulkhead-isolation-suite";

/// A client acting as [`BREAK_GLASS_USER`].
pub async fn break_glass_client(config: &Config) -> Result<Client, HarnessError> {
    crate::admission::impersonating(
        kube_config(config).await?,
        BREAK_GLASS_USER,
        &[crate::admission::BREAK_GLASS_GROUP, "system:masters"],
    )
}

/// Runs the whole suite and prints every section; returns whether every check held (with `sabotage`: whether
/// the sabotage was seen, i.e. the matrix differed where it should).
pub async fn run(config: &Config) -> Result<bool, HarnessError> {
    if config.postgres.is_none() {
        return Err(HarnessError::Manifest(
            "the isolation suite needs a PostgreSQL the stacks can reach".into(),
        ));
    }
    let client = client(config).await?;
    // Who makes the hand changes: with the admission policies, only the break-glass group gets past them.
    let hands = if config.admission_policies {
        break_glass_client(config).await?
    } else {
        client.clone()
    };
    let mut passed = true;

    say("== Installing Bulkhead with its Helm chart");
    let installed = deploy::install(&client, config).await?;
    passed &= print_checks("Install and upgrade", &installed.checks);

    say("\n== Tenants, Customers and the outsider");
    let topology = deploy::topology(&client, config).await?;
    for stack in &topology.stacks {
        say(format!(
            "{:<3} {:<9} {:<24} tenant {}{}{}",
            stack.label,
            if stack.customer.is_some() {
                "Customer"
            } else {
                "Tenant"
            },
            stack.namespace,
            stack.tenant,
            stack
                .customer
                .as_ref()
                .map(|c| format!(", customer {c}"))
                .unwrap_or_default(),
            if stack.database { ", database" } else { "" },
        ));
    }
    let pods = probes::Pods::find(&client, config, &topology).await?;

    if config.sabotage {
        say(
            "\n== Sabotage: the operator stopped, default deny removed, every managed namespace opened by hand",
        );
        drift::sabotage(&client, &hands, config, &topology, &pods).await?;
        let sabotaged = probes::measure(&client, config, &topology, &pods).await?;
        let differing = sabotaged.counts().differing;
        print_matrix("Traffic matrix with isolation sabotaged", &sabotaged);
        let report = agreement::verify(&client, config).await?;
        let agreed = print_checks(
            "verify against the probes, with isolation sabotaged",
            &[
                agreement::verdict(
                    "verify fails, naming the cross-tenant flows",
                    &report,
                    false,
                    &["tenant to other tenant"],
                ),
                agreement::agreement(
                    "verify's matrix equals the probed one",
                    &sabotaged,
                    &report.matrix,
                ),
            ],
        );
        let cross_tenant = sabotaged
            .cells
            .iter()
            .filter(|c| c.expected.class == "tenant to other tenant" && !c.matches())
            .count();
        say(format!(
            "\nThe suite sees the sabotage: {differing} differing cells, {cross_tenant} of them cross-tenant."
        ));
        drift::restore(&client, config, &topology, &pods).await?;
        return Ok(differing > 0 && cross_tenant > 0 && agreed);
    }

    let first = probes::measure(&client, config, &topology, &pods).await?;
    passed &= print_matrix("Traffic matrix", &first);

    let report = agreement::verify(&client, config).await?;
    say("\n== bulkhead-operator verify, in-process against the same cluster");
    say(report.render().trim_end());
    passed &= print_checks(
        "verify against the probes",
        &[
            agreement::verdict("verify: the contract holds (exit 0)", &report, true, &[]),
            agreement::agreement("verify's matrix equals the probed one", &first, &report.matrix),
        ],
    );

    let database = checks::database(&client, &topology, &pods).await?;
    passed &= print_checks("Databases", &database);

    let gateway = checks::gateway(&client, config, &topology, &pods, &installed.issuer).await?;
    passed &= print_checks("Gateway end to end", &gateway);

    let window = drift::window(&client, &hands, config, &topology, &pods).await?;
    passed &= print_checks("Drift window", &window);

    say("\n== The operator down");
    let (down_checks, down) =
        drift::operator_down(&client, &hands, config, &topology, &pods, &installed.issuer).await?;
    passed &= print_matrix("Traffic matrix with the operator stopped", &down);
    passed &= print_checks("The operator down", &down_checks);

    let (retained_checks, retained) =
        drift::retained(&client, config, &topology, &pods, &installed.issuer).await?;
    passed &= print_matrix("Traffic matrix after a Retained Customer was deleted", &retained);
    passed &= print_checks("Retained deletion", &retained_checks);

    say(format!(
        "\n== Result: {}\nFirst matrix: {}",
        if passed { "isolation holds" } else { "FAILED" },
        first.counts()
    ));
    Ok(passed)
}
