//! The Gateway API's CRDs appearing after the controller started, on the fake API server
//! (whose discovery serves only the groups a test names): first the core kinds, then
//! GRPCRoutes on their own; each is watched once discovery lists it, without a restart. (The
//! same against a real API server with the upstream CRDs: `real_api_gateway.rs`.)

use std::time::{Duration, Instant};

use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{default_compile, Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::gateway_api::CONTROLLER_NAME;
use hookway_tests::fake_api::FakeApi;
use hookway_tests::pki::Pki;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::synthetic_failures::{api, create, resource};

const WAIT: Duration = Duration::from_secs(15);
const NS: &str = "late-gw";
const GROUP: &str = "gateway.networking.k8s.io/v1";

/// Waits until `check` accepts the `status` of `plural/name` (cluster-scoped without `ns`).
async fn wait_status(
    client: &kube::Client,
    ns: Option<&str>,
    kind: &str,
    plural: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) {
    let ar = resource(GROUP, kind, plural);
    let deadline = Instant::now() + WAIT;
    loop {
        let status = api(client, ns, &ar)
            .get(name)
            .await
            .map(|o| o.data["status"].clone())
            .unwrap_or_default();
        if check(&status) {
            return;
        }
        assert!(Instant::now() < deadline, "{kind} {name}: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn accepted(conditions: &Value) -> bool {
    conditions.as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Accepted" && c["status"] == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_kinds_served_later_are_watched_without_a_restart() {
    let fake = FakeApi::start().await;
    let client = fake.client().await;
    create(
        &client,
        None,
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await;
    let pki = Pki::new("late-gateway-api");
    let config = Config {
        namespaces: vec![NS.into()],
        root_namespace: NS.into(),
        stream_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        token: Token::new(&pki.token).unwrap(),
        tls: tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
        identity: "controller-0".into(),
        lease_duration: Duration::from_secs(3),
        debounce: Debounce::default(),
        gateway_api_recheck: Duration::from_millis(200),
        fetch: Default::default(),
        proxy_service: None,
        compile: default_compile(NS),
    };
    // Started while the API server does not serve the Gateway API at all.
    let ctrl = Controller::start(client.clone(), config).await.unwrap();
    let core = [
        ("gatewayclasses", "GatewayClass", false),
        ("gateways", "Gateway", true),
        ("httproutes", "HTTPRoute", true),
        ("referencegrants", "ReferenceGrant", true),
    ];
    fake.serve_group(GROUP, &core);
    create(
        &client,
        None,
        "gatewayclasses",
        json!({"apiVersion": GROUP, "kind": "GatewayClass", "metadata": {"name": "hookway"},
               "spec": {"controllerName": "hookway.dev/gateway-controller"}}),
    )
    .await;
    wait_status(
        &client,
        None,
        "GatewayClass",
        "gatewayclasses",
        "hookway",
        |s| accepted(&s["conditions"]),
    )
    .await;

    // An install without GRPCRoutes, upgraded later: they are watched once served.
    create(
        &client,
        Some(NS),
        "gateways",
        json!({"apiVersion": GROUP, "kind": "Gateway", "metadata": {"name": "gw"},
               "spec": {"gatewayClassName": "hookway",
                        "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}}),
    )
    .await;
    let mut with_grpc = core.to_vec();
    with_grpc.push(("grpcroutes", "GRPCRoute", true));
    fake.serve_group(GROUP, &with_grpc);
    create(
        &client,
        Some(NS),
        "grpcroutes",
        json!({"apiVersion": GROUP, "kind": "GRPCRoute", "metadata": {"name": "grpc"},
               "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["grpc.example.com"],
                        "rules": [{}]}}),
    )
    .await;
    wait_status(&client, Some(NS), "GRPCRoute", "grpcroutes", "grpc", |s| {
        s["parents"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["controllerName"] == CONTROLLER_NAME && accepted(&p["conditions"]))
        })
    })
    .await;
    ctrl.shutdown().await;
}
