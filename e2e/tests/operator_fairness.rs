//! A full pass never stands in front of a change. After a restart the operator looks at every Tenant again, a
//! window at a time; a Tenant created meanwhile is provisioned while most of the pass still waits its turn, and
//! the pass then completes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::net::SocketAddr;
use std::time::Duration;

use bulkhead_crds::v1alpha1::Tenant;
use bulkhead_e2e::operator::{RunningOperator, http_get, install_rbac};
use bulkhead_e2e::{ControlPlane, wait};
use futures::{StreamExt, TryStreamExt};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

/// Tenants there before the restart.
const TENANTS: usize = 80;
/// The pass's window in the restarted operator: small, so that the pass lasts long enough to be seen.
const WINDOW: usize = 2;
/// A deadline that only a broken run misses.
const TIMEOUT: Duration = Duration::from_secs(90);

fn tenant(name: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "orgId": format!("org_{name}"),
            "stack": {"image": "registry.example.com/portal:1.0", "port": 8080, "replicas": 0},
            "quota": {"cpu": "1", "memory": "1Gi", "pods": 5}
        }
    }))
    .unwrap()
}

fn provisioned(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "Provisioned")
    })
}

/// A metric's value (the first sample whose name and labels start with `prefix`).
async fn metric(addr: SocketAddr, prefix: &str) -> Option<f64> {
    let (_, text) = http_get(addr, "/metrics").await.ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn all_provisioned(api: &Api<Tenant>, count: usize) {
    wait::until(TIMEOUT, &format!("{count} Tenants provisioned"), || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        (list.items.iter().filter(|t| provisioned(t)).count() == count).then_some(())
    })
    .await
    .unwrap();
}

async fn start(plane: &ControlPlane, pass_window: Option<usize>) -> RunningOperator {
    let options = bulkhead_operator::Options {
        pass_window,
        ..bulkhead_operator::Options::default()
    };
    RunningOperator::start(plane.operator().await.unwrap(), options)
        .await
        .unwrap()
}

async fn create(admin: &Client, names: impl Iterator<Item = String>) {
    let api: Api<Tenant> = Api::all(admin.clone());
    futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &tenant(&name))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_during_a_full_pass_does_not_wait_for_the_pass() {
    bulkhead_e2e::init_test_logging();
    let plane = ControlPlane::start_with_crds().await.expect("control plane");
    install_rbac(&plane).await.unwrap();
    let admin = plane.admin().await.unwrap();
    let tenants: Api<Tenant> = Api::all(admin.clone());

    let first = start(&plane, None).await;
    create(&admin, (0..TENANTS).map(|i| format!("t{i:03}"))).await;
    all_provisioned(&tenants, TENANTS).await;
    first.stop().await.unwrap();

    // The restarted operator lists everything and starts its pass over every Tenant.
    let second = start(&plane, Some(WINDOW)).await;
    let waiting = "bulkhead_operator_full_pass_waiting ";
    wait::until(TIMEOUT, "the full pass to start", || async {
        (metric(second.admin_addr, waiting).await? >= (TENANTS / 2) as f64).then_some(())
    })
    .await
    .unwrap();

    // A Tenant created now is provisioned while most of the pass still waits its turn.
    create(&admin, std::iter::once("newcomer".to_owned())).await;
    wait::until(TIMEOUT, "the newcomer to be provisioned", || async {
        provisioned(&tenants.get("newcomer").await.ok()?).then_some(())
    })
    .await
    .unwrap();
    let left = metric(second.admin_addr, waiting).await.unwrap();
    let reconciled = metric(
        second.admin_addr,
        "bulkhead_operator_reconciles_total{controller=\"tenant\"}",
    )
    .await
    .unwrap();
    eprintln!(
        "newcomer provisioned with {left} of {TENANTS} Tenants still waiting in the pass ({reconciled} reconciles so far)"
    );
    assert!(
        left >= (TENANTS / 4) as f64,
        "the newcomer waited for the pass: only {left} of {TENANTS} were still waiting"
    );
    assert!(reconciled < TENANTS as f64, "{reconciled} reconciles");

    // The pass completes: every Tenant is looked at again.
    wait::until(TIMEOUT, "the pass to complete", || async {
        let left = metric(second.admin_addr, waiting).await?;
        let reconciled = metric(
            second.admin_addr,
            "bulkhead_operator_reconciles_total{controller=\"tenant\"}",
        )
        .await?;
        (left == 0.0 && reconciled >= TENANTS as f64).then_some(())
    })
    .await
    .unwrap();
    all_provisioned(&tenants, TENANTS + 1).await;
    second.stop().await.unwrap();
}
