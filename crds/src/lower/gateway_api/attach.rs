//! Attachment: which listeners of which Gateways a route's `parentRefs` attach it to, with
//! which hosts, or the spec's reason why not; then the spec's rule for an HTTPRoute and a
//! GRPCRoute on one listener with intersecting hostnames (only the older one is accepted).

use std::collections::BTreeMap;

use super::hostnames;
use super::index::Index;
use super::sources::Source;
use crate::gateway_api::{ParentReference, GROUP};
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

/// The outcome of every parent reference of every route of `routes`, in order, with the
/// HTTPRoute/GRPCRoute conflicts settled ([`settle_conflicts`]).
pub(crate) fn all(index: &Index<'_>, routes: &[Source<'_>]) -> Vec<Vec<Outcome>> {
    let mut outcomes: Vec<Vec<Outcome>> = routes.iter().map(|r| parents(index, r)).collect();
    settle_conflicts(routes, &mut outcomes);
    outcomes
}

/// The outcome of every parent reference of `route`, in order.
fn parents(index: &Index<'_>, route: &Source<'_>) -> Vec<Outcome> {
    route
        .parent_refs
        .iter()
        .map(|p| parent(index, route, p))
        .collect()
}

/// One attachment: (route, parent reference, attachment) indices.
type Slot = (usize, usize, usize);

/// The spec (`GRPCRouteSpec.hostnames`): when an HTTPRoute and a GRPCRoute attach to one
/// listener with intersecting hostnames, exactly one is accepted there — the older by
/// `creationTimestamp`, then the first by `namespace/name`. The other loses that listener; a
/// parent reference left with no listener is refused (`HostConflict`).
fn settle_conflicts(routes: &[Source<'_>], outcomes: &mut [Vec<Outcome>]) {
    // (Gateway, listener) → (route, parent, attachment) in acceptance order.
    let mut by_listener: BTreeMap<(ObjectKey, usize), Vec<Slot>> = BTreeMap::new();
    for (r, list) in outcomes.iter().enumerate() {
        for (p, o) in list.iter().enumerate() {
            if let Outcome::Attached(attached) = o {
                for (a, x) in attached.iter().enumerate() {
                    by_listener
                        .entry((x.gateway.clone(), x.listener))
                        .or_default()
                        .push((r, p, a));
                }
            }
        }
    }
    let mut lost: BTreeMap<(usize, usize), Vec<(usize, String)>> = BTreeMap::new();
    for ((gateway, listener), mut list) in by_listener {
        if !list
            .iter()
            .any(|x| routes[x.0].kind != routes[list[0].0].kind)
        {
            continue;
        }
        list.sort_by_key(|&(r, _, _)| (routes[r].created(), &routes[r].key));
        let hosts = |&(r, p, a): &Slot| match &outcomes[r][p] {
            Outcome::Attached(v) => v[a].hosts.clone(),
            _ => None,
        };
        let mut accepted: Vec<Slot> = Vec::new();
        for x in list {
            let winner = accepted.iter().find(|y| {
                routes[y.0].kind != routes[x.0].kind && hostnames::overlap(&hosts(y), &hosts(&x))
            });
            match winner {
                None => accepted.push(x),
                Some(y) => {
                    let w = &routes[y.0];
                    lost.entry((x.0, x.1)).or_default().push((
                        x.2,
                        format!(
                            "{} {} is older and attached to listener {listener} of Gateway {gateway} with an intersecting hostname (only one of an HTTPRoute and a GRPCRoute is accepted there)",
                            w.kind.name(),
                            w.key
                        ),
                    ));
                }
            }
        }
    }
    for ((r, p), mut gone) in lost {
        let Outcome::Attached(list) = &mut outcomes[r][p] else {
            continue;
        };
        gone.sort_by_key(|(a, _)| std::cmp::Reverse(*a));
        let message = gone.last().map(|(_, m)| m.clone()).unwrap_or_default();
        for (a, _) in &gone {
            list.remove(*a);
        }
        if list.is_empty() {
            outcomes[r][p] = Outcome::Refused("HostConflict", message);
        }
    }
}

fn parent(index: &Index<'_>, route: &Source<'_>, p: &ParentReference) -> Outcome {
    let namespace = route.key.namespace.as_str();
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
            l.allows(route.kind) && index.namespace_allowed(l.listener, &key.namespace, namespace)
        })
        .collect();
    if allowed.is_empty() {
        return Outcome::Refused(
            "NotAllowedByListeners",
            format!(
                "the listeners of Gateway {key} do not allow {}s from namespace {namespace:?}",
                route.kind.name()
            ),
        );
    }
    let attached: Vec<Attached> = allowed
        .into_iter()
        .filter_map(|i| {
            let hosts =
                hostnames::intersect(gateway.listeners[i].hostname.as_deref(), route.hostnames);
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
                route.hostnames.join(", ")
            ),
        );
    }
    Outcome::Attached(attached)
}
