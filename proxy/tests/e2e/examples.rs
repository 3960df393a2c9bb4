//! The shipped example folders compile to what their READMEs promise: `examples/quickstart`
//! clean, `examples/multi-tenant` with the platform's locked plugins on every tenant Route, each
//! tenant's own plugins only on its Routes, and the `PluginLocked` warning on the Route that
//! tries to disable the locked rate limit.

use std::path::{Path, PathBuf};

use hookway_crds::compiler::{Compiled, Kind, ObjectId};
use hookway_crds::snapshot::{ObjectKey, Tier};
use hookway_proxy::plugins::builtin;
use hookway_proxy::standalone::{check, compile_dir, OutputFormat, StandaloneOptions};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn compile(name: &str) -> Compiled {
    let (compiled, loaded) = compile_dir(
        &example(name),
        &StandaloneOptions::default(),
        builtin().catalogue(),
    )
    .unwrap_or_else(|err| panic!("examples/{name}: {err}"));
    assert!(
        loaded.notes.is_empty(),
        "skipped documents: {:?}",
        loaded.notes
    );
    compiled
}

/// `(alias, tier)` of a Route's chain, in run order.
fn chain(compiled: &Compiled, namespace: &str, name: &str) -> Vec<(String, Tier)> {
    let route = compiled
        .snapshot
        .routes
        .iter()
        .find(|r| r.key == ObjectKey::new(namespace, name))
        .unwrap_or_else(|| panic!("route {namespace}/{name} not in the snapshot"));
    route
        .chain
        .iter()
        .map(|e| (e.alias.clone(), e.tier))
        .collect()
}

fn warnings(compiled: &Compiled, kind: Kind, namespace: &str, name: &str) -> Vec<String> {
    let id = ObjectId {
        kind,
        key: ObjectKey::new(namespace, name),
    };
    compiled
        .reports
        .get(&id)
        .unwrap_or_else(|| panic!("no report for {id:?}"))
        .warnings
        .clone()
}

fn entries(list: &[(&str, Tier)]) -> Vec<(String, Tier)> {
    list.iter().map(|(a, t)| (a.to_string(), *t)).collect()
}

#[test]
fn quickstart_compiles_clean() {
    let compiled = compile("quickstart");
    let rejected: Vec<_> = compiled.rejected().collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    for (id, report) in &compiled.reports {
        assert!(report.warnings.is_empty(), "{id:?}: {:?}", report.warnings);
    }
    assert_eq!(compiled.snapshot.routes.len(), 2);
}

#[test]
fn multi_tenant_every_object_is_accepted() {
    let compiled = compile("multi-tenant");
    let rejected: Vec<_> = compiled.rejected().collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    // 4 GatewayPlugins, 2 Services, 3 Routes.
    assert_eq!(compiled.reports.len(), 9, "{:?}", compiled.reports.keys());
    assert_eq!(compiled.snapshot.routes.len(), 3);
}

#[test]
fn multi_tenant_chains() {
    let compiled = compile("multi-tenant");
    // team-a's API: the platform's two locked plugins plus its own auth, by ascending order.
    assert_eq!(
        chain(&compiled, "team-a", "api"),
        entries(&[
            ("access-log", Tier::Cluster),
            ("platform-rate-limit", Tier::Cluster),
            ("team-a-auth", Tier::Namespace),
        ])
    );
    // team-a's status Route does not reference auth (status: enable), and its attempt to
    // disable the locked rate limit is ignored.
    assert_eq!(
        chain(&compiled, "team-a", "status"),
        entries(&[
            ("access-log", Tier::Cluster),
            ("platform-rate-limit", Tier::Cluster),
        ])
    );
    // team-b: its namespace-wide global cors runs without a reference; team-a's auth does not.
    assert_eq!(
        chain(&compiled, "team-b", "web-api"),
        entries(&[
            ("access-log", Tier::Cluster),
            ("team-b-cors", Tier::Namespace),
            ("platform-rate-limit", Tier::Cluster),
        ])
    );
    // Requests matching no Route: only the access log (the rate limit is scoped to tenant
    // namespaces by its policy, so it is not global outside them).
    let default: Vec<_> = compiled
        .snapshot
        .default_chain
        .iter()
        .map(|e| e.alias.as_str())
        .collect();
    assert_eq!(default, ["access-log"]);
}

#[test]
fn multi_tenant_disabling_the_locked_rate_limit_is_reported() {
    let compiled = compile("multi-tenant");
    let status = warnings(&compiled, Kind::Route, "team-a", "status");
    assert_eq!(status.len(), 1, "{status:?}");
    assert!(status[0].starts_with("PluginLocked"), "{status:?}");
    assert!(status[0].contains("platform-rate-limit"), "{status:?}");
    for (ns, name) in [("team-a", "api"), ("team-b", "web-api")] {
        let w = warnings(&compiled, Kind::Route, ns, name);
        assert!(w.is_empty(), "{ns}/{name}: {w:?}");
    }
}

#[test]
fn multi_tenant_check_passes_and_prints_the_warning() {
    let mut out = Vec::new();
    let ok = check(
        &example("multi-tenant"),
        &StandaloneOptions::default(),
        builtin().catalogue(),
        OutputFormat::Text,
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "a warning does not fail the check:\n{text}");
    assert!(text.contains("Route team-a/status"), "{text}");
    assert!(text.contains("PluginLocked"), "{text}");
}

#[test]
fn ingress_compiles_clean_with_the_annotations_translated() {
    let compiled = compile("ingress");
    let rejected: Vec<_> = compiled.rejected().collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    for (id, report) in &compiled.reports {
        assert!(report.warnings.is_empty(), "{id:?}: {:?}", report.warnings);
        assert!(
            !id.key.name.contains('#'),
            "a synthetic object is reported: {id:?}"
        );
    }
    let ingresses: Vec<_> = compiled
        .reports
        .keys()
        .filter(|id| id.kind == Kind::Ingress)
        .map(|id| id.key.name.as_str())
        .collect();
    assert_eq!(
        ingresses,
        ["admin", "api", "api-canary", "old-domain", "storefront"]
    );
    let aliases = |name: &str| -> Vec<String> {
        chain(&compiled, "shop", name)
            .into_iter()
            .map(|(alias, _)| alias)
            .collect()
    };
    assert_eq!(
        aliases("storefront#r0p0"),
        [
            "ingress#cors",
            "ingress#limit-rate",
            "ingress#body-size",
            "request-id",
            "served-by"
        ]
    );
    assert_eq!(
        aliases("api#r0p0"),
        [
            "ingress#allowlist",
            "ingress#canary",
            "request-id",
            "ingress#rewrite"
        ]
    );
    assert_eq!(aliases("old-domain#r0p0"), ["ingress#redirect"]);
    assert_eq!(aliases("admin#r0p0"), ["ingress#basic-auth"]);
}

#[test]
fn gateway_api_compiles_clean_with_the_extension_ref_in_the_chain() {
    let compiled = compile("gateway-api");
    let rejected: Vec<_> = compiled.rejected().collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    for (id, report) in &compiled.reports {
        assert!(report.warnings.is_empty(), "{id:?}: {:?}", report.warnings);
    }
    // store: 3 rules; beta: 2 matches + 1 rule without matches → 6 lowered Routes; the
    // GRPCRoute inventory: 2 + 4 matches → 6 more.
    assert_eq!(compiled.snapshot.routes.len(), 12);
    assert_eq!(
        chain(&compiled, "shop", "store#r00.m00@infra.public"),
        entries(&[
            ("request-id", Tier::Namespace),
            ("api-limit", Tier::Namespace),
            ("store#r00.m00.f00", Tier::Route),
        ])
    );
    let canary = compiled
        .snapshot
        .upstream(&ObjectKey::new("shop", "store#r00"))
        .unwrap();
    let weights: Vec<(u16, u32)> = canary
        .endpoints
        .iter()
        .map(|e| (e.port, e.weight))
        .collect();
    assert_eq!(weights, vec![(8081, 90), (8082, 10)]);
    // The GRPCRoute: exact methods, the rate limit on reads, HTTP/2 to the backend.
    assert_eq!(
        chain(&compiled, "shop", "inventory#grpc.r00.m00@infra.public"),
        entries(&[
            ("request-id", Tier::Namespace),
            ("api-limit", Tier::Namespace),
            ("inventory#grpc.r00.m00.f00", Tier::Route),
        ])
    );
    let inventory = compiled
        .snapshot
        .upstream(&ObjectKey::new("shop", "inventory#grpc.r00"))
        .unwrap();
    assert_eq!(
        inventory.protocol,
        hookway_crds::snapshot::UpstreamProtocol::Http2
    );
}

#[test]
fn gateway_api_check_json_reports_the_source_objects() {
    let mut out = Vec::new();
    let ok = check(
        &example("gateway-api"),
        &StandaloneOptions::default(),
        builtin().catalogue(),
        OutputFormat::Json,
        &mut out,
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(ok, "{json:#}");
    let objects: Vec<(String, String)> = json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_string(),
                o["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (kind, name) in [
        ("GatewayClass", "hookway"),
        ("Gateway", "public"),
        ("HTTPRoute", "store"),
        ("HTTPRoute", "beta"),
        ("GRPCRoute", "inventory"),
    ] {
        assert!(
            objects.contains(&(kind.to_string(), name.to_string())),
            "{objects:?}"
        );
    }
    // Synthetic objects never show: every name is a real one.
    assert!(objects.iter().all(|(_, n)| !n.contains('#')), "{objects:?}");
}
