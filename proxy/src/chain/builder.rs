//! Building a snapshot's chains, reusing plugin instances.
//!
//! An instance is identified by `(GatewayPlugin, kind, canonical config JSON)`. Within one
//! snapshot every chain entry with the same identity shares one instance; across snapshots an
//! identity that is still in use keeps its instance (rate-limit counters, breaker state and
//! caches survive reloads). Instances no longer used are dropped when the new set is adopted.

use std::collections::HashMap;
use std::sync::Arc;

use hookway_crds::snapshot::{ChainEntry, ObjectKey, RouteEntry, Snapshot};

use super::{BuildError, BuiltChain, Chain, Chains, Link};
use crate::plugin::{BuildEnv, Plugin, Registry};

/// What makes two plugin instances interchangeable: the same GatewayPlugin, kind and config,
/// and the same resolution of the names in it (the same config in two namespaces may bind two
/// different Secrets) with the same Secret contents (a rotated key builds a new instance) and
/// the same bound Services as the snapshot holds them (a plugin that calls a Service —
/// `request_mirror`, `ext_authz`, `ext_proc`, a `wasm` cluster — takes its endpoints when it is
/// built, so a changed endpoint set builds a new instance).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct InstanceKey {
    plugin_ref: ObjectKey,
    kind: String,
    config: String,
    bindings: String,
}

impl InstanceKey {
    fn of(entry: &ChainEntry, snapshot: &Snapshot) -> Self {
        let mut config = String::new();
        canonical_json(&entry.config, &mut config);
        let mut bindings = String::new();
        if !entry.secrets.is_empty() || !entry.services.is_empty() {
            let secrets: Vec<_> = entry
                .secrets
                .iter()
                .map(|(name, key)| (name, key, snapshot.secret(key).map(|s| &s.data)))
                .collect();
            let services: Vec<_> = entry
                .services
                .iter()
                .map(|(name, key)| (name, key, snapshot.upstream(key)))
                .collect();
            bindings = serde_json::to_string(&(secrets, services)).unwrap_or_default();
        }
        Self {
            plugin_ref: entry.plugin_ref.clone(),
            kind: entry.plugin.clone(),
            config,
            bindings,
        }
    }
}

/// The instances of the last adopted snapshot.
pub(crate) type Instances = HashMap<InstanceKey, Arc<dyn Plugin>>;

/// What one build has found so far: the instances it uses and those that failed.
struct Session<'a> {
    registry: &'a Registry,
    /// The instances of the previous build (reused when their key is still used).
    instances: &'a Instances,
    snapshot: &'a Snapshot,
    /// The instances this build uses.
    next: Instances,
    /// Instances that failed in this build (each is tried once).
    refused: HashMap<InstanceKey, String>,
}

impl<'a> Session<'a> {
    fn new(registry: &'a Registry, instances: &'a Instances, snapshot: &'a Snapshot) -> Self {
        Self {
            registry,
            instances,
            snapshot,
            next: Instances::new(),
            refused: HashMap::new(),
        }
    }

    /// The chain of `entries`, or the first instance that cannot be built.
    fn chain_of(&mut self, entries: &[ChainEntry]) -> Result<Chain, Box<BuildError>> {
        let mut links = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = InstanceKey::of(entry, self.snapshot);
            let plugin = match self.next.get(&key).or_else(|| self.instances.get(&key)) {
                Some(plugin) => plugin.clone(),
                None => {
                    if let Some(message) = self.refused.get(&key) {
                        return Err(Box::new(BuildError::of(entry, message.clone())));
                    }
                    match build_instance(self.registry, self.snapshot, entry) {
                        Ok(plugin) => plugin,
                        Err(err) => {
                            self.refused.insert(key, err.message.clone());
                            return Err(err);
                        }
                    }
                }
            };
            self.next.entry(key).or_insert_with(|| plugin.clone());
            links.push(
                Link::new(entry.alias.as_str(), entry.plugin.as_str(), plugin)
                    .excluding(entry.exclude_paths.clone()),
            );
        }
        Ok(Chain::new(links))
    }
}

/// Builds every chain of `snapshot`, each on its own: a chain with an instance that cannot be
/// built is an error for that chain only (an instance that fails is tried once per build).
/// `instances` becomes the set the built chains use; instances no longer used are dropped.
pub(crate) fn build(registry: &Registry, instances: &mut Instances, snapshot: &Snapshot) -> Chains {
    let mut session = Session::new(registry, instances, snapshot);
    let routes = snapshot
        .routes
        .iter()
        .map(|route| session.chain_of(&route.chain))
        .collect::<Vec<_>>();
    let default = session.chain_of(&snapshot.default_chain);
    let Session { next, refused, .. } = session;
    tracing::debug!(
        version = snapshot.version,
        instances = next.len(),
        reused = next.keys().filter(|k| instances.contains_key(*k)).count(),
        refused = refused.len(),
        "built plugin chains"
    );
    *instances = next;
    Chains { routes, default }
}

/// Builds the chains of `routes` (Routes of `snapshot`) and, with `default`, the default chain,
/// for a snapshot applied in place: the other chains keep theirs, so `instances` keeps every
/// instance some chain still holds and drops those only it holds (an instance a replaced
/// runtime still holds goes at a later build).
pub(crate) fn build_some(
    registry: &Registry,
    instances: &mut Instances,
    snapshot: &Snapshot,
    routes: &[&RouteEntry],
    default: bool,
) -> (Vec<BuiltChain>, Option<BuiltChain>) {
    let mut session = Session::new(registry, instances, snapshot);
    let chains = routes
        .iter()
        .map(|route| session.chain_of(&route.chain))
        .collect::<Vec<_>>();
    let default = default.then(|| session.chain_of(&snapshot.default_chain));
    let next = session.next;
    for (key, plugin) in next {
        instances.entry(key).or_insert(plugin);
    }
    instances.retain(|_, plugin| Arc::strong_count(plugin) > 1);
    (chains, default)
}

fn build_instance(
    registry: &Registry,
    snapshot: &Snapshot,
    entry: &ChainEntry,
) -> Result<Arc<dyn Plugin>, Box<BuildError>> {
    let env = BuildEnv {
        snapshot,
        plugin_ref: &entry.plugin_ref,
        alias: &entry.alias,
        secrets: &entry.secrets,
        services: &entry.services,
    };
    registry
        .build(&entry.plugin, &entry.config, &env)
        .map_err(|message| Box::new(BuildError::of(entry, message)))
}

/// Writes `value` as JSON with object keys sorted, whatever the map type's order.
pub(crate) fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (n, (key, item)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(v: serde_json::Value) -> String {
        let mut out = String::new();
        canonical_json(&v, &mut out);
        out
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, "x"], "x": null}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": null, "y": [1, "x"]}, "b": 1}"#).unwrap();
        assert_eq!(canonical(a.clone()), canonical(b));
        assert_eq!(canonical(a), r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#);
        assert_eq!(canonical(json!("q\"")), r#""q\"""#);
    }
}
