//! `cors`: answers preflights itself (204, upstream not called), refuses disallowed origins and
//! methods (403), and adds the `Access-Control-*` headers to actual responses.

use std::sync::Arc;

use http::{header, request, response, HeaderValue, Method, Response, StatusCode};
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;

use super::decisions::{self, Decision};
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{
    BuildEnv, Ctx, Flow, Hook, HookResult, Phases, Plugin, PluginError, PluginFactory, ProxyBody,
};

/// Answer for a disallowed origin (Apinto's).
pub const ORIGIN_NOT_ALLOWED: &str = "[CORS] The origin is not allowed";

fn star() -> Vec<String> {
    vec!["*".into()]
}
fn default_methods() -> Vec<String> {
    ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        .map(String::from)
        .to_vec()
}
fn default_max_age() -> u64 {
    5
}

/// Config of `cors`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Allowed origins: `*`, exact (`https://a.example.com`) or one leading subdomain wildcard
    /// (`https://*.example.com`).
    #[serde(default = "star")]
    pub allow_origins: Vec<String>,
    /// Allowed methods (`*`: any).
    #[serde(default = "default_methods")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers (`*`: whatever the preflight asks for).
    #[serde(default = "star")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to scripts.
    #[serde(default = "star")]
    pub expose_headers: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (not allowed with origin `*`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// Answer private-network preflights (`Access-Control-Allow-Private-Network: true`).
    #[serde(default)]
    pub allow_private_network: bool,
    /// Seconds browsers may cache a preflight.
    #[serde(default = "default_max_age")]
    pub max_age: u64,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        if self.allow_credentials && self.allow_origins.iter().any(|o| o == "*") {
            return Err(
                "allow_credentials cannot be used with allow_origins \"*\": \
                        list the origins"
                    .into(),
            );
        }
        if self.allow_origins.is_empty() {
            return Err("allow_origins must not be empty".into());
        }
        for m in &self.allow_methods {
            if m != "*" {
                Method::from_bytes(m.as_bytes())
                    .map_err(|_| format!("allow_methods: invalid method {m:?}"))?;
            }
        }
        for (name, list) in [
            ("allow_headers", &self.allow_headers),
            ("expose_headers", &self.expose_headers),
            ("allow_origins", &self.allow_origins),
        ] {
            if let Some(bad) = list.iter().find(|v| HeaderValue::from_str(v).is_err()) {
                return Err(format!("{name}: invalid value {bad:?}"));
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
enum OriginRule {
    Any,
    Exact(String),
    /// `scheme://` prefix and `.suffix` of `scheme://*.suffix`.
    Subdomain(String, String),
}

impl OriginRule {
    fn parse(s: &str) -> Self {
        if s == "*" {
            return Self::Any;
        }
        let lower = s.to_ascii_lowercase();
        match lower.split_once("://*.") {
            Some((scheme, rest)) => Self::Subdomain(format!("{scheme}://"), format!(".{rest}")),
            None => Self::Exact(lower),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(o) => o.eq_ignore_ascii_case(origin),
            Self::Subdomain(scheme, suffix) => {
                let o = origin.to_ascii_lowercase();
                o.strip_prefix(scheme.as_str()).is_some_and(|host| {
                    host.len() > suffix.len() && host.ends_with(suffix.as_str())
                })
            }
        }
    }
}

/// The allowed origin of this request, for the response hook.
#[derive(Clone)]
struct AllowedOrigin(HeaderValue);

/// A running `cors`.
#[derive(Debug)]
pub struct Cors {
    origins: Vec<OriginRule>,
    any_origin: bool,
    any_method: bool,
    methods: Vec<Method>,
    allow_methods: HeaderValue,
    any_header: bool,
    allow_headers: HeaderValue,
    expose_headers: Option<HeaderValue>,
    credentials: bool,
    private_network: bool,
    max_age: HeaderValue,
    error_type: ErrorType,
}

fn join(list: &[String]) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&list.join(", ")).map_err(|e| e.to_string())
}

impl PluginFactory for Cors {
    const NAME: &'static str = "cors";
    type Config = Config;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let any_method = config.allow_methods.iter().any(|m| m == "*");
        let methods = config
            .allow_methods
            .iter()
            .filter(|m| *m != "*")
            .map(|m| Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let allow_methods = if any_method {
            join(&default_methods())?
        } else {
            join(&config.allow_methods)?
        };
        Ok(Arc::new(Cors {
            any_origin: config.allow_origins.iter().any(|o| o == "*"),
            origins: config
                .allow_origins
                .iter()
                .map(|o| OriginRule::parse(o))
                .collect(),
            any_method,
            methods,
            allow_methods,
            any_header: config.allow_headers.iter().any(|h| h == "*"),
            allow_headers: join(&config.allow_headers)?,
            expose_headers: (!config.expose_headers.is_empty())
                .then(|| join(&config.expose_headers))
                .transpose()?,
            credentials: config.allow_credentials,
            private_network: config.allow_private_network,
            max_age: HeaderValue::from(config.max_age),
            error_type: config.error_type,
        }))
    }
}

impl Cors {
    fn method_allowed(&self, m: &Method) -> bool {
        self.any_method || self.methods.contains(m)
    }

    /// The `Access-Control-Allow-Origin` value for an allowed `origin`.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    fn preflight(&self, req: &request::Parts, origin: &HeaderValue) -> Response<ProxyBody> {
        let mut resp = Response::new(respond::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        let requested = req.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        match (self.any_header, requested) {
            (true, Some(r)) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, r.clone());
            }
            (true, None) => {}
            (false, _) => {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    self.allow_headers.clone(),
                );
            }
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let pna = req
            .headers
            .get("access-control-request-private-network")
            .is_some_and(|v| v == "true");
        if pna && self.private_network {
            h.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        resp
    }
}

impl Plugin for Cors {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        // Not a cross-origin request: nothing to do.
        let Some(origin) = req.headers.get(header::ORIGIN).cloned() else {
            return Hook::Ready(Ok(Flow::Continue));
        };
        let allowed = origin
            .to_str()
            .is_ok_and(|o| self.origins.iter().any(|r| r.matches(o)));
        if !allowed {
            decisions::record(Self::NAME, ctx.route.as_deref(), Decision::Denied);
            return Hook::Ready(Ok(Flow::Respond(respond::error(
                StatusCode::FORBIDDEN,
                ORIGIN_NOT_ALLOWED,
                self.error_type,
            ))));
        }
        let preflight_method = (req.method == Method::OPTIONS)
            .then(|| req.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD))
            .flatten()
            .map(|m| Method::from_bytes(m.as_bytes()));
        let method_ok = match &preflight_method {
            Some(Ok(m)) => self.method_allowed(m),
            Some(Err(_)) => false,
            None => self.method_allowed(&req.method),
        };
        if !method_ok {
            decisions::record(Self::NAME, ctx.route.as_deref(), Decision::Denied);
            let shown = req
                .headers
                .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                .unwrap_or_else(|| req.method.to_string());
            let message = format!("[CORS] Request method '{shown}' is not allowed");
            return Hook::Ready(Ok(Flow::Respond(respond::error(
                StatusCode::FORBIDDEN,
                &message,
                self.error_type,
            ))));
        }
        if preflight_method.is_some() {
            return Hook::Ready(Ok(Flow::Respond(self.preflight(req, &origin))));
        }
        ctx.extensions
            .insert(AllowedOrigin(self.allow_origin(&origin)));
        Hook::Ready(Ok(Flow::Continue))
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        if let Some(AllowedOrigin(origin)) = ctx.extensions.get::<AllowedOrigin>() {
            let h = &mut resp.headers;
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            if self.credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
            if let Some(expose) = &self.expose_headers {
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        Hook::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{self, body_string, ctx, parts};

    fn cors(config: serde_json::Value) -> Arc<dyn Plugin> {
        testing::build("cors", config)
    }

    #[tokio::test]
    async fn preflight_is_answered_without_upstream() {
        let p = cors(
            json!({"allow_origins": ["https://app.example.com"], "allow_methods": ["GET", "PUT"],
                            "allow_credentials": true, "max_age": 600, "allow_private_network": true}),
        );
        let mut req = parts(
            "OPTIONS",
            "/api",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "x-token, content-type"),
                ("access-control-request-private-network", "true"),
            ],
        );
        let resp = testing::request(&*p, &mut req, &mut ctx("1.1.1.1:1"))
            .await
            .expect("answered");
        assert_eq!(resp.status(), 204);
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-methods"], "GET, PUT");
        assert_eq!(h["access-control-allow-headers"], "x-token, content-type");
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-private-network"], "true");
        assert_eq!(h["vary"], "Origin");
    }

    #[tokio::test]
    async fn disallowed_origin_and_method_are_403() {
        let p = cors(
            json!({"allow_origins": ["https://*.example.com"], "allow_methods": ["GET"],
                            "error_type": "json"}),
        );
        let mut req = parts("GET", "/", &[("origin", "https://evil.com")]);
        let resp = testing::request(&*p, &mut req, &mut ctx("1.1.1.1:1"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        let v: serde_json::Value = serde_json::from_str(&body_string(resp).await).unwrap();
        assert_eq!(v["message"], ORIGIN_NOT_ALLOWED);

        let mut req = parts(
            "OPTIONS",
            "/",
            &[
                ("origin", "https://a.example.com"),
                ("access-control-request-method", "DELETE"),
            ],
        );
        let resp = testing::request(&*p, &mut req, &mut ctx("1.1.1.1:1"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        let v: serde_json::Value = serde_json::from_str(&body_string(resp).await).unwrap();
        assert_eq!(
            v["message"],
            "[CORS] Request method 'DELETE' is not allowed"
        );

        let mut req = parts("POST", "/", &[("origin", "https://a.example.com")]);
        let resp = testing::request(&*p, &mut req, &mut ctx("1.1.1.1:1"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        // The bare suffix is not a subdomain.
        let mut req = parts("GET", "/", &[("origin", "https://example.com")]);
        assert!(testing::request(&*p, &mut req, &mut ctx("1.1.1.1:1"))
            .await
            .is_some());
    }

    #[tokio::test]
    async fn actual_requests_get_headers_on_the_response() {
        let p = cors(json!({"expose_headers": ["x-total"]}));
        let mut cx = ctx("1.1.1.1:1");
        let mut req = parts("GET", "/", &[("origin", "https://x.test")]);
        assert!(testing::request(&*p, &mut req, &mut cx).await.is_none());
        let resp = testing::response(&*p, &mut cx, None).await;
        assert_eq!(resp.headers["access-control-allow-origin"], "*");
        assert_eq!(resp.headers["access-control-expose-headers"], "x-total");
        assert!(resp
            .headers
            .get("access-control-allow-credentials")
            .is_none());
        // Requests without Origin are untouched.
        let mut cx = ctx("1.1.1.1:1");
        let mut req = parts("GET", "/", &[]);
        assert!(testing::request(&*p, &mut req, &mut cx).await.is_none());
        let resp = testing::response(&*p, &mut cx, None).await;
        assert!(resp.headers.get("access-control-allow-origin").is_none());
    }

    #[test]
    fn credentials_with_star_are_refused_at_compile_time() {
        let reg = crate::plugins::builtin();
        let err = reg
            .catalogue()
            .validate("cors", &json!({"allow_credentials": true}))
            .unwrap_err();
        assert!(err.contains("allow_credentials"), "{err}");
        assert!(reg
            .catalogue()
            .validate("cors", &json!({"allow_methods": ["G E T"]}))
            .is_err());
        assert!(reg
            .catalogue()
            .validate(
                "cors",
                &json!({"allow_credentials": true, "allow_origins": ["https://a.b"]})
            )
            .is_ok());
    }
}
