//! Running the provisioning SQL against the server, idempotently: roles are created when missing and reset
//! (attributes, password) when present; grants and the schema use their idempotent forms.

use tokio_postgres::Client;

use super::naming::Names;
use super::sql::{self, SqlError};

/// Errors of the database step.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A statement could not be built.
    #[error(transparent)]
    Build(#[from] SqlError),
    /// The server refused or failed a statement. The statement is not shown: it may carry a password verifier.
    #[error("{what}: {source}")]
    Server {
        /// What was being done.
        what: &'static str,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl DbError {
    /// A fixed category for metrics labels and events.
    pub fn category(&self) -> &'static str {
        match self {
            DbError::Build(e) => e.category(),
            DbError::Server { .. } => "database",
        }
    }
}

/// How often a statement is retried when it lost a race on a catalog row.
const CONCURRENT_UPDATE_RETRIES: u32 = 5;

/// Whether the server reports that another session updated the same catalog row ("tuple concurrently
/// updated", XX000), which parallel GRANT/REVOKE/ALTER ROLE provoke and a retry resolves.
fn is_concurrent_update(err: &tokio_postgres::Error) -> bool {
    err.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::INTERNAL_ERROR
            && db.message().contains("concurrently updated")
    })
}

async fn run(client: &Client, what: &'static str, statement: &str) -> Result<(), DbError> {
    let mut attempt = 0;
    loop {
        match client.batch_execute(statement).await {
            Ok(()) => return Ok(()),
            Err(err) if is_concurrent_update(&err) && attempt < CONCURRENT_UPDATE_RETRIES => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt))).await;
            }
            Err(source) => return Err(DbError::Server { what, source }),
        }
    }
}

/// One lock per database, so that DDL for different tenants in the same database runs one at a time (the
/// retry above covers whatever else touches the catalog).
#[derive(Debug, Default)]
pub struct DdlLocks {
    locks: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl DdlLocks {
    /// Waits for the lock of `database`.
    pub async fn lock(&self, database: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(database.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

async fn role_exists(client: &Client, role: &str) -> Result<bool, DbError> {
    let rows = client
        .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .map_err(|source| DbError::Server {
            what: "looking up a role",
            source,
        })?;
    Ok(!rows.is_empty())
}

/// Creates the owner role when missing; creates the login role, or resets its attributes and password.
async fn ensure_roles(
    client: &Client,
    names: &Names,
    verifier: &str,
    connection_limit: i32,
) -> Result<(), DbError> {
    if !role_exists(client, &names.owner).await? {
        run(
            client,
            "creating the owner role",
            &sql::create_owner_role(&names.owner)?,
        )
        .await?;
    }
    let login = if role_exists(client, &names.login).await? {
        sql::alter_login_role(&names.login, verifier, connection_limit)?
    } else {
        sql::create_login_role(&names.login, verifier, connection_limit)?
    };
    run(client, "creating the login role", &login).await
}

/// Removes PUBLIC's default rights (run once per server, connected to the shared database).
pub async fn harden(client: &Client, shared_database: &str) -> Result<(), DbError> {
    for statement in sql::harden_server(shared_database)? {
        run(client, "hardening the server", &statement).await?;
    }
    Ok(())
}

/// Schema isolation: owner role, login role (with `verifier` as its password), schema and grants, in the shared
/// database the client is connected to.
pub async fn provision_schema(
    client: &Client,
    shared_database: &str,
    names: &Names,
    verifier: &str,
    connection_limit: i32,
) -> Result<(), DbError> {
    ensure_roles(client, names, verifier, connection_limit).await?;
    for statement in sql::schema_grants(shared_database, &names.place, &names.owner, &names.login)? {
        run(client, "granting the schema", &statement).await?;
    }
    Ok(())
}

/// Connects as the administrator to another database of the same server.
async fn connect_to(admin: &tokio_postgres::Config, database: &str) -> Result<Client, DbError> {
    let mut config = admin.clone();
    config.dbname(database);
    let (client, connection) =
        config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|source| DbError::Server {
                what: "connecting to the tenant database",
                source,
            })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn database_exists(client: &Client, database: &str) -> Result<bool, DbError> {
    let rows = client
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(|source| DbError::Server {
            what: "looking up a database",
            source,
        })?;
    Ok(!rows.is_empty())
}

/// Database isolation: owner and login roles, the tenant's own database, and inside it a schema set up as in
/// Schema isolation. `admin` is connected to any database of the server; `admin_config` lets it connect to the
/// new one.
pub async fn provision_database(
    admin: &Client,
    admin_config: &tokio_postgres::Config,
    names: &Names,
    verifier: &str,
    connection_limit: i32,
) -> Result<(), DbError> {
    ensure_roles(admin, names, verifier, connection_limit).await?;
    if !database_exists(admin, &names.place).await? {
        for statement in sql::create_database(&names.place, &names.owner)? {
            run(admin, "creating the database", &statement).await?;
        }
    }
    let inside = connect_to(admin_config, &names.place).await?;
    for statement in sql::harden_tenant_database() {
        run(&inside, "hardening the tenant database", &statement).await?;
    }
    for statement in sql::schema_grants(&names.place, &names.place, &names.owner, &names.login)? {
        run(&inside, "granting the schema", &statement).await?;
    }
    Ok(())
}

/// Database isolation, deletion (idempotent).
pub async fn drop_database(admin: &Client, names: &Names) -> Result<(), DbError> {
    for statement in sql::drop_database_place(&names.place, &names.owner, &names.login)? {
        run(admin, "dropping the database place", &statement).await?;
    }
    Ok(())
}

/// Schema isolation, deletion (idempotent).
pub async fn drop_schema(client: &Client, names: &Names) -> Result<(), DbError> {
    let [drop_schema, drop_owned, drop_login, drop_owner] =
        <[String; 4]>::try_from(sql::drop_schema_place(&names.place, &names.owner, &names.login)?)
            .map_err(|_| SqlError::IdentifierLength(names.place.clone()))?;
    run(client, "dropping the schema", &drop_schema).await?;
    // DROP OWNED fails for a role that does not exist; skip it once both roles are gone.
    if role_exists(client, &names.owner).await? && role_exists(client, &names.login).await? {
        run(client, "dropping what the roles own", &drop_owned).await?;
    }
    run(client, "dropping the login role", &drop_login).await?;
    run(client, "dropping the owner role", &drop_owner).await?;
    Ok(())
}
