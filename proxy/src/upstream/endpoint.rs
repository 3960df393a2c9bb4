//! One upstream endpoint (`scheme://host:port`) and its idle keep-alive connections.
//!
//! The pool is ours rather than hyper-util's legacy client: a [`UpstreamPool`] node holds its
//! [`Endpoint`] directly (resolved once per snapshot), so a request neither hashes a pool key
//! nor spawns a task to wait for the connection to become idle again. A connection goes back
//! to its endpoint when the response body has been read to the end ([`Checkin`]); one whose
//! body is dropped early is closed. A connection that the upstream closed while idle is
//! noticed on checkout, and a request that could not be written on it is sent again on
//! another connection (hyper hands it back unsent).
//!
//! [`UpstreamPool`]: super::pool::UpstreamPool

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tower_service::Service;

use super::client::Connector;
use crate::plugin::ProxyBody;

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened (refused, unreachable, connect timeout, TLS handshake).
    #[error("{0}")]
    Connect(String),
    /// The request failed on an open connection.
    #[error(transparent)]
    Request(#[from] hyper::Error),
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
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// An upstream endpoint: where to connect, and the idle connections to it.
pub struct Endpoint {
    uri: Uri,
    connector: Connector,
    settings: IdleSettings,
    idle: Mutex<Vec<Idle>>,
}

/// A connection lent to one request, returned to its endpoint by [`Checkin::done`].
pub struct Checkin {
    sender: SendRequest<ProxyBody>,
    endpoint: Arc<Endpoint>,
}

impl Checkin {
    /// The response has been read to its end: the connection may serve another request.
    pub fn done(self) {
        self.endpoint.put(self.sender);
    }
}

impl std::fmt::Debug for Checkin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkin")
            .field("endpoint", &self.endpoint.uri)
            .finish()
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("uri", &self.uri).finish()
    }
}

impl Endpoint {
    /// An endpoint with no connections yet.
    pub fn new(
        scheme: Scheme,
        authority: Authority,
        connector: Connector,
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
            connector,
            settings,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// `host:port`.
    pub fn authority(&self) -> &Authority {
        self.uri.authority().expect("built with an authority")
    }

    /// Idle connections now (for tests and the reaper).
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still open.
    fn take(&self) -> Option<SendRequest<ProxyBody>> {
        let now = Instant::now();
        let mut idle = self.lock();
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() && now.duration_since(conn.since) < self.settings.timeout {
                return Some(conn.sender);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.settings.max {
            // The oldest is the least likely to be wanted again.
            idle.remove(0);
        }
        idle.push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Closes idle connections that are closed or older than the idle timeout.
    pub fn evict_expired(&self) {
        let now = Instant::now();
        self.lock().retain(|conn| {
            !conn.sender.is_closed() && now.duration_since(conn.since) < self.settings.timeout
        });
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection or a new one. The
    /// connection comes back to this endpoint when the response body ends ([`Checkin`]).
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Option<Checkin>), SendError> {
        // Idle connections first; one the upstream closed hands the request back unsent.
        while let Some(mut sender) = self.take() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.lend(resp, sender)),
                Err(mut err) => match err.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Request(err.into_error())),
                },
            }
        }
        // Boxed: the connect and handshake state (TLS included) would otherwise sit in every
        // request's future, which is moved whole; a new connection is the rare case.
        let mut sender = Box::pin(self.connect()).await?;
        let resp = sender.send_request(req).await?;
        Ok(self.lend(resp, sender))
    }

    fn lend(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        sender: SendRequest<ProxyBody>,
    ) -> (Response<Incoming>, Option<Checkin>) {
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the upgraded tunnel.
            return (resp, None);
        }
        if framing_in_doubt(resp.headers()) {
            // Dropping the sender closes the connection once this response is read: bytes
            // after a doubtful message could be read as the next response.
            tracing::debug!(endpoint = %self.authority(), "upstream response with both Content-Length and Transfer-Encoding; connection not reused");
            return (resp, None);
        }
        let checkin = Checkin {
            sender,
            endpoint: self.clone(),
        };
        if http_body::Body::is_end_stream(resp.body()) {
            checkin.done();
            return (resp, None);
        }
        (resp, Some(checkin))
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, SendError> {
        let mut connector = self.connector.clone();
        let io = connector
            .call(self.uri.clone())
            .await
            .map_err(|err| SendError::Connect(root_cause(&*err)))?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|err| SendError::Connect(root_cause(&err)))?;
        let authority = self.authority().clone();
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(upstream = %authority, error = %err, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// The innermost cause of an error (`connection refused` rather than `client error`).
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whether an upstream response's framing is in doubt (RFC 9112 §6.3: `Transfer-Encoding`
/// with `Content-Length` "ought to be handled as an error"; hyper reads it as chunked): the
/// connection is then never reused.
pub(crate) fn framing_in_doubt(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        && headers.contains_key(http::header::CONTENT_LENGTH)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

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

    fn endpoint(uri: &Uri) -> Arc<Endpoint> {
        let client = ClientCache::default()
            .get(&ClientKey {
                connect_timeout_ms: 1000,
                insecure: false,
                server_name: None,
            })
            .unwrap();
        client.endpoint(uri.scheme().unwrap(), uri.authority().unwrap())
    }

    fn request(host: &str) -> Request<ProxyBody> {
        Request::builder()
            .uri("/x")
            .header(http::header::HOST, host)
            .body(crate::plugin::respond::empty())
            .unwrap()
    }

    async fn read_all(endpoint: &Arc<Endpoint>, host: &str) -> Result<String, SendError> {
        let (resp, checkin) = endpoint.send(request(host)).await?;
        let body = crate::upstream::guarded::GuardedBody::new(resp.into_body(), None, checkin);
        let bytes = body.collect().await?.to_bytes();
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
        let (resp, checkin) = ep.send(request(&host)).await.unwrap();
        drop(crate::upstream::guarded::GuardedBody::new(
            resp.into_body(),
            None,
            checkin,
        ));
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
            client.connector().clone(),
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
        let first = client.endpoint(scheme, authority);
        let second = client.endpoint(scheme, authority);
        assert!(Arc::ptr_eq(&first, &second));
        drop((first, second));
        let third = client.endpoint(scheme, authority);
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
