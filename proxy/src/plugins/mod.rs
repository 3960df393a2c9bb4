//! Built-in plugins: one file each, registered here with one line each.

use crate::plugin::Registry;

pub mod access_log;
pub mod accumulate;
pub mod compression;
pub mod extra_params;
pub mod lobe_gateway;
pub mod params;
pub mod params_transformer;
pub mod proxy_rewrite;
pub mod redirect;
pub mod response_rewrite;
pub mod sub_filter;
pub mod traffic_splitting;

#[cfg(test)]
mod bench;
#[cfg(test)]
pub(crate) mod harness;

/// The registry of every built-in plugin kind.
pub fn builtin() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::new();
    // One line per plugin, alphabetical: registry.register::<mock::Mock>();
    registry.register::<access_log::AccessLog>();
    registry.register::<accumulate::Accumulate>();
    registry.register::<compression::Compression>();
    registry.register::<compression::Gzip>();
    registry.register::<extra_params::ExtraParams>();
    registry.register::<lobe_gateway::LobeGateway>();
    registry.register::<params_transformer::ParamsTransformer>();
    registry.register::<proxy_rewrite::ProxyRewrite>();
    registry.register::<redirect::Redirect>();
    registry.register::<response_rewrite::ResponseRewrite>();
    registry.register::<sub_filter::SubFilter>();
    registry.register::<traffic_splitting::TrafficSplitting>();
    registry
}
