//! Gateway API status, computed without I/O from the objects and the compile's reports, for the
//! controller to write (server-side apply) as the spec asks:
//!
//! - GatewayClass: `Accepted`, `SupportedVersion`, `supportedFeatures`;
//! - Gateway: `Accepted`, `Programmed`, `addresses`, and per listener `Accepted`, `Programmed`,
//!   `ResolvedRefs`, `Conflicted`, `supportedKinds`, `attachedRoutes`;
//! - HTTPRoute and GRPCRoute: one `status.parents[]` entry per parent reference to a Gateway of
//!   a hookway GatewayClass, with `Accepted` and `ResolvedRefs` (one function for both kinds).
//!
//! Only objects hookway is responsible for get an entry. `lastTransitionTime` is `now` on every
//! condition: the writer keeps the previous time of a condition whose status did not change.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::attach::{self, Outcome};
use super::index::{Index, ListenerInfo, Verdict};
use super::sources::{self, RouteKind};
use crate::compiler::{Compiled, Kind, ObjectId, ObjectReport, Objects};
use crate::gateway_api::gateway::{GatewayStatusAddress, ListenerStatus};
use crate::gateway_api::gateway_class::SupportedFeature;
use crate::gateway_api::{
    GatewayClassStatus, GatewayStatus, RouteParentStatus, RouteStatus, BUNDLE_VERSION,
    CONTROLLER_NAME,
};
use crate::snapshot::ObjectKey;

/// The conformance features hookway claims (docs/gateway-api.md), sorted.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "Gateway",
    "GatewayHTTPListenerIsolation",
    "GatewayPort8080",
    "HTTPRoute",
    "HTTPRouteBackendTimeout",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect",
    "ReferenceGrant",
];

/// What the status depends on besides the objects.
#[derive(Clone, Debug)]
pub struct Environment<'a> {
    /// The proxy Service's addresses (Gateway `status.addresses`); none: `Programmed=False`
    /// (`AddressNotAssigned`).
    pub addresses: &'a [GatewayStatusAddress],
    /// Whether the proxies applied the snapshot that holds these objects (hookway's
    /// `Programmed`-from-acks); `false`: Gateways and listeners are `Programmed=False`
    /// (`Pending`).
    pub programmed: bool,
    /// `lastTransitionTime` of every condition.
    pub now: Time,
}

/// The statuses to write.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statuses {
    /// GatewayClass name → status.
    pub gateway_classes: BTreeMap<String, GatewayClassStatus>,
    /// Gateway → status.
    pub gateways: BTreeMap<ObjectKey, GatewayStatus>,
    /// HTTPRoute → status (only the parents hookway is responsible for).
    pub http_routes: BTreeMap<ObjectKey, RouteStatus>,
    /// GRPCRoute → status (only the parents hookway is responsible for).
    pub grpc_routes: BTreeMap<ObjectKey, RouteStatus>,
}

/// Computes every status. Pure: the same inputs give the same output.
pub fn compute(objects: &Objects, compiled: &Compiled, env: &Environment<'_>) -> Statuses {
    let secrets = super::names(&objects.secrets);
    let exists = |ns: &str, name: &str| secrets.contains(&(ns, name));
    let index = Index::new(objects, &exists);
    let report = |kind, key: ObjectKey| compiled.reports.get(&ObjectId { kind, key });
    let mut out = Statuses::default();

    for (name, class) in &index.classes {
        let gen = class.metadata.generation;
        let accepted = match report(Kind::GatewayClass, ObjectKey::new("", *name)) {
            Some(r) if !r.accepted.status => condition(
                "Accepted",
                false,
                "InvalidParameters",
                &r.accepted.message,
                gen,
                env,
            ),
            _ => condition("Accepted", true, "Accepted", "served by hookway", gen, env),
        };
        out.gateway_classes.insert(
            name.to_string(),
            GatewayClassStatus {
                conditions: vec![
                    accepted,
                    condition(
                        "SupportedVersion",
                        true,
                        "SupportedVersion",
                        &format!("hookway implements Gateway API {BUNDLE_VERSION}"),
                        gen,
                        env,
                    ),
                ],
                supported_features: SUPPORTED_FEATURES
                    .iter()
                    .map(|f| SupportedFeature {
                        name: f.to_string(),
                    })
                    .collect(),
            },
        );
    }

    // Routes attached per (Gateway, listener).
    let mut attached: HashMap<(ObjectKey, usize), i32> = HashMap::new();
    let routes = sources::all(objects);
    let outcomes = attach::all(&index, &routes);
    for (route, outcomes) in routes.iter().zip(&outcomes) {
        let key = route.key.clone();
        let compiled_report = report(route.kind.report_kind(), key.clone());
        let mut parents = Vec::new();
        for (p, outcome) in route.parent_refs.iter().zip(outcomes) {
            let gen = route.meta.generation;
            let accepted = match outcome {
                Outcome::NotOurs => continue,
                Outcome::Refused(why, message) => {
                    condition("Accepted", false, why, message, gen, env)
                }
                Outcome::Attached(list) => {
                    let mut seen = HashSet::new();
                    for a in list {
                        if seen.insert((a.gateway.clone(), a.listener)) {
                            *attached.entry((a.gateway.clone(), a.listener)).or_default() += 1;
                        }
                    }
                    route_accepted(compiled_report, gen, env)
                }
            };
            let resolved = match compiled_report {
                Some(r) if !r.resolved_refs.status => condition(
                    "ResolvedRefs",
                    false,
                    r.resolved_refs.reason,
                    &r.resolved_refs.message,
                    gen,
                    env,
                ),
                _ => condition(
                    "ResolvedRefs",
                    true,
                    "ResolvedRefs",
                    "every reference resolved",
                    gen,
                    env,
                ),
            };
            parents.push(RouteParentStatus {
                parent_ref: p.clone(),
                controller_name: CONTROLLER_NAME.into(),
                conditions: vec![accepted, resolved],
            });
        }
        if !parents.is_empty() {
            let statuses = match route.kind {
                RouteKind::Http => &mut out.http_routes,
                RouteKind::Grpc => &mut out.grpc_routes,
            };
            statuses.insert(key, RouteStatus { parents });
        }
    }

    for (key, g) in &index.gateways {
        let gen = g.gateway.metadata.generation;
        let gateway_report = report(Kind::Gateway, key.clone());
        let listeners: Vec<ListenerStatus> = g
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| ListenerStatus {
                name: l.listener.name.clone(),
                supported_kinds: l.kinds.clone(),
                attached_routes: attached.get(&(key.clone(), i)).copied().unwrap_or(0),
                conditions: listener_conditions(l, gateway_report, gen, env),
            })
            .collect();
        let valid = g.listeners.iter().any(ListenerInfo::usable);
        let accepted = if valid {
            condition("Accepted", true, "Accepted", "served by hookway", gen, env)
        } else {
            condition(
                "Accepted",
                false,
                "ListenersNotValid",
                "no listener of the Gateway is valid",
                gen,
                env,
            )
        };
        let programmed = if !valid {
            condition(
                "Programmed",
                false,
                "Invalid",
                "no listener of the Gateway is valid",
                gen,
                env,
            )
        } else if env.addresses.is_empty() {
            condition(
                "Programmed",
                false,
                "AddressNotAssigned",
                "the proxy Service has no address yet",
                gen,
                env,
            )
        } else if !env.programmed {
            condition(
                "Programmed",
                false,
                "Pending",
                "the proxies have not applied this configuration yet",
                gen,
                env,
            )
        } else {
            condition(
                "Programmed",
                true,
                "Programmed",
                "the proxies serve this configuration",
                gen,
                env,
            )
        };
        out.gateways.insert(
            key.clone(),
            GatewayStatus {
                addresses: env.addresses.to_vec(),
                conditions: vec![accepted, programmed],
                listeners,
            },
        );
    }
    out
}

/// `Accepted` of an attached parent: failures of the route itself (an unsupported value, a host
/// owned by another namespace) from the compile's report.
fn route_accepted(
    report: Option<&ObjectReport>,
    gen: Option<i64>,
    env: &Environment<'_>,
) -> Condition {
    match report {
        Some(r) if !r.accepted.status => condition(
            "Accepted",
            false,
            r.accepted.reason,
            &r.accepted.message,
            gen,
            env,
        ),
        _ => condition(
            "Accepted",
            true,
            "Accepted",
            "attached and served",
            gen,
            env,
        ),
    }
}

fn listener_conditions(
    l: &ListenerInfo<'_>,
    gateway_report: Option<&ObjectReport>,
    gen: Option<i64>,
    env: &Environment<'_>,
) -> Vec<Condition> {
    let verdict = |type_: &str, v: &Verdict, ok: &str, ok_message: &str| match v {
        Ok(()) => condition(type_, true, ok, ok_message, gen, env),
        Err((why, message)) => condition(type_, false, why, message, gen, env),
    };
    // A listener hostname another namespace owned first (hookway's host ownership).
    let host_conflict = gateway_report.filter(|r| !r.accepted.status).and_then(|r| {
        let marker = format!("listener.{}: ", l.listener.name);
        r.accepted
            .message
            .split("; ")
            .find_map(|m| m.strip_prefix(marker.as_str()).map(str::to_string))
    });
    let conflicted = match (&l.conflicted, host_conflict) {
        (Err((why, message)), _) => condition("Conflicted", true, why, message, gen, env),
        (Ok(()), Some(message)) => {
            condition("Conflicted", true, "HostnameConflict", &message, gen, env)
        }
        (Ok(()), None) => condition("Conflicted", false, "NoConflicts", "no conflicts", gen, env),
    };
    let usable = l.usable() && conflicted.status == "False";
    let programmed = if !usable || l.resolved.is_err() {
        condition(
            "Programmed",
            false,
            "Invalid",
            "the listener is not valid (see its other conditions)",
            gen,
            env,
        )
    } else if !env.programmed || env.addresses.is_empty() {
        condition(
            "Programmed",
            false,
            "Pending",
            "the proxies have not applied this configuration yet",
            gen,
            env,
        )
    } else {
        condition("Programmed", true, "Programmed", "served", gen, env)
    };
    vec![
        verdict("Accepted", &l.accepted, "Accepted", "accepted"),
        programmed,
        verdict(
            "ResolvedRefs",
            &l.resolved,
            "ResolvedRefs",
            "every reference resolved",
        ),
        conflicted,
    ]
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    env: &Environment<'_>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.chars().take(32_000).collect(),
        observed_generation: generation,
        last_transition_time: env.now.clone(),
    }
}
