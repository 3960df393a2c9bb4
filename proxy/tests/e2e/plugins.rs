//! Plugins through a real proxy and upstream, configured by manifests as a user writes them:
//! precedence tiers, the onion, credentials from Secrets, limits, the no-route chain.

use crate::support::*;

const PLUGINS: &str = r#"
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: rid, namespace: hookway-system}
spec: {plugin: request_id, status: global, order: 1, config: {}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: tag, namespace: hookway-system}
spec:
  plugin: headers
  status: global
  order: 5
  config: {request: {set: {x-tier: cluster}}, response: {set: {x-tag: cluster}}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: keys, namespace: hookway-system}
spec:
  plugin: auth
  status: enable
  order: 10
  config:
    credentials: [{type: apikey, secret: api-keys, header: x-api-key}]
    hide_credentials: true
    error_type: json
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: limit, namespace: hookway-system}
spec:
  plugin: rate_limiting
  status: enable
  order: 20
  config: {minute: 3, key: consumer}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: deny-local, namespace: hookway-system}
spec:
  plugin: ip_restriction
  status: enable
  order: 3
  config: {ip_list_type: black, ip_black_list: ["127.0.0.0/8"]}
---
apiVersion: v1
kind: Secret
metadata: {name: api-keys, namespace: hookway-system}
stringData:
  alice: alice-key
  alice.labels: "team=red"
"#;

const ROUTES: &str = r#"
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: open, namespace: default}
spec:
  rules: [{path: {type: Prefix, value: /open}}]
  service: echo
  plugins:
    tag: {config: {request: {set: {x-tier: route}}, response: {set: {x-tag: route}}}}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: private, namespace: default}
spec:
  rules: [{path: {type: Prefix, value: /private}}]
  service: echo
  plugins:
    keys: {}
    limit: {excludePaths: ["/private/unlimited*"]}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: blocked, namespace: default}
spec:
  rules: [{path: {type: Prefix, value: /blocked}}]
  service: echo
  plugins: {deny-local: {}}
"#;

async fn setup() -> (EchoServer, ManifestDir, Proxy) {
    let echo = EchoServer::start("echo").await;
    let dir = ManifestDir::new();
    dir.write("service.yaml", &service_yaml("echo", &[echo.addr]));
    dir.write("plugins.yaml", PLUGINS);
    dir.write("routes.yaml", ROUTES);
    let proxy = standalone_proxy(&dir).await;
    (echo, dir, proxy)
}

#[tokio::test]
async fn route_config_replaces_the_cluster_config_and_globals_run_everywhere() {
    let (_echo, _dir, proxy) = setup().await;
    let resp = client().get(proxy.url("/open/x")).send().await.unwrap();
    assert_eq!(resp.headers()["x-tag"], "route");
    assert!(resp.headers().contains_key("x-request-id"));
    let seen = json(resp).await;
    assert_eq!(seen["headers"]["x-tier"], "route");
    assert!(seen["headers"]["x-request-id"].is_string());

    // The no-route chain runs the cluster-wide globals before answering 404.
    let resp = client().get(proxy.url("/nowhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-tag"], "cluster");
    assert!(resp.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn auth_from_a_secret_then_rate_limit_per_consumer() {
    let (echo, _dir, proxy) = setup().await;
    let c = client();
    let resp = c.get(proxy.url("/private/a")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(json(resp).await["status_code"], 401);
    let before = echo.hits();
    let wrong = c
        .get(proxy.url("/private/a"))
        .header("x-api-key", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        echo.hits(),
        before,
        "rejected requests never reach the upstream"
    );

    for i in 0..3 {
        let resp = c
            .get(proxy.url("/private/a"))
            .header("x-api-key", "alice-key")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.headers()["x-ratelimit-limit-minute"], "3");
        let seen = json(resp).await;
        assert!(
            seen["headers"].get("x-api-key").is_none(),
            "hide_credentials strips the key"
        );
    }
    let limited = c
        .get(proxy.url("/private/a"))
        .header("x-api-key", "alice-key")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));

    // excludePaths on the reference skips the limiter (auth still runs).
    let unlimited = c
        .get(proxy.url("/private/unlimited"))
        .header("x-api-key", "alice-key")
        .send()
        .await
        .unwrap();
    assert_eq!(unlimited.status(), 200);
    assert!(!unlimited.headers().contains_key("x-ratelimit-limit-minute"));
}

#[tokio::test]
async fn an_early_answer_still_runs_the_outer_response_hooks() {
    let (echo, _dir, proxy) = setup().await;
    let before = echo.hits();
    let resp = client().get(proxy.url("/blocked")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    // Chain: rid (1) → deny-local (3) answers → tag (5) never runs. rid's response hook still
    // sees the early answer (the onion); tag's does not.
    assert!(resp.headers().contains_key("x-request-id"));
    assert!(!resp.headers().contains_key("x-tag"));
    assert_eq!(
        resp.text().await.unwrap().trim(),
        "[ip_restriction] Illegal IP!"
    );
    assert_eq!(echo.hits(), before);
}
