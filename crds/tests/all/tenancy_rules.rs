//! Table-driven tests pinning the isolation rules (DESIGN.md §6): the compiler validates Secrets,
//! names in configs resolve where the compiler says, hosts belong to their first claimant, and
//! what crosses a namespace wall needs a PlatformPolicy. Each case also checks that the other
//! Routes of the same compile keep being served.

use crate::support::*;
use hookway_crds::compiler::ObjectReport;
use hookway_crds::snapshot::ObjectKey;
use serde_json::{json, Value};

/// `(status, reason)` of the first failing condition, or `(true, "")`.
pub(crate) fn verdict(r: &ObjectReport) -> (bool, String) {
    if !r.accepted.status {
        (false, r.accepted.reason.to_string())
    } else if !r.resolved_refs.status {
        (false, r.resolved_refs.reason.to_string())
    } else {
        (true, String::new())
    }
}

pub(crate) fn message(r: &ObjectReport) -> String {
    format!("{} | {}", r.accepted.message, r.resolved_refs.message)
}

// ---- TLS Secrets --------------------------------------------------------------------------------

/// (Route, Secret contents, certificate served, ResolvedRefs reason, message part).
type TlsCase<'a> = (&'a str, Option<(&'a str, &'a str)>, bool, &'a str, &'a str);

#[test]
fn tls_secrets_are_checked_like_the_proxy_loads_them() {
    let (good_crt, good_key) = cert_pair("good.example.com", 2000, 2100);
    let (other_crt, other_key) = cert_pair("other.example.com", 2000, 2100);
    let (old_crt, old_key) = cert_pair("old.example.com", 2000, 2001);
    let cases: [TlsCase; 7] = [
        // (route, secret contents, certificate served, ResolvedRefs reason, message part)
        ("good", Some((&good_crt, &good_key)), true, "", ""),
        (
            "mismatch",
            Some((&good_crt, &other_key)),
            false,
            "InvalidCertificate",
            "does not match",
        ),
        (
            "garbage-cert",
            Some(("not pem", &other_key)),
            false,
            "InvalidCertificate",
            "tls.crt",
        ),
        (
            "garbage-key",
            Some((
                &other_crt,
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            )),
            false,
            "InvalidCertificate",
            "tls.key",
        ),
        (
            "key-only-cert",
            Some((&other_key, &other_key)),
            false,
            "InvalidCertificate",
            "no PEM certificate",
        ),
        ("missing", None, false, "SecretNotFound", "not found"),
        // Expired: served, with a warning.
        ("expired", Some((&old_crt, &old_key)), true, "", ""),
    ];
    let mut world = World::new().service(service("a", "s"));
    for (name, contents, _, _, _) in &cases {
        if let Some((crt, key)) = contents {
            world = world.secret(tls_secret_with("a", name, crt, key));
        }
        world = world.route(
            route("a", name)
                .host(&format!("{name}.example.com"))
                .tls(name),
        );
    }
    let out = world.compile_at(1_700_000_000);
    for (name, _, served_tls, reason, text) in cases {
        let r = out.route_report("a", name);
        let host = format!("{name}.example.com");
        let has_cert = out
            .0
            .snapshot
            .certificates
            .iter()
            .any(|c| c.hosts.contains(&host));
        assert_eq!(has_cert, served_tls, "{name}: certificate served");
        assert!(
            out.served("a", name).is_some(),
            "{name}: still served over HTTP"
        );
        assert_eq!(
            r.resolved_refs.reason == reason,
            !reason.is_empty(),
            "{name}: {r:?}"
        );
        assert!(
            r.resolved_refs.message.contains(text),
            "{name}: {}",
            message(r)
        );
        if !served_tls {
            assert!(
                r.resolved_refs.message.contains("plain HTTP only"),
                "{name}: the status says what happens: {}",
                message(r)
            );
        }
    }
    let expired = out.route_report("a", "expired");
    assert!(
        expired
            .warnings
            .iter()
            .any(|w| w.starts_with("CertificateExpired:") && w.contains("expired at")),
        "{:?}",
        expired.warnings
    );
    assert!(out.route_report("a", "good").warnings.is_empty());
}

// ---- credential Secrets -------------------------------------------------------------------------

#[test]
fn credential_secrets_are_checked_and_only_dependants_left_out() {
    let out = World::new()
        .secret(secret("a", "fine", "Opaque", &[("k", "v")]))
        .secret(secret("a", "broken", "Opaque", &[("k", "bad")]))
        .secret(secret(ROOT, "root-broken", "Opaque", &[("k", "bad")]))
        .plugin(plugin("a", "ok-creds", "creds").config(json!({"secret": "fine"})))
        .plugin(plugin("a", "bad-creds", "creds").config(json!({"secret": "broken"})))
        .plugin(plugin(ROOT, "cluster-bad", "creds").config(json!({"secret": "root-broken"})))
        .service(service("a", "s"))
        .route(
            route("a", "uses-ok")
                .uses("ok-creds")
                .host("ok.example.com"),
        )
        .route(
            route("a", "uses-bad")
                .uses("bad-creds")
                .host("bad.example.com"),
        )
        .route(
            route("a", "uses-cluster-bad")
                .uses("cluster-bad")
                .host("cb.example.com"),
        )
        .route(
            route("a", "own-bad-config")
                .plugin("ok-creds", json!({"secret": "broken"}))
                .host("own.example.com"),
        )
        .route(route("a", "bystander").host("by.example.com"))
        .compile();
    let table: [(&str, Option<&str>, (bool, &str)); 4] = [
        ("ok-creds", Some("a"), (true, "")),
        ("bad-creds", Some("a"), (false, "InvalidSecret")),
        ("cluster-bad", Some(ROOT), (false, "InvalidSecret")),
        ("ok-creds", None, (true, "")),
    ];
    for (name, ns, (ok, reason)) in table {
        let Some(ns) = ns else { continue };
        let r = out.plugin_report(ns, name);
        assert_eq!(
            verdict(r),
            (ok, reason.to_string()),
            "{ns}/{name}: {}",
            message(r)
        );
    }
    assert!(message(out.plugin_report("a", "bad-creds")).contains("does not parse"));
    for (route_name, served, reason) in [
        ("uses-ok", true, ""),
        ("uses-bad", false, "InvalidPluginConfig"),
        ("uses-cluster-bad", false, "InvalidPluginConfig"),
        ("own-bad-config", false, "InvalidSecret"),
        ("bystander", true, ""),
    ] {
        let r = out.route_report("a", route_name);
        assert_eq!(
            out.served("a", route_name).is_some(),
            served,
            "{route_name}"
        );
        assert_eq!(
            verdict(r),
            (served, reason.to_string()),
            "{route_name}: {}",
            message(r)
        );
    }
    assert!(
        out.0
            .snapshot
            .secret(&ObjectKey::new("a", "broken"))
            .is_none(),
        "a Secret nobody can use is not shipped"
    );
}

// ---- where a Secret named in a config resolves ----------------------------------------------------

#[test]
fn secret_names_resolve_in_the_namespace_of_the_config_that_names_them() {
    let out = World::new()
        .secret(secret(ROOT, "redis-auth", "Opaque", &[("k", "platform")]))
        .secret(secret("b", "redis-auth", "Opaque", &[("k", "tenant-b")]))
        .plugin(plugin(ROOT, "creds", "creds").config(json!({"secret": "redis-auth"})))
        .service(service("a", "s"))
        .service(service("b", "s"))
        .service(service("c", "s").plugin("creds", json!({"secret": "redis-auth"})))
        // Route in `a` naming the root Secret's name: no such Secret in `a`.
        .route(
            route("a", "tenant-names-root-secret")
                .plugin("creds", json!({"secret": "redis-auth"}))
                .host("a.example.com"),
        )
        // Route in `b` naming it: its own namespace's Secret.
        .route(
            route("b", "tenant-own-secret")
                .plugin("creds", json!({"secret": "redis-auth"}))
                .host("b.example.com"),
        )
        // Route in `b` using the cluster plugin's own config: the root Secret.
        .route(
            route("b", "platform-config")
                .uses("creds")
                .host("b2.example.com"),
        )
        // Service in `c` naming it: no such Secret in `c`, the Service is not accepted.
        .route(route("c", "via-service").host("c.example.com"))
        .compile();
    let binding = |ns: &str, name: &str| {
        out.served(ns, name)
            .and_then(|r| r.chain.iter().find(|e| e.alias == "creds"))
            .map(|e| e.secrets["redis-auth"].clone())
    };
    let cases = [
        ("a", "tenant-names-root-secret", None, "SecretNotFound"),
        (
            "b",
            "tenant-own-secret",
            Some(ObjectKey::new("b", "redis-auth")),
            "",
        ),
        (
            "b",
            "platform-config",
            Some(ObjectKey::new(ROOT, "redis-auth")),
            "",
        ),
        ("c", "via-service", None, "ServiceNotAccepted"),
    ];
    for (ns, name, bound, reason) in cases {
        assert_eq!(binding(ns, name), bound, "{ns}/{name}");
        let r = out.route_report(ns, name);
        assert_eq!(verdict(r).1, reason, "{ns}/{name}: {}", message(r));
    }
    assert!(message(out.route_report("a", "tenant-names-root-secret")).contains("a/redis-auth"));
    assert_eq!(
        verdict(out.service_report("c", "s")),
        (false, "SecretNotFound".to_string())
    );
}

// ---- host ownership -------------------------------------------------------------------------------

fn shared(hosts: &[&str], namespaces: &[&str]) -> Value {
    json!({"sharedHosts": [{"hosts": hosts, "namespaces": namespaces}]})
}

#[test]
fn a_host_belongs_to_the_namespace_that_claimed_it_first() {
    // (later route's namespace, its host, earlier claim by namespace a, policy, served, reason)
    let cases: [(&str, &str, &str, Option<Value>, bool); 9] = [
        ("b", "x.example.com", "x.example.com", None, false),
        ("a", "x.example.com", "x.example.com", None, true),
        ("b", "y.example.com", "x.example.com", None, true),
        ("b", "x.example.com", "*.example.com", None, false),
        ("b", "*.x.example.com", "*.example.com", None, false),
        // A later wildcard does not take an earlier exact host (exact wins in routing and TLS).
        ("b", "*.example.com", "x.example.com", None, true),
        (
            "b",
            "x.example.com",
            "x.example.com",
            Some(shared(&["x.example.com"], &["b"])),
            true,
        ),
        (
            "b",
            "x.example.com",
            "x.example.com",
            Some(shared(&["*.example.com"], &["*"])),
            true,
        ),
        (
            "b",
            "x.example.com",
            "x.example.com",
            Some(shared(&["x.example.com"], &["c"])),
            false,
        ),
    ];
    for (i, (ns, host, owner_host, policy, served)) in cases.into_iter().enumerate() {
        let mut world = World::new()
            .service(service("a", "s"))
            .service(service(ns, "s"))
            .route(route("a", "first").host(owner_host).created(100))
            .route(route(ns, "later").host(host).created(200))
            .route(route("c", "bystander").host("c.example.com").created(300));
        if let Some(spec) = policy {
            world = world.policy(platform_policy(ROOT, "p", spec));
        }
        let out = world.compile();
        let r = out.route_report(ns, "later");
        assert_eq!(
            out.served(ns, "later").is_some(),
            served,
            "case {i}: {}",
            message(r)
        );
        assert!(
            out.served("a", "first").is_some(),
            "case {i}: the owner keeps serving"
        );
        if !served {
            assert_eq!(r.accepted.reason, "HostConflict", "case {i}");
            assert!(
                r.accepted.message.contains("namespace \"a\""),
                "case {i}: {}",
                message(r)
            );
            assert!(
                r.accepted.message.contains("a/first"),
                "case {i}: {}",
                message(r)
            );
        }
    }
}

#[test]
fn claim_order_is_creation_time_then_namespace_and_name() {
    let out = World::new()
        .service(service("a", "s"))
        .service(service("b", "s"))
        .route(route("b", "r").host("x.example.com").created(100))
        .route(route("a", "r").host("x.example.com").created(100))
        .route(route("a", "young").host("y.example.com").created(300))
        .route(route("b", "old").host("y.example.com").created(200))
        .compile();
    assert!(
        out.served("a", "r").is_some(),
        "same time: namespace a sorts first"
    );
    assert!(out.served("b", "r").is_none());
    assert!(
        out.served("b", "old").is_some(),
        "older wins whatever the namespace"
    );
    assert_eq!(
        out.route_report("a", "young").accepted.reason,
        "HostConflict"
    );
}

#[test]
fn the_certificate_for_a_host_comes_only_from_its_owner() {
    let policy = platform_policy(ROOT, "p", shared(&["x.example.com"], &["b"]));
    let out = World::new()
        .policy(policy)
        .secret(tls_secret("a", "a-cert"))
        .secret(tls_secret("b", "b-cert"))
        .service(service("a", "s"))
        .service(service("b", "s"))
        .route(
            route("a", "owner")
                .host("x.example.com")
                .tls("a-cert")
                .created(100)
                .path(hookway_crds::api::route::PathMatchType::Prefix, "/a"),
        )
        .route(
            route("b", "sharer")
                .host("x.example.com")
                .tls("b-cert")
                .created(200)
                .path(hookway_crds::api::route::PathMatchType::Prefix, "/b"),
        )
        .compile();
    assert!(
        out.served("b", "sharer").is_some(),
        "sharing allowed by policy"
    );
    let certs: Vec<(String, Vec<String>)> = out
        .0
        .snapshot
        .certificates
        .iter()
        .map(|c| (c.key.to_string(), c.hosts.clone()))
        .collect();
    assert_eq!(
        certs,
        [("a/a-cert".to_string(), vec!["x.example.com".to_string()])]
    );
}

// ---- cross-namespace references -------------------------------------------------------------------

fn grant(from: &[&str], to: &str, services: &[&str]) -> Value {
    json!({"referenceGrants": [{"from": from, "to": to, "services": services}]})
}

#[test]
fn cross_namespace_references_need_a_grant() {
    let cases: [(&str, Option<Value>, bool, Option<&str>); 6] = [
        // (service as written in namespace a, policy, served, bound to)
        ("canary", None, true, Some("a/canary")),
        ("shared/canary", None, false, None),
        (
            "shared/canary",
            Some(grant(&["a"], "shared", &["canary"])),
            true,
            Some("shared/canary"),
        ),
        (
            "shared/canary",
            Some(grant(&["*"], "shared", &["*"])),
            true,
            Some("shared/canary"),
        ),
        (
            "shared/canary",
            Some(grant(&["b"], "shared", &["canary"])),
            false,
            None,
        ),
        (
            "shared/canary",
            Some(grant(&["a"], "shared", &["stable"])),
            false,
            None,
        ),
    ];
    for (i, (written, policy, served, bound)) in cases.into_iter().enumerate() {
        let mut world = World::new()
            .plugin(plugin(ROOT, "split", "split"))
            .service(service("a", "s"))
            .service(service("a", "canary"))
            .service(service("shared", "canary"))
            .route(
                route("a", "r")
                    .plugin("split", json!({"service": written}))
                    .host("r.example.com"),
            )
            .route(route("a", "bystander").host("by.example.com"));
        if let Some(spec) = policy {
            world = world.policy(platform_policy(ROOT, "p", spec));
        }
        let out = world.compile();
        let r = out.route_report("a", "r");
        assert_eq!(
            out.served("a", "r").is_some(),
            served,
            "case {i}: {}",
            message(r)
        );
        assert!(out.served("a", "bystander").is_some(), "case {i}");
        if served {
            let entry = &out.served("a", "r").unwrap().chain[0];
            assert_eq!(
                entry
                    .services
                    .get(written)
                    .map(ToString::to_string)
                    .as_deref(),
                bound,
                "case {i}"
            );
        } else {
            assert_eq!(r.resolved_refs.reason, "RefNotPermitted", "case {i}");
            assert!(
                r.resolved_refs.message.contains("shared/canary"),
                "case {i}"
            );
        }
    }
}

#[test]
fn a_missing_target_service_is_a_warning() {
    let out = World::new()
        .plugin(plugin(ROOT, "split", "split"))
        .service(service("a", "s"))
        .route(route("a", "r").plugin("split", json!({"service": "nope"})))
        .compile();
    assert!(out.served("a", "r").is_some());
    assert!(out
        .route_report("a", "r")
        .warnings
        .iter()
        .any(|w| w.starts_with("ServiceNotFound:") && w.contains("a/nope")));
}

// ---- capabilities: insecureSkipVerify and network-reaching plugins ---------------------------------

fn caps(names: &[&str], insecure: bool, network: &[&str]) -> Value {
    json!({"namespaces": [{"names": names, "insecureSkipVerify": insecure, "networkPlugins": network}]})
}

#[test]
fn insecure_skip_verify_needs_a_policy_outside_the_root_namespace() {
    let cases: [(&str, Option<Value>, bool); 5] = [
        (ROOT, None, true),
        ("a", None, false),
        ("a", Some(caps(&["a"], true, &[])), true),
        ("a", Some(caps(&["*"], true, &[])), true),
        ("a", Some(caps(&["a"], false, &["remote"])), false),
    ];
    for (i, (ns, policy, ok)) in cases.into_iter().enumerate() {
        let mut world = World::new()
            .service(service(ns, "insecure").spec(|s| {
                s.scheme = hookway_crds::snapshot::Scheme::Https;
                s.tls = Some(serde_json::from_value(json!({"insecureSkipVerify": true})).unwrap());
            }))
            .service(service(ns, "plain"))
            .route(route(ns, "r").service("insecure").host("r.example.com"))
            .route(
                route(ns, "bystander")
                    .service("plain")
                    .host("by.example.com"),
            );
        if let Some(spec) = policy {
            world = world.policy(platform_policy(ROOT, "p", spec));
        }
        let out = world.compile();
        let r = out.service_report(ns, "insecure");
        assert_eq!(verdict(r).0, ok, "case {i}: {}", message(r));
        assert_eq!(out.served(ns, "r").is_some(), ok, "case {i}");
        assert!(out.served(ns, "bystander").is_some(), "case {i}");
        if !ok {
            assert_eq!(r.accepted.reason, "NotPermitted", "case {i}");
        }
    }
}

#[test]
fn network_plugins_need_a_policy_outside_the_root_namespace() {
    let remote = json!({"address": "http://auth.internal:8080"});
    // (where the config is written, policy, accepted)
    let cases: [(&str, Option<Value>, bool); 4] = [
        ("namespace-plugin", None, false),
        (
            "namespace-plugin",
            Some(caps(&["a"], false, &["remote"])),
            true,
        ),
        ("route-config", None, false),
        ("route-config", Some(caps(&["a"], false, &["remote"])), true),
    ];
    for (i, (place, policy, ok)) in cases.into_iter().enumerate() {
        let mut world = World::new()
            .plugin(plugin(ROOT, "platform-remote", "remote").config(remote.clone()))
            .service(service("a", "s"))
            .route(
                route("a", "platform")
                    .uses("platform-remote")
                    .host("p.example.com"),
            );
        world = match place {
            "namespace-plugin" => world
                .plugin(plugin("a", "mine", "remote").config(remote.clone()))
                .route(route("a", "r").uses("mine").host("r.example.com")),
            _ => world.route(
                route("a", "r")
                    .plugin("platform-remote", remote.clone())
                    .host("r.example.com"),
            ),
        };
        if let Some(spec) = policy {
            world = world.policy(platform_policy(ROOT, "p", spec));
        }
        let out = world.compile();
        assert_eq!(out.served("a", "r").is_some(), ok, "case {i}");
        assert!(
            out.served("a", "platform").is_some(),
            "case {i}: the platform's own config"
        );
        if !ok {
            let r = match place {
                "namespace-plugin" => out.plugin_report("a", "mine"),
                _ => out.route_report("a", "r"),
            };
            assert_eq!(
                r.accepted.reason,
                "NotPermitted",
                "case {i}: {}",
                message(r)
            );
            assert!(r.accepted.message.contains("networkPlugins"), "case {i}");
        }
    }
}

// ---- the policy object itself ---------------------------------------------------------------------

#[test]
fn policies_count_only_in_the_root_namespace_and_only_when_valid() {
    let cases: [(&str, Value, bool, &str); 3] = [
        (ROOT, shared(&["x.example.com"], &["b"]), true, ""),
        (
            "b",
            shared(&["x.example.com"], &["b"]),
            false,
            "PolicyIgnored",
        ),
        (ROOT, shared(&["not a host"], &["b"]), false, "InvalidSpec"),
    ];
    for (i, (ns, spec, grants, reason)) in cases.into_iter().enumerate() {
        let out = World::new()
            .policy(platform_policy(ns, "p", spec))
            .service(service("a", "s"))
            .service(service("b", "s"))
            .route(route("a", "first").host("x.example.com").created(1))
            .route(route("b", "later").host("x.example.com").created(2))
            .compile();
        assert_eq!(out.served("b", "later").is_some(), grants, "case {i}");
        let r = out.report(hookway_crds::compiler::Kind::PlatformPolicy, ns, "p");
        assert_eq!(
            verdict(r),
            (grants, reason.to_string()),
            "case {i}: {}",
            message(r)
        );
    }
}
