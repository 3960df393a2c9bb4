//! `request_redirect`: the Gateway API's `RequestRedirect` filter — answers every request with a
//! redirect whose Location keeps what the config does not change (scheme, host, port, path,
//! query). See `docs/plugins/request_redirect.md`.
//!
//! Port rules (spec): a configured `port` is used; else a configured `scheme` brings its
//! well-known port (80/443, left out of the Location); else the port the client used (from its
//! Host header, i.e. the listener port as the client sees it). 80 with http and 443 with https are
//! never written.

use std::sync::Arc;

use hookway_crds::catalogue::PluginConfig;
use http::{header, request, HeaderValue, StatusCode};
use serde::Deserialize;

use super::path_prefix;
use crate::plugin::respond;
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// The `request_redirect` plugin kind.
pub struct RequestRedirect;

/// A path change.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathChange {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The new path, or the replacement of the prefix.
    pub value: String,
    /// The matched prefix (`ReplacePrefixMatch`).
    #[serde(default)]
    pub prefix: Option<String>,
}

/// The `request_redirect` config.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestRedirectConfig {
    /// `http` or `https` (default: the request's).
    #[serde(default)]
    pub scheme: Option<String>,
    /// Host name (default: the request's).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Port (default: see the module docs).
    #[serde(default)]
    pub port: Option<u16>,
    /// Path change (default: the request's path).
    #[serde(default)]
    pub path: Option<PathChange>,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default = "default_status")]
    pub status: u16,
}

fn default_status() -> u16 {
    302
}

impl PluginConfig for RequestRedirectConfig {
    fn validate(&self) -> Result<(), String> {
        if !matches!(self.status, 301 | 302 | 303 | 307 | 308) {
            return Err(format!(
                "status: {} is not 301, 302, 303, 307 or 308",
                self.status
            ));
        }
        if let Some(s) = &self.scheme {
            if s != "http" && s != "https" {
                return Err(format!("scheme: {s:?} is not http or https"));
            }
        }
        if self.port == Some(0) {
            return Err("port: must be 1-65535".into());
        }
        if let Some(h) = &self.hostname {
            if h.is_empty() || h.parse::<http::uri::Authority>().is_err() || h.contains([':', '@'])
            {
                return Err(format!("hostname: {h:?} is not a host name"));
            }
        }
        if let Some(p) = &self.path {
            match (p.kind.as_str(), &p.prefix) {
                ("ReplaceFullPath", _) | ("ReplacePrefixMatch", Some(_)) => {}
                ("ReplacePrefixMatch", None) => {
                    return Err("path.prefix: required for ReplacePrefixMatch".into())
                }
                (other, _) => {
                    return Err(format!(
                        "path.type: {other:?} is not ReplaceFullPath or ReplacePrefixMatch"
                    ))
                }
            }
            if !p.value.starts_with('/') {
                return Err(format!("path.value: {:?} must start with '/'", p.value));
            }
        }
        Ok(())
    }
}

/// A running `request_redirect`.
struct Running {
    config: RequestRedirectConfig,
    status: StatusCode,
}

impl PluginFactory for RequestRedirect {
    const NAME: &'static str = "request_redirect";
    type Config = RequestRedirectConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let status = StatusCode::from_u16(config.status).map_err(|e| e.to_string())?;
        Ok(Arc::new(Running { config, status }))
    }
}

/// Splits `host[:port]` (or `[v6][:port]`).
fn split_host(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let port = rest[end + 1..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok());
            return (&authority[..end + 2], port);
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (authority, None),
    }
}

impl Running {
    fn location(&self, req: &request::Parts, tls: bool) -> String {
        let c = &self.config;
        let authority = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let (req_host, req_port) = split_host(authority);
        let scheme = c
            .scheme
            .as_deref()
            .unwrap_or(if tls { "https" } else { "http" });
        let host = c.hostname.as_deref().unwrap_or(req_host);
        let port = match (c.port, &c.scheme) {
            (Some(p), _) => Some(p),
            (None, Some(_)) => None,
            (None, None) => req_port,
        };
        let port = port.filter(|p| !matches!((scheme, p), ("http", 80) | ("https", 443)));
        let path = req.uri.path();
        let path = match &c.path {
            None => path.to_string(),
            Some(p) if p.kind == "ReplaceFullPath" => p.value.clone(),
            Some(p) => path_prefix::replace(path, p.prefix.as_deref().unwrap_or("/"), &p.value),
        };
        let query = req.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}{query}"),
            None => format!("{scheme}://{host}{path}{query}"),
        }
    }
}

impl Plugin for Running {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let location = self.location(req, ctx.tls);
        let mut resp = respond::with_body(
            self.status,
            "text/plain; charset=utf-8",
            format!("Redirecting to {location}\n"),
        );
        match HeaderValue::from_str(&location) {
            Ok(value) => {
                resp.headers_mut().insert(header::LOCATION, value);
            }
            Err(_) => {
                resp = respond::with_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "redirect target is not a valid Location\n".to_string(),
                );
            }
        }
        Hook::Ready(Ok(Flow::Respond(resp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::{build, ctx, on_request, request};
    use serde_json::json;

    async fn location(
        config: serde_json::Value,
        uri: &str,
        host: &str,
        tls: bool,
    ) -> (u16, String) {
        let plugin = build("request_redirect", config).unwrap();
        let mut req = request("GET", uri, &[("host", host)]);
        let mut ctx = ctx();
        ctx.tls = tls;
        match on_request(plugin.as_ref(), &mut req, &mut ctx)
            .await
            .unwrap()
        {
            Flow::Continue => panic!("no redirect"),
            Flow::Respond(r) => (
                r.status().as_u16(),
                r.headers()["location"].to_str().unwrap().to_string(),
            ),
        }
    }

    #[tokio::test]
    async fn location_follows_the_gateway_api_rules() {
        // (config, uri, host header, tls, expected status and Location)
        let cases = [
            (
                json!({"scheme": "https"}),
                "/a?b=1",
                "example.org:8080",
                false,
                (302, "https://example.org/a?b=1"),
            ),
            (
                json!({"hostname": "example.org", "status": 301}),
                "/a",
                "other:8080",
                false,
                (301, "http://example.org:8080/a"),
            ),
            (
                json!({"port": 8443}),
                "/",
                "example.org",
                false,
                (302, "http://example.org:8443/"),
            ),
            (
                json!({"scheme": "http", "port": 80}),
                "/",
                "example.org:8080",
                true,
                (302, "http://example.org/"),
            ),
            (
                json!({"scheme": "https", "port": 443}),
                "/",
                "example.org",
                false,
                (302, "https://example.org/"),
            ),
            (
                json!({"scheme": "https", "port": 8443}),
                "/",
                "example.org",
                false,
                (302, "https://example.org:8443/"),
            ),
            (
                json!({"path": {"type": "ReplaceFullPath", "value": "/new"}}),
                "/old/x?q",
                "h",
                false,
                (302, "http://h/new?q"),
            ),
            (
                json!({"path": {"type": "ReplacePrefixMatch", "value": "/new", "prefix": "/old"}, "status": 308}),
                "/old/x",
                "h",
                false,
                (308, "http://h/new/x"),
            ),
            (
                json!({"hostname": "h2"}),
                "/",
                "h:80",
                false,
                (302, "http://h2/"),
            ),
        ];
        for (config, uri, host, tls, (status, want)) in cases {
            let got = location(config.clone(), uri, host, tls).await;
            assert_eq!(got, (status, want.to_string()), "{config} {uri} {host}");
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        use crate::plugins::harness::validate;
        for bad in [
            json!({"status": 200}),
            json!({"scheme": "ftp"}),
            json!({"port": 0}),
            json!({"path": {"type": "ReplacePrefixMatch", "value": "/x"}}),
            json!({"path": {"type": "ReplaceFullPath", "value": "x"}}),
        ] {
            assert!(validate("request_redirect", bad.clone()).is_err(), "{bad}");
        }
    }
}
