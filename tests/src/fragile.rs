//! `fragile`: a test plugin kind whose instance fails to build on a proxy when its config says
//! `fail: true` — a proxy-side failure the compiler cannot see (its config is valid), to prove
//! that such a failure stays local.

use std::sync::Arc;

use hookway_crds::catalogue::PluginConfig;
use hookway_proxy::plugin::{BuildEnv, Plugin, PluginFactory, Registry};
use serde::Deserialize;

/// The plugin kind.
pub struct Fragile;

/// Its config: `fail` makes building fail; `tag` tells configs apart.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FragileConfig {
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    #[allow(dead_code)]
    tag: u32,
}

impl PluginConfig for FragileConfig {}

struct FragilePlugin;
impl Plugin for FragilePlugin {}

impl PluginFactory for Fragile {
    const NAME: &'static str = "fragile";
    type Config = FragileConfig;
    fn build(config: FragileConfig, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        if config.fail {
            return Err("this proxy cannot build it".into());
        }
        Ok(Arc::new(FragilePlugin))
    }
}

/// The built-in plugins plus `fragile`.
pub fn registry() -> Registry {
    let mut registry = hookway_proxy::plugins::builtin();
    registry.register::<Fragile>();
    registry
}
