//! Applying a snapshot in place (`delta.rs`) gives what building it whole gives, and builds
//! only what changed.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use hookway_crds::applied::FailedObject;
use hookway_crds::snapshot::{CertificateEntry, Endpoint, RouteEntry, SecretEntry, Snapshot};
use proptest::prelude::*;
use serde_json::json;

use super::tests::{certificate, key, route, snapshot, state, upstream, with_plugin};
use super::{Rebuilt, Runtime, RuntimeState};
use crate::router::RequestView;

const HOSTS: [&str; 4] = [
    "a.example.com",
    "b.example.com",
    "c.example.com",
    "x.c.example.com",
];
const PATHS: [&str; 3] = ["/", "/x", "/x/y"];

/// One Route of a [`World`].
#[derive(Debug, Clone, PartialEq)]
struct RouteSpec {
    /// Index into [`HOSTS`] (3 is a wildcard `*.c.example.com`).
    host: usize,
    /// Index into [`PATHS`].
    path: usize,
    priority: i32,
    /// Upstream `s{n}`.
    upstream: u8,
    /// 0: no plugin; 1, 2: a `fragile` plugin tagged so; 3: one that fails to build.
    plugin: u8,
    /// The plugin binds Secret `sec`.
    secret: bool,
    /// The plugin binds Service `s1` (as `request_mirror` or `ext_authz` name their target).
    service: bool,
}

/// One upstream of a [`World`].
#[derive(Debug, Clone, PartialEq)]
struct UpstreamSpec {
    /// Endpoints `127.0.0.1:{9000 + first}` .. (`count` of them).
    first: u16,
    count: u16,
    /// An invalid hash header: the pool cannot be built.
    bad: bool,
}

/// A configuration, small enough to enumerate, that becomes a snapshot.
#[derive(Debug, Clone, PartialEq)]
struct World {
    /// Route `r{n}`.
    routes: BTreeMap<u8, RouteSpec>,
    /// Upstream `s{n}`.
    upstreams: BTreeMap<u8, UpstreamSpec>,
    /// 0: no certificate; 1, 2: two good ones for `a.example.com`; 3: one whose key does not
    /// match.
    cert: u8,
    /// Content of Secret `sec`.
    secret: u8,
}

/// Certificates for `a.example.com`: two good ones and a broken one (generated once).
fn certs() -> &'static [CertificateEntry; 3] {
    static CERTS: OnceLock<[CertificateEntry; 3]> = OnceLock::new();
    CERTS.get_or_init(|| {
        [
            certificate("tls", "a.example.com", true),
            certificate("tls", "a.example.com", true),
            certificate("tls", "a.example.com", false),
        ]
    })
}

impl World {
    fn snapshot(&self, version: u64) -> Arc<Snapshot> {
        let routes = self
            .routes
            .iter()
            .map(|(n, spec)| {
                let mut r = route(&format!("r{n}"), spec.priority);
                r.hosts = vec![match spec.host {
                    3 => "*.c.example.com".to_string(),
                    h => HOSTS[h].to_string(),
                }];
                r.rules[0].path = PATHS[spec.path].to_string();
                r.upstream = key(&format!("s{}", spec.upstream));
                if spec.plugin > 0 {
                    let config = match spec.plugin {
                        3 => json!({"fail": true}),
                        tag => json!({"tag": tag}),
                    };
                    r = with_plugin(r, config);
                    if spec.secret {
                        r.chain[0].secrets = [("key".to_string(), key("sec"))].into();
                    }
                    if spec.service {
                        r.chain[0].services = [("target".to_string(), key("s1"))].into();
                    }
                }
                r
            })
            .collect();
        let upstreams = self
            .upstreams
            .iter()
            .map(|(n, spec)| {
                let mut u = upstream(&format!("s{n}"));
                u.endpoints = (0..spec.count)
                    .map(|i| Endpoint {
                        address: "127.0.0.1".into(),
                        port: 9000 + spec.first + i,
                        weight: 1,
                    })
                    .collect();
                if spec.bad {
                    u.hash_header = Some("bad header".into());
                }
                u
            })
            .collect();
        let certificates = match self.cert {
            0 => vec![],
            n => vec![certs()[usize::from(n) - 1].clone()],
        };
        let mut s = Snapshot::clone(&snapshot(version, routes, upstreams, certificates));
        s.secrets = vec![Arc::new(SecretEntry {
            key: key("sec"),
            data: [("key".to_string(), self.secret.to_string())].into(),
        })];
        let mut s = s.seal();
        s.version = version;
        Arc::new(s)
    }
}

/// A served route: key, upstream, the chain's aliases and kinds.
type ServedRoute = (String, String, Vec<(String, String)>);

/// Everything serving depends on, comparable between two runtimes.
#[derive(Debug, PartialEq)]
struct View {
    version: u64,
    hash: String,
    failed: Vec<FailedObject>,
    entries: Vec<Arc<RouteEntry>>,
    routes: Vec<ServedRoute>,
    /// The route serving each host × path, plain and TLS.
    decisions: Vec<Option<String>>,
    /// Per upstream: key and node authorities.
    upstreams: Vec<(String, Vec<String>)>,
    /// The certificate served for each host.
    certs: Vec<Option<Vec<u8>>>,
    default_chain: usize,
}

fn view(rt: &Runtime) -> View {
    let headers = http::HeaderMap::new();
    let mut decisions = Vec::new();
    for host in HOSTS {
        for path in PATHS {
            for tls in [false, true] {
                let idx = rt.router.find(&RequestView {
                    host: Some(host),
                    method: &http::Method::GET,
                    path,
                    query: None,
                    headers: &headers,
                    tls,
                });
                decisions.push(idx.map(|i| rt.routes[i].key.to_string()));
            }
        }
    }
    let mut upstreams: Vec<(String, Vec<String>)> = rt
        .upstreams
        .iter()
        .map(|(k, slot)| {
            let pool = slot.load();
            (
                k.to_string(),
                pool.nodes.iter().map(|n| n.authority.to_string()).collect(),
            )
        })
        .collect();
    upstreams.sort();
    View {
        version: rt.snapshot.version,
        hash: rt.snapshot.hash.clone(),
        failed: rt.failed.to_vec(),
        entries: rt.route_entries().to_vec(),
        routes: rt
            .routes
            .iter()
            .map(|r| {
                (
                    r.key.to_string(),
                    r.upstream.to_string(),
                    r.chain
                        .links()
                        .iter()
                        .map(|l| (l.alias.to_string(), l.plugin_kind.to_string()))
                        .collect(),
                )
            })
            .collect(),
        decisions,
        upstreams,
        certs: HOSTS
            .iter()
            .map(|h| rt.certs.resolve(h).map(|k| k.cert[0].as_ref().to_vec()))
            .collect(),
        default_chain: rt.default_chain.links().len(),
    }
}

/// Applies are counted by kind; parts by what they built.
fn applies(state: &RuntimeState, kind: &str) -> u64 {
    state
        .metrics()
        .snapshot_apply
        .with_label_values(&[kind])
        .get_sample_count()
}

fn rebuilt(state: &RuntimeState) -> Rebuilt {
    let part = |p: &str| {
        state
            .metrics()
            .snapshot_rebuilt
            .with_label_values(&[p])
            .get() as usize
    };
    Rebuilt {
        routes: part("route"),
        chains: part("chain"),
        upstreams: part("upstream"),
        router: part("router"),
        certificates: part("certificates"),
    }
}

fn minus(a: Rebuilt, b: Rebuilt) -> Rebuilt {
    Rebuilt {
        routes: a.routes - b.routes,
        chains: a.chains - b.chains,
        upstreams: a.upstreams - b.upstreams,
        router: a.router - b.router,
        certificates: a.certificates - b.certificates,
    }
}

fn spec(host: usize, upstream: u8, plugin: u8, secret: bool) -> RouteSpec {
    RouteSpec {
        host,
        path: 0,
        priority: 0,
        upstream,
        plugin,
        secret,
        service: false,
    }
}

fn up(first: u16, count: u16) -> UpstreamSpec {
    UpstreamSpec {
        first,
        count,
        bad: false,
    }
}

/// A change to a world, what applying it takes, and whether the router and the route runtimes
/// are those of the runtime before.
struct Case {
    what: &'static str,
    change: fn(&mut World),
    kind: &'static str,
    rebuilt: Rebuilt,
    router_shared: bool,
    routes_shared: bool,
}

const fn parts(
    routes: usize,
    chains: usize,
    upstreams: usize,
    router: usize,
    certificates: usize,
) -> Rebuilt {
    Rebuilt {
        routes,
        chains,
        upstreams,
        router,
        certificates,
    }
}

#[test]
fn each_change_rebuilds_only_what_it_touches_by_table() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let _guard = tokio.enter();
    let mut world = World {
        routes: [
            (0, spec(0, 0, 1, true)),
            (1, spec(1, 1, 0, false)),
            (2, spec(2, 1, 0, false)),
        ]
        .into(),
        upstreams: [(0, up(0, 2)), (1, up(10, 3))].into(),
        cert: 1,
        secret: 0,
    };
    // Built whole: every served route and chain, both upstreams, the router, the certificates.
    let full = |routes, chains| parts(routes, chains, 2, 1, 1);
    let cases = [
        Case {
            what: "endpoint churn: s1 gets another endpoint",
            change: |w| w.upstreams.get_mut(&1).unwrap().count = 4,
            kind: "delta",
            rebuilt: parts(0, 0, 1, 0, 0),
            router_shared: true,
            routes_shared: true,
        },
        Case {
            what: "endpoint churn: s1 loses every endpoint",
            change: |w| w.upstreams.get_mut(&1).unwrap().count = 0,
            kind: "delta",
            rebuilt: parts(0, 0, 1, 0, 0),
            router_shared: true,
            routes_shared: true,
        },
        Case {
            what: "r1's path changes",
            change: |w| w.routes.get_mut(&1).unwrap().path = 1,
            kind: "delta",
            rebuilt: parts(1, 0, 0, 1, 0),
            router_shared: false,
            routes_shared: false,
        },
        Case {
            what: "r0's plugin config changes (matchers do not)",
            change: |w| w.routes.get_mut(&0).unwrap().plugin = 2,
            kind: "delta",
            rebuilt: parts(1, 1, 0, 0, 0),
            router_shared: true,
            routes_shared: false,
        },
        Case {
            what: "r2 moves to s0 (matchers do not change)",
            change: |w| w.routes.get_mut(&2).unwrap().upstream = 0,
            kind: "delta",
            rebuilt: parts(1, 0, 0, 0, 0),
            router_shared: true,
            routes_shared: false,
        },
        Case {
            what: "Secret sec rotates: r0's chain binds it",
            change: |w| w.secret = 1,
            kind: "delta",
            rebuilt: parts(1, 1, 0, 0, 0),
            router_shared: true,
            routes_shared: false,
        },
        Case {
            what: "r2 removed",
            change: |w| {
                w.routes.remove(&2);
            },
            kind: "delta",
            rebuilt: parts(0, 0, 0, 1, 0),
            router_shared: false,
            routes_shared: false,
        },
        Case {
            what: "r3 added on the wildcard host",
            change: |w| {
                w.routes.insert(3, spec(3, 1, 0, false));
            },
            kind: "delta",
            rebuilt: parts(1, 0, 0, 1, 0),
            router_shared: false,
            routes_shared: false,
        },
        Case {
            what: "the certificate is replaced",
            change: |w| w.cert = 2,
            kind: "delta",
            rebuilt: parts(0, 0, 0, 0, 1),
            router_shared: true,
            routes_shared: true,
        },
        Case {
            what: "s2 added, s0 removed (r0 and r2 now name a missing upstream: 503)",
            change: |w| {
                w.upstreams.insert(2, up(20, 1));
                w.upstreams.remove(&0);
            },
            kind: "delta",
            rebuilt: parts(0, 0, 1, 0, 0),
            router_shared: true,
            routes_shared: true,
        },
        Case {
            what: "r3's plugin binds Service s1 (a mirror or ext_authz target)",
            change: |w| {
                let r3 = w.routes.get_mut(&3).unwrap();
                r3.plugin = 1;
                r3.service = true;
            },
            kind: "delta",
            rebuilt: parts(1, 1, 0, 0, 0),
            router_shared: true,
            routes_shared: false,
        },
        Case {
            what: "s1's endpoints change: r3's plugin took them when built, so its chain is built again",
            change: |w| w.upstreams.get_mut(&1).unwrap().count = 2,
            kind: "delta",
            rebuilt: parts(1, 1, 1, 0, 0),
            router_shared: true,
            routes_shared: false,
        },
        Case {
            what: "r3's plugin removed again",
            change: |w| {
                let r3 = w.routes.get_mut(&3).unwrap();
                r3.plugin = 0;
                r3.service = false;
            },
            kind: "delta",
            rebuilt: parts(1, 0, 0, 0, 0),
            router_shared: true,
            routes_shared: false,
        },
        Case {
            what: "r1's plugin fails to build: the whole build knows what to keep",
            change: |w| w.routes.get_mut(&1).unwrap().plugin = 3,
            kind: "full",
            rebuilt: full(3, 1),
            router_shared: false,
            routes_shared: false,
        },
        Case {
            what: "fixed again: built whole, since the live runtime had a failure",
            change: |w| w.routes.get_mut(&1).unwrap().plugin = 1,
            kind: "full",
            rebuilt: full(3, 2),
            router_shared: false,
            routes_shared: false,
        },
        Case {
            what: "endpoint churn afterwards: in place again",
            change: |w| w.upstreams.get_mut(&2).unwrap().first = 30,
            kind: "delta",
            rebuilt: parts(0, 0, 1, 0, 0),
            router_shared: true,
            routes_shared: true,
        },
        Case {
            what: "an upstream that cannot be built: whole",
            change: |w| w.upstreams.get_mut(&1).unwrap().bad = true,
            kind: "full",
            rebuilt: full(3, 2),
            router_shared: false,
            routes_shared: false,
        },
    ];

    let (incremental, whole) = (state(), state());
    let first = world.snapshot(1);
    assert!(incremental.apply(first.clone()).is_empty());
    whole.apply_full(first);
    for (n, case) in cases.iter().enumerate() {
        let before = incremental.load().unwrap();
        let (counts, deltas) = (rebuilt(&incremental), applies(&incremental, "delta"));
        (case.change)(&mut world);
        let next = world.snapshot(n as u64 + 2);
        incremental.apply(next.clone());
        whole.apply_full(next);
        let after = incremental.load().unwrap();
        let what = case.what;
        assert_eq!(
            view(&after),
            view(&whole.load().unwrap()),
            "{what}: in place = whole"
        );
        let delta = applies(&incremental, "delta") > deltas;
        assert_eq!(if delta { "delta" } else { "full" }, case.kind, "{what}");
        assert_eq!(minus(rebuilt(&incremental), counts), case.rebuilt, "{what}");
        assert_eq!(
            Arc::ptr_eq(&before.router, &after.router),
            case.router_shared,
            "{what}: router"
        );
        assert_eq!(
            Arc::ptr_eq(&before.routes, &after.routes),
            case.routes_shared,
            "{what}: route runtimes"
        );
    }
}

#[test]
fn a_plugin_bound_to_a_service_is_built_again_when_its_endpoints_change_and_only_then() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let _guard = tokio.enter();
    let mut bound = spec(0, 0, 1, false);
    bound.service = true;
    let mut world = World {
        routes: [(0, bound)].into(),
        upstreams: [(0, up(0, 1)), (1, up(10, 1))].into(),
        cert: 0,
        secret: 0,
    };
    let (state, mut version) = (state(), 1);
    let mut apply = |world: &World| {
        state.apply(world.snapshot(version));
        version += 1;
        let rt = state.load().unwrap();
        let plugin = rt.routes[0].chain.links()[0].plugin.clone();
        plugin
    };
    let first = apply(&world);
    world.upstreams.get_mut(&0).unwrap().first = 5;
    let after_other = apply(&world);
    assert!(
        Arc::ptr_eq(&first, &after_other),
        "an endpoint change of a Service the plugin does not bind keeps the instance"
    );
    world.upstreams.get_mut(&1).unwrap().first = 20;
    let after_bound = apply(&world);
    assert!(
        !Arc::ptr_eq(&first, &after_bound),
        "the plugin took s1's endpoints when it was built: a new instance takes the new ones"
    );
}

#[test]
fn endpoint_churn_swaps_the_pool_in_place_for_the_runtime_already_loaded() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let _guard = tokio.enter();
    let mut world = World {
        routes: [(0, spec(0, 0, 0, false))].into(),
        upstreams: [(0, up(0, 1))].into(),
        cert: 0,
        secret: 0,
    };
    let state = state();
    state.apply(world.snapshot(1));
    let loaded = state.load().unwrap();
    world.upstreams.get_mut(&0).unwrap().first = 5;
    state.apply(world.snapshot(2));
    let nodes = |rt: &Runtime| -> Vec<String> {
        rt.upstreams[&key("s0")]
            .load()
            .nodes
            .iter()
            .map(|n| n.authority.to_string())
            .collect()
    };
    assert_eq!(nodes(&state.load().unwrap()), ["127.0.0.1:9005"]);
    assert_eq!(
        nodes(&loaded),
        ["127.0.0.1:9005"],
        "a request routed by the runtime before the change sends to the new endpoints"
    );
}

fn route_spec() -> impl Strategy<Value = RouteSpec> {
    (
        0..4usize,
        0..3usize,
        0..3i32,
        0..3u8,
        0..4u8,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(host, path, priority, upstream, plugin, secret, service)| RouteSpec {
                host,
                path,
                priority,
                upstream,
                plugin,
                secret,
                service,
            },
        )
}

fn upstream_spec() -> impl Strategy<Value = UpstreamSpec> {
    (0..3u16, 0..3u16, prop::bool::weighted(0.1)).prop_map(|(first, count, bad)| UpstreamSpec {
        first,
        count,
        bad,
    })
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::btree_map(0..6u8, route_spec(), 0..6),
        prop::collection::btree_map(0..3u8, upstream_spec(), 0..3),
        prop::sample::select(vec![0u8, 1, 1, 2, 2, 3]),
        0..2u8,
    )
        .prop_map(|(routes, upstreams, cert, secret)| World {
            routes,
            upstreams,
            cert,
            secret,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of snapshots, applied in place where possible, serves what building each
    /// whole serves, with the same content hash and the same objects left out.
    #[test]
    fn applying_in_place_equals_building_whole(worlds in prop::collection::vec(world(), 1..7)) {
        let tokio = tokio::runtime::Runtime::new().unwrap();
        let _guard = tokio.enter();
        let (incremental, whole) = (state(), state());
        for (n, w) in worlds.iter().enumerate() {
            let next = w.snapshot(n as u64 + 1);
            let failed = incremental.apply(next.clone());
            prop_assert_eq!(&failed, &whole.apply_full(next));
            prop_assert_eq!(view(&incremental.load().unwrap()), view(&whole.load().unwrap()), "step {}", n);
        }
    }
}
