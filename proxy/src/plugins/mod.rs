//! Built-in plugins: one file each, registered here with one line each.

pub mod auth;
pub mod circuit_breaker;
pub mod client_ip;
pub mod cors;
pub mod csrf;
pub mod decisions;
pub mod forward_auth;
mod header_config;
pub mod headers;
#[cfg(test)]
mod hot_path_cost;
pub mod ip_restriction;
pub mod ip_set;
pub mod mock;
pub mod rate_limiting;
pub mod referer_restriction;
pub mod request_id;
pub mod restriction;
pub mod spike_arrest;
#[cfg(test)]
pub(crate) mod testing;
pub mod ua_restriction;

use crate::plugin::Registry;

/// The registry of every built-in plugin kind.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    // One line per plugin, alphabetical.
    registry.register::<auth::Auth>();
    registry.register::<circuit_breaker::CircuitBreaker>();
    registry.register::<cors::Cors>();
    registry.register::<csrf::Csrf>();
    registry.register::<forward_auth::ForwardAuth>();
    registry.register::<headers::Headers>();
    registry.register::<ip_restriction::IpRestriction>();
    registry.register::<mock::Mock>();
    registry.register::<rate_limiting::RateLimiting>();
    registry.register::<referer_restriction::RefererRestriction>();
    registry.register::<request_id::RequestId>();
    registry.register::<spike_arrest::SpikeArrest>();
    registry.register::<ua_restriction::UaRestriction>();
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
                "auth",
                "circuit_breaker",
                "cors",
                "csrf",
                "forward_auth",
                "headers",
                "ip_restriction",
                "mock",
                "rate_limiting",
                "referer_restriction",
                "request_id",
                "spike_arrest",
                "ua_restriction",
            ]
        );
    }
}
