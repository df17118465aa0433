//! The cache of one managed kind, kept compact. Thousands of namespaces each hold about ten managed objects, and
//! the decoded form of a Kubernetes object (maps and strings allocated one by one) takes several times the
//! memory of its JSON. So the cache keeps each object as the compact JSON the API sent (less what no reconcile
//! reads) and decodes it when a reconcile asks, which is a few microseconds. Objects are ordered by namespace,
//! so the objects of one namespace are one range.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError, RwLock};

use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::warn;

use crate::cluster::echo::Echoes;

/// Objects of one kind, by `namespace/name` (`name` alone for cluster-scoped ones), as compact JSON.
pub struct Cache<K> {
    state: Arc<RwLock<State>>,
    ready: Arc<watch::Sender<bool>>,
    /// The versions the operator's own writes of this kind produced, until their events arrive.
    echoes: Echoes,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            ready: Arc::clone(&self.ready),
            echoes: self.echoes.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Cache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Box<[u8]>>,
    /// A (re)list in progress: its objects replace the others once it is complete, so that until then every
    /// lookup answers from the previous list.
    listing: Option<BTreeMap<String, Box<[u8]>>>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            ready: Arc::new(watch::Sender::new(false)),
            echoes: Echoes::default(),
            kind: PhantomData,
        }
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
{
    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Every change is one whole step, so the map is consistent even after a panic elsewhere.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached object `key` names.
    pub fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        let id = id(key.namespace.as_deref(), &key.name);
        self.state()
            .objects
            .get(&id)
            .and_then(|json| decode(json))
            .map(Arc::new)
    }

    /// The cached objects in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let from = format!("{namespace}/");
        self.state()
            .objects
            .range(from.clone()..)
            .take_while(|(id, _)| id.starts_with(&from))
            .filter_map(|(_, json)| decode(json).map(Arc::new))
            .collect()
    }

    /// Every cached object.
    pub fn all(&self) -> Vec<Arc<K>> {
        self.state()
            .objects
            .values()
            .filter_map(|json| decode(json).map(Arc::new))
            .collect()
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.state().objects.len()
    }

    /// Whether the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one watch event in. Returns the objects a completed list no longer has (deleted while no watch was
    /// running), which the caller may need to act on.
    pub fn apply(&self, event: &watcher::Event<K>) -> Vec<Arc<K>> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(object) => {
                if let Some((id, json)) = encode(object) {
                    state.objects.insert(id, json);
                }
                Vec::new()
            }
            watcher::Event::Delete(object) => {
                state.objects.remove(&id_of(object));
                Vec::new()
            }
            watcher::Event::Init => {
                state.listing = Some(BTreeMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                if let Some((id, json)) = encode(object) {
                    state.listing.get_or_insert_with(BTreeMap::new).insert(id, json);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = state.listing.take().unwrap_or_default();
                let kept: BTreeSet<&String> = listed.keys().collect();
                let gone = state
                    .objects
                    .iter()
                    .filter(|(id, _)| !kept.contains(id))
                    .filter_map(|(_, json)| decode(json).map(Arc::new))
                    .collect();
                state.objects = listed;
                drop(state);
                self.ready.send_replace(true);
                gone
            }
        }
    }

    /// Records an object as the operator just wrote it, so that its watch event is known as an echo.
    pub fn wrote(&self, object: &K) {
        self.echoes
            .wrote(&id_of(object), object.meta().resource_version.as_deref());
    }

    /// Whether a watch event's object is exactly what one of the operator's writes produced. Call before
    /// [`Cache::apply`] takes the event in.
    pub fn is_echo(&self, event: &watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Apply(object) => self
                .echoes
                .is_echo(&id_of(object), object.meta().resource_version.as_deref()),
            watcher::Event::Delete(object) => {
                self.echoes.forget(&id_of(object));
                false
            }
            watcher::Event::Init => {
                self.echoes.clear();
                false
            }
            watcher::Event::InitApply(_) | watcher::Event::InitDone => false,
        }
    }

    /// Waits until the cache holds its first complete list.
    pub async fn ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives as long as this cache, so the wait ends only with the list.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// The cache key of an object in `namespace` (if namespaced) named `name`. Namespace names cannot hold a `/`,
/// so one namespace's objects are exactly the keys that start with `namespace/`.
fn id(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    }
}

fn id_of<K: Resource>(object: &K) -> String {
    id(
        object.meta().namespace.as_deref(),
        object.meta().name.as_deref().unwrap_or_default(),
    )
}

fn encode<K: Resource<DynamicType = ()> + Serialize>(object: &K) -> Option<(String, Box<[u8]>)> {
    match serde_json::to_vec(object) {
        Ok(json) => Some((id_of(object), json.into_boxed_slice())),
        Err(err) => {
            // Not expected: the object was just decoded from the API's JSON.
            warn!(kind = %K::kind(&()), error = %err, "an object could not be cached");
            None
        }
    }
}

fn decode<K: Resource<DynamicType = ()> + DeserializeOwned>(json: &[u8]) -> Option<K> {
    match serde_json::from_slice(json) {
        Ok(object) => Some(object),
        Err(err) => {
            warn!(kind = %K::kind(&()), error = %err, "a cached object could not be read");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn policy(namespace: &str, name: &str, label: &str) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some([("app".to_owned(), label.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".into()]),
                ..NetworkPolicySpec::default()
            }),
        }
    }

    fn names(objects: &[Arc<NetworkPolicy>]) -> Vec<String> {
        objects.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn objects_come_back_as_they_went_in() {
        let cache = Cache::<NetworkPolicy>::default();
        let deny = policy("bk-acme", "deny", "x");
        cache.apply(&watcher::Event::Apply(deny.clone()));
        assert_eq!(
            cache.get(&ObjectRef::new("deny").within("bk-acme")).as_deref(),
            Some(&deny)
        );
        assert!(cache.get(&ObjectRef::new("deny").within("bk-globex")).is_none());
        // A change replaces the object; a deletion removes it.
        cache.apply(&watcher::Event::Apply(policy("bk-acme", "deny", "y")));
        let changed = cache.get(&ObjectRef::new("deny").within("bk-acme")).unwrap();
        assert_eq!(changed.metadata.labels.as_ref().unwrap()["app"], "y");
        cache.apply(&watcher::Event::Delete(deny));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_namespace_is_one_range() {
        let cache = Cache::<NetworkPolicy>::default();
        for (ns, name) in [
            ("bk-acme", "dns"),
            ("bk-acme", "deny"),
            ("bk-acme-dental", "deny"),
            ("bk-ac", "deny"),
            ("bk-acmf", "deny"),
        ] {
            cache.apply(&watcher::Event::Apply(policy(ns, name, "x")));
        }
        assert_eq!(names(&cache.in_namespace("bk-acme")), ["deny", "dns"]);
        assert_eq!(names(&cache.in_namespace("bk-acme-dental")), ["deny"]);
        assert!(cache.in_namespace("bk").is_empty());
        assert_eq!(cache.all().len(), 5);
    }

    #[test]
    fn cluster_scoped_objects_are_found_by_name() {
        let cache = Cache::<Namespace>::default();
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some("bk-acme".into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        cache.apply(&watcher::Event::Apply(ns.clone()));
        assert_eq!(cache.get(&ObjectRef::new("bk-acme")).as_deref(), Some(&ns));
    }

    #[tokio::test]
    async fn a_relist_answers_from_the_old_list_until_complete_and_reports_what_is_gone() {
        let cache = Cache::<NetworkPolicy>::default();
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(policy("bk-acme", "deny", "x")));
        cache.apply(&watcher::Event::InitApply(policy("bk-globex", "deny", "x")));
        assert!(cache.is_empty());
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), cache.ready())
                .await
                .is_err(),
            "ready before the first list is complete"
        );
        assert!(cache.apply(&watcher::Event::InitDone).is_empty());
        cache.ready().await;
        assert_eq!(cache.len(), 2);
        // A relist without bk-acme's policy: it was deleted while the watch was down.
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(policy("bk-globex", "deny", "y")));
        assert_eq!(cache.len(), 2);
        let gone = cache.apply(&watcher::Event::InitDone);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].metadata.namespace.as_deref(), Some("bk-acme"));
        assert_eq!(cache.len(), 1);
        let globex = cache.get(&ObjectRef::new("deny").within("bk-globex")).unwrap();
        assert_eq!(globex.metadata.labels.as_ref().unwrap()["app"], "y");
    }
}
