//! The local cluster enforces NetworkPolicy, with real packets and independent of Bulkhead: a pod in one
//! namespace connects to a pod in another; a default-deny policy stops it, an allow policy lets it through,
//! removing the allow stops it again. Every "refused" is measured next to a working "allowed".

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::time::Duration;

use bulkhead_e2e::{Cluster, versions, wait};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, PostParams};

const CLIENT_NS: &str = "netpol-client";
const SERVER_NS: &str = "netpol-server";

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// A pod with one agnhost container per argument list.
fn agnhost_pod(name: &str, containers: &[&[&str]]) -> serde_json::Value {
    let image = versions::get("AGNHOST_IMAGE").unwrap();
    let containers: Vec<_> = containers
        .iter()
        .enumerate()
        .map(|(i, args)| {
            serde_json::json!({
                "name": format!("agnhost-{i}"),
                "image": image,
                "imagePullPolicy": "Never",
                "args": args,
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": containers},
    })
}

async fn running_ip(pods: &Api<Pod>, name: &str) -> String {
    wait::pod_ready_ip(pods, name, Duration::from_secs(90))
        .await
        .unwrap()
}

/// Connects from the client pod to `target` with agnhost's probe; true when the TCP connection was made.
async fn connects(cluster: &Cluster, target: &str) -> bool {
    let (code, _) = cluster
        .exec(
            CLIENT_NS,
            "client",
            &["/agnhost", "connect", target, "--timeout=1s", "--protocol=tcp"],
        )
        .await
        .expect("exec in the client pod");
    code == 0
}

/// Waits until the probe gives `expected` (policies take a moment to reach the enforcer).
async fn until_connects(cluster: &Cluster, target: &str, expected: bool, what: &str) {
    let result = wait::until(Duration::from_secs(60), what, || async {
        (connects(cluster, target).await == expected).then_some(())
    })
    .await;
    if let Err(err) = result {
        panic!("{err}\n{}", cluster.log_tail("kube-router", 30));
    }
}

#[tokio::test]
async fn network_policies_are_enforced_between_namespaces() {
    bulkhead_e2e::init_test_logging();
    let cluster = Cluster::start().await.expect("cluster");
    for (what, elapsed) in cluster.timings() {
        eprintln!("cluster start: {what} after {elapsed:?}");
    }
    let client = cluster.admin().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [CLIENT_NS, SERVER_NS] {
        create(&namespaces, serde_json::json!({"metadata": {"name": ns}})).await;
    }
    let server_pods: Api<Pod> = Api::namespaced(client.clone(), SERVER_NS);
    let client_pods: Api<Pod> = Api::namespaced(client.clone(), CLIENT_NS);
    // The server listens on two TCP ports, so a policy naming one can be seen to leave the other closed.
    create(
        &server_pods,
        agnhost_pod(
            "server",
            &[
                &["netexec", "--http-port=8080", "--udp-port=-1"],
                &["netexec", "--http-port=8081", "--udp-port=-1"],
            ],
        ),
    )
    .await;
    create(&client_pods, agnhost_pod("client", &[&["pause"]])).await;
    let server_ip = running_ip(&server_pods, "server").await;
    running_ip(&client_pods, "client").await;
    let target = format!("{server_ip}:8080");
    let other_port = format!("{server_ip}:8081");
    assert!(
        server_ip.starts_with("198.18."),
        "pod addresses come from 198.18.0.0/15: {server_ip}"
    );

    // No policy: both flows work (the control every refusal below is measured against).
    assert!(
        connects(&cluster, &target).await,
        "without policies port 8080 must be reachable"
    );
    assert!(
        connects(&cluster, &other_port).await,
        "without policies port 8081 must be reachable"
    );

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), SERVER_NS);
    create(
        &policies,
        serde_json::json!({
            "metadata": {"name": "default-deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }),
    )
    .await;
    until_connects(&cluster, &target, false, "default deny to refuse the connection").await;

    create(
        &policies,
        serde_json::json!({
            "metadata": {"name": "allow-client"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "server"}},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": CLIENT_NS}}}],
                    "ports": [{"port": 8080, "protocol": "TCP"}],
                }],
            },
        }),
    )
    .await;
    until_connects(
        &cluster,
        &target,
        true,
        "the allow policy to let the connection through",
    )
    .await;
    // The allow names port 8080 only: another port of the same pod stays closed.
    assert!(
        !connects(&cluster, &other_port).await,
        "a port the allow does not name must stay refused"
    );

    policies
        .delete("allow-client", &DeleteParams::default())
        .await
        .unwrap();
    until_connects(
        &cluster,
        &target,
        false,
        "removing the allow to refuse the connection again",
    )
    .await;
}
