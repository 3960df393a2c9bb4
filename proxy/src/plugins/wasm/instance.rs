//! Running a filter: a compiled module and its linker ([`Template`]), instances (a wasmtime
//! store each) and the pool they are lent from, one per request in flight.
//!
//! Every call into the module gets a fresh epoch deadline; a trap, a deadline or a refused
//! memory growth makes the call fail with a [`CallError`] and the instance is dropped, never
//! lent again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::{InstancePre, Module, Store, Trap, TypedFunc};

use super::capabilities::Capabilities;
use super::engine;
use super::host::{Host, Shared};
use super::imports;
use super::metrics::FailureReason;

/// The root context's id (one root context per instance).
pub const ROOT_CONTEXT: i32 = 1;
/// Most idle instances kept for reuse.
const MAX_IDLE: usize = 64;
/// Start-up calls (`_initialize`, `proxy_on_vm_start`, `proxy_on_configure`) get this many
/// times the per-call deadline.
const STARTUP_FACTOR: u64 = 10;

/// A failed call into the filter.
#[derive(Debug, Clone)]
pub struct CallError {
    /// Why.
    pub reason: FailureReason,
    /// What the runtime said.
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

type Call3 = TypedFunc<(i32, i32, i32), i32>;
/// `proxy_on_http_call_response(context, token, headers, body_size, trailers)`.
type CallResponseFn = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The module's entry points.
struct Exports {
    on_context_create: TypedFunc<(i32, i32), ()>,
    on_request_headers: Option<Call3>,
    on_request_body: Option<Call3>,
    on_response_headers: Option<Call3>,
    on_response_body: Option<Call3>,
    on_log: Option<TypedFunc<i32, ()>>,
    on_done: Option<TypedFunc<i32, i32>>,
    on_delete: Option<TypedFunc<i32, ()>>,
    on_http_call_response: Option<CallResponseFn>,
    on_tick: Option<TypedFunc<i32, ()>>,
    on_queue_ready: Option<TypedFunc<(i32, i32), ()>>,
}

impl Exports {
    /// The stream callback `callback`, when exported.
    fn get(&self, callback: Callback) -> Option<&Call3> {
        match callback {
            Callback::RequestHeaders => self.on_request_headers.as_ref(),
            Callback::RequestBody => self.on_request_body.as_ref(),
            Callback::ResponseHeaders => self.on_response_headers.as_ref(),
            Callback::ResponseBody => self.on_response_body.as_ref(),
        }
    }
}

/// A compiled filter ready to be instantiated.
pub struct Template {
    pre: InstancePre<Host>,
    capabilities: Capabilities,
    shared: Arc<Shared>,
    max_memory: usize,
    deadline_ticks: u64,
}

impl Template {
    /// Compiles `bytes` (once per config) and links it.
    pub fn new(
        bytes: &[u8],
        shared: Arc<Shared>,
        max_memory: usize,
        deadline_ms: u64,
    ) -> Result<Self, String> {
        let module = Module::new(engine::engine(), bytes)
            .map_err(|e| format!("compiling the module: {e}"))?;
        let abi = ["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];
        if !module.exports().any(|e| abi.contains(&e.name())) {
            return Err(
                "the module exports neither proxy_abi_version_0_2_1 nor proxy_abi_version_0_2_0: not a Proxy-Wasm filter"
                    .into(),
            );
        }
        let linker = imports::linker(&module)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| format!("linking the module: {e}"))?;
        Ok(Self {
            pre,
            capabilities: Capabilities::of(&module),
            shared,
            max_memory,
            deadline_ticks: engine::ticks(deadline_ms),
        })
    }

    /// A new instance with its root context created, started and configured.
    fn instantiate(&self) -> Result<Box<Instance>, CallError> {
        engine::start_ticker();
        let mut store = Store::new(
            engine::engine(),
            Host::new(self.shared.clone(), self.max_memory),
        );
        store.limiter(|host| &mut host.limiter);
        store.set_epoch_deadline(self.deadline_ticks * STARTUP_FACTOR);
        let failed = |store: &Store<Host>, e: wasmtime::Error| classify(store, e);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| failed(&store, e))?;
        let memory = instance.get_memory(&mut store, "memory");
        let malloc = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"))
            .ok();
        store.data_mut().memory = memory;
        store.data_mut().malloc = malloc;
        let optional3 = |store: &mut Store<Host>, name: &str| {
            instance
                .get_typed_func::<(i32, i32, i32), i32>(store, name)
                .ok()
        };
        let exports = Exports {
            on_context_create: instance
                .get_typed_func(&mut store, "proxy_on_context_create")
                .map_err(|e| CallError {
                    reason: FailureReason::Unavailable,
                    message: format!("proxy_on_context_create: {e}"),
                })?,
            on_request_headers: optional3(&mut store, "proxy_on_request_headers"),
            on_request_body: optional3(&mut store, "proxy_on_request_body"),
            on_response_headers: optional3(&mut store, "proxy_on_response_headers"),
            on_response_body: optional3(&mut store, "proxy_on_response_body"),
            on_log: instance.get_typed_func(&mut store, "proxy_on_log").ok(),
            on_done: instance.get_typed_func(&mut store, "proxy_on_done").ok(),
            on_delete: instance.get_typed_func(&mut store, "proxy_on_delete").ok(),
            on_http_call_response: instance
                .get_typed_func(&mut store, "proxy_on_http_call_response")
                .ok(),
            on_tick: instance.get_typed_func(&mut store, "proxy_on_tick").ok(),
            on_queue_ready: instance
                .get_typed_func(&mut store, "proxy_on_queue_ready")
                .ok(),
        };
        for start in ["_initialize", "_start"] {
            if let Ok(f) = instance.get_typed_func::<(), ()>(&mut store, start) {
                f.call(&mut store, ()).map_err(|e| failed(&store, e))?;
                break;
            }
        }
        exports
            .on_context_create
            .call(&mut store, (ROOT_CONTEXT, 0))
            .map_err(|e| failed(&store, e))?;
        let configuration_size = self.shared.configuration.len() as i32;
        for (name, size) in [
            ("proxy_on_vm_start", 0),
            ("proxy_on_configure", configuration_size),
        ] {
            let Ok(f) = instance.get_typed_func::<(i32, i32), i32>(&mut store, name) else {
                continue;
            };
            let ok = f
                .call(&mut store, (ROOT_CONTEXT, size))
                .map_err(|e| failed(&store, e))?;
            if ok == 0 {
                return Err(CallError {
                    reason: FailureReason::Unavailable,
                    message: format!("{name} returned false (the filter refused to start)"),
                });
            }
        }
        Ok(Box::new(Instance {
            store,
            exports,
            capabilities: self.capabilities,
            next_context: ROOT_CONTEXT + 1,
            deadline_ticks: self.deadline_ticks,
        }))
    }
}

/// Turns a wasmtime error into a [`CallError`].
fn classify(store: &Store<Host>, e: wasmtime::Error) -> CallError {
    let trap = e.downcast_ref::<Trap>().copied();
    let reason = if trap == Some(Trap::Interrupt) {
        FailureReason::Deadline
    } else if store.data().limiter.denied {
        FailureReason::Memory
    } else {
        FailureReason::Trap
    };
    let message = match trap {
        Some(Trap::Interrupt) => "the call ran past its deadline".to_string(),
        _ => e.to_string(),
    };
    CallError { reason, message }
}

/// One instance of a filter, lent to one request at a time.
pub struct Instance {
    store: Store<Host>,
    exports: Exports,
    capabilities: Capabilities,
    next_context: i32,
    deadline_ticks: u64,
}

/// Which stream callback to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callback {
    /// `proxy_on_request_headers(context, headers, end_of_stream)`.
    RequestHeaders,
    /// `proxy_on_request_body(context, size, end_of_stream)`.
    RequestBody,
    /// `proxy_on_response_headers(context, headers, end_of_stream)`.
    ResponseHeaders,
    /// `proxy_on_response_body(context, size, end_of_stream)`.
    ResponseBody,
}

impl Instance {
    /// The store data (what host functions see).
    pub fn host(&mut self) -> &mut Host {
        self.store.data_mut()
    }

    /// What the module can do.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Whether the module exports `callback`.
    pub fn has(&self, callback: Callback) -> bool {
        self.exports.get(callback).is_some()
    }

    fn fail(&self, e: wasmtime::Error) -> CallError {
        classify(&self.store, e)
    }

    /// Creates an HTTP context; returns its id.
    pub fn create_context(&mut self) -> Result<i32, CallError> {
        let id = self.next_context;
        self.next_context = if id == i32::MAX {
            ROOT_CONTEXT + 1
        } else {
            id + 1
        };
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.exports
            .on_context_create
            .call(&mut self.store, (id, ROOT_CONTEXT))
            .map_err(|e| self.fail(e))?;
        Ok(id)
    }

    /// Calls a stream callback; returns whether the filter asked to pause (any non-zero
    /// action). A callback the module does not export continues.
    pub fn call(
        &mut self,
        callback: Callback,
        context: i32,
        size: usize,
        end_of_stream: bool,
    ) -> Result<bool, CallError> {
        let Some(f) = self.exports.get(callback) else {
            return Ok(false);
        };
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().limiter.denied = false;
        let args = (context, size as i32, i32::from(end_of_stream));
        match f.call(&mut self.store, args) {
            Ok(action) => Ok(action != 0),
            Err(e) => Err(classify(&self.store, e)),
        }
    }

    /// Delivers the answer to call `token` (`headers` 0: the call failed or timed out), with
    /// the root context's id as Envoy does (SDKs find the calling context by the token).
    pub fn http_call_response(
        &mut self,
        token: u32,
        headers: usize,
        body_size: usize,
        trailers: usize,
    ) -> Result<(), CallError> {
        let Some(f) = self.exports.on_http_call_response.clone() else {
            return Ok(());
        };
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().limiter.denied = false;
        let args = (
            ROOT_CONTEXT,
            token as i32,
            headers as i32,
            body_size as i32,
            trailers as i32,
        );
        f.call(&mut self.store, args).map_err(|e| self.fail(e))
    }

    /// `proxy_on_tick` on the root context.
    pub fn on_tick(&mut self) -> Result<(), CallError> {
        let Some(f) = self.exports.on_tick.clone() else {
            return Ok(());
        };
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().limiter.denied = false;
        f.call(&mut self.store, ROOT_CONTEXT)
            .map_err(|e| self.fail(e))
    }

    /// `proxy_on_queue_ready` on the root context.
    pub fn on_queue_ready(&mut self, queue: u32) -> Result<(), CallError> {
        let Some(f) = self.exports.on_queue_ready.clone() else {
            return Ok(());
        };
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().limiter.denied = false;
        f.call(&mut self.store, (ROOT_CONTEXT, queue as i32))
            .map_err(|e| self.fail(e))
    }

    /// The end of a stream: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    pub fn finish(&mut self, context: i32) -> Result<(), CallError> {
        if let Some(f) = &self.exports.on_log {
            self.store.set_epoch_deadline(self.deadline_ticks);
            f.call(&mut self.store, context)
                .map_err(|e| classify(&self.store, e))?;
        }
        if let Some(f) = &self.exports.on_done {
            self.store.set_epoch_deadline(self.deadline_ticks);
            f.call(&mut self.store, context)
                .map_err(|e| classify(&self.store, e))?;
        }
        if let Some(f) = &self.exports.on_delete {
            self.store.set_epoch_deadline(self.deadline_ticks);
            f.call(&mut self.store, context)
                .map_err(|e| classify(&self.store, e))?;
        }
        Ok(())
    }
}

/// The instances of one filter config.
// Boxed: an instance moves between the pool and a request's lease by pointer.
#[allow(clippy::vec_box)]
pub struct Pool {
    template: Template,
    idle: Mutex<Vec<Box<Instance>>>,
    /// Instances alive (idle or lent).
    live: AtomicUsize,
    max: usize,
}

impl Pool {
    /// A pool of at most `max` instances; one is started now so a filter that cannot start is
    /// refused when the config is applied.
    pub fn new(template: Template, max: usize) -> Result<Arc<Self>, String> {
        let first = template
            .instantiate()
            .map_err(|e| format!("starting the filter: {e}"))?;
        Ok(Arc::new(Self {
            template,
            idle: Mutex::new(vec![first]),
            live: AtomicUsize::new(1),
            max,
        }))
    }

    /// Lends an instance: an idle one, or a new one while fewer than `max` are alive.
    pub fn lend(self: &Arc<Self>) -> Result<Lease, CallError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let instance = match idle {
            Some(instance) => instance,
            None => {
                if self.live.fetch_add(1, Ordering::AcqRel) >= self.max {
                    self.live.fetch_sub(1, Ordering::AcqRel);
                    return Err(CallError {
                        reason: FailureReason::Unavailable,
                        message: format!("all {} instances are busy (max_instances)", self.max),
                    });
                }
                match self.template.instantiate() {
                    Ok(instance) => instance,
                    Err(e) => {
                        self.live.fetch_sub(1, Ordering::AcqRel);
                        return Err(e);
                    }
                }
            }
        };
        Ok(Lease {
            instance: Some(instance),
            pool: self.clone(),
            reusable: false,
        })
    }

    /// What the module can do.
    pub fn capabilities(&self) -> Capabilities {
        self.template.capabilities
    }

    /// A new instance outside the pool, for the root context's own events (`root.rs`).
    pub fn root_instance(&self) -> Result<Box<Instance>, CallError> {
        self.template.instantiate()
    }

    /// Instances alive now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

/// An instance lent to one request. Dropped, it goes back to the pool only when marked
/// [`Lease::reusable`] (its context finished cleanly, or the module has nothing to be told at
/// the end of a request); otherwise it is discarded.
pub struct Lease {
    instance: Option<Box<Instance>>,
    pool: Arc<Pool>,
    reusable: bool,
}

impl Lease {
    /// The instance (`None` once discarded).
    pub fn instance(&mut self) -> Option<&mut Instance> {
        self.instance.as_deref_mut()
    }

    /// Marks the instance clean: it goes back to the pool when the lease is dropped.
    pub fn reusable(&mut self) {
        self.reusable = true;
    }

    /// Drops the instance now (after a failed call).
    pub fn discard(&mut self) {
        if self.instance.take().is_some() {
            self.pool.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut instance) = self.instance.take() else {
            return;
        };
        if self.reusable {
            let host = instance.host();
            host.request = None;
            host.response = None;
            host.body = None;
            host.props = None;
            host.local_response = None;
            host.calls.reset();
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(instance);
                return;
            }
        }
        self.pool.live.fetch_sub(1, Ordering::AcqRel);
    }
}
