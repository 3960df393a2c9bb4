//! Property tests: random object sets compile without panicking, chains are well-formed, and
//! the snapshot does not depend on input order.

use crate::support::*;
use hookway_crds::api::route::PathMatchType;
use hookway_crds::PluginStatus;
use proptest::prelude::*;
use serde_json::{json, Value};

const NAMESPACES: [&str; 3] = [ROOT, "a", "b"];
const ALIASES: [&str; 4] = ["p1", "p2", "p3", "p4"];

fn config() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        (0u32..5).prop_map(|n| Some(limit(n))),
        Just(Some(params("x", "y"))),
        Just(Some(json!({"second": "wrong type"}))),
        Just(Some(json!("not an object"))),
    ]
}

#[derive(Debug, Clone)]
struct P {
    ns: usize,
    alias: usize,
    kind: usize,
    status: usize,
    order: i32,
    config: Option<Value>,
    locked: bool,
    selector: bool,
}

fn plugins() -> impl Strategy<Value = Vec<P>> {
    prop::collection::vec(
        (
            0..3usize,
            0..4usize,
            0..3usize,
            0..3usize,
            -2..3i32,
            config(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(ns, alias, kind, status, order, config, locked, selector)| P {
                    ns,
                    alias,
                    kind,
                    status,
                    order,
                    config,
                    locked,
                    selector,
                },
            ),
        0..8,
    )
}

/// A ref: (alias, none | disable | config).
fn refs() -> impl Strategy<Value = Vec<(usize, u8, Option<Value>)>> {
    prop::collection::vec((0..5usize, 0..3u8, config()), 0..3)
}

#[derive(Debug, Clone)]
struct S {
    ns: usize,
    name: usize,
    refs: Vec<(usize, u8, Option<Value>)>,
}

#[derive(Debug, Clone)]
struct R {
    ns: usize,
    name: usize,
    service: usize,
    host: usize,
    path: usize,
    refs: Vec<(usize, u8, Option<Value>)>,
}

const HOSTS: [&str; 4] = ["x.example.com", "*.example.com", "BAD HOST", ""];
const PATHS: [(PathMatchType, &str); 4] = [
    (PathMatchType::Prefix, "/"),
    (PathMatchType::Exact, "/a"),
    (PathMatchType::Regex, "/v[0-9]+"),
    (PathMatchType::Regex, "(bad"),
];

fn alias(i: usize) -> &'static str {
    ALIASES.get(i).copied().unwrap_or("ghost")
}

fn world(plugins: &[P], services: &[S], routes: &[R]) -> World {
    let mut w = World::new()
        .namespace(namespace("a", &[("team", "a")]))
        .namespace(namespace("b", &[("team", "b")]));
    for p in plugins {
        let kind = ["limit", "extra_params", "unknown_kind"][p.kind];
        let mut b = plugin(NAMESPACES[p.ns], alias(p.alias), kind)
            .status(
                [
                    PluginStatus::Disable,
                    PluginStatus::Enable,
                    PluginStatus::Global,
                ][p.status],
            )
            .order(p.order);
        if let Some(c) = &p.config {
            b = b.config(c.clone());
        }
        if p.locked {
            b = b.locked();
        }
        if p.selector {
            b = b.namespaces(match_labels(&[("team", "a")]));
        }
        w = w.plugin(b);
    }
    for s in services {
        let mut b = service(NAMESPACES[s.ns], ["s", "t"][s.name]);
        for (a, mode, c) in &s.refs {
            b = match (mode, c) {
                (1, _) => b.disable(alias(*a)),
                (_, Some(c)) if *mode == 2 => b.plugin(alias(*a), c.clone()),
                _ => b.uses(alias(*a)),
            };
        }
        w = w.service(b);
    }
    for r in routes {
        let mut b =
            route(NAMESPACES[r.ns], ["r1", "r2", "r3"][r.name]).service(["s", "t", "u"][r.service]);
        if !HOSTS[r.host].is_empty() {
            b = b.host(HOSTS[r.host]);
        }
        let (kind, path) = PATHS[r.path];
        b = b.path(kind, path);
        for (a, mode, c) in &r.refs {
            b = match (mode, c) {
                (1, _) => b.disable(alias(*a)),
                (_, Some(c)) if *mode == 2 => b.plugin(alias(*a), c.clone()),
                _ => b.uses(alias(*a)),
            };
        }
        w = w.route(b);
    }
    w
}

fn inputs() -> impl Strategy<Value = (Vec<P>, Vec<S>, Vec<R>)> {
    (
        plugins(),
        prop::collection::vec(
            (0..3usize, 0..2usize, refs()).prop_map(|(ns, name, refs)| S { ns, name, refs }),
            0..5,
        ),
        prop::collection::vec(
            (
                0..3usize,
                0..3usize,
                0..3usize,
                0..4usize,
                0..4usize,
                refs(),
            )
                .prop_map(|(ns, name, service, host, path, refs)| R {
                    ns,
                    name,
                    service,
                    host,
                    path,
                    refs,
                }),
            0..8,
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_object_sets_compile_into_well_formed_chains((p, s, r) in inputs()) {
        let out = world(&p, &s, &r).compile().0;
        for route in &out.snapshot.routes {
            let mut aliases: Vec<&str> = route.chain.iter().map(|e| e.alias.as_str()).collect();
            let n = aliases.len();
            aliases.sort();
            aliases.dedup();
            prop_assert_eq!(aliases.len(), n, "alias twice in {}", route.key);
            prop_assert!(
                route.chain.windows(2).all(|w| (w[0].order, &w[0].alias) < (w[1].order, &w[1].alias)),
                "chain of {} not sorted", route.key
            );
            prop_assert!(out.snapshot.upstream(&route.upstream).is_some());
            prop_assert!(!route.rules.is_empty());
        }
        prop_assert_eq!(&out.snapshot.hash, &out.snapshot.content_hash());
        prop_assert!(out.snapshot.routes.windows(2).all(|w| w[0].key < w[1].key));
        for (id, report) in &out.reports {
            if id.kind == hookway_crds::compiler::Kind::Route {
                let served = out.snapshot.routes.iter().any(|r| r.key == id.key);
                prop_assert_eq!(served, report.accepted.status && (report.resolved_refs.status
                    || report.resolved_refs.reason == "SecretNotFound"), "{:?}", report);
            }
        }
    }

    #[test]
    fn shuffling_inputs_gives_the_same_snapshot_and_hash(
        (ps, ss, rs, (p0, s0, r0)) in inputs().prop_flat_map(|(p, s, r)| (Just(p.clone()).prop_shuffle(), Just(s.clone()).prop_shuffle(), Just(r.clone()).prop_shuffle(), Just((p, s, r)))),
    ) {
        let a = world(&p0, &s0, &r0).compile().0;
        let b = world(&ps, &ss, &rs).compile().0;
        prop_assert_eq!(&a.snapshot.hash, &b.snapshot.hash);
        prop_assert_eq!(a.snapshot, b.snapshot);
        prop_assert_eq!(a.reports, b.reports);
    }
}
