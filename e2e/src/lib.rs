//! Test support for Bulkhead: a real local Kubernetes control plane (etcd + kube-apiserver +
//! kube-controller-manager) started per test binary, and helpers shared by the integration suites and the
//! sandbox.

pub mod control_plane;
pub mod wait;

pub use control_plane::{ControlPlane, HarnessError};
