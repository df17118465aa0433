//! Server-side apply of a [`Desired`] set under one field manager, skipping objects that already match, and
//! pruning objects that carry the subject's labels but are no longer desired. NetworkPolicies are pruned by
//! namespace instead of by label: the subject's namespace keeps exactly the desired policies, and one that
//! someone else made there is deleted like any other.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use bulkhead_crds::labels;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::warn;

use crate::cluster::cache::Cache;
use crate::cluster::diff;
use crate::cluster::observe::Stores;
use crate::pipeline::build::{Desired, Subject};

/// Errors of the apply step.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An object could not be serialized (a bug).
    #[error("serializing {kind} {name}: {source}")]
    Serialize {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The API refused a write.
    #[error("applying {kind} {namespace}/{name}: {source}")]
    Write {
        /// The object's kind.
        kind: String,
        /// Its namespace (empty for cluster-scoped objects).
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// An object that is no longer desired could not be deleted.
    #[error("pruning {kind} {namespace}/{name}: {source}")]
    Prune {
        /// The object's kind.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
}

impl ApplyError {
    /// A fixed category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ApplyError::Serialize { .. } => "serialize",
            ApplyError::Write { .. } => "apply",
            ApplyError::Prune { .. } => "prune",
        }
    }
}

/// What an apply changed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// Objects that did not exist and were created.
    pub created: Vec<ObjectReference>,
    /// Objects whose desired state changed and were updated.
    pub updated: Vec<ObjectReference>,
    /// Objects that were edited by hand and were set back.
    pub reverted: Vec<ObjectReference>,
    /// Objects that were no longer desired and were deleted.
    pub pruned: Vec<ObjectReference>,
    /// Objects that Bulkhead did not make, found in the subject's namespace where only Bulkhead's may be, and
    /// deleted (NetworkPolicies).
    pub removed: Vec<ObjectReference>,
}

impl Report {
    /// Number of writes made.
    pub fn writes(&self) -> usize {
        self.created.len() + self.updated.len() + self.reverted.len() + self.pruned.len() + self.removed.len()
    }
}

/// `Kind/name` of each reference, comma-separated.
pub fn describe(refs: &[ObjectReference]) -> String {
    refs.iter()
        .map(|r| {
            format!(
                "{}/{}",
                r.kind.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies every object of `desired`, then prunes what carries the subject's labels but is not desired.
/// Returns the stack's Deployment as it stands after the apply (from the write, else from the cache).
pub async fn apply(
    client: &Client,
    stores: &Stores,
    subject: &Subject<'_>,
    desired: Desired,
    report: &mut Report,
) -> Result<Option<Deployment>, ApplyError> {
    let Desired {
        namespace,
        network_policies,
        resource_quota,
        limit_range,
        service_account,
        deployment,
        service,
    } = desired;
    let ns = subject.namespace();
    ensure(&Api::all(client.clone()), &stores.namespaces, namespace, report).await?;
    let mut policy_names = BTreeSet::new();
    for policy in network_policies {
        policy_names.insert(policy.name_any());
        ensure_policy(client, &stores.network_policies, policy, report).await?;
    }
    let quota_name = resource_quota.name_any();
    ensure(
        &Api::namespaced(client.clone(), &ns),
        &stores.resource_quotas,
        resource_quota,
        report,
    )
    .await?;
    let limits_name = limit_range.name_any();
    ensure(
        &Api::namespaced(client.clone(), &ns),
        &stores.limit_ranges,
        limit_range,
        report,
    )
    .await?;
    let account_name = service_account.name_any();
    ensure(
        &Api::namespaced(client.clone(), &ns),
        &stores.service_accounts,
        service_account,
        report,
    )
    .await?;
    let deployment_name = deployment.name_any();
    let written_deployment = ensure(
        &Api::namespaced(client.clone(), &ns),
        &stores.deployments,
        deployment,
        report,
    )
    .await?;
    let live_deployment = written_deployment.or_else(|| {
        let key = ObjectRef::new(&deployment_name).within(&ns);
        stores.deployments.get(&key).map(|d| d.as_ref().clone())
    });
    let service_name = service.name_any();
    ensure(
        &Api::namespaced(client.clone(), &ns),
        &stores.services,
        service,
        report,
    )
    .await?;

    prune_policies(
        client,
        stores.network_policies.in_namespace(&ns),
        subject,
        &ns,
        &policy_names,
        report,
    )
    .await?;
    prune(
        client,
        stores.resource_quotas.in_namespace(&ns),
        subject,
        &ns,
        &BTreeSet::from([quota_name]),
        report,
    )
    .await?;
    prune(
        client,
        stores.limit_ranges.in_namespace(&ns),
        subject,
        &ns,
        &BTreeSet::from([limits_name]),
        report,
    )
    .await?;
    prune(
        client,
        stores.service_accounts.in_namespace(&ns),
        subject,
        &ns,
        &BTreeSet::from([account_name]),
        report,
    )
    .await?;
    prune(
        client,
        stores.deployments.in_namespace(&ns),
        subject,
        &ns,
        &BTreeSet::from([deployment_name]),
        report,
    )
    .await?;
    prune(
        client,
        stores.services.in_namespace(&ns),
        subject,
        &ns,
        &BTreeSet::from([service_name]),
        report,
    )
    .await?;
    Ok(live_deployment)
}

/// The desired object as JSON with its hash annotation.
fn with_hash<K: Serialize>(desired: &K, kind: &str, name: &str) -> Result<Value, ApplyError> {
    let mut value = serde_json::to_value(desired).map_err(|source| ApplyError::Serialize {
        kind: kind.to_owned(),
        name: name.to_owned(),
        source,
    })?;
    let hash = diff::hash(&value);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = annotations.as_object_mut() {
            map.insert(diff::SPEC_HASH.to_owned(), Value::String(hash));
        }
    }
    Ok(value)
}

/// Applies one object unless the cached live object already matches. Returns the live object after the write,
/// or `None` when nothing was written.
async fn ensure<K>(
    api: &Api<K>,
    store: &Cache<K>,
    desired: K,
    report: &mut Report,
) -> Result<Option<K>, ApplyError>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let kind = K::kind(&()).into_owned();
    let name = desired.name_any();
    let namespace = desired.namespace();
    let value = with_hash(&desired, &kind, &name)?;
    let mut key = ObjectRef::<K>::new(&name);
    if let Some(ns) = &namespace {
        key = key.within(ns);
    }
    let outcome = match store.get(&key) {
        None => &mut report.created,
        Some(live) => {
            let live_value = serde_json::to_value(live.as_ref()).map_err(|source| ApplyError::Serialize {
                kind: kind.clone(),
                name: name.clone(),
                source,
            })?;
            if diff::contains(&live_value, &value) {
                return Ok(None);
            }
            let same_hash = live.annotations().get(diff::SPEC_HASH).map(String::as_str)
                == value["metadata"]["annotations"][diff::SPEC_HASH].as_str();
            if same_hash {
                &mut report.reverted
            } else {
                &mut report.updated
            }
        }
    };
    let written = api
        .patch(
            &name,
            &PatchParams::apply(crate::cluster::FIELD_MANAGER).force(),
            &Patch::Apply(&value),
        )
        .await
        .map_err(|source| ApplyError::Write {
            kind: kind.clone(),
            namespace: namespace.clone().unwrap_or_default(),
            name: name.clone(),
            source: Box::new(source),
        })?;
    store.wrote(&written);
    outcome.push(desired.object_ref(&()));
    Ok(Some(written))
}

/// Like [`ensure`], and afterwards makes the policy's spec exactly the desired one. Server-side apply leaves
/// fields that another manager added (say, an `ingress` rule added with `kubectl edit` to the default-deny
/// policy); for a NetworkPolicy any such field may open a flow, so it is replaced.
async fn ensure_policy(
    client: &Client,
    store: &Cache<NetworkPolicy>,
    desired: NetworkPolicy,
    report: &mut Report,
) -> Result<(), ApplyError> {
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    let key = ObjectRef::<NetworkPolicy>::new(&name).within(&namespace);
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let written = ensure(&api, store, desired.clone(), report).await?;
    let live = written.or_else(|| store.get(&key).map(|cached| cached.as_ref().clone()));
    let Some(mut live) = live else { return Ok(()) };
    if live.spec == desired.spec {
        return Ok(());
    }
    live.spec = desired.spec;
    live.metadata.managed_fields = None;
    let replaced = api
        .replace(
            &name,
            &PostParams {
                field_manager: Some(crate::cluster::FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            },
            &live,
        )
        .await
        .map_err(|source| ApplyError::Write {
            kind: "NetworkPolicy".into(),
            namespace,
            name: name.clone(),
            source: Box::new(source),
        })?;
    store.wrote(&replaced);
    if !report
        .reverted
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
    {
        report.reverted.push(live.object_ref(&()));
    }
    Ok(())
}

/// Whether a cached object belongs to `subject` (by labels) and lives in its namespace.
fn owned_by<K: Resource>(object: &K, subject: &Subject<'_>, namespace: &str) -> bool {
    let l = object.labels();
    object.meta().namespace.as_deref() == Some(namespace)
        && l.get(labels::TENANT).map(String::as_str) == Some(subject.tenant)
        && l.get(labels::CUSTOMER).map(String::as_str) == subject.customer
}

/// Why a NetworkPolicy in the subject's namespace is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stray {
    /// Bulkhead made it for this subject (it carries the subject's labels) and it is no longer desired.
    NoLongerDesired,
    /// Someone else made it: it lacks the subject's labels.
    Foreign,
}

impl Stray {
    /// A fixed category for logs and Event reasons.
    pub fn category(self) -> &'static str {
        match self {
            Stray::NoLongerDesired => "no_longer_desired",
            Stray::Foreign => "foreign",
        }
    }
}

/// The NetworkPolicies in `namespace` that must go, and why (pure): every one that is not in `keep`, whoever
/// made it, with or without labels. Policies in any other namespace are never chosen.
pub fn stray_policies<'a>(
    policies: &'a [Arc<NetworkPolicy>],
    subject: &Subject<'_>,
    namespace: &str,
    keep: &BTreeSet<String>,
) -> Vec<(&'a NetworkPolicy, Stray)> {
    policies
        .iter()
        .map(Arc::as_ref)
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| !keep.contains(&p.name_any()))
        .map(|p| {
            let why = if owned_by(p, subject, namespace) {
                Stray::NoLongerDesired
            } else {
                Stray::Foreign
            };
            (p, why)
        })
        .collect()
}

/// Deletes every NetworkPolicy in the subject's namespace that is not desired (see [`stray_policies`]).
async fn prune_policies(
    client: &Client,
    cached: Vec<Arc<NetworkPolicy>>,
    subject: &Subject<'_>,
    namespace: &str,
    keep: &BTreeSet<String>,
    report: &mut Report,
) -> Result<(), ApplyError> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    for (policy, why) in stray_policies(&cached, subject, namespace, keep) {
        let name = policy.name_any();
        if why == Stray::Foreign {
            warn!(
                namespace,
                name = %name,
                category = why.category(),
                "deleting a NetworkPolicy that Bulkhead did not make from a namespace it manages"
            );
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => match why {
                Stray::NoLongerDesired => report.pruned.push(policy.object_ref(&())),
                Stray::Foreign => report.removed.push(policy.object_ref(&())),
            },
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(ApplyError::Prune {
                    kind: "NetworkPolicy".into(),
                    namespace: namespace.to_owned(),
                    name,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(())
}

async fn prune<K>(
    client: &Client,
    cached: Vec<Arc<K>>,
    subject: &Subject<'_>,
    namespace: &str,
    keep: &BTreeSet<String>,
    report: &mut Report,
) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let kind = K::kind(&()).into_owned();
    for object in cached {
        if !owned_by(object.as_ref(), subject, namespace) || keep.contains(&object.name_any()) {
            continue;
        }
        let name = object.name_any();
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => report.pruned.push(object.object_ref(&())),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(ApplyError::Prune {
                    kind,
                    namespace: namespace.to_owned(),
                    name,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_crds::v1alpha1::{QuotaSpec, StackSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn stack() -> StackSpec {
        serde_json::from_value(serde_json::json!({"image": "registry.example.com/p:1"})).unwrap()
    }

    fn subject<'a>(stack: &'a StackSpec, quota: &'a QuotaSpec, customer: Option<&'a str>) -> Subject<'a> {
        Subject {
            tenant: "acme",
            customer,
            uid: "uid-1",
            stack,
            quota,
            egress: &[],
            database_enabled: false,
            database_server: None,
            credentials_revision: None,
            retired: false,
        }
    }

    fn policy(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Arc<NetworkPolicy> {
        Arc::new(NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: (!labels.is_empty()).then(|| {
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                }),
                ..ObjectMeta::default()
            },
            ..NetworkPolicy::default()
        })
    }

    fn strays(
        policies: &[Arc<NetworkPolicy>],
        subject: &Subject<'_>,
        keep: &[&str],
    ) -> Vec<(String, String, Stray)> {
        let keep = keep.iter().map(|k| (*k).to_owned()).collect();
        stray_policies(policies, subject, &subject.namespace(), &keep)
            .into_iter()
            .map(|(p, why)| (p.namespace().unwrap_or_default(), p.name_any(), why))
            .collect()
    }

    #[test]
    fn every_undesired_policy_in_the_subjects_namespace_goes_whoever_made_it() {
        let (stack, quota) = (stack(), QuotaSpec::default());
        let acme = subject(&stack, &quota, None);
        let ours = [(labels::MANAGED_BY, "bulkhead"), (labels::TENANT, "acme")];
        let policies = [
            policy("bk-acme", "bulkhead-default-deny", &ours),
            policy("bk-acme", "bulkhead-allow-postgres", &ours),
            policy("bk-acme", "open-to-b", &[]),
            // Forged labels naming another Tenant do not protect a policy in acme's namespace.
            policy("bk-acme", "forged", &[(labels::TENANT, "globex")]),
            // Other namespaces are never touched, whatever their policies' labels say.
            policy("bk-globex", "open-to-acme", &[]),
            policy("bk-acme-dental", "bulkhead-allow-postgres", &ours),
            policy("default", "hand-made", &ours),
        ];
        assert_eq!(
            strays(&policies, &acme, &["bulkhead-default-deny"]),
            [
                (
                    "bk-acme".into(),
                    "bulkhead-allow-postgres".into(),
                    Stray::NoLongerDesired
                ),
                ("bk-acme".into(), "open-to-b".into(), Stray::Foreign),
                ("bk-acme".into(), "forged".into(), Stray::Foreign),
            ]
        );
        assert_eq!(Stray::Foreign.category(), "foreign");
        assert_eq!(Stray::NoLongerDesired.category(), "no_longer_desired");
    }

    #[test]
    fn a_customer_keeps_its_own_policies_and_loses_its_tenants_labelled_ones() {
        let (stack, quota) = (stack(), QuotaSpec::default());
        let dental = subject(&stack, &quota, Some("dental"));
        let mine = [
            (labels::MANAGED_BY, "bulkhead"),
            (labels::TENANT, "acme"),
            (labels::CUSTOMER, "dental"),
        ];
        let tenants = [(labels::MANAGED_BY, "bulkhead"), (labels::TENANT, "acme")];
        let policies = [
            policy("bk-acme-dental", "bulkhead-default-deny", &mine),
            policy("bk-acme-dental", "bulkhead-allow-egress", &mine),
            policy("bk-acme-dental", "copied-from-tenant", &tenants),
            policy("bk-acme", "bulkhead-allow-egress", &tenants),
        ];
        assert_eq!(
            strays(&policies, &dental, &["bulkhead-default-deny"]),
            [
                (
                    "bk-acme-dental".into(),
                    "bulkhead-allow-egress".into(),
                    Stray::NoLongerDesired
                ),
                (
                    "bk-acme-dental".into(),
                    "copied-from-tenant".into(),
                    Stray::Foreign
                ),
            ]
        );
        let all_desired = [
            "bulkhead-default-deny",
            "bulkhead-allow-egress",
            "copied-from-tenant",
        ];
        assert!(strays(&policies, &dental, &all_desired).is_empty());
    }

    #[test]
    fn a_removal_counts_as_a_write() {
        let report = Report {
            removed: vec![ObjectReference::default()],
            ..Report::default()
        };
        assert_eq!(report.writes(), 1);
    }
}
