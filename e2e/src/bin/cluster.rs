//! `cluster`: start the local one-node cluster, print how to reach it, keep it until Ctrl-C (or SIGTERM), then
//! tear it down. For trying things by hand; tests use `bulkhead_e2e::Cluster` directly.

use std::process::ExitCode;

use bulkhead_e2e::Cluster;

#[tokio::main]
async fn main() -> ExitCode {
    println!(
        "Starting the local cluster (control plane, containerd, kubelet, kube-proxy, kube-router, CoreDNS)..."
    );
    // A signal during start-up drops the half-started cluster, which tears down what it made.
    let started = tokio::select! {
        started = Cluster::start() => started,
        () = bulkhead_e2e::signals::shutdown() => {
            println!("Stopped while starting; nothing of the cluster is left.");
            return ExitCode::FAILURE;
        }
    };
    let cluster = match started {
        Ok(cluster) => cluster,
        Err(err) => {
            eprintln!("cluster: {err}");
            return ExitCode::FAILURE;
        }
    };
    for (what, elapsed) in cluster.timings() {
        println!("  {elapsed:>8.1?}  {what}");
    }
    println!(
        "kubectl: KUBECONFIG={} kubectl get nodes,pods -A",
        cluster.plane().kubeconfig_path().display()
    );
    println!("logs:    {}", cluster.dir().display());
    println!("Press Ctrl-C to stop and clean up.");
    bulkhead_e2e::signals::shutdown().await;
    println!("Stopping...");
    drop(cluster);
    println!("Stopped; nothing of the cluster is left.");
    ExitCode::SUCCESS
}
