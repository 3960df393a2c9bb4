//! What a proxy holds after many in-place (delta) applies: the live heap must not grow with
//! their number. Counted by a counting global allocator (`crds/benches/support/live_heap.rs`),
//! so this test is its own binary.
//!
//! The proxy is driven as its controller source drives it: each frame is decoded and checked
//! against the held snapshot and its entry digests (`decode_frame`), published as an
//! `Arc<Snapshot>` (what the source's watch channel holds) and applied by the runtime
//! (`RuntimeState::apply`). Each delta moves one Route to a new host (the router is rebuilt, as
//! in `bench/controller.sh`) and every third one changes an upstream's endpoints.
//!
//! - `heap_does_not_grow_with_in_place_applies` (fast, 1,000 Routes): after the first whole
//!   frame, 40 deltas may not leave the heap more than [`SMALL_SLACK`] above its level after
//!   the first few (a copy of the previous version kept alive per apply would break it at once).
//! - `heap_per_route_after_in_place_applies` (`--ignored`, 10,000 Routes): prints the live heap
//!   per Route after the first frame and after each batch of deltas, and checks it stays below
//!   2 KiB per Route.
//!   Run: `cargo test -p hookway-proxy --test apply_heap -- --ignored --nocapture`.

#[path = "../../crds/benches/support/live_heap.rs"]
mod live_heap;

use std::sync::Arc;

use hookway_crds::content_hash::ContentDigests;
use hookway_crds::delta::SnapshotDelta;
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

#[global_allocator]
static ALLOCATOR: live_heap::Counting = live_heap::Counting;

/// The allocator counts the whole process: one measurement at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Most the fast test's heap may rise over its deltas, after the first few (caches warmed).
const SMALL_SLACK: isize = 256 * 1024;

fn upstream(j: usize, generation: usize) -> UpstreamEntry {
    UpstreamEntry {
        key: ObjectKey::new("heap", format!("s{j:04}")),
        scheme: Scheme::Http,
        protocol: Default::default(),
        balance: Balance::RoundRobin,
        hash_header: None,
        endpoints: (0..10)
            .map(|k| Endpoint {
                address: format!("10.{}.{}.{}", j / 200, j % 200, k + 1),
                port: 8080 + (generation % 1000) as u16,
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

/// Route `i` of a world of `upstreams` upstreams, served for `host`.
fn route(i: usize, upstreams: usize, host: String) -> RouteEntry {
    let headers = ChainEntry {
        alias: "hdr".into(),
        plugin_ref: ObjectKey::new("heap", "hdr"),
        plugin: "headers".into(),
        tier: Tier::Namespace,
        order: 100,
        config: json!({"request": {"set": {"x-env": "heap"}}}),
        exclude_paths: vec![],
        secrets: Default::default(),
        services: Default::default(),
    };
    RouteEntry {
        key: ObjectKey::new("heap", format!("r{i:05}")),
        hosts: vec![host],
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
        upstream: ObjectKey::new("heap", format!("s{:04}", i % upstreams)),
        chain: if i.is_multiple_of(10) {
            vec![headers]
        } else {
            vec![]
        },
    }
}

fn snapshot(routes: usize, upstreams: usize) -> Snapshot {
    Snapshot {
        version: 1,
        routes: (0..routes)
            .map(|i| route(i, upstreams, format!("h{i}.example.com")).into())
            .collect(),
        upstreams: (0..upstreams).map(|j| upstream(j, 0).into()).collect(),
        ..Snapshot::default()
    }
    .seal()
}

/// A proxy fed frames as its controller source feeds it.
struct Proxy {
    state: RuntimeState,
    /// What the source's watch channel holds, and the digests the source keeps beside it.
    held: Option<(Arc<Snapshot>, ContentDigests)>,
}

impl Proxy {
    fn new() -> Self {
        Self {
            state: RuntimeState::new(
                ChainBuilder::new(hookway_proxy::plugins::builtin()),
                Metrics::new().expect("metrics"),
            ),
            held: None,
        }
    }

    fn receive(&mut self, line: &[u8]) {
        let held = self.held.as_ref().map(|(s, d)| (&**s, d));
        let (snapshot, digests) = decode_frame(line, held).expect("valid frame");
        let snapshot = Arc::new(snapshot);
        // Published first (the previous one is dropped from the channel), then applied.
        self.held = Some((snapshot.clone(), digests));
        let failed = self.state.apply(snapshot);
        assert!(failed.is_empty(), "{failed:?}");
    }
}

/// The whole frame of `s`.
fn whole(s: &Snapshot) -> Vec<u8> {
    serde_json::to_vec(&Frame {
        version: s.version,
        hash: s.hash.clone(),
        snapshot: Some(s.clone()),
        delta: None,
    })
    .expect("frame")
}

/// The delta frame from `old` to `new`.
fn delta(old: &Snapshot, new: &Snapshot) -> Vec<u8> {
    serde_json::to_vec(&Frame {
        version: new.version,
        hash: new.hash.clone(),
        snapshot: None,
        delta: Some(SnapshotDelta::between(old, new)),
    })
    .expect("frame")
}

/// The controller's side: the next version, with Route `round * 7 % routes` on a new host and,
/// every third round, upstream `round % upstreams` on new endpoints.
fn next(s: &Snapshot, round: usize) -> Snapshot {
    let (routes, upstreams) = (s.routes.len(), s.upstreams.len());
    let mut n = s.clone();
    let i = round * 7 % routes;
    n.routes[i] = route(i, upstreams, format!("h{i}-{round}.example.com")).into();
    if round.is_multiple_of(3) {
        let j = round % upstreams;
        n.upstreams[j] = upstream(j, round).into();
    }
    n.version = s.version + 1;
    n.seal()
}

/// Live bytes of a snapshot's parts, each built alone.
struct Parts {
    /// The decoded snapshot.
    snapshot: isize,
    /// Its entry digests (kept by the controller source).
    digests: isize,
    /// The router over its Routes.
    router: isize,
}

/// Live heap (bytes) held by a proxy after its first whole frame, then after each delta; and
/// what the last snapshot's parts hold (for the report).
fn run(
    routes: usize,
    upstreams: usize,
    deltas: usize,
    mut each: impl FnMut(usize, isize),
) -> Parts {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let _guard = runtime.enter();
    let mut controller = snapshot(routes, upstreams);
    let first = whole(&controller);
    let base = live_heap::live();
    let mut proxy = Proxy::new();
    proxy.receive(&first);
    drop(first);
    each(0, live_heap::live() - base);
    for round in 1..=deltas {
        // The controller's snapshot is measured too: it is replaced by one of the same size.
        let n = next(&controller, round);
        let line = delta(&controller, &n);
        controller = n;
        proxy.receive(&line);
        drop(line);
        each(round, live_heap::live() - base);
    }
    let held = proxy.held.as_ref().expect("held").0.clone();
    assert_eq!(held.hash, controller.hash);
    assert!(
        proxy
            .state
            .metrics()
            .snapshot_apply
            .with_label_values(&["delta"])
            .get_sample_count()
            > 0,
        "the deltas were applied in place"
    );
    // What the parts hold, each measured by building a copy of it.
    let wire = serde_json::to_vec(&*held).expect("snapshot");
    let before = live_heap::live();
    let copy: Snapshot = serde_json::from_slice(&wire).expect("snapshot");
    let snapshot = live_heap::live() - before;
    let before = live_heap::live();
    let digests = ContentDigests::of(&copy);
    let digests_bytes = live_heap::live() - before;
    let before = live_heap::live();
    let router = hookway_proxy::router::Router::new(&copy.routes).expect("router");
    let router_bytes = live_heap::live() - before;
    drop((copy, digests, router));
    Parts {
        snapshot,
        digests: digests_bytes,
        router: router_bytes,
    }
}

#[test]
fn heap_does_not_grow_with_in_place_applies() {
    const DELTAS: usize = 40;
    let mut levels = Vec::new();
    let parts = run(1_000, 100, DELTAS, |_, live| levels.push(live));
    assert!(parts.snapshot > 0 && parts.router > 0 && parts.digests > 0);
    // After a few applies (plugin instances, metric series and buffers warmed), the heap stays
    // level: a previous version kept alive per apply would add ~1 KiB per Route each time.
    let settled = levels[5];
    let most = *levels[5..].iter().max().expect("levels");
    assert!(
        most - settled <= SMALL_SLACK,
        "the live heap grew by {} KiB over {} in-place applies: {:?} KiB",
        (most - settled) / 1024,
        DELTAS - 5,
        levels.iter().map(|l| l / 1024).collect::<Vec<_>>()
    );
    // And the same content costs the same whether it came whole or by deltas: in-place applies
    // keep nothing of the versions before, and a decoded whole frame keeps no spare capacity
    // (it held a third more than the same snapshot built by deltas before 2026-12-07).
    let (first, settled_kib) = (levels[0] / 1024, settled / 1024);
    assert!(
        most <= levels[0] + levels[0] / 10 && levels[0] <= settled + settled / 10,
        "after its first frame the proxy holds {first} KiB, after in-place applies {settled_kib} \
         to {} KiB",
        most / 1024
    );
}

#[test]
#[ignore = "measurement at 10,000 Routes (slow in a debug build)"]
fn heap_per_route_after_in_place_applies() {
    const ROUTES: usize = 10_000;
    const DELTAS: usize = 120;
    let per_route = |live: isize| live as f64 / 1024.0 / ROUTES as f64;
    let mut last = 0;
    let parts = run(ROUTES, 1_000, DELTAS, |round, live| {
        if round == 0 || round.is_multiple_of(20) || round < 4 {
            eprintln!(
                "after {round} deltas: {:.1} MiB live, {:.2} KiB per Route",
                live as f64 / 1024.0 / 1024.0,
                per_route(live)
            );
        }
        last = live;
    });
    let kib = |bytes: isize| bytes as f64 / 1024.0 / ROUTES as f64;
    eprintln!(
        "per Route: snapshot {:.2} KiB, its digests {:.2} KiB, router {:.2} KiB, the rest of \
         the runtime (route runtimes, upstream pools, chains, metrics) {:.2} KiB",
        kib(parts.snapshot),
        kib(parts.digests),
        kib(parts.router),
        kib(last - parts.snapshot - parts.digests - parts.router)
    );
    assert!(
        per_route(last) < 2.0,
        "{:.2} KiB per Route",
        per_route(last)
    );
}
