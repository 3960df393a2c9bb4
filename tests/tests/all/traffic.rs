//! Traffic end to end: fake API server → real controller → stream → two real proxies (the data
//! plane, in-process) → a real upstream. Plugins configured by GatewayPlugin/Route objects change
//! what clients see; deleting a Route makes it 404; proxies keep serving without the controller.
//!
//! Upstreams are static `nodes` (a real API server refuses loopback EndpointSlices, and so does
//! the fake).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{default_compile, Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::{GatewayPlugin, Route, Service};
use hookway_tests::fake_api::FakeApi;
use hookway_tests::pki::Pki;
use hookway_tests::{proxy, upstream};
use http_body_util::Full;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);
const NS: &str = "traffic";

async fn controller(client: &Client, pki: &Pki, stream: &str) -> Controller {
    let config = Config {
        namespaces: vec![NS.into()],
        root_namespace: NS.into(),
        stream_listener: TcpListener::bind(stream).await.unwrap(),
        admin_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        token: Token::new(&pki.token).unwrap(),
        tls: tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
        identity: "controller-0".into(),
        lease_duration: Duration::from_secs(3),
        debounce: Debounce::default(),
        compile: default_compile(NS),
    };
    Controller::start(client.clone(), config).await.unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "shop.example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `path` on `addr` until the answer satisfies `ok`.
async fn eventually(
    addr: SocketAddr,
    path: &str,
    what: &str,
    ok: impl Fn(u16, &str) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = get(addr, path).await;
        if ok(status, &body) {
            return started.elapsed();
        }
        assert!(started.elapsed() < WAIT, "{what}: still {status} {body:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_become_traffic_through_two_proxies() {
    let fake = FakeApi::start().await;
    let client = fake.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": NS}})),
    )
    .await
    .unwrap();
    let pki = Pki::new("traffic");
    let upstream = upstream::start().await;
    let ctrl = controller(&client, &pki, "127.0.0.1:0").await;
    let stream_addr = ctrl.stream_addr;
    let (p1, p2) = (
        proxy::start(&pki, stream_addr, "proxy-1").await,
        proxy::start(&pki, stream_addr, "proxy-2").await,
    );

    let plugins: Api<GatewayPlugin> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let routes: Api<Route> = Api::namespaced(client.clone(), NS);
    let pp = PostParams::default();
    plugins
        .create(
            &pp,
            &object(json!({
                "apiVersion": "hookway.dev/v1alpha1", "kind": "GatewayPlugin",
                "metadata": {"name": "env"},
                "spec": {"plugin": "headers", "status": "global", "order": 10,
                         "config": {"request": {"set": {"x-env": "one"}}}}
            })),
        )
        .await
        .unwrap();
    services
        .create(
            &pp,
            &object(json!({
                "apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
                "metadata": {"name": "shop"},
                "spec": {"nodes": [{"address": upstream.ip().to_string(), "port": upstream.port()}]}
            })),
        )
        .await
        .unwrap();
    routes
        .create(
            &pp,
            &object(json!({
                "apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": "shop"},
                "spec": {"hosts": ["shop.example.com"], "service": "shop",
                         "rules": [{"path": {"type": "Prefix", "value": "/shop"}}]}
            })),
        )
        .await
        .unwrap();

    // Created: traffic flows through the chain on both proxies.
    for p in [&p1, &p2] {
        eventually(p.http, "/shop/cart", "route served", |s, b| {
            s == 200 && b.contains("x-env=Some(\"one\")")
        })
        .await;
    }

    // Updated config: new behaviour within a second on both proxies.
    let mut env = plugins.get("env").await.unwrap();
    env.spec.config = Some(json!({"request": {"set": {"x-env": "two"}}}));
    plugins.replace("env", &pp, &env).await.unwrap();
    for p in [&p1, &p2] {
        let took = eventually(p.http, "/shop/cart", "update applied", |s, b| {
            s == 200 && b.contains("\"two\"")
        })
        .await;
        assert!(took < Duration::from_secs(1), "update took {took:?}");
    }

    // An invalid Route is rejected and does not disturb the served one.
    routes
        .create(
            &pp,
            &object(json!({
                "apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": "broken"},
                "spec": {"hosts": ["shop.example.com"], "service": "shop", "plugins": {"nope": {}},
                         "rules": [{"path": {"type": "Prefix", "value": "/broken"}}]}
            })),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let status = routes
            .get("broken")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if status.conditions.iter().any(|c| {
            c.type_ == "ResolvedRefs" && c.status == "False" && c.reason == "PluginNotFound"
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broken route never reported: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(p1.http, "/broken").await.0, 404);
    assert_eq!(get(p1.http, "/shop/x").await.0, 200);

    // Deleted: 404.
    routes
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    for p in [&p1, &p2] {
        eventually(p.http, "/shop/cart", "route deleted", |s, _| s == 404).await;
    }

    // Controller gone: proxies keep serving their last snapshot.
    routes
        .create(
            &pp,
            &object(json!({
                "apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": "shop2"},
                "spec": {"hosts": ["shop.example.com"], "service": "shop"}
            })),
        )
        .await
        .unwrap();
    eventually(p2.http, "/anything", "shop2 served", |s, _| s == 200).await;
    ctrl.shutdown().await;
    // Two redials: the proxies have noticed (usually one each; a check that cannot fail falsely).
    proxy::wait_redials(stream_addr, 2).await;
    for p in [&p1, &p2] {
        assert_eq!(
            get(p.http, "/anything").await.0,
            200,
            "serves without the controller"
        );
    }
}
