//! The compiler: a pure function from the current objects to `(Snapshot, per-object reports)`.
//!
//! ```text
//!  Objects ──► validate GatewayPlugins ──► index by (namespace, alias)
//!          ──► resolve Services (nodes | core Service + EndpointSlices)
//!          ──► for each Route: resolve Service, TLS Secret, effective chain (precedence.rs)
//!          ──► Snapshot (sorted, hashed) + ObjectReport per object
//! ```
//!
//! Rules (DESIGN.md §2) live in `precedence.rs`; this module wires them. Nothing here does I/O
//! or depends on the order objects arrive in.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret, Service as CoreService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;

use crate::api::ChainStatusEntry;
use crate::snapshot::{ObjectKey, Snapshot};
use crate::{Catalogue, GatewayPlugin, Route, Service};

/// Everything the compiler reads. Reflector stores hand out `Arc<K>`, so do we.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// hookway GatewayPlugins.
    pub plugins: Vec<Arc<GatewayPlugin>>,
    /// hookway Services.
    pub services: Vec<Arc<Service>>,
    /// hookway Routes.
    pub routes: Vec<Arc<Route>>,
    /// Core Services referenced by hookway Services' `backend`.
    pub core_services: Vec<Arc<CoreService>>,
    /// EndpointSlices (`kubernetes.io/service-name` label links them to core Services).
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Secrets: `kubernetes.io/tls` for Routes, others only when a plugin config references them.
    pub secrets: Vec<Arc<Secret>>,
    /// Namespaces (for `policy.namespaces` label selectors). A namespace not listed has no labels.
    pub namespaces: Vec<Arc<Namespace>>,
}

/// Compiler settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// GatewayPlugins here are cluster-wide.
    pub root_namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            root_namespace: "hookway-system".into(),
        }
    }
}

/// The kind of a reported object.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `GatewayPlugin`.
    GatewayPlugin,
    /// `Service` (hookway's).
    Service,
    /// `Route`.
    Route,
}

/// Which object a report is about.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    /// Kind.
    pub kind: Kind,
    /// Namespace and name.
    #[serde(flatten)]
    pub key: ObjectKey,
}

/// One condition as the compiler sees it (the controller adds `observedGeneration` and
/// `lastTransitionTime`).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ConditionResult {
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason, e.g. `Accepted`, `PluginNotFound`.
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ConditionResult {
    /// A `True` condition.
    pub fn ok(reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
    /// A `False` condition.
    pub fn fail(reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What the compiler says about one object.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    /// `metadata.generation` that was compiled.
    pub generation: i64,
    /// Whether the spec is valid and will be served.
    pub accepted: ConditionResult,
    /// Whether every reference (Service, Secret, plugin) resolved.
    pub resolved_refs: ConditionResult,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
    /// Routes only: the effective chain in run order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainStatusEntry>,
    /// GatewayPlugins only: Routes this instance runs on.
    pub routes: u32,
    /// Services only: ready endpoints.
    pub endpoints: u32,
}

impl ObjectReport {
    /// Whether the object is served as asked (accepted and every reference resolved).
    pub fn is_ok(&self) -> bool {
        self.accepted.status && self.resolved_refs.status
    }
}

/// The compiler's output.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// The snapshot (sealed: `hash` set, `version` 0 for the producer to set).
    pub snapshot: Snapshot,
    /// One report per GatewayPlugin, Service and Route, sorted.
    pub reports: BTreeMap<ObjectId, ObjectReport>,
}

impl Compiled {
    /// Objects that are not served as asked.
    pub fn rejected(&self) -> impl Iterator<Item = (&ObjectId, &ObjectReport)> {
        self.reports.iter().filter(|(_, r)| !r.is_ok())
    }
}

/// Compiles `objects` into a snapshot and a report per object. Pure and deterministic: the same
/// objects in any order give the same snapshot and hash. Never panics on bad input.
pub fn compile(objects: &Objects, options: &Options, catalogue: &Catalogue) -> Compiled {
    let _ = (objects, options, catalogue);
    todo!("compiler")
}
