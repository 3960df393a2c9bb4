//! The plugin API: the phase trait every plugin implements, the per-request context and the
//! registry that turns a snapshot's chain entries into running plugin instances.
//!
//! ```text
//!  request head   on_request            ascending   change / retarget / answer now
//!  request body   request_body_filter   ascending   pass, transform, buffer, replace
//!                 request_body_stream   ascending   wrap the body stream (async: ext_proc)
//!  whole body     on_request_body       ascending   opt-in (request_body_limit): answer from it
//!  ─────────────────────────── upstream (or the early answer) ───────────────────────────
//!  response head  on_response           descending  change status and headers
//!  response body  response_body_filter  descending  pass, transform, buffer, replace whole
//!                 response_body_stream  descending  wrap the body stream
//!  completion     on_complete           descending  observe (logs, metrics, breaker state)
//! ```
//!
//! A plugin instance serves every request concurrently: per-request state lives in [`Ctx`]
//! (typed extensions) or in the [`BodyFilter`] a plugin creates for one request's body.

pub mod context;
pub mod extensions;
pub mod phases;
pub mod registry;
pub mod respond;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{request, response, Response, StatusCode};

pub use context::{Completion, Consumer, Ctx, PluginsRan, TargetOverride};
pub use extensions::Extensions;
pub use phases::Phases;
pub use registry::{BuildEnv, PluginFactory, Registry};

/// The body type the proxy moves around (streaming; never buffered unless a plugin asks).
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A plugin's wrapper around a whole body stream (see [`Plugin::request_body_stream`]): takes
/// the body as the plugins before it left it and returns the body the next ones see.
pub type BodyStream = Box<dyn FnOnce(ProxyBody) -> ProxyBody + Send>;
/// A boxed future, for hooks that really wait on something.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The result of a hook: ready at once (no allocation) or a future for hooks that do I/O
/// (Redis, forward_auth, fetching a manifest).
pub enum Hook<'a, T> {
    /// Already computed.
    Ready(T),
    /// Needs to wait.
    Async(BoxFuture<'a, T>),
}

impl<'a, T> Hook<'a, T> {
    /// Waits for the value.
    pub async fn resolve(self) -> T {
        match self {
            Hook::Ready(v) => v,
            Hook::Async(f) => f.await,
        }
    }

    /// Wraps an async block.
    pub fn from_async(f: impl Future<Output = T> + Send + 'a) -> Self {
        Hook::Async(Box::pin(f))
    }
}

/// What a request-head hook decided.
pub enum Flow {
    /// Go on with the next plugin (and eventually the upstream).
    Continue,
    /// Answer now: later request hooks and the upstream are skipped; the response hooks of the
    /// plugins that already ran (this one included) still run, in reverse.
    Respond(Response<ProxyBody>),
}

/// A plugin failure: ends the request with `status` (500 by default) and a log line naming the
/// plugin and route.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PluginError {
    /// Status answered to the client.
    pub status: StatusCode,
    /// What went wrong (logged; a short form is sent to the client).
    pub message: String,
}

impl PluginError {
    /// A 500 with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
    /// An error answering `status`.
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Result of hooks that cannot short-circuit.
pub type HookResult = Result<(), PluginError>;

/// Per-request body processing created by a plugin for one request's (or response's) body.
/// Chunks flow through the filters of the chain in turn; what a filter returns is what the next
/// one sees. A filter that buffers returns empty chunks and emits everything from `on_end`.
pub trait BodyFilter: Send {
    /// One chunk in; what to pass on (may be empty to buffer, or transformed).
    fn on_chunk(&mut self, chunk: Bytes) -> Result<Bytes, PluginError>;
    /// End of stream: anything still to emit (the whole body for a buffering filter).
    fn on_end(&mut self) -> Result<Option<Bytes>, PluginError> {
        Ok(None)
    }
}

/// The phase trait. Every method has a no-op default; implement only the phases you need.
pub trait Plugin: Send + Sync + 'static {
    /// The optional phases (body hooks, completion) this plugin implements. The default, all of
    /// them, is always correct; a plugin with head hooks only returns [`Phases::HEADS`] so the
    /// chain skips the rest for it (see [`phases`]).
    fn phases(&self) -> Phases {
        Phases::ALL
    }

    /// Whether this plugin's request hooks ([`Plugin::on_request`],
    /// [`Plugin::on_request_body`]) leave the request's hop-by-hop fields (`Connection`,
    /// `Keep-Alive`, `Proxy-Authenticate`, `Proxy-Authorization`, `Proxy-Connection`, `TE`,
    /// `Trailer`, `Transfer-Encoding`, `Upgrade`) and `Host` alone: never add, set, rename or
    /// remove them. When every plugin of a chain says so, the upstream call trusts the server's
    /// removal of the client's hop-by-hop fields and its single `Host` instead of looking again.
    /// The default, `false`, is always correct.
    fn keeps_hop_by_hop(&self) -> bool {
        false
    }

    /// Request head, in ascending order. May change the request, retarget the upstream via
    /// [`Ctx::target`], or answer now with [`Flow::Respond`].
    fn on_request<'a>(
        &'a self,
        _req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        Hook::Ready(Ok(Flow::Continue))
    }

    /// Called once per request after the request-head hooks: return a filter to see (and
    /// change) the request body. `None` (the default) costs nothing: the body streams through.
    fn request_body_filter(
        &self,
        _req: &request::Parts,
        _ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        None
    }

    /// Called once per request right after [`Plugin::request_body_filter`]: return a wrapper
    /// to replace the request body stream with one of the plugin's own (a [`http_body::Body`]
    /// that may wait, e.g. on a gRPC stream, between chunks, and sees trailers). `None` (the
    /// default) costs nothing. It is the plugin's job to bound the memory and time it spends;
    /// `Content-Length` is removed, as for a filter.
    fn request_body_stream(&self, _req: &request::Parts, _ctx: &mut Ctx) -> Option<BodyStream> {
        None
    }

    /// For plugins that answer from the complete request body (gateways such as
    /// `lobe_gateway`): `Some(limit)` asks the chain to buffer the request body (up to `limit`
    /// bytes, 413 beyond) after the request-body filters and to call
    /// [`Plugin::on_request_body`] with it. `None` (the default) costs nothing.
    fn request_body_limit(&self, _req: &request::Parts, _ctx: &Ctx) -> Option<usize> {
        None
    }

    /// The whole request body (see [`Plugin::request_body_limit`]), in ascending order. May
    /// answer now like [`Plugin::on_request`]; `Continue` sends the (possibly replaced) body on.
    fn on_request_body<'a>(
        &'a self,
        _req: &'a mut request::Parts,
        _body: &'a mut Bytes,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        Hook::Ready(Ok(Flow::Continue))
    }

    /// Response head (from the upstream or an early answer), in descending order.
    fn on_response<'a>(
        &'a self,
        _resp: &'a mut response::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        Hook::Ready(Ok(()))
    }

    /// Called once per response after the response-head hooks: return a filter to see (and
    /// change) the response body. When any filter is returned, `Content-Length` is removed
    /// (the body is re-framed) unless the filter's plugin restores it.
    fn response_body_filter(
        &self,
        _resp: &response::Parts,
        _ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        None
    }

    /// Like [`Plugin::request_body_stream`], for the response body, right after
    /// [`Plugin::response_body_filter`], in descending order.
    fn response_body_stream(&self, _resp: &response::Parts, _ctx: &mut Ctx) -> Option<BodyStream> {
        None
    }

    /// After the response finished, failed, or the client went away; in descending order.
    fn on_complete(&self, _ctx: &Ctx, _completion: &Completion) {}
}
