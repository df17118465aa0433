//! `bench-scale`: Bulkhead at the size of the largest MSP platforms. Runs, at each size N (default 1,000 and
//! 10,000), the operator benchmark (N Tenants on the API-server-only harness, against the plain-loop floors), the gateway's route benchmark (N routes) and the PostgreSQL benchmark (N schemas in one shared
//! database, N/10 databases on one server), and writes every table into one Markdown file (BENCHMARKS.md).
//!
//! Each part is its own release binary next to this one, run as a child process so that one part's memory and
//! threads never count against another's figures.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use bulkhead_e2e::report;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "bench-scale",
    about = "The operator, the gateway and PostgreSQL at N = 1,000 and 10,000 Tenants, into one Markdown file"
)]
struct Args {
    /// The sizes to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000])]
    sizes: Vec<usize>,
    /// The Markdown file the tables go into (each part replaces its own section for its N).
    #[arg(long, default_value = "BENCHMARKS.md")]
    write: PathBuf,
    /// Only these parts, comma-separated (operator, gateway, postgres).
    #[arg(long, value_delimiter = ',', default_values_t = [Part::Operator, Part::Gateway, Part::Postgres])]
    parts: Vec<Part>,
    /// Above this size the operator benchmark skips its one-Tenant-after-another floor, which alone takes
    /// hours at 10,000 (the 16-way floor still runs).
    #[arg(long, default_value_t = 1000)]
    plain_loop_up_to: usize,
}

/// One part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Operator,
    Gateway,
    Postgres,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Operator => "operator",
            Part::Gateway => "gateway",
            Part::Postgres => "postgres",
        })
    }
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-scale: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("this binary has no directory")?;
    // Every part must be there before hours of work start.
    for name in args.parts.iter().flat_map(|part| needs(*part)) {
        let bin = dir.join(name);
        if !bin.is_file() {
            return Err(format!(
                "{} not found; build every part with `cargo build --release -p bulkhead-operator -p bulkhead-gateway -p bulkhead-e2e --bins`",
                bin.display()
            ));
        }
    }
    write_preamble(&args.write).map_err(|e| format!("writing {}: {e}", args.write.display()))?;
    for &n in &args.sizes {
        for &part in &args.parts {
            let started = Instant::now();
            eprintln!("bench-scale: {part} at {n}...");
            let mut command = Command::new(dir.join(binary(part)));
            command.args(part_args(part, n, args.plain_loop_up_to));
            command.arg("--write").arg(&args.write);
            let status = command
                .status()
                .map_err(|e| format!("starting {}: {e}", binary(part)))?;
            if !status.success() {
                return Err(format!("{part} at {n} failed ({status})"));
            }
            eprintln!(
                "bench-scale: {part} at {n} done in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!("bench-scale: wrote {}", args.write.display());
    Ok(())
}

/// The binary that measures `part`.
fn binary(part: Part) -> &'static str {
    match part {
        Part::Operator => "bench-operator",
        Part::Gateway => "bench-routes",
        Part::Postgres => "bench-postgres-scale",
    }
}

/// The binaries `part` runs: its benchmark, and the component it starts as a process of its own (pure).
fn needs(part: Part) -> Vec<&'static str> {
    match part {
        Part::Operator => vec![binary(part), "bulkhead-operator"],
        Part::Gateway => vec![binary(part), "bulkhead-gateway"],
        // The provisioning code runs inside the benchmark.
        Part::Postgres => vec![binary(part)],
    }
}

/// The arguments of `part` at size `n` (pure).
fn part_args(part: Part, n: usize, plain_loop_up_to: usize) -> Vec<String> {
    let mut args = match part {
        Part::Operator => vec!["--tenants".to_owned(), n.to_string()],
        Part::Gateway => vec!["--tenants".to_owned(), n.to_string()],
        Part::Postgres => vec![
            "--schemas".to_owned(),
            n.to_string(),
            "--databases".to_owned(),
            (n / 10).max(1).to_string(),
        ],
    };
    if part == Part::Operator && n > plain_loop_up_to {
        args.push("--skip-plain-loop".to_owned());
    }
    args
}

/// The file's opening: what it holds and how it was made. The parts' sections follow it.
fn write_preamble(path: &Path) -> std::io::Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| format!(", {} GiB", kib / (1024 * 1024)));
    let body = format!(
        "Written by `make bench-scale` (`bench-scale`) on {date}, on {cores} cores{memory}. Each section is one \
part at one size, replaced when that part runs again:\n\n\
- **Operator** (`bench-operator`): N Tenants (a Customer gets the same objects, so N counts both), database \
disabled, on the API-server-only harness (real kube-apiserver and etcd, no kubelet: stacks stay at zero \
replicas). Against the floor: the same objects applied by a plain client loop, 16 Tenants in flight.\n\
- **Gateway** (`bench-routes`): N routes loaded from the API server, route propagation, lookup cost, memory.\n\
- **PostgreSQL** (`bench-postgres-scale`): N schemas in one shared database and N/10 databases on one server, \
by the operator's own provisioning code.\n\n",
        date = report::today(),
    );
    report::replace_marked(path, "scale-preamble", "# Bulkhead at scale", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_part_needs_its_benchmark_and_what_it_measures() {
        assert_eq!(needs(Part::Gateway), ["bench-routes", "bulkhead-gateway"]);
        assert_eq!(needs(Part::Operator), ["bench-operator", "bulkhead-operator"]);
        assert_eq!(needs(Part::Postgres), ["bench-postgres-scale"]);
    }

    #[test]
    fn each_part_gets_its_size() {
        assert_eq!(part_args(Part::Operator, 1000, 1000), ["--tenants", "1000"]);
        assert_eq!(
            part_args(Part::Operator, 10000, 1000),
            ["--tenants", "10000", "--skip-plain-loop"]
        );
        assert_eq!(part_args(Part::Gateway, 10000, 1000), ["--tenants", "10000"]);
        assert_eq!(
            part_args(Part::Postgres, 10000, 1000),
            ["--schemas", "10000", "--databases", "1000"]
        );
        assert_eq!(
            part_args(Part::Postgres, 5, 1000),
            ["--schemas", "5", "--databases", "1"]
        );
    }
}
