//! Failure stays local, tenants stay apart — standalone mode through a real proxy.
//!
//! One folder holds a healthy tenant (`team-a`) and a tenant (`team-b`) that tries every way of
//! breaking things: a TLS Secret whose key does not match its certificate, a JWT key that is not a
//! key, two consumers with the same api key, a Route for team-a's host, a `traffic_splitting`
//! into a namespace that granted nothing. Each bad object is reported with its reason and left
//! out; everything else serves, and a later change applies. Then a PlatformPolicy grants the
//! reference and shares the host, and those Routes start serving.

use std::net::SocketAddr;

use hookway_crds::compiler::{Compiled, Kind, ObjectId};
use hookway_crds::snapshot::ObjectKey;

use crate::support::*;

fn service(ns: &str, name: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  nodes: [{{address: \"{}\", port: {}}}]\n",
        addr.ip(),
        addr.port()
    )
}

/// A Route created at `created` (RFC 3339) for `host` to Service `web`, with `extra` spec lines.
fn route(ns: &str, name: &str, created: &str, host: &str, extra: &str) -> String {
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"{created}\"}}\nspec:\n  hosts: [{host}]\n  service: web\n{extra}"
    )
}

fn plugin(ns: &str, name: &str, kind: &str, config: &str) -> String {
    format!(
        "apiVersion: hookway.dev/v1alpha1\nkind: GatewayPlugin\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  plugin: {kind}\n  status: enable\n  config: {config}\n"
    )
}

fn secret(ns: &str, name: &str, type_: &str, data: &[(&str, &str)]) -> String {
    let data: String = data
        .iter()
        .map(|(k, v)| format!("  {k}: {}\n", serde_json::to_string(v).unwrap()))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: {type_}\nstringData:\n{data}"
    )
}

fn compiled(dir: &ManifestDir) -> Compiled {
    let options = hookway_proxy::standalone::StandaloneOptions::default();
    let catalogue = hookway_proxy::plugins::builtin().catalogue().clone();
    hookway_proxy::standalone::compile_dir(&dir.path, &options, &catalogue)
        .expect("folder compiles")
        .0
}

/// `(condition, reason)` of the first failing condition of `kind ns/name`.
fn failure(c: &Compiled, kind: Kind, ns: &str, name: &str) -> (String, String) {
    let id = ObjectId {
        kind,
        key: ObjectKey::new(ns, name),
    };
    let r = &c.reports[&id];
    if !r.accepted.status {
        ("Accepted".into(), r.accepted.reason.to_string())
    } else if !r.resolved_refs.status {
        ("ResolvedRefs".into(), r.resolved_refs.reason.to_string())
    } else {
        ("ok".into(), String::new())
    }
}

async fn status_and_server(c: &reqwest::Client, proxy: &Proxy, host: &str) -> (u16, String) {
    get_server(c, &proxy.url("/"), Some(host)).await
}

async fn wait_served(c: &reqwest::Client, proxy: &Proxy, host: &str, want: (u16, &str)) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = status_and_server(c, proxy, host).await;
        if got.0 == want.0 && (want.1.is_empty() || got.1 == want.1) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{host}: {got:?}, want {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_tenants_broken_objects_leave_everything_else_serving_and_changing() {
    let echo_a = EchoServer::start("team-a").await;
    let echo_b = EchoServer::start("team-b").await;
    let echo_canary = EchoServer::start("canary").await;
    let ca = Ca::new();
    let (crt, _) = ca.leaf(&["b-tls.example.com"]);
    let (_, other_key) = ca.leaf(&["b-tls.example.com"]);
    let t1 = "2024-01-01T00:00:00Z";
    let t2 = "2024-06-01T00:00:00Z";

    let dir = ManifestDir::new();
    dir.write(
        "services.yaml",
        &[
            service("team-a", "web", echo_a.addr),
            service("team-b", "web", echo_b.addr),
            service("shared", "canary", echo_canary.addr),
        ]
        .join("---\n"),
    );
    dir.write(
        "team-a.yaml",
        &route("team-a", "site", t1, "a.example.com", ""),
    );
    dir.write(
        "team-b.yaml",
        &[
            route("team-b", "ok", t2, "b.example.com", ""),
            // A key that does not match the certificate.
            secret(
                "team-b",
                "b-tls",
                "kubernetes.io/tls",
                &[("tls.crt", &crt), ("tls.key", &other_key)],
            ),
            route(
                "team-b",
                "tls",
                t2,
                "b-tls.example.com",
                "  tls: {secretName: b-tls}\n",
            ),
            // A JWT key that is not a PEM key.
            secret("team-b", "jwt-keys", "Opaque", &[("k1", "not a key")]),
            plugin(
                "team-b",
                "jwt",
                "auth",
                "{credentials: [{type: jwt, secret: jwt-keys, algorithm: RS256}]}",
            ),
            route(
                "team-b",
                "jwt",
                t2,
                "b-jwt.example.com",
                "  plugins: {jwt: {}}\n",
            ),
            // Two consumers with the same api key.
            secret(
                "team-b",
                "api-keys",
                "Opaque",
                &[("alice", "same-key"), ("bob", "same-key")],
            ),
            plugin(
                "team-b",
                "keys",
                "auth",
                "{credentials: [{type: apikey, secret: api-keys}]}",
            ),
            route(
                "team-b",
                "keys",
                t2,
                "b-keys.example.com",
                "  plugins: {keys: {}}\n",
            ),
            // team-a's host.
            route("team-b", "hijack", t2, "a.example.com", ""),
            // Into a namespace that granted nothing.
            plugin(
                "hookway-system",
                "split",
                "traffic_splitting",
                "{service: canary, weight: 100}",
            ),
            route(
                "team-b",
                "split",
                t2,
                "b-split.example.com",
                "  plugins: {split: {config: {service: shared/canary, weight: 100}}}\n",
            ),
        ]
        .join("---\n"),
    );
    let proxy = standalone_proxy(&dir).await;
    let c = client();

    let report = compiled(&dir);
    for (name, kind, want) in [
        ("tls", Kind::Route, ("ResolvedRefs", "InvalidCertificate")),
        (
            "jwt",
            Kind::GatewayPlugin,
            ("ResolvedRefs", "InvalidSecret"),
        ),
        ("jwt", Kind::Route, ("ResolvedRefs", "InvalidPluginConfig")),
        (
            "keys",
            Kind::GatewayPlugin,
            ("ResolvedRefs", "InvalidSecret"),
        ),
        ("keys", Kind::Route, ("ResolvedRefs", "InvalidPluginConfig")),
        ("hijack", Kind::Route, ("Accepted", "HostConflict")),
        ("split", Kind::Route, ("ResolvedRefs", "RefNotPermitted")),
        ("ok", Kind::Route, ("ok", "")),
    ] {
        let got = failure(&report, kind, "team-b", name);
        assert_eq!(
            (got.0.as_str(), got.1.as_str()),
            want,
            "{kind:?} team-b/{name}"
        );
    }
    assert_eq!(failure(&report, Kind::Route, "team-a", "site").0, "ok");

    // Everything healthy serves; every broken object is left out on its own.
    for (host, want) in [
        ("a.example.com", (200, "team-a")),
        ("b.example.com", (200, "team-b")),
        // Served over plain HTTP only (no certificate of it is served).
        ("b-tls.example.com", (200, "team-b")),
        ("b-jwt.example.com", (404, "")),
        ("b-keys.example.com", (404, "")),
        ("b-split.example.com", (404, "")),
    ] {
        let got = status_and_server(&c, &proxy, host).await;
        assert_eq!(got.0, want.0, "{host}: {got:?}");
        if !want.1.is_empty() {
            assert_eq!(got.1, want.1, "{host}");
        }
    }
    let https = proxy.https.expect("https listener");
    let tls = tls_client(&ca.pem, &["b-tls.example.com"], https);
    assert!(
        tls.get("https://b-tls.example.com/").send().await.is_err(),
        "no certificate is served for a broken Secret's hosts"
    );

    // A later change by team-a applies while team-b's objects are still broken.
    dir.write(
        "team-a.yaml",
        &[
            route("team-a", "site", t1, "a.example.com", ""),
            route("team-a", "new", t1, "a-new.example.com", ""),
        ]
        .join("---\n"),
    );
    wait_served(&c, &proxy, "a-new.example.com", (200, "team-a")).await;

    // The platform grants the reference and shares the host: both start serving.
    dir.write(
        "policy.yaml",
        "apiVersion: hookway.dev/v1alpha1\nkind: PlatformPolicy\nmetadata: {name: platform, namespace: hookway-system}\nspec:\n  referenceGrants: [{from: [team-b], to: shared, services: [canary]}]\n  sharedHosts: [{hosts: [a.example.com], namespaces: [team-b]}]\n",
    );
    wait_served(&c, &proxy, "b-split.example.com", (200, "canary")).await;
    assert_eq!(
        failure(&compiled(&dir), Kind::Route, "team-b", "hijack").0,
        "ok"
    );
}
