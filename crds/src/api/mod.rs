//! The custom resources of `hookway.dev/v1alpha1` and the types they share.
//!
//! Field docs here become the CRD descriptions: `kubectl explain route.spec.rules` prints them.

pub mod gateway_plugin;
pub mod platform_policy;
pub mod route;
pub mod service;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference from a Service or Route to a plugin instance, keyed by the GatewayPlugin's name
/// (the alias) in `spec.plugins`.
///
/// The alias resolves in the object's own namespace first, then in the root namespace. The most
/// specific level that mentions an alias wins: Route > Service > namespace-wide GatewayPlugin >
/// cluster-wide GatewayPlugin. A `config` here replaces (never merges with) the levels below; a
/// reference without `config` uses the next level's config.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginRef {
    /// `true` turns the plugin off for this object (ignored, with a `PluginLocked` warning, when
    /// the cluster-wide plugin is locked).
    #[serde(default)]
    pub disable: bool,
    /// The plugin's configuration at this level; its shape depends on the plugin kind and is
    /// checked by the controller (an invalid config is reported as `InvalidPluginConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::free_form_object")]
    pub config: Option<serde_json::Value>,
    /// Request paths for which the plugin is skipped at this level (`*` matches any run of
    /// characters, e.g. `/healthz` or `/public/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub exclude_paths: Vec<String>,
}

/// The plugin references of a Service or Route: alias → reference.
pub type PluginRefs = BTreeMap<String, PluginRef>;

/// One entry of a Route's effective plugin chain, in run order, as shown on its status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainStatusEntry {
    /// The alias (GatewayPlugin name).
    pub alias: String,
    /// Namespace of the GatewayPlugin the alias resolved to.
    pub namespace: String,
    /// The plugin kind, e.g. `rate_limiting`.
    pub plugin: String,
    /// The level the effective config came from: `route`, `service`, `namespace` or `cluster`.
    pub tier: String,
    /// The execution order (request hooks ascending, response hooks descending).
    pub order: i32,
}

/// The conditions every hookway object carries (`Accepted`, `ResolvedRefs`, `Programmed`).
pub type Conditions = Vec<Condition>;

/// Schema of a free-form JSON object (plugin configs): kept whole by the API server.
pub fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
