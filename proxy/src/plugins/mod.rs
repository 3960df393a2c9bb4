//! Built-in plugins: one file each, registered here with one line each.

pub mod access_log;
pub mod accumulate;
pub mod auth;
#[cfg(test)]
mod bench;
pub mod body_limit;
pub mod circuit_breaker;
pub mod client_ip;
pub mod compression;
pub mod cors;
pub mod csrf;
pub mod decisions;
pub mod extra_params;
pub mod forward_auth;
#[cfg(test)]
pub(crate) mod harness;
mod header_config;
pub mod headers;
#[cfg(test)]
mod hot_path_cost;
pub mod htpasswd;
pub mod htpasswd_auth;
pub mod ip_restriction;
pub mod ip_set;
pub mod limit_conn;
pub mod lobe_gateway;
pub mod mock;
pub mod params;
pub mod params_transformer;
pub mod path_prefix;
pub mod proxy_rewrite;
pub mod rate_limiting;
pub mod redirect;
pub mod referer_restriction;
pub mod request_id;
pub mod request_mirror;
pub mod request_redirect;
pub mod response_rewrite;
pub mod restriction;
pub mod spike_arrest;
pub mod sub_filter;
#[cfg(test)]
pub(crate) mod testing;
pub mod traffic_splitting;
pub mod ua_restriction;
#[cfg(feature = "wasm")]
pub mod wasm;

use crate::plugin::Registry;

/// Drops the plugins' per-route series (`hookway_plugin_decisions_total`,
/// `hookway_circuit_breaker_state`) of the Routes in `gone`; returns how many were dropped.
pub fn remove_route_series(gone: &std::collections::HashSet<&str>) -> usize {
    crate::metrics::remove_routes(decisions::counter(), "route", gone)
        + crate::metrics::remove_routes(circuit_breaker::state_gauge(), "route", gone)
}

/// The registry of every built-in plugin kind.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    // One line per plugin, alphabetical.
    registry.register::<access_log::AccessLog>();
    registry.register::<accumulate::Accumulate>();
    registry.register::<auth::Auth>();
    registry.register::<body_limit::BodyLimit>();
    registry.register::<circuit_breaker::CircuitBreaker>();
    registry.register::<compression::Compression>();
    registry.register::<compression::Gzip>();
    registry.register::<cors::Cors>();
    registry.register::<csrf::Csrf>();
    registry.register::<extra_params::ExtraParams>();
    registry.register::<forward_auth::ForwardAuth>();
    registry.register::<headers::Headers>();
    registry.register::<htpasswd_auth::HtpasswdAuth>();
    registry.register::<ip_restriction::IpRestriction>();
    registry.register::<limit_conn::LimitConn>();
    registry.register::<lobe_gateway::LobeGateway>();
    registry.register::<mock::Mock>();
    registry.register::<params_transformer::ParamsTransformer>();
    registry.register::<proxy_rewrite::ProxyRewrite>();
    registry.register::<rate_limiting::RateLimiting>();
    registry.register::<redirect::Redirect>();
    registry.register::<referer_restriction::RefererRestriction>();
    registry.register::<request_id::RequestId>();
    registry.register::<request_mirror::RequestMirror>();
    registry.register::<request_redirect::RequestRedirect>();
    registry.register::<response_rewrite::ResponseRewrite>();
    registry.register::<spike_arrest::SpikeArrest>();
    registry.register::<sub_filter::SubFilter>();
    registry.register::<traffic_splitting::TrafficSplitting>();
    registry.register::<ua_restriction::UaRestriction>();
    #[cfg(feature = "wasm")]
    registry.register::<wasm::Wasm>();
    registry
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_builtin_kind_is_registered() {
        let registry = super::builtin();
        let kinds: Vec<&str> = registry.catalogue().kinds().collect();
        assert_eq!(
            kinds,
            [
                "access_log",
                "accumulate",
                "auth",
                "body_limit",
                "circuit_breaker",
                "compression",
                "cors",
                "csrf",
                "extra_params",
                "forward_auth",
                "gzip",
                "headers",
                "htpasswd_auth",
                "ip_restriction",
                "limit_conn",
                "lobe_gateway",
                "mock",
                "params_transformer",
                "proxy_rewrite",
                "rate_limiting",
                "redirect",
                "referer_restriction",
                "request_id",
                "request_mirror",
                "request_redirect",
                "response_rewrite",
                "spike_arrest",
                "sub_filter",
                "traffic_splitting",
                "ua_restriction",
                #[cfg(feature = "wasm")]
                "wasm",
            ]
        );
    }
}
