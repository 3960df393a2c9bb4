//! Plugin kinds by name: how to validate a config (the compiler's [`Catalogue`]) and how to
//! build a running instance from it. A built-in plugin is one file in `plugins/` plus one
//! `register::<X>()` line in `plugins/mod.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hookway_crds::catalogue::{Catalogue, PluginConfig};
use hookway_crds::snapshot::{ObjectKey, SecretEntry, Snapshot};

use super::{Phases, Plugin};

/// What a plugin may use while it is being built.
pub struct BuildEnv<'a> {
    /// The snapshot being applied (credentials Secrets, upstreams).
    pub snapshot: &'a Snapshot,
    /// The GatewayPlugin this instance comes from.
    pub plugin_ref: &'a ObjectKey,
    /// Its alias.
    pub alias: &'a str,
    /// The compiler's resolution of the Secrets the config names (the chain entry's
    /// `secrets`): the only way a plugin finds a Secret.
    pub secrets: &'a BTreeMap<String, ObjectKey>,
    /// The compiler's resolution of the Services the config names (the chain entry's
    /// `services`).
    pub services: &'a BTreeMap<String, ObjectKey>,
}

impl BuildEnv<'_> {
    /// The Secret the config calls `name`, as the compiler resolved it. A name the compiler did
    /// not bind is an error: a proxy never resolves a name itself.
    pub fn secret(&self, name: &str) -> Result<&SecretEntry, String> {
        let key = self.secrets.get(name).ok_or_else(|| {
            format!("Secret {name:?} was not resolved by the compiler for this config")
        })?;
        self.snapshot
            .secret(key)
            .ok_or_else(|| format!("Secret {key} is not in the snapshot"))
    }

    /// The Service the config calls `name` (`name` or `namespace/name`), as the compiler
    /// resolved it.
    pub fn service(&self, name: &str) -> Result<&ObjectKey, String> {
        self.services.get(name).ok_or_else(|| {
            format!("Service {name:?} was not resolved by the compiler for this config")
        })
    }
}

/// A plugin kind: its name, typed config and constructor.
pub trait PluginFactory: 'static {
    /// The kind name used in `GatewayPlugin.spec.plugin`.
    const NAME: &'static str;
    /// The typed config (serde, unknown fields rejected).
    type Config: PluginConfig;
    /// Every optional phase an instance of this kind may declare ([`Plugin::phases`] of any
    /// config): listed per kind in the catalogue document (`phases`). Debug builds check each
    /// instance against it when it is built. The default, [`Phases::ALL`], is always correct.
    const PHASES: Phases = Phases::ALL;
    /// Builds an instance; called once per distinct config per snapshot (instances are reused
    /// across snapshots while the config is unchanged).
    fn build(config: Self::Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String>;
}

type BuildFn = fn(&serde_json::Value, &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String>;

fn build_as<F: PluginFactory>(
    config: &serde_json::Value,
    env: &BuildEnv<'_>,
) -> Result<Arc<dyn Plugin>, String> {
    let typed: F::Config = serde_path_to_error::deserialize(config)
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    typed.validate()?;
    let plugin = F::build(typed, env)?;
    debug_assert!(
        F::PHASES.contains(plugin.phases()),
        "plugin kind {} declares {:?} but an instance asks for {:?}",
        F::NAME,
        F::PHASES,
        plugin.phases()
    );
    Ok(plugin)
}

/// Every plugin kind this proxy can run.
#[derive(Clone, Default)]
pub struct Registry {
    builders: HashMap<&'static str, BuildFn>,
    catalogue: Catalogue,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers plugin kind `F`.
    pub fn register<F: PluginFactory>(&mut self) -> &mut Self {
        self.builders.insert(F::NAME, build_as::<F>);
        self.catalogue
            .register::<F::Config>(F::NAME)
            .set_phases(F::NAME, &F::PHASES.names());
        self
    }

    /// The catalogue the compiler validates configs with.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Builds an instance of `kind` with `config`.
    pub fn build(
        &self,
        kind: &str,
        config: &serde_json::Value,
        env: &BuildEnv<'_>,
    ) -> Result<Arc<dyn Plugin>, String> {
        match self.builders.get(kind) {
            Some(build) => build(config, env),
            None => Err(format!("unknown plugin kind {kind:?}")),
        }
    }
}
