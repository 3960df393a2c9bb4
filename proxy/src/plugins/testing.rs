//! Test helpers for plugins: build a link through the built-in registry, validate a config the
//! way the compiler does.

use hookway_crds::snapshot::{ObjectKey, Snapshot};

use crate::chain::Link;
use crate::plugin::BuildEnv;

/// A chain link of plugin `kind` with `config`, built through [`super::builtin`].
pub(crate) fn link(kind: &str, config: serde_json::Value) -> Link {
    let snapshot = Snapshot::default();
    let plugin_ref = ObjectKey::new("hookway-system", kind);
    let env = BuildEnv {
        snapshot: &snapshot,
        plugin_ref: &plugin_ref,
        alias: kind,
    };
    let plugin = super::builtin()
        .build(kind, &config, &env)
        .unwrap_or_else(|e| panic!("{kind} config {config}: {e}"));
    Link {
        alias: kind.into(),
        plugin_kind: kind.into(),
        plugin,
        exclude_paths: Vec::new().into(),
    }
}

/// The compiler's validation error for `config` (panics if it is valid).
pub(crate) fn config_error(kind: &str, config: serde_json::Value) -> String {
    super::builtin()
        .catalogue()
        .validate(kind, &config)
        .err()
        .unwrap_or_else(|| panic!("{kind} config {config} should be refused"))
}
