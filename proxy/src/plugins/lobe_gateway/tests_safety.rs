//! What the gateway refuses by default, against real servers on loopback: loopback and other
//! restricted addresses (literal or resolved), client-supplied URLs outside the allow-list, CORS
//! for unlisted origins; and the byte bound of the document cache.

use std::sync::atomic::Ordering;

use super::tests::{call, manifest, plugin_server, SETTINGS};
use super::*;
use crate::plugins::harness::{body_of, build, ctx, request};

const NOW: &str = "{\"tz\":\"UTC\"}";

fn payload() -> Value {
    json!({"apiName": "now", "identifier": "clock", "arguments": NOW})
}

#[tokio::test]
async fn restricted_addresses_are_refused_before_connecting() {
    let server = plugin_server().await;
    let port = server.addr.port();
    // (index URL, allowed_networks): each refused with 403 naming the address kind.
    let cases = [
        (format!("http://127.0.0.1:{port}/index.json"), json!([])),
        (format!("http://localhost:{port}/index.json"), json!([])),
        (format!("http://[::1]:{port}/index.json"), json!([])),
        (
            format!("http://127.0.0.2:{port}/index.json"),
            json!(["127.0.0.1/32"]),
        ),
    ];
    for (index_url, allowed) in cases {
        let gw = build(
            "lobe_gateway",
            json!({"index_url": index_url, "allowed_networks": allowed, "fetch_timeout": "2s"}),
        )
        .unwrap();
        let (status, body) = call(gw.as_ref(), &[SETTINGS], payload()).await;
        assert_eq!(status, 403, "{index_url}: {body}");
        let message = body["body"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("loopback") && message.contains("allowed_networks"),
            "{index_url}: {message}"
        );
    }
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        0,
        "never connected"
    );
}

#[tokio::test]
async fn plugin_api_urls_are_checked_too() {
    let server = plugin_server().await;
    // The manifest (from an allowed client URL) names an API on 127.0.0.3: not allowed.
    let mut m = manifest(server.addr);
    m["api"][0]["url"] = json!(format!("http://127.0.0.3:{}/api/now", server.addr.port()));
    let gw = build(
        "lobe_gateway",
        json!({"allow_client_manifest": true,
               "allowed_client_urls": [format!("http://127.0.0.3:{}/", server.addr.port())],
               "allowed_networks": ["127.0.0.1/32"]}),
    )
    .unwrap();
    let mut p = payload();
    p["manifest"] = m;
    let (status, body) = call(gw.as_ref(), &[SETTINGS], p).await;
    assert_eq!(status, 403, "{body}");
    let message = body["body"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("127.0.0.3") && message.contains("loopback"),
        "{message}"
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn client_urls_need_the_allow_list() {
    let server = plugin_server().await;
    let other = plugin_server().await;
    let index = |s: &super::tests::PluginServer| format!("http://{}/index.json", s.addr);
    // Off (the default): the payload's indexUrl is ignored, the pinned index is used.
    let pinned = build(
        "lobe_gateway",
        json!({"index_url": index(&server), "allowed_networks": ["127.0.0.0/8"]}),
    )
    .unwrap();
    let mut p = payload();
    p["indexUrl"] = json!(index(&other));
    let (status, body) = call(pinned.as_ref(), &[SETTINGS], p.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(other.connections.load(Ordering::SeqCst), 0);
    // On, but the URL is not under the allow-list: 403, nothing fetched.
    let listed = build(
        "lobe_gateway",
        json!({"allow_client_index_url": true, "allow_client_manifest": true,
               "allowed_client_urls": [format!("http://{}/", server.addr)],
               "allowed_networks": ["127.0.0.0/8"]}),
    )
    .unwrap();
    let (status, body) = call(listed.as_ref(), &[SETTINGS], p).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["body"]["message"]
        .as_str()
        .unwrap()
        .contains("allowed_client_urls"));
    let mut p = payload();
    p["manifest"] = manifest(other.addr);
    let (status, _) = call(listed.as_ref(), &[SETTINGS], p).await;
    assert_eq!(status, 403, "a manifest whose api urls are not listed");
    assert_eq!(other.connections.load(Ordering::SeqCst), 0);
    // A manifest in the payload is refused outright by default.
    let mut p = payload();
    p["manifest"] = manifest(server.addr);
    let (status, _) = call(pinned.as_ref(), &[SETTINGS], p).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn no_cors_headers_unless_the_origin_is_listed() {
    let server = plugin_server().await;
    let config = |origins: Value| {
        json!({"index_url": format!("http://{}/index.json", server.addr),
               "allowed_networks": ["127.0.0.0/8"], "cors_origins": origins})
    };
    for (origins, origin, expected) in [
        (json!([]), "https://chat.example", None),
        (
            json!(["https://chat.example"]),
            "https://chat.example",
            Some("https://chat.example"),
        ),
        (
            json!(["https://chat.example"]),
            "https://evil.example",
            None,
        ),
        (json!(["*"]), "https://evil.example", Some("*")),
    ] {
        let gw = build("lobe_gateway", config(origins.clone())).unwrap();
        // The preflight and a real call answer alike.
        let mut req = request("OPTIONS", "/gateway", &[("origin", origin)]);
        let Flow::Respond(resp) = gw.on_request(&mut req, &mut ctx()).resolve().await.unwrap()
        else {
            panic!("preflight answered")
        };
        let got = resp.headers().get("access-control-allow-origin");
        assert_eq!(
            got.map(|v| v.to_str().unwrap()),
            expected,
            "{origins} {origin}"
        );
        let mut headers = HeaderMap::new();
        headers.insert("origin", HeaderValue::from_str(origin).unwrap());
        headers.insert(
            SETTINGS_HEADER,
            HeaderValue::from_static("{\"apiKey\":\"secret\"}"),
        );
        let parsed = serde_json::from_value(config(origins.clone())).unwrap();
        let resp = LobeGateway::from_config(parsed, "t/cors".into())
            .unwrap()
            .handle(&headers, &Bytes::from(payload().to_string()))
            .await;
        let got = resp.headers().get("access-control-allow-origin").cloned();
        let (parts, _) = body_of(resp).await;
        assert_eq!(parts.status, 200);
        assert_eq!(
            got.as_ref().map(|v| v.to_str().unwrap()),
            expected,
            "{origins} {origin}"
        );
    }
}

#[tokio::test]
async fn the_document_cache_is_bounded_in_bytes() {
    let server = plugin_server().await;
    let config = |max: u64| {
        json!({"index_url": format!("http://{}/index.json", server.addr),
               "allowed_networks": ["127.0.0.0/8"], "max_cache_bytes": max})
    };
    // Room for the manifest (a little more than its estimate), not for the index beside it:
    // each call fetches the index again.
    let manifest_url = format!("http://{}/manifest.json", server.addr);
    let room = cache::estimated_bytes(&manifest(server.addr)) + manifest_url.len() as u64 + 64;
    let small = build("lobe_gateway", config(room)).unwrap();
    for _ in 0..3 {
        let (status, body) = call(small.as_ref(), &[SETTINGS], payload()).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(server.index_hits.load(Ordering::SeqCst), 3);
    let roomy = build("lobe_gateway", config(1 << 20)).unwrap();
    for _ in 0..3 {
        call(roomy.as_ref(), &[SETTINGS], payload()).await;
    }
    assert_eq!(server.index_hits.load(Ordering::SeqCst), 4, "cached once");
}
