//! hookway's own HTTP/1.1 client for upstream connections (cleartext and TLS).
//!
//! Why hand-written: hyper's `client::conn::http1` runs every connection as a task of its own
//! and hands each request to it over a channel, and the response body back over another; a
//! request costs two cross-task hops and their wake-ups. Measured with callgrind on the empty
//! chain (`bench/RESULTS.md`, issue 18), that dispatch was the largest user-space item per
//! request. Here the request's own task writes the request head (one buffer, kept per
//! connection) and body, reads and parses the response head with `httparse`, and the response
//! body ([`Body`]) reads from the socket itself and owns the connection, which goes back to the
//! endpoint's idle pool when the body has been read cleanly to its end.
//!
//! What it keeps from hyper's client: the response-head limits (100 fields, about 400 KiB),
//! `httparse`'s strict field syntax (no obs-fold, no control bytes), 1xx responses skipped
//! (`100 Continue` too; the request body is not held back for it, as hyper does not), no body
//! for `HEAD`, 204 and 304, hyper's choice of request body framing. Stricter than hyper: a
//! response with both `Transfer-Encoding` and `Content-Length` is refused (hyper read it as
//! chunked), and a connection is reused only when nothing followed the response.
//! Upgrade (WebSocket) requests still go through hyper (the endpoint hands it the socket), and
//! so does HTTP/2.
//!
//! The request body is written before the response is read, except that whenever the upstream
//! stops taking bytes (a write would wait), the connection is looked at for an answer: an
//! upstream that answers early (a `413` to a large body, a `401` before the upload) and stops
//! reading is answered at once, and the connection is not reused. One that answers and closes is
//! answered too (its response is read after the failed write). An interim `1xx` read that way
//! does not stop the body (the upstream asked for it).

mod body;
mod conn;
pub mod decode;
pub mod encode;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use futures::FutureExt;
use http::request;
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::AsyncWrite;

pub use body::Body;
pub use conn::{Conn, Io};
pub use decode::Head;

use crate::plugin::{BoxError, ProxyBody};

/// What went wrong on an upstream HTTP/1.1 connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the socket failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before a whole response head.
    #[error("connection closed before the response head")]
    Closed,
    /// The response head is longer than [`decode::MAX_HEAD_BYTES`].
    #[error("invalid response: head larger than {} bytes", decode::MAX_HEAD_BYTES)]
    HeadTooLarge,
    /// The response head has more than [`decode::MAX_HEADERS`] fields.
    #[error("invalid response: more than {} header fields", decode::MAX_HEADERS)]
    TooManyHeaders,
    /// The response head is not HTTP/1.x syntax.
    #[error("invalid response: {0}")]
    Head(httparse::Error),
    /// A status code out of range.
    #[error("invalid response: status {0}")]
    Status(u16),
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("invalid response: 101 Switching Protocols to a request without Upgrade")]
    UnaskedUpgrade,
    /// The response's framing is ambiguous or invalid.
    #[error("invalid response: {0}")]
    Framing(&'static str),
    /// A chunked body is malformed.
    #[error("invalid response body: {0}")]
    Chunk(&'static str),
    /// The connection ended before the body did.
    #[error("connection closed before the end of the response body{}", .0.map(|n| format!(" ({n} bytes missing)")).unwrap_or_default())]
    BodyCut(Option<u64>),
    /// The request body does not match its `Content-Length`.
    #[error("request body: {0}")]
    RequestLength(&'static str),
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// A reused connection turned out closed before any of the response, for a request that
    /// is safe to send again (idempotent, no body): send it on another connection.
    Stale(Error),
    /// The request body failed (its own error: the body limit, a body filter).
    Body(BoxError),
    /// Anything else.
    Error(Error),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Error(err)
    }
}

/// Above this many buffered bytes, the write buffer goes out before more body is added.
const WRITE_HIGH: usize = 64 * 1024;
/// Body frames at least this long are written as they are, not copied into the write buffer.
const WRITE_DIRECT: usize = 16 * 1024;

/// Sends the request (origin-form URI, `Host` set) on `conn` and reads the response head.
/// Request bodies are streamed: each frame is written when it comes, with whatever else is
/// ready at that moment.
pub async fn exchange(
    conn: &mut Conn,
    parts: &request::Parts,
    body: &mut ProxyBody,
) -> Result<Head, Failure> {
    let body_ended = body.is_end_stream();
    // Safe to send again if the connection was stale: nothing of it can have been acted on
    // more than once harmfully, and nothing of the body was taken.
    let resendable = conn.reused && body_ended && super::is_idempotent(&parts.method);
    conn.write.clear();
    let framing = encode::head(&mut conn.write, parts, body_ended, &body.size_hint())?;
    let written = write_request(conn, body, framing, &parts.headers).await;
    let mut keep_alive = true;
    match written {
        Ok(Sent::All) => {}
        Ok(Sent::Answered) => {
            // The rest of the request was never sent: the connection is spent.
            tracing::debug!("the upstream answered before taking the whole request");
            keep_alive = false;
        }
        Err(Failure::Error(Error::Io(err))) => {
            if resendable {
                return Err(Failure::Stale(Error::Io(err)));
            }
            // The upstream may have answered (and closed) before taking the whole request:
            // its answer is the one to give.
            tracing::debug!(error = %err, "writing the request failed; reading a response anyway");
            keep_alive = false;
            if conn.read.is_empty() {
                match poll_fn(|cx| conn.poll_fill(cx)).await {
                    Ok(n) if n > 0 => {}
                    _ => return Err(Failure::Error(Error::Io(err))),
                }
            }
        }
        Err(other) => return Err(other),
    }
    loop {
        if let Some(mut head) =
            decode::parse_head_with(&mut conn.read, &parts.method, &mut conn.names)?
        {
            head.keep_alive &= keep_alive;
            return Ok(head);
        }
        match poll_fn(|cx| conn.poll_fill(cx)).await {
            Ok(0) if resendable && conn.read.is_empty() => {
                return Err(Failure::Stale(Error::Closed))
            }
            Ok(0) => return Err(Error::Closed.into()),
            Ok(_) => {}
            Err(err) if resendable && conn.read.is_empty() => {
                return Err(Failure::Stale(Error::Io(err)))
            }
            Err(err) => return Err(Error::Io(err).into()),
        }
    }
}

/// How far a request went out.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// All of it.
    All,
    /// The upstream answered (or closed) while it was not taking more: the rest is not sent.
    Answered,
}

/// Writes the head in `conn.write` and the body as `framing` says, unless the upstream
/// answers first.
async fn write_request(
    conn: &mut Conn,
    body: &mut ProxyBody,
    framing: encode::Framing,
    headers: &http::HeaderMap,
) -> Result<Sent, Failure> {
    use encode::Framing;
    if framing == Framing::Empty {
        return flush(conn).await;
    }
    let mut sent: u64 = 0;
    let mut trailers = None;
    loop {
        // A frame that is ready now joins the buffer; before waiting for one, what is
        // buffered (the head at first) goes out.
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                if flush(conn).await? == Sent::Answered {
                    return Ok(Sent::Answered);
                }
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(Failure::Body)?;
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
                continue;
            }
        };
        sent += data.len() as u64;
        match framing {
            Framing::Length(n) if sent > n => {
                return Err(Error::RequestLength("longer than its Content-Length").into())
            }
            Framing::Length(_) if data.len() >= WRITE_DIRECT => {
                if flush(conn).await? == Sent::Answered
                    || send(conn, Some(&data)).await? == Sent::Answered
                {
                    return Ok(Sent::Answered);
                }
            }
            Framing::Length(_) => conn.write.extend_from_slice(&data),
            _ => encode::chunk(&mut conn.write, &data),
        }
        if conn.write.len() >= WRITE_HIGH && flush(conn).await? == Sent::Answered {
            return Ok(Sent::Answered);
        }
    }
    match framing {
        Framing::Length(n) if sent < n => {
            return Err(Error::RequestLength("shorter than its Content-Length").into())
        }
        Framing::Chunked => encode::last_chunk(&mut conn.write, headers, trailers.as_ref()),
        _ => {}
    }
    flush(conn).await
}

/// Writes out and empties the write buffer (unless the upstream answers first).
async fn flush(conn: &mut Conn) -> Result<Sent, Failure> {
    let sent = send(conn, None).await?;
    conn.write.clear();
    Ok(sent)
}

/// Writes `data` (`None`: the write buffer) and flushes. Whenever the upstream takes no more
/// for now, its side is read: bytes there (other than an interim `1xx`) or its end mean it
/// answered, and the rest is not sent.
async fn send(conn: &mut Conn, data: Option<&[u8]>) -> Result<Sent, Failure> {
    let Conn {
        io, read, write, ..
    } = conn;
    let out: &[u8] = data.unwrap_or(write.as_slice());
    let mut done = 0;
    poll_fn(|cx| loop {
        let step = if done < out.len() {
            Pin::new(&mut *io).poll_write(cx, &out[done..])
        } else {
            Pin::new(&mut *io).poll_flush(cx).map_ok(|()| usize::MAX)
        };
        match step {
            Poll::Ready(Ok(usize::MAX)) => return Poll::Ready(Ok(Sent::All)),
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => done += n,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => {
                return match conn::fill(io, read, cx) {
                    Poll::Ready(Ok(0)) => Poll::Ready(Ok(Sent::Answered)),
                    Poll::Ready(Ok(_)) if !decode::starts_interim(read) => {
                        Poll::Ready(Ok(Sent::Answered))
                    }
                    // An interim answer (`100 Continue`): keep sending; the read side is
                    // looked at again the next time the upstream takes no more.
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                    Poll::Pending => Poll::Pending,
                };
            }
        }
    })
    .await
    .map_err(|err| Failure::Error(Error::Io(err)))
}

#[cfg(test)]
mod tests;
