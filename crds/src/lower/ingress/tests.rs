//! Ingress → snapshot, through the whole compiler: table tests of the lowering.

use crate::catalogue::PluginConfig;
use crate::compiler::{compile, Compiled, Kind, ObjectId, ObjectReport, Objects, Options};
use crate::snapshot::{ObjectKey, PathMatchType, RouteEntry};
use crate::Catalogue;

/// Accepts any config (the real validators live in the proxy crate).
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Any(#[allow(dead_code)] serde_json::Value);
impl PluginConfig for Any {}

fn catalogue() -> Catalogue {
    let mut c = Catalogue::new();
    for s in super::plugins::ALL {
        c.register::<Any>(s.plugin);
    }
    c.register::<Any>("headers");
    c
}

const CLASS: &str = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: hookway}
spec: {controller: hookway.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1]}]
";

fn compiled(ingresses: &str) -> Compiled {
    let mut objects = Objects::default();
    crate::manifests::parse_into(
        &format!("{CLASS}\n---\n{ingresses}"),
        "t.yaml",
        "shop",
        &mut objects,
    )
    .unwrap();
    compile(&objects, &Options::default(), &catalogue())
}

fn report<'a>(c: &'a Compiled, name: &str) -> &'a ObjectReport {
    c.reports
        .get(&ObjectId {
            kind: Kind::Ingress,
            key: ObjectKey::new("shop", name),
        })
        .unwrap_or_else(|| panic!("no report for Ingress {name}: {:?}", c.reports.keys()))
}

fn routes<'a>(c: &'a Compiled, ingress: &str) -> Vec<&'a RouteEntry> {
    let prefix = format!("{ingress}#");
    c.snapshot
        .routes
        .iter()
        .filter(|r| r.key.name.starts_with(&prefix))
        .map(|r| &**r)
        .collect()
}

fn ingress(name: &str, annotations: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  ingressClassName: hookway\n{spec}"
    )
}

const RULES: &str = "  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: web, port: {name: http}}}}
      - {path: /impl/, pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}
";

#[test]
fn rules_become_routes_to_synthetic_services() {
    let c = compiled(&ingress("a", "", RULES));
    let r = report(&c, "a");
    assert!(r.is_ok(), "{r:?}");
    let got: Vec<(String, Vec<String>, PathMatchType, String, String)> = routes(&c, "a")
        .iter()
        .map(|r| {
            (
                r.key.name.clone(),
                r.hosts.clone(),
                r.rules[0].path_type,
                r.rules[0].path.clone(),
                r.upstream.name.clone(),
            )
        })
        .collect();
    let host = vec!["shop.example.com".to_string()];
    assert_eq!(
        got,
        vec![
            (
                "a#r0p0".into(),
                host.clone(),
                PathMatchType::Prefix,
                "/api".into(),
                "a#web-80".into()
            ),
            (
                "a#r0p1".into(),
                host.clone(),
                PathMatchType::Exact,
                "/exact".into(),
                "a#web-80".into()
            ),
            (
                "a#r0p2".into(),
                host,
                PathMatchType::Prefix,
                "/impl".into(),
                "a#web-80".into()
            ),
        ]
    );
    let upstream = c
        .snapshot
        .upstreams
        .iter()
        .find(|u| u.key == ObjectKey::new("shop", "a#web-80"))
        .expect("synthetic upstream");
    assert_eq!(upstream.endpoints.len(), 1);
    assert_eq!(upstream.endpoints[0].port, 8080);
    // No report carries a synthetic name.
    assert!(
        c.reports.keys().all(|id| !id.key.name.contains('#')),
        "{:?}",
        c.reports.keys()
    );
}

#[test]
fn other_classes_are_ignored_and_class_less_need_a_default() {
    let other =
        ingress("n", "", RULES).replace("ingressClassName: hookway", "ingressClassName: nginx");
    let none = ingress("none", "", RULES).replace("  ingressClassName: hookway\n", "");
    let c = compiled(&format!("{other}\n---\n{none}"));
    assert!(
        c.reports.keys().all(|id| id.kind != Kind::Ingress),
        "{:?}",
        c.reports.keys()
    );
    assert!(c.snapshot.routes.is_empty());
}

#[test]
fn default_backend_tls_and_regex() {
    let spec = format!(
        "  defaultBackend: {{service: {{name: web, port: {{number: 80}}}}}}\n  tls: [{{hosts: [shop.example.com], secretName: missing-cert}}]\n{RULES}"
    );
    let c = compiled(&ingress(
        "d",
        "nginx.ingress.kubernetes.io/use-regex: \"true\"",
        &spec,
    ));
    let names: Vec<(&str, i32, &str)> = routes(&c, "d")
        .iter()
        .map(|r| (r.key.name.as_str(), r.priority, r.rules[0].path.as_str()))
        .collect();
    assert!(names.contains(&("d#default", -1, "(?i)/.*")), "{names:?}");
    assert!(names.contains(&("d#r0p0", 4, "(?i)/api.*")), "{names:?}");
    assert!(names.contains(&("d#r0p1", 0, "/exact")), "{names:?}");
    let r = report(&c, "d");
    assert_eq!(r.resolved_refs.reason, "SecretNotFound", "{r:?}");
    assert!(
        r.resolved_refs
            .message
            .starts_with("rule host \"shop.example.com\" path \"/api\": "),
        "{}",
        r.resolved_refs.message
    );
    // TLS hosts get the ssl-redirect (ingress-nginx's default).
    let route = routes(&c, "d")
        .into_iter()
        .find(|r| r.key.name == "d#r0p0")
        .unwrap();
    assert!(
        route
            .chain
            .iter()
            .any(|e| e.alias == "ingress#ssl-redirect"),
        "{:?}",
        route.chain
    );
}

#[test]
fn bad_annotation_rejects_only_that_ingress() {
    let bad = ingress(
        "bad",
        "nginx.ingress.kubernetes.io/limit-rps: \"lots\"",
        RULES,
    );
    let good = ingress(
        "good",
        "",
        &RULES.replace("shop.example.com", "other.example.com"),
    );
    let c = compiled(&format!("{bad}\n---\n{good}"));
    let r = report(&c, "bad");
    assert!(!r.accepted.status);
    assert_eq!(r.accepted.reason, "InvalidAnnotation");
    assert!(
        r.accepted
            .message
            .contains("nginx.ingress.kubernetes.io/limit-rps: \"lots\""),
        "{}",
        r.accepted.message
    );
    assert!(routes(&c, "bad").is_empty());
    assert!(report(&c, "good").is_ok());
    assert_eq!(routes(&c, "good").len(), 3);
}

#[test]
fn plugins_annotation_references_gateway_plugins() {
    let plugin = "apiVersion: hookway.dev/v1alpha1\nkind: GatewayPlugin\nmetadata: {name: tag, namespace: shop}\nspec: {plugin: headers, config: {response: {set: {x-tag: t}}}}";
    let c = compiled(&format!(
        "{plugin}\n---\n{}\n---\n{}",
        ingress("p", "hookway.dev/plugins: \"tag\"", RULES),
        ingress(
            "q",
            "hookway.dev/plugins: \"missing\"",
            &RULES.replace("shop.example.com", "q.example.com")
        ),
    ));
    assert!(report(&c, "p").is_ok());
    for r in routes(&c, "p") {
        assert_eq!(r.chain.len(), 1);
        assert_eq!(r.chain[0].alias, "tag");
    }
    let q = report(&c, "q");
    assert_eq!(q.resolved_refs.reason, "PluginNotFound", "{q:?}");
    assert!(routes(&c, "q").is_empty());
    assert_eq!(report(&c, "p").chain[0].alias, "tag");
}

#[test]
fn canary_adds_traffic_splitting_to_the_main_ingress() {
    let canary = ingress(
        "c",
        "nginx.ingress.kubernetes.io/canary: \"true\", nginx.ingress.kubernetes.io/canary-by-header: X-Canary",
        "  rules:\n  - host: shop.example.com\n    http:\n      paths:\n      - {path: /api, pathType: Prefix, backend: {service: {name: web, port: {number: 81}}}}\n      - {path: /nomain, pathType: Prefix, backend: {service: {name: web, port: {number: 81}}}}\n",
    );
    let c = compiled(&format!("{}\n---\n{canary}", ingress("m", "", RULES)));
    assert!(routes(&c, "c").is_empty(), "a canary serves nothing itself");
    let api = routes(&c, "m")
        .into_iter()
        .find(|r| r.key.name == "m#r0p0")
        .unwrap();
    let entry = api
        .chain
        .iter()
        .find(|e| e.alias == "ingress#canary")
        .expect("canary plugin");
    assert_eq!(entry.config["service"], "c#web-81");
    assert_eq!(entry.config["header"]["name"], "X-Canary");
    let w = &report(&c, "c").warnings;
    assert!(
        w.iter()
            .any(|w| w.starts_with("CanaryUnused: ") && w.contains("/nomain")),
        "{w:?}"
    );
}

#[test]
fn host_claims_follow_route_ownership() {
    let mine = ingress("mine", "", RULES);
    let theirs = ingress("theirs", "", RULES).replace(
        "name: theirs",
        "name: theirs\n  namespace: other\n  creationTimestamp: \"2030-01-01T00:00:00Z\"",
    );
    let c = compiled(&format!("{mine}\n---\n{theirs}"));
    let id = ObjectId {
        kind: Kind::Ingress,
        key: ObjectKey::new("other", "theirs"),
    };
    let r = &c.reports[&id];
    assert_eq!(r.accepted.reason, "HostConflict", "{r:?}");
}

#[test]
fn regex_mode_spreads_to_every_ingress_of_the_host_and_longer_paths_win() {
    let regex = ingress(
        "rx",
        "nginx.ingress.kubernetes.io/rewrite-target: /$2",
        "  rules:\n  - host: shop.example.com\n    http:\n      paths:\n      - {path: /api(/|$)(.*), pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}\n",
    );
    let plain = ingress(
        "plain",
        "",
        "  defaultBackend: {service: {name: web, port: {number: 80}}}\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n      - {path: /x, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}\n  - host: other.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n",
    );
    let c = compiled(&format!("{regex}\n---\n{plain}"));
    assert!(report(&c, "plain").is_ok(), "{:?}", report(&c, "plain"));
    let got = |name: &str| {
        let r = c
            .snapshot
            .routes
            .iter()
            .find(|r| r.key.name == name)
            .unwrap();
        (r.rules[0].path_type, r.rules[0].path.clone(), r.priority)
    };
    use PathMatchType::*;
    assert_eq!(got("rx#r0p0"), (Regex, "(?i)/api(/|$)(.*).*".into(), 13));
    assert_eq!(
        got("plain#r0p0"),
        (Regex, "(?i)/.*".into(), 1),
        "same host: regex too"
    );
    assert_eq!(
        got("plain#r0p1"),
        (Exact, "/x".into(), 0),
        "Exact stays exact"
    );
    assert_eq!(
        got("plain#r1p0"),
        (Prefix, "/".into(), 0),
        "another host is untouched"
    );
    assert_eq!(got("plain#default"), (Regex, "(?i)/.*".into(), -1));
}
