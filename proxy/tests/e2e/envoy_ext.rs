//! The Envoy-compatible plugin kinds `ext_authz` and `ext_proc` against tonic servers written
//! with the generated Envoy services (as a user would write them), through a real proxy loading
//! manifests and a real echo upstream.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Msg;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Answer;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation, BodyMutation, BodyResponse, CommonResponse, HeaderMutation, HeadersResponse,
    ImmediateResponse, ProcessingRequest, ProcessingResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;

use crate::support::*;

/// Serves `service` on a fresh local port (HTTP/2 without TLS, as gRPC servers usually run
/// inside a cluster).
async fn serve<S>(service: S) -> std::net::SocketAddr
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    });
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(service, incoming));
    addr
}

fn set(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: String::new(),
            raw_value: value.as_bytes().to_vec(),
        }),
        append_action: 2, // OVERWRITE_IF_EXISTS_OR_ADD
        ..Default::default()
    }
}

/// A GatewayPlugin with an explicit `order`.
fn ordered_plugin(name: &str, kind: &str, order: u32, config: &str) -> String {
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: GatewayPlugin\nmetadata: {{name: {name}, namespace: hookway-system}}\nspec:\n  plugin: {kind}\n  status: enable\n  order: {order}\n  config: {config}\n"
    )
}

// ---------------------------------------------------------------- ext_authz

/// `authorization: good` passes (with `x-user` set, `x-remove-me` removed, `x-authz` on the
/// response and what the server saw in `x-seen`), `slow` never gets an answer, anything else
/// is denied with 401, a header and a body.
#[derive(Clone, Default)]
struct Authz;

#[tonic::async_trait]
impl Authorization for Authz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let attrs = request.into_inner().attributes.unwrap_or_default();
        let http = attrs.request.unwrap_or_default().http.unwrap_or_default();
        let source = format!("{:?}", attrs.source.unwrap_or_default().address);
        let answer = match http.headers.get("authorization").map(String::as_str) {
            Some("good") => CheckResponse {
                status: Some(RpcStatus::default()),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![
                        set("x-user", "alice"),
                        set(
                            "x-seen",
                            &format!(
                                "{} {} {} {} {} {}",
                                http.method,
                                http.path,
                                http.host,
                                http.protocol,
                                http.headers.get("x-a").map_or("-", String::as_str),
                                source.contains("127.0.0.1"),
                            ),
                        ),
                    ],
                    headers_to_remove: vec!["x-remove-me".into()],
                    response_headers_to_add: vec![set("x-authz", "yes")],
                    ..Default::default()
                })),
                ..Default::default()
            },
            Some("slow") => std::future::pending().await,
            _ => CheckResponse {
                status: Some(RpcStatus {
                    code: 7, // PERMISSION_DENIED
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus { code: 401 }),
                    headers: vec![set("www-authenticate", "Bearer realm=\"shop\"")],
                    body: "login first".into(),
                })),
                ..Default::default()
            },
        };
        Ok(tonic::Response::new(answer))
    }
}

#[tokio::test]
async fn ext_authz_allows_with_headers_and_denies_with_the_servers_answer() {
    let echo = EchoServer::start("echo").await;
    let authz = serve(AuthorizationServer::new(Authz)).await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "a.yaml",
                ordered_plugin("a-headers", "headers", 1, "{request: {set: {x-a: \"1\"}}}"),
            ),
            // The Route's own config names the authorization server as a hookway Service.
            (
                "authz.yaml",
                ordered_plugin("b-authz", "ext_authz", 2, "{target: {service: authz}}"),
            ),
            ("svc.yaml", service_yaml("authz", &[authz])),
            (
                "route.yaml",
                route_yaml(
                    "r",
                    "/",
                    "a-headers: {}, b-authz: {config: {target: {service: authz}, timeout: 2s}}",
                ),
            ),
        ],
    )
    .await;

    let c = client();
    let resp = c
        .get(proxy.url("/orders?id=7"))
        .header("authorization", "good")
        .header("x-user", "mallory")
        .header("x-remove-me", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-authz"], "yes", "response_headers_to_add");
    let seen = json(resp).await;
    let headers = &seen["headers"];
    assert_eq!(headers["x-user"], "alice", "set, not appended: {headers}");
    assert!(headers.get("x-remove-me").is_none(), "{headers}");
    let host = proxy
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert_eq!(
        headers["x-seen"],
        format!("GET /orders?id=7 {host} HTTP/1.1 1 true"),
        "the CheckRequest, after the built-in that runs first"
    );

    let resp = c
        .get(proxy.url("/orders"))
        .header("authorization", "bad")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"shop\"");
    assert_eq!(resp.text().await.unwrap(), "login first");
    assert_eq!(
        echo.hits(),
        1,
        "a denied request never reaches the upstream"
    );
}

#[tokio::test]
async fn ext_authz_server_down_fails_closed_or_open_and_a_timeout_is_bounded() {
    let echo = EchoServer::start("echo").await;
    let authz = serve(AuthorizationServer::new(Authz)).await;
    let down = dead_addr().await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "closed.yaml",
                plugin_yaml(
                    "closed",
                    "ext_authz",
                    &format!("{{target: {{address: \"http://{down}\"}}, timeout: 1s}}"),
                ),
            ),
            (
                "open.yaml",
                plugin_yaml(
                    "open",
                    "ext_authz",
                    &format!(
                        "{{target: {{address: \"http://{down}\"}}, failure_mode_allow: true}}"
                    ),
                ),
            ),
            (
                "slow.yaml",
                plugin_yaml(
                    "slow",
                    "ext_authz",
                    &format!("{{target: {{address: \"http://{authz}\"}}, timeout: 300ms}}"),
                ),
            ),
            ("r1.yaml", route_yaml("r1", "/closed", "closed: {}")),
            ("r2.yaml", route_yaml("r2", "/open", "open: {}")),
            ("r3.yaml", route_yaml("r3", "/slow", "slow: {}")),
        ],
    )
    .await;
    let c = client();

    let resp = c.get(proxy.url("/closed")).send().await.unwrap();
    assert_eq!(resp.status(), 403, "status_on_error defaults to 403");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("[ext_authz closed]") && body.contains("unavailable"),
        "{body}"
    );

    let resp = c.get(proxy.url("/open")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "fail open");

    let started = Instant::now();
    let resp = c
        .get(proxy.url("/slow"))
        .header("authorization", "slow")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(body.contains("timeout"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(echo.hits(), 1);

    let m = metrics(&proxy).await;
    for line in [
        "hookway_envoy_ext_failures_total{alias=\"closed\",outcome=\"refused\",plugin=\"ext_authz\",reason=\"unavailable\"} 1",
        "hookway_envoy_ext_failures_total{alias=\"open\",outcome=\"allowed\",plugin=\"ext_authz\",reason=\"unavailable\"} 1",
        "hookway_envoy_ext_failures_total{alias=\"slow\",outcome=\"refused\",plugin=\"ext_authz\",reason=\"timeout\"} 1",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
}

// ---------------------------------------------------------------- ext_proc

/// What a test processor does with one message: answer, or never answer.
type Behaviour = fn(&ProcessingRequest) -> Option<ProcessingResponse>;

/// An ext_proc server running `behaviour` on every message; it records the kinds of the
/// messages it got and how many streams were opened.
#[derive(Clone)]
struct Processor {
    behaviour: Behaviour,
    /// Hold every answer until a body message with `end_of_stream` arrives (a server that
    /// needs to see the whole body before answering any chunk).
    hold_until_end: bool,
    seen: Arc<Mutex<Vec<String>>>,
    streams: Arc<Mutex<usize>>,
}

impl Processor {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            hold_until_end: false,
            seen: Arc::default(),
            streams: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn streams(&self) -> usize {
        *self.streams.lock().unwrap()
    }
}

fn kind(msg: &ProcessingRequest) -> String {
    match &msg.request {
        Some(Msg::RequestHeaders(_)) => "request_headers".into(),
        Some(Msg::ResponseHeaders(_)) => "response_headers".into(),
        Some(Msg::RequestBody(b)) => format!("request_body({},{})", b.body.len(), b.end_of_stream),
        Some(Msg::ResponseBody(b)) => format!("response_body({})", b.end_of_stream),
        Some(Msg::RequestTrailers(_)) => "request_trailers".into(),
        Some(Msg::ResponseTrailers(_)) => "response_trailers".into(),
        None => "none".into(),
    }
}

#[tonic::async_trait]
impl ExternalProcessor for Processor {
    type ProcessStream =
        Pin<Box<dyn Stream<Item = Result<ProcessingResponse, tonic::Status>> + Send>>;

    async fn process(
        &self,
        request: tonic::Request<tonic::Streaming<ProcessingRequest>>,
    ) -> Result<tonic::Response<Self::ProcessStream>, tonic::Status> {
        *self.streams.lock().unwrap() += 1;
        let mut inbound = request.into_inner();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let this = self.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(Ok(msg)) = inbound.next().await {
                this.seen.lock().unwrap().push(kind(&msg));
                held.extend((this.behaviour)(&msg));
                let end = matches!(&msg.request, Some(Msg::RequestBody(b) | Msg::ResponseBody(b)) if b.end_of_stream);
                if this.hold_until_end && !end {
                    continue;
                }
                for answer in held.drain(..) {
                    if tx.unbounded_send(Ok(answer)).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(rx)))
    }
}

fn headers_answer(msg: &ProcessingRequest, mutation: Option<HeaderMutation>) -> ProcessingResponse {
    let common = HeadersResponse {
        response: Some(CommonResponse {
            header_mutation: mutation,
            ..Default::default()
        }),
    };
    let response = match &msg.request {
        Some(Msg::ResponseHeaders(_)) => Answer::ResponseHeaders(common),
        _ => Answer::RequestHeaders(common),
    };
    ProcessingResponse {
        response: Some(response),
        ..Default::default()
    }
}

fn header_of(msg: &ProcessingRequest, name: &str) -> Option<String> {
    let Some(Msg::RequestHeaders(h)) = &msg.request else {
        return None;
    };
    h.headers
        .as_ref()?
        .headers
        .iter()
        .find(|h| h.key == name)
        .map(|h| {
            if h.raw_value.is_empty() {
                h.value.clone()
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            }
        })
}

/// Rewrites the path, sets a request header (telling what it saw of the built-in's header),
/// and marks the response.
fn rewriter(msg: &ProcessingRequest) -> Option<ProcessingResponse> {
    let mutation = match &msg.request {
        Some(Msg::RequestHeaders(_)) => HeaderMutation {
            set_headers: vec![
                set(":path", "/rewritten?by=proc"),
                set(
                    "x-proc",
                    &format!("saw-a={}", header_of(msg, "x-a").unwrap_or_default()),
                ),
            ],
            remove_headers: vec!["x-drop".into()],
        },
        _ => HeaderMutation {
            set_headers: vec![set("x-order", "proc"), set("x-proc-response", "seen")],
            remove_headers: vec![],
        },
    };
    Some(headers_answer(msg, Some(mutation)))
}

#[tokio::test]
async fn ext_proc_rewrites_the_request_and_marks_the_response_in_onion_order() {
    let echo = EchoServer::start("echo").await;
    let processor = Processor::new(rewriter);
    let addr = serve(ExternalProcessorServer::new(processor.clone())).await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "a.yaml",
                ordered_plugin(
                    "a-headers",
                    "headers",
                    1,
                    "{request: {set: {x-a: \"1\"}}, response: {set: {x-order: builtin}}}",
                ),
            ),
            (
                "b.yaml",
                ordered_plugin(
                    "b-proc",
                    "ext_proc",
                    2,
                    &format!("{{target: {{address: \"http://{addr}\"}}, message_timeout: 2s}}"),
                ),
            ),
            (
                "route.yaml",
                route_yaml("r", "/", "a-headers: {}, b-proc: {}"),
            ),
        ],
    )
    .await;

    let resp = client()
        .get(proxy.url("/original"))
        .header("x-drop", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-proc-response"], "seen");
    assert_eq!(
        resp.headers()["x-order"],
        "builtin",
        "the outer built-in's response hook runs after ext_proc's"
    );
    let seen = json(resp).await;
    assert_eq!(seen["path"], "/rewritten?by=proc");
    assert_eq!(
        seen["headers"]["x-proc"], "saw-a=1",
        "ext_proc ran after the built-in"
    );
    assert!(seen["headers"].get("x-drop").is_none());
    assert_eq!(processor.seen(), ["request_headers", "response_headers"]);
    assert_eq!(processor.streams(), 1);
}

/// Answers the request headers with a 403 of its own.
fn refuser(msg: &ProcessingRequest) -> Option<ProcessingResponse> {
    let _ = msg;
    Some(ProcessingResponse {
        response: Some(Answer::ImmediateResponse(ImmediateResponse {
            status: Some(HttpStatus { code: 403 }),
            headers: Some(HeaderMutation {
                set_headers: vec![set("x-refused-by", "proc")],
                remove_headers: vec![],
            }),
            body: b"not today".to_vec(),
            ..Default::default()
        })),
        ..Default::default()
    })
}

#[tokio::test]
async fn ext_proc_immediate_response_answers_early_and_outer_plugins_still_see_it() {
    let echo = EchoServer::start("echo").await;
    let addr = serve(ExternalProcessorServer::new(Processor::new(refuser))).await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "a.yaml",
                ordered_plugin(
                    "a-headers",
                    "headers",
                    1,
                    "{response: {set: {x-outer: ran}}}",
                ),
            ),
            (
                "b.yaml",
                ordered_plugin(
                    "b-proc",
                    "ext_proc",
                    2,
                    &format!("{{target: {{address: \"http://{addr}\"}}}}"),
                ),
            ),
            (
                "route.yaml",
                route_yaml("r", "/", "a-headers: {}, b-proc: {}"),
            ),
        ],
    )
    .await;
    let resp = client().get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-refused-by"], "proc");
    assert_eq!(resp.headers()["x-outer"], "ran");
    assert_eq!(resp.text().await.unwrap(), "not today");
    assert_eq!(echo.hits(), 0);
}

/// Upper-cases every body chunk, request and response.
fn shouter(msg: &ProcessingRequest) -> Option<ProcessingResponse> {
    let (body, request) = match &msg.request {
        Some(Msg::RequestBody(b)) => (b.body.to_ascii_uppercase(), true),
        Some(Msg::ResponseBody(b)) => (b.body.to_ascii_uppercase(), false),
        _ => return Some(headers_answer(msg, None)),
    };
    let answer = BodyResponse {
        response: Some(CommonResponse {
            body_mutation: Some(BodyMutation {
                mutation: Some(body_mutation::Mutation::Body(body)),
            }),
            ..Default::default()
        }),
    };
    Some(ProcessingResponse {
        response: Some(if request {
            Answer::RequestBody(answer)
        } else {
            Answer::ResponseBody(answer)
        }),
        ..Default::default()
    })
}

#[tokio::test]
async fn ext_proc_streamed_bodies_are_mutated_chunk_by_chunk() {
    let echo = EchoServer::start("echo").await;
    let processor = Processor::new(shouter);
    let addr = serve(ExternalProcessorServer::new(processor.clone())).await;
    let config = format!(
        "{{target: {{address: \"http://{addr}\"}}, message_timeout: 2s, processing_mode: {{request_header_mode: SKIP, response_header_mode: SKIP, request_body_mode: STREAMED, response_body_mode: STREAMED}}}}"
    );
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("p.yaml", plugin_yaml("proc", "ext_proc", &config)),
            ("route.yaml", route_yaml("r", "/", "proc: {}")),
        ],
    )
    .await;
    // A body sent in chunks (a stream: no Content-Length).
    let chunks = futures::stream::iter(["hello ", "streamed ", "world"].map(|c| {
        Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::from_static(
            c.as_bytes(),
        )))
    }));
    let resp = client()
        .post(proxy.url("/upload"))
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let seen: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        seen["BODY"], "HELLO STREAMED WORLD",
        "request chunks, then the echo, upper-cased: {text}"
    );
    let kinds = processor.seen();
    assert!(
        !kinds.iter().any(|k| k.contains("headers")),
        "headers skipped: {kinds:?}"
    );
    assert!(
        kinds.iter().any(|k| k.starts_with("request_body")),
        "{kinds:?}"
    );
    assert_eq!(kinds.last().unwrap(), "response_body(true)", "{kinds:?}");
}

/// Replaces the whole (buffered) request body.
fn replacer(msg: &ProcessingRequest) -> Option<ProcessingResponse> {
    match &msg.request {
        Some(Msg::RequestBody(b)) => {
            let body = format!("replaced {} bytes", b.body.len()).into_bytes();
            Some(ProcessingResponse {
                response: Some(Answer::RequestBody(BodyResponse {
                    response: Some(CommonResponse {
                        header_mutation: Some(HeaderMutation {
                            set_headers: vec![set("x-body-seen", "yes")],
                            remove_headers: vec![],
                        }),
                        body_mutation: Some(BodyMutation {
                            mutation: Some(body_mutation::Mutation::Body(body)),
                        }),
                        ..Default::default()
                    }),
                })),
                ..Default::default()
            })
        }
        _ => Some(headers_answer(msg, None)),
    }
}

#[tokio::test]
async fn ext_proc_buffered_request_body_is_replaced_and_capped() {
    let echo = EchoServer::start("echo").await;
    let addr = serve(ExternalProcessorServer::new(Processor::new(replacer))).await;
    let config = format!(
        "{{target: {{address: \"http://{addr}\"}}, message_timeout: 2s, max_buffered_bytes: 64, processing_mode: {{response_header_mode: SKIP, request_body_mode: BUFFERED}}}}"
    );
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("p.yaml", plugin_yaml("proc", "ext_proc", &config)),
            ("route.yaml", route_yaml("r", "/", "proc: {}")),
        ],
    )
    .await;
    let c = client();
    let seen = json(
        c.post(proxy.url("/b"))
            .body("twelve bytes")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen["body"], "replaced 12 bytes");
    assert_eq!(
        seen["headers"]["x-body-seen"], "yes",
        "header mutations of a buffered body apply"
    );
    let resp = c
        .post(proxy.url("/b"))
        .body(vec![b'x'; 65])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413, "over max_buffered_bytes");
    assert_eq!(echo.hits(), 1);
}

/// Never answers.
fn silent(_: &ProcessingRequest) -> Option<ProcessingResponse> {
    None
}

#[tokio::test]
async fn ext_proc_a_server_that_never_answers_times_out_closed_or_open() {
    let echo = EchoServer::start("echo").await;
    let addr = serve(ExternalProcessorServer::new(Processor::new(silent))).await;
    let down = dead_addr().await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("closed.yaml", plugin_yaml("closed", "ext_proc", &format!("{{target: {{address: \"http://{addr}\"}}, message_timeout: 300ms}}"))),
            ("open.yaml", plugin_yaml("open", "ext_proc", &format!("{{target: {{address: \"http://{addr}\"}}, message_timeout: 300ms, failure_mode_allow: true}}"))),
            ("down.yaml", plugin_yaml("down", "ext_proc", &format!("{{target: {{address: \"http://{down}\"}}}}"))),
            ("r1.yaml", route_yaml("r1", "/closed", "closed: {}")),
            ("r2.yaml", route_yaml("r2", "/open", "open: {}")),
            ("r3.yaml", route_yaml("r3", "/down", "down: {}")),
        ],
    )
    .await;
    let c = client();
    let started = Instant::now();
    let resp = c.get(proxy.url("/closed")).send().await.unwrap();
    assert_eq!(resp.status(), 500, "status_on_error defaults to 500");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("[ext_proc closed]") && body.contains("timeout"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let resp = c.get(proxy.url("/open")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "fail open: the request goes on unprocessed"
    );
    assert_eq!(echo.hits(), 1);

    let resp = c.get(proxy.url("/down")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(resp.text().await.unwrap().contains("unavailable"));
}

/// Answers everything without changes.
fn passer(msg: &ProcessingRequest) -> Option<ProcessingResponse> {
    Some(headers_answer(msg, None))
}

#[tokio::test]
async fn ext_proc_skipped_phases_send_nothing() {
    let echo = EchoServer::start("echo").await;
    let processor = Processor::new(passer);
    let addr = serve(ExternalProcessorServer::new(processor.clone())).await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "req.yaml",
                plugin_yaml("req-only", "ext_proc", &format!("{{target: {{address: \"http://{addr}\"}}, processing_mode: {{response_header_mode: SKIP}}}}")),
            ),
            (
                "none.yaml",
                plugin_yaml("nothing", "ext_proc", &format!("{{target: {{address: \"http://{addr}\"}}, processing_mode: {{request_header_mode: SKIP, response_header_mode: SKIP}}}}")),
            ),
            ("r1.yaml", route_yaml("r1", "/req", "req-only: {}")),
            ("r2.yaml", route_yaml("r2", "/none", "nothing: {}")),
        ],
    )
    .await;
    let c = client();
    assert_eq!(
        c.get(proxy.url("/none")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        processor.streams(),
        0,
        "a mode that skips everything opens no stream"
    );
    assert_eq!(c.get(proxy.url("/req")).send().await.unwrap().status(), 200);
    assert_eq!(processor.seen(), ["request_headers"], "one round trip");
    assert_eq!(processor.streams(), 1);
}

fn immediate(code: i32, body: &str) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(Answer::ImmediateResponse(ImmediateResponse {
            status: Some(HttpStatus { code }),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Lets the request headers pass, answers a request body chunk with 429 and the response
/// headers with 418.
fn late_refuser(msg: &ProcessingRequest) -> Option<ProcessingResponse> {
    Some(match &msg.request {
        Some(Msg::RequestBody(_)) => immediate(429, "too much"),
        Some(Msg::ResponseHeaders(_)) => immediate(418, "teapot"),
        _ => headers_answer(msg, None),
    })
}

#[tokio::test]
async fn ext_proc_immediate_responses_after_the_request_head_replace_the_answer() {
    let echo = EchoServer::start("echo").await;
    let addr = serve(ExternalProcessorServer::new(Processor::new(late_refuser))).await;
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            (
                "body.yaml",
                plugin_yaml("body", "ext_proc", &format!("{{target: {{address: \"http://{addr}\"}}, message_timeout: 2s, processing_mode: {{response_header_mode: SKIP, request_body_mode: STREAMED}}}}")),
            ),
            (
                "head.yaml",
                plugin_yaml("head", "ext_proc", &format!("{{target: {{address: \"http://{addr}\"}}, message_timeout: 2s}}")),
            ),
            ("r1.yaml", route_yaml("r1", "/body", "body: {}")),
            ("r2.yaml", route_yaml("r2", "/head", "head: {}")),
        ],
    )
    .await;
    let c = client();
    let resp = c
        .post(proxy.url("/body"))
        .body("some body")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        429,
        "an immediate response to a streamed chunk"
    );
    assert_eq!(resp.text().await.unwrap(), "too much");

    let resp = c.get(proxy.url("/head")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        418,
        "an immediate response to the response headers"
    );
    assert_eq!(
        resp.text().await.unwrap(),
        "teapot",
        "replaces the upstream's body"
    );
}

#[tokio::test]
async fn ext_proc_streamed_chunks_do_not_wait_for_each_answer() {
    let echo = EchoServer::start("echo").await;
    let mut holder = Processor::new(shouter);
    holder.hold_until_end = true;
    let addr = serve(ExternalProcessorServer::new(holder.clone())).await;
    let config = format!(
        "{{target: {{address: \"http://{addr}\"}}, message_timeout: 2s, processing_mode: {{request_header_mode: SKIP, response_header_mode: SKIP, request_body_mode: STREAMED}}}}"
    );
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("p.yaml", plugin_yaml("proc", "ext_proc", &config)),
            ("route.yaml", route_yaml("r", "/", "proc: {}")),
        ],
    )
    .await;
    let chunks = futures::stream::iter(["one ", "two ", "three"].map(|c| {
        Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::from_static(
            c.as_bytes(),
        )))
    }));
    let resp = client()
        .post(proxy.url("/upload"))
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the server answered every chunk at the end of the stream"
    );
    assert_eq!(json(resp).await["body"], "ONE TWO THREE");
}

#[tokio::test]
async fn ext_proc_buffered_response_body_is_replaced() {
    let echo = EchoServer::start("echo").await;
    let addr = serve(ExternalProcessorServer::new(Processor::new(shouter))).await;
    let config = format!(
        "{{target: {{address: \"http://{addr}\"}}, message_timeout: 2s, processing_mode: {{request_header_mode: SKIP, response_header_mode: SKIP, response_body_mode: BUFFERED}}}}"
    );
    let (_dir, proxy) = proxy_with(
        echo.addr,
        &[
            ("p.yaml", plugin_yaml("proc", "ext_proc", &config)),
            ("route.yaml", route_yaml("r", "/", "proc: {}")),
        ],
    )
    .await;
    let resp = client().get(proxy.url("/quiet")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(
        seen["PATH"], "/QUIET",
        "the whole body, upper-cased in one answer"
    );
}
