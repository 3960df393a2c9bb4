use std::io::Read;

use super::*;
use crate::plugins::harness::{build, ctx, on_request, on_response, request, response, validate};
use serde_json::json;

fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        "zstd" => out = zstd::decode_all(data).expect("zstd"),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

/// A compressible body that is not trivially repetitive.
fn json_body(len: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0u64;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"item-{}\",\"ok\":{}}},",
            i.wrapping_mul(2654435761) % 100_000,
            i.is_multiple_of(3)
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

struct Run {
    resp: response::Parts,
    filter: Option<Box<dyn BodyFilter>>,
}

async fn run(
    kind: &str,
    config: serde_json::Value,
    method: &str,
    req_headers: &[(&str, &str)],
    status: u16,
    resp_headers: &[(&str, &str)],
) -> Run {
    let plugin = build(kind, config).expect("build");
    let mut ctx = ctx();
    let mut req = request(method, "/", req_headers);
    on_request(plugin.as_ref(), &mut req, &mut ctx)
        .await
        .unwrap();
    let mut resp = response(status, resp_headers);
    on_response(plugin.as_ref(), &mut resp, &mut ctx)
        .await
        .unwrap();
    let filter = plugin.response_body_filter(&resp, &mut ctx);
    Run { resp, filter }
}

const JSON: (&str, &str) = ("content-type", "application/json");

type Headers<'a> = &'a [(&'a str, &'a str)];

#[tokio::test]
async fn each_algorithm_round_trips_in_chunks() {
    let body = json_body(300 * 1024);
    for (ae, expect) in [("gzip", "gzip"), ("br", "br"), ("zstd", "zstd")] {
        let mut run = run(
            "compression",
            json!({}),
            "GET",
            &[("accept-encoding", ae)],
            200,
            &[JSON],
        )
        .await;
        assert_eq!(run.resp.headers["content-encoding"], expect);
        assert_eq!(run.resp.headers["vary"], "Accept-Encoding");
        let filter = run.filter.as_mut().expect("filter");
        let mut out = Vec::new();
        let mut emitted_before_end = 0;
        for chunk in body.chunks(16 * 1024) {
            let o = filter.on_chunk(Bytes::copy_from_slice(chunk)).unwrap();
            emitted_before_end += o.len();
            out.extend_from_slice(&o);
        }
        out.extend_from_slice(&filter.on_end().unwrap().unwrap_or_default());
        assert_eq!(decode(expect, &out), body, "{expect}");
        assert!(out.len() < body.len() / 3, "{expect}: {} bytes", out.len());
        // Streaming: output flowed before the end, the body was not held whole.
        assert!(
            emitted_before_end > 0,
            "{expect} emitted nothing before the end"
        );
    }
}

#[tokio::test]
async fn q_values_pick_the_coding() {
    let run = run(
        "compression",
        json!({}),
        "GET",
        &[("accept-encoding", "zstd;q=0.5, br;q=0.7, gzip;q=0.9")],
        200,
        &[JSON],
    )
    .await;
    assert_eq!(run.resp.headers["content-encoding"], "gzip");
}

#[tokio::test]
async fn event_streams_are_flushed_every_chunk() {
    let mut run = run(
        "compression",
        json!({"algorithms": ["gzip"]}),
        "GET",
        &[("accept-encoding", "gzip")],
        200,
        &[("content-type", "text/event-stream")],
    )
    .await;
    let filter = run.filter.as_mut().unwrap();
    let first = filter
        .on_chunk(Bytes::from_static(b"data: one\n\n"))
        .unwrap();
    // A sync flush makes the first event decodable before the stream ends.
    let mut partial = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(&first[..]);
    let _ = decoder.read_to_end(&mut partial);
    assert_eq!(partial, b"data: one\n\n");
}

#[tokio::test]
async fn ineligible_responses_are_left_alone() {
    let cases: &[(&str, Headers, u16, Headers)] = &[
        ("no accept-encoding", &[], 200, &[JSON]),
        (
            "identity only",
            &[("accept-encoding", "identity")],
            200,
            &[JSON],
        ),
        (
            "already encoded",
            &[("accept-encoding", "gzip")],
            200,
            &[JSON, ("content-encoding", "br")],
        ),
        (
            "short",
            &[("accept-encoding", "gzip")],
            200,
            &[JSON, ("content-length", "100")],
        ),
        (
            "image",
            &[("accept-encoding", "gzip")],
            200,
            &[("content-type", "image/png")],
        ),
        ("no content-type", &[("accept-encoding", "gzip")], 200, &[]),
        (
            "no-transform",
            &[("accept-encoding", "gzip")],
            200,
            &[JSON, ("cache-control", "public, no-transform")],
        ),
        ("304", &[("accept-encoding", "gzip")], 304, &[JSON]),
        ("204", &[("accept-encoding", "gzip")], 204, &[JSON]),
        ("206", &[("accept-encoding", "gzip")], 206, &[JSON]),
    ];
    for (name, req_h, status, resp_h) in cases {
        let run = run("compression", json!({}), "GET", req_h, *status, resp_h).await;
        assert!(run.filter.is_none(), "{name}");
        if *name != "already encoded" {
            assert!(run.resp.headers.get("content-encoding").is_none(), "{name}");
        }
    }
    let head = run(
        "compression",
        json!({}),
        "HEAD",
        &[("accept-encoding", "gzip")],
        200,
        &[JSON],
    )
    .await;
    assert!(head.filter.is_none(), "HEAD");
}

#[tokio::test]
async fn vary_is_added_even_when_the_client_takes_identity() {
    let run = run(
        "compression",
        json!({}),
        "GET",
        &[],
        200,
        &[JSON, ("vary", "Origin")],
    )
    .await;
    let vary: Vec<_> = run.resp.headers.get_all("vary").iter().collect();
    assert_eq!(vary, ["Origin", "Accept-Encoding"]);
}

#[tokio::test]
async fn length_etag_and_ranges_follow_the_encoding() {
    let run = run(
        "compression",
        json!({"min_length": 10}),
        "GET",
        &[("accept-encoding", "br")],
        200,
        &[
            JSON,
            ("content-length", "5000"),
            ("etag", "\"abc\""),
            ("accept-ranges", "bytes"),
        ],
    )
    .await;
    assert!(run.resp.headers.get("content-length").is_none());
    assert!(run.resp.headers.get("accept-ranges").is_none());
    assert_eq!(run.resp.headers["etag"], "W/\"abc\"");
}

#[tokio::test]
async fn empty_types_compresses_everything_listed_types_by_prefix() {
    let all = run(
        "compression",
        json!({"types": []}),
        "GET",
        &[("accept-encoding", "gzip")],
        200,
        &[("content-type", "image/bmp")],
    )
    .await;
    assert!(all.filter.is_some());
    let listed = run(
        "compression",
        json!({"types": ["text/html"]}),
        "GET",
        &[("accept-encoding", "gzip")],
        200,
        &[("content-type", "Text/HTML; charset=utf-8")],
    )
    .await;
    assert!(listed.filter.is_some());
    let other = run(
        "compression",
        json!({"types": ["text/html"]}),
        "GET",
        &[("accept-encoding", "gzip")],
        200,
        &[("content-type", "text/plain")],
    )
    .await;
    assert!(other.filter.is_none());
}

#[tokio::test]
async fn gzip_kind_is_apinto_configuration() {
    let body = json_body(4096);
    let mut run = run(
        "gzip",
        json!({"types": ["json"], "min_length": 1000, "vary": true}),
        "GET",
        &[("accept-encoding", "br, zstd, gzip")],
        200,
        &[
            ("content-type", "application/problem+json"),
            ("content-length", "4096"),
        ],
    )
    .await;
    assert_eq!(run.resp.headers["content-encoding"], "gzip");
    assert_eq!(run.resp.headers["vary"], "Accept-Encoding");
    let filter = run.filter.as_mut().unwrap();
    let mut out = filter.on_chunk(Bytes::from(body.clone())).unwrap().to_vec();
    out.extend_from_slice(&filter.on_end().unwrap().unwrap());
    assert_eq!(decode("gzip", &out), body);

    let no_vary = super::tests::run("gzip", json!({}), "GET", &[], 200, &[JSON]).await;
    assert!(no_vary.resp.headers.get("vary").is_none());
}

#[test]
fn config_errors_are_reported() {
    for (kind, config, needle) in [
        ("compression", json!({"algorithms": []}), "algorithms"),
        (
            "compression",
            json!({"algorithms": ["deflate"]}),
            "algorithms[0]",
        ),
        ("compression", json!({"gzip_level": 10}), "gzip_level"),
        ("compression", json!({"br_level": 12}), "br_level"),
        ("compression", json!({"br_level": 10}), "br_level"),
        ("compression", json!({"zstd_level": 0}), "zstd_level"),
        ("compression", json!({"zstd_level": 20}), "zstd_level"),
        ("compression", json!({"types": [" "]}), "types[0]"),
        ("gzip", json!({"level": 5}), "unknown field"),
        ("gzip", json!({"min_length": -1}), "min_length"),
    ] {
        let err = validate(kind, config.clone()).unwrap_err();
        assert!(err.contains(needle), "{kind} {config}: {err}");
    }
    validate(
        "gzip",
        json!({"types": ["text"], "min_length": 20, "vary": true}),
    )
    .unwrap();
}
