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

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::blobs::{ConfigMapError, ConfigMapIndex, FetchFailureKind, Fetched, UrlSource};
use super::policy::Policy;
use super::report::reason;
use super::secrets::SecretIndex;
use super::ObjectReport;
use crate::catalogue::schema::check_sha256;
use crate::catalogue::{BlobSource, PinnedBlob};
use crate::snapshot::{BlobEntry, ObjectKey, SecretEntry};
use crate::Catalogue;

/// What accepted configs bring into the snapshot besides themselves: the Secrets they name and
/// the blobs they load from ConfigMaps or URLs.
#[derive(Debug, Default)]
pub(crate) struct Carried {
    /// Secrets by key.
    pub secrets: BTreeMap<ObjectKey, SecretEntry>,
    /// Blobs by digest.
    pub blobs: BTreeMap<String, BlobEntry>,
}

impl Carried {
    /// Moves everything of `other` into `self`.
    pub fn append(&mut self, other: &mut Carried) {
        self.secrets.append(&mut other.secrets);
        self.blobs.append(&mut other.blobs);
    }
}

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
    /// ConfigMaps by namespace and name.
    pub config_maps: &'s ConfigMapIndex<'a>,
    /// What the controller fetched for URL sources.
    pub fetched: &'s Fetched,
    /// Every URL source of a config that passed validation and policy (the controller fetches
    /// these; `Compiled::url_sources`).
    pub url_sources: RefCell<BTreeSet<UrlSource>>,
    /// How many times a checked config named a URL source (new or not): tells whether one
    /// object's configs brought any.
    pub url_checks: std::cell::Cell<usize>,
}

impl Resolver<'_, '_> {
    /// Checks `config` of plugin kind `kind` written in `namespace`. On success the Secrets it
    /// names and the blob it loads are added to `carried` and the bindings returned; a named Service that does
    /// not exist is a warning on `report` (requests sent there get 503).
    pub fn check(
        &self,
        kind: &str,
        config: &serde_json::Value,
        namespace: &str,
        carried: &mut Carried,
        report: &mut ObjectReport,
    ) -> Result<Bindings, Finding> {
        let validated = self.catalogue.validate(kind, config).map_err(|e| {
            Finding::spec(
                reason::INVALID_PLUGIN_CONFIG,
                format!("config is invalid for plugin {kind:?}: {e}"),
            )
        })?;
        let pinned = self.catalogue.pinned_blob(kind, config).map_err(|e| {
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
        let blob = match pinned {
            Some(pinned) => self.load_blob(pinned, namespace)?,
            None => None,
        };
        for entry in resolved.into_values() {
            carried.secrets.entry(entry.key.clone()).or_insert(entry);
        }
        if let Some(blob) = blob {
            carried.blobs.entry(blob.sha256.clone()).or_insert(blob);
        }
        Ok(bindings)
    }

    /// The blob `config` loads from a ConfigMap or a URL, checked against its pinned digest
    /// (Secret sources are checked with the other Secrets, file sources by the proxy).
    fn load_blob(
        &self,
        pinned: PinnedBlob<'_>,
        namespace: &str,
    ) -> Result<Option<BlobEntry>, Finding> {
        match pinned.source {
            BlobSource::File(_) | BlobSource::Secret { .. } => Ok(None),
            BlobSource::ConfigMap { name, key } => {
                let bytes = self
                    .config_maps
                    .blob(namespace, name, key)
                    .map_err(|e| match e {
                        ConfigMapError::NotFound(m) => {
                            Finding::refs(reason::CONFIG_MAP_NOT_FOUND, m)
                        }
                        ConfigMapError::Invalid(m) => Finding::refs(reason::INVALID_CONFIG_MAP, m),
                    })?;
                check_sha256(&bytes, pinned.sha256).map_err(|e| {
                    Finding::refs(
                        reason::INVALID_CONFIG_MAP,
                        format!("ConfigMap {namespace}/{name} key {key:?}: {e}"),
                    )
                })?;
                Ok(Some(BlobEntry::new(&bytes)))
            }
            BlobSource::Url(url) => {
                let source = UrlSource {
                    url: url.to_string(),
                    sha256: pinned.sha256.to_string(),
                };
                let delivered = self
                    .fetched
                    .sources
                    .contains(&source)
                    .then(|| self.fetched.blobs.get(pinned.sha256))
                    .flatten();
                if let Some(bytes) = delivered {
                    self.url_checks.set(self.url_checks.get() + 1);
                    self.url_sources.borrow_mut().insert(source);
                    return Ok(Some(BlobEntry::new(bytes)));
                }
                let finding = match self.fetched.failures.get(&source) {
                    Some(failure) => Finding::refs(
                        match failure.kind {
                            FetchFailureKind::Unreachable => reason::FETCH_FAILED,
                            FetchFailureKind::DigestMismatch => reason::DIGEST_MISMATCH,
                        },
                        format!("url {url}: {}", failure.message),
                    ),
                    None => Finding::refs(
                        reason::FETCH_PENDING,
                        format!("url {url}: not fetched yet (the controller fetches url sources; a standalone proxy reads file: sources only)"),
                    ),
                };
                self.url_checks.set(self.url_checks.get() + 1);
                self.url_sources.borrow_mut().insert(source);
                Err(finding)
            }
        }
    }
}
