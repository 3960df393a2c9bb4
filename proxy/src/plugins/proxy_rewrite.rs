//! `proxy_rewrite`: rewrites the upstream request's path, Host and headers (Apinto), and may
//! retarget the upstream call — scheme, host, port, path, timeout — as Edge Microgateway plugins
//! can. Never fails at request time: everything that could fail is checked when the config is
//! compiled.
//!
//! ```text
//!  path:  uri (replaces the path, keeps the query)  ─ wins over ─  regex_uri [pattern, replacement]
//!  Host:  host
//!  hdrs:  headers {name: value}  ("" deletes)
//!  ctx.target ← target {scheme, host, port, path, timeout}
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hookway_crds::catalogue::PluginConfig;
use hookway_crds::snapshot::Scheme;
use http::uri::PathAndQuery;
use http::{header, request, HeaderName, HeaderValue, Uri};
use regex::Regex;
use serde::Deserialize;

use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// The `proxy_rewrite` config.
#[derive(Deserialize, Debug, Clone, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyRewriteConfig {
    /// New path (must start with `/`); the query string is kept. Wins over `regex_uri`.
    #[serde(default)]
    pub uri: Option<String>,
    /// `[pattern, replacement]`: when the path matches, every match is replaced (`$1` groups).
    #[serde(default)]
    pub regex_uri: Option<Vec<String>>,
    /// `{prefix, with}`: a path under `prefix` (by whole segments) gets `with` in its place (the
    /// Gateway API's `ReplacePrefixMatch`). Used when neither `uri` nor `regex_uri` is set.
    #[serde(default)]
    pub replace_prefix: Option<ReplacePrefix>,
    /// The Host header sent upstream.
    #[serde(default)]
    pub host: Option<String>,
    /// Request headers to set; an empty value deletes the header.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Retargets the upstream call.
    #[serde(default)]
    pub target: Option<TargetConfig>,
}

/// A prefix replacement.
#[derive(Deserialize, Debug, Clone, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplacePrefix {
    /// The prefix (starts with `/`).
    pub prefix: String,
    /// What replaces it (starts with `/`).
    pub with: String,
}

/// Where to send the request instead of the Service's balanced nodes.
#[derive(Deserialize, Debug, Clone, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Option<Scheme>,
    /// Host name or address to connect to (needs `port` unless the scheme default fits).
    #[serde(default)]
    pub host: Option<String>,
    /// Port to connect to.
    #[serde(default)]
    pub port: Option<u16>,
    /// Path on the target (replaces the request path, query kept).
    #[serde(default)]
    pub path: Option<String>,
    /// Response-head timeout, e.g. `5s`, `500ms`.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// Header edits compiled from the config.
enum HeaderEdit {
    Set(HeaderName, HeaderValue),
    Remove(HeaderName),
}

/// How the path is rewritten.
enum PathRewrite {
    None,
    Replace(String),
    Regex(Regex, String),
    Prefix(String, String),
}

/// A running `proxy_rewrite`.
pub struct ProxyRewrite {
    path: PathRewrite,
    host: Option<HeaderValue>,
    headers: Vec<HeaderEdit>,
    target: crate::plugin::TargetOverride,
}

fn parse_path(field: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{field}: {path:?} must start with '/'"));
    }
    path.parse::<PathAndQuery>()
        .map(|_| ())
        .map_err(|e| format!("{field}: {path:?}: {e}"))
}

impl PluginConfig for ProxyRewriteConfig {
    fn validate(&self) -> Result<(), String> {
        self.compile().map(|_| ())
    }
}

impl ProxyRewriteConfig {
    fn compile(&self) -> Result<ProxyRewrite, String> {
        let path = match (&self.uri, &self.regex_uri) {
            (Some(uri), _) => {
                parse_path("uri", uri)?;
                PathRewrite::Replace(uri.clone())
            }
            (None, Some(pair)) => {
                let [pattern, replacement] = pair.as_slice() else {
                    return Err(format!(
                        "regex_uri: expected [pattern, replacement], got {} items",
                        pair.len()
                    ));
                };
                let re = Regex::new(pattern).map_err(|e| format!("regex_uri: {e}"))?;
                PathRewrite::Regex(re, replacement.clone())
            }
            (None, None) => match &self.replace_prefix {
                Some(r) => {
                    parse_path("replace_prefix.prefix", &r.prefix)?;
                    parse_path("replace_prefix.with", &r.with)?;
                    PathRewrite::Prefix(r.prefix.clone(), r.with.clone())
                }
                None => PathRewrite::None,
            },
        };
        let host = match &self.host {
            Some(h) if h.is_empty() => return Err("host: must not be empty".into()),
            Some(h) => Some(HeaderValue::from_str(h).map_err(|e| format!("host: {e}"))?),
            None => None,
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("headers.{name}: {e}"))?;
            if value.is_empty() {
                headers.push(HeaderEdit::Remove(name));
            } else {
                let v = HeaderValue::from_str(value).map_err(|e| format!("headers.{name}: {e}"))?;
                headers.push(HeaderEdit::Set(name, v));
            }
        }
        let mut target = crate::plugin::TargetOverride::default();
        if let Some(t) = &self.target {
            if let Some(p) = &t.path {
                parse_path("target.path", p)?;
            }
            if let Some(h) = &t.host {
                if h.is_empty() || h.contains(['/', ' ', '?', '#', '@']) {
                    return Err(format!("target.host: {h:?} is not a host name or address"));
                }
            }
            if t.port == Some(0) {
                return Err("target.port: must be 1-65535".into());
            }
            if t.port.is_some() && t.host.is_none() {
                return Err("target.port: needs target.host".into());
            }
            let timeout = match &t.timeout {
                Some(s) => {
                    let d = hookway_crds::duration::parse(s)
                        .map_err(|e| format!("target.timeout: {e}"))?;
                    if d == Duration::ZERO {
                        return Err("target.timeout: must be positive".into());
                    }
                    Some(d)
                }
                None => None,
            };
            target = crate::plugin::TargetOverride {
                scheme: t.scheme,
                host: t.host.clone(),
                port: t.port,
                path: t.path.clone(),
                timeout,
            };
        }
        Ok(ProxyRewrite {
            path,
            host,
            headers,
            target,
        })
    }
}

impl PluginFactory for ProxyRewrite {
    const NAME: &'static str = "proxy_rewrite";
    type Config = ProxyRewriteConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(config.compile()?))
    }
}

/// Replaces the path of `uri`, keeping its query and authority.
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")).ok()?,
        None => PathAndQuery::try_from(path).ok()?,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).ok()
}

impl ProxyRewrite {
    fn rewrite_path(&self, req: &mut request::Parts) {
        let new_path = match &self.path {
            PathRewrite::None => return,
            PathRewrite::Replace(p) => std::borrow::Cow::Borrowed(p.as_str()),
            PathRewrite::Regex(re, replacement) => {
                let path = req.uri.path();
                if !re.is_match(path) {
                    return;
                }
                std::borrow::Cow::Owned(re.replace_all(path, replacement.as_str()).into_owned())
            }
            PathRewrite::Prefix(prefix, with) => {
                std::borrow::Cow::Owned(super::path_prefix::replace(req.uri.path(), prefix, with))
            }
        };
        match with_path(&req.uri, &new_path) {
            Some(uri) => req.uri = uri,
            // A regex replacement produced something that is not a path: keep the original
            // rather than fail the request (the original never errors here either).
            None => {
                tracing::debug!(path = %new_path, "proxy_rewrite: rewritten path is invalid, kept")
            }
        }
    }

    fn rewrite_host(&self, req: &mut request::Parts) {
        let Some(host) = &self.host else { return };
        req.headers.insert(header::HOST, host.clone());
        if req.uri.authority().is_some() {
            let mut parts = req.uri.clone().into_parts();
            if let Ok(authority) = host.to_str().unwrap_or_default().parse() {
                parts.authority = Some(authority);
                if let Ok(uri) = Uri::from_parts(parts) {
                    req.uri = uri;
                }
            }
        }
    }
}

impl Plugin for ProxyRewrite {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        self.rewrite_path(req);
        self.rewrite_host(req);
        for edit in &self.headers {
            match edit {
                HeaderEdit::Set(name, value) => {
                    req.headers.insert(name.clone(), value.clone());
                }
                HeaderEdit::Remove(name) => {
                    req.headers.remove(name);
                }
            }
        }
        let t = &self.target;
        if t.scheme.is_some() {
            ctx.target.scheme = t.scheme;
        }
        if t.host.is_some() {
            ctx.target.host.clone_from(&t.host);
            ctx.target.port = t.port;
        }
        if t.path.is_some() {
            ctx.target.path.clone_from(&t.path);
        }
        if t.timeout.is_some() {
            ctx.target.timeout = t.timeout;
        }
        Hook::Ready(Ok(Flow::Continue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::{build, ctx, on_request, request, validate};
    use serde_json::json;

    async fn run(
        config: serde_json::Value,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (request::Parts, Ctx) {
        let plugin = build("proxy_rewrite", config).expect("build");
        let mut req = request("GET", uri, headers);
        let mut ctx = ctx();
        let flow = on_request(plugin.as_ref(), &mut req, &mut ctx)
            .await
            .expect("hook");
        assert!(matches!(flow, Flow::Continue));
        (req, ctx)
    }

    #[tokio::test]
    async fn uri_replaces_path_and_keeps_query() {
        let (req, _) = run(json!({"uri": "/v2/items"}), "/v1/things?a=1&b=2", &[]).await;
        assert_eq!(req.uri, "/v2/items?a=1&b=2");
    }

    #[tokio::test]
    async fn uri_wins_over_regex_uri() {
        let (req, _) = run(
            json!({"uri": "/fixed", "regex_uri": ["^/api/(.*)", "/$1"]}),
            "/api/x",
            &[],
        )
        .await;
        assert_eq!(req.uri.path(), "/fixed");
    }

    #[tokio::test]
    async fn regex_uri_replaces_all_matches_with_groups() {
        let (req, _) = run(
            json!({"regex_uri": ["/old/([a-z]+)", "/new/$1"]}),
            "/old/a/old/b?q=1",
            &[],
        )
        .await;
        assert_eq!(req.uri, "/new/a/new/b?q=1");
    }

    #[tokio::test]
    async fn regex_uri_without_match_keeps_path() {
        let (req, _) = run(json!({"regex_uri": ["^/api/(.*)", "/$1"]}), "/web/x", &[]).await;
        assert_eq!(req.uri.path(), "/web/x");
    }

    #[tokio::test]
    async fn host_sets_host_header_and_authority() {
        let (req, _) = run(
            json!({"host": "backend.internal"}),
            "http://front.example/x",
            &[("host", "front.example")],
        )
        .await;
        assert_eq!(req.headers[header::HOST], "backend.internal");
        assert_eq!(req.uri.host(), Some("backend.internal"));
    }

    #[tokio::test]
    async fn empty_header_value_deletes_others_set() {
        let (req, _) = run(
            json!({"headers": {"x-secret": "", "x-added": "yes", "x-replaced": "new"}}),
            "/",
            &[
                ("x-secret", "s"),
                ("x-replaced", "old"),
                ("x-replaced", "old2"),
            ],
        )
        .await;
        assert!(req.headers.get("x-secret").is_none());
        assert_eq!(req.headers["x-added"], "yes");
        let all: Vec<_> = req.headers.get_all("x-replaced").iter().collect();
        assert_eq!(all, ["new"]);
    }

    #[tokio::test]
    async fn target_retargets_the_upstream() {
        let (_, ctx) = run(
            json!({"target": {"scheme": "https", "host": "10.0.0.9", "port": 8443, "path": "/t", "timeout": "1500ms"}}),
            "/",
            &[],
        )
        .await;
        assert_eq!(ctx.target.scheme, Some(Scheme::Https));
        assert_eq!(ctx.target.host.as_deref(), Some("10.0.0.9"));
        assert_eq!(ctx.target.port, Some(8443));
        assert_eq!(ctx.target.path.as_deref(), Some("/t"));
        assert_eq!(ctx.target.timeout, Some(Duration::from_millis(1500)));
    }

    #[tokio::test]
    async fn empty_config_changes_nothing() {
        let (req, ctx) = run(json!({}), "/a?b=c", &[("x", "1")]).await;
        assert_eq!(req.uri, "/a?b=c");
        assert_eq!(req.headers["x"], "1");
        assert_eq!(ctx.target, crate::plugin::TargetOverride::default());
    }

    #[test]
    fn config_errors_are_reported() {
        for (config, needle) in [
            (json!({"uri": "no-slash"}), "must start with '/'"),
            (json!({"regex_uri": ["(unclosed", "/"]}), "regex_uri"),
            (
                json!({"regex_uri": ["^/a"]}),
                "expected [pattern, replacement]",
            ),
            (json!({"headers": {"bad name": "v"}}), "headers.bad name"),
            (json!({"host": ""}), "host"),
            (json!({"target": {"timeout": "soon"}}), "target.timeout"),
            (json!({"target": {"port": 80}}), "needs target.host"),
            (json!({"target": {"scheme": "ftp"}}), "target.scheme"),
            (json!({"rewrite": "/"}), "unknown field"),
        ] {
            let err = validate("proxy_rewrite", config.clone()).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }
}
