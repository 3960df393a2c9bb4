//! HTTP/2 to upstreams on real sockets: h2c (Service `http2: always`, and a backend port's
//! `appProtocol: kubernetes.io/h2c` through its EndpointSlice), h2 over TLS chosen by ALPN (and
//! HTTP/1.1 when the upstream offers only that), HTTP/1.1 and HTTP/2 clients, gRPC-style
//! trailers, bidirectional streaming, multiplexing onto one connection, the server's stream
//! limit, recovery after GOAWAY and after a restart, and the 502 when the upstream does not
//! speak HTTP/2.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::mpsc;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Barrier};
use tokio::task::JoinSet;

use hookway_crds::snapshot::{Scheme, Snapshot, UpstreamProtocol};

use crate::support::*;

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// How a test upstream behaves.
#[derive(Clone, Default)]
struct Behaviour {
    /// TLS with these ALPN protocols (HTTP/2 when `h2` is negotiated, HTTP/1.1 otherwise);
    /// cleartext HTTP/2 (h2c, prior knowledge) when `None`.
    tls: Option<Vec<Vec<u8>>>,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`.
    max_streams: Option<u32>,
    /// Requests to `/barrier` wait until this many are in flight.
    barrier: Option<Arc<Barrier>>,
}

/// A hyper upstream speaking HTTP/2 (and HTTP/1.1 over TLS when ALPN says so) that counts the
/// connections it accepts and can send GOAWAY on all of them.
struct H2Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
    goaway: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for H2Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl H2Upstream {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, behaviour)
    }

    /// Listens on `addr` again (an upstream restarted on the same port).
    async fn restart(addr: SocketAddr, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve(listener, behaviour)
    }

    fn serve(listener: TcpListener, behaviour: Behaviour) -> Self {
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (goaway, goaway_rx) = watch::channel(false);
        let tls = behaviour.tls.clone().map(|alpn| {
            let ca = Ca::new();
            let (cert_pem, key_pem) = ca.leaf(&["backend.test"]);
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
            config.alpn_protocols = alpn;
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let (count, done) = (accepted.clone(), ended.clone());
        let task = tokio::spawn(async move {
            // Dropped with the task: aborting it closes every connection (a hard stop).
            let mut conns = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (behaviour, tls, goaway, done) = (
                    behaviour.clone(),
                    tls.clone(),
                    goaway_rx.clone(),
                    done.clone(),
                );
                conns.spawn(async move {
                    serve_conn(tcp, tls, behaviour, goaway).await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            accepted,
            ended,
            goaway,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Sends GOAWAY on every open connection (hyper's graceful shutdown) and waits until they
    /// have all ended.
    async fn goaway_all(&self) {
        let open = self.accepted();
        self.goaway.send_replace(true);
        let ended = self.ended.clone();
        wait_until("the upstream's connections ended after GOAWAY", || {
            let ended = ended.clone();
            async move { ended.load(Ordering::SeqCst) >= open }
        })
        .await;
        // New connections are served normally.
        self.goaway.send_replace(false);
    }
}

async fn serve_conn(
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    behaviour: Behaviour,
    goaway: watch::Receiver<bool>,
) {
    let barrier = behaviour.barrier.clone();
    let svc = service_fn(move |req| handle(req, barrier.clone()));
    match tls {
        None => serve_h2(TokioIo::new(tcp), svc, behaviour.max_streams, goaway).await,
        Some(acceptor) => {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                serve_h2(TokioIo::new(stream), svc, behaviour.max_streams, goaway).await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            }
        }
    }
}

async fn serve_h2<I, S>(io: I, svc: S, max_streams: Option<u32>, mut goaway: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    if let Some(max) = max_streams {
        builder.max_concurrent_streams(max);
    }
    let mut conn = pin!(builder.serve_connection(io, svc));
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = goaway.wait_for(|g| *g) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

fn grpc_ok() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("fine"));
    trailers
}

/// An Upgrade (HTTP/1.1 only): 101 and an echoing tunnel; `/grpc`: the request body back, then trailers `grpc-status: 0`; `/stream`: each request
/// data frame echoed at once, trailers when the request ends; `/barrier`: waits for the
/// barrier, then echoes; anything else: the request as JSON (`version`, `authority`, `path`,
/// `headers`, `body`).
async fn handle(
    mut req: Request<Incoming>,
    barrier: Option<Arc<Barrier>>,
) -> Result<Response<Body>, Infallible> {
    if req.headers().contains_key("upgrade") {
        // HTTP/1.1 only: 101, then the tunnel echoes.
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(full(Bytes::new()))
            .unwrap());
    }
    let te = req.headers().get("te").cloned();
    match req.uri().path() {
        "/grpc" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                vec![Ok(Frame::data(body)), Ok(Frame::trailers(grpc_ok()))];
            let mut resp =
                Response::new(StreamBody::new(futures::stream::iter(frames)).boxed_unsync());
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            if let Some(te) = te {
                resp.headers_mut().insert("x-seen-te", te);
            }
            Ok(resp)
        }
        "/stream" => {
            let (tx, rx) = mpsc::unbounded::<Result<Frame<Bytes>, Infallible>>();
            let mut body = req.into_body();
            tokio::spawn(async move {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        if tx.unbounded_send(Ok(Frame::data(data))).is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.unbounded_send(Ok(Frame::trailers(grpc_ok())));
            });
            Ok(Response::new(StreamBody::new(rx).boxed_unsync()))
        }
        path => {
            if path == "/barrier" {
                if let Some(b) = barrier {
                    b.wait().await;
                }
            }
            let version = format!("{:?}", req.version());
            let authority = req.uri().authority().map(|a| a.to_string());
            let path = req.uri().path().to_owned();
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            // A body the proxy cut (over its limit) reads as empty.
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let json = serde_json::json!({
                "version": version,
                "authority": authority,
                "path": path,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            });
            Ok(Response::new(full(json.to_string())))
        }
    }
}

/// One route `/` to Service `svc` on `addr`, spoken to with `protocol` over `scheme`.
fn h2_snapshot(addr: SocketAddr, scheme: Scheme, protocol: UpstreamProtocol) -> Snapshot {
    let mut up = upstream("svc", &[addr]);
    up.scheme = scheme;
    up.protocol = protocol;
    up.tls_insecure_skip_verify = scheme == Scheme::Https;
    up.retries = 1;
    snapshot(1, vec![route("r", &[], vec![], "svc")], vec![up], vec![])
}

/// An HTTP/2 (prior knowledge) client connection to the proxy's plain listener.
/// An h2c test upstream with `behaviour` and a proxy whose snapshot sends everything to it over
/// prior-knowledge HTTP/2.
async fn h2c_proxy(behaviour: Behaviour) -> (H2Upstream, Proxy) {
    let up = H2Upstream::start(behaviour).await;
    let proxy = Proxy::start(Some(h2_snapshot(
        up.addr,
        Scheme::Http,
        UpstreamProtocol::Http2,
    )))
    .await;
    (up, proxy)
}

async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// GET `/` through the proxy with HTTP/1.1; the upstream's JSON.
async fn get_json(proxy: &Proxy) -> serde_json::Value {
    let resp = client().get(proxy.url("/echo")).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn h2c_upstream_by_snapshot_protocol_serves_http1_clients() {
    let (up, proxy) = h2c_proxy(Behaviour::default()).await;
    let resp = client()
        .get(proxy.url("/echo?q=1"))
        .header("host", "grpc.test:8080")
        .header("te", "trailers")
        .header("connection", "te, x-hop")
        .header("x-hop", "gone")
        .header("keep-alive", "timeout=5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.version(),
        http::Version::HTTP_11,
        "the client's version"
    );
    let seen = json(resp).await;
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(
        seen["authority"], "grpc.test:8080",
        "Host became :authority"
    );
    assert_eq!(seen["path"], "/echo");
    let headers = seen["headers"].as_object().unwrap();
    assert!(!headers.contains_key("host"), "{headers:?}");
    for hop in [
        "connection",
        "x-hop",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(
            !headers.contains_key(hop),
            "{hop} reached the upstream: {headers:?}"
        );
    }
    assert_eq!(headers["te"], "trailers", "the one TE HTTP/2 allows");
    assert_eq!(headers["x-forwarded-host"], "grpc.test:8080");
    // A POST with a body, and a second request on the same upstream connection.
    let resp = client()
        .post(proxy.url("/echo"))
        .body("hello h2")
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["body"], "hello h2");
    assert_eq!(up.accepted(), 1, "one HTTP/2 connection carries both");
}

#[tokio::test]
async fn grpc_unary_call_gets_its_trailers_through() {
    let (_up, proxy) = h2c_proxy(Behaviour::default()).await;
    grpc_call_through(proxy.http, b"\x00\x00\x00\x00\x05hello").await;
}

/// A unary gRPC-style call through the proxy at `addr` to the test upstream (which echoes the
/// message on `/grpc` with `grpc-status: 0` trailers); asserts what reaches the client: the
/// status, `te: trailers` seen upstream (only an HTTP/2 upstream gets it), the trailers and the
/// message.
async fn grpc_call_through(addr: SocketAddr, message: &'static [u8]) {
    let mut h2 = h2_client(addr).await;
    let req = Request::post("http://grpc.test/grpc")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(message))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, h2.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(
        resp.headers()["x-seen-te"],
        "trailers",
        "te: trailers forwarded"
    );
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    assert_eq!(&collected.to_bytes()[..], message);
}

/// The next data frame of `body` (bounded wait).
async fn next_data(body: &mut Incoming) -> Bytes {
    loop {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("the echo arrives while the request is still open")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            return data;
        }
    }
}

#[tokio::test]
async fn bidirectional_stream_echoes_while_the_request_is_open() {
    let (_up, proxy) = h2c_proxy(Behaviour::default()).await;
    let mut h2 = h2_client(proxy.http).await;
    let (tx, rx) = mpsc::unbounded::<Result<Frame<Bytes>, Infallible>>();
    let req = Request::post("http://grpc.test/stream")
        .header("te", "trailers")
        .body(StreamBody::new(rx).boxed_unsync())
        .unwrap();
    tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"ping 1"))))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, h2.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    assert_eq!(&next_data(&mut body).await[..], b"ping 1");
    tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"ping 2"))))
        .unwrap();
    assert_eq!(&next_data(&mut body).await[..], b"ping 2");
    drop(tx); // the request ends; the upstream answers with trailers
    let rest = tokio::time::timeout(WAIT, body.collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.trailers().unwrap()["grpc-status"], "0");
}

#[tokio::test]
async fn concurrent_requests_share_one_upstream_connection() {
    const N: usize = 8;
    let up = H2Upstream::start(Behaviour {
        barrier: Some(Arc::new(Barrier::new(N))),
        ..Behaviour::default()
    })
    .await;
    let proxy = Proxy::start(Some(h2_snapshot(
        up.addr,
        Scheme::Http,
        UpstreamProtocol::Http2,
    )))
    .await;
    // Every request waits at the upstream until all N are there: they are in flight together.
    let c = client();
    let mut calls = JoinSet::new();
    for _ in 0..N {
        let (c, url) = (c.clone(), proxy.url("/barrier"));
        calls.spawn(async move { c.get(url).send().await.unwrap().status() });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(
        up.accepted(),
        1,
        "{N} concurrent requests, one HTTP/2 connection"
    );
}

#[tokio::test]
async fn a_saturated_connection_opens_another_within_the_servers_stream_limit() {
    const N: usize = 4;
    let up = H2Upstream::start(Behaviour {
        max_streams: Some(2),
        barrier: Some(Arc::new(Barrier::new(N))),
        ..Behaviour::default()
    })
    .await;
    let proxy = Proxy::start(Some(h2_snapshot(
        up.addr,
        Scheme::Http,
        UpstreamProtocol::Http2,
    )))
    .await;
    // One request first: the connection learns the server's limit (2) from its SETTINGS.
    assert_eq!(get_json(&proxy).await["version"], "HTTP/2.0");
    let c = client();
    let mut calls = JoinSet::new();
    for _ in 0..N {
        let (c, url) = (c.clone(), proxy.url("/barrier"));
        calls.spawn(async move { c.get(url).send().await.unwrap().status() });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(up.accepted(), 2, "{N} streams at 2 per connection");
}

#[tokio::test]
async fn tls_upstream_speaks_what_alpn_picked() {
    // (server's ALPN, snapshot protocol, expected version at the upstream)
    let cases: &[(&[&[u8]], UpstreamProtocol, &str)] = &[
        (&[b"h2"], UpstreamProtocol::Auto, "HTTP/2.0"),
        (&[b"h2", b"http/1.1"], UpstreamProtocol::Auto, "HTTP/2.0"),
        (&[b"http/1.1"], UpstreamProtocol::Auto, "HTTP/1.1"),
        (&[], UpstreamProtocol::Auto, "HTTP/1.1"),
        (&[b"h2", b"http/1.1"], UpstreamProtocol::Http1, "HTTP/1.1"),
        (&[b"h2"], UpstreamProtocol::Http2, "HTTP/2.0"),
    ];
    for (alpn, protocol, expected) in cases {
        let up = H2Upstream::start(Behaviour {
            tls: Some(alpn.iter().map(|p| p.to_vec()).collect()),
            ..Behaviour::default()
        })
        .await;
        let proxy = Proxy::start(Some(h2_snapshot(up.addr, Scheme::Https, *protocol))).await;
        for _ in 0..3 {
            let seen = get_json(&proxy).await;
            assert_eq!(seen["version"], *expected, "{alpn:?} {protocol:?}");
        }
        assert_eq!(
            up.accepted(),
            1,
            "{alpn:?} {protocol:?}: one kept-alive connection"
        );
    }
}

#[tokio::test]
async fn an_upgrade_to_an_alpn_upstream_goes_over_http1() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = H2Upstream::start(Behaviour {
        tls: Some(vec![b"h2".to_vec(), b"http/1.1".to_vec()]),
        ..Behaviour::default()
    })
    .await;
    let proxy = Proxy::start(Some(h2_snapshot(
        up.addr,
        Scheme::Https,
        UpstreamProtocol::Auto,
    )))
    .await;
    assert_eq!(get_json(&proxy).await["version"], "HTTP/2.0", "h2 by ALPN");
    let mut conn = TcpStream::connect(proxy.http).await.unwrap();
    conn.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, conn.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    conn.write_all(b"over http/1.1").await.unwrap();
    let mut echoed = [0u8; 13];
    tokio::time::timeout(WAIT, conn.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"over http/1.1");
    assert_eq!(
        up.accepted(),
        2,
        "the h2 connection, and one HTTP/1.1 for the tunnel"
    );
    // Plain requests stay on the HTTP/2 connection.
    assert_eq!(get_json(&proxy).await["version"], "HTTP/2.0");
    assert_eq!(up.accepted(), 2);
}

/// Log output, shared.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_http1_only_upstream_on_an_h2c_service_is_a_clear_502() {
    // `#[tokio::test]` runs the proxy's tasks on this thread: its log lines are captured.
    let logs = Captured::default();
    let _capture = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer({
                let logs = logs.clone();
                move || logs.clone()
            })
            .with_ansi(false)
            .finish(),
    );
    let http1 = EchoServer::start("http1-only").await;
    let proxy = Proxy::start(Some(h2_snapshot(
        http1.addr,
        Scheme::Http,
        UpstreamProtocol::Http2,
    )))
    .await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("HTTP/2") && body.contains("h2c") && body.contains(&http1.addr.to_string()),
        "{body}"
    );
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let line = logged
        .lines()
        .find(|l| l.contains("upstream protocol error"))
        .unwrap_or_else(|| panic!("no log line: {logged}"));
    assert!(
        line.contains("WARN") && line.contains("default/svc") && line.contains("h2c"),
        "{line}"
    );
    // TLS offering only `h2` to an HTTP/1.1-only server fails the handshake, also a 502.
    let tls = H2Upstream::start(Behaviour {
        tls: Some(vec![b"http/1.1".to_vec()]),
        ..Behaviour::default()
    })
    .await;
    proxy
        .apply({
            let mut s = h2_snapshot(tls.addr, Scheme::Https, UpstreamProtocol::Http2);
            s.version = 2;
            s
        })
        .await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(body.contains("connect error"), "{body}");
}

#[tokio::test]
async fn an_upgrade_cannot_cross_an_http2_only_upstream() {
    let (up, proxy) = h2c_proxy(Behaviour::default()).await;
    let resp = client()
        .get(proxy.url("/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.unwrap().contains("Upgrade"));
    assert_eq!(up.accepted(), 0);
}

#[tokio::test]
async fn goaway_and_restart_are_recovered_from() {
    let up = H2Upstream::start(Behaviour::default()).await;
    let addr = up.addr;
    let proxy = Proxy::start(Some(h2_snapshot(
        addr,
        Scheme::Http,
        UpstreamProtocol::Http2,
    )))
    .await;
    assert_eq!(get_json(&proxy).await["version"], "HTTP/2.0");
    // GOAWAY: the connection is closed for new streams; the next request gets a new one.
    up.goaway_all().await;
    for _ in 0..3 {
        assert_eq!(get_json(&proxy).await["version"], "HTTP/2.0");
    }
    assert_eq!(up.accepted(), 2);
    // A hard stop: the connection is gone and nothing listens (502), then a new upstream on
    // the same port is used.
    drop(up);
    wait_until("the upstream stopped", || refuses_connections(addr)).await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let up = H2Upstream::restart(addr, Behaviour::default()).await;
    for _ in 0..3 {
        assert_eq!(get_json(&proxy).await["version"], "HTTP/2.0");
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn standalone_service_selects_h2c_by_http2_or_app_protocol() {
    let up = H2Upstream::start(Behaviour::default()).await;
    let port = up.addr.port();
    let dir = ManifestDir::new();
    // `http2: always` on static nodes.
    dir.write(
        "always.yaml",
        &format!(
            "apiVersion: hookway.dev/v1alpha1\nkind: Service\nmetadata: {{name: always, namespace: default}}\nspec:\n  http2: always\n  nodes: [{{address: 127.0.0.1, port: {port}}}]\n---\napiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {{name: always, namespace: default}}\nspec:\n  rules: [{{path: {{type: Prefix, value: /always}}}}]\n  service: always\n"
        ),
    );
    // A core Service whose port says `appProtocol: kubernetes.io/h2c`, with its EndpointSlice.
    dir.write(
        "app-protocol.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: grpc-backend, namespace: default}}\nspec:\n  ports: [{{name: grpc, port: 80, appProtocol: kubernetes.io/h2c}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: grpc-backend-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: grpc-backend}}\naddressType: IPv4\nendpoints: [{{addresses: [127.0.0.1]}}]\nports: [{{name: grpc, port: {port}}}]\n---\napiVersion: hookway.dev/v1alpha1\nkind: Service\nmetadata: {{name: by-app-protocol, namespace: default}}\nspec:\n  backend: {{name: grpc-backend, port: 80}}\n---\napiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {{name: by-app-protocol, namespace: default}}\nspec:\n  rules: [{{path: {{type: Prefix, value: /app}}}}]\n  service: by-app-protocol\n"
        ),
    );
    let proxy = standalone_proxy(&dir).await;
    for path in ["/always", "/app"] {
        let resp = client().get(proxy.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let seen = json(resp).await;
        assert_eq!(seen["version"], "HTTP/2.0", "{path}");
        assert_eq!(seen["path"], path);
    }
}

/// A raw HTTP/2 upstream (the h2 crate) that refuses the first `refuse` streams it is sent with
/// `REFUSED_STREAM` and answers the rest `200 ok`; it counts the streams it saw.
async fn refusing_upstream(refuse: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    if count.fetch_add(1, Ordering::SeqCst) < refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let resp = Response::new(());
                    if let Ok(mut body) = respond.send_response(resp, false) {
                        let _ = body.send_data(Bytes::from_static(b"ok"), true);
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_refused_stream_is_retried_like_a_connect_failure() {
    let (addr, seen) = refusing_upstream(1).await;
    let proxy = Proxy::start(Some(h2_snapshot(
        addr,
        Scheme::Http,
        UpstreamProtocol::Http2,
    )))
    .await;
    // Idempotent and bodiless: sent again (the retry budget is 1).
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "refused once, then answered"
    );

    // A POST with a body is not retried (its body is gone), but the answer says why.
    let (addr, seen) = refusing_upstream(1).await;
    proxy
        .apply({
            let mut s = h2_snapshot(addr, Scheme::Http, UpstreamProtocol::Http2);
            s.version = 2;
            s
        })
        .await;
    let resp = client()
        .post(proxy.url("/"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(body.contains("did not process"), "{body}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_413_on_an_h2_upstream_too() {
    let up = H2Upstream::start(Behaviour::default()).await;
    let mut config = test_config();
    config.limits.max_body_bytes = 1024;
    let proxy = Proxy::start_with(
        Some(h2_snapshot(up.addr, Scheme::Http, UpstreamProtocol::Http2)),
        config,
    )
    .await;
    // No Content-Length: the limit is only found while the body streams upstream.
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..8)
        .map(|_| Ok(Frame::data(Bytes::from(vec![b'x'; 512]))))
        .collect();
    let req = Request::post("http://big.test/echo")
        .body(StreamBody::new(futures::stream::iter(frames)).boxed_unsync())
        .unwrap();
    let mut h2 = h2_client(proxy.http).await;
    let resp = tokio::time::timeout(WAIT, h2.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"request body too large\n");
}

/// An Ingress with ingress-nginx's `backend-protocol: GRPC` reaches its backend over
/// prior-knowledge HTTP/2, and a gRPC call's trailers come back to the client.
#[tokio::test]
async fn an_ingress_with_backend_protocol_grpc_speaks_h2c() {
    let up = H2Upstream::start(Behaviour::default()).await;
    let port = up.addr.port();
    let dir = ManifestDir::new();
    dir.write(
        "grpc-ingress.yaml",
        &format!(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: hookway}}\nspec: {{controller: hookway.dev/ingress-controller}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: greeter, namespace: default}}\nspec:\n  ports: [{{name: grpc, port: 50051}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: greeter-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: greeter}}\naddressType: IPv4\nendpoints: [{{addresses: [127.0.0.1]}}]\nports: [{{name: grpc, port: {port}}}]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: greeter\n  namespace: default\n  annotations: {{nginx.ingress.kubernetes.io/backend-protocol: GRPC}}\nspec:\n  ingressClassName: hookway\n  rules:\n  - host: grpc.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: greeter, port: {{name: grpc}}}}}}}}\n"
        ),
    );
    let proxy = standalone_proxy(&dir).await;
    grpc_call_through(proxy.http, b"\x00\x00\x00\x00\x02hi").await;
}
