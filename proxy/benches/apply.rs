//! What a proxy does with a new snapshot of 10,000 Routes and 1,000 upstreams of 10 endpoints:
//! decode the stream frame and check its content hash (`decode_frame`, whole or a delta), then
//! build the runtime — router, upstream pools, chains — and swap it in, whole
//! (`RuntimeState::apply_full`) or by updating the live runtime where the snapshot changed
//! (`RuntimeState::apply`: one Route's matchers, one upstream's endpoints).
//! Run: `cargo bench --workspace --bench apply` (`--profile release` for a quicker build).
//!
//! One Route in ten has a `headers` plugin; Route `i` goes to upstream `i % 1000`, as in the
//! controller benchmark (`bench/controller.sh`), whose proxy share this splits up.

#[path = "../../crds/benches/support/legacy_hash.rs"]
mod legacy_hash;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use hookway_crds::content_hash::ContentDigests;
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
const UPSTREAMS: usize = 1_000;
const ENDPOINTS: usize = 10;

fn upstream(j: usize, generation: u16) -> UpstreamEntry {
    UpstreamEntry {
        key: ObjectKey::new("bench", format!("s{j:04}")),
        scheme: Scheme::Http,
        protocol: Default::default(),
        balance: Balance::RoundRobin,
        hash_header: None,
        endpoints: (0..ENDPOINTS)
            .map(|k| Endpoint {
                address: format!("10.{}.{}.{}", j / 200, j % 200, k + 1),
                port: 8080 + generation,
                weight: 1,
            })
            .collect(),
        connect_timeout_ms: 1000,
        request_timeout_ms: 5000,
        retries: 0,
        retry_on_status: vec![],
        tls_server_name: None,
        tls_insecure_skip_verify: false,
    }
}

fn snapshot() -> Snapshot {
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
            upstream: ObjectKey::new("bench", format!("s{:04}", i % UPSTREAMS)),
            chain: if i % 10 == 0 {
                vec![headers.clone()]
            } else {
                vec![]
            },
        })
        .map(Arc::new)
        .collect();
    Snapshot {
        version: 1,
        hash: String::new(),
        routes,
        upstreams: (0..UPSTREAMS).map(|j| Arc::new(upstream(j, 0))).collect(),
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
    Arc::make_mut(&mut changed.routes[0]).priority += 1;
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
    // With the held snapshot's entry digests, as the proxy keeps them: hashes the one Route.
    let sealed_digests = ContentDigests::of(&sealed);
    group.bench_function("decode_delta_frame", |b| {
        b.iter(|| {
            decode_frame(black_box(&delta_frame), Some((&sealed, &sealed_digests)))
                .expect("valid delta")
        })
    });
    // The same, then every entry of the result copied: what it cost before entries were shared.
    group.bench_function("decode_delta_frame_copying", |b| {
        b.iter(|| {
            let (snapshot, _) =
                decode_frame(black_box(&delta_frame), Some((&sealed, &sealed_digests)))
                    .expect("valid delta");
            deep_clone(&snapshot)
        })
    });
    // Without them (`SnapshotDelta::apply`): every entry hashed, as before per-entry digests.
    group.bench_function("decode_delta_frame_hashing_all", |b| {
        b.iter(|| {
            let frame: Frame = serde_json::from_slice(black_box(&delta_frame)).expect("frame");
            let delta = frame.delta.expect("a delta");
            delta
                .apply(&sealed, frame.version, &frame.hash)
                .expect("valid delta")
        })
    });
    // The parts of checking a delta that cost the whole snapshot: copying the held snapshot
    // into the result (now a pointer per entry; `snapshot_deep_clone`: every entry copied, as
    // before entries were shared), and hashing the content from scratch (now, and as it was
    // hashed before per-entry digests: the whole content serialized into one SHA-256).
    group.bench_function("snapshot_clone", |b| b.iter(|| black_box(&sealed).clone()));
    group.bench_function("snapshot_deep_clone", |b| {
        b.iter(|| deep_clone(black_box(&sealed)))
    });
    group.bench_function("content_hash", |b| {
        b.iter(|| black_box(&sealed).content_hash())
    });
    group.bench_function("content_hash_before", |b| {
        b.iter(|| legacy_hash::whole_content_hash(black_box(&sealed)))
    });
    // Between two versions that share their unchanged entries (as the proxy's held and live
    // snapshots do), and between copies that share none (every entry compared, as before).
    group.bench_function("delta_between", |b| {
        b.iter(|| hookway_crds::delta::SnapshotDelta::between(black_box(&sealed), &changed))
    });
    let unshared = deep_clone(&changed);
    group.bench_function("delta_between_unshared", |b| {
        b.iter(|| hookway_crds::delta::SnapshotDelta::between(black_box(&sealed), &unshared))
    });
    let state = RuntimeState::new(
        ChainBuilder::new(hookway_proxy::plugins::builtin()),
        Metrics::new().expect("metrics"),
    );
    let base = Arc::new(sealed.clone());
    group.bench_function("apply", |b| {
        b.iter(|| {
            // Same content each time, so the plugin instances are reused, as they are for an
            // unchanged GatewayPlugin.
            let failed = state.apply_full(base.clone());
            assert!(failed.is_empty(), "{failed:?}");
        })
    });
    // In place: each apply is a delta against the previous one (back and forth).
    let mut endpoints = sealed.clone();
    endpoints.upstreams[7] = Arc::new(upstream(7, 1));
    let endpoints = Arc::new(endpoints.seal());
    let changed = Arc::new(changed);
    let mut applied_in_place = false;
    for (name, other) in [
        ("apply_delta_one_route", &changed),
        ("apply_delta_one_upstream", &endpoints),
    ] {
        let mut flip = false;
        group.bench_function(name, |b| {
            applied_in_place = true;
            b.iter(|| {
                flip = !flip;
                let failed = state.apply(if flip { other } else { &base }.clone());
                assert!(failed.is_empty(), "{failed:?}");
            })
        });
    }
    let deltas = state
        .metrics()
        .snapshot_apply
        .with_label_values(&["delta"])
        .get_sample_count();
    // (Unless a filter left the in-place cases out.)
    assert!(
        deltas > 0 || !applied_in_place,
        "the in-place path was taken"
    );
    group.finish();
}

/// `snapshot` with every entry copied (nothing shared with it): what cloning a snapshot cost
/// before entries were shared.
fn deep_clone(snapshot: &Snapshot) -> Snapshot {
    fn copy<T: Clone>(entries: &[Arc<T>]) -> Vec<Arc<T>> {
        entries.iter().map(|e| Arc::new(T::clone(e))).collect()
    }
    Snapshot {
        version: snapshot.version,
        hash: snapshot.hash.clone(),
        routes: copy(&snapshot.routes),
        upstreams: copy(&snapshot.upstreams),
        certificates: copy(&snapshot.certificates),
        secrets: copy(&snapshot.secrets),
        default_chain: snapshot.default_chain.clone(),
        blobs: copy(&snapshot.blobs),
    }
}

criterion_group!(benches, apply);
criterion_main!(benches);
