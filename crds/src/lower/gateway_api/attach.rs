//! Attachment: which listeners of which Gateways an HTTPRoute's `parentRefs` attach it to, with
//! which hosts, or the spec's reason why not.

use super::hostnames;
use super::index::Index;
use crate::gateway_api::{HTTPRoute, ParentReference, GROUP};
use crate::snapshot::ObjectKey;

/// One listener a parent reference attached the route to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attached {
    /// The Gateway.
    pub gateway: ObjectKey,
    /// Index of the listener in the Gateway's spec.
    pub listener: usize,
    /// Hosts served through it (`None`: every host).
    pub hosts: Option<Vec<String>>,
}

/// What became of one parent reference.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Not a Gateway of a hookway GatewayClass: hookway writes no status for it.
    NotOurs,
    /// Attached to these listeners (at least one).
    Attached(Vec<Attached>),
    /// One of hookway's Gateways, but the route may not attach: `(reason, message)`.
    Refused(&'static str, String),
}

/// The outcome of every parent reference of `route` (in `namespace`), in order.
pub(crate) fn parents(index: &Index<'_>, route: &HTTPRoute, namespace: &str) -> Vec<Outcome> {
    route
        .spec
        .parent_refs
        .iter()
        .map(|p| parent(index, route, namespace, p))
        .collect()
}

fn parent(index: &Index<'_>, route: &HTTPRoute, namespace: &str, p: &ParentReference) -> Outcome {
    if p.group.as_deref().unwrap_or(GROUP) != GROUP
        || p.kind.as_deref().unwrap_or("Gateway") != "Gateway"
    {
        return Outcome::NotOurs;
    }
    let key = ObjectKey::new(p.namespace.as_deref().unwrap_or(namespace), p.name.as_str());
    let Some(gateway) = index.gateways.get(&key) else {
        return Outcome::NotOurs;
    };
    let candidates: Vec<usize> = gateway
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            p.section_name
                .as_ref()
                .is_none_or(|s| *s == l.listener.name)
        })
        .filter(|(_, l)| p.port.is_none_or(|port| port == l.listener.port))
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        let what = match (&p.section_name, p.port) {
            (Some(s), Some(port)) => format!("no listener named {s:?} on port {port}"),
            (Some(s), None) => format!("no listener named {s:?}"),
            (None, Some(port)) => format!("no listener on port {port}"),
            (None, None) => "no listeners".into(),
        };
        return Outcome::Refused("NoMatchingParent", format!("Gateway {key} has {what}"));
    }
    let usable: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| gateway.listeners[i].usable())
        .collect();
    if usable.is_empty() {
        return Outcome::Refused(
            "NoMatchingParent",
            format!("no listener of Gateway {key} that the reference selects is valid"),
        );
    }
    let allowed: Vec<usize> = usable
        .into_iter()
        .filter(|&i| {
            let l = &gateway.listeners[i];
            l.allows_http_route() && index.namespace_allowed(l.listener, &key.namespace, namespace)
        })
        .collect();
    if allowed.is_empty() {
        return Outcome::Refused(
            "NotAllowedByListeners",
            format!("the listeners of Gateway {key} do not allow HTTPRoutes from namespace {namespace:?}"),
        );
    }
    let attached: Vec<Attached> = allowed
        .into_iter()
        .filter_map(|i| {
            let hosts = hostnames::intersect(
                gateway.listeners[i].hostname.as_deref(),
                &route.spec.hostnames,
            );
            (hosts.as_ref().is_none_or(|h| !h.is_empty())).then(|| Attached {
                gateway: key.clone(),
                listener: i,
                hosts,
            })
        })
        .collect();
    if attached.is_empty() {
        return Outcome::Refused(
            "NoMatchingListenerHostname",
            format!(
                "no hostname of the route ({}) matches a listener of Gateway {key} that allows it",
                route.spec.hostnames.join(", ")
            ),
        );
    }
    Outcome::Attached(attached)
}
