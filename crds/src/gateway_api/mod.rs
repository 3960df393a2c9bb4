//! The Gateway API kinds hookway reads (`gateway.networking.k8s.io`, standard channel v1.6.1):
//! `GatewayClass`, `Gateway`, `HTTPRoute`, `GRPCRoute`, `ReferenceGrant`.
//!
//! Hand-written with `kube::CustomResource` + serde because the `gateway-api` crate is built on
//! an older kube. Only the fields hookway reads are typed; every other field is tolerated on
//! read (no `deny_unknown_fields`) and dropped. The CRDs themselves are the upstream release's
//! (`kubectl apply` of `standard-install.yaml`), so no schema is generated here.

pub mod common;
pub mod gateway;
pub mod gateway_class;
pub mod grpc_route;
pub mod http_route;
pub mod reference_grant;

pub use common::{ParentReference, RouteParentStatus, RouteStatus};
pub use gateway::{Gateway, GatewaySpec, GatewayStatus, Listener, ListenerStatus};
pub use gateway_class::{GatewayClass, GatewayClassSpec, GatewayClassStatus};
pub use grpc_route::{GRPCRoute, GRPCRouteSpec};
pub use http_route::{HTTPRoute, HTTPRouteSpec};
pub use reference_grant::{ReferenceGrant, ReferenceGrantSpec};

/// The API group of the Gateway API.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// `apiVersion` of the v1 kinds.
pub const API_VERSION_V1: &str = "gateway.networking.k8s.io/v1";
/// `apiVersion` of the v1beta1 kinds still served (ReferenceGrant, older objects).
pub const API_VERSION_V1BETA1: &str = "gateway.networking.k8s.io/v1beta1";
/// The `controllerName` of GatewayClasses hookway serves.
pub const CONTROLLER_NAME: &str = "hookway.dev/gateway-controller";
/// The Gateway API bundle version hookway implements (GatewayClass `SupportedVersion`).
pub const BUNDLE_VERSION: &str = "v1.6.1";
