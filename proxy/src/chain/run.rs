//! The chain runner: one request through the onion.
//!
//! ```text
//!  on_request  ascending ──(Flow::Respond / failure)──┐
//!  request body filters / streams ascending           │
//!  whole body (opt-in): 413 / on_request_body ascending─┤
//!  Upstream::call (errors become short 502/503/504)   │
//!  on_response descending  ◄──────────────────────────┘  (only the plugins that ran)
//!  response body filters / streams descending (Content-Length removed when any)
//!  completion tracker ─► on_complete descending, when the body ends / fails / is dropped
//! ```

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http::{header, request, response, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;

use super::body_filters::{FilterStack, FilteredBody};
use super::completion::{CompletionBody, Finisher};
use super::guard::{self, Failure, Started};
use super::lap::Lap;
use super::link_set::LinkSet;
use super::whole_body::{self, Stop};
use super::{Chain, ChainObserver, HookPhase, Link, Upstream};
use crate::plugin::{respond, BodyFilter, BodyStream, Ctx, Flow, Phases, PluginsRan, ProxyBody};

/// A plugin failure that ended the request.
pub(super) struct Failed {
    pub(super) link: usize,
    pub(super) response: Response<ProxyBody>,
    pub(super) error: String,
}

impl Failed {
    pub(super) fn new(
        links: &[Link],
        i: usize,
        phase: HookPhase,
        failure: Failure,
        ctx: &Ctx,
        observer: &dyn ChainObserver,
    ) -> Self {
        let link = &links[i];
        guard::report(link, phase, ctx.route.as_deref(), &failure, observer);
        Self {
            link: i,
            response: guard::failure_response(link, &failure),
            error: format!("plugin {} failed in {phase}: {failure}", link.alias),
        }
    }
}

/// Which plugins ran: those in `set` below `until`.
pub(super) struct Ran {
    set: LinkSet,
    until: usize,
    /// A plugin that failed: its later hooks are skipped.
    failed: Option<usize>,
}

impl Ran {
    /// The links that ran and did not fail, in descending order.
    fn descending(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.until)
            .rev()
            .filter(move |&i| self.set.contains(i) && Some(i) != self.failed)
    }

    /// The links that ran, in ascending order.
    pub(super) fn ascending(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.until).filter(move |&i| self.set.contains(i))
    }
}

pub(super) async fn run<U: Upstream>(
    chain: &Chain,
    req: Request<ProxyBody>,
    ctx: &mut Ctx,
    upstream: &U,
    observer: &Arc<dyn ChainObserver>,
) -> Response<ProxyBody> {
    let links = &chain.links;
    if !chain.keeps_hop_by_hop {
        // A plugin may add hop-by-hop fields or a second `Host`: the upstream looks again.
        ctx.hop_by_hop_removed = None;
    }
    let (mut parts, body) = req.into_parts();
    let excluded = chain.excluded(parts.uri.path());
    let mut ran = Ran {
        set: LinkSet::default(),
        until: 0,
        failed: None,
    };
    let mut error = None;

    // Request heads, ascending; an answer or a failure stops here.
    let mut early = None;
    let mut clock = Lap::start();
    for (i, link) in links.iter().enumerate() {
        if excluded.contains(i) {
            continue;
        }
        ran.set.insert(i);
        ran.until = i + 1;
        let result = match guard::start(|| link.plugin.on_request(&mut parts, ctx)) {
            Started::Done(result) => result,
            Started::Waiting(future) => guard::finish(future).await,
        };
        observer.hook(link, HookPhase::Request, clock.lap());
        match result {
            Ok(Flow::Continue) => {}
            Ok(Flow::Respond(response)) => {
                early = Some(response);
                break;
            }
            Err(failure) => {
                let failed = Failed::new(links, i, HookPhase::Request, failure, ctx, &**observer);
                ran.failed = Some(failed.link);
                error = Some(failed.error);
                early = Some(failed.response);
                break;
            }
        }
    }

    ctx.plugins_ran = PluginsRan::new(chain.aliases.clone(), ran.set.clone());

    // Only plugins with a completion hook need the response body tracked to its end.
    let completion = chain.phases.contains(Phases::COMPLETE)
        && ran.ascending().any(|i| links[i].has(Phases::COMPLETE));
    let head_request = parts.method == Method::HEAD;
    let mut received = None;
    let mut upstream_duration = None;
    let response = match early {
        Some(response) => response,
        None => {
            // The request body: streaming filters, then the opt-in whole-body hook.
            let prepared = if !chain.takes_part(Phases::REQUEST_BODY) {
                // No plugin of this chain touches request bodies; without a completion hook
                // nobody counts its bytes either.
                if completion {
                    let (body, counter) =
                        counted(body, completion, Layers::default(), links, observer);
                    received = counter;
                    Ok(body)
                } else {
                    Ok(body)
                }
            } else {
                match request_body(links, &ran, completion, &mut parts, body, ctx, observer) {
                    Err(failed) => Err(Stop::Failed(failed)),
                    Ok((body, counter)) => {
                        received = counter;
                        // Boxed: its buffering state would otherwise sit in every request's
                        // runner future, which is moved as a whole.
                        Box::pin(whole_body::run(
                            links, &ran, &mut parts, body, ctx, observer,
                        ))
                        .await
                    }
                }
            };
            match prepared {
                Err(Stop::Answer(response, reason)) => {
                    error = reason;
                    response
                }
                Err(Stop::Failed(failed)) => {
                    ran.failed = Some(failed.link);
                    error = Some(failed.error);
                    failed.response
                }
                Ok(body) => {
                    if chain.takes_part(Phases::REQUEST_BODY) {
                        // The body hooks may have waited (the whole body): the upstream's time
                        // starts now. Otherwise the last request hook's lap ended a moment ago
                        // and the upstream's starts there, without another clock read.
                        clock = Lap::start();
                    }
                    let result = upstream.call(Request::from_parts(parts, body), ctx).await;
                    upstream_duration = Some(clock.lap());
                    match result {
                        Ok(response) => response,
                        Err(e) => {
                            let response = respond::text(e.status, &e.message);
                            error = Some(e.message);
                            response
                        }
                    }
                }
            }
        }
    };

    // Response heads and body filters, descending.
    let (mut head, mut body) = response.into_parts();
    let mut answer_failed = false;
    for i in ran.descending() {
        let link = &links[i];
        let result = match guard::start(|| link.plugin.on_response(&mut head, ctx)) {
            Started::Done(result) => result,
            Started::Waiting(future) => guard::finish(future).await,
        };
        observer.hook(link, HookPhase::Response, clock.lap());
        if let Err(failure) = result {
            let failed = Failed::new(links, i, HookPhase::Response, failure, ctx, &**observer);
            (head, body) = failed.response.into_parts();
            error = Some(failed.error);
            answer_failed = true;
            break;
        }
    }
    if !answer_failed
        && chain.takes_part(Phases::RESPONSE_BODY)
        && may_have_body(head_request, head.status)
    {
        match response_body(links, &ran, &mut head, body, ctx, observer) {
            Ok(filtered) => body = filtered,
            Err(failed) => {
                (head, body) = failed.response.into_parts();
                error = Some(failed.error);
            }
        }
    }

    if !completion {
        // Nobody to tell about completion (no plugin ran, or none has the hook): no tracker.
        return Response::from_parts(head, body);
    }
    let finisher = Finisher {
        status: head.status,
        // The tracker outlives the handler's borrow: it takes the context (only here, when a
        // completion hook will read it).
        ctx: ctx.take(),
        links: links.clone(),
        ran: ran.set,
        ran_until: ran.until,
        observer: observer.clone(),
        received,
        upstream_duration,
        error,
    };
    Response::from_parts(head, CompletionBody::new(body, finisher).boxed_unsync())
}

/// HEAD answers and 204/304 carry no body: their filters are not asked for.
fn may_have_body(head_request: bool, status: StatusCode) -> bool {
    !head_request && status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED
}

type RequestBody = (ProxyBody, Option<Arc<AtomicU64>>);

/// What the plugins of one body phase asked for, in run order: runs of streaming filters
/// (one [`FilterStack`] each) between the body streams of plugins that wrap the body
/// ([`Plugin::request_body_stream`](crate::plugin::Plugin::request_body_stream)).
#[derive(Default)]
struct Layers(Vec<Layer>);

enum Layer {
    Filters(FilterStack),
    Stream(BodyStream),
}

impl Layers {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `body` run through every layer, in order; `counter`, when given, counts the bytes read
    /// from `body` itself (an empty filter stack is put first when a stream comes first).
    fn wrap(
        self,
        mut body: ProxyBody,
        mut counter: Option<Arc<AtomicU64>>,
        empty_stack: impl FnOnce() -> FilterStack,
    ) -> ProxyBody {
        let mut layers = self.0.into_iter().peekable();
        if counter.is_some() && matches!(layers.peek(), None | Some(Layer::Stream(_))) {
            body = FilteredBody::new(body, empty_stack(), counter.take()).boxed_unsync();
        }
        for layer in layers {
            body = match layer {
                Layer::Filters(stack) => {
                    FilteredBody::new(body, stack, counter.take()).boxed_unsync()
                }
                Layer::Stream(stream) => stream(body),
            };
        }
        body
    }
}

/// Asks the plugins at `order` (indices into `links`) for a body filter and a body stream of
/// `phase`; the layers they returned, in order. A failure (error or panic) names the plugin.
fn collect_filters(
    links: &Arc<[Link]>,
    order: impl Iterator<Item = usize>,
    (phase, declared): (HookPhase, Phases),
    ctx: &mut Ctx,
    observer: &Arc<dyn ChainObserver>,
    mut ask: impl FnMut(&Link, &mut Ctx) -> Option<Box<dyn BodyFilter>>,
    mut ask_stream: impl FnMut(&Link, &mut Ctx) -> Option<BodyStream>,
) -> Result<Layers, Box<Failed>> {
    let mut layers = Layers::default();
    for i in order {
        let link = &links[i];
        if !link.has(declared) {
            debug_assert!(
                ask(link, ctx).is_none() && ask_stream(link, ctx).is_none(),
                "plugin {} returned a {phase} filter but does not declare {declared:?}",
                link.alias
            );
            continue;
        }
        let asked = guard::call(|| {
            let filter = ask(link, ctx);
            (filter, ask_stream(link, ctx))
        });
        match asked {
            Ok((filter, stream)) => {
                if let Some(filter) = filter {
                    if !matches!(layers.0.last(), Some(Layer::Filters(_))) {
                        layers.0.push(Layer::Filters(FilterStack::new(
                            links.clone(),
                            ctx.route.clone(),
                            observer.clone(),
                            phase,
                        )));
                    }
                    if let Some(Layer::Filters(stack)) = layers.0.last_mut() {
                        stack.push(i, filter);
                    }
                }
                if let Some(stream) = stream {
                    layers.0.push(Layer::Stream(stream));
                }
            }
            Err(failure) => {
                return Err(Box::new(Failed::new(
                    links,
                    i,
                    phase,
                    failure,
                    ctx,
                    &**observer,
                )))
            }
        }
    }
    Ok(layers)
}

/// Asks the plugins that ran for request body filters and streams (ascending) and wraps the
/// body when any did; a non-empty body is also wrapped to count its bytes when a completion
/// hook will want them.
fn request_body(
    links: &Arc<[Link]>,
    ran: &Ran,
    completion: bool,
    parts: &mut request::Parts,
    body: ProxyBody,
    ctx: &mut Ctx,
    observer: &Arc<dyn ChainObserver>,
) -> Result<RequestBody, Box<Failed>> {
    let layers = collect_filters(
        links,
        ran.ascending(),
        (HookPhase::RequestBody, Phases::REQUEST_BODY),
        ctx,
        observer,
        |link, ctx| link.plugin.request_body_filter(parts, ctx),
        |link, ctx| link.plugin.request_body_stream(parts, ctx),
    )?;
    if !layers.is_empty() {
        // The filters may change the length: the body is re-framed.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    Ok(counted(body, completion, layers, links, observer))
}

/// Wraps `body` in `layers`, counting its bytes; without layers, a body is only wrapped to
/// count its bytes when it has some and a completion hook will want them.
fn counted(
    body: ProxyBody,
    completion: bool,
    layers: Layers,
    links: &Arc<[Link]>,
    observer: &Arc<dyn ChainObserver>,
) -> RequestBody {
    if layers.is_empty() && (body.is_end_stream() || !completion) {
        // Nothing to count for: an empty body, or no plugin to tell.
        return (body, None);
    }
    let counter = Arc::new(AtomicU64::new(0));
    let body = layers.wrap(body, Some(counter.clone()), || {
        FilterStack::new(
            links.clone(),
            None,
            observer.clone(),
            HookPhase::RequestBody,
        )
    });
    (body, Some(counter))
}

/// Asks the plugins that ran for response body filters and streams (descending) and wraps the
/// body when any did, removing `Content-Length`; otherwise the body is returned untouched.
fn response_body(
    links: &Arc<[Link]>,
    ran: &Ran,
    head: &mut response::Parts,
    body: ProxyBody,
    ctx: &mut Ctx,
    observer: &Arc<dyn ChainObserver>,
) -> Result<ProxyBody, Box<Failed>> {
    let layers = collect_filters(
        links,
        ran.descending(),
        (HookPhase::ResponseBody, Phases::RESPONSE_BODY),
        ctx,
        observer,
        |link, ctx| link.plugin.response_body_filter(head, ctx),
        |link, ctx| link.plugin.response_body_stream(head, ctx),
    )?;
    if layers.is_empty() {
        return Ok(body);
    }
    head.headers.remove(header::CONTENT_LENGTH);
    Ok(layers.wrap(body, None, || unreachable!("no counter")))
}
