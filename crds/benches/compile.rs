//! Full compile of a large cluster: 10,000 Routes over 1,000 Services with 50 GatewayPlugins
//! across 100 namespaces. Run: `cargo bench -p hookway-crds --bench compile`.
//!
//! Measured 2026-11-22 on a shared 2-core box (load average 5–8, `perf stat`: 0.66 CPUs for
//! the process): 182 ms wall per compile without freeing the result (~120 ms of CPU), 319 ms
//! including the drop. About a third is the content hash (serde_json into SHA-256), a fifth
//! the chains (one `serde_json::Value` clone per chain entry).
//!
//! The content hash cases compare the hash from scratch, now (per-entry digests) and before
//! (`support/legacy_hash.rs`), with what the controller does after one Route changed: compile
//! unsealed and seal reusing the previous snapshot's digests (bench/CONTROLLER.md).

#[path = "../tests/all/support/mod.rs"]
mod support;

#[path = "support/legacy_hash.rs"]
mod legacy_hash;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hookway_crds::api::route::PathMatchType;
use hookway_crds::compiler::{compile, compile_unsealed, Options};
use hookway_crds::content_hash::ContentDigests;
use support::*;

/// 100 namespaces × (10 Services, 100 Routes); 10 cluster-wide plugins (5 global, one locked,
/// one with a namespace policy) and 40 namespace-wide ones.
fn big_world() -> World {
    let mut w = World::new();
    for i in 0..10 {
        let p = plugin(
            ROOT,
            &format!("cluster-{i}"),
            if i % 2 == 0 { "limit" } else { "extra_params" },
        )
        .order(i * 10);
        let cfg = if i % 2 == 0 {
            limit(100 + i as u32)
        } else {
            params("x-gw", "hookway")
        };
        let mut p = if i < 5 { p.global(cfg) } else { p.config(cfg) };
        if i == 0 {
            p = p.locked();
        }
        if i == 4 {
            p = p.namespaces(match_labels(&[("tier", "gold")]));
        }
        w = w.plugin(p);
    }
    for n in 0..100 {
        let ns = format!("ns-{n}");
        w = w.namespace(namespace(
            &ns,
            &[("tier", if n % 3 == 0 { "gold" } else { "tin" })],
        ));
        if n < 40 {
            w = w.plugin(
                plugin(&ns, &format!("local-{n}"), "access_log")
                    .global(log("stdout"))
                    .order(500),
            );
        }
        for s in 0..10 {
            let mut svc = service(&ns, &format!("svc-{s}"));
            if s % 2 == 0 {
                svc = svc.uses("cluster-5");
            }
            if s % 5 == 0 {
                svc = svc.plugin("cluster-6", limit(7));
            }
            w = w.service(svc);
        }
        for r in 0..100 {
            let mut route = route(&ns, &format!("route-{r}"))
                .host(&format!("app-{}.{ns}.example.com", r % 20))
                .service(&format!("svc-{}", r % 10))
                .path(PathMatchType::Prefix, &format!("/api/{r}"));
            if r % 3 == 0 {
                route = route.plugin("cluster-2", limit(5));
            }
            if r % 7 == 0 {
                route = route.disable("cluster-1");
            }
            if r % 11 == 0 {
                route = route.uses("cluster-7");
            }
            w = w.route(route);
        }
    }
    w
}

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
    let recompiled = compile_unsealed(&changed, &options, &catalogue).snapshot;
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
    group.bench_function("compile_unsealed_and_seal_after_one_route_changed", |b| {
        b.iter_with_large_drop(|| {
            let snapshot = compile_unsealed(black_box(&changed), &options, &catalogue).snapshot;
            snapshot.seal_reusing(Some((&previous, &previous_digests)))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
