//! One plugin config, checked where it was written: typed validation (the catalogue), the
//! Secrets and Services it names resolved by the one rule below, the Secrets' contents checked
//! as the data plane will read them, and the platform policy applied.
//!
//! **The rule**: a name in a config resolves in the namespace of the object whose config it is —
//! a GatewayPlugin's own `config` in the GatewayPlugin's namespace, a Service's or Route's
//! `spec.plugins.<alias>.config` in that Service's or Route's namespace. The result is bound
//! into the snapshot's chain entry (`ChainEntry::secrets`, `ChainEntry::services`) and proxies
//! use only that binding. So a tenant that names `redis-auth` gets its own namespace's Secret (or
//! `SecretNotFound`), never the root namespace's.

use std::collections::{BTreeMap, HashSet};

use super::policy::Policy;
use super::report::reason;
use super::secrets::SecretIndex;
use super::ObjectReport;
use crate::snapshot::{ObjectKey, SecretEntry};
use crate::Catalogue;

/// What a config's names resolved to.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Bindings {
    /// Secret name as written → resolved Secret.
    pub secrets: BTreeMap<String, ObjectKey>,
    /// Service as written → resolved Service.
    pub services: BTreeMap<String, ObjectKey>,
}

/// Why a config cannot be used, and on which condition that goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    /// The reason.
    pub reason: &'static str,
    /// The message.
    pub message: String,
    /// `true`: `ResolvedRefs=False`; `false`: `Accepted=False`.
    pub refs: bool,
}

impl Finding {
    fn spec(reason: &'static str, message: String) -> Self {
        Self {
            reason,
            message,
            refs: false,
        }
    }
    fn refs(reason: &'static str, message: String) -> Self {
        Self {
            reason,
            message,
            refs: true,
        }
    }

    /// Writes the finding on `report`, prefixed with `context` (e.g. `spec.plugins.rl`).
    pub fn report(&self, context: &str, report: &mut ObjectReport) {
        let message = if context.is_empty() {
            self.message.clone()
        } else {
            format!("{context}: {}", self.message)
        };
        if self.refs {
            report.unresolved(self.reason, message);
        } else {
            report.reject(self.reason, message);
        }
    }
}

/// Everything needed to check a config.
pub(crate) struct Resolver<'s, 'a> {
    /// Config validators.
    pub catalogue: &'s Catalogue,
    /// Secrets by namespace and name.
    pub secrets: &'s SecretIndex<'a>,
    /// Platform allowances.
    pub policy: &'s Policy<'a>,
    /// Every hookway Service (namespace, name), accepted or not.
    pub services: &'s HashSet<(&'a str, &'a str)>,
}

impl Resolver<'_, '_> {
    /// Checks `config` of plugin kind `kind` written in `namespace`. On success the Secrets it
    /// names are added to `secrets_out` and their bindings returned; a named Service that does
    /// not exist is a warning on `report` (requests sent there get 503).
    pub fn check(
        &self,
        kind: &str,
        config: &serde_json::Value,
        namespace: &str,
        secrets_out: &mut BTreeMap<ObjectKey, SecretEntry>,
        report: &mut ObjectReport,
    ) -> Result<Bindings, Finding> {
        let validated = self.catalogue.validate(kind, config).map_err(|e| {
            Finding::spec(
                reason::INVALID_PLUGIN_CONFIG,
                format!("config is invalid for plugin {kind:?}: {e}"),
            )
        })?;
        if validated.reaches_network && !self.policy.network_plugin(namespace, kind) {
            return Err(Finding::spec(
                reason::NOT_PERMITTED,
                format!(
                    "plugin kind {kind:?} calls addresses its config chooses; namespace {namespace:?} may configure it only where a PlatformPolicy lists it under spec.namespaces[].networkPlugins"
                ),
            ));
        }
        let mut bindings = Bindings::default();
        for written in &validated.service_refs {
            let key = match written.split_once('/') {
                Some((ns, name)) => ObjectKey::new(ns, name),
                None => ObjectKey::new(namespace, written.as_str()),
            };
            if !self.policy.may_reference(namespace, &key) {
                return Err(Finding::refs(
                    reason::REF_NOT_PERMITTED,
                    format!(
                        "Service {key} is in another namespace and no PlatformPolicy referenceGrants lets namespace {namespace:?} refer to it"
                    ),
                ));
            }
            if !self
                .services
                .contains(&(key.namespace.as_str(), key.name.as_str()))
            {
                report.warn(
                    reason::SERVICE_NOT_FOUND,
                    format!("Service {key} named by the plugin config not found; requests sent there are answered 503"),
                );
            }
            bindings.services.insert(written.clone(), key);
        }
        let mut resolved = BTreeMap::new();
        for name in &validated.secret_refs {
            let entry = self
                .secrets
                .entry(namespace, name)
                .map_err(|e| Finding::refs(reason::SECRET_NOT_FOUND, e))?;
            bindings.secrets.insert(name.clone(), entry.key.clone());
            resolved.insert(name.clone(), entry);
        }
        if !resolved.is_empty() {
            self.catalogue
                .check_secrets(kind, config, &resolved)
                .map_err(|e| Finding::refs(reason::INVALID_SECRET, e))?;
        }
        for entry in resolved.into_values() {
            secrets_out.entry(entry.key.clone()).or_insert(entry);
        }
        Ok(bindings)
    }
}
