//! The HTTP version an upstream is spoken to with: the Service's `http2`, then (for `auto`) its
//! backend port's `appProtocol` from the core Service or, failing that, its EndpointSlices.

use std::sync::Arc;

use hookway_crds::api::service::{Http2, Node};
use hookway_crds::snapshot::{ObjectKey, Scheme, UpstreamProtocol};
use k8s_openapi::api::core::v1::{Service as CoreService, ServicePort, ServiceSpec as CoreSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::support::*;

/// Core Service `web` with ports 80 (`kubernetes.io/h2c` on the Service), 81
/// (`kubernetes.io/ws`), 82 (no appProtocol on the Service, `kubernetes.io/h2c` on the
/// EndpointSlice port) and 83 (none anywhere).
fn core_web() -> (CoreService, EndpointSlice) {
    let port = |name: &str, port: i32, app: Option<&str>| ServicePort {
        name: Some(name.into()),
        port,
        app_protocol: app.map(str::to_owned),
        ..Default::default()
    };
    let core = CoreService {
        metadata: ObjectMeta {
            namespace: Some("a".into()),
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(CoreSpec {
            ports: Some(vec![
                port("grpc", 80, Some("kubernetes.io/h2c")),
                port("ws", 81, Some("kubernetes.io/ws")),
                port("sliced", 82, None),
                port("plain", 83, None),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let slice_port = |name: &str, port: i32, app: Option<&str>| EndpointPort {
        name: Some(name.into()),
        port: Some(port),
        app_protocol: app.map(str::to_owned),
        ..Default::default()
    };
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("a".into()),
            name: Some("web-1".into()),
            labels: Some([("kubernetes.io/service-name".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(vec![Endpoint {
            addresses: vec!["10.0.0.1".into()],
            ..Default::default()
        }]),
        ports: Some(vec![
            slice_port("grpc", 8080, Some("kubernetes.io/h2c")),
            slice_port("ws", 8081, Some("kubernetes.io/ws")),
            slice_port("sliced", 8082, Some("kubernetes.io/h2c")),
            slice_port("plain", 8083, None),
        ]),
    };
    (core, slice)
}

#[test]
fn protocol_follows_http2_then_the_backend_app_protocol() {
    let node = Node {
        address: "10.0.0.9".into(),
        port: 80,
        weight: 1,
    };
    // (name, scheme, http2, backend port or static nodes, expected protocol)
    let table: &[(&str, Scheme, Http2, Option<i32>, UpstreamProtocol)] = &[
        (
            "h2c-app",
            Scheme::Http,
            Http2::Auto,
            Some(80),
            UpstreamProtocol::Http2,
        ),
        (
            "ws-app",
            Scheme::Http,
            Http2::Auto,
            Some(81),
            UpstreamProtocol::Auto,
        ),
        (
            "slice-app",
            Scheme::Http,
            Http2::Auto,
            Some(82),
            UpstreamProtocol::Http2,
        ),
        (
            "no-app",
            Scheme::Http,
            Http2::Auto,
            Some(83),
            UpstreamProtocol::Auto,
        ),
        (
            "never-wins",
            Scheme::Http,
            Http2::Never,
            Some(80),
            UpstreamProtocol::Http1,
        ),
        (
            "always",
            Scheme::Http,
            Http2::Always,
            Some(83),
            UpstreamProtocol::Http2,
        ),
        (
            "tls-h2c-app",
            Scheme::Https,
            Http2::Auto,
            Some(80),
            UpstreamProtocol::Auto,
        ),
        (
            "tls-always",
            Scheme::Https,
            Http2::Always,
            Some(83),
            UpstreamProtocol::Http2,
        ),
        (
            "static-auto",
            Scheme::Http,
            Http2::Auto,
            None,
            UpstreamProtocol::Auto,
        ),
        (
            "static-always",
            Scheme::Http,
            Http2::Always,
            None,
            UpstreamProtocol::Http2,
        ),
        (
            "static-tls",
            Scheme::Https,
            Http2::Auto,
            None,
            UpstreamProtocol::Auto,
        ),
        (
            "static-never",
            Scheme::Https,
            Http2::Never,
            None,
            UpstreamProtocol::Http1,
        ),
    ];
    let mut world = World::new();
    for (name, scheme, http2, port, _) in table {
        let svc = match port {
            Some(port) => service("a", name).backend("web", *port),
            None => service("a", name).nodes(vec![node.clone()]),
        };
        world = world.service(svc.spec(|s| {
            s.scheme = *scheme;
            s.http2 = *http2;
        }));
    }
    let (core, slice) = core_web();
    world.0.core_services.push(Arc::new(core));
    world.0.endpoint_slices.push(Arc::new(slice));
    let out = world.compile();
    for (name, _, _, _, expected) in table {
        let up = out
            .0
            .snapshot
            .upstream(&ObjectKey::new("a", *name))
            .unwrap_or_else(|| panic!("{name}: no upstream"));
        assert_eq!(up.protocol, *expected, "{name}");
        assert_eq!(up.endpoints.len(), 1, "{name}");
    }
}

#[test]
fn the_http2_field_defaults_to_auto_and_round_trips() {
    let spec: hookway_crds::ServiceSpec =
        serde_json::from_value(serde_json::json!({"nodes": [{"address": "x", "port": 1}]}))
            .unwrap();
    assert_eq!(spec.http2, Http2::Auto);
    for (text, value) in [
        ("auto", Http2::Auto),
        ("always", Http2::Always),
        ("never", Http2::Never),
    ] {
        let spec: hookway_crds::ServiceSpec = serde_json::from_value(
            serde_json::json!({"nodes": [{"address": "x", "port": 1}], "http2": text}),
        )
        .unwrap();
        assert_eq!(spec.http2, value, "{text}");
    }
    let bad = serde_json::from_value::<hookway_crds::ServiceSpec>(
        serde_json::json!({"nodes": [{"address": "x", "port": 1}], "http2": "h2c"}),
    );
    assert!(bad.is_err(), "an unknown value is refused");
}

#[test]
fn an_old_snapshot_without_protocol_reads_as_auto() {
    let mut json = serde_json::to_value(hookway_crds::snapshot::UpstreamEntry {
        key: ObjectKey::new("a", "s"),
        scheme: Scheme::Http,
        protocol: UpstreamProtocol::Http2,
        balance: hookway_crds::snapshot::Balance::RoundRobin,
        hash_header: None,
        endpoints: vec![],
        connect_timeout_ms: 1,
        request_timeout_ms: 1,
        retries: 0,
        retry_on_status: vec![],
        tls_server_name: None,
        tls_insecure_skip_verify: false,
    })
    .unwrap();
    assert_eq!(json["protocol"], "http2");
    json.as_object_mut().unwrap().remove("protocol");
    let old: hookway_crds::snapshot::UpstreamEntry = serde_json::from_value(json).unwrap();
    assert_eq!(old.protocol, UpstreamProtocol::Auto);
}
