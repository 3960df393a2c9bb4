//! `referer_restriction` (Pingap's): allow or deny requests by the host of their `Referer`.
//! Entries are exact hosts (`example.com`) or subdomain wildcards (`*.example.com`, which does
//! not match `example.com` itself).

use std::sync::Arc;

use http::{header, request, Uri};
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;

use super::restriction::{default_message, verdict, Mode};
use crate::plugin::respond::ErrorType;
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// Config of `referer_restriction`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `allow` (only listed referers) or `deny` (listed referers refused).
    #[serde(rename = "type")]
    pub mode: Mode,
    /// Hosts: `example.com` or `*.example.com`.
    pub referer_list: Vec<String>,
    /// Refusal message.
    #[serde(default = "default_message")]
    pub message: String,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        if self.referer_list.is_empty() {
            return Err("referer_list must not be empty".into());
        }
        if let Some(bad) = self
            .referer_list
            .iter()
            .find(|e| e.trim_start_matches("*.").is_empty() || e.contains('/'))
        {
            return Err(format!(
                "referer_list: {bad:?} is not a host or *.domain wildcard"
            ));
        }
        Ok(())
    }
}

/// A running `referer_restriction`.
#[derive(Debug)]
pub struct RefererRestriction {
    mode: Mode,
    exact: Vec<String>,
    /// `.example.com` for `*.example.com`.
    suffixes: Vec<String>,
    message: String,
    error_type: ErrorType,
}

impl PluginFactory for RefererRestriction {
    const NAME: &'static str = "referer_restriction";
    type Config = Config;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let (mut exact, mut suffixes) = (Vec::new(), Vec::new());
        for e in &config.referer_list {
            let e = e.to_ascii_lowercase();
            match e.strip_prefix('*') {
                Some(suffix) => suffixes.push(suffix.to_string()),
                None => exact.push(e),
            }
        }
        Ok(Arc::new(RefererRestriction {
            mode: config.mode,
            exact,
            suffixes,
            message: config.message,
            error_type: config.error_type,
        }))
    }
}

impl RefererRestriction {
    fn matches(&self, req: &request::Parts) -> bool {
        let Some(uri) = req
            .headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Uri>().ok())
        else {
            return false;
        };
        let Some(host) = uri.host() else { return false };
        let host = host.to_ascii_lowercase();
        self.exact.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }
}

impl Plugin for RefererRestriction {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        Hook::Ready(Ok(verdict(
            Self::NAME,
            ctx.route.as_deref(),
            self.mode,
            self.matches(req),
            &self.message,
            self.error_type,
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{self, ctx, parts};

    async fn status(p: &dyn Plugin, referer: Option<&str>) -> u16 {
        let headers: Vec<(&str, &str)> = referer.map(|r| ("referer", r)).into_iter().collect();
        let mut req = parts("GET", "/", &headers);
        match testing::request(p, &mut req, &mut ctx("1.1.1.1:1")).await {
            None => 200,
            Some(r) => r.status().as_u16(),
        }
    }

    #[tokio::test]
    async fn allow_list() {
        let p = testing::build(
            "referer_restriction",
            json!({"type": "allow", "referer_list": ["example.com", "*.cdn.net"]}),
        );
        assert_eq!(status(&*p, Some("https://example.com/page")).await, 200);
        assert_eq!(status(&*p, Some("https://img.cdn.net/x")).await, 200);
        assert_eq!(status(&*p, Some("https://cdn.net/x")).await, 403);
        assert_eq!(
            status(&*p, Some("https://evil.com/?example.com")).await,
            403
        );
        assert_eq!(status(&*p, None).await, 403);
    }

    #[tokio::test]
    async fn deny_list() {
        let p = testing::build(
            "referer_restriction",
            json!({"type": "deny", "referer_list": ["*.spam.io"], "message": "go away"}),
        );
        assert_eq!(status(&*p, Some("http://a.spam.io/")).await, 403);
        assert_eq!(status(&*p, Some("http://ok.io/")).await, 200);
        assert_eq!(status(&*p, None).await, 200);
    }

    #[test]
    fn validation() {
        let reg = crate::plugins::builtin();
        let check = |v| reg.catalogue().validate("referer_restriction", &v);
        assert!(check(json!({"type": "allow", "referer_list": []})).is_err());
        assert!(check(json!({"type": "allow", "referer_list": ["*."]})).is_err());
        assert!(check(json!({"type": "maybe", "referer_list": ["a"]})).is_err());
    }
}
