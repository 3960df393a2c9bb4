//! `ext_proc`: Envoy's external processing (`envoy.service.ext_proc.v3`
//! `ExternalProcessor/Process`): one bidirectional gRPC stream per HTTP request, on which the
//! server sees the request and response headers, bodies and trailers the processing mode
//! asks for and answers each with mutations or an immediate response. See
//! `docs/plugins/ext_proc.md`.
//!
//! ```text
//!  request headers   on_request            ascending   SEND: one round trip; may answer now
//!  request body      BUFFERED: whole-body hook (413 over max_buffered_bytes; may answer now)
//!                    STREAMED: request_body_stream, chunk by chunk, answers in order
//!  request trailers  request_body_stream   (SEND)
//!  response headers  on_response           descending  SEND: one round trip
//!  response body     response_body_stream  descending  BUFFERED (capped) or STREAMED
//!  response trailers response_body_stream  (SEND)
//! ```
//!
//! A phase the mode skips sends nothing; the stream opens with the first message sent. Files:
//! `mode` (the processing mode), `session` (the stream and the per-request state),
//! `mutation` (answers applied to heads and bodies), `body` (the body streams).

mod body;
mod mode;
mod mutation;
mod session;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Msg;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Answer;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    CommonResponse, HttpBody, HttpHeaders, ImmediateResponse, ProcessingRequest, ProcessingResponse,
};
use http::{header, request, response, StatusCode};
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;

pub use mode::{BodyMode, HeaderMode, ProcessingMode};

use super::ext_authz::{authority, error_status, timeout_of};
use super::failure::{Failure, FailureMode, Reason, RequestInfo};
use super::headers::pb_header_map;
use super::target::{Channels, Target};
use crate::plugin::{
    BodyStream, BuildEnv, Ctx, Flow, Hook, HookResult, Phases, Plugin, PluginError, PluginFactory,
};
use body::{Direction, ProcBody};
use session::{Shared, Stashed, State};

fn default_timeout() -> String {
    "200ms".into()
}

fn internal() -> u16 {
    500
}

fn default_max_buffered() -> u32 {
    1024 * 1024
}

/// Config of `ext_proc`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The processing server.
    pub target: Target,
    /// Bound on each answer (Envoy's `message_timeout`, default 200ms).
    #[serde(default = "default_timeout")]
    pub message_timeout: String,
    /// Let the request through, unprocessed from then on, when the server fails (default:
    /// refuse with `status_on_error`).
    #[serde(default)]
    pub failure_mode_allow: bool,
    /// The status answered when the server fails and `failure_mode_allow` is false.
    #[serde(default = "internal")]
    pub status_on_error: u16,
    /// Which phases go to the server, and how.
    #[serde(default)]
    pub processing_mode: ProcessingMode,
    /// Cap of a `BUFFERED` body: a longer request body is answered 413, a longer response
    /// body ends with an error (its head is already sent). Default 1 MiB.
    #[serde(default = "default_max_buffered")]
    pub max_buffered_bytes: u32,
    /// Honour a server's `mode_override` (answering the request headers).
    #[serde(default)]
    pub allow_mode_override: bool,
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        self.target.validate()?;
        timeout_of("message_timeout", &self.message_timeout)?;
        error_status("status_on_error", self.status_on_error)?;
        if self.max_buffered_bytes == 0 {
            return Err("max_buffered_bytes must be positive".into());
        }
        Ok(())
    }
}

/// The `ext_proc` plugin kind.
pub struct ExtProc {
    channels: Channels,
    timeout: Duration,
    failure: FailureMode,
    mode: ProcessingMode,
    max_buffered: usize,
    allow_mode_override: bool,
}

/// The shared state of each `ext_proc` alias on this request.
#[derive(Default)]
struct States(Vec<(Arc<str>, Shared)>);

/// An answer of the expected kind (its `CommonResponse`, and the whole answer), or an
/// immediate response.
type Expected = Result<(Option<CommonResponse>, ProcessingResponse), ImmediateResponse>;

/// A fail-closed failure: the status and body to answer.
struct Refusal {
    status: StatusCode,
    message: String,
}

/// `Err` ends the request with the refusal.
type Outcome = Result<(), Refusal>;

/// The answer for a refusal in a request phase.
fn refusal_flow(outcome: Outcome) -> Flow {
    match outcome {
        Ok(()) => Flow::Continue,
        Err(r) => Flow::Respond(crate::plugin::respond::text(r.status, &r.message)),
    }
}

/// A refusal in the response phase, as the plugin error the chain answers.
fn refusal_error(r: Refusal) -> PluginError {
    PluginError::with_status(r.status, r.message)
}

impl PluginFactory for ExtProc {
    const NAME: &'static str = "ext_proc";
    type Config = Config;
    const PHASES: Phases = Phases::REQUEST_BODY.union(Phases::RESPONSE_BODY);

    fn build(config: Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let timeout = timeout_of("message_timeout", &config.message_timeout)?;
        let channels = Channels::new(&config.target, env, timeout)?;
        Ok(Arc::new(ExtProc {
            failure: FailureMode {
                kind: Self::NAME,
                alias: env.alias.into(),
                target: channels.name.clone(),
                allow: config.failure_mode_allow,
                status: error_status("status_on_error", config.status_on_error)?,
            },
            channels,
            timeout,
            mode: config.processing_mode,
            max_buffered: config.max_buffered_bytes as usize,
            allow_mode_override: config.allow_mode_override,
        }))
    }
}

/// The message for `msg`.
fn message(msg: Msg) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(msg),
        ..Default::default()
    }
}

/// Whether a request head announces no body.
fn no_request_body(req: &request::Parts) -> bool {
    let length = req.headers.get(header::CONTENT_LENGTH);
    length.is_some_and(|v| v == "0")
        || (length.is_none()
            && !req.headers.contains_key(header::TRANSFER_ENCODING)
            && req.version < http::Version::HTTP_2)
}

impl ExtProc {
    fn state(&self, ctx: &Ctx) -> Option<Shared> {
        let states = ctx.extensions.get::<States>()?;
        states
            .0
            .iter()
            .find(|(alias, _)| *alias == self.failure.alias)
            .map(|(_, s)| s.clone())
    }

    /// A failure in `phase`: processing ends for this request; `Err` carries the fail-closed
    /// answer.
    fn failed(
        &self,
        state: &mut State,
        failure: &Failure,
        phase: &'static str,
        ctx: &Ctx,
    ) -> Outcome {
        state.finish();
        match self.failure.fail(failure, phase, &RequestInfo::of(ctx)) {
            None => Ok(()),
            Some(_) => Err(Refusal {
                status: self.failure.status,
                message: self.failure.message(failure, phase),
            }),
        }
    }

    /// The `CommonResponse` of an answer of the expected kind, an immediate response, or a
    /// protocol error.
    fn expect(
        answer: ProcessingResponse,
        want: fn(&Answer) -> Option<Option<&CommonResponse>>,
    ) -> Result<Expected, Failure> {
        match &answer.response {
            Some(Answer::ImmediateResponse(ir)) => Ok(Err(ir.clone())),
            Some(other) => match want(other) {
                Some(common) => {
                    let common = common.cloned();
                    Ok(Ok((common, answer)))
                }
                None => Err(Failure::malformed(format!(
                    "unexpected answer {}",
                    answer_name(other)
                ))),
            },
            None => Err(Failure::malformed("an answer without a response")),
        }
    }

    /// Sends `msg` on the request's stream (opening it if needed) and reads the answer of the
    /// phase `want` picks, or an immediate response.
    async fn ask(
        &self,
        state: &mut State,
        msg: ProcessingRequest,
        want: fn(&Answer) -> Option<Option<&CommonResponse>>,
    ) -> Result<Expected, Failure> {
        let answer = state.session()?.exchange(msg, self.timeout).await?;
        Self::expect(answer, want)
    }

    async fn request_headers(
        &self,
        req: &mut request::Parts,
        ctx: &mut Ctx,
    ) -> Result<Flow, PluginError> {
        let shared = Arc::new(tokio::sync::Mutex::new(State::new(
            self.channels.pick(),
            self.mode,
        )));
        ctx.extensions
            .get_or_insert_default::<States>()
            .0
            .push((self.failure.alias.clone(), shared.clone()));
        if self.mode.request_header_mode == HeaderMode::Skip {
            return Ok(Flow::Continue);
        }
        let mut state = shared.lock().await;
        let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let scheme = if ctx.tls { "https" } else { "http" };
        let headers = pb_header_map(
            &[
                (":method", req.method.as_str()),
                (":path", pq),
                (":authority", authority(req)),
                (":scheme", scheme),
            ],
            &req.headers,
        );
        let msg = message(Msg::RequestHeaders(HttpHeaders {
            headers: Some(headers),
            end_of_stream: no_request_body(req),
            ..Default::default()
        }));
        let answer = self
            .ask(&mut state, msg, |a| match a {
                Answer::RequestHeaders(h) => Some(h.response.as_ref()),
                _ => None,
            })
            .await;
        let outcome = match answer {
            Err(failure) => self.failed(&mut state, &failure, "request_headers", ctx),
            Ok(Err(ir)) => {
                state.finish();
                match mutation::immediate(&ir) {
                    Ok(resp) => return Ok(Flow::Respond(resp)),
                    Err(e) => {
                        self.failed(&mut state, &Failure::malformed(e), "request_headers", ctx)
                    }
                }
            }
            Ok(Ok((common, answer))) => {
                let mut applied = Ok(());
                if let Some(mutation) = common.as_ref().and_then(|c| c.header_mutation.as_ref()) {
                    applied = mutation::request(req, mutation);
                }
                if let (true, Some(mode)) = (self.allow_mode_override, &answer.mode_override) {
                    applied = applied.and_then(|()| {
                        state.mode = state.mode.overridden(mode)?;
                        Ok(())
                    });
                }
                match applied {
                    Ok(()) => {
                        if !state.mode.response_side()
                            && state.mode.request_body_mode == BodyMode::None
                            && state.mode.request_trailer_mode == HeaderMode::Skip
                        {
                            // Nothing more to say: close the stream now.
                            state.finish();
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.failed(&mut state, &Failure::malformed(e), "request_headers", ctx)
                    }
                }
            }
        };
        Ok(refusal_flow(outcome))
    }

    async fn buffered_request_body(
        &self,
        req: &mut request::Parts,
        body: &mut Bytes,
        ctx: &mut Ctx,
    ) -> Result<Flow, PluginError> {
        let Some(shared) = self.state(ctx) else {
            return Ok(Flow::Continue);
        };
        let mut state = shared.lock().await;
        if state.done || state.mode.request_body_mode != BodyMode::Buffered {
            return Ok(Flow::Continue);
        }
        let msg = message(Msg::RequestBody(HttpBody {
            body: body.to_vec(),
            end_of_stream: true,
            ..Default::default()
        }));
        let answer = self
            .ask(&mut state, msg, |a| match a {
                Answer::RequestBody(b) => Some(b.response.as_ref()),
                _ => None,
            })
            .await;
        let outcome = match answer {
            Err(failure) => self.failed(&mut state, &failure, "request_body", ctx),
            Ok(Err(ir)) => {
                state.finish();
                match mutation::immediate(&ir) {
                    Ok(resp) => return Ok(Flow::Respond(resp)),
                    Err(e) => self.failed(&mut state, &Failure::malformed(e), "request_body", ctx),
                }
            }
            Ok(Ok((common, _))) => {
                let common = common.unwrap_or_default();
                let applied = match &common.header_mutation {
                    Some(m) => mutation::request(req, m),
                    None => Ok(()),
                };
                match applied {
                    Ok(()) => {
                        *body = mutation::body(std::mem::take(body), common.body_mutation.as_ref());
                        Ok(())
                    }
                    Err(e) => self.failed(&mut state, &Failure::malformed(e), "request_body", ctx),
                }
            }
        };
        Ok(refusal_flow(outcome))
    }

    async fn response_headers(&self, resp: &mut response::Parts, ctx: &mut Ctx) -> HookResult {
        let Some(shared) = self.state(ctx) else {
            return Ok(());
        };
        let Ok(mut state) = tokio::time::timeout(self.timeout, shared.lock()).await else {
            // The request body is still streaming to the server.
            let failure = Failure::new(Reason::Timeout, "the request body stream did not end");
            let mut state = State::new(None, self.mode);
            return self
                .failed(&mut state, &failure, "response_headers", ctx)
                .map_err(refusal_error);
        };
        match &state.stashed {
            Some(Stashed::Immediate(ir)) => {
                return mutation::immediate_head(resp, ir).map_err(PluginError::internal);
            }
            Some(Stashed::Failed(status, _)) => {
                resp.status = *status;
                resp.headers.clear();
                resp.headers.insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                return Ok(());
            }
            None => {}
        }
        if state.done || state.mode.response_header_mode == HeaderMode::Skip {
            return Ok(());
        }
        let headers = pb_header_map(&[(":status", resp.status.as_str())], &resp.headers);
        let msg = message(Msg::ResponseHeaders(HttpHeaders {
            headers: Some(headers),
            end_of_stream: false,
            ..Default::default()
        }));
        let answer = self
            .ask(&mut state, msg, |a| match a {
                Answer::ResponseHeaders(h) => Some(h.response.as_ref()),
                _ => None,
            })
            .await;
        let outcome = match answer {
            Err(failure) => self.failed(&mut state, &failure, "response_headers", ctx),
            Ok(Err(ir)) => {
                state.finish();
                match mutation::immediate_head(resp, &ir) {
                    Ok(()) => {
                        // Its body replaces the upstream's in the response body stream.
                        state.stashed = Some(Stashed::Immediate(ir));
                        Ok(())
                    }
                    Err(e) => {
                        self.failed(&mut state, &Failure::malformed(e), "response_headers", ctx)
                    }
                }
            }
            Ok(Ok((common, _))) => {
                let applied = match common.as_ref().and_then(|c| c.header_mutation.as_ref()) {
                    Some(m) => mutation::response(resp, m),
                    None => Ok(()),
                };
                match applied {
                    Ok(()) => {
                        if state.mode.response_body_mode == BodyMode::None
                            && state.mode.response_trailer_mode == HeaderMode::Skip
                        {
                            state.finish();
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.failed(&mut state, &Failure::malformed(e), "response_headers", ctx)
                    }
                }
            }
        };
        // Fail closed: the chain answers the error status, naming the plugin.
        outcome.map_err(refusal_error)
    }

    fn body_stream(&self, dir: Direction, ctx: &mut Ctx) -> Option<BodyStream> {
        let shared = self.state(ctx)?;
        // Decided under the lock when it is free (it is, between phases), else the stream
        // decides when it gets the lock.
        if let Ok(state) = shared.try_lock() {
            if let (Direction::Response, Some(stashed)) = (dir, &state.stashed) {
                let body = match stashed {
                    Stashed::Immediate(ir) => Bytes::copy_from_slice(&ir.body),
                    Stashed::Failed(_, message) => Bytes::from(format!("{message}\n")),
                };
                return Some(Box::new(move |_upstream| {
                    crate::plugin::respond::full(body)
                }));
            }
            let wanted = match dir {
                Direction::Request => {
                    state.mode.request_body_mode == BodyMode::Streamed
                        || state.mode.request_trailer_mode == HeaderMode::Send
                }
                Direction::Response => {
                    state.mode.response_body_mode != BodyMode::None
                        || state.mode.response_trailer_mode == HeaderMode::Send
                }
            };
            if state.done || !wanted {
                return None;
            }
        }
        let proc = ProcBody::new(
            dir,
            shared,
            self.timeout,
            self.max_buffered,
            self.failure.clone(),
            RequestInfo::of(ctx),
        );
        Some(Box::new(move |inner| proc.wrap(inner)))
    }
}

/// The name of an answer, for errors.
fn answer_name(answer: &Answer) -> &'static str {
    match answer {
        Answer::RequestHeaders(_) => "request_headers",
        Answer::ResponseHeaders(_) => "response_headers",
        Answer::RequestBody(_) => "request_body",
        Answer::ResponseBody(_) => "response_body",
        Answer::RequestTrailers(_) => "request_trailers",
        Answer::ResponseTrailers(_) => "response_trailers",
        Answer::ImmediateResponse(_) => "immediate_response",
        Answer::StreamedImmediateResponse(_) => "streamed_immediate_response",
    }
}

impl Plugin for ExtProc {
    fn phases(&self) -> Phases {
        let m = &self.mode;
        let request_body = self.allow_mode_override
            || m.request_body_mode != BodyMode::None
            || m.request_trailer_mode == HeaderMode::Send;
        // The response body phase also carries the body of an immediate response (or of a
        // fail-closed answer) decided after the upstream was called: to the response headers,
        // or to a streamed request body.
        let response_body = request_body || m.response_side();
        match (request_body, response_body) {
            (true, _) => Phases::REQUEST_BODY | Phases::RESPONSE_BODY,
            (false, true) => Phases::RESPONSE_BODY,
            // Request headers only: the chain skips every body step for this plugin.
            (false, false) => Phases::HEADS,
        }
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if !self.mode.any() && !self.allow_mode_override {
            return Hook::Ready(Ok(Flow::Continue));
        }
        Hook::from_async(self.request_headers(req, ctx))
    }

    fn request_body_limit(&self, _req: &request::Parts, ctx: &Ctx) -> Option<usize> {
        let shared = self.state(ctx)?;
        let state = shared.try_lock().ok()?;
        (!state.done && state.mode.request_body_mode == BodyMode::Buffered)
            .then_some(self.max_buffered)
    }

    fn on_request_body<'a>(
        &'a self,
        req: &'a mut request::Parts,
        body: &'a mut Bytes,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        Hook::from_async(self.buffered_request_body(req, body, ctx))
    }

    fn request_body_stream(&self, _req: &request::Parts, ctx: &mut Ctx) -> Option<BodyStream> {
        self.body_stream(Direction::Request, ctx)
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        if ctx.extensions.get::<States>().is_none() {
            return Hook::Ready(Ok(()));
        }
        Hook::from_async(self.response_headers(resp, ctx))
    }

    fn response_body_stream(&self, _resp: &response::Parts, ctx: &mut Ctx) -> Option<BodyStream> {
        self.body_stream(Direction::Response, ctx)
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::harness::validate;
    use serde_json::json;

    #[test]
    fn config_table() {
        let ok = [
            json!({"target": {"service": "proc"}}),
            json!({"target": {"address": "https://proc.test:443"}, "message_timeout": "1s",
                   "failure_mode_allow": true, "status_on_error": 503, "max_buffered_bytes": 4096,
                   "allow_mode_override": true,
                   "processing_mode": {"request_header_mode": "DEFAULT", "response_header_mode": "SKIP",
                                       "request_body_mode": "STREAMED", "response_body_mode": "BUFFERED",
                                       "request_trailer_mode": "SEND", "response_trailer_mode": "SKIP"}}),
        ];
        for c in ok {
            assert!(validate("ext_proc", c.clone()).is_ok(), "{c}");
        }
        let bad = [
            (json!({}), "target"),
            (
                json!({"target": {"service": "a", "address": "http://a:1"}}),
                "not both",
            ),
            (
                json!({"target": {"service": "a"}, "message_timeout": "0ms"}),
                "message_timeout",
            ),
            (
                json!({"target": {"service": "a"}, "status_on_error": 1000}),
                "status_on_error",
            ),
            (
                json!({"target": {"service": "a"}, "max_buffered_bytes": 0}),
                "max_buffered_bytes",
            ),
            (
                json!({"target": {"service": "a"}, "processing_mode": {"request_body_mode": "BUFFERED_PARTIAL"}}),
                "unknown variant",
            ),
            (
                json!({"target": {"service": "a"}, "processing_mode": {"request_header_mode": "NONE"}}),
                "unknown variant",
            ),
            (
                json!({"target": {"service": "a"}, "processing_mode": {"bogus": 1}}),
                "unknown field",
            ),
        ];
        for (c, part) in bad {
            let err = validate("ext_proc", c.clone()).unwrap_err();
            assert!(err.contains(part), "{c}: {err}");
        }
    }
}
