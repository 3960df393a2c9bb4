//! `ua_restriction` (Pingap's): allow or deny requests whose `User-Agent` matches one of a list
//! of regular expressions (compiled once into one `RegexSet`).

use std::sync::Arc;

use http::{header, request};
use regex::RegexSet;
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;

use super::restriction::{default_message, verdict, Mode};
use crate::plugin::respond::ErrorType;
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// Config of `ua_restriction`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `allow` (only matching agents) or `deny` (matching agents refused).
    #[serde(rename = "type")]
    pub mode: Mode,
    /// Regular expressions (Rust `regex` syntax, unanchored).
    pub ua_list: Vec<String>,
    /// Refusal message.
    #[serde(default = "default_message")]
    pub message: String,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
}

impl Config {
    fn compile(&self) -> Result<RegexSet, String> {
        RegexSet::new(&self.ua_list).map_err(|e| format!("ua_list: {e}"))
    }
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        if self.ua_list.is_empty() {
            return Err("ua_list must not be empty".into());
        }
        self.compile().map(|_| ())
    }
}

/// A running `ua_restriction`.
#[derive(Debug)]
pub struct UaRestriction {
    mode: Mode,
    set: RegexSet,
    message: String,
    error_type: ErrorType,
}

impl PluginFactory for UaRestriction {
    const NAME: &'static str = "ua_restriction";
    type Config = Config;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(UaRestriction {
            set: config.compile()?,
            mode: config.mode,
            message: config.message,
            error_type: config.error_type,
        }))
    }
}

impl Plugin for UaRestriction {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let matched = req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ua| self.set.is_match(ua));
        Hook::Ready(Ok(verdict(
            Self::NAME,
            ctx.route.as_deref(),
            self.mode,
            matched,
            &self.message,
            self.error_type,
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{self, body_string, ctx, parts};

    async fn status(p: &dyn Plugin, ua: Option<&str>) -> u16 {
        let headers: Vec<(&str, &str)> = ua.map(|u| ("user-agent", u)).into_iter().collect();
        let mut req = parts("GET", "/", &headers);
        match testing::request(p, &mut req, &mut ctx("1.1.1.1:1")).await {
            None => 200,
            Some(r) => r.status().as_u16(),
        }
    }

    #[tokio::test]
    async fn deny_bots() {
        let p = testing::build(
            "ua_restriction",
            json!({"type": "deny", "ua_list": ["(?i)bot", "^curl/"], "error_type": "json"}),
        );
        assert_eq!(status(&*p, Some("Googlebot/2.1")).await, 403);
        assert_eq!(status(&*p, Some("curl/8.0")).await, 403);
        assert_eq!(status(&*p, Some("Mozilla/5.0 curl/8.0")).await, 200);
        assert_eq!(status(&*p, None).await, 200);
        let mut req = parts("GET", "/", &[("user-agent", "bot")]);
        let resp = testing::request(&*p, &mut req, &mut ctx("1.1.1.1:1"))
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body_string(resp).await).unwrap();
        assert_eq!(
            v,
            json!({"message": "Request is forbidden", "status_code": 403})
        );
    }

    #[tokio::test]
    async fn allow_only_app() {
        let p = testing::build(
            "ua_restriction",
            json!({"type": "allow", "ua_list": ["^ShopApp/\\d+"]}),
        );
        assert_eq!(status(&*p, Some("ShopApp/12 (iOS)")).await, 200);
        assert_eq!(status(&*p, Some("Mozilla/5.0")).await, 403);
        assert_eq!(status(&*p, None).await, 403);
    }

    #[test]
    fn bad_regex_is_refused() {
        let reg = crate::plugins::builtin();
        let err = reg
            .catalogue()
            .validate(
                "ua_restriction",
                &json!({"type": "deny", "ua_list": ["(unclosed"]}),
            )
            .unwrap_err();
        assert!(err.starts_with("ua_list:"), "{err}");
    }
}
