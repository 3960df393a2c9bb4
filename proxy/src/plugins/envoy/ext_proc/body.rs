//! The body streams of `ext_proc`: a request or response body (and its trailers) sent to the
//! server as the processing mode says, and what the server answers sent on.
//!
//! ```text
//!  STREAMED  chunk ─► server (at most MAX_IN_FLIGHT unanswered) ─► answer i replaces chunk i
//!  BUFFERED  chunks ─► buffer (≤ max_buffered_bytes) ─► server ─► answer replaces the body
//!  NONE      chunks pass through untouched
//!  trailers  SEND: ─► server ─► mutated trailers, after every chunk's answer
//! ```
//!
//! Every wait (for the request's state, for an answer) is bounded by the message timeout. A
//! failure ends processing for the request: fail open passes the chunks the server holds and
//! the rest of the body through unchanged; fail closed ends the body with an error — on a
//! request the response hooks then answer `status_on_error` (see `Stashed`), on a response the
//! client sees a truncated body. An `immediate_response` to a request body chunk is answered
//! the same way; to a response body chunk (the head is gone) it ends the body with an error.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Msg;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Answer;
use envoy_types::pb::envoy::service::ext_proc::v3::{HttpBody, HttpTrailers, ProcessingResponse};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::OwnedMutexGuard;

use super::mode::{BodyMode, HeaderMode};
use super::session::{Shared, Stashed, State};
use super::{message, mutation};
use crate::plugin::{BoxError, ProxyBody};
use crate::plugins::envoy::failure::{Failure, FailureMode, Reason, RequestInfo};
use crate::plugins::envoy::headers::pb_header_map;

/// Chunks sent and not yet answered, at most (bounds the memory a slow server costs).
const MAX_IN_FLIGHT: usize = 8;

/// Which body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    Request,
    Response,
}

impl Direction {
    fn phase(self) -> &'static str {
        match self {
            Direction::Request => "request_body",
            Direction::Response => "response_body",
        }
    }
}

/// What a body stream needs, before it runs.
pub(super) struct ProcBody {
    dir: Direction,
    shared: Shared,
    timeout: Duration,
    max_buffered: usize,
    failure: FailureMode,
    info: RequestInfo,
}

impl ProcBody {
    pub(super) fn new(
        dir: Direction,
        shared: Shared,
        timeout: Duration,
        max_buffered: usize,
        failure: FailureMode,
        info: RequestInfo,
    ) -> Self {
        Self {
            dir,
            shared,
            timeout,
            max_buffered,
            failure,
            info,
        }
    }

    /// `inner` run through the server.
    pub(super) fn wrap(self, inner: ProxyBody) -> ProxyBody {
        Running {
            deadline: Box::pin(tokio::time::sleep(self.timeout)),
            cfg: self,
            inner,
            lock: None,
            guard: None,
            armed: false,
            mode: BodyMode::None,
            send_trailers: false,
            sent: VecDeque::new(),
            eos_sent: false,
            chunks: 0,
            buffer: BytesMut::new(),
            buffer_sent: false,
            trailers_pending: None,
            trailers_last: None,
            out: VecDeque::new(),
            inner_done: false,
            passthrough: false,
            finished: false,
        }
        .boxed_unsync()
    }
}

type Lock = Pin<Box<dyn Future<Output = OwnedMutexGuard<State>> + Send>>;

struct Running {
    cfg: ProcBody,
    inner: ProxyBody,
    /// Waiting for the request's state (a previous phase may still hold it).
    lock: Option<Lock>,
    guard: Option<OwnedMutexGuard<State>>,
    /// The bound on the current wait.
    deadline: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    mode: BodyMode,
    send_trailers: bool,
    /// STREAMED: the chunks sent and not answered yet, in order.
    sent: VecDeque<Bytes>,
    /// STREAMED: the end of stream was sent.
    eos_sent: bool,
    /// STREAMED: chunks sent so far.
    chunks: usize,
    /// BUFFERED: the body so far, and whether it was sent.
    buffer: BytesMut,
    buffer_sent: bool,
    /// Trailers sent to the server, waiting for its answer.
    trailers_pending: Option<HeaderMap>,
    /// Trailers not sent to the server: passed on after the last chunk.
    trailers_last: Option<HeaderMap>,
    /// Frames ready for the next reader.
    out: VecDeque<Frame<Bytes>>,
    inner_done: bool,
    /// Processing ended: the rest passes through.
    passthrough: bool,
    finished: bool,
}

impl Running {
    fn awaiting(&self) -> bool {
        !self.sent.is_empty()
            || self.trailers_pending.is_some()
            || (self.buffer_sent && self.mode == BodyMode::Buffered)
    }

    fn can_read(&self) -> bool {
        !self.inner_done
            && match self.mode {
                BodyMode::Streamed => self.sent.len() < MAX_IN_FLIGHT,
                BodyMode::Buffered => !self.buffer_sent,
                BodyMode::None => true,
            }
    }

    fn arm(&mut self) {
        self.deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + self.cfg.timeout);
        self.armed = true;
    }

    /// Whether the current wait ran out (registers the timer otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.arm();
        }
        self.deadline.as_mut().poll(cx).is_ready()
    }

    fn state(&mut self) -> &mut State {
        self.guard.as_mut().expect("held while processing")
    }

    fn send(&mut self, msg: Msg) -> Result<(), Failure> {
        let was_waiting = self.awaiting();
        self.state().session()?.send(message(msg))?;
        if !was_waiting {
            self.arm();
        }
        Ok(())
    }

    /// The lock is held: decide what this body does.
    fn start(&mut self, guard: OwnedMutexGuard<State>) {
        let mode = &guard.mode;
        let (body, trailers) = match self.cfg.dir {
            // A BUFFERED request body went through the whole-body hook already.
            Direction::Request => (
                match mode.request_body_mode {
                    BodyMode::Buffered => BodyMode::None,
                    other => other,
                },
                mode.request_trailer_mode,
            ),
            Direction::Response => (mode.response_body_mode, mode.response_trailer_mode),
        };
        self.mode = body;
        self.send_trailers = trailers == HeaderMode::Send;
        self.armed = false;
        if guard.done || (body == BodyMode::None && !self.send_trailers) {
            self.passthrough = true;
            return;
        }
        self.guard = Some(guard);
    }

    /// A failure: counted and logged; fail open passes on what the server holds, fail closed
    /// ends the body with an error.
    fn fail(&mut self, failure: Failure) -> Result<(), BoxError> {
        let phase = self.cfg.dir.phase();
        let refused = self
            .cfg
            .failure
            .fail(&failure, phase, &self.cfg.info)
            .is_some();
        if let Some(state) = self.guard.as_mut() {
            state.finish();
            if refused && self.cfg.dir == Direction::Request {
                state.stashed = Some(Stashed::Failed(
                    self.cfg.failure.status,
                    self.cfg.failure.message(&failure, phase),
                ));
            }
        }
        self.guard = None;
        if refused {
            return Err(format!(
                "{} {}: {}",
                self.cfg.failure.kind, self.cfg.failure.alias, failure.detail
            )
            .into());
        }
        self.passthrough = true;
        self.out.extend(
            self.sent
                .drain(..)
                .filter(|c| !c.is_empty())
                .map(Frame::data),
        );
        if !self.buffer.is_empty() {
            self.out
                .push_back(Frame::data(self.buffer.split().freeze()));
        }
        self.buffer_sent = false;
        self.out
            .extend(self.trailers_pending.take().map(Frame::trailers));
        if self.inner_done {
            self.out
                .extend(self.trailers_last.take().map(Frame::trailers));
        }
        Ok(())
    }

    /// One answer from the server.
    fn on_answer(&mut self, answer: ProcessingResponse) -> Result<(), BoxError> {
        let dir = self.cfg.dir;
        let response = match answer.response {
            Some(Answer::ImmediateResponse(ir)) => {
                let state = self.state();
                state.finish();
                if dir == Direction::Request {
                    state.stashed = Some(Stashed::Immediate(ir));
                }
                self.guard = None;
                return Err(match dir {
                    Direction::Request => "ext_proc: immediate response to the request body".into(),
                    Direction::Response => {
                        tracing::warn!(alias = %self.cfg.failure.alias, "ext_proc: an immediate response to a response body cannot be sent (the head is gone): the body ends");
                        "ext_proc: immediate response to the response body".into()
                    }
                });
            }
            other => other,
        };
        match (dir, response) {
            (Direction::Request, Some(Answer::RequestBody(b)))
            | (Direction::Response, Some(Answer::ResponseBody(b)))
                if !self.sent.is_empty() || self.buffer_sent =>
            {
                let original = match self.mode {
                    BodyMode::Buffered => {
                        self.buffer_sent = false;
                        self.mode = BodyMode::None;
                        self.buffer.split().freeze()
                    }
                    _ => self.sent.pop_front().unwrap_or_default(),
                };
                let mutation = b.response.as_ref().and_then(|c| c.body_mutation.as_ref());
                let body = mutation::body(original, mutation);
                if !body.is_empty() {
                    self.out.push_back(Frame::data(body));
                }
                Ok(())
            }
            (Direction::Request, Some(Answer::RequestTrailers(t)))
            | (Direction::Response, Some(Answer::ResponseTrailers(t)))
                if self.trailers_pending.is_some() && self.sent.is_empty() =>
            {
                let mut trailers = self.trailers_pending.take().unwrap_or_default();
                if let Some(m) = &t.header_mutation {
                    if let Err(e) = mutation::trailers(&mut trailers, m) {
                        return self.fail(Failure::malformed(e));
                    }
                }
                self.out.push_back(Frame::trailers(trailers));
                Ok(())
            }
            (_, Some(other)) => self.fail(Failure::malformed(format!(
                "unexpected answer {} in {}",
                super::answer_name(&other),
                dir.phase()
            ))),
            (_, None) => self.fail(Failure::malformed("an answer without a response")),
        }
    }

    fn body_msg(&self, body: &[u8], end_of_stream: bool) -> Msg {
        let body = HttpBody {
            body: body.to_vec(),
            end_of_stream,
            ..Default::default()
        };
        match self.cfg.dir {
            Direction::Request => Msg::RequestBody(body),
            Direction::Response => Msg::ResponseBody(body),
        }
    }

    fn send_buffer(&mut self, end_of_stream: bool) -> Result<(), Failure> {
        let msg = self.body_msg(&self.buffer, end_of_stream);
        self.send(msg)?;
        self.buffer_sent = true;
        Ok(())
    }

    /// A frame of the inner body.
    fn on_frame(&mut self, frame: Frame<Bytes>) -> Result<(), BoxError> {
        let sent = match frame.into_data() {
            Ok(data) => match self.mode {
                BodyMode::None => {
                    self.out.push_back(Frame::data(data));
                    Ok(())
                }
                BodyMode::Streamed => {
                    let eos = self.inner.is_end_stream();
                    let msg = self.body_msg(&data, eos);
                    let sent = self.send(msg);
                    self.chunks += 1;
                    self.sent.push_back(data);
                    if eos {
                        self.eos_sent = true;
                        self.inner_done = true;
                    }
                    sent
                }
                BodyMode::Buffered => {
                    if self.buffer.len() + data.len() > self.cfg.max_buffered {
                        let max = self.cfg.max_buffered;
                        return self.fail(Failure::new(
                            Reason::Malformed,
                            format!("the body is larger than max_buffered_bytes ({max})"),
                        ));
                    }
                    self.buffer.extend_from_slice(&data);
                    if self.inner.is_end_stream() {
                        self.inner_done = true;
                        self.send_buffer(true)
                    } else {
                        Ok(())
                    }
                }
            },
            Err(frame) => {
                let Ok(trailers) = frame.into_trailers() else {
                    return Ok(());
                };
                self.inner_done = true;
                let body = match self.mode {
                    BodyMode::Buffered if !self.buffer_sent => self.send_buffer(false),
                    _ => Ok(()),
                };
                match body {
                    Ok(()) if self.send_trailers => {
                        let msg = HttpTrailers {
                            trailers: Some(pb_header_map(&[], &trailers)),
                        };
                        let msg = match self.cfg.dir {
                            Direction::Request => Msg::RequestTrailers(msg),
                            Direction::Response => Msg::ResponseTrailers(msg),
                        };
                        self.trailers_pending = Some(trailers);
                        self.send(msg)
                    }
                    Ok(()) => {
                        self.trailers_last = Some(trailers);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match sent {
            Ok(()) => Ok(()),
            Err(failure) => self.fail(failure),
        }
    }

    /// The inner body ended (without trailers).
    fn on_end(&mut self) -> Result<(), BoxError> {
        self.inner_done = true;
        let sent = match self.mode {
            // An empty body sends nothing (as in Envoy, where the head carried the end).
            BodyMode::Streamed if !self.eos_sent && self.chunks > 0 => {
                self.eos_sent = true;
                let msg = self.body_msg(&[], true);
                let sent = self.send(msg);
                self.sent.push_back(Bytes::new());
                sent
            }
            BodyMode::Buffered if !self.buffer_sent => self.send_buffer(true),
            _ => Ok(()),
        };
        sent.or_else(|failure| self.fail(failure))
    }

    /// Everything was sent and answered.
    fn complete(&mut self) {
        self.out
            .extend(self.trailers_last.take().map(Frame::trailers));
        if let Some(state) = self.guard.as_mut() {
            if self.cfg.dir == Direction::Response {
                // Nothing of this request is left to process.
                state.finish();
            }
        }
        self.guard = None;
        self.finished = true;
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The request's state first.
        if self.guard.is_none() {
            let shared = self.cfg.shared.clone();
            let lock = self
                .lock
                .get_or_insert_with(|| Box::pin(shared.lock_owned()));
            match lock.as_mut().poll(cx) {
                Poll::Ready(guard) => {
                    self.lock = None;
                    self.start(guard);
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending if self.expired(cx) => {
                    self.lock = None;
                    return Poll::Ready(self.fail(Failure::new(
                        Reason::Timeout,
                        "the previous phase did not end",
                    )));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.awaiting() {
            let answer = match self.state().session() {
                Ok(session) => session.poll_answer(cx),
                Err(failure) => Poll::Ready(Err(failure)),
            };
            match answer {
                Poll::Ready(Ok(answer)) => {
                    self.armed = false;
                    let result = self.on_answer(answer);
                    if self.awaiting() {
                        self.arm();
                    }
                    return Poll::Ready(result);
                }
                Poll::Ready(Err(failure)) => return Poll::Ready(self.fail(failure)),
                Poll::Pending if self.expired(cx) => {
                    let timeout = self.cfg.timeout;
                    return Poll::Ready(self.fail(Failure::new(
                        Reason::Timeout,
                        format!("no answer within {timeout:?}"),
                    )));
                }
                Poll::Pending => {}
            }
        }
        if self.can_read() {
            return match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(self.on_end()),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(self.on_frame(frame)),
            };
        }
        if self.awaiting() {
            return Poll::Pending;
        }
        self.complete();
        Poll::Ready(Ok(()))
    }
}

impl Body for Running {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(frame) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            if this.passthrough {
                return match Pin::new(&mut this.inner).poll_frame(cx) {
                    Poll::Ready(None) => {
                        this.finished = true;
                        this.out
                            .extend(this.trailers_last.take().map(Frame::trailers));
                        continue;
                    }
                    other => other,
                };
            }
            match this.step(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    this.finished = true;
                    this.out.clear();
                    this.guard = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
        ExternalProcessor, ExternalProcessorServer,
    };
    use envoy_types::pb::envoy::service::ext_proc::v3::{
        BodyResponse, HeaderMutation, ProcessingRequest, TrailersResponse,
    };
    use futures::StreamExt;
    use http::StatusCode;
    use http_body_util::StreamBody;

    use super::*;
    use crate::plugins::envoy::ext_proc::mode::ProcessingMode;
    use crate::plugins::envoy::headers::pb_header;

    /// Answers body chunks unchanged and trailers with `x-t: mutated`, `x-gone` removed; with
    /// `silent`, answers nothing.
    #[derive(Clone)]
    struct Server {
        silent: bool,
    }

    #[tonic::async_trait]
    impl ExternalProcessor for Server {
        type ProcessStream =
            Pin<Box<dyn futures::Stream<Item = Result<ProcessingResponse, tonic::Status>> + Send>>;

        async fn process(
            &self,
            request: tonic::Request<tonic::Streaming<ProcessingRequest>>,
        ) -> Result<tonic::Response<Self::ProcessStream>, tonic::Status> {
            let silent = self.silent;
            let answers = request.into_inner().filter_map(move |msg| async move {
                if silent {
                    return None;
                }
                let response = match msg.ok()?.request? {
                    Msg::ResponseBody(_) => Answer::ResponseBody(BodyResponse::default()),
                    Msg::ResponseTrailers(_) => Answer::ResponseTrailers(TrailersResponse {
                        header_mutation: Some(HeaderMutation {
                            set_headers: vec![
                                envoy_types::pb::envoy::config::core::v3::HeaderValueOption {
                                    header: Some(pb_header("x-t", b"mutated")),
                                    append_action: 2,
                                    ..Default::default()
                                },
                            ],
                            remove_headers: vec!["x-gone".into()],
                        }),
                    }),
                    _ => return None,
                };
                Some(Ok(ProcessingResponse {
                    response: Some(response),
                    ..Default::default()
                }))
            });
            Ok(tonic::Response::new(Box::pin(answers)))
        }
    }

    async fn serve(silent: bool) -> tonic::transport::Channel {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = futures::stream::unfold(listener, |l| async move {
            Some((l.accept().await.map(|(s, _)| s), l))
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .serve_with_incoming(ExternalProcessorServer::new(Server { silent }), incoming),
        );
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy()
    }

    fn body_with_trailers() -> ProxyBody {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", http::HeaderValue::from_static("original"));
        trailers.insert("x-gone", http::HeaderValue::from_static("1"));
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
            Ok(Frame::trailers(trailers)),
        ];
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    fn proc_body(channel: Option<tonic::transport::Channel>, allow: bool) -> ProxyBody {
        let mode = ProcessingMode {
            response_body_mode: BodyMode::Streamed,
            response_trailer_mode: HeaderMode::Send,
            ..ProcessingMode::default()
        };
        let shared = Arc::new(tokio::sync::Mutex::new(State::new(channel, mode)));
        let failure = FailureMode {
            kind: "ext_proc",
            alias: "t".into(),
            target: "test".into(),
            allow,
            status: StatusCode::INTERNAL_SERVER_ERROR,
        };
        ProcBody::new(
            Direction::Response,
            shared,
            Duration::from_millis(500),
            1024,
            failure,
            RequestInfo::default(),
        )
        .wrap(body_with_trailers())
    }

    #[tokio::test]
    async fn trailers_follow_the_chunks_and_are_mutated() {
        let body = proc_body(Some(serve(false).await), false);
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["x-t"], "mutated");
        assert!(trailers.get("x-gone").is_none());
        assert_eq!(collected.to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn a_silent_server_ends_the_body_within_the_timeout_or_lets_it_through() {
        let started = std::time::Instant::now();
        let err = proc_body(Some(serve(true).await), false)
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));

        // Fail open: what the server held, and the rest, pass through unchanged.
        let collected = proc_body(Some(serve(true).await), true)
            .collect()
            .await
            .unwrap();
        assert_eq!(collected.trailers().unwrap()["x-t"], "original");
        assert_eq!(collected.to_bytes(), "abcd");

        // No endpoint at all.
        let collected = proc_body(None, true).collect().await.unwrap();
        assert_eq!(collected.to_bytes(), "abcd");
    }
}
