//! The compiler: a pure function from the current objects to `(Snapshot, per-object reports)`.
//!
//! ```text
//!  Objects ──► lower (crate::lower: Gateway API → synthetic Routes, Services, GatewayPlugins)
//!          ──► validate GatewayPlugins ──► index by (namespace, alias)
//!          ──► resolve Services (nodes | core Service + EndpointSlices)
//!          ──► for each Route: resolve Service, TLS Secret, effective chain (precedence.rs)
//!          ──► Snapshot (sorted, hashed) + ObjectReport per object
//!          ──► fold the synthetic objects' reports onto their sources
//! ```
//!
//! Rules (DESIGN.md §2) live in `precedence.rs`; this module wires them. Nothing here does I/O
//! or depends on the order objects arrive in: every input is sorted by `(namespace, name)`
//! first, and when two objects share a key the one whose JSON sorts first is kept (the other
//! is reported as a duplicate), so even malformed input sets compile deterministically.
//!
//! Modules: `plugins` (GatewayPlugin validation and alias index), `services` (upstreams and
//! endpoints), `routes` (matchers and conflicts), `hosts` (which namespace owns a host),
//! `policy` (`PlatformPolicy` allowances), `precedence` (effective chains), `refs` (one plugin
//! config: the Secrets and Services it names, resolved and checked), `selector`
//! (`policy.namespaces`), `secrets` (TLS and credential Secrets), `blobs` (pinned blobs from
//! ConfigMaps and fetched URLs), `report` (conditions).

mod blobs;
mod hosts;
mod plugins;
mod policy;
mod precedence;
mod refs;
pub(crate) mod report;
mod reuse;
mod routes;
mod secrets;
pub(crate) mod selector;
mod services;

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service as CoreService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Serialize;

use kube::Resource;

use crate::api::{ChainStatusEntry, PluginRefs};
use crate::gateway_api::{GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use crate::snapshot::{shared, CertificateEntry, ObjectKey, RouteEntry, RuleEntry, Snapshot};
use crate::{Catalogue, GatewayPlugin, PlatformPolicy, Route, Service};

pub use blobs::{FetchFailure, FetchFailureKind, Fetched, UrlSource};
use precedence::Scope;
use report::reason;
pub use reuse::{InputDigest, Previous, RouteVersions};
pub(crate) use routes::valid_host;

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
    /// PlatformPolicies (honoured in the root namespace only).
    pub policies: Vec<Arc<PlatformPolicy>>,
    /// Gateway API GatewayClasses (those of `hookway.dev/gateway-controller` are served).
    pub gateway_classes: Vec<Arc<GatewayClass>>,
    /// Gateway API Gateways.
    pub gateways: Vec<Arc<Gateway>>,
    /// Gateway API HTTPRoutes.
    pub http_routes: Vec<Arc<HTTPRoute>>,
    /// Gateway API GRPCRoutes.
    pub grpc_routes: Vec<Arc<GRPCRoute>>,
    /// Gateway API ReferenceGrants.
    pub reference_grants: Vec<Arc<ReferenceGrant>>,
    /// Ingresses (`networking.k8s.io/v1`); only those of a hookway IngressClass are served.
    pub ingresses: Vec<Arc<Ingress>>,
    /// IngressClasses: which class names are hookway's, and which one is the default.
    pub ingress_classes: Vec<Arc<IngressClass>>,
    /// ConfigMaps plugin configs may load pinned blobs from (a `wasm` module).
    pub config_maps: Vec<Arc<ConfigMap>>,
    /// What the controller fetched for the URL sources of plugin configs.
    pub fetched: Arc<Fetched>,
}

/// Compiler settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// GatewayPlugins here are cluster-wide.
    pub root_namespace: String,
    /// The current time (unix seconds) for certificate expiry warnings; `None`: not checked
    /// (keeps compiles of the same objects identical, e.g. in tests).
    pub now: Option<i64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            root_namespace: "hookway-system".into(),
            now: None,
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
    /// `PlatformPolicy`.
    PlatformPolicy,
    /// Gateway API `GatewayClass` (cluster-scoped: empty namespace).
    GatewayClass,
    /// Gateway API `Gateway`.
    Gateway,
    /// Gateway API `HTTPRoute`.
    HTTPRoute,
    /// Gateway API `GRPCRoute`.
    GRPCRoute,
    /// `Ingress` (networking.k8s.io/v1), lowered into synthetic Routes and Services whose
    /// findings are reported here.
    Ingress,
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
///
/// Reasons are constants and most messages are too (every accepted object's two conditions):
/// they are borrowed, not allocated, so the reports of 10,000 Routes the controller holds do not
/// carry 40,000 copies of the same four strings (about 1.4 MiB, bench/CONTROLLER.md).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ConditionResult {
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason, e.g. `Accepted`, `PluginNotFound`.
    pub reason: &'static str,
    /// Human-readable explanation.
    pub message: Cow<'static, str>,
}

impl ConditionResult {
    /// A `True` condition.
    pub fn ok(reason: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status: true,
            reason,
            message: message.into(),
        }
    }
    /// A `False` condition.
    pub fn fail(reason: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status: false,
            reason,
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
    /// Routes (and Ingresses) only: the effective chain in run order.
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
    /// The snapshot (sealed: `hash` set, except from [`compile_reusing`]; `version` 0 for the
    /// producer to set).
    pub snapshot: Snapshot,
    /// One report per source object (GatewayPlugin, Service, Route, PlatformPolicy and the
    /// Gateway API kinds), sorted; never one for a synthetic object.
    pub reports: BTreeMap<ObjectId, ObjectReport>,
    /// Synthetic object (a lowered Route, Service or GatewayPlugin, as keyed in the snapshot)
    /// → the source object it stands for (`crate::lower`): how a proxy's report about a
    /// snapshot entry finds the object whose status it concerns.
    pub origins: BTreeMap<ObjectId, ObjectId>,
    /// The URL sources of the plugin configs that passed validation and policy, fetched or
    /// not: what the controller fetches (and keeps cached).
    pub url_sources: std::collections::BTreeSet<UrlSource>,
    /// What the inputs were, for a later [`compile_reusing`].
    pub inputs: InputDigest,
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
    /// PlatformPolicies.
    pub policies: Vec<Obj<'a, PlatformPolicy>>,
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
///   (missing, wrong type, unparsable, key not matching the certificate, unsupported key type)
///   gets `ResolvedRefs=False` (`SecretNotFound` or `InvalidCertificate`) and is served over
///   plain HTTP only: no certificate of it reaches the snapshot, so HTTPS for its hosts fails
///   the handshake (or gets the proxy's default certificate, which does not name them) instead
///   of being answered with another host's certificate. Its hosts keep working over HTTP while
///   a certificate is being issued (cert-manager creates the Secret after the Route). An expired
///   (or not yet valid) certificate is served, with a `CertificateExpired` warning.
/// - A host belongs to the namespace whose Route claimed it first (`hosts`); another
///   namespace's Route for it is not served (`HostConflict`) unless a PlatformPolicy shares it.
///   The certificate served for a host comes only from its owner's Secrets.
/// - Routes that match exactly the same requests all stay in the snapshot; see
///   `routes::conflicts` (losers get a `Conflicted` warning naming the winner).
/// - A name in a plugin config resolves in the namespace of the object whose config it is
///   (`refs`); the result is bound into the chain entry.
///
/// Ingresses (and other standard-API objects) are first lowered into synthetic hookway objects
/// (`crate::lower`); their findings are reported under the source object.
pub fn compile(objects: &Objects, options: &Options, catalogue: &Catalogue) -> Compiled {
    let mut compiled = compile_reusing(objects, options, catalogue, None);
    compiled.snapshot = std::mem::take(&mut compiled.snapshot).seal();
    compiled
}

/// [`compile`], taking from `previous` (the output of the last compile) what cannot have
/// changed: when only core Services and EndpointSlices changed since (see `reuse.rs`), only
/// the Services are compiled again; when Routes changed too, only those Routes and what they
/// reach (related host claims, conflicts, plugin counts). The result is the same as [`compile`]'s, except that the
/// snapshot's `hash` is left empty for the caller to seal ([`Snapshot::seal_reusing`]: the
/// controller hashes only the entries that changed since its previous snapshot).
pub fn compile_reusing(
    objects: &Objects,
    options: &Options,
    catalogue: &Catalogue,
    previous: Option<Previous<'_>>,
) -> Compiled {
    let mut inputs_digest = reuse::digest(objects, options);
    let any_previous = previous;
    let previous = previous.filter(|p| p.reusable(&inputs_digest));
    let lowered = crate::lower::lower(objects, options);
    let objects = lowered.objects();
    let mut dup_plugins = Vec::new();
    let mut dup_services = Vec::new();
    let mut dup_routes = Vec::new();
    let mut dup_policies = Vec::new();
    let inputs = Inputs {
        root: &options.root_namespace,
        plugins: sorted(&objects.plugins, &mut dup_plugins),
        services: sorted(&objects.services, &mut dup_services),
        routes: sorted(&objects.routes, &mut dup_routes),
        policies: sorted(&objects.policies, &mut dup_policies),
    };
    // Each Route's version, when Routes can be compiled one by one.
    let versions: Option<Vec<u64>> = (inputs_digest.others.is_some() && dup_routes.is_empty())
        .then(|| {
            inputs
                .routes
                .iter()
                .map(|r| reuse::route_version(r.object))
                .collect()
        })
        .flatten();
    let labels = namespace_labels(objects);
    let secret_objects = sorted(&objects.secrets, &mut Vec::new());
    let secrets = secrets::SecretIndex::new(secret_objects.iter().map(|s| s.object));
    let config_map_objects = sorted(&objects.config_maps, &mut Vec::new());
    let config_maps = blobs::ConfigMapIndex::new(config_map_objects.iter().map(|c| c.object));
    let core = sorted(&objects.core_services, &mut Vec::new());
    let slices = sorted(&objects.endpoint_slices, &mut Vec::new());
    let backends = services::Backends::new(
        core.iter().map(|o| o.object),
        slices.iter().map(|o| o.object),
    );

    let mut carried = refs::Carried::default();
    let mut plugin_reports = BTreeMap::new();
    let mut service_reports = BTreeMap::new();
    let mut route_reports = BTreeMap::new();
    let mut policy_reports = BTreeMap::new();

    let policy = policy::Policy::build(inputs.root, &inputs.policies, &mut policy_reports);
    let mut service_index = services::build(&inputs, &backends, &policy, &mut service_reports);
    let service_keys: HashSet<(&str, &str)> = inputs
        .services
        .iter()
        .map(|s| (s.namespace, s.name))
        .collect();
    let resolver = refs::Resolver {
        catalogue,
        secrets: &secrets,
        policy: &policy,
        services: &service_keys,
        config_maps: &config_maps,
        fetched: &objects.fetched,
        url_sources: Default::default(),
        url_checks: Default::default(),
    };
    let plugins =
        plugins::PluginIndex::build(&inputs, &resolver, &mut carried, &mut plugin_reports);
    let scope = |namespace| Scope {
        namespace,
        labels: labels.get(namespace).copied(),
        root: inputs.root,
        plugins: &plugins,
        resolver: &resolver,
    };

    for s in &inputs.services {
        let (Some(report), Some(info)) = (
            service_reports.get_mut(&s.key()),
            service_index.get_mut(&(s.namespace, s.name)),
        ) else {
            continue;
        };
        match precedence::check_service_refs(
            &scope(s.namespace),
            &s.object.spec.plugins,
            &mut carried,
            report,
        ) {
            Some(bindings) => info.ref_bindings = bindings,
            None => info.upstream = None,
        }
    }

    let no_refs = PluginRefs::new();
    let no_bindings = precedence::RefBindings::new();
    // The range of clock values over which the certificate checks find the same.
    let steady = Cell::new(reuse::ALWAYS);
    // One Route compiled: its report, and its entry when served.
    let compile_route = |r: &Obj<'_, Route>,
                         key: &ObjectKey,
                         matchers: Matchers,
                         created: i64,
                         refused: Option<&String>,
                         carried: &mut refs::Carried|
     -> BuiltRoute {
        let spec = &r.object.spec;
        let mut report = ObjectReport::new(r.object.metadata.generation);
        let mut ok = true;
        if let Err(e) = &matchers {
            report.reject(reason::INVALID_SPEC, e.clone());
            ok = false;
        }
        if let Some(why) = refused {
            report.reject(reason::HOST_CONFLICT, why.clone());
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
        let service_bindings = service.map_or(&no_bindings, |s| &s.ref_bindings);
        let scope = Scope {
            namespace: r.namespace,
            labels: labels.get(r.namespace).copied(),
            root: inputs.root,
            plugins: &plugins,
            resolver: &resolver,
        };
        // What its own configs bring (Secrets, blobs, URL sources), to tell whether any.
        let mut own = refs::Carried::default();
        let url_checks = resolver.url_checks.get();
        let chain = precedence::route_chain(
            &scope,
            &spec.plugins,
            service_refs,
            service_bindings,
            &mut own,
            &mut report,
        );
        let carries = !own.secrets.is_empty()
            || !own.blobs.is_empty()
            || resolver.url_checks.get() != url_checks;
        carried.append(&mut own);
        let certificate = spec.tls.as_ref().and_then(|tls| {
            route_certificate(
                &secrets,
                r.namespace,
                &tls.secret_name,
                options.now,
                &steady,
                &mut report,
            )
        });
        let ((hosts, rules), chain) = match (ok, matchers, chain) {
            (true, Ok(matchers), Some(chain)) => (matchers, chain),
            (_, matchers, _) => {
                return BuiltRoute {
                    report,
                    served: None,
                    certificate: None,
                    unserved_hosts: matchers.ok().map(|(hosts, _)| hosts.into_boxed_slice()),
                    carries,
                }
            }
        };
        let used = chain.iter().map(|(i, _)| *i).collect();
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
        let rules = match lowered.transport.get(key) {
            Some(&tls) => rules
                .into_iter()
                .map(|r| RuleEntry {
                    tls: Some(tls),
                    ..r
                })
                .collect(),
            None => rules,
        };
        let rules = match lowered.isolation.get(key) {
            Some(isolation) => rules
                .into_iter()
                .map(|r| RuleEntry {
                    isolation: Some(Box::new(isolation.clone())),
                    ..r
                })
                .collect(),
            None => rules,
        };
        let entry = RouteEntry {
            key: key.clone(),
            hosts,
            rules,
            priority: spec.priority,
            created,
            upstream: ObjectKey::new(r.namespace, spec.service.as_str()),
            chain: chain.into_iter().map(|(_, e)| e).collect(),
        };
        BuiltRoute {
            report,
            served: Some((entry, used)),
            certificate,
            unserved_hosts: None,
            carries,
        }
    };

    if let Some(previous) = previous {
        duplicate_warning(&mut service_reports, dup_services);
        let old = previous.snapshot;
        let snapshot = Snapshot {
            version: 0,
            hash: String::new(),
            routes: old.routes.clone(),
            upstreams: shared(services::upstreams(&service_index)),
            certificates: old.certificates.clone(),
            secrets: old.secrets.clone(),
            default_chain: old.default_chain.clone(),
            blobs: old.blobs.clone(),
        };
        let services = service_reports.into_iter().map(|(key, r)| {
            let id = ObjectId {
                kind: Kind::Service,
                key,
            };
            (id, r)
        });
        // In key order (kinds in `Kind` order), so that `collect` finds it sorted.
        let before = reuse::reports_of(&previous, |k| k < Kind::Service);
        let after = reuse::reports_of(&previous, |k| k > Kind::Service);
        let reports = before.chain(services).chain(after).collect();
        return Compiled {
            snapshot,
            reports,
            origins: BTreeMap::new(),
            url_sources: previous.url_sources.clone(),
            inputs: InputDigest {
                routes: previous.inputs.routes.clone(),
                steady: previous.steady_now(options.now),
                ..inputs_digest
            },
        };
    }

    // Only Routes changed: compile those and what they reach (`reuse::plan_routes`).
    let plan = match (&previous, &any_previous, &versions) {
        (None, Some(p), Some(versions)) => p
            .routes_reusable(&inputs_digest)
            .and_then(|table| reuse::plan_routes(p, table, &inputs.routes, versions)),
        _ => None,
    };
    'routes: {
        let (Some(plan), Some(previous), Some(versions)) = (plan, any_previous, &versions) else {
            break 'routes;
        };
        let old = previous.snapshot;
        let again: Vec<usize> = (0..inputs.routes.len())
            .filter(|&i| plan.rebuild[i])
            .collect();
        let keys: Vec<ObjectKey> = again.iter().map(|&i| inputs.routes[i].key()).collect();
        let matchers: Vec<Matchers> = again
            .iter()
            .map(|&i| {
                let spec = &inputs.routes[i].object.spec;
                routes::hosts(spec).and_then(|h| Ok((h, routes::rules(spec)?)))
            })
            .collect();
        let created: Vec<i64> = again
            .iter()
            .map(|&i| created_secs(inputs.routes[i].object))
            .collect();
        // Related claims only: every claim related to one of these is among them.
        let ownership = hosts::Ownership::settle(
            keys.iter()
                .zip(&matchers)
                .zip(&created)
                .filter_map(|((key, m), &created)| {
                    Some(hosts::Claim {
                        key,
                        namespace: &key.namespace,
                        created,
                        hosts: &m.as_ref().ok()?.0,
                    })
                })
                .collect(),
            &policy,
        );
        // What the Routes' configs carry is in the previous snapshot; what they bring now goes
        // to a scratch set: a changed Route that brings anything compiles everything (the URL
        // sources its checks noted are ones a whole compile notes too).
        let mut scratch = refs::Carried::default();
        let built: Vec<BuiltRoute> = again
            .iter()
            .zip(&keys)
            .zip(matchers.into_iter().zip(created))
            .map(|((&i, key), (m, c))| {
                let refused = ownership.refused.get(key);
                compile_route(&inputs.routes[i], key, m, c, refused, &mut scratch)
            })
            .collect();
        if again
            .iter()
            .zip(&built)
            .any(|(&i, b)| b.carries && plan.changed[i])
        {
            break 'routes;
        }
        #[cfg(test)]
        reuse::ROUTE_REUSES.with(|n| n.set(n.get() + 1));
        duplicate_warning(&mut service_reports, dup_services);
        let mut counts: HashMap<ObjectKey, i64> = HashMap::new();
        let mut touched: HashSet<String> = HashSet::new();
        let gone = plan
            .removed
            .iter()
            .copied()
            .chain(again.iter().filter_map(|&i| plan.previous[i]));
        let mut dropped: Vec<&ObjectKey> = Vec::new();
        for p in gone {
            let key = plan.old[p].0;
            dropped.push(key);
            if let Some(e) = reuse::served_entry(old, key) {
                for c in &e.chain {
                    *counts.entry(c.plugin_ref.clone()).or_default() -= 1;
                }
                touched.extend(conflict_hosts(e).map(str::to_string));
            }
        }
        dropped.sort();
        let mut fresh: Vec<Arc<RouteEntry>> = Vec::new();
        let mut fresh_reports: Vec<ObjectReport> = Vec::with_capacity(again.len());
        let mut kept_again: Vec<reuse::Kept> = Vec::with_capacity(again.len());
        for (built, &i) in built.into_iter().zip(&again) {
            if let Some((entry, used)) = built.served {
                for p in used {
                    *counts.entry(plugins.plugins[p].key.clone()).or_default() += 1;
                }
                touched.extend(conflict_hosts(&entry).map(str::to_string));
                fresh.push(Arc::new(entry));
            }
            fresh_reports.push(built.report);
            kept_again.push(reuse::Kept {
                unserved_hosts: built.unserved_hosts,
                carries: built.carries,
                tls: inputs.routes[i].object.spec.tls.is_some(),
            });
        }
        // The served Routes: the previous ones not compiled again or gone, and the fresh ones.
        // Unchanged entries are shared with the previous snapshot (a pointer each).
        let mut served: Vec<Arc<RouteEntry>> = Vec::with_capacity(old.routes.len() + fresh.len());
        let mut fresh = fresh.into_iter().peekable();
        for e in &old.routes {
            if dropped.binary_search(&&e.key).is_ok() {
                continue;
            }
            while let Some(f) = fresh.next_if(|f| f.key < e.key) {
                served.push(f);
            }
            served.push(Arc::clone(e));
        }
        served.extend(fresh);
        // Conflicts: the served Routes sharing a host with a changed entry get theirs again,
        // settled among every served Route sharing one of their hosts.
        let affected: Vec<usize> = (0..served.len())
            .filter(|&i| conflict_hosts(&served[i]).any(|h| touched.contains(h)))
            .collect();
        let reach: HashSet<&str> = affected
            .iter()
            .flat_map(|&i| conflict_hosts(&served[i]))
            .collect();
        let members: Vec<&RouteEntry> = served
            .iter()
            .map(|e| &**e)
            .filter(|e| conflict_hosts(e).any(|h| reach.contains(h)))
            .collect();
        let affected: HashSet<&ObjectKey> = affected.iter().map(|&i| &served[i].key).collect();
        let mut conflicted: HashMap<&ObjectKey, Vec<String>> = HashMap::new();
        for (loser, message) in routes::conflicts(&members) {
            conflicted
                .entry(&members[loser].key)
                .or_default()
                .push(message);
        }
        let mut fresh_reports = fresh_reports.into_iter();
        let mut kept_again = kept_again.into_iter();
        let mut unserved = Vec::with_capacity(inputs.routes.len());
        let mut route_reports = Vec::with_capacity(inputs.routes.len());
        for (i, r) in inputs.routes.iter().enumerate() {
            let key = r.key();
            let mut report = match plan.previous[i] {
                Some(p) if !plan.rebuild[i] => {
                    unserved.push(plan.kept(p));
                    plan.old[p].1.clone()
                }
                _ => {
                    unserved.push(kept_again.next().unwrap_or_default());
                    fresh_reports
                        .next()
                        .unwrap_or_else(|| ObjectReport::new(None))
                }
            };
            if affected.contains(&key) {
                while report
                    .warnings
                    .last()
                    .is_some_and(|w| w.starts_with(CONFLICTED_PREFIX))
                {
                    report.warnings.pop();
                }
                for message in conflicted.get(&key).into_iter().flatten() {
                    report.warn(reason::CONFLICTED, message);
                }
            }
            route_reports.push((
                ObjectId {
                    kind: Kind::Route,
                    key,
                },
                report,
            ));
        }
        let table = reuse::RouteVersions::new(&inputs.routes, versions, unserved);
        let snapshot = Snapshot {
            version: 0,
            hash: String::new(),
            routes: served,
            upstreams: shared(services::upstreams(&service_index)),
            certificates: old.certificates.clone(),
            secrets: old.secrets.clone(),
            default_chain: old.default_chain.clone(),
            blobs: old.blobs.clone(),
        };
        let plugin_reports =
            reuse::reports_of(&previous, |k| k == Kind::GatewayPlugin).map(|(id, mut r)| {
                if let Some(d) = counts.get(&id.key) {
                    r.routes = u32::try_from(i64::from(r.routes) + d).unwrap_or(0);
                }
                (id, r)
            });
        let services = service_reports.into_iter().map(|(key, r)| {
            let id = ObjectId {
                kind: Kind::Service,
                key,
            };
            (id, r)
        });
        let after = reuse::reports_of(&previous, |k| k > Kind::Route);
        let reports = plugin_reports
            .chain(services)
            .chain(route_reports)
            .chain(after)
            .collect();
        return Compiled {
            snapshot,
            reports,
            origins: BTreeMap::new(),
            url_sources: previous.url_sources.clone(),
            inputs: InputDigest {
                routes: Some(Arc::new(table)),
                steady: previous.steady_now(options.now),
                ..inputs_digest
            },
        };
    }

    let matchers: Vec<Matchers> = inputs
        .routes
        .iter()
        .map(|r| {
            routes::hosts(&r.object.spec).and_then(|h| Ok((h, routes::rules(&r.object.spec)?)))
        })
        .collect();
    let route_keys: Vec<ObjectKey> = inputs.routes.iter().map(Obj::key).collect();
    let created: Vec<i64> = inputs
        .routes
        .iter()
        .map(|r| created_secs(r.object))
        .collect();
    let extra_claims: Vec<ObjectKey> = lowered.claims.iter().map(|c| c.key.clone()).collect();
    let ownership = hosts::Ownership::settle(
        route_keys
            .iter()
            .zip(&matchers)
            .zip(&created)
            .filter_map(|((key, m), &created)| {
                Some(hosts::Claim {
                    key,
                    namespace: lowered
                        .claim_namespace
                        .get(key)
                        .map_or(key.namespace.as_str(), String::as_str),
                    created,
                    hosts: &m.as_ref().ok()?.0,
                })
            })
            .chain(
                lowered
                    .claims
                    .iter()
                    .zip(&extra_claims)
                    .map(|(c, key)| hosts::Claim {
                        key,
                        namespace: &c.namespace,
                        created: c.created,
                        hosts: &c.hosts,
                    }),
            )
            .collect(),
        &policy,
    );
    let mut served: Vec<RouteEntry> = Vec::with_capacity(inputs.routes.len());
    let mut plugin_use = vec![0u32; plugins.plugins.len()];
    let mut tls_claims: Vec<TlsClaim> = Vec::new();
    let mut unserved: Vec<reuse::Kept> = Vec::with_capacity(inputs.routes.len());
    for ((r, key), (matchers, created)) in inputs
        .routes
        .iter()
        .zip(route_keys)
        .zip(matchers.into_iter().zip(created))
    {
        let refused = ownership.refused.get(&key);
        let built = compile_route(r, &key, matchers, created, refused, &mut carried);
        unserved.push(reuse::Kept {
            unserved_hosts: built.unserved_hosts,
            carries: built.carries,
            tls: r.object.spec.tls.is_some(),
        });
        if let Some((entry, used)) = built.served {
            for i in used {
                plugin_use[i] += 1;
            }
            if let Some(certificate) = built.certificate {
                tls_claims.push(TlsClaim {
                    order: ownership.order.get(&key).copied().unwrap_or(usize::MAX),
                    namespace: r.namespace,
                    hosts: entry.hosts.clone(),
                    certificate,
                });
            }
            served.push(entry);
        }
        route_reports.insert(key, built.report);
    }

    // Gateway listeners: their host claims and certificates (reported on the Gateway).
    for key in &extra_claims {
        if let Some(why) = ownership.refused.get(key) {
            let mut report = ObjectReport::new(None);
            report.reject(reason::HOST_CONFLICT, why.clone());
            route_reports.insert(key.clone(), report);
        }
    }
    for c in &lowered.certificates {
        let report = route_reports
            .entry(c.claim.clone())
            .or_insert_with(|| ObjectReport::new(None));
        if let Some(certificate) = route_certificate(
            &secrets,
            &c.secret.namespace,
            &c.secret.name,
            options.now,
            &steady,
            report,
        ) {
            tls_claims.push(TlsClaim {
                order: ownership.order.get(&c.claim).copied().unwrap_or(usize::MAX),
                namespace: &c.namespace,
                hosts: c.hosts.clone(),
                certificate,
            });
        }
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
    duplicate_warning(&mut policy_reports, dup_policies);

    let snapshot = Snapshot {
        version: 0,
        hash: String::new(),
        routes: shared(served),
        upstreams: shared(services::upstreams(&service_index)),
        certificates: shared(certificates(tls_claims, &ownership)),
        secrets: carried.secrets.into_values().map(Arc::new).collect(),
        default_chain: precedence::default_chain(&plugins),
        blobs: carried.blobs.into_values().map(Arc::new).collect(),
    };
    let url_sources = resolver.url_sources.take();

    // Kinds in `Kind` order and keys sorted within each: `collect` builds the map in bulk.
    let reports = [
        (Kind::GatewayPlugin, plugin_reports),
        (Kind::Service, service_reports),
        (Kind::Route, route_reports),
        (Kind::PlatformPolicy, policy_reports),
    ]
    .into_iter()
    .flat_map(|(kind, map)| {
        map.into_iter()
            .map(move |(key, r)| (ObjectId { kind, key }, r))
    })
    .collect();
    let mut reports = reports;
    let origins = lowered
        .origins
        .iter()
        .map(|(synthetic, (source, _))| (synthetic.clone(), source.clone()))
        .collect();
    inputs_digest.steady = options.now.map(|_| steady.get());
    inputs_digest.routes = versions.map(|versions| {
        Arc::new(reuse::RouteVersions::new(
            &inputs.routes,
            &versions,
            unserved,
        ))
    });
    lowered.fold(&mut reports);
    Compiled {
        snapshot,
        reports,
        origins,
        url_sources,
        inputs: inputs_digest,
    }
}

/// How a `Conflicted` warning starts (`ObjectReport::warn`).
const CONFLICTED_PREFIX: &str = "Conflicted: ";

/// The hosts a served Route's conflicts are grouped by (`""`: any host).
fn conflict_hosts(entry: &RouteEntry) -> impl Iterator<Item = &str> {
    let any = entry.hosts.is_empty().then_some("");
    entry.hosts.iter().map(String::as_str).chain(any)
}

/// A Route's validated hosts and rules, or why they are invalid.
type Matchers = Result<(Vec<String>, Vec<RuleEntry>), String>;

/// One Route compiled.
struct BuiltRoute {
    /// Its report (without `Conflicted` warnings: they need every served Route).
    report: ObjectReport,
    /// Its entry and the plugins (indices into the plugin index) of its chain, when served.
    served: Option<(RouteEntry, Vec<usize>)>,
    /// Its checked certificate, when served with one.
    certificate: Option<CertificateEntry>,
    /// Its hosts when valid but the Route is not served (see `reuse::RouteVersions`).
    unserved_hosts: Option<Box<[String]>>,
    /// Whether its own plugin configs brought Secrets, blobs or URL sources.
    carries: bool,
}

/// `creationTimestamp` in unix seconds (0 when unknown).
fn created_secs(route: &Route) -> i64 {
    route
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second())
}

/// A served Route's certificate, waiting for host ownership to decide what is served.
struct TlsClaim<'a> {
    /// The Route's claim order (earlier claims win a host within the owning namespace).
    order: usize,
    namespace: &'a str,
    hosts: Vec<String>,
    certificate: CertificateEntry,
}

/// The checked certificate of TLS Secret `namespace/name`; problems go on `report`.
fn route_certificate(
    secrets: &secrets::SecretIndex<'_>,
    namespace: &str,
    name: &str,
    now: Option<i64>,
    steady: &Cell<(i64, i64)>,
    report: &mut ObjectReport,
) -> Option<CertificateEntry> {
    const NOT_SERVED: &str =
        "the Route is served over plain HTTP only; no certificate is served for its hosts";
    let (cert_pem, key_pem) = match secrets.tls(namespace, name) {
        Ok(pem) => pem,
        Err(e) => {
            report.unresolved(reason::SECRET_NOT_FOUND, format!("{e}; {NOT_SERVED}"));
            return None;
        }
    };
    match crate::tls::check(&cert_pem, &key_pem) {
        Err(e) => {
            report.unresolved(
                reason::INVALID_CERTIFICATE,
                format!("TLS Secret {namespace}/{name}: {e}; {NOT_SERVED}"),
            );
            None
        }
        Ok(checked) => {
            if let Some(now) = now {
                // The findings stay the same until the clock crosses a validity bound.
                let (mut lo, mut hi) = steady.get();
                for bound in [checked.validity.not_before, checked.validity.not_after] {
                    if bound <= now {
                        lo = lo.max(bound);
                    } else {
                        hi = hi.min(bound);
                    }
                }
                steady.set((lo, hi));
            }
            if let Some(warning) = now.and_then(|now| checked.expiry_warning(now)) {
                report.warn(
                    reason::CERTIFICATE_EXPIRED,
                    format!("TLS Secret {namespace}/{name}: {warning}"),
                );
            }
            Some(CertificateEntry {
                key: ObjectKey::new(namespace, name),
                cert_pem,
                key_pem,
                hosts: Vec::new(),
            })
        }
    }
}

/// The snapshot's certificates: each host gets the certificate of the earliest-claiming served
/// Route of the namespace that owns the host, and nobody else's.
fn certificates(
    mut claims: Vec<TlsClaim<'_>>,
    ownership: &hosts::Ownership,
) -> Vec<CertificateEntry> {
    claims.sort_by_key(|c| c.order);
    let mut by_secret: BTreeMap<ObjectKey, CertificateEntry> = BTreeMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    for claim in claims {
        let hosts: Vec<String> = claim
            .hosts
            .into_iter()
            .filter(|h| ownership.owner(h) == Some(claim.namespace))
            .filter(|h| taken.insert(h.clone()))
            .collect();
        if hosts.is_empty() {
            continue;
        }
        by_secret
            .entry(claim.certificate.key.clone())
            .or_insert(claim.certificate)
            .hosts
            .extend(hosts);
    }
    by_secret
        .into_values()
        .map(|mut c| {
            c.hosts.sort();
            c.hosts.dedup();
            c
        })
        .collect()
}
