//! The plugin catalogue: every plugin kind the compiler knows, by name, each with a validator
//! that deserializes a config into the plugin's typed config.
//!
//! The catalogue is filled by whoever owns the plugin implementations (the proxy registers its
//! built-ins with one line each); the compiler only asks "is this kind known, and is this config
//! valid for it?". Validation happens at compile time, so a bad config is reported on the
//! object's status and never reaches a proxy.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::snapshot::SecretEntry;

/// The Secrets a config names, as the compiler resolved them: name as written in the config →
/// the Secret (its key says which namespace it was resolved in).
pub type ResolvedSecrets = BTreeMap<String, SecretEntry>;

/// What a plugin's typed config may tell the compiler beyond "it parsed".
pub trait PluginConfig: DeserializeOwned {
    /// Cross-field checks serde cannot express (e.g. `allow_credentials` with origin `*`).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// Names of Secrets this config needs. The compiler resolves each in the namespace of the
    /// object whose config this is (the GatewayPlugin's for its own config, the Route's or
    /// Service's for a reference's config) and binds the result into the snapshot's chain entry,
    /// so proxies never talk to the API server and never resolve a name themselves.
    fn secret_refs(&self) -> Vec<String> {
        Vec::new()
    }
    /// Checks the data of the Secrets named by [`PluginConfig::secret_refs`] exactly as the
    /// data plane will read it (key material parses, metadata is well-formed, no duplicate
    /// credentials), so a bad Secret is reported on the object's status instead of failing a
    /// proxy. `secrets` holds every name of `secret_refs`.
    fn check_secrets(&self, _secrets: &ResolvedSecrets) -> Result<(), String> {
        Ok(())
    }
    /// Services this config sends traffic to, as written: `name` (the namespace of the object
    /// whose config this is) or `namespace/name`. The compiler resolves them (a reference into
    /// another namespace needs a grant, see `PlatformPolicy`) and binds the result into the
    /// chain entry.
    fn service_refs(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether this config makes the proxy call addresses the config chooses (an auth service,
    /// a plugin API): allowed outside the root namespace only where a `PlatformPolicy` says so.
    fn reaches_network(&self) -> bool {
        false
    }
}

/// The result of validating one config: what it references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validated {
    /// Secret names the config references ([`PluginConfig::secret_refs`]).
    pub secret_refs: Vec<String>,
    /// Services the config sends traffic to, as written ([`PluginConfig::service_refs`]).
    pub service_refs: Vec<String>,
    /// [`PluginConfig::reaches_network`].
    pub reaches_network: bool,
}

type Validator = fn(&serde_json::Value) -> Result<Validated, String>;
type SecretChecker = fn(&serde_json::Value, &ResolvedSecrets) -> Result<(), String>;

/// Plugin kinds by name.
#[derive(Clone, Default)]
pub struct Catalogue {
    kinds: BTreeMap<String, (Validator, SecretChecker)>,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

fn validate_as<C: PluginConfig>(value: &serde_json::Value) -> Result<Validated, String> {
    let config: C = serde_path_to_error(value)?;
    config.validate()?;
    Ok(Validated {
        secret_refs: config.secret_refs(),
        service_refs: config.service_refs(),
        reaches_network: config.reaches_network(),
    })
}

fn check_secrets_as<C: PluginConfig>(
    value: &serde_json::Value,
    secrets: &ResolvedSecrets,
) -> Result<(), String> {
    let config: C = serde_path_to_error(value)?;
    config.check_secrets(secrets)
}

/// Deserializes with the path of the offending field in the message (`params[0].conflict: ...`).
fn serde_path_to_error<C: DeserializeOwned>(value: &serde_json::Value) -> Result<C, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

impl Catalogue {
    /// An empty catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers plugin kind `name` whose config deserializes into `C`.
    pub fn register<C: PluginConfig>(&mut self, name: &str) -> &mut Self {
        self.kinds
            .insert(name.to_string(), (validate_as::<C>, check_secrets_as::<C>));
        self
    }

    /// Whether `name` is a known plugin kind.
    pub fn contains(&self, name: &str) -> bool {
        self.kinds.contains_key(name)
    }

    /// Known plugin kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Validates `config` for plugin kind `name`.
    pub fn validate(&self, name: &str, config: &serde_json::Value) -> Result<Validated, String> {
        match self.kinds.get(name) {
            Some((validate, _)) => validate(config),
            None => Err(format!("unknown plugin kind {name:?}")),
        }
    }

    /// Checks the resolved Secrets of a config already accepted by [`Catalogue::validate`].
    pub fn check_secrets(
        &self,
        name: &str,
        config: &serde_json::Value,
        secrets: &ResolvedSecrets,
    ) -> Result<(), String> {
        match self.kinds.get(name) {
            Some((_, check)) => check(config, secrets),
            None => Err(format!("unknown plugin kind {name:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limit {
        second: u32,
    }
    impl PluginConfig for Limit {
        fn validate(&self) -> Result<(), String> {
            if self.second == 0 {
                return Err("second must be positive".into());
            }
            Ok(())
        }
    }

    fn catalogue() -> Catalogue {
        let mut c = Catalogue::new();
        c.register::<Limit>("limit");
        c
    }

    #[test]
    fn valid_config_passes() {
        assert_eq!(
            catalogue().validate("limit", &json!({"second": 3})),
            Ok(Validated::default())
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let err = catalogue()
            .validate("limit", &json!({"second": 3, "minute": 1}))
            .unwrap_err();
        assert!(err.contains("minute"), "{err}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let err = catalogue()
            .validate("limit", &json!({"second": "x"}))
            .unwrap_err();
        assert!(err.starts_with("second: invalid type"), "{err}");
    }

    #[test]
    fn cross_field_rule_runs() {
        let err = catalogue()
            .validate("limit", &json!({"second": 0}))
            .unwrap_err();
        assert_eq!(err, "second must be positive");
    }

    #[test]
    fn unknown_kind_is_refused() {
        assert!(catalogue()
            .validate("nope", &json!({}))
            .unwrap_err()
            .contains("unknown plugin kind"));
    }
}
