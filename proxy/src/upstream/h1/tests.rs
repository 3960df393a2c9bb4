//! The HTTP/1.1 client against scripted upstreams on real sockets: odd and malicious responses,
//! keep-alive reuse, streaming both ways.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::plugin::ProxyBody;
use crate::upstream::client::{ClientCache, ClientKey};
use crate::upstream::endpoint::{test_endpoint as endpoint, Endpoint, SendError};
use hookway_crds::snapshot::UpstreamProtocol;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// What the upstream does with one request.
#[derive(Clone, Copy)]
enum Reply {
    /// Writes these bytes and waits for the next request.
    Raw(&'static [u8]),
    /// Writes these bytes and closes the connection.
    Close(&'static [u8]),
}

/// A request as the upstream read it.
async fn read_request<S: AsyncRead + Unpin>(sock: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let mut total = end + 4;
            if let Some(cl) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                total += cl;
            } else if head.contains("transfer-encoding: chunked") {
                match buf[end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                    Some(at) => total = end + at + 5,
                    None => total = usize::MAX,
                }
            }
            if buf.len() >= total {
                return Some(buf.drain(..total).collect());
            }
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An upstream that answers its n-th request (over all connections) with `replies[n]`, and
/// `OK` after the last. Counts connections and keeps the requests it read.
struct Upstream {
    uri: Uri,
    accepted: Arc<AtomicUsize>,
    requests: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

async fn upstream(replies: Vec<Reply>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(replies);
    let (counter, seen) = (accepted.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let (next, replies, seen) = (next.clone(), replies.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_request(&mut sock, &mut buf).await {
                    seen.lock().unwrap().push(req);
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    match replies.get(n).copied().unwrap_or(Reply::Raw(OK)) {
                        Reply::Raw(bytes) => {
                            if sock.write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                        Reply::Close(bytes) => {
                            let _ = sock.write_all(bytes).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    Upstream {
        uri: format!("http://{addr}/").parse().unwrap(),
        accepted,
        requests,
    }
}

fn request(method: Method, body: ProxyBody) -> Request<ProxyBody> {
    Request::builder()
        .method(method)
        .uri("/x")
        .header(http::header::HOST, "upstream")
        .body(body)
        .unwrap()
}

/// What a request ended with.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A response whose body read to its end: status, body, trailer names.
    Body(u16, String, Vec<String>),
    /// No response: the error's text.
    SendFailed(String),
    /// The body failed: the error's text.
    BodyFailed(String),
}

async fn fetch(ep: &Arc<Endpoint>, method: Method) -> Outcome {
    let resp = match ep
        .send(request(method, crate::plugin::respond::empty()))
        .await
    {
        Ok(sent) => sent,
        Err(err) => return Outcome::SendFailed(err.to_string()),
    };
    let status = resp.status().as_u16();
    match resp.into_body().collect().await {
        Ok(collected) => {
            let trailers = collected
                .trailers()
                .map(|t| t.keys().map(|k| k.to_string()).collect())
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
            Outcome::Body(status, body, trailers)
        }
        Err(err) => Outcome::BodyFailed(err.to_string()),
    }
}

fn contains(outcome: &Outcome, text: &str) -> bool {
    match outcome {
        Outcome::SendFailed(m) | Outcome::BodyFailed(m) => m.contains(text),
        Outcome::Body(..) => false,
    }
}

/// How a case's outcome is checked.
type Check = fn(&Outcome) -> bool;

/// A case of `odd_and_malicious_responses`: its name, the request's method, the upstream's
/// answer, what the request must get, whether the connection is reused for the next request.
type Case = (&'static str, Method, Reply, Check, bool);

fn case(name: &'static str, method: Method, reply: Reply, check: Check, reused: bool) -> Case {
    (name, method, reply, check, reused)
}

#[tokio::test]
async fn odd_and_malicious_responses() {
    use Outcome::*;
    let cases = vec![
        case("CL and TE", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            |o| matches!(o, SendFailed(_)) && contains(o, "both Transfer-Encoding and Content-Length"), false),
        case("two differing CLs", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd"),
            |o| contains(o, "differing Content-Length"), false),
        case("negative CL", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: -3\r\n\r\nabc"),
            |o| contains(o, "invalid Content-Length"), false),
        case("chunk size overflow", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
            |o| matches!(o, BodyFailed(_)) && contains(o, "chunk size too large"), false),
        case("negative chunk size", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n"),
            |o| contains(o, "invalid chunk size line"), false),
        case("garbage chunk size", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
            |o| contains(o, "invalid chunk size line"), false),
        case("chunk data longer than its size", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"),
            |o| contains(o, "no CRLF after chunk data"), false),
        case("obs-fold", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\nx-a: 1\r\n  folded\r\ncontent-length: 2\r\n\r\nok"),
            |o| matches!(o, SendFailed(_)) && contains(o, "invalid response"), false),
        case("a NUL in a value", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\nx-a: 1\x002\r\ncontent-length: 2\r\n\r\nok"),
            |o| contains(o, "invalid response"), false),
        case("not HTTP", Method::GET, Reply::Raw(b"SSH-2.0-OpenSSH\r\n\r\n"),
            |o| contains(o, "invalid response"), false),
        case("early close mid-body", Method::GET, Reply::Close(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"),
            |o| matches!(o, BodyFailed(_)) && contains(o, "7 bytes missing"), false),
        case("early close mid-chunk", Method::GET, Reply::Close(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab"),
            |o| contains(o, "before the end of the response body"), false),
        case("close before any answer", Method::GET, Reply::Close(b""),
            |o| contains(o, "connection closed before the response head"), false),
        case("close-delimited body", Method::GET, Reply::Close(b"HTTP/1.1 200 OK\r\n\r\nuntil the end"),
            |o| *o == Body(200, "until the end".into(), vec![]), false),
        case("1xx before the final response", Method::GET, Reply::Raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"),
            |o| *o == Body(200, "body".into(), vec![]), true),
        case("101 without an upgrade", Method::GET, Reply::Raw(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"),
            |o| contains(o, "101 Switching Protocols to a request without Upgrade"), false),
        case("HEAD with CL", Method::HEAD, Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            |o| *o == Body(200, String::new(), vec![]), true),
        case("204 with body bytes", Method::GET, Reply::Raw(b"HTTP/1.1 204 No Content\r\n\r\nsmuggled"),
            |o| *o == Body(204, String::new(), vec![]), false),
        case("304", Method::GET, Reply::Raw(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 20\r\n\r\n"),
            |o| *o == Body(304, String::new(), vec![]), true),
        case("pipelined garbage after a response", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil"),
            |o| *o == Body(200, "ok".into(), vec![]), false),
        case("garbage after a chunked body", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nevil"),
            |o| *o == Body(200, "ok".into(), vec![]), false),
        case("chunked with extensions and trailers", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;a=b\r\nhel\r\n2\r\nlo\r\n0\r\nx-sum: 1\r\n\r\n"),
            |o| *o == Body(200, "hello".into(), vec!["x-sum".into()]), true),
        case("connection: close", Method::GET, Reply::Raw(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"),
            |o| *o == Body(200, "ok".into(), vec![]), false),
        case("HTTP/1.0 without keep-alive", Method::GET, Reply::Raw(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            |o| *o == Body(200, "ok".into(), vec![]), false),
        case("HTTP/1.0 with keep-alive", Method::GET, Reply::Raw(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"),
            |o| *o == Body(200, "ok".into(), vec![]), true),
    ];
    let big_head: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 2\r\n\r\nok",
            "a".repeat(super::decode::MAX_HEAD_BYTES)
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let many_fields: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\n{}content-length: 2\r\n\r\nok",
            (0..150)
                .map(|i| format!("x-{i}: v\r\n"))
                .collect::<String>()
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let cases = cases.into_iter().chain([
        case(
            "oversized head",
            Method::GET,
            Reply::Raw(big_head),
            |o| contains(o, "head larger than"),
            false,
        ),
        case(
            "too many fields",
            Method::GET,
            Reply::Raw(many_fields),
            |o| contains(o, "more than 100 header fields"),
            false,
        ),
    ]);
    for (case, method, reply, check, reused) in cases {
        let up = upstream(vec![reply]).await;
        let ep = endpoint(&up.uri);
        let outcome = fetch(&ep, method).await;
        assert!(check(&outcome), "{case}: {outcome:?}");
        assert_eq!(
            fetch(&ep, Method::GET).await,
            Outcome::Body(200, "ok".into(), vec![]),
            "{case}: the next request"
        );
        let connections = if reused { 1 } else { 2 };
        assert_eq!(
            up.accepted.load(Ordering::SeqCst),
            connections,
            "{case}: connection reused: {reused}"
        );
    }
}

#[tokio::test]
async fn keep_alive_connections_are_reused_for_every_framing() {
    let up = upstream(vec![
        Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"),
        Reply::Raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"),
        Reply::Raw(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
    ])
    .await;
    let ep = endpoint(&up.uri);
    let mut bodies = Vec::new();
    for _ in 0..10 {
        match fetch(&ep, Method::GET).await {
            Outcome::Body(_, body, _) => bodies.push(body),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(&bodies[..5], ["a", "b", "", "", "ok"]);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "one connection");
    assert_eq!(ep.idle_count(), 1);
}

#[tokio::test]
async fn a_response_body_is_streamed_not_buffered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri: Uri = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let go_on = Arc::new(tokio::sync::Notify::new());
    let signal = go_on.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        read_request(&mut sock, &mut buf).await.unwrap();
        sock.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .unwrap();
        signal.notified().await;
        sock.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
        let mut rest = [0u8; 16];
        let _ = sock.read(&mut rest).await;
    });
    let ep = endpoint(&uri);
    let resp = ep
        .send(request(Method::GET, crate::plugin::respond::empty()))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        first, "first",
        "the first chunk before the rest was written"
    );
    go_on.notify_one();
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(second, "second");
    assert!(body.frame().await.is_none());
    assert_eq!(ep.idle_count(), 1, "back in the pool at the end");
}

fn streamed(parts: &[&'static str]) -> ProxyBody {
    let frames: Vec<Result<http_body::Frame<Bytes>, crate::plugin::BoxError>> = parts
        .iter()
        .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
}

#[tokio::test]
async fn request_bodies_are_framed_as_hyper_frames_them() {
    let up = upstream(vec![]).await;
    let ep = endpoint(&up.uri);
    // Unknown length: chunked.
    let resp = ep
        .send(request(Method::POST, streamed(&["ab", "", "cde"])))
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();
    // A Content-Length field is obeyed.
    let mut req = request(Method::PUT, streamed(&["ab", "c"]));
    req.headers_mut()
        .insert(http::header::CONTENT_LENGTH, "3".parse().unwrap());
    let resp = ep.send(req).await.unwrap();
    resp.into_body().collect().await.unwrap();
    // A body shorter than its Content-Length is the request's failure, not a response.
    let mut req = request(Method::PUT, streamed(&["ab"]));
    req.headers_mut()
        .insert(http::header::CONTENT_LENGTH, "3".parse().unwrap());
    let err = ep.send(req).await.unwrap_err();
    assert!(
        err.to_string().contains("shorter than its Content-Length"),
        "{err}"
    );
    let requests = up.requests.lock().unwrap().clone();
    let text: Vec<String> = requests
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    assert_eq!(
        text[0],
        "POST /x HTTP/1.1\r\nhost: upstream\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
    );
    assert_eq!(
        text[1],
        "PUT /x HTTP/1.1\r\nhost: upstream\r\ncontent-length: 3\r\n\r\nabc"
    );
    assert_eq!(text.len(), 2, "the short body never completed a request");
}

#[tokio::test]
async fn a_request_body_error_is_the_bodys() {
    let up = upstream(vec![]).await;
    let ep = endpoint(&up.uri);
    let frames: Vec<Result<http_body::Frame<Bytes>, crate::plugin::BoxError>> = vec![
        Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
        Err("client went away".into()),
    ];
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
    match ep.send(request(Method::POST, body)).await {
        Err(SendError::Body(err)) => assert_eq!(err.to_string(), "client went away"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stale_reused_connection_resends_only_safe_requests() {
    // The second request on the first connection finds it closed without an answer.
    for (method, resent) in [(Method::GET, true), (Method::POST, false)] {
        let up = upstream(vec![Reply::Raw(OK), Reply::Close(b"")]).await;
        let ep = endpoint(&up.uri);
        assert_eq!(
            fetch(&ep, Method::GET).await,
            Outcome::Body(200, "ok".into(), vec![])
        );
        let outcome = fetch(&ep, method.clone()).await;
        if resent {
            assert_eq!(outcome, Outcome::Body(200, "ok".into(), vec![]), "{method}");
            assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
        } else {
            assert!(
                contains(&outcome, "closed before the response head"),
                "{method}: {outcome:?}"
            );
        }
    }
}

#[tokio::test]
async fn tls_connections_are_spoken_to_and_reused() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri: Uri = format!("https://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut buf = Vec::new();
                let mut n = 0;
                while read_request(&mut tls, &mut buf).await.is_some() {
                    n += 1;
                    let answer: &[u8] = if n % 2 == 1 {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntls"
                    } else {
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\ntls\r\n0\r\n\r\n"
                    };
                    if tls.write_all(answer).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let client = ClientCache::default()
        .get(&ClientKey {
            connect_timeout_ms: 1000,
            insecure: true,
            server_name: Some("localhost".into()),
        })
        .unwrap();
    let ep = client.endpoint(
        uri.scheme().unwrap(),
        uri.authority().unwrap(),
        UpstreamProtocol::Http1,
    );
    for i in 0..6 {
        assert_eq!(
            fetch(&ep, Method::GET).await,
            Outcome::Body(200, "tls".into(), vec![]),
            "request {i}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one TLS connection");
    assert_eq!(ep.idle_count(), 1);
}

/// An upstream that answers as soon as it has read a request's head, then reads nothing more
/// and keeps the connection open (as a server refusing an upload too large for it may).
async fn answers_early(answer: &'static [u8]) -> Uri {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = sock.write_all(answer).await;
                // Held open, never read again, until the test ends.
                std::future::pending::<()>().await;
                drop(sock);
            });
        }
    });
    format!("http://{addr}/").parse().unwrap()
}

/// A request body far larger than the sockets' buffers: 64 frames of 1 MiB.
fn large_body() -> ProxyBody {
    let mib = Bytes::from(vec![b'x'; 1 << 20]);
    let frames = (0..64).map(move |_| Ok(http_body::Frame::data(mib.clone())));
    http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
}

#[tokio::test]
async fn an_upstream_answering_before_it_takes_the_body_is_answered_at_once() {
    // Without looking for an answer while the upstream takes no more, this request would wait
    // for the body to go out, which never happens: the deadline below is only a guard.
    let cases: &[(&str, &[u8], u16)] = &[
        (
            "413 with an empty body",
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n",
            413,
        ),
        (
            "401 with a body",
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope",
            401,
        ),
    ];
    for (name, answer, status) in cases {
        let uri = answers_early(answer).await;
        let ep = endpoint(&uri);
        let mut req = request(Method::POST, large_body());
        req.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(64u64 << 20),
        );
        let sent = tokio::time::timeout(std::time::Duration::from_secs(20), ep.send(req))
            .await
            .unwrap_or_else(|_| panic!("{name}: still sending the body"));
        let resp = sent.unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(resp.status().as_u16(), *status, "{name}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body.len(),
            answer.len() - answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
            "{name}"
        );
        assert_eq!(
            ep.idle_count(),
            0,
            "{name}: a connection with a request half sent is never reused"
        );
    }
}
