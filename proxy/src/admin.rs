//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/config`.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::plugin::{respond, ProxyBody};
use crate::runtime::RuntimeState;
use crate::server::handler::Shared;

/// `/config`: the live snapshot's summary: the routes served (a Route left out of this
/// snapshot shows its previous version, if it kept one) and the objects left out.
#[derive(Serialize)]
struct ConfigSummary<'a> {
    version: u64,
    hash: &'a str,
    routes: Vec<RouteSummary<'a>>,
    default_chain: Vec<ChainSummary<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    failed: &'a [hookway_crds::applied::FailedObject],
}

#[derive(Serialize)]
struct RouteSummary<'a> {
    route: String,
    hosts: &'a [String],
    upstream: String,
    chain: Vec<ChainSummary<'a>>,
}

#[derive(Serialize)]
struct ChainSummary<'a> {
    alias: &'a str,
    plugin: &'a str,
    tier: &'static str,
    order: i32,
}

fn chain_summary(chain: &[hookway_crds::snapshot::ChainEntry]) -> Vec<ChainSummary<'_>> {
    chain
        .iter()
        .map(|c| ChainSummary {
            alias: &c.alias,
            plugin: &c.plugin,
            tier: c.tier.as_str(),
            order: c.order,
        })
        .collect()
}

fn config(state: &RuntimeState) -> Response<ProxyBody> {
    let Some(rt) = state.load() else {
        return respond::text(StatusCode::SERVICE_UNAVAILABLE, "no snapshot applied yet");
    };
    let snap = &rt.snapshot;
    let summary = ConfigSummary {
        version: snap.version,
        hash: &snap.hash,
        routes: rt
            .route_entries()
            .iter()
            .map(|r| RouteSummary {
                route: r.key.to_string(),
                hosts: &r.hosts,
                upstream: r.upstream.to_string(),
                chain: chain_summary(&r.chain),
            })
            .collect(),
        default_chain: chain_summary(&snap.default_chain),
        failed: &rt.failed,
    };
    match serde_json::to_string_pretty(&summary) {
        Ok(json) => respond::with_body(StatusCode::OK, "application/json", json),
        Err(err) => respond::text(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

async fn route(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    Ok(match req.uri().path() {
        "/healthz" => respond::text(StatusCode::OK, "ok"),
        "/readyz" if shared.state.is_ready() => respond::text(StatusCode::OK, "ready"),
        "/readyz" => respond::text(StatusCode::SERVICE_UNAVAILABLE, "no snapshot applied yet"),
        "/metrics" => respond::with_body(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(),
        ),
        "/config" => config(&shared.state),
        _ => respond::text(StatusCode::NOT_FOUND, "not found"),
    })
}

/// Serves the admin endpoints on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(err) => {
                    tracing::warn!(error = %err, "admin accept failed");
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| route(shared.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "admin connection error");
            }
        });
    }
}
