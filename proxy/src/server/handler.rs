//! The request path: route, run the chain (or call the upstream directly when the chain is
//! empty), record metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::chain::{ChainObserver, Upstream};
use crate::metrics::{method_label, Metrics};
use crate::plugin::{respond, Ctx, ProxyBody};
use crate::router::RequestView;
use crate::runtime::RuntimeState;
use crate::upstream::headers::X_REQUEST_ID;
use crate::upstream::{NoRoute, ProxyUpstream};

/// What every request handler shares.
pub struct Shared {
    /// The live runtime.
    pub state: Arc<RuntimeState>,
    /// The chain observer (the metrics).
    pub observer: Arc<dyn ChainObserver>,
    /// The metrics.
    pub metrics: Metrics,
    /// Largest request body.
    pub max_body_bytes: u64,
}

/// The client connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// Listener address.
    pub local: SocketAddr,
    /// TLS?
    pub tls: bool,
}

/// Calls the upstream without a chain; errors become short plain answers.
async fn call_direct(
    up: &dyn Upstream,
    req: Request<ProxyBody>,
    mut ctx: Ctx,
) -> Response<ProxyBody> {
    match up.call(req, &mut ctx).await {
        Ok(resp) => resp,
        Err(err) => respond::text(err.status, &err.message),
    }
}

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // The request's clock: one read serves the context and the request duration.
    let mut ctx = Ctx::new(conn.peer, conn.local, conn.tls);
    let started = ctx.started;
    let Some(rt) = shared.state.load() else {
        return Ok(respond::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no configuration yet",
        ));
    };
    let declared = req.body().size_hint().exact();
    if declared.is_some_and(|len| len > shared.max_body_bytes) {
        return Ok(respond::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let limit = usize::try_from(shared.max_body_bytes).unwrap_or(usize::MAX);
    let req = req.map(|b| {
        if b.is_end_stream() {
            respond::empty()
        } else {
            Limited::new(b, limit).boxed_unsync()
        }
    });

    let host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    });
    let matched = rt.router.find(&RequestView {
        host,
        method: req.method(),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    });
    let method = method_label(req.method());
    if let Some(id) = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
    {
        ctx.request_id = Some(id.into());
    }

    let (resp, route_label, service_label, duration) = match matched {
        Some(idx) => {
            let route = &rt.routes[idx];
            ctx.upstream = Some(route.upstream.clone());
            let up = ProxyUpstream {
                upstreams: &rt.upstreams,
            };
            let resp = if route.chain.links().is_empty() {
                call_direct(&up, req, ctx).await
            } else {
                ctx.route = Some(route.key.clone());
                route.chain.run(req, ctx, &up, &shared.observer).await
            };
            (
                resp,
                &*route.route_label,
                &*route.service_label,
                &route.duration,
            )
        }
        None => {
            let resp = if rt.default_chain.links().is_empty() {
                call_direct(&NoRoute, req, ctx).await
            } else {
                rt.default_chain
                    .run(req, ctx, &NoRoute, &shared.observer)
                    .await
            };
            (resp, "", "", &rt.no_route_duration)
        }
    };
    duration.observe(started.elapsed().as_secs_f64());
    shared
        .metrics
        .count_request(route_label, service_label, method, resp.status());
    Ok(resp)
}
