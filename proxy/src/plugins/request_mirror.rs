//! `request_mirror`: the Gateway API's `RequestMirror` filter — sends a copy of a share of the
//! requests to another Service and forgets it (the answer is discarded; the client's request
//! goes on unchanged). See `docs/plugins/request_mirror.md`.
//!
//! The copy has the request's method, path, query and headers (hop-by-hop headers removed), and
//! **no body**: bodies are streamed once, to the real upstream, so a request with a body is
//! mirrored without it (`content-length: 0`). Plain HTTP upstreams only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookway_crds::catalogue::PluginConfig;
use hookway_crds::snapshot::Scheme;
use http::{header, request, HeaderValue, Request};
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use serde::Deserialize;

use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};
use crate::upstream::headers::remove_hop_by_hop;

/// How long a mirrored request may take before it is dropped.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);
/// Copies in flight per plugin instance at most. Without a bound, a slow mirror backend would
/// hold `rate × MIRROR_TIMEOUT` tasks (half a million at 50k requests/s); past it, copies are
/// dropped (mirroring is best effort, as the Gateway API allows) and counted in a debug log.
const MAX_IN_FLIGHT: usize = 1024;

/// The `request_mirror` plugin kind.
pub struct RequestMirror;

fn hundred() -> u32 {
    100
}

/// The `request_mirror` config.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestMirrorConfig {
    /// The hookway Service copies go to (`name`, or `namespace/name` where a grant allows it).
    #[schemars(extend("x-hookway-ref" = "service"))]
    pub service: String,
    /// Share of the requests mirrored: `numerator / denominator` (default 100/100).
    #[serde(default = "hundred")]
    pub numerator: u32,
    /// See `numerator`.
    #[serde(default = "hundred")]
    pub denominator: u32,
}

impl PluginConfig for RequestMirrorConfig {
    fn validate(&self) -> Result<(), String> {
        if self.service.is_empty() {
            return Err("service: must not be empty".into());
        }
        if self.denominator == 0 || self.numerator > self.denominator {
            return Err(format!(
                "numerator/denominator: {}/{} is not a fraction between 0 and 1",
                self.numerator, self.denominator
            ));
        }
        Ok(())
    }
}

/// A running `request_mirror`.
struct Running {
    /// `host:port` of each endpoint (weight > 0).
    targets: Vec<String>,
    next: AtomicUsize,
    numerator: u32,
    denominator: u32,
    client: Client<HttpConnector, Empty<Bytes>>,
    /// Permits for copies in flight ([`MAX_IN_FLIGHT`]).
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl PluginFactory for RequestMirror {
    const NAME: &'static str = "request_mirror";
    type Config = RequestMirrorConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Self::Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let key = env.service(&config.service)?;
        // A Service not in the snapshot (not found, not accepted) mirrors nowhere.
        let targets = match env.snapshot.upstream(key) {
            Some(u) if u.scheme == Scheme::Https => {
                return Err(format!(
                    "Service {key} speaks https; request_mirror sends plain HTTP"
                ))
            }
            Some(u) => u
                .endpoints
                .iter()
                .filter(|e| e.weight > 0)
                .map(|e| {
                    if e.address.contains(':') {
                        format!("[{}]:{}", e.address, e.port)
                    } else {
                        format!("{}:{}", e.address, e.port)
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(Arc::new(Running {
            targets,
            next: AtomicUsize::new(0),
            numerator: config.numerator,
            denominator: config.denominator,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        }))
    }
}

impl Running {
    fn sampled(&self) -> bool {
        self.numerator >= self.denominator
            || (self.numerator > 0
                && rand::rng().random_range(0..self.denominator) < self.numerator)
    }

    /// The copy of `req` for `target`.
    fn copy(req: &request::Parts, target: &str) -> Option<Request<Empty<Bytes>>> {
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut out = Request::builder()
            .method(req.method.clone())
            .uri(format!("http://{target}{pq}"))
            .body(Empty::new())
            .ok()?;
        let headers = out.headers_mut();
        headers.clone_from(&req.headers);
        remove_hop_by_hop(headers, false);
        headers.remove(header::TRANSFER_ENCODING);
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        Some(out)
    }
}

impl Plugin for Running {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if !self.targets.is_empty() && self.sampled() {
            let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
                tracing::debug!("request_mirror: {MAX_IN_FLIGHT} copies in flight; copy dropped");
                return Hook::Ready(Ok(Flow::Continue));
            };
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
            if let Some(copy) = Self::copy(req, &self.targets[i]) {
                let client = self.client.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(MIRROR_TIMEOUT, client.request(copy)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, "request_mirror: copy failed"),
                        Err(_) => tracing::debug!("request_mirror: copy timed out"),
                    }
                });
            }
        }
        Hook::Ready(Ok(Flow::Continue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::validate;
    use serde_json::json;

    #[test]
    fn configs_are_checked() {
        assert!(validate("request_mirror", json!({"service": "m"})).is_ok());
        assert!(validate(
            "request_mirror",
            json!({"service": "m", "numerator": 1, "denominator": 10})
        )
        .is_ok());
        for bad in [
            json!({"service": ""}),
            json!({"service": "m", "numerator": 2, "denominator": 1}),
            json!({"service": "m", "denominator": 0}),
            json!({}),
        ] {
            assert!(validate("request_mirror", bad.clone()).is_err(), "{bad}");
        }
    }

    /// A mirror backend that accepts and never answers holds at most the instance's permits of
    /// copies; the rest are dropped, and the permits come back when the copies end.
    #[tokio::test]
    async fn copies_in_flight_are_bounded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let _ = held_tx.send(conn); // held open, never answered
            }
        });
        let running = Running {
            targets: vec![addr.to_string()],
            next: AtomicUsize::new(0),
            numerator: 1,
            denominator: 1,
            client: Client::builder(TokioExecutor::new()).build_http(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(2)),
        };
        for _ in 0..5 {
            let mut req = crate::plugins::testing::parts("GET", "/m", &[]);
            let mut cx = crate::plugins::testing::ctx("1.2.3.4:5");
            assert!(
                crate::plugins::testing::request(&running, &mut req, &mut cx)
                    .await
                    .is_none()
            );
        }
        assert_eq!(
            running.in_flight.available_permits(),
            0,
            "two copies hold both permits"
        );
        let mut held = vec![held_rx.recv().await.unwrap(), held_rx.recv().await.unwrap()];
        // The backend goes away: both copies fail, their permits return.
        server.abort();
        held.clear();
        tokio::time::timeout(Duration::from_secs(10), async {
            while running.in_flight.available_permits() < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("permits returned");
        assert!(held_rx.try_recv().is_err(), "only two copies were sent");
    }

    #[test]
    fn the_copy_has_no_body_and_no_hop_by_hop_headers() {
        let req = Request::builder()
            .method("POST")
            .uri("/a?b=1")
            .header("host", "shop.example")
            .header("connection", "keep-alive")
            .header("content-length", "5")
            .header("x-trace", "t")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let copy = Running::copy(&parts, "10.0.0.1:8080").unwrap();
        assert_eq!(copy.uri(), "http://10.0.0.1:8080/a?b=1");
        assert_eq!(copy.method(), "POST");
        assert_eq!(copy.headers()["host"], "shop.example");
        assert_eq!(copy.headers()["x-trace"], "t");
        assert_eq!(copy.headers()["content-length"], "0");
        assert!(copy.headers().get("connection").is_none());
    }
}
