//! `bulkhead-operator verify`: reads the live state with read-only credentials and reports, check by check,
//! whether the isolation contract holds.
//!
//! Reading ([`snapshot`], and the catalog reads of [`postgres`]) is kept apart from judging: [`netpol`],
//! [`network`], [`routing`] and [`contract`] are pure and table-tested, and [`report`] turns their checks into
//! the human report and the JSON document.
//!
//! The layer below [`crate::process`]: it imports the pipeline's builder and plans ([`crate::pipeline`]), the
//! Postgres layer, the settings and the gateway's route table, and nothing imports it but the process (for its
//! RBAC) and the binary.

pub mod check;
pub mod contract;
pub mod netpol;
pub mod network;
pub mod postgres;
pub mod report;
pub mod routing;
pub mod sample;
pub mod snapshot;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::SocketAddr;

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use kube::{Client, ResourceExt};
use serde_json::json;

pub use check::{Check, Verdict};
pub use report::Report;

use crate::postgres::connect::Server;
use crate::settings::Settings;

/// The default stand-in for "an address outside the cluster" (TEST-NET-2, never routed).
pub const DEFAULT_OUTSIDE: &str = "198.51.100.10:443";

/// What `verify` needs to know besides the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the gateway, DNS and Postgres are, as the operator is configured (the same flags as `run`).
    pub settings: Settings,
    /// The address that stands for the outside.
    pub outside: SocketAddr,
    /// The kubeconfig context, for the report's identity.
    pub context: Option<String>,
}

/// Why `verify` could not produce a report at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The cluster could not be read.
    #[error(transparent)]
    Read(#[from] snapshot::ReadError),
}

impl VerifyError {
    /// The error's fixed category.
    pub fn category(&self) -> &'static str {
        match self {
            VerifyError::Read(e) => e.category(),
        }
    }
}

/// The Postgres subjects: every provisioned Tenant and Customer with a database on the default server (the one
/// whose catalogs are inspected; a Customer without `spec.database.server` is on its Tenant's).
fn database_subjects(tenants: &[Tenant], customers: &[Customer], default: &str) -> Vec<postgres::Subject> {
    let on_default = |server: Option<&String>| server.is_none_or(|s| s == default);
    let ready = |status: Option<&bulkhead_crds::v1alpha1::ResourceStatus>| {
        status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == crate::pipeline::conditions::types::DATABASE_READY && c.status == "True")
        })
    };
    let mut out = Vec::new();
    for t in tenants {
        if t.spec.database.enabled && ready(t.status.as_ref()) && on_default(t.spec.database.server.as_ref())
        {
            out.push(postgres::Subject {
                tenant: t.name_any(),
                customer: None,
                isolation: t.spec.database.isolation,
            });
        }
    }
    for c in customers {
        let server = c.spec.database.server.as_ref().or_else(|| {
            tenants
                .iter()
                .find(|t| t.name_any() == c.spec.tenant_ref)
                .and_then(|t| t.spec.database.server.as_ref())
        });
        if c.spec.database.enabled && ready(c.status.as_ref()) && on_default(server) {
            out.push(postgres::Subject {
                tenant: c.spec.tenant_ref.clone(),
                customer: Some(c.name_any()),
                isolation: c.spec.database.isolation,
            });
        }
    }
    out
}

/// The server's version, as it reports it.
async fn server_version(server: &Server) -> Option<String> {
    let client = server.admin().await.ok()?;
    let row = client.query_one("SHOW server_version", &[]).await.ok()?;
    row.try_get::<_, String>(0).ok()
}

/// Reads the Postgres side: the checks, and the server's version when it answered.
async fn inspect_postgres(
    client: &Client,
    options: &Options,
    subjects: &[postgres::Subject],
) -> (Vec<Check>, Option<String>) {
    let Some(database) = &options.settings.database else {
        return (
            vec![Check::new(
                "postgres.connect",
                "postgres",
                Verdict::Warn,
                "No admin Secret was given (--postgres-admin-secret), so the database side was not inspected.",
                serde_json::Value::Null,
            )],
            None,
        );
    };
    let server = match Server::from_secret(client, &database.admin_secret).await {
        Ok(server) => server,
        Err(e) => {
            return (
                vec![Check::fail(
                    "postgres.connect",
                    "postgres",
                    "The Postgres server could not be reached with the admin Secret, so the database side is unproven.",
                    json!({"category": e.category(), "error": e.to_string()}),
                )],
                None,
            );
        }
    };
    let version = server_version(&server).await;
    match postgres::inspect(&server, subjects).await {
        Ok(checks) => (checks, version),
        Err(e) => (
            vec![Check::fail(
                "postgres.connect",
                "postgres",
                "Inspecting the Postgres catalogs failed, so the database side is unproven.",
                json!({"category": e.category(), "error": e.to_string()}),
            )],
            version,
        ),
    }
}

/// Judges a snapshot (pure): the network, the routing and the per-namespace contract.
pub fn judge(
    snapshot: &snapshot::Snapshot,
    options: &Options,
) -> (network::Network, routing::Routing, Vec<Check>) {
    let network = network::evaluate(
        snapshot,
        &options.settings,
        &network::Addresses {
            outside: options.outside,
        },
    );
    let bulkhead: HashSet<String> = network::owners(snapshot).into_keys().collect();
    let routing = routing::evaluate(snapshot, &bulkhead);
    let contract = contract::evaluate(snapshot, &options.settings);
    (network, routing, contract)
}

/// Reads the live state and judges it.
pub async fn run(client: &Client, options: &Options) -> Result<Report, VerifyError> {
    let generated_at = k8s_openapi::jiff::Timestamp::now().to_string();
    // The Postgres catalogs are read while the cluster is: they need only the resources with a database.
    let (tenants, customers) = futures::try_join!(
        snapshot::list_all::<Tenant>(client, "Tenants"),
        snapshot::list_all::<Customer>(client, "Customers"),
    )?;
    let default_server = options
        .settings
        .database
        .as_ref()
        .map_or(crate::settings::DEFAULT_SERVER, |db| db.default_server.as_str());
    let subjects = database_subjects(&tenants, &customers, default_server);
    let (snapshot, (pg_checks, postgres_version)) = futures::join!(
        snapshot::read(client, &options.settings.gateway.namespace),
        inspect_postgres(client, options, &subjects)
    );
    let snapshot = snapshot?;
    let (network, routing, mut checks) = judge(&snapshot, options);
    checks.extend(network.checks);
    checks.extend(routing.checks);
    checks.extend(pg_checks);
    let identity = report::Identity {
        cluster_uid: snapshot.cluster_uid.clone(),
        context: options.context.clone(),
        kubernetes_version: snapshot.server_version.clone(),
        postgres_version,
        bulkhead_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    Ok(Report::new(
        generated_at,
        identity,
        network.matrix,
        routing.table,
        checks,
    ))
}
