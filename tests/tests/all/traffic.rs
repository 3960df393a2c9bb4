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
        gateway_api_recheck: Duration::from_secs(1),
        fetch: Default::default(),
        proxy_service: None,
        compile: default_compile(NS),
    };
    Controller::start(client.clone(), config).await.unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_host(addr, "shop.example.com", path).await
}

async fn get_host(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
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
    eventually_host(addr, "shop.example.com", path, what, ok).await
}

/// Polls `host` `path` on `addr` until the answer satisfies `ok`.
async fn eventually_host(
    addr: SocketAddr,
    host: &str,
    path: &str,
    what: &str,
    ok: impl Fn(u16, &str) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = get_host(addr, host, path).await;
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

/// The `Programmed` condition of Route `ns/name`: (status, reason, message).
async fn programmed(client: &Client, ns: &str, name: &str) -> Option<(String, String, String)> {
    let routes: Api<Route> = Api::namespaced(client.clone(), ns);
    let status = routes.get(name).await.ok()?.status?;
    status
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Programmed")
        .map(|c| (c.status, c.reason, c.message))
}

/// Waits until Route `ns/name`'s `Programmed` condition satisfies `ok`.
async fn wait_programmed(
    client: &Client,
    ns: &str,
    name: &str,
    ok: impl Fn(&str, &str, &str) -> bool,
) -> (String, String, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let c = programmed(client, ns, name).await;
        if let Some((status, reason, message)) = &c {
            if ok(status, reason, message) {
                return c.unwrap();
            }
        }
        assert!(Instant::now() < deadline, "{ns}/{name} Programmed: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A certificate for `host` and the key of another one: the API server accepts such a Secret,
/// a TLS stack refuses it.
fn mismatched_tls_secret(name: &str, host: &str) -> serde_json::Value {
    use base64::Engine as _;
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name},
        "data": {"tls.crt": b64(cert.cert.pem()), "tls.key": b64(other_key.serialize_pem())}
    })
}

/// Issue 15: one tenant's object that the proxies cannot build (a TLS Secret whose key does
/// not match its certificate; a plugin instance only the proxy can find broken) leaves the
/// other tenant's later changes applying on both proxies, and `Programmed` tells the truth
/// for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_breaks_a_proxy_build_freezes_no_one_else() {
    const ROOT: &str = "iso-system";
    let fake = FakeApi::start().await;
    let client = fake.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in [ROOT, "team-a", "team-b"] {
        nss.create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": ns}})),
        )
        .await
        .unwrap();
    }
    let pki = Pki::new("proxy-build-isolation");
    let upstream = upstream::start().await;
    // The controller's own catalogue (data: the built-ins' schemas) plus `fragile`'s schema:
    // the checks only proxies can run (the key material of Secrets) happen on the proxies.
    let mut catalogue = hookway_crds::Catalogue::builtin();
    catalogue
        .insert_schema(
            "fragile",
            hookway_crds::catalogue::schema_of::<hookway_tests::fragile::FragileConfig>(),
        )
        .unwrap();
    let options = hookway_crds::compiler::Options {
        root_namespace: ROOT.into(),
        ..Default::default()
    };
    let config = Config {
        namespaces: vec![ROOT.into(), "team-a".into(), "team-b".into()],
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
    let (p1, p2) = (
        proxy::start_with(
            &pki,
            ctrl.stream_addr,
            "proxy-1",
            hookway_tests::fragile::registry(),
        )
        .await,
        proxy::start_with(
            &pki,
            ctrl.stream_addr,
            "proxy-2",
            hookway_tests::fragile::registry(),
        )
        .await,
    );
    let pp = PostParams::default();
    let create = |ns: &'static str, value: serde_json::Value| {
        let client = client.clone();
        async move {
            let kind = value["kind"].as_str().unwrap().to_string();
            let result = match kind.as_str() {
                "Service" => Api::<Service>::namespaced(client, ns)
                    .create(&PostParams::default(), &object(value))
                    .await
                    .map(|_| ()),
                "Route" => Api::<Route>::namespaced(client, ns)
                    .create(&PostParams::default(), &object(value))
                    .await
                    .map(|_| ()),
                "GatewayPlugin" => Api::<GatewayPlugin>::namespaced(client, ns)
                    .create(&PostParams::default(), &object(value))
                    .await
                    .map(|_| ()),
                _ => Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, ns)
                    .create(&PostParams::default(), &object(value))
                    .await
                    .map(|_| ()),
            };
            result.unwrap_or_else(|e| panic!("creating a {kind} in {ns}: {e}"));
        }
    };
    let service = json!({
        "apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": "shop"},
        "spec": {"nodes": [{"address": upstream.ip().to_string(), "port": upstream.port()}]}
    });
    let route = |name: &str, host: &str, prefix: &str, extra: serde_json::Value| {
        let mut spec = json!({"hosts": [host], "service": "shop",
                              "rules": [{"path": {"type": "Prefix", "value": prefix}}]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
               "metadata": {"name": name}, "spec": spec})
    };
    create("team-a", service.clone()).await;
    create("team-b", service).await;
    create("team-a", route("a", "a.example.com", "/v1", json!({}))).await;
    for p in [&p1, &p2] {
        eventually_host(p.http, "a.example.com", "/v1/x", "team-a served", |s, _| {
            s == 200
        })
        .await;
    }
    // Both proxies hold a snapshot (the leader's last status pass counted two).
    let deadline = Instant::now() + WAIT;
    while ctrl.metrics.fleet_proxies.get() != 2 {
        assert!(
            Instant::now() < deadline,
            "the fleet never reached two proxies"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_programmed(&client, "team-a", "a", |s, r, _| {
        s == "True" && r == "Programmed"
    })
    .await;

    // team-b: a Route whose plugin instance no proxy can build, and a Route naming a TLS
    // Secret whose key does not match its certificate.
    create(
        "team-b",
        json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "GatewayPlugin",
               "metadata": {"name": "fragile"},
               "spec": {"plugin": "fragile", "status": "enable", "config": {"tag": 1}}}),
    )
    .await;
    create(
        "team-b",
        route(
            "b",
            "b.example.com",
            "/",
            json!({"plugins": {"fragile": {"config": {"fail": true}}}}),
        ),
    )
    .await;
    create("team-b", mismatched_tls_secret("tls", "tls.example.com")).await;
    create(
        "team-b",
        route(
            "b-tls",
            "tls.example.com",
            "/",
            json!({"tls": {"secretName": "tls"}}),
        ),
    )
    .await;
    let (_, _, message) = wait_programmed(&client, "team-b", "b", |s, r, m| {
        s == "False"
            && r == "ApplyFailed"
            && m.starts_with("proxy-1, proxy-2: Route team-b/b: plugin fragile")
    })
    .await;
    assert!(message.contains("this proxy cannot build it"), "{message}");
    // Whether the compiler or the proxies catch the bad Secret, b-tls is not Programmed.
    let (_, reason, message) =
        wait_programmed(&client, "team-b", "b-tls", |s, _, _| s == "False").await;
    assert!(
        reason == "NotServed" || message.contains("does not match"),
        "{reason}: {message}"
    );
    for p in [&p1, &p2] {
        assert_eq!(
            get_host(p.http, "b.example.com", "/").await.0,
            404,
            "b left out"
        );
    }

    // team-b: a JWT key that is not a key. The controller cannot parse key material (it links
    // no plugin code), so the proxies refuse to build the plugin: the Route is left out — never
    // served without its auth — and its status carries the proxies' reason.
    create(
        "team-b",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "jwt-keys", "labels": {"hookway.dev/credentials": "true"}},
               "type": "Opaque", "stringData": {"k1": "not a key"}}),
    )
    .await;
    create(
        "team-b",
        json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "GatewayPlugin",
               "metadata": {"name": "jwt"},
               "spec": {"plugin": "auth", "status": "enable", "config":
                   {"credentials": [{"type": "jwt", "secret": "jwt-keys", "algorithm": "RS256"}]}}}),
    )
    .await;
    create(
        "team-b",
        route(
            "b-jwt",
            "jwt.example.com",
            "/",
            json!({"plugins": {"jwt": {}}}),
        ),
    )
    .await;
    let (_, _, message) = wait_programmed(&client, "team-b", "b-jwt", |s, r, m| {
        s == "False" && r == "ApplyFailed" && m.starts_with("proxy-1, proxy-2:")
    })
    .await;
    assert!(message.contains("k1"), "{message}");
    for p in [&p1, &p2] {
        assert_eq!(
            get_host(p.http, "jwt.example.com", "/").await.0,
            404,
            "b-jwt left out, not served without its auth"
        );
    }

    // team-a changes its Route: the change reaches traffic on both proxies and its status.
    let routes_a: Api<Route> = Api::namespaced(client.clone(), "team-a");
    let mut a = routes_a.get("a").await.unwrap();
    a.spec = object(json!({"hosts": ["a.example.com"], "service": "shop",
                           "rules": [{"path": {"type": "Prefix", "value": "/v2"}}]}));
    routes_a.replace("a", &pp, &a).await.unwrap();
    for p in [&p1, &p2] {
        eventually_host(
            p.http,
            "a.example.com",
            "/v2/x",
            "team-a's change",
            |s, _| s == 200,
        )
        .await;
        assert_eq!(get_host(p.http, "a.example.com", "/v1/x").await.0, 404);
    }
    let generation = routes_a.get("a").await.unwrap().metadata.generation;
    let deadline = Instant::now() + WAIT;
    loop {
        let a = routes_a.get("a").await.unwrap();
        let conditions = a.status.map(|s| s.conditions).unwrap_or_default();
        let programmed_a = conditions.iter().find(|c| c.type_ == "Programmed");
        if programmed_a.is_some_and(|c| {
            c.observed_generation == generation && c.status == "True" && c.reason == "Programmed"
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "team-a's new generation never Programmed: {programmed_a:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // team-b drops its own plugin config (the GatewayPlugin's applies): it applies, says so.
    let routes_b: Api<Route> = Api::namespaced(client.clone(), "team-b");
    let mut b = routes_b.get("b").await.unwrap();
    b.spec = object(json!({"hosts": ["b.example.com"], "service": "shop",
                           "plugins": {"fragile": {}}}));
    routes_b.replace("b", &pp, &b).await.unwrap();
    for p in [&p1, &p2] {
        eventually_host(p.http, "b.example.com", "/", "team-b's fix", |s, _| {
            s == 200
        })
        .await;
    }
    wait_programmed(&client, "team-b", "b", |s, r, _| {
        s == "True" && r == "Programmed"
    })
    .await;

    // A change to the GatewayPlugin the Route uses (not to the Route) that no proxy can build:
    // `b` keeps its previous version on the proxies, and its status says it is not programmed.
    let plugins_b: Api<GatewayPlugin> = Api::namespaced(client.clone(), "team-b");
    let mut fragile = plugins_b.get("fragile").await.unwrap();
    fragile.spec.config = Some(json!({"fail": true}));
    plugins_b.replace("fragile", &pp, &fragile).await.unwrap();
    let (_, _, message) = wait_programmed(&client, "team-b", "b", |s, r, m| {
        s == "False" && r == "ApplyFailed" && m.starts_with("proxy-1, proxy-2:")
    })
    .await;
    assert!(
        message.contains("GatewayPlugin") || message.contains("plugin fragile"),
        "{message}"
    );
    assert!(
        message.contains("(previous version still served)"),
        "{message}"
    );
    for p in [&p1, &p2] {
        assert_eq!(
            get_host(p.http, "b.example.com", "/").await.0,
            200,
            "b's previous version keeps serving"
        );
    }
    ctrl.shutdown().await;
}
