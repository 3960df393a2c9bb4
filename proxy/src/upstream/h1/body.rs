//! A response body read straight from its connection. The body owns the connection and gives
//! it back to its endpoint's idle pool when the body has been read cleanly to its end, the
//! response allowed keep-alive and nothing was left over; a body dropped early, cut short,
//! badly framed or followed by unasked bytes closes its connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::decode::{BodyDecoder, Framing, Step};
use super::{Conn, Error};
use crate::upstream::endpoint::Endpoint;

/// The body of a response read by [`super::exchange`].
pub struct Body {
    conn: Option<Box<Conn>>,
    endpoint: Arc<Endpoint>,
    decoder: BodyDecoder,
    keep_alive: bool,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("decoder", &self.decoder)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

impl Body {
    /// The body framed by `framing` on `conn`, whose read buffer holds what followed the head.
    pub fn new(
        conn: Box<Conn>,
        endpoint: Arc<Endpoint>,
        framing: Framing,
        keep_alive: bool,
    ) -> Self {
        let mut body = Self {
            conn: Some(conn),
            endpoint,
            decoder: BodyDecoder::new(framing),
            keep_alive,
        };
        if body.decoder == BodyDecoder::Done {
            body.finish();
        }
        body
    }

    /// The body has been read to its end: the connection goes back to the pool if it may.
    fn finish(&mut self) {
        self.decoder = BodyDecoder::Done;
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !self.keep_alive {
            return;
        }
        if !conn.read.is_empty() {
            // Bytes nobody asked for: they would be read as the next response.
            tracing::debug!(endpoint = %self.endpoint.authority(), extra = conn.read.len(), "upstream sent bytes after the response; connection not reused");
            return;
        }
        conn.reused = true;
        self.endpoint.put(conn);
    }

    fn fail(&mut self, err: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.decoder = BodyDecoder::Done;
        self.conn = None;
        Poll::Ready(Some(Err(err)))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.step(&mut conn.read) {
                Ok(Step::Data(data)) => {
                    if let Err(err) = this.decoder.settle(&mut conn.read) {
                        return this.fail(err);
                    }
                    if this.decoder == BodyDecoder::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Trailers(trailers)) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(err) => return this.fail(err),
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    if let Err(err) = this.decoder.eof() {
                        return this.fail(err);
                    }
                    // Close-delimited: ended, and the connection with it.
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(_) => {}
                Err(err) => return this.fail(Error::Io(err)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder == BodyDecoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            BodyDecoder::Done => SizeHint::with_exact(0),
            BodyDecoder::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}
