//! Test support for Bulkhead: a real local Kubernetes control plane (etcd + kube-apiserver +
//! kube-controller-manager) started per test binary, a real one-node cluster (the control plane plus kubelet,
//! containerd, kube-proxy, kube-router and CoreDNS), and helpers shared by the integration suites and the
//! sandbox.

pub mod admission;
pub mod apply;
pub mod bench;
pub mod cluster;
mod cluster_dns;
pub mod console;
pub mod control_plane;
pub mod events;
pub mod exec;
pub mod gateway;
pub mod helm;
pub mod http;
pub mod install;
pub mod layering;
pub mod local_images;
pub mod oci;
pub mod operator;
pub mod postgres;
pub mod report;
pub mod signals;
pub mod suite;
pub mod table;
pub mod versions;
pub mod wait;
mod watchdog;

pub use cluster::Cluster;
pub use control_plane::{ControlPlane, HarnessError};

/// Sends `tracing` output to the test's captured output (shown on failure). Filter with `RUST_LOG`
/// (default `info,kube=warn`). Safe to call from every test.
pub fn init_test_logging() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}
