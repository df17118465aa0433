//! Routing (pure): the table the gateway builds from the Tenants, the Customers and its own configuration (the
//! gateway's own code builds it here too), held against the contract. An org claimed twice, an org whose
//! resource is not Ready, and a route whose upstream is not the `stack` Service of a namespace Bulkhead manages
//! are each reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use bulkhead_gateway::config::{FileConfig, RouteSource};
use bulkhead_gateway::routes::{RouteTable, STACK_SERVICE, UpstreamResolver};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::check::{Check, Verdict};
use super::snapshot::Snapshot;

/// The check ids of this module.
pub mod ids {
    /// The gateway's configuration, as far as routing goes.
    pub const CONFIG: &str = "routing.config";
    /// The whole table.
    pub const TABLE: &str = "routing.table";
    /// An org claimed by more than one resource.
    pub const DUPLICATE_ORG: &str = "routing.duplicate_org";
    /// A resource whose org is not routable.
    pub const NOT_READY: &str = "routing.not_ready";
    /// A route's upstream.
    pub const UPSTREAM: &str = "routing.upstream";
}

/// One row of the table, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Row {
    /// The org.
    pub org: String,
    /// The Tenant.
    pub tenant: String,
    /// The Customer, if any.
    pub customer: Option<String>,
    /// The namespace the route belongs to.
    pub namespace: Option<String>,
    /// Where requests go.
    pub upstream: String,
}

/// The result: the table and its checks.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// Every routable org, sorted.
    pub table: Vec<Row>,
    /// The checks.
    pub checks: Vec<Check>,
}

/// Where the upstream's host points, when it is inside the cluster: `(service, namespace)`.
fn service_of(
    host: &str,
    suffix: &str,
    services: &HashMap<IpAddr, (String, String)>,
) -> Option<(String, String)> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return services.get(&ip).cloned();
    }
    let host = host.trim_end_matches('.');
    let rest = host
        .strip_suffix(&format!(".{}", suffix.trim_end_matches('.')))
        .or_else(|| host.strip_suffix(".svc.cluster.local"))
        .or_else(|| host.strip_suffix(".svc"))
        .unwrap_or(host);
    let mut parts = rest.splitn(2, '.');
    match (parts.next(), parts.next()) {
        (Some(service), Some(namespace)) if !namespace.contains('.') => {
            Some((service.to_owned(), namespace.to_owned()))
        }
        _ => None,
    }
}

/// Every routing check. `bulkhead` is the set of namespaces Bulkhead manages.
pub fn evaluate(snapshot: &Snapshot, bulkhead: &HashSet<String>) -> Routing {
    let mut checks = Vec::new();
    let mut resolver = UpstreamResolver {
        suffix: "svc".into(),
        overrides: HashMap::new(),
    };
    match snapshot.gateway_config.as_deref().map(FileConfig::parse) {
        None => checks.push(Check::new(
            ids::CONFIG,
            "gateway",
            Verdict::Warn,
            "The gateway's ConfigMap was not found; the table is built with the gateway's defaults.",
            Value::Null,
        )),
        Some(Err(e)) => checks.push(Check::fail(
            ids::CONFIG,
            "gateway",
            "The gateway's configuration does not parse; the gateway will not start with it.",
            json!({"error": e}),
        )),
        Some(Ok(file)) => {
            if let Err(e) = bulkhead_gateway::config::Settings::from_file(file.clone()) {
                checks.push(Check::fail(
                    ids::CONFIG,
                    "gateway",
                    "The gateway's configuration is invalid; the gateway will not start with it.",
                    json!({"error": e.to_string()}),
                ));
            } else if file.routes.source == RouteSource::File {
                checks.push(Check::new(
                    ids::CONFIG,
                    "gateway",
                    Verdict::Warn,
                    "The gateway routes from a static file, not from Tenants and Customers; the table below is what they would give.",
                    Value::Null,
                ));
            } else {
                checks.push(Check::pass(
                    ids::CONFIG,
                    "gateway",
                    "The gateway routes from Tenants and Customers.",
                ));
            }
            resolver.suffix = file.routes.service_suffix;
            resolver.overrides = file.routes.upstream_overrides;
        }
    }
    let table = RouteTable::build(&snapshot.tenants, &snapshot.customers, &resolver);

    let mut claimants: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for t in &snapshot.tenants {
        claimants
            .entry(t.spec.org_id.as_str())
            .or_default()
            .push(format!("Tenant {}", t.name_any()));
    }
    for c in &snapshot.customers {
        claimants
            .entry(c.spec.org_id.as_str())
            .or_default()
            .push(format!("Customer {}", c.name_any()));
    }
    let conflicts = table.conflicts();
    for org in &conflicts {
        let who = claimants.get(org).cloned().unwrap_or_default();
        checks.push(Check::fail(
            ids::DUPLICATE_ORG,
            *org,
            format!(
                "Org {org} is claimed by {}: the gateway refuses it, and the claimants must be told apart.",
                who.join(" and ")
            ),
            json!({"org": org, "claimed_by": who}),
        ));
    }

    let mut rows: Vec<Row> = table
        .routes()
        .map(|r| Row {
            org: r.org.clone(),
            tenant: r.tenant.clone(),
            customer: r.customer.clone(),
            namespace: r.namespace.clone(),
            upstream: r.upstream.clone(),
        })
        .collect();
    rows.sort_by(|a, b| a.org.cmp(&b.org));
    for (org, who) in &claimants {
        if conflicts.contains(org) || rows.iter().any(|r| r.org == *org) {
            continue;
        }
        checks.push(Check::new(
            ids::NOT_READY,
            *org,
            Verdict::Warn,
            format!(
                "Org {org} ({}) is not routable: its resource is not Ready (or its Tenant is not).",
                who.join(", ")
            ),
            json!({"org": org, "claimed_by": who}),
        ));
    }

    let services: HashMap<IpAddr, (String, String)> = snapshot
        .services
        .iter()
        .flat_map(|s| {
            let ips: Vec<IpAddr> = s
                .spec
                .as_ref()
                .and_then(|spec| {
                    spec.cluster_ips
                        .clone()
                        .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
                })
                .unwrap_or_default()
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect();
            let key = (s.name_any(), s.namespace().unwrap_or_default());
            ips.into_iter().map(move |ip| (ip, key.clone()))
        })
        .collect();
    for row in &rows {
        let host = row
            .upstream
            .rsplit_once(':')
            .map_or(row.upstream.as_str(), |(h, _)| h);
        let target = service_of(host, &resolver.suffix, &services);
        let ok = match (&target, &row.namespace) {
            (Some((service, namespace)), Some(own)) => {
                service == STACK_SERVICE && namespace == own && bulkhead.contains(namespace)
            }
            _ => false,
        };
        checks.push(if ok {
            Check::pass(
                ids::UPSTREAM,
                row.org.clone(),
                format!("Org {} goes to {} in its own namespace.", row.org, row.upstream),
            )
        } else {
            Check::fail(
                ids::UPSTREAM,
                row.org.clone(),
                format!(
                    "Org {} goes to {}, which is not the stack Service of its own Bulkhead namespace{}.",
                    row.org,
                    row.upstream,
                    match &target {
                        Some((s, n)) if !bulkhead.contains(n) =>
                            format!(" (Service {s} in {n}, a namespace Bulkhead does not manage)"),
                        Some((s, n)) => format!(" (Service {s} in {n})"),
                        None => " (not a Service of this cluster)".to_owned(),
                    }
                ),
                json!({"org": row.org, "upstream": row.upstream, "namespace": row.namespace,
                       "service": target.as_ref().map(|(s, n)| json!({"name": s, "namespace": n}))}),
            )
        });
    }
    checks.push(Check::pass(
        ids::TABLE,
        "gateway",
        format!(
            "{} orgs are routable, {} claimed twice.",
            rows.len(),
            conflicts.len()
        ),
    ));
    Routing { table: rows, checks }
}
