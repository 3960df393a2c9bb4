//! The completion tracker: the outermost wrapper of every response body. When the body ends,
//! fails, or is dropped before its end (the client went away), it runs `on_complete` once for
//! every plugin that ran, in descending order. Per chunk it only counts bytes.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};

use super::guard;
use super::lap::Lap;
use super::link_set::LinkSet;
use super::{ChainObserver, HookPhase, Link};
use crate::plugin::{BoxError, Completion, Ctx, Phases, ProxyBody};

/// Everything needed to run the completion hooks, kept until the body is done.
pub(crate) struct Finisher {
    pub(crate) ctx: Ctx,
    pub(crate) links: Arc<[Link]>,
    pub(crate) ran: LinkSet,
    /// Links `0..ran_until` may have run (those in `ran`).
    pub(crate) ran_until: usize,
    pub(crate) observer: Arc<dyn ChainObserver>,
    pub(crate) status: StatusCode,
    pub(crate) received: Option<Arc<AtomicU64>>,
    pub(crate) upstream_duration: Option<Duration>,
    pub(crate) error: Option<String>,
}

impl Finisher {
    fn finish(self, bytes_sent: u64, body_error: Option<String>, client_aborted: bool) {
        let Finisher {
            ctx,
            links,
            ran,
            ran_until,
            observer,
            status,
            received,
            upstream_duration,
            error,
        } = self;
        // One clock read: the request's duration ends where the first completion hook's starts.
        let now = Instant::now();
        let completion = Completion {
            status: status.as_u16(),
            bytes_sent,
            bytes_received: received.map_or(0, |c| c.load(Ordering::Relaxed)),
            duration: now.saturating_duration_since(ctx.started),
            upstream_duration,
            error: error.or(body_error),
            client_aborted,
        };
        let mut clock = Lap::starting_at(now);
        for i in (0..ran_until).rev().filter(|&i| ran.contains(i)) {
            let link = &links[i];
            if !link.has(Phases::COMPLETE) {
                continue;
            }
            if let Err(failure) = guard::call(|| link.plugin.on_complete(&ctx, &completion)) {
                // Nothing left to answer: the failure is only logged.
                guard::report(
                    link,
                    HookPhase::Complete,
                    ctx.route.as_deref(),
                    &failure,
                    &*observer,
                );
            }
            observer.hook(link, HookPhase::Complete, clock.lap());
        }
    }
}

/// A response body that runs the completion hooks when it is done.
pub(crate) struct CompletionBody {
    inner: ProxyBody,
    bytes_sent: u64,
    finisher: Option<Finisher>,
}

impl CompletionBody {
    /// Wraps `inner`.
    pub(crate) fn new(inner: ProxyBody, finisher: Finisher) -> Self {
        Self {
            inner,
            bytes_sent: 0,
            finisher: Some(finisher),
        }
    }

    fn finish(&mut self, error: Option<String>, client_aborted: bool) {
        if let Some(finisher) = self.finisher.take() {
            finisher.finish(self.bytes_sent, error, client_aborted);
        }
    }
}

impl Body for CompletionBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes_sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(None, false);
                }
            }
            Some(Err(e)) => this.finish(Some(e.to_string()), false),
            None => this.finish(None, false),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CompletionBody {
    fn drop(&mut self) {
        // A body nobody read to its end: fine when there was nothing left (hyper need not poll
        // an empty body), otherwise the client went away.
        let aborted = !self.inner.is_end_stream();
        self.finish(None, aborted);
    }
}
