//! The snapshot stream server: HTTP/2 over TLS, bearer-token authenticated. It knows nothing of
//! Kubernetes: it serves a `watch::Receiver<Option<Arc<Snapshot>>>` (`None` until the first
//! compile, so proxies never receive an empty placeholder) and feeds acks into [`Proxies`].
//!
//! ```text
//!  POST /v1/stream  {proxy_id, hash}  ─► 200, body: one JSON frame per line {version, hash, snapshot}
//!                                        (the current snapshot first, then every newer one)
//!  POST /v1/ack     {proxy_id, version, hash, ok, error, failed} ─► 204
//!  anything without `Authorization: Bearer <token>` ─► 401 (and a log line)
//! ```
//! Protocol details: docs/stream.md.

pub mod auth;
mod frames;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hookway_crds::stream::{Ack, Hello, ACK_PATH, STREAM_PATH};
use hookway_crds::Snapshot;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::WatchStream;
use tracing::{debug, info, warn, Instrument};

pub use auth::Token;

use crate::metrics::Metrics;
use crate::proxies::Proxies;
use frames::{FrameCache, StreamState};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Largest hello accepted.
const MAX_HELLO_BYTES: usize = 64 * 1024;
/// Largest ack accepted: it lists every object the proxy left out, with its reason (a
/// cluster-wide plugin that fails on a proxy leaves out every Route).
const MAX_ACK_BYTES: usize = 32 * 1024 * 1024;

/// The stream server.
#[derive(Clone)]
pub struct StreamServer {
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    proxies: Proxies,
    token: Token,
    tls: Arc<rustls::ServerConfig>,
    metrics: Metrics,
    frames: FrameCache,
}

impl StreamServer {
    /// A server for these snapshots.
    pub fn new(
        snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
        proxies: Proxies,
        token: Token,
        tls: Arc<rustls::ServerConfig>,
        metrics: Metrics,
    ) -> Self {
        Self {
            snapshots,
            proxies,
            token,
            tls,
            metrics,
            frames: FrameCache::default(),
        }
    }

    /// Accepts connections until `shutdown` resolves; then every open stream is closed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let server = self.clone();
            let acceptor = acceptor.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(
                async move {
                    let tls =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => return debug!(error = %e, "TLS handshake failed"),
                            Err(_) => return debug!("TLS handshake timed out"),
                        };
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req, peer).await) }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .keep_alive_interval(Some(Duration::from_secs(10)))
                        .keep_alive_timeout(Duration::from_secs(20))
                        .serve_connection(TokioIo::new(tls), service);
                    tokio::select! {
                        r = conn => if let Err(e) = r { debug!(error = %e, "connection ended") },
                        _ = stop.wait_for(|s| *s) => debug!("closing connection: shutdown"),
                    }
                }
                .instrument(tracing::debug_span!("stream_conn", %peer)),
            );
        }
        let _ = stop_tx.send(true);
        info!("stream server stopped");
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if !self.token.check(req.headers().get(header::AUTHORIZATION)) {
            warn!(%peer, path = %req.uri().path(), "unauthorized stream request (bad or missing bearer token)");
            return plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
        }
        match (req.method(), req.uri().path()) {
            (&Method::POST, STREAM_PATH) => match read_json::<Hello>(req, MAX_HELLO_BYTES).await {
                Ok(hello) => self.open_stream(hello, peer),
                Err(resp) => resp,
            },
            (&Method::POST, ACK_PATH) => match read_json::<Ack>(req, MAX_ACK_BYTES).await {
                Ok(ack) => {
                    self.proxies.ack(&ack);
                    plain(StatusCode::NO_CONTENT, "")
                }
                Err(resp) => resp,
            },
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn open_stream(&self, hello: Hello, peer: SocketAddr) -> Response<Body> {
        if hello.proxy_id.is_empty() || hello.proxy_id.len() > 253 {
            return plain(StatusCode::BAD_REQUEST, "proxy_id must be 1..253 bytes\n");
        }
        info!(%peer, proxy_id = %hello.proxy_id, held = ?hello.hash, deltas = hello.deltas, "stream opened");
        // The guard lives inside the body stream: it drops when the proxy goes away.
        let guard = self.proxies.connect(&hello.proxy_id);
        let server = self.clone();
        let mut state = StreamState {
            deltas: hello.deltas,
            held: hello.hash,
            sent: None,
        };
        let frames = WatchStream::new(self.snapshots.clone()).filter_map(move |snapshot| {
            let _alive = &guard;
            let frame = snapshot.map(|s| {
                let bytes = server.frames.next(&mut state, &s, &server.metrics);
                Ok::<_, Infallible>(Frame::data(bytes))
            });
            futures::future::ready(frame)
        });
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .body(StreamBody::new(frames).boxed_unsync())
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, ""))
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *resp.status_mut() = status;
    resp
}

async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, Response<Body>> {
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|_| plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        debug!(error = %e, "bad request body");
        plain(StatusCode::BAD_REQUEST, "invalid JSON body\n")
    })
}
