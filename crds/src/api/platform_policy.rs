//! `PlatformPolicy`: what the platform team lets tenants do across namespace walls — share a
//! host, reference another namespace's Service, turn off upstream verification, run plugins that
//! call addresses of their choosing. Honoured only in the root namespace; several policies there
//! add up (each grant is an allowance, none takes one away). Without any, namespaces are walls:
//! hosts belong to the namespace that claimed them first, nothing references across namespaces,
//! and tenants get neither `insecureSkipVerify` nor network-reaching plugins.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Conditions;

/// Allowances across namespace walls, granted by the platform team (root namespace only).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hookway.dev",
    version = "v1alpha1",
    kind = "PlatformPolicy",
    doc = "A PlatformPolicy: host sharing, cross-namespace grants and per-namespace capabilities; honoured only in the root namespace.",
    namespaced,
    status = "PlatformPolicyStatus",
    shortname = "hpp",
    category = "hookway",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformPolicySpec {
    /// Hosts that several namespaces may serve. A Route whose namespace is listed may use a
    /// matching host even when another namespace claimed it first (the certificate still comes
    /// from the first claimant's Secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub shared_hosts: Vec<SharedHosts>,
    /// References into another namespace (e.g. `traffic_splitting` to `other/canary`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub reference_grants: Vec<ReferenceGrant>,
    /// Capabilities granted to tenant namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<NamespaceGrant>,
}

/// A set of host patterns and the namespaces that may share them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedHosts {
    /// Exact hosts (`api.example.com`) or wildcards (`*.example.com`, covering every name
    /// below it, and every Route host below it).
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253)))]
    pub hosts: Vec<String>,
    /// Namespaces that may serve these hosts; `*` means every namespace.
    #[schemars(length(min = 1, max = 256), inner(length(min = 1, max = 63)))]
    pub namespaces: Vec<String>,
}

/// Lets objects in `from` namespaces reference Services of namespace `to`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReferenceGrant {
    /// Namespaces whose Routes, Services and GatewayPlugins may refer; `*` means every one.
    #[schemars(length(min = 1, max = 256), inner(length(min = 1, max = 63)))]
    pub from: Vec<String>,
    /// The namespace referred to.
    #[schemars(length(min = 1, max = 63))]
    pub to: String,
    /// Names of the hookway Services in `to` that may be referenced; `*` means every one.
    #[schemars(length(min = 1, max = 256), inner(length(min = 1, max = 253)))]
    pub services: Vec<String>,
}

/// Capabilities of some tenant namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceGrant {
    /// The namespaces; `*` means every namespace.
    #[schemars(length(min = 1, max = 256), inner(length(min = 1, max = 63)))]
    pub names: Vec<String>,
    /// Services there may set `tls.insecureSkipVerify`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Plugin kinds that call addresses their config chooses (`forward_auth`, `lobe_gateway`)
    /// which GatewayPlugins, Services and Routes there may configure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    pub network_plugins: Vec<String>,
}

/// Observed state of a PlatformPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformPolicyStatus {
    /// `Accepted` (and `ResolvedRefs`, always `True`).
    #[serde(default)]
    pub conditions: Conditions,
    /// Non-fatal findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
