//! The listeners: plain HTTP and HTTPS (HTTP/1.1 and HTTP/2, upgrades), the admin port, limits
//! and graceful shutdown. [`ProxyServer`] is usable in-process (tests bind `127.0.0.1:0`).

pub mod handler;
pub mod limits;
pub mod request_rules;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use hookway_crds::snapshot::Snapshot;

use crate::chain::ChainBuilder;
use crate::metrics::Metrics;
use crate::runtime::RuntimeState;
use handler::{ConnInfo, Shared};
pub use limits::Limits;
pub use request_rules::{CompiledRules, RequestRules};

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The default certificate could not be loaded.
    #[error("default certificate: {0}")]
    DefaultCert(String),
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The request rules are invalid (e.g. a bad trusted-proxy CIDR).
    #[error("request rules: {0}")]
    Rules(String),
}

/// How to run the proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Plain HTTP listener.
    pub http_addr: Option<SocketAddr>,
    /// HTTPS listener.
    pub https_addr: Option<SocketAddr>,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`, `/config`).
    pub admin_addr: Option<SocketAddr>,
    /// Default certificate for unknown SNI: PEM chain and PEM key.
    pub default_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// Limits.
    pub limits: Limits,
    /// How requests are read before routing: path canonicalisation, trusted proxies.
    pub rules: RequestRules,
    /// How long in-flight requests may run after a shutdown signal.
    pub grace: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            https_addr: None,
            admin_addr: None,
            default_cert: None,
            limits: Limits::default(),
            rules: RequestRules::default(),
            grace: Duration::from_secs(30),
        }
    }
}

/// A bound proxy, ready to [`run`](ProxyServer::run).
pub struct ProxyServer {
    http: Option<TcpListener>,
    https: Option<(TcpListener, TlsAcceptor)>,
    admin: Option<TcpListener>,
    shared: Arc<Shared>,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    config: ProxyConfig,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

fn local(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}

impl ProxyServer {
    /// Binds the listeners and applies the snapshot already in `snapshots`, if any.
    pub async fn bind(
        config: ProxyConfig,
        chains: ChainBuilder,
        snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    ) -> Result<Self, ServerError> {
        let metrics = Metrics::new()?;
        let state = Arc::new(RuntimeState::new(chains, metrics.clone()));
        if let Some(snapshot) = snapshots.borrow().clone() {
            let _ = state.apply(snapshot);
        }
        let http = match config.http_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let https = match config.https_addr {
            Some(addr) => {
                let default = match &config.default_cert {
                    Some((cert, key)) => Some(Arc::new(
                        crate::certs::certified_key(cert, key).map_err(ServerError::DefaultCert)?,
                    )),
                    None => None,
                };
                let tls = tls::server_config(state.clone(), default)?;
                Some((bind(addr).await?, TlsAcceptor::from(Arc::new(tls))))
            }
            None => None,
        };
        let admin = match config.admin_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let rules = config.rules.compile().map_err(ServerError::Rules)?;
        let shared = Arc::new(Shared {
            observer: Arc::new(metrics.clone()),
            metrics,
            state,
            max_body_bytes: config.limits.max_body_bytes,
            rules,
        });
        Ok(Self {
            http,
            https,
            admin,
            shared,
            snapshots,
            config,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(local)
    }

    /// The bound HTTPS address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().and_then(|(l, _)| local(l))
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(local)
    }

    /// The live runtime state.
    pub fn state(&self) -> &Arc<RuntimeState> {
        &self.shared.state
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish within the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Self {
            http,
            https,
            admin,
            shared,
            snapshots,
            config,
        } = self;
        let follower = tokio::spawn(shared.state.clone().follow(snapshots));
        let evictor = tokio::spawn(evict_idle_connections(shared.state.clone()));
        let (stop_admin, admin_stopped) = watch::channel(false);
        let admin_task =
            admin.map(|l| tokio::spawn(crate::admin::serve(l, shared.clone(), admin_stopped)));

        let builder = Arc::new(conn_builder(&config.limits));
        let permits = Arc::new(Semaphore::new(config.limits.max_connections.max(1)));
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (stream, peer, tls) = tokio::select! {
                _ = &mut shutdown => break,
                Some(r) = accept(http.as_ref()) => match r {
                    Ok((s, peer)) => (s, peer, None),
                    Err(err) => { accept_error(err).await; continue; }
                },
                Some(r) = accept(https.as_ref().map(|(l, _)| l)) => match r {
                    Ok((s, peer)) => (s, peer, https.as_ref().map(|(_, a)| a.clone())),
                    Err(err) => { accept_error(err).await; continue; }
                },
            };
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            let conn = ConnInfo {
                peer,
                local,
                tls: tls.is_some(),
                sni: None,
            };
            let shared = shared.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let handshake_timeout = config.limits.tls_handshake_timeout;
            tokio::spawn(async move {
                let _permit = permit;
                shared.metrics.active_connections.inc();
                match tls {
                    None => serve(stream, conn, shared.clone(), &builder, watcher).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok(tls_stream)) => {
                                let conn = ConnInfo {
                                    sni: tls_stream
                                        .get_ref()
                                        .1
                                        .server_name()
                                        .map(|name| Arc::from(name.to_ascii_lowercase())),
                                    ..conn
                                };
                                serve(tls_stream, conn, shared.clone(), &builder, watcher).await
                            }
                            Ok(Err(err)) => {
                                tracing::debug!(peer = %peer, error = %err, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                        }
                    }
                }
                shared.metrics.active_connections.dec();
            });
        }
        drop(http);
        drop(https);
        tracing::info!(grace = ?config.grace, "shutting down: finishing in-flight requests");
        if tokio::time::timeout(config.grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; closing the remaining connections");
        }
        let _ = stop_admin.send(true);
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        follower.abort();
        evictor.abort();
        Ok(())
    }
}

/// Every 15 s, closes upstream connections idle for longer than their timeout.
async fn evict_idle_connections(state: Arc<RuntimeState>) {
    let mut every = tokio::time::interval(Duration::from_secs(15));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        state.evict_idle_connections();
    }
}

/// Accepts on `listener`, or never resolves when there is none.
async fn accept(
    listener: Option<&TcpListener>,
) -> Option<std::io::Result<(TcpStream, SocketAddr)>> {
    match listener {
        Some(l) => Some(l.accept().await),
        None => std::future::pending().await,
    }
}

/// Logs an accept error and pauses briefly (e.g. out of file descriptors).
async fn accept_error(err: std::io::Error) {
    tracing::warn!(error = %err, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn conn_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // hyper makes a sleep for every request head (the header-read timeout); its tokio timer
        // is a pooled one, not a new timer-wheel entry per request.
        .timer(crate::timer::PooledTimer::new(
            crate::timer::SleepPool::header_reads(),
        ))
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn serve<I>(
    io: I,
    conn: ConnInfo,
    shared: Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = service_fn(move |req| handler::handle(shared.clone(), conn.clone(), req));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
    }
}
