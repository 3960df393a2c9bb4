//! Gateway API in standalone mode over real sockets: the upstream conformance suite's HTTPRoute
//! core cases (kubernetes-sigs/gateway-api v1.6.1, `conformance/tests/httproute-*.yaml`), ported
//! with the manifests written as the suite writes them and the backends as echo servers behind
//! core Services + EndpointSlices.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::support::*;

/// The conformance suite's infra namespace.
pub(super) const NS: &str = "gateway-conformance-infra";

/// The suite's base: GatewayClass `hookway`, Gateway `same-namespace` (one HTTP listener,
/// routes from its own namespace), namespaces with labels, and three backends.
pub(super) const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: hookway}
spec: {controllerName: hookway.dev/gateway-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-infra, labels: {gateway-conformance: infra}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-web-backend, labels: {gateway-conformance: web-backend}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hookway
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Same
"#;

/// A core Service `name` (port 8080) in `ns` with an EndpointSlice pointing at `addrs`.
pub(super) fn backend_yaml(ns: &str, name: &str, addrs: &[SocketAddr]) -> String {
    let endpoints: String = addrs
        .iter()
        .map(|a| format!("- addresses: [\"{}\"]\n", a.ip()))
        .collect();
    let port = addrs.first().map_or(1, |a| a.port());
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n{endpoints}---\n"
    )
}

/// A standalone proxy serving BASE, the backends and `manifests`.
struct World {
    _dir: ManifestDir,
    proxy: Proxy,
    servers: Vec<EchoServer>,
}

impl World {
    async fn start(manifests: &str) -> Self {
        let mut servers = Vec::new();
        let mut backends = String::new();
        for (ns, name) in [
            (NS, "infra-backend-v1"),
            (NS, "infra-backend-v2"),
            (NS, "infra-backend-v3"),
            ("gateway-conformance-web-backend", "web-backend"),
        ] {
            let s = EchoServer::start(name).await;
            backends.push_str(&backend_yaml(ns, name, &[s.addr]));
            servers.push(s);
        }
        let dir = ManifestDir::new();
        dir.write("00-base.yaml", BASE);
        dir.write("10-backends.yaml", &backends);
        dir.write("20-routes.yaml", manifests);
        let proxy = standalone_proxy(&dir).await;
        Self {
            _dir: dir,
            proxy,
            servers,
        }
    }

    /// Sends `method path` with `host` and `headers`; returns (status, backend or body, echoed
    /// request headers, response headers).
    async fn send(&self, method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(WAIT)
            .no_proxy()
            .build()
            .unwrap();
        let mut req = c
            .request(method.parse().unwrap(), self.proxy.url(path))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let response_headers: BTreeMap<String, String> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.text().await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Answer {
            status,
            backend: json["server"].as_str().unwrap_or(&text).to_string(),
            path: json["path"].as_str().unwrap_or("").to_string(),
            request_headers: serde_json::from_value(json["headers"].clone()).unwrap_or_default(),
            response_headers,
        }
    }

    async fn get(&self, host: &str, path: &str) -> Answer {
        self.send("GET", host, path, &[]).await
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    backend: String,
    path: String,
    request_headers: BTreeMap<String, String>,
    response_headers: BTreeMap<String, String>,
}

/// An HTTPRoute in the infra namespace attached to `same-namespace`, with `body` under `spec`
/// (`rules`, `hostnames`).
fn route(name: &str, body: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRefs: [{{name: same-namespace}}]\n{body}\n---\n"
    )
}

/// `(method, host, path, headers, expected status, expected backend)`.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    u16,
    &'a str,
);

async fn expect(world: &World, cases: &[Case<'_>]) {
    for (method, host, path, headers, status, backend) in cases {
        let a = world.send(method, host, path, headers).await;
        assert_eq!(
            (a.status, a.backend.as_str()),
            (*status, *backend),
            "{method} {host}{path} {headers:?}: {a:?}"
        );
    }
}

#[tokio::test]
async fn simple_same_namespace_and_matching() {
    // httproute-simple-same-namespace, httproute-matching, httproute-matching-across-routes,
    // httproute-exact-path-matching.
    let manifests = [
        route(
            "gateway-conformance-infra-test",
            "  rules:\n  - backendRefs: [{name: infra-backend-v1, port: 8080}]",
        ),
        route(
            "matching",
            "  hostnames: [matching.example]\n  rules:\n  - matches:\n    - path: {type: PathPrefix, value: /}\n    - headers: [{name: version, value: one}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches:\n    - path: {type: PathPrefix, value: /v2}\n    - headers: [{name: version, value: two}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]",
        ),
        route(
            "matching-part1",
            "  hostnames: [example.com, example.net]\n  rules:\n  - matches:\n    - path: {type: PathPrefix, value: /}\n    - headers: [{name: version, value: one}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]",
        ),
        route(
            "matching-part2",
            "  hostnames: [example.com]\n  rules:\n  - matches:\n    - path: {type: PathPrefix, value: /v2}\n    - headers: [{name: version, value: two}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]",
        ),
        route(
            "exact-matching",
            "  hostnames: [exact.example]\n  rules:\n  - matches: [{path: {type: Exact, value: /one}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: Exact, value: /two}}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]",
        ),
    ]
    .concat();
    let world = World::start(&manifests).await;
    let v1 = "infra-backend-v1";
    let v2 = "infra-backend-v2";
    expect(
        &world,
        &[
            ("GET", "any.example", "/", &[], 200, v1),
            ("GET", "matching.example", "/", &[], 200, v1),
            ("GET", "matching.example", "/example", &[], 200, v1),
            (
                "GET",
                "matching.example",
                "/",
                &[("version", "one")],
                200,
                v1,
            ),
            ("GET", "matching.example", "/v2", &[], 200, v2),
            ("GET", "matching.example", "/v2/example", &[], 200, v2),
            (
                "GET",
                "matching.example",
                "/",
                &[("version", "two")],
                200,
                v2,
            ),
            ("GET", "example.com", "/", &[], 200, v1),
            ("GET", "example.com", "/example", &[], 200, v1),
            ("GET", "example.net", "/example", &[], 200, v1),
            (
                "GET",
                "example.com",
                "/example",
                &[("version", "one")],
                200,
                v1,
            ),
            ("GET", "example.com", "/v2", &[], 200, v2),
            ("GET", "example.net", "/v2", &[], 200, v1),
            ("GET", "example.com", "/v2/example", &[], 200, v2),
            ("GET", "example.com", "/", &[("version", "two")], 200, v2),
            ("GET", "exact.example", "/one", &[], 200, v1),
            ("GET", "exact.example", "/two", &[], 200, v2),
            // The route without hostnames serves every host, so the any-host tier answers.
            ("GET", "exact.example", "/one/example", &[], 200, v1),
        ],
    )
    .await;
}

#[tokio::test]
async fn hostname_intersection_and_listener_hostnames() {
    // httproute-hostname-intersection and httproute-listener-hostname-matching.
    let gateway = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httproute-hostname-intersection, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hookway
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, hostname: very.specific.com}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: "*.wildcard.io"}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: "*.anotherwildcard.io"}
---
"#;
    let attach = |name: &str, hosts: &str, prefix: &str, backend: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRefs: [{{name: httproute-hostname-intersection}}]\n  hostnames: {hosts}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    backendRefs: [{{name: {backend}, port: 8080}}]\n---\n"
        )
    };
    let manifests = [
        gateway.to_string(),
        attach(
            "specific-host-matches-listener-specific-host",
            "[non.matching.com, \"*.nonmatchingwildcard.io\", very.specific.com]",
            "/s1",
            "infra-backend-v1",
        ),
        attach(
            "specific-host-matches-listener-wildcard-host",
            "[non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]",
            "/s2",
            "infra-backend-v2",
        ),
        attach(
            "wildcard-host-matches-listener-specific-host",
            "[non.matching.com, \"*.specific.com\"]",
            "/s3",
            "infra-backend-v3",
        ),
        attach(
            "wildcard-host-matches-listener-wildcard-host",
            "[\"*.anotherwildcard.io\"]",
            "/s4",
            "infra-backend-v1",
        ),
        attach("no-intersecting-hosts", "[specific.but.wrong.com, wildcard.io]", "/", "infra-backend-v2"),
    ]
    .concat();
    let world = World::start(&manifests).await;
    let none = "no route matched\n";
    expect(
        &world,
        &[
            (
                "GET",
                "very.specific.com",
                "/s1",
                &[],
                200,
                "infra-backend-v1",
            ),
            ("GET", "non.matching.com", "/s1", &[], 404, none),
            ("GET", "foo.nonmatchingwildcard.io", "/s1", &[], 404, none),
            (
                "GET",
                "foo.wildcard.io",
                "/s2",
                &[],
                200,
                "infra-backend-v2",
            ),
            (
                "GET",
                "bar.wildcard.io",
                "/s2",
                &[],
                200,
                "infra-backend-v2",
            ),
            (
                "GET",
                "foo.bar.wildcard.io",
                "/s2",
                &[],
                200,
                "infra-backend-v2",
            ),
            ("GET", "non.matching.com", "/s2", &[], 404, none),
            ("GET", "wildcard.io", "/s2", &[], 404, none),
            (
                "GET",
                "very.specific.com",
                "/s3",
                &[],
                200,
                "infra-backend-v3",
            ),
            ("GET", "non.matching.com", "/s3", &[], 404, none),
            ("GET", "foo.specific.com", "/s3", &[], 404, none),
            (
                "GET",
                "foo.anotherwildcard.io",
                "/s4",
                &[],
                200,
                "infra-backend-v1",
            ),
            ("GET", "anotherwildcard.io", "/s4", &[], 404, none),
            ("GET", "specific.but.wrong.com", "/", &[], 404, none),
            ("GET", "wildcard.io", "/", &[], 404, none),
        ],
    )
    .await;
}

#[tokio::test]
async fn header_query_and_method_matching() {
    // httproute-header-matching, httproute-query-param-matching, httproute-method-matching.
    let manifests = [
        route(
            "header-matching",
            "  hostnames: [headers.example]\n  rules:\n  - matches: [{headers: [{name: version, value: one}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{headers: [{name: version, value: two}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]",
        ),
        route(
            "query-param-matching",
            "  hostnames: [query.example]\n  rules:\n  - matches: [{queryParams: [{name: animal, value: whale}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{queryParams: [{name: animal, value: dolphin}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]}, {queryParams: [{name: ANIMAL, value: Whale}]}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]",
        ),
        route(
            "method-matching",
            "  hostnames: [method.example]\n  rules:\n  - matches: [{method: POST}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{method: GET}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /path1}, method: GET}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{headers: [{name: version, value: one}], method: PUT}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]",
        ),
    ]
    .concat();
    let world = World::start(&manifests).await;
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    let none = "no route matched\n";
    let h = "headers.example";
    let q = "query.example";
    let m = "method.example";
    expect(
        &world,
        &[
            ("GET", h, "/", &[("version", "one")], 200, v1),
            ("GET", h, "/", &[("version", "two")], 200, v2),
            (
                "GET",
                h,
                "/",
                &[("version", "two"), ("color", "orange")],
                200,
                v1,
            ),
            ("GET", h, "/", &[("color", "blue")], 200, v1),
            ("GET", h, "/", &[("color", "green")], 200, v1),
            ("GET", h, "/", &[("color", "red")], 200, v2),
            ("GET", h, "/", &[("color", "yellow")], 200, v2),
            ("GET", h, "/", &[("version", "three")], 404, none),
            ("GET", q, "/?animal=whale", &[], 200, v1),
            ("GET", q, "/?animal=dolphin", &[], 200, v2),
            ("GET", q, "/?animal=dolphin&color=blue", &[], 200, v3),
            ("GET", q, "/?ANIMAL=Whale", &[], 200, v3),
            (
                "GET",
                q,
                "/?animal=whale&otherparam=irrelevant",
                &[],
                200,
                v1,
            ),
            ("GET", q, "/?animal=dolphin&color=yellow", &[], 200, v2),
            ("GET", q, "/?color=blue", &[], 404, none),
            ("GET", q, "/?animal=Whale", &[], 404, none),
            ("POST", m, "/", &[], 200, v1),
            ("GET", m, "/", &[], 200, v2),
            ("GET", m, "/path1", &[], 200, v1),
            ("PUT", m, "/", &[("version", "one")], 200, v2),
            ("HEAD", m, "/", &[], 404, ""),
            ("PUT", m, "/", &[], 404, none),
        ],
    )
    .await;
}

#[tokio::test]
async fn header_modifiers_redirects_and_rewrites() {
    // httproute-request-header-modifier, httproute-response-header-modifier,
    // httproute-redirect-{path,scheme,port,host-and-status}, httproute-rewrite-{path,host}.
    let manifests = [
        route(
            "request-header-modifier",
            "  hostnames: [reqhdr.example]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /set}}]\n    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n        set: [{name: X-Header-Set, value: set-overwrites-values}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /add}}]\n    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n        add: [{name: X-Header-Add, value: add-appends-values}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /remove}}]\n    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n        remove: [X-Header-Remove]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]",
        ),
        route(
            "response-header-modifier",
            "  hostnames: [resphdr.example]\n  rules:\n  - filters:\n    - type: ResponseHeaderModifier\n      responseHeaderModifier:\n        set: [{name: X-Header-Set, value: set-overwrites-values}]\n        add: [{name: X-Header-Add, value: header-val-1}]\n        remove: [Content-Type]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]",
        ),
        route(
            "redirects",
            "  hostnames: [redirect.example]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /original-prefix}}]\n    filters:\n    - type: RequestRedirect\n      requestRedirect:\n        path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}\n  - matches: [{path: {type: PathPrefix, value: /full}}]\n    filters:\n    - type: RequestRedirect\n      requestRedirect:\n        path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}\n  - matches: [{path: {type: PathPrefix, value: /scheme}}]\n    filters:\n    - type: RequestRedirect\n      requestRedirect: {scheme: https}\n  - matches: [{path: {type: PathPrefix, value: /port}}]\n    filters:\n    - type: RequestRedirect\n      requestRedirect: {port: 8083}\n  - matches: [{path: {type: PathPrefix, value: /host}}]\n    filters:\n    - type: RequestRedirect\n      requestRedirect: {hostname: example.org, statusCode: 301}\n  - matches: [{path: {type: PathPrefix, value: /scheme-and-port}}]\n    filters:\n    - type: RequestRedirect\n      requestRedirect: {scheme: https, port: 8443, statusCode: 308}",
        ),
        route(
            "rewrite-path",
            "  hostnames: [rewrite.example]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]\n    filters:\n    - type: URLRewrite\n      urlRewrite:\n        path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /full/one}}]\n    filters:\n    - type: URLRewrite\n      urlRewrite:\n        path: {type: ReplaceFullPath, replaceFullPath: /one}\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]\n    filters:\n    - type: URLRewrite\n      urlRewrite:\n        path: {type: ReplacePrefixMatch, replacePrefixMatch: /}\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /host}}]\n    filters:\n    - type: URLRewrite\n      urlRewrite: {hostname: one.example.org}\n    backendRefs: [{name: infra-backend-v2, port: 8080}]",
        ),
    ]
    .concat();
    let world = World::start(&manifests).await;

    let a = world
        .send(
            "GET",
            "reqhdr.example",
            "/set",
            &[("x-header-set", "some-other-value")],
        )
        .await;
    assert_eq!(
        a.request_headers["x-header-set"], "set-overwrites-values",
        "{a:?}"
    );
    let a = world
        .send(
            "GET",
            "reqhdr.example",
            "/add",
            &[("x-header-add", "some-other-value")],
        )
        .await;
    assert_eq!(
        a.request_headers["x-header-add"], "some-other-value, add-appends-values",
        "{a:?}"
    );
    let a = world
        .send(
            "GET",
            "reqhdr.example",
            "/remove",
            &[("x-header-remove", "val"), ("x-header-keep", "k")],
        )
        .await;
    assert!(!a.request_headers.contains_key("x-header-remove"), "{a:?}");
    assert_eq!(a.request_headers["x-header-keep"], "k");

    let a = world.get("resphdr.example", "/").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.response_headers["x-header-set"], "set-overwrites-values",
        "{a:?}"
    );
    assert_eq!(a.response_headers["x-header-add"], "header-val-1");
    assert!(!a.response_headers.contains_key("content-type"), "{a:?}");

    // (path, status, Location) — the client sends Host `redirect.example` (port 80 implied).
    let redirects = [
        (
            "/original-prefix/lemon",
            302,
            "http://redirect.example/replacement-prefix/lemon",
        ),
        (
            "/full/path/original",
            302,
            "http://redirect.example/full-path-replacement",
        ),
        ("/scheme", 302, "https://redirect.example/scheme"),
        ("/port", 302, "http://redirect.example:8083/port"),
        ("/host?q=1", 301, "http://example.org/host?q=1"),
        (
            "/scheme-and-port",
            308,
            "https://redirect.example:8443/scheme-and-port",
        ),
    ];
    for (path, status, location) in redirects {
        let a = world.get("redirect.example", path).await;
        assert_eq!(
            (
                a.status,
                a.response_headers.get("location").map(String::as_str)
            ),
            (status, Some(location)),
            "{path}: {a:?}"
        );
    }
    // A Host with a port: the port the client used is kept unless the scheme changes.
    let a = world.get("redirect.example:8080", "/original-prefix").await;
    assert_eq!(
        a.response_headers["location"],
        "http://redirect.example:8080/replacement-prefix"
    );

    // (path sent, path the backend sees)
    for (sent, seen) in [
        ("/prefix/one/two", "/one/two"),
        ("/prefix/one", "/one"),
        ("/full/one/two?q=1", "/one?q=1"),
        ("/strip-prefix/three", "/three"),
        ("/strip-prefix", "/"),
    ] {
        let a = world.get("rewrite.example", sent).await;
        assert_eq!((a.status, a.path.as_str()), (200, seen), "{sent}: {a:?}");
    }
    let a = world.get("rewrite.example", "/host").await;
    assert_eq!(
        (a.backend.as_str(), a.request_headers["host"].as_str()),
        ("infra-backend-v2", "one.example.org")
    );
}

#[tokio::test]
async fn weights_backends_and_namespaces() {
    // httproute-weight, httproute-omitted-backendrefs, httproute-invalid-nonexistent-backendref,
    // httproute-invalid-backendref-unknown-kind, httproute-reference-grant,
    // httproute-invalid-cross-namespace-backend-ref, gateway with disallowed namespaces.
    let manifests = [
        route(
            "weighted-backends",
            "  hostnames: [weights.example]\n  rules:\n  - backendRefs:\n    - {name: infra-backend-v1, port: 8080, weight: 70}\n    - {name: infra-backend-v2, port: 8080, weight: 30}\n    - {name: infra-backend-v3, port: 8080, weight: 0}",
        ),
        route(
            "omitted-backendrefs",
            "  hostnames: [omitted.example]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /forward}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /omitted-no-forward}}]\n  - matches: [{path: {type: PathPrefix, value: /empty-no-forward}}]\n    backendRefs: []",
        ),
        route(
            "partially-invalid",
            "  hostnames: [partial.example]\n  rules:\n  - backendRefs:\n    - {name: infra-backend-v1, port: 8080, weight: 3}\n    - {name: nonexistent, port: 8080, weight: 1}",
        ),
        route(
            "invalid-backends",
            "  hostnames: [invalid.example]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /nonexistent}}]\n    backendRefs: [{name: nonexistent, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /unknown-kind}}]\n    backendRefs: [{group: unknown.example, kind: Unknown, name: x, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /no-grant}}]\n    backendRefs: [{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}]",
        ),
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: all-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hookway
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    hostname: shared.example
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {gateway-conformance: web-backend}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: granted, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: all-namespaces, namespace: gateway-conformance-infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /granted}}]
    backendRefs: [{name: infra-backend-v3, namespace: gateway-conformance-infra, port: 8080}]
  - backendRefs: [{name: web-backend, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: web-to-infra, namespace: gateway-conformance-infra}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-web-backend}]
  to: [{group: "", kind: Service, name: infra-backend-v3}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: disallowed, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: same-namespace, namespace: gateway-conformance-infra}]
  hostnames: [disallowed.example]
  rules:
  - backendRefs: [{name: web-backend, port: 8080}]
---
"#
        .to_string(),
    ]
    .concat();
    let world = World::start(&manifests).await;

    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..100 {
        let a = world.get("weights.example", "/").await;
        *counts.entry(a.backend).or_default() += 1;
    }
    // Smooth weighted round-robin is exact over a full cycle.
    assert_eq!(counts.get("infra-backend-v1"), Some(&70), "{counts:?}");
    assert_eq!(counts.get("infra-backend-v2"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("infra-backend-v3"), None, "{counts:?}");

    expect(
        &world,
        &[
            (
                "GET",
                "omitted.example",
                "/forward",
                &[],
                200,
                "infra-backend-v1",
            ),
            (
                "GET",
                "omitted.example",
                "/omitted-no-forward",
                &[],
                500,
                "no usable backend for this HTTPRoute rule (see the HTTPRoute's status)\n",
            ),
            (
                "GET",
                "omitted.example",
                "/empty-no-forward",
                &[],
                500,
                "no usable backend for this HTTPRoute rule (see the HTTPRoute's status)\n",
            ),
            (
                "GET",
                "invalid.example",
                "/unknown-kind",
                &[],
                500,
                "no usable backend for this HTTPRoute rule (see the HTTPRoute's status)\n",
            ),
            (
                "GET",
                "invalid.example",
                "/no-grant",
                &[],
                500,
                "no usable backend for this HTTPRoute rule (see the HTTPRoute's status)\n",
            ),
            (
                "GET",
                "shared.example",
                "/granted",
                &[],
                200,
                "infra-backend-v3",
            ),
            ("GET", "shared.example", "/", &[], 200, "web-backend"),
            (
                "GET",
                "disallowed.example",
                "/",
                &[],
                404,
                "no route matched\n",
            ),
        ],
    )
    .await;
    // One invalid backend of weight 1 next to a valid one of weight 3: a quarter answers 500.
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    for _ in 0..40 {
        *statuses
            .entry(world.get("partial.example", "/").await.status)
            .or_default() += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(200, 30), (500, 10)]));
    let a = world.get("invalid.example", "/nonexistent").await;
    assert_eq!(a.status, 500, "{a:?}");
}

/// A `kubernetes.io/tls` Secret as YAML.
fn tls_secret(ns: &str, name: &str, (cert, key): &(String, String)) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(cert),
        indent(key)
    )
}

#[tokio::test]
async fn extension_ref_plugins_and_https_listeners() {
    // ExtensionRef → a GatewayPlugin in the route's chain, with the namespace's global plugin
    // still applied; an HTTPS listener serving a certificate from another namespace's Secret
    // (permitted by a ReferenceGrant) for its hostname (httproute-https-listener).
    let ca = Ca::new();
    let cert = ca.leaf(&["secure.example"]);
    let manifests = [
        r#"
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: deny-teapots, namespace: gateway-conformance-infra}
spec:
  plugin: mock
  config: {status: 418, body: "short and stout\n"}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: stamp, namespace: gateway-conformance-infra}
spec:
  plugin: headers
  status: global
  order: 10
  config: {response: {set: {x-stamped: "yes"}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: secure, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hookway
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: secure.example
    tls:
      certificateRefs: [{name: secure-cert, namespace: gateway-conformance-web-backend}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways-read-certs, namespace: gateway-conformance-web-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: gateway-conformance-infra}]
  to: [{group: "", kind: Secret}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: secure, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: secure}]
  rules:
  - backendRefs: [{name: infra-backend-v2, port: 8080}]
---
"#
        .to_string(),
        tls_secret("gateway-conformance-web-backend", "secure-cert", &cert),
        route(
            "extension-ref",
            "  hostnames: [ext.example]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /teapot}}]\n    filters:\n    - type: ExtensionRef\n      extensionRef: {group: hookway.dev, kind: GatewayPlugin, name: deny-teapots}\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /missing}}]\n    filters:\n    - type: ExtensionRef\n      extensionRef: {group: hookway.dev, kind: GatewayPlugin, name: no-such-plugin}\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - backendRefs: [{name: infra-backend-v1, port: 8080}]",
        ),
    ]
    .concat();
    let world = World::start(&manifests).await;
    let a = world.get("ext.example", "/teapot").await;
    assert_eq!(
        (a.status, a.backend.as_str()),
        (418, "short and stout\n"),
        "{a:?}"
    );
    assert_eq!(
        a.response_headers.get("x-stamped").map(String::as_str),
        Some("yes"),
        "{a:?}"
    );
    let a = world.get("ext.example", "/").await;
    assert_eq!((a.status, a.backend.as_str()), (200, "infra-backend-v1"));
    assert_eq!(
        a.response_headers.get("x-stamped").map(String::as_str),
        Some("yes")
    );
    // A reference to a GatewayPlugin that does not exist fails closed: the match is not served
    // (the HTTPRoute reports PluginNotFound), so the rule without matches answers instead.
    let a = world.get("ext.example", "/missing").await;
    assert_eq!(
        (a.status, a.backend.as_str()),
        (200, "infra-backend-v1"),
        "{a:?}"
    );

    let https = world.proxy.https.expect("https listener");
    let c = tls_client(&ca.pem, &["secure.example"], https);
    let resp = c
        .get(format!("https://secure.example:{}/", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["server"], "infra-backend-v2");
}

#[tokio::test]
async fn cors_and_timeouts() {
    // httproute-cors (preflight and simple request), httproute-request-timeout.
    let manifests = [
        route(
            "cors",
            "  hostnames: [cors.example]\n  rules:\n  - filters:\n    - type: CORS\n      cors:\n        allowOrigins: [\"https://www.foo.com\", \"https://*.bar.com\"]\n        allowMethods: [GET, OPTIONS]\n        allowHeaders: [x-header-1, x-header-2]\n        exposeHeaders: [x-header-3, x-header-4]\n        allowCredentials: true\n        maxAge: 3600\n    backendRefs: [{name: infra-backend-v1, port: 8080}]",
        ),
        route(
            "request-timeout",
            "  hostnames: [timeout.example]\n  rules:\n  - timeouts: {request: 200ms}\n    backendRefs: [{name: infra-backend-v1, port: 8080}]",
        ),
    ]
    .concat();
    let world = World::start(&manifests).await;
    let a = world
        .send(
            "OPTIONS",
            "cors.example",
            "/",
            &[
                ("origin", "https://www.foo.com"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert!(a.status == 200 || a.status == 204, "{a:?}");
    let h = &a.response_headers;
    assert_eq!(
        h.get("access-control-allow-origin").map(String::as_str),
        Some("https://www.foo.com"),
        "{a:?}"
    );
    assert_eq!(
        h.get("access-control-allow-credentials")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        h.get("access-control-max-age").map(String::as_str),
        Some("3600")
    );
    let a = world
        .send(
            "GET",
            "cors.example",
            "/",
            &[("origin", "https://api.bar.com")],
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.response_headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("https://api.bar.com")
    );

    let fast = world.get("timeout.example", "/").await;
    assert_eq!(fast.status, 200);
    let slow = world
        .send("GET", "timeout.example", "/", &[("x-delay-ms", "2000")])
        .await;
    assert_eq!(slow.status, 504, "{slow:?}");
}

#[tokio::test]
async fn request_mirror_sends_a_copy() {
    // httproute-request-mirror: the client is answered by v1; v2 receives a copy.
    let manifests = route(
        "request-mirror",
        "  hostnames: [mirror.example]\n  rules:\n  - filters:\n    - type: RequestMirror\n      requestMirror:\n        backendRef: {name: infra-backend-v2, port: 8080}\n    backendRefs: [{name: infra-backend-v1, port: 8080}]",
    );
    let world = World::start(&manifests).await;
    let mirror = &world.servers[1];
    let before = mirror.hits();
    for _ in 0..3 {
        let a = world.get("mirror.example", "/mirrored").await;
        assert_eq!((a.status, a.backend.as_str()), (200, "infra-backend-v1"));
    }
    wait_until("three copies reach the mirror", || async {
        mirror.hits() >= before + 3
    })
    .await;
    assert_eq!(world.servers[0].hits(), 3);
}

#[tokio::test]
async fn http_and_https_listeners_of_one_host_serve_their_own_routes() {
    // The usual pattern: the HTTP listener's route redirects to HTTPS, the HTTPS listener's
    // route serves the application — same host, same path. Each is served on its own port.
    let ca = Ca::new();
    let cert = ca.leaf(&["app.example"]);
    let manifests = [
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: dual, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hookway
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: app.example}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: app.example
    tls: {certificateRefs: [{name: app-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app-redirect, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: dual, sectionName: http}]
  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 301}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: dual, sectionName: https}]
  rules:
  - backendRefs: [{name: infra-backend-v1, port: 8080}]
---
"#
        .to_string(),
        tls_secret(NS, "app-cert", &cert),
    ]
    .concat();
    let world = World::start(&manifests).await;
    let a = world.get("app.example", "/shop?x=1").await;
    assert_eq!(
        (
            a.status,
            a.response_headers.get("location").map(String::as_str)
        ),
        (301, Some("https://app.example/shop?x=1")),
        "{a:?}"
    );
    let https = world.proxy.https.expect("https listener");
    let c = tls_client(&ca.pem, &["app.example"], https);
    let resp = c
        .get(format!("https://app.example:{}/shop", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["server"], "infra-backend-v1");
}

/// The four listeners of the suite's `gateway-http-listener-isolation*.yaml` Gateways.
fn isolation_gateway(name: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: hookway
  listeners:
  - {{name: empty-hostname, port: 80, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}
  - {{name: wildcard-example-com, port: 80, protocol: HTTP, hostname: "*.example.com", allowedRoutes: {{namespaces: {{from: All}}}}}}
  - {{name: wildcard-foo-example-com, port: 80, protocol: HTTP, hostname: "*.foo.example.com", allowedRoutes: {{namespaces: {{from: All}}}}}}
  - {{name: abc-foo-example-com, port: 80, protocol: HTTP, hostname: "abc.foo.example.com", allowedRoutes: {{namespaces: {{from: All}}}}}}
---
"#
    )
}

/// An HTTPRoute `attaches-to-<section><suffix>` of the isolation suite: attached to listener
/// `section` of `gateway`, `hostnames` (YAML list or empty), path prefix `/<section>`.
fn isolation_route(gateway: &str, section: &str, suffix: &str, hostnames: &str) -> String {
    let hostnames = if hostnames.is_empty() {
        String::new()
    } else {
        format!("  hostnames: {hostnames}\n")
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: attaches-to-{section}{suffix}, namespace: {NS}}}\nspec:\n  parentRefs: [{{name: {gateway}, sectionName: {section}}}]\n{hostnames}  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /{section}}}}}]\n    backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n---\n"
    )
}

#[tokio::test]
async fn gateway_http_listener_isolation() {
    // gateway-http-listener-isolation.yaml (hostnames only on listeners) and
    // gateway-http-listener-isolation-with-hostname-intersection.yaml (on routes too): a
    // request is served only by routes attached to the most specific listener matching its
    // host. Each on a proxy of its own, as the suite runs them on Gateways of their own.
    let sections = [
        "empty-hostname",
        "wildcard-example-com",
        "wildcard-foo-example-com",
        "abc-foo-example-com",
    ];
    let all_hosts = "[bar.com, \"*.example.com\", \"*.foo.example.com\", abc.foo.example.com]";
    let only_listeners: String = std::iter::once(isolation_gateway("http-listener-isolation"))
        .chain(
            sections
                .iter()
                .map(|s| isolation_route("http-listener-isolation", s, "", "")),
        )
        .collect();
    let gw = "http-listener-isolation-with-hostname-intersection";
    let with_intersection: String = std::iter::once(isolation_gateway(gw))
        .chain(
            sections
                .iter()
                .map(|s| isolation_route(gw, s, "-with-hostname-intersection", all_hosts)),
        )
        .collect();
    // host → the one section it serves (every other section's path answers 404).
    let served = [
        ("bar.com", "empty-hostname"),
        ("bar.example.com", "wildcard-example-com"),
        ("bar.foo.example.com", "wildcard-foo-example-com"),
        ("abc.foo.example.com", "abc-foo-example-com"),
    ];
    for manifests in [only_listeners, with_intersection] {
        let world = World::start(&manifests).await;
        for (host, section) in served {
            for path in sections {
                let a = world.get(host, &format!("/{path}")).await;
                if path == section {
                    assert_eq!(
                        (a.status, a.backend.as_str()),
                        (200, "infra-backend-v1"),
                        "{host}/{path}: {a:?}"
                    );
                } else {
                    assert_eq!(a.status, 404, "{host}/{path}: {a:?}");
                }
            }
        }
    }
}

#[tokio::test]
async fn reference_grants_and_cross_namespace_parents() {
    // httproute-partially-invalid-via-invalid-reference-grant: the grant covers app-backend-v1
    // only, so the rule to app-backend-v2 answers 500 and the other is served;
    // httproute-invalid-cross-namespace-parent-ref: a route of another namespace on a listener
    // that allows only its own is not served.
    let v1 = EchoServer::start("app-backend-v1").await;
    let v2 = EchoServer::start("app-backend-v2").await;
    let app = "gateway-conformance-app-backend";
    let manifests = [
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {app}}}\n---\n"),
        backend_yaml(app, "app-backend-v1", &[v1.addr]),
        backend_yaml(app, "app-backend-v2", &[v2.addr]),
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: invalid-reference-grant, namespace: gateway-conformance-app-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}]
  to: [{group: "", kind: Service, name: app-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-reference-grant, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: app-backend-v2, namespace: gateway-conformance-app-backend, port: 8080}]
  - backendRefs: [{name: app-backend-v1, namespace: gateway-conformance-app-backend, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-cross-namespace-parent-ref, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: same-namespace, namespace: gateway-conformance-infra}]
  hostnames: [cross.example]
  rules:
  - backendRefs: [{name: web-backend, port: 8080}]
---
"#
        .to_string(),
    ]
    .concat();
    let world = World::start(&manifests).await;
    let v2_answer = world.get("any.example", "/v2").await;
    assert_eq!(v2_answer.status, 500, "{v2_answer:?}");
    expect(
        &world,
        &[
            ("GET", "any.example", "/", &[], 200, "app-backend-v1"),
            // Not attached: the infra route (no hostnames) answers instead of web-backend.
            ("GET", "cross.example", "/", &[], 200, "app-backend-v1"),
        ],
    )
    .await;
    assert_eq!(world.servers.iter().map(|s| s.hits()).sum::<usize>(), 0);
    assert_eq!(v2.hits(), 0);
}

#[tokio::test]
async fn backend_ref_filters_shared_by_every_backend() {
    // httproute-request-header-modifier-backend (HTTPRouteBackendRequestHeaderModifier): the
    // filters sit on the rule's one backendRef; they apply to every request it forwards. (The
    // -backend-weights case, different filters per backend, is refused: UnsupportedValue.)
    let backend = |path: &str, filter: &str| {
        format!("  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs:\n    - name: infra-backend-v1\n      port: 8080\n      filters:\n      - {filter}\n")
    };
    let rules = [
        backend(
            "/set",
            "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}]}}",
        ),
        backend(
            "/add",
            "{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Header-Add, value: add-appends-values}]}}",
        ),
        backend(
            "/remove",
            "{type: RequestHeaderModifier, requestHeaderModifier: {remove: [X-Header-Remove]}}",
        ),
        backend(
            "/response",
            "{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Backend, value: v1}]}}",
        ),
        "  - matches: [{path: {type: PathPrefix, value: /differ}}]\n    backendRefs:\n    - {name: infra-backend-v1, port: 8080, weight: 10, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Backend, value: infra-backend-v1}]}}]}\n    - {name: infra-backend-v2, port: 8080, weight: 10, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Backend, value: infra-backend-v2}]}}]}\n".to_string(),
    ]
    .concat();
    let manifests = route(
        "request-header-modifier-backend",
        &format!("  hostnames: [backendhdr.example]\n  rules:\n{rules}"),
    );
    let world = World::start(&manifests).await;
    let host = "backendhdr.example";
    let a = world
        .send("GET", host, "/set", &[("x-header-set", "other")])
        .await;
    assert_eq!(
        a.request_headers.get("x-header-set").map(String::as_str),
        Some("set-overwrites-values"),
        "{a:?}"
    );
    let a = world
        .send("GET", host, "/add", &[("x-header-add", "other")])
        .await;
    assert_eq!(
        a.request_headers.get("x-header-add").map(String::as_str),
        Some("other, add-appends-values"),
        "{a:?}"
    );
    let a = world
        .send("GET", host, "/remove", &[("x-header-remove", "gone")])
        .await;
    assert_eq!((a.status, a.backend.as_str()), (200, "infra-backend-v1"));
    assert!(!a.request_headers.contains_key("x-header-remove"), "{a:?}");
    let a = world.get(host, "/response").await;
    assert_eq!(
        a.response_headers.get("x-backend").map(String::as_str),
        Some("v1"),
        "{a:?}"
    );
    // Different filters per backend: that rule is not served.
    let a = world.get(host, "/differ").await;
    assert_eq!(a.status, 404, "{a:?}");
}
