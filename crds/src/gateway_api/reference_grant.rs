//! `ReferenceGrant`: lets objects of other namespaces refer to objects of this one.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// Allows references from `from` (kinds in namespaces) to `to` (kinds, optionally one name) in
/// the grant's namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "ReferenceGrant",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    #[serde(default)]
    pub from: Vec<ReferenceGrantFrom>,
    /// What they may refer to.
    #[serde(default)]
    pub to: Vec<ReferenceGrantTo>,
}

/// A referring kind in a namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    /// API group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// Kind, e.g. `HTTPRoute`, `Gateway`.
    pub kind: String,
    /// Namespace of the referring objects.
    pub namespace: String,
}

/// A referred-to kind (and optionally name) in the grant's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    /// API group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// Kind, e.g. `Service`, `Secret`.
    pub kind: String,
    /// One object; absent: every object of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
