//! A rule's `backendRefs` → the `backends` of its lowered hookway Service.

use super::grants::{self, Grants};
use crate::api::service::WeightedBackendRef;
use crate::gateway_api::http_route::HTTPBackendRef;

/// One backendRef that cannot be used: `(ResolvedRefs reason, message, its weight)`.
pub(crate) type Refused = (&'static str, String, u32);

/// The usable backends (a foreign namespace's as `namespace/name`, already permitted) and the
/// refused ones, for a route of `kind` (`HTTPRoute`, `GRPCRoute`: what a ReferenceGrant must
/// permit) in `namespace`.
pub(crate) fn backends(
    refs: &[HTTPBackendRef],
    route_kind: &str,
    namespace: &str,
    grants: &Grants<'_>,
    service_exists: &dyn Fn(&str, &str) -> bool,
) -> (Vec<WeightedBackendRef>, Vec<Refused>) {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for r in refs {
        let b = &r.backend;
        let weight = u32::try_from(r.weight.unwrap_or(1)).unwrap_or(0);
        let group = b.group.as_deref().unwrap_or("");
        let kind = b.kind.as_deref().unwrap_or("Service");
        let ns = b.namespace.as_deref().unwrap_or(namespace);
        if !group.is_empty() || kind != "Service" {
            refused.push((
                "InvalidKind",
                format!("backendRef {group}/{kind} {} is not a core Service", b.name),
                weight,
            ));
            continue;
        }
        if !grants.permits(
            grants::route(route_kind, namespace),
            "",
            "Service",
            ns,
            &b.name,
        ) {
            refused.push((
                "RefNotPermitted",
                format!(
                    "backendRef Service {ns}/{} is in another namespace and no ReferenceGrant there permits it",
                    b.name
                ),
                weight,
            ));
            continue;
        }
        if !service_exists(ns, &b.name) {
            refused.push((
                "BackendNotFound",
                format!("backendRef Service {ns}/{} not found", b.name),
                weight,
            ));
            continue;
        }
        let Some(port) = b.port else {
            refused.push((
                "UnsupportedValue",
                format!("backendRef Service {ns}/{} has no port", b.name),
                weight,
            ));
            continue;
        };
        let name = if ns == namespace {
            b.name.clone()
        } else {
            format!("{ns}/{}", b.name)
        };
        ok.push(WeightedBackendRef { name, port, weight });
    }
    (ok, refused)
}
