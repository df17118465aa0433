//! The operator's connection to the shared PostgreSQL server.
//!
//! The admin DSN lives in a Secret (key `dsn`, optional `ca.crt`) named in the operator's configuration; it is
//! read when first needed and again after a connection failure, so a rotated admin password is picked up
//! without a restart. The DSN and the passwords in it are never logged or put in an error message.
//!
//! TLS: whenever the DSN's `sslmode` lets tokio-postgres use TLS (`prefer`, the default, or `require`), the
//! handshake goes through rustls and the server's certificate is always verified against the system roots plus
//! the Secret's `ca.crt` (stricter than libpq's `require`, which does not verify). `sslmode=disable` is plain.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The key of the admin Secret holding the DSN.
pub const DSN_KEY: &str = "dsn";
/// The optional key of the admin Secret holding extra CA certificates (PEM).
pub const CA_KEY: &str = "ca.crt";

/// How long connecting may take, unless the DSN sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement of the operator may run.
const STATEMENT_TIMEOUT_MS: u32 = 30_000;
/// How long a statement may wait for a lock.
const LOCK_TIMEOUT_MS: u32 = 10_000;
/// Connections the operator keeps to the shared database.
const POOL_SIZE: usize = 4;
/// How long a reconcile waits for a pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Where the admin DSN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSecretRef {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
}

impl FromStr for AdminSecretRef {
    type Err = String;

    /// Parses `namespace/name`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(AdminSecretRef {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!("`{text}` is not namespace/name")),
        }
    }
}

/// What went wrong talking to the server, in the words of the `DatabaseReady` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The admin Secret is missing, incomplete or unparsable.
    AdminSecretInvalid,
    /// The server cannot be reached (network, timeout, TLS).
    Unreachable,
    /// The server refused the admin's credentials.
    AdminAuthenticationFailed,
    /// The admin role lacks a privilege it needs.
    PermissionDenied,
    /// Any other server error.
    Failed,
}

impl Failure {
    /// The condition reason (and fixed category) for this failure.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::AdminSecretInvalid => "AdminSecretInvalid",
            Failure::Unreachable => "Unreachable",
            Failure::AdminAuthenticationFailed => "AdminAuthenticationFailed",
            Failure::PermissionDenied => "PermissionDenied",
            Failure::Failed => "Failed",
        }
    }

    /// Classifies a tokio-postgres error.
    pub fn of(err: &tokio_postgres::Error) -> Failure {
        match err.as_db_error().map(|db| db.code().clone()) {
            Some(code)
                if code == SqlState::INVALID_PASSWORD
                    || code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                Failure::AdminAuthenticationFailed
            }
            Some(code) if code == SqlState::INSUFFICIENT_PRIVILEGE => Failure::PermissionDenied,
            Some(code) if code == SqlState::TOO_MANY_CONNECTIONS || code == SqlState::CANNOT_CONNECT_NOW => {
                Failure::Unreachable
            }
            Some(_) => Failure::Failed,
            // No server error: the connection itself failed (refused, reset, timed out, TLS).
            None => Failure::Unreachable,
        }
    }
}

/// Errors of connecting to the server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The admin Secret could not be read.
    #[error("reading the admin Secret {namespace}/{name}: {source}")]
    SecretRead {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The admin Secret is missing or unusable. The message never quotes the DSN.
    #[error("admin Secret {namespace}/{name}: {problem}")]
    SecretInvalid {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Connecting or running a statement failed.
    #[error("{what}: {message}")]
    Server {
        /// What was being done.
        what: &'static str,
        /// How it failed.
        failure: Failure,
        /// The error text (from the server or the connection; never the DSN).
        message: String,
    },
    /// A failure to connect seen moments ago, reported again without trying.
    #[error("{message}")]
    Recent {
        /// How it failed.
        failure: Failure,
        /// The earlier error's text.
        message: String,
    },
}

impl ConnectError {
    /// How this failure shows in the `DatabaseReady` condition.
    pub fn failure(&self) -> Failure {
        match self {
            ConnectError::SecretRead { .. } | ConnectError::SecretInvalid { .. } => {
                Failure::AdminSecretInvalid
            }
            ConnectError::Server { failure, .. } | ConnectError::Recent { failure, .. } => *failure,
        }
    }

    /// A fixed category for metrics and Events.
    pub fn category(&self) -> &'static str {
        self.failure().reason()
    }

    pub(crate) fn server(what: &'static str, err: &tokio_postgres::Error) -> Self {
        ConnectError::Server {
            what,
            failure: Failure::of(err),
            message: describe(err),
        }
    }
}

/// The error text of a tokio-postgres error, with its cause (which carries the useful part: "connection
/// refused", the server's message, the TLS failure).
pub fn describe(err: &tokio_postgres::Error) -> String {
    match (err.as_db_error(), std::error::Error::source(err)) {
        (Some(db), _) => format!("{} ({})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{err}: {cause}"),
        (None, None) => err.to_string(),
    }
}

/// A configured connection to the server: the admin settings and a small pool to the shared database.
pub struct Server {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    pool: Pool,
    shared_database: String,
    host: String,
    port: u16,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config: it holds the admin password.
        f.debug_struct("Server")
            .field("shared_database", &self.shared_database)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Builds the connection settings from a DSN and optional extra CA certificates (PEM).
    pub fn new(dsn: &str, ca_pem: Option<&[u8]>) -> Result<Server, String> {
        // tokio-postgres' parse errors can quote the offending option value, so they are not passed on.
        let mut config = tokio_postgres::Config::from_str(dsn).map_err(|_| {
            "the dsn is not a valid PostgreSQL connection string (URL or key=value)".to_owned()
        })?;
        let user = config
            .get_user()
            .ok_or_else(|| "the dsn names no user".to_owned())?
            .to_owned();
        let shared_database = config.get_dbname().unwrap_or(&user).to_owned();
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(_) => return Err("the dsn must name a TCP host, not a Unix socket".into()),
            None => return Err("the dsn names no host".into()),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives(true);
        config.application_name("bulkhead-operator");
        config.options(format!(
            "-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS} -c client_min_messages=warning"
        ));
        let tls = MakeRustlsConnect::new(tls_config(ca_pem)?);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(
                config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT),
            ))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| format!("building the connection pool: {e}"))?;
        Ok(Server {
            config,
            tls,
            pool,
            shared_database,
            host,
            port,
        })
    }

    /// Reads the admin Secret and builds the connection settings from it.
    pub async fn from_secret(client: &kube::Client, secret: &AdminSecretRef) -> Result<Server, ConnectError> {
        let invalid = |problem: String| ConnectError::SecretInvalid {
            namespace: secret.namespace.clone(),
            name: secret.name.clone(),
            problem,
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace);
        let found = api
            .get_opt(&secret.name)
            .await
            .map_err(|source| ConnectError::SecretRead {
                namespace: secret.namespace.clone(),
                name: secret.name.clone(),
                source,
            })?
            .ok_or_else(|| invalid("does not exist".into()))?;
        let data = found.data.unwrap_or_default();
        let dsn = data
            .get(DSN_KEY)
            .ok_or_else(|| invalid(format!("has no `{DSN_KEY}` key")))?;
        let dsn = std::str::from_utf8(&dsn.0).map_err(|_| invalid(format!("`{DSN_KEY}` is not UTF-8")))?;
        Server::new(dsn.trim(), data.get(CA_KEY).map(|b| b.0.as_slice())).map_err(invalid)
    }

    /// The database the operator connects to, where Schema isolation puts the schemas.
    pub fn shared_database(&self) -> &str {
        &self.shared_database
    }

    /// The server's host as the DSN names it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port as the DSN names it.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A pooled admin connection to the shared database.
    pub async fn admin(&self) -> Result<deadpool_postgres::Object, ConnectError> {
        self.pool.get().await.map_err(|err| match err {
            deadpool_postgres::PoolError::Backend(e) => ConnectError::server("connecting as the admin", &e),
            other => ConnectError::Server {
                what: "connecting as the admin",
                failure: Failure::Unreachable,
                message: other.to_string(),
            },
        })
    }

    /// The admin settings, for connections to other databases (Database isolation).
    pub fn admin_config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Opens a connection with the admin settings but another database, user and password (a tenant's own
    /// database, or a login check). The connection closes when the client is dropped.
    pub async fn connect(
        &self,
        database: &str,
        login: Option<(&str, &str)>,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = self.config.clone();
        config.dbname(database);
        if let Some((user, password)) = login {
            config.user(user);
            config.password(password);
            config.application_name("bulkhead-operator-login-check");
        }
        let (client, connection) = config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// rustls with the aws-lc-rs provider, the system's roots and the extra CAs.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped; the extra CAs may be all that is needed.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("`{CA_KEY}` is not valid PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("`{CA_KEY}` holds an unusable certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("`{CA_KEY}` holds no certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_secret_references() {
        let r: AdminSecretRef = "bulkhead-system/pg-admin".parse().unwrap();
        assert_eq!(r.namespace, "bulkhead-system");
        assert_eq!(r.name, "pg-admin");
        for bad in ["pg-admin", "/x", "x/", "a/b/c", ""] {
            assert!(bad.parse::<AdminSecretRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_shared_database_host_and_port_from_the_dsn() {
        let s = Server::new(
            "postgresql://admin:s3cret@db.internal:6432/app?sslmode=disable",
            None,
        )
        .unwrap();
        assert_eq!(
            (s.shared_database(), s.host(), s.port()),
            ("app", "db.internal", 6432)
        );
        let s = Server::new("host=10.0.0.5 user=admin password=x", None).unwrap();
        assert_eq!(
            (s.shared_database(), s.host(), s.port()),
            ("admin", "10.0.0.5", 5432)
        );
        assert_eq!(s.admin_config().get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    }

    #[test]
    fn bad_dsns_are_refused_without_echoing_them() {
        let err = Server::new("postgresql://admin:hunter2@db/app?sslmode=bogus-hunter2", None).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            Server::new("host=/run/postgresql user=a", None)
                .unwrap_err()
                .contains("Unix socket")
        );
        assert!(Server::new("host=db", None).unwrap_err().contains("no user"));
        let debug = format!(
            "{:?}",
            Server::new("host=db user=a password=hunter2", None).unwrap()
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn extra_cas_must_be_certificates() {
        assert!(
            Server::new("host=db user=a", Some(b"not pem"))
                .unwrap_err()
                .contains("ca.crt")
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(Server::new("host=db user=a", Some(cert.pem().as_bytes())).is_ok());
    }
}
