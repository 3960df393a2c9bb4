//! A response body that keeps its node counted as busy (least-request) until it ends, and
//! gives its connection back to the endpoint when it has been read to the end.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::balancer::InFlight;
use super::endpoint::Checkin;

/// The upstream's body plus the in-flight guard of its node and its connection's checkin.
pub struct GuardedBody {
    inner: Incoming,
    _guard: Option<InFlight>,
    checkin: Option<Checkin>,
}

impl GuardedBody {
    /// Wraps `inner`, releasing `guard` when the body is dropped and checking the connection
    /// in when the body ends (a body dropped early closes its connection instead).
    pub fn new(inner: Incoming, guard: Option<InFlight>, checkin: Option<Checkin>) -> Self {
        Self {
            inner,
            _guard: guard,
            checkin,
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.check_in(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.check_in(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl GuardedBody {
    fn check_in(&mut self) {
        if let Some(checkin) = self.checkin.take() {
            checkin.done();
        }
    }
}
