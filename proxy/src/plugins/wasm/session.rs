//! One request's conversation with a filter: the lent instance, the HTTP context id, and the
//! request and response heads kept for reading in later callbacks (only for a module that
//! imports a call that reads them). Each method moves the
//! heads (and the body buffer) into the instance for one call and back out after it, so a
//! callback reads and changes the real request without copies.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use http::{request, response, HeaderMap, Method, StatusCode};
use smallvec::SmallVec;

use super::abi::BufferType;
use super::host::{LocalResponse, Props, RequestHead, ResponseHead, Shared};
use super::http_call::CallResponse;
use super::instance::{CallError, Callback, Lease};
use super::metrics::FailureReason;
use crate::plugin::{Ctx, PluginError};

/// What every hook of one filter config needs to handle a failure.
pub struct Settings {
    /// Shared with the instances.
    pub shared: Arc<Shared>,
    /// `fail_open`.
    pub fail_open: bool,
    /// `max_body_bytes`.
    pub max_body: usize,
}

impl Settings {
    /// Counts and logs a failed call, discards the instance; fails the request unless
    /// `fail_open`.
    pub fn failed(
        &self,
        session: Option<&mut Session>,
        error: CallError,
        phase: &str,
    ) -> Result<(), PluginError> {
        self.shared.metrics.failed(error.reason);
        if let Some(session) = session {
            session.lease.discard();
            session.broken = true;
        }
        let alias = &*self.shared.alias;
        let message = format!("wasm filter {alias} failed in {phase}: {error}");
        if self.fail_open {
            tracing::warn!(plugin = alias, phase, error = %error, "wasm filter failed; fail_open: the request goes on without it");
            return Ok(());
        }
        let status = if error.reason == FailureReason::Unavailable {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Err(PluginError::with_status(status, message))
    }
}

/// A session shared by the hooks and body filters of one request.
pub type SharedSession = Arc<Mutex<Option<Session>>>;

/// Where a request keeps its session with one filter.
// Not boxed: avoiding a per-request allocation is the point of `Owned`; a slot is moved once,
// into the request's (boxed) `Sessions`.
#[allow(clippy::large_enum_variant)]
enum Slot {
    /// In place: only the filter's head hooks use it, and they get `&mut Ctx` (a module
    /// without body callbacks, `send_local_response` or end-of-request callbacks).
    Owned(Session),
    /// Shared with body filters and the completion hook (which gets `&Ctx`).
    Shared(SharedSession),
}

/// The sessions of one request, by filter config (a request may run several Wasm filters).
#[derive(Default)]
pub struct Sessions(SmallVec<[(u64, Slot); 1]>);

impl Sessions {
    /// Stores the session of filter `id`; `shared` when body filters or the completion hook
    /// will need it.
    pub fn insert(ctx: &mut Ctx, id: u64, session: Session, shared: bool) {
        let slot = if shared {
            Slot::Shared(Arc::new(Mutex::new(Some(session))))
        } else {
            Slot::Owned(session)
        };
        let sessions = ctx.extensions.get_or_insert_default::<Sessions>();
        sessions.0.push((id, slot));
    }

    /// Takes the session of filter `id` out of the request for an asynchronous wait; give it
    /// back with [`Sessions::put_back`]. Only a shared session can be taken: a module that can
    /// dispatch calls keeps its session shared (see `Capabilities::session_in_place`).
    pub fn take(ctx: &Ctx, id: u64) -> Option<(SharedSession, Session)> {
        let shared = Self::get(ctx, id)?;
        let session = shared.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some((shared, session))
    }

    /// Gives back a session taken with [`Sessions::take`].
    pub fn put_back(shared: &SharedSession, session: Session) {
        *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
    }

    /// The shared session of filter `id`, if its request hook started one that is shared.
    pub fn get(ctx: &Ctx, id: u64) -> Option<SharedSession> {
        let sessions = ctx.extensions.get::<Sessions>()?;
        sessions.0.iter().find_map(|(i, slot)| match slot {
            Slot::Shared(s) if *i == id => Some(s.clone()),
            _ => None,
        })
    }

    /// Runs `f` on the session of filter `id`, wherever it is kept (`None` without one).
    pub fn with<T>(ctx: &mut Ctx, id: u64, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let sessions = ctx.extensions.get_mut::<Sessions>()?;
        match &mut sessions.0.iter_mut().find(|(i, _)| *i == id)?.1 {
            Slot::Owned(session) => Some(f(session)),
            Slot::Shared(shared) => {
                let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
                guard.as_mut().map(f)
            }
        }
    }
}

/// One request's state with one filter.
pub struct Session {
    /// The instance.
    pub lease: Lease,
    /// The HTTP context id.
    pub context: i32,
    /// The request head as it went upstream, for reading later.
    pub request: Option<RequestHead>,
    /// The response head as it went to the client, for reading later.
    pub response: Option<ResponseHead>,
    /// The filter paused the request headers: it gets the whole body, headers still open.
    pub headers_paused: bool,
    /// An early answer given at the response head: its body replaces the upstream's.
    pub replacement: Option<Bytes>,
    /// A call failed (fail_open): no more calls.
    pub broken: bool,
}

fn take_request(req: &mut request::Parts, tls: bool) -> RequestHead {
    RequestHead {
        method: std::mem::replace(&mut req.method, Method::GET),
        uri: std::mem::take(&mut req.uri),
        headers: std::mem::take(&mut req.headers),
        scheme: if tls { "https" } else { "http" },
    }
}

fn restore_request(req: &mut request::Parts, head: RequestHead) {
    req.method = head.method;
    req.uri = head.uri;
    req.headers = head.headers;
}

/// The head the answers to calls may change, in the hook that waits for them.
pub enum Held<'a> {
    /// A request hook: the request head, not sent on yet (and whether the client connection
    /// is TLS, for `:scheme`).
    Request(&'a mut request::Parts, bool),
    /// The response-head hook.
    Response(&'a mut response::Parts),
}

/// The response to an early answer.
pub fn local_response_head(local: &LocalResponse, head: &mut response::Parts) {
    head.status = local.status;
    let mut headers = HeaderMap::with_capacity(local.headers.len());
    for (name, value) in &local.headers {
        headers.append(name.clone(), value.clone());
    }
    head.headers = headers;
}

impl Session {
    /// Starts the HTTP context and runs `proxy_on_request_headers` on `req`.
    pub fn start(
        mut lease: Lease,
        req: &mut request::Parts,
        ctx: &Ctx,
    ) -> (Self, Result<Option<LocalResponse>, CallError>) {
        let instance = lease.instance().expect("a lent instance");
        if instance.capabilities().reads_heads {
            instance.host().props = Some(Props {
                source: std::net::SocketAddr::new(ctx.client_ip, ctx.peer_addr.port()),
                route: ctx.route.clone(),
                service: ctx.upstream.clone(),
                request_id: ctx.request_id.clone(),
            });
        }
        let mut session = Session {
            context: 0,
            request: None,
            response: None,
            headers_paused: false,
            replacement: None,
            broken: false,
            lease,
        };
        let result = session.request_headers(req, ctx.tls);
        (session, result)
    }

    fn request_headers(
        &mut self,
        req: &mut request::Parts,
        tls: bool,
    ) -> Result<Option<LocalResponse>, CallError> {
        let instance = self.lease.instance().expect("a lent instance");
        self.context = instance.create_context()?;
        let capabilities = instance.capabilities();
        let head = take_request(req, tls);
        let count = head.headers.len();
        let host = instance.host();
        host.request = Some(head);
        host.request_writable = true;
        host.calls.allowed = true;
        let result = instance.call(Callback::RequestHeaders, self.context, count, false);
        let host = instance.host();
        host.request_writable = false;
        host.calls.allowed = false;
        let head = host.request.take().expect("the request head");
        let local = host.local_response.take();
        if capabilities.reads_heads {
            self.request = Some(head.clone());
        }
        restore_request(req, head);
        self.headers_paused = result?;
        if !capabilities.finish {
            // Nothing to tell the filter at the end: from here on its instance may serve the
            // next request whenever this one lets go of it (a failed call still discards it).
            self.lease.reusable();
        }
        Ok(local)
    }

    /// Runs `proxy_on_request_body` on the whole body, headers still open (after a pause at
    /// the request head).
    pub fn whole_request_body(
        &mut self,
        req: &mut request::Parts,
        body: &mut Bytes,
        tls: bool,
    ) -> Result<Option<LocalResponse>, CallError> {
        let Some(instance) = self.lease.instance() else {
            return Ok(None);
        };
        let head = take_request(req, tls);
        let host = instance.host();
        host.request = Some(head);
        host.request_writable = true;
        host.body = Some((BufferType::RequestBody, body.to_vec()));
        host.calls.allowed = true;
        let result = instance.call(Callback::RequestBody, self.context, body.len(), true);
        let host = instance.host();
        host.request_writable = false;
        host.calls.allowed = false;
        let head = host.request.take().expect("the request head");
        if let Some((_, bytes)) = host.body.take() {
            *body = Bytes::from(bytes);
        }
        let local = host.local_response.take();
        if instance.capabilities().reads_heads {
            self.request = Some(head.clone());
        }
        restore_request(req, head);
        result?;
        Ok(local)
    }

    /// Runs `proxy_on_response_headers` on `head`.
    pub fn response_headers(&mut self, head: &mut response::Parts) -> Result<(), CallError> {
        let Some(instance) = self.lease.instance() else {
            return Ok(());
        };
        let host = instance.host();
        host.request = self.request.take();
        host.response = Some(ResponseHead {
            status: head.status,
            headers: std::mem::take(&mut head.headers),
        });
        host.response_writable = true;
        host.calls.allowed = true;
        let count = host.response.as_ref().map_or(0, |r| r.headers.len());
        let result = instance.call(Callback::ResponseHeaders, self.context, count, false);
        let host = instance.host();
        host.response_writable = false;
        host.calls.allowed = false;
        self.request = host.request.take();
        let changed = host.response.take().expect("the response head");
        head.status = changed.status;
        head.headers = changed.headers;
        let local = host.local_response.take();
        self.response_settled(head, local);
        result.map(drop)
    }

    /// Records the response head as it goes to the client (a copy only for a module that
    /// can read it later); an early answer replaces it (status, headers, and later the body).
    pub fn response_settled(&mut self, head: &mut response::Parts, local: Option<LocalResponse>) {
        if let Some(local) = local {
            local_response_head(&local, head);
            self.replacement = Some(local.body);
        }
        let reads_heads = self
            .lease
            .instance()
            .is_some_and(|instance| instance.capabilities().reads_heads);
        if reads_heads {
            self.response = Some(ResponseHead {
                status: head.status,
                headers: head.headers.clone(),
            });
        }
    }

    /// Runs a body callback on `buffer` (the bytes held so far); returns whether the filter
    /// paused.
    pub fn body(
        &mut self,
        callback: Callback,
        kind: BufferType,
        buffer: &mut Vec<u8>,
        end_of_stream: bool,
    ) -> Result<bool, CallError> {
        let Some(instance) = self.lease.instance() else {
            return Ok(false);
        };
        let host = instance.host();
        host.request = self.request.take();
        host.response = self.response.take();
        host.body = Some((kind, std::mem::take(buffer)));
        let size = host.body.as_ref().map_or(0, |(_, b)| b.len());
        let result = instance.call(callback, self.context, size, end_of_stream);
        let host = instance.host();
        *buffer = host.body.take().map(|(_, b)| b).unwrap_or_default();
        self.request = host.request.take();
        self.response = host.response.take();
        if host.local_response.take().is_some() {
            tracing::debug!(
                plugin = &*host.shared.alias,
                "send_local_response in a streamed body callback is ignored"
            );
        }
        result
    }

    /// The end of the request: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`; the
    /// instance goes back to the pool when they succeed.
    pub fn finish(&mut self) -> Result<(), CallError> {
        let Some(instance) = self.lease.instance() else {
            return Ok(());
        };
        let host = instance.host();
        host.request = self.request.take();
        host.response = self.response.take();
        instance.finish(self.context)?;
        self.lease.reusable();
        Ok(())
    }

    /// Whether the last callback dispatched `proxy_http_call`s the hook must wait for.
    pub fn has_calls(&mut self) -> bool {
        self.lease
            .instance()
            .is_some_and(|instance| !instance.host().calls.pending.is_empty())
    }

    /// Waits for the calls the filter dispatched (asynchronously: the worker thread serves
    /// other requests meanwhile) and delivers each answer, as it arrives, to
    /// `proxy_on_http_call_response` on this instance, with `held` readable and changeable;
    /// calls dispatched by those callbacks are waited for too. Ends when every call has
    /// answered, or at once when the filter answers with `proxy_send_local_response` (the
    /// calls still running are dropped). A filter that paused the request headers and resumed
    /// (`proxy_continue_stream` / `proxy_continue_request`) no longer holds them.
    pub async fn settle_calls(
        &mut self,
        mut held: Held<'_>,
    ) -> Result<Option<LocalResponse>, CallError> {
        let mut running = FuturesUnordered::new();
        if let Some(instance) = self.lease.instance() {
            instance.host().calls.continued = false;
        }
        loop {
            let Some(instance) = self.lease.instance() else {
                return Ok(None);
            };
            let host = instance.host();
            let shared = host.shared.clone();
            running.extend(host.calls.pending.drain(..).map(|call| call.run()));
            host.calls.in_flight = running.len();
            let Some((token, result, response)) = running.next().await else {
                break;
            };
            shared.metrics.http_call(result);
            let local = self.deliver(&mut held, token, response)?;
            if local.is_some() {
                return Ok(local);
            }
        }
        if let Some(instance) = self.lease.instance() {
            let host = instance.host();
            host.calls.in_flight = 0;
            if host.calls.continued && matches!(held, Held::Request(..)) {
                self.headers_paused = false;
            }
        }
        Ok(None)
    }

    /// One `proxy_on_http_call_response`.
    fn deliver(
        &mut self,
        held: &mut Held<'_>,
        token: u32,
        response: Option<CallResponse>,
    ) -> Result<Option<LocalResponse>, CallError> {
        let Some(instance) = self.lease.instance() else {
            return Ok(None);
        };
        // Envoy counts `:status` among the headers; 0 headers means the call failed.
        let (headers, body, trailers) = response.as_ref().map_or((0, 0, 0), |r| {
            (r.headers.len() + 1, r.body.len(), r.trailers.len())
        });
        let host = instance.host();
        host.calls.response = response;
        host.calls.allowed = true;
        match held {
            Held::Request(req, tls) => {
                host.request = Some(take_request(req, *tls));
                host.request_writable = true;
            }
            Held::Response(head) => {
                host.request = self.request.take();
                host.response = Some(ResponseHead {
                    status: head.status,
                    headers: std::mem::take(&mut head.headers),
                });
                host.response_writable = true;
            }
        }
        let result = instance.http_call_response(token, headers, body, trailers);
        let reads_heads = instance.capabilities().reads_heads;
        let host = instance.host();
        host.calls.response = None;
        host.calls.allowed = false;
        host.request_writable = false;
        host.response_writable = false;
        match held {
            Held::Request(req, _) => {
                let head = host.request.take().expect("the request head");
                if reads_heads {
                    self.request = Some(head.clone());
                }
                restore_request(req, head);
            }
            Held::Response(head) => {
                self.request = host.request.take();
                let changed = host.response.take().expect("the response head");
                head.status = changed.status;
                head.headers = changed.headers;
            }
        }
        let local = host.local_response.take();
        result?;
        Ok(local)
    }

    /// Whether the module exports `callback` (and the instance is still usable).
    pub fn has(&mut self, callback: Callback) -> bool {
        !self.broken
            && self
                .lease
                .instance()
                .is_some_and(|instance| instance.has(callback))
    }
}
