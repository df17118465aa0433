//! The subject's namespace.

use std::collections::BTreeMap;

use bulkhead_crds::labels;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::subject::Subject;

/// The namespace: the subject's labels, Pod Security `restricted`, its UID.
pub fn namespace(subject: &Subject<'_>) -> Namespace {
    let mut ns_labels = subject.owner_labels();
    for mode in ["enforce", "audit", "warn"] {
        ns_labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
    }
    if subject.retired {
        ns_labels.insert(labels::ORPHANED.to_owned(), "true".to_owned());
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(subject.namespace()),
            labels: Some(ns_labels),
            annotations: Some(BTreeMap::from([(
                labels::OWNER_UID.to_owned(),
                subject.uid.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}
