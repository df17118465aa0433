//! Who a namespace belongs to. Bulkhead never adopts a namespace silently: only one that carries exactly the
//! subject's labels counts as its own, or one that Bulkhead made for this very resource (its owner UID
//! annotation names the resource's UID) and someone has relabelled since; the apply then puts the labels back.

use bulkhead_crds::labels;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use crate::cluster::observe::Stores;

/// The state of a subject's namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum NamespaceState {
    /// It does not exist.
    Absent,
    /// It exists and carries the subject's labels.
    Ours(Box<Namespace>),
    /// It carries the subject's labels and is being deleted.
    Terminating,
    /// It exists and belongs to someone else; the detail says why.
    Foreign(String),
}

/// Classifies a namespace by its labels and, when they do not name the subject, by the owner UID annotation
/// Bulkhead wrote when it made the namespace (pure). A UID is never reused, so only a namespace made for this
/// resource carries it.
pub fn classify(ns: &Namespace, tenant: &str, customer: Option<&str>, uid: &str) -> NamespaceState {
    match by_labels(ns, tenant, customer) {
        NamespaceState::Foreign(_) if made_for(ns, uid) => ours(ns),
        state => state,
    }
}

/// Whether Bulkhead made the namespace for the resource with this UID.
fn made_for(ns: &Namespace, uid: &str) -> bool {
    !uid.is_empty() && ns.annotations().get(labels::OWNER_UID).map(String::as_str) == Some(uid)
}

/// The subject's namespace, unless it is being deleted.
fn ours(ns: &Namespace) -> NamespaceState {
    if ns.metadata.deletion_timestamp.is_some() {
        NamespaceState::Terminating
    } else {
        NamespaceState::Ours(Box::new(ns.clone()))
    }
}

fn by_labels(ns: &Namespace, tenant: &str, customer: Option<&str>) -> NamespaceState {
    let l = ns.labels();
    if l.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGED_BY_VALUE) {
        return NamespaceState::Foreign(format!(
            "it lacks the label {}={}",
            labels::MANAGED_BY,
            labels::MANAGED_BY_VALUE
        ));
    }
    let owner_tenant = l.get(labels::TENANT).map(String::as_str);
    let owner_customer = l.get(labels::CUSTOMER).map(String::as_str);
    if owner_tenant != Some(tenant) || owner_customer != customer {
        let owner = match (owner_tenant, owner_customer) {
            (Some(t), Some(c)) => format!("Customer {c} of Tenant {t}"),
            (Some(t), None) => format!("Tenant {t}"),
            _ => "no Tenant".to_owned(),
        };
        return NamespaceState::Foreign(format!("it belongs to {owner}"));
    }
    ours(ns)
}

/// Looks the namespace up in the cache, or (when the cache does not have it, e.g. a foreign namespace the
/// managed-by watch does not see) in the API.
pub async fn inspect(
    client: &Client,
    stores: &Stores,
    name: &str,
    tenant: &str,
    customer: Option<&str>,
    uid: &str,
) -> Result<NamespaceState, kube::Error> {
    if let Some(ns) = stores.namespaces.get(&ObjectRef::new(name)) {
        return Ok(classify(&ns, tenant, customer, uid));
    }
    let api: Api<Namespace> = Api::all(client.clone());
    Ok(match api.get_opt(name).await? {
        Some(ns) => classify(&ns, tenant, customer, uid),
        None => NamespaceState::Absent,
    })
}

/// Removes the orphan marks from a namespace Bulkhead is taking back into service.
pub async fn clear_orphan_marks(client: &Client, name: &str) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "metadata": {
            "labels": {labels::ORPHANED: null},
            "annotations": {labels::ORPHANED_AT: null}
        }
    });
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(crate::cluster::FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn ns(labels: &[(&str, &str)]) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("bk-acme".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    #[test]
    fn only_exact_owner_labels_make_a_namespace_ours() {
        let ours = ns(&[(labels::MANAGED_BY, "bulkhead"), (labels::TENANT, "acme")]);
        assert!(matches!(
            classify(&ours, "acme", None, "uid-acme"),
            NamespaceState::Ours(_)
        ));
        assert!(
            matches!(classify(&ours, "acme", Some("dental"), "uid-dental"), NamespaceState::Foreign(d) if d.contains("Tenant acme"))
        );
        assert!(matches!(
            classify(&ours, "globex", None, "uid-globex"),
            NamespaceState::Foreign(_)
        ));
        let foreign = ns(&[(labels::TENANT, "acme")]);
        assert!(
            matches!(classify(&foreign, "acme", None, "uid-acme"), NamespaceState::Foreign(d) if d.contains("lacks the label"))
        );
        let customer = ns(&[
            (labels::MANAGED_BY, "bulkhead"),
            (labels::TENANT, "acme"),
            (labels::CUSTOMER, "dental"),
        ]);
        assert!(matches!(
            classify(&customer, "acme", Some("dental"), "uid-dental"),
            NamespaceState::Ours(_)
        ));
        assert!(
            matches!(classify(&customer, "acme", None, "uid-acme"), NamespaceState::Foreign(d) if d.contains("Customer dental"))
        );
    }

    #[test]
    fn a_namespace_being_deleted_is_terminating() {
        let mut ours = ns(&[(labels::MANAGED_BY, "bulkhead"), (labels::TENANT, "acme")]);
        ours.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(
            classify(&ours, "acme", None, "uid-acme"),
            NamespaceState::Terminating
        );
    }

    fn with_owner_uid(mut ns: Namespace, uid: &str) -> Namespace {
        ns.metadata.annotations = Some(BTreeMap::from([(labels::OWNER_UID.to_owned(), uid.to_owned())]));
        ns
    }

    #[test]
    fn a_relabelled_namespace_made_for_the_resource_is_still_ours() {
        let cases: [(&str, &[(&str, &str)]); 4] = [
            ("no labels at all", &[]),
            ("the tenant label removed", &[(labels::MANAGED_BY, "bulkhead")]),
            ("the managed-by label removed", &[(labels::TENANT, "acme")]),
            (
                "relabelled to another Tenant",
                &[(labels::MANAGED_BY, "bulkhead"), (labels::TENANT, "globex")],
            ),
        ];
        for (what, pairs) in cases {
            let relabelled = with_owner_uid(ns(pairs), "uid-acme");
            assert!(
                matches!(
                    classify(&relabelled, "acme", None, "uid-acme"),
                    NamespaceState::Ours(_)
                ),
                "{what}"
            );
            // Another resource of the same name (a later Tenant acme) did not make it: it stays foreign.
            assert!(
                matches!(
                    classify(&relabelled, "acme", None, "uid-other"),
                    NamespaceState::Foreign(_)
                ),
                "{what}"
            );
        }
        // Without the annotation a relabelled namespace is foreign, and an empty UID matches nothing.
        assert!(matches!(
            classify(&ns(&[]), "acme", None, "uid-acme"),
            NamespaceState::Foreign(_)
        ));
        assert!(matches!(
            classify(&with_owner_uid(ns(&[]), ""), "acme", None, ""),
            NamespaceState::Foreign(_)
        ));
        // Labels that name another owner do not hide a namespace being deleted.
        let mut deleting = with_owner_uid(ns(&[]), "uid-acme");
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(
            classify(&deleting, "acme", None, "uid-acme"),
            NamespaceState::Terminating
        );
    }
}
