//! `verify` against reality: the operator's `verify` reads the same cluster and predicts every cell of the
//! traffic matrix from the live NetworkPolicies alone; its prediction and the probed matrix go into one
//! comparison, which holds only when they are equal cell for cell.

use bulkhead_operator::settings::{DatabaseSettings, PeerPods, PostgresEndpoint, Settings};
use bulkhead_operator::verify::network::{Matrix as Predicted, Place};
use bulkhead_operator::verify::{self, Report};
use kube::Client;

use super::deploy::{OUTSIDER_NAMESPACE, POSTGRES_ADMIN_SECRET};
use super::matrix::{Destination, Matrix, Source, Verdict};
use super::{Check, Config};
use crate::HarnessError;

/// verify's options for the installation the suite made: the chart's defaults for the gateway and DNS, the
/// suite's PostgreSQL and its stand-in for the outside.
pub fn options(config: &Config) -> Result<verify::Options, HarnessError> {
    let defaults = Settings::default();
    let postgres = config.postgres.as_ref();
    Ok(verify::Options {
        settings: Settings {
            gateway: PeerPods {
                namespace: config.namespace.clone(),
                pod_labels: defaults.gateway.pod_labels,
            },
            dns: defaults.dns,
            postgres: postgres.map(|p| PostgresEndpoint {
                cidr: p.cidr.clone(),
                port: p.port,
            }),
            database: postgres
                .map(|_| {
                    format!("{}/{POSTGRES_ADMIN_SECRET}", config.namespace)
                        .parse()
                        .map(DatabaseSettings::new)
                })
                .transpose()
                .map_err(|e| HarnessError::Manifest(format!("the admin Secret's reference: {e}")))?,
        },
        outside: config.outside.parse().map_err(|e| {
            HarnessError::Manifest(format!("--outside {} is not ip:port: {e}", config.outside))
        })?,
        context: config.context.clone(),
    })
}

/// Runs `verify` in-process against the suite's cluster.
pub async fn verify(client: &Client, config: &Config) -> Result<Report, HarnessError> {
    verify::run(client, &options(config)?)
        .await
        .map_err(|e| HarnessError::Manifest(format!("verify could not read the cluster: {e}")))
}

fn source_place(m: &Matrix, source: Source) -> Place {
    match source {
        Source::Stack(i) => Place::Bulkhead {
            namespace: m.stacks[i].namespace.clone(),
        },
        Source::Gateway => Place::Gateway,
        Source::Outsider => Place::Unmanaged {
            namespace: OUTSIDER_NAMESPACE.to_owned(),
        },
    }
}

fn destination_place(m: &Matrix, destination: Destination) -> Place {
    match destination {
        Destination::StackService(i) | Destination::StackPod(i) => Place::Bulkhead {
            namespace: m.stacks[i].namespace.clone(),
        },
        Destination::Outsider => Place::Unmanaged {
            namespace: OUTSIDER_NAMESPACE.to_owned(),
        },
        Destination::ApiServer => Place::ApiServer,
        Destination::Dns => Place::Dns,
        Destination::Postgres => Place::Postgres,
        Destination::Outside => Place::Outside,
    }
}

/// The cells where verify's prediction and the probes differ (or verify has no prediction), as printable lines.
pub fn differences(probed: &Matrix, predicted: &Predicted) -> Vec<String> {
    let mut out = Vec::new();
    for cell in &probed.cells {
        let from = source_place(probed, cell.source);
        let to = destination_place(probed, cell.destination);
        let observed = cell.observed == Verdict::Allowed;
        match predicted.cell(&from, &to) {
            Some(p) if p == observed => {}
            other => out.push(format!(
                "{} -> {} ({}): probed {}, verify {}",
                probed.source_label(cell.source),
                probed.destination_label(cell.destination),
                cell.target,
                cell.observed,
                match other {
                    Some(true) => "allowed",
                    Some(false) => "refused",
                    None => "has no such cell",
                }
            )),
        }
    }
    out
}

/// One check: verify's matrix equals the probed one, cell for cell.
pub fn agreement(title: &str, probed: &Matrix, predicted: &Predicted) -> Check {
    let differing = differences(probed, predicted);
    Check::new(
        title,
        differing.is_empty() && !probed.cells.is_empty(),
        if differing.is_empty() {
            format!("{} cells, all equal", probed.cells.len())
        } else {
            format!(
                "{} of {} cells differ: {}",
                differing.len(),
                probed.cells.len(),
                differing.join("; ")
            )
        },
    )
}

/// verify's verdict as a check: holds (exit 0) when `holds` is expected, else fails naming at least `naming`.
pub fn verdict(title: &str, report: &Report, holds: bool, naming: &[&str]) -> Check {
    let mut failures: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.verdict == verify::Verdict::Fail)
        .map(|c| format!("{} {}: {}", c.id, c.subject, c.summary))
        .collect();
    // The failures that name what was expected come first, as they are the ones printed.
    failures.sort_by_key(|f| !naming.iter().any(|n| f.contains(n)));
    let named = naming.iter().all(|n| failures.iter().any(|f| f.contains(n)));
    let ok = if holds {
        report.summary.holds
    } else {
        !report.summary.holds && named
    };
    Check::new(
        title,
        ok,
        if failures.is_empty() {
            format!(
                "exit {}, {} checks passed, {} warnings",
                report.exit_code(),
                report.summary.pass,
                report.summary.warn
            )
        } else {
            const SHOWN: usize = 4;
            let more = failures.len().saturating_sub(SHOWN);
            format!(
                "exit {}, {} failed: {}{}",
                report.exit_code(),
                failures.len(),
                failures[..failures.len().min(SHOWN)].join(" | "),
                if more > 0 {
                    format!(" | and {more} more")
                } else {
                    String::new()
                }
            )
        },
    )
}
