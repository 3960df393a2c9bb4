//! Reusing the previous compile's results when only endpoints changed.
//!
//! Endpoint churn (EndpointSlices, and the core Services they belong to) is by far the most
//! frequent change in a cluster, and it changes nothing but upstreams' endpoints and Services'
//! reports: no Route, chain, certificate, host claim or plugin count reads them
//! (`services::upstream` turns a missing backend into an upstream without endpoints, never a
//! rejected Service). So when every other input is the same as in the previous compile, the
//! compiler rebuilds the Services and takes everything else from the previous output: the
//! same result as a whole compile, without the per-Route work.
//!
//! "The same" is decided by versions, not content: each object's `uid` with its
//! `metadata.generation` for the kinds whose statuses the controller writes (a status write
//! changes `resourceVersion`, not the generation, and the compiler never reads a status), or
//! its `resourceVersion` for the others. An object without them (a test fixture, a manifest
//! file) makes the inputs unversioned: nothing is reused. Gateway API and Ingress objects are
//! lowered with reads of core Services, so with any of them nothing is reused either.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use kube::Resource;

use super::{Kind, ObjectId, ObjectReport, Objects, Options, UrlSource};
use crate::snapshot::Snapshot;

/// What a compile's inputs were, as far as reuse is concerned (`Compiled::inputs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputDigest {
    /// A digest of every input but core Services and EndpointSlices, or `None` when some
    /// object carries no version (nothing is reused then).
    pub routing: Option<u64>,
    /// Whether a Route names a TLS Secret (its certificate check reads `Options::now`).
    pub tls: bool,
    /// `Options::now` of the compile.
    pub now: Option<i64>,
}

/// The previous compile's output, for [`super::compile_reusing`]. It must come from a compile
/// with the same catalogue.
#[derive(Clone, Copy, Debug)]
pub struct Previous<'a> {
    /// Its `Compiled::inputs`.
    pub inputs: InputDigest,
    /// Its snapshot (version and hash are not read).
    pub snapshot: &'a Snapshot,
    /// Its reports.
    pub reports: &'a BTreeMap<ObjectId, ObjectReport>,
    /// Its URL sources.
    pub url_sources: &'a BTreeSet<UrlSource>,
}

impl Previous<'_> {
    /// Whether a compile of inputs `now` may take all but its Services from this one.
    pub(crate) fn reusable(&self, now: &InputDigest) -> bool {
        now.routing.is_some()
            && self.inputs.routing == now.routing
            && (!now.tls || self.inputs.now == now.now)
    }
}

/// Adds one object's identity and version to a kind's multiset digest; `false` when it has
/// none.
fn add<K: Resource>(sum: &mut u64, object: &K, by_generation: bool) -> bool {
    let meta = object.meta();
    let version = if by_generation {
        meta.generation.map(|g| g.to_string())
    } else {
        meta.resource_version.clone()
    };
    let (Some(uid), Some(version)) = (&meta.uid, version) else {
        return false;
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&meta.namespace, &meta.name, uid, version).hash(&mut h);
    // A sum: the same objects in any order give the same digest.
    *sum = sum.wrapping_add(h.finish());
    true
}

fn kind<K: Resource>(
    h: &mut impl Hasher,
    tag: u8,
    objects: &[std::sync::Arc<K>],
    by_generation: bool,
) -> bool {
    let mut sum = 0u64;
    let all = objects
        .iter()
        .all(|o| add(&mut sum, o.as_ref(), by_generation));
    (tag, objects.len(), sum).hash(h);
    all
}

/// The digest of `objects` compiled with `options`.
pub(crate) fn digest(objects: &Objects, options: &Options) -> InputDigest {
    let tls = objects.routes.iter().any(|r| r.spec.tls.is_some());
    let lowered = !(objects.gateway_classes.is_empty()
        && objects.gateways.is_empty()
        && objects.http_routes.is_empty()
        && objects.grpc_routes.is_empty()
        && objects.reference_grants.is_empty()
        && objects.ingresses.is_empty()
        && objects.ingress_classes.is_empty());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    options.root_namespace.hash(&mut h);
    let versioned = !lowered
        && kind(&mut h, 0, &objects.plugins, true)
        && kind(&mut h, 1, &objects.services, true)
        && kind(&mut h, 2, &objects.routes, true)
        && kind(&mut h, 3, &objects.policies, true)
        && kind(&mut h, 4, &objects.secrets, false)
        && kind(&mut h, 5, &objects.namespaces, false)
        && kind(&mut h, 6, &objects.config_maps, false);
    let fetched = &objects.fetched;
    fetched.blobs.keys().for_each(|k| k.hash(&mut h));
    fetched.sources.hash(&mut h);
    for (source, failure) in &fetched.failures {
        (source, format!("{:?}", failure.kind), &failure.message).hash(&mut h);
    }
    InputDigest {
        routing: versioned.then(|| h.finish()),
        tls,
        now: options.now,
    }
}

/// Reports of `previous` of the kinds `which` selects, in key order.
pub(crate) fn reports_of<'a>(
    previous: &Previous<'a>,
    which: impl Fn(Kind) -> bool + 'a,
) -> impl Iterator<Item = (ObjectId, ObjectReport)> + 'a {
    previous
        .reports
        .iter()
        .filter(move |(id, _)| which(id.kind))
        .map(|(id, r)| (id.clone(), r.clone()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Secret, Service as CoreService};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::{json, Value};

    use super::super::{compile, compile_reusing, Compiled};
    use super::*;
    use crate::{Catalogue, GatewayPlugin, Route, Service};

    const NS: &str = "team";

    fn meta(name: &str, version: u64) -> Value {
        json!({"namespace": NS, "name": name, "uid": format!("uid-{name}"),
               "generation": version, "resourceVersion": format!("{version}"),
               "creationTimestamp": "2026-12-01T00:00:00Z"})
    }

    fn core(j: usize, port: i32, version: u64) -> Arc<CoreService> {
        Arc::new(
            serde_json::from_value(json!({"metadata": meta(&format!("b{j}"), version),
                "spec": {"ports": [{"name": "http", "port": port}]}}))
            .unwrap(),
        )
    }

    fn slice(j: usize, seed: u64, ready: bool, version: u64) -> Arc<EndpointSlice> {
        let mut m = meta(&format!("b{j}-1"), version);
        m["labels"] = json!({"kubernetes.io/service-name": format!("b{j}")});
        let endpoints: Vec<Value> = (0..3)
            .map(|k| {
                json!({"addresses": [format!("10.0.{}.{}", seed % 200, k + 1)],
                            "conditions": {"ready": ready || k > 0}})
            })
            .collect();
        Arc::new(
            serde_json::from_value(json!({"metadata": m, "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}], "endpoints": endpoints}))
            .unwrap(),
        )
    }

    fn service(j: usize, version: u64) -> Arc<Service> {
        let plugins = if j == 0 {
            json!({"limit": {"config": {"minute": 5}}})
        } else {
            json!({})
        };
        Arc::new(
            serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
                "metadata": meta(&format!("svc{j}"), version),
                "spec": {"backend": {"name": format!("b{j}"), "port": 80}, "plugins": plugins}}),
            )
            .unwrap(),
        )
    }

    fn route(i: usize, host: &str, version: u64) -> Arc<Route> {
        let mut spec = json!({"hosts": [host], "service": format!("svc{}", i % 3),
                              "rules": [{"path": {"type": "Prefix", "value": format!("/{}", i % 2)}}]});
        if i % 4 == 1 {
            spec["tls"] = json!({"secretName": "missing-tls"});
        }
        if i % 5 == 2 {
            spec["plugins"] = json!({"limit": {"config": {"minute": i}}});
        }
        Arc::new(
            serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
                "metadata": meta(&format!("r{i}"), version), "spec": spec}),
            )
            .unwrap(),
        )
    }

    fn plugin(version: u64) -> Arc<GatewayPlugin> {
        Arc::new(
            serde_json::from_value(
                json!({"apiVersion": "hookway.dev/v1alpha1", "kind": "GatewayPlugin",
                "metadata": meta("limit", version),
                "spec": {"plugin": "rate_limiting", "status": "enable", "order": 1,
                         "config": {"minute": 100}}}),
            )
            .unwrap(),
        )
    }

    fn world() -> Objects {
        Objects {
            plugins: vec![plugin(1)],
            services: (0..3).map(|j| service(j, 1)).collect(),
            // Service svc2's core Service is missing at first (an upstream without endpoints).
            core_services: (0..2).map(|j| core(j, 80, 1)).collect(),
            endpoint_slices: (0..3).map(|j| slice(j, j as u64, true, 1)).collect(),
            routes: (0..8)
                .map(|i| route(i, &format!("h{}.example.com", i % 6), 1))
                .collect(),
            ..Objects::default()
        }
    }

    fn assert_same(reused: &Compiled, whole: &Compiled, step: &str) {
        assert_eq!(reused.snapshot, whole.snapshot, "snapshot after {step}");
        assert_eq!(reused.reports, whole.reports, "reports after {step}");
        assert_eq!(reused.origins, whole.origins, "origins after {step}");
        assert_eq!(
            reused.url_sources, whole.url_sources,
            "URL sources after {step}"
        );
        assert_eq!(reused.inputs, whole.inputs, "inputs after {step}");
    }

    /// One change to the world; `true` when only endpoints changed (reuse expected).
    fn change(objects: &mut Objects, step: u64, pick: u64) -> (&'static str, bool) {
        let v = 100 + step;
        let j = (pick % 3) as usize;
        match pick % 9 {
            0..=2 => {
                if let Some(s) = objects.endpoint_slices.get_mut(j) {
                    *s = slice(j, pick, pick.is_multiple_of(2), v);
                }
                ("an EndpointSlice's endpoints", true)
            }
            3 => {
                let port = if pick.is_multiple_of(2) { 80 } else { 81 };
                objects
                    .core_services
                    .retain(|c| c.metadata.name.as_deref() != Some("b1"));
                objects.core_services.push(core(1, port, v));
                ("a core Service's port", true)
            }
            4 => {
                if objects.endpoint_slices.len() == 3 {
                    objects.endpoint_slices.remove(j);
                } else {
                    objects.endpoint_slices.push(slice(3, pick, true, v));
                }
                ("an EndpointSlice gone or added", true)
            }
            5 => {
                // A status write: new resourceVersion, same generation.
                let i = (pick % 8) as usize;
                let mut r = (*objects.routes[i]).clone();
                r.metadata.resource_version = Some(format!("{v}"));
                objects.routes[i] = Arc::new(r);
                ("a Route's status", true)
            }
            6 => {
                let i = (pick % 8) as usize;
                objects.routes[i] = route(i, &format!("h{}.example.com", pick % 6), v);
                ("a Route's hosts", false)
            }
            7 => {
                objects.services[j] = service(j, v);
                objects.plugins[0] = plugin(v);
                ("a Service and a GatewayPlugin", false)
            }
            _ => {
                let secret: Secret = serde_json::from_value(json!({"metadata": meta("creds", v),
                    "type": "Opaque", "data": {}}))
                .unwrap();
                objects.secrets = vec![Arc::new(secret)];
                ("a Secret", false)
            }
        }
    }

    #[test]
    fn a_compile_reusing_the_last_equals_a_whole_compile_after_any_changes() {
        let catalogue = Catalogue::builtin();
        for now in [None, Some(1_900_000_000)] {
            let options = Options {
                root_namespace: "hookway-system".into(),
                now,
            };
            let mut objects = world();
            let mut last = compile(&objects, &options, &catalogue);
            assert!(last.inputs.routing.is_some(), "versioned objects");
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            let mut reused_steps = 0;
            for step in 0..120 {
                // xorshift: a fixed pseudo-random sequence of changes.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let (what, endpoints_only) = change(&mut objects, step, state >> 8);
                let whole = compile(&objects, &options, &catalogue);
                let previous = Previous {
                    inputs: last.inputs,
                    snapshot: &last.snapshot,
                    reports: &last.reports,
                    url_sources: &last.url_sources,
                };
                let reusable = previous.reusable(&whole.inputs);
                assert_eq!(reusable, endpoints_only, "step {step}: {what}");
                reused_steps += usize::from(reusable);
                let mut reused = compile_reusing(&objects, &options, &catalogue, Some(previous));
                // Left unsealed for the caller (the controller seals reusing digests).
                assert!(reused.snapshot.hash.is_empty(), "step {step}: unsealed");
                reused.snapshot = std::mem::take(&mut reused.snapshot).seal();
                assert_same(&reused, &whole, &format!("step {step}: {what}"));
                last = reused;
            }
            assert!(reused_steps > 40, "{reused_steps} of 120 steps reused");
        }
    }

    #[test]
    fn unversioned_or_lowered_inputs_are_never_reused() {
        let options = Options::default();
        let mut objects = world();
        assert!(digest(&objects, &options).routing.is_some());
        let mut r = (*objects.routes[0]).clone();
        r.metadata.uid = None;
        objects.routes[0] = Arc::new(r);
        assert_eq!(
            digest(&objects, &options).routing,
            None,
            "a Route without uid"
        );
        let mut objects = world();
        objects.ingress_classes = vec![Arc::new(Default::default())];
        assert_eq!(
            digest(&objects, &options).routing,
            None,
            "lowering reads core Services"
        );
        let mut objects = world();
        let base = digest(&objects, &options);
        objects.routes.reverse();
        assert_eq!(digest(&objects, &options), base, "order does not matter");
        let (snapshot, reports, url_sources) =
            (Snapshot::default(), BTreeMap::new(), BTreeSet::new());
        let tls_at = |now| Previous {
            inputs: InputDigest { now, ..base },
            snapshot: &snapshot,
            reports: &reports,
            url_sources: &url_sources,
        };
        let later = InputDigest {
            now: Some(2),
            ..base
        };
        assert!(base.tls, "a Route names a TLS Secret");
        assert!(
            !tls_at(Some(1)).reusable(&later),
            "certificate checks read the clock"
        );
        assert!(tls_at(Some(2)).reusable(&later));
    }
}
