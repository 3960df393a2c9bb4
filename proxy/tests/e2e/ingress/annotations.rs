//! One test per translated ingress-nginx annotation family, proving the observable behaviour.

use super::*;

fn host_rule(host: &str, path: &str, kind: &str) -> String {
    rules(&[rule(host, path, kind, "web")])
}

#[tokio::test]
async fn rewrite_target_with_capture_groups_and_upstream_vhost() {
    let web = EchoServer::start("web").await;
    let api = EchoServer::start("api").await;
    // Another Ingress of the same host with a plain `/`: the host is in regex mode, so `/` is a
    // regex too and the longer rewrite path wins (as in ingress-nginx), not the `/` prefix.
    let site = ingress_yaml(
        "site",
        &[],
        &rules(&[rule("rw.example.com", "/", "Prefix", "api")]),
    );
    let rewrite = ingress_yaml(
        "rewrite",
        &[
            ("rewrite-target", "/$2"),
            ("upstream-vhost", "internal.example"),
        ],
        &host_rule(
            "rw.example.com",
            "/something(/|$)(.*)",
            "ImplementationSpecific",
        ),
    );
    let (_dir, proxy) = serve(
        web.addr,
        Some(api.addr),
        &[("i.yaml", rewrite), ("site.yaml", site)],
    )
    .await;
    #[rustfmt::skip]
    let cases = [
        ("/something/new?x=1", "/new?x=1"),
        ("/something", "/"),
        ("/something/", "/"),
        ("/SOMETHING/a/b", "/a/b"),   // regex paths are case-insensitive, as in nginx
    ];
    for (path, want) in cases {
        let resp = get(&proxy, "rw.example.com", path).await;
        assert_eq!(resp.status(), 200, "{path}");
        let body = json(resp).await;
        assert_eq!(body["server"], "web", "{path}");
        assert_eq!(body["path"], want, "{path}");
        assert_eq!(body["headers"]["host"], "internal.example", "{path}");
    }
    let other = json(get(&proxy, "rw.example.com", "/other").await).await;
    assert_eq!(other["server"], "api");
    assert_eq!(other["path"], "/other", "no rewrite on the other Ingress");
}

#[tokio::test]
async fn redirect_annotations_answer_with_their_codes() {
    let web = EchoServer::start("web").await;
    let files = [
        (
            "p.yaml",
            ingress_yaml(
                "p",
                &[("permanent-redirect", "https://new.example.com/landing")],
                &host_rule("p.example.com", "/", "Prefix"),
            ),
        ),
        (
            "p8.yaml",
            ingress_yaml(
                "p8",
                &[
                    ("permanent-redirect", "https://new.example.com/"),
                    ("permanent-redirect-code", "308"),
                ],
                &host_rule("p8.example.com", "/", "Prefix"),
            ),
        ),
        (
            "t.yaml",
            ingress_yaml(
                "t",
                &[("temporal-redirect", "http://tmp.example.com/x")],
                &host_rule("t.example.com", "/", "Prefix"),
            ),
        ),
        (
            "f.yaml",
            ingress_yaml(
                "f",
                &[("force-ssl-redirect", "true")],
                &host_rule("f.example.com", "/", "Prefix"),
            ),
        ),
        (
            "a.yaml",
            ingress_yaml(
                "a",
                &[("app-root", "/app")],
                &host_rule("a.example.com", "/", "Prefix"),
            ),
        ),
    ];
    let (_dir, proxy) = serve(web.addr, None, &files.map(|(n, t)| (n, t))).await;
    #[rustfmt::skip]
    let cases = [
        ("p.example.com", "/any?q=1", 301, Some("https://new.example.com/landing")),
        ("p8.example.com", "/", 308, Some("https://new.example.com/")),
        ("t.example.com", "/y", 302, Some("http://tmp.example.com/x")),
        ("f.example.com", "/a?b=1", 308, Some("https://f.example.com/a?b=1")),
        ("a.example.com", "/", 302, Some("/app")),
        ("a.example.com", "/app", 200, None),
    ];
    for (host, path, status, location) in cases {
        let resp = get(&proxy, host, path).await;
        assert_eq!(resp.status(), status, "{host}{path}");
        assert_eq!(
            resp.headers().get("location").map(|v| v.to_str().unwrap()),
            location,
            "{host}{path}"
        );
    }
    assert_eq!(
        web.hits(),
        1,
        "only the app-root's /app reached the upstream"
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_with_ingress_nginx_defaults() {
    let web = EchoServer::start("web").await;
    let cors = ingress_yaml(
        "cors",
        &[
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://app.example.com"),
            ("cors-max-age", "600"),
        ],
        &host_rule("cors.example.com", "/", "Prefix"),
    );
    let (_dir, proxy) = serve(web.addr, None, &[("i.yaml", cors)]).await;
    let resp = no_redirects()
        .request(reqwest::Method::OPTIONS, proxy.url("/x"))
        .header("host", "cors.example.com")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PUT"));
    assert_eq!(web.hits(), 0, "the preflight never reaches the upstream");
    let resp = no_redirects()
        .get(proxy.url("/x"))
        .header("host", "cors.example.com")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
}

#[tokio::test]
async fn source_ranges_allow_and_deny_by_client_address() {
    let web = EchoServer::start("web").await;
    let files = [
        (
            "a.yaml",
            ingress_yaml(
                "a",
                &[("whitelist-source-range", "10.0.0.0/8")],
                &host_rule("a.example.com", "/", "Prefix"),
            ),
        ),
        (
            "b.yaml",
            ingress_yaml(
                "b",
                &[("allowlist-source-range", "127.0.0.1/32, 10.0.0.0/8")],
                &host_rule("b.example.com", "/", "Prefix"),
            ),
        ),
        (
            "c.yaml",
            ingress_yaml(
                "c",
                &[("denylist-source-range", "127.0.0.0/8")],
                &host_rule("c.example.com", "/", "Prefix"),
            ),
        ),
    ];
    let (_dir, proxy) = serve(web.addr, None, &files).await;
    assert_eq!(get(&proxy, "a.example.com", "/").await.status(), 403);
    assert_eq!(get(&proxy, "b.example.com", "/").await.status(), 200);
    assert_eq!(get(&proxy, "c.example.com", "/").await.status(), 403);
    assert_eq!(web.hits(), 1);
}

#[tokio::test]
async fn canary_by_header_cookie_and_weight() {
    let web = EchoServer::start("web").await;
    let api = EchoServer::start("api").await;
    let main = ingress_yaml(
        "main",
        &[],
        &rules(&[
            rule("c.example.com", "/", "Prefix", "web"),
            rule("c.example.com", "/all", "Prefix", "web"),
        ]),
    );
    let by_request = ingress_yaml(
        "canary",
        &[
            ("canary", "true"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "beta"),
        ],
        &rules(&[rule("c.example.com", "/", "Prefix", "api")]),
    );
    let by_value = ingress_yaml(
        "canary-all",
        &[("canary", "true"), ("canary-weight", "100")],
        &rules(&[rule("c.example.com", "/all", "Prefix", "api")]),
    );
    let (_dir, proxy) = serve(
        web.addr,
        Some(api.addr),
        &[
            ("main.yaml", main),
            ("canary.yaml", by_request),
            ("all.yaml", by_value),
        ],
    )
    .await;
    let send = |headers: &'static [(&'static str, &'static str)], path: &'static str| {
        let mut req = no_redirects()
            .get(proxy.url(path))
            .header("host", "c.example.com");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move { json(req.send().await.unwrap()).await["server"].clone() }
    };
    assert_eq!(send(&[], "/").await, "web");
    assert_eq!(send(&[("x-canary", "always")], "/").await, "api");
    assert_eq!(send(&[("x-canary", "no")], "/").await, "web");
    assert_eq!(send(&[("cookie", "beta=always")], "/").await, "api");
    assert_eq!(
        send(&[], "/all").await,
        "api",
        "weight 100 sends everything"
    );
}

#[tokio::test]
async fn server_alias_timeouts_and_backend_protocol() {
    let web = EchoServer::start("web").await;
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["127.0.0.1"]);
    let tls_backend = EchoServer::start_tls("tls", &cert, &key).await;
    let files = [
        ("grants.yaml", GRANTS.to_string()),
        (
            "s.yaml",
            ingress_yaml(
                "s",
                &[
                    ("server-alias", "alias.example.com"),
                    ("proxy-read-timeout", "1"),
                ],
                &host_rule("main.example.com", "/", "Prefix"),
            ),
        ),
        (
            "h.yaml",
            ingress_yaml(
                "h",
                &[("backend-protocol", "HTTPS")],
                &rules(&[rule("tls.example.com", "/", "Prefix", "api")]),
            ),
        ),
    ];
    let (_dir, proxy) = serve(web.addr, Some(tls_backend.addr), &files).await;
    assert_eq!(
        server(&proxy, "alias.example.com", "/").await,
        (200, "web".into())
    );
    assert_eq!(
        server(&proxy, "main.example.com", "/").await,
        (200, "web".into())
    );
    let slow = no_redirects()
        .get(proxy.url("/"))
        .header("host", "main.example.com")
        .header("x-delay-ms", "3000")
        .send()
        .await
        .unwrap();
    assert_eq!(
        slow.status(),
        504,
        "proxy-read-timeout: 1 bounds the wait for the answer"
    );
    assert_eq!(
        server(&proxy, "tls.example.com", "/").await,
        (200, "tls".into())
    );
}
