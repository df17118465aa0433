//! Running the provisioning SQL against the server, idempotently: roles are created when missing and reset
//! (attributes, password) when present; grants and the schema use their idempotent forms.

use tokio_postgres::Client;

use super::error::DbError;
use super::naming::Names;
use super::sql::{self, SqlError};

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
    Ok(role_row(client, role).await?.is_some())
}

/// A role's attributes and comment, as the catalog has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    /// SUPERUSER, INHERIT, CREATEROLE, CREATEDB, LOGIN, REPLICATION, BYPASSRLS, in that order.
    pub flags: [bool; 7],
    /// The connection limit (-1: none).
    pub connection_limit: i32,
    /// Whether the password expires (VALID UNTIL a finite time).
    pub expires: bool,
    /// The role's comment.
    pub comment: Option<String>,
}

impl RoleRow {
    /// Whether Bulkhead created this role (it carries Bulkhead's comment).
    pub fn is_bulkheads(&self) -> bool {
        self.comment
            .as_deref()
            .is_some_and(|c| c.starts_with(sql::ROLE_MARKER_PREFIX))
    }

    fn is_hardened_login(&self, connection_limit: i32) -> bool {
        self.flags == [false, false, false, false, true, false, false]
            && self.connection_limit == connection_limit
            && !self.expires
    }

    fn is_hardened_owner(&self) -> bool {
        self.flags == [false; 7]
    }

    /// The attributes only a superuser can grant or take back (SUPERUSER, REPLICATION, BYPASSRLS) it holds.
    fn superuser_attributes(&self) -> Vec<&'static str> {
        [(0, "SUPERUSER"), (5, "REPLICATION"), (6, "BYPASSRLS")]
            .into_iter()
            .filter(|(i, _)| self.flags[*i])
            .map(|(_, name)| name)
            .collect()
    }
}

/// Reads a role's attributes, if the role exists.
pub async fn role_row(client: &Client, role: &str) -> Result<Option<RoleRow>, DbError> {
    let row = client
        .query_opt(
            "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, \
             rolconnlimit, coalesce(rolvaliduntil <> 'infinity', false), shobj_description(oid, 'pg_authid') \
             FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(|source| DbError::Server {
            what: "looking up a role",
            source,
        })?;
    Ok(row.map(|r| RoleRow {
        flags: [
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        ],
        connection_limit: r.get(7),
        expires: r.get(8),
        comment: r.get(9),
    }))
}

/// Runs a statement that carries a password verifier with statement logging off for it. Turning logging off
/// needs superuser (or a `GRANT SET ON PARAMETER`); without it the statement runs anyway, since it carries a
/// verifier and never the password.
pub async fn run_with_password(client: &Client, what: &'static str, statement: &str) -> Result<(), DbError> {
    let quiet = format!(
        "BEGIN; SET LOCAL log_statement = 'none'; SET LOCAL log_min_duration_statement = -1; {statement}; COMMIT"
    );
    match client.batch_execute(&quiet).await {
        Ok(()) => Ok(()),
        Err(err) => {
            let _ = client.batch_execute("ROLLBACK").await;
            let denied = err
                .as_db_error()
                .is_some_and(|db| db.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
            if denied {
                run(client, what, statement).await
            } else {
                Err(DbError::Server { what, source: err })
            }
        }
    }
}

/// What [`ensure_roles`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolesReport {
    /// The login role did not exist and was created with the given password.
    pub login_created: bool,
    /// Roles whose attributes had drifted and were reset.
    pub repaired: Vec<String>,
}

/// Creates the owner and login roles when missing (the login role with `verifier` as its password), marks them
/// as Bulkhead's, and resets the attributes of existing ones when they drifted. Never changes an existing
/// login role's password.
pub async fn ensure_roles(
    client: &Client,
    names: &Names,
    verifier: &str,
    connection_limit: i32,
) -> Result<RolesReport, DbError> {
    let mut report = RolesReport::default();
    let marker = sql::role_marker(&names.place);
    let admin = admin(client).await?;
    let superuser = admin.superuser;
    let needs_superuser = |role: &str, row: &RoleRow| -> Result<(), DbError> {
        let held = row.superuser_attributes();
        if superuser || held.is_empty() {
            return Ok(());
        }
        Err(DbError::NeedsSuperuser {
            role: role.to_owned(),
            attributes: held.join(", "),
        })
    };
    match role_row(client, &names.owner).await? {
        None => {
            run(
                client,
                "creating the owner role",
                &sql::create_owner_role(&names.owner)?,
            )
            .await?;
            run(
                client,
                "marking the owner role",
                &sql::comment_role(&names.owner, &marker)?,
            )
            .await?;
        }
        Some(row) if !row.is_hardened_owner() => {
            needs_superuser(&names.owner, &row)?;
            let statement = sql::reset_owner_attributes(&names.owner, superuser)?;
            run(client, "resetting the owner role", &statement).await?;
            report.repaired.push(names.owner.clone());
        }
        Some(_) => {}
    }
    match role_row(client, &names.login).await? {
        None => {
            let statement = sql::create_login_role(&names.login, verifier, connection_limit)?;
            run_with_password(client, "creating the login role", &statement).await?;
            run(
                client,
                "marking the login role",
                &sql::comment_role(&names.login, &marker)?,
            )
            .await?;
            report.login_created = true;
        }
        Some(row) if !row.is_hardened_login(connection_limit) => {
            needs_superuser(&names.login, &row)?;
            let statement = sql::reset_login_attributes(&names.login, connection_limit, superuser)?;
            run(client, "resetting the login role", &statement).await?;
            report.repaired.push(names.login.clone());
        }
        Some(_) => {}
    }
    ensure_admin_membership(client, &admin, &[&names.owner, &names.login]).await?;
    Ok(report)
}

/// What the administrator is.
struct Admin {
    superuser: bool,
    /// `server_version_num`, e.g. 160004.
    server_version: i32,
}

async fn admin(client: &Client) -> Result<Admin, DbError> {
    let row = client
        .query_one(
            "SELECT rolsuper, current_setting('server_version_num')::int FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|source| DbError::Server {
            what: "reading the administrator's role",
            source,
        })?;
    Ok(Admin {
        superuser: row.get(0),
        server_version: row.get(1),
    })
}

/// An administrator that is not a superuser (CREATEROLE and CREATEDB, as on managed services) acts on a
/// tenant's objects through membership in its roles: creating the schema or database for the owner role,
/// changing the roles' default privileges, taking back a grant as its grantor, dropping what they own. Since
/// PostgreSQL 16 the creator of a role only gets ADMIN OPTION on it; this grants the membership with INHERIT and
/// SET (before 16, plain membership carries both). A superuser needs none of it.
async fn ensure_admin_membership(client: &Client, admin: &Admin, roles: &[&str]) -> Result<(), DbError> {
    if admin.superuser {
        return Ok(());
    }
    let modern = admin.server_version >= 160_000;
    let check = if modern {
        "SELECT pg_has_role(current_user, $1::text, 'USAGE') AND pg_has_role(current_user, $1::text, 'SET')"
    } else {
        "SELECT pg_has_role(current_user, $1::text, 'USAGE')"
    };
    for role in roles {
        let member: bool = client
            .query_one(check, &[role])
            .await
            .map_err(|source| DbError::Server {
                what: "checking the administrator's membership",
                source,
            })?
            .get(0);
        if !member {
            run(
                client,
                "granting the administrator membership in a tenant role",
                &sql::grant_to_admin(role, modern)?,
            )
            .await?;
        }
    }
    Ok(())
}

/// Sets the login role's password.
pub async fn set_password(client: &Client, names: &Names, verifier: &str) -> Result<(), DbError> {
    let statement = sql::set_password(&names.login, verifier)?;
    run_with_password(client, "setting the login role's password", &statement).await
}

/// The owner of a schema (in the connected database) or of a database, if it exists.
pub async fn owner_of(client: &Client, place: Place, name: &str) -> Result<Option<String>, DbError> {
    let (query, what) = match place {
        Place::Schema => (
            "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = $1",
            "looking up a schema",
        ),
        Place::Database => (
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            "looking up a database",
        ),
    };
    let row = client
        .query_opt(query, &[&name])
        .await
        .map_err(|source| DbError::Server { what, source })?;
    Ok(row.map(|r| r.get(0)))
}

/// What a tenant's place is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A schema in the shared database.
    Schema,
    /// A database of its own.
    Database,
}

/// Privileges the tenant's roles hold outside their place, seen from the connected database. `database` is
/// the one database they may connect to.
pub async fn extra_grants(
    client: &Client,
    names: &Names,
    database: &str,
) -> Result<Vec<sql::ExtraGrant>, DbError> {
    let roles = vec![names.owner.clone(), names.login.clone()];
    let rows = client
        .query(sql::EXTRA_GRANTS_QUERY, &[&roles, &database, &names.place])
        .await
        .map_err(|source| DbError::Server {
            what: "reading grants",
            source,
        })?;
    Ok(rows
        .into_iter()
        .filter_map(|r| sql::extra_grant(r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Takes back privileges found by [`extra_grants`].
pub async fn revoke(client: &Client, grants: &[sql::ExtraGrant]) -> Result<(), DbError> {
    for grant in grants {
        run(client, "revoking a grant", &grant.revoke()?).await?;
    }
    Ok(())
}

/// Grants on objects the tenant's roles own, in the connected database, to PUBLIC or to roles outside the
/// tenant (whoever made them: a migration, the tenant's own `GRANT`, an administrator).
pub async fn foreign_grants(client: &Client, names: &Names) -> Result<Vec<sql::ForeignGrant>, DbError> {
    let roles = vec![names.owner.clone(), names.login.clone()];
    let rows = client
        .query(sql::FOREIGN_GRANTS_QUERY, &[&roles])
        .await
        .map_err(|source| DbError::Server {
            what: "reading grants on the tenant's objects",
            source,
        })?;
    Ok(rows
        .into_iter()
        .filter_map(|r| sql::foreign_grant(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect())
}

/// Takes back grants found by [`foreign_grants`].
pub async fn revoke_foreign(client: &Client, grants: &[sql::ForeignGrant]) -> Result<(), DbError> {
    for grant in grants {
        run(
            client,
            "revoking a grant on the tenant's objects",
            &grant.revoke()?,
        )
        .await?;
    }
    Ok(())
}

/// What [`harden`] could not do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hardening {
    /// The lock-taking functions.
    pub lockdown: super::lockdown::Lockdown,
    /// Rights PUBLIC kept, e.g. `PUBLIC may connect to database postgres` (none with a superuser admin).
    pub gaps: Vec<String>,
}

impl Hardening {
    /// Everything left open, functions included.
    pub fn left_open(&self) -> Vec<String> {
        let functions = self
            .lockdown
            .still_open
            .iter()
            .map(|f| format!("PUBLIC may execute {f}"));
        self.gaps.iter().cloned().chain(functions).collect()
    }
}

/// Removes PUBLIC's default rights and the lock-taking functions (run once per server, connected to the shared
/// database), then reads back what PUBLIC can still do.
pub async fn harden(client: &Client, shared_database: &str) -> Result<Hardening, DbError> {
    for statement in sql::harden_server(shared_database)? {
        run(client, "hardening the server", &statement).await?;
    }
    let lockdown = super::lockdown::apply(client).await?;
    let databases = vec![
        shared_database.to_owned(),
        "postgres".to_owned(),
        "template1".to_owned(),
    ];
    let gaps = client
        .query(sql::HARDENING_GAPS_QUERY, &[&databases])
        .await
        .map_err(|source| DbError::Server {
            what: "checking the hardening",
            source,
        })?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Hardening { lockdown, gaps })
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
    if !ensure_roles(client, names, verifier, connection_limit)
        .await?
        .login_created
    {
        set_password(client, names, verifier).await?;
    }
    grant_schema(client, shared_database, names).await
}

/// The login role's CONNECT on `database` (the one `client` is connected to), granted only when it is missing.
async fn grant_connect(client: &Client, database: &str, login: &str) -> Result<(), DbError> {
    let held: bool = client
        .query_one(sql::CONNECT_HELD_QUERY, &[&database, &login])
        .await
        .map_err(|source| DbError::Server {
            what: "reading the database's access list",
            source,
        })?
        .get(0);
    if held {
        return Ok(());
    }
    run(client, "granting CONNECT", &sql::connect_grant(database, login)?).await
}

/// Schema isolation without the roles: the schema and its grants, in the shared database.
pub async fn grant_schema(client: &Client, shared_database: &str, names: &Names) -> Result<(), DbError> {
    grant_connect(client, shared_database, &names.login).await?;
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
    if !ensure_roles(admin, names, verifier, connection_limit)
        .await?
        .login_created
    {
        set_password(admin, names, verifier).await?;
    }
    create_database(admin, names).await?;
    let inside = connect_to(admin_config, &names.place).await?;
    grant_database(&inside, names).await
}

/// Database isolation: creates the tenant's database when missing.
pub async fn create_database(admin: &Client, names: &Names) -> Result<(), DbError> {
    if !database_exists(admin, &names.place).await? {
        for statement in sql::create_database(&names.place, &names.owner)? {
            run(admin, "creating the database", &statement).await?;
        }
    }
    Ok(())
}

/// Database isolation, through `inside` (a connection to the tenant's database): its hardening and grants.
pub async fn grant_database(inside: &Client, names: &Names) -> Result<(), DbError> {
    for statement in sql::harden_tenant_database() {
        run(inside, "hardening the tenant database", &statement).await?;
    }
    grant_connect(inside, &names.place, &names.login).await?;
    for statement in sql::schema_grants(&names.place, &names.place, &names.owner, &names.login)? {
        run(inside, "granting the schema", &statement).await?;
    }
    super::lockdown::apply(inside).await?;
    Ok(())
}

/// Database isolation, deletion (idempotent): the database, then whatever the roles own or were granted in
/// the database `admin` is connected to, then the roles.
pub async fn drop_database(admin: &Client, names: &Names) -> Result<(), DbError> {
    let statements = sql::drop_database_place(&names.place, &names.owner, &names.login)?;
    if let Some(drop_database) = statements.first() {
        run(admin, "dropping the database", drop_database).await?;
    }
    // There is no schema of this name in the admin's database; this drops what the roles own there and them.
    drop_schema(admin, names).await
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
