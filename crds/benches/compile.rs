//! Full compile of a large cluster: 10,000 Routes over 1,000 Services (each on a core Service
//! with an EndpointSlice of 10 endpoints since 2026-12-07) with 50 GatewayPlugins across 100
//! namespaces (`world::big_world`). Run: `cargo bench -p hookway-crds --bench compile`.
//! Instruction counts and heap bytes per part: `benches/compile_work.rs`, bench/CONTROLLER.md.
//!
//! Measured 2026-11-22 (Services with static nodes then) on a shared 2-core box (load average 5–8, `perf stat`: 0.66 CPUs for
//! the process): 182 ms wall per compile without freeing the result (~120 ms of CPU), 319 ms
//! including the drop. About a third is the content hash (serde_json into SHA-256), a fifth
//! the chains (one `serde_json::Value` clone per chain entry).
//!
//! The content hash cases compare the hash from scratch, now (per-entry digests) and before
//! (`support/legacy_hash.rs`), with what the controller does after one Route changed: compile
//! unsealed and seal reusing the previous snapshot's digests (bench/CONTROLLER.md).

#[path = "../tests/all/support/mod.rs"]
mod support;
#[allow(dead_code)] // the compile bench uses one world of several
mod world;

#[path = "support/legacy_hash.rs"]
mod legacy_hash;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hookway_crds::compiler::{compile, compile_reusing, Options};
use hookway_crds::content_hash::ContentDigests;
use support::catalogue;
use world::big_world;

fn bench(c: &mut Criterion) {
    let world = big_world();
    let options = Options::default();
    let catalogue = catalogue();
    let out = compile(&world.0, &options, &catalogue);
    assert_eq!(out.snapshot.routes.len(), 10_000, "every route is served");
    assert_eq!(out.rejected().count(), 0);
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10k_routes_1k_services_50_plugins", |b| {
        b.iter(|| compile(black_box(&world.0), &options, &catalogue))
    });
    // The same without freeing the result (the controller frees the previous snapshot off the
    // compile path, when the next one replaces it).
    group.bench_function("10k_routes_1k_services_50_plugins_no_drop", |b| {
        b.iter_with_large_drop(|| compile(black_box(&world.0), &options, &catalogue))
    });
    // The content hash of the compiled snapshot from scratch (every entry serialized and
    // hashed), as `compile` seals it, and as it was computed before per-entry digests.
    group.bench_function("content_hash_10k_routes", |b| {
        b.iter(|| black_box(&out.snapshot).content_hash())
    });
    group.bench_function("content_hash_before_10k_routes", |b| {
        b.iter(|| legacy_hash::whole_content_hash(black_box(&out.snapshot)))
    });
    // What the controller does after one Route changed: compile without sealing, then seal
    // reusing the previous snapshot's digests (the other 9,999 Routes, the upstreams, ... are
    // compared, not hashed).
    let (previous, previous_digests) = out.snapshot.clone().seal_reusing(None);
    let mut changed = world.0.clone();
    std::sync::Arc::make_mut(&mut changed.routes[0])
        .spec
        .priority = 7;
    let recompiled = compile_reusing(&changed, &options, &catalogue, None).snapshot;
    assert_ne!(recompiled.routes, previous.routes, "the Route changed");
    group.bench_function("seal_after_one_route_changed", |b| {
        b.iter(|| ContentDigests::reusing(black_box(&recompiled), &previous, &previous_digests))
    });
    // The per-object digests `Programmed` counts by (the compile loop computes them for every
    // changed snapshot): serializing every entry again, or from the entry digests.
    group.bench_function("programmed_digests_from_scratch", |b| {
        b.iter(|| hookway_crds::applied::digests(black_box(&previous)))
    });
    group.bench_function("programmed_digests_from_entry_digests", |b| {
        b.iter(|| hookway_crds::applied::digests_with(black_box(&previous), &previous_digests))
    });
    group.bench_function("compile_reusing_and_seal_after_one_route_changed", |b| {
        b.iter_with_large_drop(|| {
            let snapshot =
                compile_reusing(black_box(&changed), &options, &catalogue, None).snapshot;
            snapshot.seal_reusing(Some((&previous, &previous_digests)))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
