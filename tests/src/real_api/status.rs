//! Reading back what the controller wrote: `status.conditions` of any kind, and waiting for one.

use std::fmt;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::Resource;
use kube::Client;
use serde::Deserialize;

use super::{wait, Error};

/// One `status.conditions[]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Accepted`, `ResolvedRefs`, `Programmed`, …
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable message (`served by every ready proxy`).
    #[serde(default)]
    pub message: String,
    /// The generation this condition was written for.
    #[serde(default)]
    pub observed_generation: Option<i64>,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} {}: {}",
            self.type_, self.status, self.reason, self.message
        )
    }
}

/// The conditions on an object's status (none when it has no status yet).
pub fn conditions(object: &DynamicObject) -> Vec<Condition> {
    object.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Condition::deserialize(c).ok())
        .collect()
}

/// An `Api` for the kind `K` (a hookway kind or any typed kind) in `namespace`, as dynamic objects.
pub fn api<K: Resource<DynamicType = ()>>(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()))
}

/// Waits until object `namespace/name` of kind `K` carries condition `type_` with `status`, whose
/// reason or message is `reason_or_message`, written for the object's current generation.
/// Returns the object as it was then.
pub async fn wait_condition<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason_or_message: &str,
    timeout: Duration,
) -> Result<DynamicObject, Error> {
    let api = api::<K>(client, namespace);
    let what = format!(
        "{} {namespace}/{name} has {type_}={status} ({reason_or_message})",
        K::kind(&())
    );
    wait::until(&what, timeout, || async {
        let object = api.get(name).await.map_err(|e| e.to_string())?;
        let generation = object.metadata.generation;
        let found = conditions(&object);
        let wanted = found.iter().any(|c| {
            c.type_ == type_
                && c.status == status
                && (c.reason == reason_or_message || c.message == reason_or_message)
                && (generation.is_none() || c.observed_generation == generation)
        });
        if wanted {
            Ok(object)
        } else {
            let seen: Vec<String> = found.iter().map(Condition::to_string).collect();
            Err(format!("generation {generation:?}, conditions {seen:?}"))
        }
    })
    .await
}
