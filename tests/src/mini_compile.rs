//! A small stand-in for `hookway_crds::compiler::compile` (whose body lands separately): enough
//! rules to drive the controller end to end. A Route is served when its Service exists and every
//! plugin alias it names exists as a GatewayPlugin in its namespace or the root namespace;
//! otherwise `ResolvedRefs=False` (`ServiceNotFound` / `PluginNotFound`). Services with static
//! `nodes` become upstreams.

use std::collections::{BTreeMap, BTreeSet};

use hookway_crds::compiler::{
    Compiled, ConditionResult, Kind, ObjectId, ObjectReport, Objects, Options,
};
use hookway_crds::snapshot::{
    Balance, Endpoint, ObjectKey, RouteEntry, Scheme, Snapshot, UpstreamEntry,
};
use kube::ResourceExt;

fn report(generation: Option<i64>, resolved: ConditionResult) -> ObjectReport {
    ObjectReport {
        generation: generation.unwrap_or(1),
        accepted: ConditionResult::ok("Accepted", "valid"),
        resolved_refs: resolved,
        warnings: vec![],
        chain: vec![],
        routes: 0,
        endpoints: 0,
    }
}

/// Compiles `objects` with the stand-in rules.
pub fn compile(objects: &Objects, options: &Options) -> Compiled {
    let mut reports = BTreeMap::new();
    let mut snapshot = Snapshot::default();
    let plugins: BTreeSet<(String, String)> = objects
        .plugins
        .iter()
        .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
        .collect();
    for p in &objects.plugins {
        let key = ObjectKey::new(p.namespace().unwrap_or_default(), p.name_any());
        reports.insert(
            ObjectId {
                kind: Kind::GatewayPlugin,
                key,
            },
            report(
                p.metadata.generation,
                ConditionResult::ok("ResolvedRefs", ""),
            ),
        );
    }
    let mut services = BTreeSet::new();
    for s in &objects.services {
        let key = ObjectKey::new(s.namespace().unwrap_or_default(), s.name_any());
        services.insert(key.clone());
        let endpoints: Vec<Endpoint> = s
            .spec
            .nodes
            .iter()
            .flatten()
            .map(|n| Endpoint {
                address: n.address.clone(),
                port: u16::try_from(n.port).unwrap_or(80),
                weight: n.weight,
            })
            .collect();
        let mut r = report(
            s.metadata.generation,
            ConditionResult::ok("ResolvedRefs", ""),
        );
        r.endpoints = endpoints.len() as u32;
        reports.insert(
            ObjectId {
                kind: Kind::Service,
                key: key.clone(),
            },
            r,
        );
        snapshot.upstreams.push(UpstreamEntry {
            key,
            scheme: Scheme::Http,
            balance: Balance::RoundRobin,
            hash_header: None,
            endpoints,
            connect_timeout_ms: 1000,
            request_timeout_ms: 5000,
            retries: 0,
            retry_on_status: vec![],
            tls_server_name: None,
            tls_insecure_skip_verify: false,
        });
    }
    for route in &objects.routes {
        let ns = route.namespace().unwrap_or_default();
        let key = ObjectKey::new(ns.clone(), route.name_any());
        let upstream = ObjectKey::new(ns.clone(), route.spec.service.clone());
        let missing_plugin = route.spec.plugins.keys().find(|alias| {
            !plugins.contains(&(ns.clone(), (*alias).clone()))
                && !plugins.contains(&(options.root_namespace.clone(), (*alias).clone()))
        });
        let resolved = if !services.contains(&upstream) {
            ConditionResult::fail("ServiceNotFound", format!("service {upstream} not found"))
        } else if let Some(alias) = missing_plugin {
            ConditionResult::fail("PluginNotFound", format!("plugin {alias} not found"))
        } else {
            ConditionResult::ok("ResolvedRefs", "all references resolved")
        };
        let served = resolved.status;
        reports.insert(
            ObjectId {
                kind: Kind::Route,
                key: key.clone(),
            },
            report(route.metadata.generation, resolved),
        );
        if served {
            snapshot.routes.push(RouteEntry {
                key,
                hosts: route.spec.hosts.clone(),
                rules: vec![],
                priority: route.spec.priority,
                created: 0,
                upstream,
                chain: vec![],
            });
        }
    }
    snapshot.routes.sort_by(|a, b| a.key.cmp(&b.key));
    snapshot.upstreams.sort_by(|a, b| a.key.cmp(&b.key));
    Compiled {
        snapshot: snapshot.seal(),
        reports,
    }
}
