//! Building a [`Runtime`] from a snapshot object by object, so that failure stays local.
//!
//! ```text
//!  certificates ─┐ each built on its own; one that fails is recorded against its object
//!  upstreams ────┤ (Secret, Service, GatewayPlugin) and its previous version is kept for
//!  plugin chains ┘ the Routes that fall back to theirs
//!        │
//!        ▼
//!  routes: a Route whose upstream, certificate (by host) or chain failed, or whose matchers
//!          the router refuses, is left out; its previous version keeps serving if there was one
//!        │
//!        ▼
//!  router over the served routes ─► Runtime { failed } (acknowledged to the controller)
//! ```
//!
//! Nothing here fails as a whole: the worst case is a runtime that serves the previous version
//! of every Route and lists every object of the snapshot as failed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use hookway_crds::applied::{FailedKind, FailedObject};
use hookway_crds::snapshot::{ObjectKey, RouteEntry, Snapshot, Tier};

use super::{RouteRuntime, Runtime};
use crate::certs::CertStore;
use crate::chain::{BuildError, Chain, ChainBuilder, Chains};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::upstream::client::ClientCache;
use crate::upstream::{UpstreamPool, UpstreamSlot, Upstreams};

/// What building needs from the runtime state.
pub(super) struct Env<'a> {
    /// Plugin instances (reused across snapshots).
    pub builder: &'a Mutex<ChainBuilder>,
    /// Upstream clients (shared across snapshots).
    pub clients: &'a ClientCache,
    /// Metrics (per-route and per-upstream handles).
    pub metrics: &'a Metrics,
}

/// The failures of one build, one per object (the first reason wins).
#[derive(Default)]
struct Failures(BTreeMap<(FailedKind, ObjectKey), FailedObject>);

impl Failures {
    fn add(&mut self, kind: FailedKind, key: &ObjectKey, reason: String, previous: bool) {
        self.0
            .entry((kind, key.clone()))
            .or_insert_with(|| FailedObject {
                kind,
                key: key.clone(),
                reason,
                previous,
            });
    }

    /// A Route's previous version turned out unusable too: it is not served at all.
    fn not_served(&mut self, key: &ObjectKey) {
        if let Some(f) = self.0.get_mut(&(FailedKind::Route, key.clone())) {
            f.previous = false;
        }
    }
}

/// A Route being served: this snapshot's version (by index) or the previous runtime's.
enum Served {
    Current(usize),
    Previous(Arc<RouteEntry>),
}

/// The object whose config a plugin instance that failed came from, when it is not the
/// GatewayPlugin itself.
fn config_owner(err: &BuildError, route: &RouteEntry) -> (FailedKind, ObjectKey) {
    match err.tier {
        Tier::Route => (FailedKind::Route, route.key.clone()),
        Tier::Service => (FailedKind::Service, route.upstream.clone()),
        Tier::Namespace | Tier::Cluster => (FailedKind::GatewayPlugin, err.plugin_ref.clone()),
    }
}

fn has_plugins(snapshot: &Snapshot) -> bool {
    !snapshot.default_chain.is_empty() || snapshot.routes.iter().any(|r| !r.chain.is_empty())
}

/// The upstream key and metrics label the route runtimes of one build share (a few Routes per
/// upstream: one allocation each instead of one per Route).
#[derive(Default)]
pub(super) struct UpstreamNames(HashMap<ObjectKey, (Arc<ObjectKey>, Arc<str>)>);

impl UpstreamNames {
    fn of(&mut self, key: &ObjectKey) -> (Arc<ObjectKey>, Arc<str>) {
        if let Some(names) = self.0.get(key) {
            return names.clone();
        }
        let names = (Arc::new(key.clone()), Arc::from(key.to_string()));
        self.0.insert(key.clone(), names.clone());
        names
    }
}

/// A route's runtime parts.
pub(super) fn route_runtime(
    entry: &RouteEntry,
    chain: Chain,
    names: &mut UpstreamNames,
) -> RouteRuntime {
    let (upstream, service_label) = names.of(&entry.upstream);
    RouteRuntime {
        key: Arc::new(entry.key.clone()),
        upstream,
        chain,
        duration: std::sync::OnceLock::new(),
        route_label: entry.key.to_string().into(),
        service_label,
    }
}

/// The routes served so far, and what leaving one out takes.
struct Routes<'a> {
    snapshot: &'a Snapshot,
    previous: Option<&'a Runtime>,
    served: Vec<(Served, RouteRuntime)>,
    failures: Failures,
    upstreams: Upstreams,
}

fn entry_of<'s>(snapshot: &'s Snapshot, served: &'s Served) -> &'s RouteEntry {
    match served {
        Served::Current(i) => &snapshot.routes[*i],
        Served::Previous(entry) => entry,
    }
}

impl Routes<'_> {
    /// Leaves this snapshot's version of `key` out for `reason`; its previous version (and
    /// that version's upstream, if this snapshot has none of that name) keeps serving.
    fn leave_out(&mut self, key: &ObjectKey, reason: String) {
        let previous = self.previous.and_then(|p| p.route(key));
        self.failures
            .add(FailedKind::Route, key, reason, previous.is_some());
        let Some((entry, runtime)) = previous else {
            return;
        };
        if !self.upstreams.contains_key(&entry.upstream) {
            let pool = self.previous.and_then(|p| p.upstreams.get(&entry.upstream));
            if let Some(pool) = pool {
                self.upstreams.insert(entry.upstream.clone(), pool.clone());
            }
        }
        self.served
            .push((Served::Previous(entry.clone()), runtime.clone()));
    }

    /// The router over the served routes. Routes it refuses are left out (falling back to
    /// their previous version once); each round removes at least one route, so this ends.
    fn router(&mut self) -> (Router, Option<Arc<[Arc<RouteEntry>]>>) {
        loop {
            let snapshot = self.snapshot;
            self.served.sort_by(|a, b| {
                entry_of(snapshot, &a.0)
                    .key
                    .cmp(&entry_of(snapshot, &b.0).key)
            });
            let in_order = self.served.len() == self.snapshot.routes.len()
                && self
                    .served
                    .iter()
                    .enumerate()
                    .all(|(n, (s, _))| matches!(s, Served::Current(i) if *i == n));
            let entries: Cow<'_, [Arc<RouteEntry>]> = if in_order {
                Cow::Borrowed(&self.snapshot.routes)
            } else {
                Cow::Owned(
                    self.served
                        .iter()
                        .map(|(s, _)| match s {
                            Served::Current(i) => snapshot.routes[*i].clone(),
                            Served::Previous(entry) => entry.clone(),
                        })
                        .collect(),
                )
            };
            let refused: Vec<(usize, String)> = match Router::new(&entries) {
                Ok(router) => {
                    let entries = match entries {
                        Cow::Borrowed(_) => None,
                        Cow::Owned(entries) => Some(entries.into()),
                    };
                    return (router, entries);
                }
                Err(_) => entries
                    .iter()
                    .enumerate()
                    .filter_map(|(n, e)| {
                        Router::new(std::slice::from_ref(e))
                            .err()
                            .map(|err| (n, err.to_string()))
                    })
                    .collect(),
            };
            if refused.is_empty() {
                // Every route compiles alone but not together: cannot happen with today's
                // router; serve nothing new rather than guess.
                tracing::error!("the router refused the routes together but none alone");
                return (Router::default(), Some(Arc::new([])));
            }
            for (n, reason) in refused.into_iter().rev() {
                let (served, _) = self.served.remove(n);
                match served {
                    Served::Current(i) => {
                        let key = self.snapshot.routes[i].key.clone();
                        self.leave_out(&key, format!("route matchers: {reason}"));
                    }
                    Served::Previous(entry) => self.failures.not_served(&entry.key),
                }
            }
        }
    }
}

/// Builds the runtime for `snapshot`, object by object. `previous` is the live runtime: what a
/// failed object falls back to.
pub(super) fn build(env: &Env<'_>, snapshot: Arc<Snapshot>, previous: Option<&Runtime>) -> Runtime {
    let mut failures = Failures::default();

    // Certificates: one that fails leaves its hosts on their previous certificate.
    let (certs, refused) = CertStore::build(&snapshot.certificates, previous.map(|p| &*p.certs));
    let mut host_problem: HashMap<&str, String> = HashMap::new();
    for (i, err) in refused {
        for host in &snapshot.certificates[i].hosts {
            host_problem
                .entry(host.as_str())
                .or_insert_with(|| err.to_string());
        }
        failures.add(FailedKind::Secret, &err.key, err.message, false);
    }

    // Upstreams: one that fails keeps its previous pool for the Routes that fall back.
    let mut upstreams = Upstreams::with_capacity(snapshot.upstreams.len());
    let mut upstream_problem: HashMap<&ObjectKey, String> = HashMap::new();
    for entry in &snapshot.upstreams {
        match UpstreamPool::new(entry, env.clients, env.metrics) {
            Ok(pool) => {
                upstreams.insert(
                    entry.key.clone(),
                    Arc::new(UpstreamSlot::from_pointee(pool)),
                );
            }
            Err(err) => {
                if let Some(pool) = previous.and_then(|p| p.upstreams.get(&entry.key)) {
                    upstreams.insert(entry.key.clone(), pool.clone());
                }
                upstream_problem.insert(&entry.key, err.to_string());
                failures.add(FailedKind::Service, &entry.key, err.message, false);
            }
        }
    }

    // Plugin chains, each on its own (an empty snapshot chain needs no instance).
    let Chains {
        routes: chains,
        default,
    } = if has_plugins(&snapshot) {
        env.builder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .build(&snapshot)
    } else {
        Chains {
            routes: snapshot
                .routes
                .iter()
                .map(|_| Ok(Chain::default()))
                .collect(),
            default: Ok(Chain::default()),
        }
    };

    let mut routes = Routes {
        snapshot: &snapshot,
        previous,
        served: Vec::with_capacity(snapshot.routes.len()),
        failures,
        upstreams,
    };
    let mut names = UpstreamNames::default();
    for (i, (entry, chain)) in snapshot.routes.iter().zip(chains).enumerate() {
        let chain = chain.map_err(|err| {
            let (kind, key) = config_owner(&err, entry);
            if kind != FailedKind::Route {
                routes.failures.add(kind, &key, err.to_string(), false);
            }
            err.to_string()
        });
        let problem = match &chain {
            Err(reason) => Some(reason.clone()),
            Ok(_) => upstream_problem.get(&entry.upstream).cloned().or_else(|| {
                entry
                    .hosts
                    .iter()
                    .find_map(|h| host_problem.get(h.as_str()).cloned())
            }),
        };
        match (problem, chain) {
            (None, Ok(chain)) => routes
                .served
                .push((Served::Current(i), route_runtime(entry, chain, &mut names))),
            (Some(reason), _) | (None, Err(reason)) => routes.leave_out(&entry.key, reason),
        }
    }
    let (router, entries) = routes.router();

    let default_chain = match default {
        Ok(chain) => chain,
        Err(err) => {
            routes.failures.add(
                FailedKind::GatewayPlugin,
                &err.plugin_ref,
                err.to_string(),
                false,
            );
            previous
                .map(|p| p.default_chain.clone())
                .unwrap_or_default()
        }
    };

    let Routes {
        served,
        failures,
        upstreams,
        ..
    } = routes;
    Runtime {
        router: Arc::new(router),
        routes: served.into_iter().map(|(_, rt)| rt).collect(),
        entries,
        upstreams: Arc::new(upstreams),
        default_chain,
        no_route_duration: env.metrics.request_duration.with_label_values(&[""]),
        certs: Arc::new(certs),
        failed: failures.0.into_values().collect(),
        snapshot,
    }
}
