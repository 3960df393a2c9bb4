//! `wasm`: runs a Proxy-Wasm filter (ABI 0.2.1 / 0.2.0, the ABI of Envoy and the official SDKs)
//! in process on wasmtime. See `docs/plugins/wasm.md`.
//!
//! ```text
//!  config ──build──► Template (module compiled once, linked) ──► Pool of instances
//!  request ─ lend an instance ─ context create ─ on_request_headers ─ (body) ─ upstream
//!          ◄ on_response_headers ─ (body) ─ on_log, on_done, on_delete ─ instance back
//! ```
//!
//! One instance serves one request at a time (a request keeps it from its request head to its
//! completion, or, for a module without `proxy_on_log`/`_done`/`_delete`, until it drops its
//! session); the plugin takes part only in the phases the module implements
//! ([`capabilities`]); a trap, a deadline or an out-of-memory ends that request with a 500 (or lets
//! it through with `fail_open`), is counted in `hookway_wasm_failures_total`, and the instance
//! is discarded.
//!
//! A callback that dispatches `proxy_http_call`s (`http_call.rs`) makes its hook asynchronous:
//! the hook waits for the answers and delivers them to the same instance
//! (`Session::settle_calls`). Ticks and shared-queue wake-ups go to a separate root instance
//! driven by one task per config (`root.rs`, `shared_queue.rs`), stopped when the plugin is
//! dropped.

pub mod abi;
mod body;
pub mod capabilities;
pub mod config;
pub mod engine;
mod header_cache;
pub mod host;
pub mod http_call;
mod imports;
pub mod instance;
pub mod metrics;
pub mod root;
mod session;
pub mod shared_data;
pub mod shared_queue;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{request, response, Response};

pub use config::{allow_file_modules, Config};

use self::abi::BufferType;
use self::host::{LocalResponse, Shared};
use self::http_call::Upstreams;
use self::instance::{Callback, Pool, Template};
use self::metrics::FilterMetrics;
use self::session::{Held, Session, Sessions, Settings};
use crate::plugin::respond;
use crate::plugin::{
    BodyFilter, BuildEnv, Ctx, Flow, Hook, HookResult, Phases, Plugin, PluginError, PluginFactory,
    ProxyBody,
};

/// The `wasm` plugin kind.
pub struct Wasm;

impl PluginFactory for Wasm {
    const NAME: &'static str = "wasm";
    type Config = Config;
    /// Every phase: a config takes part in those its module implements ([`capabilities`]),
    /// and a module may implement them all (tested there).
    const PHASES: Phases = Phases::ALL;

    fn build(config: Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(WasmPlugin::new(&config, env)?))
    }
}

/// A running filter config.
pub struct WasmPlugin {
    id: u64,
    /// The task driving the root context's ticks and queue wake-ups (see `root.rs`).
    root_task: Option<tokio::task::AbortHandle>,
    pool: Arc<Pool>,
    settings: Arc<Settings>,
}

impl WasmPlugin {
    /// Reads the module (a file, the resolved Secret, or the snapshot's blob of a ConfigMap or
    /// URL source; digest checked), compiles it and starts one instance.
    pub fn new(config: &Config, env: &BuildEnv<'_>) -> Result<Self, String> {
        let bytes = match (&config.file, &config.secret) {
            (Some(path), _) => config.read_file(path)?,
            (None, Some(name)) => config.module_from_secret(env.secret(name)?)?,
            (None, None) => config.module_from_snapshot(env.snapshot)?,
        };
        let upstreams = Upstreams::new(config, Some(env))?;
        let namespace = &env.plugin_ref.namespace;
        Self::with_upstreams(&bytes, config, env.alias, namespace, upstreams)
    }

    /// A filter from module bytes already checked against `config.sha256`, outside a snapshot
    /// (its `clusters` may only be addresses).
    pub fn from_module(bytes: &[u8], config: &Config, alias: &str) -> Result<Self, String> {
        Self::from_module_in(bytes, config, alias, "")
    }

    /// [`WasmPlugin::from_module`] for a GatewayPlugin of `namespace` (the name space of its
    /// shared queues).
    pub fn from_module_in(
        bytes: &[u8],
        config: &Config,
        alias: &str,
        namespace: &str,
    ) -> Result<Self, String> {
        let upstreams = Upstreams::new(config, None)?;
        Self::with_upstreams(bytes, config, alias, namespace, upstreams)
    }

    fn with_upstreams(
        bytes: &[u8],
        config: &Config,
        alias: &str,
        namespace: &str,
        upstreams: Upstreams,
    ) -> Result<Self, String> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let shared = Arc::new(Shared {
            alias: alias.into(),
            configuration: config.configuration_bytes(),
            root_id: config.root_id.clone(),
            metrics: FilterMetrics::new(alias),
            upstreams,
            root: root::RootControl::new(namespace, config.max_queue_length),
        });
        let max_memory = usize::try_from(config.max_memory).unwrap_or(usize::MAX);
        let template = Template::new(bytes, shared.clone(), max_memory, config.deadline)?;
        let pool = Pool::new(template, config.max_instances)?;
        let root_task = root::spawn(&pool, &shared);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            root_task,
            pool,
            settings: Arc::new(Settings {
                shared,
                fail_open: config.fail_open,
                max_body: config.max_body_bytes,
            }),
        })
    }

    /// What the instances share (tests watch it to see the root task end).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.settings.shared
    }

    /// Instances alive (idle or serving a request).
    pub fn live_instances(&self) -> usize {
        self.pool.live()
    }

    fn request_headers<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let lease = match self.pool.lend() {
            Ok(lease) => lease,
            Err(e) => {
                return Hook::Ready(
                    self.settings
                        .failed(None, e, "request headers")
                        .map(|()| Flow::Continue),
                )
            }
        };
        // A session in place costs no allocation or lock, but only the head hooks reach it
        // (with `&mut Ctx`), and no asynchronous wait can take it.
        let shared = !self.pool.capabilities().session_in_place();
        let (mut session, result) = Session::start(lease, req, ctx);
        match result {
            Err(e) => Hook::Ready(
                self.settings
                    .failed(Some(&mut session), e, "request headers")
                    .map(|()| Flow::Continue),
            ),
            Ok(Some(local)) => {
                Sessions::insert(ctx, self.id, session, shared);
                Hook::Ready(Ok(Flow::Respond(local_response(local))))
            }
            Ok(None) if session.has_calls() => Hook::from_async(async move {
                let tls = ctx.tls;
                match session.settle_calls(Held::Request(req, tls)).await {
                    Err(e) => self
                        .settings
                        .failed(Some(&mut session), e, "http call response")
                        .map(|()| Flow::Continue),
                    Ok(local) => {
                        Sessions::insert(ctx, self.id, session, shared);
                        Ok(local.map_or(Flow::Continue, |l| Flow::Respond(local_response(l))))
                    }
                }
            }),
            Ok(None) => {
                Sessions::insert(ctx, self.id, session, shared);
                Hook::Ready(Ok(Flow::Continue))
            }
        }
    }

    fn with_session<T>(&self, ctx: &mut Ctx, idle: T, f: impl FnOnce(&mut Session) -> T) -> T {
        Sessions::with(ctx, self.id, |session| {
            (!session.broken).then(|| f(session))
        })
        .flatten()
        .unwrap_or(idle)
    }
}

impl Drop for WasmPlugin {
    /// A replaced or removed config stops its root task: no tick outlives its plugin.
    fn drop(&mut self) {
        if let Some(task) = &self.root_task {
            task.abort();
        }
    }
}

fn local_response(local: LocalResponse) -> Response<ProxyBody> {
    let mut response = respond::empty_response(local.status);
    for (name, value) in local.headers {
        response.headers_mut().append(name, value);
    }
    *response.body_mut() = respond::full(local.body);
    response
}

impl Plugin for WasmPlugin {
    fn phases(&self) -> Phases {
        self.pool.capabilities().phases()
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        self.request_headers(req, ctx)
    }

    fn request_body_filter(
        &self,
        _req: &request::Parts,
        ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        let shared = Sessions::get(ctx, self.id)?;
        let wanted = self.with_session(ctx, false, |s| {
            !s.headers_paused && s.has(Callback::RequestBody)
        });
        wanted.then(|| {
            Box::new(body::BodyStream::new(
                shared,
                self.settings.clone(),
                BufferType::RequestBody,
            )) as Box<dyn BodyFilter>
        })
    }

    fn request_body_limit(&self, _req: &request::Parts, ctx: &Ctx) -> Option<usize> {
        // A filter with a request body phase keeps its session shared.
        let shared = Sessions::get(ctx, self.id)?;
        let guard = shared.lock().unwrap_or_else(|e| e.into_inner());
        let paused = guard
            .as_ref()
            .is_some_and(|s| !s.broken && s.headers_paused);
        paused.then_some(self.settings.max_body)
    }

    fn on_request_body<'a>(
        &'a self,
        req: &'a mut request::Parts,
        body: &'a mut Bytes,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let tls = ctx.tls;
        let mut calls = false;
        let result = self.with_session(ctx, Ok(Flow::Continue), |session| {
            let result = match session.whole_request_body(req, body, tls) {
                Ok(Some(local)) => Ok(Flow::Respond(local_response(local))),
                Ok(None) => Ok(Flow::Continue),
                Err(e) => self
                    .settings
                    .failed(Some(session), e, "request body")
                    .map(|()| Flow::Continue),
            };
            calls = matches!(result, Ok(Flow::Continue)) && !session.broken && session.has_calls();
            result
        });
        if !calls {
            return Hook::Ready(result);
        }
        Hook::from_async(async move {
            let Some((shared, mut session)) = Sessions::take(ctx, self.id) else {
                return result;
            };
            let settled = session.settle_calls(Held::Request(req, tls)).await;
            let flow = match settled {
                Ok(local) => Ok(local.map_or(Flow::Continue, |l| Flow::Respond(local_response(l)))),
                Err(e) => self
                    .settings
                    .failed(Some(&mut session), e, "http call response")
                    .map(|()| Flow::Continue),
            };
            Sessions::put_back(&shared, session);
            flow
        })
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        let mut calls = false;
        let result = self.with_session(ctx, Ok(()), |session| {
            let result = match session.response_headers(resp) {
                Ok(()) => Ok(()),
                Err(e) => self.settings.failed(Some(session), e, "response headers"),
            };
            calls = result.is_ok() && !session.broken && session.has_calls();
            result
        });
        if !calls {
            return Hook::Ready(result);
        }
        Hook::from_async(async move {
            let Some((shared, mut session)) = Sessions::take(ctx, self.id) else {
                return result;
            };
            let result = match session.settle_calls(Held::Response(resp)).await {
                Ok(local) => {
                    session.response_settled(resp, local);
                    Ok(())
                }
                Err(e) => self
                    .settings
                    .failed(Some(&mut session), e, "http call response"),
            };
            Sessions::put_back(&shared, session);
            result
        })
    }

    fn response_body_filter(
        &self,
        _resp: &response::Parts,
        ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        let shared = Sessions::get(ctx, self.id)?;
        enum Want {
            Nothing,
            Replace(Option<Bytes>),
            Stream,
        }
        let want = self.with_session(ctx, Want::Nothing, |s| {
            if let Some(body) = s.replacement.take() {
                Want::Replace(Some(body))
            } else if s.has(Callback::ResponseBody) {
                Want::Stream
            } else {
                Want::Nothing
            }
        });
        match want {
            Want::Nothing => None,
            Want::Replace(body) => Some(Box::new(body::Replace(body))),
            Want::Stream => Some(Box::new(body::BodyStream::new(
                shared,
                self.settings.clone(),
                BufferType::ResponseBody,
            ))),
        }
    }

    fn on_complete(&self, ctx: &Ctx, _completion: &crate::plugin::Completion) {
        let Some(shared) = Sessions::get(ctx, self.id) else {
            return;
        };
        let session = shared.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut session) = session else {
            return;
        };
        if session.broken {
            return;
        }
        if let Err(e) = session.finish() {
            // The answer is gone already: count and log only.
            if let Err(e) = self.settings.failed(Some(&mut session), e, "log") {
                tracing::error!(plugin = &*self.settings.shared.alias, error = %e, "wasm filter failed after the response");
            }
        }
    }
}
