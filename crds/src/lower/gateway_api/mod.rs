//! Gateway API → synthetic hookway objects (docs/gateway-api.md).
//!
//! For each HTTPRoute attached to a listener of a Gateway of a hookway GatewayClass:
//!
//! ```text
//!  rule i                 → Service  "<route>#r<i>"            backends = backendRefs (weighted),
//!                                                               timeout = timeouts
//!  rule i × match j × gw  → Route    "<route>#r<i>.m<j>@<gw-ns>.<gw>"  hosts = hostnames ∩ listeners,
//!                                                               one rule = the match
//!  rule i × match j × filter k → GatewayPlugin "<route>#r<i>.m<j>.f<k>" (built-in kind; see filters)
//!  ExtensionRef           → a route-level reference to the GatewayPlugin alias
//!  no usable backend      → GatewayPlugin "<route>#r<i>.m<j>.status500" (`mock`, answers 500;
//!                           with some usable backends, only the invalid ones' share)
//! ```
//!
//! Lowered Routes claim their hosts for the Gateway's namespace (the listener's `allowedRoutes`
//! is the authority), and every listener hostname is itself a claim of the Gateway's namespace.

mod attach;
mod backends;
mod filters;
mod grants;
mod hostnames;
mod index;
mod matches;
pub mod status;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::{ExtraClaim, ListenerCertificate, Lowered, SYNTHETIC_MARK};
use crate::api::gateway_plugin::PluginStatus;
use crate::api::{PluginRef, PluginRefs};
use crate::compiler::{Kind, ObjectId, ObjectReport, Objects, Options};
use crate::gateway_api::HTTPRoute;
use crate::snapshot::ObjectKey;
use crate::{GatewayPlugin, GatewayPluginSpec, Route, RouteSpec, Service};

pub(crate) use attach::Outcome;
pub(crate) use index::Index;

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
    let mut routes: Vec<&Arc<HTTPRoute>> = objects.http_routes.iter().collect();
    routes.sort_by_key(|r| key_of(&r.metadata));
    routes.dedup_by(|a, b| key_of(&a.metadata) == key_of(&b.metadata));
    for route in routes {
        let key = key_of(&route.metadata);
        let outcomes = attach::parents(&index, route, &key.namespace);
        for o in &outcomes {
            if let Outcome::Attached(list) = o {
                for a in list {
                    let slot = listener_hosts
                        .entry((a.gateway.clone(), a.listener))
                        .or_insert_with(|| Some(Vec::new()));
                    *slot = hostnames::union(slot.take(), a.hosts.clone());
                }
            }
        }
        lower_route(objects, &index, &core_services, route, &key, &outcomes, out);
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

fn key_of(meta: &ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or(""),
    )
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

fn lower_route(
    _objects: &Objects,
    index: &Index<'_>,
    core_services: &HashSet<(&str, &str)>,
    route: &HTTPRoute,
    key: &ObjectKey,
    outcomes: &[Outcome],
    out: &mut Lowered,
) {
    let source = id(Kind::HTTPRoute, key.clone());
    let mut report = ObjectReport::new(route.metadata.generation);
    // Gateway → hosts (union over its attached listeners).
    let mut gateways: BTreeMap<ObjectKey, Option<Vec<String>>> = BTreeMap::new();
    // Gateway → (attached to an HTTP listener, attached to an HTTPS listener).
    let mut protocols: BTreeMap<ObjectKey, (bool, bool)> = BTreeMap::new();
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
    let default_rule = [Default::default()];
    let rules = if route.spec.rules.is_empty() {
        &default_rule[..]
    } else {
        &route.spec.rules[..]
    };
    let default_match = [Default::default()];
    let mut new_services = Vec::new();
    let mut new_plugins = Vec::new();
    let mut new_routes = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let rule_name = format!("{}{SYNTHETIC_MARK}r{i:02}", key.name);
        if rule.backend_refs.iter().any(|b| !b.filters.is_empty()) {
            report.reject(
                "UnsupportedValue",
                format!(
                    "rules[{i}]: backendRefs[].filters are not supported; the rule is not served"
                ),
            );
            continue;
        }
        let exists = |ns: &str, name: &str| core_services.contains(&(ns, name));
        let (list, problems) = backends::backends(&rule.backend_refs, ns, &index.grants, &exists);
        let bad_weight: u64 = problems.iter().map(|(_, _, w)| u64::from(*w)).sum();
        for (why, message, _) in problems {
            report.unresolved(why, format!("rules[{i}]: {message}"));
        }
        let good_weight: u64 = list.iter().map(|b| u64::from(b.weight)).sum();
        let no_backend = good_weight == 0;
        let mut spec = json!({ "backends": list });
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
        let service_key = ObjectKey::new(ns, rule_name.clone());
        out.origin(Kind::Service, service_key, source.clone());
        new_services.push(Arc::new(Service {
            metadata: synthetic_meta(&route.metadata, ns, rule_name.clone()),
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
            let (list, problems) = backends::backends(&one, ns, &index.grants, &exists);
            for (why, message, _) in problems {
                report.unresolved(
                    why,
                    format!("rules[{i}].filters[{k}].requestMirror: {message}"),
                );
            }
            if list.is_empty() {
                continue;
            }
            let name = format!("{rule_name}.mirror{k:02}");
            out.origin(
                Kind::Service,
                ObjectKey::new(ns, name.clone()),
                source.clone(),
            );
            new_services.push(Arc::new(Service {
                metadata: synthetic_meta(&route.metadata, ns, name.clone()),
                spec: serde_json::from_value(
                    json!({ "backends": list, "retries": {"attempts": 0} }),
                )
                .expect("a backends list is a valid Service spec"),
                status: None,
            }));
            mirrors.insert(k, name);
        }
        let matches = if rule.matches.is_empty() {
            &default_match[..]
        } else {
            &rule.matches[..]
        };
        'matches: for (j, m) in matches.iter().enumerate() {
            let match_name = format!("{rule_name}.m{j:02}");
            let (route_rule, prefix) = match matches::rule(m) {
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
                match filters::lower(f, prefix.as_deref()) {
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
                        report.reject("UnsupportedValue", format!("rules[{i}].filters[{k}]: {e}"));
                        continue 'matches;
                    }
                    Err(filters::Problem::InvalidKind(e)) => {
                        report.unresolved("InvalidKind", format!("rules[{i}].filters[{k}]: {e}"));
                        broken = true;
                    }
                }
            }
            if !answers {
                let body =
                    "no usable backend for this HTTPRoute rule (see the HTTPRoute's status)\n";
                if no_backend || broken {
                    plugins.push((
                        format!("{match_name}.status500"),
                        "mock",
                        json!({"status": 500, "body": body}),
                        STATUS_500_ORDER,
                    ));
                } else if bad_weight > 0 {
                    // The spec: the share of the requests an invalid backend would have had is
                    // answered 500.
                    plugins.push((
                        format!("{match_name}.status500"),
                        "mock",
                        json!({"status": 500, "body": body,
                               "share": {"numerator": bad_weight, "denominator": bad_weight + good_weight}}),
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
                out.origin(
                    Kind::GatewayPlugin,
                    ObjectKey::new(ns, name.clone()),
                    source.clone(),
                );
                new_plugins.push(Arc::new(GatewayPlugin {
                    metadata: synthetic_meta(&route.metadata, ns, name),
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
                out.origin(Kind::Route, route_key.clone(), source.clone());
                out.claim_namespace
                    .insert(route_key.clone(), gateway.namespace.clone());
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
                    metadata: synthetic_meta(&route.metadata, ns, name),
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
