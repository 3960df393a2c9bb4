//! The body filters of one request (or response), run chunk by chunk as a stream.
//!
//! ```text
//!  chunk ─► filter a ─► filter b ─► filter c ─► out        (an empty result stops the chunk)
//!  end   ─► a.on_end ─► b.on_chunk(a's rest), b.on_end ─► c.on_chunk(..), c.on_end ─► out
//! ```
//!
//! When the inner body says the chunk it just gave was its last, the chunk and the end travel
//! together: each filter sees its last chunk and then its end before the next filter does —
//! the order Edge Microgateway's plugins observe.
//!
//! A filter that fails or panics ends the stream with an error and is logged. On a response
//! body the client sees a truncated or reset response; on a request body the upstream call
//! fails and the client gets the failure's status (see [`BodyFilterError::status`]). Time spent in each filter is added up and reported to the
//! observer once, when the body ends or is dropped.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::guard::{self, Failure};
use super::lap::Lap;
use super::{ChainObserver, HookPhase, Link};
use crate::plugin::{BodyFilter, BoxError, ProxyBody};
use hookway_crds::snapshot::ObjectKey;

/// A body filter failed mid-stream: the stream ends with this error.
#[derive(Debug, thiserror::Error)]
#[error("plugin {alias} failed in {phase}")]
pub struct BodyFilterError {
    /// The plugin's alias.
    pub alias: Arc<str>,
    /// `request_body` or `response_body`.
    pub phase: &'static str,
    /// The status the failure asks for (the plugin error's status, 500 for a panic): what the
    /// client gets when a request body filter fails before the upstream answered.
    pub status: StatusCode,
}

struct Stage {
    filter: Box<dyn BodyFilter>,
    link: usize,
    spent: Duration,
}

/// The filters of one body, in run order, with what they need to report.
pub(crate) struct FilterStack {
    stages: Vec<Stage>,
    links: Arc<[Link]>,
    route: Option<Arc<ObjectKey>>,
    observer: Arc<dyn ChainObserver>,
    phase: HookPhase,
    reported: bool,
}

impl FilterStack {
    /// An empty stack for `phase` (`RequestBody` or `ResponseBody`).
    pub(crate) fn new(
        links: Arc<[Link]>,
        route: Option<Arc<ObjectKey>>,
        observer: Arc<dyn ChainObserver>,
        phase: HookPhase,
    ) -> Self {
        Self {
            stages: Vec::new(),
            links,
            route,
            observer,
            phase,
            reported: false,
        }
    }

    /// Adds the filter of link `link` after the ones already there.
    pub(crate) fn push(&mut self, link: usize, filter: Box<dyn BodyFilter>) {
        self.stages.push(Stage {
            filter,
            link,
            spent: Duration::ZERO,
        });
    }

    /// Whether no filter was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Passes one chunk through every filter; an empty result means "nothing to send yet".
    fn chunk(&mut self, mut chunk: Bytes) -> Result<Bytes, BodyFilterError> {
        let mut clock = Lap::start();
        for i in 0..self.stages.len() {
            if chunk.is_empty() {
                break;
            }
            chunk = self.on_chunk(i, chunk, &mut clock)?;
        }
        Ok(chunk)
    }

    /// End of stream, with the last chunk when the inner body gave it with its end. What is
    /// left to send is appended to `out`, in order.
    fn finish(
        &mut self,
        last: Option<Bytes>,
        out: &mut VecDeque<Bytes>,
    ) -> Result<(), BodyFilterError> {
        out.extend(last.filter(|b| !b.is_empty()));
        let mut clock = Lap::start();
        for i in 0..self.stages.len() {
            let pieces = out.len();
            for _ in 0..pieces {
                let piece = out.pop_front().unwrap_or_default();
                let piece = self.on_chunk(i, piece, &mut clock)?;
                if !piece.is_empty() {
                    out.push_back(piece);
                }
            }
            let stage = &mut self.stages[i];
            let result = guard::call_fallible(|| stage.filter.on_end());
            stage.spent += clock.lap();
            match result {
                Ok(rest) => out.extend(rest.filter(|b| !b.is_empty())),
                Err(failure) => return Err(self.failed(i, failure)),
            }
        }
        Ok(())
    }

    fn on_chunk(
        &mut self,
        i: usize,
        chunk: Bytes,
        clock: &mut Lap,
    ) -> Result<Bytes, BodyFilterError> {
        let stage = &mut self.stages[i];
        let result = guard::call_fallible(|| stage.filter.on_chunk(chunk));
        stage.spent += clock.lap();
        result.map_err(|failure| self.failed(i, failure))
    }

    fn failed(&self, i: usize, failure: Failure) -> BodyFilterError {
        let link = &self.links[self.stages[i].link];
        guard::report(
            link,
            self.phase,
            self.route.as_deref(),
            &failure,
            &*self.observer,
        );
        BodyFilterError {
            alias: link.alias.clone(),
            phase: self.phase.as_str(),
            status: failure.status(),
        }
    }

    /// Reports the time spent in each filter, once.
    fn report(&mut self) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        for stage in &self.stages {
            let link = &self.links[stage.link];
            self.observer.hook(link, self.phase, stage.spent);
        }
    }
}

impl Drop for FilterStack {
    fn drop(&mut self) {
        self.report();
    }
}

/// A body run through a [`FilterStack`] (which may be empty: then it only counts bytes).
pub(crate) struct FilteredBody {
    inner: ProxyBody,
    stack: FilterStack,
    /// Output waiting to be sent (only used at the end of the stream).
    pending: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    done: bool,
    /// Counts the bytes read from `inner`.
    counter: Option<Arc<AtomicU64>>,
}

impl FilteredBody {
    /// Wraps `inner`; `counter`, when given, counts the bytes read from it.
    pub(crate) fn new(
        inner: ProxyBody,
        stack: FilterStack,
        counter: Option<Arc<AtomicU64>>,
    ) -> Self {
        Self {
            inner,
            stack,
            pending: VecDeque::new(),
            trailers: None,
            done: false,
            counter,
        }
    }

    fn finish(&mut self, last: Option<Bytes>) -> Result<(), BoxError> {
        self.done = true;
        let result = self.stack.finish(last, &mut self.pending);
        self.stack.report();
        result.map_err(|e| {
            self.pending.clear();
            Box::new(e) as BoxError
        })
    }
}

impl Body for FilteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(piece) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    this.done = true;
                    this.stack.report();
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    if let Err(e) = this.finish(None) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    continue;
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    if let Some(counter) = &this.counter {
                        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    if this.inner.is_end_stream() {
                        if let Err(e) = this.finish(Some(data)) {
                            return Poll::Ready(Some(Err(e)));
                        }
                        continue;
                    }
                    match this.stack.chunk(data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => {
                            this.done = true;
                            this.stack.report();
                            return Poll::Ready(Some(Err(Box::new(e))));
                        }
                    }
                }
                Err(frame) => {
                    // Trailers end the data: finish the filters, then send them.
                    if let Ok(trailers) = frame.into_trailers() {
                        this.trailers = Some(trailers);
                        if let Err(e) = this.finish(None) {
                            this.trailers = None;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.stack.is_empty() && !self.done {
            return self.inner.is_end_stream();
        }
        self.done && self.pending.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.stack.is_empty() && !self.done {
            // Nothing changes the bytes: the inner framing still holds.
            return self.inner.size_hint();
        }
        SizeHint::default()
    }
}
