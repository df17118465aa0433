//! Connection capacity end to end: a real PostgreSQL (15 unless `BULKHEAD_PG_VERSION` says otherwise) with a
//! small `max_connections`, the real control plane and the operator under its own RBAC, with the admin of
//! `BULKHEAD_PG_ADMIN`. The CONNECTION LIMITs the operator hands out must fit the server: a Tenant that would
//! overbook it is refused (nothing created in Postgres) until another one frees its connections.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::time::Duration;

use bulkhead_crds::v1alpha1::{ResourceStatus, Tenant};
use bulkhead_e2e::operator::{OPERATOR_NAMESPACE, RunningOperator, install_rbac, postgres_admin_secret};
use bulkhead_e2e::postgres::Postgres;
use bulkhead_e2e::{ControlPlane, wait};
use bulkhead_operator::pipeline::conditions::database_reasons as reasons;
use bulkhead_operator::postgres::naming;
use bulkhead_operator::settings::{DatabaseSettings, Settings};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

/// Generous: a refused Tenant is retried every 10 s, and deletion goes through the finalizer.
const TIMEOUT: Duration = Duration::from_secs(60);
const SHARED_DB: &str = "bulkhead";
const ADMIN_SECRET: &str = "postgres-admin";
/// 20 connections, 3 for superusers: 17 for ordinary roles; the operator keeps 4, which leaves 13.
const SERVER_SETTINGS: [&str; 2] = ["max_connections=20", "superuser_reserved_connections=3"];
const RESERVE: u32 = 4;
const LIMIT: i32 = 5;

struct Fixture {
    // Dropped in reverse order: the operator before the server it talks to.
    pg: Postgres,
    _plane: ControlPlane,
    admin: Client,
    operator: Option<RunningOperator>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(op) = self.operator.take() {
            op.kill();
        }
    }
}

async fn start() -> Fixture {
    bulkhead_e2e::init_test_logging();
    let (plane, pg) = tokio::join!(
        ControlPlane::start_with_crds(),
        Postgres::start_with_settings(&SERVER_SETTINGS)
    );
    let (plane, pg) = (plane.expect("control plane"), pg.expect("postgres"));
    install_rbac(&plane).await.unwrap();
    let admin = plane.admin().await.unwrap();
    postgres_admin_secret(&admin, &pg, ADMIN_SECRET, SHARED_DB)
        .await
        .unwrap();
    let mut database = DatabaseSettings::new(format!("{OPERATOR_NAMESPACE}/{ADMIN_SECRET}").parse().unwrap());
    database.resync = Duration::from_secs(1);
    database.connection_reserve = RESERVE;
    let settings = Settings {
        database: Some(database),
        ..Settings::default()
    };
    let operator = RunningOperator::with_settings(&plane, settings).await.unwrap();
    Fixture {
        pg,
        _plane: plane,
        admin,
        operator: Some(operator),
    }
}

fn tenant(name: &str, isolation: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "orgId": format!("org_{name}"),
            "stack": {"image": "registry.example.com/portal:1.0", "replicas": 0},
            "database": {"enabled": true, "isolation": isolation, "connectionLimit": LIMIT},
            "deletionPolicy": "Delete"
        }
    }))
    .unwrap()
}

fn condition(status: Option<&ResourceStatus>, type_: &str) -> Option<(String, String, String)> {
    let c = status?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the Tenant's DatabaseReady condition has `reason`, and returns its status and message.
async fn wait_database(api: &Api<Tenant>, name: &str, reason: &str) -> (String, String) {
    wait::until(
        TIMEOUT,
        &format!("Tenant {name} DatabaseReady reason {reason}"),
        || async {
            let t = api.get(name).await.ok()?;
            let (status, r, message) = condition(t.status.as_ref(), "DatabaseReady")?;
            (r == reason).then_some((status, message))
        },
    )
    .await
    .unwrap()
}

/// The login role's connection limit, if the role exists.
async fn login_limit(pg: &Postgres, tenant: &str) -> Option<i32> {
    let client = pg.admin().await.unwrap();
    let names = naming::names(tenant, None);
    client
        .query_opt(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&names.login],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

async fn role_exists(pg: &Postgres, role: &str) -> bool {
    let client = pg.admin().await.unwrap();
    client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_never_overbook_the_server_and_a_refused_tenant_goes_through_once_room_frees_up() {
    let f = start().await;
    let api: Api<Tenant> = Api::all(f.admin.clone());

    // Two Tenants of 5 connections: 10 of the 13 the server has room for.
    for name in ["alpha", "beta"] {
        api.create(&PostParams::default(), &tenant(name, "Schema"))
            .await
            .unwrap();
        let (status, _) = wait_database(&api, name, reasons::PROVISIONED).await;
        assert_eq!(status, "True");
        assert_eq!(login_limit(&f.pg, name).await, Some(LIMIT));
    }

    // A third would take 15: refused, with the numbers, and nothing of it in Postgres. Database isolation, so
    // the check is shown to count roles across databases.
    api.create(&PostParams::default(), &tenant("gamma", "Database"))
        .await
        .unwrap();
    let (status, message) = wait_database(&api, "gamma", reasons::CONNECTION_CAPACITY_EXCEEDED).await;
    assert_eq!(status, "False");
    for numbers in [
        "connection limit of 5",
        "allows 17 connections",
        "4 are kept in reserve",
        "10 are already allotted",
        "leaving 3",
    ] {
        assert!(message.contains(numbers), "{message:?} lacks {numbers:?}");
    }
    let gamma = naming::names("gamma", None);
    assert!(!role_exists(&f.pg, &gamma.login).await, "no login role for gamma");
    assert!(!role_exists(&f.pg, &gamma.owner).await, "no owner role for gamma");
    let databases: i64 =
        f.pg.admin()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&gamma.place],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(databases, 0, "no database for gamma");
    let event = wait::until(TIMEOUT, "a ConnectionCapacityExceeded Event", || async {
        bulkhead_e2e::events::notes(&f.admin, reasons::CONNECTION_CAPACITY_EXCEEDED)
            .await
            .unwrap()
            .into_iter()
            .find(|n| n.contains(&gamma.login))
    })
    .await
    .unwrap();
    assert!(event.contains("10 are already allotted"), "{event}");

    // The Tenants already provisioned are not refused on their resyncs (every second here) however full the
    // server is.
    for name in ["alpha", "beta"] {
        let t = api.get(name).await.unwrap();
        let (status, reason, _) = condition(t.status.as_ref(), "DatabaseReady").unwrap();
        assert_eq!((status.as_str(), reason.as_str()), ("True", reasons::PROVISIONED));
    }

    // Deleting alpha (deletionPolicy Delete) drops its role and frees 5 connections: gamma goes through.
    api.delete("alpha", &DeleteParams::default()).await.unwrap();
    wait::until(TIMEOUT, "Tenant alpha gone", || async {
        api.get_opt("alpha").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    assert_eq!(login_limit(&f.pg, "alpha").await, None, "alpha's role dropped");
    let (status, _) = wait_database(&api, "gamma", reasons::PROVISIONED).await;
    assert_eq!(status, "True");
    assert_eq!(login_limit(&f.pg, "gamma").await, Some(LIMIT));
    assert_eq!(login_limit(&f.pg, "beta").await, Some(LIMIT));
}
