//! `netpol-e2e`: the upstream Kubernetes "[sig-network] Netpol" e2e tests against the local cluster, the
//! proof that its NetworkPolicy enforcer (kube-router) enforces, independent of Bulkhead.
//!
//! Builds (once, cached) `netpol.test` from the same Kubernetes version as the cluster, starts the cluster, runs
//! the chosen specs, and prints a summary; `--write FILE` also records it (docs/netpol-e2e.md) with every spec's
//! outcome and each failure's message. The explanations of failures are written by people, below the
//! generated part of that file, which is kept.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use bulkhead_e2e::{Cluster, control_plane, versions};
use clap::Parser;
use serde::Deserialize;

/// The specs run by default: every `[sig-network] Netpol` spec (TCP and UDP; about 20 s each, 15 minutes on two
/// cores) except those that need SCTP traffic, which this kernel does not have.
const DEFAULT_FOCUS: &str = r"\[sig-network\] Netpol";
const DEFAULT_SKIP: &str = r"\[Feature:SCTPConnectivity\]";

#[derive(Debug, Parser)]
#[command(
    name = "netpol-e2e",
    about = "Run the upstream [sig-network] Netpol e2e tests on the local cluster"
)]
struct Args {
    /// Ginkgo focus (a regular expression over spec names).
    #[arg(long, default_value = DEFAULT_FOCUS)]
    focus: String,
    /// Ginkgo skip (a regular expression over spec names).
    #[arg(long, default_value = DEFAULT_SKIP)]
    skip: String,
    /// Stop the run after this long (Ginkgo's suite timeout).
    #[arg(long, default_value = "25m")]
    timeout: String,
    /// Record the results in this Markdown file (between the netpol-e2e markers).
    #[arg(long)]
    write: Option<PathBuf>,
}

/// The parts of Ginkgo's JSON report this reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SuiteReport {
    #[serde(default)]
    spec_reports: Option<Vec<SpecReport>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SpecReport {
    #[serde(default)]
    container_hierarchy_texts: Option<Vec<String>>,
    #[serde(default)]
    leaf_node_text: String,
    #[serde(default)]
    leaf_node_type: String,
    state: String,
    #[serde(default)]
    run_time: i64,
    failure: Option<Failure>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Failure {
    #[serde(default)]
    message: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("netpol-e2e: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let assets = tokio::task::spawn_blocking(|| control_plane::assets_dir(&["netpol"]))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let binary = assets.join("netpol.test");
    println!("Starting the local cluster...");
    let cluster = Cluster::start().await.map_err(|e| e.to_string())?;
    let report = cluster.dir().join("netpol-report.json");
    let log = cluster.dir().join("netpol-e2e.log");
    println!(
        "Running {} (focus {:?}, skip {:?}); output in {}",
        binary.display(),
        args.focus,
        args.skip,
        log.display()
    );
    let started = Instant::now();
    let status = tokio::process::Command::new(&binary)
        .arg(format!(
            "--kubeconfig={}",
            cluster.plane().kubeconfig_path().display()
        ))
        .arg("--provider=local")
        .arg(format!("--ginkgo.focus={}", args.focus))
        .arg(format!("--ginkgo.skip={}", args.skip))
        .arg(format!("--ginkgo.timeout={}", args.timeout))
        .arg(format!("--ginkgo.json-report={}", report.display()))
        .arg("--ginkgo.no-color")
        .arg(format!("--report-dir={}", cluster.dir().display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(cluster.dir().join("netpol-e2e.err")).map_err(|e| e.to_string())?)
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("running {}: {e}", binary.display()))?;
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(&report).map_err(|e| format!("reading {}: {e}", report.display()))?;
    // The full report and log outlive the cluster's temp dir.
    let kept = Path::new("target/netpol-e2e");
    if std::fs::create_dir_all(kept).is_ok() {
        let _ = std::fs::copy(&report, kept.join("report.json"));
        let _ = std::fs::copy(&log, kept.join("netpol-e2e.log"));
        println!("Full report and log: {}", kept.display());
    }
    let suites: Vec<SuiteReport> =
        serde_json::from_str(&text).map_err(|e| format!("parsing the report: {e}"))?;
    let specs: Vec<&SpecReport> = suites
        .iter()
        .flat_map(|s| s.spec_reports.iter().flatten())
        .filter(|s| s.leaf_node_type == "It")
        .collect();
    let summary = render(&specs, elapsed, &args)?;
    println!("{summary}");
    if let Some(path) = &args.write {
        write_section(path, &summary).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    drop(cluster);
    Ok(status.success())
}

fn render(specs: &[&SpecReport], elapsed: Duration, args: &Args) -> Result<String, String> {
    let count = |state: &str| specs.iter().filter(|s| s.state == state).count();
    let ran: Vec<&&SpecReport> = specs.iter().filter(|s| s.state != "skipped").collect();
    let versions = versions::read().map_err(|e| e.to_string())?;
    let version = |key: &str| versions.get(key).cloned().unwrap_or_default();
    let mut out = format!(
        "### Upstream `[sig-network] Netpol` e2e on the local cluster ({}, `make netpol-e2e`)\n\n\
         Kubernetes {} (`netpol.test` built from the same module), kube-router {} (firewall only), containerd 1.6 \
         (Debian), one node, 2 cores. Focus `{}`, skip `{}`.\n\n\
         **{} ran in {:.1} min: {} passed, {} failed** ({} skipped by the skip pattern or as not applicable).\n\n\
         | spec | result | time |\n|---|---|---|\n",
        bulkhead_e2e::report::today(),
        version("KUBERNETES_VERSION"),
        version("KUBE_ROUTER_VERSION"),
        args.focus.replace('|', "\\|"),
        args.skip.replace('|', "\\|"),
        ran.len(),
        elapsed.as_secs_f64() / 60.0,
        count("passed"),
        count("failed") + count("timedout") + count("panicked") + count("interrupted") + count("aborted"),
        count("skipped"),
    );
    let mut ran_sorted = ran.clone();
    ran_sorted.sort_by_key(|s| name(s));
    for spec in &ran_sorted {
        out.push_str(&format!(
            "| {} | {} | {:.0} s |\n",
            name(spec).replace('|', "\\|"),
            spec.state,
            spec.run_time as f64 / 1e9
        ));
    }
    let failures: Vec<&&&SpecReport> = ran_sorted.iter().filter(|s| s.state != "passed").collect();
    if !failures.is_empty() {
        out.push_str("\nFailure messages (first lines):\n\n");
        for spec in failures {
            let message = spec.failure.as_ref().map(|f| f.message.as_str()).unwrap_or("");
            let first: Vec<&str> = message.lines().take(6).collect();
            out.push_str(&format!(
                "- {}:\n\n  ```\n  {}\n  ```\n",
                name(spec),
                first.join("\n  ")
            ));
        }
    }
    Ok(out)
}

fn name(spec: &SpecReport) -> String {
    let mut parts: Vec<&str> = spec
        .container_hierarchy_texts
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .collect();
    parts.push(&spec.leaf_node_text);
    parts.join(" ")
}

/// Records the summary between the netpol-e2e markers, keeping the rest of the file (the explanations).
fn write_section(path: &Path, summary: &str) -> std::io::Result<()> {
    bulkhead_e2e::report::replace_marked(
        path,
        "netpol-e2e",
        "# NetworkPolicy conformance of the local cluster",
        summary,
    )
}
