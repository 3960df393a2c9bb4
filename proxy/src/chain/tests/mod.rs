//! Runner tests: small probe plugins that log what they see, an in-test upstream that records
//! what it received, and an observer that records hook timings and failures.

mod bodies;
mod builder;
mod failures;
mod lifecycle;
mod phases;
mod sockets;
mod throughput;
mod whole_body;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{request, response, HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};

use super::{Chain, ChainObserver, HookPhase, Link, Upstream, UpstreamError};
use crate::plugin::{
    respond, BodyFilter, BoxError, Completion, Ctx, Flow, Hook, Phases, Plugin, PluginError,
    ProxyBody,
};
use hookway_crds::snapshot::ObjectKey;

/// What the probes saw, in order.
#[derive(Default)]
pub(crate) struct Log {
    lines: Mutex<Vec<String>>,
    completions: Mutex<Vec<(String, Completion, Vec<String>)>>,
}

impl Log {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
    /// `(plugin, completion, ctx.plugins_ran)` per completion hook call.
    pub(crate) fn completions(&self) -> Vec<(String, Completion, Vec<String>)> {
        self.completions.lock().unwrap().clone()
    }
}

/// How a probe fails.
#[derive(Clone, Copy)]
pub(crate) enum Fail {
    Error(StatusCode),
    Panic,
    AsyncPanic,
}

/// What a probe's body filter does.
#[derive(Clone, Copy)]
pub(crate) enum Filter {
    /// Logs and passes.
    Log,
    /// Upper-cases each chunk.
    Upper,
    /// Buffers everything and emits it at the end.
    Accumulate,
    /// Drops the body and emits this instead.
    Replace(&'static str),
    /// Fails on the first chunk.
    Fail,
    /// Refuses the first chunk with a 413.
    TooLarge,
    /// Panics on the first chunk.
    Panic,
}

/// A test plugin.
#[derive(Clone)]
pub(crate) struct Probe {
    name: &'static str,
    log: Arc<Log>,
    answer: bool,
    fail_request: Option<Fail>,
    fail_response: Option<Fail>,
    request_filter: Option<Filter>,
    response_filter: Option<Filter>,
    phases: Phases,
}

pub(crate) fn probe(name: &'static str, log: &Arc<Log>) -> Probe {
    Probe {
        name,
        log: log.clone(),
        answer: false,
        fail_request: None,
        fail_response: None,
        request_filter: None,
        response_filter: None,
        phases: Phases::ALL,
    }
}

impl Probe {
    pub(crate) fn answers(mut self) -> Self {
        self.answer = true;
        self
    }
    pub(crate) fn fails_request(mut self, fail: Fail) -> Self {
        self.fail_request = Some(fail);
        self
    }
    pub(crate) fn fails_response(mut self, fail: Fail) -> Self {
        self.fail_response = Some(fail);
        self
    }
    pub(crate) fn request_filter(mut self, filter: Filter) -> Self {
        self.request_filter = Some(filter);
        self
    }
    pub(crate) fn response_filter(mut self, filter: Filter) -> Self {
        self.response_filter = Some(filter);
        self
    }
    /// Declares only these optional phases (its hooks for the others still log if called).
    pub(crate) fn declares(mut self, phases: Phases) -> Self {
        self.phases = phases;
        self
    }
    pub(crate) fn link(self) -> Link {
        self.link_excluding(&[])
    }
    pub(crate) fn link_excluding(self, exclude: &[&str]) -> Link {
        let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        Link::new(self.name, "probe", Arc::new(self)).excluding(exclude)
    }

    fn filter(&self, kind: Filter, phase: &'static str) -> Box<dyn BodyFilter> {
        Box::new(ProbeFilter {
            name: self.name,
            log: self.log.clone(),
            phase,
            kind,
            buffer: Vec::new(),
        })
    }
}

/// Fails as told, unless the request has `x-spare: 1` (to show other requests are fine).
fn fail<T>(fail: Option<Fail>, spare: bool, ok: T) -> Hook<'static, Result<T, PluginError>>
where
    T: Send + 'static,
{
    match fail {
        _ if spare => Hook::Ready(Ok(ok)),
        None => Hook::Ready(Ok(ok)),
        Some(Fail::Error(status)) => Hook::Ready(Err(PluginError::with_status(status, "nope"))),
        Some(Fail::Panic) => panic!("probe panicked"),
        Some(Fail::AsyncPanic) => Hook::from_async(async {
            tokio::task::yield_now().await;
            panic!("probe panicked later")
        }),
    }
}

impl Plugin for Probe {
    fn phases(&self) -> Phases {
        self.phases
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        self.log.push(format!("{}: onrequest", self.name));
        req.headers
            .append("x-seen-by", http::HeaderValue::from_static(self.name));
        if self.answer {
            let resp = respond::text(StatusCode::ACCEPTED, &format!("early from {}", self.name));
            return Hook::Ready(Ok(Flow::Respond(resp)));
        }
        let spare = req.headers.contains_key("x-spare");
        fail(self.fail_request, spare, Flow::Continue)
    }

    fn request_body_filter(
        &self,
        _req: &request::Parts,
        _ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        self.request_filter.map(|k| self.filter(k, "request"))
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<(), PluginError>> {
        self.log.push(format!("{}: onresponse", self.name));
        resp.headers
            .append("x-seen-by", http::HeaderValue::from_static(self.name));
        fail(self.fail_response, false, ())
    }

    fn response_body_filter(
        &self,
        _resp: &response::Parts,
        _ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        self.response_filter.map(|k| self.filter(k, "response"))
    }

    fn on_complete(&self, ctx: &Ctx, completion: &Completion) {
        self.log.push(format!("{}: complete", self.name));
        let ran = ctx.plugins_ran.iter().map(|a| a.to_string()).collect();
        self.log
            .completions
            .lock()
            .unwrap()
            .push((self.name.to_string(), completion.clone(), ran));
    }
}

struct ProbeFilter {
    name: &'static str,
    log: Arc<Log>,
    phase: &'static str,
    kind: Filter,
    buffer: Vec<u8>,
}

impl BodyFilter for ProbeFilter {
    fn on_chunk(&mut self, chunk: Bytes) -> Result<Bytes, PluginError> {
        self.log.push(format!(
            "{}: ondata_{} {}",
            self.name,
            self.phase,
            chunk.len()
        ));
        match self.kind {
            Filter::Log => Ok(chunk),
            Filter::Upper => Ok(Bytes::from(chunk.to_ascii_uppercase())),
            Filter::Accumulate => {
                self.buffer.extend_from_slice(&chunk);
                Ok(Bytes::new())
            }
            Filter::Replace(_) => Ok(Bytes::new()),
            Filter::Fail => Err(PluginError::internal("filter broke")),
            Filter::TooLarge => Err(PluginError::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body over the filter's limit",
            )),
            Filter::Panic => panic!("filter panicked"),
        }
    }

    fn on_end(&mut self) -> Result<Option<Bytes>, PluginError> {
        self.log
            .push(format!("{}: onend_{}", self.name, self.phase));
        Ok(match self.kind {
            Filter::Accumulate => Some(std::mem::take(&mut self.buffer).into()),
            Filter::Replace(text) => Some(Bytes::from_static(text.as_bytes())),
            _ => None,
        })
    }
}

/// What the upstream received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// How the test upstream answers.
pub(crate) enum Answer {
    /// These chunks; the last one says "end" with its data (like a sized body).
    Chunks(Vec<&'static str>),
    /// These chunks as a stream that only ends when polled again.
    Stream(Vec<&'static str>),
    /// An error.
    Error(StatusCode, &'static str),
    /// A body fed by the test through a channel.
    Channel(Mutex<Option<futures::channel::mpsc::UnboundedReceiver<Bytes>>>),
}

pub(crate) struct TestUpstream {
    answer: Answer,
    pub(crate) received: Mutex<Vec<Received>>,
}

impl TestUpstream {
    pub(crate) fn new(answer: Answer) -> Self {
        Self {
            answer,
            received: Mutex::new(Vec::new()),
        }
    }
    pub(crate) fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }
    pub(crate) fn last(&self) -> Received {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream was called")
    }
}

impl Upstream for TestUpstream {
    fn call<'a>(
        &'a self,
        req: Request<ProxyBody>,
        _ctx: &'a mut Ctx,
    ) -> impl std::future::Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send + 'a
    {
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.expect("request body").to_bytes();
            self.received.lock().unwrap().push(Received {
                headers: parts.headers,
                body,
            });
            let body = match &self.answer {
                Answer::Chunks(chunks) => {
                    let total: usize = chunks.iter().map(|c| c.len()).sum();
                    let body = Chunks(
                        chunks
                            .iter()
                            .map(|c| Bytes::from_static(c.as_bytes()))
                            .collect(),
                    );
                    let mut resp = Response::new(body.boxed_unsync());
                    resp.headers_mut()
                        .insert(http::header::CONTENT_LENGTH, total.into());
                    return Ok(resp);
                }
                Answer::Stream(chunks) => stream_body(chunks),
                Answer::Error(status, message) => {
                    return Err(UpstreamError {
                        status: *status,
                        message: message.to_string(),
                    })
                }
                Answer::Channel(rx) => {
                    let rx = rx.lock().unwrap().take().expect("one call");
                    use futures::StreamExt;
                    StreamBody::new(rx.map(|b| Ok::<_, BoxError>(Frame::data(b)))).boxed_unsync()
                }
            };
            Ok(Response::new(body))
        })
    }
}

fn stream_body(chunks: &[&'static str]) -> ProxyBody {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
}

/// A body whose last chunk comes with its end (`is_end_stream` turns true with it).
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// Records hook timings and failures.
#[derive(Default)]
pub(crate) struct Observer {
    pub(crate) hooks: Mutex<Vec<(String, &'static str)>>,
    pub(crate) failures: Mutex<Vec<(String, Option<ObjectKey>)>>,
}

impl ChainObserver for Observer {
    fn hook(&self, link: &Link, phase: HookPhase, _elapsed: Duration) {
        self.hooks
            .lock()
            .unwrap()
            .push((link.alias.to_string(), phase.as_str()));
    }
    fn plugin_failed(&self, alias: &str, _plugin: &str, route: Option<&ObjectKey>) {
        self.failures
            .lock()
            .unwrap()
            .push((alias.to_string(), route.cloned()));
    }
}

pub(crate) fn ctx() -> Ctx {
    let mut ctx = Ctx::new(
        "127.0.0.1:40000".parse().unwrap(),
        "127.0.0.1:8080".parse().unwrap(),
        false,
    );
    ctx.route = Some(std::sync::Arc::new(ObjectKey::new("default", "route")));
    ctx
}

pub(crate) fn get(path: &str) -> Request<ProxyBody> {
    Request::get(path).body(respond::empty()).unwrap()
}

pub(crate) fn post(path: &str, chunks: &[&'static str]) -> Request<ProxyBody> {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    Request::post(path)
        .header(http::header::CONTENT_LENGTH, total)
        .body(stream_body(chunks))
        .unwrap()
}

/// Runs `req` through `links` and `upstream`; returns the response and the observer.
pub(crate) async fn run(
    links: Vec<Link>,
    req: Request<ProxyBody>,
    upstream: &TestUpstream,
) -> (Response<ProxyBody>, Arc<Observer>) {
    let observer = Arc::new(Observer::default());
    let dyn_observer: Arc<dyn ChainObserver> = observer.clone();
    let resp = Chain::new(links)
        .run(req, &mut ctx(), upstream, &dyn_observer)
        .await;
    (resp, observer)
}

/// The whole body as text (panics on a body error).
pub(crate) async fn text(resp: Response<ProxyBody>) -> String {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

pub(crate) fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|s| s.to_string()).collect()
}

#[test]
fn run_future_is_send() {
    fn assert_send<T: Send>(_: T) {}
    let chain = Chain::default();
    let upstream = TestUpstream::new(Answer::Stream(vec![]));
    let observer: Arc<dyn ChainObserver> = Arc::new(Observer::default());
    assert_send(chain.run(get("/"), &mut ctx(), &upstream, &observer));
}
