//! `redirect` (Pingap): answers with a redirect when the request should be elsewhere — plain
//! HTTP to HTTPS, another host, or under a path prefix — keeping the path and query.

use std::sync::Arc;

use hookway_crds::catalogue::PluginConfig;
use http::{header, request, HeaderValue, StatusCode};
use serde::Deserialize;

use crate::plugin::respond;
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

fn default_status() -> u16 {
    301
}

/// The `redirect` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Redirect plain-HTTP requests to `https://`.
    #[serde(default)]
    pub http_to_https: bool,
    /// HTTPS port when it is not 443.
    #[serde(default)]
    pub https_port: Option<u16>,
    /// Redirect requests for any other host to this host (`name` or `name:port`).
    #[serde(default)]
    pub host: Option<String>,
    /// Redirect paths that do not start with this prefix to `prefix + path`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "default_status")]
    pub status: u16,
}

impl PluginConfig for RedirectConfig {
    fn validate(&self) -> Result<(), String> {
        if !matches!(self.status, 301 | 302 | 303 | 307 | 308) {
            return Err(format!(
                "status: {} is not 301, 302, 303, 307 or 308",
                self.status
            ));
        }
        if !self.http_to_https && self.host.is_none() && self.prefix.is_none() {
            return Err("one of http_to_https, host, prefix is needed".into());
        }
        if self.https_port == Some(0) {
            return Err("https_port: must be 1-65535".into());
        }
        if self.https_port.is_some() && !self.http_to_https {
            return Err("https_port: only with http_to_https".into());
        }
        if let Some(h) = &self.host {
            if h.parse::<http::uri::Authority>().is_err() || h.contains('@') {
                return Err(format!("host: {h:?} is not a host name"));
            }
        }
        if let Some(p) = &self.prefix {
            if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') {
                return Err(format!(
                    "prefix: {p:?} must start with '/' and not end with '/'"
                ));
            }
            p.parse::<http::uri::PathAndQuery>()
                .map_err(|e| format!("prefix: {e}"))?;
        }
        Ok(())
    }
}

/// A running `redirect`.
pub struct Redirect {
    config: RedirectConfig,
    status: StatusCode,
}

impl PluginFactory for Redirect {
    const NAME: &'static str = "redirect";
    type Config = RedirectConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let status = StatusCode::from_u16(config.status).map_err(|e| e.to_string())?;
        Ok(Arc::new(Redirect { config, status }))
    }
}

fn strip_port(host: &str) -> &str {
    // `[v6]:port` or `name:port`.
    if let Some(rest) = host.strip_prefix('[') {
        return rest.find(']').map_or(host, |i| &host[..i + 2]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Returns `true` when `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Redirect {
    /// The Location to send, or `None` when the request is where it should be.
    fn location(&self, req: &request::Parts, tls: bool) -> Option<String> {
        let c = &self.config;
        let req_host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
        let to_https = c.http_to_https && !tls;
        let wrong_host = c.host.as_deref().is_some_and(|h| {
            !h.eq_ignore_ascii_case(req_host) && !h.eq_ignore_ascii_case(strip_port(req_host))
        });
        let path = req.uri.path();
        let missing_prefix = c.prefix.as_deref().is_some_and(|p| !under(path, p));
        if !(to_https || wrong_host || missing_prefix) {
            return None;
        }
        let scheme = if to_https || tls { "https" } else { "http" };
        let mut host = c.host.as_deref().unwrap_or(req_host).to_string();
        if to_https {
            host = strip_port(&host).to_string();
            if let Some(port) = c.https_port.filter(|p| *p != 443) {
                host = format!("{host}:{port}");
            }
        }
        let prefix = if missing_prefix {
            c.prefix.as_deref().unwrap_or("")
        } else {
            ""
        };
        let query = req.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        Some(format!("{scheme}://{host}{prefix}{path}{query}"))
    }
}

impl Plugin for Redirect {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let Some(location) = self.location(req, ctx.tls) else {
            return Hook::Ready(Ok(Flow::Continue));
        };
        let Ok(value) = HeaderValue::from_str(&location) else {
            return Hook::Ready(Ok(Flow::Continue));
        };
        let mut resp = respond::with_body(
            self.status,
            "text/plain; charset=utf-8",
            format!("Redirecting to {location}\n"),
        );
        resp.headers_mut().insert(header::LOCATION, value);
        Hook::Ready(Ok(Flow::Respond(resp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::{build, ctx, on_request, request, validate};
    use serde_json::json;

    async fn location(
        config: serde_json::Value,
        uri: &str,
        host: &str,
        tls: bool,
    ) -> Option<(u16, String)> {
        let plugin = build("redirect", config).unwrap();
        let mut req = request("GET", uri, &[("host", host)]);
        let mut ctx = ctx();
        ctx.tls = tls;
        match on_request(plugin.as_ref(), &mut req, &mut ctx)
            .await
            .unwrap()
        {
            Flow::Continue => None,
            Flow::Respond(r) => Some((
                r.status().as_u16(),
                r.headers()["location"].to_str().unwrap().to_string(),
            )),
        }
    }

    #[tokio::test]
    async fn redirect_table() {
        let https = json!({"http_to_https": true});
        assert_eq!(
            location(https.clone(), "/a?b=1", "shop.example:8080", false).await,
            Some((301, "https://shop.example/a?b=1".into()))
        );
        assert_eq!(location(https, "/a", "shop.example", true).await, None);
        let port = json!({"http_to_https": true, "https_port": 8443, "status": 308});
        assert_eq!(
            location(port, "/", "shop.example", false).await,
            Some((308, "https://shop.example:8443/".into()))
        );
        let host = json!({"host": "www.example.com", "status": 302});
        assert_eq!(
            location(host.clone(), "/x", "example.com", false).await,
            Some((302, "http://www.example.com/x".into()))
        );
        assert_eq!(
            location(host.clone(), "/x", "www.example.com", false).await,
            None
        );
        assert_eq!(location(host, "/x", "WWW.example.com:80", true).await, None);
        let prefix = json!({"prefix": "/app"});
        assert_eq!(
            location(prefix.clone(), "/x?y", "h", false).await,
            Some((301, "http://h/app/x?y".into()))
        );
        assert_eq!(location(prefix.clone(), "/app/x", "h", false).await, None);
        assert_eq!(location(prefix.clone(), "/app", "h", false).await, None);
        assert_eq!(
            location(prefix, "/apple", "h", false).await,
            Some((301, "http://h/app/apple".into()))
        );
        let all = json!({"http_to_https": true, "host": "b.example", "prefix": "/v1"});
        assert_eq!(
            location(all, "/x", "a.example", false).await,
            Some((301, "https://b.example/v1/x".into()))
        );
    }

    #[test]
    fn config_errors_are_reported() {
        for (config, needle) in [
            (json!({}), "one of"),
            (json!({"http_to_https": true, "status": 200}), "status"),
            (json!({"prefix": "app"}), "prefix"),
            (json!({"prefix": "/app/"}), "prefix"),
            (json!({"host": "a b"}), "host"),
            (json!({"host": "x", "https_port": 8443}), "https_port"),
            (json!({"http_to_https": true, "to": "x"}), "unknown field"),
        ] {
            let err = validate("redirect", config.clone()).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }
}
