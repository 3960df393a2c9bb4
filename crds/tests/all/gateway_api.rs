//! Gateway API: the types read and round-trip the upstream examples; lowering gives the
//! expected snapshot; the status function gives the spec's conditions and reasons.

use std::path::Path;

use hookway_crds::catalogue::PluginConfig;
use hookway_crds::compiler::{compile, Compiled, Kind, ObjectId, Objects, Options};
use hookway_crds::gateway_api::gateway::GatewayStatusAddress;
use hookway_crds::lower::status::{compute, Environment, Statuses};
use hookway_crds::manifests::parse_into;
use hookway_crds::snapshot::{ObjectKey, PathMatchType, UpstreamProtocol};
use hookway_crds::Catalogue;
use serde::Deserialize;

/// Any config is valid (the plugin kinds lowering uses, checked in the proxy's own tests).
#[derive(Deserialize, schemars::JsonSchema)]
struct Any(#[allow(dead_code)] serde_json::Value);
impl PluginConfig for Any {}

fn catalogue() -> Catalogue {
    let mut c = Catalogue::new();
    for kind in [
        "headers",
        "mock",
        "request_mirror",
        "request_redirect",
        "proxy_rewrite",
        "cors",
        "rate_limiting",
    ] {
        c.register::<Any>(kind);
    }
    c
}

fn objects(yaml: &str) -> Objects {
    let mut objects = Objects::default();
    parse_into(yaml, "test.yaml", "default", &mut objects).unwrap_or_else(|e| panic!("{e:?}"));
    objects
}

fn compiled(yaml: &str) -> (Objects, Compiled) {
    let objects = objects(yaml);
    let compiled = compile(&objects, &Options::default(), &catalogue());
    (objects, compiled)
}

#[test]
fn upstream_examples_read_and_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all/fixtures/gateway-api");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut all = Objects::default();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let notes = parse_into(&text, &path.display().to_string(), "default", &mut all)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        assert!(notes.iter().all(|n| n.contains("Namespace")), "{notes:?}");
    }
    assert!(all.gateways.len() >= 5, "{}", all.gateways.len());
    assert!(all.http_routes.len() >= 8, "{}", all.http_routes.len());
    assert!(all.grpc_routes.len() >= 6, "{}", all.grpc_routes.len());
    for r in &all.grpc_routes {
        let json = serde_json::to_value(r.as_ref()).unwrap();
        let back: hookway_crds::gateway_api::GRPCRoute = serde_json::from_value(json).unwrap();
        assert_eq!((&back.metadata, &back.spec), (&r.metadata, &r.spec));
    }
    // The upstream basic example's second rule: a header and a method match in one match.
    let basic = all
        .grpc_routes
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("grpc-app-1"))
        .unwrap();
    let m = &basic.spec.rules[1].matches[0];
    assert_eq!(m.headers[0].name, "magic");
    let method = m.method.as_ref().unwrap();
    assert_eq!(
        (method.service.as_deref(), method.method.as_deref()),
        (Some("com.example.Things"), Some("DoThing"))
    );
    assert!(!all.reference_grants.is_empty());
    // Serialising what was read and reading it back gives the same objects.
    for r in &all.http_routes {
        let json = serde_json::to_value(r.as_ref()).unwrap();
        let back: hookway_crds::gateway_api::HTTPRoute = serde_json::from_value(json).unwrap();
        assert_eq!((&back.metadata, &back.spec), (&r.metadata, &r.spec));
    }
    for g in &all.gateways {
        let json = serde_json::to_value(g.as_ref()).unwrap();
        let back: hookway_crds::gateway_api::Gateway = serde_json::from_value(json).unwrap();
        assert_eq!((&back.metadata, &back.spec), (&g.metadata, &g.spec));
    }
    // A field hookway does not read is tolerated (`infrastructure`, `addresses`, `sessionPersistence`).
    let extra = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: c\n  infrastructure: {labels: {a: b}}\n  addresses: [{value: 1.2.3.4}]\n  listeners: [{name: h, port: 80, protocol: HTTP}]\n";
    assert_eq!(objects(extra).gateways.len(), 1);
}

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: hookway}
spec: {controllerName: hookway.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {shared: "yes"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: hookway
  listeners:
  - name: web
    port: 80
    protocol: HTTP
    hostname: "*.example.com"
    allowedRoutes: {namespaces: {from: All}}
  - name: same
    port: 8080
    protocol: HTTP
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: team, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2]}]
---
apiVersion: v1
kind: Service
metadata: {name: canary, namespace: team}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: canary-1, namespace: team, labels: {kubernetes.io/service-name: canary}}
addressType: IPv4
ports: [{name: http, port: 9090}]
endpoints: [{addresses: [10.0.1.1]}]
---
"#;

fn http_route(ns: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n---\n")
}

#[test]
fn lowering_gives_the_expected_snapshot() {
    let yaml = BASE.to_string()
        + &http_route(
            "team",
            "shop",
            "  parentRefs: [{name: gw, namespace: infra, sectionName: web}]\n  hostnames: [shop.example.com, shop.example.org]\n  rules:\n  - matches:\n    - path: {type: Exact, value: /cart}\n      method: POST\n    - path: {type: PathPrefix, value: /api/}\n      headers: [{name: X-Env, value: canary}]\n      queryParams: [{type: RegularExpression, name: v, value: '[0-9]+'}]\n    filters:\n    - type: ResponseHeaderModifier\n      responseHeaderModifier: {add: [{name: X-Served-By, value: hookway}]}\n    - type: ExtensionRef\n      extensionRef: {group: hookway.dev, kind: GatewayPlugin, name: limit}\n    backendRefs:\n    - {name: web, port: 80, weight: 3}\n    - {name: canary, port: 80, weight: 1}\n    timeouts: {request: 10s, backendRequest: 2s}",
        )
        + "apiVersion: hookway.dev/v1alpha1\nkind: GatewayPlugin\nmetadata: {name: limit, namespace: team}\nspec: {plugin: rate_limiting, config: {second: 5}}\n";
    let (_, c) = compiled(&yaml);
    let rejected: Vec<_> = c.rejected().collect();
    assert!(rejected.is_empty(), "{rejected:#?}");
    // Reports are keyed by the source objects only.
    let kinds: Vec<(Kind, String)> = c
        .reports
        .keys()
        .map(|id| (id.kind, id.key.to_string()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Kind::GatewayPlugin, "team/limit".to_string()),
            (Kind::GatewayClass, "/hookway".to_string()),
            (Kind::Gateway, "infra/gw".to_string()),
            (Kind::HTTPRoute, "team/shop".to_string()),
        ]
    );
    // Every synthetic object of the snapshot maps back to its source.
    let shop = ObjectId {
        kind: Kind::HTTPRoute,
        key: ObjectKey::new("team", "shop"),
    };
    for r in &c.snapshot.routes {
        let id = ObjectId {
            kind: Kind::Route,
            key: r.key.clone(),
        };
        assert_eq!(c.origins.get(&id), Some(&shop), "{id:?}");
    }
    let s = &c.snapshot;
    let routes: Vec<(&str, Vec<&str>, PathMatchType, &str)> = s
        .routes
        .iter()
        .map(|r| {
            (
                r.key.name.as_str(),
                r.hosts.iter().map(String::as_str).collect(),
                r.rules[0].path_type,
                r.rules[0].path.as_str(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        vec![
            (
                "shop#r00.m00@infra.gw",
                vec!["shop.example.com"],
                PathMatchType::Exact,
                "/cart"
            ),
            (
                "shop#r00.m01@infra.gw",
                vec!["shop.example.com"],
                PathMatchType::Prefix,
                "/api"
            ),
        ]
    );
    let api = &s.routes[1];
    assert_eq!(api.rules[0].headers[0].name, "x-env");
    assert_eq!(api.rules[0].query[0].value, "[0-9]+");
    assert_eq!(api.upstream, ObjectKey::new("team", "shop#r00"));
    let chain: Vec<(&str, &str)> = api
        .chain
        .iter()
        .map(|e| (e.alias.as_str(), e.plugin.as_str()))
        .collect();
    assert_eq!(
        chain,
        vec![("limit", "rate_limiting"), ("shop#r00.m01.f00", "headers")]
    );
    let upstream = s.upstream(&ObjectKey::new("team", "shop#r00")).unwrap();
    assert_eq!(upstream.request_timeout_ms, 2000);
    // web (weight 3) has two endpoints, canary (weight 1) one: 3:3:2 per endpoint = 75% / 25%.
    let weights: Vec<(&str, u16, u32)> = upstream
        .endpoints
        .iter()
        .map(|e| (e.address.as_str(), e.port, e.weight))
        .collect();
    assert_eq!(
        weights,
        vec![
            ("10.0.0.1", 8080, 3),
            ("10.0.0.2", 8080, 3),
            ("10.0.1.1", 9090, 2)
        ]
    );
}

#[test]
fn listener_hostnames_are_claimed_by_the_gateway_namespace() {
    // Two namespaces attach to one listener host: both are served. A hookway Route of a third
    // namespace claiming that host later is refused; one that claimed it first wins it.
    let yaml = BASE.to_string()
        + &http_route("team", "a", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [shared.example.com]\n  rules: [{matches: [{path: {value: /a}}], backendRefs: [{name: web, port: 80}]}]")
        + &http_route("infra", "b", "  parentRefs: [{name: gw}]\n  hostnames: [shared.example.com]\n  rules: [{matches: [{path: {value: /b}}]}]")
        + "apiVersion: hookway.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: third}\nspec: {nodes: [{address: 10.9.9.9, port: 80}]}\n---\napiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {name: late, namespace: third, creationTimestamp: '2030-01-01T00:00:00Z'}\nspec: {hosts: [shared.example.com], service: s}\n";
    let (_, c) = compiled(&yaml);
    let id = |kind, ns: &str, name: &str| ObjectId {
        kind,
        key: ObjectKey::new(ns, name),
    };
    assert!(
        c.reports[&id(Kind::HTTPRoute, "team", "a")].is_ok(),
        "{:?}",
        c.reports
    );
    assert!(c.reports[&id(Kind::HTTPRoute, "infra", "b")].is_ok());
    let late = &c.reports[&id(Kind::Route, "third", "late")];
    assert_eq!(late.accepted.reason, "HostConflict");
    assert!(
        late.accepted.message.contains("namespace \"infra\""),
        "{}",
        late.accepted.message
    );
    assert!(
        late.accepted.message.contains("HTTPRoute infra/b"),
        "{}",
        late.accepted.message
    );
}

fn statuses(yaml: &str) -> Statuses {
    let (objects, c) = compiled(yaml);
    let addresses = [GatewayStatusAddress {
        kind: Some("IPAddress".into()),
        value: "10.1.2.3".into(),
    }];
    compute(
        &objects,
        &c,
        &Environment {
            addresses: &addresses,
            programmed: true,
            now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        },
    )
}

/// `(type, status, reason)` of each condition.
fn conds(
    list: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Vec<(String, String, String)> {
    list.iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn c3(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

#[test]
fn route_parent_status_has_the_spec_reasons() {
    // (route namespace, spec, expected (Accepted reason, ResolvedRefs reason) per parent)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case<'_>] = &[
        ("team", "  parentRefs: [{name: gw, namespace: infra, sectionName: web}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: web, port: 80}]}]", &[("Accepted", "ResolvedRefs")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra, sectionName: same}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]", &[("NotAllowedByListeners", "ResolvedRefs")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra, sectionName: nope}]", &[("NoMatchingParent", "ResolvedRefs")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra, port: 8443}]", &[("NoMatchingParent", "ResolvedRefs")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.org]", &[("NoMatchingListenerHostname", "ResolvedRefs")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: missing, port: 80}]}]", &[("Accepted", "BackendNotFound")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: web, namespace: infra, port: 80}]}]", &[("Accepted", "RefNotPermitted")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{group: example.com, kind: Bucket, name: b}]}]", &[("Accepted", "InvalidKind")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: web, port: 80, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]}, {name: web, port: 80}]}]", &[("UnsupportedValue", "ResolvedRefs")]),
        // The same filters on every backend (here: the one) are the rule's.
        ("team", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: web, port: 80, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]}]}]", &[("Accepted", "ResolvedRefs")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: gone, port: 80}}}], backendRefs: [{name: web, port: 80}]}]", &[("Accepted", "BackendNotFound")]),
        ("team", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{filters: [{type: ExtensionRef, extensionRef: {group: hookway.dev, kind: GatewayPlugin, name: nope}}], backendRefs: [{name: web, port: 80}]}]", &[("Accepted", "PluginNotFound")]),
        ("infra", "  parentRefs: [{name: gw, sectionName: same}, {name: gw, sectionName: web}, {name: elsewhere}]\n  hostnames: [b.example.org]", &[("Accepted", "ResolvedRefs"), ("NoMatchingListenerHostname", "ResolvedRefs")]),
    ];
    for (i, (ns, spec, want)) in cases.iter().enumerate() {
        let yaml = BASE.to_string() + &http_route(ns, "r", spec);
        let s = statuses(&yaml);
        let got: Vec<(String, String)> = s
            .http_routes
            .get(&ObjectKey::new(*ns, "r"))
            .map(|st| {
                st.parents
                    .iter()
                    .map(|p| {
                        assert_eq!(p.controller_name, "hookway.dev/gateway-controller");
                        (
                            p.conditions[0].reason.clone(),
                            p.conditions[1].reason.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "case {i}: {spec}");
    }
}

#[test]
fn gateway_and_class_status() {
    let yaml = BASE.to_string()
        + &http_route(
            "team",
            "a",
            "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]",
        )
        + &http_route("infra", "b", "  parentRefs: [{name: gw}]")
        + r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: broken, namespace: infra}
spec:
  gatewayClassName: hookway
  listeners:
  - {name: tcp, port: 9000, protocol: TCP}
  - name: tls
    port: 443
    protocol: HTTPS
    hostname: secure.example.com
    tls: {certificateRefs: [{name: cert, namespace: elsewhere}]}
    allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: TCPRoute}]}
  - {name: a, port: 80, protocol: HTTP, hostname: dup.example.com}
  - {name: b, port: 80, protocol: HTTP, hostname: dup.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: foreign, namespace: infra}
spec: {gatewayClassName: other, listeners: [{name: h, port: 80, protocol: HTTP}]}
"#;
    let s = statuses(&yaml);
    assert_eq!(
        s.gateway_classes.keys().collect::<Vec<_>>(),
        vec!["hookway"]
    );
    let class = &s.gateway_classes["hookway"];
    assert_eq!(
        conds(&class.conditions),
        vec![
            c3("Accepted", "True", "Accepted"),
            c3("SupportedVersion", "True", "SupportedVersion")
        ]
    );
    assert!(class
        .supported_features
        .iter()
        .any(|f| f.name == "HTTPRouteQueryParamMatching"));
    assert!(!s.gateways.contains_key(&ObjectKey::new("infra", "foreign")));

    let gw = &s.gateways[&ObjectKey::new("infra", "gw")];
    assert_eq!(gw.addresses[0].value, "10.1.2.3");
    assert_eq!(
        conds(&gw.conditions),
        vec![
            c3("Accepted", "True", "Accepted"),
            c3("Programmed", "True", "Programmed")
        ]
    );
    let attached: Vec<(&str, i32)> = gw
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.attached_routes))
        .collect();
    assert_eq!(attached, vec![("web", 2), ("same", 1)]);
    assert_eq!(gw.listeners[0].supported_kinds[0].kind, "HTTPRoute");
    assert_eq!(
        conds(&gw.listeners[0].conditions),
        vec![
            c3("Accepted", "True", "Accepted"),
            c3("Programmed", "True", "Programmed"),
            c3("ResolvedRefs", "True", "ResolvedRefs"),
            c3("Conflicted", "False", "NoConflicts"),
        ]
    );

    let broken = &s.gateways[&ObjectKey::new("infra", "broken")];
    let l = |name: &str| {
        let l = broken.listeners.iter().find(|l| l.name == name).unwrap();
        conds(&l.conditions)
    };
    assert_eq!(l("tcp")[0], c3("Accepted", "False", "UnsupportedProtocol"));
    assert_eq!(
        l("tls")[2],
        c3("ResolvedRefs", "False", "InvalidRouteKinds")
    );
    assert_eq!(l("tls")[1], c3("Programmed", "False", "Invalid"));
    assert_eq!(l("a")[3], c3("Conflicted", "True", "HostnameConflict"));
    assert_eq!(l("b")[3], c3("Conflicted", "True", "HostnameConflict"));
    // Only the TLS listener is usable (with unresolved refs): the Gateway is still accepted.
    assert_eq!(
        conds(&broken.conditions)[0],
        c3("Accepted", "True", "Accepted")
    );
}

#[test]
fn hookway_service_backends_share_by_weight() {
    // `spec.backends` is a plain hookway feature: (spec, expected endpoints or error reason).
    let base = BASE.to_string();
    let service = |spec: &str| {
        format!("apiVersion: hookway.dev/v1alpha1\nkind: Service\nmetadata: {{name: s, namespace: team}}\nspec: {spec}\n")
    };
    type Case<'a> = (&'a str, Result<&'a [(&'a str, u32)], &'a str>);
    let cases: &[Case<'_>] = &[
        (
            "{backends: [{name: web, port: 80, weight: 1}, {name: canary, port: 80, weight: 1}]}",
            Ok(&[("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.1.1", 2)]),
        ),
        (
            "{backends: [{name: web, port: 80}, {name: canary, port: 80, weight: 0}]}",
            Ok(&[("10.0.0.1", 1), ("10.0.0.2", 1)]),
        ),
        (
            "{backends: [{name: web, port: 80}, {name: missing, port: 80}]}",
            Ok(&[("10.0.0.1", 1), ("10.0.0.2", 1)]),
        ),
        (
            "{backends: [{name: web, port: 80}], balance: ip-hash}",
            Err("InvalidSpec"),
        ),
        (
            "{backends: [{name: infra/web, port: 80}]}",
            Err("InvalidSpec"),
        ),
        (
            "{backends: [{name: web, port: 80}], nodes: [{address: 10.9.9.9, port: 80}]}",
            Err("InvalidSpec"),
        ),
    ];
    for (spec, want) in cases {
        let (_, c) = compiled(&(base.clone() + &service(spec)));
        let report = &c.reports[&ObjectId {
            kind: Kind::Service,
            key: ObjectKey::new("team", "s"),
        }];
        match want {
            Ok(endpoints) => {
                assert!(report.accepted.status, "{spec}: {report:?}");
                let got: Vec<(String, u32)> = c
                    .snapshot
                    .upstream(&ObjectKey::new("team", "s"))
                    .unwrap()
                    .endpoints
                    .iter()
                    .map(|e| (e.address.clone(), e.weight))
                    .collect();
                let want: Vec<(String, u32)> =
                    endpoints.iter().map(|(a, w)| (a.to_string(), *w)).collect();
                assert_eq!(got, want, "{spec}");
                assert_eq!(
                    report.resolved_refs.status,
                    !spec.contains("missing"),
                    "{spec}: {report:?}"
                );
            }
            Err(reason) => assert_eq!(report.accepted.reason, *reason, "{spec}: {report:?}"),
        }
    }
}

#[test]
fn a_listener_hostname_owned_by_another_namespace_is_conflicted() {
    let yaml = BASE.to_string()
        + r#"
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {name: s, namespace: third}
spec: {nodes: [{address: 10.9.9.9, port: 80}]}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: first, namespace: third, creationTimestamp: '2020-01-01T00:00:00Z'}
spec: {hosts: [taken.example.org], service: s}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: late, namespace: infra, creationTimestamp: '2030-01-01T00:00:00Z'}
spec:
  gatewayClassName: hookway
  listeners:
  - {name: taken, port: 80, protocol: HTTP, hostname: taken.example.org}
  - {name: free, port: 80, protocol: HTTP, hostname: free.example.org}
"#;
    let s = statuses(&yaml);
    let late = &s.gateways[&ObjectKey::new("infra", "late")];
    let conflicted: Vec<(&str, String, String)> = late
        .listeners
        .iter()
        .map(|l| {
            let c = &l.conditions[3];
            (l.name.as_str(), c.status.clone(), c.reason.clone())
        })
        .collect();
    assert_eq!(
        conflicted,
        vec![
            ("taken", "True".to_string(), "HostnameConflict".to_string()),
            ("free", "False".to_string(), "NoConflicts".to_string()),
        ]
    );
    assert!(late.listeners[0].conditions[3]
        .message
        .contains("namespace \"third\""));
}

fn grpc_route(ns: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n---\n")
}

#[test]
fn grpc_route_lowering_gives_the_expected_snapshot() {
    // Method matches become paths, the rule's Service speaks HTTP/2 only, filters are plugins,
    // and an HTTPRoute of the same name lowers to other synthetic names.
    let yaml = BASE.to_string()
        + &grpc_route(
            "team",
            "shop",
            "  parentRefs: [{name: gw, namespace: infra, sectionName: web}]\n  hostnames: [grpc.example.com]\n  rules:\n  - matches:\n    - method: {service: shop.Cart, method: Add}\n    - method: {service: shop.Orders}\n      headers: [{name: X-Env, value: canary}]\n    - method: {method: Health}\n    - method: {type: RegularExpression, service: 'shop\\.v[0-9]+\\.Cart'}\n    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: X-Via, value: hookway}]}\n    backendRefs:\n    - {name: web, port: 80, weight: 3}\n    - {name: canary, port: 80, weight: 1}",
        )
        + &http_route(
            "team",
            "shop",
            "  parentRefs: [{name: gw, namespace: infra, sectionName: web}]\n  hostnames: [www.example.com]\n  rules: [{backendRefs: [{name: web, port: 80}]}]",
        );
    let (_, c) = compiled(&yaml);
    let rejected: Vec<_> = c.rejected().collect();
    assert!(rejected.is_empty(), "{rejected:#?}");
    let grpc = ObjectId {
        kind: Kind::GRPCRoute,
        key: ObjectKey::new("team", "shop"),
    };
    assert!(c.reports[&grpc].is_ok(), "{:?}", c.reports[&grpc]);
    let s = &c.snapshot;
    let routes: Vec<(&str, PathMatchType, &str, usize)> = s
        .routes
        .iter()
        .map(|r| {
            (
                r.key.name.as_str(),
                r.rules[0].path_type,
                r.rules[0].path.as_str(),
                r.rules[0].headers.len(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        vec![
            (
                "shop#grpc.r00.m00@infra.gw",
                PathMatchType::Exact,
                "/shop.Cart/Add",
                0
            ),
            (
                "shop#grpc.r00.m01@infra.gw",
                PathMatchType::Prefix,
                "/shop.Orders",
                1
            ),
            (
                "shop#grpc.r00.m02@infra.gw",
                PathMatchType::Regex,
                "/[^/]+/Health",
                0
            ),
            (
                "shop#grpc.r00.m03@infra.gw",
                PathMatchType::Regex,
                "/(?:shop\\.v[0-9]+\\.Cart)/[^/]+",
                0
            ),
            ("shop#r00.m00@infra.gw", PathMatchType::Prefix, "/", 0),
        ]
    );
    for r in &s.routes[..4] {
        let id = ObjectId {
            kind: Kind::Route,
            key: r.key.clone(),
        };
        assert_eq!(c.origins.get(&id), Some(&grpc), "{id:?}");
        assert_eq!(r.hosts, vec!["grpc.example.com".to_string()]);
        assert_eq!(
            r.chain
                .iter()
                .map(|e| e.plugin.as_str())
                .collect::<Vec<_>>(),
            vec!["headers"]
        );
    }
    let upstream = s
        .upstream(&ObjectKey::new("team", "shop#grpc.r00"))
        .unwrap();
    assert_eq!(upstream.protocol, UpstreamProtocol::Http2);
    assert_eq!(upstream.endpoints.len(), 3);
    let http = s.upstream(&ObjectKey::new("team", "shop#r00")).unwrap();
    assert_eq!(http.protocol, UpstreamProtocol::Auto);
}

#[test]
fn grpc_route_without_usable_backend_answers_unavailable() {
    // (backendRefs, expected mock share): none usable → every call; half the weight invalid →
    // half of the calls. HTTP 200 + `grpc-status: 14`, the spec's UNAVAILABLE.
    let cases: &[(&str, Option<serde_json::Value>)] = &[
        ("[]", None),
        ("[{name: missing, port: 80}]", None),
        (
            "[{name: web, port: 80}, {name: missing, port: 80}]",
            Some(serde_json::json!({"numerator": 1, "denominator": 2})),
        ),
    ];
    for (refs, share) in cases {
        let yaml = BASE.to_string()
            + &grpc_route(
                "team",
                "g",
                &format!("  parentRefs: [{{name: gw, namespace: infra}}]\n  hostnames: [g.example.com]\n  rules: [{{backendRefs: {refs}}}]"),
            );
        let (_, c) = compiled(&yaml);
        let route = &c.snapshot.routes[0];
        let mock = route
            .chain
            .iter()
            .find(|e| e.plugin == "mock")
            .unwrap_or_else(|| panic!("{refs}: {:?}", route.chain));
        assert_eq!(mock.config["status"], 200, "{refs}");
        assert_eq!(mock.config["headers"]["grpc-status"], "14", "{refs}");
        assert_eq!(
            mock.config["headers"]["content-type"], "application/grpc",
            "{refs}"
        );
        assert_eq!(mock.config.get("share"), share.as_ref(), "{refs}");
    }
}

#[test]
fn grpc_route_parent_status_has_the_spec_reasons() {
    // (spec, expected (Accepted reason, ResolvedRefs reason) per parent), for a GRPCRoute in
    // namespace team.
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: from-http, namespace: infra}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team}]\n  to: [{group: '', kind: Service}]\n---\n";
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("  parentRefs: [{name: gw, namespace: infra, sectionName: web}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: web, port: 80}]}]", &[("Accepted", "ResolvedRefs")]),
        ("  parentRefs: [{name: gw, namespace: infra, sectionName: same}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]", &[("NotAllowedByListeners", "ResolvedRefs")]),
        ("  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.org]", &[("NoMatchingListenerHostname", "ResolvedRefs")]),
        ("  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: missing, port: 80}]}]", &[("Accepted", "BackendNotFound")]),
        // A grant to HTTPRoutes does not cover GRPCRoutes.
        ("  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: web, namespace: infra, port: 80}]}]", &[("Accepted", "RefNotPermitted")]),
        ("  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{group: example.com, kind: Bucket, name: b}]}]", &[("Accepted", "InvalidKind")]),
        ("  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}], backendRefs: [{name: web, port: 80}]}]", &[("UnsupportedValue", "ResolvedRefs")]),
        ("  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{matches: [{method: {type: Prefix, service: a}}], backendRefs: [{name: web, port: 80}]}]", &[("UnsupportedValue", "ResolvedRefs")]),
        ("  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{matches: [{headers: [{type: Glob, name: a, value: b}]}], backendRefs: [{name: web, port: 80}]}]", &[("UnsupportedValue", "ResolvedRefs")]),
        ("  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [a.example.com]\n  rules: [{filters: [{type: ExtensionRef, extensionRef: {group: hookway.dev, kind: GatewayPlugin, name: nope}}], backendRefs: [{name: web, port: 80}]}]", &[("Accepted", "PluginNotFound")]),
    ];
    for (i, (spec, want)) in cases.iter().enumerate() {
        let yaml = BASE.to_string() + grant + &grpc_route("team", "g", spec);
        let s = statuses(&yaml);
        assert!(s.http_routes.is_empty());
        let got: Vec<(String, String)> = s
            .grpc_routes
            .get(&ObjectKey::new("team", "g"))
            .map(|st| {
                st.parents
                    .iter()
                    .map(|p| {
                        assert_eq!(p.controller_name, "hookway.dev/gateway-controller");
                        (
                            p.conditions[0].reason.clone(),
                            p.conditions[1].reason.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "case {i}: {spec}");
    }
}

#[test]
fn an_http_route_and_a_grpc_route_on_one_listener_host_accept_the_older() {
    // The spec (GRPCRouteSpec.hostnames): of an HTTPRoute and a GRPCRoute attached to one
    // listener with intersecting hostnames, only the older (then `namespace/name` first) is
    // accepted. Disjoint hostnames, or two routes of one kind, do not conflict.
    let route = |kind: &str, name: &str, created: &str, hosts: &str| {
        format!("apiVersion: gateway.networking.k8s.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: team, creationTimestamp: '{created}'}}\nspec:\n  parentRefs: [{{name: gw, namespace: infra, sectionName: web}}]\n  hostnames: {hosts}\n  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]\n---\n")
    };
    let yaml = BASE.to_string()
        + &route(
            "HTTPRoute",
            "old-http",
            "2020-01-01T00:00:00Z",
            "[a.example.com]",
        )
        + &route(
            "GRPCRoute",
            "new-grpc",
            "2021-01-01T00:00:00Z",
            "['*.example.com']",
        )
        + &route(
            "GRPCRoute",
            "old-grpc",
            "2019-01-01T00:00:00Z",
            "[b.example.com]",
        )
        + &route(
            "HTTPRoute",
            "new-http",
            "2022-01-01T00:00:00Z",
            "[b.example.com]",
        )
        + &route(
            "GRPCRoute",
            "alone",
            "2022-01-01T00:00:00Z",
            "[c.example.org]",
        )
        + &route(
            "HTTPRoute",
            "twin",
            "2020-01-01T00:00:00Z",
            "[a.example.com]",
        );
    let s = statuses(&yaml);
    let accepted =
        |map: &std::collections::BTreeMap<ObjectKey, hookway_crds::gateway_api::RouteStatus>,
         name: &str| {
            let c = &map[&ObjectKey::new("team", name)].parents[0].conditions[0];
            (c.reason.clone(), c.message.clone())
        };
    assert_eq!(accepted(&s.http_routes, "old-http").0, "Accepted");
    assert_eq!(accepted(&s.http_routes, "twin").0, "Accepted");
    let (reason, message) = accepted(&s.grpc_routes, "new-grpc");
    assert_eq!(reason, "HostConflict");
    assert!(message.contains("HTTPRoute team/old-http"), "{message}");
    assert_eq!(accepted(&s.grpc_routes, "old-grpc").0, "Accepted");
    let (reason, message) = accepted(&s.http_routes, "new-http");
    assert_eq!(reason, "HostConflict");
    assert!(message.contains("GRPCRoute team/old-grpc"), "{message}");
    // c.example.org does not match the listener's *.example.com at all.
    assert_eq!(
        accepted(&s.grpc_routes, "alone").0,
        "NoMatchingListenerHostname"
    );
    // The refused ones are not served; the accepted ones are.
    let (_, c) = compiled(&yaml);
    let served: std::collections::BTreeSet<&str> = c
        .snapshot
        .routes
        .iter()
        .map(|r| r.key.name.split('#').next().unwrap())
        .collect();
    assert_eq!(
        served,
        ["old-grpc", "old-http", "twin"].into_iter().collect()
    );
    let gw = &s.gateways[&ObjectKey::new("infra", "gw")];
    assert_eq!(gw.listeners[0].attached_routes, 3);
}

#[test]
fn listeners_list_and_count_grpc_routes() {
    let yaml = BASE.to_string()
        + &grpc_route("team", "g", "  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [g.example.com]\n  rules: [{backendRefs: [{name: web, port: 80}]}]")
        + &grpc_route("infra", "h", "  parentRefs: [{name: only-grpc}, {name: only-http}]\n  rules: [{backendRefs: [{name: web, namespace: team, port: 80}]}]")
        + r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: only-grpc, namespace: infra}
spec:
  gatewayClassName: hookway
  listeners: [{name: g, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: only-http, namespace: infra}
spec:
  gatewayClassName: hookway
  listeners: [{name: h, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}]
"#;
    let s = statuses(&yaml);
    let gw = &s.gateways[&ObjectKey::new("infra", "gw")];
    let kinds: Vec<&str> = gw.listeners[0]
        .supported_kinds
        .iter()
        .map(|k| k.kind.as_str())
        .collect();
    assert_eq!(kinds, vec!["HTTPRoute", "GRPCRoute"]);
    assert_eq!(gw.listeners[0].attached_routes, 1);
    let only = &s.gateways[&ObjectKey::new("infra", "only-grpc")];
    assert_eq!(only.listeners[0].supported_kinds.len(), 1);
    assert_eq!(only.listeners[0].attached_routes, 1);
    assert_eq!(
        s.gateways[&ObjectKey::new("infra", "only-http")].listeners[0].attached_routes,
        0
    );
    let parents: Vec<String> = s.grpc_routes[&ObjectKey::new("infra", "h")]
        .parents
        .iter()
        .map(|p| p.conditions[0].reason.clone())
        .collect();
    assert_eq!(parents, vec!["Accepted", "NotAllowedByListeners"]);
    let features: Vec<&str> = s.gateway_classes["hookway"]
        .supported_features
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert!(features.contains(&"GRPCRoute"), "{features:?}");
}

#[test]
fn grpc_route_mirrors_speak_http2_and_host_claims_name_the_grpc_route() {
    // A RequestMirror of a GRPCRoute goes to a synthetic Service that speaks HTTP/2 as the
    // rule's does; a hookway Route of another namespace claiming the GRPCRoute's host later is
    // refused with a message naming the GRPCRoute.
    let yaml = BASE.to_string()
        + &grpc_route(
            "infra",
            "g",
            "  parentRefs: [{name: gw}]\n  hostnames: [grpc.example.com]\n  rules:\n  - filters:\n    - type: RequestMirror\n      requestMirror: {backendRef: {name: web, namespace: team, port: 80}}\n    backendRefs: [{name: web, namespace: team, port: 80}]",
        )
        + "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: grpc, namespace: team}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: infra}]\n  to: [{group: '', kind: Service}]\n---\n"
        + "apiVersion: hookway.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: third}\nspec: {nodes: [{address: 10.9.9.9, port: 80}]}\n---\napiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {name: late, namespace: third, creationTimestamp: '2030-01-01T00:00:00Z'}\nspec: {hosts: [grpc.example.com], service: s}\n";
    let (_, c) = compiled(&yaml);
    let g = ObjectId {
        kind: Kind::GRPCRoute,
        key: ObjectKey::new("infra", "g"),
    };
    assert!(c.reports[&g].is_ok(), "{:?}", c.reports[&g]);
    for name in ["g#grpc.r00", "g#grpc.r00.mirror00"] {
        let up = c
            .snapshot
            .upstream(&ObjectKey::new("infra", name))
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(up.protocol, UpstreamProtocol::Http2, "{name}");
    }
    let chain: Vec<&str> = c.snapshot.routes[0]
        .chain
        .iter()
        .map(|e| e.plugin.as_str())
        .collect();
    assert_eq!(chain, vec!["request_mirror"]);
    let late = &c.reports[&ObjectId {
        kind: Kind::Route,
        key: ObjectKey::new("third", "late"),
    }];
    assert_eq!(late.accepted.reason, "HostConflict");
    assert!(
        late.accepted.message.contains("GRPCRoute infra/g"),
        "{}",
        late.accepted.message
    );
}
