//! Plugins that answer, rewrite or observe, through a real proxy and a real echo upstream,
//! configured by manifests: lobe_gateway (with a real plugin server), compression,
//! proxy_rewrite, response_rewrite, extra_params, cors, access_log, sub_filter, redirect,
//! traffic_splitting, mock.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::support::*;

/// A GatewayPlugin `name` of `kind` with `config` (YAML flow or block, indented by 4).
fn plugin(name: &str, kind: &str, config: &str) -> String {
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: GatewayPlugin\nmetadata: {{name: {name}, namespace: hookway-system}}\nspec:\n  plugin: {kind}\n  status: enable\n  config: {config}\n"
    )
}

/// A catch-all Route to Service `echo` running `plugins`.
fn route(plugins: &[&str]) -> String {
    let refs: Vec<String> = plugins.iter().map(|p| format!("{p}: {{}}")).collect();
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {{name: r, namespace: default}}\nspec:\n  rules: [{{path: {{type: Prefix, value: /}}}}]\n  service: echo\n  plugins: {{{}}}\n",
        refs.join(", ")
    )
}

/// An echo upstream and a standalone proxy running one plugin on a catch-all route.
async fn with_plugin(kind: &str, config: &str) -> (EchoServer, ManifestDir, Proxy) {
    let echo = EchoServer::start("echo").await;
    let dir = ManifestDir::new();
    dir.write("service.yaml", &service_yaml("echo", &[echo.addr]));
    dir.write("plugin.yaml", &plugin("p", kind, config));
    dir.write("route.yaml", &route(&["p"]));
    let proxy = standalone_proxy(&dir).await;
    (echo, dir, proxy)
}

// ---------------------------------------------------------------- lobe_gateway

/// A LobeChat plugin server: a market index, a manifest and a `now` API echoing its arguments.
async fn lobe_plugin_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |req| lobe_answer(addr, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn lobe_answer(
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let settings = req
        .headers()
        .get("x-lobe-plugin-settings")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let json = match path.as_str() {
        "/index.json" => serde_json::json!({"plugins": [
            {"identifier": "clock", "manifest": format!("http://{addr}/manifest.json")}
        ]}),
        "/manifest.json" => serde_json::json!({
            "identifier": "clock",
            "meta": {"title": "Clock"},
            "api": [{
                "name": "now",
                "description": "the time",
                "url": format!("http://{addr}/api/now"),
                "parameters": {"type": "object", "properties": {"tz": {"type": "string"}},
                               "required": ["tz"]}
            }]
        }),
        "/api/now" => serde_json::json!({
            "time": "12:00",
            "args": serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            "settings": settings,
        }),
        _ => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found")));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            return Ok(resp);
        }
    };
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap())
}

#[tokio::test]
async fn lobe_gateway_calls_the_plugin_api_from_the_buffered_payload() {
    let plugins = lobe_plugin_server().await;
    // The plugin server is on loopback: allowed explicitly (refused by default).
    let config = format!(
        "{{index_url: \"http://{plugins}/index.json\", max_body: 512, allowed_networks: [127.0.0.0/8], cors_origins: [\"*\"]}}"
    );
    let (echo, _dir, proxy) = with_plugin("lobe_gateway", &config).await;
    let c = client();
    let call = |arguments: &str| {
        serde_json::json!({"identifier": "clock", "apiName": "now", "arguments": arguments})
            .to_string()
    };

    let resp = c
        .post(proxy.url("/api/plugins"))
        .body(call(r#"{"tz":"UTC"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let answer = json(resp).await;
    assert_eq!(answer["time"], "12:00");
    assert_eq!(answer["args"]["tz"], "UTC");

    // Arguments checked against the manifest's schema.
    let resp = c
        .post(proxy.url("/api/plugins"))
        .body(call(r#"{"tz":5}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert_eq!(json(resp).await["errorType"], "PluginApiParamsError");

    // Over max_body: refused by the chain's whole-body limit.
    let resp = c
        .post(proxy.url("/api/plugins"))
        .body(vec![b' '; 600])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.text().await.unwrap(), "request body too large\n");
    assert_eq!(echo.hits(), 0, "the route's Service is never called");
}

// ---------------------------------------------------------------- response transforms

#[tokio::test]
async fn compression_gzips_what_decodes_back_to_the_upstream_body() {
    let (_echo, _dir, proxy) =
        with_plugin("compression", "{algorithms: [gzip], min_length: 0}").await;
    let resp = client()
        .get(proxy.url("/zipped"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let vary = resp.headers()["vary"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(vary.contains("accept-encoding"), "{vary}");
    let zipped = resp.bytes().await.unwrap();
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_string(&mut plain)
        .unwrap();
    let echoed: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(echoed["path"], "/zipped");
    assert_eq!(echoed["server"], "echo");
}

#[tokio::test]
async fn response_rewrite_replaces_status_headers_and_body() {
    let config =
        "{match: {code: [200]}, status_code: 201, body: rewritten, headers: {x-rw: \"yes\"}}";
    let (_echo, _dir, proxy) = with_plugin("response_rewrite", config).await;
    let resp = client().get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-rw"], "yes");
    assert_eq!(resp.text().await.unwrap(), "rewritten");

    // Other statuses pass untouched.
    let resp = client()
        .get(proxy.url("/x"))
        .header("x-status", "404")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().get("x-rw").is_none());
}

#[tokio::test]
async fn sub_filter_replaces_text_in_the_streamed_body() {
    let config = "{filters: [{pattern: echo, replacement: ECHO}], types: [application/json]}";
    let (_echo, _dir, proxy) = with_plugin("sub_filter", config).await;
    let resp = client().get(proxy.url("/s")).send().await.unwrap();
    assert_eq!(json(resp).await["server"], "ECHO");
}

// ---------------------------------------------------------------- request transforms

#[tokio::test]
async fn proxy_rewrite_changes_the_path_and_host_the_upstream_sees() {
    let config = "{uri: /rewritten, host: backend.internal}";
    let (_echo, _dir, proxy) = with_plugin("proxy_rewrite", config).await;
    let resp = client().get(proxy.url("/old?x=1")).send().await.unwrap();
    let seen = json(resp).await;
    assert_eq!(seen["path"], "/rewritten?x=1");
    assert_eq!(seen["headers"]["host"], "backend.internal");
}

#[tokio::test]
async fn extra_params_adds_a_query_parameter() {
    let config = "{params: [{name: api_version, position: query, value: \"2\"}]}";
    let (_echo, _dir, proxy) = with_plugin("extra_params", config).await;
    let resp = client().get(proxy.url("/q?a=1")).send().await.unwrap();
    let path = json(resp).await["path"].as_str().unwrap().to_owned();
    assert!(path.starts_with("/q?"), "{path}");
    assert!(path.contains("a=1"), "{path}");
    assert!(path.contains("api_version=2"), "{path}");
}

// ---------------------------------------------------------------- early answers

#[tokio::test]
async fn cors_answers_preflights_without_the_upstream() {
    let config = "{allow_origins: [\"https://app.example.com\"]}";
    let (echo, _dir, proxy) = with_plugin("cors", config).await;
    let resp = client()
        .request(reqwest::Method::OPTIONS, proxy.url("/api"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(echo.hits(), 0);

    // Actual requests reach the upstream and carry the CORS headers.
    let resp = client()
        .get(proxy.url("/api"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("access-control-allow-origin"));
    assert_eq!(echo.hits(), 1);
}

#[tokio::test]
async fn redirect_adds_the_prefix() {
    let (echo, _dir, proxy) = with_plugin("redirect", "{prefix: /app, status: 302}").await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .unwrap();
    let resp = no_follow.get(proxy.url("/x?y=1")).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(location.ends_with("/app/x?y=1"), "{location}");
    assert_eq!(echo.hits(), 0);

    let resp = no_follow.get(proxy.url("/app/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(echo.hits(), 1);
}

#[tokio::test]
async fn mock_answers_without_the_upstream() {
    let config = "{status: 418, headers: {x-mock: \"1\"}, body: teapot}";
    let (echo, _dir, proxy) = with_plugin("mock", config).await;
    let resp = client().get(proxy.url("/m")).send().await.unwrap();
    assert_eq!(resp.status(), 418);
    assert_eq!(resp.headers()["x-mock"], "1");
    assert_eq!(resp.text().await.unwrap(), "teapot");
    assert_eq!(echo.hits(), 0);
}

// ---------------------------------------------------------------- routing and observing

#[tokio::test]
async fn traffic_splitting_sends_header_carriers_to_the_canary() {
    let stable = EchoServer::start("stable").await;
    let canary = EchoServer::start("canary").await;
    let dir = ManifestDir::new();
    dir.write("echo.yaml", &service_yaml("echo", &[stable.addr]));
    dir.write("canary.yaml", &service_yaml("canary", &[canary.addr]));
    let config = "{service: default/canary, header: {name: x-canary, values: [\"1\"]}}";
    dir.write("plugin.yaml", &plugin("split", "traffic_splitting", config));
    dir.write("route.yaml", &route(&["split"]));
    let proxy = standalone_proxy(&dir).await;
    let c = client();

    let resp = c
        .get(proxy.url("/"))
        .header("x-canary", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["server"], "canary");
    let resp = c
        .get(proxy.url("/"))
        .header("x-canary", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["server"], "stable");
    let (_, server) = get_server(&c, &proxy.url("/"), None).await;
    assert_eq!(server, "stable");
}

#[tokio::test]
async fn access_log_writes_a_json_line_to_its_file() {
    let logs = ManifestDir::new();
    let path = logs.path.join("access.log");
    let config = format!("{{output: file, path: \"{}\"}}", path.display());
    let (_echo, _dir, proxy) = with_plugin("access_log", &config).await;
    let resp = client().get(proxy.url("/logged?x=1")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    // Written by a background thread: wait (bounded) for the line.
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no access log line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/logged?x=1");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["route"], "default/r");
}
