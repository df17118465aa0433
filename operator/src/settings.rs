//! The operator's configuration: where the gateway, cluster DNS and Postgres live, so that the NetworkPolicies
//! open exactly those flows and nothing else.

use std::collections::BTreeMap;

/// Pods in one namespace, selected by labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPods {
    /// The namespace's name (matched through the immutable `kubernetes.io/metadata.name` label).
    pub namespace: String,
    /// The pods' labels.
    pub pod_labels: BTreeMap<String, String>,
}

/// The Postgres server's address, for the egress policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresEndpoint {
    /// The server's address range, e.g. `10.0.5.17/32`.
    pub cidr: String,
    /// Its port.
    pub port: u16,
}

/// How the operator provisions databases, when it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// The Secret holding the admin DSN (key `dsn`, optional `ca.crt`).
    pub admin_secret: crate::postgres::connect::AdminSecretRef,
    /// The host stacks connect to, written into their credentials Secret (default: the DSN's host).
    pub host: Option<String>,
    /// The port stacks connect to (default: the DSN's port).
    pub port: Option<u16>,
    /// Query parameters for the stacks' `DATABASE_URL`, e.g. `sslmode=require`.
    pub url_params: Option<String>,
    /// How often the catalog is checked for drift (password, attributes, grants), which no watch reports.
    pub resync: std::time::Duration,
    /// Connections kept free when handing out connection limits (for the admin, the operator itself and
    /// maintenance): a login role is created, or its limit raised, only while the Bulkhead roles' limits plus
    /// this fit in the server's capacity.
    pub connection_reserve: u32,
    /// How often the shared database is swept for what crosses a tenant's boundary: a grant of a tenant's
    /// objects to PUBLIC or to another tenant's role (a find triggers that tenant's repair at once instead of at
    /// its next resync), and a session of one tenant holding a lock on another tenant's relation (terminated).
    pub grant_sweep: std::time::Duration,
}

/// The default of [`DatabaseSettings::grant_sweep`].
pub const DEFAULT_GRANT_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The default of [`DatabaseSettings::connection_reserve`].
pub const DEFAULT_CONNECTION_RESERVE: u32 = 10;

impl DatabaseSettings {
    /// Settings with the defaults: addresses from the DSN, a check every minute, a reserve of 10 connections, a
    /// grant sweep every 5 seconds.
    pub fn new(admin_secret: crate::postgres::connect::AdminSecretRef) -> Self {
        DatabaseSettings {
            admin_secret,
            host: None,
            port: None,
            url_params: None,
            resync: std::time::Duration::from_secs(60),
            connection_reserve: DEFAULT_CONNECTION_RESERVE,
            grant_sweep: DEFAULT_GRANT_SWEEP,
        }
    }
}

/// Everything the object builders need besides the resource itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The gateway's pods: the only source allowed to reach a stack.
    pub gateway: PeerPods,
    /// Cluster DNS pods: the only DNS servers a stack may query.
    pub dns: PeerPods,
    /// The Postgres server, when database provisioning is configured.
    pub postgres: Option<PostgresEndpoint>,
    /// Database provisioning, when configured.
    pub database: Option<DatabaseSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gateway: PeerPods {
                namespace: "bulkhead-system".into(),
                pod_labels: BTreeMap::from([
                    ("app.kubernetes.io/name".into(), "bulkhead".into()),
                    ("app.kubernetes.io/component".into(), "gateway".into()),
                ]),
            },
            dns: PeerPods {
                namespace: "kube-system".into(),
                pod_labels: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]),
            },
            postgres: None,
            database: None,
        }
    }
}

/// Parses `key=value,key=value` label lists given on the command line.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=value"))?;
        if k.is_empty() {
            return Err(format!("`{pair}` has an empty key"));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    if out.is_empty() {
        return Err("at least one key=value label is needed".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_lists() {
        let labels = parse_labels("app=gw, tier=edge").unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("gw"));
        assert_eq!(labels.len(), 2);
        assert!(parse_labels("").is_err());
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=x").is_err());
    }
}
