//! `wasm` (Proxy-Wasm filters) through a real standalone proxy and a real echo upstream: a
//! hand-written WAT filter (proxy/tests/wasm/test_filter.wat) in a chain with the built-in
//! `headers` plugin, a module whose sha256 does not match, an auth filter pausing for a
//! `proxy_http_call` (proxy/tests/wasm/http_call.wat), and a filter built from examples/wasm
//! with the official AssemblyScript SDK (its `httpCall` included).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::support::*;

fn test_filter() -> Vec<u8> {
    wat::parse_str(include_str!("../wasm/test_filter.wat")).expect("valid WAT")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` as `name` into `dir` (not a manifest: the loader reads only YAML).
fn write_module(dir: &ManifestDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A GatewayPlugin with an explicit `order`.
fn ordered_plugin(name: &str, kind: &str, order: u32, config: &str) -> String {
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: GatewayPlugin\nmetadata: {{name: {name}, namespace: hookway-system}}\nspec:\n  plugin: {kind}\n  status: enable\n  order: {order}\n  config: {config}\n"
    )
}

/// The WAT filter `alias` (order 20) after the built-in `headers` (order 10), both adding
/// `x-trace`. Each test has its own alias: the metrics are process-wide.
async fn chain(alias: &str, filter_config: &str) -> (EchoServer, ManifestDir, Proxy) {
    hookway_proxy::plugins::wasm::allow_file_modules();
    let echo = EchoServer::start("echo").await;
    let dir = ManifestDir::new();
    let module = test_filter();
    let path = write_module(&dir, "filter.wasm", &module);
    let wasm = format!(
        "{{file: {:?}, sha256: {}, configuration: from-manifest, deadline: 50, max_memory: 8388608{filter_config}}}",
        path.display().to_string(),
        sha256(&module)
    );
    let headers = "{request: {add: {x-trace: builtin}}, response: {add: {x-trace: builtin}}}";
    dir.write("service.yaml", &service_yaml("echo", &[echo.addr]));
    dir.write(
        "headers.yaml",
        &ordered_plugin("builtin", "headers", 10, headers),
    );
    dir.write("wasm.yaml", &ordered_plugin(alias, "wasm", 20, &wasm));
    let refs = format!("builtin: {{}}, {alias}: {{}}");
    dir.write("route.yaml", &route_yaml("r", "/", &refs));
    let proxy = standalone_proxy(&dir).await;
    (echo, dir, proxy)
}

fn values(resp: &reqwest::Response, name: &str) -> Vec<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_wasm_filter_keeps_the_onion_order_with_a_builtin() {
    let (_echo, _dir, proxy) = chain("onion", "").await;
    let resp = client().get(proxy.url("/hello?x=1")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Response hooks descending: the filter (order 20) first, then `headers` (order 10).
    assert_eq!(values(&resp, "x-trace"), ["wasm", "builtin"]);
    let echoed = json(resp).await;
    // Request hooks ascending: `headers` first, then the filter.
    assert_eq!(echoed["headers"]["x-trace"], "builtin, wasm");
    assert_eq!(echoed["headers"]["x-wasm-config"], "from-manifest");
    assert_eq!(echoed["headers"]["x-wasm-path"], "/hello?x=1");
    assert_eq!(echoed["headers"]["x-unimplemented"], "yes");

    // An early answer skips the upstream; the response hooks of both still run, in reverse.
    let resp = client()
        .get(proxy.url("/"))
        .header("x-deny", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(values(&resp, "x-trace"), ["wasm", "builtin"]);
    assert_eq!(resp.text().await.unwrap(), "denied by wasm\n");

    // A response body the filter buffers and replaces.
    let resp = client()
        .get(proxy.url("/"))
        .header("x-replace-body", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "replaced by wasm\n");

    // Paused request headers: the whole body comes with the headers still open.
    let resp = client()
        .post(proxy.url("/"))
        .header("x-pause", "1")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = json(resp).await;
    assert_eq!(echoed["headers"]["x-body-seen"], "yes");
    assert_eq!(echoed["headers"]["content-length"], "9");
    assert_eq!(echoed["body"], "rewritten");

    let metrics = metrics(&proxy).await;
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("hookway_wasm_counter_total{") && l.contains("plugin=\"onion\""))
        .unwrap_or_else(|| panic!("the filter's counter is exported:\n{metrics}"));
    assert!(counted.contains("name=\"requests\""), "{counted}");
    let n: f64 = counted.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 4.0, "{counted}");
}

async fn get_with(proxy: &Proxy, header: &str) -> (u16, String) {
    let resp = client()
        .get(proxy.url("/"))
        .header(header, "1")
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn failures(metrics: &str, alias: &str, reason: &str) -> f64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("hookway_wasm_failures_total{")
                && l.contains(&format!("plugin=\"{alias}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_trap_a_loop_and_a_memory_blowup_fail_only_their_own_request() {
    let (echo, _dir, proxy) = chain("failing", "").await;
    let before = metrics(&proxy).await;
    for (header, reason) in [
        ("x-trap", "trap"),
        ("x-loop", "deadline"),
        ("x-grow", "memory"),
    ] {
        let started = Instant::now();
        let (status, body) = get_with(&proxy, header).await;
        assert_eq!(status, 500, "{header}: {body}");
        assert_eq!(body, "plugin failing failed\n", "{header}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{header}: bounded"
        );
        // The next request is served by a fresh instance.
        let resp = client().get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "after {header}");
        assert_eq!(values(&resp, "x-trace"), ["wasm", "builtin"]);
        let after = metrics(&proxy).await;
        assert_eq!(
            failures(&after, "failing", reason),
            failures(&before, "failing", reason) + 1.0,
            "{reason}"
        );
    }
    assert_eq!(echo.hits(), 3, "failed requests never reached the upstream");
}

/// `proxy/tests/wasm/http_call.wat` (an auth filter pausing for a `proxy_http_call`) whose
/// clusters are hookway Services: `auth` answers 200, `deny` 403.
#[tokio::test]
async fn an_auth_filter_pauses_for_an_http_call_to_a_service() {
    hookway_proxy::plugins::wasm::allow_file_modules();
    let echo = EchoServer::start("echo").await;
    let auth = EchoServer::start("auth").await;
    let deny = EchoServer::with_status("deny", 403).await;
    let dir = ManifestDir::new();
    let module = wat::parse_str(include_str!("../wasm/http_call.wat")).expect("valid WAT");
    let path = write_module(&dir, "http_call.wasm", &module);
    let config = format!(
        "{{file: {:?}, sha256: {}, clusters: {{auth: {{service: default/auth}}, deny: {{service: default/deny}}}}}}",
        path.display().to_string(),
        sha256(&module)
    );
    dir.write("service.yaml", &service_yaml("echo", &[echo.addr]));
    dir.write("auth.yaml", &service_yaml("auth", &[auth.addr]));
    dir.write("deny.yaml", &service_yaml("deny", &[deny.addr]));
    dir.write("wasm.yaml", &ordered_plugin("caller", "wasm", 10, &config));
    dir.write("route.yaml", &route_yaml("r", "/", "caller: {}"));
    let proxy = standalone_proxy(&dir).await;
    let call = |upstream: &'static str| {
        let proxy = &proxy;
        async move {
            client()
                .get(proxy.url("/in"))
                .header("x-call", upstream)
                .send()
                .await
                .unwrap()
        }
    };

    // Allowed: the request went on after the call, on the same context.
    let resp = call("auth").await;
    assert_eq!(resp.status(), 200);
    let echoed = json(resp).await;
    assert_eq!(echoed["server"], "echo");
    assert_eq!(echoed["headers"]["x-call-pairs"], "yes");
    assert_eq!(auth.hits(), 1, "one call to the auth Service");

    // Denied: the filter answers with the call's answer body.
    let resp = call("deny").await;
    assert_eq!(resp.status(), 403);
    let body = json(resp).await;
    assert_eq!(body["server"], "deny");
    assert_eq!(body["path"], "/check", "the call the filter made");
    assert_eq!(body["headers"]["host"], "auth.test");

    // An upstream the config does not declare: BadArgument, and the filter's fallback.
    let resp = call("nowhere").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["headers"]["x-call-status"], "2");
    assert_eq!(
        echo.hits(),
        2,
        "the denied request never reached the upstream"
    );

    let text = metrics(&proxy).await;
    for result in ["response", "refused"] {
        let line =
            format!("hookway_wasm_http_calls_total{{plugin=\"caller\",result=\"{result}\"}}");
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
}

#[tokio::test]
async fn fail_open_serves_the_request_without_the_filter() {
    let (echo, _dir, proxy) = chain("open", ", fail_open: true").await;
    let resp = client()
        .get(proxy.url("/"))
        .header("x-trap", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        values(&resp, "x-trace"),
        ["builtin"],
        "the filter's hooks are skipped"
    );
    assert_eq!(echo.hits(), 1);
}

fn check_dir(dir: &Path) -> (bool, String) {
    let mut out = Vec::new();
    let ok = hookway_proxy::standalone::check(
        dir,
        &hookway_proxy::standalone::StandaloneOptions::default(),
        hookway_proxy::plugins::builtin().catalogue(),
        hookway_proxy::standalone::OutputFormat::Text,
        &mut out,
    )
    .unwrap();
    (ok, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn a_module_whose_sha256_does_not_match_is_rejected() {
    hookway_proxy::plugins::wasm::allow_file_modules();
    let module = test_filter();
    let wrong = sha256(b"another module");
    let dir = ManifestDir::new();
    let path = write_module(&dir, "filter.wasm", &module);
    dir.write("service.yaml", &service_yaml("echo", &[dead_addr().await]));
    let config = format!(
        "{{file: {:?}, sha256: {wrong}}}",
        path.display().to_string()
    );
    dir.write("wasm.yaml", &plugin_yaml("filter", "wasm", &config));
    let (ok, text) = check_dir(&dir.path);
    assert!(!ok, "{text}");
    assert!(text.contains("sha256 mismatch"), "{text}");

    // The same module in a Secret (base64 text, as the snapshot carries Secret data as text).
    let encoded = base64::engine::general_purpose::STANDARD.encode(&module);
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: filter-module, namespace: hookway-system}}\nstringData:\n  filter.wasm: {encoded}\n"
    );
    dir.write("secret.yaml", &secret);
    let config = format!("{{secret: filter-module, key: filter.wasm, sha256: {wrong}}}");
    dir.write("wasm.yaml", &plugin_yaml("filter", "wasm", &config));
    let (ok, text) = check_dir(&dir.path);
    assert!(!ok, "{text}");
    assert!(text.contains("sha256 mismatch"), "{text}");

    let config = format!(
        "{{secret: filter-module, key: filter.wasm, sha256: {}}}",
        sha256(&module)
    );
    dir.write("wasm.yaml", &plugin_yaml("filter", "wasm", &config));
    let (ok, text) = check_dir(&dir.path);
    assert!(ok, "the right digest is accepted: {text}");
}

#[tokio::test]
async fn a_module_from_a_secret_runs() {
    let echo = EchoServer::start("echo").await;
    let module = test_filter();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&module);
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: filter-module, namespace: hookway-system}}\nstringData:\n  filter.wasm: {encoded}\n"
    );
    let config = format!(
        "{{secret: filter-module, key: filter.wasm, sha256: {}}}",
        sha256(&module)
    );
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("secret.yaml", secret),
            ("wasm.yaml", plugin_yaml("filter", "wasm", &config)),
            ("route.yaml", route_yaml("r", "/", "filter: {}")),
        ],
    )
    .await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(values(&resp, "x-trace"), ["wasm"]);
}

#[tokio::test]
async fn a_module_from_a_config_map_runs_and_its_configuration_is_checked() {
    let echo = EchoServer::start("echo").await;
    let module = test_filter();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&module);
    let config_map = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: filters, namespace: hookway-system}}\nbinaryData:\n  filter.wasm: {encoded}\n"
    );
    let schema = "{type: string, pattern: '^from-'}";
    let config = |configuration: &str| {
        format!(
            "{{config_map: filters, key: filter.wasm, sha256: {}, configuration: {configuration}, configuration_schema: {schema}}}",
            sha256(&module)
        )
    };
    let (dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("filters.yaml", config_map),
            (
                "wasm.yaml",
                plugin_yaml("filter", "wasm", &config("from-config-map")),
            ),
            ("route.yaml", route_yaml("r", "/", "filter: {}")),
        ],
    )
    .await;
    // The compiler carried the checked bytes in the snapshot; the proxy built the filter
    // from them.
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(values(&resp, "x-trace"), ["wasm"]);
    assert_eq!(
        json(resp).await["headers"]["x-wasm-config"],
        "from-config-map"
    );

    // A configuration the declared schema refuses is reported with its path.
    dir.write(
        "wasm.yaml",
        &plugin_yaml("filter", "wasm", &config("hello")),
    );
    let (ok, text) = check_dir(&dir.path);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "configuration: \"hello\" does not match \"^from-\" (per configuration_schema)"
        ),
        "{text}"
    );
}

/// The example filter built with the AssemblyScript SDK (scripts/ensure-wasm-filters.sh), or
/// `None` (with one line saying why) when npm is not installed.
fn assemblyscript_filter() -> Option<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(root.join("scripts/ensure-wasm-filters.sh"))
        .output()
        .expect("running scripts/ensure-wasm-filters.sh");
    assert!(
        output.status.success(),
        "ensure-wasm-filters.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8(output.stdout).unwrap();
    let path = path.trim();
    if path.is_empty() {
        eprintln!("skipped: npm is not installed, the AssemblyScript filter cannot be built");
        return None;
    }
    Some(std::fs::read(path).unwrap())
}

#[tokio::test]
async fn a_filter_written_with_the_assemblyscript_sdk_runs_unchanged() {
    let Some(module) = assemblyscript_filter() else {
        return;
    };
    hookway_proxy::plugins::wasm::allow_file_modules();
    let echo = EchoServer::start("echo").await;
    let dir = ManifestDir::new();
    let path = write_module(&dir, "greeting.wasm", &module);
    let auth = auth_server().await;
    let config = format!(
        "{{file: {:?}, sha256: {}, root_id: greeting, configuration: hello from hookway, clusters: {{auth: {{address: \"http://{auth}\"}}}}}}",
        path.display().to_string(),
        sha256(&module)
    );
    dir.write("service.yaml", &service_yaml("echo", &[echo.addr]));
    dir.write("wasm.yaml", &plugin_yaml("greeting", "wasm", &config));
    dir.write("route.yaml", &route_yaml("r", "/", "greeting: {}"));
    let proxy = standalone_proxy(&dir).await;

    let resp = client().get(proxy.url("/as?q=1")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(values(&resp, "x-filter"), ["assemblyscript"]);
    let echoed = json(resp).await;
    assert_eq!(echoed["headers"]["x-greeting"], "hello from hookway");
    assert_eq!(echoed["headers"]["x-request-path"], "/as?q=1");

    let resp = client()
        .get(proxy.url("/"))
        .header("x-deny", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(values(&resp, "x-filter"), ["assemblyscript"]);
    assert_eq!(resp.text().await.unwrap(), "denied by assemblyscript\n");
    assert_eq!(echo.hits(), 1);

    let metrics = metrics(&proxy).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hookway_wasm_counter_total{")
                && l.contains("name=\"as_requests\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );

    // The SDK's httpCall: the request waits for the auth service's answer.
    let resp = client()
        .get(proxy.url("/private"))
        .header("authorization", "good")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = json(resp).await;
    assert_eq!(echoed["headers"]["x-auth-user"], "alice");
    assert_eq!(echoed["headers"]["x-greeting"], "hello from hookway");
    let resp = client()
        .get(proxy.url("/private"))
        .header("authorization", "bad")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.text().await.unwrap(), "login first");
    assert_eq!(
        echo.hits(),
        2,
        "the refused request never reached the upstream"
    );
}

/// An auth service for the SDK filter: `GET /check` with `authorization: good` answers 200 with
/// `x-user: alice`; anything else 401 "login first".
async fn auth_server() -> std::net::SocketAddr {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let good = req.uri().path() == "/check"
                        && req
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v == "good");
                    let resp = if good {
                        http::Response::builder()
                            .status(200)
                            .header("x-user", "alice")
                            .body(Full::new(bytes::Bytes::new()))
                    } else {
                        http::Response::builder()
                            .status(401)
                            .body(Full::new(bytes::Bytes::from("login first")))
                    };
                    Ok::<_, std::convert::Infallible>(resp.unwrap())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}
