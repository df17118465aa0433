//! Kubernetes Events for every isolation-relevant action, attached to the Tenant or Customer.

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
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &object.object_ref(&())).await {
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
