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
    ) -> BoxFuture<'a, Result<Response<ProxyBody>, UpstreamError>> {
        Box::pin(async { Ok(Response::new(respond::full(Bytes::from_static(b"ok")))) })
    }
}

async fn per_request(chain: &Chain, upstream: &Fast, n: u32) -> f64 {
    let observer: Arc<dyn ChainObserver> = Arc::new(NullObserver);
    let started = Instant::now();
    for _ in 0..n {
        let resp = chain.run(get("/bench"), ctx(), upstream, &observer).await;
        resp.into_body().collect().await.unwrap();
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

struct NullObserver;
impl ChainObserver for NullObserver {
    fn hook(&self, _: &str, _: &str, _: &'static str, _: Duration) {}
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
    let n = 20_000;
    // Warm up, then measure.
    per_request(&three, &upstream, 1_000).await;
    let base = per_request(&empty, &upstream, n).await;
    let with_three = per_request(&three, &upstream, n).await;
    println!(
        "empty chain: {base:.0} ns/request; 3 header plugins: {with_three:.0} ns/request (+{:.0} ns)",
        with_three - base
    );
}
