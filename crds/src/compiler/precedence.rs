//! The precedence model (DESIGN.md §2): which plugins run on a Route, with which config.
//!
//! For a Route in namespace N targeting Service S, the candidate aliases are the Route's refs,
//! the Service's refs, N's `global` GatewayPlugins and the cluster-wide `global` ones. Each
//! alias resolves once (N first, then the root namespace; a locked root plugin wins) and then:
//!
//! | situation                                   | effect                                              |
//! |---------------------------------------------|-----------------------------------------------------|
//! | alias not found, referenced                 | `PluginNotFound`, Route not served                  |
//! | cluster plugin outside `policy.namespaces`  | referenced: `PluginNotAllowed`, not served; global: not applied |
//! | plugin not accepted, referenced             | `InvalidPluginConfig`, not served                   |
//! | plugin `disable`                            | never runs; a referencing object gets `PluginDisabled` |
//! | locked cluster plugin                       | refs' `disable`/`config`/`excludePaths` ignored (`PluginLocked`) |
//! | otherwise                                   | Route ref > Service ref decides `disable`; config = first of Route ref, Service ref, plugin |
//! | `enable` plugin not referenced              | not in the chain                                    |
//! | no config at any level                      | `InvalidPluginConfig`, not served                   |
//!
//! The chain is sorted by `(order, alias)`; each alias appears once.

use std::collections::BTreeMap;

use super::plugins::{PluginIndex, PluginInfo, Resolution};
use super::refs::{Bindings, Carried, Resolver};
use super::report::reason;
use super::ObjectReport;
use crate::api::gateway_plugin::PluginStatus;
use crate::api::{PluginRef, PluginRefs};
use crate::snapshot::{ChainEntry, Tier};

/// What the rules need to know about the namespace an object lives in.
pub(crate) struct Scope<'s, 'a> {
    /// The object's namespace.
    pub namespace: &'s str,
    /// Its labels (`None`: namespace unknown, no labels).
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// The root namespace.
    pub root: &'s str,
    /// GatewayPlugins.
    pub plugins: &'s PluginIndex<'a>,
    /// Checks configs (validators, Secrets, Services, platform policy).
    pub resolver: &'s Resolver<'s, 'a>,
}

/// What each of a Service's own ref configs names, by alias.
pub(crate) type RefBindings = BTreeMap<String, Bindings>;

/// Why a referenced alias cannot be used (fail closed).
enum Unusable {
    NotFound,
    NotAllowed,
    Invalid(String),
}

impl<'a> Scope<'_, 'a> {
    /// Resolves `alias`, reporting a shadowing attempt on `report`. `Ok(None)`: the alias
    /// resolves but does not apply here (so a `global` simply does not run).
    fn resolve(
        &self,
        alias: &str,
        report: &mut ObjectReport,
    ) -> Result<(usize, &PluginInfo<'a>), Unusable> {
        let Resolution { plugin, shadowed } = self
            .plugins
            .resolve(self.namespace, alias)
            .ok_or(Unusable::NotFound)?;
        let info = &self.plugins.plugins[plugin];
        if let Some(own) = shadowed {
            report.warn(
                reason::PLUGIN_LOCKED,
                format!(
                    "namespace GatewayPlugin {} shadowing cluster-wide locked plugin ignored; {} is in force",
                    self.plugins.plugins[own].key, info.key
                ),
            );
        }
        if !self.plugins.allowed(plugin, self.labels) {
            return Err(Unusable::NotAllowed);
        }
        if let Some(e) = &info.error {
            return Err(Unusable::Invalid(e.clone()));
        }
        Ok((plugin, info))
    }

    /// Reports an unusable referenced alias as `ResolvedRefs=False`.
    fn report_unusable(&self, alias: &str, why: Unusable, report: &mut ObjectReport) {
        let ns = self.namespace;
        let root = self.root;
        match why {
            Unusable::NotFound => report.unresolved(
                reason::PLUGIN_NOT_FOUND,
                format!(
                    "plugin alias {alias:?} not found in namespace {ns:?} or root namespace {root:?}"
                ),
            ),
            Unusable::NotAllowed => report.unresolved(
                reason::PLUGIN_NOT_ALLOWED,
                format!(
                    "plugin alias {alias:?} resolves to cluster-wide GatewayPlugin {root}/{alias}, whose policy.namespaces does not select namespace {ns:?}"
                ),
            ),
            Unusable::Invalid(e) => report.unresolved(
                reason::INVALID_PLUGIN_CONFIG,
                format!("plugin alias {alias:?} resolves to a GatewayPlugin that is not accepted: {e}"),
            ),
        }
    }

    /// Validates a ref's `config` for `plugin` (written in this scope's namespace), collecting
    /// the Secrets and the blob it names into `out`; `None` when it cannot be used (reported).
    fn validate_ref_config(
        &self,
        alias: &str,
        plugin: &PluginInfo<'_>,
        config: &serde_json::Value,
        out: &mut Carried,
        report: &mut ObjectReport,
    ) -> Option<Bindings> {
        self.resolver
            .check(&plugin.spec.plugin, config, self.namespace, out, report)
            .map_err(|finding| finding.report(&format!("spec.plugins.{alias}"), report))
            .ok()
    }
}

fn locked_override(r: &PluginRef) -> bool {
    r.disable || r.config.is_some() || !r.exclude_paths.is_empty()
}

fn locked_message(alias: &str, plugin: &PluginInfo<'_>) -> String {
    format!(
        "plugin alias {alias:?} is locked by cluster-wide GatewayPlugin {}; the reference's disable/config/excludePaths is ignored",
        plugin.key
    )
}

fn disabled_message(alias: &str, plugin: &PluginInfo<'_>) -> String {
    format!(
        "plugin alias {alias:?} resolves to GatewayPlugin {}, which is disabled; the reference has no effect",
        plugin.key
    )
}

/// Checks a Service's own plugin refs (once per Service), writing findings on its report and
/// collecting the Secrets its ref configs name. Returns what each ref config names when Routes
/// may use the Service, `None` when a ref config is invalid or names a missing Secret.
pub(crate) fn check_service_refs(
    scope: &Scope<'_, '_>,
    refs: &PluginRefs,
    carried: &mut Carried,
    report: &mut ObjectReport,
) -> Option<RefBindings> {
    let mut usable = true;
    let mut bindings = RefBindings::new();
    for (alias, r) in refs {
        let plugin = match scope.resolve(alias, report) {
            Ok((_, p)) => p,
            Err(why) => {
                scope.report_unusable(alias, why, report);
                continue;
            }
        };
        if plugin.spec.status == PluginStatus::Disable {
            report.warn(reason::PLUGIN_DISABLED, disabled_message(alias, plugin));
        } else if plugin.locked {
            if locked_override(r) {
                report.warn(reason::PLUGIN_LOCKED, locked_message(alias, plugin));
            }
        } else if let (false, Some(config)) = (r.disable, &r.config) {
            match scope.validate_ref_config(alias, plugin, config, carried, report) {
                Some(b) => {
                    bindings.insert(alias.clone(), b);
                }
                None => usable = false,
            }
        }
    }
    usable.then_some(bindings)
}

/// The effective chain of a Route with refs `route` targeting a Service with refs `service`.
/// Findings go on the Route's `report`; `None` means the Route must not be served (fail
/// closed). Secrets named by the Route's own ref configs are added to `carried` only when
/// the Route is served.
pub(crate) fn route_chain(
    scope: &Scope<'_, '_>,
    route: &PluginRefs,
    service: &PluginRefs,
    service_bindings: &RefBindings,
    carried: &mut Carried,
    report: &mut ObjectReport,
) -> Option<Vec<(usize, ChainEntry)>> {
    let mut aliases: Vec<&str> = route
        .keys()
        .chain(service.keys())
        .map(String::as_str)
        .chain(scope.plugins.globals_for(scope.namespace))
        .collect();
    aliases.sort_unstable();
    aliases.dedup();

    let mut served = true;
    let mut own = Carried::default();
    let mut chain = Vec::with_capacity(aliases.len());
    for alias in aliases {
        let r = route.get(alias);
        let s = service.get(alias);
        let referenced = r.is_some() || s.is_some();
        let (index, plugin) = match scope.resolve(alias, report) {
            Ok(found) => found,
            Err(why) => {
                if referenced {
                    scope.report_unusable(alias, why, report);
                    served = false;
                }
                continue;
            }
        };
        if plugin.spec.status == PluginStatus::Disable {
            if r.is_some() {
                report.warn(reason::PLUGIN_DISABLED, disabled_message(alias, plugin));
            }
            continue;
        }
        let global = plugin.spec.status == PluginStatus::Global;
        let (config, tier, exclude_paths, bindings) = if plugin.locked {
            if r.is_some_and(locked_override) {
                report.warn(reason::PLUGIN_LOCKED, locked_message(alias, plugin));
            }
            if !global && !referenced {
                continue;
            }
            (
                plugin.spec.config.as_ref(),
                plugin.tier(),
                &plugin.spec.exclude_paths,
                plugin.bindings.clone(),
            )
        } else {
            let disabled = r.or(s).is_some_and(|x| x.disable);
            if disabled || (!global && !referenced) {
                continue;
            }
            let (config, tier, bindings) = if let Some(c) = r.and_then(|r| r.config.as_ref()) {
                let Some(b) = scope.validate_ref_config(alias, plugin, c, &mut own, report) else {
                    served = false;
                    continue;
                };
                (Some(c), Tier::Route, b)
            } else if let Some(c) = s.and_then(|s| s.config.as_ref()) {
                let b = service_bindings.get(alias).cloned().unwrap_or_default();
                (Some(c), Tier::Service, b)
            } else {
                (
                    plugin.spec.config.as_ref(),
                    plugin.tier(),
                    plugin.bindings.clone(),
                )
            };
            let exclude_paths = [r, s]
                .into_iter()
                .flatten()
                .map(|x| &x.exclude_paths)
                .find(|p| !p.is_empty())
                .unwrap_or(&plugin.spec.exclude_paths);
            (config, tier, exclude_paths, bindings)
        };
        let Some(config) = config else {
            report.unresolved(
                reason::INVALID_PLUGIN_CONFIG,
                format!(
                    "plugin alias {alias:?} (GatewayPlugin {}, kind {:?}) has no config at any level (route, service or GatewayPlugin)",
                    plugin.key, plugin.spec.plugin
                ),
            );
            served = false;
            continue;
        };
        chain.push((
            index,
            ChainEntry {
                alias: alias.to_string(),
                plugin_ref: plugin.key.clone(),
                plugin: plugin.spec.plugin.clone(),
                tier,
                order: plugin.spec.order,
                config: config.clone(),
                exclude_paths: exclude_paths.clone(),
                secrets: bindings.secrets,
                services: bindings.services,
            },
        ));
    }
    if !served {
        return None;
    }
    chain.sort_by(|(_, a), (_, b)| (a.order, &a.alias).cmp(&(b.order, &b.alias)));
    carried.append(&mut own);
    Some(chain)
}

/// The chain for requests that match no Route: valid cluster-wide `global` plugins without a
/// namespace policy, sorted by `(order, alias)`.
pub(crate) fn default_chain(plugins: &PluginIndex<'_>) -> Vec<ChainEntry> {
    let mut chain: Vec<ChainEntry> = plugins
        .default_chain()
        .filter_map(|i| {
            let p = &plugins.plugins[i];
            Some(ChainEntry {
                alias: p.key.name.clone(),
                plugin_ref: p.key.clone(),
                plugin: p.spec.plugin.clone(),
                tier: Tier::Cluster,
                order: p.spec.order,
                config: p.spec.config.clone()?,
                exclude_paths: p.spec.exclude_paths.clone(),
                secrets: p.bindings.secrets.clone(),
                services: p.bindings.services.clone(),
            })
        })
        .collect();
    chain.sort_by(|a, b| (a.order, &a.alias).cmp(&(b.order, &b.alias)));
    chain
}
