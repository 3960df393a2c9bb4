//! A rough cost measurement of the runner (not a timed test: `--ignored --nocapture` prints
//! it). Compares an empty chain with a 3-plugin header-only chain on an upstream that answers
//! at once. In a debug build the figures are only relative.

use std::sync::Arc;
use std::time::Instant;

use http_body_util::BodyExt;
use serde_json::json;

use super::*;
use crate::plugins::testing::link;

/// Answers `ok` without looking at the request.
struct Fast;
impl Upstream for Fast {
    fn call<'a>(
        &'a self,
        _req: Request<ProxyBody>,
        _ctx: &'a mut Ctx,
    ) -> impl std::future::Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send + 'a
    {
        Box::pin(async { Ok(Response::new(respond::full(Bytes::from_static(b"ok")))) })
    }
}

/// The best of five rounds of `n` requests, in ns per request (the machine is shared).
async fn per_request(chain: &Chain, upstream: &Fast, n: u32) -> f64 {
    let observer: Arc<dyn ChainObserver> = Arc::new(NullObserver);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..n {
            let resp = chain
                .run(get("/bench"), &mut ctx(), upstream, &observer)
                .await;
            resp.into_body().collect().await.unwrap();
        }
        best = best.min(started.elapsed().as_nanos() as f64 / f64::from(n));
    }
    best
}

struct Noop;
impl Plugin for Noop {}

struct NullObserver;
impl ChainObserver for NullObserver {
    fn hook(&self, _: &Link, _: HookPhase, _: Duration) {}
    fn plugin_failed(&self, _: &str, _: &str, _: Option<&ObjectKey>) {}
}

#[tokio::test]
#[ignore = "measurement, run by hand"]
async fn chain_overhead() {
    let upstream = Fast;
    let empty = Chain::default();
    let three = Chain::new(vec![
        link("request_id", json!({})),
        link("headers", json!({"request": {"set": {"X-Env": "prod"}}})),
        link(
            "headers",
            json!({"response": {"set": {"Server": "hookway"}}}),
        ),
    ]);
    let noop = || Link::new("noop", "noop", Arc::new(Noop));
    let three_noop = Chain::new(vec![noop(), noop(), noop()]);
    let one_id = Chain::new(vec![link("request_id", json!({}))]);
    let one_headers = Chain::new(vec![link(
        "headers",
        json!({"request": {"set": {"X-Env": "prod"}}}),
    )]);
    let n = 5_000;
    // Warm up, then measure.
    per_request(&three, &upstream, 200).await;
    let base = per_request(&empty, &upstream, n).await;
    let with_three = per_request(&three, &upstream, n).await;
    let noops = per_request(&three_noop, &upstream, n).await;
    let id = per_request(&one_id, &upstream, n).await;
    let headers = per_request(&one_headers, &upstream, n).await;
    println!(
        "3 no-op plugins: {noops:.0} ns/request; request_id alone: {id:.0}; \
         one headers: {headers:.0}"
    );
    println!(
        "empty chain: {base:.0} ns/request; 3 header plugins: {with_three:.0} ns/request (+{:.0} ns)",
        with_three - base
    );
}
