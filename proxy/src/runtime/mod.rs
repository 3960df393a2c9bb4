//! What serves requests: an immutable [`Runtime`] built from a snapshot, swapped atomically
//! between requests (in-flight requests keep the one they started with). A snapshot that
//! cannot be applied is rejected with a log line and the last good runtime stays.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use prometheus::Histogram;
use tokio::sync::watch;

use hookway_crds::snapshot::{ObjectKey, Snapshot};

use crate::certs::{CertError, CertStore};
use crate::chain::{BuildError, Chain, ChainBuilder, Chains};
use crate::metrics::Metrics;
use crate::router::{Router, RouterError};
use crate::upstream::client::ClientCache;
use crate::upstream::pool::PoolError;
use crate::upstream::{UpstreamPool, Upstreams};

/// Why a snapshot was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A route that does not compile.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// An upstream that cannot be prepared.
    #[error(transparent)]
    Upstream(#[from] PoolError),
    /// A certificate rustls refuses.
    #[error(transparent)]
    Certificate(#[from] CertError),
    /// A plugin that cannot be built.
    #[error(transparent)]
    Chain(#[from] BuildError),
}

/// One Route, ready to serve.
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
    /// Routes, by the router's indices.
    pub routes: Box<[RouteRuntime]>,
    /// Upstreams by key.
    pub upstreams: Upstreams,
    /// The chain for requests that match no Route.
    pub default_chain: Chain,
    /// `hookway_request_duration_seconds{route=""}`.
    pub no_route_duration: Histogram,
    /// TLS certificates by host.
    pub certs: CertStore,
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

fn has_plugins(snapshot: &Snapshot) -> bool {
    !snapshot.default_chain.is_empty() || snapshot.routes.iter().any(|r| !r.chain.is_empty())
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

    /// Builds a runtime from `snapshot` and makes it live; on error the live one stays.
    pub fn apply(&self, snapshot: Arc<Snapshot>) -> Result<(), ApplyError> {
        match self.build(snapshot.clone()) {
            Ok(runtime) => {
                let previous = self.current.swap(Some(Arc::new(runtime)));
                self.drop_series_of_removed_routes(previous.as_deref());
                self.metrics
                    .snapshot_reloads
                    .with_label_values(&["applied"])
                    .inc();
                self.metrics
                    .snapshot_version
                    .set(i64::try_from(snapshot.version).unwrap_or(i64::MAX));
                tracing::info!(version = snapshot.version, hash = %snapshot.hash, routes = snapshot.routes.len(), "snapshot applied");
                Ok(())
            }
            Err(err) => {
                self.metrics
                    .snapshot_reloads
                    .with_label_values(&["rejected"])
                    .inc();
                tracing::error!(version = snapshot.version, hash = %snapshot.hash, error = %err, "snapshot rejected; keeping the last good one");
                Err(err)
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

    fn build(&self, snapshot: Arc<Snapshot>) -> Result<Runtime, ApplyError> {
        let router = Router::new(&snapshot.routes)?;
        let certs = CertStore::new(&snapshot.certificates)?;
        let mut upstreams = Upstreams::with_capacity(snapshot.upstreams.len());
        for entry in &snapshot.upstreams {
            let pool = UpstreamPool::new(entry, &self.clients, &self.metrics)?;
            upstreams.insert(entry.key.clone(), Arc::new(pool));
        }
        // An empty snapshot chain needs no plugin instance: skip the builder.
        let chains = if has_plugins(&snapshot) {
            self.builder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .build(&snapshot)?
        } else {
            Chains {
                routes: vec![Chain::default(); snapshot.routes.len()],
                default: Chain::default(),
            }
        };
        let routes = snapshot
            .routes
            .iter()
            .zip(chains.routes)
            .map(|(r, chain)| {
                let route_label: Arc<str> = r.key.to_string().into();
                RouteRuntime {
                    key: Arc::new(r.key.clone()),
                    upstream: Arc::new(r.upstream.clone()),
                    chain,
                    duration: self
                        .metrics
                        .request_duration
                        .with_label_values(&[&*route_label]),
                    route_label,
                    service_label: r.upstream.to_string().into(),
                }
            })
            .collect();
        Ok(Runtime {
            router,
            routes,
            upstreams,
            default_chain: chains.default,
            no_route_duration: self.metrics.request_duration.with_label_values(&[""]),
            certs,
            snapshot,
        })
    }

    /// Verdicts on the snapshots [`RuntimeState::follow`] applies: version, hash, and the reason
    /// when this proxy rejected it (the last good runtime then stays).
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
                let error = if unchanged {
                    None
                } else {
                    // Building a large snapshot takes a while: keep it off the request workers.
                    let state = self.clone();
                    match tokio::task::spawn_blocking(move || state.apply(snapshot)).await {
                        Ok(Ok(())) => None,
                        Ok(Err(err)) => Some(err.to_string()),
                        Err(err) => {
                            tracing::error!(error = %err, "applying a snapshot panicked");
                            Some(format!("applying the snapshot panicked: {err}"))
                        }
                    }
                };
                self.verdicts.send_replace(Some(Verdict {
                    version,
                    hash,
                    error,
                }));
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
