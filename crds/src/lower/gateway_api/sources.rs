//! The route kinds lowering serves — HTTPRoute and GRPCRoute — seen through one shape, so
//! attachment, backends, filters and status are written once for both.
//!
//! A GRPCRoute rule becomes what an HTTPRoute rule would be: its method match a path match
//! (`grpc_matches`), its header matches the same header matches, its filters and backendRefs
//! HTTPRoute's (a GRPCRoute filter is a subset of an HTTPRoute filter).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::grpc_matches;
use super::matches;
use crate::api::route::RouteRule;
use crate::compiler::{Kind, Objects};
use crate::gateway_api::grpc_route::{GRPCBackendRef, GRPCRouteFilter};
use crate::gateway_api::http_route::{
    HTTPBackendRef, HTTPRouteFilter, HTTPRouteRule, HTTPRouteTimeouts,
};
use crate::gateway_api::{GRPCRoute, HTTPRoute, ParentReference};
use crate::snapshot::ObjectKey;

/// The kind of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RouteKind {
    /// `HTTPRoute`.
    Http,
    /// `GRPCRoute`.
    Grpc,
}

impl RouteKind {
    /// The kind's name (`HTTPRoute`, `GRPCRoute`): reports, ReferenceGrant `from`,
    /// `allowedRoutes.kinds`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "HTTPRoute",
            Self::Grpc => "GRPCRoute",
        }
    }

    /// The report kind.
    pub fn report_kind(self) -> Kind {
        match self {
            Self::Http => Kind::HTTPRoute,
            Self::Grpc => Kind::GRPCRoute,
        }
    }

    /// What synthetic names of this kind carry after the mark, so an HTTPRoute and a GRPCRoute
    /// of one name never lower to one synthetic name.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Http => "",
            Self::Grpc => "grpc.",
        }
    }
}

/// One rule, as lowering needs it.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Each match lowered to a hookway rule (and its path prefix, for `ReplacePrefixMatch`),
    /// or the `UnsupportedValue` message.
    pub matches: Vec<Result<(RouteRule, Option<String>), String>>,
    /// The filters: the rule's own, then (from [`Rule::backend_filters_from`] on) the
    /// `backendRefs[].filters` that every backend of the rule has alike — they apply to every
    /// request the rule forwards, so they are the rule's filters too.
    pub filters: Vec<HTTPRouteFilter>,
    /// Where the backends' shared filters start in `filters`.
    pub backend_filters_from: usize,
    /// The backends.
    pub backend_refs: Vec<HTTPBackendRef>,
    /// Whether backendRefs have filters that differ between backends (not supported).
    pub backend_filters: bool,
    /// Timeouts (HTTPRoute only).
    pub timeouts: Option<HTTPRouteTimeouts>,
}

/// A route of either kind.
#[derive(Debug, Clone)]
pub(crate) struct Source<'a> {
    /// Its kind.
    pub kind: RouteKind,
    /// Its namespace and name.
    pub key: ObjectKey,
    /// Its metadata.
    pub meta: &'a ObjectMeta,
    /// `spec.parentRefs`.
    pub parent_refs: &'a [ParentReference],
    /// `spec.hostnames`.
    pub hostnames: &'a [String],
    http: Option<&'a HTTPRoute>,
    grpc: Option<&'a GRPCRoute>,
}

impl<'a> Source<'a> {
    /// `creationTimestamp` in seconds (0 when unset), for the spec's "oldest route first".
    pub fn created(&self) -> i64 {
        super::created_secs(self.meta)
    }

    /// The rules, lowered to one shape (an HTTPRoute without rules has the spec's default
    /// rule; a GRPCRoute without rules has none).
    pub fn rules(&self) -> Vec<Rule> {
        if let Some(r) = self.http {
            let default_rule = [HTTPRouteRule::default()];
            let rules = if r.spec.rules.is_empty() {
                &default_rule[..]
            } else {
                &r.spec.rules[..]
            };
            return rules
                .iter()
                .map(|rule| {
                    let default_match = [Default::default()];
                    let list = if rule.matches.is_empty() {
                        &default_match[..]
                    } else {
                        &rule.matches[..]
                    };
                    let (filters, backend_filters) =
                        with_backend_filters(rule.filters.clone(), &rule.backend_refs);
                    Rule {
                        matches: list.iter().map(matches::rule).collect(),
                        filters,
                        backend_filters_from: rule.filters.len(),
                        backend_refs: rule.backend_refs.clone(),
                        backend_filters,
                        timeouts: rule.timeouts.clone(),
                    }
                })
                .collect();
        }
        let Some(r) = self.grpc else {
            return Vec::new();
        };
        r.spec
            .rules
            .iter()
            .map(|rule| {
                let default_match = [Default::default()];
                let list = if rule.matches.is_empty() {
                    &default_match[..]
                } else {
                    &rule.matches[..]
                };
                let backend_refs: Vec<HTTPBackendRef> =
                    rule.backend_refs.iter().map(http_backend).collect();
                let (filters, backend_filters) = with_backend_filters(
                    rule.filters.iter().map(http_filter).collect(),
                    &backend_refs,
                );
                Rule {
                    matches: list
                        .iter()
                        .map(|m| grpc_matches::rule(m).map(|r| (r, None)))
                        .collect(),
                    filters,
                    backend_filters_from: rule.filters.len(),
                    backend_refs,
                    backend_filters,
                    timeouts: None,
                }
            })
            .collect()
    }
}

/// A rule's `filters` followed by the `backendRefs[].filters` when every backend has the same
/// ones (a rule with one backend, typically: they then apply to every request the rule
/// forwards); and whether backends' filters differ (per-backend filters, not supported).
fn with_backend_filters(
    mut filters: Vec<HTTPRouteFilter>,
    backends: &[HTTPBackendRef],
) -> (Vec<HTTPRouteFilter>, bool) {
    let Some(first) = backends.first() else {
        return (filters, false);
    };
    if backends.iter().any(|b| b.filters != first.filters) {
        return (filters, true);
    }
    filters.extend(first.filters.iter().cloned());
    (filters, false)
}

/// A GRPCRoute filter as the HTTPRoute filter of the same type.
fn http_filter(f: &GRPCRouteFilter) -> HTTPRouteFilter {
    HTTPRouteFilter {
        kind: f.kind.clone(),
        request_header_modifier: f.request_header_modifier.clone(),
        response_header_modifier: f.response_header_modifier.clone(),
        request_mirror: f.request_mirror.clone(),
        extension_ref: f.extension_ref.clone(),
        ..HTTPRouteFilter::default()
    }
}

fn http_backend(b: &GRPCBackendRef) -> HTTPBackendRef {
    HTTPBackendRef {
        backend: b.backend.clone(),
        weight: b.weight,
        filters: b.filters.iter().map(http_filter).collect(),
    }
}

/// Every HTTPRoute and GRPCRoute of `objects` with a namespace and a name, sorted by kind,
/// then `namespace/name`, one per key.
pub(crate) fn all(objects: &Objects) -> Vec<Source<'_>> {
    let mut out: Vec<Source<'_>> = Vec::new();
    for r in &objects.http_routes {
        out.extend(
            source(
                RouteKind::Http,
                &r.metadata,
                &r.spec.parent_refs,
                &r.spec.hostnames,
            )
            .map(|s| Source {
                http: Some(r.as_ref()),
                ..s
            }),
        );
    }
    for r in &objects.grpc_routes {
        out.extend(
            source(
                RouteKind::Grpc,
                &r.metadata,
                &r.spec.parent_refs,
                &r.spec.hostnames,
            )
            .map(|s| Source {
                grpc: Some(r.as_ref()),
                ..s
            }),
        );
    }
    out.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    out.dedup_by(|a, b| (a.kind, &a.key) == (b.kind, &b.key));
    out
}

fn source<'a>(
    kind: RouteKind,
    meta: &'a ObjectMeta,
    parent_refs: &'a [ParentReference],
    hostnames: &'a [String],
) -> Option<Source<'a>> {
    let key = ObjectKey::new(meta.namespace.as_deref()?, meta.name.as_deref()?);
    Some(Source {
        kind,
        key,
        meta,
        parent_refs,
        hostnames,
        http: None,
        grpc: None,
    })
}
