//! Path types, host rules, defaultBackend, classes, TLS and the `hookway.dev/plugins` annotation.

use super::*;

#[tokio::test]
async fn path_types_hosts_and_default_backend() {
    let web = EchoServer::start("web").await;
    let api = EchoServer::start("api").await;
    let shop = format!(
        "  defaultBackend: {{service: {{name: web, port: {{name: http}}}}}}\n{}",
        rules(&[
            rule("shop.example.com", "/exact", "Exact", "api"),
            rule("shop.example.com", "/api/", "Prefix", "api"),
            rule("shop.example.com", "/impl", "ImplementationSpecific", "api"),
            rule("*.wild.example.com", "/", "Prefix", "api"),
        ])
    );
    let foreign = ingress_yaml(
        "foreign",
        &[],
        &rules(&[rule("nginx.example.com", "/", "Prefix", "api")]),
    )
    .replace("ingressClassName: hookway", "ingressClassName: nginx");
    let classless = ingress_yaml(
        "classless",
        &[],
        &rules(&[rule("default.example.com", "/", "Prefix", "api")]),
    )
    .replace("  ingressClassName: hookway\n", "");
    let (_dir, proxy) = serve(
        web.addr,
        Some(api.addr),
        &[
            ("shop.yaml", ingress_yaml("shop", &[], &shop)),
            ("foreign.yaml", foreign),
            ("classless.yaml", classless),
        ],
    )
    .await;
    #[rustfmt::skip]
    let cases: &[(&str, &str, u16, &str)] = &[
        ("shop.example.com", "/exact", 200, "api"),
        ("shop.example.com", "/exact/x", 200, "web"),    // Exact only; defaultBackend catches the rest
        ("shop.example.com", "/api", 200, "api"),        // Prefix /api/ = /api, element-wise
        ("shop.example.com", "/api/v1/x", 200, "api"),
        ("shop.example.com", "/apix", 200, "web"),       // not the same path element
        ("shop.example.com", "/impl/a", 200, "api"),     // ImplementationSpecific = Prefix
        ("shop.example.com", "/", 200, "web"),
        ("SHOP.example.com", "/api", 200, "api"),        // hosts are case-insensitive
        ("a.wild.example.com", "/x", 200, "api"),
        ("other.example.com", "/api", 404, ""),          // defaultBackend only for the Ingress's hosts
        ("nginx.example.com", "/", 404, ""),             // another controller's class: ignored
        ("default.example.com", "/", 200, "api"),        // no class: the default class is hookway's
    ];
    for (host, path, status, want) in cases {
        let (got_status, got) = server(&proxy, host, path).await;
        assert_eq!(got_status, *status, "{host}{path}: {got}");
        if *status == 200 {
            assert_eq!(got, *want, "{host}{path}");
        }
    }
}

#[tokio::test]
async fn tls_secret_is_served_and_http_is_redirected() {
    let web = EchoServer::start("web").await;
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["secure.example.com"]);
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: secure-tls, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert),
        indent(&key)
    );
    let spec = format!(
        "  tls: [{{hosts: [secure.example.com], secretName: secure-tls}}]\n{}",
        rules(&[rule("secure.example.com", "/", "Prefix", "web")])
    );
    let (_dir, proxy) = serve(
        web.addr,
        None,
        &[
            ("secret.yaml", secret),
            ("ingress.yaml", ingress_yaml("secure", &[], &spec)),
        ],
    )
    .await;
    let https = proxy.https.unwrap();
    let c = tls_client(&ca.pem, &["secure.example.com"], https);
    let resp = c
        .get(format!("https://secure.example.com:{}/x", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["path"], "/x");
    // ssl-redirect defaults to true for hosts with TLS: 308, as ingress-nginx answers.
    let resp = get(&proxy, "secure.example.com", "/x?y=1").await;
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        "https://secure.example.com/x?y=1"
    );
}

#[tokio::test]
async fn plugins_annotation_attaches_gateway_plugins() {
    let web = EchoServer::start("web").await;
    let plugins = "apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: tag, namespace: default}
spec:
  plugin: headers
  config: {response: {set: {x-tag: namespace-plugin}}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: hello, namespace: hookway-system}
spec:
  plugin: mock
  config: {status: 200, body: from-a-cluster-plugin}
";
    let tagged = ingress_yaml(
        "tagged",
        &[("hookway.dev/plugins", "tag")],
        &rules(&[rule("tagged.example.com", "/", "Prefix", "web")]),
    );
    let mocked = ingress_yaml(
        "mocked",
        &[("hookway.dev/plugins", "tag, hello")],
        &rules(&[rule("mocked.example.com", "/", "Prefix", "web")]),
    );
    let (_dir, proxy) = serve(
        web.addr,
        None,
        &[
            ("plugins.yaml", plugins.into()),
            ("tagged.yaml", tagged),
            ("mocked.yaml", mocked),
        ],
    )
    .await;
    let resp = get(&proxy, "tagged.example.com", "/").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tag"], "namespace-plugin");
    assert_eq!(json(resp).await["server"], "web");
    // Both run at order 1000, by alias: `hello` answers before `tag` runs.
    let resp = get(&proxy, "mocked.example.com", "/").await;
    assert_eq!(resp.text().await.unwrap(), "from-a-cluster-plugin");
    assert_eq!(web.hits(), 1, "the mock answered without the upstream");
}
