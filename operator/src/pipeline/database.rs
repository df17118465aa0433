//! The database step of a reconcile: the credentials Secret, the roles and the schema (or database) in the
//! PostgreSQL server the resource uses, drift repair, and teardown on deletion.
//!
//! The operator may be configured with several servers, each with a name. A Tenant's `spec.database.server`
//! names one (absent: the default server); a Customer's names one too, and when absent the Customer uses its
//! Tenant's server, so that its data sits next to its Tenant's. A name the operator does not know gets nothing
//! provisioned anywhere (`DatabaseReady=False, UnknownServer`). The credentials Secret records the server a
//! place was provisioned on; a resource that later resolves to another server (its Tenant's field changed
//! while the Customer relied on it) is refused with `ServerChanged` rather than provisioned twice.
//!
//! A server that is down, refuses the admin or holds a role Bulkhead did not create is not an error of the
//! reconcile: it is reported in the `DatabaseReady` condition, nothing else is touched, and the step is tried
//! again until it succeeds. Errors of the Kubernetes API (writing the Secret) are reconcile errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use bulkhead_crds::v1alpha1::DatabaseIsolation;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use postgres_protocol::password::scram_sha_256;
use tokio_postgres::error::SqlState;
use tracing::{debug, info, warn};

pub mod handle;

pub use handle::{CrossLock, Database, ServerHandle, Sweep};

use crate::pipeline::outcome::DatabaseState;
use handle::from_db;

use crate::cluster::events;
use crate::cluster::observe::{Owner, Triggers};
use crate::pipeline::conditions::database_reasons as reasons;
use crate::pipeline::context::Context;
use crate::pipeline::managed::{Managed, Plan};
use crate::postgres::capacity;
use crate::postgres::connect::{ConnectError, Failure, Server, describe};
use crate::postgres::credentials::{self, Location, PasswordPlan};
use crate::postgres::error::DbError;
use crate::postgres::naming::{self, Names};
use crate::postgres::provision;

/// Errors of the database step that are the Kubernetes API's.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The credentials Secret could not be read or written.
    #[error("{action} Secret {namespace}/{}: {source}", credentials::SECRET_NAME)]
    Secret {
        /// What was attempted.
        action: &'static str,
        /// Its namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The OS random source failed.
    #[error("generating a password: {0}")]
    Random(getrandom::Error),
}

impl DatabaseError {
    /// A fixed category for metrics labels and Events.
    pub fn category(&self) -> &'static str {
        match self {
            DatabaseError::Secret { .. } => "credentials_secret",
            DatabaseError::Random(_) => "random",
        }
    }
}

/// The credentials Secret as found before the apply step.
#[derive(Debug, Clone, Default)]
pub struct Found {
    secret: Option<Secret>,
}

impl Found {
    /// The server the Secret says the place was provisioned on: `None` without a Secret, the default
    /// server's name for a Secret written before servers had names.
    fn server<'a>(&'a self, default: &'a str) -> Option<&'a str> {
        let secret = self.secret.as_ref()?;
        Some(
            secret
                .annotations()
                .get(credentials::SERVER_ANNOTATION)
                .map_or(default, String::as_str),
        )
    }

    fn data(&self) -> Option<(&BTreeMap<String, k8s_openapi::ByteString>, Option<&str>)> {
        let secret = self.secret.as_ref()?;
        let data = secret.data.as_ref()?;
        let revision = secret
            .annotations()
            .get(credentials::REVISION_ANNOTATION)
            .map(String::as_str);
        Some((data, revision))
    }
}

/// The rotation a resource asks for, if any.
fn requested_revision<K: Managed>(object: &K) -> Option<&str> {
    object
        .annotations()
        .get(credentials::ROTATE_ANNOTATION)
        .map(String::as_str)
        .filter(|r| !r.is_empty())
}

/// Reads the credentials Secret (absent while the namespace is).
pub async fn read_secret(ctx: &Context, namespace: &str) -> Result<Found, DatabaseError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = api
        .get_opt(credentials::SECRET_NAME)
        .await
        .map_err(|source| DatabaseError::Secret {
            action: "reading",
            namespace: namespace.to_owned(),
            source,
        })?;
    Ok(Found { secret })
}

/// The rotation revision the Secret will carry after this reconcile (recorded on the pod template).
pub fn revision_after<K: Managed>(object: &K, found: &Found) -> Option<String> {
    let requested = requested_revision(object);
    match credentials::plan_password(found.data(), requested) {
        PasswordPlan::Rotate { revision } => Some(revision),
        PasswordPlan::Generate => requested.map(str::to_owned),
        PasswordPlan::Keep { .. } => found.data().and_then(|(_, r)| r.map(str::to_owned)),
    }
}

/// The place's database: the shared one (Schema isolation) or its own.
fn database_of(server: &Server, isolation: DatabaseIsolation, names: &Names) -> String {
    match isolation {
        DatabaseIsolation::Schema => server.shared_database().to_owned(),
        DatabaseIsolation::Database => names.place.clone(),
    }
}

/// Runs the database step for a resource whose namespace exists.
pub async fn ensure<K: Managed>(
    ctx: &Context,
    object: &K,
    plan: &Plan,
    namespace: &str,
    found: Found,
) -> Result<DatabaseState, DatabaseError> {
    let Some(database) = ctx.database.as_ref() else {
        return Ok(DatabaseState::NotReady {
            reason: reasons::NOT_CONFIGURED,
            message: "spec.database.enabled is true, but the operator runs without --postgres-admin-secret; \
                      configure it (or BULKHEAD_POSTGRES_ADMIN_SECRET) or disable the database."
                .into(),
        });
    };
    let handle = match database.handle(plan.database.server.as_deref()) {
        Ok(handle) => handle,
        Err(unknown) => {
            let message = format!(
                "{unknown}; nothing was provisioned. Name a configured server, or configure this one \
                 (--postgres-server)."
            );
            warn!(category = unknown.category(), wanted = %unknown.wanted, "unknown PostgreSQL server");
            events::publish(
                &ctx.recorder,
                object,
                EventType::Warning,
                reasons::UNKNOWN_SERVER,
                "Provision",
                message.clone(),
            )
            .await;
            return Ok(DatabaseState::NotReady {
                reason: reasons::UNKNOWN_SERVER,
                message,
            });
        }
    };
    if let Some(was) = found.server(&database.settings.default_server)
        && was != handle.name()
    {
        return Ok(DatabaseState::NotReady {
            reason: reasons::SERVER_CHANGED,
            message: format!(
                "The database was provisioned on PostgreSQL server \"{was}\" (Secret {}), but the resource now \
                 resolves to \"{}\"; nothing was changed. A place does not move between servers: put back the \
                 server it resolved to (for a Customer without spec.database.server, its Tenant's), or delete \
                 and recreate the resource.",
                credentials::SECRET_NAME,
                handle.name()
            ),
        });
    }
    let server = match handle.server(&ctx.client).await {
        Ok(server) => server,
        Err(err) => return Ok(not_ready(handle, &err).await),
    };
    let names = naming::names(&plan.tenant, plan.customer.as_deref());
    let isolation = plan.database.isolation;
    let db_name = database_of(&server, isolation, &names);

    // The Secret first, so a generated password is never lost to a failure further on.
    let requested = requested_revision(object);
    let password_plan = credentials::plan_password(found.data(), requested);
    let (password, revision, fresh) = match &password_plan {
        PasswordPlan::Keep { password } => (
            password.clone(),
            found.data().and_then(|(_, r)| r.map(str::to_owned)),
            false,
        ),
        PasswordPlan::Generate => (
            credentials::generate_password().map_err(DatabaseError::Random)?,
            requested.map(str::to_owned),
            true,
        ),
        PasswordPlan::Rotate { revision } => (
            credentials::generate_password().map_err(DatabaseError::Random)?,
            Some(revision.clone()),
            true,
        ),
    };
    let location = Location {
        username: names.login.clone(),
        host: handle
            .config
            .host
            .clone()
            .unwrap_or_else(|| server.host().to_owned()),
        port: handle.config.port.unwrap_or(server.port()),
        database: db_name.clone(),
        schema: names.place.clone(),
        url_params: database.settings.url_params.clone(),
    };
    write_secret(
        ctx,
        plan,
        namespace,
        &found,
        &location,
        &password,
        revision.as_deref(),
        handle.name(),
    )
    .await?;

    let reserve = database.settings.connection_reserve;
    let result = provision(
        ctx, handle, reserve, &server, object, plan, &names, &db_name, &password, fresh,
    )
    .await;
    match result {
        Ok(()) => {
            if matches!(password_plan, PasswordPlan::Rotate { .. }) {
                events::publish(
                    &ctx.recorder,
                    object,
                    EventType::Normal,
                    "DatabasePasswordRotated",
                    "Rotate",
                    format!(
                        "The password of role {} was rotated as asked by {}; Secret {} updated.",
                        names.login,
                        credentials::ROTATE_ANNOTATION,
                        credentials::SECRET_NAME
                    ),
                )
                .await;
            }
            let place = match isolation {
                DatabaseIsolation::Schema => format!("Schema {} in database {db_name}", names.place),
                DatabaseIsolation::Database => format!("Database {db_name}"),
            };
            Ok(DatabaseState::Ready(format!(
                "{place} on PostgreSQL server {}; login role {}; credentials in Secret {}.",
                handle.name(),
                names.login,
                credentials::SECRET_NAME
            )))
        }
        Err(Problem::Conflict(message)) => Ok(DatabaseState::NotReady {
            reason: reasons::NAME_CONFLICT,
            message,
        }),
        Err(Problem::Capacity(exceeded)) => {
            let message = format!(
                "Login role {} was not created or changed: {exceeded}. Lower spec.database.connectionLimit, \
                 free connections (delete or lower other tenants), raise max_connections or lower \
                 --postgres-connection-reserve; retried on every resync.",
                names.login
            );
            warn!(role = %names.login, capacity = exceeded.capacity, reserve = exceeded.reserve,
                  allotted = exceeded.allotted, wanted = exceeded.wanted, "connection capacity exceeded");
            events::publish(
                &ctx.recorder,
                object,
                EventType::Warning,
                reasons::CONNECTION_CAPACITY_EXCEEDED,
                "Provision",
                message.clone(),
            )
            .await;
            Ok(DatabaseState::NotReady {
                reason: reasons::CONNECTION_CAPACITY_EXCEEDED,
                message,
            })
        }
        Err(Problem::Connect(err)) => Ok(not_ready(handle, &err).await),
    }
}

async fn not_ready(handle: &ServerHandle, err: &ConnectError) -> DatabaseState {
    let failure = err.failure();
    if matches!(
        failure,
        Failure::Unreachable | Failure::AdminAuthenticationFailed | Failure::AdminSecretInvalid
    ) {
        handle.forget().await;
    }
    let hint = match failure {
        Failure::AdminSecretInvalid => "fix the admin Secret (key `dsn`, optional `ca.crt`)",
        Failure::Unreachable => "retrying until the server answers",
        Failure::AdminAuthenticationFailed => "fix the credentials in the admin Secret",
        Failure::PermissionDenied => {
            "the admin role needs CREATEROLE, CREATEDB and ownership of the shared database (or superuser)"
        }
        Failure::Failed => "retrying",
    };
    warn!(category = failure.reason(), server = handle.name(), error = %err, "database not ready");
    DatabaseState::NotReady {
        reason: failure.reason(),
        message: format!("PostgreSQL server {}: {err}; {hint}.", handle.name()),
    }
}

enum Problem {
    Conflict(String),
    Capacity(capacity::Exceeded),
    Connect(ConnectError),
}

impl From<ConnectError> for Problem {
    fn from(err: ConnectError) -> Self {
        Problem::Connect(err)
    }
}

fn db(what: &'static str) -> impl FnOnce(DbError) -> Problem {
    move |e| Problem::Connect(from_db(what, e))
}

/// Roles, place, grants, password and drift repair, under the database's DDL lock.
#[allow(clippy::too_many_arguments)]
async fn provision<K: Managed>(
    ctx: &Context,
    database: &ServerHandle,
    reserve: u32,
    server: &Server,
    object: &K,
    plan: &Plan,
    names: &Names,
    db_name: &str,
    password: &str,
    fresh: bool,
) -> Result<(), Problem> {
    let _lock = database.locks.lock(db_name).await;
    let admin = server.admin().await?;
    check_conflicts(&admin, names, plan.database.isolation).await?;
    if plan.database.isolation == DatabaseIsolation::Schema {
        let owner = match K::KIND {
            "Customer" => Owner::Customer(object.name_any()),
            _ => Owner::Tenant(object.name_any()),
        };
        let mut owners = database.owners();
        owners.insert(names.owner.clone(), owner.clone());
        owners.insert(names.login.clone(), owner);
    }
    let limit = plan
        .database
        .connection_limit
        .unwrap_or(bulkhead_crds::v1alpha1::DEFAULT_CONNECTION_LIMIT);
    let verifier = scram_sha_256(password.as_bytes());
    let roles = {
        let _capacity = database.capacity.lock().await;
        check_capacity(&admin, names, limit, reserve).await?;
        provision::ensure_roles(&admin, names, &verifier, limit)
            .await
            .map_err(db("creating the roles"))?
    };
    if fresh && !roles.login_created {
        provision::set_password(&admin, names, &verifier)
            .await
            .map_err(db("setting the password"))?;
    }
    for role in &roles.repaired {
        events::publish(
            &ctx.recorder,
            object,
            EventType::Warning,
            "DatabaseRoleRepaired",
            "Repair",
            format!("Role {role} had attributes changed out of band; they were reset."),
        )
        .await;
    }
    let inside = match plan.database.isolation {
        DatabaseIsolation::Schema => {
            provision::grant_schema(&admin, db_name, names)
                .await
                .map_err(db("granting the schema"))?;
            None
        }
        DatabaseIsolation::Database => {
            provision::create_database(&admin, names)
                .await
                .map_err(db("creating the database"))?;
            let inside = server
                .connect(db_name, None)
                .await
                .map_err(|e| ConnectError::server("connecting to the tenant database", &e))?;
            provision::grant_database(&inside, names)
                .await
                .map_err(db("granting the database"))?;
            Some(inside)
        }
    };
    // Extra grants: cluster-wide ones and, in the place's database, those on other schemas and relations.
    let catalog: &tokio_postgres::Client = inside.as_ref().unwrap_or(&admin);
    let revoked = repair_grants(catalog, names, db_name).await?;
    if !revoked.is_empty() {
        ctx.metrics.drift_repaired(K::CONTROLLER, revoked.len());
        events::publish(
            &ctx.recorder,
            object,
            EventType::Warning,
            "DatabaseGrantsRevoked",
            "Repair",
            format!(
                "Privileges that crossed the tenant's boundary were revoked: {}.",
                revoked.join("; ")
            ),
        )
        .await;
    }
    if !fresh && !roles.login_created && !login_works(server, db_name, names, password).await {
        provision::set_password(&admin, names, &verifier)
            .await
            .map_err(db("repairing the password"))?;
        ctx.metrics.drift_repaired(K::CONTROLLER, 1);
        info!(role = %names.login, "password drift repaired");
        events::publish(
            &ctx.recorder,
            object,
            EventType::Warning,
            "DatabasePasswordRepaired",
            "Repair",
            format!(
                "The password of role {} was changed out of band; it was set back to the one in Secret {}.",
                names.login,
                credentials::SECRET_NAME
            ),
        )
        .await;
    }
    if !roles.repaired.is_empty() {
        ctx.metrics.drift_repaired(K::CONTROLLER, roles.repaired.len());
    }
    Ok(())
}

/// Finds and takes back, in the place's database, the grants the tenant's roles hold outside their place and
/// the grants on its own objects that cross its boundary; returns what was revoked. A REVOKE the admin may not
/// make (a grant by a role it cannot act for) only warns in PostgreSQL, so the catalog is read again and what
/// is still there is reported as a permission problem rather than as revoked.
async fn repair_grants(
    catalog: &tokio_postgres::Client,
    names: &Names,
    db_name: &str,
) -> Result<Vec<String>, Problem> {
    let extra = provision::extra_grants(catalog, names, db_name)
        .await
        .map_err(db("reading grants"))?;
    let foreign = provision::foreign_grants(catalog, names)
        .await
        .map_err(db("reading grants on the tenant's objects"))?;
    if extra.is_empty() && foreign.is_empty() {
        return Ok(Vec::new());
    }
    provision::revoke(catalog, &extra)
        .await
        .map_err(db("revoking grants"))?;
    provision::revoke_foreign(catalog, &foreign)
        .await
        .map_err(db("revoking grants on the tenant's objects"))?;
    let found: Vec<String> = extra
        .iter()
        .map(ToString::to_string)
        .chain(foreign.iter().map(ToString::to_string))
        .collect();
    let left: Vec<String> = provision::extra_grants(catalog, names, db_name)
        .await
        .map_err(db("reading grants"))?
        .iter()
        .map(ToString::to_string)
        .chain(
            provision::foreign_grants(catalog, names)
                .await
                .map_err(db("reading grants on the tenant's objects"))?
                .iter()
                .map(ToString::to_string),
        )
        .collect();
    if !left.is_empty() {
        return Err(Problem::Connect(ConnectError::Server {
            what: "revoking grants",
            failure: Failure::PermissionDenied,
            message: format!(
                "the admin may not revoke {} (granted by a role it cannot act for); a superuser must revoke it",
                left.join("; ")
            ),
        }));
    }
    Ok(found)
}

/// Whether the Secret's password still logs in. Only a refused password counts as drift; anything else (the
/// connection limit reached, pg_hba not admitting the operator's address for the role) proves nothing.
async fn login_works(server: &Server, db_name: &str, names: &Names, password: &str) -> bool {
    match server.connect(db_name, Some((&names.login, password))).await {
        Ok(_) => true,
        Err(err) => {
            let refused = err
                .as_db_error()
                .is_some_and(|db| db.code() == &SqlState::INVALID_PASSWORD);
            if !refused {
                debug!(role = %names.login, error = %describe(&err), "login check inconclusive");
            }
            !refused
        }
    }
}

/// Refuses to create the login role, or to raise its limit, when the server has no room for it (see
/// [`capacity`]). A role whose limit stays the same or goes down is not checked.
async fn check_capacity(
    admin: &tokio_postgres::Client,
    names: &Names,
    limit: i32,
    reserve: u32,
) -> Result<(), Problem> {
    let current = provision::role_row(admin, &names.login)
        .await
        .map_err(db("looking up roles"))?
        .map(|row| row.connection_limit);
    if !capacity::needs_check(current, limit) {
        return Ok(());
    }
    let server = capacity::server_limits(admin)
        .await
        .map_err(db("reading the connection settings"))?;
    let others = capacity::other_limits(admin, &names.login)
        .await
        .map_err(db("reading the connection limits"))?;
    capacity::check(&server, reserve, &others, limit).map_err(Problem::Capacity)
}

/// Refuses to touch roles, a schema or a database with Bulkhead's names that Bulkhead did not create.
async fn check_conflicts(
    admin: &tokio_postgres::Client,
    names: &Names,
    isolation: DatabaseIsolation,
) -> Result<(), Problem> {
    for role in [&names.owner, &names.login] {
        if let Some(row) = provision::role_row(admin, role)
            .await
            .map_err(db("looking up roles"))?
            && !row.is_bulkheads()
        {
            return Err(Problem::Conflict(format!(
                "Role {role} exists and was not created by Bulkhead (no Bulkhead comment); rename or drop it, \
                 or mark it with COMMENT ON ROLE if it is Bulkhead's from an earlier install."
            )));
        }
    }
    let place = match isolation {
        DatabaseIsolation::Schema => provision::Place::Schema,
        DatabaseIsolation::Database => provision::Place::Database,
    };
    let owner = provision::owner_of(admin, place, &names.place)
        .await
        .map_err(db("looking up the place"))?;
    match owner {
        Some(owner) if owner != names.owner => Err(Problem::Conflict(format!(
            "{} {} exists and is owned by {owner}, not by Bulkhead's role {}; rename or drop it.",
            match isolation {
                DatabaseIsolation::Schema => "Schema",
                DatabaseIsolation::Database => "Database",
            },
            names.place,
            names.owner
        ))),
        _ => Ok(()),
    }
}

/// Writes the credentials Secret when it differs from what it should say.
#[allow(clippy::too_many_arguments)]
async fn write_secret(
    ctx: &Context,
    plan: &Plan,
    namespace: &str,
    found: &Found,
    location: &Location,
    password: &str,
    revision: Option<&str>,
    server: &str,
) -> Result<(), DatabaseError> {
    let data = credentials::secret_data(location, password);
    let subject = plan.subject(false);
    let labels = subject.owner_labels();
    if let Some(existing) = &found.secret {
        let same_revision = existing
            .annotations()
            .get(credentials::REVISION_ANNOTATION)
            .map(String::as_str)
            == revision
            && existing
                .annotations()
                .get(credentials::SERVER_ANNOTATION)
                .map(String::as_str)
                == Some(server);
        let labelled = labels.iter().all(|(k, v)| existing.labels().get(k) == Some(v));
        if existing.data.as_ref() == Some(&data) && same_revision && labelled {
            return Ok(());
        }
    }
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(credentials::SECRET_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(
                revision
                    .map(|r| (credentials::REVISION_ANNOTATION.to_owned(), r.to_owned()))
                    .into_iter()
                    .chain([(credentials::SERVER_ANNOTATION.to_owned(), server.to_owned())])
                    .collect(),
            ),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    let mut value = serde_json::to_value(&secret).map_err(|e| DatabaseError::Secret {
        action: "encoding",
        namespace: namespace.to_owned(),
        source: kube::Error::SerdeError(e),
    })?;
    value["apiVersion"] = "v1".into();
    value["kind"] = "Secret".into();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        credentials::SECRET_NAME,
        &PatchParams::apply(crate::cluster::FIELD_MANAGER).force(),
        &Patch::Apply(&value),
    )
    .await
    .map_err(|source| DatabaseError::Secret {
        action: "writing",
        namespace: namespace.to_owned(),
        source,
    })?;
    Ok(())
}

/// What deleting a resource with `deletionPolicy: Delete` has to do in the database, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teardown {
    /// Done (or nothing to do).
    Done,
    /// Cannot be done yet; the message says why.
    Waiting(String),
}

/// Drops the place and the roles of a resource whose database was ever enabled (idempotent).
pub async fn teardown(
    ctx: &Context,
    tenant: &str,
    customer: Option<&str>,
    isolation: DatabaseIsolation,
) -> Teardown {
    let Some(database) = ctx.database.as_ref() else {
        return Teardown::Waiting(
            "Deletion waits to drop the database, but the operator runs without --postgres-admin-secret; \
             configure it, or remove the finalizer to keep the data."
                .into(),
        );
    };
    let wanted = match teardown_server(ctx, database, tenant, customer).await {
        Ok(wanted) => wanted,
        Err(message) => return Teardown::Waiting(format!("Deletion waits to drop the database: {message}")),
    };
    let handle = match database.handle(wanted.as_deref()) {
        Ok(handle) => handle,
        Err(unknown) => {
            return Teardown::Waiting(format!(
                "Deletion waits to drop the database: {unknown}; configure that server again, or remove the \
                 finalizer to keep the data."
            ));
        }
    };
    let names = naming::names(tenant, customer);
    let result = async {
        let server = handle.server(&ctx.client).await?;
        let db_name = database_of(&server, isolation, &names);
        let _lock = handle.locks.lock(&db_name).await;
        let admin = server.admin().await?;
        // Only what Bulkhead created: a foreign role of the same name is left alone.
        for role in [&names.owner, &names.login] {
            if let Some(row) = provision::role_row(&admin, role)
                .await
                .map_err(|e| from_db("looking up roles", e))?
                && !row.is_bulkheads()
            {
                return Err(ConnectError::Server {
                    what: "dropping the roles",
                    failure: Failure::Failed,
                    message: format!("role {role} is not Bulkhead's; drop it by hand"),
                });
            }
        }
        match isolation {
            DatabaseIsolation::Schema => provision::drop_schema(&admin, &names).await,
            DatabaseIsolation::Database => provision::drop_database(&admin, &names).await,
        }
        .map_err(|e| from_db("dropping the database objects", e))
    }
    .await;
    match result {
        Ok(()) => {
            let mut owners = handle.owners();
            owners.remove(&names.owner);
            owners.remove(&names.login);
            Teardown::Done
        }
        Err(err) => {
            let state = not_ready(handle, &err).await;
            let message = match state {
                DatabaseState::NotReady { message, .. } | DatabaseState::Ready(message) => message,
            };
            Teardown::Waiting(format!("Deletion waits to drop the database: {message}"))
        }
    }
}

/// The server a resource being deleted was provisioned on: the one its credentials Secret names, else (no
/// Secret) the one its spec resolves to, a Customer's own or else its Tenant's.
async fn teardown_server(
    ctx: &Context,
    database: &Database,
    tenant: &str,
    customer: Option<&str>,
) -> Result<Option<String>, String> {
    let namespace = bulkhead_crds::naming::namespace(tenant, customer);
    let found = read_secret(ctx, &namespace).await.map_err(|e| e.to_string())?;
    if let Some(server) = found.server(&database.settings.default_server) {
        return Ok(Some(server.to_owned()));
    }
    let tenant_server = || {
        ctx.tenants
            .get(&kube::runtime::reflector::ObjectRef::new(tenant))
            .and_then(|t| t.spec.database.server.clone())
    };
    Ok(match customer {
        Some(name) => ctx
            .customers
            .get(&kube::runtime::reflector::ObjectRef::new(name))
            .and_then(|c| c.spec.database.server.clone())
            .or_else(tenant_server),
        None => tenant_server(),
    })
}

/// Tells the Tenant or Customer whose session was terminated, with an Event on it.
async fn report_lock(ctx: &Context, lock: &CrossLock) {
    let owner = match &lock.owner {
        Some(Owner::Tenant(name)) => format!("Tenant {name}"),
        Some(Owner::Customer(name)) => format!("Customer {name}"),
        None => "another tenant".to_owned(),
    };
    let note = format!(
        "A session of role {} held a lock on {} of {owner}, taken through a catalog function that locks before \
         checking privileges; the session was terminated so that the other tenant is not blocked.",
        lock.role, lock.relation
    );
    warn!(role = %lock.role, relation = %lock.relation, terminated = lock.terminated, "a session held a lock on another tenant's relation");
    let reason = "DatabaseLockAcrossTenants";
    match &lock.holder {
        Some(Owner::Tenant(name)) => {
            if let Some(tenant) = ctx.tenants.get(&kube::runtime::reflector::ObjectRef::new(name)) {
                events::publish(
                    &ctx.recorder,
                    tenant.as_ref(),
                    EventType::Warning,
                    reason,
                    "Terminate",
                    note,
                )
                .await;
            }
        }
        Some(Owner::Customer(name)) => {
            if let Some(customer) = ctx.customers.get(&kube::runtime::reflector::ObjectRef::new(name)) {
                events::publish(
                    &ctx.recorder,
                    customer.as_ref(),
                    EventType::Warning,
                    reason,
                    "Terminate",
                    note,
                )
                .await;
            }
        }
        None => {}
    }
}

/// Sweeps the shared database of every configured server every `grant_sweep`: asks for the repair of each tenant whose objects carry a grant
/// across its boundary, so a grant made between two resyncs lives seconds, not a resync interval (the repair
/// itself, revoke, Event and metric, is the reconcile's); and terminates every session of one tenant that holds
/// a lock on another tenant's relation, with an Event on the tenant whose session it was.
pub async fn sweep_grants(ctx: Arc<Context>, triggers: Triggers) {
    let Some(database) = ctx.database.as_ref() else {
        return;
    };
    let mut ticks = tokio::time::interval(database.settings.grant_sweep);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for handle in database.handles() {
            match handle.sweep().await {
                Ok(found) => {
                    for owner in found.grants {
                        debug!(
                            ?owner,
                            server = handle.name(),
                            "a grant crosses a tenant's boundary; repairing"
                        );
                        triggers.send(owner);
                    }
                    for lock in &found.locks {
                        report_lock(&ctx, lock).await;
                    }
                }
                Err(err) => {
                    debug!(server = handle.name(), error = %err, category = err.category(), "grant sweep failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bulkhead_crds::v1alpha1::{Customer, Tenant};
    use serde_json::json;

    use crate::pipeline::managed::{customer_plan, tenant_plan};
    use crate::settings::{DatabaseSettings, parse_server};

    fn tenant(server: Option<&str>) -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "msp"},
            "spec": {"orgId": "org_msp", "stack": {"image": "registry.example.com/p:1"},
                     "database": {"enabled": true, "server": server}}
        }))
        .unwrap()
    }

    fn customer(server: Option<&str>) -> Customer {
        serde_json::from_value(json!({
            "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Customer", "metadata": {"name": "client"},
            "spec": {"tenantRef": "msp", "orgId": "org_client", "database": {"enabled": true, "server": server}}
        }))
        .unwrap()
    }

    #[test]
    fn a_customer_uses_its_own_server_else_its_tenants() {
        let settings = {
            let mut s = DatabaseSettings::new("ops/pg".parse().unwrap());
            for text in ["name=eu-2,secret=ops/pg-eu", "name=us-1,secret=ops/pg-us"] {
                let (name, server) = parse_server(text).unwrap();
                s.servers.insert(name, server);
            }
            s
        };
        let server_of = |plan: &crate::pipeline::managed::Plan| {
            assert_eq!(
                plan.subject(false).database_server,
                plan.database.server.as_deref()
            );
            settings
                .resolve(plan.database.server.as_deref())
                .map(str::to_owned)
                .map_err(|e| e.wanted)
        };
        assert_eq!(server_of(&tenant_plan(&tenant(None))), Ok("default".into()));
        assert_eq!(server_of(&tenant_plan(&tenant(Some("eu-2")))), Ok("eu-2".into()));
        assert_eq!(server_of(&tenant_plan(&tenant(Some("mars")))), Err("mars".into()));
        // A Customer without the field sits next to its Tenant; with it, on its own choice.
        assert_eq!(
            server_of(&customer_plan(&customer(None), &tenant(Some("eu-2")))),
            Ok("eu-2".into())
        );
        assert_eq!(
            server_of(&customer_plan(&customer(None), &tenant(None))),
            Ok("default".into())
        );
        assert_eq!(
            server_of(&customer_plan(&customer(Some("us-1")), &tenant(Some("eu-2")))),
            Ok("us-1".into())
        );
        assert_eq!(
            server_of(&customer_plan(&customer(Some("mars")), &tenant(Some("eu-2")))),
            Err("mars".into()),
            "never another server"
        );
    }
}
