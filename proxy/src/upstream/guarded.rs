//! A response body that keeps its node counted as busy (least-request) until it ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::balancer::InFlight;

/// The upstream's body plus the in-flight guard of its node.
pub struct GuardedBody {
    inner: Incoming,
    _guard: Option<InFlight>,
}

impl GuardedBody {
    /// Wraps `inner`, releasing `guard` when the body is dropped.
    pub fn new(inner: Incoming, guard: Option<InFlight>) -> Self {
        Self {
            inner,
            _guard: guard,
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
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
