//! Where a `wasm` module comes from in a cluster, through the real controller (reflectors,
//! compiler, status writer, events, stream server) against the fake API server, with a real
//! proxy stream client: a ConfigMap key pinned by `sha256`. A missing ConfigMap or a wrong digest
//! lands on the GatewayPlugin's status (and an Event), its Routes are not served, and nobody
//! else's are held back; once the right bytes are there, they reach the proxy in the snapshot.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hookway_crds::GatewayPlugin;
use hookway_crds::Route;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::isolation::{served, wait_snapshot, Env, WAIT};

/// Bytes standing in for a module: the compiler checks digests, not Wasm (the proxies do).
pub(crate) const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module";

pub(crate) fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Waits until an Event with `reason` is recorded in `ns`.
pub(crate) async fn wait_event(env: &Env, ns: &str, reason: &str) {
    let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
    let deadline = Instant::now() + WAIT;
    loop {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        if reasons.iter().any(|r| r == reason) {
            return;
        }
        assert!(Instant::now() < deadline, "no {reason} Event: {reasons:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let env = Env::new().await;
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
        wait_event(&env, "team-a", reason).await;
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
