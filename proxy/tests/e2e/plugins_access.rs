//! Plugins that decide whether a request passes, through a real proxy and a real echo upstream,
//! configured by manifests: spike_arrest, circuit_breaker, forward_auth (with a real auth
//! server), csrf, referer_restriction, ua_restriction (also over TLS for csrf and
//! forward_auth); `excludePaths` on a denying plugin and the per-plugin decision counter on the
//! admin `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::support::*;

/// `(status, content-type, body)` of a GET on `url` with `headers`.
async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

// ---------------------------------------------------------------- spike_arrest

#[tokio::test]
async fn spike_arrest_delays_within_the_buffer_and_refuses_the_rest_with_json() {
    let echo = EchoServer::start("echo").await;
    // One slot every 250 ms (room for a loaded machine to send the burst within one slot); one
    // early request may wait for its slot.
    let config = "{allow: 4, time_unit: second, buffer_size: 1, error_type: json}";
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("plugin.yaml", plugin_yaml("smooth", "spike_arrest", config)),
            ("route.yaml", route_yaml("spike", "/", "smooth: {}")),
        ],
    )
    .await;

    let url = proxy.url("/burst");
    let started = Instant::now();
    let burst: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(burst.len());
    for request in burst {
        answers.push(tokio::time::timeout(WAIT, request).await.unwrap().unwrap());
    }
    let elapsed = started.elapsed();

    let passed = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!(passed, 2, "one at once, one after waiting: {answers:?}");
    assert_eq!(refused.len(), 3, "{answers:?}");
    for (_, content_type, body) in refused {
        assert_eq!(content_type, "application/json");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"message": "SpikeArrest engaged", "status_code": 503})
        );
    }
    assert!(
        elapsed >= Duration::from_millis(240),
        "the buffered request waited for its slot ({elapsed:?})"
    );
    assert_eq!(echo.hits(), 2, "refused requests never reach the upstream");
    let text = metrics(&proxy).await;
    let want = "hookway_plugin_decisions_total{decision=\"limited\",plugin=\"spike_arrest\",route=\"default/spike\"} 3";
    assert!(text.contains(want), "missing {want} in\n{text}");

    // Once the slots taken have passed, a request goes straight through (until then it is
    // refused, and never reaches the upstream).
    wait_until("a request passes once the slots are free", || async {
        get(&url, &[]).await.0 == 200
    })
    .await;
    assert_eq!(echo.hits(), 3);
}

// ---------------------------------------------------------------- circuit_breaker

#[tokio::test]
async fn circuit_breaker_opens_on_failures_and_a_half_open_probe_closes_it() {
    let echo = EchoServer::start("echo").await;
    let config = "{match_codes: [502], minimum_requests: 3, failure_percent: 0.5, break_period: 1, \
                  success_counts: 1, breaker_code: 503, headers: {retry-after: \"1\"}, body: orders down}";
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("plugin.yaml", plugin_yaml("cb", "circuit_breaker", config)),
            ("route.yaml", route_yaml("cb-route", "/", "cb: {}")),
        ],
    )
    .await;
    let url = proxy.url("/orders");
    let failing = [("x-status", "502")];

    // Closed: the upstream's 502s go through to the client and are counted.
    for _ in 0..3 {
        let (status, _, body) = get(&url, &failing).await;
        assert_eq!(status, 502);
        assert!(body.contains("\"server\":\"echo\""), "{body}");
    }
    // The third completion opened it (completions are recorded as the response ends: wait,
    // bounded, for the breaker to answer).
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _, body) = get(&url, &failing).await;
        if body == "orders down\n" {
            assert_eq!(status, 503);
            break;
        }
        assert!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Open: answered by the breaker, the upstream is not called.
    let hits = echo.hits();
    for _ in 0..3 {
        let resp = client().get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        assert_eq!(resp.text().await.unwrap(), "orders down\n");
    }
    assert_eq!(
        echo.hits(),
        hits,
        "an open breaker does not call the upstream"
    );
    let text = metrics(&proxy).await;
    assert!(
        text.contains(
            "hookway_circuit_breaker_state{plugin=\"hookway-system/cb\",route=\"default/cb-route\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "hookway_plugin_decisions_total{decision=\"tripped\",plugin=\"circuit_breaker\",route=\"default/cb-route\"}"
        ),
        "{text}"
    );

    // After break_period a probe goes through; the upstream has recovered, the breaker closes.
    // Until then the breaker answers.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _, body) = get(&url, &[]).await;
        if status == 200 {
            break;
        }
        assert_eq!((status, body.as_str()), (503, "orders down\n"));
        assert_eq!(
            echo.hits(),
            hits,
            "an open breaker does not call the upstream"
        );
        assert!(Instant::now() < deadline, "no probe after break_period");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(echo.hits(), hits + 1, "the probe reached the upstream");
    let closed =
        "hookway_circuit_breaker_state{plugin=\"hookway-system/cb\",route=\"default/cb-route\"} 0";
    let deadline = Instant::now() + WAIT;
    while !metrics(&proxy).await.contains(closed) {
        assert!(Instant::now() < deadline, "the breaker never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..2 {
        let (status, _, _) = get(&url, &[]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(echo.hits(), hits + 3);
}

#[tokio::test]
async fn circuit_breaker_counts_the_proxys_own_502_for_an_unreachable_upstream() {
    let down = dead_addr().await;
    let config = "{minimum_requests: 2, break_period: 30, body: backend down}";
    let (_dir, proxy) = proxy_with(
        down,
        &[
            (
                "plugin.yaml",
                plugin_yaml("cb-down", "circuit_breaker", config),
            ),
            (
                "route.yaml",
                route_yaml("cb-down-route", "/", "cb-down: {}"),
            ),
        ],
    )
    .await;
    let url = proxy.url("/");
    for _ in 0..2 {
        let (status, _, body) = get(&url, &[]).await;
        assert_eq!(status, 502);
        assert!(body.starts_with("upstream connect error"), "{body}");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _, body) = get(&url, &[]).await;
        if body == "backend down\n" {
            assert_eq!(status, 503);
            break;
        }
        assert_eq!(status, 502, "{body}");
        assert!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- forward_auth

/// An auth service: `authorization: good` passes with `x-user: alice` and `x-seen` (what it
/// was told about the request), `good-body` passes with a JSON body too; `forbidden` gets 403
/// with a body; `slow` never answers; anything else 401 with `WWW-Authenticate` and a body.
async fn auth_server() -> SocketAddr {
    auth_server_counting().await.0
}

/// [`auth_server`], with the count of connections it accepted.
async fn auth_server_counting() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(auth_answer))
                    .await;
            });
        }
    });
    (addr, connections)
}

async fn auth_answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let h = req.headers();
    let header = |n: &str| h.get(n).map_or("-", |v| v.to_str().unwrap_or("?"));
    let resp = match header("authorization") {
        "good" => Response::builder()
            .header("x-user", "alice")
            .header("x-internal", "not copied")
            .header(
                "x-seen",
                format!(
                    "{} {} {} {} {} {}",
                    req.method(),
                    header("x-forwarded-method"),
                    header("x-forwarded-uri"),
                    header("x-forwarded-proto"),
                    header("x-forwarded-for"),
                    header("cookie"),
                ),
            )
            .body(Full::new(Bytes::new())),
        "good-body" => Response::builder()
            .header("x-user", "alice")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{\"user\":\"alice\"}"))),
        "forbidden" => Response::builder()
            .status(403)
            .header("content-type", "text/plain")
            // Hop-by-hop: for the proxy's connection to the auth service only.
            .header("connection", "x-auth-hop")
            .header("x-auth-hop", "1")
            .header("keep-alive", "timeout=5")
            .body(Full::new(Bytes::from_static(b"members only"))),
        "slow" => std::future::pending().await,
        _ => Response::builder()
            .status(401)
            .header("www-authenticate", "Bearer realm=\"sso\"")
            .body(Full::new(Bytes::from_static(b"login first"))),
    };
    Ok(resp.unwrap())
}

fn forward_auth_config(address: SocketAddr, extra: &str) -> String {
    format!(
        "{{address: \"http://{address}/verify\", auth_request_headers: [authorization], \
         auth_response_headers: [x-user, x-seen], timeout: 300ms{extra}}}"
    )
}

#[tokio::test]
async fn forward_auth_lets_through_copies_headers_and_returns_refusals_as_is() {
    let echo = EchoServer::start("echo").await;
    let auth = auth_server().await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "plugin.yaml",
                plugin_yaml("sso", "forward_auth", &forward_auth_config(auth, "")),
            ),
            ("route.yaml", route_yaml("fa", "/", "sso: {}")),
        ],
    )
    .await;
    let c = client();

    // 2xx: through, with the configured answer headers replacing the client's.
    let resp = c
        .post(proxy.url("/orders?id=7"))
        .header("authorization", "good")
        .header("cookie", "c=1")
        .header("x-user", "mallory")
        .body("order")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["body"], "order");
    assert_eq!(seen["headers"]["x-user"], "alice");
    assert_eq!(
        seen["headers"]["x-seen"], "GET POST /orders?id=7 http 127.0.0.1 -",
        "the auth call is a GET told the original method, uri, proto and peer, and only the \
         listed request headers"
    );
    assert!(seen["headers"].get("x-internal").is_none());
    assert_eq!(echo.hits(), 1);

    // 401 and 403 come back as the auth service sent them; the upstream is not called.
    let resp = c
        .get(proxy.url("/orders"))
        .header("authorization", "bad")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"sso\"");
    assert_eq!(resp.text().await.unwrap(), "login first");
    let resp = c
        .get(proxy.url("/orders"))
        .header("authorization", "forbidden")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    for hop in ["x-auth-hop", "keep-alive"] {
        assert!(
            resp.headers().get(hop).is_none(),
            "hop-by-hop {hop} of the auth answer is not forwarded: {:?}",
            resp.headers()
        );
    }
    assert_eq!(resp.text().await.unwrap(), "members only");
    assert_eq!(echo.hits(), 1, "refused requests never reach the upstream");
}

#[tokio::test]
async fn forward_auth_reuses_its_connections_to_the_auth_service() {
    let echo = EchoServer::start("echo").await;
    let (auth, connections) = auth_server_counting().await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "plugin.yaml",
                plugin_yaml("sso", "forward_auth", &forward_auth_config(auth, "")),
            ),
            ("route.yaml", route_yaml("fa-pool", "/", "sso: {}")),
        ],
    )
    .await;
    // Sequential requests: answers without a body, with a body, and refusals (whose body goes
    // to the client) all leave the connection reusable.
    for authorization in ["good", "good", "good-body", "good-body", "bad", "good"] {
        let (status, _, body) = get(&proxy.url("/"), &[("authorization", authorization)]).await;
        let want = if authorization == "bad" { 401 } else { 200 };
        assert_eq!(status, want, "{authorization}: {body}");
    }
    assert_eq!(echo.hits(), 5);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one pooled connection"
    );
}

#[tokio::test]
async fn forward_auth_down_or_slow_follows_the_failure_policy_without_hanging() {
    let echo = EchoServer::start("echo").await;
    let auth = auth_server().await;
    let down = dead_addr().await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "slow.yaml",
                plugin_yaml(
                    "sso-slow",
                    "forward_auth",
                    &forward_auth_config(auth, ", error_type: json"),
                ),
            ),
            (
                "down.yaml",
                plugin_yaml("sso-down", "forward_auth", &forward_auth_config(down, "")),
            ),
            (
                "open.yaml",
                plugin_yaml(
                    "sso-open",
                    "forward_auth",
                    &forward_auth_config(down, ", failure_policy: allow"),
                ),
            ),
            ("r1.yaml", route_yaml("fa-slow", "/slow", "sso-slow: {}")),
            ("r2.yaml", route_yaml("fa-down", "/down", "sso-down: {}")),
            ("r3.yaml", route_yaml("fa-open", "/open", "sso-open: {}")),
        ],
    )
    .await;

    // Slow: the auth service never answers; the 300 ms timeout answers 503 (json here).
    let started = Instant::now();
    let (status, content_type, body) = get(&proxy.url("/slow"), &[("authorization", "slow")]).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 503);
    assert_eq!(content_type, "application/json");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"message": "[forward_auth] auth service unavailable", "status_code": 503})
    );

    // Down, deny: 503 text.
    let (status, _, body) = get(&proxy.url("/down"), &[("authorization", "good")]).await;
    assert_eq!(status, 503);
    assert_eq!(body, "[forward_auth] auth service unavailable\n");
    assert_eq!(echo.hits(), 0);

    // Down, allow: through.
    let (status, _, body) = get(&proxy.url("/open"), &[("authorization", "good")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(echo.hits(), 1);

    let text = metrics(&proxy).await;
    assert!(
        text.contains(
            "hookway_plugin_decisions_total{decision=\"unavailable\",plugin=\"forward_auth\",route=\"default/fa-down\"} 1"
        ),
        "{text}"
    );
}

// ---------------------------------------------------------------- csrf

const CSRF_SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: csrf-key, namespace: hookway-system}
stringData: {key: "9f2c1e6a4b8d7f03e5a1c9b2d4f6a8e0"}
"#;

#[tokio::test]
async fn csrf_issues_a_token_that_unlocks_unsafe_methods() {
    let echo = EchoServer::start("echo").await;
    let config = "{token_path: /csrf-token, secret: csrf-key, ttl: 30m}";
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("secret.yaml", CSRF_SECRET.to_owned()),
            ("plugin.yaml", plugin_yaml("csrf", "csrf", config)),
            ("route.yaml", route_yaml("csrf-route", "/", "csrf: {}")),
        ],
    )
    .await;
    let c = client();

    // The token endpoint answers without the upstream.
    let resp = c.get(proxy.url("/csrf-token")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    let issued = json(resp).await;
    assert_eq!(issued["name"], "x-csrf-token");
    let token = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(
        set_cookie,
        format!("x-csrf-token={token}; Path=/; Max-Age=1800; HttpOnly; SameSite=Strict")
    );
    assert_eq!(echo.hits(), 0);

    let post = |headers: Vec<(&'static str, String)>| {
        let mut req = c.post(proxy.url("/orders")).body("x");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let cookie = format!("x-csrf-token={token}");

    // Header and cookie, identical: through.
    let resp = post(vec![
        ("x-csrf-token", token.clone()),
        ("cookie", cookie.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["headers"]["x-csrf-token"], token.as_str());
    assert_eq!(echo.hits(), 1);

    // Safe methods pass without a token.
    let (status, _, _) = get(&proxy.url("/orders"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(echo.hits(), 2);

    // No token, header only, mismatching cookie, forged signature: 403.
    // The same token with the last signature digit changed.
    let (kept, last) = token.split_at(token.len() - 1);
    let forged = format!("{kept}{}", if last == "0" { "1" } else { "0" });
    for (what, headers) in [
        ("none", vec![]),
        ("header only", vec![("x-csrf-token", token.clone())]),
        ("cookie only", vec![("cookie", cookie.clone())]),
        (
            "mismatch",
            vec![
                ("x-csrf-token", token.clone()),
                ("cookie", format!("x-csrf-token={forged}")),
            ],
        ),
        (
            "forged",
            vec![
                ("x-csrf-token", forged.clone()),
                ("cookie", format!("x-csrf-token={forged}")),
            ],
        ),
    ] {
        let resp = post(headers).await.unwrap();
        assert_eq!(resp.status(), 403, "{what}");
        assert_eq!(
            resp.text().await.unwrap(),
            "[csrf] invalid csrf token\n",
            "{what}"
        );
    }
    assert_eq!(echo.hits(), 2, "refused requests never reach the upstream");
    let text = metrics(&proxy).await;
    let want = "hookway_plugin_decisions_total{decision=\"denied\",plugin=\"csrf\",route=\"default/csrf-route\"} 5";
    assert!(text.contains(want), "missing {want} in\n{text}");
}

// ---------------------------------------------------------------- referer / user agent

#[tokio::test]
async fn referer_restriction_allows_only_listed_hosts() {
    let echo = EchoServer::start("echo").await;
    let config = "{type: allow, referer_list: [example.com, \"*.example.com\"], error_type: json}";
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "plugin.yaml",
                plugin_yaml("hotlink", "referer_restriction", config),
            ),
            (
                "route.yaml",
                route_yaml("referer-route", "/", "hotlink: {}"),
            ),
        ],
    )
    .await;
    let url = proxy.url("/img.png");

    for referer in ["https://blog.example.com/post", "http://EXAMPLE.com/"] {
        let (status, _, body) = get(&url, &[("referer", referer)]).await;
        assert_eq!(status, 200, "{referer}: {body}");
    }
    assert_eq!(echo.hits(), 2);
    for referer in [
        Some("https://other.site/"),
        Some("https://evil.com/?example.com"),
        Some("https://notexample.com/"),
        None,
    ] {
        let headers: Vec<_> = referer.map(|r| ("referer", r)).into_iter().collect();
        let (status, content_type, body) = get(&url, &headers).await;
        assert_eq!(status, 403, "{referer:?}");
        assert_eq!(content_type, "application/json");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"message": "Request is forbidden", "status_code": 403})
        );
    }
    assert_eq!(echo.hits(), 2, "refused requests never reach the upstream");
}

#[tokio::test]
async fn ua_restriction_denies_matching_agents_except_on_excluded_paths_and_counts_denials() {
    let echo = EchoServer::start("echo").await;
    let config = "{type: deny, ua_list: [\"(?i)bot\", \"^curl/\"], message: no bots}";
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "plugin.yaml",
                plugin_yaml("no-bots", "ua_restriction", config),
            ),
            (
                "route.yaml",
                route_yaml(
                    "ua-route",
                    "/",
                    "no-bots: {excludePaths: [\"/robots.txt\", \"/public/*\"]}",
                ),
            ),
        ],
    )
    .await;

    for ua in ["Googlebot/2.1", "curl/8.5.0", "my-BOT"] {
        let (status, content_type, body) = get(&proxy.url("/shop"), &[("user-agent", ua)]).await;
        assert_eq!(status, 403, "{ua}");
        assert_eq!(content_type, "text/plain; charset=utf-8");
        assert_eq!(body, "no bots\n");
    }
    assert_eq!(echo.hits(), 0);
    for ua in [Some("Mozilla/5.0"), Some("x curl/8"), None] {
        let headers: Vec<_> = ua.map(|u| ("user-agent", u)).into_iter().collect();
        let (status, _, _) = get(&proxy.url("/shop"), &headers).await;
        assert_eq!(status, 200, "{ua:?}");
    }
    assert_eq!(echo.hits(), 3);

    // excludePaths on the reference: the plugin is skipped there, bots included.
    for path in ["/robots.txt", "/public/logo.png"] {
        let (status, _, body) = get(&proxy.url(path), &[("user-agent", "Googlebot/2.1")]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["path"],
            path
        );
    }
    let (status, _, _) = get(
        &proxy.url("/robots.txt.bak"),
        &[("user-agent", "Googlebot")],
    )
    .await;
    assert_eq!(status, 403, "only the listed paths are excluded");
    assert_eq!(echo.hits(), 5);

    // Each denial is counted with the plugin kind and the route.
    let text = metrics(&proxy).await;
    let want = "hookway_plugin_decisions_total{decision=\"denied\",plugin=\"ua_restriction\",route=\"default/ua-route\"} 4";
    assert!(text.contains(want), "missing {want} in\n{text}");
}

// ---------------------------------------------------------------- over TLS

/// A `kubernetes.io/tls` Secret `name` (namespace `default`), as YAML.
fn tls_secret_yaml(name: &str, cert_pem: &str, key_pem: &str) -> String {
    let block = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        block(cert_pem),
        block(key_pem)
    )
}

#[tokio::test]
async fn over_tls_the_csrf_cookie_is_secure_and_forward_auth_is_told_https() {
    let echo = EchoServer::start("echo").await;
    let auth = auth_server().await;
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["shop.test"]);
    let route = "apiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {name: tls-route, namespace: default}\nspec:\n  hosts: [shop.test]\n  tls: {secretName: shop-tls}\n  rules: [{path: {type: Prefix, value: /}}]\n  service: echo\n  plugins: {csrf: {}, sso: {}}\n";
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("tls.yaml", tls_secret_yaml("shop-tls", &cert, &key)),
            ("secret.yaml", CSRF_SECRET.to_owned()),
            (
                "csrf.yaml",
                plugin_yaml(
                    "csrf",
                    "csrf",
                    "{token_path: /csrf-token, secret: csrf-key}",
                ),
            ),
            (
                "sso.yaml",
                plugin_yaml("sso", "forward_auth", &forward_auth_config(auth, "")),
            ),
            ("route.yaml", route.to_owned()),
        ],
    )
    .await;
    let c = tls_client(&ca.pem, &["shop.test"], proxy.https.unwrap());
    let base = format!("https://shop.test:{}", proxy.https.unwrap().port());

    let resp = c
        .get(format!("{base}/csrf-token"))
        .header("authorization", "good")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.ends_with("; HttpOnly; SameSite=Strict; Secure"),
        "{set_cookie}"
    );
    let token = json(resp).await["token"].as_str().unwrap().to_owned();

    let resp = c
        .post(format!("{base}/orders"))
        .header("authorization", "good")
        .header("x-csrf-token", &token)
        .header("cookie", format!("x-csrf-token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await;
    let told = seen["headers"]["x-seen"].as_str().unwrap();
    assert!(told.starts_with("GET POST /orders https "), "{told}");
}
