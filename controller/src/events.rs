//! Kubernetes Events for rejected objects (visible in `kubectl describe`).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tracing::warn;

/// Publishes rejection events.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A recorder reporting as `hookway-controller` from `instance` (the pod name).
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: hookway_crds::FIELD_MANAGER.into(),
            instance: Some(instance.into()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// A `Warning` event: the object was rejected (or a reference failed) for `reason`.
    pub async fn rejected(&self, object: &ObjectReference, reason: &str, message: &str) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.chars().take(128).collect(),
            note: Some(message.chars().take(1000).collect()),
            action: "Compile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
            warn!(
                namespace = object.namespace.as_deref().unwrap_or_default(),
                name = object.name.as_deref().unwrap_or_default(),
                error = %e,
                "could not publish event"
            );
        }
    }
}
