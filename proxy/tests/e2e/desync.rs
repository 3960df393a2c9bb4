//! No desync between the proxy and the upstream: requests that HTTP/1.1 and HTTP/2 parsers
//! could disagree about are refused (or, where the RFC lets a server pick one reading, read
//! one way and the connection closed), and nothing they carry reaches an upstream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::raw::{self, Recorder};
use super::support::*;

const H: &str = "Host: h.example\r\n";

#[tokio::test]
async fn ambiguous_http1_requests_are_refused_and_reach_no_upstream() {
    let up = Recorder::start().await;
    let proxy = Proxy::start(Some(simple(1, &[up.addr]))).await;
    let table: Vec<(&str, String)> = vec![
        (
            "two differing Content-Length",
            format!("POST / HTTP/1.1\r\n{H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        ),
        (
            "Content-Length list",
            format!("POST / HTTP/1.1\r\n{H}Content-Length: 3, 4\r\n\r\nabcd"),
        ),
        (
            "Content-Length not a number",
            format!("POST / HTTP/1.1\r\n{H}Content-Length: +4\r\n\r\nabcd"),
        ),
        (
            "Transfer-Encoding not chunked",
            format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip\r\n\r\nabcd"),
        ),
        (
            "chunked not the final coding",
            format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ),
        (
            "HTTP/1.0 with Transfer-Encoding",
            format!("POST / HTTP/1.0\r\n{H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "obs-fold",
            format!("GET / HTTP/1.1\r\n{H}X-A: 1\r\n  folded\r\n\r\n"),
        ),
        (
            "NUL in a header value",
            format!("GET / HTTP/1.1\r\n{H}X-A: a\0b\r\n\r\n"),
        ),
        (
            "CR in a header value",
            format!("GET / HTTP/1.1\r\n{H}X-A: a\rb\r\n\r\n"),
        ),
        (
            "space before the colon",
            format!("GET / HTTP/1.1\r\n{H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ),
        ("invalid method", format!("G(ET / HTTP/1.1\r\n{H}\r\n")),
        ("HTTP/0.9", "GET /\r\n\r\n".to_owned()),
        ("unknown version", format!("GET / HTTP/1.2x\r\n{H}\r\n")),
        (
            "bad chunk size",
            format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunk size overflow",
            format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "bare LF in a chunk extension",
            format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n3;x\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunk data longer than its size",
            format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"),
        ),
    ];
    for (case, request) in table {
        let resp = raw::send(proxy.http, request.as_bytes()).await;
        if let Some(resp) = &resp {
            assert!(
                resp.status == 400 || resp.status == 502,
                "{case}: answered {} {}",
                resp.status,
                resp.body
            );
        }
        assert!(
            up.seen().is_empty(),
            "{case}: the upstream read a complete request: {:?}",
            up.seen()
        );
    }
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    let up = Recorder::start().await;
    let proxy = Proxy::start(Some(simple(1, &[up.addr]))).await;
    // Read by Content-Length, the body would be "0\r\n\r\n" plus the start of a second request;
    // read by Transfer-Encoding (RFC 9112 §6.1), the second request follows an empty body.
    for order in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let before = up.seen().len();
        let request = format!(
            "POST /first HTTP/1.1\r\n{H}{order}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n{H}\r\n"
        );
        let mut stream = TcpStream::connect(proxy.http).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let first = raw::read_response(&mut stream).await;
        // Whatever the first answer was, the connection is closed after it: the bytes after
        // the first message are never read as a request.
        let second = raw::read_response(&mut stream).await;
        assert!(second.is_none(), "{order:?}: a second answer {second:?}");
        let seen = up.seen();
        assert!(
            seen.iter().all(|s| s.target != "/smuggled"),
            "{order:?}: smuggled request reached the upstream"
        );
        if let Some(first) = first.filter(|r| r.status == 200) {
            let last = &seen[before];
            assert_eq!(last.target, "/first", "{first:?}");
            assert!(
                last.body.is_empty(),
                "the chunked reading wins: {:?}",
                last.body
            );
            assert!(
                !last.headers.contains_key("content-length")
                    || !last.headers.contains_key("transfer-encoding"),
                "the upstream got both framings"
            );
        }
    }
}

/// An upstream answering every request on a connection with `Content-Length` *and*
/// `Transfer-Encoding`; counts the connections it accepted.
async fn doubtful_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn an_upstream_response_with_doubtful_framing_is_refused() {
    // Both framings could be meant (RFC 9112 §6.3: "ought to be handled as an error"): 502,
    // and the connection, whose next bytes could be read either way, is closed.
    let (addr, connections) = doubtful_upstream().await;
    let proxy = Proxy::start(Some(simple(1, &[addr]))).await;
    let client = client();
    for i in 0..3 {
        let resp = client.get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 502, "request {i}");
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("both Transfer-Encoding and Content-Length"),
            "request {i}: {text}"
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        3,
        "each doubtful response closes its upstream connection"
    );
}

// ---------------------------------------------------------------- HTTP/2, frame by frame

/// An HPACK literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2):
/// any bytes, uppercase names included, as a broken client would send them.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    fn string(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 127);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    out.push(0);
    string(out, name);
    string(out, value);
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// What the proxy answered on stream 1: a status, or a reset / GOAWAY.
#[derive(Debug, PartialEq)]
enum H2Answer {
    Status(u16),
    Refused,
}

/// Sends one request on a prior-knowledge HTTP/2 connection: `headers` (pseudo-headers
/// included, in order) and an optional DATA frame.
async fn h2_request(addr: SocketAddr, headers: &[(&str, &str)], data: Option<&[u8]>) -> H2Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    let mut block = Vec::new();
    for (n, v) in headers {
        literal(&mut block, n, v);
    }
    let end_stream = if data.is_none() { 0x1 } else { 0 };
    out.extend(frame(0x1, 0x4 | end_stream, 1, &block)); // HEADERS, END_HEADERS
    if let Some(d) = data {
        out.extend(frame(0x0, 0x1, 1, d)); // DATA, END_STREAM
    }
    stream.write_all(&out).await.unwrap();
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // Walk the complete frames read so far.
            let mut at = 0;
            while buf.len() >= at + 9 {
                let len = (usize::from(buf[at]) << 16)
                    | (usize::from(buf[at + 1]) << 8)
                    | usize::from(buf[at + 2]);
                if buf.len() < at + 9 + len {
                    break;
                }
                let kind = buf[at + 3];
                let id = u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]])
                    & 0x7fff_ffff;
                let payload = &buf[at + 9..at + 9 + len];
                match kind {
                    // HEADERS on stream 1: the first field is `:status`, indexed (RFC 7541
                    // static table 8-14) or a literal with an indexed name.
                    0x1 if id == 1 => return H2Answer::Status(status_of(payload)),
                    0x3 if id == 1 => return H2Answer::Refused, // RST_STREAM
                    0x7 => return H2Answer::Refused,            // GOAWAY
                    _ => {}
                }
                at += 9 + len;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return H2Answer::Refused,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("an HTTP/2 answer")
}

/// The status of a response HEADERS block as hyper's h2 encodes it.
fn status_of(block: &[u8]) -> u16 {
    const INDEXED: [(u8, u16); 7] = [
        (8, 200),
        (9, 204),
        (10, 206),
        (11, 304),
        (12, 400),
        (13, 404),
        (14, 500),
    ];
    let first = block[0];
    if first & 0x80 != 0 {
        let index = first & 0x7f;
        return INDEXED
            .iter()
            .find(|(i, _)| *i == index)
            .map_or(0, |(_, s)| *s);
    }
    // Literal with an indexed name (`:status`, index 8): 4-bit or 6-bit prefix, then the value.
    let len = usize::from(block[1] & 0x7f);
    std::str::from_utf8(&block[2..2 + len])
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn malformed_http2_requests_are_refused_and_reach_no_upstream() {
    let up = Recorder::start().await;
    let proxy = Proxy::start(Some(simple(1, &[up.addr]))).await;
    let base = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "h.example"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, &str)> = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    // A well-formed request passes: the harness itself works.
    assert_eq!(
        h2_request(proxy.http, &with(&[("content-length", "2")]), Some(b"ok")).await,
        H2Answer::Status(200)
    );
    assert_eq!(up.seen().len(), 1);
    // (case, header fields in order, DATA)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a [u8]>);
    let table: Vec<Case> = vec![
        (
            "connection header",
            with(&[("connection", "keep-alive")]),
            None,
        ),
        (
            "keep-alive header",
            with(&[("keep-alive", "timeout=5")]),
            None,
        ),
        (
            "transfer-encoding",
            with(&[("transfer-encoding", "chunked")]),
            None,
        ),
        ("upgrade header", with(&[("upgrade", "websocket")]), None),
        ("TE other than trailers", with(&[("te", "gzip")]), None),
        ("uppercase name", with(&[("X-Upper", "1")]), None),
        (
            "content-length above the data",
            with(&[("content-length", "5")]),
            Some(b"ok"),
        ),
        (
            "content-length below the data",
            with(&[("content-length", "1")]),
            Some(b"ok"),
        ),
        (
            "Host naming another host",
            with(&[("host", "other.example")]),
            None,
        ),
        (
            "dot segments above the root",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/../x"),
                (":authority", "h.example"),
            ],
            None,
        ),
        (
            "no :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "h.example"),
            ],
            None,
        ),
    ];
    for (case, headers, data) in table {
        let answer = h2_request(proxy.http, &headers, data).await;
        assert!(
            matches!(answer, H2Answer::Refused | H2Answer::Status(400)),
            "{case}: {answer:?}"
        );
        assert_eq!(
            up.seen().len(),
            1,
            "{case}: the upstream read a complete request"
        );
    }
}
