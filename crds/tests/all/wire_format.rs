//! The wire format and the content hash are fixed: a snapshot and a delta with every section
//! (Routes with a chain and listener isolation, an upstream, a certificate, a credential Secret,
//! a blob, the default chain) serialize to the bytes, and hash to the values, recorded before
//! the snapshot's entries became shared (`Arc`, 2026-12-07): sharing changed no byte on the
//! wire, no content hash, and no decoded value.

use hookway_crds::content_hash::ContentDigests;
use hookway_crds::delta::SnapshotDelta;
use hookway_crds::stream::Frame;
use hookway_crds::Snapshot;
use serde_json::json;

/// The old snapshot: two Routes (one with a plugin, one lowered from a Gateway API route),
/// one upstream, one certificate, one Secret, one blob, a default chain.
fn old() -> serde_json::Value {
    json!({
        "version": 7,
        "hash": "",
        "routes": [
            {
                "key": {"namespace": "ns", "name": "a"},
                "hosts": ["a.example.com", "*.b.example.com"],
                "rules": [{
                    "path_type": "Prefix", "path": "/api", "methods": ["GET", "POST"],
                    "headers": [{"name": "x-env", "kind": "Exact", "value": "prod"}],
                    "query": [{"name": "debug", "kind": "Present", "value": ""}]
                }],
                "priority": 3,
                "created": 1700000000,
                "upstream": {"namespace": "ns", "name": "svc"},
                "chain": [{
                    "alias": "auth", "plugin_ref": {"namespace": "ns", "name": "auth"},
                    "plugin": "key_auth", "tier": "namespace", "order": 10,
                    "config": {"secret": "keys", "header": "x-api-key"},
                    "exclude_paths": ["/health"],
                    "secrets": {"keys": {"namespace": "ns", "name": "keys"}}
                }]
            },
            {
                "key": {"namespace": "ns", "name": "gw"},
                "hosts": [],
                "rules": [{
                    "path_type": "Exact", "path": "/", "methods": [], "headers": [], "query": [],
                    "tls": true,
                    "isolation": {"except": ["x.example.com"], "attached": ["*.example.com"]}
                }],
                "priority": 0,
                "created": 0,
                "upstream": {"namespace": "ns", "name": "svc"},
                "chain": []
            }
        ],
        "upstreams": [{
            "key": {"namespace": "ns", "name": "svc"},
            "scheme": "http", "protocol": "http2", "balance": "round-robin", "hash_header": null,
            "endpoints": [{"address": "10.0.0.1", "port": 8080, "weight": 1}],
            "connect_timeout_ms": 1000, "request_timeout_ms": 5000, "retries": 1,
            "retry_on_status": [503], "tls_server_name": null, "tls_insecure_skip_verify": false
        }],
        "certificates": [{
            "key": {"namespace": "ns", "name": "tls"},
            "cert_pem": "CERT", "key_pem": "KEY", "hosts": ["a.example.com"]
        }],
        "secrets": [{"key": {"namespace": "ns", "name": "keys"}, "data": {"alice": "k1"}}],
        "default_chain": [{
            "alias": "log", "plugin_ref": {"namespace": "root", "name": "log"},
            "plugin": "access_log", "tier": "cluster", "order": 1, "config": {},
            "exclude_paths": []
        }],
        "blobs": [{"sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", "data": "eA=="}]
    })
}

/// The new snapshot: Route `a` changed, Route `gw` removed, Route `c` added, the Secret changed,
/// the blob removed, the default chain gone.
fn new() -> serde_json::Value {
    let mut v = old();
    v["version"] = json!(8);
    v["routes"][0]["priority"] = json!(4);
    let mut c = v["routes"][0].clone();
    c["key"]["name"] = json!("c");
    c["chain"] = json!([]);
    v["routes"] = json!([v["routes"][0].clone(), c]);
    v["secrets"][0]["data"]["alice"] = json!("k2");
    v["blobs"] = json!([]);
    v["default_chain"] = json!([]);
    v
}

fn sealed(v: serde_json::Value) -> Snapshot {
    let s: Snapshot = serde_json::from_value(v).unwrap();
    s.seal()
}

/// SHA-256 of `bytes`, hex.
fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn wire_bytes_and_content_hashes_are_unchanged() {
    let (old, new) = (sealed(old()), sealed(new()));
    let whole = serde_json::to_vec(&Frame {
        version: old.version,
        hash: old.hash.clone(),
        snapshot: Some(old.clone()),
        delta: None,
    })
    .unwrap();
    let delta = SnapshotDelta::between(&old, &new);
    let delta_frame = serde_json::to_vec(&Frame {
        version: new.version,
        hash: new.hash.clone(),
        snapshot: None,
        delta: Some(delta.clone()),
    })
    .unwrap();
    let got = [
        old.hash.clone(),
        new.hash.clone(),
        sha256(&whole),
        sha256(&delta_frame),
        whole.len().to_string(),
        delta_frame.len().to_string(),
    ];
    if std::env::var_os("HOOKWAY_PRINT_GOLDEN").is_some() {
        eprintln!(
            "{got:?}\n{}\n{}",
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(&delta_frame)
        );
    }
    assert_eq!(got, GOLDEN);
    // What a proxy decodes from either frame is the snapshot sent, with its hash; the result of
    // a delta shares the held snapshot's unchanged entries.
    let frame: Frame = serde_json::from_slice(&whole).unwrap();
    let decoded = frame.snapshot.unwrap();
    assert_eq!(decoded, old);
    assert_eq!(decoded.content_hash(), old.hash);
    let frame: Frame = serde_json::from_slice(&delta_frame).unwrap();
    let (applied, _) = frame
        .delta
        .unwrap()
        .apply_with(
            &decoded,
            &ContentDigests::of(&decoded),
            new.version,
            &new.hash,
        )
        .unwrap();
    assert_eq!(applied, new);
    assert!(std::sync::Arc::ptr_eq(
        &applied.upstreams[0],
        &decoded.upstreams[0]
    ));
    assert_eq!(
        serde_json::to_vec(&applied).unwrap(),
        serde_json::to_vec(&new).unwrap()
    );
}

/// Recorded with the code before entries were shared (`188133a`): old hash, new hash, SHA-256
/// and length of the whole frame and of the delta frame.
const GOLDEN: [&str; 6] = [
    "aa5f0a54ef7c6509212fead1ee7c5e0759326fdb60830a08d3a481988e9dd523",
    "3bd469bd43d2ae69f8ddc29fc8dc7769297f28a2622147e8f39c4d0f1e736c23",
    "c8c7e0a8c3a76e546ebf7ff165bd19457d6e980216f54f005a7f2edea3908f98",
    "5e40f98e60b50620af4eb2a845793ab586facd7f7a94557fbab1070045be0afa",
    "1874",
    "1380",
];
