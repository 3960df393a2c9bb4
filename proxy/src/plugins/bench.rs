//! Rough per-request costs of plugin hooks, for the issue's benchmark numbers. Ignored by
//! default; run with the `dist` profile (as shipped):
//! `cargo test -p hookway-proxy --profile dist --lib plugins::bench -- --ignored --nocapture`

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use super::harness::{build, ctx, on_request, on_response, request, response};

fn json_64k() -> Bytes {
    let mut s = String::from("[");
    let mut i = 0u64;
    while s.len() < 64 * 1024 - 64 {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user-{}\",\"email\":\"u{}@example.com\",\"active\":{}}},",
            i.wrapping_mul(2654435761) % 100_000,
            i,
            i.is_multiple_of(3)
        ));
        i += 1;
    }
    s.push_str("{}]");
    Bytes::from(s)
}

fn per_op(iterations: u32, elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6 / f64::from(iterations)
}

#[tokio::test]
#[ignore = "benchmark"]
async fn bench_compression_64k_json() {
    let body = json_64k();
    for (algo, level_cfg) in [
        ("gzip", json!({"algorithms": ["gzip"], "gzip_level": 1})),
        ("gzip", json!({"algorithms": ["gzip"], "gzip_level": 6})),
        ("br", json!({"algorithms": ["br"], "br_level": 5})),
        ("zstd", json!({"algorithms": ["zstd"], "zstd_level": 3})),
    ] {
        let plugin = build("compression", level_cfg.clone()).unwrap();
        let n = 300;
        let mut out_len = 0;
        let start = Instant::now();
        for _ in 0..n {
            let mut c = ctx();
            let mut req = request("GET", "/", &[("accept-encoding", algo)]);
            on_request(plugin.as_ref(), &mut req, &mut c).await.unwrap();
            let mut resp = response(200, &[("content-type", "application/json")]);
            on_response(plugin.as_ref(), &mut resp, &mut c)
                .await
                .unwrap();
            let mut f = plugin.response_body_filter(&resp, &mut c).unwrap();
            out_len = 0;
            for chunk in body.chunks(16 * 1024) {
                out_len += f.on_chunk(body.slice_ref(chunk)).unwrap().len();
            }
            out_len += f.on_end().unwrap().map_or(0, |b| b.len());
        }
        let us = per_op(n, start.elapsed());
        println!(
            "compression {level_cfg}: {us:.0} µs per 64 KiB response ({:.0} responses/s/core, {:.0} MB/s in), {} → {out_len} bytes",
            1e6 / us,
            body.len() as f64 / us,
            body.len()
        );
    }
}

#[tokio::test]
#[ignore = "benchmark"]
async fn bench_header_only_hooks() {
    let rewrite = build(
        "proxy_rewrite",
        json!({"regex_uri": ["^/api/v1/(.*)", "/v2/$1"], "host": "backend", "headers": {"x-a": "1", "cookie": ""}}),
    )
    .unwrap();
    let n = 200_000;
    let base = request(
        "GET",
        "/api/v1/orders/7?x=1",
        &[("host", "front"), ("cookie", "a=b"), ("user-agent", "wrk")],
    );
    let start = Instant::now();
    for _ in 0..n {
        let mut req = request("GET", "/", &[]);
        req.uri = base.uri.clone();
        req.headers = base.headers.clone();
        let mut c = ctx();
        on_request(rewrite.as_ref(), &mut req, &mut c)
            .await
            .unwrap();
    }
    let with = per_op(n, start.elapsed());
    let start = Instant::now();
    for _ in 0..n {
        let mut req = request("GET", "/", &[]);
        req.uri = base.uri.clone();
        req.headers = base.headers.clone();
        let c = ctx();
        std::hint::black_box((&req, &c));
    }
    let without = per_op(n, start.elapsed());
    println!("proxy_rewrite (regex_uri + host + 2 headers): {:.3} µs per request (baseline request setup {without:.3} µs)", with - without);
}

#[tokio::test]
#[ignore = "benchmark"]
async fn bench_access_log_line() {
    let path = std::env::temp_dir().join(format!("hookway-bench-{}.log", std::process::id()));
    let plugin = build(
        "access_log",
        json!({"output": "file", "path": path, "buffer": 1_000_000}),
    )
    .unwrap();
    let completion = crate::plugin::Completion {
        status: 200,
        bytes_sent: 65536,
        bytes_received: 0,
        duration: Duration::from_micros(900),
        upstream_duration: Some(Duration::from_micros(700)),
        error: None,
        client_aborted: false,
    };
    let n = 100_000;
    let start = Instant::now();
    for _ in 0..n {
        let mut c = ctx();
        let mut req = request("GET", "/orders?id=7", &[("host", "shop.example")]);
        on_request(plugin.as_ref(), &mut req, &mut c).await.unwrap();
        c.request_id = Some("0f0e0d0c-0b0a-0908-0706-050403020100".into());
        plugin.on_complete(&c, &completion);
    }
    let us = per_op(n, start.elapsed());
    drop(plugin);
    std::thread::sleep(Duration::from_millis(500));
    let lines = std::fs::read_to_string(&path)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    println!("access_log json to file: {us:.2} µs per request on the request path; {lines} of {n} lines written");
}
