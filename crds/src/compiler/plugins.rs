//! GatewayPlugins: validation, and the index that resolves an alias from a namespace.
//!
//! Every GatewayPlugin is indexed, valid or not: a reference to an invalid plugin must fail
//! closed (`InvalidPluginConfig`) rather than look like a missing one. Only valid plugins ever
//! reach a snapshot.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::report::reason;
use super::secrets::SecretIndex;
use super::{selector, Inputs, ObjectReport};
use crate::api::gateway_plugin::PluginStatus;
use crate::snapshot::{ObjectKey, SecretEntry, Tier};
use crate::{Catalogue, GatewayPluginSpec};

/// One GatewayPlugin as the compiler sees it.
#[derive(Debug)]
pub(crate) struct PluginInfo<'a> {
    /// Namespace and name (the alias).
    pub key: ObjectKey,
    /// The spec.
    pub spec: &'a GatewayPluginSpec,
    /// In the root namespace.
    pub cluster: bool,
    /// `policy.locked` (cluster-wide plugins only).
    pub locked: bool,
    /// `policy.namespaces` (cluster-wide plugins only).
    pub selector: Option<&'a LabelSelector>,
    /// Why the plugin is not accepted, when it is not.
    pub error: Option<String>,
}

impl PluginInfo<'_> {
    /// The tier of this plugin's own settings.
    pub fn tier(&self) -> Tier {
        if self.cluster {
            Tier::Cluster
        } else {
            Tier::Namespace
        }
    }
}

/// What an alias resolves to from one namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolution {
    /// Index into [`PluginIndex::plugins`].
    pub plugin: usize,
    /// A namespace plugin of the same name that was ignored because the cluster one is locked.
    pub shadowed: Option<usize>,
}

/// GatewayPlugins by namespace and alias.
#[derive(Debug)]
pub(crate) struct PluginIndex<'a> {
    /// Every GatewayPlugin, sorted by key.
    pub plugins: Vec<PluginInfo<'a>>,
    by_ns: HashMap<&'a str, HashMap<&'a str, usize>>,
    /// Aliases of valid namespace-wide `global` plugins, per namespace (sorted).
    ns_globals: HashMap<&'a str, Vec<&'a str>>,
    /// Aliases of valid cluster-wide `global` plugins (sorted).
    cluster_globals: Vec<&'a str>,
    root: &'a str,
}

impl<'a> PluginIndex<'a> {
    /// Validates every GatewayPlugin (writing its report) and indexes them. Secrets named by
    /// valid plugin configs are added to `secrets_out`.
    pub fn build(
        inputs: &Inputs<'a>,
        catalogue: &Catalogue,
        secrets: &SecretIndex<'a>,
        secrets_out: &mut BTreeMap<ObjectKey, SecretEntry>,
        reports: &mut BTreeMap<ObjectKey, ObjectReport>,
    ) -> Self {
        let root = inputs.root;
        let mut index = PluginIndex {
            plugins: Vec::with_capacity(inputs.plugins.len()),
            by_ns: HashMap::new(),
            ns_globals: HashMap::new(),
            cluster_globals: Vec::new(),
            root,
        };
        for p in &inputs.plugins {
            let key = p.key();
            let spec = &p.object.spec;
            let cluster = p.namespace == root;
            let mut report = ObjectReport::new(p.object.metadata.generation);
            let policy = spec.policy.as_ref();
            if policy.is_some() && !cluster {
                report.warn(
                    reason::POLICY_IGNORED,
                    format!("policy is honoured only in the root namespace {root:?}; ignored here"),
                );
            }
            let policy = policy.filter(|_| cluster);
            let selector = policy.and_then(|p| p.namespaces.as_ref());
            let error = check(spec, selector, catalogue, secrets, p.namespace, secrets_out);
            if let Some((why, message)) = &error {
                report.reject(why, message.clone());
            }
            reports.insert(p.key(), report);
            let i = index.plugins.len();
            index
                .by_ns
                .entry(p.namespace)
                .or_default()
                .entry(p.name)
                .or_insert(i);
            if error.is_none() && spec.status == PluginStatus::Global {
                if cluster {
                    index.cluster_globals.push(p.name);
                } else {
                    index
                        .ns_globals
                        .entry(p.namespace)
                        .or_default()
                        .push(p.name);
                }
            }
            index.plugins.push(PluginInfo {
                key,
                spec,
                cluster,
                locked: policy.is_some_and(|p| p.locked),
                selector,
                error: error.map(|(_, m)| m),
            });
        }
        index.report_shadowing(reports);
        index
    }

    /// Warns on every namespace GatewayPlugin that tries to shadow a locked cluster-wide one.
    fn report_shadowing(&self, reports: &mut BTreeMap<ObjectKey, ObjectReport>) {
        for p in self.plugins.iter().filter(|p| !p.cluster) {
            let Some(root) = self.lookup(self.root, &p.key.name) else {
                continue;
            };
            let root = &self.plugins[root];
            if root.locked {
                if let Some(report) = reports.get_mut(&p.key) {
                    report.warn(
                        reason::PLUGIN_LOCKED,
                        format!(
                            "shadowing cluster-wide locked plugin ignored: {} stays in force in namespace {:?}",
                            root.key, p.key.namespace
                        ),
                    );
                }
            }
        }
    }

    /// Resolves `alias` for an object in `namespace`: the namespace's own GatewayPlugin, else
    /// the root one; a locked root plugin wins over a namespace one of the same name.
    pub fn resolve(&self, namespace: &str, alias: &str) -> Option<Resolution> {
        let root = self.lookup(self.root, alias);
        let own = if namespace == self.root {
            None
        } else {
            self.lookup(namespace, alias)
        };
        match (own, root) {
            (Some(own), Some(root)) if self.plugins[root].locked => Some(Resolution {
                plugin: root,
                shadowed: Some(own),
            }),
            (Some(own), _) => Some(Resolution {
                plugin: own,
                shadowed: None,
            }),
            (None, Some(root)) => Some(Resolution {
                plugin: root,
                shadowed: None,
            }),
            (None, None) => None,
        }
    }

    fn lookup(&self, namespace: &str, alias: &str) -> Option<usize> {
        self.by_ns.get(namespace)?.get(alias).copied()
    }

    /// Aliases that run in `namespace` without being referenced: the namespace's own `global`
    /// plugins and the cluster-wide ones (whether those apply is decided per alias).
    pub fn globals_for(&self, namespace: &str) -> impl Iterator<Item = &'a str> + '_ {
        let own = if namespace == self.root {
            None
        } else {
            self.ns_globals.get(namespace)
        };
        own.into_iter()
            .flatten()
            .chain(self.cluster_globals.iter())
            .copied()
    }

    /// Whether plugin `i` may be used in a namespace with `labels` (`policy.namespaces`).
    pub fn allowed(&self, i: usize, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.plugins[i]
            .selector
            .is_none_or(|s| selector::matches(s, labels))
    }

    /// Indices of valid cluster-wide `global` plugins without a namespace policy.
    pub fn default_chain(&self) -> impl Iterator<Item = usize> + '_ {
        self.cluster_globals
            .iter()
            .filter_map(|alias| self.lookup(self.root, alias))
            .filter(|&i| self.plugins[i].selector.is_none())
    }
}

/// Validates one GatewayPlugin; on failure returns `(reason, message)`.
fn check(
    spec: &GatewayPluginSpec,
    selector: Option<&LabelSelector>,
    catalogue: &Catalogue,
    secrets: &SecretIndex<'_>,
    namespace: &str,
    secrets_out: &mut BTreeMap<ObjectKey, SecretEntry>,
) -> Option<(&'static str, String)> {
    if !catalogue.contains(&spec.plugin) {
        let known: Vec<&str> = catalogue.kinds().collect();
        return Some((
            reason::UNKNOWN_PLUGIN,
            format!(
                "unknown plugin kind {:?} (known: {})",
                spec.plugin,
                known.join(", ")
            ),
        ));
    }
    if let Some(Err(e)) = selector.map(selector::validate) {
        return Some((reason::INVALID_SPEC, e));
    }
    let Some(config) = &spec.config else {
        if spec.status == PluginStatus::Global {
            return Some((
                reason::CONFIG_MISSING,
                "config is required when status is global".into(),
            ));
        }
        return None;
    };
    match catalogue.validate(&spec.plugin, config) {
        Err(e) => Some((
            reason::INVALID_PLUGIN_CONFIG,
            format!("config for plugin {:?} is invalid: {e}", spec.plugin),
        )),
        Ok(validated) => secrets
            .resolve_into(namespace, &validated.secret_refs, secrets_out)
            .err()
            .map(|e| (reason::SECRET_NOT_FOUND, e)),
    }
}
