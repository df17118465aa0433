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

/// The name of the default PostgreSQL server when none is configured: what a resource without
/// `spec.database.server` uses, and what `server: default` names.
pub const DEFAULT_SERVER: &str = "default";

/// One PostgreSQL server besides the default one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// The Secret holding its admin DSN (key `dsn`, optional `ca.crt`).
    pub admin_secret: crate::postgres::connect::AdminSecretRef,
    /// The host stacks connect to, written into their credentials Secret (default: the DSN's host).
    pub host: Option<String>,
    /// The port stacks connect to (default: the DSN's port).
    pub port: Option<u16>,
    /// Its address for the stacks' egress policy; without it, stacks on this server get no egress to it.
    pub endpoint: Option<PostgresEndpoint>,
}

/// A resource names a server the operator is not configured with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "spec.database.server names PostgreSQL server \"{wanted}\", which this operator is not configured with \
     (it knows: {})",
    known.join(", ")
)]
pub struct UnknownServer {
    /// The name asked for.
    pub wanted: String,
    /// The names configured, sorted.
    pub known: Vec<String>,
}

impl UnknownServer {
    /// A fixed category for metrics labels and Events.
    pub fn category(&self) -> &'static str {
        "unknown_server"
    }
}

/// How the operator provisions databases, when it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// The default server's name ([`DEFAULT_SERVER`] unless configured otherwise).
    pub default_server: String,
    /// The Secret holding the default server's admin DSN (key `dsn`, optional `ca.crt`).
    pub admin_secret: crate::postgres::connect::AdminSecretRef,
    /// The host stacks connect to on the default server, written into their credentials Secret (default: the
    /// DSN's host).
    pub host: Option<String>,
    /// The port stacks connect to on the default server (default: the DSN's port).
    pub port: Option<u16>,
    /// The other servers, by name. Each has its own connection, capacity accounting and grant sweep.
    pub servers: BTreeMap<String, ServerSettings>,
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
            default_server: DEFAULT_SERVER.to_owned(),
            servers: BTreeMap::new(),
            admin_secret,
            host: None,
            port: None,
            url_params: None,
            resync: std::time::Duration::from_secs(60),
            connection_reserve: DEFAULT_CONNECTION_RESERVE,
            grant_sweep: DEFAULT_GRANT_SWEEP,
        }
    }

    /// The name of the server a resource's `spec.database.server` (for a Customer: its own, else its Tenant's)
    /// resolves to: absent is the default server; a name must be configured. Never another server.
    pub fn resolve<'a>(&'a self, wanted: Option<&'a str>) -> Result<&'a str, UnknownServer> {
        match wanted {
            None => Ok(&self.default_server),
            Some(name) if name == self.default_server || self.servers.contains_key(name) => Ok(name),
            Some(name) => Err(UnknownServer {
                wanted: name.to_owned(),
                known: self.names().into_iter().map(str::to_owned).collect(),
            }),
        }
    }

    /// Every configured server's name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = std::iter::once(self.default_server.as_str())
            .chain(self.servers.keys().map(String::as_str))
            .collect();
        out.sort_unstable();
        out
    }

    /// The connection settings of the server called `name` (the default one included), if configured.
    pub fn server(&self, name: &str, default_endpoint: Option<&PostgresEndpoint>) -> Option<ServerSettings> {
        if name == self.default_server {
            return Some(ServerSettings {
                admin_secret: self.admin_secret.clone(),
                host: self.host.clone(),
                port: self.port,
                endpoint: default_endpoint.cloned(),
            });
        }
        self.servers.get(name).cloned()
    }
}

/// Everything the object builders need besides the resource itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The gateway's pods: the only source allowed to reach a stack.
    pub gateway: PeerPods,
    /// Cluster DNS pods: the only DNS servers a stack may query.
    pub dns: PeerPods,
    /// The default Postgres server's address, when configured (the others' are in [`DatabaseSettings`]).
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

impl Settings {
    /// The address the egress policy opens for a resource whose database is on `server` (its
    /// `spec.database.server`, resolved for a Customer; absent: the default server). `None` for a server that
    /// is not configured or has no address: then no egress to any PostgreSQL server is opened.
    pub fn postgres_endpoint(&self, server: Option<&str>) -> Option<&PostgresEndpoint> {
        let default = self
            .database
            .as_ref()
            .map_or(DEFAULT_SERVER, |db| db.default_server.as_str());
        match server {
            None => self.postgres.as_ref(),
            Some(name) if name == default => self.postgres.as_ref(),
            Some(name) => self
                .database
                .as_ref()
                .and_then(|db| db.servers.get(name))
                .and_then(|s| s.endpoint.as_ref()),
        }
    }
}

/// Parses one `--postgres-server` value: `name=NAME,secret=NAMESPACE/NAME[,host=HOST][,port=PORT][,cidr=CIDR]`.
/// `port` is both the port written into the credentials Secret and the one the egress policy opens (default
/// 5432 there, the DSN's port in the Secret). The CIDR is checked by the caller.
pub fn parse_server(text: &str) -> Result<(String, ServerSettings), String> {
    let mut name = None;
    let mut secret = None;
    let mut host = None;
    let mut port = None;
    let mut cidr = None;
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=value"))?;
        let slot = match k {
            "name" => &mut name,
            "secret" => &mut secret,
            "host" => &mut host,
            "port" => &mut port,
            "cidr" => &mut cidr,
            _ => return Err(format!("unknown key `{k}` (name, secret, host, port, cidr)")),
        };
        if slot.replace(v.to_owned()).is_some() {
            return Err(format!("`{k}` given twice"));
        }
    }
    let name = name.ok_or("`name` is missing")?;
    let label = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty()
        || name.len() > 63
        || !name.chars().all(label)
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!("name `{name}` is not a DNS label"));
    }
    let admin_secret = secret
        .ok_or("`secret` is missing")?
        .parse()
        .map_err(|e| format!("secret: {e}"))?;
    let port = port
        .map(|p| p.parse::<u16>().map_err(|e| format!("port `{p}`: {e}")))
        .transpose()?;
    let endpoint = cidr.map(|cidr| PostgresEndpoint {
        cidr,
        port: port.unwrap_or(5432),
    });
    Ok((
        name,
        ServerSettings {
            admin_secret,
            host,
            port,
            endpoint,
        },
    ))
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

    fn two_servers() -> Settings {
        let mut database = DatabaseSettings::new("bulkhead-system/pg".parse().unwrap());
        let (name, eu) =
            parse_server("name=eu-2,secret=bulkhead-system/pg-eu,cidr=10.0.6.9/32,port=6432").unwrap();
        database.servers.insert(name, eu);
        let (name, bare) = parse_server("name=no-cidr,secret=ops/pg3,host=pg3.example").unwrap();
        database.servers.insert(name, bare);
        Settings {
            postgres: Some(PostgresEndpoint {
                cidr: "10.0.5.17/32".into(),
                port: 5432,
            }),
            database: Some(database),
            ..Settings::default()
        }
    }

    #[test]
    fn a_resource_resolves_to_the_default_or_the_server_it_names_and_never_another() {
        let settings = two_servers();
        let db = settings.database.as_ref().unwrap();
        assert_eq!(db.resolve(None), Ok("default"));
        assert_eq!(db.resolve(Some("default")), Ok("default"));
        assert_eq!(db.resolve(Some("eu-2")), Ok("eu-2"));
        let err = db.resolve(Some("eu-3")).unwrap_err();
        assert_eq!(err.known, ["default", "eu-2", "no-cidr"]);
        assert!(err.to_string().contains("\"eu-3\""), "{err}");
        assert_eq!(
            db.server("eu-2", None).map(|s| s.admin_secret.name),
            Some("pg-eu".to_owned())
        );
        assert_eq!(
            db.server("default", settings.postgres.as_ref())
                .and_then(|s| s.endpoint),
            settings.postgres
        );
        assert_eq!(db.server("eu-3", None), None);
    }

    #[test]
    fn each_server_has_its_own_egress_address() {
        let settings = two_servers();
        let default = settings.postgres_endpoint(None).unwrap();
        assert_eq!((default.cidr.as_str(), default.port), ("10.0.5.17/32", 5432));
        assert_eq!(settings.postgres_endpoint(Some("default")), Some(default));
        let eu = settings.postgres_endpoint(Some("eu-2")).unwrap();
        assert_eq!((eu.cidr.as_str(), eu.port), ("10.0.6.9/32", 6432));
        assert_eq!(
            settings.postgres_endpoint(Some("no-cidr")),
            None,
            "no address given"
        );
        assert_eq!(
            settings.postgres_endpoint(Some("eu-3")),
            None,
            "unknown: nothing opened"
        );
    }

    #[test]
    fn parses_server_definitions_and_refuses_bad_ones() {
        let (name, s) = parse_server("name=eu-2, secret=ns/pg, host=pg.eu, port=6432").unwrap();
        assert_eq!(name, "eu-2");
        assert_eq!(
            (s.host.as_deref(), s.port, s.endpoint),
            (Some("pg.eu"), Some(6432), None)
        );
        for bad in [
            "secret=ns/pg",
            "name=eu-2",
            "name=EU,secret=ns/pg",
            "name=eu-2,secret=pg",
            "name=eu-2,secret=ns/pg,port=99999",
            "name=eu-2,secret=ns/pg,colour=blue",
            "name=eu-2,name=eu-3,secret=ns/pg",
            "name=eu-2,secret",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

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
