//! Cost of the benchmark chain's hooks (`ip_restriction` + `auth(apikey)` +
//! `rate_limiting(local)`) per request, measured by calling the hooks directly. Ignored by
//! default: run with `cargo test -p hookway-proxy --profile dist --lib hot_path_cost -- --ignored
//! --nocapture` for meaningful numbers.

use std::time::Instant;

use serde_json::json;

use super::testing::{self, ctx, parts, snapshot_with_secret};

#[tokio::test]
#[ignore = "measurement, not a check"]
async fn three_plugin_chain_cost() {
    let snap = snapshot_with_secret("keys", &[("bench", "bench-key-0123456789")]);
    let ip = testing::build(
        "ip_restriction",
        json!({"ip_list_type": "white", "ip_white_list": ["10.0.0.0/8", "127.0.0.1"]}),
    );
    let auth = testing::build_with(
        "auth",
        json!({"credentials": [{"type": "apikey", "secret": "keys"}]}),
        &snap,
    )
    .unwrap();
    let rl = testing::build("rate_limiting", json!({"second": 1_000_000_000u64}));
    let n = 200_000u32;
    let started = Instant::now();
    for i in 0..n {
        let mut req = parts(
            "GET",
            "/bench",
            &[("authorization", "bench-key-0123456789")],
        );
        let mut cx = ctx(if i % 2 == 0 {
            "127.0.0.1:5000"
        } else {
            "10.1.2.3:5000"
        });
        for p in [&ip, &auth, &rl] {
            assert!(testing::request(&**p, &mut req, &mut cx).await.is_none());
        }
        for p in [&rl, &auth, &ip] {
            testing::response(&**p, &mut cx, None).await;
        }
    }
    let with_plugins = started.elapsed();
    let started = Instant::now();
    for _ in 0..n {
        let mut req = parts(
            "GET",
            "/bench",
            &[("authorization", "bench-key-0123456789")],
        );
        let cx = ctx("127.0.0.1:5000");
        std::hint::black_box((&mut req, &cx));
    }
    let baseline = started.elapsed();
    let per_request = with_plugins.saturating_sub(baseline) / n;
    println!("3-plugin hooks: {per_request:?} per request ({n} requests)");
}
