//! `bulkhead-operator crds apply` against a real control plane, under exactly the RBAC it documents: it creates
//! the CRDs and waits until they are served, upgrades CRDs an older version left (fields it removed, fields
//! only the older one had), changes nothing the second time, and never downgrades CRDs a newer version applied.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

mod common;

use std::process::Output;

use bulkhead_e2e::ControlPlane;
use bulkhead_e2e::control_plane::{FIELD_MANAGER, OPERATOR_USER};
use bulkhead_operator::process::crd_apply::{VERSION, VERSION_ANNOTATION};
use bulkhead_operator::process::crd_wait::is_established;
use bulkhead_operator::process::rbac;
use common::BIN;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const TENANTS: &str = "tenants.bulkhead.dev";
const CUSTOMERS: &str = "customers.bulkhead.dev";

/// Gives the operator's test identity the CRD installer's ClusterRole and nothing else.
async fn grant_installer_role(admin: &Client) {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let role = rbac::crd_installer_cluster_role();
    Api::<ClusterRole>::all(admin.clone())
        .patch(rbac::CRD_INSTALLER, &params, &Patch::Apply(&role))
        .await
        .unwrap();
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(rbac::CRD_INSTALLER.into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: rbac::CRD_INSTALLER.into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: OPERATOR_USER.into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(rbac::CRD_INSTALLER, &params, &Patch::Apply(&binding))
        .await
        .unwrap();
}

/// Runs `bulkhead-operator crds apply` as the operator's test identity.
async fn crds_apply(plane: &ControlPlane) -> Output {
    tokio::process::Command::new(BIN)
        .args(["crds", "apply", "--context", "operator", "--log-format", "json"])
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args(["--timeout-seconds", "60"])
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap()
}

/// The lines it printed, sorted, after checking that it succeeded.
fn succeeded(output: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "crds apply failed: {stderr}");
    let mut lines: Vec<String> = String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn line(name: &str, what: &str) -> String {
    format!("customresourcedefinition/{name} {what} ({VERSION})")
}

async fn served(admin: &Client, name: &str) -> CustomResourceDefinition {
    Api::<CustomResourceDefinition>::all(admin.clone())
        .get(name)
        .await
        .unwrap()
}

/// Edits a served CRD as another tool (or another version of Bulkhead) would.
async fn edit(admin: &Client, name: &str, manager: &str, ops: serde_json::Value) {
    let patch: json_patch::Patch = serde_json::from_value(ops).unwrap();
    Api::<CustomResourceDefinition>::all(admin.clone())
        .patch(
            name,
            &PatchParams {
                field_manager: Some(manager.into()),
                ..PatchParams::default()
            },
            &Patch::<()>::Json(patch),
        )
        .await
        .unwrap();
}

fn version_of(crd: &CustomResourceDefinition) -> Option<&str> {
    crd.annotations().get(VERSION_ANNOTATION).map(String::as_str)
}

fn columns(crd: &CustomResourceDefinition) -> Vec<String> {
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect()
}

/// `/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/<property>`
fn spec_property(property: &str) -> String {
    format!("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/{property}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_apply_installs_upgrades_and_never_downgrades_the_crds() {
    bulkhead_e2e::init_test_logging();
    let plane = ControlPlane::start().await.expect("control plane");
    let admin = plane.admin().await.unwrap();
    grant_installer_role(&admin).await;

    // A fresh cluster: both created, served and established, annotated with this version.
    let output = crds_apply(&plane).await;
    assert_eq!(
        succeeded(&output),
        [line(CUSTOMERS, "created"), line(TENANTS, "created")]
    );
    let fresh = served(&admin, TENANTS).await;
    for name in [TENANTS, CUSTOMERS] {
        let crd = served(&admin, name).await;
        assert!(
            is_established(&crd),
            "{name} established when the command returns"
        );
        assert_eq!(version_of(&crd), Some(VERSION));
    }
    let built_in = bulkhead_crds::generate::crds();
    assert_eq!(
        fresh.spec.versions[0].schema, built_in[0].spec.versions[0].schema,
        "the served schema is the built-in one"
    );
    assert_eq!(columns(&fresh), ["Org", "Namespace", "Ready", "Reason", "Age"]);

    // Again: nothing to do.
    assert_eq!(
        succeeded(&crds_apply(&plane).await),
        [line(CUSTOMERS, "unchanged"), line(TENANTS, "unchanged")]
    );
    assert_eq!(
        served(&admin, TENANTS).await.resource_version(),
        fresh.resource_version()
    );

    // An older version's CRD: a printer column and a property missing, a property and a deprecation only it
    // had, a conversion webhook only it set (owned by its own field manager: server-side apply alone would
    // leave it in place), an older version annotation.
    edit(
        &admin,
        TENANTS,
        "older-bulkhead",
        json!([
            {"op": "remove", "path": "/spec/versions/0/additionalPrinterColumns/0"},
            {"op": "remove", "path": spec_property("displayName")},
            {"op": "add", "path": spec_property("legacyTier"), "value": {"type": "string"}},
            {"op": "add", "path": "/spec/versions/0/deprecated", "value": true},
            // Never called: with one version there is nothing to convert.
            {"op": "replace", "path": "/spec/conversion", "value": {
                "strategy": "Webhook",
                "webhook": {"clientConfig": {"url": "https://127.0.0.1:9/convert"}, "conversionReviewVersions": ["v1"]}
            }},
            {"op": "replace", "path": "/metadata/annotations/bulkhead.dev~1operator-version", "value": "0.0.1"},
        ]),
    )
    .await;
    let older = served(&admin, TENANTS).await;
    assert_ne!(older.spec, fresh.spec);
    assert_eq!(
        succeeded(&crds_apply(&plane).await),
        [line(CUSTOMERS, "unchanged"), line(TENANTS, "updated")]
    );
    let upgraded = served(&admin, TENANTS).await;
    let strategy = upgraded.spec.conversion.as_ref().map(|c| c.strategy.as_str());
    assert_eq!(strategy, Some("None"), "the older version's webhook is gone");
    assert!(
        upgraded.spec == fresh.spec,
        "exactly this version's spec is served"
    );
    assert_eq!(version_of(&upgraded), Some(VERSION));
    assert!(is_established(&upgraded));

    // A newer version's CRD (here: a column it dropped, and its annotation): left alone.
    edit(
        &admin,
        TENANTS,
        "newer-bulkhead",
        json!([
            {"op": "remove", "path": "/spec/versions/0/additionalPrinterColumns/3"},
            {"op": "replace", "path": "/metadata/annotations/bulkhead.dev~1operator-version", "value": "99.0.0"},
        ]),
    )
    .await;
    let newer = served(&admin, TENANTS).await;
    let lines = succeeded(&crds_apply(&plane).await);
    assert_eq!(lines[0], line(CUSTOMERS, "unchanged"));
    assert!(
        lines[1].starts_with(&format!("customresourcedefinition/{TENANTS} left alone"))
            && lines[1].contains("99.0.0")
            && lines[1].contains("not downgraded"),
        "{lines:?}"
    );
    let kept = served(&admin, TENANTS).await;
    assert_eq!(kept.resource_version(), newer.resource_version(), "not written");
    assert_eq!(version_of(&kept), Some("99.0.0"));
    assert_eq!(columns(&kept), ["Org", "Namespace", "Ready", "Age"]);

    // A version annotation that is not a version: refused with its category, nothing written.
    edit(
        &admin,
        TENANTS,
        "someone",
        json!([{"op": "replace", "path": "/metadata/annotations/bulkhead.dev~1operator-version", "value": "next"}]),
    )
    .await;
    let garbled = served(&admin, TENANTS).await;
    let output = crds_apply(&plane).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("crd_version") && stderr.contains("not a semantic version"),
        "{stderr}"
    );
    assert_eq!(
        served(&admin, TENANTS).await.resource_version(),
        garbled.resource_version()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_apply_without_the_rights_fails_with_its_category() {
    let plane = ControlPlane::start().await.expect("control plane");
    // The operator's identity has no rights at all here.
    let output = crds_apply(&plane).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(
        stderr.contains("crd_read") && stderr.contains(TENANTS),
        "{stderr}"
    );
}
