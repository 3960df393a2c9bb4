//! Applying a snapshot object by object: a certificate, plugin instance, upstream or route
//! matcher that fails leaves out only the Routes that depend on it (their previous version
//! keeps serving), every other change applies, and the failures are listed.

use std::sync::Arc;

use hookway_crds::applied::{FailedKind, FailedObject};
use hookway_crds::catalogue::PluginConfig;
use hookway_crds::snapshot::{
    shared, Balance, CertificateEntry, ChainEntry, ObjectKey, PathMatchType, RouteEntry, RuleEntry,
    Scheme, Snapshot, Tier, UpstreamEntry,
};
use serde::Deserialize;
use serde_json::json;

use super::{Runtime, RuntimeState};
use crate::chain::ChainBuilder;
use crate::metrics::Metrics;
use crate::plugin::{BuildEnv, Plugin, PluginFactory, Registry};

/// A plugin whose instance fails to build when `fail` is set (the proxy-side failure the
/// compiler cannot see).
struct Fragile;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FragileConfig {
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    #[allow(dead_code)]
    tag: u32,
}

impl PluginConfig for FragileConfig {}

struct FragilePlugin;
impl Plugin for FragilePlugin {}

impl PluginFactory for Fragile {
    const NAME: &'static str = "fragile";
    type Config = FragileConfig;
    fn build(config: FragileConfig, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        if config.fail {
            return Err("cannot build on this proxy".into());
        }
        Ok(Arc::new(FragilePlugin))
    }
}

pub(super) fn state() -> RuntimeState {
    let mut registry = Registry::new();
    registry.register::<Fragile>();
    RuntimeState::new(ChainBuilder::new(registry), Metrics::new().unwrap())
}

pub(super) fn key(name: &str) -> ObjectKey {
    ObjectKey::new("team", name)
}

/// Route `name` on `name.example.com`, to upstream `svc`, with `priority` telling versions
/// apart.
pub(super) fn route(name: &str, priority: i32) -> RouteEntry {
    RouteEntry {
        key: key(name),
        hosts: vec![format!("{name}.example.com")],
        rules: vec![RuleEntry {
            path_type: PathMatchType::Prefix,
            path: "/".into(),
            methods: vec![],
            headers: vec![],
            query: vec![],
            tls: None,
            isolation: None,
        }],
        priority,
        created: 0,
        upstream: key("svc"),
        chain: vec![],
    }
}

pub(super) fn with_plugin(mut route: RouteEntry, config: serde_json::Value) -> RouteEntry {
    route.chain.push(ChainEntry {
        alias: "fragile".into(),
        plugin_ref: key("fragile"),
        plugin: "fragile".into(),
        tier: Tier::Namespace,
        order: 1,
        config,
        exclude_paths: vec![],
        secrets: Default::default(),
        services: Default::default(),
    });
    route
}

pub(super) fn upstream(name: &str) -> UpstreamEntry {
    UpstreamEntry {
        key: key(name),
        scheme: Scheme::Http,
        protocol: Default::default(),
        balance: Balance::RoundRobin,
        hash_header: None,
        endpoints: vec![],
        connect_timeout_ms: 1000,
        request_timeout_ms: 1000,
        retries: 0,
        retry_on_status: vec![],
        tls_server_name: None,
        tls_insecure_skip_verify: false,
    }
}

/// A certificate for `host`; with `matching: false` its key belongs to another certificate.
pub(super) fn certificate(secret: &str, host: &str, matching: bool) -> CertificateEntry {
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let key_pem = if matching {
        cert.signing_key.serialize_pem()
    } else {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    };
    CertificateEntry {
        key: key(secret),
        cert_pem: cert.cert.pem(),
        key_pem,
        hosts: vec![host.into()],
    }
}

pub(super) fn snapshot(
    version: u64,
    routes: Vec<RouteEntry>,
    upstreams: Vec<UpstreamEntry>,
    certificates: Vec<CertificateEntry>,
) -> Arc<Snapshot> {
    let mut s = Snapshot {
        routes: shared(routes),
        upstreams: shared(upstreams),
        certificates: shared(certificates),
        ..Snapshot::default()
    }
    .seal();
    s.version = version;
    Arc::new(s)
}

/// The priority of the served version of each route, `None` when not served.
fn served(rt: &Runtime, names: &[&str]) -> Vec<Option<i32>> {
    names
        .iter()
        .map(|n| rt.route(&key(n)).map(|(e, _)| e.priority))
        .collect()
}

fn failed(kinds: &[(FailedKind, &str, bool)]) -> Vec<(FailedKind, ObjectKey, bool)> {
    kinds.iter().map(|(k, n, p)| (*k, key(n), *p)).collect()
}

fn failures(list: &[FailedObject]) -> Vec<(FailedKind, ObjectKey, bool)> {
    list.iter()
        .map(|f| (f.kind, f.key.clone(), f.previous))
        .collect()
}

/// The router finds `host` on the live runtime.
pub(super) fn routes_host(rt: &Runtime, host: &str) -> Option<String> {
    let headers = http::HeaderMap::new();
    let idx = rt.router.find(&crate::router::RequestView {
        host: Some(host),
        method: &http::Method::GET,
        path: "/",
        query: None,
        headers: &headers,
        tls: false,
    })?;
    Some(rt.routes[idx].key.name.clone())
}

#[test]
fn a_certificate_that_fails_leaves_out_only_the_routes_on_its_hosts() {
    let state = state();
    let good = certificate("b-tls", "b.example.com", true);
    let v1 = snapshot(
        1,
        vec![route("a", 1), route("b", 1)],
        vec![upstream("svc")],
        vec![good],
    );
    assert!(state.apply(v1).is_empty());
    let old_cert = state
        .load()
        .unwrap()
        .certs
        .resolve("b.example.com")
        .unwrap();

    // v2: a changes, b changes and its Secret now holds a key that does not match.
    let v2 = snapshot(
        2,
        vec![route("a", 2), route("b", 2), route("c", 2)],
        vec![upstream("svc")],
        vec![certificate("b-tls", "b.example.com", false)],
    );
    let left_out = state.apply(v2);
    assert_eq!(
        failures(&left_out),
        failed(&[
            (FailedKind::Route, "b", true),
            (FailedKind::Secret, "b-tls", false)
        ])
    );
    let reason = &left_out[0].reason;
    assert!(
        reason.contains("certificate team/b-tls") && reason.contains("does not match"),
        "{reason}"
    );
    let rt = state.load().unwrap();
    assert_eq!(
        served(&rt, &["a", "b", "c"]),
        [Some(2), Some(1), Some(2)],
        "a and c apply, b keeps its previous version"
    );
    let kept = rt
        .certs
        .resolve("b.example.com")
        .expect("b keeps a certificate");
    assert!(
        Arc::ptr_eq(&kept, &old_cert),
        "the previous certificate still serves b"
    );
    assert_eq!(routes_host(&rt, "b.example.com").as_deref(), Some("b"));

    // v3: the Secret is fixed: everything applies.
    let v3 = snapshot(
        3,
        vec![route("a", 3), route("b", 3), route("c", 3)],
        vec![upstream("svc")],
        vec![certificate("b-tls", "b.example.com", true)],
    );
    assert!(state.apply(v3).is_empty());
    let rt = state.load().unwrap();
    assert_eq!(served(&rt, &["a", "b", "c"]), [Some(3), Some(3), Some(3)]);
    assert!(!Arc::ptr_eq(
        &rt.certs.resolve("b.example.com").unwrap(),
        &old_cert
    ));
}

#[test]
fn a_plugin_instance_that_fails_leaves_out_only_the_routes_using_it() {
    let state = state();
    let v1 = snapshot(
        1,
        vec![
            with_plugin(route("a", 1), json!({"tag": 1})),
            with_plugin(route("b", 1), json!({"tag": 2})),
        ],
        vec![upstream("svc")],
        vec![],
    );
    assert!(state.apply(v1).is_empty());
    let b_instance = state
        .load()
        .unwrap()
        .route(&key("b"))
        .unwrap()
        .1
        .chain
        .links()[0]
        .plugin
        .clone();

    let v2 = snapshot(
        2,
        vec![
            with_plugin(route("a", 2), json!({"tag": 1})),
            with_plugin(route("b", 2), json!({"fail": true})),
            with_plugin(route("new", 2), json!({"fail": true})),
        ],
        vec![upstream("svc")],
        vec![],
    );
    let left_out = state.apply(v2);
    assert_eq!(
        failures(&left_out),
        failed(&[
            (FailedKind::Route, "b", true),
            (FailedKind::Route, "new", false),
            (FailedKind::GatewayPlugin, "fragile", false),
        ])
    );
    assert!(
        left_out[0].reason.contains("cannot build on this proxy"),
        "{:?}",
        left_out[0]
    );
    let rt = state.load().unwrap();
    assert_eq!(served(&rt, &["a", "b", "new"]), [Some(2), Some(1), None]);
    let (_, b) = rt.route(&key("b")).unwrap();
    assert!(
        Arc::ptr_eq(&b.chain.links()[0].plugin, &b_instance),
        "b runs its previous instance"
    );
    assert_eq!(routes_host(&rt, "new.example.com"), None);

    // The same content again: same failures (a reconnect re-acks them).
    let v3 = snapshot(
        3,
        vec![
            with_plugin(route("a", 3), json!({"tag": 1})),
            with_plugin(route("b", 2), json!({"fail": true})),
        ],
        vec![upstream("svc")],
        vec![],
    );
    let left_out = state.apply(v3);
    assert_eq!(
        failures(&left_out),
        failed(&[
            (FailedKind::Route, "b", true),
            (FailedKind::GatewayPlugin, "fragile", false),
        ]),
        "b still falls back to version 1 after another snapshot"
    );
    assert_eq!(
        served(&state.load().unwrap(), &["a", "b"]),
        [Some(3), Some(1)]
    );
}

#[test]
fn a_plugin_config_that_fails_is_charged_to_the_object_it_came_from() {
    let cases = [
        (Tier::Route, FailedKind::Route, "a"),
        (Tier::Service, FailedKind::Service, "svc"),
        (Tier::Namespace, FailedKind::GatewayPlugin, "fragile"),
        (Tier::Cluster, FailedKind::GatewayPlugin, "fragile"),
    ];
    for (tier, kind, owner) in cases {
        let state = state();
        let mut a = with_plugin(route("a", 1), json!({"fail": true}));
        a.chain[0].tier = tier;
        let left_out = state.apply(snapshot(1, vec![a], vec![upstream("svc")], vec![]));
        let mut want = vec![(FailedKind::Route, key("a"), false)];
        if kind != FailedKind::Route {
            want.push((kind, key(owner), false));
        }
        want.sort();
        assert_eq!(failures(&left_out), want, "{tier:?}");
    }
}

#[test]
fn an_upstream_that_fails_leaves_out_only_its_routes() {
    let state = state();
    let mut a = route("a", 1);
    a.upstream = key("other");
    let v1 = snapshot(
        1,
        vec![a.clone(), route("b", 1)],
        vec![upstream("other"), upstream("svc")],
        vec![],
    );
    assert!(state.apply(v1).is_empty());
    let old_pool = state.load().unwrap().upstreams[&key("svc")].clone();

    let mut broken = upstream("svc");
    broken.hash_header = Some("not a header".into());
    a.priority = 2;
    let v2 = snapshot(
        2,
        vec![a, route("b", 2)],
        vec![upstream("other"), broken],
        vec![],
    );
    let left_out = state.apply(v2);
    assert_eq!(
        failures(&left_out),
        failed(&[
            (FailedKind::Route, "b", true),
            (FailedKind::Service, "svc", false)
        ])
    );
    assert!(
        left_out[1].reason.contains("hash header"),
        "{:?}",
        left_out[1]
    );
    let rt = state.load().unwrap();
    assert_eq!(served(&rt, &["a", "b"]), [Some(2), Some(1)]);
    assert!(
        Arc::ptr_eq(&rt.upstreams[&key("svc")], &old_pool),
        "b's previous version keeps the previous upstream"
    );
}

#[test]
fn a_route_the_router_refuses_is_left_out_alone() {
    let state = state();
    assert!(state
        .apply(snapshot(
            1,
            vec![route("a", 1), route("b", 1)],
            vec![upstream("svc")],
            vec![]
        ))
        .is_empty());
    let mut b = route("b", 2);
    b.rules[0].path_type = PathMatchType::Regex;
    b.rules[0].path = "/(unclosed".into();
    let left_out = state.apply(snapshot(
        2,
        vec![route("a", 2), b],
        vec![upstream("svc")],
        vec![],
    ));
    assert_eq!(
        failures(&left_out),
        failed(&[(FailedKind::Route, "b", true)])
    );
    assert!(left_out[0].reason.contains("regex"), "{:?}", left_out[0]);
    let rt = state.load().unwrap();
    assert_eq!(served(&rt, &["a", "b"]), [Some(2), Some(1)]);
    assert_eq!(routes_host(&rt, "b.example.com").as_deref(), Some("b"));
}

#[test]
fn a_failed_default_chain_keeps_the_previous_one() {
    let state = state();
    let v1 = Snapshot {
        default_chain: with_plugin(route("x", 0), json!({"tag": 1})).chain,
        ..Snapshot::default()
    };
    assert!(state.apply(Arc::new(v1.seal())).is_empty());
    let v2 = Snapshot {
        routes: shared(vec![route("a", 1)]),
        upstreams: shared(vec![upstream("svc")]),
        default_chain: with_plugin(route("x", 0), json!({"fail": true})).chain,
        ..Snapshot::default()
    };
    let left_out = state.apply(Arc::new(v2.seal()));
    assert_eq!(
        failures(&left_out),
        failed(&[(FailedKind::GatewayPlugin, "fragile", false)])
    );
    let rt = state.load().unwrap();
    assert_eq!(
        rt.default_chain.links().len(),
        1,
        "previous default chain kept"
    );
    assert_eq!(served(&rt, &["a"]), [Some(1)]);
}
