//! HTTP/2 connections to one upstream endpoint, shared by concurrent requests.
//!
//! An HTTP/2 connection carries many requests at once (streams), so an endpoint keeps a few
//! shared connections instead of lending one per request: a request takes the oldest connection
//! with a free stream (below the server's current `SETTINGS_MAX_CONCURRENT_STREAMS`), and only
//! when every connection is saturated is another opened.
//! Requests that find no connection while one is being opened wait for it (one handshake, not
//! one per request). A connection that received GOAWAY or broke accepts no new streams and leaves
//! the list at the next checkout; a request hyper hands back unsent goes to another connection.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderValue, Request, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;

use crate::plugin::{BoxError, ProxyBody};

/// Most connections per endpoint; past it, requests share the least busy one (hyper then
/// queues streams beyond the server's limit).
const MAX_CONNECTIONS: usize = 16;
/// A PING after this long without frames while streams are open...
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ...closes the connection if unanswered this long.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What a connection shares with its streams.
#[derive(Debug)]
struct Shared {
    /// Streams open on the connection (requests whose response has not ended).
    in_flight: AtomicUsize,
    /// Whether the connection has carried a response (it speaks HTTP/2).
    answered: AtomicBool,
}

/// The server's current `SETTINGS_MAX_CONCURRENT_STREAMS` on a connection.
trait StreamLimit: Send + Sync {
    fn max_streams(&self) -> usize;
}

/// hyper's connection future, polled by its driver task and asked for the server's stream
/// limit at checkout (hyper only tells it there; the value changes when SETTINGS arrive, which
/// the future itself does not learn until a request wakes it). The driver drops it when it
/// ends, so that waiting requests are handed back.
type Driven<I> = Mutex<Option<http2::Connection<I, ProxyBody, TokioExecutor>>>;

impl<I> StreamLimit for Driven<I>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn max_streams(&self) -> usize {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |conn| conn.current_max_send_streams())
    }
}

/// A new HTTP/2 connection, ready to be added to an endpoint's list.
pub struct NewConn {
    sender: SendRequest<ProxyBody>,
    shared: Arc<Shared>,
    limit: Arc<dyn StreamLimit>,
}

struct Conn {
    sender: SendRequest<ProxyBody>,
    shared: Arc<Shared>,
    limit: Arc<dyn StreamLimit>,
    last_used: Instant,
}

impl Conn {
    fn new(conn: NewConn) -> Self {
        Self {
            sender: conn.sender,
            shared: conn.shared,
            limit: conn.limit,
            last_used: Instant::now(),
        }
    }

    fn has_free_stream(&self) -> bool {
        self.shared.in_flight.load(Ordering::Relaxed) < self.limit.max_streams()
    }
}

/// One stream on a shared connection, counted in flight until dropped (when the response body
/// ends or is dropped).
#[derive(Debug)]
pub struct Slot {
    shared: Arc<Shared>,
}

impl Slot {
    /// The connection has answered (it speaks HTTP/2).
    pub fn answered(&self) {
        self.shared.answered.store(true, Ordering::Relaxed);
    }

    /// Whether the connection had answered any request.
    pub fn was_answered(&self) -> bool {
        self.shared.answered.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a connect in progress ended, for the requests waiting on it.
type Outcome = Option<Result<(), Arc<str>>>;

/// What a request does next.
pub enum Checkout<'a> {
    /// Send on this connection.
    Use(SendRequest<ProxyBody>, Slot),
    /// Wait for the connection being opened, then check out again.
    Wait(watch::Receiver<Outcome>),
    /// Open a connection (others wait for it).
    Connect(Connecting<'a>),
}

/// The right (and duty) to open a connection; waiters are woken when it is finished or dropped.
pub struct Connecting<'a> {
    conns: &'a H2Conns,
    tx: watch::Sender<Outcome>,
    finished: bool,
}

impl Connecting<'_> {
    /// Adds the new connection; waiters check out again.
    pub fn done(mut self, conn: NewConn) {
        self.finished = true;
        let mut state = self.conns.lock();
        state.connecting = None;
        state.conns.push(Conn::new(conn));
        drop(state);
        self.tx.send_replace(Some(Ok(())));
    }

    /// The connect failed: waiters fail with the same message.
    pub fn fail(mut self, message: &str) {
        self.finished = true;
        self.conns.lock().connecting = None;
        self.tx.send_replace(Some(Err(message.into())));
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Cancelled (the request timed out or went away) or abandoned: waiters see the
            // sender go and check out again, one of them connecting.
            self.conns.lock().connecting = None;
        }
    }
}

#[derive(Default)]
struct State {
    conns: Vec<Conn>,
    connecting: Option<watch::Receiver<Outcome>>,
}

/// The shared HTTP/2 connections of one endpoint.
#[derive(Default)]
pub struct H2Conns {
    state: Mutex<State>,
}

impl H2Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open connections now (for tests).
    pub fn open_count(&self) -> usize {
        let mut state = self.lock();
        state.conns.retain(|c| !c.sender.is_closed());
        state.conns.len()
    }

    /// Adds a connection opened outside a [`Connecting`] (an `auto` endpoint whose HTTP/1.1
    /// connect was answered with ALPN `h2`).
    pub fn add(&self, conn: NewConn) {
        self.lock().conns.push(Conn::new(conn));
    }

    /// The oldest open connection with a free stream, else a wait for the one being opened, else
    /// the duty to open one (or, at [`MAX_CONNECTIONS`], the least busy connection).
    pub fn checkout(&self) -> Checkout<'_> {
        let mut state = self.lock();
        state.conns.retain(|c| !c.sender.is_closed());
        let free = state.conns.iter().position(Conn::has_free_stream);
        let chosen = match free {
            Some(i) => i,
            None => {
                if let Some(rx) = &state.connecting {
                    return Checkout::Wait(rx.clone());
                }
                if state.conns.len() < MAX_CONNECTIONS {
                    let (tx, rx) = watch::channel(None);
                    state.connecting = Some(rx);
                    return Checkout::Connect(Connecting {
                        conns: self,
                        tx,
                        finished: false,
                    });
                }
                (0..state.conns.len())
                    .min_by_key(|&i| state.conns[i].shared.in_flight.load(Ordering::Relaxed))
                    .expect("MAX_CONNECTIONS connections")
            }
        };
        let conn = &mut state.conns[chosen];
        conn.last_used = Instant::now();
        conn.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        Checkout::Use(
            conn.sender.clone(),
            Slot {
                shared: conn.shared.clone(),
            },
        )
    }

    /// Drops closed connections and those idle (no stream) longer than `timeout`; a dropped
    /// connection closes once its last stream ends.
    pub fn evict_expired(&self, timeout: Duration) {
        let now = Instant::now();
        self.lock().conns.retain(|c| {
            !c.sender.is_closed()
                && (c.shared.in_flight.load(Ordering::Relaxed) > 0
                    || now.duration_since(c.last_used) < timeout)
        });
    }
}

/// Waits for the connect a [`Checkout::Wait`] named: `Some(message)` when it failed, `None` when
/// the caller should check out again.
pub async fn wait(mut rx: watch::Receiver<Outcome>) -> Option<Arc<str>> {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => match &*outcome {
            Some(Err(message)) => Some(message.clone()),
            _ => None,
        },
        Err(_) => None,
    }
}

/// The HTTP/2 handshake on `io`; the connection is driven by a task of its own.
pub async fn handshake<I>(io: I, authority: &Authority) -> Result<NewConn, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .handshake(io)
        .await?;
    let shared = Arc::new(Shared {
        in_flight: AtomicUsize::new(0),
        answered: AtomicBool::new(false),
    });
    let conn: Arc<Driven<I>> = Arc::new(Mutex::new(Some(conn)));
    let driver = conn.clone();
    let authority = authority.clone();
    tokio::spawn(async move {
        let ended = poll_fn(|cx| {
            let mut slot = driver.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(conn) = slot.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let polled = Pin::new(conn).poll(cx);
            if polled.is_ready() {
                *slot = None;
            }
            polled
        })
        .await;
        if let Err(err) = ended {
            tracing::debug!(upstream = %authority, error = %err, "upstream HTTP/2 connection ended");
        }
    });
    Ok(NewConn {
        sender,
        shared,
        limit: conn,
    })
}

/// Rewrites an origin-form request with `Host` for HTTP/2: the authority goes into the URI (and
/// so `:authority`), with `:scheme` the connection's; `Host` is removed. Idempotent (a request
/// handed back unsent is already rewritten).
pub fn to_http2(
    req: &mut Request<ProxyBody>,
    scheme: &Scheme,
    fallback: &Authority,
) -> Result<(), String> {
    if req.uri().authority().is_some() {
        return Ok(());
    }
    let authority = match req.headers_mut().remove(header::HOST) {
        Some(host) => Authority::try_from(host.as_bytes())
            .map_err(|e| format!("Host {host:?} cannot be an HTTP/2 :authority: {e}"))?,
        None => fallback.clone(),
    };
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::builder()
        .scheme(scheme.clone())
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("HTTP/2 request target: {e}"))?;
    *req.version_mut() = Version::HTTP_2;
    Ok(())
}

/// Undoes [`to_http2`] (an `auto` endpoint that was answered with HTTP/1.1 after all).
pub fn to_http1(req: &mut Request<ProxyBody>) {
    if let Some(authority) = req.uri().authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    *req.version_mut() = Version::HTTP_11;
}

/// Why a request on an HTTP/2 connection failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The upstream did not process it (`REFUSED_STREAM`, or a stream above a graceful GOAWAY's
    /// last stream id): safe to send again.
    Unprocessed,
    /// The connection broke before it ever answered: likely no HTTP/2 at the other end.
    NotHttp2,
    /// Anything else.
    Other,
}

/// Classifies `err`, from a connection that had (`answered`) or had not answered before.
pub fn classify(err: &hyper::Error, answered: bool) -> Failure {
    let h2 = {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut found = None;
        while let Some(e) = cur {
            if let Some(h2) = e.downcast_ref::<::h2::Error>() {
                found = Some(h2);
                break;
            }
            cur = e.source();
        }
        found
    };
    match h2 {
        Some(e)
            if e.is_remote()
                && e.is_reset()
                && e.reason() == Some(::h2::Reason::REFUSED_STREAM) =>
        {
            Failure::Unprocessed
        }
        Some(e)
            if e.is_remote() && e.is_go_away() && e.reason() == Some(::h2::Reason::NO_ERROR) =>
        {
            Failure::Unprocessed
        }
        Some(e) if !answered && (e.is_io() || (e.is_go_away() && !e.is_remote())) => {
            Failure::NotHttp2
        }
        // hyper turns h2's I/O errors into its own (a peer that closed on the preface).
        None if !answered
            && (err.is_closed() || err.is_incomplete_message() || has_io_error(err)) =>
        {
            Failure::NotHttp2
        }
        _ => Failure::Other,
    }
}

fn has_io_error(err: &hyper::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<std::io::Error>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Where a request body's own error is kept, since HTTP/2 turns it into a stream reset.
pub type BodyErrorSlot = Arc<Mutex<Option<BoxError>>>;

/// A request body that keeps its error in a [`BodyErrorSlot`] (what an HTTP/2 connection sees is
/// only that the body failed), so the caller can answer as for HTTP/1.1 (413, a plugin's
/// status).
pub struct TapBody {
    inner: ProxyBody,
    slot: BodyErrorSlot,
}

/// Wraps `req`'s body in a [`TapBody`] unless it is already complete.
pub fn tap_body(req: Request<ProxyBody>) -> (Request<ProxyBody>, Option<BodyErrorSlot>) {
    if req.body().is_end_stream() {
        return (req, None);
    }
    let slot = BodyErrorSlot::default();
    let tapped = slot.clone();
    let req = req.map(|inner| {
        TapBody {
            inner,
            slot: tapped,
        }
        .boxed_unsync()
    });
    (req, Some(slot))
}

/// The body failed (the cause is in the slot).
#[derive(Debug, thiserror::Error)]
#[error("request body failed")]
struct BodyFailed;

impl Body for TapBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(err))) => {
                *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                Poll::Ready(Some(Err(Box::new(BodyFailed))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body error kept in `slot`, if the body failed.
pub fn body_error(slot: Option<&BodyErrorSlot>) -> Option<BoxError> {
    slot?.lock().unwrap_or_else(PoisonError::into_inner).take()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, host: Option<&str>) -> Request<ProxyBody> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(crate::plugin::respond::empty()).unwrap()
    }

    #[test]
    fn host_becomes_the_authority_and_back() {
        let fallback: Authority = "10.0.0.1:8080".parse().unwrap();
        // (uri, host, scheme, expected uri after to_http2)
        let table = [
            (
                "/a?b=c",
                Some("example.com"),
                Scheme::HTTP,
                "http://example.com/a?b=c",
            ),
            (
                "/",
                Some("example.com:8443"),
                Scheme::HTTPS,
                "https://example.com:8443/",
            ),
            ("/x", None, Scheme::HTTP, "http://10.0.0.1:8080/x"),
            ("/v6", Some("[::1]:80"), Scheme::HTTP, "http://[::1]:80/v6"),
        ];
        for (uri, host, scheme, expected) in table {
            let mut r = req(uri, host);
            to_http2(&mut r, &scheme, &fallback).unwrap();
            assert_eq!(r.uri().to_string(), expected, "{uri} {host:?}");
            assert!(
                !r.headers().contains_key(header::HOST),
                "{uri}: Host removed"
            );
            assert_eq!(r.version(), Version::HTTP_2);
            to_http2(&mut r, &scheme, &fallback).unwrap();
            assert_eq!(r.uri().to_string(), expected, "idempotent");
            to_http1(&mut r);
            assert_eq!(r.uri().to_string(), uri);
            let back = r.headers()[header::HOST].to_str().unwrap().to_owned();
            assert_eq!(back, expected.split('/').nth(2).unwrap());
        }
        let mut bad = req("/", Some("a b"));
        assert!(to_http2(&mut bad, &Scheme::HTTP, &fallback)
            .unwrap_err()
            .contains(":authority"));
    }

    #[test]
    fn a_saturated_connection_makes_the_next_request_connect() {
        let conns = H2Conns::default();
        // No connection: the first request connects, the next waits for it.
        let Checkout::Connect(connecting) = conns.checkout() else {
            panic!("first checkout connects")
        };
        assert!(matches!(conns.checkout(), Checkout::Wait(_)));
        // A failed connect is reported to waiters and frees the duty.
        let Checkout::Wait(rx) = conns.checkout() else {
            panic!("waits")
        };
        connecting.fail("refused");
        assert_eq!(
            futures::executor::block_on(wait(rx)).as_deref(),
            Some("refused")
        );
        let Checkout::Connect(again) = conns.checkout() else {
            panic!("connects again")
        };
        // A dropped (cancelled) connect frees the duty too.
        drop(again);
        assert!(matches!(conns.checkout(), Checkout::Connect(_)));
    }
}
