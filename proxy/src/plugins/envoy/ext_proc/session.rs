//! One `ExternalProcessor/Process` stream per HTTP request, and the per-request state the
//! plugin's phases share.
//!
//! The gRPC call runs in a task of its own that forwards the server's messages into a small
//! bounded queue, so that opening a stream never waits (a server may send nothing before the
//! first message) and the body streams can poll for answers. The task ends when the request's
//! side goes away (its queue closes), cancelling the call.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    ImmediateResponse, ProcessingRequest, ProcessingResponse,
};
use futures::channel::mpsc;
use futures::StreamExt;
use tonic::transport::Channel;

use super::mode::Mode;
use crate::plugins::envoy::failure::{Failure, Reason};

/// Answers queued between the call's task and the request at most.
const QUEUED_ANSWERS: usize = 4;

/// The request's side of one open stream.
pub(super) struct Session {
    out: mpsc::UnboundedSender<ProcessingRequest>,
    answers: tokio::sync::mpsc::Receiver<Result<ProcessingResponse, Failure>>,
}

impl Session {
    /// Opens a stream on `channel` (the call starts in its own task).
    pub(super) fn open(channel: Channel) -> Self {
        let (out, requests) = mpsc::unbounded();
        let (answers_tx, answers) = tokio::sync::mpsc::channel(QUEUED_ANSWERS);
        tokio::spawn(async move {
            let mut client = ExternalProcessorClient::new(channel);
            let call = client.process(requests);
            let mut stream = tokio::select! {
                opened = call => match opened {
                    Ok(response) => response.into_inner(),
                    Err(status) => {
                        let _ = answers_tx.send(Err(Failure::from_status(&status))).await;
                        return;
                    }
                },
                () = answers_tx.closed() => return,
            };
            loop {
                let next = tokio::select! {
                    next = stream.next() => next,
                    () = answers_tx.closed() => return,
                };
                let answer = match next {
                    Some(Ok(message)) => Ok(message),
                    Some(Err(status)) => Err(Failure::from_status(&status)),
                    None => Err(Failure::new(
                        Reason::Unavailable,
                        "the server closed the stream",
                    )),
                };
                let last = answer.is_err();
                if answers_tx.send(answer).await.is_err() || last {
                    return;
                }
            }
        });
        Self { out, answers }
    }

    /// Queues `message` for the server.
    pub(super) fn send(&self, message: ProcessingRequest) -> Result<(), Failure> {
        self.out
            .unbounded_send(message)
            .map_err(|_| Failure::new(Reason::Unavailable, "the stream is closed"))
    }

    /// The next answer, polled (the caller bounds the wait).
    pub(super) fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<ProcessingResponse, Failure>> {
        self.answers.poll_recv(cx).map(|answer| {
            answer.unwrap_or_else(|| Err(Failure::new(Reason::Unavailable, "the stream ended")))
        })
    }

    /// Sends `message` and waits for one answer, at most `timeout`.
    pub(super) async fn exchange(
        &mut self,
        message: ProcessingRequest,
        timeout: Duration,
    ) -> Result<ProcessingResponse, Failure> {
        self.send(message)?;
        match tokio::time::timeout(timeout, std::future::poll_fn(|cx| self.poll_answer(cx))).await {
            Ok(answer) => answer,
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!("no answer within {timeout:?}"),
            )),
        }
    }
}

/// What one request's phases share (behind a mutex: a body stream holds it while it runs).
pub(super) struct State {
    /// The stream, once opened; `None` again after a failure or an immediate response.
    session: Option<Session>,
    /// Where to open it.
    channel: Option<Channel>,
    /// Processing ended (failure let through, immediate response, end of stream): later
    /// phases pass everything through.
    pub(super) done: bool,
    /// The modes in force (the configured ones, changed by an allowed `mode_override`).
    pub(super) mode: Mode,
    /// An answer decided while the request body streamed (an `immediate_response`, or a
    /// fail-closed failure): the response hooks put it in place of the upstream's answer.
    pub(super) stashed: Option<Stashed>,
}

/// An answer the response phase puts in place of the upstream's.
pub(super) enum Stashed {
    /// The server's `immediate_response`.
    Immediate(ImmediateResponse),
    /// A fail-closed failure: status and body.
    Failed(http::StatusCode, String),
}

/// The state shared by a request's phases.
pub(super) type Shared = Arc<tokio::sync::Mutex<State>>;

impl State {
    pub(super) fn new(channel: Option<Channel>, mode: Mode) -> Self {
        Self {
            session: None,
            channel,
            done: false,
            mode,
            stashed: None,
        }
    }

    /// The open stream, opened now if needed.
    pub(super) fn session(&mut self) -> Result<&mut Session, Failure> {
        if self.session.is_none() {
            let channel = self
                .channel
                .take()
                .ok_or_else(|| Failure::new(Reason::Unavailable, "the target has no endpoint"))?;
            self.session = Some(Session::open(channel));
        }
        Ok(self.session.as_mut().expect("opened above"))
    }

    /// Ends processing for this request: the stream is dropped (cancelled).
    pub(super) fn finish(&mut self) {
        self.done = true;
        self.session = None;
    }
}
