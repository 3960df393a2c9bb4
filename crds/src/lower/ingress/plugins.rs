//! The synthetic GatewayPlugins that carry annotation-driven behaviour, and the route-level
//! references built from an Ingress's annotations.
//!
//! Each translated behaviour is a route-level reference (with its config) to a synthetic
//! GatewayPlugin of the Ingress's namespace, status `enable`, named `ingress#<what>` (the `#`
//! keeps it apart from real GatewayPlugins). Their orders run them in ingress-nginx's phase
//! order — redirects (rewrite phase), then access checks, CORS preflights, limits, auth — and
//! before user plugins (default order 1000); the path rewrite runs last.

use std::sync::Arc;

use crate::api::gateway_plugin::PluginStatus;
use crate::api::{PluginRef, PluginRefs};
use crate::{GatewayPlugin, GatewayPluginSpec};

/// One synthetic plugin instance.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Synthetic {
    /// Its name (the alias).
    pub alias: &'static str,
    /// The plugin kind.
    pub plugin: &'static str,
    /// Its order.
    pub order: i32,
}

macro_rules! synthetic {
    ($($name:ident = $alias:literal, $plugin:literal, $order:literal;)*) => {
        $(
            #[doc = concat!("`", $alias, "` (`", $plugin, "`).")]
            pub(crate) const $name: Synthetic = Synthetic { alias: $alias, plugin: $plugin, order: $order };
        )*
        /// Every synthetic plugin.
        pub(crate) const ALL: &[&Synthetic] = &[$(&$name),*];
    };
}

synthetic! {
    SSL_REDIRECT = "ingress#ssl-redirect", "redirect", -10000;
    REDIRECT = "ingress#redirect", "mock", -9900;
    APP_ROOT = "ingress#app-root", "mock", -9800;
    ALLOWLIST = "ingress#allowlist", "ip_restriction", -9000;
    DENYLIST = "ingress#denylist", "ip_restriction", -8900;
    CORS = "ingress#cors", "cors", -8000;
    LIMIT_CONN = "ingress#limit-connections", "limit_conn", -7100;
    RATE_LIMIT = "ingress#limit-rate", "rate_limiting", -7000;
    BODY_SIZE = "ingress#body-size", "body_limit", -6900;
    AUTH_URL = "ingress#auth-url", "forward_auth", -6000;
    BASIC_AUTH = "ingress#basic-auth", "htpasswd_auth", -5900;
    CANARY = "ingress#canary", "traffic_splitting", -5000;
    REWRITE = "ingress#rewrite", "proxy_rewrite", 100000;
}

/// The synthetic GatewayPlugins of `namespace` (config-less: every use brings its config).
pub(crate) fn gateway_plugins(namespace: &str) -> impl Iterator<Item = Arc<GatewayPlugin>> + '_ {
    ALL.iter().map(move |s| {
        let mut p = GatewayPlugin::new(
            s.alias,
            GatewayPluginSpec {
                plugin: s.plugin.into(),
                status: PluginStatus::Enable,
                order: s.order,
                config: None,
                exclude_paths: Vec::new(),
                policy: None,
            },
        );
        p.metadata.namespace = Some(namespace.into());
        p.metadata.generation = Some(1);
        Arc::new(p)
    })
}

/// Adds a reference to `plugin` with `config`.
pub(crate) fn add(refs: &mut PluginRefs, plugin: &Synthetic, config: serde_json::Value) {
    refs.insert(
        plugin.alias.into(),
        PluginRef {
            config: Some(config),
            ..PluginRef::default()
        },
    );
}

/// Adds a plain reference to each GatewayPlugin named by `hookway.dev/plugins`.
pub(crate) fn add_references(refs: &mut PluginRefs, aliases: &[String]) {
    for alias in aliases {
        refs.insert(alias.clone(), PluginRef::default());
    }
}
