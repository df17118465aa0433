//! The checked-in CRD YAML must be exactly what the Rust types generate. When this fails, run `make generate` and
//! commit the result.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::path::PathBuf;

use bulkhead_crds::generate::{OUTPUT_DIRS, crd_files};

#[test]
fn checked_in_crd_yaml_matches_the_types() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = crd_files().expect("render CRDs");
    assert_eq!(files.len(), 2);
    let mut stale = Vec::new();
    for dir in OUTPUT_DIRS {
        for (name, expected) in &files {
            let path = root.join(dir).join(name);
            match std::fs::read_to_string(&path) {
                Ok(actual) if actual == *expected => {}
                Ok(_) => stale.push(format!("{} differs from the types", path.display())),
                Err(err) => stale.push(format!("{} cannot be read: {err}", path.display())),
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated CRD YAML is out of date; run `make generate`:\n{}",
        stale.join("\n")
    );
}

#[test]
fn conditions_merge_by_type_and_status_is_a_subresource() {
    for crd in bulkhead_crds::generate::crds() {
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
        let conditions = &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(
            conditions["x-kubernetes-list-type"], "map",
            "{}",
            crd.spec.names.kind
        );
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        for wanted in ["Org", "Namespace", "Ready", "Age"] {
            assert!(
                columns.contains(&wanted),
                "{} lacks column {wanted}",
                crd.spec.names.kind
            );
        }
        assert_eq!(crd.spec.scope, "Cluster");
    }
}
