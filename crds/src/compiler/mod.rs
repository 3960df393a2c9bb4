//! The compiler: a pure function from the current objects to `(Snapshot, per-object reports)`.
//!
//! ```text
//!  Objects ──► validate GatewayPlugins ──► index by (namespace, alias)
//!          ──► resolve Services (nodes | core Service + EndpointSlices)
//!          ──► for each Route: resolve Service, TLS Secret, effective chain (precedence.rs)
//!          ──► Snapshot (sorted, hashed) + ObjectReport per object
//! ```
//!
//! Rules (DESIGN.md §2) live in `precedence.rs`; this module wires them. Nothing here does I/O
//! or depends on the order objects arrive in: every input is sorted by `(namespace, name)`
//! first, and when two objects share a key the one whose JSON sorts first is kept (the other
//! is reported as a duplicate), so even malformed input sets compile deterministically.
//!
//! Modules: `plugins` (GatewayPlugin validation and alias index), `services` (upstreams and
//! endpoints), `routes` (matchers and conflicts), `precedence` (effective chains), `selector`
//! (`policy.namespaces`), `secrets` (TLS and credential Secrets), `report` (conditions).

mod plugins;
mod precedence;
mod report;
mod routes;
mod secrets;
mod selector;
mod services;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret, Service as CoreService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;

use kube::Resource;

use crate::api::{ChainStatusEntry, PluginRefs};
use crate::snapshot::{CertificateEntry, ObjectKey, RouteEntry, Snapshot};
use crate::{Catalogue, GatewayPlugin, Route, Service};

use precedence::Scope;
use report::reason;

/// Everything the compiler reads. Reflector stores hand out `Arc<K>`, so do we.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// hookway GatewayPlugins.
    pub plugins: Vec<Arc<GatewayPlugin>>,
    /// hookway Services.
    pub services: Vec<Arc<Service>>,
    /// hookway Routes.
    pub routes: Vec<Arc<Route>>,
    /// Core Services referenced by hookway Services' `backend`.
    pub core_services: Vec<Arc<CoreService>>,
    /// EndpointSlices (`kubernetes.io/service-name` label links them to core Services).
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Secrets: `kubernetes.io/tls` for Routes, others only when a plugin config references them.
    pub secrets: Vec<Arc<Secret>>,
    /// Namespaces (for `policy.namespaces` label selectors). A namespace not listed has no labels.
    pub namespaces: Vec<Arc<Namespace>>,
}

/// Compiler settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// GatewayPlugins here are cluster-wide.
    pub root_namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            root_namespace: "hookway-system".into(),
        }
    }
}

/// The kind of a reported object.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `GatewayPlugin`.
    GatewayPlugin,
    /// `Service` (hookway's).
    Service,
    /// `Route`.
    Route,
}

/// Which object a report is about.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    /// Kind.
    pub kind: Kind,
    /// Namespace and name.
    #[serde(flatten)]
    pub key: ObjectKey,
}

/// One condition as the compiler sees it (the controller adds `observedGeneration` and
/// `lastTransitionTime`).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ConditionResult {
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason, e.g. `Accepted`, `PluginNotFound`.
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ConditionResult {
    /// A `True` condition.
    pub fn ok(reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
    /// A `False` condition.
    pub fn fail(reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What the compiler says about one object.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    /// `metadata.generation` that was compiled.
    pub generation: i64,
    /// Whether the spec is valid and will be served.
    pub accepted: ConditionResult,
    /// Whether every reference (Service, Secret, plugin) resolved.
    pub resolved_refs: ConditionResult,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
    /// Routes only: the effective chain in run order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainStatusEntry>,
    /// GatewayPlugins only: Routes this instance runs on.
    pub routes: u32,
    /// Services only: ready endpoints.
    pub endpoints: u32,
}

impl ObjectReport {
    /// Whether the object is served as asked (accepted and every reference resolved).
    pub fn is_ok(&self) -> bool {
        self.accepted.status && self.resolved_refs.status
    }
}

/// The compiler's output.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// The snapshot (sealed: `hash` set, `version` 0 for the producer to set).
    pub snapshot: Snapshot,
    /// One report per GatewayPlugin, Service and Route, sorted.
    pub reports: BTreeMap<ObjectId, ObjectReport>,
}

impl Compiled {
    /// Objects that are not served as asked.
    pub fn rejected(&self) -> impl Iterator<Item = (&ObjectId, &ObjectReport)> {
        self.reports.iter().filter(|(_, r)| !r.is_ok())
    }
}

/// Namespace given to objects that have none (as the API server would).
const DEFAULT_NAMESPACE: &str = "default";

/// One input object with its (borrowed) namespace and name.
pub(crate) struct Obj<'a, K> {
    /// `metadata.namespace` (`default` when absent).
    pub namespace: &'a str,
    /// `metadata.name`.
    pub name: &'a str,
    /// The object.
    pub object: &'a K,
}

impl<K> Obj<'_, K> {
    /// `namespace/name` as an owned key.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(self.namespace, self.name)
    }
}

/// The inputs, sorted by `(namespace, name)` and deduplicated.
pub(crate) struct Inputs<'a> {
    /// The root namespace.
    pub root: &'a str,
    /// GatewayPlugins.
    pub plugins: Vec<Obj<'a, GatewayPlugin>>,
    /// hookway Services.
    pub services: Vec<Obj<'a, Service>>,
    /// Routes.
    pub routes: Vec<Obj<'a, Route>>,
}

/// Sorts objects by key (ties by content), drops unnamed objects and later duplicates; the keys
/// of dropped duplicates are pushed to `duplicates`.
fn sorted<'a, K>(items: &'a [Arc<K>], duplicates: &mut Vec<ObjectKey>) -> Vec<Obj<'a, K>>
where
    K: Resource + Serialize,
{
    let mut out: Vec<Obj<'a, K>> = items
        .iter()
        .filter_map(|o| {
            let meta = o.meta();
            Some(Obj {
                namespace: meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
                name: meta.name.as_deref()?,
                object: o.as_ref(),
            })
        })
        .collect();
    let json = |o: &K| serde_json::to_string(o).unwrap_or_default();
    out.sort_by(|a, b| {
        (a.namespace, a.name)
            .cmp(&(b.namespace, b.name))
            .then_with(|| json(a.object).cmp(&json(b.object)))
    });
    out.dedup_by(|later, kept| {
        let same = (later.namespace, later.name) == (kept.namespace, kept.name);
        if same {
            duplicates.push(later.key());
        }
        same
    });
    out
}

/// Namespace labels by namespace name.
fn namespace_labels(objects: &Objects) -> HashMap<&str, &BTreeMap<String, String>> {
    let mut out = HashMap::new();
    for ns in sorted(&objects.namespaces, &mut Vec::new()) {
        if let Some(labels) = &ns.object.metadata.labels {
            out.insert(ns.name, labels);
        }
    }
    out
}

fn duplicate_warning(reports: &mut BTreeMap<ObjectKey, ObjectReport>, keys: Vec<ObjectKey>) {
    for key in keys {
        if let Some(r) = reports.get_mut(&key) {
            r.warn(
                reason::INVALID_SPEC,
                format!("{key} appears more than once in the input; only one copy is used"),
            );
        }
    }
}

/// Compiles `objects` into a snapshot and a report per object. Pure and deterministic: the same
/// objects in any order give the same snapshot and hash. Never panics on bad input.
///
/// Choices worth knowing:
/// - A Route whose `tls.secretName` does not resolve to a usable `kubernetes.io/tls` Secret
///   gets `ResolvedRefs=False` (`SecretNotFound`) but is still served over plain HTTP: its
///   hosts keep working while the certificate is being issued (cert-manager creates the Secret
///   after the Route), and HTTPS requests for those hosts fail the TLS handshake rather than
///   being answered with another host's certificate.
/// - Routes that match exactly the same requests all stay in the snapshot; see
///   `routes::conflicts` (losers get a `Conflicted` warning naming the winner).
/// - Secrets named by a Route or Service ref's own `config` are resolved in that object's
///   namespace; those named by a GatewayPlugin's `config` in the GatewayPlugin's namespace.
pub fn compile(objects: &Objects, options: &Options, catalogue: &Catalogue) -> Compiled {
    let mut dup_plugins = Vec::new();
    let mut dup_services = Vec::new();
    let mut dup_routes = Vec::new();
    let inputs = Inputs {
        root: &options.root_namespace,
        plugins: sorted(&objects.plugins, &mut dup_plugins),
        services: sorted(&objects.services, &mut dup_services),
        routes: sorted(&objects.routes, &mut dup_routes),
    };
    let labels = namespace_labels(objects);
    let secret_objects = sorted(&objects.secrets, &mut Vec::new());
    let secrets = secrets::SecretIndex::new(secret_objects.iter().map(|s| s.object));
    let core = sorted(&objects.core_services, &mut Vec::new());
    let slices = sorted(&objects.endpoint_slices, &mut Vec::new());
    let backends = services::Backends::new(
        core.iter().map(|o| o.object),
        slices.iter().map(|o| o.object),
    );

    let mut secret_entries = BTreeMap::new();
    let mut plugin_reports = BTreeMap::new();
    let mut service_reports = BTreeMap::new();
    let mut route_reports = BTreeMap::new();

    let plugins = plugins::PluginIndex::build(
        &inputs,
        catalogue,
        &secrets,
        &mut secret_entries,
        &mut plugin_reports,
    );
    let scope = |namespace| Scope {
        namespace,
        labels: labels.get(namespace).copied(),
        root: inputs.root,
        plugins: &plugins,
        catalogue,
        secrets: &secrets,
    };

    let mut service_index = services::build(&inputs, &backends, &mut service_reports);
    for s in &inputs.services {
        let (Some(report), Some(info)) = (
            service_reports.get_mut(&s.key()),
            service_index.get_mut(&(s.namespace, s.name)),
        ) else {
            continue;
        };
        let usable = precedence::check_service_refs(
            &scope(s.namespace),
            &s.object.spec.plugins,
            &mut secret_entries,
            report,
        );
        if !usable {
            info.upstream = None;
        }
    }

    let no_refs = PluginRefs::new();
    let mut served: Vec<RouteEntry> = Vec::with_capacity(inputs.routes.len());
    let mut plugin_use = vec![0u32; plugins.plugins.len()];
    let mut certificates: BTreeMap<ObjectKey, CertificateEntry> = BTreeMap::new();
    for r in &inputs.routes {
        let key = r.key();
        let spec = &r.object.spec;
        let mut report = ObjectReport::new(r.object.metadata.generation);
        let mut ok = true;
        let matchers = routes::hosts(spec).and_then(|h| Ok((h, routes::rules(spec)?)));
        if let Err(e) = &matchers {
            report.reject(reason::INVALID_SPEC, e.clone());
            ok = false;
        }
        let service = service_index.get(&(r.namespace, spec.service.as_str()));
        match service {
            None => {
                report.unresolved(
                    reason::SERVICE_NOT_FOUND,
                    format!("Service {}/{} not found", r.namespace, spec.service),
                );
                ok = false;
            }
            Some(info) if info.upstream.is_none() => {
                report.unresolved(
                    reason::SERVICE_NOT_ACCEPTED,
                    format!(
                        "Service {}/{} is not accepted (see its status)",
                        r.namespace, spec.service
                    ),
                );
                ok = false;
            }
            Some(_) => {}
        }
        let service_refs = service.map_or(&no_refs, |s| &s.spec.plugins);
        let chain = precedence::route_chain(
            &scope(r.namespace),
            &spec.plugins,
            service_refs,
            &mut secret_entries,
            &mut report,
        );
        let certificate =
            spec.tls
                .as_ref()
                .and_then(|tls| match secrets.tls(r.namespace, &tls.secret_name) {
                    Ok(pem) => Some((ObjectKey::new(r.namespace, tls.secret_name.as_str()), pem)),
                    Err(e) => {
                        report.unresolved(
                            reason::SECRET_NOT_FOUND,
                            format!("{e}; the Route is served over plain HTTP only"),
                        );
                        None
                    }
                });
        if let (true, Ok((hosts, rules)), Some(chain)) = (ok, matchers, chain) {
            for (i, _) in &chain {
                plugin_use[*i] += 1;
            }
            report.chain = chain
                .iter()
                .map(|(_, e)| ChainStatusEntry {
                    alias: e.alias.clone(),
                    namespace: e.plugin_ref.namespace.clone(),
                    plugin: e.plugin.clone(),
                    tier: e.tier.as_str().to_string(),
                    order: e.order,
                })
                .collect();
            if let Some((secret, (cert_pem, key_pem))) = certificate {
                certificates
                    .entry(secret.clone())
                    .or_insert_with(|| CertificateEntry {
                        key: secret,
                        cert_pem,
                        key_pem,
                        hosts: Vec::new(),
                    })
                    .hosts
                    .extend(hosts.iter().cloned());
            }
            served.push(RouteEntry {
                key: key.clone(),
                hosts,
                rules,
                priority: spec.priority,
                created: r
                    .object
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(0, |t| t.0.as_second()),
                upstream: ObjectKey::new(r.namespace, spec.service.as_str()),
                chain: chain.into_iter().map(|(_, e)| e).collect(),
            });
        }
        route_reports.insert(key, report);
    }

    for (loser, message) in routes::conflicts(&served) {
        if let Some(report) = route_reports.get_mut(&served[loser].key) {
            report.warn(reason::CONFLICTED, message);
        }
    }
    for (info, count) in plugins.plugins.iter().zip(&plugin_use) {
        if let Some(report) = plugin_reports.get_mut(&info.key) {
            report.routes = *count;
        }
    }
    duplicate_warning(&mut plugin_reports, dup_plugins);
    duplicate_warning(&mut service_reports, dup_services);
    duplicate_warning(&mut route_reports, dup_routes);

    let snapshot = Snapshot {
        version: 0,
        hash: String::new(),
        routes: served,
        upstreams: services::upstreams(&service_index),
        certificates: certificates
            .into_values()
            .map(|mut c| {
                c.hosts.sort();
                c.hosts.dedup();
                c
            })
            .collect(),
        secrets: secret_entries.into_values().collect(),
        default_chain: precedence::default_chain(&plugins),
    }
    .seal();

    // Kinds in `Kind` order and keys sorted within each: `collect` builds the map in bulk.
    let reports = [
        (Kind::GatewayPlugin, plugin_reports),
        (Kind::Service, service_reports),
        (Kind::Route, route_reports),
    ]
    .into_iter()
    .flat_map(|(kind, map)| {
        map.into_iter()
            .map(move |(key, r)| (ObjectId { kind, key }, r))
    })
    .collect();
    Compiled { snapshot, reports }
}
