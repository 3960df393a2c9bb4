//! Pinned blobs (`x-hookway-pinned-blob`, a `wasm` module) from a ConfigMap or a URL the
//! controller fetched: the compiler checks the digest, carries the bytes in the snapshot's
//! `blobs`, reports what is missing or wrong on the object whose config it is, and lists the URL
//! sources to fetch only for configs the platform policy allows to reach the network.

use crate::tenancy_rules::{message, verdict};
use std::sync::Arc;

use crate::support::*;
use hookway_crds::compiler::{FetchFailure, FetchFailureKind, Fetched, UrlSource};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::ByteString;
use serde_json::{json, Value};
use sha2::Digest as _;

const MODULE: &[u8] = b"\0asm\x01\0\0\0";
const URL: &str = "https://modules.example.com/filter.wasm";

fn digest(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn config_map(ns: &str, name: &str, binary: &[(&str, &[u8])], data: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.namespace = Some(ns.into());
    c.metadata.name = Some(name.into());
    c.metadata.generation = Some(1);
    c.binary_data = Some(
        binary
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect(),
    );
    c.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    c
}

fn from_config_map(name: &str, key: &str, sha256: &str) -> Value {
    json!({"config_map": name, "key": key, "sha256": sha256})
}

#[test]
fn config_map_modules_by_table() {
    let good = digest(MODULE);
    let wrong = "0".repeat(64);
    let world = || {
        World::new()
            .config_map(config_map(
                "a",
                "mods",
                &[("bin", MODULE)],
                &[("text", "AGFzbQEAAAA="), ("junk", "%%%")],
            ))
            .config_map(config_map(ROOT, "root-mods", &[("bin", MODULE)], &[]))
            .service(service("a", "s"))
            .route(route("a", "bystander").host("by.example.com"))
    };
    // (config, accepted, reason, message part)
    let cases: [(Value, bool, &str, &str); 8] = [
        (from_config_map("mods", "bin", &good), true, "", ""),
        (from_config_map("mods", "text", &good), true, "", ""),
        (
            from_config_map("nope", "bin", &good),
            false,
            "ConfigMapNotFound",
            "ConfigMap a/nope",
        ),
        // Names resolve in the namespace of the config: the root namespace's is not seen.
        (
            from_config_map("root-mods", "bin", &good),
            false,
            "ConfigMapNotFound",
            "a/root-mods",
        ),
        (
            from_config_map("mods", "gone", &good),
            false,
            "InvalidConfigMap",
            "no key \"gone\"",
        ),
        (
            from_config_map("mods", "junk", &good),
            false,
            "InvalidConfigMap",
            "not a base64",
        ),
        (
            from_config_map("mods", "bin", &wrong),
            false,
            "InvalidConfigMap",
            "sha256 mismatch",
        ),
        (
            json!({"config_map": "mods", "secret": "s", "key": "bin", "sha256": good}),
            false,
            "InvalidPluginConfig",
            "exactly one of",
        ),
    ];
    for (i, (config, ok, reason, needle)) in cases.into_iter().enumerate() {
        let out = world()
            .plugin(plugin("a", "filter", "wasm").config(config.clone()))
            .route(route("a", "r").uses("filter").host("r.example.com"))
            .compile();
        let r = out.plugin_report("a", "filter");
        assert_eq!(
            verdict(r),
            (ok, reason.to_string()),
            "case {i} {config}: {}",
            message(r)
        );
        assert!(message(r).contains(needle), "case {i}: {}", message(r));
        assert_eq!(
            out.served("a", "r").is_some(),
            ok,
            "case {i}: the Route fails closed"
        );
        assert!(
            out.served("a", "bystander").is_some(),
            "case {i}: others are served"
        );
        let blob = out.0.snapshot.blob(&good);
        assert_eq!(
            blob.is_some(),
            ok,
            "case {i}: the module travels only when accepted"
        );
        if let Some(blob) = blob {
            assert_eq!(blob.bytes().unwrap(), MODULE, "case {i}");
        }
    }
}

#[test]
fn a_route_config_loads_its_module_from_its_own_namespace() {
    let good = digest(MODULE);
    let out = World::new()
        .config_map(config_map("a", "mods", &[("bin", MODULE)], &[]))
        .plugin(plugin(ROOT, "filter", "wasm"))
        .plugin(plugin(ROOT, "broken", "wasm").config(from_config_map("mods", "bin", &good)))
        .service(service("a", "s"))
        .route(
            route("a", "own")
                .plugin("filter", from_config_map("mods", "bin", &good))
                .host("own.example.com"),
        )
        .compile();
    // A GatewayPlugin's config resolves in the root namespace (no ConfigMap there); the
    // Route's own config in `a`.
    assert_eq!(
        verdict(out.plugin_report(ROOT, "broken")),
        (false, "ConfigMapNotFound".into())
    );
    let r = out.route_report("a", "own");
    assert_eq!(verdict(r), (true, String::new()), "{}", message(r));
    assert!(out.served("a", "own").is_some());
    assert!(out.0.snapshot.blob(&good).is_some());
}

fn url_config() -> Value {
    json!({"url": URL, "sha256": digest(MODULE)})
}

#[test]
fn url_modules_by_table() {
    let source = UrlSource {
        url: URL.into(),
        sha256: digest(MODULE),
    };
    let ready = Fetched {
        blobs: [(digest(MODULE), Arc::new(MODULE.to_vec()))].into(),
        sources: [source.clone()].into(),
        ..Fetched::default()
    };
    // The same bytes, delivered by another URL: not this config's.
    let elsewhere = Fetched {
        sources: [UrlSource {
            url: "https://mirror.example.com/filter.wasm".into(),
            sha256: digest(MODULE),
        }]
        .into(),
        ..ready.clone()
    };
    let failed = |kind, message: &str| Fetched {
        failures: [(
            source.clone(),
            FetchFailure {
                kind,
                message: message.into(),
            },
        )]
        .into(),
        ..Fetched::default()
    };
    let allow_a = platform_policy(
        ROOT,
        "p",
        json!({"namespaces": [{"names": ["a"], "networkPlugins": ["wasm"]}]}),
    );
    // (namespace of the GatewayPlugin, policy, fetched, accepted, reason, listed for fetching)
    let cases: [(&str, bool, Fetched, bool, &str, bool); 8] = [
        (ROOT, false, ready.clone(), true, "", true),
        (ROOT, false, Fetched::default(), false, "FetchPending", true),
        (ROOT, false, elsewhere, false, "FetchPending", true),
        (
            ROOT,
            false,
            failed(FetchFailureKind::Unreachable, "HTTP 404"),
            false,
            "FetchFailed",
            true,
        ),
        (
            ROOT,
            false,
            failed(FetchFailureKind::DigestMismatch, "digest is 00"),
            false,
            "DigestMismatch",
            true,
        ),
        // A tenant's URL is fetched only where a PlatformPolicy lets it reach the network.
        ("a", false, Fetched::default(), false, "NotPermitted", false),
        ("a", false, ready.clone(), false, "NotPermitted", false),
        ("a", true, ready.clone(), true, "", true),
    ];
    for (i, (ns, policy, fetched, ok, reason, listed)) in cases.into_iter().enumerate() {
        let mut world = World::new()
            .plugin(plugin(ns, "filter", "wasm").config(url_config()))
            .service(service("a", "s"))
            .route(route("a", "r").uses("filter").host("r.example.com"))
            .route(route("a", "bystander").host("by.example.com"))
            .fetched(fetched);
        if policy {
            world = world.policy(allow_a.clone());
        }
        let out = world.compile();
        let r = out.plugin_report(ns, "filter");
        assert_eq!(
            verdict(r),
            (ok, reason.to_string()),
            "case {i}: {}",
            message(r)
        );
        assert_eq!(out.served("a", "r").is_some(), ok, "case {i}");
        assert!(out.served("a", "bystander").is_some(), "case {i}");
        assert_eq!(
            out.0.snapshot.blob(&digest(MODULE)).is_some(),
            ok,
            "case {i}"
        );
        assert_eq!(out.0.url_sources.contains(&source), listed, "case {i}");
        if reason.starts_with("Fetch") || reason == "DigestMismatch" {
            assert!(message(r).contains(URL), "case {i}: {}", message(r));
        }
    }
}

#[test]
fn url_must_be_http_or_https() {
    for url in ["file:///etc/passwd", "ftp://x/y.wasm", "gopher://x"] {
        let out = World::new()
            .plugin(
                plugin(ROOT, "filter", "wasm")
                    .config(json!({"url": url, "sha256": digest(MODULE)})),
            )
            .compile();
        let r = out.plugin_report(ROOT, "filter");
        assert_eq!(verdict(r), (false, "InvalidPluginConfig".into()), "{url}");
        assert!(out.0.url_sources.is_empty(), "{url}");
    }
}
