//! The world of the compile benches: 10,000 Routes over 1,000 Services (each on a core Service
//! with an EndpointSlice of 10 endpoints) with 50 GatewayPlugins across 100 namespaces — the
//! size of issue 18's goals (`tests/tests/bench.rs` builds the same counts).

use std::sync::Arc;

use hookway_crds::api::route::PathMatchType;
use k8s_openapi::api::core::v1::Service as CoreService;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::support::*;

/// Core Service `ns/name` with port 80 (`http`).
pub fn core_service(ns: &str, name: &str) -> CoreService {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name, "resourceVersion": "1"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
    .unwrap()
}

/// The EndpointSlice of core Service `ns/name`: 10 ready endpoints on port 8080.
pub fn endpoint_slice(ns: &str, service: &str, seed: usize) -> EndpointSlice {
    let endpoints: Vec<_> = (0..10)
        .map(|e| {
            serde_json::json!({
                "addresses": [format!("10.{}.{}.{e}", seed / 256, seed % 256)],
                "conditions": {"ready": true}
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": format!("{service}-abcde"), "resourceVersion": "1",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": endpoints
    }))
    .unwrap()
}

/// 100 namespaces × (10 Services, each on a core Service with an EndpointSlice of 10 endpoints,
/// 100 Routes); 10 cluster-wide plugins (5 global, one locked,
/// one with a namespace policy) and 40 namespace-wide ones.
pub fn big_world() -> World {
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
            let mut svc = service(&ns, &format!("svc-{s}")).backend(&format!("core-{s}"), 80);
            if s % 2 == 0 {
                svc = svc.uses("cluster-5");
            }
            if s % 5 == 0 {
                svc = svc.plugin("cluster-6", limit(7));
            }
            w = w.service(svc);
            w.0.core_services
                .push(Arc::new(core_service(&ns, &format!("core-{s}"))));
            w.0.endpoint_slices.push(Arc::new(endpoint_slice(
                &ns,
                &format!("core-{s}"),
                n * 10 + s,
            )));
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

/// The world of `tests/tests/bench.rs` (the controller benchmark): one namespace, 1,000
/// Services `svc{j}` on core Services `b{j}` with an EndpointSlice of 10 endpoints each, a
/// Service `web` with a static node, and 10,000 Routes `r{i}` (host `h{i}.example.com`) to
/// `svc{i % 1000}`, every seventh to `web`; no plugins.
pub fn bench_world() -> World {
    let ns = "bench";
    let mut w = World::new().service(service(ns, "web"));
    for j in 0..1000 {
        w = w.service(service(ns, &format!("svc{j}")).backend(&format!("b{j}"), 80));
        w.0.core_services
            .push(Arc::new(core_service(ns, &format!("b{j}"))));
        w.0.endpoint_slices
            .push(Arc::new(endpoint_slice(ns, &format!("b{j}"), j)));
    }
    for i in 0..10_000 {
        let to = if i % 7 == 0 {
            "web".to_string()
        } else {
            format!("svc{}", i % 1000)
        };
        w = w.route(
            route(ns, &format!("r{i}"))
                .host(&format!("h{i}.example.com"))
                .service(&to),
        );
    }
    w
}

/// Gives every object of `world` a `uid`, `generation` and `resourceVersion`, as the API server
/// does: what `compile_reusing` needs to recognise unchanged inputs.
pub fn versioned(mut world: World) -> World {
    fn stamp<K: kube::Resource + Clone>(objects: &mut [Arc<K>]) {
        for (i, o) in objects.iter_mut().enumerate() {
            let meta = Arc::make_mut(o).meta_mut();
            meta.uid = Some(format!(
                "uid-{}-{i}",
                meta.name.as_deref().unwrap_or_default()
            ));
            meta.generation.get_or_insert(1);
            meta.resource_version = Some("1".into());
        }
    }
    let o = &mut world.0;
    stamp(&mut o.plugins);
    stamp(&mut o.services);
    stamp(&mut o.routes);
    stamp(&mut o.core_services);
    stamp(&mut o.endpoint_slices);
    stamp(&mut o.namespaces);
    stamp(&mut o.secrets);
    stamp(&mut o.policies);
    stamp(&mut o.config_maps);
    world
}
