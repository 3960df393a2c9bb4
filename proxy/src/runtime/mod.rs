//! What serves requests: an immutable [`Runtime`] built from a snapshot, swapped atomically
//! between requests (in-flight requests keep the one they started with).
//!
//! A snapshot is applied object by object (`apply.rs`): a certificate, upstream, plugin
//! instance or route this proxy cannot build is left out with the Routes that depend on it —
//! their previous version keeps serving when there was one — and everything else applies.
//! [`Runtime::failed`] lists what was left out; the verdict sent to the controller carries it.

mod apply;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

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
    /// `hookway_request_duration_seconds{route}` for this route.
    pub duration: Histogram,
}

/// Everything one snapshot needs at request time. Immutable.
pub struct Runtime {
    /// The snapshot it was built from.
    pub snapshot: Arc<Snapshot>,
    /// Routing.
    pub router: Router,
    /// Routes, by the router's indices (sorted by key).
    pub routes: Box<[RouteRuntime]>,
    /// The entries of `routes`, when they are not exactly `snapshot.routes` (some Route was
    /// left out or serves its previous version).
    entries: Option<Box<[RouteEntry]>>,
    /// Upstreams by key.
    pub upstreams: Upstreams,
    /// The chain for requests that match no Route.
    pub default_chain: Chain,
    /// `hookway_request_duration_seconds{route=""}`.
    pub no_route_duration: Histogram,
    /// TLS certificates by host.
    pub certs: CertStore,
    /// The objects of `snapshot` this proxy could not apply, sorted by kind and key.
    pub failed: Arc<[FailedObject]>,
}

impl Runtime {
    /// The entries of the served routes, in the order of [`Runtime::routes`].
    pub fn route_entries(&self) -> &[RouteEntry] {
        self.entries.as_deref().unwrap_or(&self.snapshot.routes)
    }

    /// The served version of Route `key` and its runtime.
    pub fn route(&self, key: &ObjectKey) -> Option<(&RouteEntry, &RouteRuntime)> {
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

    /// Builds a runtime from `snapshot`, object by object, and makes it live. Returns the
    /// objects left out (empty when everything applied); each is logged, at `error` level
    /// when the live runtime did not already fail it.
    pub fn apply(&self, snapshot: Arc<Snapshot>) -> Arc<[FailedObject]> {
        let previous = self.current.load_full();
        let env = apply::Env {
            builder: &self.builder,
            clients: &self.clients,
            metrics: &self.metrics,
        };
        let runtime = apply::build(&env, snapshot.clone(), previous.as_deref());
        let failed = runtime.failed.clone();
        for f in failed.iter() {
            let known = previous.as_ref().is_some_and(|p| {
                p.failed
                    .binary_search_by(|g| (g.kind, &g.key).cmp(&(f.kind, &f.key)))
                    .is_ok_and(|i| p.failed[i] == *f)
            });
            let (kind, object) = (f.kind.as_str(), &f.key);
            if known {
                tracing::debug!(version = snapshot.version, kind, %object, reason = %f.reason, previous = f.previous, "object still not applied");
            } else {
                tracing::error!(version = snapshot.version, kind, %object, reason = %f.reason, previous = f.previous, "object not applied; left out (previous version kept when there was one)");
            }
        }
        let replaced = self.current.swap(Some(Arc::new(runtime)));
        self.drop_series_of_removed_routes(replaced.as_deref());
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
        self.metrics
            .snapshot_version
            .set(i64::try_from(snapshot.version).unwrap_or(i64::MAX));
        tracing::info!(version = snapshot.version, hash = %snapshot.hash, routes = snapshot.routes.len(), failed = failed.len(), "snapshot applied");
        failed
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
