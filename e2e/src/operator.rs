//! Running the operator in-process against a [`ControlPlane`], under its own least-privilege RBAC.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use bulkhead_operator::process::rbac;
use bulkhead_operator::{Options, RunError};

use crate::control_plane::{FIELD_MANAGER, OPERATOR_USER};
use crate::{ControlPlane, HarnessError};

/// The operator's namespace in tests (holds its Lease).
pub const OPERATOR_NAMESPACE: &str = "bulkhead-system";

async fn apply<K>(api: &Api<K>, object: &K, name: &str) -> Result<(), HarnessError>
where
    K: kube::Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
    .map_err(|source| HarnessError::Api {
        what: format!("applying {name}"),
        source,
    })
}

/// Creates `database` on `pg`, owned by the operator's admin ([`crate::postgres::Postgres::operator_admin`]: the
/// superuser, or a CREATEROLE CREATEDB role as on managed services, by `BULKHEAD_PG_ADMIN`), and stores that
/// admin's DSN to it (plain TCP) in the Secret `name` in [`OPERATOR_NAMESPACE`], under the key `dsn`: what the
/// operator's `--postgres-admin-secret` points at. The operator's user may read that Secret by name, as the
/// chart's Role allows it ([`rbac::admin_secret_role`]).
pub async fn postgres_admin_secret(
    client: &Client,
    pg: &crate::postgres::Postgres,
    name: &str,
    database: &str,
) -> Result<(), HarnessError> {
    let manifest =
        |e: &dyn std::fmt::Display| HarnessError::Manifest(format!("creating database {database}: {e}"));
    pg.create_database_for_admin(database)
        .await
        .map_err(|e| manifest(&e))?;
    let dsn = pg.operator_admin_dsn(database).await.map_err(|e| manifest(&e))?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
        "stringData": {"dsn": format!("{dsn}?sslmode=disable")}
    }))
    .map_err(|e| HarnessError::Manifest(e.to_string()))?;
    Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .map(drop)
        .map_err(|source| HarnessError::Api {
            what: format!("creating Secret {OPERATOR_NAMESPACE}/{name}"),
            source,
        })?;
    apply(
        &Api::<Role>::namespaced(client.clone(), OPERATOR_NAMESPACE),
        &rbac::admin_secret_role(OPERATOR_NAMESPACE, name),
        rbac::POSTGRES_ADMIN,
    )
    .await?;
    apply(
        &Api::<RoleBinding>::namespaced(client.clone(), OPERATOR_NAMESPACE),
        &rbac::admin_secret_binding(OPERATOR_NAMESPACE, operator_user()),
        rbac::POSTGRES_ADMIN,
    )
    .await
}

/// The operator's user as an RBAC subject.
fn operator_user() -> Subject {
    Subject {
        kind: "User".into(),
        name: OPERATOR_USER.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    }
}

/// Creates the operator's namespace and binds the chart's ClusterRole and lease Role to the operator user.
pub async fn install_rbac(plane: &ControlPlane) -> Result<(), HarnessError> {
    let admin = plane.admin().await?;
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(OPERATOR_NAMESPACE.into()),
            ..Default::default()
        },
        ..Namespace::default()
    };
    apply(&Api::<Namespace>::all(admin.clone()), &ns, OPERATOR_NAMESPACE).await?;
    let (cluster_binding, binding) = rbac::bindings(OPERATOR_NAMESPACE, operator_user());
    apply(
        &Api::<ClusterRole>::all(admin.clone()),
        &rbac::cluster_role(),
        rbac::NAME,
    )
    .await?;
    apply(
        &Api::<ClusterRoleBinding>::all(admin.clone()),
        &cluster_binding,
        rbac::NAME,
    )
    .await?;
    apply(
        &Api::<Role>::namespaced(admin.clone(), OPERATOR_NAMESPACE),
        &rbac::lease_role(OPERATOR_NAMESPACE),
        rbac::NAME,
    )
    .await?;
    apply(
        &Api::<RoleBinding>::namespaced(admin, OPERATOR_NAMESPACE),
        &binding,
        rbac::NAME,
    )
    .await?;
    Ok(())
}

/// An operator running in a task of the test's runtime.
#[derive(Debug)]
pub struct RunningOperator {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), RunError>>,
    /// Where its `/metrics`, `/livez` and `/readyz` are served.
    pub admin_addr: SocketAddr,
}

impl RunningOperator {
    /// Starts the operator with `client` (use [`ControlPlane::operator`] to run it under its own RBAC).
    pub async fn start(client: Client, options: Options) -> Result<Self, HarnessError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| HarnessError::Io {
                what: "binding the admin port".into(),
                source,
            })?;
        let admin_addr = listener.local_addr().map_err(|source| HarnessError::Io {
            what: "admin address".into(),
            source,
        })?;
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(bulkhead_operator::run(client, listener, options, async move {
            let _ = rx.await;
        }));
        Ok(RunningOperator {
            stop: Some(tx),
            handle,
            admin_addr,
        })
    }

    /// Starts the operator under its own RBAC on `plane`, with `settings` and the default options otherwise.
    pub async fn with_settings(
        plane: &ControlPlane,
        settings: bulkhead_operator::settings::Settings,
    ) -> Result<Self, HarnessError> {
        let options = Options {
            settings,
            ..Options::default()
        };
        Self::start(plane.operator().await?, options).await
    }

    /// Asks it to stop and waits until it has.
    pub async fn stop(mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.handle).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }

    /// Kills it on the spot, in the middle of whatever it is doing (like `kill -9`).
    pub fn kill(self) {
        self.handle.abort();
    }

    /// Whether it has returned.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// GETs a path from a local HTTP endpoint and returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), HarnessError> {
    crate::http::get(addr, path, &[]).await
}

/// What tests of the operator's database step start from: a control plane with the CRDs and the operator's
/// RBAC, a PostgreSQL of the selected major and admin kind with the admin Secret (shared database `bulkhead`),
/// and the operator running with `database` settings adjusted by the test. Dropping it stops the operator
/// before the server.
pub struct DatabaseFixture {
    operator: Option<RunningOperator>,
    /// The PostgreSQL server.
    pub pg: crate::postgres::Postgres,
    /// The control plane.
    pub plane: ControlPlane,
    /// A cluster-admin client.
    pub kube: Client,
}

impl DatabaseFixture {
    /// The Secret holding the admin DSN.
    pub const ADMIN_SECRET: &'static str = "postgres-admin";
    /// The shared database.
    pub const SHARED_DB: &'static str = "bulkhead";

    /// Starts everything; `adjust` changes the database settings (resync, sweep) before the operator starts.
    pub async fn start(
        adjust: impl FnOnce(&mut bulkhead_operator::settings::DatabaseSettings),
    ) -> Result<Self, HarnessError> {
        let (plane, pg) = tokio::join!(
            ControlPlane::start_with_crds(),
            crate::postgres::Postgres::start()
        );
        let plane = plane?;
        let pg = pg.map_err(|e| HarnessError::Manifest(format!("starting PostgreSQL: {e}")))?;
        install_rbac(&plane).await?;
        let kube = plane.admin().await?;
        postgres_admin_secret(&kube, &pg, Self::ADMIN_SECRET, Self::SHARED_DB).await?;
        let secret = format!("{OPERATOR_NAMESPACE}/{}", Self::ADMIN_SECRET)
            .parse()
            .map_err(|e| HarnessError::Manifest(format!("admin Secret reference: {e}")))?;
        let mut database = bulkhead_operator::settings::DatabaseSettings::new(secret);
        adjust(&mut database);
        let settings = bulkhead_operator::settings::Settings {
            database: Some(database),
            ..Default::default()
        };
        let operator = RunningOperator::with_settings(&plane, settings).await?;
        Ok(DatabaseFixture {
            operator: Some(operator),
            pg,
            plane,
            kube,
        })
    }

    /// Creates a Tenant with a Schema-isolated database (connection limit 3), waits until it is provisioned and
    /// returns its credentials Secret's `DATABASE_URL`.
    pub async fn schema_tenant(&self, name: &str) -> Result<String, HarnessError> {
        create_schema_tenant(&self.kube, name).await?;
        tenant_database_url(&self.kube, name).await
    }

    /// Waits for an Event with `reason` whose note contains `mentions`, and returns the note.
    pub async fn event(&self, reason: &str, mentions: &str) -> Result<String, HarnessError> {
        crate::wait::until(
            std::time::Duration::from_secs(30),
            &format!("an Event {reason} mentioning {mentions}"),
            || async {
                crate::events::notes(&self.kube, reason)
                    .await
                    .ok()?
                    .into_iter()
                    .find(|n| n.contains(mentions))
            },
        )
        .await
    }
}

impl DatabaseFixture {
    /// Stops the operator on the spot, so that what a test breaks stays broken.
    pub fn kill_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.kill();
        }
    }
}

impl std::fmt::Debug for DatabaseFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseFixture")
            .field("operator", &self.operator)
            .field("plane", &self.plane)
            .finish_non_exhaustive()
    }
}

impl Drop for DatabaseFixture {
    fn drop(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.kill();
        }
    }
}

/// Creates a Tenant with a Schema-isolated database (connection limit 3) and a stack of no replicas.
pub async fn create_schema_tenant(kube: &Client, name: &str) -> Result<(), HarnessError> {
    use bulkhead_crds::v1alpha1::Tenant;
    let tenant: Tenant = serde_json::from_value(serde_json::json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "orgId": format!("org_{name}"),
            "stack": {"image": "registry.example.com/portal:1.0", "replicas": 0},
            "database": {"enabled": true, "isolation": "Schema", "connectionLimit": 3}
        }
    }))
    .map_err(|e| HarnessError::Manifest(e.to_string()))?;
    Api::<Tenant>::all(kube.clone())
        .create(&PostParams::default(), &tenant)
        .await
        .map(drop)
        .map_err(|source| HarnessError::Api {
            what: format!("creating Tenant {name}"),
            source,
        })
}

/// Waits until the Tenant's database is provisioned (`DatabaseReady=True`; its credentials Secret is written
/// before the role exists) and returns the Secret's `DATABASE_URL`.
pub async fn tenant_database_url(kube: &Client, name: &str) -> Result<String, HarnessError> {
    use bulkhead_crds::v1alpha1::Tenant;
    let tenants = Api::<Tenant>::all(kube.clone());
    crate::wait::until(
        std::time::Duration::from_secs(60),
        &format!("Tenant {name} DatabaseReady"),
        || async {
            let status = tenants.get(name).await.ok()?.status?;
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "DatabaseReady" && c.status == "True")
                .then_some(())
        },
    )
    .await?;
    let secret = Api::<Secret>::namespaced(kube.clone(), &format!("bk-{name}"))
        .get("bulkhead-database")
        .await
        .map_err(|source| HarnessError::Api {
            what: format!("reading the credentials Secret of {name}"),
            source,
        })?;
    secret
        .data
        .and_then(|data| String::from_utf8(data.get("DATABASE_URL")?.0.clone()).ok())
        .ok_or_else(|| HarnessError::Manifest(format!("{name}'s Secret has no DATABASE_URL")))
}
