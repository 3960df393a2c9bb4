//! One upstream endpoint (`scheme://host:port`, spoken to with HTTP/1.1, HTTP/2 or whichever
//! the upstream picks by ALPN) and its connections: idle HTTP/1.1 keep-alive connections, and
//! HTTP/2 connections shared by concurrent requests ([`super::http2`]).
//!
//! The pool is ours rather than hyper-util's legacy client: a [`UpstreamPool`] node holds its
//! [`Endpoint`] directly (resolved once per snapshot), so a request neither hashes a pool key
//! nor spawns a task to wait for the connection to become idle again. HTTP/1.1 is spoken by
//! hookway's own client ([`super::h1`]), in the request's task: a connection goes back to its
//! endpoint when the response body has been read cleanly to the end; one whose body is dropped
//! early is closed. A connection that the upstream closed while idle is noticed on checkout,
//! and an idempotent bodiless request that finds its reused connection closed is sent again
//! on another one. Upgrade (WebSocket) requests are handed, with the connection, to hyper's
//! HTTP/1.1 client, and HTTP/2 is hyper's.
//!
//! [`UpstreamPool`]: super::pool::UpstreamPool

use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookway_crds::snapshot::UpstreamProtocol;
use http::uri::{Authority, Scheme};
use http::{header, request, Request, Response, Uri, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::TokioIo;
use tower_service::Service;

use super::balancer::InFlight;
use super::client::Connectors;
use super::guarded::GuardedBody;
use super::h1;
use super::http2::{self as h2conn, Checkout, Failure, H2Conns, NewConn, Slot};
use crate::plugin::{BoxError, ProxyBody};

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened (refused, unreachable, connect timeout, TLS handshake).
    #[error("{0}")]
    Connect(String),
    /// The request failed on an open connection (hyper's clients: HTTP/2, Upgrade requests).
    #[error(transparent)]
    Request(#[from] hyper::Error),
    /// The request or its response failed on an HTTP/1.1 connection (hookway's client).
    #[error(transparent)]
    Http1(#[from] h1::Error),
    /// The upstream did not process the request (HTTP/2 `REFUSED_STREAM`, or a stream above a
    /// graceful GOAWAY's last stream id): as safe to send again as a connect failure.
    #[error("upstream did not process the request: {0}")]
    Unprocessed(String),
    /// The request body failed while it was sent (the body's own error).
    #[error("request body: {0}")]
    Body(BoxError),
    /// The request cannot be carried by the upstream's protocol, or the upstream does not speak
    /// the protocol it was configured with.
    #[error("{0}")]
    Protocol(String),
}

/// How an endpoint keeps idle connections.
#[derive(Clone, Copy, Debug)]
pub struct IdleSettings {
    /// Idle connections older than this are closed.
    pub timeout: Duration,
    /// At most this many idle connections per endpoint.
    pub max: usize,
}

struct Idle {
    conn: Box<h1::Conn>,
    since: Instant,
}

/// An upstream endpoint: where to connect, with which protocol, and its connections (idle
/// HTTP/1.1 ones, shared HTTP/2 ones).
pub struct Endpoint {
    uri: Uri,
    protocol: UpstreamProtocol,
    connectors: Connectors,
    settings: IdleSettings,
    idle: Mutex<Vec<Idle>>,
    h2: H2Conns,
    /// `auto`: whether the last connection opened negotiated `h2` (new requests then go to the
    /// shared HTTP/2 connections).
    speaks_h2: AtomicBool,
}

/// An HTTP/2 stream lent to one request, freed when this is dropped. (An HTTP/1.1 connection
/// is given back by its response body, [`h1::Body`].)
pub struct Checkin(Slot);

impl Checkin {
    /// The response has been read to its end (the stream is freed when this is dropped, read
    /// or not).
    pub fn done(self) {}
}

impl std::fmt::Debug for Checkin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Checkin").field(&self.0).finish()
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("uri", &self.uri)
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// A response body from an upstream: hookway's HTTP/1.1 client's, or hyper's (HTTP/2,
/// Upgrade requests).
#[derive(Debug)]
pub enum UpstreamBody {
    /// Read by hookway's HTTP/1.1 client; gives its connection back at the end.
    Http1(h1::Body),
    /// Read by hyper.
    Hyper(Incoming),
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Http1(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            UpstreamBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Http1(b) => b.is_end_stream(),
            UpstreamBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Http1(b) => b.size_hint(),
            UpstreamBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// A new connection: HTTP/1.1, or HTTP/2 (by ALPN or prior knowledge).
enum Conn {
    /// Boxed: it travels with every response (its body owns it) and in and out of the idle
    /// pool; a pointer moves where ~120 bytes were copied.
    Http1(Box<h1::Conn>),
    Http2(NewConn),
}

/// A response as the proxy passes it on: its body holds what must live until it ends (the
/// node's in-flight guard, an HTTP/2 stream's checkin, an HTTP/1.1 connection). Built where the
/// response is read, so the layers above move a 128-byte response, not the upstream's.
type Sent = Response<ProxyBody>;

/// The body passed on: `body` with the node's in-flight `guard` and the stream's `checkin`.
fn passed_on(body: UpstreamBody, guard: Option<InFlight>, checkin: Option<Checkin>) -> ProxyBody {
    GuardedBody::new(body, guard, checkin).boxed_unsync()
}

/// How many new HTTP/2 connections one request may open when each closes before taking it.
const MAX_FRESH_CONNECTIONS: u32 = 3;

impl Endpoint {
    /// An endpoint with no connections yet.
    pub fn new(
        scheme: Scheme,
        authority: Authority,
        protocol: UpstreamProtocol,
        connectors: Connectors,
        settings: IdleSettings,
    ) -> Self {
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .expect("a scheme and an authority make a URI");
        Self {
            uri,
            protocol,
            connectors,
            settings,
            idle: Mutex::new(Vec::new()),
            h2: H2Conns::default(),
            speaks_h2: AtomicBool::new(false),
        }
    }

    /// `host:port`.
    pub fn authority(&self) -> &Authority {
        self.uri.authority().expect("built with an authority")
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &Scheme {
        self.uri.scheme().expect("built with a scheme")
    }

    /// The protocol spoken to this endpoint.
    pub fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }

    /// Idle HTTP/1.1 connections now (for tests and the reaper).
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    /// Open HTTP/2 connections now (for tests).
    pub fn h2_count(&self) -> usize {
        self.h2.open_count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still open.
    fn take(&self) -> Option<Box<h1::Conn>> {
        let now = Instant::now();
        let mut idle = self.lock();
        while let Some(mut idle_conn) = idle.pop() {
            if now.duration_since(idle_conn.since) < self.settings.timeout
                && idle_conn.conn.is_usable()
            {
                return Some(idle_conn.conn);
            }
        }
        None
    }

    /// Gives back a connection whose response has been read to its end.
    pub(super) fn put(&self, conn: Box<h1::Conn>) {
        let mut idle = self.lock();
        if idle.len() >= self.settings.max {
            // The oldest is the least likely to be wanted again.
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes idle connections that are closed or older than the idle timeout.
    pub fn evict_expired(&self) {
        let now = Instant::now();
        self.lock().retain_mut(|idle| {
            now.duration_since(idle.since) < self.settings.timeout && idle.conn.is_usable()
        });
        if self.protocol != UpstreamProtocol::Http1 {
            self.h2.evict_expired(self.settings.timeout);
        }
    }

    /// Sends `req` (origin-form URI, `Host` set): [`send_head`](Self::send_head) with the head
    /// handed over.
    pub async fn send(self: &Arc<Self>, req: Request<ProxyBody>) -> Result<Sent, SendError> {
        let (parts, body) = req.into_parts();
        let upgrade = super::headers::is_upgrade(&parts.headers);
        self.send_head(Head::Owned(Box::new(parts)), body, upgrade, None)
            .await
    }

    /// Sends a request (origin-form URI, `Host` set) on a connection of this endpoint's
    /// protocol: an idle HTTP/1.1 connection or a new one, or a stream on a shared HTTP/2
    /// connection. An HTTP/1.1 connection comes back when the response body ends, an HTTP/2
    /// stream with the [`Checkin`].
    ///
    /// The head may be lent: a caller that may send it again (a retry) keeps it and nothing
    /// copies it on the way, since HTTP/1.1 only writes it out. A `TE` field is never written
    /// on HTTP/1.1 (it is hop-by-hop there; the caller sets `te: trailers` for HTTP/2 only). Only
    /// hyper's clients (HTTP/2, Upgrade requests) take a head of their own, copied when lent.
    /// `upgrade` is whether the head asks for a protocol upgrade
    /// ([`is_upgrade`](super::headers::is_upgrade)), which the caller has already looked at.
    pub async fn send_head(
        self: &Arc<Self>,
        head: Head<'_>,
        body: ProxyBody,
        upgrade: bool,
        guard: Option<InFlight>,
    ) -> Result<Sent, SendError> {
        debug_assert_eq!(upgrade, super::headers::is_upgrade(&head.headers));
        match self.protocol {
            UpstreamProtocol::Http1 if upgrade => {
                Box::pin(self.send_upgrade(owned(head, body), UpstreamProtocol::Http1, guard)).await
            }
            UpstreamProtocol::Http1 => {
                self.send_http1(head, body, UpstreamProtocol::Http1, guard)
                    .await
            }
            UpstreamProtocol::Http2 => {
                if upgrade {
                    return Err(SendError::Protocol(format!(
                        "upstream {} is spoken to with HTTP/2 only (http2: always, or appProtocol kubernetes.io/h2c): an Upgrade (WebSocket) request cannot be carried",
                        self.authority()
                    )));
                }
                // Boxed: an HTTP/1.1 request's future stays as small as before.
                Box::pin(self.send_http2(owned(head, body), guard)).await
            }
            UpstreamProtocol::Auto => {
                if upgrade {
                    // An Upgrade needs HTTP/1.1: a connection that offered nothing else.
                    let mut req = owned(head, body);
                    // `te: trailers` was kept for HTTP/2; it is hop-by-hop in HTTP/1.1.
                    req.headers_mut().remove(header::TE);
                    Box::pin(self.send_upgrade(req, UpstreamProtocol::Http1, guard)).await
                } else if self.speaks_h2.load(Ordering::Relaxed) {
                    Box::pin(self.send_http2(owned(head, body), guard)).await
                } else {
                    self.send_http1(head, body, UpstreamProtocol::Auto, guard)
                        .await
                }
            }
        }
    }

    /// HTTP/1.1 (not an Upgrade): an idle connection, else a new one opened offering `offer`
    /// (which, for an `auto` endpoint, the upstream may answer with `h2`).
    async fn send_http1(
        self: &Arc<Self>,
        head: Head<'_>,
        mut body: ProxyBody,
        offer: UpstreamProtocol,
        guard: Option<InFlight>,
    ) -> Result<Sent, SendError> {
        // Idle connections first; a stale one sends an idempotent bodiless request again.
        while let Some(mut conn) = self.take() {
            match h1::exchange(&mut conn, &head, &mut body).await {
                Err(h1::Failure::Stale(err)) => {
                    tracing::debug!(endpoint = %self.authority(), error = %err, "idle upstream connection was closed; sending again");
                }
                done => return self.respond(done, conn, guard),
            }
        }
        // Boxed: the connect and handshake state (TLS included) would otherwise sit in every
        // request's future, which is moved whole; a new connection is the rare case.
        match Box::pin(self.connect(offer)).await? {
            Conn::Http1(mut conn) => {
                let done = h1::exchange(&mut conn, &head, &mut body).await;
                self.respond(done, conn, guard)
            }
            Conn::Http2(conn) => {
                self.h2.add(conn);
                Box::pin(self.send_http2(owned(head, body), guard)).await
            }
        }
    }

    /// The response of an HTTP/1.1 exchange on `conn`, whose body owns the connection.
    fn respond(
        self: &Arc<Self>,
        done: Result<h1::Head, h1::Failure>,
        conn: Box<h1::Conn>,
        guard: Option<InFlight>,
    ) -> Result<Sent, SendError> {
        let head = match done {
            Ok(head) => head,
            Err(h1::Failure::Body(err)) => return Err(SendError::Body(err)),
            Err(h1::Failure::Stale(err) | h1::Failure::Error(err)) => {
                return Err(SendError::Http1(err))
            }
        };
        let body = h1::Body::new(conn, self.clone(), head.framing, head.keep_alive);
        let mut resp = Response::new(passed_on(UpstreamBody::Http1(body), guard, None));
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }

    /// An Upgrade (WebSocket) request: hyper's HTTP/1.1 client on a new connection, which
    /// becomes the tunnel on `101` and is not reused otherwise.
    async fn send_upgrade(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
        offer: UpstreamProtocol,
        guard: Option<InFlight>,
    ) -> Result<Sent, SendError> {
        // A new connection: on `101` it becomes the tunnel anyway, and hyper could not send the
        // request again if an idle one turned out closed.
        let conn = match self.connect(offer).await? {
            Conn::Http1(conn) => conn,
            Conn::Http2(conn) => {
                // Upgrades offer HTTP/1.1 only; an upstream that picked h2 anyway is used for
                // the requests that can be carried.
                self.h2.add(conn);
                return Err(SendError::Protocol(format!(
                    "upstream {} answered an HTTP/1.1-only offer with HTTP/2: an Upgrade (WebSocket) request cannot be carried",
                    self.authority()
                )));
            }
        };
        let (mut sender, hyper_conn) = http1::Builder::new()
            .handshake(TokioIo::new(conn.into_io()))
            .await
            .map_err(|err| SendError::Connect(root_cause(&err)))?;
        let authority = self.authority().clone();
        tokio::spawn(async move {
            if let Err(err) = hyper_conn.with_upgrades().await {
                tracing::debug!(upstream = %authority, error = %err, "upstream connection ended");
            }
        });
        let resp = sender.send_request(req).await?;
        // Dropping the sender closes the connection once this response is read (or, on 101,
        // leaves it to the tunnel).
        Ok(resp.map(|b| passed_on(UpstreamBody::Hyper(b), guard, None)))
    }

    /// HTTP/2: a stream on a shared connection, opening one when none has a free stream.
    async fn send_http2(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
        guard: Option<InFlight>,
    ) -> Result<Sent, SendError> {
        let (mut req, body_error) = h2conn::tap_body(req);
        let mut fresh = 0;
        loop {
            match self.h2.checkout() {
                Checkout::Use(mut sender, slot) => {
                    h2conn::to_http2(&mut req, self.scheme(), self.authority())
                        .map_err(SendError::Protocol)?;
                    match sender.try_send_request(req).await {
                        Ok(mut resp) => {
                            slot.answered();
                            // The client side answers in its own version; hyper writes an
                            // HTTP/1.1 response head for a response marked HTTP/1.1.
                            *resp.version_mut() = Version::HTTP_11;
                            // A stream whose response has ended is freed now.
                            let checkin = (!http_body::Body::is_end_stream(resp.body()))
                                .then(|| Checkin(slot));
                            return Ok(
                                resp.map(|b| passed_on(UpstreamBody::Hyper(b), guard, checkin))
                            );
                        }
                        Err(mut err) => match err.take_message() {
                            // The connection closed before taking it: another connection.
                            Some(unsent) => req = unsent,
                            None => {
                                let err = err.into_error();
                                if let Some(body) = h2conn::body_error(body_error.as_ref()) {
                                    return Err(SendError::Body(body));
                                }
                                return Err(self.h2_failure(err, slot.was_answered()));
                            }
                        },
                    }
                }
                Checkout::Wait(rx) => {
                    if let Some(message) = h2conn::wait(rx).await {
                        return Err(SendError::Connect(message.to_string()));
                    }
                }
                Checkout::Connect(connecting) => {
                    fresh += 1;
                    if fresh > MAX_FRESH_CONNECTIONS {
                        let message = format!(
                            "upstream {} closed {MAX_FRESH_CONNECTIONS} new HTTP/2 connections before taking the request",
                            self.authority()
                        );
                        connecting.fail(&message);
                        return Err(SendError::Protocol(message));
                    }
                    let offer = self.protocol;
                    match self.connect(offer).await {
                        Ok(Conn::Http2(conn)) => connecting.done(conn),
                        Ok(Conn::Http1(mut conn)) => {
                            // `auto`, and the upstream picked HTTP/1.1 this time.
                            drop(connecting);
                            h2conn::to_http1(&mut req);
                            req.headers_mut().remove(header::TE);
                            let (parts, mut body) = req.into_parts();
                            let done = h1::exchange(&mut conn, &parts, &mut body).await;
                            return self.respond(done, conn, guard);
                        }
                        Err(err) => {
                            connecting.fail(&err.to_string());
                            return Err(err);
                        }
                    }
                }
            }
        }
    }

    /// The error of a request that failed on an HTTP/2 connection.
    fn h2_failure(&self, err: hyper::Error, answered: bool) -> SendError {
        match h2conn::classify(&err, answered) {
            Failure::Unprocessed => SendError::Unprocessed(root_cause(&err)),
            Failure::NotHttp2 => {
                let how = match (self.protocol, self.scheme() == &Scheme::HTTPS) {
                    (UpstreamProtocol::Http2, false) => "cleartext HTTP/2 with prior knowledge (h2c: http2: always, or appProtocol kubernetes.io/h2c)",
                    (UpstreamProtocol::Http2, true) => "HTTP/2 over TLS (http2: always)",
                    _ => "HTTP/2 (negotiated by ALPN)",
                };
                let message = format!(
                    "upstream {} broke the connection before answering {how}: {}; does it speak HTTP/2? (http2: never speaks HTTP/1.1)",
                    self.authority(),
                    root_cause(&err)
                );
                SendError::Protocol(message)
            }
            Failure::Other => SendError::Request(err),
        }
    }

    /// Opens a connection offering `offer` by ALPN (over TLS). HTTP/2 when the endpoint is
    /// HTTP/2-only, or `auto` and the upstream picked `h2`; HTTP/1.1 otherwise.
    async fn connect(&self, offer: UpstreamProtocol) -> Result<Conn, SendError> {
        let mut connector = self.connectors.for_protocol(offer).clone();
        let io = connector
            .call(self.uri.clone())
            .await
            .map_err(|err| SendError::Connect(root_cause(&*err)))?;
        let h2 = match offer {
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Auto => {
                let negotiated = io.connected().is_negotiated_h2();
                self.speaks_h2.store(negotiated, Ordering::Relaxed);
                negotiated
            }
        };
        if h2 {
            return h2conn::handshake(io, self.authority())
                .await
                .map(Conn::Http2)
                .map_err(|err| SendError::Connect(root_cause(&err)));
        }
        Ok(Conn::Http1(Box::new(h1::Conn::new(h1::Io::from(io)))))
    }
}

/// A request head for [`Endpoint::send_head`]: lent, or handed over boxed (either way two
/// words: the head itself is 224 bytes, which moving a `Cow` of it copied on every call and
/// into every future on the way).
pub enum Head<'a> {
    /// Lent: the caller keeps it (a retry sends it again).
    Lent(&'a request::Parts),
    /// Handed over.
    Owned(Box<request::Parts>),
}

impl Deref for Head<'_> {
    type Target = request::Parts;

    fn deref(&self) -> &request::Parts {
        match self {
            Head::Lent(head) => head,
            Head::Owned(head) => head,
        }
    }
}

/// A request of its own for hyper's clients, from a head that may be lent.
fn owned(head: Head<'_>, body: ProxyBody) -> Request<ProxyBody> {
    let head = match head {
        Head::Lent(head) => head.clone(),
        Head::Owned(head) => *head,
    };
    Request::from_parts(head, body)
}

/// The innermost cause of an error (`connection refused` rather than `client error`).
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A cleartext HTTP/1.1 endpoint for `uri`, with its own connector (tests of this module and
/// of `h1`).
#[cfg(test)]
pub(crate) fn test_endpoint(uri: &http::Uri) -> Arc<Endpoint> {
    let client = super::client::ClientCache::default()
        .get(&super::client::ClientKey {
            connect_timeout_ms: 1000,
            insecure: false,
            server_name: None,
        })
        .unwrap();
    client.endpoint(
        uri.scheme().unwrap(),
        uri.authority().unwrap(),
        UpstreamProtocol::Http1,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::test_endpoint as endpoint;
    use super::*;
    use crate::upstream::client::{ClientCache, ClientKey};

    /// A raw HTTP/1.1 upstream that counts connections, answers `body` to every request and,
    /// when `close_after` is set, closes each connection that long after its first answer.
    async fn upstream(
        body: &'static str,
        close_after: Option<Duration>,
    ) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if sock.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                            if let Some(wait) = close_after {
                                tokio::time::sleep(wait).await;
                                return; // dropped: the idle connection is closed
                            }
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/").parse().unwrap(), accepted)
    }

    fn request(host: &str) -> Request<ProxyBody> {
        Request::builder()
            .uri("/x")
            .header(http::header::HOST, host)
            .body(crate::plugin::respond::empty())
            .unwrap()
    }

    async fn read_all(endpoint: &Arc<Endpoint>, host: &str) -> Result<String, SendError> {
        let resp = endpoint.send(request(host)).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(SendError::Body)?
            .to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_body_is_read() {
        let (uri, accepted) = upstream("ok", None).await;
        let ep = endpoint(&uri);
        let host = uri.authority().unwrap().as_str().to_owned();
        for _ in 0..20 {
            assert_eq!(read_all(&ep, &host).await.unwrap(), "ok");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one keep-alive connection"
        );
        assert_eq!(ep.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_early_closes_its_connection() {
        let (uri, accepted) = upstream("a long enough body", None).await;
        let ep = endpoint(&uri);
        let host = uri.authority().unwrap().as_str().to_owned();
        let resp = ep.send(request(&host)).await.unwrap();
        drop(resp.into_body());
        assert_eq!(ep.idle_count(), 0, "not returned unread");
        assert_eq!(read_all(&ep, &host).await.unwrap(), "a long enough body");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_idle_connection_the_upstream_closed_is_replaced() {
        let (uri, accepted) = upstream("ok", Some(Duration::from_millis(20))).await;
        let ep = endpoint(&uri);
        let host = uri.authority().unwrap().as_str().to_owned();
        for i in 1..=5 {
            assert_eq!(read_all(&ep, &host).await.unwrap(), "ok", "request {i}");
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            5,
            "a new connection each time"
        );
    }

    #[tokio::test]
    async fn expired_idle_connections_are_evicted() {
        let (uri, _) = upstream("ok", None).await;
        let client = ClientCache::default()
            .get(&ClientKey {
                connect_timeout_ms: 1000,
                insecure: false,
                server_name: None,
            })
            .unwrap();
        let ep = Arc::new(Endpoint::new(
            uri.scheme().unwrap().clone(),
            uri.authority().unwrap().clone(),
            UpstreamProtocol::Http1,
            client.connectors().clone(),
            IdleSettings {
                timeout: Duration::from_millis(30),
                max: 4,
            },
        ));
        let host = uri.authority().unwrap().as_str().to_owned();
        read_all(&ep, &host).await.unwrap();
        assert_eq!(ep.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        ep.evict_expired();
        assert_eq!(ep.idle_count(), 0);
    }

    #[tokio::test]
    async fn the_endpoint_is_shared_while_some_snapshot_holds_it() {
        let (uri, _) = upstream("ok", None).await;
        let client = ClientCache::default()
            .get(&ClientKey {
                connect_timeout_ms: 1000,
                insecure: false,
                server_name: None,
            })
            .unwrap();
        let (scheme, authority) = (uri.scheme().unwrap(), uri.authority().unwrap());
        let first = client.endpoint(scheme, authority, UpstreamProtocol::Auto);
        let second = client.endpoint(scheme, authority, UpstreamProtocol::Http1);
        assert!(Arc::ptr_eq(&first, &second));
        drop((first, second));
        let third = client.endpoint(scheme, authority, UpstreamProtocol::Http1);
        assert_eq!(
            third.idle_count(),
            0,
            "a fresh endpoint once nobody held it"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let ep = endpoint(&uri);
        let err = ep.send(request("x")).await.unwrap_err();
        assert!(
            matches!(err, SendError::Connect(ref m) if m.contains("refused")),
            "{err}"
        );
    }
}
