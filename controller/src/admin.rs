//! The admin endpoint (plain HTTP/1): `/healthz`, `/readyz`, `/metrics`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

use crate::metrics::Metrics;

/// Serves the admin endpoint until `shutdown` fires. `ready` turns true once the stores are
/// synced and the first snapshot is compiled.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    ready: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let tcp = tokio::select! {
            a = listener.accept() => match a { Ok((tcp, _)) => tcp, Err(_) => continue },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let resp = match req.uri().path() {
                    "/healthz" => text(StatusCode::OK, "ok\n".into()),
                    "/readyz" if *ready.borrow() => text(StatusCode::OK, "ready\n".into()),
                    "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
                    "/metrics" => text(StatusCode::OK, metrics.render()),
                    _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
                };
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await
            {
                debug!(error = %e, "admin connection ended");
            }
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}
