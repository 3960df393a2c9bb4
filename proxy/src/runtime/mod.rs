//! What serves requests: an immutable [`Runtime`] built from a snapshot, swapped atomically
//! between requests (in-flight requests keep the one they started with).
//!
//! A snapshot is applied object by object (`apply.rs`): a certificate, upstream, plugin
//! instance or route this proxy cannot build is left out with the Routes that depend on it —
//! their previous version keeps serving when there was one — and everything else applies.
//! [`Runtime::failed`] lists what was left out; the verdict sent to the controller carries it.
//!
//! When the live runtime applied everything, a new snapshot is applied by updating it where
//! the snapshot changed (`delta.rs`): an endpoint change swaps that upstream's pool in place, a
//! Route change builds that Route, and what did not change is shared. The whole build stays for
//! the first snapshot, after a failure, and when most Routes changed.

mod apply;
mod delta;
#[cfg(test)]
mod delta_tests;
#[cfg(test)]
mod tests;

pub use delta::Rebuilt;

use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwapOption;
use prometheus::Histogram;
use tokio::sync::watch;

use hookway_crds::applied::FailedObject;
use hookway_crds::snapshot::{ObjectKey, RouteEntry, Snapshot};

use crate::certs::CertStore;
use crate::chain::{Chain, ChainBuilder};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::upstream::client::ClientCache;
use crate::upstream::Upstreams;

/// One Route, ready to serve.
#[derive(Clone)]
pub struct RouteRuntime {
    /// The Route.
    pub key: Arc<ObjectKey>,
    /// Its upstream.
    pub upstream: Arc<ObjectKey>,
    /// Its chain.
    pub chain: Chain,
    /// `namespace/name` of the Route (metrics label).
    pub route_label: Arc<str>,
    /// `namespace/name` of the upstream (metrics label).
    pub service_label: Arc<str>,
    /// `hookway_request_duration_seconds{route}` for this route, resolved at its first request
    /// ([`RouteRuntime::duration`]): a Route never requested costs no series (at 10,000 Routes,
    /// eager series were a large share of the proxy's heap and build time).
    pub duration: OnceLock<Histogram>,
}

impl RouteRuntime {
    /// `hookway_request_duration_seconds{route}` for this route.
    pub fn duration(&self, metrics: &Metrics) -> &Histogram {
        self.duration.get_or_init(|| {
            metrics
                .request_duration
                .with_label_values(&[&*self.route_label])
        })
    }
}

/// Everything one snapshot needs at request time. Immutable.
pub struct Runtime {
    /// The snapshot it was built from.
    pub snapshot: Arc<Snapshot>,
    /// Routing (shared with the previous runtime when no Route's matchers changed).
    pub router: Arc<Router>,
    /// Routes, by the router's indices (sorted by key).
    pub routes: Arc<[RouteRuntime]>,
    /// The entries of `routes`, when they are not exactly `snapshot.routes` (some Route was
    /// left out or serves its previous version); shared with the snapshots they come from.
    entries: Option<Arc<[Arc<RouteEntry>]>>,
    /// Upstreams by key (the map is shared with the previous runtime when no upstream was
    /// added or removed; a changed upstream's pool is swapped in its slot).
    pub upstreams: Arc<Upstreams>,
    /// The chain for requests that match no Route.
    pub default_chain: Chain,
    /// `hookway_request_duration_seconds{route=""}`.
    pub no_route_duration: Histogram,
    /// TLS certificates by host.
    pub certs: Arc<CertStore>,
    /// The objects of `snapshot` this proxy could not apply, sorted by kind and key.
    pub failed: Arc<[FailedObject]>,
}

impl Runtime {
    /// The entries of the served routes, in the order of [`Runtime::routes`].
    pub fn route_entries(&self) -> &[Arc<RouteEntry>] {
        self.entries.as_deref().unwrap_or(&self.snapshot.routes)
    }

    /// The served version of Route `key` and its runtime.
    pub fn route(&self, key: &ObjectKey) -> Option<(&Arc<RouteEntry>, &RouteRuntime)> {
        let entries = self.route_entries();
        let i = entries.binary_search_by(|e| e.key.cmp(key)).ok()?;
        Some((&entries[i], &self.routes[i]))
    }
}

/// The live runtime and what is needed to build the next one.
pub struct RuntimeState {
    current: ArcSwapOption<Runtime>,
    builder: Mutex<ChainBuilder>,
    clients: ClientCache,
    metrics: Metrics,
    verdicts: tokio::sync::watch::Sender<Option<Verdict>>,
}

/// The outcome of the last snapshot this proxy tried to apply (acknowledged to the controller).
pub type Verdict = crate::source::controller::Applied;

/// The same object, or the same sealed content and version.
fn same_snapshot(a: &Arc<Snapshot>, b: &Arc<Snapshot>) -> bool {
    Arc::ptr_eq(a, b) || (!a.hash.is_empty() && a.hash == b.hash && a.version == b.version)
}

impl RuntimeState {
    /// No runtime yet; chains are built with `builder`.
    pub fn new(builder: ChainBuilder, metrics: Metrics) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            builder: Mutex::new(builder),
            clients: ClientCache::default(),
            metrics,
            verdicts: tokio::sync::watch::channel(None).0,
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Closes upstream connections that stayed idle too long (called periodically).
    pub fn evict_idle_connections(&self) {
        self.clients.evict_expired();
    }

    /// The live runtime (`None` until a snapshot was applied).
    pub fn load(&self) -> Option<Arc<Runtime>> {
        self.current.load_full()
    }

    /// Version and hash of the applied snapshot (what to acknowledge to the controller).
    pub fn applied(&self) -> Option<(u64, String)> {
        self.current
            .load()
            .as_ref()
            .map(|rt| (rt.snapshot.version, rt.snapshot.hash.clone()))
    }

    /// Whether a snapshot has been applied.
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// Applies `snapshot`: updates the live runtime where the snapshot changed when it can,
    /// else builds the runtime whole (object by object), and makes the result live. Returns
    /// the objects left out (empty when everything applied); each is logged, at `error` level
    /// when the live runtime did not already fail it.
    pub fn apply(&self, snapshot: Arc<Snapshot>) -> Arc<[FailedObject]> {
        self.apply_as(snapshot, true)
    }

    /// Builds the runtime of `snapshot` whole, whatever the live one, and makes it live (what
    /// [`RuntimeState::apply`] does for a first snapshot; tests and benchmarks compare the two).
    pub fn apply_full(&self, snapshot: Arc<Snapshot>) -> Arc<[FailedObject]> {
        self.apply_as(snapshot, false)
    }

    fn apply_as(&self, snapshot: Arc<Snapshot>, incremental: bool) -> Arc<[FailedObject]> {
        let started = std::time::Instant::now();
        let previous = self.current.load_full();
        let env = apply::Env {
            builder: &self.builder,
            clients: &self.clients,
            metrics: &self.metrics,
        };
        let update = match &previous {
            Some(live) if incremental => delta::update(&env, live, snapshot.clone()),
            _ => None,
        };
        let (kind, rebuilt) = match update {
            Some(mut update) => {
                update.commit_upstreams();
                let rebuilt = update.rebuilt;
                self.make_live(update.runtime);
                if !update.gone.is_empty() {
                    let gone = update.gone.iter().map(String::as_str).collect();
                    self.metrics.remove_routes(&gone);
                }
                ("delta", rebuilt)
            }
            None => {
                let runtime = apply::build(&env, snapshot.clone(), previous.as_deref());
                let rebuilt = Rebuilt {
                    routes: runtime.routes.len(),
                    chains: runtime
                        .routes
                        .iter()
                        .filter(|r| !r.chain.links().is_empty())
                        .count()
                        + usize::from(!runtime.default_chain.links().is_empty()),
                    upstreams: snapshot.upstreams.len(),
                    router: 1,
                    certificates: 1,
                };
                self.log_failures(&runtime, previous.as_deref());
                let replaced = self.make_live(runtime);
                self.drop_series_of_removed_routes(replaced.as_deref());
                ("full", rebuilt)
            }
        };
        let failed = self
            .current
            .load()
            .as_ref()
            .map(|rt| rt.failed.clone())
            .unwrap_or_else(|| Arc::new([]));
        for (part, n) in rebuilt.parts() {
            self.metrics
                .snapshot_rebuilt
                .with_label_values(&[part])
                .inc_by(n as u64);
        }
        let elapsed = started.elapsed();
        self.metrics
            .snapshot_apply
            .with_label_values(&[kind])
            .observe(elapsed.as_secs_f64());
        let result = if failed.is_empty() {
            "applied"
        } else {
            "partial"
        };
        self.metrics
            .snapshot_reloads
            .with_label_values(&[result])
            .inc();
        self.metrics
            .snapshot_failed_objects
            .set(i64::try_from(failed.len()).unwrap_or(i64::MAX));
        tracing::info!(version = snapshot.version, hash = %snapshot.hash, kind, ?elapsed, routes = snapshot.routes.len(), failed = failed.len(), ?rebuilt, "snapshot applied");
        failed
    }

    /// Makes `runtime` live and returns the one it replaces. `hookway_snapshot_version` is set
    /// first, so whoever sees the new runtime (a request, a readiness check) also sees its
    /// version in the metrics.
    fn make_live(&self, runtime: Runtime) -> Option<Arc<Runtime>> {
        self.metrics
            .snapshot_version
            .set(i64::try_from(runtime.snapshot.version).unwrap_or(i64::MAX));
        self.current.swap(Some(Arc::new(runtime)))
    }

    /// Logs what `runtime` left out, at `error` level what `previous` did not already.
    fn log_failures(&self, runtime: &Runtime, previous: Option<&Runtime>) {
        let version = runtime.snapshot.version;
        for f in runtime.failed.iter() {
            let known = previous.is_some_and(|p| {
                p.failed
                    .binary_search_by(|g| (g.kind, &g.key).cmp(&(f.kind, &f.key)))
                    .is_ok_and(|i| p.failed[i] == *f)
            });
            let (kind, object) = (f.kind.as_str(), &f.key);
            if known {
                tracing::debug!(version, kind, %object, reason = %f.reason, previous = f.previous, "object still not applied");
            } else {
                tracing::error!(version, kind, %object, reason = %f.reason, previous = f.previous, "object not applied; left out (previous version kept when there was one)");
            }
        }
    }

    /// Drops the metric series of the Routes `previous` served and the live runtime does not.
    fn drop_series_of_removed_routes(&self, previous: Option<&Runtime>) {
        let (Some(previous), Some(live)) = (previous, self.current.load_full()) else {
            return;
        };
        let kept: std::collections::HashSet<&str> =
            live.routes.iter().map(|r| &*r.route_label).collect();
        let gone = previous
            .routes
            .iter()
            .map(|r| &*r.route_label)
            .filter(|r| !kept.contains(r))
            .collect();
        self.metrics.remove_routes(&gone);
    }

    /// Verdicts on the snapshots [`RuntimeState::follow`] applies: version, hash, the objects
    /// left out, and a reason when applying failed as a whole (a panic: the live runtime stays).
    pub fn verdicts(&self) -> tokio::sync::watch::Receiver<Option<Verdict>> {
        self.verdicts.subscribe()
    }

    /// Applies every snapshot `rx` publishes until the sender goes away.
    pub async fn follow(self: Arc<Self>, mut rx: watch::Receiver<Option<Arc<Snapshot>>>) {
        loop {
            let next = rx.borrow_and_update().clone();
            if let Some(snapshot) = next {
                let unchanged = self
                    .load()
                    .is_some_and(|rt| same_snapshot(&rt.snapshot, &snapshot));
                let (version, hash) = (snapshot.version, snapshot.hash.clone());
                let verdict = if unchanged {
                    // Same content: the live runtime's failures still hold.
                    let failed = self.load().map(|rt| rt.failed.to_vec()).unwrap_or_default();
                    (None, failed)
                } else {
                    // Building a large snapshot takes a while: keep it off the request workers.
                    let state = self.clone();
                    match tokio::task::spawn_blocking(move || state.apply(snapshot)).await {
                        Ok(failed) => (None, failed.to_vec()),
                        Err(err) => {
                            tracing::error!(error = %err, "applying a snapshot panicked");
                            self.metrics
                                .snapshot_reloads
                                .with_label_values(&["failed"])
                                .inc();
                            (
                                Some(format!("applying the snapshot panicked: {err}")),
                                vec![],
                            )
                        }
                    }
                };
                let (error, failed) = verdict;
                self.verdicts.send_replace(Some(Verdict {
                    version,
                    hash,
                    error,
                    failed,
                }));
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
