//! ChainBuilder: one chain per Route in order, instances shared and reused across snapshots.

use std::sync::Arc;

use hookway_crds::catalogue::PluginConfig;
use hookway_crds::snapshot::{ChainEntry, RouteEntry, Snapshot, Tier};
use serde::Deserialize;
use serde_json::json;

use super::super::ChainBuilder;
use crate::plugin::{BuildEnv, Plugin, PluginFactory, Registry};

struct Counter;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterConfig {
    #[allow(dead_code)]
    limit: u32,
}

impl PluginConfig for CounterConfig {
    fn validate(&self) -> Result<(), String> {
        if self.limit == 0 {
            return Err("limit: must be positive".into());
        }
        Ok(())
    }
}

struct CounterPlugin;
impl Plugin for CounterPlugin {}

impl PluginFactory for Counter {
    const NAME: &'static str = "counter";
    type Config = CounterConfig;
    fn build(_config: CounterConfig, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(CounterPlugin))
    }
}

fn builder() -> ChainBuilder {
    let mut registry = Registry::new();
    registry.register::<Counter>();
    ChainBuilder::new(registry)
}

fn entry(alias: &str, config: serde_json::Value) -> ChainEntry {
    ChainEntry {
        alias: alias.into(),
        plugin_ref: hookway_crds::snapshot::ObjectKey::new("hookway-system", alias),
        plugin: "counter".into(),
        tier: Tier::Cluster,
        order: 0,
        config,
        exclude_paths: vec!["/healthz".into()],
        secrets: Default::default(),
        services: Default::default(),
    }
}

fn route(name: &str, chain: Vec<ChainEntry>) -> RouteEntry {
    RouteEntry {
        key: hookway_crds::snapshot::ObjectKey::new("default", name),
        hosts: vec![],
        rules: vec![],
        priority: 0,
        created: 0,
        upstream: hookway_crds::snapshot::ObjectKey::new("default", "svc"),
        chain,
    }
}

fn snapshot(routes: Vec<RouteEntry>, default_chain: Vec<ChainEntry>) -> Snapshot {
    Snapshot {
        routes,
        default_chain,
        ..Snapshot::default()
    }
}

#[test]
fn one_chain_per_route_in_order_and_shared_instances() {
    let snap = snapshot(
        vec![
            route("r1", vec![entry("limit", json!({"limit": 5}))]),
            route(
                "r2",
                vec![
                    entry("other", json!({"limit": 5})),
                    entry("limit", json!({"limit": 5})),
                ],
            ),
        ],
        vec![entry("limit", json!({"limit": 5}))],
    );
    let mut builder = builder();
    let chains = builder.build(&snap).unwrap();
    assert_eq!(chains.routes.len(), 2);
    let aliases: Vec<_> = chains.routes[1].links().iter().map(|l| &*l.alias).collect();
    assert_eq!(aliases, ["other", "limit"]);
    let r1 = &chains.routes[0].links()[0].plugin;
    assert!(Arc::ptr_eq(r1, &chains.routes[1].links()[1].plugin));
    assert!(Arc::ptr_eq(r1, &chains.default.links()[0].plugin));
    assert!(!Arc::ptr_eq(r1, &chains.routes[1].links()[0].plugin));
    assert_eq!(builder.instance_count(), 2);
    assert_eq!(&*chains.routes[0].links()[0].exclude_paths, ["/healthz"]);
}

#[test]
fn unchanged_config_keeps_the_instance_across_snapshots() {
    let mut builder = builder();
    let first = builder
        .build(&snapshot(
            vec![route("r", vec![entry("limit", json!({"limit": 5}))])],
            vec![],
        ))
        .unwrap();
    // Same config, other key order irrelevant, other route: same instance.
    let second = builder
        .build(&snapshot(
            vec![route("s", vec![entry("limit", json!({"limit": 5}))])],
            vec![],
        ))
        .unwrap();
    assert!(Arc::ptr_eq(
        &first.routes[0].links()[0].plugin,
        &second.routes[0].links()[0].plugin
    ));
    let third = builder
        .build(&snapshot(
            vec![route("s", vec![entry("limit", json!({"limit": 6}))])],
            vec![],
        ))
        .unwrap();
    assert!(!Arc::ptr_eq(
        &second.routes[0].links()[0].plugin,
        &third.routes[0].links()[0].plugin
    ));
    assert_eq!(builder.instance_count(), 1, "the old instance is dropped");
}

#[test]
fn a_bad_plugin_rejects_the_snapshot_and_keeps_the_instances() {
    let mut builder = builder();
    let good = builder
        .build(&snapshot(
            vec![route("r", vec![entry("limit", json!({"limit": 5}))])],
            vec![],
        ))
        .unwrap();
    let err = builder
        .build(&snapshot(
            vec![route(
                "r",
                vec![
                    entry("limit", json!({"limit": 5})),
                    entry("bad", json!({"limit": 0})),
                ],
            )],
            vec![],
        ))
        .err()
        .expect("rejected");
    assert_eq!(err.alias, "bad");
    assert!(err.message.contains("limit"), "{err}");
    let again = builder
        .build(&snapshot(
            vec![route("r", vec![entry("limit", json!({"limit": 5}))])],
            vec![],
        ))
        .unwrap();
    assert!(Arc::ptr_eq(
        &good.routes[0].links()[0].plugin,
        &again.routes[0].links()[0].plugin
    ));
}
