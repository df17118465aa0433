//! Kubernetes Events for every isolation-relevant action, attached to the Tenant or Customer.

use k8s_openapi::api::core::v1::ObjectReference;

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

/// Publishes an event about `object`. A failure to publish is logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    send(recorder, object, None, type_, reason, action, note).await;
}

/// Publishes an event about `object` that concerns `related` (say, the NetworkPolicy that was repaired).
/// Events with the same reason but different related objects are kept apart instead of counted as a series.
pub async fn publish_related<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    related: ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    send(recorder, object, Some(related), type_, reason, action, note).await;
}

async fn send<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    related: Option<ObjectReference>,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let mut note = note;
    if note.len() > 1000 {
        let mut cut = 997;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push('…');
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: related,
    };
    // Events about cluster-scoped objects are stored in `default`; their regarded object keeps no namespace,
    // so `kubectl describe tenant` lists them.
    let reference = object.object_ref(&());
    let result = recorder.publish(&event, &reference).await;
    if let Err(err) = result {
        warn!(reason, error = %err, "could not publish event");
    }
}

/// The Event reason for a failed reconcile of the given category.
pub fn failure_reason(category: &'static str) -> &'static str {
    match category {
        "apply" => "ApplyFailed",
        "prune" => "PruneFailed",
        "serialize" => "SerializeFailed",
        "namespace_read" => "NamespaceReadFailed",
        "finalizer" => "FinalizerFailed",
        "status_patch" => "StatusWriteFailed",
        "cleanup" => "CleanupFailed",
        "crd_read" => "CrdReadFailed",
        _ => "ReconcileFailed",
    }
}
