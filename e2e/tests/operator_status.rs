//! The operator against a real control plane: valid specs get `observedGeneration` and a Ready condition (here
//! False/StackNotReady: the local control plane has no kubelet, so stack pods never run),
//! invalid specs get Ready=False/Invalid naming the field, edits move `observedGeneration`, identity fields are
//! immutable, and the admin endpoints report readiness and metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::time::Duration;

use bulkhead_crds::v1alpha1::{Customer, ResourceStatus, Tenant};
use bulkhead_e2e::operator::RunningOperator;
use bulkhead_e2e::{ControlPlane, wait};
use kube::api::{Api, Patch, PatchParams, PostParams};

const TIMEOUT: Duration = Duration::from_secs(20);

fn tenant(name: &str, org: &str, port: u16) -> Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "bulkhead.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"orgId": org, "stack": {"image": "registry.example.com/acme/portal:1.4.2", "port": port}}
    }))
    .unwrap()
}

fn ready(status: &ResourceStatus) -> Option<(String, String, String)> {
    let c = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the object's status describes `generation` and its Ready condition has `reason`.
async fn status_for<K>(api: &Api<K>, name: &str, generation: i64, reason: &str) -> ResourceStatus
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + HasStatus,
{
    let what = format!("{name} to reach generation {generation} with Ready reason {reason}");
    wait::until(TIMEOUT, &what, || async {
        let obj = api.get(name).await.ok()?;
        let status = obj.status()?.clone();
        let (_, r, _) = ready(&status)?;
        (status.observed_generation == Some(generation) && r == reason).then_some(status)
    })
    .await
    .unwrap()
}

trait HasStatus {
    fn status(&self) -> Option<&ResourceStatus>;
}
impl HasStatus for Tenant {
    fn status(&self) -> Option<&ResourceStatus> {
        self.status.as_ref()
    }
}
impl HasStatus for Customer {
    fn status(&self) -> Option<&ResourceStatus> {
        self.status.as_ref()
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    bulkhead_e2e::operator::http_get(addr, path).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_writes_status_for_valid_invalid_and_edited_specs() {
    bulkhead_e2e::init_test_logging();
    // The CRDs without their CEL rules: the API server stores the invalid specs below, as one that ignores CEL
    // would, and the operator's own checks must refuse them.
    let plane = ControlPlane::start_with_crds_without_cel()
        .await
        .expect("control plane");
    let client = plane.admin().await.unwrap();

    let operator = RunningOperator::start(client.clone(), bulkhead_operator::Options::default())
        .await
        .unwrap();
    let admin_addr = operator.admin_addr;

    let (code, body) = http_get(admin_addr, "/livez").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    wait::until(TIMEOUT, "/readyz to answer 200", || async {
        (http_get(admin_addr, "/readyz").await.0 == 200).then_some(())
    })
    .await
    .unwrap();

    let tenants: Api<Tenant> = Api::all(client.clone());
    let pp = PostParams::default();

    // A valid Tenant: observedGeneration and a Ready condition written by the operator.
    tenants
        .create(&pp, &tenant("acme", "org_acme", 8080))
        .await
        .unwrap();
    let status = status_for(&tenants, "acme", 1, "StackNotReady").await;
    let (ready_status, _, message) = ready(&status).unwrap();
    assert_eq!(ready_status, "False");
    assert!(message.contains("0/1 replicas available"), "{message}");
    assert_eq!(status.accepted_identity.as_ref().unwrap().org_id, "org_acme");
    assert_eq!(status.conditions[0].observed_generation, Some(1));

    // An invalid Tenant that the API server stored: Ready=False, Invalid, naming the field.
    tenants
        .create(&pp, &tenant("globex", "org_globex", 80))
        .await
        .unwrap();
    let status = status_for(&tenants, "globex", 1, "Invalid").await;
    let (ready_status, _, message) = ready(&status).unwrap();
    assert_eq!(ready_status, "False");
    assert!(
        message.contains("spec.stack.port: 80 is out of range"),
        "{message}"
    );
    assert_eq!(
        status.accepted_identity, None,
        "an invalid spec establishes no identity"
    );

    // Editing the spec moves observedGeneration; fixing the invalid one provisions it.
    let params = PatchParams::default();
    let fix = serde_json::json!({"spec": {"stack": {"port": 8443}}});
    tenants
        .patch("globex", &params, &Patch::Merge(&fix))
        .await
        .unwrap();
    status_for(&tenants, "globex", 2, "StackNotReady").await;
    let scale = serde_json::json!({"spec": {"stack": {"replicas": 3}}});
    tenants
        .patch("acme", &params, &Patch::Merge(&scale))
        .await
        .unwrap();
    status_for(&tenants, "acme", 2, "StackNotReady").await;

    // Identity fields are immutable once accepted.
    let steal = serde_json::json!({"spec": {"orgId": "org_globex"}});
    tenants
        .patch("acme", &params, &Patch::Merge(&steal))
        .await
        .unwrap();
    let status = status_for(&tenants, "acme", 3, "Invalid").await;
    let (_, _, message) = ready(&status).unwrap();
    assert!(message.contains("spec.orgId: is immutable once set"), "{message}");
    assert_eq!(status.accepted_identity.unwrap().org_id, "org_acme");

    // Customers run through the same pipeline.
    let customers: Api<Customer> = Api::all(client.clone());
    let customer: Customer = serde_json::from_value(serde_json::json!({
        "apiVersion": "bulkhead.dev/v1alpha1",
        "kind": "Customer",
        "metadata": {"name": "acme-client1"},
        "spec": {"tenantRef": "acme", "orgId": "org_client1"}
    }))
    .unwrap();
    customers.create(&pp, &customer).await.unwrap();
    status_for(&customers, "acme-client1", 1, "StackNotReady").await;
    let bad: Customer = serde_json::from_value(serde_json::json!({
        "apiVersion": "bulkhead.dev/v1alpha1",
        "kind": "Customer",
        "metadata": {"name": "acme-client2"},
        "spec": {"tenantRef": "Not_A_Name", "orgId": "org_client2"}
    }))
    .unwrap();
    customers.create(&pp, &bad).await.unwrap();
    let status = status_for(&customers, "acme-client2", 1, "Invalid").await;
    assert!(ready(&status).unwrap().2.contains("spec.tenantRef"));

    // Metrics count the reconciles by controller.
    let (code, metrics) = http_get(admin_addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("bulkhead_operator_reconciles_total{controller=\"tenant\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bulkhead_operator_reconciles_total{controller=\"customer\"}"),
        "{metrics}"
    );

    // Graceful shutdown: the run future completes once asked to stop.
    tokio::time::timeout(TIMEOUT, operator.stop())
        .await
        .expect("operator stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_waits_for_crds_and_is_not_ready_until_then() {
    bulkhead_e2e::init_test_logging();
    let plane = ControlPlane::start().await.expect("control plane");
    let client = plane.admin().await.unwrap();
    let operator = RunningOperator::start(client.clone(), bulkhead_operator::Options::default())
        .await
        .unwrap();
    let admin_addr = operator.admin_addr;

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        http_get(admin_addr, "/readyz").await.0,
        503,
        "not ready without CRDs"
    );
    assert!(!operator.is_finished(), "the operator waits instead of exiting");

    plane.install_crds().await.unwrap();
    wait::until(TIMEOUT, "/readyz to answer 200 after the CRDs appear", || async {
        (http_get(admin_addr, "/readyz").await.0 == 200).then_some(())
    })
    .await
    .unwrap();
    let tenants: Api<Tenant> = Api::all(client);
    tenants
        .create(&PostParams::default(), &tenant("late", "org_late", 8080))
        .await
        .unwrap();
    status_for(&tenants, "late", 1, "StackNotReady").await;

    tokio::time::timeout(TIMEOUT, operator.stop())
        .await
        .expect("operator stops")
        .unwrap();
}
