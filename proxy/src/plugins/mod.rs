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
#[cfg(feature = "envoy-ext")]
pub mod envoy;
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
    #[cfg(feature = "envoy-ext")]
    registry.register::<envoy::ext_authz::ExtAuthz>();
    #[cfg(feature = "envoy-ext")]
    registry.register::<envoy::ext_proc::ExtProc>();
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
    /// The controller validates configs with the committed document alone, so it must be
    /// exactly what the typed configs generate.
    #[test]
    fn committed_catalogue_matches_the_configs() {
        let generated = super::builtin().catalogue().document();
        assert!(
            generated == hookway_crds::catalogue::BUILTIN_DOCUMENT,
            "crds/src/catalogue/builtin.json differs from the plugins' configs; run `cargo run --workspace --bin hookway-proxy -- --print-catalogue > crds/src/catalogue/builtin.json`"
        );
    }

    #[test]
    fn the_catalogue_page_names_every_kind() {
        let page = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/plugins/catalogue.md"
        ))
        .unwrap();
        let registry = super::builtin();
        for kind in registry.catalogue().kinds() {
            assert!(
                page.contains(&format!("`{kind}`")),
                "docs/plugins/catalogue.md does not name {kind}"
            );
            let row = format!(
                "| `{kind}` | {} |",
                registry.catalogue().phases(kind).join(", ")
            );
            assert!(
                page.contains(&row),
                "docs/plugins/catalogue.md: the phases table should have {row}"
            );
        }
    }

    /// The document's phases come from each kind's `PluginFactory::PHASES` and read back.
    #[test]
    fn every_kind_declares_its_phases_in_the_document() {
        let registry = super::builtin();
        let document = hookway_crds::Catalogue::builtin();
        for kind in registry.catalogue().kinds() {
            let phases = registry.catalogue().phases(kind);
            assert_eq!(
                phases.first().map(String::as_str),
                Some("request_head"),
                "{kind}"
            );
            assert!(phases.iter().any(|p| p == "response_head"), "{kind}");
            assert_eq!(document.phases(kind), phases, "{kind}");
        }
        assert_eq!(
            registry.catalogue().phases("headers"),
            ["request_head", "response_head"]
        );
        assert_eq!(
            registry.catalogue().phases("body_limit"),
            ["request_head", "request_body", "response_head"]
        );
    }

    #[test]
    fn every_builtin_kind_is_registered() {
        let registry = super::builtin();
        let mut kinds: Vec<&str> = registry.catalogue().kinds().collect();
        if !cfg!(feature = "envoy-ext") {
            // The list below is the default build's.
            kinds.extend(["ext_authz", "ext_proc"]);
            kinds.sort_unstable();
        }
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
                "ext_authz",
                "ext_proc",
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
