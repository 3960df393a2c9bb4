//! Table-driven tests pinning the compiler rules (DESIGN.md §2, §3).

use crate::support::*;
use hookway_crds::api::route::{PathMatchType, ValueMatchType};
use hookway_crds::snapshot::Tier;
use hookway_crds::PluginStatus;
use serde_json::json;

fn reasons(r: &hookway_crds::compiler::ObjectReport) -> (String, String) {
    (
        r.accepted.reason.to_string(),
        r.resolved_refs.reason.to_string(),
    )
}

// ---- the two Apinto worked examples -----------------------------------------------------------

#[test]
fn apinto_global_extra_params_runs_on_a_route_that_does_not_mention_it() {
    let out = World::new()
        .plugin(plugin(ROOT, "my-extra-params", "extra_params").global(params("a", "1")))
        .service(service("demo", "s"))
        .route(route("demo", "r").host("demo.example.com"))
        .compile();
    assert_eq!(out.chain("demo", "r"), ["my-extra-params@cluster"]);
    assert_eq!(out.config("demo", "r", "my-extra-params"), params("a", "1"));
    assert_eq!(out.plugin_report(ROOT, "my-extra-params").routes, 1);
    assert_eq!(
        out.0.snapshot.default_chain.len(),
        1,
        "cluster globals run on unmatched requests"
    );
    let status = &out.route_report("demo", "r").chain;
    assert_eq!(status[0].tier, "cluster");
    assert_eq!(status[0].namespace, ROOT);
    assert_eq!(status[0].plugin, "extra_params");
}

#[test]
fn apinto_enable_access_log_runs_only_where_a_service_references_it() {
    let out = World::new()
        .plugin(plugin(ROOT, "access-log", "access_log").config(log("stdout")))
        .service(service("demo", "logged").uses("access-log"))
        .service(service("demo", "quiet"))
        .route(
            route("demo", "a")
                .service("logged")
                .path(PathMatchType::Prefix, "/a"),
        )
        .route(
            route("demo", "b")
                .service("quiet")
                .path(PathMatchType::Prefix, "/b"),
        )
        .compile();
    assert_eq!(out.chain("demo", "a"), ["access-log@cluster"]);
    assert!(out.chain("demo", "b").is_empty());
    assert_eq!(out.plugin_report(ROOT, "access-log").routes, 1);
    assert!(
        out.0.snapshot.default_chain.is_empty(),
        "enable plugins never run by default"
    );
}

// ---- precedence and conflicts -------------------------------------------------------------------

#[test]
fn route_config_beats_service_config_beats_plugin_config() {
    let out = World::new()
        .plugin(plugin(ROOT, "rl", "limit").global(limit(100)))
        .service(service("a", "s").plugin("rl", limit(50)))
        .service(service("a", "s2"))
        .route(
            route("a", "route-level")
                .plugin("rl", limit(5))
                .path(PathMatchType::Prefix, "/1"),
        )
        .route(route("a", "service-level").path(PathMatchType::Prefix, "/2"))
        .route(
            route("a", "cluster-level")
                .service("s2")
                .path(PathMatchType::Prefix, "/3"),
        )
        .compile();
    let cases = [
        ("route-level", limit(5), Tier::Route),
        ("service-level", limit(50), Tier::Service),
        ("cluster-level", limit(100), Tier::Cluster),
    ];
    for (name, config, tier) in cases {
        let entry = &out.served("a", name).unwrap().chain[0];
        assert_eq!(entry.config, config, "{name}");
        assert_eq!(entry.tier, tier, "{name}");
    }
}

#[test]
fn config_replaces_rather_than_merges() {
    let out =
        World::new()
            .plugin(plugin(ROOT, "p", "extra_params").global(
                json!({"params": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}),
            ))
            .service(service("a", "s"))
            .route(route("a", "r").plugin("p", params("c", "3")))
            .compile();
    assert_eq!(out.config("a", "r", "p"), params("c", "3"));
}

#[test]
fn namespace_plugin_shadows_unlocked_cluster_plugin() {
    let out = World::new()
        .plugin(plugin(ROOT, "rl", "limit").global(limit(100)))
        .plugin(plugin("a", "rl", "limit").global(limit(7)))
        .service(service("a", "s"))
        .service(service("b", "s"))
        .route(route("a", "r"))
        .route(route("b", "r"))
        .compile();
    assert_eq!(out.chain("a", "r"), ["rl@namespace"]);
    assert_eq!(out.config("a", "r", "rl"), limit(7));
    assert_eq!(
        out.served("a", "r").unwrap().chain[0].plugin_ref.namespace,
        "a"
    );
    assert_eq!(out.chain("b", "r"), ["rl@cluster"]);
    assert!(out.route_report("a", "r").warnings.is_empty());
}

#[test]
fn locked_plugin_wins_over_namespace_shadow_and_route_override() {
    let out = World::new()
        .plugin(plugin(ROOT, "rl", "limit").global(limit(100)).locked())
        .plugin(plugin("a", "rl", "limit").global(limit(7)))
        .service(service("a", "s").disable("rl"))
        .route(
            route("a", "r")
                .plugin("rl", limit(1_000))
                .path(PathMatchType::Prefix, "/1"),
        )
        .route(
            route("a", "off")
                .disable("rl")
                .path(PathMatchType::Prefix, "/2"),
        )
        .compile();
    for name in ["r", "off"] {
        assert_eq!(out.chain("a", name), ["rl@cluster"], "{name}");
        assert_eq!(out.config("a", name, "rl"), limit(100), "{name}");
        let report = out.route_report("a", name);
        assert!(report.is_ok(), "{report:?}");
        assert!(
            report.warnings.iter().any(|w| w.starts_with("PluginLocked")
                && w.contains("shadowing cluster-wide locked plugin ignored")),
            "{name}: {:?}",
            report.warnings
        );
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.starts_with("PluginLocked") && w.contains("is locked")),
            "{name}: {:?}",
            report.warnings
        );
    }
    let shadow = out.plugin_report("a", "rl");
    assert!(
        shadow
            .warnings
            .iter()
            .any(|w| w.contains("shadowing cluster-wide locked plugin ignored")),
        "{shadow:?}"
    );
    let svc = out.service_report("a", "s");
    assert!(
        svc.warnings.iter().any(|w| w.starts_with("PluginLocked")),
        "{svc:?}"
    );
    assert_eq!(out.plugin_report(ROOT, "rl").routes, 2);
    assert_eq!(out.plugin_report("a", "rl").routes, 0);
}

#[test]
fn disabled_but_referenced_plugin_never_runs_and_warns() {
    let out = World::new()
        .plugin(
            plugin(ROOT, "rl", "limit")
                .config(limit(1))
                .status(PluginStatus::Disable),
        )
        .service(service("a", "s").uses("rl"))
        .route(route("a", "r").uses("rl"))
        .compile();
    assert!(out.chain("a", "r").is_empty());
    let r = out.route_report("a", "r");
    assert!(r.is_ok());
    assert!(
        r.warnings.iter().any(|w| w.starts_with("PluginDisabled")),
        "{r:?}"
    );
    let s = out.service_report("a", "s");
    assert!(
        s.warnings.iter().any(|w| w.starts_with("PluginDisabled")),
        "{s:?}"
    );
}

#[test]
fn route_ref_disable_turns_off_a_global_and_route_beats_service_on_disable() {
    let out = World::new()
        .plugin(plugin(ROOT, "p", "extra_params").global(params("a", "1")))
        .service(service("a", "s").disable("p"))
        .service(service("a", "s2"))
        .route(route("a", "svc-off").path(PathMatchType::Prefix, "/1"))
        .route(
            route("a", "route-on")
                .uses("p")
                .path(PathMatchType::Prefix, "/2"),
        )
        .route(
            route("a", "route-off")
                .service("s2")
                .disable("p")
                .path(PathMatchType::Prefix, "/3"),
        )
        .compile();
    assert!(out.chain("a", "svc-off").is_empty());
    assert_eq!(out.chain("a", "route-on"), ["p@cluster"]);
    assert!(out.chain("a", "route-off").is_empty());
}

#[test]
fn missing_alias_fails_closed_on_route_and_service() {
    let out = World::new()
        .service(service("a", "s").uses("ghost"))
        .service(service("a", "s2"))
        .route(route("a", "via-service"))
        .route(route("a", "direct").service("s2").uses("nope"))
        .compile();
    for (name, alias) in [("via-service", "ghost"), ("direct", "nope")] {
        assert!(out.served("a", name).is_none(), "{name}");
        let r = out.route_report("a", name);
        assert!(!r.resolved_refs.status);
        assert_eq!(r.resolved_refs.reason, "PluginNotFound");
        assert_eq!(
            r.resolved_refs.message,
            format!("plugin alias \"{alias}\" not found in namespace \"a\" or root namespace \"hookway-system\"")
        );
    }
    assert_eq!(
        out.service_report("a", "s").resolved_refs.reason,
        "PluginNotFound"
    );
}

#[test]
fn policy_namespaces_limits_references_and_globals() {
    let sel = match_labels(&[("team", "gold")]);
    let out = World::new()
        .namespace(namespace("gold", &[("team", "gold")]))
        .namespace(namespace("tin", &[("team", "tin")]))
        .plugin(
            plugin(ROOT, "premium", "limit")
                .config(limit(9))
                .namespaces(sel.clone()),
        )
        .plugin(
            plugin(ROOT, "g", "extra_params")
                .global(params("x", "y"))
                .namespaces(sel),
        )
        .service(service("gold", "s"))
        .service(service("tin", "s"))
        .service(service("nolabels", "s"))
        .route(route("gold", "r").uses("premium"))
        .route(
            route("tin", "r")
                .uses("premium")
                .path(PathMatchType::Prefix, "/1"),
        )
        .route(route("tin", "plain").path(PathMatchType::Prefix, "/2"))
        .route(route("nolabels", "plain"))
        .compile();
    assert_eq!(out.chain("gold", "r"), ["g@cluster", "premium@cluster"]);
    assert!(out.served("tin", "r").is_none());
    let r = out.route_report("tin", "r");
    assert_eq!(r.resolved_refs.reason, "PluginNotAllowed");
    assert!(
        r.resolved_refs.message.contains("\"tin\""),
        "{}",
        r.resolved_refs.message
    );
    assert!(
        out.chain("tin", "plain").is_empty(),
        "global not applied outside its namespaces"
    );
    assert!(
        out.chain("nolabels", "plain").is_empty(),
        "missing namespace = no labels"
    );
    assert!(
        out.0.snapshot.default_chain.is_empty(),
        "policy globals are not in the default chain"
    );
}

#[test]
fn match_expressions_select_namespaces() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    let sel = LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "env".into(),
            operator: "NotIn".into(),
            values: Some(vec!["dev".into()]),
        }]),
    };
    let out = World::new()
        .namespace(namespace("prod", &[("env", "prod")]))
        .namespace(namespace("dev", &[("env", "dev")]))
        .plugin(
            plugin(ROOT, "g", "extra_params")
                .global(params("x", "y"))
                .namespaces(sel),
        )
        .service(service("prod", "s"))
        .service(service("dev", "s"))
        .route(route("prod", "r"))
        .route(route("dev", "r"))
        .compile();
    assert_eq!(out.chain("prod", "r"), ["g@cluster"]);
    assert!(out.chain("dev", "r").is_empty());
}

#[test]
fn enable_plugin_without_config_anywhere_fails_closed() {
    let out = World::new()
        .plugin(plugin(ROOT, "rl", "limit"))
        .service(service("a", "s"))
        .service(service("a", "s2").plugin("rl", limit(3)))
        .route(
            route("a", "bare")
                .uses("rl")
                .path(PathMatchType::Prefix, "/1"),
        )
        .route(
            route("a", "svc-config")
                .service("s2")
                .uses("rl")
                .path(PathMatchType::Prefix, "/2"),
        )
        .compile();
    assert!(out.served("a", "bare").is_none());
    let r = out.route_report("a", "bare");
    assert_eq!(r.resolved_refs.reason, "InvalidPluginConfig");
    assert!(r.resolved_refs.message.contains("no config at any level"));
    assert_eq!(out.chain("a", "svc-config"), ["rl@service"]);
}

#[test]
fn invalid_ref_config_rejects_the_object_that_carries_it() {
    let out = World::new()
        .plugin(plugin(ROOT, "rl", "limit").config(limit(1)))
        .service(service("a", "bad").plugin("rl", json!({"second": "x"})))
        .service(service("a", "s"))
        .route(
            route("a", "via-bad")
                .service("bad")
                .path(PathMatchType::Prefix, "/1"),
        )
        .route(
            route("a", "own-bad")
                .plugin("rl", json!({"secnd": 1}))
                .path(PathMatchType::Prefix, "/2"),
        )
        .compile();
    let svc = out.service_report("a", "bad");
    assert_eq!(reasons(svc).0, "InvalidPluginConfig");
    assert!(
        svc.accepted.message.contains("second"),
        "{}",
        svc.accepted.message
    );
    assert!(out.served("a", "via-bad").is_none());
    assert_eq!(
        out.route_report("a", "via-bad").resolved_refs.reason,
        "ServiceNotAccepted"
    );
    assert!(out
        .0
        .snapshot
        .upstream(&hookway_crds::snapshot::ObjectKey::new("a", "bad"))
        .is_none());
    let own = out.route_report("a", "own-bad");
    assert_eq!(own.accepted.reason, "InvalidPluginConfig");
    assert!(
        own.accepted.message.contains("secnd"),
        "{}",
        own.accepted.message
    );
    assert!(out.served("a", "own-bad").is_none());
}

#[test]
fn gateway_plugin_validation_table() {
    let out = World::new()
        .plugin(plugin(ROOT, "unknown", "no_such_kind").config(json!({})))
        .plugin(plugin(ROOT, "noconfig", "limit").status(PluginStatus::Global))
        .plugin(plugin(ROOT, "wrongtype", "limit").config(json!({"second": "fast"})))
        .plugin(plugin(ROOT, "crossfield", "limit").config(limit(0)))
        .plugin(plugin(ROOT, "nosecret", "creds").config(json!({"secret": "missing"})))
        .plugin(plugin("a", "ns-policy", "limit").config(limit(1)).locked())
        .plugin(plugin(ROOT, "good", "limit").config(limit(1)))
        .compile();
    let cases = [
        ("unknown", false, "UnknownPlugin", "no_such_kind"),
        ("noconfig", false, "ConfigMissing", "config is required"),
        ("wrongtype", false, "InvalidPluginConfig", "second"),
        (
            "crossfield",
            false,
            "InvalidPluginConfig",
            "must be positive",
        ),
        ("nosecret", false, "SecretNotFound", "missing"),
        ("good", true, "Accepted", ""),
    ];
    for (name, ok, reason, text) in cases {
        let r = out.plugin_report(ROOT, name);
        // The first failing condition (a missing Secret is a reference, not a spec, problem).
        let c = if r.accepted.status {
            &r.resolved_refs
        } else {
            &r.accepted
        };
        assert_eq!(r.is_ok(), ok, "{name}");
        if ok {
            assert_eq!(r.accepted.reason, reason, "{name}");
            continue;
        }
        assert_eq!(c.reason, reason, "{name}");
        assert!(c.message.contains(text), "{name}: {}", c.message);
    }
    let ns = out.plugin_report("a", "ns-policy");
    assert!(ns.accepted.status);
    assert!(ns
        .warnings
        .iter()
        .any(|w| w.contains("policy is honoured only in the root namespace")));
}

#[test]
fn invalid_plugin_never_reaches_snapshot_and_fails_referencing_routes() {
    let out = World::new()
        .plugin(plugin(ROOT, "bad", "limit").global(json!({"second": -1})))
        .service(service("a", "s"))
        .route(route("a", "silent").path(PathMatchType::Prefix, "/1"))
        .route(
            route("a", "asks")
                .uses("bad")
                .path(PathMatchType::Prefix, "/2"),
        )
        .compile();
    assert!(out.chain("a", "silent").is_empty());
    assert!(out.0.snapshot.default_chain.is_empty());
    assert!(out.served("a", "asks").is_none());
    assert_eq!(
        out.route_report("a", "asks").resolved_refs.reason,
        "InvalidPluginConfig"
    );
}

#[test]
fn chain_sorted_by_order_then_alias_and_exclude_paths_most_specific() {
    let out = World::new()
        .plugin(plugin(ROOT, "zz", "limit").global(limit(1)).order(10))
        .plugin(
            plugin(ROOT, "aa", "limit")
                .global(limit(1))
                .order(10)
                .exclude("/healthz"),
        )
        .plugin(
            plugin(ROOT, "first", "extra_params")
                .global(params("a", "b"))
                .order(-5),
        )
        .plugin(
            plugin("a", "local", "access_log")
                .global(log("x"))
                .order(2000),
        )
        .service(service("a", "s"))
        .route(route("a", "r").exclude("aa", "/public/*"))
        .compile();
    assert_eq!(
        out.chain("a", "r"),
        [
            "first@cluster",
            "aa@cluster",
            "zz@cluster",
            "local@namespace"
        ]
    );
    let chain = &out.served("a", "r").unwrap().chain;
    assert_eq!(chain[1].exclude_paths, ["/public/*"]);
    assert_eq!(
        out.0
            .snapshot
            .default_chain
            .iter()
            .map(|e| e.alias.as_str())
            .collect::<Vec<_>>(),
        ["first", "aa", "zz"]
    );
    assert_eq!(out.0.snapshot.default_chain[1].exclude_paths, ["/healthz"]);
}

// ---- services ----------------------------------------------------------------------------------

#[test]
fn service_spec_validation_table() {
    use hookway_crds::api::service::Node;
    let node = |port| Node {
        address: "10.0.0.1".into(),
        port,
        weight: 1,
    };
    let out = World::new()
        .service(
            service("a", "both")
                .backend("core", 80)
                .nodes(vec![node(80)]),
        )
        .service(service("a", "neither").spec(|s| s.nodes = None))
        .service(service("a", "badport").nodes(vec![node(70000)]))
        .service(service("a", "badtimeout").spec(|s| s.timeout.connect = "5 seconds".into()))
        .service(
            service("a", "nohash")
                .spec(|s| s.balance = hookway_crds::snapshot::Balance::HeaderHash),
        )
        .service(service("a", "ok").spec(|s| {
            s.balance = hookway_crds::snapshot::Balance::HeaderHash;
            s.hash_header = Some("X-User".into());
            s.timeout.connect = "1s500ms".into();
        }))
        .compile();
    for (name, text) in [
        ("both", "exactly one"),
        ("neither", "exactly one"),
        ("badport", "spec.nodes[0].port"),
        ("badtimeout", "spec.timeout.connect"),
        ("nohash", "hashHeader"),
    ] {
        let r = out.service_report("a", name);
        assert_eq!(r.accepted.reason, "InvalidSpec", "{name}");
        assert!(
            r.accepted.message.contains(text),
            "{name}: {}",
            r.accepted.message
        );
    }
    let ok = out.service_report("a", "ok");
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(ok.endpoints, 1);
    let up = &out.0.snapshot.upstreams[0];
    assert_eq!(up.key.name, "ok");
    assert_eq!(up.hash_header.as_deref(), Some("x-user"));
    assert_eq!(up.connect_timeout_ms, 1500);
    assert_eq!(up.request_timeout_ms, 30_000);
}

#[test]
fn backend_resolves_ready_endpoints_by_port_name() {
    use k8s_openapi::api::core::v1::{
        Service as CoreService, ServicePort, ServiceSpec as CoreSpec,
    };
    use k8s_openapi::api::discovery::v1::{
        Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::Arc;
    let core = CoreService {
        metadata: ObjectMeta {
            namespace: Some("a".into()),
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(CoreSpec {
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..Default::default()
                },
                ServicePort {
                    name: Some("admin".into()),
                    port: 9000,
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ep = |ip: &str, ready: Option<bool>| Endpoint {
        addresses: vec![ip.into()],
        conditions: Some(EndpointConditions {
            ready,
            ..Default::default()
        }),
        ..Default::default()
    };
    let slice = |name: &str, owner: &str, kind: &str, eps: Vec<Endpoint>| EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("a".into()),
            name: Some(name.into()),
            labels: Some([("kubernetes.io/service-name".to_string(), owner.to_string())].into()),
            ..Default::default()
        },
        address_type: kind.into(),
        endpoints: Some(eps),
        ports: Some(vec![
            EndpointPort {
                name: Some("admin".into()),
                port: Some(9900),
                ..Default::default()
            },
            EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                ..Default::default()
            },
        ]),
    };
    let mut world = World::new()
        .service(service("a", "s").backend("web", 80))
        .service(service("a", "gone").backend("nope", 80))
        .service(service("a", "noport").backend("web", 81))
        .route(route("a", "r").path(PathMatchType::Prefix, "/1"))
        .route(
            route("a", "r2")
                .service("gone")
                .path(PathMatchType::Prefix, "/2"),
        );
    world.0.core_services.push(Arc::new(core));
    for s in [
        slice(
            "web-1",
            "web",
            "IPv4",
            vec![
                ep("10.0.0.2", Some(true)),
                ep("10.0.0.1", None),
                ep("10.0.0.3", Some(false)),
            ],
        ),
        slice("web-2", "web", "IPv6", vec![ep("fd00::1", Some(true))]),
        slice("web-3", "web", "FQDN", vec![ep("x.example", Some(true))]),
        slice("other", "other", "IPv4", vec![ep("10.9.9.9", Some(true))]),
    ] {
        world.0.endpoint_slices.push(Arc::new(s));
    }
    let out = world.compile();
    let up = out
        .0
        .snapshot
        .upstream(&hookway_crds::snapshot::ObjectKey::new("a", "s"))
        .unwrap();
    let eps: Vec<(String, u16)> = up
        .endpoints
        .iter()
        .map(|e| (e.address.clone(), e.port))
        .collect();
    assert_eq!(
        eps,
        [
            ("10.0.0.1".to_string(), 8080),
            ("10.0.0.2".into(), 8080),
            ("fd00::1".into(), 8080)
        ]
    );
    assert_eq!(out.service_report("a", "s").endpoints, 3);
    let gone = out.service_report("a", "gone");
    assert!(gone.accepted.status);
    assert_eq!(gone.resolved_refs.reason, "BackendNotFound");
    assert_eq!(gone.endpoints, 0);
    assert!(
        out.served("a", "r2").is_some(),
        "served; the proxy answers 503"
    );
    assert_eq!(
        out.service_report("a", "noport").resolved_refs.reason,
        "BackendNotFound"
    );
}

// ---- routes ------------------------------------------------------------------------------------

#[test]
fn route_spec_validation_table() {
    let out = World::new()
        .service(service("a", "s"))
        .route(route("a", "badhost").host("not a host"))
        .route(route("a", "badregex").path(PathMatchType::Regex, "(unclosed"))
        .route(route("a", "badheader").header("X-A", ValueMatchType::Regex, "[z-a]"))
        .route(route("a", "badpath").path(PathMatchType::Prefix, "nope"))
        .route(route("a", "dangling").service("missing"))
        .compile();
    for (name, reason, text) in [
        ("badhost", "InvalidSpec", "spec.hosts[0]"),
        ("badregex", "InvalidSpec", "spec.rules[0].path.value"),
        ("badheader", "InvalidSpec", "spec.rules[0].headers[0].value"),
        ("badpath", "InvalidSpec", "must start with /"),
    ] {
        let r = out.route_report("a", name);
        assert_eq!(r.accepted.reason, reason, "{name}");
        assert!(
            r.accepted.message.contains(text),
            "{name}: {}",
            r.accepted.message
        );
        assert!(out.served("a", name).is_none(), "{name}");
    }
    let d = out.route_report("a", "dangling");
    assert_eq!(d.resolved_refs.reason, "ServiceNotFound");
    assert!(out.served("a", "dangling").is_none());
}

#[test]
fn route_normalisation() {
    let out = World::new()
        .service(service("a", "s"))
        .route(
            route("a", "r")
                .host("API.Example.com")
                .host("*.Example.com")
                .header("X-Tenant", ValueMatchType::Exact, "t1"),
        )
        .route(route("a", "empty").host("other.example.com"))
        .compile();
    let r = out.served("a", "r").unwrap();
    assert_eq!(r.hosts, ["*.example.com", "api.example.com"]);
    assert_eq!(r.rules[0].headers[0].name, "x-tenant");
    assert_eq!(r.rules[0].path, "/");
    let e = out.served("a", "empty").unwrap();
    assert_eq!(e.rules.len(), 1);
    assert_eq!(
        (e.rules[0].path_type, e.rules[0].path.as_str()),
        (PathMatchType::Prefix, "/")
    );
}

#[test]
fn tls_secret_becomes_certificate_or_route_stays_plain_http() {
    let out = World::new()
        .secret(tls_secret("a", "cert"))
        .secret(secret(
            "a",
            "opaque",
            "Opaque",
            &[("tls.crt", "x"), ("tls.key", "y")],
        ))
        .service(service("a", "s"))
        .route(route("a", "r1").host("b.example.com").tls("cert"))
        .route(route("a", "r2").host("a.example.com").tls("cert"))
        .route(route("a", "wrongtype").host("c.example.com").tls("opaque"))
        .route(route("a", "missing").host("d.example.com").tls("nope"))
        .compile();
    let certs = &out.0.snapshot.certificates;
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].hosts, ["a.example.com", "b.example.com"]);
    assert!(certs[0].cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(certs[0].key_pem.contains("PRIVATE KEY-----"));
    for name in ["wrongtype", "missing"] {
        assert_eq!(
            out.route_report("a", name).resolved_refs.reason,
            "SecretNotFound",
            "{name}"
        );
        assert!(
            out.served("a", name).is_some(),
            "{name} still served over HTTP"
        );
    }
}

#[test]
fn plugin_secret_refs_become_secret_entries() {
    let out = World::new()
        .secret(secret(ROOT, "api-keys", "Opaque", &[("k", "v")]))
        .plugin(plugin(ROOT, "c", "creds").global(json!({"secret": "api-keys"})))
        .compile();
    assert!(out.plugin_report(ROOT, "c").is_ok());
    let s = out
        .0
        .snapshot
        .secret(&hookway_crds::snapshot::ObjectKey::new(ROOT, "api-keys"))
        .unwrap();
    assert_eq!(s.data["k"], "v");
}

#[test]
fn duplicate_matches_are_conflicts_with_a_documented_winner() {
    // Within one namespace (across namespaces the first claimant owns the host, see
    // tenancy_rules.rs).
    let out = World::new()
        .service(service("a", "s"))
        .service(service("b", "s"))
        .route(route("a", "old").host("x.example.com").created(100))
        .route(route("a", "young").host("x.example.com").created(200))
        .route(
            route("a", "prio")
                .host("x.example.com")
                .created(300)
                .priority(5),
        )
        .route(route("b", "other").host("y.example.com"))
        .compile();
    for name in [("a", "old"), ("a", "young"), ("a", "prio"), ("b", "other")] {
        assert!(
            out.served(name.0, name.1).is_some(),
            "{name:?} stays in the snapshot"
        );
    }
    assert!(out.route_report("a", "prio").warnings.is_empty());
    for name in ["old", "young"] {
        let w = &out.route_report("a", name).warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("Conflicted") && w[0].contains("a/prio"),
            "{w:?}"
        );
    }
    let no_prio = World::new()
        .service(service("a", "s"))
        .route(route("a", "old").host("x.example.com").created(100))
        .route(route("a", "young").host("x.example.com").created(200))
        .compile();
    assert!(no_prio.route_report("a", "old").warnings.is_empty());
    assert!(no_prio.route_report("a", "young").warnings[0].contains("a/old"));
}

#[test]
fn snapshot_is_sealed_sorted_and_order_independent() {
    let world = World::new()
        .plugin(plugin(ROOT, "g", "limit").global(limit(1)))
        .service(service("b", "s"))
        .service(service("a", "s"))
        .route(route("b", "r"))
        .route(route("a", "z"))
        .route(route("a", "m").host("m.example.com"));
    let out = world.compile();
    let snap = &out.0.snapshot;
    assert_eq!(snap.version, 0);
    assert_eq!(snap.hash, snap.content_hash());
    let keys: Vec<String> = snap.routes.iter().map(|r| r.key.to_string()).collect();
    assert_eq!(keys, ["a/m", "a/z", "b/r"]);
    let mut reversed = world.clone();
    reversed.0.routes.reverse();
    reversed.0.services.reverse();
    assert_eq!(reversed.compile().0.snapshot, *snap);
}

// ---- what the compiler's output holds ---------------------------------------------------------

/// A snapshot's entries stay for many versions (shared between them): their lists hold no
/// spare room. Collecting a list in place (`into_iter().map(..).collect()` into smaller items)
/// keeps the source's whole allocation: the Route list kept 170 bytes per Route that way.
#[test]
fn compiled_lists_hold_no_spare_room() {
    let mut world = World::new()
        .plugin(plugin(ROOT, "extra", "extra_params").global(params("a", "1")))
        .plugin(plugin(ROOT, "log", "access_log").config(log("stdout")))
        .service(service("demo", "s").uses("log"));
    for i in 0..40 {
        world = world.route(route("demo", &format!("r{i}")).host(&format!("h{i}.example.com")));
    }
    let out = world.compile();
    let snapshot = &out.0.snapshot;
    assert_eq!(snapshot.routes.len(), 40);
    assert_eq!(snapshot.routes.capacity(), snapshot.routes.len(), "Routes");
    assert_eq!(
        snapshot.upstreams.capacity(),
        snapshot.upstreams.len(),
        "upstreams"
    );
    for entry in &snapshot.routes {
        assert_eq!(entry.chain.len(), 2, "{}: both plugins run", entry.key.name);
        assert_eq!(
            entry.chain.capacity(),
            entry.chain.len(),
            "{}'s chain",
            entry.key.name
        );
    }
}
