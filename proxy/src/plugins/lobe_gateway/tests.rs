//! The gateway against a real plugin server on 127.0.0.1:0 that serves a market index, a
//! manifest and the plugin API. Every gateway here allows loopback explicitly
//! (`allowed_networks`); `tests_safety` covers what is refused by default.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::plugins::harness::{body_of, build, ctx, on_request, request, validate};

/// An address where nothing listens (a port just released by the OS).
pub(super) fn closed_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub(super) struct PluginServer {
    pub(super) addr: SocketAddr,
    pub(super) index_hits: Arc<AtomicUsize>,
    /// Connections accepted (any path).
    pub(super) connections: Arc<AtomicUsize>,
}

pub(super) fn manifest(addr: SocketAddr) -> Value {
    json!({
        "identifier": "clock",
        "meta": {"title": "Clock", "avatar": "⏰"},
        "settings": {"type": "object", "required": ["apiKey"],
                     "properties": {"apiKey": {"type": "string", "minLength": 3}, "region": {"type": "string", "default": "eu"}}},
        "api": [
            {"name": "now", "description": "current time", "url": format!("http://{addr}/api/now"),
             "parameters": {"type": "object", "required": ["tz"], "properties": {"tz": {"type": "string"}}}},
            {"name": "limited", "description": "always 429", "url": format!("http://{addr}/api/limited"),
             "parameters": {"type": "object", "properties": {}}},
            {"name": "dead", "description": "nobody listens", "url": format!("http://{}/api", closed_addr()),
             "parameters": {"type": "object", "properties": {}}}
        ]
    })
}

pub(super) async fn plugin_server() -> PluginServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let index_hits = Arc::new(AtomicUsize::new(0));
    let hits = Arc::clone(&index_hits);
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let hits = Arc::clone(&hits);
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<Incoming>| {
                    let hits = Arc::clone(&hits);
                    async move {
                        let path = req.uri().path().to_string();
                        let settings = req
                            .headers()
                            .get(SETTINGS_HEADER)
                            .map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let (status, body) = match path.as_str() {
                            "/index.json" => {
                                hits.fetch_add(1, Ordering::SeqCst);
                                (200, json!({"schemaVersion": 1, "plugins": [
                                    {"identifier": "clock", "manifest": format!("http://{addr}/manifest.json")},
                                    {"identifier": "broken", "manifest": format!("http://{addr}/not-json")},
                                    {"identifier": "gone", "manifest": format!("http://{addr}/missing.json")}]}).to_string())
                            }
                            "/manifest.json" => (200, manifest(addr).to_string()),
                            "/not-json" => (200, "<html>".to_string()),
                            "/api/now" => (200, json!({
                                "args": serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
                                "settings": settings.map(|s: String| serde_json::from_str::<Value>(&s).unwrap()),
                            }).to_string()),
                            "/api/limited" => (429, json!({"error": "slow down"}).to_string()),
                            _ => (404, "not found".to_string()),
                        };
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    PluginServer {
        addr,
        index_hits,
        connections,
    }
}

pub(super) async fn call(
    plugin: &dyn Plugin,
    headers: &[(&str, &str)],
    payload: Value,
) -> (u16, Value) {
    let mut req = request("POST", "/gateway", headers);
    let mut ctx = ctx();
    assert!(matches!(
        on_request(plugin, &mut req, &mut ctx).await.unwrap(),
        Flow::Continue
    ));
    assert_eq!(plugin.request_body_limit(&req, &ctx), Some(1024 * 1024));
    let mut body = Bytes::from(payload.to_string());
    let fut = plugin
        .on_request_body(&mut req, &mut body, &mut ctx)
        .resolve();
    let flow = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("timed out")
        .unwrap();
    let Flow::Respond(resp) = flow else {
        panic!("the gateway always answers")
    };
    let (parts, body) = body_of(resp).await;
    (
        parts.status.as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn gateway(server: &PluginServer) -> Arc<dyn Plugin> {
    build(
        "lobe_gateway",
        json!({"index_url": format!("http://{}/index.json", server.addr), "fetch_timeout": "2s", "api_timeout": "2s",
               "allowed_networks": ["127.0.0.0/8"], "allow_client_manifest": true,
               "allowed_client_urls": [format!("http://{}/", server.addr)]}),
    )
    .unwrap()
}

/// plugin, request headers, payload, expected status, expected errorType.
type Case<'a> = (&'a dyn Plugin, Vec<(&'a str, &'a str)>, Value, u16, Value);

pub(super) const SETTINGS: (&str, &str) = ("x-lobe-plugin-settings", "{\"apiKey\":\"secret\"}");

#[tokio::test]
async fn call_through_market_index_with_settings_and_cache() {
    let server = plugin_server().await;
    let gw = gateway(&server);
    let payload = json!({"apiName": "now", "identifier": "clock", "arguments": "{\"tz\":\"UTC\"}"});
    let (status, body) = call(gw.as_ref(), &[SETTINGS], payload.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["args"], json!({"tz": "UTC"}));
    assert_eq!(
        body["settings"],
        json!({"apiKey": "secret", "region": "eu"}),
        "defaults merged, forwarded"
    );
    let (status, _) = call(gw.as_ref(), &[SETTINGS], payload).await;
    assert_eq!(status, 200);
    assert_eq!(
        server.index_hits.load(Ordering::SeqCst),
        1,
        "index served from the cache"
    );
}

#[tokio::test]
async fn manifest_in_the_body_and_client_index_url() {
    let server = plugin_server().await;
    let gw = build(
        "lobe_gateway",
        json!({"allow_client_index_url": true, "allow_client_manifest": true,
               "allowed_client_urls": [format!("http://{}/", server.addr)], "allowed_networks": ["127.0.0.1"]}),
    )
    .unwrap();
    let (status, body) = call(gw.as_ref(), &[SETTINGS], json!({"apiName": "now", "identifier": "clock", "arguments": "{\"tz\":\"CET\"}", "manifest": manifest(server.addr)})).await;
    assert_eq!((status, &body["args"]), (200, &json!({"tz": "CET"})));
    let (status, _) = call(gw.as_ref(), &[SETTINGS], json!({"apiName": "now", "identifier": "clock", "arguments": "{\"tz\":\"CET\"}", "indexUrl": format!("http://{}/index.json", server.addr)})).await;
    assert_eq!(status, 200);
    let pinned = build("lobe_gateway", json!({"index_url": format!("http://{}/index.json", server.addr), "allowed_networks": ["127.0.0.0/8"]})).unwrap();
    let (status, body) = call(pinned.as_ref(), &[SETTINGS], json!({"apiName": "now", "identifier": "clock", "arguments": "{\"tz\":\"CET\"}", "manifest": manifest(server.addr)})).await;
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!(400)),
        "body manifests refused when pinned"
    );
    let (status, body) = call(
        gw.as_ref(),
        &[SETTINGS],
        json!({"apiName": "now", "identifier": "clock"}),
    )
    .await;
    assert_eq!(
        (status, &body["errorType"]),
        (590, &json!("PluginMarketIndexNotFound")),
        "no index configured"
    );
}

#[tokio::test]
async fn lobechat_error_answers() {
    let server = plugin_server().await;
    let gw = gateway(&server);
    let dead_index = build("lobe_gateway", json!({"index_url": format!("http://{}/index.json", closed_addr()), "allowed_networks": ["127.0.0.0/8"], "fetch_timeout": "2s"})).unwrap();
    let ok_args = "{\"tz\":\"UTC\"}";
    let cases: Vec<Case> = vec![
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"identifier": "clock"}),
            400,
            json!(400),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "", "identifier": "clock"}),
            400,
            json!(400),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "now", "identifier": "nope"}),
            404,
            json!("PluginMetaNotFound"),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "now", "identifier": "broken"}),
            490,
            json!("PluginManifestInvalid"),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "now", "identifier": "gone"}),
            404,
            json!("PluginManifestNotFound"),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "later", "identifier": "clock"}),
            404,
            json!("PluginApiNotFound"),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "now", "identifier": "clock", "arguments": "{\"tz\":5}"}),
            422,
            json!("PluginApiParamsError"),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "now", "identifier": "clock", "arguments": "not json"}),
            422,
            json!("PluginApiParamsError"),
        ),
        (
            gw.as_ref(),
            vec![],
            json!({"apiName": "now", "identifier": "clock", "arguments": ok_args}),
            422,
            json!("PluginSettingsInvalid"),
        ),
        (
            gw.as_ref(),
            vec![("x-lobe-plugin-settings", "{\"apiKey\":\"x\"}")],
            json!({"apiName": "now", "identifier": "clock", "arguments": ok_args}),
            422,
            json!("PluginSettingsInvalid"),
        ),
        (
            gw.as_ref(),
            vec![("x-lobe-plugin-settings", "{bad")],
            json!({"apiName": "now", "identifier": "clock", "arguments": ok_args}),
            422,
            json!("PluginSettingsInvalid"),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "limited", "identifier": "clock"}),
            429,
            json!(429),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "dead", "identifier": "clock"}),
            500,
            json!("PluginServerError"),
        ),
        (
            gw.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "now", "identifier": "clock", "manifest": {"identifier": "x"}}),
            490,
            json!("PluginManifestInvalid"),
        ),
        (
            dead_index.as_ref(),
            vec![SETTINGS],
            json!({"apiName": "now", "identifier": "clock", "indexUrl": format!("http://{}/index.json", server.addr)}),
            590,
            json!("PluginMarketIndexNotFound"),
        ),
    ];
    for (plugin, headers, payload, status, error_type) in cases {
        let (got, body) = call(plugin, &headers, payload.clone()).await;
        assert_eq!(
            (got, &body["errorType"]),
            (status, &error_type),
            "{payload} → {body}"
        );
        assert!(body.get("body").is_some(), "{body}");
    }
    let (_, body) = call(
        gw.as_ref(),
        &[SETTINGS],
        json!({"apiName": "limited", "identifier": "clock"}),
    )
    .await;
    assert_eq!(
        body["body"],
        json!({"error": "slow down"}),
        "the plugin's error body is passed on"
    );
}

#[tokio::test]
async fn preflight_and_method_not_allowed() {
    let gw = build(
        "lobe_gateway",
        json!({"index_url": "https://plugins.example/index.json", "cors_origins": ["*"]}),
    )
    .unwrap();
    let mut req = request(
        "OPTIONS",
        "/gateway",
        &[(
            "access-control-request-headers",
            "x-lobe-plugin-settings, content-type",
        )],
    );
    let Flow::Respond(resp) = on_request(gw.as_ref(), &mut req, &mut ctx()).await.unwrap() else {
        panic!()
    };
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        resp.headers()["access-control-allow-headers"],
        "x-lobe-plugin-settings, content-type"
    );
    let mut req = request("GET", "/gateway", &[]);
    let Flow::Respond(resp) = on_request(gw.as_ref(), &mut req, &mut ctx()).await.unwrap() else {
        panic!()
    };
    let (parts, body) = body_of(resp).await;
    assert_eq!(parts.status, 405);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["errorType"],
        405
    );
    assert_eq!(gw.request_body_limit(&req, &ctx()), None);
}

#[test]
fn config_errors_are_reported() {
    for (config, needle) in [
        (
            json!({"index_url": "https://i.example/", "cache_ttl": "forever"}),
            "cache_ttl",
        ),
        (
            json!({"index_url": "https://i.example/", "api_timeout": "0s"}),
            "api_timeout",
        ),
        (json!({"index_url": "ftp://x/index.json"}), "index_url"),
        (
            json!({"allow_client_index_url": false}),
            "index_url: required",
        ),
        (
            json!({"index_url": "https://i.example/", "max_body": 0}),
            "max_body",
        ),
        (
            json!({"index_url": "https://i.example/", "market": "x"}),
            "unknown field",
        ),
        (
            json!({"allow_client_manifest": true}),
            "allowed_client_urls: must list",
        ),
        (
            json!({"index_url": "https://i.example/", "allowed_client_urls": ["x"]}),
            "allowed_client_urls[0]",
        ),
        (
            json!({"index_url": "https://i.example/", "allowed_networks": ["10.0.0.0/33"]}),
            "allowed_networks",
        ),
        (
            json!({"index_url": "https://i.example/", "cors_origins": ["https://a/b"]}),
            "cors_origins[0]",
        ),
        (
            json!({"index_url": "https://i.example/", "max_cache_bytes": 0}),
            "max_cache_bytes",
        ),
    ] {
        let err = validate("lobe_gateway", config.clone()).unwrap_err();
        assert!(err.contains(needle), "{config}: {err}");
    }
}
