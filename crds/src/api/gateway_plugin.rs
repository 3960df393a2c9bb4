//! `GatewayPlugin`: one plugin instance — which plugin kind, its status, order, default config
//! and (in the root namespace) the policy that binds every namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Conditions;

/// A plugin instance. Its `metadata.name` is the alias Services and Routes use in `spec.plugins`.
///
/// In the root namespace (the controller's own by default) it is cluster-wide; in any other
/// namespace it is namespace-wide and applies only to that namespace's Services and Routes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hookway.dev",
    version = "v1alpha1",
    kind = "GatewayPlugin",
    doc = "A GatewayPlugin: one plugin instance (kind, status, order, default config, policy); its name is the alias.",
    namespaced,
    status = "GatewayPluginStatus",
    shortname = "gwp",
    category = "hookway",
    printcolumn = r#"{"name":"Plugin","type":"string","jsonPath":".spec.plugin"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".spec.status"}"#,
    printcolumn = r#"{"name":"Order","type":"integer","jsonPath":".spec.order"}"#,
    printcolumn = r#"{"name":"Routes","type":"integer","jsonPath":".status.routes"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.status != 'global' || has(self.config)", "message": "config is required when status is global"}
]))]
pub struct GatewayPluginSpec {
    /// The plugin kind to run, e.g. `rate_limiting`, `auth`, `extra_params` (see docs/plugins/).
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"), length(min = 1, max = 63))]
    pub plugin: String,
    /// `disable`: never runs, even where referenced. `enable`: runs only where a Service or
    /// Route references it. `global`: runs on every Route in its scope unless disabled there
    /// (cluster-wide global plugins also run on requests that match no Route).
    #[serde(default)]
    pub status: PluginStatus,
    /// Execution order: request hooks run in ascending order, response hooks in descending
    /// order; ties are broken by name.
    #[serde(default = "default_order")]
    #[schemars(range(min = -100000, max = 100000))]
    pub order: i32,
    /// The default configuration; required when `status` is `global`. Its shape depends on the
    /// plugin kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::free_form_object")]
    pub config: Option<serde_json::Value>,
    /// Request paths for which the plugin is skipped (`*` matches any run of characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub exclude_paths: Vec<String>,
    /// Policy binding every namespace; honoured only in the root namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PluginPolicy>,
}

fn default_order() -> i32 {
    1000
}

/// `disable | enable | global`.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PluginStatus {
    /// Never runs, even where referenced.
    Disable,
    /// Runs only where a Service or Route references it.
    #[default]
    Enable,
    /// Runs on every Route in scope unless a Service or Route disables it.
    Global,
}

/// What a cluster-wide plugin imposes on the namespaces below it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginPolicy {
    /// `true`: no namespace, Service or Route may disable, reconfigure or shadow this plugin;
    /// attempts are ignored and reported as `PluginLocked`.
    #[serde(default)]
    pub locked: bool,
    /// Namespaces (by label) where the plugin applies and may be referenced; absent means every
    /// namespace. References from elsewhere are rejected as `PluginNotAllowed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
}

/// Observed state of a GatewayPlugin.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPluginStatus {
    /// `Accepted`, `ResolvedRefs`, `Programmed`.
    #[serde(default)]
    pub conditions: Conditions,
    /// How many Routes this plugin instance runs on.
    #[serde(default)]
    pub routes: u32,
    /// Non-fatal findings (e.g. `policy` set outside the root namespace, shadowing attempts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
