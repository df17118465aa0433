//! The files in `examples/` are what users copy first: every top-level example must pass validation, and every
//! example in `examples/invalid/` must be refused for the fields its comments name.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::path::{Path, PathBuf};

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use bulkhead_crds::validate;

fn documents(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Validates one document, returning the refused fields.
fn refused_fields(doc: serde_json::Value) -> (String, Vec<String>) {
    let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
    let result = match doc["kind"].as_str().unwrap() {
        "Tenant" => {
            let t: Tenant = serde_json::from_value(doc).unwrap();
            validate::tenant(&name, &t.spec, None)
        }
        "Customer" => {
            let c: Customer = serde_json::from_value(doc).unwrap();
            validate::customer(&name, &c.spec, None)
        }
        other => panic!("unexpected kind {other} in examples"),
    };
    let fields = result
        .err()
        .map(|e| e.0.into_iter().map(|f| f.field).collect())
        .unwrap_or_default();
    (name, fields)
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn every_example_is_valid() {
    let mut count = 0;
    for file in ["tenants.yaml", "customers.yaml", "servers/tenant-on-eu-2.yaml"] {
        for doc in documents(&examples().join(file)) {
            let (name, fields) = refused_fields(doc);
            assert!(fields.is_empty(), "{file}: {name} is refused: {fields:?}");
            count += 1;
        }
    }
    assert_eq!(count, 7);
}

#[test]
fn every_invalid_example_is_refused_for_exactly_its_commented_fields() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples().join("invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    for file in files {
        let expected = validate::cases::commented_refusals(&std::fs::read_to_string(&file).unwrap());
        assert!(!expected.is_empty(), "{} names no refused fields", file.display());
        let docs = documents(&file);
        assert_eq!(docs.len(), 1, "{}: one resource per file", file.display());
        let (_, fields) = refused_fields(docs.into_iter().next().unwrap());
        let fields: std::collections::BTreeSet<String> = fields.into_iter().collect();
        assert_eq!(fields, expected, "{}", file.display());
    }
}
