//! The operator's handles on its PostgreSQL servers, shared by every reconcile through the context. Each
//! server has its own: the connection (made when first needed, dropped after a failure), the DDL locks, the
//! connection-capacity lock, the owners of the roles provisioned there, and the periodic scan of its shared
//! database.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{info, warn};

use crate::cluster::observe::Owner;
use crate::postgres::connect::{ConnectError, Failure, Server};
use crate::postgres::error::DbError;
use crate::postgres::provision::{self, DdlLocks};
use crate::postgres::sql;
use crate::settings::{DatabaseSettings, ServerSettings, UnknownServer};

/// The operator's handles on every configured server, by name, with the settings they share.
#[derive(Debug)]
pub struct Database {
    pub(super) settings: DatabaseSettings,
    servers: BTreeMap<String, ServerHandle>,
}

impl Database {
    /// Handles with no connection yet, one per configured server. The default server's egress address is
    /// not needed here (the policies read it from the settings).
    pub fn new(settings: DatabaseSettings) -> Self {
        let servers = settings
            .names()
            .into_iter()
            .filter_map(|name| {
                let config = settings.server(name, None)?;
                Some((name.to_owned(), ServerHandle::new(name, config)))
            })
            .collect();
        Database { settings, servers }
    }

    /// The settings.
    pub fn settings(&self) -> &DatabaseSettings {
        &self.settings
    }

    /// The handle of the server `wanted` resolves to (see [`DatabaseSettings::resolve`]).
    pub fn handle(&self, wanted: Option<&str>) -> Result<&ServerHandle, UnknownServer> {
        let name = self.settings.resolve(wanted)?;
        self.servers.get(name).ok_or_else(|| UnknownServer {
            wanted: name.to_owned(),
            known: self.servers.keys().cloned().collect(),
        })
    }

    /// Every server's handle.
    pub fn handles(&self) -> impl Iterator<Item = &ServerHandle> {
        self.servers.values()
    }
}

/// The operator's handle on one server: its configuration, the connection (made when first needed, dropped
/// after a connection failure so the admin Secret is read again), and the per-database DDL locks.
#[derive(Debug)]
pub struct ServerHandle {
    name: String,
    pub(super) config: ServerSettings,
    server: tokio::sync::Mutex<Option<Arc<Server>>>,
    /// The last failure to connect, answered from memory for [`RETRY_AFTER`] so an outage does not make every
    /// reconcile wait for its own connect timeout in turn.
    last_failure: std::sync::Mutex<Option<(std::time::Instant, Failure, String)>>,
    pub(super) locks: DdlLocks,
    /// Held from the capacity check until the login role is created or changed, so two resources (in
    /// different databases, under different DDL locks) never both take the last connections.
    pub(super) capacity: tokio::sync::Mutex<()>,
    /// The Tenant or Customer of each Bulkhead role with a schema in this server's shared database, for the
    /// grant sweep.
    owners: std::sync::Mutex<BTreeMap<String, Owner>>,
}

/// How long a failure to connect is reported without trying again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

impl ServerHandle {
    /// A handle with no connection yet.
    fn new(name: &str, config: ServerSettings) -> Self {
        ServerHandle {
            name: name.to_owned(),
            config,
            server: tokio::sync::Mutex::new(None),
            last_failure: std::sync::Mutex::new(None),
            locks: DdlLocks::default(),
            capacity: tokio::sync::Mutex::new(()),
            owners: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The server's name, as `spec.database.server` gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn owners(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Owner>> {
        self.owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One scan of the shared database, on the server this operator is already connected to (none yet: nothing
    /// to scan): the owners of grants that cross a tenant's boundary (once each), and the sessions holding a
    /// lock on another tenant's relation, which it terminates.
    pub async fn sweep(&self) -> Result<Sweep, ConnectError> {
        let Some(server) = self.server.lock().await.clone() else {
            return Ok(Sweep::default());
        };
        let owners = self.owners().clone();
        if owners.is_empty() {
            return Ok(Sweep::default());
        }
        let admin = server.admin().await?;
        let roles: Vec<String> = owners.keys().cloned().collect();
        let rows = admin
            .query(sql::FOREIGN_GRANTS_QUERY, &[&roles])
            .await
            .map_err(|e| ConnectError::server("scanning grants", &e))?;
        let mut grants: Vec<Owner> = rows
            .iter()
            .filter_map(|row| owners.get(row.get::<_, &str>(6)).cloned())
            .collect();
        grants.sort();
        grants.dedup();
        let rows = admin
            .query(sql::CROSS_TENANT_LOCKS_QUERY, &[])
            .await
            .map_err(|e| ConnectError::server("scanning locks", &e))?;
        let mut locks = Vec::new();
        for row in rows {
            let pid: i32 = row.get(0);
            let terminated: bool = admin
                .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .map_err(|e| ConnectError::server("terminating a session", &e))?
                .get(0);
            let holder: String = row.get(1);
            locks.push(CrossLock {
                holder: owners.get(&holder).cloned(),
                role: holder,
                relation: row.get(2),
                owner: owners.get(row.get::<_, &str>(3)).cloned(),
                terminated,
            });
        }
        Ok(Sweep { grants, locks })
    }

    /// The connected server; on first use reads the admin Secret and hardens the server.
    pub(super) async fn server(&self, client: &kube::Client) -> Result<Arc<Server>, ConnectError> {
        let mut current = self.server.lock().await;
        if let Some(server) = current.as_ref() {
            return Ok(server.clone());
        }
        if let Some((at, failure, message)) = self.recent_failure()
            && at.elapsed() < RETRY_AFTER
        {
            return Err(ConnectError::Recent { failure, message });
        }
        match self.connect(client).await {
            Ok(server) => {
                *current = Some(server.clone());
                Ok(server)
            }
            Err(err) => {
                let mut last = self
                    .last_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *last = Some((std::time::Instant::now(), err.failure(), err.to_string()));
                Err(err)
            }
        }
    }

    fn recent_failure(&self) -> Option<(std::time::Instant, Failure, String)> {
        self.last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn connect(&self, client: &kube::Client) -> Result<Arc<Server>, ConnectError> {
        let server = Arc::new(Server::from_secret(client, &self.config.admin_secret).await?);
        let admin = server.admin().await?;
        let _lock = self.locks.lock(server.shared_database()).await;
        let hardening = provision::harden(&admin, server.shared_database())
            .await
            .map_err(|e| from_db("hardening the server", e))?;
        let open = hardening.left_open();
        if !open.is_empty() {
            warn!(
                left_open = %open.join("; "),
                server = %self.name,
                "the PostgreSQL admin is not a superuser and could not take these rights from PUBLIC; see the \
                 table of what each isolation mode still shares in docs/postgres.md"
            );
        }
        info!(
            server = %self.name,
            database = server.shared_database(),
            host = server.host(),
            port = server.port(),
            "connected to PostgreSQL and hardened it"
        );
        Ok(server)
    }

    /// Forgets the connection, so the next use reads the admin Secret again.
    pub(super) async fn forget(&self) {
        *self.server.lock().await = None;
    }
}

pub(super) fn from_db(what: &'static str, err: DbError) -> ConnectError {
    match err {
        DbError::Server { what, source } => ConnectError::server(what, &source),
        DbError::Build(e) => ConnectError::Server {
            what,
            failure: Failure::Failed,
            message: e.to_string(),
        },
        e @ DbError::NeedsSuperuser { .. } => ConnectError::Server {
            what,
            failure: Failure::PermissionDenied,
            message: e.to_string(),
        },
    }
}

/// What one sweep of the shared database found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Whose objects carry a grant across the boundary.
    pub grants: Vec<Owner>,
    /// Sessions that held a lock on another tenant's relation.
    pub locks: Vec<CrossLock>,
}

/// A session of one tenant that held a lock on another tenant's relation.
#[derive(Debug)]
pub struct CrossLock {
    /// The session's role.
    pub role: String,
    /// Its Tenant or Customer, when this operator provisioned it.
    pub holder: Option<Owner>,
    /// The relations, as `schema.name, ...`.
    pub relation: String,
    /// The Tenant or Customer owning them.
    pub owner: Option<Owner>,
    /// Whether `pg_terminate_backend` ended the session (it may have ended by itself).
    pub terminated: bool,
}
