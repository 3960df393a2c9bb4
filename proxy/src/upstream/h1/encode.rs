//! Writing a request: the head into one buffer (reused per connection), and how the body is
//! framed on the wire, decided as hyper's HTTP/1 client decides it.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TE, TRAILER, TRANSFER_ENCODING};
use http::{request, HeaderMap, Method};
use http_body::SizeHint;

use super::Error;

/// How the request body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body bytes are sent.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Writes the request head (`parts.uri` is origin-form, `Host` is set) into `buf` and decides
/// the body's framing, as hyper's client does: a body that has already ended sends nothing
/// (and no `Transfer-Encoding`); a `Content-Length` field is kept and obeyed; else an exact size
/// hint becomes `Content-Length`; else `GET`, `HEAD` and `CONNECT` send no body and other
/// methods a chunked one. `Transfer-Encoding` from the client is never passed on (it is
/// hop-by-hop and removed before; this writes its own), nor is `TE`: it is hop-by-hop too, and
/// the only one left by then is the `te: trailers` kept for an HTTP/2 upstream, which an
/// `auto` endpoint may reach over HTTP/1.1 instead (the head is not edited for that: it may be
/// lent by a caller that sends it again).
pub fn head(
    buf: &mut Vec<u8>,
    parts: &request::Parts,
    body_ended: bool,
    hint: &SizeHint,
) -> Result<Framing, Error> {
    let framing = if body_ended {
        Framing::Empty
    } else if parts.headers.contains_key(CONTENT_LENGTH) {
        Framing::Length(content_length(&parts.headers)?)
    } else if let Some(n) = hint.exact() {
        Framing::Length(n)
    } else if matches!(parts.method, Method::GET | Method::HEAD | Method::CONNECT) {
        Framing::Empty
    } else {
        Framing::Chunked
    };
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if *name == TRANSFER_ENCODING || *name == TE {
            continue;
        }
        field(buf, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        Framing::Length(n) if !parts.headers.contains_key(CONTENT_LENGTH) => {
            let mut digits = [0u8; 20];
            field(buf, b"content-length", in_base(n, 10, &mut digits));
        }
        Framing::Chunked => field(buf, b"transfer-encoding", b"chunked"),
        _ => {}
    }
    buf.extend_from_slice(b"\r\n");
    Ok(framing)
}

fn field(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// The request's `Content-Length` (every field and list item must agree).
fn content_length(headers: &HeaderMap) -> Result<u64, Error> {
    let mut found = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = std::str::from_utf8(part)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(Error::RequestLength("invalid Content-Length"))?;
            if found.is_some_and(|prev| prev != n) {
                return Err(Error::RequestLength("differing Content-Length values"));
            }
            found = Some(n);
        }
    }
    found.ok_or(Error::RequestLength("invalid Content-Length"))
}

/// Appends one data frame of a chunked body (an empty one would end the body: skipped).
pub fn chunk(buf: &mut Vec<u8>, data: &Bytes) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 20];
    buf.extend_from_slice(in_base(data.len() as u64, 16, &mut hex));
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
}

/// `n` written in base 10 or 16 (lower case) at the end of `out`.
fn in_base(mut n: u64, base: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b"0123456789abcdef"[(n % base) as usize];
        n /= base;
        if n == 0 {
            return &out[i..];
        }
    }
}

/// Appends the end of a chunked body: the last chunk, then the trailer fields that the request's
/// `Trailer` field announced (hyper sends only those), then the empty line.
pub fn last_chunk(buf: &mut Vec<u8>, announced: &HeaderMap, trailers: Option<&HeaderMap>) {
    buf.extend_from_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        for (name, value) in trailers {
            let listed = announced.get_all(TRAILER).iter().any(|v| {
                v.as_bytes().split(|&b| b == b',').any(|t| {
                    t.trim_ascii()
                        .eq_ignore_ascii_case(name.as_str().as_bytes())
                })
            });
            if listed {
                field(buf, name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn encode(req: Request<()>, ended: bool, hint: SizeHint) -> (String, Result<Framing, Error>) {
        let (parts, ()) = req.into_parts();
        let mut buf = Vec::new();
        let framing = head(&mut buf, &parts, ended, &hint);
        (String::from_utf8(buf).unwrap(), framing)
    }

    #[test]
    fn body_framing_is_hypers() {
        let unknown = SizeHint::default();
        let get = || Request::get("/a?b=1").header("host", "h");
        let post = || Request::post("/p").header("host", "h");
        let (text, framing) = encode(get().body(()).unwrap(), true, unknown);
        assert_eq!(text, "GET /a?b=1 HTTP/1.1\r\nhost: h\r\n\r\n");
        assert_eq!(framing.unwrap(), Framing::Empty);
        let (text, framing) = encode(post().body(()).unwrap(), false, SizeHint::with_exact(3));
        assert_eq!(
            text,
            "POST /p HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\n"
        );
        assert_eq!(framing.unwrap(), Framing::Length(3));
        let (text, framing) = encode(
            post().header("content-length", "7").body(()).unwrap(),
            false,
            unknown,
        );
        assert_eq!(
            text,
            "POST /p HTTP/1.1\r\nhost: h\r\ncontent-length: 7\r\n\r\n"
        );
        assert_eq!(framing.unwrap(), Framing::Length(7));
        let (text, framing) = encode(
            post().header("transfer-encoding", "gzip").body(()).unwrap(),
            false,
            unknown,
        );
        assert_eq!(
            text,
            "POST /p HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(framing.unwrap(), Framing::Chunked);
        let (text, _) = encode(
            get().header("te", "trailers").body(()).unwrap(),
            true,
            unknown,
        );
        assert_eq!(
            text, "GET /a?b=1 HTTP/1.1\r\nhost: h\r\n\r\n",
            "TE is hop-by-hop"
        );
        let (_, framing) = encode(get().body(()).unwrap(), false, unknown);
        assert_eq!(
            framing.unwrap(),
            Framing::Empty,
            "GET without a length sends no body"
        );
        let (_, framing) = encode(
            post().header("content-length", "1, 2").body(()).unwrap(),
            false,
            unknown,
        );
        assert!(framing.is_err());
    }

    #[test]
    fn chunks_and_announced_trailers() {
        let mut buf = Vec::new();
        chunk(&mut buf, &Bytes::from_static(b""));
        chunk(&mut buf, &Bytes::from(vec![b'x'; 26]));
        let mut announced = HeaderMap::new();
        announced.insert(TRAILER, "x-sum".parse().unwrap());
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", "1".parse().unwrap());
        trailers.insert("x-other", "2".parse().unwrap());
        last_chunk(&mut buf, &announced, Some(&trailers));
        let expected = format!("1a\r\n{}\r\n0\r\nx-sum: 1\r\n\r\n", "x".repeat(26));
        assert_eq!(String::from_utf8(buf).unwrap(), expected);
    }
}
