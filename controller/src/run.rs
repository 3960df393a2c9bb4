//! Wiring: starts reflectors, the compile loop, the stream server, leader election, the status
//! writer, the proxy registry and the admin endpoint; stops them all on
//! [`Controller::shutdown`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hookway_crds::compiler::{Compiled, Objects, Options, Previous};
use hookway_crds::Snapshot;
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::compile_loop::{CompileLoop, Debounce, Poke, Published};
use crate::events::Events;
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::module_fetch::ModuleFetcher;
use crate::proxies::Proxies;
use crate::registry::{self, RegistryConfig};
use crate::status_loop::StatusLoop;
use crate::stream::{StreamServer, Token};
use crate::watch::{self as watching, Scope};

/// The compile step (the real compiler, or a stand-in in tests), given the last compile's
/// output to reuse (`hookway_crds::compiler::compile_reusing`).
pub type CompileFn = Arc<dyn Fn(&Objects, Option<Previous<'_>>) -> Compiled + Send + Sync>;

/// The real compiler with the built-in plugin catalogue (data: the kinds' config schemas,
/// `hookway_crds::catalogue::BUILTIN_DOCUMENT`; the controller links no plugin code).
pub fn default_compile(root_namespace: &str) -> CompileFn {
    let root_namespace = root_namespace.to_string();
    let catalogue = hookway_crds::Catalogue::builtin();
    Arc::new(move |objects, previous| {
        // The clock only feeds certificate expiry warnings on statuses, never the snapshot.
        let options = Options {
            root_namespace: root_namespace.clone(),
            now: Some(unix_now()),
        };
        // Sealed by the compile loop, which hashes only the entries that changed.
        hookway_crds::compiler::compile_reusing(objects, &options, &catalogue, previous)
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Everything the controller needs to start.
pub struct Config {
    /// Namespaces to watch (empty: all).
    pub namespaces: Vec<String>,
    /// The root namespace (cluster-wide GatewayPlugins, the Lease).
    pub root_namespace: String,
    /// Where proxies connect (TLS, HTTP/2).
    pub stream_listener: TcpListener,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub admin_listener: TcpListener,
    /// The proxies' bearer token.
    pub token: Token,
    /// The stream server's TLS config.
    pub tls: Arc<rustls::ServerConfig>,
    /// This replica's identity (pod name).
    pub identity: String,
    /// Lease duration.
    pub lease_duration: Duration,
    /// Coalescing bounds.
    pub debounce: Debounce,
    /// How often discovery is asked again whether the Gateway API is served, until it is
    /// (`watch::GATEWAY_API_RECHECK` in production).
    pub gateway_api_recheck: Duration,
    /// The compiler.
    pub compile: CompileFn,
    /// How the URL sources of plugin configs are fetched.
    pub fetch: crate::module_fetch::FetchConfig,
    /// The proxies' Service, `namespace/name` (or `name` in the root namespace): its addresses are written into Gateways'
    /// `status.addresses`. `None`: Gateways get no address (`Programmed=False`).
    pub proxy_service: Option<String>,
}

/// A running controller.
pub struct Controller {
    /// The stream server's address.
    pub stream_addr: SocketAddr,
    /// The admin server's address.
    pub admin_addr: SocketAddr,
    /// The snapshots being served.
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    /// Whether this replica leads.
    pub leader: watch::Receiver<bool>,
    /// Metrics.
    pub metrics: Metrics,
    shutdown: watch::Sender<bool>,
    registry: Option<tokio::task::JoinHandle<()>>,
    tasks: JoinSet<()>,
}

impl Controller {
    /// Starts everything.
    pub async fn start(client: Client, mut config: Config) -> crate::Result<Self> {
        let metrics = Metrics::new()?;
        let mut tasks = JoinSet::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        if !config.namespaces.is_empty() && !config.namespaces.contains(&config.root_namespace) {
            config.namespaces.push(config.root_namespace.clone());
        }
        let scope = Scope {
            namespaces: config.namespaces.clone(),
            root: config.root_namespace.clone(),
        };
        let poke = Poke::default();
        let gateway_api = watching::gateway_api_served(&client).await;
        let stores = watching::start(
            &client,
            &scope,
            &poke,
            &mut tasks,
            gateway_api,
            config.proxy_service.as_deref(),
        );
        tasks.spawn(crate::gateway_api_discovery::recheck(
            client.clone(),
            scope.clone(),
            poke.clone(),
            stores.gateway_api.clone(),
            config.gateway_api_recheck,
        ));

        let fetcher = ModuleFetcher::new(config.fetch.clone(), poke.clone())?;
        let (snap_tx, snap_rx) = watch::channel(None);
        let (pub_tx, pub_rx) = watch::channel::<Option<Published>>(None);
        let (ready_tx, ready_rx) = watch::channel(false);
        {
            let stores = stores.clone();
            let compile = config.compile.clone();
            let metrics = metrics.clone();
            let debounce = config.debounce;
            tasks.spawn(async move {
                info!("waiting for the reflectors' first list");
                if !watching::wait_ready(&stores).await {
                    warn!("a reflector stopped before it was ready");
                    return;
                }
                let objects_stores = stores.clone();
                let held = fetcher.clone();
                let mut compile_loop = CompileLoop::new(
                    move || Objects {
                        fetched: held.fetched(),
                        ..objects_stores.objects()
                    },
                    move |o: &Objects, previous: Option<Previous<'_>>| {
                        let compiled = compile(o, previous);
                        fetcher.want(&compiled.url_sources);
                        compiled
                    },
                    snap_tx,
                    pub_tx,
                    metrics,
                );
                compile_loop.step();
                let _ = ready_tx.send(true);
                loop {
                    poke.settle(debounce).await;
                    compile_loop.step();
                }
            });
        }

        let proxies = Proxies::new(metrics.clone());
        {
            // The lag gauge and the hash → version translation need every published version.
            let proxies = proxies.clone();
            let mut snapshots = snap_rx.clone();
            tasks.spawn(async move {
                loop {
                    if let Some(s) = snapshots.borrow_and_update().clone() {
                        proxies.record_published(s.version, &s.hash);
                    }
                    if snapshots.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        let stream_addr =
            config
                .stream_listener
                .local_addr()
                .map_err(|source| crate::Error::Io {
                    path: "stream listener".into(),
                    source,
                })?;
        let admin_addr = config
            .admin_listener
            .local_addr()
            .map_err(|source| crate::Error::Io {
                path: "admin listener".into(),
                source,
            })?;
        let server = StreamServer::new(
            snap_rx.clone(),
            proxies.clone(),
            config.token.clone(),
            config.tls.clone(),
            metrics.clone(),
        );
        {
            let mut stop = shutdown_rx.clone();
            let listener = config.stream_listener;
            tasks.spawn(async move {
                server
                    .serve(listener, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            });
        }
        tasks.spawn(crate::admin::serve(
            config.admin_listener,
            metrics.clone(),
            ready_rx,
            shutdown_rx.clone(),
        ));

        let (leader_tx, leader_rx) = watch::channel(false);
        let lease = LeaseConfig {
            name: "hookway-controller".into(),
            namespace: config.root_namespace.clone(),
            identity: config.identity.clone(),
            duration: config.lease_duration,
            renew_every: config.lease_duration / 3,
        };
        let registry_config = RegistryConfig::for_lease(&lease);
        tasks.spawn(leader::run(
            client.clone(),
            lease,
            leader_tx,
            metrics.clone(),
            shutdown_rx.clone(),
        ));
        // Not in the JoinSet: shutdown waits for it to delete its Lease.
        let registry = tokio::spawn(registry::publish(
            client.clone(),
            registry_config.clone(),
            proxies.clone(),
            shutdown_rx.clone(),
        ));
        let (leases_tx, leases_rx) = watch::channel(Arc::default());
        tasks.spawn(registry::watch_leases(
            client.clone(),
            registry_config.namespace.clone(),
            leases_tx,
        ));
        let status = StatusLoop {
            client: client.clone(),
            stores,
            proxies,
            registry: leases_rx,
            identity: config.identity.clone(),
            leader: leader_rx.clone(),
            published: pub_rx,
            events: Some(Events::new(client, &config.identity)),
            metrics: metrics.clone(),
            grace: config.lease_duration,
        };
        tasks.spawn(status.run());
        info!(%stream_addr, %admin_addr, identity = %config.identity, "controller started");
        Ok(Self {
            stream_addr,
            admin_addr,
            snapshots: snap_rx,
            leader: leader_rx,
            metrics,
            shutdown,
            registry: Some(registry),
            tasks,
        })
    }

    /// Stops everything: closes streams, releases the lease and deletes the registry Lease
    /// (within 5 s), aborts the rest. Dropping a `Controller` instead aborts every task at
    /// once, like a crash: its registry Lease then expires.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        // The leader task releases the lease, the registry deletes its Lease; give them a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        if let Some(registry) = self.registry.take() {
            if tokio::time::timeout_at(deadline, registry).await.is_err() {
                warn!("the registry lease was not deleted in time");
            }
        }
        while *self.leader.borrow() && tokio::time::Instant::now() < deadline {
            if tokio::time::timeout_at(deadline, self.leader.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.tasks.shutdown().await;
        info!("controller stopped");
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.take() {
            registry.abort();
        }
    }
}
