//! Calling upstreams: node choice, pooled clients, timeouts, retries, header rewriting, and
//! WebSocket/Upgrade passthrough. [`ProxyUpstream`] is the chain's innermost layer.

pub mod balancer;
pub mod client;
pub mod endpoint;
mod guarded;
pub mod h1;
pub mod headers;
mod http2;
pub mod pool;

use std::time::Instant;

use http::uri::PathAndQuery;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper_util::rt::TokioIo;

use hookway_crds::snapshot::UpstreamProtocol;

use crate::chain::{BodyFilterError, Upstream, UpstreamError};
use crate::plugin::{Ctx, ProxyBody};
use balancer::PickInput;
use endpoint::{root_cause, Endpoint, Head, SendError};
pub use pool::{UpstreamPool, UpstreamSlot, Upstreams};

/// Sends requests to the upstreams of one runtime.
pub struct ProxyUpstream<'a> {
    /// The runtime's upstreams.
    pub upstreams: &'a Upstreams,
}

impl Upstream for ProxyUpstream<'_> {
    fn call<'a>(
        &'a self,
        req: Request<ProxyBody>,
        ctx: &'a mut Ctx,
    ) -> impl std::future::Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send + 'a
    {
        let (parts, body) = req.into_parts();
        self.forward(parts, body, ctx)
    }
}

/// Answers every request with 404 "no route matched" (the no-route chain's upstream).
pub struct NoRoute;

impl Upstream for NoRoute {
    fn call<'a>(
        &'a self,
        _req: Request<ProxyBody>,
        _ctx: &'a mut Ctx,
    ) -> impl std::future::Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send + 'a
    {
        std::future::ready(Ok(crate::plugin::respond::text(
            StatusCode::NOT_FOUND,
            "no route matched",
        )))
    }
}

fn fail(status: StatusCode, message: impl Into<String>) -> UpstreamError {
    UpstreamError {
        status,
        message: message.into(),
    }
}

/// The request body filter whose failure ended the request body, if that is why the call
/// failed.
fn body_filter_failure<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e BodyFilterError> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(failure) = e.downcast_ref::<BodyFilterError>() {
            return Some(failure);
        }
        cur = e.source();
    }
    None
}

/// Whether the request body was cut by the proxy's body limit.
fn body_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The answer for a request whose body failed on the way (413 over the body limit, a body
/// filter's status), if that is why.
fn request_body_failure(err: &(dyn std::error::Error + 'static)) -> Option<UpstreamError> {
    if body_too_large(err) {
        return Some(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    body_filter_failure(err)
        .map(|failure| fail(failure.status, format!("plugin {} failed", failure.alias)))
}

fn is_idempotent(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::PUT
            | http::Method::DELETE
            | http::Method::TRACE
    )
}

impl ProxyUpstream<'_> {
    /// Sends the request of head `parts` and `body` to the upstream `ctx` names (what
    /// [`Upstream::call`] does, without boxing the future: the server calls it in place when a
    /// route has no plugins). The head is the future's own (a chain's request) or lent (the
    /// server's, which then stays where it is rather than being moved into this future); it is
    /// rewritten for the upstream, and only a last attempt to hyper's clients (HTTP/2, Upgrade)
    /// takes it, leaving an empty head.
    pub(crate) async fn forward<P>(
        &self,
        mut parts: P,
        body: ProxyBody,
        ctx: &mut Ctx,
    ) -> Result<Response<ProxyBody>, UpstreamError>
    where
        P: std::borrow::BorrowMut<http::request::Parts> + Send,
    {
        let parts: &mut http::request::Parts = parts.borrow_mut();
        let pool = ctx
            .upstream
            .as_ref()
            .and_then(|k| self.upstreams.get(k))
            .map(|slot| slot.load_full())
            .ok_or_else(|| fail(StatusCode::SERVICE_UNAVAILABLE, "no healthy endpoints"))?;
        let upgrade = match ctx.hop_by_hop_removed {
            Some(upgrade) => upgrade,
            None => headers::is_upgrade(&parts.headers),
        };
        let client_upgrade = upgrade.then(|| client_upgrade(parts));

        // Request head for the upstream.
        let (host, host_field) = match parts.headers.get(header::HOST) {
            Some(h) => (Some(h.clone()), true),
            None => (
                parts
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
                false,
            ),
        };
        if ctx.hop_by_hop_removed.is_none() {
            // A plugin may have added some since the server removed the client's.
            headers::remove_hop_by_hop(&mut parts.headers, upgrade);
        }
        headers::add_forwarded(
            &mut parts.headers,
            ctx.peer_addr.ip(),
            ctx.tls,
            host.as_ref(),
            ctx.trusted_peer,
        );
        if let Some(host) = host {
            // A head straight from the server has exactly one `Host` (`canonicalize` refuses
            // more), which setting it again would not change; after a chain, a plugin may have
            // added a second one. (Setting a field that is there costs a hash, and it grew the
            // map once per request when the forwarding fields had just filled it.)
            if !host_field || ctx.hop_by_hop_removed.is_none() {
                parts.headers.insert(header::HOST, host);
            }
        }
        if let Some(id) = &ctx.request_id {
            if !parts.headers.contains_key(&headers::X_REQUEST_ID) {
                if let Ok(v) = HeaderValue::from_str(id) {
                    parts.headers.insert(headers::X_REQUEST_ID.clone(), v);
                }
            }
        }
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        let path_and_query = match &ctx.target.path {
            Some(path) => {
                let pq = match parts.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path.clone(),
                };
                PathAndQuery::try_from(pq).map_err(|e| {
                    fail(StatusCode::BAD_GATEWAY, format!("invalid target path: {e}"))
                })?
            }
            None => parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        };
        let scheme = ctx
            .target
            .scheme
            .map(pool::uri_scheme)
            .unwrap_or_else(|| pool.scheme.clone());
        let timeout = ctx.target.timeout.unwrap_or(pool.request_timeout);

        // Where to: a plugin's fixed target, or balanced nodes.
        let fixed = match &ctx.target.host {
            Some(h) => {
                let port = ctx
                    .target
                    .port
                    .unwrap_or(if scheme == http::uri::Scheme::HTTPS {
                        443
                    } else {
                        80
                    });
                Some(pool::authority(h, port).map_err(|e| {
                    fail(StatusCode::BAD_GATEWAY, format!("invalid target host: {e}"))
                })?)
            }
            None => None,
        };
        let first = match fixed {
            Some(_) => 0,
            None => {
                let input = PickInput {
                    peer: ctx.peer_addr.ip(),
                    header: pool
                        .hash_header
                        .as_ref()
                        .and_then(|h| parts.headers.get(h))
                        .map(HeaderValue::as_bytes),
                };
                pool.balancer
                    .pick(&input)
                    .ok_or_else(|| fail(StatusCode::SERVICE_UNAVAILABLE, "no healthy endpoints"))?
            }
        };
        // A plugin's target (or scheme) is an endpoint looked up by name; nodes carry theirs.
        let fixed_endpoint = fixed
            .as_ref()
            .map(|authority| pool.client.endpoint(&scheme, authority, pool.protocol));
        let rescheme = fixed.is_none() && scheme != pool.scheme;
        let retryable = !upgrade && is_idempotent(&parts.method) && body.is_end_stream();
        let attempts = if retryable { 1 + pool.retries } else { 1 };

        // Origin form: the connection is already to the endpoint; `Host` is set above.
        parts.uri = Uri::from(path_and_query);
        // Every attempt lends the head (a retry sends this very head again; HTTP/1.1 only writes
        // it out), except that the last hands it over to hyper's clients (HTTP/2, Upgrade).
        // Only a retryable request has more than one attempt, and it has no body.
        let mut body = Some(body);
        let mut te_set = false;
        let mut last_error = fail(StatusCode::BAD_GATEWAY, "upstream error");
        for attempt in 0..attempts {
            let last = attempt + 1 == attempts;
            let node = (first + attempt as usize) % pool.nodes.len().max(1);
            let rescheme_endpoint;
            let endpoint: &Arc<Endpoint> = match &fixed_endpoint {
                Some(e) => e,
                None if rescheme => {
                    rescheme_endpoint =
                        pool.client
                            .endpoint(&scheme, &pool.nodes[node].authority, pool.protocol);
                    &rescheme_endpoint
                }
                None => &pool.nodes[node].endpoint,
            };
            let want_te = ctx.te_trailers && endpoint.protocol() != UpstreamProtocol::Http1;
            if want_te != te_set {
                if want_te {
                    // The one `TE` HTTP/2 allows (gRPC needs it); an HTTP/1.1 connection drops it.
                    parts
                        .headers
                        .insert(header::TE, HeaderValue::from_static("trailers"));
                } else {
                    parts.headers.remove(header::TE);
                }
                te_set = want_te;
            }
            // Retryable: the body has ended; it goes with the first attempt.
            let body = body.take().unwrap_or_else(crate::plugin::respond::empty);
            let head = if last && (upgrade || endpoint.protocol() != UpstreamProtocol::Http1) {
                // Not moved for HTTP/1.1 (a head moved is a 224-byte copy, more than once).
                Head::Owned(Box::new(std::mem::replace(parts, empty_head())))
            } else {
                Head::Lent(parts)
            };
            // Held by the response body (a failed attempt drops it).
            let guard = fixed.is_none().then(|| pool.balancer.start(node));
            let started = Instant::now();
            // The request's own deadline, on a pooled timer (no timer-wheel entry per request);
            // the send future stays where it is pinned.
            let send = std::pin::pin!(endpoint.send_head(head, body, upgrade, guard));
            let sent = pool.client.timers().timeout(timeout, send);
            match sent.await {
                Err(crate::timer::Elapsed) => {
                    tracing::debug!(upstream = %pool.key, ?timeout, "upstream timed out");
                    return Err(fail(StatusCode::GATEWAY_TIMEOUT, "upstream timed out"));
                }
                Ok(Err(SendError::Connect(cause))) => {
                    pool.connect_errors.inc();
                    tracing::debug!(upstream = %pool.key, node, attempt, error = %cause, "upstream connect error");
                    last_error = fail(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream connect error: {cause}"),
                    );
                }
                Ok(Err(SendError::Unprocessed(cause))) => {
                    tracing::debug!(upstream = %pool.key, node, attempt, error = %cause, "upstream did not process the request");
                    last_error = fail(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream did not process the request: {cause}"),
                    );
                }
                Ok(Err(SendError::Protocol(message))) => {
                    // A configuration mismatch (h2c to an HTTP/1.1-only server), not a passing
                    // fault: worth a line at the default level.
                    tracing::warn!(upstream = %pool.key, node, error = %message, "upstream protocol error");
                    return Err(fail(StatusCode::BAD_GATEWAY, message));
                }
                Ok(Err(SendError::Body(err))) => {
                    return Err(request_body_failure(&*err).unwrap_or_else(|| {
                        fail(
                            StatusCode::BAD_GATEWAY,
                            format!("upstream error: request body: {}", root_cause(&*err)),
                        )
                    }));
                }
                Ok(Err(SendError::Http1(err))) => {
                    tracing::debug!(upstream = %pool.key, node, error = %err, "upstream error");
                    return Err(fail(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream error: {err}"),
                    ));
                }
                Ok(Err(SendError::Request(err))) if body_too_large(&err) => {
                    return Err(fail(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large",
                    ));
                }
                Ok(Err(SendError::Request(err))) => {
                    // A request body filter refused the body (413 over a plugin's limit, 400
                    // for a missing body parameter): its status, not a gateway error. The
                    // filter stack has logged it.
                    if let Some(failure) = body_filter_failure(&err) {
                        return Err(fail(
                            failure.status,
                            format!("plugin {} failed", failure.alias),
                        ));
                    }
                    let cause = root_cause(&err);
                    tracing::debug!(upstream = %pool.key, node, error = %cause, "upstream error");
                    return Err(fail(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream error: {cause}"),
                    ));
                }
                Ok(Ok(mut resp)) => {
                    pool.upstream_duration
                        .observe(started.elapsed().as_secs_f64());
                    if !last && pool.retry_on_status.contains(&resp.status().as_u16()) {
                        tracing::debug!(upstream = %pool.key, node, attempt, status = resp.status().as_u16(), "retrying on status");
                        last_error = fail(resp.status(), "upstream error");
                        continue;
                    }
                    ctx.upstream_addr = Some(endpoint.authority().clone());
                    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
                    headers::remove_hop_by_hop(resp.headers_mut(), switching && upgrade);
                    if switching {
                        if let Some(client_side) = client_upgrade {
                            let upstream_side = hyper::upgrade::on(&mut resp);
                            tokio::spawn(tunnel(client_side, upstream_side));
                        }
                        let (parts, _) = resp.into_parts();
                        return Ok(Response::from_parts(parts, crate::plugin::respond::empty()));
                    }
                    // Its body was built where it was read (guard and connection in it).
                    return Ok(resp);
                }
            }
        }
        Err(last_error)
    }
}

/// The client side of an Upgrade request, from its head (what `hyper::upgrade::on` takes from a
/// request's extensions).
fn client_upgrade(parts: &mut http::request::Parts) -> hyper::upgrade::OnUpgrade {
    let mut req = Request::new(());
    *req.extensions_mut() = std::mem::take(&mut parts.extensions);
    let on = hyper::upgrade::on(&mut req);
    parts.extensions = std::mem::take(req.extensions_mut());
    on
}

/// A head with nothing in it, left where one was handed over.
fn empty_head() -> http::request::Parts {
    Request::new(()).into_parts().0
}

/// Copies bytes both ways between the upgraded client and upstream connections.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %err, "upgraded connection ended");
            }
        }
        Err(err) => tracing::debug!(error = %err, "upgrade failed"),
    }
}
