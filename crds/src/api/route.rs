//! `Route`: which requests (hosts, paths, methods, headers, query) go to which Service, with
//! which TLS certificate and which plugins.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ChainStatusEntry, Conditions, PluginRefs};

/// Routes requests to a Service of the same namespace (`kubectl get hrt`).
///
/// A request matches the Route when its host matches one of `hosts` (or `hosts` is empty) and it
/// matches at least one of `rules` (or `rules` is empty). When several Routes match, the most
/// specific wins: see docs/routing.md for the full tie-breaking order.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hookway.dev",
    version = "v1alpha1",
    kind = "Route",
    doc = "A Route: which requests go to which hookway Service, with which TLS certificate and plugins.",
    namespaced,
    status = "RouteStatus",
    shortname = "hrt",
    category = "hookway",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// Host names this Route serves: exact (`api.example.com`) or a leading wildcard
    /// (`*.example.com`, which matches one or more labels in front of `example.com` but not
    /// `example.com` itself). Empty: every host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(inner(regex(
        pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    )))]
    pub hosts: Vec<String>,
    /// Request matches; the Route matches when any rule matches. Empty: every request on the
    /// hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<RouteRule>,
    /// Name of the hookway Service (same namespace) that receives the traffic.
    #[schemars(length(min = 1, max = 253))]
    pub service: String,
    /// TLS termination for `hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    /// Higher priority wins when two Routes match a request equally specifically.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,
    /// Plugin references: alias (GatewayPlugin name) → `{disable, config, excludePaths}`.
    /// The most specific level wins: Route > Service > namespace > cluster.
    #[serde(default, skip_serializing_if = "PluginRefs::is_empty")]
    pub plugins: PluginRefs,
}

/// One way a request can match. Every field that is set must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteRule {
    /// Path match (default: `Prefix /`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// HTTP methods (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 9))]
    pub methods: Vec<Method>,
    /// Request headers that must match (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<ValueMatch>,
    /// Query parameters that must match (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub query: Vec<ValueMatch>,
}

/// How the request path is compared.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'Regex' || self.value.startsWith('/')", "message": "path must start with /"}
]))]
pub struct PathMatch {
    /// `Exact`, `Prefix` (by whole segments: `/api` matches `/api` and `/api/x`, not `/apix`)
    /// or `Regex` (matched against the whole path).
    #[serde(rename = "type", default)]
    pub kind: PathMatchType,
    /// The path, or the regular expression (RE2-like syntax, anchored).
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}

/// `Exact | Prefix | Regex`.
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
pub enum PathMatchType {
    /// The whole path equals `value`.
    Exact,
    /// The path starts with `value`, by whole segments.
    #[default]
    Prefix,
    /// The whole path matches the regular expression `value`.
    Regex,
}

/// An HTTP method.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Connect,
    Trace,
}

impl Method {
    /// The method as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
        }
    }
}

/// A header or query parameter match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'Present' || has(self.value)", "message": "value is required unless type is Present"}
]))]
pub struct ValueMatch {
    /// Header name (case-insensitive) or query parameter name (case-sensitive).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// `Exact` (default), `Regex` or `Present`.
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// The value or regular expression (unused for `Present`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub value: Option<String>,
}

/// `Exact | Regex | Present`.
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
pub enum ValueMatchType {
    /// Equal to `value`.
    #[default]
    Exact,
    /// The whole value matches the regular expression `value`.
    Regex,
    /// Present, whatever its value.
    Present,
}

/// TLS termination settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTls {
    /// A Secret of type `kubernetes.io/tls` in the Route's namespace; its certificate is served
    /// for the Route's hosts (by SNI).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Observed state of a Route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// `Accepted`, `ResolvedRefs`, `Programmed`.
    #[serde(default)]
    pub conditions: Conditions,
    /// The effective plugin chain in run order, with the tier each setting came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainStatusEntry>,
    /// Non-fatal findings (a locked plugin kept in force, a referenced plugin that is disabled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
