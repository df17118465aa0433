//! The `bulkhead-operator` binary itself: `crds` prints the generated CRDs; `run` reconciles against a real
//! control plane, logs JSON lines without secrets, and exits cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::process::{Command, Stdio};
use std::time::Duration;

use bulkhead_crds::v1alpha1::Tenant;
use bulkhead_e2e::{ControlPlane, wait};
use kube::api::{Api, PostParams};

const BIN: &str = env!("CARGO_BIN_EXE_bulkhead-operator");

/// Kills the operator if the test fails before it exits by itself.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn crds_subcommand_prints_the_generated_crds() {
    let output = Command::new(BIN).arg("crds").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout, bulkhead_crds::generate::crds_yaml().unwrap());
    assert!(stdout.contains("name: tenants.bulkhead.dev") && stdout.contains("name: customers.bulkhead.dev"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reconciles_logs_json_and_stops_on_sigterm() {
    let plane = ControlPlane::start_with_crds().await.expect("control plane");
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = plane.dir().join("operator.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args([
                "run",
                "--log-format",
                "json",
                "--admin-addr",
                &format!("127.0.0.1:{admin_port}"),
            ])
            .arg("--kubeconfig")
            .arg(plane.kubeconfig_path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

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

    let term = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = wait::until(
        Duration::from_secs(20),
        "the operator to exit after SIGTERM",
        || {
            let exited = child.0.try_wait().unwrap();
            async move { exited }
        },
    )
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");

    let logs = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    for expected in [
        "CRDs established; starting controllers",
        "status updated",
        "controllers stopped",
    ] {
        assert!(
            messages.contains(&expected),
            "missing {expected:?} in {messages:?}"
        );
    }
    let kubeconfig = std::fs::read_to_string(plane.kubeconfig_path()).unwrap();
    let token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap();
    assert!(!logs.contains(token), "the operator logged its bearer token");
}
