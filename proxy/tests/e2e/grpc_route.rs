//! GRPCRoute in standalone mode over real sockets: the upstream conformance suite's GRPCRoute
//! cases (kubernetes-sigs/gateway-api v1.6.1, `conformance/tests/grpcroute-*.yaml`: exact
//! method matching, header matching, listener hostname matching, weights, named rules, the
//! request header modifier), ported with the manifests written as the suite writes them. The
//! client speaks HTTP/2 with prior knowledge (h2c) to the proxy's plain port, as a gRPC client
//! does; the backends are h2c servers behind core Services + EndpointSlices that answer every
//! call with one message (who served it, the path, the request headers) and the trailers
//! `grpc-status: 0`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use super::gateway_api::{backend_yaml, BASE, NS};
use crate::support::*;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The suite's echo service.
const ECHO: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// One gRPC message: the 5-byte prefix (not compressed, length) and `payload`.
fn frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(0);
    b.put_u32(u32::try_from(payload.len()).unwrap());
    b.put_slice(payload);
    b.freeze()
}

/// An h2c gRPC backend: every call gets the headers `content-type: application/grpc`, one
/// message `{"server","path","headers"}` and the trailers `grpc-status: 0`.
struct GrpcBackend {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcBackend {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                conns.spawn(async move {
                    let svc = service_fn(move |req| answer(name, req));
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self { addr, task }
    }
}

async fn answer(name: &str, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    // Repeated headers joined with ", ", in order.
    let headers: BTreeMap<String, String> = req
        .headers()
        .keys()
        .map(|k| {
            let values: Vec<&str> = req
                .headers()
                .get_all(k)
                .iter()
                .map(|v| v.to_str().unwrap_or(""))
                .collect();
            (k.to_string(), values.join(", "))
        })
        .collect();
    let _ = req.into_body().collect().await;
    let message = serde_json::json!({"server": name, "path": path, "headers": headers});
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("ok"));
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(frame(message.to_string().as_bytes()))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut resp = Response::new(StreamBody::new(futures::stream::iter(frames)).boxed_unsync());
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(resp)
}

/// What a unary call got back.
#[derive(Debug)]
struct Reply {
    /// HTTP status.
    status: u16,
    /// Response headers.
    headers: HeaderMap,
    /// The backend's message (`Null` when none came).
    message: serde_json::Value,
    /// The trailers (a trailers-only answer has its `grpc-status` in `headers` instead).
    trailers: Option<HeaderMap>,
}

impl Reply {
    /// The backend that answered, or `-` when none did.
    fn server(&self) -> &str {
        self.message["server"].as_str().unwrap_or("-")
    }

    /// `grpc-status` from the trailers, or from the headers of a trailers-only answer.
    fn grpc_status(&self) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
    }
}

/// A standalone proxy serving BASE, three gRPC backends and `manifests`, and an h2c
/// (prior-knowledge) client connection to its plain port.
struct World {
    _dir: ManifestDir,
    _backends: Vec<GrpcBackend>,
    _proxy: Proxy,
    client: hyper::client::conn::http2::SendRequest<Body>,
}

impl World {
    async fn start(manifests: &str) -> Self {
        let mut backends = Vec::new();
        let mut yaml = String::new();
        for name in [
            "grpc-infra-backend-v1",
            "grpc-infra-backend-v2",
            "grpc-infra-backend-v3",
        ] {
            let b = GrpcBackend::start(name).await;
            yaml.push_str(&backend_yaml(NS, name, &[b.addr]));
            backends.push(b);
        }
        let dir = ManifestDir::new();
        dir.write("00-base.yaml", BASE);
        dir.write("10-backends.yaml", &yaml);
        dir.write("20-routes.yaml", manifests);
        let proxy = standalone_proxy(&dir).await;
        let tcp = TcpStream::connect(proxy.http).await.unwrap();
        let (client, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        Self {
            _dir: dir,
            _backends: backends,
            _proxy: proxy,
            client,
        }
    }

    /// A unary call of `service`/`method` on `host` with `headers`.
    async fn call(
        &self,
        host: &str,
        service: &str,
        method: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::post(format!("http://{host}/{service}/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(frame(b"{}")).boxed_unsync()).unwrap();
        let resp = self
            .client
            .clone()
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("{host}/{service}/{method}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = resp.into_body();
        let mut data = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        let message = if data.len() > 5 {
            serde_json::from_slice(&data[5..]).unwrap_or_default()
        } else {
            serde_json::Value::Null
        };
        Reply {
            status,
            headers,
            message,
            trailers,
        }
    }
}

/// A GRPCRoute in the infra namespace attached to `same-namespace`, with `body` under `spec`.
fn grpc_route(name: &str, body: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRefs: [{{name: same-namespace}}]\n{body}\n---\n"
    )
}

/// `(host, service, method, headers, expected backend)`; every call must end with
/// `grpc-status: 0` in the trailers.
type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

async fn expect(world: &World, cases: &[Case<'_>]) {
    for (host, service, method, headers, backend) in cases {
        let r = world.call(host, service, method, headers).await;
        assert_eq!(
            (r.status, r.server(), r.grpc_status()),
            (200, *backend, Some("0")),
            "{host} /{service}/{method} {headers:?}: {r:?}"
        );
        assert_eq!(r.message["path"], format!("/{service}/{method}"));
        let trailers = r.trailers.as_ref().expect("trailers arrive");
        assert_eq!(trailers["grpc-message"], "ok");
    }
}

#[tokio::test]
async fn grpc_methods_route_to_their_backends_with_trailers() {
    // grpcroute-exact-method-matching and grpcroute-named-rule, plus hookway's mapping of a
    // service-only match (a path prefix), a method-only match and a regular expression.
    let manifests = [
        grpc_route(
            "exact-matching",
            &format!("  hostnames: [exact.example]\n  rules:\n  - matches:\n    - method:\n        service: {ECHO}\n        method: Echo\n    backendRefs:\n    - name: grpc-infra-backend-v1\n      port: 8080\n  - matches:\n    - method:\n        service: {ECHO}\n        method: EchoTwo\n    backendRefs:\n    - name: grpc-infra-backend-v2\n      port: 8080"),
        ),
        grpc_route(
            "grpc-named-rules",
            &format!("  hostnames: [named.example]\n  rules:\n  - name: named-rule\n    matches:\n    - method:\n        service: {ECHO}\n        method: Echo\n    backendRefs:\n    - name: grpc-infra-backend-v1\n      port: 8080\n  - matches:\n    - method:\n        service: {ECHO}\n        method: EchoTwo\n    backendRefs:\n    - name: grpc-infra-backend-v2\n      port: 8080"),
        ),
        grpc_route(
            "shapes",
            "  hostnames: [shapes.example]\n  rules:\n  - matches: [{method: {service: shop.Cart, method: Add}}]\n    backendRefs: [{name: grpc-infra-backend-v1, port: 8080}]\n  - matches: [{method: {service: shop.Cart}}]\n    backendRefs: [{name: grpc-infra-backend-v2, port: 8080}]\n  - matches: [{method: {method: Check}}]\n    backendRefs: [{name: grpc-infra-backend-v3, port: 8080}]\n  - matches: [{method: {type: RegularExpression, service: 'shop\\.v[0-9]+\\.Cart', method: 'Get.*'}}]\n    backendRefs: [{name: grpc-infra-backend-v1, port: 8080}]",
        ),
    ]
    .concat();
    let world = World::start(&manifests).await;
    let (v1, v2, v3) = (
        "grpc-infra-backend-v1",
        "grpc-infra-backend-v2",
        "grpc-infra-backend-v3",
    );
    expect(
        &world,
        &[
            ("exact.example", ECHO, "Echo", &[], v1),
            ("exact.example", ECHO, "EchoTwo", &[], v2),
            ("named.example", ECHO, "Echo", &[], v1),
            ("named.example", ECHO, "EchoTwo", &[], v2),
            // Exact service and method before the service alone before the method alone.
            ("shapes.example", "shop.Cart", "Add", &[], v1),
            ("shapes.example", "shop.Cart", "Remove", &[], v2),
            ("shapes.example", "shop.Cart", "Check", &[], v2),
            ("shapes.example", "grpc.health.v1.Health", "Check", &[], v3),
            ("shapes.example", "shop.v2.Cart", "GetAll", &[], v1),
        ],
    )
    .await;
    // No rule matches: the proxy's 404 (a gRPC client reads it as UNIMPLEMENTED).
    for (host, method) in [("exact.example", "EchoThree"), ("shapes.example", "Other")] {
        let r = world.call(host, ECHO, method, &[]).await;
        assert_eq!((r.status, r.server()), (404, "-"), "{host} {method}: {r:?}");
    }
}

#[tokio::test]
async fn grpc_header_matching() {
    // grpcroute-header-matching, as the suite writes it.
    let manifests = grpc_route(
        "grpc-header-matching",
        "  rules:\n  - matches:\n    - headers:\n      - name: version\n        value: one\n    backendRefs:\n    - name: grpc-infra-backend-v1\n      port: 8080\n  - matches:\n    - headers:\n      - name: version\n        value: two\n    backendRefs:\n    - name: grpc-infra-backend-v2\n      port: 8080\n  - matches:\n    - headers:\n      - name: version\n        value: two\n      - name: color\n        value: orange\n    backendRefs:\n    - name: grpc-infra-backend-v1\n      port: 8080\n  - matches:\n    - headers:\n      - name: color\n        value: blue\n    - headers:\n      - name: color\n        value: green\n    backendRefs:\n    - name: grpc-infra-backend-v1\n      port: 8080\n  - matches:\n    - headers:\n      - name: color\n        value: red\n    - headers:\n      - name: color\n        value: yellow\n    backendRefs:\n    - name: grpc-infra-backend-v2\n      port: 8080",
    );
    let world = World::start(&manifests).await;
    let (v1, v2) = ("grpc-infra-backend-v1", "grpc-infra-backend-v2");
    let h = "any.example";
    expect(
        &world,
        &[
            (h, ECHO, "Echo", &[("version", "one")], v1),
            (h, ECHO, "Echo", &[("version", "two")], v2),
            (
                h,
                ECHO,
                "Echo",
                &[("version", "two"), ("color", "orange")],
                v1,
            ),
            (h, ECHO, "Echo", &[("color", "blue")], v1),
            (h, ECHO, "Echo", &[("color", "green")], v1),
            (h, ECHO, "Echo", &[("color", "red")], v2),
            (h, ECHO, "Echo", &[("color", "yellow")], v2),
        ],
    )
    .await;
    for headers in [
        &[][..],
        &[("version", "three")][..],
        &[("color", "purple")][..],
    ] {
        let r = world.call(h, ECHO, "Echo", headers).await;
        assert_eq!(r.status, 404, "{headers:?}: {r:?}");
    }
}

#[tokio::test]
async fn grpc_listener_hostname_matching() {
    // grpcroute-listener-hostname-matching: four listeners with hostnames, routes attached by
    // sectionName.
    let manifests = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: grpcroute-listener-hostname-matching, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hookway
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}, hostname: bar.com}
  - {name: listener-2, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}, hostname: foo.bar.com}
  - {name: listener-3, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}, hostname: "*.bar.com"}
  - {name: listener-4, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}, hostname: "*.foo.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: backend-v1, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: grpcroute-listener-hostname-matching, namespace: gateway-conformance-infra, sectionName: listener-1}]
  rules: [{backendRefs: [{name: grpc-infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: backend-v2, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: grpcroute-listener-hostname-matching, namespace: gateway-conformance-infra, sectionName: listener-2}]
  rules: [{backendRefs: [{name: grpc-infra-backend-v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: backend-v3, namespace: gateway-conformance-infra}
spec:
  parentRefs:
  - {name: grpcroute-listener-hostname-matching, namespace: gateway-conformance-infra, sectionName: listener-3}
  - {name: grpcroute-listener-hostname-matching, namespace: gateway-conformance-infra, sectionName: listener-4}
  rules: [{backendRefs: [{name: grpc-infra-backend-v3, port: 8080}]}]
"#;
    let world = World::start(manifests).await;
    let (v1, v2, v3) = (
        "grpc-infra-backend-v1",
        "grpc-infra-backend-v2",
        "grpc-infra-backend-v3",
    );
    expect(
        &world,
        &[
            ("bar.com", ECHO, "Echo", &[], v1),
            ("foo.bar.com", ECHO, "Echo", &[], v2),
            ("baz.bar.com", ECHO, "Echo", &[], v3),
            ("boo.bar.com", ECHO, "Echo", &[], v3),
            ("multiple.prefixes.bar.com", ECHO, "Echo", &[], v3),
            ("multiple.prefixes.foo.com", ECHO, "Echo", &[], v3),
        ],
    )
    .await;
    for host in ["foo.com", "no.matching.host"] {
        let r = world.call(host, ECHO, "Echo", &[]).await;
        assert_eq!(r.status, 404, "{host}: {r:?}");
    }
}

#[tokio::test]
async fn grpc_weights_share_the_calls() {
    // grpcroute-weight: 70 / 30 / 0.
    let manifests = grpc_route(
        "weighted-backends",
        "  rules:\n  - backendRefs:\n    - name: grpc-infra-backend-v1\n      port: 8080\n      weight: 70\n    - name: grpc-infra-backend-v2\n      port: 8080\n      weight: 30\n    - name: grpc-infra-backend-v3\n      port: 8080\n      weight: 0",
    );
    let world = World::start(&manifests).await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..100 {
        let r = world.call("any.example", ECHO, "Echo", &[]).await;
        assert_eq!(r.grpc_status(), Some("0"), "{r:?}");
        *seen.entry(r.server().to_string()).or_default() += 1;
    }
    // Smooth weighted round-robin: exactly the weights over one cycle of 100 calls.
    let want: BTreeMap<String, u32> =
        [("grpc-infra-backend-v1", 70), ("grpc-infra-backend-v2", 30)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn grpc_header_modifiers() {
    // grpcroute-request-header-modifier (set, add, remove), and the response side.
    let manifests = grpc_route(
        "request-header-modifier",
        "  rules:\n  - filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n        set: [{name: X-Header-Set, value: set-overwrites-values}]\n        add: [{name: X-Header-Add, value: header-val-1}]\n        remove: [X-Header-Remove]\n    - type: ResponseHeaderModifier\n      responseHeaderModifier:\n        add: [{name: X-Served-By, value: hookway}]\n    backendRefs: [{name: grpc-infra-backend-v1, port: 8080}]",
    );
    let world = World::start(&manifests).await;
    let r = world
        .call(
            "any.example",
            ECHO,
            "Echo",
            &[
                ("x-header-set", "some-other-value"),
                ("x-header-add", "header-val-0"),
                ("x-header-remove", "gone"),
                ("x-keep", "kept"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.server(), r.grpc_status()),
        (200, "grpc-infra-backend-v1", Some("0")),
        "{r:?}"
    );
    let got = &r.message["headers"];
    assert_eq!(got["x-header-set"], "set-overwrites-values", "{got}");
    assert_eq!(got["x-header-add"], "header-val-0, header-val-1", "{got}");
    assert!(got.get("x-header-remove").is_none(), "{got}");
    assert_eq!(got["x-keep"], "kept");
    assert_eq!(got["content-type"], "application/grpc");
    assert_eq!(r.headers["x-served-by"], "hookway");
    assert_eq!(r.headers["content-type"], "application/grpc");
}

#[tokio::test]
async fn grpc_invalid_backend_answers_unavailable() {
    // No usable backend: the spec's UNAVAILABLE (HTTP 200, `grpc-status: 14`, a trailers-only
    // answer), not an HTML 500; with half the weight invalid, half of the calls.
    let manifests = [
        grpc_route(
            "missing",
            "  hostnames: [missing.example]\n  rules:\n  - backendRefs: [{name: does-not-exist, port: 8080}]",
        ),
        grpc_route(
            "half",
            "  hostnames: [half.example]\n  rules:\n  - backendRefs:\n    - {name: grpc-infra-backend-v1, port: 8080}\n    - {name: does-not-exist, port: 8080}",
        ),
    ]
    .concat();
    let world = World::start(&manifests).await;
    let r = world.call("missing.example", ECHO, "Echo", &[]).await;
    assert_eq!((r.status, r.grpc_status()), (200, Some("14")), "{r:?}");
    assert_eq!(r.headers["content-type"], "application/grpc");
    assert!(r.message.is_null(), "{r:?}");
    assert!(
        r.headers["grpc-message"]
            .to_str()
            .unwrap()
            .contains("no usable backend"),
        "{r:?}"
    );
    let mut statuses: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..10 {
        let r = world.call("half.example", ECHO, "Echo", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        *statuses
            .entry(r.grpc_status().unwrap_or("none").to_string())
            .or_default() += 1;
    }
    let want: BTreeMap<String, u32> = [("0".to_string(), 5), ("14".to_string(), 5)].into();
    assert_eq!(statuses, want);
}
