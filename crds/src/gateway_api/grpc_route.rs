//! `GRPCRoute`: gRPC service/method and header matches, filters and weighted backends, attached
//! to Gateway listeners (`gateway.networking.k8s.io/v1`, standard channel).
//!
//! Filters, mirrors and backend references have the same shape as HTTPRoute's, so their types
//! are HTTPRoute's (`HTTPHeaderFilter`, `HTTPRequestMirrorFilter`, `LocalObjectReference`,
//! `BackendObjectReference`).

use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::common::{ParentReference, RouteStatus};
use super::http_route::{
    BackendObjectReference, HTTPHeaderFilter, HTTPRequestMirrorFilter, LocalObjectReference,
};

/// A GRPCRoute.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "GRPCRoute",
    namespaced,
    status = "RouteStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct GRPCRouteSpec {
    /// The Gateways (or listeners) to attach to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Host names (intersected with each listener's); empty: the listener's.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules (default: none; a GRPCRoute without rules serves nothing).
    #[serde(default)]
    pub rules: Vec<GRPCRouteRule>,
}

/// One rule: matches → filters → backends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GRPCRouteRule {
    /// Optional rule name (unique within the route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Any of these matches (default: every gRPC request).
    #[serde(default)]
    pub matches: Vec<GRPCRouteMatch>,
    /// Filters applied to matching requests.
    #[serde(default)]
    pub filters: Vec<GRPCRouteFilter>,
    /// Weighted backends.
    #[serde(default)]
    pub backend_refs: Vec<GRPCBackendRef>,
}

/// One match: the method match and every header match must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GRPCRouteMatch {
    /// Service and/or method (absent: every service and method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<GRPCMethodMatch>,
    /// Header matches (ANDed).
    #[serde(default)]
    pub headers: Vec<GRPCHeaderMatch>,
}

/// gRPC service and method match (at least one of the two is set).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GRPCMethodMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The fully qualified service, e.g. `com.example.User` (absent: any service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The method, e.g. `Login` (absent: any method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Header match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GRPCHeaderMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Header name (case-insensitive).
    pub name: String,
    /// Value.
    pub value: String,
}

/// A filter: `type` says which of the other fields is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GRPCRouteFilter {
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestMirror`, `ExtensionRef`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `RequestHeaderModifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HTTPHeaderFilter>,
    /// For `ResponseHeaderModifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HTTPHeaderFilter>,
    /// For `RequestMirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<HTTPRequestMirrorFilter>,
    /// For `ExtensionRef` (hookway: group `hookway.dev`, kind `GatewayPlugin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<LocalObjectReference>,
}

/// A weighted backend of a rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GRPCBackendRef {
    /// The backend.
    #[serde(flatten)]
    pub backend: BackendObjectReference,
    /// Relative weight (default 1; 0: no traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Filters applied only to requests sent to this backend (not supported by hookway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<GRPCRouteFilter>,
}
