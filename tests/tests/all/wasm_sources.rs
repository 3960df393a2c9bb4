//! Where a `wasm` module comes from in a cluster, through the real controller (reflectors,
//! compiler, fetcher, status writer, events, stream server) against the fake API server, with a
//! real proxy stream client: a ConfigMap key, or a URL the controller fetches from a real
//! loopback HTTP server, pinned by `sha256`. A missing ConfigMap, a failed fetch or a wrong digest
//! lands on the GatewayPlugin's status (and an Event), its Routes are not served, and nobody
//! else's are held back; the right bytes reach the proxy in the snapshot.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hookway_crds::GatewayPlugin;
use hookway_crds::Route;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::isolation::{served, wait_snapshot, Env, ROOT};

/// Bytes standing in for a module: the compiler checks digests, not Wasm (the proxies do).
pub(crate) const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module";

pub(crate) fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

async fn put_config_map(env: &Env, ns: &str, name: &str, labelled: bool, bytes: &[u8]) {
    let labels = if labelled {
        json!({"hookway.dev/plugin-data": "true"})
    } else {
        json!({})
    };
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "binaryData": {"filter.wasm": base64::engine::general_purpose::STANDARD.encode(bytes)}});
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    api.patch(
        name,
        &PatchParams::apply("wasm-sources-test").force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_from_a_config_map_is_checked_and_shipped() {
    let env = Env::named("wasm-config-map").await;
    let controller = env.controller().await;
    let mut proxy = env.proxy(&controller);
    env.service("team-a", "web").await;
    env.plugin(
        "team-a",
        "filter",
        "wasm",
        json!({"config_map": "filters", "key": "filter.wasm", "sha256": digest(MODULE)}),
    )
    .await;
    env.route(
        "team-a",
        "filtered",
        json!({"hosts": ["f.example.com"], "service": "web", "plugins": {"filter": {}}}),
    )
    .await;
    env.route(
        "team-a",
        "plain",
        json!({"hosts": ["p.example.com"], "service": "web"}),
    )
    .await;

    // (ConfigMap written, labelled, reason on the GatewayPlugin, message part)
    let steps: [(Option<&[u8]>, bool, &str, &str); 3] = [
        (None, true, "ConfigMapNotFound", "ConfigMap team-a/filters"),
        // Not labelled hookway.dev/plugin-data=true: the controller never loads it.
        (
            Some(MODULE),
            false,
            "ConfigMapNotFound",
            "hookway.dev/plugin-data=true",
        ),
        (
            Some(b"other bytes"),
            true,
            "InvalidConfigMap",
            "sha256 mismatch",
        ),
    ];
    for (written, labelled, reason, needle) in steps {
        if let Some(bytes) = written {
            put_config_map(&env, "team-a", "filters", labelled, bytes).await;
        }
        let message = env
            .wait_condition::<GatewayPlugin>("team-a", "filter", "ResolvedRefs", "False", reason)
            .await;
        assert!(message.contains(needle), "{reason}: {message}");
        env.wait_events("team-a", &[reason]).await;
        env.wait_condition::<Route>("team-a", "plain", "Accepted", "True", "Accepted")
            .await;
        let s = wait_snapshot(&mut proxy, "the plain Route is served", |s| {
            served(s, "team-a", "plain")
        })
        .await;
        assert!(!served(&s, "team-a", "filtered"), "{reason}: fails closed");
        assert!(s.blobs.is_empty(), "{reason}: no unchecked bytes shipped");
    }

    put_config_map(&env, "team-a", "filters", true, MODULE).await;
    let s = wait_snapshot(&mut proxy, "the filtered Route is served", |s| {
        served(s, "team-a", "filtered")
    })
    .await;
    let blob = s
        .blob(&digest(MODULE))
        .expect("the module travels in the snapshot");
    assert_eq!(blob.bytes().unwrap(), MODULE);
    env.wait_condition::<GatewayPlugin>("team-a", "filter", "ResolvedRefs", "True", "ResolvedRefs")
        .await;
    controller.shutdown().await;
}

/// A module server on loopback: `/filter.wasm` is [`MODULE`], anything else 404; counts
/// requests per path.
async fn module_server() -> (SocketAddr, Arc<Mutex<HashMap<String, u32>>>) {
    let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = counted.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let hits = hits.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                            let mut response = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(MODULE),
                            ));
                            if path != "/filter.wasm" {
                                *response.status_mut() = http::StatusCode::NOT_FOUND;
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_from_a_url_is_fetched_once_checked_and_shipped() {
    let (addr, hits) = module_server().await;
    let hits_of = |path: &str| hits.lock().unwrap().get(path).copied().unwrap_or(0);
    let env = Env::named("wasm-url").await;
    let controller = env.controller().await;
    let mut proxy = env.proxy(&controller);
    env.service("team-a", "web").await;
    let url = |path: &str| format!("http://{addr}{path}");
    // (namespace, GatewayPlugin, url path, pinned bytes, Route host)
    let plugins: [(&str, &str, &str, &[u8], &str); 4] = [
        (ROOT, "good", "/filter.wasm", MODULE, "good.example.com"),
        (ROOT, "gone", "/missing.wasm", MODULE, "gone.example.com"),
        (
            ROOT,
            "wrong",
            "/filter.wasm",
            b"other bytes",
            "wrong.example.com",
        ),
        // A tenant without a PlatformPolicy grant: the controller must not fetch its URL.
        (
            "team-a",
            "tenant",
            "/tenant.wasm",
            MODULE,
            "tenant.example.com",
        ),
    ];
    for (ns, name, path, pinned, host) in plugins {
        env.plugin(
            ns,
            name,
            "wasm",
            json!({"url": url(path), "sha256": digest(pinned)}),
        )
        .await;
        env.route(
            "team-a",
            name,
            json!({"hosts": [host], "service": "web", "plugins": {name: {}}}),
        )
        .await;
    }
    env.route(
        "team-a",
        "plain",
        json!({"hosts": ["p.example.com"], "service": "web"}),
    )
    .await;

    let s = wait_snapshot(
        &mut proxy,
        "the Route of the fetched module is served",
        |s| served(s, "team-a", "good") && served(s, "team-a", "plain"),
    )
    .await;
    assert_eq!(s.blob(&digest(MODULE)).unwrap().bytes().unwrap(), MODULE);
    env.wait_condition::<GatewayPlugin>(ROOT, "good", "ResolvedRefs", "True", "ResolvedRefs")
        .await;
    // (namespace, GatewayPlugin, condition, reason, message part)
    let failures = [
        (ROOT, "gone", "ResolvedRefs", "FetchFailed", "HTTP 404"),
        (
            ROOT,
            "wrong",
            "ResolvedRefs",
            "DigestMismatch",
            "sha256 mismatch",
        ),
        (
            "team-a",
            "tenant",
            "Accepted",
            "NotPermitted",
            "networkPlugins",
        ),
    ];
    for (ns, name, condition, reason, needle) in failures {
        let message = env
            .wait_condition::<GatewayPlugin>(ns, name, condition, "False", reason)
            .await;
        assert!(message.contains(needle), "{name}: {message}");
        if ns == ROOT {
            assert!(
                message.contains(&url("")),
                "{name} names the URL: {message}"
            );
            env.wait_events(ROOT, &[reason]).await;
        }
    }
    assert_eq!(
        hits_of("/tenant.wasm"),
        0,
        "a tenant's URL is not fetched without a grant"
    );
    // `good` and `wrong` share the URL with different pins: one fetch each.
    assert_eq!(hits_of("/filter.wasm"), 2);
    assert_eq!(hits_of("/missing.wasm"), 1, "a 404 is not retried");

    // Later compiles (a new Route) neither refetch the module nor hold anyone back.
    env.route(
        "team-a",
        "later",
        json!({"hosts": ["l.example.com"], "service": "web"}),
    )
    .await;
    let s = wait_snapshot(&mut proxy, "the later Route is served", |s| {
        served(s, "team-a", "later")
    })
    .await;
    for (name, want) in [
        ("good", true),
        ("gone", false),
        ("wrong", false),
        ("tenant", false),
    ] {
        assert_eq!(served(&s, "team-a", name), want, "{name}");
    }
    assert_eq!(
        hits_of("/filter.wasm"),
        2,
        "an unchanged config is not fetched again"
    );
    controller.shutdown().await;
}
