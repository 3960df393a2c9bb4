//! One status write: server-side apply on `/status` (field manager `hookway-controller`,
//! forced), counted in metrics and logged. Shared by the writers of kinds whose status is not
//! hookway's own shape (`gateway_status.rs`, `ingress_status.rs`).

use hookway_crds::snapshot::ObjectKey;
use hookway_crds::FIELD_MANAGER;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Applies `status` to object `key` (cluster-scoped when its namespace is empty) through `api`.
/// Returns whether the API server took it; a vanished object is not an error.
pub async fn apply<K>(
    api: &Api<K>,
    key: &ObjectKey,
    status: &serde_json::Value,
    metrics: &Metrics,
) -> bool
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&()).to_string();
    let mut metadata = serde_json::json!({"name": key.name});
    if !key.namespace.is_empty() {
        metadata["namespace"] = key.namespace.clone().into();
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": kind,
        "metadata": metadata,
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&key.name, &params, &Patch::Apply(&body))
        .await
    {
        Ok(_) => {
            metrics
                .status_patches
                .with_label_values(&[kind.as_str()])
                .inc();
            info!(%kind, namespace = %key.namespace, name = %key.name, "status updated");
            true
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            debug!(%kind, namespace = %key.namespace, name = %key.name, "object gone");
            false
        }
        Err(e) => {
            metrics.status_patch_errors.inc();
            warn!(%kind, namespace = %key.namespace, name = %key.name, error = %e, "status patch failed");
            false
        }
    }
}
