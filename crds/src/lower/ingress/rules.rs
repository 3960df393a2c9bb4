//! One Ingress → synthetic Routes: one per rule path (`<ingress>#r<i>p<j>`), one for
//! On a host where any Ingress is in regex mode (`use-regex`, `rewrite-target`), every Ingress
//! path on that host is a regex (as ingress-nginx does), and regex Routes get their path's length
//! as priority, so the longest path is tried first (ingress-nginx's location order).
//!
//! `defaultBackend` (`<ingress>#default`, its hosts' catch-all at priority -1 so that a rule's own
//! `/` wins), one per host for `app-root` (`<ingress>#app-root-<i>`, `Exact /`).
//!
//! Each Route gets the rule's host plus `server-alias` hosts, the TLS Secret of the `spec.tls`
//! entry listing the host (host ownership between namespaces then applies as for any Route),
//! and the plugin references the annotations ask for.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use serde_json::json;

use super::annotations::Annotations;
use super::backend::{self, CoreIndex, Target};
use super::paths;
use super::plugins::{self, APP_ROOT, CANARY, REWRITE, SSL_REDIRECT};
use super::{reason, Canaries};
use crate::api::route::{PathMatch, PathMatchType, RouteRule, RouteTls};
use crate::api::PluginRefs;
use crate::compiler::{Kind, ObjectId, ObjectReport};
use crate::lower::Lowered;
use crate::snapshot::ObjectKey;
use crate::{Route, RouteSpec};

/// What one Ingress is lowered with.
pub(crate) struct Source<'a> {
    /// The Ingress's id.
    pub id: &'a ObjectId,
    /// The Ingress.
    pub ingress: &'a Ingress,
    /// Its annotations.
    pub annotations: &'a Annotations,
}

impl Source<'_> {
    fn namespace(&self) -> &str {
        &self.id.key.namespace
    }
    fn name(&self) -> &str {
        &self.id.key.name
    }
}

/// One rule path (or the default backend) before it becomes a Route.
struct Planned {
    name: String,
    what: String,
    hosts: Vec<String>,
    path: PathMatch,
    /// The Ingress path as written (for the rewrite and canary matching).
    source_path: String,
    target: Target,
    tls: Option<String>,
    priority: i32,
    /// `(host, path as written)` for a rule path (where a canary may attach); `None` for the
    /// default backend and app-root Routes.
    canary_key: Option<(String, String)>,
}

/// One path of one rule of an Ingress.
pub(crate) struct RulePath {
    /// Index of the rule in `spec.rules`.
    pub rule: usize,
    /// Index of the path in the rule's `http.paths`.
    pub index: usize,
    /// The rule's host, lower-cased (`None`: every host).
    pub host: Option<String>,
    /// The path as written (`/` when absent).
    pub path: String,
    /// `pathType`.
    pub path_type: String,
    /// The backend.
    pub backend: IngressBackend,
}

impl RulePath {
    /// `spec.rules[i].http.paths[j]`, for messages.
    pub fn field(&self) -> String {
        format!("spec.rules[{}].http.paths[{}]", self.rule, self.index)
    }
}

/// Every rule path of `ingress`, in order.
pub(crate) fn rule_paths(ingress: &Ingress) -> Vec<RulePath> {
    let mut out = Vec::new();
    let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
    for (ri, rule) in rules.into_iter().flatten().enumerate() {
        let host = rule.host.as_ref().map(|h| h.to_ascii_lowercase());
        for (pi, p) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
            out.push(RulePath {
                rule: ri,
                index: pi,
                host: host.clone(),
                path: p.path.clone().unwrap_or_else(|| "/".into()),
                path_type: p.path_type.clone(),
                backend: p.backend.clone(),
            });
        }
    }
    out
}

/// Lowers a main (non-canary) Ingress into `out`, reporting on `report`.
pub(crate) fn lower(
    src: &Source<'_>,
    core: &CoreIndex<'_>,
    canaries: &mut Canaries,
    regex_hosts: &RegexHosts,
    report: &mut ObjectReport,
    out: &mut Lowered,
) {
    let a = src.annotations;
    let regex_host = |host: &Option<String>| a.regex || regex_hosts.contains(host);
    let spec = src.ingress.spec.clone().unwrap_or_default();
    let mut tls_hosts: BTreeMap<String, String> = BTreeMap::new();
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        let Some(secret) = tls.secret_name.clone().filter(|s| !s.is_empty()) else {
            report.warn(
                reason::UNSUPPORTED_VALUE,
                format!("spec.tls[{i}] has no secretName; ignored"),
            );
            continue;
        };
        let hosts = tls.hosts.clone().unwrap_or_default();
        if hosts.is_empty() {
            report.warn(
                reason::UNSUPPORTED_VALUE,
                format!("spec.tls[{i}] lists no hosts; ignored (hookway serves a certificate for the hosts it names)"),
            );
        }
        for h in hosts {
            tls_hosts
                .entry(h.to_ascii_lowercase())
                .or_insert_with(|| secret.clone());
        }
    }
    let with_aliases = |host: &Option<String>| -> Vec<String> {
        match host {
            None => Vec::new(),
            Some(h) => std::iter::once(h.clone())
                .chain(a.server_alias.iter().cloned())
                .collect(),
        }
    };
    let mut planned = Vec::new();
    let mut rule_hosts: Vec<Option<String>> = Vec::new();
    for rp in rule_paths(src.ingress) {
        let RulePath {
            host,
            path,
            path_type,
            backend,
            ..
        } = &rp;
        if !rule_hosts.contains(host) {
            rule_hosts.push(host.clone());
        }
        let what = format!(
            "rule host {:?} path {path:?}",
            host.as_deref().unwrap_or("*")
        );
        let field = rp.field();
        let regex = regex_host(host);
        let matched = match paths::lower(Some(path), path_type, regex) {
            Ok(m) => m,
            Err(e) => {
                report.reject(reason::INVALID_SPEC, format!("{field}: {e}"));
                continue;
            }
        };
        let target = match backend::resolve(core, src.namespace(), backend) {
            Ok(t) => t,
            Err(e) => {
                report.unresolved(
                    reason::BACKEND_NOT_FOUND,
                    format!("{field}: {e}; the path is not served"),
                );
                continue;
            }
        };
        let matched_regex = matched.kind == PathMatchType::Regex;
        planned.push(Planned {
            name: format!("{}#r{}p{}", src.name(), rp.rule, rp.index),
            what,
            tls: host.as_ref().and_then(|h| tls_hosts.get(h)).cloned(),
            hosts: with_aliases(host),
            path: matched,
            canary_key: Some((host.clone().unwrap_or_default(), path.clone())),
            source_path: path.clone(),
            target,
            priority: if matched_regex {
                regex_priority(path)
            } else {
                0
            },
        });
    }
    if let Some(backend) = &spec.default_backend {
        match backend::resolve(core, src.namespace(), backend) {
            Ok(target) => {
                let hosts = if rule_hosts.is_empty() || rule_hosts.contains(&None) {
                    Vec::new()
                } else {
                    rule_hosts.iter().flat_map(with_aliases).collect()
                };
                planned.push(Planned {
                    name: format!("{}#default", src.name()),
                    what: "defaultBackend".into(),
                    tls: None,
                    hosts,
                    // On a host in regex mode, a plain `/` prefix would win over every regex
                    // path (prefixes match first): the catch-all becomes the widest regex.
                    path: if rule_hosts.iter().any(regex_host) {
                        PathMatch {
                            kind: PathMatchType::Regex,
                            value: "(?i)/.*".into(),
                        }
                    } else {
                        PathMatch {
                            kind: PathMatchType::Prefix,
                            value: "/".into(),
                        }
                    },
                    source_path: "/".into(),
                    target,
                    priority: -1,
                    canary_key: None,
                });
            }
            Err(e) => report.unresolved(
                reason::BACKEND_NOT_FOUND,
                format!("spec.defaultBackend: {e}; it is not served"),
            ),
        }
    }
    if planned.is_empty() && report.accepted.status {
        report.reject(
            reason::INVALID_SPEC,
            "the Ingress has no rule path and no defaultBackend that can be served",
        );
    }
    for p in &planned {
        let service = p.target.synthetic_name(src.name());
        emit_service(src, &service, &p.target, out);
        let mut refs = route_plugins(a, &p.source_path, p.tls.is_some());
        if let Some(key) = &p.canary_key {
            if let Some(config) = canaries.take_for(src.namespace(), key) {
                plugins::add(&mut refs, &CANARY, config);
            }
        }
        emit_route(src, p, &service, refs, out);
    }
    if let Some(root) = &a.app_root {
        let mut first: BTreeMap<Option<String>, &Planned> = BTreeMap::new();
        for p in planned.iter().filter(|p| p.canary_key.is_some()) {
            first.entry(p.hosts.first().cloned()).or_insert(p);
        }
        for (i, p) in first.into_values().enumerate() {
            let mut refs = PluginRefs::new();
            if a.force_ssl_redirect || (a.ssl_redirect && p.tls.is_some()) {
                plugins::add(&mut refs, &SSL_REDIRECT, ssl_redirect());
            }
            plugins::add(
                &mut refs,
                &APP_ROOT,
                json!({"status": 302, "headers": {"Location": root}, "body": ""}),
            );
            let app = Planned {
                name: format!("{}#app-root-{i}", src.name()),
                what: format!(
                    "app-root for host {:?}",
                    p.hosts.first().map_or("*", String::as_str)
                ),
                hosts: p.hosts.clone(),
                path: PathMatch {
                    kind: PathMatchType::Exact,
                    value: "/".into(),
                },
                source_path: "/".into(),
                target: p.target.clone(),
                tls: p.tls.clone(),
                priority: 1,
                canary_key: None,
            };
            let service = app.target.synthetic_name(src.name());
            emit_route(src, &app, &service, refs, out);
        }
    }
}

/// Hosts (`None`: rules without a host) on which some Ingress asks for regex paths: as in
/// ingress-nginx, every Ingress path on such a host is then a regex.
pub(crate) type RegexHosts = std::collections::HashSet<Option<String>>;

/// The priority of a regex path: the longer path wins, as ingress-nginx orders its locations
/// by path length (hookway tries regexes by priority).
fn regex_priority(path: &str) -> i32 {
    i32::try_from(path.len().min(999)).unwrap_or(999)
}

fn ssl_redirect() -> serde_json::Value {
    // ingress-nginx's default http-redirect-code.
    json!({"http_to_https": true, "status": 308})
}

/// The plugin references of one path of an Ingress with annotations `a`.
fn route_plugins(a: &Annotations, source_path: &str, tls: bool) -> PluginRefs {
    let mut refs = PluginRefs::new();
    if a.force_ssl_redirect || (a.ssl_redirect && tls) {
        plugins::add(&mut refs, &SSL_REDIRECT, ssl_redirect());
    }
    for (plugin, config) in &a.plugins {
        plugins::add(&mut refs, plugin, config.clone());
    }
    if a.rewrite_target.is_some() || a.upstream_vhost.is_some() {
        let mut config = json!({});
        if let Some(target) = &a.rewrite_target {
            config["regex_uri"] = json!([super::annotations::rewrite_pattern(source_path), target]);
        }
        if let Some(host) = &a.upstream_vhost {
            config["host"] = json!(host);
        }
        plugins::add(&mut refs, &REWRITE, config);
    }
    plugins::add_references(&mut refs, &a.references);
    refs
}

/// Adds the synthetic Service `name` (once).
pub(crate) fn emit_service(src: &Source<'_>, name: &str, target: &Target, out: &mut Lowered) {
    let key = ObjectKey::new(src.namespace(), name);
    let id = ObjectId {
        kind: Kind::Service,
        key: key.clone(),
    };
    if out.origins.contains_key(&id) {
        return;
    }
    out.objects.services.push(backend::synthetic(
        name,
        src.namespace(),
        target,
        &src.annotations.upstream,
    ));
    out.origin_part(
        Kind::Service,
        key,
        src.id,
        format!("backend Service {:?} port {}", target.service, target.port),
    );
}

fn emit_route(
    src: &Source<'_>,
    p: &Planned,
    service: &str,
    plugins: PluginRefs,
    out: &mut Lowered,
) {
    let mut route = Route::new(
        &p.name,
        RouteSpec {
            hosts: p.hosts.clone(),
            rules: vec![RouteRule {
                path: Some(p.path.clone()),
                ..RouteRule::default()
            }],
            service: service.to_string(),
            tls: p.tls.clone().map(|secret_name| RouteTls { secret_name }),
            priority: p.priority,
            plugins,
        },
    );
    route.metadata.namespace = Some(src.namespace().into());
    route.metadata.creation_timestamp = src.ingress.metadata.creation_timestamp.clone();
    route.metadata.generation = Some(1);
    out.objects.routes.push(Arc::new(route));
    out.origin_part(
        Kind::Route,
        ObjectKey::new(src.namespace(), &p.name),
        src.id,
        p.what.clone(),
    );
}
