//! Against a real kube-apiserver (`hookway_tests::real_api`): the generated CRDs apply without
//! warnings and read like a manual in `kubectl explain`; the Helm chart installs; the controller
//! runs under the chart's ServiceAccount (RBAC for real) with two proxies streaming from it; the
//! examples' statuses come back `Accepted` and `Programmed` by both, and the proxies serve them.
//!
//! One API server serves every test of this binary. Without the binary (`HOOKWAY_KUBE_APISERVER`,
//! default `../shared/k8s/bin/kube-apiserver`) every test passes after one line saying so.

use std::io::Write;
use std::process::Command;

use hookway_crds::{GatewayPlugin, Route};
use hookway_tests::real_api::{self, apply, status, wait, WAIT};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

/// `kubectl explain` wraps descriptions to this many columns (indent included).
const EXPLAIN_WIDTH: usize = 80;

#[test]
fn generated_crds_apply_without_warnings() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    assert_eq!(
        cluster.crd_warnings,
        Vec::<String>::new(),
        "the API server warned while charts/hookway/crds were applied"
    );
}

#[test]
fn a_format_kubernetes_does_not_know_is_caught_as_a_warning() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    // The check above can fail: the same apply path sees the warning of an unknown format.
    let cases = [
        ("uint32", Some(r#"unrecognized format \"uint32\""#)),
        ("uint16", Some(r#"unrecognized format \"uint16\""#)),
        ("int64", None),
        ("int32", None),
    ];
    cluster.run(async {
        let admin = cluster.admin().await;
        for (i, (format, want)) in cases.into_iter().enumerate() {
            let crd = json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("probes{i}.formats.hookway.test")},
                "spec": {
                    "group": "formats.hookway.test", "scope": "Namespaced",
                    "names": {"kind": format!("Probe{i}"), "plural": format!("probes{i}")},
                    "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                        "openAPIV3Schema": {"type": "object", "properties": {
                            "n": {"type": "integer", "format": format}}}}}]
                }
            });
            let applied = apply::apply(&admin, &crd).await.expect("apply probe CRD");
            match want {
                Some(text) => assert!(
                    applied.warnings.iter().any(|w| w.contains(text)),
                    "{format}: want a warning with {text}, got {:?}",
                    applied.warnings
                ),
                None => assert_eq!(applied.warnings, Vec::<String>::new(), "{format}"),
            }
        }
    });
}

/// Every newline in `description` that is not a paragraph break, a list item, a fence or an
/// indented code line: the hard wraps `kubectl explain` would show in mid-sentence.
fn hard_wraps(description: &str) -> Vec<String> {
    let lines: Vec<&str> = description.lines().collect();
    let mut fenced = false;
    let mut found = Vec::new();
    for pair in lines.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        if before.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let structural = |l: &str| {
            let t = l.trim_start();
            l.trim().is_empty()
                || l.starts_with("    ")
                || t.starts_with("```")
                || t.starts_with("- ")
                || t.starts_with("* ")
                || t.split_once(". ")
                    .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        };
        if !fenced && !before.trim().is_empty() && !structural(after) {
            found.push(format!("{before:?} / {after:?}"));
        }
    }
    found
}

/// Every `description` under the schemas whose names start with `prefix`.
fn descriptions<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("description", Value::String(s)) => out.push(s),
                    _ => descriptions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| descriptions(v, out)),
        _ => {}
    }
}

#[test]
fn served_descriptions_are_paragraphs() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    // What `kubectl explain` reads: the API server's OpenAPI v3 document for hookway.dev.
    let document: Value = cluster.run(async {
        let admin = cluster.admin().await;
        let request = http::Request::get("/openapi/v3/apis/hookway.dev/v1alpha1")
            .body(Vec::new())
            .unwrap();
        let text = admin.request_text(request).await.expect("openapi v3");
        serde_json::from_str(&text).expect("openapi v3 is JSON")
    });
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    let mut found = Vec::new();
    for (name, schema) in schemas {
        if name.starts_with("dev.hookway.") {
            descriptions(schema, &mut found);
        }
    }
    assert!(
        found.len() > 50,
        "only {} hookway descriptions served",
        found.len()
    );
    let wrapped: Vec<String> = found.iter().flat_map(|d| hard_wraps(d)).collect();
    assert!(
        wrapped.is_empty(),
        "hard-wrapped descriptions: {wrapped:#?}"
    );
    // The checker itself catches a wrap.
    assert_eq!(
        hard_wraps("matches (or `hosts` is empty) and it\nmatches at least one rule").len(),
        1
    );
    let route = &schemas["dev.hookway.v1alpha1.Route"]["properties"]["spec"];
    let spec = route["description"]
        .as_str()
        .expect("Route spec description");
    assert!(
        spec.contains("(or `hosts` is empty) and it matches at least one of `rules`"),
        "{spec}"
    );
}

/// The DESCRIPTION paragraphs of `kubectl explain` output, each as its lines.
fn explain_paragraphs(output: &str) -> Vec<Vec<String>> {
    let mut paragraphs = vec![Vec::new()];
    for line in output
        .lines()
        .skip_while(|l| !l.starts_with("DESCRIPTION:"))
        .skip(1)
        .take_while(|l| !l.starts_with("FIELDS:"))
    {
        if line.trim().is_empty() {
            paragraphs.push(Vec::new());
        } else {
            paragraphs
                .last_mut()
                .expect("a paragraph")
                .push(line.to_string());
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    paragraphs
}

/// Line breaks inside a paragraph that the wrap width did not force.
fn early_breaks(paragraph: &[String]) -> Vec<String> {
    paragraph
        .windows(2)
        .filter(|pair| {
            let next = pair[1].trim_start();
            let word = next.split_whitespace().next().unwrap_or_default();
            let list = next.starts_with("- ") || next.starts_with("* ");
            !list && pair[0].chars().count() + 1 + word.chars().count() <= EXPLAIN_WIDTH
        })
        .map(|pair| format!("{:?} / {:?}", pair[0], pair[1]))
        .collect()
}

#[test]
fn kubectl_explain_reads_like_a_manual() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        // Past the harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr().lock(),
            "kubectl_explain_reads_like_a_manual: no kubectl on PATH; \
             served_descriptions_are_paragraphs checks the same descriptions"
        );
        return;
    }
    let cache = cluster.server.dir.join("kubectl-cache");
    let explain = |field: &str| -> Result<String, String> {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&cluster.server.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["explain", field])
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    };
    // field, the start of its first paragraph
    let cases = [
        (
            "hrt.spec",
            "Routes requests to a Service of the same namespace",
        ),
        ("hrt.spec.hosts", "Host names this Route serves"),
        ("gwp.spec", "A plugin instance."),
        ("gwp.spec.policy", "Policy binding every namespace"),
        ("hsvc.spec.retries", "Retries of idempotent requests"),
        ("hsvc.spec.nodes.weight", "Relative weight"),
    ];
    for (field, starts) in cases {
        let output = cluster
            .run(wait::until(
                &format!("kubectl explain {field}"),
                WAIT,
                || async { explain(field) },
            ))
            .expect("kubectl explain");
        let paragraphs = explain_paragraphs(&output);
        assert!(
            !paragraphs.is_empty(),
            "{field}: no DESCRIPTION in {output}"
        );
        assert!(
            paragraphs[0][0].trim_start().starts_with(starts),
            "{field}: {output}"
        );
        let early: Vec<String> = paragraphs.iter().flat_map(|p| early_breaks(p)).collect();
        assert!(
            early.is_empty(),
            "{field}: lines broken early: {early:#?}\n{output}"
        );
    }
    // The check catches what issue 19 saw.
    let before = [
        "    A request matches the Route when its host matches one of `hosts` (or `hosts`"
            .to_string(),
        "    is empty) and it".to_string(),
        "    matches at least one of `rules` (or `rules` is empty). When several Routes"
            .to_string(),
    ];
    assert_eq!(early_breaks(&before).len(), 1);
}

#[test]
fn the_controller_runs_as_the_charts_service_account_with_its_rbac() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    let chart = &cluster.chart;
    cluster.run(async {
        let client = cluster.as_controller().await;
        let review = Api::<SelfSubjectReview>::all(client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .expect("self subject review");
        let user = review
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username);
        assert_eq!(
            user.as_deref(),
            Some(
                format!(
                    "system:serviceaccount:{}:{}",
                    chart.namespace, chart.controller_service_account
                )
                .as_str()
            )
        );
        // verb, group, resource, namespace ("" = all), allowed
        let ns = chart.namespace.as_str();
        let cases = [
            ("watch", "hookway.dev", "routes", "", true),
            ("patch", "hookway.dev", "routes/status", "team-a", true),
            ("update", "hookway.dev", "routes", "team-a", false),
            ("delete", "hookway.dev", "gatewayplugins", "team-a", false),
            ("list", "", "secrets", "", true),
            ("get", "", "secrets", "team-a", false),
            ("watch", "", "configmaps", "", true),
            ("get", "", "configmaps", "team-a", false),
            ("update", "", "configmaps", "team-a", false),
            ("create", "coordination.k8s.io", "leases", ns, true),
            ("create", "coordination.k8s.io", "leases", "team-a", false),
            ("create", "events.k8s.io", "events", "team-b", true),
            ("create", "", "pods", ns, false),
            ("watch", "gateway.networking.k8s.io", "httproutes", "", true),
            ("watch", "gateway.networking.k8s.io", "grpcroutes", "", true),
            (
                "patch",
                "gateway.networking.k8s.io",
                "grpcroutes/status",
                "team-a",
                true,
            ),
            (
                "update",
                "gateway.networking.k8s.io",
                "grpcroutes",
                "team-a",
                false,
            ),
            (
                "list",
                "gateway.networking.k8s.io",
                "gatewayclasses",
                "",
                true,
            ),
            (
                "patch",
                "gateway.networking.k8s.io",
                "gateways/status",
                "team-a",
                true,
            ),
            (
                "patch",
                "gateway.networking.k8s.io",
                "httproutes/status",
                "team-a",
                true,
            ),
            (
                "update",
                "gateway.networking.k8s.io",
                "httproutes",
                "team-a",
                false,
            ),
            (
                "patch",
                "gateway.networking.k8s.io",
                "gateways",
                "team-a",
                false,
            ),
        ];
        let reviews: Api<SelfSubjectAccessReview> = Api::all(client);
        for (verb, group, resource, namespace, allowed) in cases {
            let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(verb.into()),
                        group: Some(group.into()),
                        resource: Some(resource.into()),
                        subresource: Some(subresource.into()),
                        namespace: Some(namespace.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = reviews
                .create(&PostParams::default(), &review)
                .await
                .expect("access review");
            assert_eq!(
                answer.status.map(|s| s.allowed),
                Some(allowed),
                "{verb} {group}/{resource}/{subresource} in {namespace:?}"
            );
        }
    });
}

/// Waits until Route `namespace/name` is Accepted, has resolved references and is Programmed on
/// both proxies; returns its status.
async fn served_by_both_proxies(admin: &kube::Client, namespace: &str, name: &str) -> Value {
    let metrics = &real_api::cluster().expect("cluster").controller_metrics;
    wait::until("the leader counts both proxies", WAIT, || async {
        match metrics.fleet_proxies.get() {
            2 => Ok(()),
            n => Err(format!("fleet of {n}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for (type_, reason_or_message) in [
        ("Accepted", "Accepted"),
        ("ResolvedRefs", "ResolvedRefs"),
        ("Programmed", "Programmed"),
    ] {
        status::wait_condition::<Route>(
            admin,
            namespace,
            name,
            type_,
            "True",
            reason_or_message,
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let route = status::api::<Route>(admin, namespace)
        .get(name)
        .await
        .expect("route");
    route.data["status"].clone()
}

fn chain(status: &Value) -> Vec<String> {
    status["chain"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["alias"].as_str().map(String::from))
        .collect()
}

#[test]
fn quickstart_is_accepted_programmed_and_served_by_both_proxies() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    cluster.run(async {
        let admin = cluster.admin().await;
        for route in ["hello", "upstream"] {
            served_by_both_proxies(&admin, "default", route).await;
        }
        let root = &cluster.chart.root_namespace;
        let hello = status::wait_condition::<GatewayPlugin>(
            &admin, root, "hello", "Accepted", "True", "Accepted", WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hello.data["status"]["routes"], json!(1), "{:?}", hello.data);
        for proxy in 0..cluster.proxies.len() {
            let (code, headers, body) = cluster
                .get(proxy, "localhost", "/hello", &[])
                .await
                .expect("GET /hello");
            assert_eq!(
                (code, body.as_str()),
                (200, "hello from hookway\n"),
                "proxy {proxy}"
            );
            assert_eq!(headers["x-served-by"], "hookway", "proxy {proxy}");
            assert!(
                headers.contains_key("x-request-id"),
                "proxy {proxy}: {headers:?}"
            );
        }
    });
}

#[test]
fn multi_tenant_statuses_read_back_and_the_platform_locks_hold() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    cluster.run(async {
        let admin = cluster.admin().await;
        let api = served_by_both_proxies(&admin, "team-a", "api").await;
        let status_route = served_by_both_proxies(&admin, "team-a", "status").await;
        let web = served_by_both_proxies(&admin, "team-b", "web-api").await;

        let only = |chain: Vec<String>, of: &[&str]| -> Vec<String> {
            chain
                .into_iter()
                .filter(|a| of.contains(&a.as_str()))
                .collect()
        };
        let tenant = [
            "access-log",
            "platform-rate-limit",
            "team-a-auth",
            "team-b-cors",
        ];
        assert_eq!(
            only(chain(&api), &tenant),
            ["access-log", "platform-rate-limit", "team-a-auth"]
        );
        assert_eq!(
            only(chain(&status_route), &tenant),
            ["access-log", "platform-rate-limit"]
        );
        assert_eq!(
            only(chain(&web), &tenant),
            ["access-log", "team-b-cors", "platform-rate-limit"]
        );
        let warnings = status_route["warnings"].to_string();
        assert!(warnings.contains("PluginLocked"), "{warnings}");

        // team-a's keys come from its Secret, read by the controller under its own RBAC.
        let (code, _, body) = cluster
            .get(0, "a.example.com", "/v1/orders", &[])
            .await
            .unwrap();
        assert_eq!(code, 401, "no key: {body}");
        let key = [("authorization", "a3c5f0e2-1d4b-4f7a-9c61-2b8e7d9f0a11")];
        let (code, _, body) = cluster
            .get(1, "a.example.com", "/v1/orders", &key)
            .await
            .unwrap();
        assert_ne!(code, 401, "a key of team-a-keys is accepted: {body}");
    });
}

#[test]
fn without_the_binary_the_harness_says_what_is_absent() {
    let root = std::env::temp_dir().join(format!("hookway-no-k8s-{}", std::process::id()));
    let cases: [(Option<&str>, &str); 2] = [
        (None, "shared/k8s/bin/kube-apiserver is absent"),
        (
            Some("/nonexistent/kube-apiserver"),
            "/nonexistent/kube-apiserver is absent",
        ),
    ];
    for (binary, want) in cases {
        let found = real_api::server::Location::find_from(&root, binary.map(Into::into));
        match found {
            Err(reason) => assert!(reason.ends_with(want), "{reason}"),
            Ok(location) => panic!("found {location:?} under {}", root.display()),
        }
    }
}

/// A `kubernetes.io/tls` Secret whose key does not belong to its certificate (the API server
/// accepts it).
fn mismatched_tls_secret(namespace: &str, name: &str, host: &str) -> Value {
    let cert_key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
        .expect("params")
        .self_signed(&cert_key)
        .expect("certificate");
    let other_key = rcgen::KeyPair::generate().expect("key");
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"tls.crt": cert.pem(), "tls.key": other_key.serialize_pem()}
    })
}

fn iso_route(namespace: &str, name: &str, host: &str, tls: Option<&str>, prefix: &str) -> Value {
    let mut spec = json!({
        "hosts": [host],
        "rules": [{"path": {"type": "Prefix", "value": prefix}}],
        "service": "svc",
    });
    if let Some(secret) = tls {
        spec["tls"] = json!({"secretName": secret});
    }
    json!({
        "apiVersion": "hookway.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec
    })
}

#[test]
fn a_broken_tls_secret_and_a_host_hijack_stay_on_their_own_status() {
    let Some(cluster) = real_api::cluster() else {
        return;
    };
    cluster.run(async {
        let admin = cluster.admin().await;
        let upstream = hookway_tests::upstream::start().await;
        for ns in ["iso-a", "iso-b"] {
            let docs = [
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                json!({
                    "apiVersion": "hookway.dev/v1alpha1", "kind": "Service",
                    "metadata": {"name": "svc", "namespace": ns},
                    "spec": {"nodes": [{"address": upstream.ip().to_string(), "port": upstream.port()}]}
                }),
            ];
            for doc in &docs {
                apply::apply(&admin, doc).await.expect("apply");
            }
        }
        // team A owns a host first; team B then brings a broken TLS Secret and claims A's host.
        apply::apply(&admin, &iso_route("iso-a", "owner", "owned.iso.example", None, "/"))
            .await
            .expect("owner route");
        served_by_both_proxies(&admin, "iso-a", "owner").await;
        for doc in [
            mismatched_tls_secret("iso-b", "broken-tls", "tls.iso.example"),
            iso_route("iso-b", "tls", "tls.iso.example", Some("broken-tls"), "/"),
            iso_route("iso-b", "hijack", "owned.iso.example", None, "/"),
        ] {
            apply::apply(&admin, &doc).await.expect("apply");
        }
        let broken = status::wait_condition::<Route>(
            &admin, "iso-b", "tls", "ResolvedRefs", "False", "InvalidCertificate", WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let hijack = status::wait_condition::<Route>(
            &admin, "iso-b", "hijack", "Accepted", "False", "HostConflict", WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let message = status::conditions(&hijack)
            .into_iter()
            .find(|c| c.type_ == "Accepted")
            .map(|c| c.message)
            .unwrap_or_default();
        assert!(message.contains("iso-a"), "the owner is named: {message}");
        assert!(!status::conditions(&broken).is_empty());

        // Every later change of team A still applies, on both proxies.
        apply::apply(&admin, &iso_route("iso-a", "owner", "owned.iso.example", None, "/v2"))
            .await
            .expect("owner change");
        served_by_both_proxies(&admin, "iso-a", "owner").await;
        for proxy in 0..cluster.proxies.len() {
            let (code, _, body) = cluster
                .get(proxy, "owned.iso.example", "/v2/x", &[])
                .await
                .expect("GET owned host");
            assert_eq!(
                (code, body.as_str()),
                (200, "upstream saw /v2/x x-env=None"),
                "proxy {proxy}: the owner serves, the hijacker does not"
            );
        }
    });
}
