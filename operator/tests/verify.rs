//! `bulkhead-operator verify` against a real API server and a real PostgreSQL, provisioned by the operator itself
//! and read under verify's own read-only RBAC. On the converged state the contract holds (exit 0); then, with
//! the operator stopped so nothing is repaired, each kind of violation is made by hand, and verify must fail
//! naming exactly it (and nothing else), and hold again once it is undone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use bulkhead_e2e::operator::{
    DatabaseFixture, OPERATOR_NAMESPACE, create_schema_tenant, tenant_database_url,
};
use bulkhead_e2e::wait;
use bulkhead_operator::postgres::naming::names;
use bulkhead_operator::process::rbac;
use bulkhead_operator::settings::{DatabaseSettings, Settings};
use bulkhead_operator::verify::{self, Report, Verdict};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);
const GATEWAY_CONFIG: &str = "issuers:\n  - issuer: https://issuer.example\n    algorithms: [RS256]\n    jwks_url: https://issuer.example/jwks.json\nroutes:\n  source: kubernetes\n";

async fn apply<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = value["metadata"]["name"].as_str().unwrap().to_owned();
    api.patch(
        &name,
        &PatchParams::apply("verify-test").force(),
        &Patch::Apply(value),
    )
    .await
    .unwrap();
}

/// Binds verify's ClusterRole and release-namespace Role to the harness's `verifier` user.
async fn bind_verifier(kube: &Client) {
    let user = json!([{"kind": "User", "name": bulkhead_e2e::control_plane::VERIFIER_USER,
                       "apiGroup": "rbac.authorization.k8s.io"}]);
    let role = serde_json::to_value(rbac::verify_cluster_role()).unwrap();
    apply(&Api::<ClusterRole>::all(kube.clone()), role).await;
    apply(
        &Api::<ClusterRoleBinding>::all(kube.clone()),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": rbac::VERIFIER},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rbac::VERIFIER},
               "subjects": user}),
    )
    .await;
    let role = rbac::verify_role(OPERATOR_NAMESPACE, Some(DatabaseFixture::ADMIN_SECRET));
    apply(
        &Api::<Role>::namespaced(kube.clone(), OPERATOR_NAMESPACE),
        serde_json::to_value(role).unwrap(),
    )
    .await;
    apply(
        &Api::<RoleBinding>::namespaced(kube.clone(), OPERATOR_NAMESPACE),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": rbac::VERIFIER, "namespace": OPERATOR_NAMESPACE},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rbac::VERIFIER},
               "subjects": user}),
    )
    .await;
}

async fn gateway_config(kube: &Client, text: &str) {
    apply(
        &Api::<ConfigMap>::namespaced(kube.clone(), OPERATOR_NAMESPACE),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "bulkhead-gateway", "namespace": OPERATOR_NAMESPACE},
               "data": {"gateway.yaml": text}}),
    )
    .await;
}

fn options() -> verify::Options {
    let secret = format!("{OPERATOR_NAMESPACE}/{}", DatabaseFixture::ADMIN_SECRET)
        .parse()
        .unwrap();
    verify::Options {
        settings: Settings {
            database: Some(DatabaseSettings::new(secret)),
            ..Settings::default()
        },
        outside: verify::DEFAULT_OUTSIDE.parse().unwrap(),
        context: Some("verifier".into()),
    }
}

/// The failing checks, as (id, subject).
fn failures(report: &Report) -> BTreeSet<(String, String)> {
    report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| (c.id.to_owned(), c.subject.clone()))
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Runs verify and asserts that exactly `expected` fail; returns the report.
async fn expect_failures(client: &Client, expected: &[(&str, &str)], mention: &[&str]) -> Report {
    let report = verify::run(client, &options()).await.unwrap();
    assert_eq!(failures(&report), set(expected), "{}", report.render());
    assert_eq!(report.summary.holds, expected.is_empty());
    assert_eq!(report.exit_code(), u8::from(!expected.is_empty()));
    let text = report.render();
    let violations = text.split("== Reachability").next().unwrap();
    for m in mention {
        assert!(violations.contains(m), "the violations should name {m}:\n{text}");
    }
    report
}

/// Runs verify and asserts that it fails, every failing check having one of `ids`, and that a check of `ids[0]`
/// names everything in `mention`.
async fn expect_named_failure(client: &Client, ids: &[&str], mention: &[&str]) {
    let report = verify::run(client, &options()).await.unwrap();
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .collect();
    assert!(!failed.is_empty(), "{}", report.render());
    assert!(failed.iter().all(|c| ids.contains(&c.id)), "{}", report.render());
    assert!(
        failed
            .iter()
            .any(|c| c.id == ids[0] && mention.iter().all(|m| c.summary.contains(m))),
        "{}",
        report.render()
    );
    assert_eq!(report.exit_code(), 1);
}

async fn wait_ready<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    wait::until(TIMEOUT, &format!("{name} Ready"), || async {
        let value = serde_json::to_value(api.get(name).await.ok()?).ok()?;
        value["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    })
    .await
    .unwrap();
}

/// Creates Customer `name` of Tenant `ta` claiming `org`.
async fn create_customer(customers: &Api<Customer>, name: &str, org: &str) {
    let mut customer = bulkhead_operator::verify::sample::customer(name, "ta").unwrap();
    customer.spec.org_id = org.to_owned();
    customer.metadata.uid = None;
    customer.status = None;
    customers.create(&PostParams::default(), &customer).await.unwrap();
}

/// Runs `sql` as the superuser in the shared database: a hand-made change nobody repairs while the operator is
/// down.
async fn psql(fx: &DatabaseFixture, sql: &str) {
    let client = fx
        .pg
        .connect_as(
            bulkhead_e2e::postgres::SUPERUSER,
            fx.pg.superuser_password(),
            DatabaseFixture::SHARED_DB,
        )
        .await
        .unwrap();
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_holds_when_converged_and_names_each_violation() {
    let mut fx = DatabaseFixture::start(|_| {}).await.unwrap();
    let kube = fx.kube.clone();
    bind_verifier(&kube).await;
    gateway_config(&kube, GATEWAY_CONFIG).await;
    create_schema_tenant(&kube, "ta").await.unwrap();
    create_schema_tenant(&kube, "tb").await.unwrap();
    tenant_database_url(&kube, "ta").await.unwrap();
    tenant_database_url(&kube, "tb").await.unwrap();
    let tenants: Api<Tenant> = Api::all(kube.clone());
    let customers: Api<Customer> = Api::all(kube.clone());
    wait_ready(&tenants, "ta").await;
    wait_ready(&tenants, "tb").await;
    create_customer(&customers, "c1", "org_c1").await;
    wait_ready(&customers, "c1").await;

    let verifier = Client::try_from(fx.plane.config_for("verifier").await.unwrap()).unwrap();

    // Converged: the contract holds, and the matrix shows each namespace closed to the others.
    let report = expect_failures(&verifier, &[], &[]).await;
    let ns = |n: &str| verify::network::Place::Bulkhead {
        namespace: n.to_owned(),
    };
    assert_eq!(
        report.matrix.cell(&ns("bk-ta"), &ns("bk-ta")),
        Some(true),
        "{}",
        report.render()
    );
    assert_eq!(report.matrix.cell(&ns("bk-ta"), &ns("bk-tb")), Some(false));
    assert_eq!(report.matrix.cell(&ns("bk-ta"), &ns("bk-ta-c1")), Some(false));
    assert_eq!(report.routes.len(), 3, "{}", report.render());
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.id.starts_with("postgres.") && c.verdict == Verdict::Pass)
    );

    // The binary, under the verifier's kubeconfig context: exit 0 and the JSON document.
    let json_file = fx.plane.dir().join("verify.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead-operator"))
        .args(["verify", "--context", "verifier", "--output", "json"])
        .arg("--kubeconfig")
        .arg(fx.plane.kubeconfig_path())
        .arg("--postgres-admin-secret")
        .arg(format!("{OPERATOR_NAMESPACE}/{}", DatabaseFixture::ADMIN_SECRET))
        .arg("--json-file")
        .arg(&json_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["schema"], "bulkhead.dev/verify/v1");
    assert_eq!(doc["summary"]["holds"], true);
    assert_eq!(doc["identity"]["context"], "verifier");
    assert!(doc["identity"]["cluster_uid"].is_string());
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    assert_eq!(file["checks"], doc["checks"]);

    // From here on nothing repairs what the test breaks.
    fx.kill_operator();
    let policies_a: Api<NetworkPolicy> = Api::namespaced(kube.clone(), "bk-ta");
    let policies_b: Api<NetworkPolicy> = Api::namespaced(kube.clone(), "bk-tb");

    // 1. A hand-made NetworkPolicy pair letting tenant A reach tenant B.
    let peer = |n: &str| json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}}]);
    apply(
        &policies_a,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "to-tb", "namespace": "bk-ta"},
               "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": peer("bk-tb")}]}}),
    )
    .await;
    apply(
        &policies_b,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "from-ta", "namespace": "bk-tb"},
               "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": peer("bk-ta")}]}}),
    )
    .await;
    let report = expect_failures(
        &verifier,
        &[
            ("network.reachability", "bk-ta"),
            ("contract.foreign_network_policy", "bk-ta/NetworkPolicy/to-tb"),
            ("contract.foreign_network_policy", "bk-tb/NetworkPolicy/from-ta"),
        ],
        &["tenant to other tenant", "bk-tb"],
    )
    .await;
    assert_eq!(report.matrix.cell(&ns("bk-ta"), &ns("bk-tb")), Some(true));
    assert_eq!(
        report.matrix.cell(&ns("bk-tb"), &ns("bk-ta")),
        Some(false),
        "one way only"
    );
    // The binary says so too: exit 1, violations first.
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead-operator"))
        .args(["verify", "--context", "verifier"])
        .arg("--kubeconfig")
        .arg(fx.plane.kubeconfig_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let violations = stdout.find("== Violations").unwrap();
    assert!(violations < stdout.find("== Reachability").unwrap());
    assert!(stdout.contains("FAIL network.reachability bk-ta"), "{stdout}");
    policies_a
        .delete("to-tb", &DeleteParams::default())
        .await
        .unwrap();
    policies_b
        .delete("from-ta", &DeleteParams::default())
        .await
        .unwrap();
    expect_failures(&verifier, &[], &[]).await;

    // 2. A deleted default-deny policy.
    let deny = policies_b.get("bulkhead-default-deny").await.unwrap();
    policies_b
        .delete("bulkhead-default-deny", &DeleteParams::default())
        .await
        .unwrap();
    expect_failures(
        &verifier,
        &[(
            "contract.network_policy",
            "bk-tb/NetworkPolicy/bulkhead-default-deny",
        )],
        &["bulkhead-default-deny is missing"],
    )
    .await;
    let mut restored = deny.clone();
    restored.metadata = kube::api::ObjectMeta {
        name: deny.metadata.name.clone(),
        namespace: deny.metadata.namespace.clone(),
        labels: deny.metadata.labels.clone(),
        annotations: deny.metadata.annotations.clone(),
        ..Default::default()
    };
    policies_b
        .create(&PostParams::default(), &restored)
        .await
        .unwrap();
    expect_failures(&verifier, &[], &[]).await;

    // 3. A Postgres grant of B's table to A.
    let (a, b) = (names("ta", None), names("tb", None));
    psql(&fx,
        &format!(
            "CREATE TABLE \"{s}\".secrets (v text); ALTER TABLE \"{s}\".secrets OWNER TO \"{o}\"; GRANT SELECT ON \"{s}\".secrets TO \"{l}\";",
            s = b.place,
            o = b.owner,
            l = a.login
        ),
    )
    .await;
    expect_named_failure(&verifier, &["postgres.relations"], &["secrets", &a.login]).await;
    psql(
        &fx,
        &format!("REVOKE ALL ON \"{}\".secrets FROM \"{}\";", b.place, a.login),
    )
    .await;
    expect_failures(&verifier, &[], &[]).await;

    // 4. A large object of A granted to PUBLIC.
    psql(&fx,
        &format!(
            "SELECT lo_create(424242); ALTER LARGE OBJECT 424242 OWNER TO \"{o}\"; GRANT SELECT ON LARGE OBJECT 424242 TO PUBLIC;",
            o = a.owner
        ),
    )
    .await;
    expect_named_failure(&verifier, &["postgres.large_objects"], &["424242"]).await;
    psql(&fx, "SELECT lo_unlink(424242);").await;
    expect_failures(&verifier, &[], &[]).await;

    // 5. PUBLIC CONNECT restored on the shared database.
    psql(
        &fx,
        &format!(
            "GRANT CONNECT ON DATABASE \"{}\" TO PUBLIC;",
            DatabaseFixture::SHARED_DB
        ),
    )
    .await;
    expect_named_failure(
        &verifier,
        &["postgres.public_grants", "postgres.databases"],
        &["CONNECT", DatabaseFixture::SHARED_DB],
    )
    .await;
    psql(
        &fx,
        &format!(
            "REVOKE CONNECT ON DATABASE \"{}\" FROM PUBLIC;",
            DatabaseFixture::SHARED_DB
        ),
    )
    .await;
    expect_failures(&verifier, &[], &[]).await;

    // 6. A Tenant and a Customer claiming one org.
    create_customer(&customers, "c2", "org_tb").await;
    let report = expect_failures(
        &verifier,
        &[("routing.duplicate_org", "org_tb")],
        &["Tenant tb", "Customer c2"],
    )
    .await;
    assert!(
        report.routes.iter().all(|r| r.org != "org_tb"),
        "the gateway refuses the org"
    );
    customers.delete("c2", &DeleteParams::default()).await.unwrap();
    wait::until(TIMEOUT, "Customer c2 gone", || async {
        customers.get_opt("c2").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    expect_failures(&verifier, &[], &[]).await;

    // 7. A route to a Service outside Bulkhead's namespaces.
    gateway_config(
        &kube,
        &format!("{GATEWAY_CONFIG}  upstream_overrides:\n    bk-ta: billing.default.svc:8080\n"),
    )
    .await;
    expect_failures(
        &verifier,
        &[("routing.upstream", "org_ta")],
        &["billing.default.svc:8080", "a namespace Bulkhead does not manage"],
    )
    .await;
    gateway_config(&kube, GATEWAY_CONFIG).await;
    expect_failures(&verifier, &[], &[]).await;
}

#[test]
fn an_unreadable_cluster_is_exit_2_with_the_reason_and_no_report() {
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead-operator"))
        .args(["verify", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no report without a cluster");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kubeconfig") && stderr.contains("/nonexistent/kubeconfig"),
        "{stderr}"
    );
}
