//! Unit tests of the `wasm` plugin against the hand-written filter in
//! `proxy/tests/wasm/test_filter.wat` (see its header for what each request header triggers).

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::metrics::failures;
use super::{Config, WasmPlugin};
use crate::plugin::{Flow, Plugin};
use crate::plugins::harness::{self, body_of, concat, drive};
use hookway_crds::catalogue::{PluginConfig, ResolvedSecrets};
use hookway_crds::snapshot::{ObjectKey, SecretEntry};

fn module() -> Vec<u8> {
    wat::parse_str(include_str!("../../../tests/wasm/test_filter.wat")).expect("valid WAT")
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn config(extra: serde_json::Value) -> Config {
    let mut value = json!({"secret": "filter", "key": "filter.wasm", "sha256": digest(&module())});
    if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value(value).expect("config")
}

fn plugin(alias: &str, extra: serde_json::Value) -> WasmPlugin {
    WasmPlugin::from_module(&module(), &config(extra), alias).expect("filter starts")
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[tokio::test]
async fn adds_headers_both_ways_with_its_configuration_and_properties() {
    let filter = plugin("wasm-headers", json!({"configuration": "hello"}));
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/a/b?c=d", &[("host", "example.test")]);
    let flow = harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    assert!(matches!(flow, Flow::Continue));
    assert_eq!(header(&req.headers, "x-trace"), ["wasm"]);
    assert_eq!(header(&req.headers, "x-wasm-config"), ["hello"]);
    assert_eq!(header(&req.headers, "x-wasm-path"), ["/a/b?c=d"]);
    // proxy_call_foreign_function is not implemented: the filter got Unimplemented (12).
    assert_eq!(header(&req.headers, "x-unimplemented"), ["yes"]);
    assert_eq!(req.uri, "/a/b?c=d");
    let mut resp = harness::response(200, &[("x-trace", "upstream")]);
    harness::on_response(&filter, &mut resp, &mut ctx)
        .await
        .unwrap();
    assert_eq!(header(&resp.headers, "x-trace"), ["upstream", "wasm"]);
    assert!(
        filter.request_body_limit(&req, &ctx).is_none(),
        "headers not paused: no whole-body buffering"
    );
}

#[tokio::test]
async fn paused_request_headers_get_the_whole_body_with_the_headers_open() {
    let filter = plugin("wasm-pause", json!({"max_body_bytes": 1000}));
    let mut ctx = harness::ctx();
    let mut req = harness::request("POST", "/", &[("x-pause", "1")]);
    harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    assert!(
        filter.request_body_filter(&req, &mut ctx).is_none(),
        "no streaming"
    );
    assert_eq!(filter.request_body_limit(&req, &ctx), Some(1000));
    let mut body = Bytes::from("hello");
    let flow = filter
        .on_request_body(&mut req, &mut body, &mut ctx)
        .resolve()
        .await
        .unwrap();
    assert!(matches!(flow, Flow::Continue));
    assert_eq!(header(&req.headers, "x-body-seen"), ["yes"]);
    assert_eq!(body, "rewritten");
}

#[tokio::test]
async fn a_streamed_request_body_passes_chunk_by_chunk() {
    let filter = plugin("wasm-request-stream", json!({}));
    let mut ctx = harness::ctx();
    let mut req = harness::request("POST", "/", &[]);
    harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    let mut body = filter
        .request_body_filter(&req, &mut ctx)
        .expect("a body filter");
    let out = drive(&mut *body, &[b"a", b"b"]).unwrap();
    assert_eq!(out, [Bytes::from("a"), Bytes::from("b"), Bytes::new()]);
}

#[tokio::test]
async fn a_json_configuration_is_passed_serialized() {
    let filter = plugin("wasm-json-config", json!({"configuration": {"a": 1}}));
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[]);
    harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    assert_eq!(header(&req.headers, "x-wasm-config"), [r#"{"a":1}"#]);
}

#[tokio::test]
async fn answers_early_with_send_local_response() {
    let filter = plugin("wasm-deny", json!({}));
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[("x-deny", "1")]);
    let flow = harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    let Flow::Respond(resp) = flow else {
        panic!("expected an early answer")
    };
    let (parts, body) = body_of(resp).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert_eq!(body, "denied by wasm\n");
}

/// Runs one request through `filter` with `headers`; returns the request hook's error.
async fn fails(filter: &WasmPlugin, headers: &[(&str, &str)]) -> Option<String> {
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", headers);
    let result = harness::on_request(filter, &mut req, &mut ctx).await;
    let error = result.err().map(|e| {
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        e.message
    });
    filter.on_complete(&ctx, &completion());
    error
}

fn completion() -> crate::plugin::Completion {
    crate::plugin::Completion {
        status: 200,
        bytes_sent: 0,
        bytes_received: 0,
        duration: Duration::ZERO,
        upstream_duration: None,
        error: None,
        client_aborted: false,
    }
}

#[tokio::test]
async fn a_trap_fails_only_its_request_and_the_instance_is_replaced() {
    let filter = plugin("wasm-trap", json!({}));
    let error = fails(&filter, &[("x-trap", "1")])
        .await
        .expect("the trap fails the request");
    assert!(
        error.contains("wasm filter wasm-trap failed in request headers: trap"),
        "{error}"
    );
    assert_eq!(
        filter.live_instances(),
        0,
        "the trapped instance is discarded"
    );
    assert_eq!(fails(&filter, &[]).await, None, "the next request succeeds");
    assert_eq!(
        filter.live_instances(),
        1,
        "a new instance, back in the pool"
    );
    assert_eq!(fails(&filter, &[]).await, None);
    assert_eq!(filter.live_instances(), 1, "the pooled instance is reused");
    assert_eq!(
        failures().with_label_values(&["wasm-trap", "trap"]).get(),
        1
    );
}

#[tokio::test]
async fn a_loop_is_stopped_by_the_deadline() {
    let filter = plugin("wasm-loop", json!({"deadline": 20}));
    let started = Instant::now();
    let error = fails(&filter, &[("x-loop", "1")])
        .await
        .expect("the loop fails");
    let took = started.elapsed();
    assert!(error.contains("deadline"), "{error}");
    assert!(took >= Duration::from_millis(20), "{took:?}");
    assert!(took < Duration::from_secs(5), "bounded: {took:?}");
    assert_eq!(
        failures()
            .with_label_values(&["wasm-loop", "deadline"])
            .get(),
        1
    );
    assert_eq!(fails(&filter, &[]).await, None);
}

#[tokio::test]
async fn memory_growth_past_the_cap_fails_the_request() {
    let filter = plugin("wasm-grow", json!({"max_memory": 4 << 20}));
    let error = fails(&filter, &[("x-grow", "1")])
        .await
        .expect("out of memory");
    assert!(error.contains("memory"), "{error}");
    assert_eq!(
        failures().with_label_values(&["wasm-grow", "memory"]).get(),
        1
    );
    assert_eq!(fails(&filter, &[]).await, None);
}

#[tokio::test]
async fn fail_open_lets_the_request_through_without_the_filter() {
    let filter = plugin("wasm-open", json!({"fail_open": true}));
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/x", &[("x-trap", "1"), ("keep", "me")]);
    let flow = harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    assert!(matches!(flow, Flow::Continue));
    assert_eq!(
        header(&req.headers, "keep"),
        ["me"],
        "the request is intact"
    );
    assert_eq!(req.uri, "/x");
    let mut resp = harness::response(200, &[]);
    harness::on_response(&filter, &mut resp, &mut ctx)
        .await
        .unwrap();
    assert!(
        resp.headers.get("x-trace").is_none(),
        "no more calls after the failure"
    );
    assert_eq!(
        failures().with_label_values(&["wasm-open", "trap"]).get(),
        1
    );
}

#[tokio::test]
async fn a_paused_response_body_is_buffered_then_replaced() {
    let filter = plugin("wasm-body", json!({}));
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[("x-replace-body", "1")]);
    harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    let mut resp = harness::response(200, &[]);
    harness::on_response(&filter, &mut resp, &mut ctx)
        .await
        .unwrap();
    let mut body = filter
        .response_body_filter(&resp, &mut ctx)
        .expect("a body filter");
    let out = drive(&mut *body, &[b"upstream ", b"body"]).unwrap();
    assert_eq!(out[0], Bytes::new(), "held while paused");
    assert_eq!(out[1], Bytes::new());
    assert_eq!(concat(&out), b"replaced by wasm\n");
}

#[tokio::test]
async fn a_body_the_filter_does_not_pause_streams_through() {
    let filter = plugin("wasm-stream", json!({}));
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[]);
    harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    let mut resp = harness::response(200, &[]);
    harness::on_response(&filter, &mut resp, &mut ctx)
        .await
        .unwrap();
    let mut body = filter
        .response_body_filter(&resp, &mut ctx)
        .expect("a body filter");
    let out = drive(&mut *body, &[b"one", b"two"]).unwrap();
    assert_eq!(out, [Bytes::from("one"), Bytes::from("two"), Bytes::new()]);
}

#[tokio::test]
async fn the_instance_limit_answers_503() {
    let filter = plugin("wasm-busy", json!({"max_instances": 1}));
    let mut first = harness::ctx();
    let mut req = harness::request("GET", "/", &[]);
    harness::on_request(&filter, &mut req, &mut first)
        .await
        .unwrap();
    let mut second = harness::ctx();
    let error = harness::on_request(&filter, &mut req, &mut second)
        .await
        .err()
        .expect("no instance left");
    assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
    filter.on_complete(&first, &completion());
    assert!(harness::on_request(&filter, &mut req, &mut second)
        .await
        .is_ok());
}

/// A module with head callbacks only (`set_headers.wat`): the chain asks it for the heads
/// only, and with nothing to be told at the end its instance serves the next request as soon
/// as a request lets go of it, finished or abandoned.
#[tokio::test]
async fn a_heads_only_filter_takes_only_the_head_phases_and_reuses_its_instance() {
    let bytes = wat::parse_str(include_str!("../../../tests/wasm/set_headers.wat")).unwrap();
    let config = config(json!({"sha256": digest(&bytes)}));
    let filter = WasmPlugin::from_module(&bytes, &config, "wasm-heads").unwrap();
    assert_eq!(filter.phases(), crate::plugin::Phases::HEADS);
    for _ in 0..3 {
        let mut ctx = harness::ctx();
        let mut req = harness::request("GET", "/", &[]);
        let mut resp = harness::response(200, &[]);
        harness::on_request(&filter, &mut req, &mut ctx)
            .await
            .unwrap();
        harness::on_response(&filter, &mut resp, &mut ctx)
            .await
            .unwrap();
        assert_eq!(header(&req.headers, "x-wasm-request"), ["1"]);
        assert_eq!(header(&resp.headers, "x-wasm-response"), ["1"]);
    }
    assert_eq!(filter.live_instances(), 1, "one instance, reused");
    // Abandoned after its request head (the client went away): the instance is not lost.
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[]);
    harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    drop(ctx);
    let mut ctx = harness::ctx();
    harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    assert_eq!(
        filter.live_instances(),
        1,
        "the abandoned request's instance, reused"
    );
}

fn secret(value: &str) -> ResolvedSecrets {
    let mut data = std::collections::BTreeMap::new();
    data.insert("filter.wasm".to_string(), value.to_string());
    let entry = SecretEntry {
        key: ObjectKey::new("apps", "filter"),
        data,
    };
    [("filter".to_string(), entry)].into_iter().collect()
}

#[test]
fn the_compiler_checks_the_secret_module_digest() {
    let encoded = base64::engine::general_purpose::STANDARD.encode(module());
    assert_eq!(config(json!({})).check_secrets(&secret(&encoded)), Ok(()));
    let pinned_other = config(json!({"sha256": digest(b"something else")}));
    let error = pinned_other.check_secrets(&secret(&encoded)).unwrap_err();
    assert!(error.contains("sha256 mismatch"), "{error}");
    let not_wasm = base64::engine::general_purpose::STANDARD.encode(b"hello");
    let error = config(json!({"sha256": digest(b"hello")}))
        .check_secrets(&secret(&not_wasm))
        .unwrap_err();
    assert!(error.contains("not a valid WebAssembly module"), "{error}");
    let error = config(json!({})).check_secrets(&secret("%%%")).unwrap_err();
    assert!(error.contains("not a base64-encoded module"), "{error}");
    // The data catalogue (what the controller uses) names the Secret and checks the digest
    // without the plugin's code.
    let schema = hookway_crds::catalogue::schema_of::<super::config::Config>();
    let mut data = hookway_crds::Catalogue::new();
    data.insert_schema("wasm", schema).unwrap();
    let raw = json!({"secret": "filter", "key": "filter.wasm", "sha256": digest(&module())});
    assert_eq!(data.validate("wasm", &raw).unwrap().secret_refs, ["filter"]);
    assert_eq!(data.check_secrets("wasm", &raw, &secret(&encoded)), Ok(()));
    let mut other = raw.clone();
    other["sha256"] = json!(digest(b"something else"));
    let error = data
        .check_secrets("wasm", &other, &secret(&encoded))
        .unwrap_err();
    assert!(error.contains("sha256 mismatch"), "{error}");
}

#[test]
fn clusters_tell_the_compiler_what_the_filter_reaches() {
    let registry = crate::plugins::builtin();
    let catalogue = registry.catalogue();
    let base = json!({"secret": "filter", "key": "filter.wasm", "sha256": digest(&module())});
    let with = |clusters: serde_json::Value| {
        let mut config = base.clone();
        config["clusters"] = clusters;
        config
    };
    let plain = catalogue.validate("wasm", &base).unwrap();
    assert!(plain.service_refs.is_empty() && !plain.reaches_network);
    let service = catalogue
        .validate(
            "wasm",
            &with(json!({"auth": {"service": "apps/auth", "timeout": 500}})),
        )
        .unwrap();
    assert_eq!(
        service.service_refs,
        ["apps/auth"],
        "resolved like any Service reference"
    );
    assert!(!service.reaches_network);
    let url = catalogue
        .validate(
            "wasm",
            &with(json!({"ext": {"address": "https://auth.example"}})),
        )
        .unwrap();
    assert!(
        url.reaches_network,
        "a URL needs a PlatformPolicy outside the root namespace"
    );
}

#[test]
fn invalid_configs_are_refused() {
    let sha = digest(b"x");
    for (config, expected) in [
        (
            json!({"sha256": sha}),
            "set exactly one of file, secret, config_map, url",
        ),
        (json!({"secret": "s", "sha256": sha}), "need key"),
        (json!({"config_map": "c", "sha256": sha}), "need key"),
        (
            json!({"url": "https://x/f.wasm", "key": "k", "sha256": sha}),
            "key goes with",
        ),
        (
            json!({"url": "file:///etc/passwd", "sha256": sha}),
            "url: an http:// or https://",
        ),
        (
            json!({"file": "/f.wasm", "secret": "s", "key": "k", "sha256": sha}),
            "set exactly one",
        ),
        (
            json!({"config_map": "c", "url": "https://x/f.wasm", "key": "k", "sha256": sha}),
            "set exactly one",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": "ABC"}),
            "sha256",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": sha, "deadline": 0}),
            "deadline",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": sha, "max_memory": 10}),
            "max_memory",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": sha, "max_instances": 0}),
            "max_instances",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": sha, "bogus": 1}),
            "unknown field",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": sha, "clusters": {"a": {}}}),
            "clusters.a: set service",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": sha, "clusters": {"a": {"address": "ftp://x"}}}),
            "clusters.a: address",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": sha, "http_call_timeout": 0}),
            "http_call_timeout",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": sha, "max_queue_length": 0}),
            "max_queue_length",
        ),
        // A declared configuration schema: the filter's contract, checked before it runs.
        (
            json!({"secret": "s", "key": "k", "sha256": sha,
                   "configuration": {"greeting": 7},
                   "configuration_schema": {"properties": {"greeting": {"type": "string"}}}}),
            "configuration.greeting: 7 is not of type \"string\" (per configuration_schema)",
        ),
        (
            json!({"secret": "s", "key": "k", "sha256": sha,
                   "configuration": "hello", "configuration_schema": {"minLength": "x"}}),
            "configuration_schema: invalid schema",
        ),
    ] {
        let error = harness::validate("wasm", config.clone()).unwrap_err();
        assert!(error.contains(expected), "{config}: {error}");
    }
}

#[test]
fn a_config_map_or_url_module_is_read_from_the_snapshot_blobs() {
    let bytes = module();
    let mut snapshot = hookway_crds::Snapshot::default();
    for source in [
        json!({"config_map": "mods", "key": "filter.wasm", "sha256": digest(&bytes)}),
        json!({"url": "https://modules.example.com/filter.wasm", "sha256": digest(&bytes)}),
    ] {
        let config: Config = serde_json::from_value(source.clone()).unwrap();
        assert_eq!(
            crate::plugins::harness::validate("wasm", source.clone()),
            Ok(())
        );
        snapshot.blobs = vec![];
        let error = config.module_from_snapshot(&snapshot).unwrap_err();
        assert!(error.contains("not in the snapshot"), "{source}: {error}");
        snapshot.blobs = vec![std::sync::Arc::new(hookway_crds::snapshot::BlobEntry::new(
            &bytes,
        ))];
        assert_eq!(config.module_from_snapshot(&snapshot), Ok(bytes.clone()));
        // Bytes edited on the way are refused.
        std::sync::Arc::make_mut(&mut snapshot.blobs[0]).data =
            base64::engine::general_purpose::STANDARD.encode(b"other");
        let error = config.module_from_snapshot(&snapshot).unwrap_err();
        assert!(error.contains("digest"), "{source}: {error}");
    }
}

#[test]
fn a_module_that_is_not_a_proxy_wasm_filter_is_refused() {
    let bytes = wat::parse_str("(module (memory (export \"memory\") 1))").unwrap();
    let config = config(json!({"sha256": digest(&bytes)}));
    let error = WasmPlugin::from_module(&bytes, &config, "plain")
        .err()
        .unwrap();
    assert!(error.contains("proxy_abi_version"), "{error}");
}

/// Per-request cost of the hooks of a filter that sets one request and one response header
/// (`proxy/tests/wasm/set_headers.wat`), beside the built-in `headers` doing the same and no
/// plugin. Ignored: a measurement, not a check. `HOOKWAY_WASM_BENCH=wasm|headers|none` runs one
/// kind only (for `valgrind --tool=callgrind` or `perf stat`: subtract `none`).
#[tokio::test]
#[ignore = "measurement, not a check"]
async fn header_filter_cost() {
    let n: u32 = std::env::var("HOOKWAY_WASM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let only = std::env::var("HOOKWAY_WASM_BENCH").ok();
    let bytes = wat::parse_str(include_str!("../../../tests/wasm/set_headers.wat")).unwrap();
    let wasm: std::sync::Arc<dyn Plugin> = std::sync::Arc::new(
        WasmPlugin::from_module(&bytes, &config(json!({"sha256": digest(&bytes)})), "bench")
            .unwrap(),
    );
    let headers = harness::build(
        "headers",
        json!({"request": {"set": {"x-wasm-request": "1"}}, "response": {"set": {"x-wasm-response": "1"}}}),
    )
    .unwrap();
    for (name, plugin) in [
        ("none", None),
        ("headers", Some(headers)),
        ("wasm", Some(wasm)),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let started = Instant::now();
        for _ in 0..n {
            let mut ctx = harness::ctx();
            let mut req = harness::request("GET", "/bench", &[("host", "bench.test")]);
            let mut resp = harness::response(200, &[("content-type", "text/plain")]);
            if let Some(plugin) = &plugin {
                harness::on_request(&**plugin, &mut req, &mut ctx)
                    .await
                    .unwrap();
                harness::on_response(&**plugin, &mut resp, &mut ctx)
                    .await
                    .unwrap();
                plugin.on_complete(&ctx, &completion());
                assert_eq!(resp.headers["x-wasm-response"], "1");
            }
            std::hint::black_box((&req, &resp));
        }
        let per = started.elapsed() / n;
        println!("{name}: {per:?} per request ({n} requests)");
    }
}

/// `bench/wasm/set_headers.wasm` (the `hookway-wasm` target of `bench/proxy.sh`) is
/// `proxy/tests/wasm/set_headers.wat` compiled; `HOOKWAY_WRITE_WASM=1` rewrites it.
#[test]
fn the_bench_module_is_the_compiled_wat() {
    let bytes = wat::parse_str(include_str!("../../../tests/wasm/set_headers.wat")).unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bench/wasm/set_headers.wasm"
    );
    if std::env::var_os("HOOKWAY_WRITE_WASM").is_some() {
        std::fs::write(path, &bytes).unwrap();
    }
    let committed = std::fs::read(path).unwrap_or_default();
    assert!(
        committed == bytes,
        "{path} is stale: run with HOOKWAY_WRITE_WASM=1"
    );
}

/// How a test call server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 with `x-user: alice` to `GET /check` for `auth.test`, 400 otherwise.
    Allow,
    /// 403 with the body "no entry".
    Deny,
    /// Never.
    Hang,
    /// 200 with a 4 KiB body.
    Big,
}

/// A local HTTP/1.1 server answering every request as `answer` says.
async fn call_server(answer: Answer) -> std::net::SocketAddr {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let ok = req.method() == http::Method::GET
                            && req.uri().path() == "/check"
                            && req.headers()["host"] == "auth.test";
                        let resp = match answer {
                            Answer::Allow if ok => http::Response::builder()
                                .status(200)
                                .header("x-user", "alice")
                                .body(Full::new(Bytes::new())),
                            Answer::Allow => http::Response::builder()
                                .status(400)
                                .body(Full::new(Bytes::from("unexpected call"))),
                            Answer::Deny => http::Response::builder()
                                .status(403)
                                .body(Full::new(Bytes::from("no entry"))),
                            Answer::Hang => std::future::pending().await,
                            Answer::Big => http::Response::builder()
                                .status(200)
                                .body(Full::new(Bytes::from(vec![b'x'; 4096]))),
                        };
                        Ok::<_, std::convert::Infallible>(resp.unwrap())
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn call_module() -> Vec<u8> {
    wat::parse_str(include_str!("../../../tests/wasm/http_call.wat")).expect("valid WAT")
}

/// The `http_call.wat` filter with `auth` (and `slow`, when given) as clusters.
fn call_plugin(alias: &str, clusters: serde_json::Value, extra: serde_json::Value) -> WasmPlugin {
    let bytes = call_module();
    let mut value = json!({"file": "/unused.wasm", "sha256": digest(&bytes), "clusters": clusters});
    if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    let config: Config = serde_json::from_value(value).expect("config");
    WasmPlugin::from_module(&bytes, &config, alias).expect("filter starts")
}

fn calls(alias: &str, result: &str) -> u64 {
    super::metrics::http_calls()
        .with_label_values(&[alias, result])
        .get()
}

#[tokio::test]
async fn a_paused_request_resumes_with_a_header_from_the_call() {
    let allow = call_server(Answer::Allow).await;
    let alias = "wasm-call-allow";
    let filter = call_plugin(
        alias,
        json!({"auth": {"address": format!("http://{allow}")}}),
        json!({}),
    );
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/p", &[("x-call", "auth")]);
    let flow = harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    assert!(matches!(flow, Flow::Continue));
    assert_eq!(header(&req.headers, "x-user"), ["alice"]);
    assert_eq!(
        header(&req.headers, "x-call-pairs"),
        ["yes"],
        "proxy_get_header_map_pairs(HttpCallResponseHeaders) agrees with the callback's count"
    );
    assert!(
        filter.request_body_limit(&req, &ctx).is_none(),
        "resumed: the headers are not held for the body"
    );
    filter.on_complete(&ctx, &completion());
    assert_eq!(
        filter.live_instances(),
        1,
        "the same instance, back in the pool"
    );
    assert_eq!(calls(alias, "response"), 1);
}

#[tokio::test]
async fn a_call_answer_can_deny_the_request() {
    let deny = call_server(Answer::Deny).await;
    let filter = call_plugin(
        "wasm-call-deny",
        json!({"auth": {"address": format!("http://{deny}")}}),
        json!({}),
    );
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[("x-call", "auth")]);
    let flow = harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    let Flow::Respond(resp) = flow else {
        panic!("expected the filter's answer")
    };
    let (parts, body) = body_of(resp).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert_eq!(body, "no entry", "the call's answer body");
}

#[tokio::test]
async fn a_call_from_the_whole_body_callback_changes_the_held_headers() {
    let allow = call_server(Answer::Allow).await;
    let filter = call_plugin(
        "wasm-call-body",
        json!({"auth": {"address": format!("http://{allow}")}}),
        json!({}),
    );
    let mut ctx = harness::ctx();
    let mut req = harness::request("POST", "/", &[("x-call-after-body", "auth")]);
    let flow = harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    assert!(matches!(flow, Flow::Continue));
    assert!(
        filter.request_body_limit(&req, &ctx).is_some(),
        "headers held for the body"
    );
    let mut body = Bytes::from("payload");
    let flow = filter
        .on_request_body(&mut req, &mut body, &mut ctx)
        .resolve()
        .await
        .unwrap();
    assert!(matches!(flow, Flow::Continue));
    assert_eq!(header(&req.headers, "x-user"), ["alice"]);
    assert_eq!(body, "payload");
    filter.on_complete(&ctx, &completion());
    assert_eq!(filter.live_instances(), 1);
}

#[tokio::test]
async fn a_call_from_the_response_head_changes_or_replaces_the_response() {
    let allow = call_server(Answer::Allow).await;
    let deny = call_server(Answer::Deny).await;
    let filter = call_plugin(
        "wasm-call-response",
        json!({
            "allow": {"address": format!("http://{allow}")},
            "deny": {"address": format!("http://{deny}")},
        }),
        json!({}),
    );
    for (upstream, status, user) in [("allow", 200, Some("alice")), ("deny", 403, None)] {
        let mut ctx = harness::ctx();
        let mut req = harness::request("GET", "/", &[]);
        harness::on_request(&filter, &mut req, &mut ctx)
            .await
            .unwrap();
        let mut resp = harness::response(200, &[("x-call", upstream)]);
        harness::on_response(&filter, &mut resp, &mut ctx)
            .await
            .unwrap();
        assert_eq!(resp.status.as_u16(), status, "{upstream}");
        assert_eq!(
            header(&resp.headers, "x-user").first().copied(),
            user,
            "{upstream}"
        );
        if upstream == "deny" {
            let mut body = filter
                .response_body_filter(&resp, &mut ctx)
                .expect("the answer's body replaces the upstream's");
            let out = drive(&mut *body, &[b"upstream body"]).unwrap();
            assert_eq!(concat(&out), b"no entry");
        }
        filter.on_complete(&ctx, &completion());
    }
}

/// A heads-only filter (no body, completion or local-response export or import) that calls
/// `auth` from its response head and copies `x-user` from the answer onto the response.
const HEADS_ONLY_CALL: &str = r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 0) "auth")
  (data (i32.const 32) "x-user")
  (data (i32.const 128) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\09\00\00\00\3a\6d\65\74\68\6f\64\00\47\45\54\00\3a\70\61\74\68\00\2f\63\68\65\63\6b\00\3a\61\75\74\68\6f\72\69\74\79\00\61\75\74\68\2e\74\65\73\74\00")
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $heap (i32.const 4096)))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $http_call (i32.const 0) (i32.const 4) (i32.const 128) (i32.const 74)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 1032)))
    (i32.const 1))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (if (i32.eqz (call $get (i32.const 6) (i32.const 32) (i32.const 6) (i32.const 1024) (i32.const 1028)))
      (then
        (drop (call $add (i32.const 2) (i32.const 32) (i32.const 6)
          (i32.load (i32.const 1024)) (i32.load (i32.const 1028))))))))"#;

#[tokio::test]
async fn a_heads_only_filter_that_calls_out_keeps_its_session_across_the_wait() {
    let allow = call_server(Answer::Allow).await;
    let bytes = wat::parse_str(HEADS_ONLY_CALL).expect("valid WAT");
    let config: Config = serde_json::from_value(json!({
        "file": "/unused.wasm",
        "sha256": digest(&bytes),
        "clusters": {"auth": {"address": format!("http://{allow}")}},
    }))
    .expect("config");
    let filter = WasmPlugin::from_module(&bytes, &config, "wasm-call-heads").unwrap();
    assert_eq!(filter.phases(), crate::plugin::Phases::HEADS);
    assert!(
        !filter.pool.capabilities().session_in_place(),
        "a hook may wait for a call: the session must be one the wait can take"
    );
    for _ in 0..2 {
        let mut ctx = harness::ctx();
        let mut req = harness::request("GET", "/", &[]);
        harness::on_request(&filter, &mut req, &mut ctx)
            .await
            .unwrap();
        let mut resp = harness::response(200, &[]);
        harness::on_response(&filter, &mut resp, &mut ctx)
            .await
            .unwrap();
        assert_eq!(
            header(&resp.headers, "x-user"),
            ["alice"],
            "the call's answer"
        );
    }
    assert_eq!(filter.live_instances(), 1, "one instance, reused");
}

#[tokio::test]
async fn a_timed_out_call_answers_with_no_headers_without_blocking_the_thread() {
    let hang = call_server(Answer::Hang).await;
    let alias = "wasm-call-timeout";
    let filter = call_plugin(
        alias,
        json!({"auth": {"address": format!("http://{hang}"), "timeout": 200}}),
        json!({}),
    );
    let started = Instant::now();
    let waiting = async {
        let mut ctx = harness::ctx();
        let mut req = harness::request("GET", "/", &[("x-call", "auth")]);
        let flow = harness::on_request(&filter, &mut req, &mut ctx).await;
        filter.on_complete(&ctx, &completion());
        (flow, started.elapsed())
    };
    // The test runtime has one thread: another request through the same plugin completes
    // while the first waits for its call.
    let other = async {
        let mut ctx = harness::ctx();
        let mut req = harness::request("GET", "/", &[]);
        let flow = harness::on_request(&filter, &mut req, &mut ctx).await;
        filter.on_complete(&ctx, &completion());
        (flow, started.elapsed())
    };
    let ((waited, took), (passed, other_took)) = tokio::join!(waiting, other);
    assert!(matches!(passed, Ok(Flow::Continue)));
    let Ok(Flow::Respond(resp)) = waited else {
        panic!("expected the filter's answer to a failed call")
    };
    let (parts, body) = body_of(resp).await;
    assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "call failed\n", "the callback saw 0 headers");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(other_took < took, "{other_took:?} vs {took:?}");
    assert_eq!(calls(alias, "timeout"), 1);
}

#[tokio::test]
async fn an_answer_over_the_body_cap_is_a_failed_call() {
    let big = call_server(Answer::Big).await;
    let alias = "wasm-call-big";
    let filter = call_plugin(
        alias,
        json!({"auth": {"address": format!("http://{big}")}}),
        json!({"http_call_max_response_bytes": 1024}),
    );
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[("x-call", "auth")]);
    let Ok(Flow::Respond(resp)) = harness::on_request(&filter, &mut req, &mut ctx).await else {
        panic!("expected the filter's answer")
    };
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "0 headers");
    assert_eq!(calls(alias, "too_large"), 1);
}

#[tokio::test]
async fn an_unknown_upstream_is_a_bad_argument_and_the_filter_falls_back() {
    let alias = "wasm-call-unknown";
    let filter = call_plugin(alias, json!({}), json!({}));
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[("x-call", "nowhere")]);
    let flow = harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    assert!(matches!(flow, Flow::Continue));
    assert_eq!(header(&req.headers, "x-call-status"), ["2"], "BadArgument");
    assert_eq!(calls(alias, "refused"), 1);
}

#[tokio::test]
async fn a_refused_connection_answers_with_no_headers() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let alias = "wasm-call-refused";
    let filter = call_plugin(
        alias,
        json!({"auth": {"address": format!("http://{closed}")}}),
        json!({}),
    );
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[("x-call", "auth")]);
    let Ok(Flow::Respond(resp)) = harness::on_request(&filter, &mut req, &mut ctx).await else {
        panic!("expected the filter's answer")
    };
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls(alias, "failure"), 1);
}

fn root_module() -> Vec<u8> {
    wat::parse_str(include_str!("../../../tests/wasm/root_context.wat")).expect("valid WAT")
}

fn root_plugin(alias: &str, configuration: &str) -> WasmPlugin {
    root_plugin_with(alias, configuration, json!({}))
}

fn root_plugin_with(alias: &str, configuration: &str, clusters: serde_json::Value) -> WasmPlugin {
    let bytes = root_module();
    let config: Config = serde_json::from_value(json!({
        "file": "/unused.wasm", "sha256": digest(&bytes), "configuration": configuration,
        "max_queue_length": 4, "clusters": clusters,
    }))
    .unwrap();
    // Its own namespace: queue names are per namespace, and tests run side by side.
    WasmPlugin::from_module_in(&bytes, &config, alias, alias).expect("filter starts")
}

fn defined_counter(alias: &str, name: &str) -> u64 {
    super::metrics::counters()
        .with_label_values(&[alias, name])
        .get()
}

/// Waits (bounded) until `done` holds, checking whenever the runtime has run a little.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn ticks_reach_the_root_context_and_stop_with_the_plugin() {
    let alias = "wasm-ticks";
    let filter = root_plugin(alias, "");
    let started = Instant::now();
    until("three ticks", || defined_counter(alias, "ticks") >= 3).await;
    assert!(
        started.elapsed() >= Duration::from_millis(20),
        "5 ms is raised to the 10 ms minimum: {:?}",
        started.elapsed()
    );
    assert_eq!(
        super::metrics::ticks().with_label_values(&[alias]).get(),
        defined_counter(alias, "ticks")
    );
    let shared = std::sync::Arc::downgrade(filter.shared());
    drop(filter);
    // The root task held the last references: it has ended, so no tick can follow.
    until("the root task to end", || shared.upgrade().is_none()).await;
}

#[tokio::test]
async fn a_trap_in_on_tick_is_counted_and_the_root_instance_replaced() {
    let alias = "wasm-tick-trap";
    let filter = root_plugin(alias, "t");
    let trapped = || failures().with_label_values(&[alias, "trap"]).get();
    // Every root instance traps on its second tick: two traps mean a replacement ticked.
    until("two traps", || trapped() >= 2).await;
    assert!(defined_counter(alias, "ticks") >= 4);
    drop(filter);
}

#[tokio::test]
async fn an_enqueued_message_reaches_on_queue_ready_in_the_root_context() {
    let alias = "wasm-queue";
    let filter = root_plugin(alias, "");
    let mut ctx = harness::ctx();
    let mut req = harness::request("GET", "/", &[("x-job", "42")]);
    harness::on_request(&filter, &mut req, &mut ctx)
        .await
        .unwrap();
    assert_eq!(header(&req.headers, "x-enqueued"), ["0"], "Ok");
    filter.on_complete(&ctx, &completion());
    until("the message to be dequeued", || {
        defined_counter(alias, "dequeued") >= 1
    })
    .await;
    let (value, _) = super::shared_data::get(b"wasm-root-test-last").unwrap();
    assert_eq!(value, b"job:42");
}

#[tokio::test]
async fn the_root_context_may_call_out_from_a_tick() {
    let allow = call_server(Answer::Allow).await;
    let alias = "wasm-tick-call";
    let filter = root_plugin_with(
        alias,
        "c",
        json!({"auth": {"address": format!("http://{allow}")}}),
    );
    let answer = || super::shared_data::get(b"wasm-root-test-call").map(|(v, _)| v);
    until("the answer in the root context", || answer().is_some()).await;
    assert_eq!(
        answer().unwrap(),
        b"alice",
        "the callback read the answer's x-user"
    );
    assert_eq!(calls(alias, "response"), 1);
    drop(filter);
}
