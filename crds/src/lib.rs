//! # hookway-crds
//!
//! The shared source of truth of hookway, with no I/O:
//!
//! ```text
//!   api/        GatewayPlugin, Service, Route, PlatformPolicy  (kube CustomResource types)
//!   gateway_api/ GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant (what hookway reads of them)
//!   lower/      Gateway API (and other standard kinds) -> synthetic hookway objects
//!   crdgen      the CRD YAML generated from those types
//!   catalogue/  plugin kinds as data: each kind's config JSON Schema (builtin.json), plus the
//!               typed validators where the plugin code is linked (the proxy)
//!   manifests   multi-document YAML -> typed objects (standalone mode, `--check`)
//!   lower       Ingress (and Gateway API) objects -> synthetic hookway objects [pure]
//!   compiler    objects -> (Snapshot, per-object statuses)   [pure]
//!   snapshot    what proxies run: routes, upstreams, chains, certificates
//!   delta       what changed between two snapshots, keyed by object
//!   stream      the controller <-> proxy wire types (hello, frames, acks)
//!   applied     what a proxy reports it applied, object by object; what a Route depends on
//!   tls         certificate/key checks shared by the compiler and the proxy
//! ```
//!
//! The controller feeds the compiler from kube-runtime reflector stores, the proxy's standalone
//! mode from a folder of manifests; both get the same snapshot for the same objects.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod applied;
pub mod catalogue;
pub mod compiler;
pub mod content_hash;
pub mod crdgen;
pub mod delta;
pub mod duration;
pub mod gateway_api;
pub mod lower;
pub mod manifests;
pub mod snapshot;
pub mod stream;
pub mod tls;

pub use api::{
    gateway_plugin::{
        GatewayPlugin, GatewayPluginSpec, GatewayPluginStatus, PluginPolicy, PluginStatus,
    },
    platform_policy::{PlatformPolicy, PlatformPolicySpec, PlatformPolicyStatus},
    route::{Route, RouteSpec, RouteStatus},
    service::{Service, ServiceSpec, ServiceStatus},
    PluginRef,
};
pub use catalogue::Catalogue;
pub use snapshot::Snapshot;

/// The API group of every hookway kind.
pub const GROUP: &str = "hookway.dev";
/// The served and stored API version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "hookway.dev/v1alpha1";
/// The field manager used for server-side apply of status.
pub const FIELD_MANAGER: &str = "hookway-controller";
