//! Gateway API → synthetic hookway objects (docs/gateway-api.md).
//!
//! For each HTTPRoute or GRPCRoute attached to a listener of a Gateway of a hookway
//! GatewayClass (`<t>` is empty for an HTTPRoute and `grpc.` for a GRPCRoute, so the two kinds
//! never share a synthetic name):
//!
//! ```text
//!  rule i                 → Service  "<route>#<t>r<i>"         backends = backendRefs (weighted),
//!                                                               timeout = timeouts (HTTPRoute),
//!                                                               http2 = always (GRPCRoute)
//!  rule i × match j × gw  → Route    "<route>#<t>r<i>.m<j>@<gw-ns>.<gw>"  hosts = hostnames ∩ listeners,
//!                                                               one rule = the match
//!  rule i × match j × filter k → GatewayPlugin "<route>#<t>r<i>.m<j>.f<k>" (built-in kind; see filters)
//!  ExtensionRef           → a route-level reference to the GatewayPlugin alias
//!  no usable backend      → GatewayPlugin "<route>#<t>r<i>.m<j>.status500" (`mock`: HTTP 500 for an
//!                           HTTPRoute, gRPC UNAVAILABLE for a GRPCRoute; with some usable
//!                           backends, only the invalid ones' share)
//! ```
//!
//! Lowered Routes claim their hosts for the Gateway's namespace (the listener's `allowedRoutes`
//! is the authority), and every listener hostname is itself a claim of the Gateway's namespace.

mod attach;
mod backends;
mod filters;
mod grants;
mod grpc_matches;
mod hostnames;
mod index;
mod matches;
mod sources;
pub mod status;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::{ExtraClaim, ListenerCertificate, Lowered, SYNTHETIC_MARK};
use crate::api::gateway_plugin::PluginStatus;
use crate::api::{PluginRef, PluginRefs};
use crate::compiler::{Kind, ObjectId, ObjectReport, Objects, Options};
use crate::snapshot::{HostIsolation, ObjectKey};
use crate::{GatewayPlugin, GatewayPluginSpec, Route, RouteSpec, Service};

pub(crate) use attach::Outcome;
pub(crate) use index::Index;
use index::{GatewayInfo, ListenerInfo};
use sources::{RouteKind, Source};

/// Order of the `mock` that answers 500 for a rule without a usable backend: after everything
/// else of the route (its plugins, redirects, auth) had its say.
const STATUS_500_ORDER: i32 = 100_000;

/// Order of mirrors: after the request header modifiers (1000), so the copy carries their edits.
const MIRROR_ORDER: i32 = 1_100;

/// `(namespace, name)` of every named, namespaced object of `items`.
pub(crate) fn names<K: kube::Resource>(items: &[Arc<K>]) -> HashSet<(&str, &str)> {
    items
        .iter()
        .filter_map(|o| Some((o.meta().namespace.as_deref()?, o.meta().name.as_deref()?)))
        .collect()
}

/// Lowers every Gateway API object of `objects` into `out`.
pub(crate) fn lower(objects: &Objects, _options: &Options, out: &mut Lowered) {
    if objects.gateway_classes.is_empty() {
        return;
    }
    let secrets = names(&objects.secrets);
    let exists = |ns: &str, name: &str| secrets.contains(&(ns, name));
    let index = Index::new(objects, &exists);
    let core_services = names(&objects.core_services);

    for (name, class) in &index.classes {
        let mut report = ObjectReport::new(class.metadata.generation);
        if class.spec.parameters_ref.is_some() {
            report.reject(
                "InvalidParameters",
                "hookway GatewayClasses take no parametersRef",
            );
        }
        out.reports
            .insert(id(Kind::GatewayClass, ObjectKey::new("", *name)), report);
    }

    // Hosts served through each listener, for listeners without a hostname of their own.
    let mut listener_hosts: BTreeMap<(ObjectKey, usize), Option<Vec<String>>> = BTreeMap::new();
    let routes = sources::all(objects);
    let outcomes = attach::all(&index, &routes);
    for (route, outcomes) in routes.iter().zip(&outcomes) {
        for o in outcomes {
            if let Outcome::Attached(list) = o {
                for a in list {
                    let slot = listener_hosts
                        .entry((a.gateway.clone(), a.listener))
                        .or_insert_with(|| Some(Vec::new()));
                    *slot = hostnames::union(slot.take(), a.hosts.clone());
                }
            }
        }
        lower_route(&index, &core_services, route, outcomes, out);
    }

    for (gkey, g) in &index.gateways {
        let source = id(Kind::Gateway, gkey.clone());
        let mut report = ObjectReport::new(g.gateway.metadata.generation);
        let created = created_secs(&g.gateway.metadata);
        for (i, l) in g.listeners.iter().enumerate() {
            let name = &l.listener.name;
            if let Err((why, message)) = &l.accepted {
                report.warn(why, format!("listener {name:?}: {message}"));
            }
            if let Err((why, message)) = &l.conflicted {
                report.warn(why, format!("listener {name:?}: {message}"));
            }
            if let Err((why, message)) = &l.resolved {
                report.unresolved(why, format!("listener {name:?}: {message}"));
            }
            if !l.usable() {
                continue;
            }
            let claim = ObjectKey::new(
                gkey.namespace.as_str(),
                format!("{}{SYNTHETIC_MARK}listener.{name}", gkey.name),
            );
            out.origin(Kind::Route, claim.clone(), source.clone());
            if let Some(h) = &l.hostname {
                out.claims.push(ExtraClaim {
                    key: claim.clone(),
                    namespace: gkey.namespace.clone(),
                    created,
                    hosts: vec![h.clone()],
                });
            }
            if l.certificates.is_empty() {
                continue;
            }
            let hosts = match &l.hostname {
                Some(h) => vec![h.clone()],
                None => listener_hosts
                    .get(&(gkey.clone(), i))
                    .cloned()
                    .flatten()
                    .unwrap_or_default(),
            };
            if hosts.is_empty() {
                report.warn(
                    "NoHostnames",
                    format!("listener {name:?} has no hostname and no attached route names one: its certificate is served for no host"),
                );
                continue;
            }
            for secret in &l.certificates {
                out.certificates.push(ListenerCertificate {
                    claim: claim.clone(),
                    namespace: gkey.namespace.clone(),
                    hosts: hosts.clone(),
                    secret: secret.clone(),
                });
            }
        }
        if !g.listeners.iter().any(|l| l.usable()) {
            report.reject("ListenersNotValid", "no listener of the Gateway is valid");
        }
        out.reports.insert(source, report);
    }
}

fn id(kind: Kind, key: ObjectKey) -> ObjectId {
    ObjectId { kind, key }
}

fn created_secs(meta: &ObjectMeta) -> i64 {
    meta.creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second())
}

/// Metadata of a synthetic object derived from `source`.
fn synthetic_meta(source: &ObjectMeta, namespace: &str, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        creation_timestamp: source.creation_timestamp.clone(),
        generation: source.generation,
        ..ObjectMeta::default()
    }
}

/// The `mock` config answering the requests a rule cannot serve (no usable backend, an
/// ExtensionRef of another kind), `share` of them when given: HTTP 500 for an HTTPRoute (the
/// spec), gRPC `UNAVAILABLE` (HTTP 200, `grpc-status: 14`, no body: a trailers-only response)
/// for a GRPCRoute (the spec: "MUST receive an `UNAVAILABLE` status").
fn unavailable(kind: RouteKind, share: Option<(u64, u64)>) -> serde_json::Value {
    let mut config = match kind {
        RouteKind::Http => json!({
            "status": 500,
            "body": "no usable backend for this HTTPRoute rule (see the HTTPRoute's status)\n",
        }),
        RouteKind::Grpc => json!({
            "status": 200,
            "headers": {
                "content-type": "application/grpc",
                "grpc-status": "14",
                "grpc-message": "no usable backend for this GRPCRoute rule (see the GRPCRoute's status)",
            },
        }),
    };
    if let Some((numerator, denominator)) = share {
        config["share"] = json!({"numerator": numerator, "denominator": denominator});
    }
    config
}

/// What a route attached to `attached` listeners of `gateway` leaves to the Gateway's other,
/// more specific listeners (GatewayHTTPListenerIsolation); `None` when nothing.
///
/// A listener counts when it is accepted and not conflicted, and shares the transport (HTTP or
/// HTTPS: one proxy port each) of an attached listener whose hostname covers its own strictly
/// (a hostname-less listener covers every hostname).
fn isolation(gateway: &GatewayInfo<'_>, attached: &[usize]) -> Option<HostIsolation> {
    let usable = |l: &ListenerInfo<'_>| l.accepted.is_ok() && l.conflicted.is_ok();
    let https = |l: &ListenerInfo<'_>| l.listener.protocol == "HTTPS";
    let mut except: Vec<String> = Vec::new();
    for (i, other) in gateway.listeners.iter().enumerate() {
        let Some(host) = &other.hostname else {
            continue;
        };
        if attached.contains(&i) || !usable(other) || except.contains(host) {
            continue;
        }
        let shadowed = attached.iter().any(|&a| {
            let mine = &gateway.listeners[a];
            https(mine) == https(other)
                && match &mine.hostname {
                    None => true,
                    Some(h) => h != host && hostnames::covers(h, host),
                }
        });
        if shadowed {
            except.push(host.clone());
        }
    }
    if except.is_empty() {
        return None;
    }
    let mut attached_hosts: Vec<String> = attached
        .iter()
        .filter_map(|&a| gateway.listeners[a].hostname.clone())
        .collect();
    attached_hosts.sort();
    attached_hosts.dedup();
    except.sort();
    Some(HostIsolation {
        except,
        attached: attached_hosts,
    })
}

/// Where filter `k` of a lowered rule is in the spec: `filters[k]`, or for the backends'
/// shared filters `backendRefs[].filters[j]`.
fn filter_path(rule: &sources::Rule, k: usize) -> String {
    match k.checked_sub(rule.backend_filters_from) {
        Some(j) => format!("backendRefs[].filters[{j}]"),
        None => format!("filters[{k}]"),
    }
}

fn lower_route(
    index: &Index<'_>,
    core_services: &HashSet<(&str, &str)>,
    route: &Source<'_>,
    outcomes: &[Outcome],
    out: &mut Lowered,
) {
    let key = &route.key;
    let meta = route.meta;
    let kind_name = route.kind.name();
    let source = id(route.kind.report_kind(), key.clone());
    let mut report = ObjectReport::new(meta.generation);
    // Gateway → hosts (union over its attached listeners).
    let mut gateways: BTreeMap<ObjectKey, Option<Vec<String>>> = BTreeMap::new();
    // Gateway → (attached to an HTTP listener, attached to an HTTPS listener).
    let mut protocols: BTreeMap<ObjectKey, (bool, bool)> = BTreeMap::new();
    // Gateway → the indices of the listeners attached to.
    let mut attached: BTreeMap<ObjectKey, Vec<usize>> = BTreeMap::new();
    let mut refused = Vec::new();
    for o in outcomes {
        match o {
            Outcome::NotOurs => {}
            Outcome::Refused(why, message) => refused.push((*why, message.clone())),
            Outcome::Attached(list) => {
                for a in list {
                    let slot = gateways
                        .entry(a.gateway.clone())
                        .or_insert_with(|| Some(Vec::new()));
                    *slot = hostnames::union(slot.take(), a.hosts.clone());
                    let https = index.gateways[&a.gateway].listeners[a.listener]
                        .listener
                        .protocol
                        == "HTTPS";
                    attached
                        .entry(a.gateway.clone())
                        .or_default()
                        .push(a.listener);
                    let seen = protocols.entry(a.gateway.clone()).or_default();
                    if https {
                        seen.1 = true;
                    } else {
                        seen.0 = true;
                    }
                }
            }
        }
    }
    if gateways.is_empty() {
        if refused.is_empty() {
            if outcomes.is_empty() || index.classes.is_empty() {
                return;
            }
            report.reject(
                "NoMatchingParent",
                "no parentRef names a Gateway of a GatewayClass whose controllerName is hookway.dev/gateway-controller",
            );
        }
        for (why, message) in refused {
            report.reject(why, message);
        }
        out.reports.insert(source, report);
        return;
    }
    for (why, message) in refused {
        report.warn(why, message);
    }

    let ns = key.namespace.as_str();
    let tag = route.kind.tag();
    // Synthetic `kind` `name` of this route: its origin part is the name after the tag.
    let origin = |out: &mut Lowered, kind: Kind, name: &str| {
        let part = name
            .split_once(SYNTHETIC_MARK)
            .map_or("", |(_, rest)| rest)
            .strip_prefix(tag)
            .unwrap_or_default()
            .to_string();
        out.origin_part(kind, ObjectKey::new(ns, name), &source, part);
    };
    let mut new_services = Vec::new();
    let mut new_plugins = Vec::new();
    let mut new_routes = Vec::new();
    for (i, rule) in route.rules().iter().enumerate() {
        let rule_name = format!("{}{SYNTHETIC_MARK}{tag}r{i:02}", key.name);
        if rule.backend_filters {
            report.reject(
                "UnsupportedValue",
                format!(
                    "rules[{i}]: backendRefs[].filters that differ between the rule's backends are not supported; the rule is not served"
                ),
            );
            continue;
        }
        let exists = |ns: &str, name: &str| core_services.contains(&(ns, name));
        let (list, problems) =
            backends::backends(&rule.backend_refs, kind_name, ns, &index.grants, &exists);
        let bad_weight: u64 = problems.iter().map(|(_, _, w)| u64::from(*w)).sum();
        for (why, message, _) in problems {
            report.unresolved(why, format!("rules[{i}]: {message}"));
        }
        let good_weight: u64 = list.iter().map(|b| u64::from(b.weight)).sum();
        let no_backend = good_weight == 0;
        let mut spec = json!({ "backends": list });
        if route.kind == RouteKind::Grpc {
            // gRPC needs HTTP/2: h2c with prior knowledge in plaintext, ALPN `h2` over TLS.
            spec["http2"] = json!("always");
        }
        let timeouts = rule.timeouts.as_ref();
        let timeout = timeouts
            .and_then(|t| t.backend_request.as_ref().or(t.request.as_ref()))
            .filter(|t| crate::duration::parse(t).is_ok_and(|d| !d.is_zero()));
        if let Some(t) = timeout {
            spec["timeout"] = json!({ "request": t });
        }
        let spec = match serde_json::from_value(spec) {
            Ok(spec) => spec,
            Err(e) => {
                report.reject("UnsupportedValue", format!("rules[{i}]: {e}"));
                continue;
            }
        };
        origin(out, Kind::Service, &rule_name);
        new_services.push(Arc::new(Service {
            metadata: synthetic_meta(meta, ns, rule_name.clone()),
            spec,
            status: None,
        }));

        // Mirror targets: one synthetic Service per RequestMirror filter of the rule.
        let mut mirrors: BTreeMap<usize, String> = BTreeMap::new();
        for (k, f) in rule.filters.iter().enumerate() {
            let Some(m) = f
                .request_mirror
                .as_ref()
                .filter(|_| f.kind == "RequestMirror")
            else {
                continue;
            };
            let one = [crate::gateway_api::http_route::HTTPBackendRef {
                backend: m.backend_ref.clone(),
                ..Default::default()
            }];
            let (list, problems) = backends::backends(&one, kind_name, ns, &index.grants, &exists);
            for (why, message, _) in problems {
                report.unresolved(
                    why,
                    format!(
                        "rules[{i}].{}.requestMirror: {message}",
                        filter_path(rule, k)
                    ),
                );
            }
            if list.is_empty() {
                continue;
            }
            let name = format!("{rule_name}.mirror{k:02}");
            origin(out, Kind::Service, &name);
            let mut spec = json!({ "backends": list, "retries": {"attempts": 0} });
            if route.kind == RouteKind::Grpc {
                spec["http2"] = json!("always");
            }
            new_services.push(Arc::new(Service {
                metadata: synthetic_meta(meta, ns, name.clone()),
                spec: serde_json::from_value(spec)
                    .expect("a backends list is a valid Service spec"),
                status: None,
            }));
            mirrors.insert(k, name);
        }
        'matches: for (j, m) in rule.matches.iter().enumerate() {
            let match_name = format!("{rule_name}.m{j:02}");
            let (route_rule, prefix) = match m {
                Ok(r) => r,
                Err(e) => {
                    report.reject("UnsupportedValue", format!("rules[{i}].matches[{j}]: {e}"));
                    continue;
                }
            };
            let mut refs = PluginRefs::new();
            let mut plugins = Vec::new();
            let mut answers = false;
            let mut broken = false;
            for (k, f) in rule.filters.iter().enumerate() {
                match filters::lower(f, prefix.as_deref(), route.kind) {
                    Ok(filters::Lowered::Plugin {
                        kind,
                        config,
                        order,
                    }) => {
                        answers |= kind == "request_redirect";
                        plugins.push((format!("{match_name}.f{k:02}"), kind, config, order));
                    }
                    Ok(filters::Lowered::Mirror {
                        numerator,
                        denominator,
                    }) => {
                        if let Some(service) = mirrors.get(&k) {
                            plugins.push((
                                format!("{match_name}.f{k:02}"),
                                "request_mirror",
                                json!({"service": service, "numerator": numerator, "denominator": denominator}),
                                MIRROR_ORDER,
                            ));
                        }
                    }
                    Ok(filters::Lowered::Extension(alias)) => {
                        refs.insert(alias, PluginRef::default());
                    }
                    Err(filters::Problem::Unsupported(e)) => {
                        report.reject(
                            "UnsupportedValue",
                            format!("rules[{i}].{}: {e}", filter_path(rule, k)),
                        );
                        continue 'matches;
                    }
                    Err(filters::Problem::InvalidKind(e)) => {
                        report.unresolved(
                            "InvalidKind",
                            format!("rules[{i}].{}: {e}", filter_path(rule, k)),
                        );
                        broken = true;
                    }
                }
            }
            if !answers {
                if no_backend || broken {
                    plugins.push((
                        format!("{match_name}.status500"),
                        "mock",
                        unavailable(route.kind, None),
                        STATUS_500_ORDER,
                    ));
                } else if bad_weight > 0 {
                    // The spec: the share of the requests an invalid backend would have had is
                    // answered 500 (HTTPRoute) or UNAVAILABLE (GRPCRoute).
                    plugins.push((
                        format!("{match_name}.status500"),
                        "mock",
                        unavailable(route.kind, Some((bad_weight, bad_weight + good_weight))),
                        STATUS_500_ORDER,
                    ));
                }
            }
            for (name, kind, config, order) in plugins {
                // The config sits on the Route's reference: a route-level setting (tier
                // `route`), as a filter is; the synthetic GatewayPlugin only names the kind.
                refs.insert(
                    name.clone(),
                    PluginRef {
                        config: Some(config),
                        ..PluginRef::default()
                    },
                );
                origin(out, Kind::GatewayPlugin, &name);
                new_plugins.push(Arc::new(GatewayPlugin {
                    metadata: synthetic_meta(meta, ns, name),
                    spec: GatewayPluginSpec {
                        plugin: kind.to_string(),
                        status: PluginStatus::Enable,
                        order,
                        config: None,
                        exclude_paths: Vec::new(),
                        policy: None,
                    },
                    status: None,
                }));
            }
            for (gateway, hosts) in &gateways {
                let name = format!("{match_name}@{}.{}", gateway.namespace, gateway.name);
                let route_key = ObjectKey::new(ns, name.clone());
                origin(out, Kind::Route, &name);
                out.claim_namespace
                    .insert(route_key.clone(), gateway.namespace.clone());
                if let Some(isolation) = attached
                    .get(gateway)
                    .and_then(|a| isolation(&index.gateways[gateway], a))
                {
                    out.isolation.insert(route_key.clone(), isolation);
                }
                match protocols.get(gateway) {
                    Some((true, false)) => {
                        out.transport.insert(route_key, false);
                    }
                    Some((false, true)) => {
                        out.transport.insert(route_key, true);
                    }
                    _ => {}
                }
                new_routes.push(Arc::new(Route {
                    metadata: synthetic_meta(meta, ns, name),
                    spec: RouteSpec {
                        hosts: hosts.clone().unwrap_or_default(),
                        rules: vec![route_rule.clone()],
                        service: rule_name.clone(),
                        tls: None,
                        priority: 0,
                        plugins: refs.clone(),
                    },
                    status: None,
                }));
            }
        }
    }
    let objects = out.objects_mut();
    objects.services.extend(new_services);
    objects.plugins.extend(new_plugins);
    objects.routes.extend(new_routes);
    out.reports.insert(source, report);
}
