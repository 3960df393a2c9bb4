//! A proxy that cannot build part of an HTTPRoute or an Ingress (the `fragile` test plugin,
//! attached through an `ExtensionRef` and through the `hookway.dev/plugins` annotation) reports
//! the synthetic object it left out; the controller folds that onto the source object: the
//! HTTPRoute's parent entry gets `hookway.dev/Programmed=False` (`ApplyFailed`, `Accepted`
//! unchanged), the Ingress a Warning Event `ApplyFailed`. Nothing is written to a synthetic name.

use std::time::{Duration, Instant};

use hookway_controller::compile_loop::Debounce;
use hookway_controller::run::{Config, Controller};
use hookway_controller::stream::{tls, Token};
use hookway_crds::gateway_api::CONTROLLER_NAME;
use hookway_tests::fake_api::FakeApi;
use hookway_tests::pki::Pki;
use hookway_tests::proxy;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(15);
const ROOT: &str = "sf-system";
const NS: &str = "sf-app";

pub(crate) fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub(crate) fn api(
    client: &Client,
    namespace: Option<&str>,
    ar: &ApiResource,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Creates `value` (its `apiVersion` and `kind` say where), in `namespace` when given.
pub(crate) async fn create(client: &Client, namespace: Option<&str>, plural: &str, value: Value) {
    let ar = resource(
        value["apiVersion"].as_str().unwrap(),
        value["kind"].as_str().unwrap(),
        plural,
    );
    let object: DynamicObject = serde_json::from_value(value.clone()).unwrap();
    api(client, namespace, &ar)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("creating {value}: {e}"));
}

/// Our `status.parents[]` entry of HTTPRoute `name`.
async fn our_parent(client: &Client, name: &str) -> Option<Value> {
    let ar = resource("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes");
    let route = api(client, Some(NS), &ar).get(name).await.ok()?;
    route.data["status"]["parents"]
        .as_array()?
        .iter()
        .find(|p| p["controllerName"] == CONTROLLER_NAME)
        .cloned()
}

fn condition<'a>(parent: &'a Value, type_: &str) -> Option<&'a Value> {
    parent["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_failures_of_lowered_objects_reach_the_httproute_and_the_ingress() {
    let fake = FakeApi::start().await;
    fake.serve_group(
        "gateway.networking.k8s.io/v1",
        &[
            ("gatewayclasses", "GatewayClass", false),
            ("gateways", "Gateway", true),
            ("httproutes", "HTTPRoute", true),
            ("grpcroutes", "GRPCRoute", true),
            ("referencegrants", "ReferenceGrant", true),
        ],
    );
    let client = fake.client().await;
    for ns in [ROOT, NS] {
        create(
            &client,
            None,
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
    }
    let pki = Pki::new("synthetic-failures");
    let registry = hookway_tests::fragile::registry();
    let catalogue = registry.catalogue().clone();
    let options = hookway_crds::compiler::Options {
        root_namespace: ROOT.into(),
        ..Default::default()
    };
    let config = Config {
        namespaces: vec![ROOT.into(), NS.into()],
        root_namespace: ROOT.into(),
        stream_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin_listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        token: Token::new(&pki.token).unwrap(),
        tls: tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
        identity: "controller-0".into(),
        lease_duration: Duration::from_secs(3),
        debounce: Debounce::default(),
        gateway_api_recheck: Duration::from_secs(1),
        fetch: Default::default(),
        proxy_service: None,
        compile: std::sync::Arc::new(move |objects, _previous| {
            hookway_crds::compiler::compile(objects, &options, &catalogue)
        }),
    };
    let ctrl = Controller::start(client.clone(), config).await.unwrap();
    let _proxies = [
        proxy::start_with(&pki, ctrl.stream_addr, "proxy-1", registry).await,
        proxy::start_with(
            &pki,
            ctrl.stream_addr,
            "proxy-2",
            hookway_tests::fragile::registry(),
        )
        .await,
    ];

    // A backend (an address the fake API server accepts; no traffic goes there).
    create(
        &client,
        Some(NS),
        "services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    create(
        &client,
        Some(NS),
        "endpointslices",
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": 8080}],
               "endpoints": [{"addresses": ["192.0.2.10"]}]}),
    )
    .await;
    // The plugin instance no proxy can build (its config is valid for the compiler).
    create(
        &client,
        Some(NS),
        "gatewayplugins",
        json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "GatewayPlugin",
               "metadata": {"name": "fragile"},
               "spec": {"plugin": "fragile", "status": "enable", "config": {"fail": true}}}),
    )
    .await;

    create(
        &client,
        None,
        "gatewayclasses",
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "hookway"},
               "spec": {"controllerName": "hookway.dev/gateway-controller"}}),
    )
    .await;
    create(
        &client,
        Some(NS),
        "gateways",
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw"},
               "spec": {"gatewayClassName": "hookway",
                        "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}}),
    )
    .await;
    let http_route = |name: &str, host: &str, filters: Value| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": name},
               "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [host],
                        "rules": [{"filters": filters,
                                   "backendRefs": [{"name": "web", "port": 80}]}]}})
    };
    create(
        &client,
        Some(NS),
        "httproutes",
        http_route(
            "broken",
            "broken.example.com",
            json!([{"type": "ExtensionRef",
                    "extensionRef": {"group": "hookway.dev", "kind": "GatewayPlugin",
                                     "name": "fragile"}}]),
        ),
    )
    .await;
    create(
        &client,
        Some(NS),
        "httproutes",
        http_route("fine", "fine.example.com", json!([])),
    )
    .await;

    create(
        &client,
        None,
        "ingressclasses",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
               "metadata": {"name": "hookway"},
               "spec": {"controller": "hookway.dev/ingress-controller"}}),
    )
    .await;
    create(
        &client,
        Some(NS),
        "ingresses",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "site", "annotations": {"hookway.dev/plugins": "fragile"}},
               "spec": {"ingressClassName": "hookway",
                        "rules": [{"host": "site.example.com", "http": {"paths": [
                            {"path": "/", "pathType": "Prefix",
                             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    )
    .await;

    // The HTTPRoute: accepted (the compiler found nothing wrong), but the proxies left its
    // ExtensionRef'd match out, and its status says so, with their reason.
    let deadline = Instant::now() + WAIT;
    let parent = loop {
        let parent = our_parent(&client, "broken").await;
        // Both proxies' acks: the condition may first name the one that acked first.
        if let Some(p) = parent.as_ref().filter(|p| {
            condition(p, "hookway.dev/Programmed").is_some_and(|c| {
                c["status"] == "False"
                    && c["reason"] == "ApplyFailed"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("proxies left out: proxy-1, proxy-2:"))
            })
        }) {
            break p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no hookway.dev/Programmed=False from both proxies on broken: {parent:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let accepted = condition(&parent, "Accepted").unwrap();
    assert_eq!(accepted["status"], "True", "{parent}");
    let message = condition(&parent, "hookway.dev/Programmed").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("proxies left out: proxy-1, proxy-2: Route sf-app/broken#"),
        "{message}"
    );
    assert!(message.contains("this proxy cannot build it"), "{message}");
    assert_eq!(
        condition(&parent, "hookway.dev/Programmed").unwrap()["observedGeneration"],
        accepted["observedGeneration"]
    );

    // The Ingress: a Warning Event on the Ingress itself.
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + WAIT;
    let event = loop {
        let found = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ApplyFailed"));
        if let Some(e) = found {
            break e;
        }
        assert!(Instant::now() < deadline, "no ApplyFailed Event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let regarding = event.regarding.clone().unwrap_or_default();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("Ingress"), Some("site")),
        "{event:?}"
    );
    let note = event.note.clone().unwrap_or_default();
    assert!(
        note.contains("Route sf-app/site#") && note.contains("this proxy cannot build it"),
        "{note}"
    );

    // The healthy route on the same Gateway carries no such condition.
    let fine = our_parent(&client, "fine")
        .await
        .expect("fine has a status");
    assert!(
        condition(&fine, "hookway.dev/Programmed").is_none(),
        "{fine}"
    );
    // No status was written to a synthetic name (their `#` could never be an object's name).
    let patched = fake.status_patch_keys();
    assert!(patched.iter().all(|k| !k.contains('#')), "{patched:?}");
    assert!(fake.status_patches("httproutes", NS, "broken") > 0);
    ctrl.shutdown().await;
}
