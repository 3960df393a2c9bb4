//! Full compile of a large cluster: 10,000 Routes over 1,000 Services (each on a core Service
//! with an EndpointSlice of 10 endpoints since 2026-12-07) with 50 GatewayPlugins across 100
//! namespaces (`world::big_world`). Run: `cargo bench -p hookway-crds --bench compile`.
//! Instruction counts and heap bytes per part: `benches/compile_work.rs`, bench/CONTROLLER.md.
//!
//! Measured 2026-11-22 (Services with static nodes then) on a shared 2-core box (load average 5–8, `perf stat`: 0.66 CPUs for
//! the process): 182 ms wall per compile without freeing the result (~120 ms of CPU), 319 ms
//! including the drop. About a third is the content hash (serde_json into SHA-256), a fifth
//! the chains (one `serde_json::Value` clone per chain entry).

#[path = "../tests/all/support/mod.rs"]
mod support;
#[allow(dead_code)] // the compile bench uses one world of several
mod world;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hookway_crds::compiler::{compile, Options};
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
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
