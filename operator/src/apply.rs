//! Server-side apply of a [`Desired`] set under one field manager, skipping objects that already match, and
//! pruning objects that carry the subject's labels but are no longer desired.

use std::collections::BTreeSet;
use std::fmt::Debug;

use bulkhead_crds::labels;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::build::{Desired, Subject};
use crate::diff;
use crate::observe::Stores;

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
}

impl Report {
    /// Number of writes made.
    pub fn writes(&self) -> usize {
        self.created.len() + self.updated.len() + self.reverted.len() + self.pruned.len()
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

    prune(
        client,
        &stores.network_policies,
        subject,
        &ns,
        &policy_names,
        report,
    )
    .await?;
    prune(
        client,
        &stores.resource_quotas,
        subject,
        &ns,
        &BTreeSet::from([quota_name]),
        report,
    )
    .await?;
    prune(
        client,
        &stores.limit_ranges,
        subject,
        &ns,
        &BTreeSet::from([limits_name]),
        report,
    )
    .await?;
    prune(
        client,
        &stores.service_accounts,
        subject,
        &ns,
        &BTreeSet::from([account_name]),
        report,
    )
    .await?;
    prune(
        client,
        &stores.deployments,
        subject,
        &ns,
        &BTreeSet::from([deployment_name]),
        report,
    )
    .await?;
    prune(
        client,
        &stores.services,
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
    store: &Store<K>,
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
            &PatchParams::apply(crate::FIELD_MANAGER).force(),
            &Patch::Apply(&value),
        )
        .await
        .map_err(|source| ApplyError::Write {
            kind: kind.clone(),
            namespace: namespace.clone().unwrap_or_default(),
            name: name.clone(),
            source: Box::new(source),
        })?;
    outcome.push(desired.object_ref(&()));
    Ok(Some(written))
}

/// Like [`ensure`], and afterwards makes the policy's spec exactly the desired one. Server-side apply leaves
/// fields that another manager added (say, an `ingress` rule added with `kubectl edit` to the default-deny
/// policy); for a NetworkPolicy any such field may open a flow, so it is replaced.
async fn ensure_policy(
    client: &Client,
    store: &Store<NetworkPolicy>,
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
    api.replace(
        &name,
        &PostParams {
            field_manager: Some(crate::FIELD_MANAGER.to_owned()),
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

async fn prune<K>(
    client: &Client,
    store: &Store<K>,
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
    for object in store.state() {
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
