//! What a proxy does with a new snapshot of 10,000 Routes: decode the stream frame and check
//! its content hash (`decode_frame`), then build the runtime — router, upstream pools, chains —
//! and swap it in (`RuntimeState::apply`). Run: `cargo bench -p hookway-proxy --bench apply`.
//!
//! One Route in ten has a `headers` plugin; all go to one upstream, as in the controller
//! benchmark (`bench/controller.sh`), whose proxy share this splits up.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use hookway_crds::snapshot::{
    Balance, ChainEntry, Endpoint, ObjectKey, PathMatchType, RouteEntry, RuleEntry, Scheme, Tier,
    UpstreamEntry,
};
use hookway_crds::Snapshot;
use hookway_proxy::chain::ChainBuilder;
use hookway_proxy::metrics::Metrics;
use hookway_proxy::runtime::RuntimeState;
use hookway_proxy::source::controller::{decode_frame, Frame};
use serde_json::json;

const ROUTES: usize = 10_000;

fn snapshot() -> Snapshot {
    let upstream = ObjectKey::new("bench", "web");
    let headers = ChainEntry {
        alias: "hdr".into(),
        plugin_ref: ObjectKey::new("bench", "hdr"),
        plugin: "headers".into(),
        tier: Tier::Namespace,
        order: 100,
        config: json!({"request": {"set": {"x-env": "bench"}}}),
        exclude_paths: vec![],
        secrets: Default::default(),
        services: Default::default(),
    };
    let routes = (0..ROUTES)
        .map(|i| RouteEntry {
            key: ObjectKey::new("bench", format!("r{i:05}")),
            hosts: vec![format!("h{i}.example.com")],
            rules: vec![RuleEntry {
                path_type: PathMatchType::Prefix,
                path: "/".into(),
                methods: vec![],
                headers: vec![],
                query: vec![],
                tls: None,
                isolation: None,
            }],
            priority: 0,
            created: 0,
            upstream: upstream.clone(),
            chain: if i % 10 == 0 {
                vec![headers.clone()]
            } else {
                vec![]
            },
        })
        .collect();
    Snapshot {
        version: 1,
        hash: String::new(),
        routes,
        upstreams: vec![UpstreamEntry {
            key: upstream,
            scheme: Scheme::Http,
            protocol: Default::default(),
            balance: Balance::RoundRobin,
            hash_header: None,
            endpoints: vec![Endpoint {
                address: "127.0.0.1".into(),
                port: 8080,
                weight: 1,
            }],
            connect_timeout_ms: 1000,
            request_timeout_ms: 5000,
            retries: 0,
            retry_on_status: vec![],
            tls_server_name: None,
            tls_insecure_skip_verify: false,
        }],
        certificates: vec![],
        secrets: vec![],
        default_chain: vec![],
        blobs: vec![],
    }
    .seal()
}

fn apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let _guard = runtime.enter();
    let sealed = snapshot();
    let frame = serde_json::to_vec(&Frame {
        version: 1,
        hash: sealed.hash.clone(),
        snapshot: Some(sealed.clone()),
        delta: None,
    })
    .expect("frame");
    eprintln!("frame: {} bytes", frame.len());
    // One Route changed: the frame a proxy gets with deltas.
    let mut changed = sealed.clone();
    changed.routes[0].priority += 1;
    let changed = changed.seal();
    let delta_frame = serde_json::to_vec(&Frame {
        version: 2,
        hash: changed.hash.clone(),
        snapshot: None,
        delta: Some(hookway_crds::delta::SnapshotDelta::between(
            &sealed, &changed,
        )),
    })
    .expect("frame");
    eprintln!(
        "delta frame (one Route changed): {} bytes",
        delta_frame.len()
    );
    let mut group = c.benchmark_group("10k_routes");
    group.sample_size(10);
    group.bench_function("decode_frame", |b| {
        b.iter(|| decode_frame(black_box(&frame), None).expect("valid frame"))
    });
    group.bench_function("decode_delta_frame", |b| {
        b.iter(|| decode_frame(black_box(&delta_frame), Some(&sealed)).expect("valid delta"))
    });
    let state = RuntimeState::new(
        ChainBuilder::new(hookway_proxy::plugins::builtin()),
        Metrics::new().expect("metrics"),
    );
    let mut version = 1;
    group.bench_function("apply", |b| {
        b.iter(|| {
            // A new version each time, as after a change (same content, so the plugin
            // instances are reused, as they are for an unchanged GatewayPlugin).
            version += 1;
            let mut next = sealed.clone();
            next.version = version;
            let failed = state.apply(Arc::new(next));
            assert!(failed.is_empty(), "{failed:?}");
        })
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
