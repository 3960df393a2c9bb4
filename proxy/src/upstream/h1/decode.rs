//! Reading an upstream's response: the head (status line and fields, by `httparse`), how its
//! body is framed (RFC 9112 §6.3), and the lines of a chunked body. Pure functions over byte
//! slices, so the fuzz target and the tests can drive them without a socket.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use smallvec::SmallVec;

use super::Error;

/// At most this many fields in a response head or a trailer section (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// A response head longer than this is refused (hyper's default read buffer limit, which is
/// what bounded a head before: 8 KiB + 100 × 4 KiB).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// A chunk-size line (size, extensions, CRLF) longer than this is refused.
pub const MAX_CHUNK_LINE: usize = 4096;
/// A trailer section longer than this is refused.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: `HEAD`, 204, 304, or `Content-Length: 0`.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: …, chunked`.
    Chunked,
    /// Read until the upstream closes the connection.
    Close,
}

/// A final (non-1xx) response head.
#[derive(Debug)]
pub struct Head {
    /// The status.
    pub status: StatusCode,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// The fields, in the order received.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request once this body has been read.
    pub keep_alive: bool,
}

/// Whether `buf` starts with an interim (`1xx`) status line, or with too little to tell.
/// Used while the request is still being sent: an interim answer means "go on".
pub fn starts_interim(buf: &[u8]) -> bool {
    const SHAPE: &[u8] = b"HTTP/1.? 1";
    let seen = buf.len().min(SHAPE.len());
    buf[..seen]
        .iter()
        .zip(SHAPE)
        .all(|(b, want)| *want == b'?' && b.is_ascii_digit() || b == want)
}

/// At most this many field names are remembered per connection ([`Names`]).
const MAX_NAMES: usize = 24;

/// The field names of the last response head read on a connection, as spelled and as parsed.
/// An upstream sends the same names in the same order (and spelling) response after response,
/// so a name spelled byte for byte as the one at the same place last time is that same
/// [`HeaderName`]: compared, not parsed again (parsing a name, with its table of standard names
/// and a copy of a custom one, cost about 180 instructions a field). Any difference is parsed
/// as usual and remembered.
#[derive(Debug, Default)]
pub struct Names(Vec<(Box<[u8]>, HeaderName)>);

impl Names {
    /// The name of field `i`, spelled `raw`.
    fn name(&mut self, i: usize, raw: &[u8]) -> Result<HeaderName, Error> {
        if let Some((spelled, name)) = self.0.get(i) {
            if **spelled == *raw {
                return Ok(name.clone());
            }
        }
        let name =
            HeaderName::from_bytes(raw).map_err(|_| Error::Head(httparse::Error::HeaderName))?;
        let entry = (Box::from(raw), name.clone());
        if i < self.0.len() {
            self.0[i] = entry;
        } else if i == self.0.len() && i < MAX_NAMES {
            self.0.push(entry);
        }
        Ok(name)
    }
}

/// Parses the response head at the start of `buf`, for a request with `method`, and takes it
/// out of `buf`: [`parse_head_with`] without names from an earlier head.
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, Error> {
    parse_head_with(buf, method, &mut Names::default())
}

/// Parses the response head at the start of `buf`, for a request with `method`, and takes it
/// out of `buf`: `Ok(None)` until a whole final head is there. Informational heads (1xx but
/// 101) are taken out and skipped, as hyper does (`100 Continue` included). Field values are
/// slices of one copy of the head, not one allocation each; nothing is zeroed per call (the
/// field array is uninitialised, the spans inline); field names come from `names`, the
/// connection's names of the head before, when spelled the same.
pub fn parse_head_with(
    buf: &mut BytesMut,
    method: &Method,
    names: &mut Names,
) -> Result<Option<Head>, Error> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        // Name and value spans of each field, as offsets into `buf`.
        let mut spans: SmallVec<[[u32; 4]; 24]> = SmallVec::new();
        let (len, code, minor) = {
            let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut res,
                buf,
                &mut fields,
            );
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                    return Err(Error::HeadTooLarge)
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => return Err(Error::TooManyHeaders),
                Err(err) => return Err(Error::Head(err)),
            };
            if len > MAX_HEAD_BYTES {
                return Err(Error::HeadTooLarge);
            }
            let base = buf.as_ptr() as usize;
            for field in res.headers.iter() {
                // Below MAX_HEAD_BYTES: the offsets fit.
                let name = (field.name.as_ptr() as usize - base) as u32;
                let value = (field.value.as_ptr() as usize - base) as u32;
                spans.push([
                    name,
                    name + field.name.len() as u32,
                    value,
                    value + field.value.len() as u32,
                ]);
            }
            (len, res.code.unwrap_or_default(), res.version)
        };
        let status = StatusCode::from_u16(code).map_err(|_| Error::Status(code))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // Upgrade requests go through hyper's client; nothing else may switch.
            return Err(Error::UnaskedUpgrade);
        }
        if status.is_informational() {
            let _ = buf.split_to(len);
            continue;
        }
        let version = if minor == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let raw = buf.split_to(len).freeze();
        // Room for at least 16 fields: after hyper has written the response, it keeps this map
        // for the client's next request head, which the forwarding fields and plugins then add
        // to; a map sized to the upstream's few fields grew (and rehashed) on every request.
        let mut headers = HeaderMap::with_capacity(spans.len().max(MIN_FIELDS));
        let mut seen = Seen::default();
        for (i, &[n0, n1, v0, v1]) in spans.iter().enumerate() {
            let name = names.name(i, &raw[n0 as usize..n1 as usize])?;
            let value = &raw[v0 as usize..v1 as usize];
            if name == CONTENT_LENGTH {
                seen.content_length = true;
                seen.length_field(value);
            } else if name == TRANSFER_ENCODING {
                seen.transfer_encoding = true;
                // The last transfer coding of the last field is what counts.
                seen.chunked_last = value
                    .split(|&b| b == b',')
                    .next_back()
                    .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"));
            } else if name == CONNECTION {
                for token in value.split(|&b| b == b',').map(trim) {
                    seen.close |= token.eq_ignore_ascii_case(b"close");
                    seen.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            let value = HeaderValue::from_maybe_shared(raw.slice(v0 as usize..v1 as usize))
                .map_err(|_| Error::Head(httparse::Error::HeaderValue))?;
            headers.append(name, value);
        }
        let framing = framing(&seen, version, status, method)?;
        let keep_alive = framing != Framing::Close
            && if version == Version::HTTP_10 {
                seen.keep_alive && !seen.close
            } else {
                !seen.close
            };
        return Ok(Some(Head {
            status,
            version,
            headers,
            framing,
            keep_alive,
        }));
    }
}

/// The framing and connection fields found while the head was read (in the one pass over the
/// fields, not looked up again in the map).
#[derive(Default)]
struct Seen {
    content_length: bool,
    /// The one value of every `Content-Length` field so far (comma lists included), or why
    /// there is none: differing values or anything but digits are refused.
    length: Option<Result<u64, &'static str>>,
    transfer_encoding: bool,
    /// Whether the last transfer coding named is `chunked`.
    chunked_last: bool,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
}

impl Seen {
    /// Takes in the value of a `Content-Length` field: the first fault found stays.
    fn length_field(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            self.length = match (self.length, parse_decimal(trim(part))) {
                (Some(Err(fault)), _) => Some(Err(fault)),
                (_, None) => Some(Err("invalid Content-Length")),
                (Some(Ok(prev)), Some(n)) if prev != n => {
                    Some(Err("differing Content-Length values"))
                }
                (_, Some(n)) => Some(Ok(n)),
            };
        }
    }
}

/// A response map has room for at least this many fields (see `parse_head_with`).
const MIN_FIELDS: usize = 16;

/// The body's framing (RFC 9112 §6.3), refusing what could be read two ways: both
/// `Transfer-Encoding` and `Content-Length` (where hyper read it as chunked), differing or
/// invalid `Content-Length` values, `Transfer-Encoding` in an HTTP/1.0 response.
fn framing(
    seen: &Seen,
    version: Version,
    status: StatusCode,
    method: &Method,
) -> Result<Framing, Error> {
    let te = seen.transfer_encoding;
    let cl = seen.content_length;
    if te && cl {
        return Err(Error::Framing("both Transfer-Encoding and Content-Length"));
    }
    if te && version == Version::HTTP_10 {
        return Err(Error::Framing("Transfer-Encoding in an HTTP/1.0 response"));
    }
    let length = if cl {
        match seen.length {
            Some(Ok(n)) => Some(n),
            Some(Err(fault)) => return Err(Error::Framing(fault)),
            None => return Err(Error::Framing("invalid Content-Length")),
        }
    } else {
        None
    };
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None if te && seen.chunked_last => Framing::Chunked,
        // A transfer coding other than chunked last, or no framing: read to the close.
        None => Framing::Close,
    })
}

/// Digits only, at most 19 of them (below `u64::MAX`).
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// Parses a chunk-size line at the start of `buf`: `Ok(None)` until the whole line is there,
/// else the size and the line's length. Strict: at least one and at most 16 hex digits,
/// optional spaces or tabs, optional extensions (`;…`, ignored, no control bytes), then CRLF.
pub fn parse_chunk_line(buf: &[u8]) -> Result<Option<(u64, usize)>, Error> {
    let bad = || Error::Chunk("invalid chunk size line");
    let mut size: u64 = 0;
    let mut digits = 0;
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        let v = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => break,
        };
        digits += 1;
        if digits > 16 {
            return Err(Error::Chunk("chunk size too large"));
        }
        size = (size << 4) | u64::from(v);
        i += 1;
    }
    if i == buf.len() {
        return if i > 16 { Err(bad()) } else { Ok(None) };
    }
    if digits == 0 {
        return Err(bad());
    }
    while i < buf.len() && matches!(buf[i], b' ' | b'\t') {
        i += 1;
    }
    if i < buf.len() && buf[i] == b';' {
        while i < buf.len() && buf[i] != b'\r' {
            let b = buf[i];
            if b != b'\t' && (b < 0x20 || b == 0x7f) {
                return Err(bad());
            }
            i += 1;
        }
    }
    if i == buf.len() {
        return if buf.len() > MAX_CHUNK_LINE {
            Err(Error::Chunk("chunk size line too long"))
        } else {
            Ok(None)
        };
    }
    if buf[i] != b'\r' {
        return Err(bad());
    }
    match buf.get(i + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(bad()),
    }
    if i + 2 > MAX_CHUNK_LINE {
        return Err(Error::Chunk("chunk size line too long"));
    }
    Ok(Some((size, i + 2)))
}

/// Parses the trailer section after the last chunk (fields, then an empty line): `Ok(None)`
/// until it is all there, else the fields and the section's length.
pub fn parse_trailers(buf: &[u8]) -> Result<Option<(HeaderMap, usize)>, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((len, fields))) => {
            if len > MAX_TRAILER_BYTES {
                return Err(Error::Chunk("trailer section too large"));
            }
            let mut trailers = HeaderMap::with_capacity(fields.len());
            for field in fields {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| Error::Chunk("invalid trailer field"))?;
                let value = HeaderValue::from_bytes(field.value)
                    .map_err(|_| Error::Chunk("invalid trailer field"))?;
                trailers.append(name, value);
            }
            Ok(Some((trailers, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILER_BYTES => {
            Err(Error::Chunk("trailer section too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Error::Chunk("too many trailer fields")),
        Err(_) => Err(Error::Chunk("invalid trailer section")),
    }
}

/// Where a body's reader is: what the next bytes of the stream are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyDecoder {
    /// This many bytes left (`Content-Length`).
    Length(u64),
    /// Chunked: a chunk-size line next.
    ChunkSize,
    /// Chunked: this many bytes of the current chunk left.
    ChunkData(u64),
    /// Chunked: the CRLF after a chunk's data next.
    ChunkEnd,
    /// Chunked: the trailer section next.
    Trailers,
    /// Everything until the upstream closes.
    Close,
    /// The body has ended.
    Done,
}

/// One step of [`BodyDecoder::step`].
#[derive(Debug)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields of a chunked body (which has then ended).
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// More bytes are needed.
    More,
}

impl BodyDecoder {
    /// The decoder for a body framed by `framing`.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyDecoder::Done,
            Framing::Length(n) => BodyDecoder::Length(n),
            Framing::Chunked => BodyDecoder::ChunkSize,
            Framing::Close => BodyDecoder::Close,
        }
    }

    /// Takes the next piece of the body out of `buf` (never more than the body). Data comes
    /// as slices of the buffer, not copies.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        loop {
            match *self {
                BodyDecoder::Done => return Ok(Step::End),
                BodyDecoder::Length(left) | BodyDecoder::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    *self = match *self {
                        BodyDecoder::Length(_) if left == 0 => BodyDecoder::Done,
                        BodyDecoder::Length(_) => BodyDecoder::Length(left),
                        _ if left == 0 => BodyDecoder::ChunkEnd,
                        _ => BodyDecoder::ChunkData(left),
                    };
                    return Ok(Step::Data(data));
                }
                BodyDecoder::Close => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                BodyDecoder::ChunkSize => match parse_chunk_line(buf)? {
                    Some((size, len)) => {
                        let _ = buf.split_to(len);
                        *self = if size == 0 {
                            BodyDecoder::Trailers
                        } else {
                            BodyDecoder::ChunkData(size)
                        };
                    }
                    None => return Ok(Step::More),
                },
                BodyDecoder::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::Chunk("no CRLF after chunk data"));
                    }
                    let _ = buf.split_to(2);
                    *self = BodyDecoder::ChunkSize;
                }
                BodyDecoder::Trailers => match parse_trailers(buf)? {
                    Some((trailers, len)) => {
                        let _ = buf.split_to(len);
                        *self = BodyDecoder::Done;
                        if trailers.is_empty() {
                            return Ok(Step::End);
                        }
                        return Ok(Step::Trailers(trailers));
                    }
                    None => return Ok(Step::More),
                },
            }
        }
    }

    /// After a chunk's data: takes the framing that follows out of `buf` as far as it is
    /// there, up to the end of the body when that has arrived without trailers, so that the
    /// body can say it has ended together with its last data.
    pub fn settle(&mut self, buf: &mut BytesMut) -> Result<(), Error> {
        loop {
            match *self {
                BodyDecoder::ChunkEnd if buf.len() >= 2 => {
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::Chunk("no CRLF after chunk data"));
                    }
                    let _ = buf.split_to(2);
                    *self = BodyDecoder::ChunkSize;
                }
                BodyDecoder::ChunkSize => match parse_chunk_line(buf)? {
                    Some((0, len)) => {
                        let _ = buf.split_to(len);
                        *self = BodyDecoder::Trailers;
                    }
                    _ => return Ok(()),
                },
                BodyDecoder::Trailers if buf.starts_with(b"\r\n") => {
                    let _ = buf.split_to(2);
                    *self = BodyDecoder::Done;
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
    }

    /// The stream has ended (the upstream closed): the end of a close-delimited body, else a
    /// body cut short.
    pub fn eof(&mut self) -> Result<(), Error> {
        match std::mem::replace(self, BodyDecoder::Done) {
            BodyDecoder::Close | BodyDecoder::Done => Ok(()),
            BodyDecoder::Length(left) => Err(Error::BodyCut(Some(left))),
            _ => Err(Error::BodyCut(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, method: Method) -> Result<Option<Head>, Error> {
        parse_head(&mut BytesMut::from(raw.as_bytes()), &method)
    }

    fn final_head(raw: &str, method: Method) -> Head {
        let mut buf = BytesMut::from(raw.as_bytes());
        match parse_head(&mut buf, &method) {
            Ok(Some(h)) => {
                assert!(buf.is_empty(), "{raw:?}: the whole head is taken");
                h
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn names_remembered_per_connection_give_the_same_fields() {
        let many: String = (0..MAX_NAMES + 3)
            .map(|i| format!("x-f{i}: {i}\r\n"))
            .collect();
        let heads = [
            "HTTP/1.1 200 OK\r\nServer: a\r\nContent-Length: 0\r\nX-Custom: 1\r\n\r\n".to_owned(),
            // The same names: taken from the connection's list.
            "HTTP/1.1 200 OK\r\nServer: b\r\nContent-Length: 0\r\nX-Custom: 2\r\n\r\n".to_owned(),
            // Other spellings, another order, a name more, a name fewer.
            "HTTP/1.1 200 OK\r\nserver: c\r\nX-Custom: 3\r\ncontent-length: 0\r\nx-more: 4\r\n\r\n"
                .to_owned(),
            "HTTP/1.1 204 No Content\r\nX-CUSTOM: 5\r\n\r\n".to_owned(),
            // More fields than are remembered.
            format!("HTTP/1.1 200 OK\r\n{many}content-length: 0\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\n{many}content-length: 0\r\n\r\n"),
            // Back to fewer fields.
            "HTTP/1.1 200 OK\r\nServer: a\r\n\r\n".to_owned(),
        ];
        let mut names = Names::default();
        for raw in &heads {
            let fresh = head(raw, Method::GET).unwrap().unwrap();
            let mut buf = BytesMut::from(raw.as_bytes());
            let kept = parse_head_with(&mut buf, &Method::GET, &mut names)
                .unwrap()
                .unwrap();
            let fields = |h: &Head| -> Vec<(String, String)> {
                h.headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                    .collect()
            };
            assert_eq!(fields(&kept), fields(&fresh), "{raw:?}");
            assert_eq!(
                (kept.framing, kept.keep_alive),
                (fresh.framing, fresh.keep_alive)
            );
            assert!(names.0.len() <= MAX_NAMES);
        }
        // A name that is not a token is refused even where a remembered one was.
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nSer ver: a\r\n\r\n"[..]);
        assert!(parse_head_with(&mut buf, &Method::GET, &mut names).is_err());
    }

    #[test]
    fn interim_answers_are_told_from_final_ones() {
        let cases: &[(&[u8], bool)] = &[
            (b"HTTP/1.1 100 Continue\r\n\r\n", true),
            (b"HTTP/1.0 103 Early Hints\r\n", true),
            (b"HTTP/1.1 1", true),
            (b"HTTP/1.", true), // too little to tell yet
            (b"HTTP/1.1 413 Payload Too Large\r\n", false),
            (b"HTTP/1.1 200 OK\r\n", false),
            (b"HTTP/1.x 100", false),
            (b"garbage", false),
            (b"HTTP/2 100", false),
        ];
        for (buf, interim) in cases {
            assert_eq!(
                starts_interim(buf),
                *interim,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases: &[(&str, Method, Framing, bool)] = &[
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                Method::GET,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
                Method::GET,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
                Method::GET,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                Method::GET,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                Method::GET,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
                Method::GET,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
                Method::GET,
                Framing::Close,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
                Method::GET,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n",
                Method::GET,
                Framing::Close,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n",
                Method::GET,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\n\r\n",
                Method::GET,
                Framing::Close,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                Method::HEAD,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
                Method::GET,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\n\r\n",
                Method::GET,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
                Method::GET,
                Framing::Length(2),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n",
                Method::GET,
                Framing::Length(2),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: Keep-Alive\r\n\r\n",
                Method::GET,
                Framing::Length(2),
                true,
            ),
        ];
        for (raw, method, framing, keep_alive) in cases {
            let h = final_head(raw, method.clone());
            assert_eq!(
                (h.framing, h.keep_alive),
                (*framing, *keep_alive),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_refused() {
        let cases: &[(&str, &str)] = &[
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
                "both",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
                "differing",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
                "differing",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5, x\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 6, x\r\n\r\n",
                "differing",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length:\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                "HTTP/1.0",
            ),
            ("HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\n\r\n", "invalid"),
            ("HTTP/1.1 200 OK\r\nx a: 1\r\n\r\n", "invalid"),
            ("HTTP/1.1 200 OK\r\nx-a: 1\x00\r\n\r\n", "invalid"),
            ("HTTP/1.1 200 OK\r\nx-a: 1\rx-b: 2\r\n\r\n", "invalid"),
            ("HTTP/2 200 OK\r\n\r\n", "invalid"),
            ("HTTP/1.1 2000 OK\r\n\r\n", "invalid"),
            ("HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
            ("HTTP/1.1 099 Low\r\n\r\n", "status"),
        ];
        for (raw, expected) in cases {
            match head(raw, Method::GET) {
                Err(err) => assert!(err.to_string().contains(expected), "{raw:?}: {err}"),
                Ok(other) => panic!("{raw:?} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn heads_are_bounded() {
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert!(matches!(
            head(&raw, Method::GET),
            Err(Error::TooManyHeaders)
        ));
        let long = format!("HTTP/1.1 200 OK\r\nx-a: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(head(&long, Method::GET), Err(Error::HeadTooLarge)));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\ncontent-le", Method::GET),
            Ok(None)
        ));
    }

    #[test]
    fn informational_heads_are_skipped() {
        let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n";
        let mut buf = BytesMut::from(raw.as_bytes());
        assert!(matches!(parse_head(&mut buf, &Method::GET), Ok(None)));
        assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n", "both 1xx heads skipped");
        buf.extend_from_slice(b"content-length: 1\r\n\r\nx");
        let h = parse_head(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!((h.status, &buf[..]), (StatusCode::OK, &b"x"[..]));
    }

    #[test]
    fn chunk_lines() {
        type Line = Result<Option<(u64, usize)>, ()>;
        let cases: &[(&[u8], Line)] = &[
            (b"5\r\n", Ok(Some((5, 3)))),
            (b"fF\r\n", Ok(Some((255, 4)))),
            (b"5 \t;name=value\r\nxx", Ok(Some((5, 16)))),
            (b"ffffffffffffffff\r\n", Ok(Some((u64::MAX, 18)))),
            (b"5", Ok(None)),
            (b"5\r", Ok(None)),
            (b"5;ext", Ok(None)),
            (b"1ffffffffffffffff\r\n", Err(())),
            (b"\r\n", Err(())),
            (b"-5\r\n", Err(())),
            (b"5\n", Err(())),
            (b"5;a\nb\r\n", Err(())),
            (b"0x5\r\n", Err(())),
            (b"5 6\r\n", Err(())),
        ];
        for (line, expected) in cases {
            let got = parse_chunk_line(line).map_err(|_| ());
            assert_eq!(&got, expected, "{:?}", String::from_utf8_lossy(line));
        }
        let long = [b"5;".as_slice(), &[b'a'; MAX_CHUNK_LINE]].concat();
        assert!(parse_chunk_line(&long).is_err());
    }

    #[test]
    fn trailer_sections() {
        assert_eq!(parse_trailers(b"\r\n").unwrap().unwrap().1, 2);
        let (t, len) = parse_trailers(b"grpc-status: 0\r\n\r\nnext")
            .unwrap()
            .unwrap();
        assert_eq!((t["grpc-status"].as_bytes(), len), (&b"0"[..], 18));
        assert!(parse_trailers(b"grpc-status: 0\r\n").unwrap().is_none());
        assert!(parse_trailers(b"bad field\r\n\r\n").is_err());
    }
}
