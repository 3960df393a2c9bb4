//! A response body that keeps its node counted as busy (least-request) until it ends, and
//! frees its HTTP/2 stream when it has been read to the end (an HTTP/1.1 body gives its
//! connection back itself, [`super::h1::Body`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::balancer::InFlight;
use super::endpoint::{Checkin, UpstreamBody};
use crate::plugin::BoxError;

/// The upstream's body plus the in-flight guard of its node and its connection's checkin.
pub struct GuardedBody {
    inner: UpstreamBody,
    _guard: Option<InFlight>,
    checkin: Option<Checkin>,
}

impl GuardedBody {
    /// Wraps `inner`, releasing `guard` when the body is dropped and checking the connection
    /// in when the body ends (a body dropped early closes its connection instead).
    pub fn new(inner: UpstreamBody, guard: Option<InFlight>, checkin: Option<Checkin>) -> Self {
        Self {
            inner,
            _guard: guard,
            checkin,
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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
