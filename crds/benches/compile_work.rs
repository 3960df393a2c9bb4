//! The controller's compile work per change at issue 18's size (10,000 Routes, 1,000 Services
//! on core Services with 10,000 endpoints): what a whole compile holds in memory, and what one
//! compile costs, in a form callgrind can count.
//!
//! `cargo bench -p hookway-crds --bench compile_work --profile release` prints live heap bytes
//! (a counting global allocator: bytes still allocated after each step) for the objects as
//! the reflector stores hold them, the compile's output (snapshot, reports, origins) and the
//! snapshot serialized as JSON. `COMPILE_WORLD=bench` compiles the world of
//! `tests/tests/bench.rs` (no plugins) instead of `world::big_world`. For instruction counts run the built binary under
//! `valgrind --tool=callgrind --toggle-collect='*compile_work*measured*'` with
//! `COMPILE_WORK=profile` (two whole compiles) or `COMPILE_WORK=endpoints` (two compiles after
//! one EndpointSlice changed, reusing the last: `--toggle-collect='*compile_work*measured_reuse*'`)
//! or `COMPILE_WORK=digests` (the controller's content digests after one Route changed, all
//! hashed then reusing the last: `--toggle-collect='*compile_work*measured_digests*'`, two
//! calls; `--dump-after` splits them), or `COMPILE_WORK=route` (two compiles after one Route's
//! spec changed — its priority, a new generation — reusing the last:
//! `--toggle-collect='*compile_work*measured_reuse*'`).

#[path = "../tests/all/support/mod.rs"]
mod support;
mod world;

#[path = "support/live_heap.rs"]
mod live_heap;

use live_heap::live;
use std::hint::black_box;
use std::sync::Arc;

use hookway_crds::compiler::{compile, compile_reusing, Compiled, Objects, Options, Previous};
use hookway_crds::Catalogue;
use support::catalogue;
use world::{bench_world, big_world, endpoint_slice, versioned};

#[global_allocator]
static ALLOCATOR: live_heap::Counting = live_heap::Counting;

fn mib(bytes: isize) -> String {
    format!("{:>12} B ({:.2} MiB)", bytes, bytes as f64 / 1048576.0)
}

/// A whole compile, kept out of line so callgrind can count it alone.
#[inline(never)]
fn measured_compile(objects: &Objects, options: &Options, catalogue: &Catalogue) -> Compiled {
    compile(black_box(objects), options, catalogue)
}

/// A compile reusing the last one, kept out of line so callgrind can count it alone.
#[inline(never)]
fn measured_reuse(
    objects: &Objects,
    options: &Options,
    catalogue: &Catalogue,
    previous: Previous<'_>,
) -> Compiled {
    compile_reusing(black_box(objects), options, catalogue, Some(previous))
}

/// The content digests, kept out of line so callgrind can count them alone.
#[inline(never)]
fn measured_digests(
    snapshot: &hookway_crds::Snapshot,
    content: Option<&hookway_crds::content_hash::ContentDigests>,
) -> hookway_crds::applied::Digests {
    match content {
        Some(content) => hookway_crds::applied::digests_with(black_box(snapshot), content),
        None => hookway_crds::applied::digests(black_box(snapshot)),
    }
}

fn main() {
    let mode = std::env::var("COMPILE_WORK").unwrap_or_default();
    let plain = std::env::var("COMPILE_WORLD").is_ok_and(|w| w == "bench");
    let options = Options::default();
    let catalogue = catalogue();
    let before = live();
    let world = versioned(if plain { bench_world() } else { big_world() });
    let objects = live() - before;
    let first = compile(&world.0, &options, &catalogue);
    assert_eq!(first.snapshot.routes.len(), 10_000, "every route is served");
    assert_eq!(first.rejected().count(), 0);
    drop(first);
    if mode == "profile" {
        for _ in 0..2 {
            drop(measured_compile(&world.0, &options, &catalogue));
        }
        return;
    }
    if mode == "digests" {
        // The controller's content digests after one Route changed: every entry hashed again,
        // or from the entry digests the seal reused (`digests_with`), as the compile loop does.
        let before = compile(&world.0, &options, &catalogue).snapshot;
        let (_, before_content) = before.clone().seal_reusing(None);
        let mut after = before.clone();
        std::sync::Arc::make_mut(&mut after.routes[0]).priority += 1;
        let (after, content) = after.seal_reusing(Some((&before, &before_content)));
        let whole = measured_digests(&after, None);
        let reused = measured_digests(&after, Some(&content));
        assert_eq!(whole, reused);
        return;
    }
    if mode == "endpoints" {
        // One EndpointSlice changed since the last compile, twice.
        let mut objects = world.0.clone();
        let mut last = compile(&objects, &options, &catalogue);
        for round in 0..2u64 {
            let slice = objects.endpoint_slices[0].clone();
            let meta = &slice.metadata;
            let mut changed = endpoint_slice(
                meta.namespace.as_deref().unwrap(),
                &meta.labels.as_ref().unwrap()["kubernetes.io/service-name"],
                500 + round as usize,
            );
            changed.metadata.uid = meta.uid.clone();
            changed.metadata.resource_version = Some(format!("{}", 2 + round));
            objects.endpoint_slices[0] = Arc::new(changed);
            let previous = Previous {
                inputs: &last.inputs,
                snapshot: &last.snapshot,
                reports: &last.reports,
                url_sources: &last.url_sources,
            };
            let next = measured_reuse(&objects, &options, &catalogue, previous);
            last = next;
        }
        return;
    }
    if mode == "route" {
        // One Route's spec changed since the last compile (a new generation), twice.
        let mut objects = world.0.clone();
        let mut last = compile(&objects, &options, &catalogue);
        for round in 0..2i64 {
            let route = Arc::make_mut(&mut objects.routes[0]);
            route.spec.priority += 1;
            route.metadata.generation = Some(2 + round);
            let previous = Previous {
                inputs: &last.inputs,
                snapshot: &last.snapshot,
                reports: &last.reports,
                url_sources: &last.url_sources,
            };
            let next = measured_reuse(&objects, &options, &catalogue, previous);
            assert_eq!(next.snapshot.routes.len(), 10_000);
            last = next;
        }
        return;
    }
    let which = if plain {
        "tests/tests/bench.rs's world: no plugins"
    } else {
        "50 plugins, 100 namespaces"
    };
    println!("objects (10,000 Routes, 1,000 Services, 1,000 core Services, 1,000 EndpointSlices; {which}): {}", mib(objects));
    let before = live();
    let out = compile(&world.0, &options, &catalogue);
    let all = live() - before;
    let Compiled {
        snapshot,
        reports,
        origins,
        url_sources,
        inputs: _,
    } = out;
    let at = live();
    drop(reports);
    let reports = at - live();
    let at = live();
    drop((origins, url_sources));
    let rest = at - live();
    let at = live();
    let json = serde_json::to_vec(&snapshot).unwrap();
    let frame = live() - at;
    let frame_len = json.len();
    drop(json);
    let at = live();
    drop(snapshot);
    let snapshot = at - live();
    println!("compile output, all:      {}", mib(all));
    println!("  snapshot:               {}", mib(snapshot));
    println!("  reports:                {}", mib(reports));
    println!("  origins, url sources:   {}", mib(rest));
    println!(
        "snapshot as JSON:         {} ({frame_len} bytes long)",
        mib(frame)
    );
}
