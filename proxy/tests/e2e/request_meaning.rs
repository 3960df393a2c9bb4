//! One request, one meaning: every bypass class of issue 14 tried on a real socket — dot
//! segments and escapes around `excludePaths`, `ip_restriction` and per-prefix Routes; one
//! authority for routing, TLS and the upstream; headers a client cannot forge or strip.

use std::net::SocketAddr;

use super::raw::{self, get, Recorder};
use super::support::*;

/// A cluster-wide `auth` (API keys in Secret `keys`) that skips `/public/*`, in front of a
/// catch-all Route to `upstream`.
async fn auth_gate(upstream: SocketAddr) -> (ManifestDir, Proxy) {
    let manifests = [
        (
            "keys.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: keys\n  namespace: hookway-system\n  labels: {hookway.dev/credentials: \"true\"}\nstringData:\n  alice: k-alice\n".to_owned(),
        ),
        (
            "gate.yaml",
            "apiVersion: hookway.dev/v1alpha1\nkind: GatewayPlugin\nmetadata: {name: gate, namespace: hookway-system}\nspec:\n  plugin: auth\n  status: global\n  excludePaths: [\"/public/*\"]\n  config: {credentials: [{type: apikey, secret: keys}]}\n".to_owned(),
        ),
        ("route.yaml", route_yaml("all", "/", "")),
    ];
    proxy_with(upstream, &manifests).await
}

#[tokio::test]
async fn dot_segments_and_escapes_cannot_walk_around_exclude_paths() {
    let up = Recorder::start().await;
    let (_dir, proxy) = auth_gate(up.addr).await;
    // (request target, API key header?, status, target the upstream saw)
    let table: &[(&str, bool, u16, Option<&str>)] = &[
        ("/admin", false, 401, None),
        ("/public/x", false, 200, Some("/public/x")),
        ("/public/../admin", false, 401, None),
        ("/public/%2e%2e/admin", false, 401, None),
        ("/public/%2E%2e/admin", false, 401, None),
        ("/public/.%2e/admin", false, 401, None),
        ("/public/x/../../admin", false, 401, None),
        ("/public//../admin", false, 401, None),
        ("/public/./../admin", false, 401, None),
        ("/public/..%2fadmin", false, 400, None),
        ("/public/..%2Fadmin", false, 400, None),
        ("/public/..%5cadmin", false, 400, None),
        ("/public/..;/admin", false, 400, None),
        ("/public/..;x=1/admin", false, 400, None),
        ("/public/../../admin", false, 400, None),
        ("/public/%zz", false, 400, None),
        ("http://gate.example/public/../admin", false, 401, None),
        // With credentials the canonical path goes upstream, query untouched.
        (
            "/public/../admin?next=/../x",
            true,
            200,
            Some("/admin?next=/../x"),
        ),
        ("/public/%61dmin", false, 200, Some("/public/admin")),
        ("//public///x", false, 200, Some("/public/x")),
    ];
    for (target, key, status, upstream_saw) in table {
        let before = up.seen().len();
        let extra = if *key {
            "Authorization: Bearer k-alice\r\n"
        } else {
            ""
        };
        let resp = raw::send(proxy.http, &get(target, "gate.example", extra))
            .await
            .unwrap_or_else(|| panic!("{target}: no answer"));
        assert_eq!(resp.status, *status, "{target}: {}", resp.body);
        match upstream_saw {
            Some(want) => {
                assert_eq!(up.seen().len(), before + 1, "{target}");
                assert_eq!(up.last().unwrap().target, *want, "{target}");
            }
            None => assert_eq!(up.seen().len(), before, "{target} reached the upstream"),
        }
    }
}

#[tokio::test]
async fn dot_segments_cannot_pick_another_route_or_skip_ip_restriction() {
    let open = Recorder::start().await;
    let admin = Recorder::start().await;
    let dir = ManifestDir::new();
    dir.write("open.yaml", &service_yaml("open", &[open.addr]));
    dir.write("admin.yaml", &service_yaml("admin", &[admin.addr]));
    dir.write(
        "deny.yaml",
        &plugin_yaml(
            "deny-local",
            "ip_restriction",
            "{ip_list_type: black, ip_black_list: [127.0.0.1]}",
        ),
    );
    dir.write(
        "routes.yaml",
        "apiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {name: open, namespace: default}\nspec:\n  rules: [{path: {type: Prefix, value: /}}]\n  service: open\n---\napiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {name: admin, namespace: default}\nspec:\n  rules: [{path: {type: Prefix, value: /admin}}]\n  service: admin\n  plugins: {deny-local: {}}\n---\napiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {name: api, namespace: default}\nspec:\n  rules: [{path: {type: Exact, value: /api/v1}}]\n  service: admin\n",
    );
    let proxy = standalone_proxy(&dir).await;
    // (target, status, which upstream, target it saw)
    type Case<'a> = (&'a str, u16, Option<(&'a Recorder, &'a str)>);
    let table: &[Case] = &[
        ("/x", 200, Some((&open, "/x"))),
        ("/admin", 403, None),
        ("/x/../admin", 403, None),
        ("/x/%2e%2e/admin/y", 403, None),
        ("/%61dmin", 403, None),
        ("/x/..%2fadmin", 400, None),
        ("/static/../api/v1", 200, Some((&admin, "/api/v1"))),
        ("/api/./v1", 200, Some((&admin, "/api/v1"))),
        ("/api//v1", 200, Some((&admin, "/api/v1"))),
    ];
    for (target, status, saw) in table {
        let (open_before, admin_before) = (open.seen().len(), admin.seen().len());
        let resp = raw::send(proxy.http, &get(target, "h.example", ""))
            .await
            .unwrap_or_else(|| panic!("{target}: no answer"));
        assert_eq!(resp.status, *status, "{target}: {}", resp.body);
        match saw {
            Some((rec, want)) => assert_eq!(rec.last().unwrap().target, *want, "{target}"),
            None => assert_eq!(
                (open.seen().len(), admin.seen().len()),
                (open_before, admin_before),
                "{target} reached an upstream"
            ),
        }
    }
}

#[tokio::test]
async fn escaped_slashes_and_merging_follow_the_settings() {
    let up = Recorder::start().await;
    let settings = [
        (hookway_proxy::canonical::EscapedSlashes::Keep, true),
        (hookway_proxy::canonical::EscapedSlashes::Decode, false),
    ];
    // (target, [status, upstream target] for keep+merge, then for decode without merging)
    let table: &[(&str, [(u16, &str); 2])] = &[
        ("/a%2fb", [(200, "/a%2Fb"), (200, "/a/b")]),
        ("/a\\b", [(200, "/a%5Cb"), (200, "/a/b")]),
        ("/p/..%2fq", [(200, "/p/..%2Fq"), (200, "/q")]),
        ("/a//b", [(200, "/a/b"), (200, "/a//b")]),
        ("/..%2f..%2fetc", [(200, "/..%2F..%2Fetc"), (400, "")]),
    ];
    for (i, (slashes, merge)) in settings.into_iter().enumerate() {
        let mut config = test_config();
        config.rules.path = hookway_proxy::canonical::PathOptions {
            merge_slashes: merge,
            escaped_slashes: slashes,
        };
        let proxy = Proxy::start_with(Some(simple(1, &[up.addr])), config).await;
        for (target, outcomes) in table {
            let (status, want) = outcomes[i];
            let resp = raw::send(proxy.http, &get(target, "h", "")).await.unwrap();
            assert_eq!(
                resp.status, status,
                "{target} with {slashes:?}: {}",
                resp.body
            );
            if status == 200 {
                assert_eq!(up.last().unwrap().target, want, "{target} with {slashes:?}");
            }
        }
    }
}

#[tokio::test]
async fn one_authority_for_routing_and_the_upstream() {
    let a = Recorder::start().await;
    let other = Recorder::start().await;
    let snap = snapshot(
        1,
        vec![
            route("a", &["a.example"], vec![], "a"),
            route("other", &[], vec![], "other"),
        ],
        vec![upstream("a", &[a.addr]), upstream("other", &[other.addr])],
        vec![],
    );
    let proxy = Proxy::start(Some(snap)).await;
    // (raw request, status, Host the route-a upstream saw; None = not routed to a)
    let table: Vec<(Vec<u8>, u16, Option<&str>)> = vec![
        (get("/", "a.example", ""), 200, Some("a.example")),
        (get("/", "A.EXAMPLE.", ""), 200, Some("a.example")),
        (get("/", "a.example:80", ""), 200, Some("a.example")),
        (get("/", "a.example:8080", ""), 200, Some("a.example:8080")),
        (get("/", "b.example", ""), 200, None),
        // Absolute-form: the target's authority wins over Host.
        (
            get("http://a.example/x", "b.example", ""),
            200,
            Some("a.example"),
        ),
        (get("http://b.example/x", "a.example", ""), 200, None),
        (get("/", "a.example", "Host: b.example\r\n"), 400, None),
        (
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            None,
        ),
        (get("/", "a.example/../b", ""), 400, None),
        (get("/", "user@a.example", ""), 400, None),
    ];
    for (request, status, host) in table {
        let text = String::from_utf8_lossy(&request).into_owned();
        let before = a.seen().len();
        let resp = raw::send(proxy.http, &request)
            .await
            .unwrap_or_else(|| panic!("{text:?}: no answer"));
        assert_eq!(resp.status, status, "{text:?}: {}", resp.body);
        match host {
            Some(h) => {
                assert_eq!(a.seen().len(), before + 1, "{text:?}");
                let seen = a.last().unwrap();
                assert_eq!(seen.headers["host"], h, "{text:?}");
                assert_eq!(seen.headers["x-forwarded-host"], h, "{text:?}");
            }
            None => assert_eq!(a.seen().len(), before, "{text:?} routed to a.example"),
        }
    }
}

#[tokio::test]
async fn a_host_is_served_only_on_a_connection_with_its_certificate() {
    let up = Recorder::start().await;
    let ca = Ca::new();
    let snap = snapshot(
        1,
        vec![route("all", &[], vec![], "up")],
        vec![upstream("up", &[up.addr])],
        vec![
            ca.entry("a-cert", &["a.example"]),
            ca.entry("b-cert", &["b.example"]),
            ca.entry("wild", &["*.shared.example"]),
        ],
    );
    let proxy = Proxy::start(Some(snap)).await;
    let https = proxy.https.unwrap();
    // (SNI, Host, status)
    let table = [
        ("a.example", "a.example", 200),
        ("a.example", "A.example:443", 200),
        ("a.example", "b.example", 421),
        ("b.example", "a.example", 421),
        ("x.shared.example", "y.shared.example", 200),
        ("x.shared.example", "a.example", 421),
        // A host with no certificate of its own on a tenant's connection.
        ("a.example", "nocert.example", 421),
    ];
    for (sni, host, status) in table {
        // HTTP/1.1: over HTTP/2 a Host that differs from :authority is a 400 of its own.
        let client = reqwest::Client::builder()
            .timeout(WAIT)
            .no_proxy()
            .http1_only()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
            .resolve(sni, https)
            .build()
            .unwrap();
        let resp = client
            .get(format!("https://{sni}:{}/", https.port()))
            .header("host", host)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{sni} {host}: {e}"));
        assert_eq!(resp.status().as_u16(), status, "SNI {sni}, Host {host}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_go_before_plugins_and_cannot_remove_theirs() {
    let up = Recorder::start().await;
    let (_dir, proxy) = proxy_with(
        up.addr,
        &[
            (
                "tag.yaml",
                plugin_yaml(
                    "tag",
                    "headers",
                    "{request: {set: {x-added-by-plugin: yes}}}",
                ),
            ),
            ("route.yaml", route_yaml("r", "/", "tag: {}")),
        ],
    )
    .await;
    let extra = "Connection: x-added-by-plugin, x-client-secret\r\nX-Client-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n";
    let req = format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
    let resp = raw::send(proxy.http, req.as_bytes()).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = up.last().unwrap();
    assert_eq!(seen.headers["x-added-by-plugin"], "yes");
    for gone in ["x-client-secret", "keep-alive", "proxy-connection"] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the upstream"
        );
    }
}

/// A headers plugin that names a hop-by-hop field does not declare that it keeps them
/// (`Plugin::keeps_hop_by_hop`): the upstream call removes what it added, and the fields its
/// `Connection` names, as for a client's.
#[tokio::test]
async fn hop_by_hop_fields_a_plugin_adds_never_reach_the_upstream() {
    let table = [
        (
            "{request: {set: {connection: x-env, x-env: \"1\"}}}",
            &["connection", "x-env"][..],
        ),
        ("{request: {set: {te: gzip}}}", &["te"][..]),
        (
            "{request: {add: {keep-alive: timeout=5}}}",
            &["keep-alive"][..],
        ),
        (
            "{request: {rename: {x-a: upgrade}}}",
            &["upgrade", "x-a"][..],
        ),
        (
            "{request: {set: {proxy-connection: keep-alive}}}",
            &["proxy-connection"][..],
        ),
    ];
    for (config, gone) in table {
        let up = Recorder::start().await;
        let (_dir, proxy) = proxy_with(
            up.addr,
            &[
                ("tag.yaml", plugin_yaml("tag", "headers", config)),
                ("route.yaml", route_yaml("r", "/", "tag: {}")),
            ],
        )
        .await;
        // `X-A` for the rename to turn into `Upgrade`.
        let resp = raw::send(proxy.http, b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{config}: {}", resp.body);
        let seen = up.last().unwrap();
        for name in gone {
            assert!(
                !seen.headers.contains_key(*name),
                "{config}: {name} reached the upstream"
            );
        }
    }
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_clients_are_replaced() {
    let up = Recorder::start().await;
    let forged = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n";
    let deny_forged = (
        "deny.yaml",
        plugin_yaml(
            "deny-forged",
            "ip_restriction",
            "{ip_list_type: black, ip_black_list: [6.6.6.6]}",
        ),
    );
    // Untrusted (the default): the forged values are replaced and the peer is the client.
    let (_dir, proxy) = proxy_with(
        up.addr,
        &[
            deny_forged.clone(),
            ("route.yaml", route_yaml("r", "/", "deny-forged: {}")),
        ],
    )
    .await;
    let resp = raw::send(proxy.http, &get("/", "h.example", forged))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "a forged X-Forwarded-For decides nothing");
    let seen = up.last().unwrap();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "h.example");
    assert!(!seen.headers.contains_key("forwarded"));
    assert!(!seen.headers.contains_key("x-real-ip"));

    // Trusted: the chain is kept and extended, and the forwarded client is the client.
    let mut config = test_config();
    config.rules.trusted_proxies = vec!["127.0.0.0/8".into()];
    let dir = ManifestDir::new();
    dir.write("service.yaml", &service_yaml("echo", &[up.addr]));
    dir.write(deny_forged.0, &deny_forged.1);
    dir.write("route.yaml", &route_yaml("r", "/", "deny-forged: {}"));
    let trusted = Proxy::start_with(None, config).await;
    tokio::spawn(hookway_proxy::standalone::watch(
        dir.path.clone(),
        hookway_proxy::standalone::StandaloneOptions::default(),
        hookway_proxy::plugins::builtin().catalogue().clone(),
        trusted.tx.clone(),
    ));
    trusted.wait_version(1).await;
    let resp = raw::send(trusted.http, &get("/", "h.example", forged))
        .await
        .unwrap();
    assert_eq!(resp.status, 403, "the trusted hop's client is denied");
    let resp = raw::send(
        trusted.http,
        &get(
            "/",
            "h.example",
            "X-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\n",
        ),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = up.last().unwrap();
    assert_eq!(seen.headers["x-forwarded-for"], "7.7.7.7, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
}

/// An auth service: `authorization: good` → 200 with `x-user: alice`; `anon` → 200 without
/// identity headers; anything else 401.
async fn identity_service() -> SocketAddr {
    use http::{Request, Response};
    use http_body_util::Full;
    use hyper::body::Incoming;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let who = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.as_bytes().to_vec());
                    let resp = match who.as_deref() {
                        Some(b"good") => Response::builder().header("x-user", "alice"),
                        Some(b"anon") => Response::builder(),
                        _ => Response::builder().status(401),
                    };
                    Ok::<_, std::convert::Infallible>(
                        resp.body(Full::new(bytes::Bytes::new())).unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn forward_auth_identity_headers_cannot_be_forged() {
    let up = Recorder::start().await;
    let auth = identity_service().await;
    let down = dead_addr().await;
    let (_dir, proxy) = proxy_with(
        up.addr,
        &[
            (
                "sso.yaml",
                plugin_yaml(
                    "sso",
                    "forward_auth",
                    &format!("{{address: \"http://{auth}/check\", auth_request_headers: [authorization], auth_response_headers: [x-user, x-groups]}}"),
                ),
            ),
            (
                "sso-down.yaml",
                plugin_yaml(
                    "sso-down",
                    "forward_auth",
                    &format!("{{address: \"http://{down}/check\", auth_response_headers: [x-user], failure_policy: allow, timeout: 300ms}}"),
                ),
            ),
            ("a.yaml", route_yaml("a", "/a", "sso: {}")),
            ("b.yaml", route_yaml("b", "/b", "sso-down: {}")),
        ],
    )
    .await;
    let forged = "X-User: admin\r\nX-Groups: root\r\n";
    // (target, authorization, status, x-user the upstream saw)
    let table = [
        ("/a", "anon", 200, None),
        ("/a", "good", 200, Some("alice")),
        ("/a", "bad", 401, None),
        ("/b", "anon", 200, None),
    ];
    for (target, who, status, user) in table {
        let before = up.seen().len();
        let extra = format!("{forged}Authorization: {who}\r\n");
        let resp = raw::send(proxy.http, &get(target, "h", &extra))
            .await
            .unwrap();
        assert_eq!(resp.status, status, "{target} as {who}: {}", resp.body);
        if status != 200 {
            assert_eq!(up.seen().len(), before);
            continue;
        }
        let seen = up.last().unwrap();
        assert_eq!(
            seen.headers.get("x-user").map(|v| v.to_str().unwrap()),
            user,
            "{target} as {who}"
        );
        if target == "/a" {
            assert!(!seen.headers.contains_key("x-groups"), "{target} as {who}");
        }
    }
}

#[tokio::test]
async fn forward_auth_speaks_https_with_rustls() {
    let up = Recorder::start().await;
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost"]);
    let auth = EchoServer::start_tls("auth", &cert, &key).await;
    let ca_yaml = ca.pem.replace('\n', "\\n");
    let (_dir, proxy) = proxy_with(
        up.addr,
        &[
            (
                "sso.yaml",
                plugin_yaml(
                    "sso",
                    "forward_auth",
                    &format!(
                        "{{address: \"https://localhost:{}/check\", tls_ca: \"{ca_yaml}\"}}",
                        auth.addr.port()
                    ),
                ),
            ),
            (
                "untrusted.yaml",
                plugin_yaml(
                    "sso-untrusted",
                    "forward_auth",
                    &format!(
                        "{{address: \"https://localhost:{}/check\"}}",
                        auth.addr.port()
                    ),
                ),
            ),
            ("a.yaml", route_yaml("a", "/a", "sso: {}")),
            ("b.yaml", route_yaml("b", "/b", "sso-untrusted: {}")),
        ],
    )
    .await;
    let resp = raw::send(proxy.http, &get("/a", "h", "")).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(auth.hits(), 1);
    // The system roots do not know the test CA: the auth call fails, `deny` answers 503.
    let resp = raw::send(proxy.http, &get("/b", "h", "")).await.unwrap();
    assert_eq!(resp.status, 503, "{}", resp.body);
}

#[tokio::test]
async fn the_access_log_keeps_the_original_target_and_redacts_credentials() {
    let up = Recorder::start().await;
    let logs = ManifestDir::new();
    let path = logs.path.join("access.log");
    let (_dir, proxy) = proxy_with(
        up.addr,
        &[
            (
                "log.yaml",
                plugin_yaml(
                    "log",
                    "access_log",
                    &format!(
                        "{{output: file, path: \"{}\", redact: [session]}}",
                        path.display()
                    ),
                ),
            ),
            ("route.yaml", route_yaml("r", "/", "log: {}")),
        ],
    )
    .await;
    let target = "/x/../y?apikey=s3cret-1&jwt_token=s3cret-2&session=s3cret-3&page=2";
    let resp = raw::send(
        proxy.http,
        &get(target, "h", "Authorization: Bearer s3cret-4\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        up.last().unwrap().target,
        "/y?apikey=s3cret-1&jwt_token=s3cret-2&session=s3cret-3&page=2",
        "the upstream gets the query as sent"
    );
    let deadline = std::time::Instant::now() + WAIT;
    let line = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break line.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no access log line");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        !line.contains("s3cret"),
        "a credential reached the log: {line}"
    );
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        entry["path"],
        "/y?apikey=REDACTED&jwt_token=REDACTED&session=REDACTED&page=2"
    );
    assert_eq!(
        entry["original_path"],
        "/x/../y?apikey=REDACTED&jwt_token=REDACTED&session=REDACTED&page=2"
    );
    assert_eq!(entry["client_ip"], "127.0.0.1");
}
