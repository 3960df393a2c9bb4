//! Reusing the previous compile's results when only endpoints changed.
//!
//! Endpoint churn (EndpointSlices, and the core Services they belong to) is by far the most
//! frequent change in a cluster, and it changes nothing but upstreams' endpoints and Services'
//! reports: no Route, chain, certificate, host claim or plugin count reads them
//! (`services::upstream` turns a missing backend into an upstream without endpoints, never a
//! rejected Service). So when every other input is the same as in the previous compile, the
//! compiler rebuilds the Services and takes everything else from the previous output: the
//! same result as a whole compile, without the per-Route work.
//!
//! "The same" is decided by versions, not content: each object's `uid` with its
//! `metadata.generation` for the kinds whose statuses the controller writes (a status write
//! changes `resourceVersion`, not the generation, and the compiler never reads a status), or
//! its `resourceVersion` for the others. An object without them (a test fixture, a manifest
//! file) makes the inputs unversioned: nothing is reused.
//!
//! The clock (`Options::now`) is read only by TLS Routes' certificate checks (expiry
//! warnings); they find the same until the clock crosses a certificate's validity bound, so a
//! compile records the range of clock values it stays valid for (`InputDigest::steady`) and a
//! later one within that range reuses it as if the clock had not moved. Gateway API and Ingress objects are
//! lowered with reads of core Services, so with any of them nothing is reused either.
//!
//! **Routes.** When every input but the Routes (and endpoints) is the same, only the Routes
//! that changed (added, edited, removed: by `uid` and generation, kept per Route in
//! [`RouteVersions`]) are compiled again, with what they can reach (`plan_routes`): the
//! Routes whose hosts are related to theirs (host ownership is settled over those claims
//! alone), conflicts among the served Routes sharing a host with a changed entry, and the
//! GatewayPlugins' `routes` counts. Every other Route's entry and report is taken from the
//! previous compile. What is kept for the whole snapshot rather than per Route (the Secrets,
//! blobs and URL sources plugin configs bring; certificates) makes a change that touches it
//! compile everything.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};

use kube::Resource;

use std::sync::Arc;

use super::{Kind, Obj, ObjectId, ObjectReport, Objects, Options, UrlSource};
use crate::snapshot::{ObjectKey, RouteEntry, Snapshot};
use crate::Route;

/// What a compile's inputs were, as far as reuse is concerned (`Compiled::inputs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputDigest {
    /// A digest of every input but core Services and EndpointSlices, or `None` when some
    /// object carries no version (nothing is reused then).
    pub routing: Option<u64>,
    /// The same digest without the Routes: when only it matches, the Routes that changed are
    /// compiled again and the others taken from the previous compile (`routes`).
    pub others: Option<u64>,
    /// Whether a Route names a TLS Secret (its certificate check reads `Options::now`).
    pub tls: bool,
    /// `Options::now` of the compile.
    pub now: Option<i64>,
    /// With `now`: the range `[from, until)` of clock values over which the certificate checks
    /// find the same (no certificate's validity starts or ends in it), so a later compile
    /// within it may reuse this one's TLS Routes.
    pub steady: Option<(i64, i64)>,
    /// Each Route's version and what a change of it can reach, or `None` when Routes cannot
    /// be compiled one by one (unversioned, duplicated, or lowered inputs).
    pub routes: Option<Arc<RouteVersions>>,
}

/// Each compiled Route's version, in key order (the order of the Route reports).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteVersions {
    routes: Vec<RouteVersion>,
}

/// One Route's version, and what the incremental compile needs of its previous state.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RouteVersion {
    /// A hash of its `uid` and `metadata.generation`.
    version: u64,
    /// What else is kept of it.
    kept: Kept,
}

/// What the incremental compile keeps of a compiled Route besides its version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Kept {
    /// Its hosts when it has valid hosts but is not served (a served Route's are in its
    /// snapshot entry): a claim that other Routes' ownership depends on.
    pub unserved_hosts: Option<Box<[String]>>,
    /// Whether its own plugin configs brought Secrets, blobs or URL sources into the
    /// snapshot (kept for the whole snapshot, not per Route: such a Route's change compiles
    /// everything).
    pub carries: bool,
    /// Whether it names a TLS Secret (its certificate, served or not, bounds
    /// `InputDigest::steady`: such a Route's change compiles everything).
    pub tls: bool,
}

/// `InputDigest::steady` when no certificate was checked.
pub(crate) const ALWAYS: (i64, i64) = (i64::MIN, i64::MAX);

impl RouteVersions {
    /// The table of `routes` (sorted, deduplicated); `versions[i]` is `route_version` of
    /// `routes[i]`, `kept[i]` what is kept of it.
    pub(crate) fn new(routes: &[Obj<'_, Route>], versions: &[u64], kept: Vec<Kept>) -> Self {
        debug_assert_eq!(routes.len(), kept.len());
        let routes = versions
            .iter()
            .zip(kept)
            .map(|(&version, kept)| RouteVersion { version, kept })
            .collect();
        Self { routes }
    }
}

/// A Route's version (`uid` and `metadata.generation`), or `None` without them.
pub(crate) fn route_version(route: &Route) -> Option<u64> {
    let meta = &route.metadata;
    let (Some(uid), Some(generation)) = (&meta.uid, meta.generation) else {
        return None;
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (uid, generation).hash(&mut h);
    Some(h.finish())
}

/// The previous compile's output, for [`super::compile_reusing`]. It must come from a compile
/// with the same catalogue.
#[derive(Clone, Copy, Debug)]
pub struct Previous<'a> {
    /// Its `Compiled::inputs`.
    pub inputs: &'a InputDigest,
    /// Its snapshot (version and hash are not read).
    pub snapshot: &'a Snapshot,
    /// Its reports.
    pub reports: &'a BTreeMap<ObjectId, ObjectReport>,
    /// Its URL sources.
    pub url_sources: &'a BTreeSet<UrlSource>,
}

impl<'a> Previous<'a> {
    /// Whether a compile of inputs `now` may take all but its Services from this one.
    pub(crate) fn reusable(&self, now: &InputDigest) -> bool {
        now.routing.is_some() && self.inputs.routing == now.routing && self.same_clock(now)
    }

    /// Whether the certificate checks of TLS Routes find at `now.now` what they found in
    /// this compile.
    fn same_clock(&self, now: &InputDigest) -> bool {
        !now.tls
            || self.inputs.now == now.now
            || matches!((self.inputs.steady, now.now), (Some((from, until)), Some(t)) if from <= t && t < until)
    }

    /// `InputDigest::steady` of a compile at `now` that reuses this one's certificate checks.
    pub(crate) fn steady_now(&self, now: Option<i64>) -> Option<(i64, i64)> {
        now.map(|_| self.inputs.steady.unwrap_or(ALWAYS))
    }

    /// The previous Routes' versions, when a compile of inputs `now` may compile only the
    /// Routes that changed since this one (every other input the same).
    pub(crate) fn routes_reusable(&self, now: &InputDigest) -> Option<&'a RouteVersions> {
        let ok = now.others.is_some() && self.inputs.others == now.others && self.same_clock(now);
        ok.then_some(self.inputs.routes.as_deref()).flatten()
    }
}

/// Adds one object's identity and version to a kind's multiset digest; `false` when it has
/// none.
fn add<K: Resource>(sum: &mut u64, object: &K, by_generation: bool) -> bool {
    let meta = object.meta();
    let version = if by_generation {
        meta.generation.map(|g| g.to_string())
    } else {
        meta.resource_version.clone()
    };
    let (Some(uid), Some(version)) = (&meta.uid, version) else {
        return false;
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&meta.namespace, &meta.name, uid, version).hash(&mut h);
    // A sum: the same objects in any order give the same digest.
    *sum = sum.wrapping_add(h.finish());
    true
}

fn kind<K: Resource>(
    h: &mut impl Hasher,
    tag: u8,
    objects: &[std::sync::Arc<K>],
    by_generation: bool,
) -> bool {
    let mut sum = 0u64;
    let all = objects
        .iter()
        .all(|o| add(&mut sum, o.as_ref(), by_generation));
    (tag, objects.len(), sum).hash(h);
    all
}

/// The digest of `objects` compiled with `options`.
pub(crate) fn digest(objects: &Objects, options: &Options) -> InputDigest {
    let tls = objects.routes.iter().any(|r| r.spec.tls.is_some());
    let lowered = !(objects.gateway_classes.is_empty()
        && objects.gateways.is_empty()
        && objects.http_routes.is_empty()
        && objects.grpc_routes.is_empty()
        && objects.reference_grants.is_empty()
        && objects.ingresses.is_empty()
        && objects.ingress_classes.is_empty());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    options.root_namespace.hash(&mut h);
    let versioned = !lowered
        && kind(&mut h, 0, &objects.plugins, true)
        && kind(&mut h, 1, &objects.services, true)
        && kind(&mut h, 3, &objects.policies, true)
        && kind(&mut h, 4, &objects.secrets, false)
        && kind(&mut h, 5, &objects.namespaces, false)
        && kind(&mut h, 6, &objects.config_maps, false);
    let fetched = &objects.fetched;
    fetched.blobs.keys().for_each(|k| k.hash(&mut h));
    fetched.sources.hash(&mut h);
    for (source, failure) in &fetched.failures {
        (source, format!("{:?}", failure.kind), &failure.message).hash(&mut h);
    }
    let others = h.finish();
    let routes_versioned = kind(&mut h, 2, &objects.routes, true);
    InputDigest {
        routing: (versioned && routes_versioned).then(|| h.finish()),
        others: versioned.then_some(others),
        tls,
        now: options.now,
        steady: None,
        routes: None,
    }
}

/// What a change of Routes only needs compiled again ([`plan_routes`]).
pub(crate) struct RoutePlan<'p> {
    /// Per current Route: compile it again (it changed, is new, or its host claims may be
    /// settled differently now).
    pub rebuild: Vec<bool>,
    /// Per current Route: it is new or changed.
    pub changed: Vec<bool>,
    /// Per current Route: its index in `old`, when it was there before.
    pub previous: Vec<Option<usize>>,
    /// The previous Routes (key and report), in key order.
    pub old: Vec<(&'p ObjectKey, &'p ObjectReport)>,
    /// Indices into `old` of the Routes that are gone.
    pub removed: Vec<usize>,
    /// The previous Routes' versions (parallel to `old`).
    pub table: &'p RouteVersions,
}

impl<'p> RoutePlan<'p> {
    /// What was kept of previous Route `p` (the same for a Route not compiled again).
    pub fn kept(&self, p: usize) -> Kept {
        self.table.routes[p].kept.clone()
    }

    /// The hosts previous Route `p` claimed (none when they were invalid).
    pub fn old_hosts(&self, previous: &Previous<'p>, p: usize) -> &'p [String] {
        if let Some(hosts) = &self.table.routes[p].kept.unserved_hosts {
            return hosts;
        }
        served_entry(previous.snapshot, self.old[p].0).map_or(&[], |e| &e.hosts)
    }
}

/// The served entry of Route `key` in `snapshot` (its Routes are sorted by key).
pub(crate) fn served_entry<'s>(snapshot: &'s Snapshot, key: &ObjectKey) -> Option<&'s RouteEntry> {
    snapshot
        .routes
        .binary_search_by(|e| e.key.cmp(key))
        .ok()
        .map(|i| &*snapshot.routes[i])
}

/// Hosts, and what is needed to tell whether another host is related to one of them: equal,
/// or one a wildcard covering the other (`hosts::Ownership` settles related claims together).
#[derive(Default)]
pub(crate) struct HostSet {
    hosts: HashSet<String>,
    /// Proper dot-suffixes of the hosts' names (`*.S` covers a host when `S` is one of them).
    suffixes: HashSet<String>,
    /// `T` of each wildcard `*.T` among the hosts.
    wildcards: HashSet<String>,
}

impl HostSet {
    /// Adds `host` (lower-case); `false` when it was there.
    pub fn insert(&mut self, host: &str) -> bool {
        if self.hosts.contains(host) {
            return false;
        }
        self.hosts.insert(host.to_string());
        if let Some(t) = host.strip_prefix("*.") {
            self.wildcards.insert(t.to_string());
        }
        let mut rest = host.strip_prefix("*.").unwrap_or(host);
        while let Some((_, suffix)) = rest.split_once('.') {
            self.suffixes.insert(suffix.to_string());
            rest = suffix;
        }
        true
    }

    /// Whether `host` is among the hosts.
    pub fn contains(&self, host: &str) -> bool {
        self.hosts.contains(host)
    }

    /// Whether `host` (lower-case) equals, covers or is covered by one of the hosts.
    pub fn related(&self, host: &str) -> bool {
        if self.hosts.contains(host) {
            return true;
        }
        if let Some(s) = host.strip_prefix("*.") {
            if self.suffixes.contains(s) {
                return true;
            }
        }
        if self.wildcards.is_empty() {
            return false;
        }
        let mut rest = host.strip_prefix("*.").unwrap_or(host);
        while let Some((_, suffix)) = rest.split_once('.') {
            if self.wildcards.contains(suffix) {
                return true;
            }
            rest = suffix;
        }
        false
    }
}

/// A Route's hosts as written, lower-cased (without validation: used only to find related
/// claims, where a superset is harmless).
fn raw_hosts(route: &Route) -> impl Iterator<Item = Cow<'_, str>> {
    route.spec.hosts.iter().map(|h| {
        if h.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(h.to_ascii_lowercase())
        } else {
            Cow::Borrowed(h.as_str())
        }
    })
}

/// Decides which Routes a change of Routes only needs compiled again, or `None` when the
/// change reaches what is not kept per Route (then everything is compiled):
///
/// - the changed, added and removed Routes are found by version (`routes`, `versions` now;
///   `table` and the previous Route reports before);
/// - a Route's host claims are settled against the claims of related hosts (`hosts`), so
///   every Route whose hosts are related, transitively, to the old or new hosts of a changed
///   Route is compiled again (with ownership settled over those claims alone);
/// - a change of a Route whose plugin configs brought Secrets, blobs or URL sources (kept for
///   the whole snapshot, not per Route; the caller checks the new versions after compiling
///   them), or a TLS Route among those compiled again, or a served certificate for one of
///   their hosts, compiles everything.
pub(crate) fn plan_routes<'p>(
    previous: &Previous<'p>,
    table: &'p RouteVersions,
    routes: &[Obj<'_, Route>],
    versions: &[u64],
) -> Option<RoutePlan<'p>> {
    let old: Vec<(&ObjectKey, &ObjectReport)> = previous
        .reports
        .iter()
        .filter(|(id, _)| id.kind == Kind::Route)
        .map(|(id, r)| (&id.key, r))
        .collect();
    if old.len() != table.routes.len() {
        return None;
    }
    let mut plan = RoutePlan {
        rebuild: vec![false; routes.len()],
        changed: Vec::new(),
        previous: vec![None; routes.len()],
        old,
        removed: Vec::new(),
        table,
    };
    // Both lists are sorted by key: walk them together.
    let (mut i, mut p) = (0, 0);
    while i < routes.len() || p < plan.old.len() {
        let order = match (routes.get(i), plan.old.get(p)) {
            (Some(r), Some((key, _))) => {
                (r.namespace, r.name).cmp(&(key.namespace.as_str(), key.name.as_str()))
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                plan.rebuild[i] = true;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                plan.removed.push(p);
                p += 1;
            }
            std::cmp::Ordering::Equal => {
                plan.previous[i] = Some(p);
                plan.rebuild[i] = versions[i] != table.routes[p].version;
                i += 1;
                p += 1;
            }
        }
    }
    let mut hosts = HostSet::default();
    let changed_old = plan.removed.iter().copied().chain(
        plan.rebuild
            .iter()
            .zip(&plan.previous)
            .filter_map(|(&rebuild, &p)| rebuild.then_some(p).flatten()),
    );
    for p in changed_old {
        if table.routes[p].kept.carries || table.routes[p].kept.tls {
            return None;
        }
        for h in plan.old_hosts(previous, p) {
            hosts.insert(h);
        }
    }
    plan.changed.clone_from(&plan.rebuild);
    for (r, _) in routes.iter().zip(&plan.rebuild).filter(|(_, &b)| b) {
        for h in raw_hosts(r.object) {
            hosts.insert(&h);
        }
    }
    // Every Route related to those hosts, transitively.
    loop {
        let mut grown = false;
        for (r, rebuild) in routes.iter().zip(plan.rebuild.iter_mut()) {
            if *rebuild || !raw_hosts(r.object).any(|h| hosts.related(&h)) {
                continue;
            }
            *rebuild = true;
            grown = true;
            for h in raw_hosts(r.object) {
                hosts.insert(&h);
            }
        }
        if !grown {
            break;
        }
    }
    let tls = routes
        .iter()
        .zip(&plan.rebuild)
        .any(|(r, &b)| b && r.object.spec.tls.is_some());
    let certified = previous
        .snapshot
        .certificates
        .iter()
        .flat_map(|c| &c.hosts)
        .any(|h| hosts.contains(h));
    (!tls && !certified).then_some(plan)
}

#[cfg(test)]
thread_local! {
    /// How many compiles compiled only the Routes that changed (tests only).
    pub(crate) static ROUTE_REUSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Reports of `previous` of the kinds `which` selects, in key order.
pub(crate) fn reports_of<'a>(
    previous: &Previous<'a>,
    which: impl Fn(Kind) -> bool + 'a,
) -> impl Iterator<Item = (ObjectId, ObjectReport)> + 'a {
    previous
        .reports
        .iter()
        .filter(move |(id, _)| which(id.kind))
        .map(|(id, r)| (id.clone(), r.clone()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Secret, Service as CoreService};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::{json, Value};

    use super::super::{compile, compile_reusing, Compiled};
    use super::*;
    use crate::{Catalogue, GatewayPlugin, Route, Service};

    const NS: &str = "team";

    fn meta(name: &str, version: u64) -> Value {
        json!({"namespace": NS, "name": name, "uid": format!("uid-{name}"),
               "generation": version, "resourceVersion": format!("{version}"),
               "creationTimestamp": "2026-12-01T00:00:00Z"})
    }

    fn core(j: usize, port: i32, version: u64) -> Arc<CoreService> {
        Arc::new(
            serde_json::from_value(json!({"metadata": meta(&format!("b{j}"), version),
                "spec": {"ports": [{"name": "http", "port": port}]}}))
            .unwrap(),
        )
    }

    fn slice(j: usize, seed: u64, ready: bool, version: u64) -> Arc<EndpointSlice> {
        let mut m = meta(&format!("b{j}-1"), version);
        m["labels"] = json!({"kubernetes.io/service-name": format!("b{j}")});
        let endpoints: Vec<Value> = (0..3)
            .map(|k| {
                json!({"addresses": [format!("10.0.{}.{}", seed % 200, k + 1)],
                            "conditions": {"ready": ready || k > 0}})
            })
            .collect();
        Arc::new(
            serde_json::from_value(json!({"metadata": m, "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}], "endpoints": endpoints}))
            .unwrap(),
        )
    }

    fn service(j: usize, version: u64) -> Arc<Service> {
        let plugins = if j == 0 {
            json!({"limit": {"config": {"minute": 5}}})
        } else {
            json!({})
        };
        Arc::new(
            serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
                "metadata": meta(&format!("svc{j}"), version),
                "spec": {"backend": {"name": format!("b{j}"), "port": 80}, "plugins": plugins}}),
            )
            .unwrap(),
        )
    }

    fn route(i: usize, host: &str, version: u64) -> Arc<Route> {
        let mut spec = json!({"hosts": [host], "service": format!("svc{}", i % 3),
                              "rules": [{"path": {"type": "Prefix", "value": format!("/{}", i % 2)}}]});
        if i % 4 == 1 {
            spec["tls"] = json!({"secretName": "missing-tls"});
        }
        if i % 5 == 2 {
            spec["plugins"] = json!({"limit": {"config": {"minute": i}}});
        }
        Arc::new(
            serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
                "metadata": meta(&format!("r{i}"), version), "spec": spec}),
            )
            .unwrap(),
        )
    }

    fn plugin(version: u64) -> Arc<GatewayPlugin> {
        Arc::new(
            serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "GatewayPlugin",
                "metadata": meta("limit", version),
                "spec": {"plugin": "rate_limiting", "status": "enable", "order": 1,
                         "config": {"minute": 100}}}),
            )
            .unwrap(),
        )
    }

    fn world() -> Objects {
        Objects {
            plugins: vec![plugin(1)],
            services: (0..3).map(|j| service(j, 1)).collect(),
            // Service svc2's core Service is missing at first (an upstream without endpoints).
            core_services: (0..2).map(|j| core(j, 80, 1)).collect(),
            endpoint_slices: (0..3).map(|j| slice(j, j as u64, true, 1)).collect(),
            routes: (0..8)
                .map(|i| route(i, &format!("h{}.example.com", i % 6), 1))
                .collect(),
            ..Objects::default()
        }
    }

    fn assert_same(reused: &Compiled, whole: &Compiled, step: &str) {
        assert_eq!(reused.snapshot, whole.snapshot, "snapshot after {step}");
        assert_eq!(reused.reports, whole.reports, "reports after {step}");
        assert_eq!(reused.origins, whole.origins, "origins after {step}");
        assert_eq!(
            reused.url_sources, whole.url_sources,
            "URL sources after {step}"
        );
        assert_eq!(reused.inputs, whole.inputs, "inputs after {step}");
    }

    /// One change to the world; `true` when only endpoints changed (reuse expected).
    fn change(objects: &mut Objects, step: u64, pick: u64) -> (&'static str, bool) {
        let v = 100 + step;
        let j = (pick % 3) as usize;
        match pick % 9 {
            0..=2 => {
                if let Some(s) = objects.endpoint_slices.get_mut(j) {
                    *s = slice(j, pick, pick.is_multiple_of(2), v);
                }
                ("an EndpointSlice's endpoints", true)
            }
            3 => {
                let port = if pick.is_multiple_of(2) { 80 } else { 81 };
                objects
                    .core_services
                    .retain(|c| c.metadata.name.as_deref() != Some("b1"));
                objects.core_services.push(core(1, port, v));
                ("a core Service's port", true)
            }
            4 => {
                if objects.endpoint_slices.len() == 3 {
                    objects.endpoint_slices.remove(j);
                } else {
                    objects.endpoint_slices.push(slice(3, pick, true, v));
                }
                ("an EndpointSlice gone or added", true)
            }
            5 => {
                // A status write: new resourceVersion, same generation.
                let i = (pick % 8) as usize;
                let mut r = (*objects.routes[i]).clone();
                r.metadata.resource_version = Some(format!("{v}"));
                objects.routes[i] = Arc::new(r);
                ("a Route's status", true)
            }
            6 => {
                let i = (pick % 8) as usize;
                objects.routes[i] = route(i, &format!("h{}.example.com", pick % 6), v);
                ("a Route's hosts", false)
            }
            7 => {
                objects.services[j] = service(j, v);
                objects.plugins[0] = plugin(v);
                ("a Service and a GatewayPlugin", false)
            }
            _ => {
                let secret: Secret = serde_json::from_value(json!({"metadata": meta("creds", v),
                    "type": "Opaque", "data": {}}))
                .unwrap();
                objects.secrets = vec![Arc::new(secret)];
                ("a Secret", false)
            }
        }
    }

    #[test]
    fn a_compile_reusing_the_last_equals_a_whole_compile_after_any_changes() {
        let catalogue = Catalogue::builtin();
        for now in [None, Some(1_900_000_000)] {
            let options = Options {
                root_namespace: "hookway-system".into(),
                now,
            };
            let mut objects = world();
            let mut last = compile(&objects, &options, &catalogue);
            assert!(last.inputs.routing.is_some(), "versioned objects");
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            let mut reused_steps = 0;
            for step in 0..120 {
                // xorshift: a fixed pseudo-random sequence of changes.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let (what, endpoints_only) = change(&mut objects, step, state >> 8);
                let whole = compile(&objects, &options, &catalogue);
                let previous = Previous {
                    inputs: &last.inputs,
                    snapshot: &last.snapshot,
                    reports: &last.reports,
                    url_sources: &last.url_sources,
                };
                let reusable = previous.reusable(&whole.inputs);
                assert_eq!(reusable, endpoints_only, "step {step}: {what}");
                reused_steps += usize::from(reusable);
                let mut reused = compile_reusing(&objects, &options, &catalogue, Some(previous));
                // Left unsealed for the caller (the controller seals reusing digests).
                assert!(reused.snapshot.hash.is_empty(), "step {step}: unsealed");
                reused.snapshot = std::mem::take(&mut reused.snapshot).seal();
                assert_same(&reused, &whole, &format!("step {step}: {what}"));
                last = reused;
            }
            assert!(reused_steps > 40, "{reused_steps} of 120 steps reused");
        }
    }

    #[test]
    fn unversioned_or_lowered_inputs_are_never_reused() {
        let options = Options::default();
        let mut objects = world();
        assert!(digest(&objects, &options).routing.is_some());
        let mut r = (*objects.routes[0]).clone();
        r.metadata.uid = None;
        objects.routes[0] = Arc::new(r);
        assert_eq!(
            digest(&objects, &options).routing,
            None,
            "a Route without uid"
        );
        let mut objects = world();
        objects.ingress_classes = vec![Arc::new(Default::default())];
        assert_eq!(
            digest(&objects, &options).routing,
            None,
            "lowering reads core Services"
        );
        let mut objects = world();
        let base = digest(&objects, &options);
        objects.routes.reverse();
        assert_eq!(digest(&objects, &options), base, "order does not matter");
        let (snapshot, reports, url_sources) =
            (Snapshot::default(), BTreeMap::new(), BTreeSet::new());
        let digests: Vec<InputDigest> = [Some(1), Some(2)]
            .into_iter()
            .map(|now| InputDigest {
                now,
                ..base.clone()
            })
            .collect();
        let tls_at = |i: usize| Previous {
            inputs: &digests[i],
            snapshot: &snapshot,
            reports: &reports,
            url_sources: &url_sources,
        };
        let later = InputDigest {
            now: Some(2),
            ..base.clone()
        };
        assert!(base.tls, "a Route names a TLS Secret");
        assert!(
            !tls_at(0).reusable(&later),
            "certificate checks read the clock"
        );
        assert!(tls_at(1).reusable(&later));
    }

    // ---- Route changes: only the changed Routes (and what they reach) are compiled again.

    fn route_reuses() -> usize {
        ROUTE_REUSES.with(std::cell::Cell::get)
    }

    fn meta_in(ns: &str, name: &str, uid: u64, generation: u64, created: u64) -> Value {
        json!({"namespace": ns, "name": name, "uid": format!("uid-{uid}"),
               "generation": generation, "resourceVersion": format!("{generation}"),
               "creationTimestamp": format!("2026-12-01T00:{:02}:{:02}Z", created / 60 % 60, created % 60)})
    }

    fn route_in(
        ns: &str,
        name: &str,
        uid: u64,
        generation: u64,
        created: u64,
        spec: Value,
    ) -> Arc<Route> {
        Arc::new(
            serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
                "metadata": meta_in(ns, name, uid, generation, created), "spec": spec}),
            )
            .unwrap(),
        )
    }

    /// A Route spec from a number: hosts that collide (also across namespaces, through a
    /// wildcard, in capitals, invalid or none), rules that conflict, plugin refs that attach or
    /// detach the `limit` GatewayPlugin (or carry a config), missing Services, TLS.
    fn spec_of(pick: u64) -> Value {
        const HOSTS: [&str; 8] = [
            "h0.example.com",
            "h1.example.com",
            "H1.Example.com",
            "*.w.example.com",
            "a.w.example.com",
            "b.a.w.example.com",
            "h2.example.com",
            "bad_host!",
        ];
        let mut hosts = vec![HOSTS[(pick % 8) as usize]];
        if (pick / 8).is_multiple_of(3) {
            hosts.push(HOSTS[((pick / 24) % 7) as usize]);
        }
        if (pick / 8) % 11 == 5 {
            hosts.clear();
        }
        let service = ["svc0", "svc1", "svc2", "nosvc"][((pick / 100) % 4) as usize];
        let plugins = match (pick / 400) % 7 {
            0 => json!({"limit": {}}),
            1 => json!({"limit": {"disable": true}}),
            2 if (pick / 2800).is_multiple_of(3) => json!({"limit": {"config": {"minute": 3}}}),
            2 if (pick / 2800) % 3 == 1 => wasm_url((pick / 8400) % 3),
            _ => json!({}),
        };
        let mut spec = json!({"hosts": hosts, "service": service, "priority": (pick / 5) % 2,
            "rules": [{"path": {"type": "Prefix", "value": format!("/{}", (pick / 3) % 2)}}],
            "plugins": plugins});
        if (pick / 9600) % 9 == 4 {
            spec["tls"] = json!({"secretName": "missing-tls"});
        }
        spec
    }

    /// A ref to the `mod` (wasm) GatewayPlugin whose config names URL source `n`.
    fn wasm_url(n: u64) -> Value {
        json!({"mod": {"config": {"url": format!("https://example.com/m{n}.wasm"),
                                  "sha256": "ab".repeat(32)}}})
    }

    /// Services `svc0..2` and the `limit` GatewayPlugin in both namespaces, the `mod` (wasm)
    /// GatewayPlugin without a config in `team`, a PlatformPolicy
    /// sharing `h2.example.com` with `other`, no Routes.
    fn two_namespaces() -> Objects {
        let mut objects = world();
        objects.routes.clear();
        for j in 0..3 {
            let mut s = (*service(j, 1)).clone();
            s.metadata.namespace = Some("other".into());
            s.metadata.uid = Some(format!("uid-other-svc{j}"));
            objects.services.push(Arc::new(s));
        }
        let mut p = (*plugin(1)).clone();
        p.metadata.namespace = Some("other".into());
        p.metadata.uid = Some("uid-other-limit".into());
        objects.plugins.push(Arc::new(p));
        let wasm = serde_json::from_value(json!({"apiVersion": "hookway.dev/v1alpha1",
            "kind": "GatewayPlugin", "metadata": meta_in(NS, "mod", 8, 1, 0),
            "spec": {"plugin": "wasm", "status": "enable", "order": 2}}))
        .unwrap();
        objects.plugins.push(Arc::new(wasm));
        let policy = serde_json::from_value(json!({"apiVersion": "hookway.dev/v1alpha1",
            "kind": "PlatformPolicy", "metadata": meta_in("hookway-system", "platform", 7, 1, 0),
            "spec": {"sharedHosts": [{"hosts": ["h2.example.com"], "namespaces": ["other"]}],
                     "namespaces": [{"names": [NS], "networkPlugins": ["wasm"]}]}}))
        .unwrap();
        objects.policies = vec![Arc::new(policy)];
        objects
    }

    /// Compiles `objects` reusing `last` and whole; asserts they are the same and returns the
    /// reusing one, and whether it compiled only the Routes that changed.
    fn step(objects: &Objects, last: &Compiled, options: &Options, what: &str) -> (Compiled, bool) {
        let catalogue = Catalogue::builtin();
        let whole = compile(objects, options, &catalogue);
        let previous = Previous {
            inputs: &last.inputs,
            snapshot: &last.snapshot,
            reports: &last.reports,
            url_sources: &last.url_sources,
        };
        let before = route_reuses();
        let mut reused = compile_reusing(objects, options, &catalogue, Some(previous));
        let by_route = route_reuses() > before;
        reused.snapshot = std::mem::take(&mut reused.snapshot).seal();
        assert_same(&reused, &whole, what);
        (reused, by_route)
    }

    #[test]
    fn a_compile_reusing_the_last_equals_a_whole_compile_after_any_route_changes() {
        let options = Options::default();
        let catalogue = Catalogue::builtin();
        let mut objects = two_namespaces();
        // (namespace, name, uid, generation, created, spec pick)
        let mut routes: Vec<(&str, String, u64, u64, u64, u64)> = (0..12)
            .map(|i| {
                let ns = if i % 3 == 0 { "other" } else { NS };
                (ns, format!("r{i}"), i, 1, i % 4, i * 7919)
            })
            .collect();
        let build = |routes: &[(&str, String, u64, u64, u64, u64)]| -> Vec<Arc<Route>> {
            routes
                .iter()
                .map(|(ns, name, uid, g, c, pick)| route_in(ns, name, *uid, *g, *c, spec_of(*pick)))
                .collect()
        };
        objects.routes = build(&routes);
        let mut last = compile(&objects, &options, &catalogue);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let (mut by_route, mut next_uid) = (0, 100);
        for step_no in 0..400u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pick = state >> 11;
            let i = (pick % routes.len().max(1) as u64) as usize;
            let what = match (pick >> 3) % 8 {
                0 if routes.len() < 24 => {
                    next_uid += 1;
                    let ns = if pick.is_multiple_of(2) { "other" } else { NS };
                    routes.push((
                        ns,
                        format!("n{next_uid}"),
                        next_uid,
                        1,
                        pick % 6,
                        pick >> 20,
                    ));
                    "a Route added"
                }
                1 if routes.len() > 2 => {
                    routes.remove(i);
                    "a Route removed"
                }
                2 => {
                    next_uid += 1;
                    let r = &mut routes[i];
                    (r.2, r.3, r.4, r.5) = (next_uid, 1, pick % 6, pick >> 20);
                    "a Route deleted and created again"
                }
                3 => {
                    // A status write only.
                    let mut r = (*objects.routes[i]).clone();
                    r.metadata.resource_version = Some(format!("{step_no}s"));
                    objects.routes[i] = Arc::new(r);
                    let (got, _) = step(&objects, &last, &options, "a Route's status");
                    last = got;
                    continue;
                }
                4 if pick.is_multiple_of(5) => {
                    objects.endpoint_slices[0] =
                        slice(0, pick, pick.is_multiple_of(2), 1000 + step_no);
                    "an EndpointSlice"
                }
                _ => {
                    let r = &mut routes[i];
                    (r.3, r.5) = (r.3 + 1, pick >> 20);
                    "a Route's spec"
                }
            };
            objects.routes = build(&routes);
            if step_no % 2 == 1 {
                objects.routes.reverse();
            }
            let (got, reused) = step(
                &objects,
                &last,
                &options,
                &format!("step {step_no}: {what}"),
            );
            by_route += usize::from(reused);
            last = got;
        }
        assert!(
            by_route > 150,
            "{by_route} of 400 steps compiled only changed Routes"
        );
    }

    #[test]
    fn route_changes_recompile_only_what_they_reach() {
        type Spec = (&'static str, &'static str, u64, u64, u64, Value);
        /// (case, before, after, compiled per Route, Routes served after)
        type Case = (
            &'static str,
            Vec<Spec>,
            Vec<Spec>,
            bool,
            &'static [&'static str],
        );
        fn r(
            ns: &'static str,
            name: &'static str,
            uid: u64,
            g: u64,
            created: u64,
            spec: Value,
        ) -> Spec {
            (ns, name, uid, g, created, spec)
        }
        fn to(hosts: &[&str], service: &str) -> Value {
            json!({"hosts": hosts, "service": service})
        }
        let a = || r(NS, "a", 1, 1, 1, to(&["h0.example.com"], "svc0"));
        let b = || r("other", "b", 2, 1, 2, to(&["h0.example.com"], "svc0"));
        let c = || r(NS, "c", 3, 1, 3, to(&["h1.example.com"], "svc1"));
        // (case, before, after, compiled per Route, Routes served after)
        let mut cases: Vec<Case> = vec![
            (
                "a path edited",
                vec![a(), c()],
                vec![
                    a(),
                    r(
                        NS,
                        "c",
                        3,
                        2,
                        3,
                        json!({"hosts": ["h1.example.com"], "service": "svc1",
                 "rules": [{"path": {"type": "Prefix", "value": "/x"}}]}),
                    ),
                ],
                true,
                &["a", "c"],
            ),
            (
                "the owner removed: the other namespace's Route is served",
                vec![a(), b(), c()],
                vec![b(), c()],
                true,
                &["b", "c"],
            ),
            (
                "an older Route of another namespace takes the host",
                vec![b(), c()],
                vec![
                    r(NS, "a", 1, 1, 0, to(&["h0.example.com"], "svc0")),
                    b(),
                    c(),
                ],
                true,
                &["a", "c"],
            ),
            (
                "an unserved owner (Service missing) removed frees its host",
                vec![r(NS, "a", 1, 1, 1, to(&["h0.example.com"], "nosvc")), b()],
                vec![b()],
                true,
                &["b"],
            ),
            (
                "a wildcard claims covered hosts of another namespace",
                vec![
                    r("other", "w", 4, 1, 5, to(&["a.w.example.com"], "svc0")),
                    c(),
                ],
                vec![
                    r(NS, "v", 5, 1, 0, to(&["*.w.example.com"], "svc0")),
                    r("other", "w", 4, 1, 5, to(&["a.w.example.com"], "svc0")),
                    c(),
                ],
                true,
                &["c", "v"],
            ),
            (
                "a host shared by the PlatformPolicy",
                vec![c()],
                vec![
                    r(NS, "s", 6, 1, 0, to(&["h2.example.com"], "svc0")),
                    r("other", "t", 7, 1, 1, to(&["h2.example.com"], "svc0")),
                    c(),
                ],
                true,
                &["t", "c", "s"],
            ),
            (
                "a conflict's winner removed: the loser's warning goes",
                vec![
                    a(),
                    r(NS, "a2", 8, 1, 2, to(&["h0.example.com"], "svc1")),
                    c(),
                ],
                vec![r(NS, "a2", 8, 1, 2, to(&["h0.example.com"], "svc1")), c()],
                true,
                &["a2", "c"],
            ),
            (
                "a Route for any host edited: the other's conflict warning goes",
                vec![
                    r(NS, "x", 10, 1, 1, to(&[], "svc0")),
                    r(NS, "y", 11, 1, 2, to(&[], "svc1")),
                    c(),
                ],
                vec![
                    r(
                        NS,
                        "x",
                        10,
                        2,
                        1,
                        json!({"service": "svc0",
                        "rules": [{"path": {"type": "Prefix", "value": "/x"}}]}),
                    ),
                    r(NS, "y", 11, 1, 2, to(&[], "svc1")),
                    c(),
                ],
                true,
                &["c", "x", "y"],
            ),
            (
                "a conflict appears",
                vec![a(), c()],
                vec![a(), r(NS, "c", 3, 2, 3, to(&["h0.example.com"], "svc1"))],
                true,
                &["a", "c"],
            ),
            (
                "a Route attaches a plugin (its routes count)",
                vec![a(), c()],
                vec![
                    a(),
                    r(
                        NS,
                        "c",
                        3,
                        2,
                        3,
                        json!({"hosts": ["h1.example.com"], "service": "svc1",
                 "plugins": {"limit": {}}}),
                    ),
                ],
                true,
                &["a", "c"],
            ),
            (
                "the same name created again (new uid)",
                vec![a(), c()],
                vec![
                    a(),
                    r(
                        NS,
                        "c",
                        9,
                        1,
                        9,
                        to(&["H1.Example.COM", "h0.example.com"], "svc2"),
                    ),
                ],
                true,
                &["a", "c"],
            ),
            (
                "a TLS Route changed compiles everything",
                vec![a(), c()],
                vec![
                    a(),
                    r(
                        NS,
                        "c",
                        3,
                        2,
                        3,
                        json!({"hosts": ["h1.example.com"], "service": "svc1",
                 "tls": {"secretName": "missing-tls"}}),
                    ),
                ],
                false,
                &["a", "c"],
            ),
            (
                "a Route with a plugin config bringing nothing else changed",
                vec![a(), c()],
                vec![
                    a(),
                    r(
                        NS,
                        "c",
                        3,
                        2,
                        3,
                        json!({"hosts": ["h1.example.com"], "service": "svc1",
                 "plugins": {"limit": {"config": {"minute": 3}}}}),
                    ),
                ],
                true,
                &["a", "c"],
            ),
        ];
        let with_url = |g| {
            let mut spec = json!({"hosts": ["h1.example.com"], "service": "svc1",
                                  "plugins": wasm_url(0)});
            if g > 1 {
                spec["rules"] = json!([{"path": {"type": "Prefix", "value": "/x"}}]);
            }
            r(NS, "c", 3, g, 3, spec)
        };
        cases.push((
            "a Route whose config names a URL source changed compiles everything",
            vec![a(), with_url(1)],
            vec![a(), with_url(2)],
            false,
            &["a"],
        ));
        cases.push((
            "a Route given a config naming a URL source compiles everything",
            vec![a(), c()],
            vec![a(), with_url(2)],
            false,
            &["a"],
        ));
        let options = Options::default();
        let catalogue = Catalogue::builtin();
        for (case, before, after, per_route, served) in cases {
            let build = |specs: Vec<Spec>| {
                let mut objects = two_namespaces();
                objects.routes = specs
                    .into_iter()
                    .map(|(ns, name, uid, g, c, spec)| route_in(ns, name, uid, g, c, spec))
                    .collect();
                objects
            };
            let last = compile(&build(before), &options, &catalogue);
            let (got, reused) = step(&build(after), &last, &options, case);
            assert_eq!(reused, per_route, "{case}: compiled per Route");
            let names: Vec<&str> = got
                .snapshot
                .routes
                .iter()
                .map(|e| e.key.name.as_str())
                .collect();
            assert_eq!(names, served, "{case}: served");
        }
    }

    #[test]
    fn tls_routes_are_reused_until_the_clock_crosses_a_certificate_validity_bound() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["h0.example.com".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let data = [("tls.crt", cert.pem()), ("tls.key", key.serialize_pem())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.into_bytes())))
            .collect();
        let secret = Secret {
            metadata: serde_json::from_value(meta("site-tls", 1)).unwrap(),
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Secret::default()
        };
        const END: u64 = 1_893_456_000; // 2030-01-01T00:00:00Z
        let mut objects = two_namespaces();
        objects.secrets = vec![Arc::new(secret)];
        let tls = json!({"hosts": ["h0.example.com"], "service": "svc0",
                         "tls": {"secretName": "site-tls"}});
        let plain = |g: u64| {
            let spec = json!({"hosts": ["h1.example.com"], "service": "svc1", "priority": g});
            route_in(NS, "c", 3, g, 3, spec)
        };
        objects.routes = vec![route_in(NS, "t", 1, 1, 1, tls), plain(1)];
        let at = |now: u64| Options {
            root_namespace: "hookway-system".into(),
            now: Some(now as i64),
        };
        let catalogue = Catalogue::builtin();
        let mut last = compile(&objects, &at(END - 40), &catalogue);
        assert!(
            last.snapshot.certificates.len() == 1,
            "the certificate is served"
        );
        // (clock, compiled per Route: no validity bound crossed since the last compile)
        let steps = [
            (END - 30, true),
            (END - 1, true),
            (END, false),
            (END + 10, true),
            (END + 3600, true),
        ];
        for (g, (now, per_route)) in (2..).zip(steps) {
            objects.routes[1] = plain(g);
            let what = format!("a Route edited at {now}");
            let (got, reused) = step(&objects, &last, &at(now), &what);
            assert_eq!(reused, per_route, "{what}");
            let report = &got.reports[&ObjectId {
                kind: Kind::Route,
                key: crate::snapshot::ObjectKey::new(NS, "t"),
            }];
            let expired = report
                .warnings
                .iter()
                .any(|w| w.starts_with("CertificateExpired"));
            assert_eq!(expired, now >= END, "{what}: {:?}", report.warnings);
            last = got;
        }
    }
}
