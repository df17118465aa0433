//! The local control plane itself: it starts, accepts the generated CRDs (so their schemas are structural),
//! tells the admin and the restricted identity apart, and stops its processes when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::time::Instant;

use bulkhead_crds::v1alpha1::Tenant;
use bulkhead_e2e::ControlPlane;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

#[tokio::test]
async fn starts_installs_crds_and_enforces_rbac_for_the_restricted_user() {
    let started = Instant::now();
    let plane = ControlPlane::start_with_crds().await.expect("control plane");
    eprintln!("control plane with CRDs ready in {:?}", started.elapsed());

    let admin = plane.admin().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let names: Vec<_> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"default".to_string()), "{names:?}");
    Api::<Tenant>::all(admin)
        .list(&ListParams::default())
        .await
        .expect("admin may list tenants");

    let restricted = plane.restricted().await.unwrap();
    let err = Api::<Tenant>::all(restricted)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other}"),
    }
}

#[tokio::test]
async fn dropping_the_control_plane_kills_its_processes() {
    let plane = ControlPlane::start().await.expect("control plane");
    let pids = plane.pids();
    assert_eq!(pids.len(), 3, "etcd, kube-apiserver and kube-controller-manager");
    for pid in &pids {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} should be running"
        );
    }
    drop(plane);
    for pid in &pids {
        // A reaped child's /proc entry is gone.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} is still running"
        );
    }
}
