//! ChainBuilder: one chain per Route in order, instances shared and reused across snapshots.

use std::sync::Arc;

use hookway_crds::catalogue::PluginConfig;
use hookway_crds::snapshot::{ChainEntry, RouteEntry, Snapshot, Tier};
use serde::Deserialize;
use serde_json::json;

use super::super::ChainBuilder;
use crate::plugin::{BuildEnv, Plugin, PluginFactory, Registry};

struct Counter;

#[derive(Deserialize, schemars::JsonSchema)]
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

/// The chains of a build where every chain must have built.
fn ok(chains: super::super::Chains) -> (Vec<super::super::Chain>, super::super::Chain) {
    let routes = chains
        .routes
        .into_iter()
        .map(|c| c.expect("chain builds"))
        .collect();
    (routes, chains.default.expect("default chain builds"))
}

fn snapshot(routes: Vec<RouteEntry>, default_chain: Vec<ChainEntry>) -> Snapshot {
    Snapshot {
        routes: hookway_crds::snapshot::shared(routes),
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
    let (routes, default) = ok(builder.build(&snap));
    assert_eq!(routes.len(), 2);
    let aliases: Vec<_> = routes[1].links().iter().map(|l| &*l.alias).collect();
    assert_eq!(aliases, ["other", "limit"]);
    let r1 = &routes[0].links()[0].plugin;
    assert!(Arc::ptr_eq(r1, &routes[1].links()[1].plugin));
    assert!(Arc::ptr_eq(r1, &default.links()[0].plugin));
    assert!(!Arc::ptr_eq(r1, &routes[1].links()[0].plugin));
    assert_eq!(builder.instance_count(), 2);
    assert_eq!(&*routes[0].links()[0].exclude_paths, ["/healthz"]);
}

#[test]
fn unchanged_config_keeps_the_instance_across_snapshots() {
    let mut builder = builder();
    let first = ok(builder.build(&snapshot(
        vec![route("r", vec![entry("limit", json!({"limit": 5}))])],
        vec![],
    )))
    .0;
    // Same config, other key order irrelevant, other route: same instance.
    let second = ok(builder.build(&snapshot(
        vec![route("s", vec![entry("limit", json!({"limit": 5}))])],
        vec![],
    )))
    .0;
    assert!(Arc::ptr_eq(
        &first[0].links()[0].plugin,
        &second[0].links()[0].plugin
    ));
    let third = ok(builder.build(&snapshot(
        vec![route("s", vec![entry("limit", json!({"limit": 6}))])],
        vec![],
    )))
    .0;
    assert!(!Arc::ptr_eq(
        &second[0].links()[0].plugin,
        &third[0].links()[0].plugin
    ));
    assert_eq!(builder.instance_count(), 1, "the old instance is dropped");
}

#[test]
fn a_bad_plugin_fails_only_the_chains_that_use_it_and_keeps_the_instances() {
    let mut builder = builder();
    let good = ok(builder.build(&snapshot(
        vec![route("r", vec![entry("limit", json!({"limit": 5}))])],
        vec![],
    )))
    .0;
    let chains = builder.build(&snapshot(
        vec![
            route(
                "r",
                vec![
                    entry("limit", json!({"limit": 5})),
                    entry("bad", json!({"limit": 0})),
                ],
            ),
            route("s", vec![entry("other", json!({"limit": 2}))]),
            route("t", vec![entry("bad", json!({"limit": 0}))]),
        ],
        vec![entry("bad", json!({"limit": 0}))],
    ));
    let errors: Vec<Option<String>> = chains
        .routes
        .iter()
        .map(|c| c.as_ref().err().map(|e| e.alias.clone()))
        .collect();
    assert_eq!(errors, [Some("bad".to_string()), None, Some("bad".into())]);
    let err = chains
        .default
        .err()
        .expect("default chain uses the bad instance");
    assert!(err.message.contains("limit"), "{err}");
    assert_eq!(err.tier, Tier::Cluster);
    let again = ok(builder.build(&snapshot(
        vec![route("r", vec![entry("limit", json!({"limit": 5}))])],
        vec![],
    )))
    .0;
    assert!(
        Arc::ptr_eq(&good[0].links()[0].plugin, &again[0].links()[0].plugin),
        "the good instance survived the partly failed build"
    );
}
