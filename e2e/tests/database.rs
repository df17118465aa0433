//! The operator's database provisioning end to end: a real control plane, a real PostgreSQL (15 unless
//! `BULKHEAD_PG_VERSION` says otherwise), and the operator under its own RBAC reading the admin DSN from a Secret:
//! the superuser's, or with `BULKHEAD_PG_ADMIN=createrole` a CREATEROLE CREATEDB role's that owns the shared
//! database, as on managed services. A stack is stood in for by a client that knows nothing but the credentials
//! Secret's `DATABASE_URL`; the superuser plays the out-of-band actor and the observer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::time::Duration;

use bulkhead_crds::v1alpha1::{ResourceStatus, Tenant};
use bulkhead_e2e::operator::{OPERATOR_NAMESPACE, RunningOperator, install_rbac, postgres_admin_secret};
use bulkhead_e2e::postgres::{AdminKind, Postgres, SUPERUSER};
use bulkhead_e2e::{ControlPlane, wait};
use bulkhead_operator::postgres::naming::{self, Names};
use bulkhead_operator::settings::{DatabaseSettings, Settings};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);
const SHARED_DB: &str = "bulkhead";
const ADMIN_SECRET: &str = "postgres-admin";

struct Fixture {
    // Dropped in reverse order: the operator before the server it talks to.
    pg: Postgres,
    _plane: ControlPlane,
    admin: Client,
    operator: Option<RunningOperator>,
}

impl Fixture {
    /// Control plane, Postgres with the shared database, the admin Secret, and the operator; `configured`
    /// false starts the operator without the admin Secret flag.
    async fn start(configured: bool) -> Fixture {
        bulkhead_e2e::init_test_logging();
        let (plane, pg) = tokio::join!(ControlPlane::start_with_crds(), Postgres::start());
        let (plane, pg) = (plane.expect("control plane"), pg.expect("postgres"));
        install_rbac(&plane).await.unwrap();
        let admin = plane.admin().await.unwrap();
        postgres_admin_secret(&admin, &pg, ADMIN_SECRET, SHARED_DB)
            .await
            .unwrap();
        let mut settings = Settings::default();
        if configured {
            let mut database =
                DatabaseSettings::new(format!("{OPERATOR_NAMESPACE}/{ADMIN_SECRET}").parse().unwrap());
            // Drift inside Postgres is found by looking: look every second here.
            database.resync = Duration::from_secs(1);
            settings.database = Some(database);
        }
        let operator = RunningOperator::with_settings(&plane, settings).await.unwrap();
        Fixture {
            pg,
            _plane: plane,
            admin,
            operator: Some(operator),
        }
    }

    fn tenants(&self) -> Api<Tenant> {
        Api::all(self.admin.clone())
    }

    async fn superuser(&self, database: &str) -> tokio_postgres::Client {
        self.pg
            .connect_as(SUPERUSER, self.pg.superuser_password(), database)
            .await
            .unwrap()
    }

    /// The credentials Secret's data as strings.
    async fn credentials(&self, ns: &str) -> Option<std::collections::BTreeMap<String, String>> {
        let secret = Api::<Secret>::namespaced(self.admin.clone(), ns)
            .get_opt("bulkhead-database")
            .await
            .unwrap()?;
        Some(
            secret
                .data?
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
                .collect(),
        )
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(op) = self.operator.take() {
            op.kill();
        }
    }
}

fn tenant(name: &str, org: &str, isolation: &str, policy: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "orgId": org,
            "stack": {"image": "registry.example.com/portal:1.0", "replicas": 0},
            "database": {"enabled": true, "isolation": isolation, "connectionLimit": 5},
            "deletionPolicy": policy
        }
    }))
    .unwrap()
}

fn condition(status: Option<&ResourceStatus>, type_: &str) -> Option<(String, String, String)> {
    let c = status?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the Tenant's `type_` condition has `reason`, and returns its message.
async fn wait_condition(f: &Fixture, name: &str, type_: &str, reason: &str) -> String {
    let api = f.tenants();
    wait::until(
        TIMEOUT,
        &format!("Tenant {name} {type_} reason {reason}"),
        || async {
            let t = api.get(name).await.ok()?;
            let (_, r, message) = condition(t.status.as_ref(), type_)?;
            (r == reason).then_some(message)
        },
    )
    .await
    .unwrap()
}

async fn events_for(f: &Fixture, reason: &str) -> Vec<String> {
    bulkhead_e2e::events::notes(&f.admin, reason).await.unwrap()
}

async fn wait_event(f: &Fixture, reason: &str, mentions: &str) -> String {
    wait::until(
        TIMEOUT,
        &format!("an Event {reason} mentioning {mentions}"),
        || async {
            events_for(f, reason)
                .await
                .into_iter()
                .find(|n| n.contains(mentions))
        },
    )
    .await
    .unwrap()
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Whether `roles` exist, in order.
async fn roles_exist(client: &tokio_postgres::Client, names: &Names) -> [bool; 2] {
    let mut out = [false; 2];
    for (i, role) in [&names.owner, &names.login].into_iter().enumerate() {
        out[i] = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[role])
            .await
            .unwrap()
            .is_some();
    }
    out
}

async fn count(client: &tokio_postgres::Client, sql: &str, arg: &str) -> i64 {
    client.query_one(sql, &[&arg]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_gets_a_working_database_that_is_repaired_rotated_and_retained() {
    let f = Fixture::start(true).await;
    let api = f.tenants();
    api.create(
        &PostParams::default(),
        &tenant("acme", "org_acme", "Schema", "Retain"),
    )
    .await
    .unwrap();
    let message = wait_condition(&f, "acme", "DatabaseReady", "Provisioned").await;
    wait_condition(&f, "acme", "Ready", "Provisioned").await;
    let names = naming::names("acme", None);
    assert!(
        message.contains(&names.place) && message.contains(SHARED_DB),
        "{message}"
    );

    // The Secret appears, complete, and a client with nothing but its DATABASE_URL can migrate and query.
    let secret = f.credentials("bk-acme").await.expect("credentials Secret");
    assert_eq!(secret["username"], names.login);
    assert_eq!(secret["schema"], names.place);
    assert_eq!(secret["database"], SHARED_DB);
    assert_eq!(secret["host"], "127.0.0.1");
    assert_eq!(secret["port"], f.pg.port().to_string());
    assert!(secret["password"].len() >= 32);
    let url = secret["DATABASE_URL"].clone();
    let app = connect(&url).await.unwrap();
    app.batch_execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        .await
        .unwrap();
    app.execute("INSERT INTO notes (body) VALUES ($1)", &[&"hello"])
        .await
        .unwrap();
    let row = app
        .query_one("SELECT body, current_schema()::text FROM notes", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "hello");
    assert_eq!(
        row.get::<_, String>(1),
        names.place,
        "the table lives in the tenant's schema"
    );
    drop(app);

    // The stack reads the Secret by reference; the Deployment holds no credential.
    let deployment: Deployment = Api::namespaced(f.admin.clone(), "bk-acme")
        .get("stack")
        .await
        .unwrap();
    let text = serde_json::to_string(&deployment.spec).unwrap();
    assert!(
        text.contains(r#""secretKeyRef":{"key":"DATABASE_URL","name":"bulkhead-database""#),
        "{text}"
    );
    assert!(!text.contains(&secret["password"]));

    // Password changed out of band: set back to the Secret's, with an Event.
    let su = f.superuser(SHARED_DB).await;
    su.batch_execute(&format!("ALTER ROLE {} PASSWORD 'changed-by-hand'", names.login))
        .await
        .unwrap();
    assert!(connect(&url).await.is_err(), "the hand-set password is in force");
    wait::until(TIMEOUT, "the Secret's password to work again", || async {
        connect(&url).await.ok().map(|_| ())
    })
    .await
    .unwrap();
    wait_event(&f, "DatabasePasswordRepaired", &names.login).await;
    assert_eq!(
        f.credentials("bk-acme").await.unwrap()["password"],
        secret["password"],
        "not regenerated"
    );

    // Extra grants and attributes changed out of band, by someone with the admin's rights: revoked and reset,
    // with Events. A superuser admin also takes back a predefined role; an admin that is not one can only take
    // back what it could have granted, so the membership is in a role it made.
    let out_of_band = f.pg.connect_operator_admin(SHARED_DB).await.unwrap();
    let role = match f.pg.admin_kind() {
        AdminKind::Superuser => "pg_read_all_data",
        AdminKind::CreateRole => {
            out_of_band
                .batch_execute("CREATE ROLE helpdesk NOLOGIN")
                .await
                .unwrap();
            "helpdesk"
        }
    };
    out_of_band
        .batch_execute(&format!(
            "CREATE TABLE public.shared_secrets (x int); GRANT SELECT ON public.shared_secrets TO {l}; \
             GRANT {role} TO {l}; ALTER ROLE {l} CREATEDB CONNECTION LIMIT 500",
            l = names.login
        ))
        .await
        .unwrap();
    let note = wait_event(&f, "DatabaseGrantsRevoked", role).await;
    assert!(note.contains("public.shared_secrets"), "{note}");
    wait_event(&f, "DatabaseRoleRepaired", &names.login).await;
    let extra =
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1";
    assert_eq!(count(&su, extra, &names.login).await, 0);
    let table_grants = "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = $1 \
                        AND table_name = 'shared_secrets'";
    assert_eq!(count(&su, table_grants, &names.login).await, 0);
    let attributes = su
        .query_one(
            "SELECT rolcreatedb, rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&names.login],
        )
        .await
        .unwrap();
    assert_eq!(
        (attributes.get::<_, bool>(0), attributes.get::<_, i32>(1)),
        (false, 5)
    );

    // Rotation on request: a new password in the Secret and the role, the old one refused, pods rolled.
    api.patch(
        "acme",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"bulkhead.dev/rotate-database-password": "r1"}}})),
    )
    .await
    .unwrap();
    let rotated = wait::until(TIMEOUT, "a rotated password", || async {
        let now = f.credentials("bk-acme").await?;
        (now["password"] != secret["password"]).then_some(now)
    })
    .await
    .unwrap();
    wait::until(TIMEOUT, "the rotated password to work", || async {
        connect(&rotated["DATABASE_URL"]).await.ok().map(|_| ())
    })
    .await
    .unwrap();
    assert!(connect(&url).await.is_err(), "the old password is gone");
    wait_event(&f, "DatabasePasswordRotated", &names.login).await;
    let pods: Deployment = Api::namespaced(f.admin.clone(), "bk-acme")
        .get("stack")
        .await
        .unwrap();
    let revision = pods
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert_eq!(
        revision
            .get("bulkhead.dev/credentials-revision")
            .map(String::as_str),
        Some("r1")
    );

    // Retain: the Tenant goes; schema, table, roles and Secret stay.
    api.delete("acme", &DeleteParams::default()).await.unwrap();
    wait::until(TIMEOUT, "Tenant acme gone", || async {
        api.get_opt("acme").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    let schemas = "SELECT count(*) FROM pg_namespace WHERE nspname = $1";
    assert_eq!(count(&su, schemas, &names.place).await, 1);
    assert_eq!(roles_exist(&su, &names).await, [true, true]);
    let kept = connect(&rotated["DATABASE_URL"]).await.unwrap();
    let body: String = kept
        .query_one("SELECT body FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(body, "hello");
    assert!(f.credentials("bk-acme").await.is_some(), "Secret kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_conflicts_and_delete_are_reported_and_handled() {
    let mut f = Fixture::start(true).await;
    let api = f.tenants();
    let su = f.superuser(SHARED_DB).await;

    // A role with Bulkhead's name that Bulkhead did not create: a NameConflict, and the role is untouched.
    let taken = naming::names("initech", None);
    su.batch_execute(&format!("CREATE ROLE {} LOGIN CREATEDB", taken.login))
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &tenant("initech", "org_initech", "Schema", "Delete"),
    )
    .await
    .unwrap();
    let message = wait_condition(&f, "initech", "DatabaseReady", "NameConflict").await;
    assert!(message.contains(&taken.login), "{message}");
    wait_condition(&f, "initech", "Ready", "DatabaseNotReady").await;
    let createdb = "SELECT count(*) FROM pg_roles WHERE rolname = $1 AND rolcreatedb";
    assert_eq!(
        count(&su, createdb, &taken.login).await,
        1,
        "a foreign role is left alone"
    );
    let schemas = "SELECT count(*) FROM pg_namespace WHERE nspname = $1";
    assert_eq!(count(&su, schemas, &taken.place).await, 0);

    // Database isolation with deletionPolicy Delete.
    api.create(
        &PostParams::default(),
        &tenant("globex", "org_globex", "Database", "Delete"),
    )
    .await
    .unwrap();
    wait_condition(&f, "globex", "Ready", "Provisioned").await;
    let names = naming::names("globex", None);
    let secret = f.credentials("bk-globex").await.unwrap();
    assert_eq!(secret["database"], names.place);
    let app = connect(&secret["DATABASE_URL"]).await.unwrap();
    app.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    drop(app);

    // Postgres down: DatabaseReady and Ready go False with Unreachable; the rest stays; back up, it recovers.
    drop(su);
    f.pg.pause();
    let message = wait_condition(&f, "globex", "DatabaseReady", "Unreachable").await;
    assert!(!message.contains(f.pg.superuser_password()), "{message}");
    let (_, admin_password) = f.pg.operator_admin().await.unwrap();
    assert!(!message.contains(&admin_password), "{message}");
    let t = api.get("globex").await.unwrap();
    assert_eq!(
        condition(t.status.as_ref(), "Ready").unwrap().1,
        "DatabaseNotReady"
    );
    assert_eq!(condition(t.status.as_ref(), "NetworkIsolated").unwrap().0, "True");
    assert_eq!(condition(t.status.as_ref(), "Routable").unwrap().0, "True");
    f.pg.resume().await.unwrap();
    wait_condition(&f, "globex", "DatabaseReady", "Provisioned").await;
    wait_condition(&f, "globex", "Ready", "Provisioned").await;

    // Delete: the database and both roles are dropped before the Tenant goes.
    api.delete("globex", &DeleteParams::default()).await.unwrap();
    wait::until(TIMEOUT, "Tenant globex gone", || async {
        api.get_opt("globex").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    let su = f.superuser(SHARED_DB).await;
    let databases = "SELECT count(*) FROM pg_database WHERE datname = $1";
    assert_eq!(count(&su, databases, &names.place).await, 0);
    assert_eq!(roles_exist(&su, &names).await, [false, false]);
    wait_event(&f, "DatabaseDropped", "dropped").await;

    // The conflicting Tenant's deletion leaves the foreign role alone too.
    api.delete("initech", &DeleteParams::default()).await.unwrap();
    let message = wait_condition(&f, "initech", "Ready", "Deleting").await;
    assert!(message.contains("not Bulkhead's"), "{message}");
    assert_eq!(count(&su, createdb, &taken.login).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_secret_the_database_is_not_configured() {
    let f = Fixture::start(false).await;
    f.tenants()
        .create(
            &PostParams::default(),
            &tenant("hooli", "org_hooli", "Schema", "Delete"),
        )
        .await
        .unwrap();
    let message = wait_condition(&f, "hooli", "DatabaseReady", "NotConfigured").await;
    assert!(message.contains("--postgres-admin-secret"), "{message}");
    wait_condition(&f, "hooli", "Ready", "DatabaseNotReady").await;
    assert!(
        f.credentials("bk-hooli").await.is_none(),
        "no Secret without a server"
    );
    let t = f.tenants().get("hooli").await.unwrap();
    assert!(t.finalizers().iter().any(|x| x == "bulkhead.dev/cleanup"));
}
