//! auth-url, auth-type basic (refused: fails closed), limit-rps, proxy-body-size.

use super::*;

fn host_rule(host: &str) -> String {
    rules(&[rule(host, "/", "Prefix", "web")])
}

#[tokio::test]
async fn auth_url_lets_2xx_through_and_returns_the_refusal() {
    let web = EchoServer::start("web").await;
    let allow = EchoServer::start("allow").await;
    let deny = EchoServer::with_status("deny", 401).await;
    let files = [
        ("grants.yaml", GRANTS.to_string()),
        (
            "a.yaml",
            ingress_yaml(
                "a",
                &[("auth-url", &format!("http://{}/check", allow.addr))],
                &host_rule("a.example.com"),
            ),
        ),
        (
            "s.yaml",
            ingress_yaml(
                "s",
                &[
                    ("auth-url", &format!("http://{}/check", deny.addr)),
                    (
                        "auth-signin",
                        "https://$host/oauth2/start?rd=$escaped_request_uri",
                    ),
                ],
                &host_rule("s.example.com"),
            ),
        ),
        (
            "d.yaml",
            ingress_yaml(
                "d",
                &[("auth-url", &format!("http://{}/check", deny.addr))],
                &host_rule("d.example.com"),
            ),
        ),
    ];
    let (_dir, proxy) = serve(web.addr, None, &files).await;
    assert_eq!(
        server(&proxy, "a.example.com", "/x").await,
        (200, "web".into())
    );
    assert_eq!(allow.hits(), 1);
    let (status, _) = server(&proxy, "d.example.com", "/x").await;
    assert_eq!(status, 401);
    assert_eq!(deny.hits(), 1);
    // auth-signin: the 401 becomes a redirect to the sign-in page.
    let resp = get(&proxy, "s.example.com", "/cart?x=1").await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        "https://s.example.com/oauth2/start?rd=%2Fcart%3Fx%3D1"
    );
    assert_eq!(
        web.hits(),
        1,
        "the refused requests never reached the upstream"
    );
}

/// An htpasswd Secret: alice ("secret pass", APR1-MD5 as `htpasswd` writes it) and bob
/// ("secret", `{SHA}` as `htpasswd -s` writes it).
const HTPASSWD: &str = "apiVersion: v1
kind: Secret
metadata: {name: users, namespace: default}
type: Opaque
stringData:
  auth: |
    alice:$apr1$abcdefgh$ZAdX7G.l3eDbgTYbm5ePE0
    bob:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=
";

#[tokio::test]
async fn basic_auth_checks_the_htpasswd_secret_and_fails_closed() {
    let web = EchoServer::start("web").await;
    let files = [
        ("users.yaml", HTPASSWD.to_string()),
        (
            "basic.yaml",
            ingress_yaml(
                "basic",
                &[
                    ("auth-type", "basic"),
                    ("auth-secret", "users"),
                    ("auth-realm", "Shop"),
                ],
                &host_rule("basic.example.com"),
            ),
        ),
        (
            "missing.yaml",
            ingress_yaml(
                "missing",
                &[("auth-type", "basic"), ("auth-secret", "nobody")],
                &host_rule("missing.example.com"),
            ),
        ),
        (
            "digest.yaml",
            ingress_yaml(
                "digest",
                &[("auth-type", "digest"), ("auth-secret", "users")],
                &host_rule("digest.example.com"),
            ),
        ),
    ];
    let (_dir, proxy) = serve(web.addr, None, &files).await;
    let with = |user: Option<(&str, &str)>| {
        let mut req = no_redirects()
            .get(proxy.url("/"))
            .header("host", "basic.example.com");
        if let Some((u, p)) = user {
            req = req.basic_auth(u, Some(p));
        }
        req.send()
    };
    let refused = with(None).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Basic realm=\"Shop\""
    );
    assert_eq!(
        with(Some(("alice", "secret pass"))).await.unwrap().status(),
        200
    );
    assert_eq!(with(Some(("alice", "secret"))).await.unwrap().status(), 401);
    assert_eq!(with(Some(("bob", "secret"))).await.unwrap().status(), 200);
    assert_eq!(web.hits(), 2);
    // A missing Secret or an unsupported auth-type: never served unprotected.
    assert_eq!(get(&proxy, "missing.example.com", "/").await.status(), 404);
    assert_eq!(get(&proxy, "digest.example.com", "/").await.status(), 404);
    assert_eq!(web.hits(), 2);
}

#[tokio::test]
async fn limit_rps_refuses_the_excess_and_body_size_answers_413() {
    let web = EchoServer::start("web").await;
    let files = [
        (
            "l.yaml",
            ingress_yaml("l", &[("limit-rps", "2")], &host_rule("l.example.com")),
        ),
        (
            "b.yaml",
            ingress_yaml(
                "b",
                &[("proxy-body-size", "1k")],
                &host_rule("b.example.com"),
            ),
        ),
    ];
    let (_dir, proxy) = serve(web.addr, None, &files).await;
    // 5 requests span at most two 1-second windows: at most 4 pass.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&proxy, "l.example.com", "/").await.status().as_u16());
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let post = |len: usize| {
        no_redirects()
            .post(proxy.url("/upload"))
            .header("host", "b.example.com")
            .body(vec![b'x'; len])
            .send()
    };
    assert_eq!(post(1024).await.unwrap().status(), 200);
    assert_eq!(post(1025).await.unwrap().status(), 413);
}

#[tokio::test]
async fn limit_connections_answers_503_while_the_limit_is_in_flight() {
    let mut held = HeldServer::start().await;
    let files = [(
        "c.yaml",
        ingress_yaml(
            "c",
            &[("limit-connections", "1")],
            &host_rule("c.example.com"),
        ),
    )];
    let (_dir, proxy) = serve(held.addr, None, &files).await;
    let first = tokio::spawn({
        let url = proxy.url("/first");
        async move {
            no_redirects()
                .get(url)
                .header("host", "c.example.com")
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    held.arrived().await;
    assert_eq!(get(&proxy, "c.example.com", "/second").await.status(), 503);
    held.release();
    assert_eq!(first.await.unwrap(), 200);
    // The finished request no longer counts.
    assert_eq!(get(&proxy, "c.example.com", "/third").await.status(), 200);
}
