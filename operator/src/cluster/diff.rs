//! Deciding whether a live object already matches what Bulkhead wants, without writing to the API.
//!
//! Each desired object carries a hash of itself in an annotation. An apply is needed when the live object's
//! hash differs (the desired state changed) or when a field Bulkhead sets has another value (a hand edit). That
//! keeps a converged cluster at zero writes per resync.

use serde_json::Value;
use sha2::{Digest, Sha256};

use bulkhead_crds::quantity;

/// Annotation holding the hash of the desired object Bulkhead last applied.
pub const SPEC_HASH: &str = "bulkhead.dev/spec-hash";

/// A short, stable hash of a JSON value.
pub fn hash(value: &Value) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether every field set in `desired` has the same value in `actual`. Lists must have the same length and
/// match element by element; quantities compare by value (`0.5` equals `500m`).
pub fn contains(actual: &Value, desired: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(key, w)| match have.get(key) {
            Some(h) => contains(h, w),
            None => w.is_null(),
        }),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| contains(h, w))
        }
        (Value::String(want), Value::String(have)) => want == have || same_quantity(want, have),
        (want, have) => want == have,
    }
}

fn same_quantity(a: &str, b: &str) -> bool {
    let starts_numeric = |s: &str| s.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    starts_numeric(a)
        && starts_numeric(b)
        && matches!((quantity::parse_milli(a), quantity::parse_milli(b)), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_added_fields_do_not_count_as_drift() {
        let desired =
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2, "ports": [{"port": 80}]}});
        let actual = json!({
            "metadata": {"labels": {"a": "1", "extra": "x"}, "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 2, "ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "10.0.0.9"},
            "status": {}
        });
        assert!(contains(&actual, &desired));
    }

    #[test]
    fn hand_edits_are_drift() {
        let desired = json!({"spec": {"image": "a:1", "ports": [{"port": 80}]}});
        assert!(!contains(
            &json!({"spec": {"image": "evil:1", "ports": [{"port": 80}]}}),
            &desired
        ));
        assert!(!contains(
            &json!({"spec": {"image": "a:1", "ports": [{"port": 80}, {"port": 22}]}}),
            &desired
        ));
        assert!(!contains(&json!({"spec": {"ports": [{"port": 80}]}}), &desired));
        assert!(!contains(
            &json!({"spec": {"image": "a:1", "ports": []}}),
            &desired
        ));
    }

    #[test]
    fn quantities_compare_by_value_and_other_strings_exactly() {
        assert!(contains(&json!({"cpu": "500m"}), &json!({"cpu": "0.5"})));
        assert!(contains(&json!({"memory": "1Gi"}), &json!({"memory": "1024Mi"})));
        assert!(!contains(&json!({"cpu": "1"}), &json!({"cpu": "0.5"})));
        assert!(!contains(&json!({"name": "e1"}), &json!({"name": "1e"})));
        assert!(!contains(&json!({"v": "10"}), &json!({"v": "1e1x"})));
    }

    #[test]
    fn hashes_are_stable_and_sensitive() {
        let a = json!({"x": 1, "y": [1, 2]});
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_ne!(hash(&a), hash(&json!({"x": 1, "y": [2, 1]})));
        assert_eq!(hash(&a).len(), 16);
    }
}
