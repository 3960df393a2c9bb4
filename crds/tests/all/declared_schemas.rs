//! A `wasm` GatewayPlugin that declares the JSON Schema of its `configuration`
//! (`x-hookway-configuration-schema`): the compiler, with the data catalogue the controller
//! uses, checks the configuration of the GatewayPlugin and of every Route override against it,
//! and names the failing path on the object whose config it is.

use crate::support::*;
use hookway_crds::catalogue::schema::sha256_hex;
use serde_json::{json, Value};

fn filter(configuration: Value) -> Value {
    json!({
        "secret": "filter", "key": "filter.wasm", "sha256": sha256_hex(&[0]),
        "configuration": configuration,
        "configuration_schema": {
            "type": "object",
            "required": ["greeting"],
            "properties": {
                "greeting": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1}
            },
            "additionalProperties": false
        }
    })
}

#[test]
fn configurations_are_checked_against_the_declared_schema_by_table() {
    // (GatewayPlugin configuration, Route override, GatewayPlugin accepted, Route served,
    // message part on the failing object)
    let cases: [(Value, Option<Value>, bool, bool, &str); 5] = [
        (json!({"greeting": "hi"}), None, true, true, ""),
        (json!({"greeting": "hi", "limit": 0}), None, false, false, "configuration.limit: 0 is less than the minimum of 1"),
        (json!({"greet": "hi"}), None, false, false, "configuration: \"greeting\" is a required property"),
        (json!({"greeting": "hi"}), Some(filter(json!({"greeting": 1}))), true, false, "spec.plugins.filter: config is invalid for plugin \"wasm\": configuration.greeting: 1 is not of type \"string\""),
        (json!({"greeting": "hi"}), Some(filter(json!({"greeting": "own"}))), true, true, ""),
    ];
    for (i, (configuration, route_config, plugin_ok, served, needle)) in
        cases.into_iter().enumerate()
    {
        let mut r = route("a", "r").host("r.example.com");
        r = match route_config {
            Some(config) => r.plugin("filter", config),
            None => r.uses("filter"),
        };
        let out = World::new()
            .secret(secret("a", "filter", "Opaque", &[("filter.wasm", "AA==")]))
            .plugin(plugin("a", "filter", "wasm").config(filter(configuration)))
            .service(service("a", "s"))
            .route(r)
            .route(route("a", "bystander").host("b.example.com"))
            .compile();
        let p = out.plugin_report("a", "filter");
        assert_eq!(
            p.accepted.status, plugin_ok,
            "case {i}: {}",
            p.accepted.message
        );
        assert_eq!(out.served("a", "r").is_some(), served, "case {i}");
        let report = if plugin_ok {
            out.route_report("a", "r")
        } else {
            p
        };
        assert_eq!(report.is_ok(), needle.is_empty(), "case {i}");
        if !needle.is_empty() {
            let message = format!(
                "{} | {}",
                report.accepted.message, report.resolved_refs.message
            );
            assert!(message.contains(needle), "case {i}: {message}");
        }
        assert!(out.served("a", "bystander").is_some(), "case {i}");
    }
}
