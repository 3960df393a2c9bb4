//! The request path: make the target and authority canonical, check the authority against the
//! connection's certificate, strip the client's hop-by-hop headers, route, run the chain (or
//! call the upstream directly when the chain is empty), record metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::request_rules::CompiledRules;
use crate::canonical::canonicalize;
use crate::chain::{ChainObserver, Upstream};
use crate::metrics::{method_label, Metrics};
use crate::plugin::{respond, Ctx, ProxyBody};
use crate::router::{normalise_host, RequestView};
use crate::runtime::{Runtime, RuntimeState};
use crate::upstream::headers::{self, X_REQUEST_ID};
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
    /// Path canonicalisation and trusted proxies.
    pub rules: CompiledRules,
}

/// The client connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// Listener address.
    pub local: SocketAddr,
    /// TLS?
    pub tls: bool,
    /// The server name the client asked for in the TLS handshake (lower-case).
    pub sni: Option<Arc<str>>,
}

/// Whether a request for `host` may be answered on a connection whose handshake asked for
/// `sni`: only when the proxy would present the same certificate for both (RFC 9110 §15.5.20,
/// 421). So one tenant's certificate cannot front another tenant's host, while connection
/// reuse across the names of one certificate (HTTP/2 coalescing) keeps working.
fn same_certificate(rt: &Runtime, sni: Option<&str>, host: &str) -> bool {
    if sni == Some(host) {
        return true;
    }
    let for_host = rt.certs.resolve(host);
    let for_sni = sni.and_then(|name| rt.certs.resolve(name));
    match (for_host, for_sni) {
        (None, None) => true,
        // Compared by the end-entity certificate, not by pointer: a new snapshot builds new
        // keys for the same certificate while keep-alive connections stay open.
        (Some(a), Some(b)) => a.cert.first() == b.cert.first(),
        _ => false,
    }
}

/// Calls the upstream without a chain; errors become short plain answers.
async fn call_direct(
    up: &impl Upstream,
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
    mut req: Request<Incoming>,
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
    match canonicalize(&mut req, conn.tls, shared.rules.path) {
        Ok(original) => ctx.original_target = original,
        Err(rejection) => {
            tracing::debug!(peer = %conn.peer, uri = %req.uri(), reason = %rejection, "request refused before routing");
            return Ok(refuse(
                &shared,
                &req,
                rejection.status(),
                &rejection.to_string(),
            ));
        }
    }
    if conn.tls {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(normalise_host);
        if let Some(host) = host.as_deref() {
            if !same_certificate(&rt, conn.sni.as_deref(), host) {
                tracing::debug!(peer = %conn.peer, sni = ?conn.sni, host, "misdirected request");
                return Ok(refuse(
                    &shared,
                    &req,
                    StatusCode::MISDIRECTED_REQUEST,
                    "this connection's certificate does not serve the requested host",
                ));
            }
        }
    }
    // The client's hop-by-hop headers go before any plugin sees the request, so a client-chosen
    // `Connection` value can never remove a header a plugin adds.
    let upgrade = headers::is_upgrade(req.headers());
    ctx.te_trailers = headers::remove_hop_by_hop(req.headers_mut(), upgrade);
    if !shared.rules.client_ip.trusts_nobody() {
        let peer = conn.peer.ip();
        ctx.trusted_peer = shared.rules.client_ip.is_trusted(peer);
        ctx.client_ip = shared.rules.client_ip.resolve(req.headers(), peer);
    }

    let limit = usize::try_from(shared.max_body_bytes).unwrap_or(usize::MAX);
    // Apart: the head stays here, lent to the upstream call when the route has no plugins.
    let (mut parts, body) = req.into_parts();
    let body = if body.is_end_stream() {
        respond::empty()
    } else {
        Limited::new(body, limit).boxed_unsync()
    };

    // The canonical authority: `canonicalize` wrote it into `Host`.
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let matched = rt.router.find(&RequestView {
        host,
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        tls: conn.tls,
    });
    let method = method_label(&parts.method);
    if let Some(id) = parts
        .headers
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
            // The head is as cleaned above; the chain forgets it when a plugin may change it.
            ctx.hop_by_hop_removed = Some(upgrade);
            let resp = if route.chain.links().is_empty() {
                // No plugin between here and the upstream. Called in place, not through
                // `dyn Upstream` (whose boxed future was allocated and copied for every request).
                match up.forward(&mut parts, body, &mut ctx).await {
                    Ok(resp) => resp,
                    Err(err) => respond::text(err.status, &err.message),
                }
            } else {
                ctx.route = Some(route.key.clone());
                let req = Request::from_parts(parts, body);
                route.chain.run(req, &mut ctx, &up, &shared.observer).await
            };
            (
                resp,
                &*route.route_label,
                &*route.service_label,
                route.duration(&shared.metrics),
            )
        }
        None => {
            let req = Request::from_parts(parts, body);
            let resp = if rt.default_chain.links().is_empty() {
                call_direct(&NoRoute, req, ctx).await
            } else {
                rt.default_chain
                    .run(req, &mut ctx, &NoRoute, &shared.observer)
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

/// A request refused before routing: a short plain answer, counted like any other.
fn refuse<B>(
    shared: &Shared,
    req: &Request<B>,
    status: StatusCode,
    message: &str,
) -> Response<ProxyBody> {
    let resp = respond::text(status, message);
    shared
        .metrics
        .count_request("", "", method_label(req.method()), resp.status());
    resp
}
