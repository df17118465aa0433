//! Several PostgreSQL servers end to end: a real control plane, two real PostgreSQL servers, and the operator
//! under its own RBAC configured with both (the first as the default server, the second named `eu-2`). Each
//! Tenant's schema, roles, credentials and egress policy are on the server its `spec.database.server` names (a
//! Customer without the field follows its Tenant), on that server only; a Tenant naming a server the operator
//! does not know gets nothing anywhere; deletion drops on the server the place is on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::collections::BTreeMap;
use std::time::Duration;

use bulkhead_crds::v1alpha1::{Customer, ResourceStatus, Tenant};
use bulkhead_e2e::operator::{OPERATOR_NAMESPACE, RunningOperator, install_rbac, postgres_admin_secret};
use bulkhead_e2e::postgres::{Postgres, SUPERUSER};
use bulkhead_e2e::{ControlPlane, wait};
use bulkhead_operator::postgres::credentials;
use bulkhead_operator::postgres::naming::{self, Names};
use bulkhead_operator::process::rbac;
use bulkhead_operator::settings::{DatabaseSettings, PostgresEndpoint, ServerSettings, Settings};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);
const SHARED_DB: &str = "bulkhead";
const DEFAULT_SECRET: &str = "postgres-admin";
const EU_SECRET: &str = "postgres-admin-eu-2";
const EU: &str = "eu-2";

struct Fixture {
    // Dropped in reverse order: the operator before the servers it talks to.
    default: Postgres,
    eu: Postgres,
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

impl Fixture {
    async fn start() -> Fixture {
        bulkhead_e2e::init_test_logging();
        let (plane, default, eu) = tokio::join!(
            ControlPlane::start_with_crds(),
            Postgres::start(),
            Postgres::start()
        );
        let (plane, default, eu) = (
            plane.expect("control plane"),
            default.expect("postgres"),
            eu.expect("postgres"),
        );
        install_rbac(&plane).await.unwrap();
        let admin = plane.admin().await.unwrap();
        postgres_admin_secret(&admin, &default, DEFAULT_SECRET, SHARED_DB)
            .await
            .unwrap();
        postgres_admin_secret(&admin, &eu, EU_SECRET, SHARED_DB)
            .await
            .unwrap();
        // The chart's Role with both Secrets by name (each call above names only its own).
        let mut role = rbac::admin_secret_role(OPERATOR_NAMESPACE, DEFAULT_SECRET);
        for rule in role.rules.iter_mut().flatten() {
            rule.resource_names = Some(vec![DEFAULT_SECRET.into(), EU_SECRET.into()]);
        }
        Api::<Role>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
            .patch(
                rbac::POSTGRES_ADMIN,
                &PatchParams::apply("database-servers-test").force(),
                &Patch::Apply(&role),
            )
            .await
            .unwrap();

        let mut database =
            DatabaseSettings::new(format!("{OPERATOR_NAMESPACE}/{DEFAULT_SECRET}").parse().unwrap());
        database.resync = Duration::from_secs(1);
        database.servers.insert(
            EU.into(),
            ServerSettings {
                admin_secret: format!("{OPERATOR_NAMESPACE}/{EU_SECRET}").parse().unwrap(),
                host: None,
                port: None,
                endpoint: Some(endpoint(&eu)),
            },
        );
        let settings = Settings {
            postgres: Some(endpoint(&default)),
            database: Some(database),
            ..Settings::default()
        };
        let operator = RunningOperator::with_settings(&plane, settings).await.unwrap();
        Fixture {
            default,
            eu,
            _plane: plane,
            admin,
            operator: Some(operator),
        }
    }

    async fn superuser(pg: &Postgres) -> tokio_postgres::Client {
        pg.connect_as(SUPERUSER, pg.superuser_password(), SHARED_DB)
            .await
            .unwrap()
    }

    /// The credentials Secret's annotations and data, as strings.
    async fn credentials(&self, ns: &str) -> Option<(BTreeMap<String, String>, BTreeMap<String, String>)> {
        let secret = Api::<Secret>::namespaced(self.admin.clone(), ns)
            .get_opt(credentials::SECRET_NAME)
            .await
            .unwrap()?;
        let annotations = secret.annotations().clone();
        let data = secret
            .data?
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect();
        Some((annotations, data))
    }

    /// The egress rules (CIDRs and ports) of the namespace's Postgres policy, if it has one.
    async fn postgres_egress(&self, ns: &str) -> Option<serde_json::Value> {
        let policy = Api::<NetworkPolicy>::namespaced(self.admin.clone(), ns)
            .get_opt("bulkhead-allow-postgres")
            .await
            .unwrap()?;
        Some(serde_json::to_value(policy.spec?.egress).unwrap())
    }
}

fn endpoint(pg: &Postgres) -> PostgresEndpoint {
    PostgresEndpoint {
        cidr: format!("{}/32", pg.host()),
        port: pg.port(),
    }
}

fn egress_to(pg: &Postgres) -> serde_json::Value {
    json!([{"to": [{"ipBlock": {"cidr": format!("{}/32", pg.host())}}], "ports": [{"port": pg.port(), "protocol": "TCP"}]}])
}

fn tenant(name: &str, server: Option<&str>, policy: &str) -> Tenant {
    let mut database = json!({"enabled": true, "isolation": "Schema", "connectionLimit": 3});
    if let Some(server) = server {
        database["server"] = json!(server);
    }
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "orgId": format!("org_{name}"),
            "stack": {"image": "registry.example.com/portal:1.0", "replicas": 0},
            "database": database,
            "deletionPolicy": policy
        }
    }))
    .unwrap()
}

fn customer(name: &str, tenant: &str) -> Customer {
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Customer", "metadata": {"name": name},
        "spec": {
            "tenantRef": tenant, "orgId": format!("org_{name}"),
            "quota": {"cpu": "1", "memory": "1Gi", "pods": 5},
            "database": {"enabled": true, "connectionLimit": 2}
        }
    }))
    .unwrap()
}

fn condition(status: Option<&ResourceStatus>, type_: &str) -> Option<(String, String)> {
    let c = status?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.reason.clone(), c.message.clone()))
}

async fn wait_tenant(f: &Fixture, name: &str, reason: &str) -> String {
    let api: Api<Tenant> = Api::all(f.admin.clone());
    wait::until(
        TIMEOUT,
        &format!("Tenant {name} DatabaseReady {reason}"),
        || async {
            let t = api.get(name).await.ok()?;
            let (r, message) = condition(t.status.as_ref(), "DatabaseReady")?;
            (r == reason).then_some(message)
        },
    )
    .await
    .unwrap()
}

async fn wait_customer(f: &Fixture, name: &str, reason: &str) -> String {
    let api: Api<Customer> = Api::all(f.admin.clone());
    wait::until(
        TIMEOUT,
        &format!("Customer {name} DatabaseReady {reason}"),
        || async {
            let c = api.get(name).await.ok()?;
            let (r, message) = condition(c.status.as_ref(), "DatabaseReady")?;
            (r == reason).then_some(message)
        },
    )
    .await
    .unwrap()
}

/// Whether the schema and both roles of `names` exist on the server.
async fn place_exists(client: &tokio_postgres::Client, names: &Names) -> [bool; 3] {
    let one = |sql: &'static str, name: String| async move {
        client.query_opt(sql, &[&name]).await.unwrap().is_some()
    };
    [
        one(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            names.place.clone(),
        )
        .await,
        one("SELECT 1 FROM pg_roles WHERE rolname = $1", names.owner.clone()).await,
        one("SELECT 1 FROM pg_roles WHERE rolname = $1", names.login.clone()).await,
    ]
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_is_provisioned_on_the_server_it_names_and_only_there() {
    let f = Fixture::start().await;
    let tenants: Api<Tenant> = Api::all(f.admin.clone());
    let customers: Api<Customer> = Api::all(f.admin.clone());
    for t in [
        tenant("alpha", None, "Retain"),
        tenant("beta", Some(EU), "Retain"),
        tenant("gamma", Some("nowhere"), "Retain"),
        tenant("delta", Some(EU), "Delete"),
    ] {
        tenants.create(&PostParams::default(), &t).await.unwrap();
    }
    customers
        .create(&PostParams::default(), &customer("beta-client", "beta"))
        .await
        .unwrap();

    let alpha = wait_tenant(&f, "alpha", "Provisioned").await;
    assert!(alpha.contains("on PostgreSQL server default"), "{alpha}");
    let beta = wait_tenant(&f, "beta", "Provisioned").await;
    assert!(beta.contains("on PostgreSQL server eu-2"), "{beta}");
    let client = wait_customer(&f, "beta-client", "Provisioned").await;
    assert!(
        client.contains("on PostgreSQL server eu-2"),
        "a Customer follows its Tenant: {client}"
    );
    wait_tenant(&f, "delta", "Provisioned").await;
    let gamma = wait_tenant(&f, "gamma", "UnknownServer").await;
    assert!(
        gamma.contains("\"nowhere\"")
            && gamma.contains("default, eu-2")
            && gamma.contains("nothing was provisioned"),
        "{gamma}"
    );

    // Each place on its server and not on the other.
    let (on_default, on_eu) = (
        Fixture::superuser(&f.default).await,
        Fixture::superuser(&f.eu).await,
    );
    let alpha_names = naming::names("alpha", None);
    let beta_names = naming::names("beta", None);
    let client_names = naming::names("beta", Some("beta-client"));
    let gamma_names = naming::names("gamma", None);
    assert_eq!(place_exists(&on_default, &alpha_names).await, [true; 3]);
    assert_eq!(place_exists(&on_eu, &alpha_names).await, [false; 3]);
    assert_eq!(place_exists(&on_eu, &beta_names).await, [true; 3]);
    assert_eq!(place_exists(&on_default, &beta_names).await, [false; 3]);
    assert_eq!(place_exists(&on_eu, &client_names).await, [true; 3]);
    assert_eq!(place_exists(&on_default, &client_names).await, [false; 3]);
    // An unknown server: nothing anywhere, no credentials, no egress.
    assert_eq!(place_exists(&on_default, &gamma_names).await, [false; 3]);
    assert_eq!(place_exists(&on_eu, &gamma_names).await, [false; 3]);
    assert!(f.credentials("bk-gamma").await.is_none());
    assert_eq!(f.postgres_egress("bk-gamma").await, None);
    let events = bulkhead_e2e::events::notes(&f.admin, "UnknownServer")
        .await
        .unwrap();
    assert!(events.iter().any(|n| n.contains("\"nowhere\"")), "{events:?}");

    // Credentials carry their server's address and name, and log in there.
    let client_ns = bulkhead_crds::naming::namespace("beta", Some("beta-client"));
    for (ns, pg, server) in [
        ("bk-alpha", &f.default, "default"),
        ("bk-beta", &f.eu, EU),
        (client_ns.as_str(), &f.eu, EU),
    ] {
        let (annotations, data) = f.credentials(ns).await.expect("credentials Secret");
        assert_eq!(
            annotations
                .get(credentials::SERVER_ANNOTATION)
                .map(String::as_str),
            Some(server),
            "{ns}"
        );
        assert_eq!(data["host"], pg.host(), "{ns}");
        assert_eq!(data["port"], pg.port().to_string(), "{ns}");
        let login = connect(&data["DATABASE_URL"]).await;
        let port: String = login.query_one("SHOW port", &[]).await.unwrap().get(0);
        assert_eq!(port, pg.port().to_string(), "{ns} logged in on its own server");
        // Egress to exactly that server.
        assert_eq!(f.postgres_egress(ns).await, Some(egress_to(pg)), "{ns}");
    }

    // The server cannot be changed once the database is enabled.
    let moved = tenants
        .patch(
            "beta",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"database": {"server": null}}})),
        )
        .await
        .unwrap_err();
    assert!(moved.to_string().contains("immutable"), "{moved}");

    // Deletion drops the place on the server it is on.
    tenants.delete("delta", &DeleteParams::default()).await.unwrap();
    let delta_names = naming::names("delta", None);
    wait::until(TIMEOUT, "delta's place dropped on eu-2", || async {
        (place_exists(&on_eu, &delta_names).await == [false; 3]).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        place_exists(&on_eu, &beta_names).await,
        [true; 3],
        "only delta's place"
    );
}
