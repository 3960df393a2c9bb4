//! GatewayPlugins: validation, and the index that resolves an alias from a namespace.
//!
//! Every GatewayPlugin is indexed, valid or not: a reference to an invalid plugin must fail
//! closed (`InvalidPluginConfig`) rather than look like a missing one. Only valid plugins ever
//! reach a snapshot.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::refs::{Bindings, Carried, Finding, Resolver};
use super::report::reason;
use super::{selector, Inputs, ObjectReport};
use crate::api::gateway_plugin::PluginStatus;
use crate::snapshot::{ObjectKey, Tier};
use crate::GatewayPluginSpec;

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
    /// What its own `config` names, resolved in its namespace.
    pub bindings: Bindings,
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
    /// valid plugin configs are added to `carried`.
    pub fn build(
        inputs: &Inputs<'a>,
        resolver: &Resolver<'_, 'a>,
        carried: &mut Carried,
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
            let checked = check(spec, selector, resolver, p.namespace, carried, &mut report);
            let (error, bindings) = match checked {
                Ok(bindings) => (None, bindings),
                Err(finding) => {
                    finding.report("", &mut report);
                    (Some(finding.message), Bindings::default())
                }
            };
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
                error,
                bindings,
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

/// Validates one GatewayPlugin; on success returns what its config names.
fn check(
    spec: &GatewayPluginSpec,
    selector: Option<&LabelSelector>,
    resolver: &Resolver<'_, '_>,
    namespace: &str,
    carried: &mut Carried,
    report: &mut ObjectReport,
) -> Result<Bindings, Finding> {
    let spec_error = |reason: &'static str, message: String| Finding {
        reason,
        message,
        refs: false,
    };
    if !resolver.catalogue.contains(&spec.plugin) {
        let known: Vec<&str> = resolver.catalogue.kinds().collect();
        return Err(spec_error(
            reason::UNKNOWN_PLUGIN,
            format!(
                "unknown plugin kind {:?} (known: {})",
                spec.plugin,
                known.join(", ")
            ),
        ));
    }
    if let Some(Err(e)) = selector.map(selector::validate) {
        return Err(spec_error(reason::INVALID_SPEC, e));
    }
    let Some(config) = &spec.config else {
        if spec.status == PluginStatus::Global {
            return Err(spec_error(
                reason::CONFIG_MISSING,
                "config is required when status is global".into(),
            ));
        }
        return Ok(Bindings::default());
    };
    resolver.check(&spec.plugin, config, namespace, carried, report)
}
