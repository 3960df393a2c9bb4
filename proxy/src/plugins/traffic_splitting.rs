//! `traffic_splitting` (Pingap): sends a share of a route's traffic to another Service — the
//! requests that carry a chosen header or cookie, and a weighted random share of the rest
//! (canary releases). Works by setting [`Ctx::upstream`].
//!
//! The compiler resolves the target Service (`name` in the namespace of the object whose config
//! names it, or `namespace/name` when a PlatformPolicy grants the reference) and binds it into
//! the chain entry; the proxy uses only that binding. A Service that does not exist is a warning
//! on the referring object's status, and requests sent to it are answered 503 (no such
//! upstream).

use std::sync::Arc;

use hookway_crds::catalogue::PluginConfig;
use hookway_crds::snapshot::ObjectKey;
use http::{header, request};
use rand::Rng;
use serde::Deserialize;

use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// Requests selected by a header or cookie.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Header or cookie name.
    pub name: String,
    /// Values that select; empty: any value (presence selects).
    #[serde(default)]
    pub values: Vec<String>,
}

/// The `traffic_splitting` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficSplittingConfig {
    /// The other Service: `name` (the namespace of the object whose config this is) or
    /// `namespace/name` (needs a PlatformPolicy `referenceGrants` entry).
    #[schemars(extend("x-hookway-ref" = "service"))]
    pub service: String,
    /// Percentage (0-100) of the requests not selected by header/cookie sent there.
    #[serde(default)]
    pub weight: u8,
    /// Requests with this header always go there.
    #[serde(default)]
    pub header: Option<Selector>,
    /// Requests with this cookie always go there.
    #[serde(default)]
    pub cookie: Option<Selector>,
}

fn is_dns_label_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl PluginConfig for TrafficSplittingConfig {
    fn validate(&self) -> Result<(), String> {
        let parts: Vec<&str> = self.service.split('/').collect();
        // The name may hold `#`: the synthetic Services of Ingress backends
        // (`<ingress>#<service>-<port>`, crds/src/lower/ingress) are named so.
        let name_ok = parts
            .last()
            .is_some_and(|name| name.split('#').all(is_dns_label_path));
        let namespace_ok = parts.len() == 1 || is_dns_label_path(parts[0]);
        if parts.len() > 2 || !name_ok || !namespace_ok {
            return Err(format!(
                "service: {:?} is not `name` or `namespace/name`",
                self.service
            ));
        }
        if self.weight > 100 {
            return Err(format!("weight: {} is not in 0-100", self.weight));
        }
        if self.weight == 0 && self.header.is_none() && self.cookie.is_none() {
            return Err("weight, header or cookie: nothing would be sent to the service".into());
        }
        if let Some(h) = &self.header {
            http::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| format!("header.name: {e}"))?;
        }
        if let Some(c) = &self.cookie {
            if c.name.is_empty() || c.name.contains([';', '=', ' ']) {
                return Err(format!("cookie.name: {:?} is not a cookie name", c.name));
            }
        }
        Ok(())
    }
}

/// A running `traffic_splitting`.
pub struct TrafficSplitting {
    target: Arc<ObjectKey>,
    weight: u32,
    header: Option<Selector>,
    cookie: Option<Selector>,
}

impl PluginFactory for TrafficSplitting {
    const NAME: &'static str = "traffic_splitting";
    type Config = TrafficSplittingConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(c: Self::Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let target = env.service(&c.service)?.clone();
        if !env.snapshot.upstreams.iter().any(|u| u.key == target) {
            tracing::warn!(alias = env.alias, service = %target, "traffic_splitting: unknown Service; requests sent there get 503");
        }
        Ok(Arc::new(TrafficSplitting {
            target: Arc::new(target),
            weight: u32::from(c.weight),
            header: c.header,
            cookie: c.cookie,
        }))
    }
}

fn selects(sel: &Selector, value: &str) -> bool {
    sel.values.is_empty() || sel.values.iter().any(|v| v == value)
}

impl TrafficSplitting {
    fn selected(&self, req: &request::Parts) -> bool {
        if let Some(h) = &self.header {
            if req
                .headers
                .get_all(h.name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| selects(h, v.trim()))
            {
                return true;
            }
        }
        if let Some(c) = &self.cookie {
            let found = req
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .any(|(k, v)| k == c.name && selects(c, v));
            if found {
                return true;
            }
        }
        match self.weight {
            0 => false,
            100.. => true,
            w => rand::rng().random_range(0..100) < w,
        }
    }
}

impl Plugin for TrafficSplitting {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if self.selected(req) {
            ctx.upstream = Some(self.target.clone());
        }
        Hook::Ready(Ok(Flow::Continue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::{build, ctx, on_request, request, validate};
    use serde_json::json;

    async fn upstream(plugin: &dyn Plugin, headers: &[(&str, &str)]) -> Option<ObjectKey> {
        let mut req = request("GET", "/", headers);
        let mut ctx = ctx();
        ctx.upstream = Some(std::sync::Arc::new(ObjectKey::new("shop", "stable")));
        on_request(plugin, &mut req, &mut ctx).await.unwrap();
        ctx.upstream.map(|k| (*k).clone())
    }

    #[tokio::test]
    async fn header_and_cookie_select_the_canary() {
        let plugin = build(
            "traffic_splitting",
            json!({"service": "shop/canary",
            "header": {"name": "x-canary", "values": ["1", "yes"]}, "cookie": {"name": "beta"}}),
        )
        .unwrap();
        let canary = Some(ObjectKey::new("shop", "canary"));
        let stable = Some(ObjectKey::new("shop", "stable"));
        assert_eq!(
            upstream(plugin.as_ref(), &[("x-canary", "yes")]).await,
            canary
        );
        assert_eq!(
            upstream(plugin.as_ref(), &[("x-canary", "no")]).await,
            stable
        );
        assert_eq!(
            upstream(plugin.as_ref(), &[("cookie", "a=1; beta=anything")]).await,
            canary
        );
        assert_eq!(
            upstream(plugin.as_ref(), &[("cookie", "alpha=1")]).await,
            stable
        );
        assert_eq!(upstream(plugin.as_ref(), &[]).await, stable);
    }

    #[tokio::test]
    async fn weight_sends_that_share() {
        let plugin = build(
            "traffic_splitting",
            json!({"service": "canary", "weight": 30}),
        )
        .unwrap();
        let canary = Some(ObjectKey::new("default", "canary"));
        let mut hits = 0;
        for _ in 0..10_000 {
            if upstream(plugin.as_ref(), &[]).await == canary {
                hits += 1;
            }
        }
        assert!((2_500..=3_500).contains(&hits), "{hits} of 10000");
        let all = build(
            "traffic_splitting",
            json!({"service": "canary", "weight": 100}),
        )
        .unwrap();
        assert_eq!(upstream(all.as_ref(), &[]).await, canary);
    }

    #[test]
    fn config_errors_are_reported() {
        for (config, needle) in [
            (json!({"service": "canary"}), "nothing would be sent"),
            (json!({"service": "a/b/c", "weight": 5}), "service"),
            (json!({"service": "Canary", "weight": 5}), "service"),
            (json!({"service": "c", "weight": 101}), "weight"),
            (
                json!({"service": "c", "header": {"name": "a b"}}),
                "header.name",
            ),
            (
                json!({"service": "c", "cookie": {"name": "a=b"}}),
                "cookie.name",
            ),
            (
                json!({"service": "c", "weight": 5, "sticky": true}),
                "unknown field",
            ),
        ] {
            let err = validate("traffic_splitting", config.clone()).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }
}
