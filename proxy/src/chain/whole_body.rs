//! The whole-request-body hook: plugins that answer from (or rewrite) the complete request
//! body opt in with [`Plugin::request_body_limit`](crate::plugin::Plugin::request_body_limit).
//!
//! ```text
//!  request_body_limit  ascending, plugins that ran   none asked → body streams on untouched
//!  Content-Length / size hint > smallest limit        → 413 before reading anything
//!  buffer (after the request body filters)  > limit   → 413
//!  on_request_body     ascending, askers only         Respond / failure → answer now
//!  upstream gets the (possibly replaced) body with an exact Content-Length
//! ```
//!
//! An answer from `on_request_body` goes through the response hooks of every plugin that ran
//! its request hook (they all did by now), in reverse, like an answer from `on_request`.
//! Trailers of a buffered body are dropped (the body is re-framed with `Content-Length`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{header, request, HeaderValue, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;

use crate::plugin::BoxError;

use super::body_filters::BodyFilterError;
use super::guard;
use super::lap::Lap;
use super::link_set::LinkSet;
use super::run::{Failed, Ran};
use super::{ChainObserver, HookPhase, Link};
use crate::plugin::{respond, Ctx, Flow, Phases, ProxyBody};

/// The observer phase of this hook (and of `request_body_limit`).
const PHASE: HookPhase = HookPhase::WholeRequestBody;

/// How the whole-body step ended when the request does not go on to the upstream.
pub(super) enum Stop {
    /// A plugin answered, or the body was refused (413, unreadable): no plugin failed.
    Answer(Response<ProxyBody>, Option<String>),
    /// A plugin failed (logged and reported already).
    Failed(Box<Failed>),
}

/// Which plugins asked for the whole body, and the smallest limit among them.
struct Askers {
    set: LinkSet,
    limit: usize,
}

/// Runs the whole-body step: returns the body to send upstream (untouched when no plugin
/// asked), or why the request stops here.
pub(super) async fn run(
    links: &Arc<[Link]>,
    ran: &Ran,
    parts: &mut request::Parts,
    body: ProxyBody,
    ctx: &mut Ctx,
    observer: &Arc<dyn ChainObserver>,
) -> Result<ProxyBody, Stop> {
    let Some(askers) = askers(links, ran, parts, ctx, observer).map_err(Stop::Failed)? else {
        return Ok(body);
    };
    let hint = body.size_hint().lower();
    if declared_length(parts, hint).is_some_and(|len| len > askers.limit as u64) {
        return Err(too_large(askers.limit));
    }
    let mut bytes = match buffer(body, askers.limit).await {
        Ok(bytes) => bytes,
        Err(Unread::TooLarge) => return Err(too_large(askers.limit)),
        Err(Unread::Body(e)) => return Err(unreadable(&*e, ctx)),
    };

    let mut clock = Lap::start();
    for i in ran.ascending().filter(|&i| askers.set.contains(i)) {
        let link = &links[i];
        let result = guard::hook(|| link.plugin.on_request_body(parts, &mut bytes, ctx)).await;
        observer.hook(link, PHASE, clock.lap());
        match result {
            Ok(Flow::Continue) => {}
            Ok(Flow::Respond(response)) => return Err(Stop::Answer(response, None)),
            Err(failure) => {
                let failed = Failed::new(links, i, PHASE, failure, ctx, &**observer);
                return Err(Stop::Failed(Box::new(failed)));
            }
        }
    }

    // Re-framed: an exact length, never chunked.
    parts.headers.remove(header::TRANSFER_ENCODING);
    if !bytes.is_empty() || parts.headers.contains_key(header::CONTENT_LENGTH) {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    Ok(respond::full(bytes))
}

/// Asks the plugins that ran (ascending) for their limit; `None` when nobody asked.
fn askers(
    links: &Arc<[Link]>,
    ran: &Ran,
    parts: &request::Parts,
    ctx: &Ctx,
    observer: &Arc<dyn ChainObserver>,
) -> Result<Option<Askers>, Box<Failed>> {
    let mut askers: Option<Askers> = None;
    for i in ran.ascending() {
        let link = &links[i];
        if !link.has(Phases::REQUEST_BODY) {
            debug_assert!(
                link.plugin.request_body_limit(parts, ctx).is_none(),
                "plugin {} asks for the whole body but does not declare REQUEST_BODY",
                link.alias
            );
            continue;
        }
        match guard::call(|| link.plugin.request_body_limit(parts, ctx)) {
            Ok(None) => {}
            Ok(Some(limit)) => {
                let askers = askers.get_or_insert(Askers {
                    set: LinkSet::default(),
                    limit,
                });
                askers.set.insert(i);
                askers.limit = askers.limit.min(limit);
            }
            Err(failure) => {
                let failed = Failed::new(links, i, PHASE, failure, ctx, &**observer);
                return Err(Box::new(failed));
            }
        }
    }
    Ok(askers)
}

/// The body length known before reading it: `Content-Length` (still there when no body filter
/// re-framed the body) or the body's own lower size bound.
fn declared_length(parts: &request::Parts, hint: u64) -> Option<u64> {
    let header = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match header {
        Some(len) => Some(len.max(hint)),
        None => (hint > 0).then_some(hint),
    }
}

fn too_large(limit: usize) -> Stop {
    tracing::debug!(limit, "request body over the whole-body limit");
    Stop::Answer(
        respond::text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        Some(format!("request body over {limit} bytes")),
    )
}

/// Why the body was not buffered.
enum Unread {
    /// Over the limit.
    TooLarge,
    /// The body failed.
    Body(BoxError),
}

/// Reads the whole body, up to `limit` bytes. A body of one chunk is not copied; trailers are
/// dropped.
async fn buffer(mut body: ProxyBody, limit: usize) -> Result<Bytes, Unread> {
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Unread::Body)?.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(Unread::TooLarge);
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(head), None) => {
                let hint = usize::try_from(body.size_hint().lower()).unwrap_or(limit);
                let mut buf = BytesMut::with_capacity(total + hint.min(limit - total));
                buf.extend_from_slice(head);
                buf.extend_from_slice(&data);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match rest {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Why the body could not be read: a request body filter failed (its status, already logged by
/// the filter stack), or the client's body broke (400).
fn unreadable(error: &(dyn std::error::Error + 'static), ctx: &Ctx) -> Stop {
    if let Some(filter) = error.downcast_ref::<BodyFilterError>() {
        let message = format!("plugin {} failed", filter.alias);
        return Stop::Answer(
            respond::text(filter.status, &message),
            Some(filter.to_string()),
        );
    }
    tracing::debug!(
        route = %guard::RouteName(ctx.route.as_deref()),
        error = %error,
        "request body could not be read"
    );
    Stop::Answer(
        respond::text(StatusCode::BAD_REQUEST, "request body could not be read"),
        Some(format!("request body: {error}")),
    )
}
