//! Gateway API in standalone mode over real sockets: the upstream conformance suite's HTTPRoute
//! core cases (kubernetes-sigs/gateway-api v1.6.1, `conformance/tests/httproute-*.yaml`), ported
//! with the manifests written as the suite writes them and the backends as echo servers behind
//! core Services + EndpointSlices.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::support::*;

const NS: &str = "gateway-conformance-infra";

/// The suite's base: GatewayClass `hookway`, Gateway `same-namespace` (one HTTP listener,
/// routes from its own namespace), namespaces with labels, and three backends.
const BASE: &str = r#"
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
fn backend_yaml(ns: &str, name: &str, addrs: &[SocketAddr]) -> String {
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
    _servers: Vec<EchoServer>,
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
            _servers: servers,
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
