//! Raw sockets for requests that ordinary clients refuse to send (`..`, `%2e`, two `Host`
//! headers, bad framing) and a recording upstream that keeps only requests it read completely.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::support::WAIT;

/// One request an upstream read to the end of its body.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// An upstream that records every request it read completely and answers 200 with the target
/// it saw as the body.
pub struct Recorder {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let target = parts.uri.to_string();
                            let Ok(body) = body.collect().await else {
                                return Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(400)
                                        .body(Full::new(Bytes::from_static(b"incomplete")))
                                        .unwrap(),
                                );
                            };
                            log.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                target: target.clone(),
                                headers: parts.headers,
                                body: body.to_bytes(),
                            });
                            Ok(Response::new(Full::new(Bytes::from(target))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request seen.
    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap().last().cloned()
    }
}

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The value of header `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `bytes` on a new connection to `addr` and reads one response (to its
/// `Content-Length`, or to the end of the connection). `None` when the proxy closed the
/// connection without answering.
pub async fn send(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_response(&mut stream).await
}

/// Reads one response from `stream`.
pub async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len = head.lines().find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                });
                if let Some(len) = len {
                    if buf.len() >= end + 4 + len {
                        return Some((head, buf[end + 4..end + 4 + len].to_vec()));
                    }
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    let end = find(&buf, b"\r\n\r\n")?;
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    return Some((head, buf[end + 4..].to_vec()));
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let (head, body) = tokio::time::timeout(WAIT, read).await.ok()??;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(RawResponse {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `GET target` with `Host: host` and `extra` header lines (each ending in `\r\n`).
pub fn get(target: &str, host: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}
