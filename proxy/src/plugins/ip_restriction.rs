//! `ip_restriction`: allow (`white`) or deny (`black`) lists of client addresses.
//!
//! Entries are exact IPv4/IPv6 addresses, CIDR blocks, trailing IPv4 wildcards (`192.168.*`) or
//! `*`, parsed once at build time. The client address is the proxy-wide one (the TCP peer, or
//! what a proxy listed in `--trusted-proxies` forwarded), unless this plugin lists
//! `trusted_proxies` of its own (see [`ClientIp`]).

use std::sync::Arc;

use http::{request, StatusCode};
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;

use super::client_ip::ClientIp;
use super::decisions::{self, Decision};
use super::ip_set::IpSet;
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// The denial message (Apinto's).
pub const MESSAGE: &str = "[ip_restriction] Illegal IP!";

/// Whether the list allows or denies.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListType {
    /// Only addresses in `ip_white_list` pass.
    White,
    /// Addresses in `ip_black_list` are refused.
    Black,
}

/// Config of `ip_restriction`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `white` (allow list) or `black` (deny list).
    pub ip_list_type: ListType,
    /// Allowed addresses (used with `white`).
    #[serde(default)]
    pub ip_white_list: Vec<String>,
    /// Denied addresses (used with `black`).
    #[serde(default)]
    pub ip_black_list: Vec<String>,
    /// Proxies (addresses / CIDRs) whose forwarded client address is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Header trusted proxies put the client address in (default `X-Forwarded-For`).
    #[serde(default)]
    pub real_ip_header: Option<String>,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
}

impl Config {
    fn active_list(&self) -> (&'static str, &[String]) {
        match self.ip_list_type {
            ListType::White => ("ip_white_list", &self.ip_white_list),
            ListType::Black => ("ip_black_list", &self.ip_black_list),
        }
    }
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        let (name, list) = self.active_list();
        if list.is_empty() {
            return Err(format!(
                "{name} must not be empty when ip_list_type is {:?}",
                self.ip_list_type
            )
            .to_lowercase());
        }
        IpSet::parse(list).map_err(|e| format!("{name}: {e}"))?;
        ClientIp::new(&self.trusted_proxies, self.real_ip_header.as_deref())?;
        Ok(())
    }
}

/// A running `ip_restriction`.
#[derive(Debug)]
pub struct IpRestriction {
    allow_listed: bool,
    list: IpSet,
    client: ClientIp,
    error_type: ErrorType,
}

impl PluginFactory for IpRestriction {
    const NAME: &'static str = "ip_restriction";
    type Config = Config;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let (name, list) = config.active_list();
        Ok(Arc::new(IpRestriction {
            allow_listed: config.ip_list_type == ListType::White,
            list: IpSet::parse(list).map_err(|e| format!("{name}: {e}"))?,
            client: ClientIp::new(&config.trusted_proxies, config.real_ip_header.as_deref())?,
            error_type: config.error_type,
        }))
    }
}

impl Plugin for IpRestriction {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let ip = self
            .client
            .resolve_or(&req.headers, ctx.peer_addr.ip(), ctx.client_ip);
        if self.list.contains(ip) == self.allow_listed {
            return Hook::Ready(Ok(Flow::Continue));
        }
        tracing::debug!(client_ip = %ip, route = ?ctx.route, "ip_restriction denied");
        decisions::record(Self::NAME, ctx.route.as_deref(), Decision::Denied);
        Hook::Ready(Ok(Flow::Respond(respond::error(
            StatusCode::FORBIDDEN,
            MESSAGE,
            self.error_type,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{self, body_string, ctx, parts};

    async fn verdict(config: serde_json::Value, peer: &str, headers: &[(&str, &str)]) -> u16 {
        let plugin = testing::build("ip_restriction", config);
        let mut req = parts("GET", "/", headers);
        match testing::request(&*plugin, &mut req, &mut ctx(peer)).await {
            None => 200,
            Some(resp) => resp.status().as_u16(),
        }
    }

    #[tokio::test]
    async fn white_list_allows_only_listed() {
        let cfg = json!({"ip_list_type": "white", "ip_white_list": ["10.0.0.0/8", "2001:db8::1", "192.168.*"]});
        assert_eq!(verdict(cfg.clone(), "10.3.4.5:1000", &[]).await, 200);
        assert_eq!(verdict(cfg.clone(), "[2001:db8::1]:1000", &[]).await, 200);
        assert_eq!(verdict(cfg.clone(), "192.168.9.9:1000", &[]).await, 200);
        assert_eq!(verdict(cfg.clone(), "11.0.0.1:1000", &[]).await, 403);
        assert_eq!(verdict(cfg, "[2001:db8::2]:1000", &[]).await, 403);
    }

    #[tokio::test]
    async fn black_list_denies_listed() {
        let cfg =
            json!({"ip_list_type": "black", "ip_black_list": ["1.2.3.4"], "ip_white_list": ["*"]});
        assert_eq!(verdict(cfg.clone(), "1.2.3.4:1", &[]).await, 403);
        assert_eq!(verdict(cfg, "1.2.3.5:1", &[]).await, 200);
    }

    #[tokio::test]
    async fn denial_follows_apinto_convention() {
        let plugin = testing::build(
            "ip_restriction",
            json!({"ip_list_type": "black", "ip_black_list": ["*"], "error_type": "json"}),
        );
        let mut req = parts("GET", "/", &[]);
        let mut cx = ctx("8.8.8.8:1");
        cx.route = Some(std::sync::Arc::new(hookway_crds::snapshot::ObjectKey::new(
            "apps",
            "ip-metrics",
        )));
        let resp = testing::request(&*plugin, &mut req, &mut cx)
            .await
            .expect("denied");
        let counted = decisions::counter()
            .with_label_values(&["ip_restriction", "apps/ip-metrics", "denied"])
            .get();
        assert_eq!(
            counted, 1,
            "denial counted in hookway_plugin_decisions_total"
        );
        assert_eq!(resp.status(), 403);
        let body: serde_json::Value = serde_json::from_str(&body_string(resp).await).unwrap();
        assert_eq!(body, json!({"message": MESSAGE, "status_code": 403}));
    }

    #[tokio::test]
    async fn forwarded_headers_ignored_from_untrusted_peers() {
        let cfg = json!({"ip_list_type": "white", "ip_white_list": ["7.7.7.7"]});
        let spoof = [("x-forwarded-for", "7.7.7.7"), ("x-real-ip", "7.7.7.7")];
        assert_eq!(verdict(cfg, "9.9.9.9:1", &spoof).await, 403);
    }

    #[tokio::test]
    async fn forwarded_address_used_behind_trusted_proxy() {
        let cfg = json!({"ip_list_type": "black", "ip_black_list": ["7.7.7.7"],
                         "trusted_proxies": ["10.0.0.0/8"]});
        let xff = [("x-forwarded-for", "7.7.7.7, 10.0.0.2")];
        assert_eq!(verdict(cfg.clone(), "10.0.0.1:1", &xff).await, 403);
        // The same header from an untrusted peer is not believed.
        assert_eq!(verdict(cfg, "9.9.9.9:1", &xff).await, 200);
        let cfg = json!({"ip_list_type": "black", "ip_black_list": ["7.7.7.7"],
                         "trusted_proxies": ["127.0.0.1"], "real_ip_header": "X-Real-IP"});
        assert_eq!(
            verdict(cfg, "127.0.0.1:1", &[("x-real-ip", "7.7.7.7")]).await,
            403
        );
    }

    #[test]
    fn config_validation() {
        let cat = crate::plugins::builtin();
        let cat = cat.catalogue();
        let ok = json!({"ip_list_type": "white", "ip_white_list": ["10.*"]});
        assert!(cat.validate("ip_restriction", &ok).is_ok());
        let err = cat
            .validate(
                "ip_restriction",
                &json!({"ip_list_type": "white", "ip_white_list": ["10.0.0.300"]}),
            )
            .unwrap_err();
        assert!(
            err.contains("ip_white_list") && err.contains("10.0.0.300"),
            "{err}"
        );
        let err = cat
            .validate("ip_restriction", &json!({"ip_list_type": "white"}))
            .unwrap_err();
        assert!(err.contains("must not be empty"), "{err}");
        let err = cat
            .validate(
                "ip_restriction",
                &json!({"ip_list_type": "grey", "ip_white_list": ["*"]}),
            )
            .unwrap_err();
        assert!(err.contains("ip_list_type"), "{err}");
        let err = cat
            .validate(
                "ip_restriction",
                &json!({"ip_list_type": "white", "ip_white_list": ["*"], "extra": 1}),
            )
            .unwrap_err();
        assert!(err.contains("extra"), "{err}");
        let err = cat
            .validate(
                "ip_restriction",
                &json!({"ip_list_type": "white", "ip_white_list": ["*"],
                                                "trusted_proxies": ["nope"]}),
            )
            .unwrap_err();
        assert!(err.contains("trusted_proxies"), "{err}");
    }
}
