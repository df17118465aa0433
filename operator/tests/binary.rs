//! The `bulkhead-operator` binary itself: `crds` and `rbac` print the generated manifests; `run` reconciles
//! against a real control plane, logs JSON lines without secrets, and exits cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

mod common;

use std::process::Command;
use std::time::Duration;

use bulkhead_crds::v1alpha1::Tenant;
use bulkhead_e2e::{ControlPlane, wait};
use common::{BIN, OperatorProcess};
use kube::api::{Api, PostParams};

#[test]
fn crds_subcommand_prints_the_generated_crds() {
    let output = Command::new(BIN).arg("crds").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout, bulkhead_crds::generate::crds_yaml().unwrap());
    assert!(stdout.contains("name: tenants.bulkhead.dev") && stdout.contains("name: customers.bulkhead.dev"));
}

#[test]
fn the_chart_ships_exactly_the_generated_rbac() {
    let output = Command::new(BIN).arg("rbac").output().unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/bulkhead/templates/operator-rbac.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date; run `make generate`",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reconciles_logs_json_and_stops_on_sigterm() {
    // Without the CRDs' CEL rules, so that the API server stores the invalid Tenant below.
    let plane = ControlPlane::start_with_crds_without_cel()
        .await
        .expect("control plane");
    let mut operator = OperatorProcess::start(&plane, "admin", "main", &[]);

    let tenants: Api<Tenant> = Api::all(plane.admin().await.unwrap());
    let tenant: Tenant = serde_json::from_value(serde_json::json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "initech"},
        "spec": {"orgId": "org_initech", "stack": {"image": "nginx:1.27", "port": 80}}
    }))
    .unwrap();
    tenants.create(&PostParams::default(), &tenant).await.unwrap();
    let reason = wait::until(
        Duration::from_secs(30),
        "the binary to mark the Tenant Invalid",
        || async {
            let t = tenants.get("initech").await.ok()?;
            let ready = t.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (ready.reason == "Invalid").then_some(ready.message)
        },
    )
    .await
    .unwrap();
    assert!(reason.contains("spec.stack.port"), "{reason}");

    operator.signal("-TERM");
    let status = wait::until(
        Duration::from_secs(20),
        "the operator to exit after SIGTERM",
        || {
            let exited = operator.child.try_wait().unwrap();
            async move { exited }
        },
    )
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");

    let logs = operator.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    for expected in [
        "CRDs established",
        "ready condition changed",
        "controllers stopped",
    ] {
        assert!(
            messages.contains(&expected),
            "missing {expected:?} in {messages:?}"
        );
    }
    let kubeconfig = std::fs::read_to_string(plane.kubeconfig_path()).unwrap();
    for token in kubeconfig
        .lines()
        .filter_map(|l| l.trim().strip_prefix("token: "))
    {
        assert!(!logs.contains(token), "the operator logged a bearer token");
    }
}
