//! `forward_auth`: asks an external HTTP service whether a request may pass (Traefik's
//! ForwardAuth, Pingap's forward_auth).
//!
//! The proxy sends `GET <address>` (`http://` or `https://`, verified with rustls against the
//! system roots or `tls_ca`) with `X-Forwarded-Method`, `X-Forwarded-Uri` (the canonical path
//! and query), `X-Forwarded-Host`, `X-Forwarded-Proto`, `X-Forwarded-For` (the client address)
//! and the request headers listed in `auth_request_headers`. The client's own copies of every
//! `auth_response_headers` name are always removed from the request, whatever the answer; a 2xx
//! answer lets the request through, with those headers copied from the answer; any other answer
//! is returned to the client as is (status, headers except the hop-by-hop ones, body). When
//! the service cannot be reached or does not answer within `timeout`, `failure_policy`
//! decides: `deny` answers 503, `allow` lets the request through.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{request, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;

use hookway_crds::snapshot::ObjectKey;

use super::decisions::{self, Decision};
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};
use crate::upstream::headers::remove_hop_by_hop;

/// Answer when the auth service fails and `failure_policy` is `deny`.
pub const UNAVAILABLE: &str = "[forward_auth] auth service unavailable";

/// What to do when the auth service cannot answer.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Answer 503.
    #[default]
    Deny,
    /// Let the request through.
    Allow,
}

fn default_timeout() -> String {
    "5s".into()
}

/// Config of `forward_auth`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-hookway-reaches-network" = true))]
pub struct Config {
    /// The auth service URL (`http://auth.default.svc:8080/check`).
    pub address: String,
    /// Request headers sent to the auth service.
    #[serde(default)]
    pub auth_request_headers: Vec<String>,
    /// Headers of a 2xx answer copied onto the request.
    #[serde(default)]
    pub auth_response_headers: Vec<String>,
    /// Bound on the auth call (response head).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// `deny` (503) or `allow` when the service fails.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// `text` or `json` for the 503 answer.
    #[serde(default)]
    pub error_type: ErrorType,
    /// PEM certificates trusted for an `https://` address instead of the system roots.
    #[serde(default)]
    pub tls_ca: Option<String>,
    /// A sign-in page: a 401 from the auth service becomes a 302 to this URL with the original
    /// URL in the query parameter `signin_redirect_param` unless the URL already sets it
    /// (ingress-nginx's `auth-signin`). May use `$host`, `$scheme`, `$request_uri` and
    /// `$escaped_request_uri`.
    #[serde(default)]
    pub signin_url: Option<String>,
    /// The query parameter carrying the original URL to the sign-in page.
    #[serde(default = "default_redirect_param")]
    pub signin_redirect_param: String,
}

fn default_redirect_param() -> String {
    "rd".into()
}

/// The variables a `signin_url` may use.
const SIGNIN_VARIABLES: [&str; 4] = ["$escaped_request_uri", "$request_uri", "$scheme", "$host"];

/// `url` with every variable replaced by a placeholder, or which `$name` is unknown.
fn check_signin_variables(url: &str) -> Result<String, String> {
    let mut out = url.to_string();
    for v in SIGNIN_VARIABLES {
        out = out.replace(v, "x");
    }
    if out.contains('$') {
        return Err(format!(
            "signin_url: {url:?} uses a variable other than $host, $scheme, $request_uri, $escaped_request_uri"
        ));
    }
    Ok(out)
}

fn header_names(field: &str, list: &[String]) -> Result<Vec<HeaderName>, String> {
    list.iter()
        .map(|h| {
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| format!("{field}: invalid header name {h:?}"))
        })
        .collect()
}

impl Config {
    fn address(&self) -> Result<Uri, String> {
        let uri: Uri = self.address.parse().map_err(|e| format!("address: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "address: {:?} must be an http:// or https:// URL with a host",
                self.address
            ));
        }
        Ok(uri)
    }

    fn timeout(&self) -> Result<Duration, String> {
        let t =
            hookway_crds::duration::parse(&self.timeout).map_err(|e| format!("timeout: {e}"))?;
        if t.is_zero() {
            return Err("timeout must be positive".into());
        }
        Ok(t)
    }
}

impl PluginConfig for Config {
    /// The auth service's address is the config's choice: tenants need a PlatformPolicy.
    fn validate(&self) -> Result<(), String> {
        self.address()?;
        self.timeout()?;
        header_names("auth_request_headers", &self.auth_request_headers)?;
        header_names("auth_response_headers", &self.auth_response_headers)?;
        if self.tls_ca.is_some() {
            tls_config(self.tls_ca.as_deref())?;
        }
        if let Some(url) = &self.signin_url {
            let url = &check_signin_variables(url)?;
            let ok = url.parse::<Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            }) && HeaderValue::from_str(url).is_ok();
            if !ok {
                return Err(format!(
                    "signin_url: {url:?} must be an http:// or https:// URL with a host"
                ));
            }
        }
        if self.signin_redirect_param.is_empty()
            || !self
                .signin_redirect_param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "signin_redirect_param: {:?} is not a query parameter name",
                self.signin_redirect_param
            ));
        }
        Ok(())
    }
}

/// A running `forward_auth`.
pub struct ForwardAuth {
    address: Uri,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
    timeout: Duration,
    failure_policy: FailurePolicy,
    error_type: ErrorType,
    /// Sign-in URL and redirect parameter (302 on a 401 answer).
    signin: Option<(String, String)>,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl PluginFactory for ForwardAuth {
    const NAME: &'static str = "forward_auth";
    type Config = Config;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let timeout = config.timeout()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tls = tls_config(config.tls_ca.as_deref())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Arc::new(ForwardAuth {
            address: config.address()?,
            request_headers: header_names("auth_request_headers", &config.auth_request_headers)?,
            response_headers: header_names("auth_response_headers", &config.auth_response_headers)?,
            timeout,
            failure_policy: config.failure_policy,
            error_type: config.error_type,
            signin: config
                .signin_url
                .map(|url| (url, config.signin_redirect_param)),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        }))
    }
}

/// The rustls client config for `https://` auth services: `tls_ca` when given, else the
/// system's roots (loaded once per process).
pub(crate) fn tls_config(ca: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    static SYSTEM: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    let roots = match ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("tls_ca: {e}"))?;
                roots.add(cert).map_err(|e| format!("tls_ca: {e}"))?;
            }
            if roots.is_empty() {
                return Err("tls_ca: no certificate".into());
            }
            Arc::new(roots)
        }
        None => SYSTEM
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                Arc::new(roots)
            })
            .clone(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl ForwardAuth {
    fn auth_request(
        &self,
        req: &request::Parts,
        ctx: &Ctx,
    ) -> Result<Request<Empty<Bytes>>, PluginError> {
        let mut b = Request::get(self.address.clone());
        let headers = b.headers_mut().expect("builder without errors");
        for name in &self.request_headers {
            for v in req.headers.get_all(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        headers.insert(
            "x-forwarded-method",
            HeaderValue::from_str(req.method.as_str()).expect("methods are valid values"),
        );
        let uri = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(v) = HeaderValue::from_str(uri) {
            headers.insert("x-forwarded-uri", v);
        }
        let host = req.headers.get(http::header::HOST).cloned().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        if let Some(host) = host {
            headers.insert("x-forwarded-host", host);
        }
        headers.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if ctx.tls { "https" } else { "http" }),
        );
        if let Ok(v) = HeaderValue::from_str(&ctx.client_ip.to_string()) {
            headers.insert("x-forwarded-for", v);
        }
        b.body(Empty::new())
            .map_err(|e| PluginError::internal(format!("forward_auth request: {e}")))
    }

    /// `signin_url?rd=<the original URL>`, when a sign-in page is configured.
    fn signin_location(&self, req: &request::Parts, ctx: &Ctx) -> Option<HeaderValue> {
        let (url, param) = self.signin.as_ref()?;
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let target = ctx
            .original_target
            .as_ref()
            .map(|t| t.as_str())
            .or_else(|| req.uri.path_and_query().map(|p| p.as_str()))
            .unwrap_or("/");
        let scheme = if ctx.tls { "https" } else { "http" };
        let escaped: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
        let expanded = url
            .replace("$escaped_request_uri", &escaped)
            .replace("$request_uri", target)
            .replace("$scheme", scheme)
            .replace("$host", host);
        if url.contains(&format!("{param}=")) {
            return HeaderValue::from_str(&expanded).ok();
        }
        let original = format!("{scheme}://{host}{target}");
        let encoded: String = form_urlencoded::byte_serialize(original.as_bytes()).collect();
        let sep = if expanded.contains('?') { '&' } else { '?' };
        HeaderValue::from_str(&format!("{expanded}{sep}{param}={encoded}")).ok()
    }

    fn failed(&self, reason: &str, route: Option<&ObjectKey>) -> Flow {
        tracing::warn!(address = %self.address, reason, policy = ?self.failure_policy,
                       "forward_auth: auth service failed");
        match self.failure_policy {
            FailurePolicy::Allow => Flow::Continue,
            FailurePolicy::Deny => {
                decisions::record(Self::NAME, route, Decision::Unavailable);
                Flow::Respond(respond::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    self.error_type,
                ))
            }
        }
    }
}

impl Plugin for ForwardAuth {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        // The client's own copies of the identity headers never reach the upstream, whether or
        // not the answer carries them and whatever the failure policy lets through.
        for name in &self.response_headers {
            req.headers.remove(name);
        }
        Hook::from_async(async move {
            let auth_req = self.auth_request(req, ctx)?;
            let answer =
                match tokio::time::timeout(self.timeout, self.client.request(auth_req)).await {
                    Err(_) => return Ok(self.failed("timeout", ctx.route.as_deref())),
                    Ok(Err(e)) => return Ok(self.failed(&e.to_string(), ctx.route.as_deref())),
                    Ok(Ok(answer)) => answer,
                };
            if answer.status().is_success() {
                for name in &self.response_headers {
                    if let Some(v) = answer.headers().get(name) {
                        req.headers.insert(name.clone(), v.clone());
                    }
                }
                return Ok(Flow::Continue);
            }
            decisions::record(Self::NAME, ctx.route.as_deref(), Decision::Denied);
            if answer.status() == StatusCode::UNAUTHORIZED {
                if let Some(location) = self.signin_location(req, ctx) {
                    let mut resp = respond::with_body(
                        StatusCode::FOUND,
                        "text/plain; charset=utf-8",
                        format!("Redirecting to {}\n", location.to_str().unwrap_or("")),
                    );
                    resp.headers_mut().insert(http::header::LOCATION, location);
                    return Ok(Flow::Respond(resp));
                }
            }
            let (mut parts, body) = answer.into_parts();
            // Hop-by-hop headers belong to the connection to the auth service (as for an
            // upstream's answer).
            remove_hop_by_hop(&mut parts.headers, false);
            let body = body.map_err(Into::into).boxed_unsync();
            Ok(Flow::Respond(Response::from_parts(parts, body)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;
    use crate::plugins::testing::{self, body_string, ctx, parts};

    /// An auth service: `authorization: good` passes (echoing what it saw), `slow` never answers,
    /// anything else is refused with 401.
    async fn auth_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let svc = service_fn(|req: Request<Incoming>| async move {
                        let h = req.headers();
                        let auth = h
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        let resp = match auth.as_deref() {
                            Some("good") => Response::builder()
                                .status(200)
                                .header("x-user", "alice")
                                .header("x-secret-internal", "no")
                                .header(
                                    "x-seen",
                                    format!(
                                        "{} {} {} {} {} {}",
                                        req.method(),
                                        h["x-forwarded-method"].to_str().unwrap(),
                                        h["x-forwarded-uri"].to_str().unwrap(),
                                        h["x-forwarded-host"].to_str().unwrap(),
                                        h["x-forwarded-for"].to_str().unwrap(),
                                        h.get("cookie").is_some(),
                                    ),
                                )
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                            Some("slow") => std::future::pending().await,
                            _ => Response::builder()
                                .status(401)
                                .header("www-authenticate", "Bearer realm=\"sso\"")
                                .body(Full::new(Bytes::from_static(b"login first")))
                                .unwrap(),
                        };
                        Ok::<_, Infallible>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }

    fn plugin(addr: SocketAddr, extra: serde_json::Value) -> Arc<dyn Plugin> {
        let mut config = json!({
            "address": format!("http://{addr}/check"),
            "auth_request_headers": ["authorization"],
            "auth_response_headers": ["x-user", "x-seen"],
            "timeout": "500ms",
        });
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        testing::build("forward_auth", config)
    }

    #[tokio::test]
    async fn success_copies_configured_headers() {
        let p = plugin(auth_server().await, json!({}));
        let mut req = parts(
            "POST",
            "/orders?id=7",
            &[
                ("authorization", "good"),
                ("host", "shop.test"),
                ("cookie", "c=1"),
            ],
        );
        assert!(testing::request(&*p, &mut req, &mut ctx("10.1.2.3:9"))
            .await
            .is_none());
        assert_eq!(req.headers["x-user"], "alice");
        assert_eq!(
            req.headers["x-seen"],
            "GET POST /orders?id=7 shop.test 10.1.2.3 false"
        );
        assert!(req.headers.get("x-secret-internal").is_none());
    }

    #[tokio::test]
    async fn refusal_is_returned_as_is() {
        let p = plugin(auth_server().await, json!({}));
        let mut req = parts("GET", "/", &[("authorization", "bad")]);
        let resp = testing::request(&*p, &mut req, &mut ctx("10.1.2.3:9"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"sso\"");
        assert_eq!(body_string(resp).await, "login first");
    }

    #[tokio::test]
    async fn a_401_redirects_to_the_signin_page_with_the_original_url() {
        let p = plugin(
            auth_server().await,
            json!({"signin_url": "https://login.example.com/start?app=shop"}),
        );
        let mut req = parts(
            "GET",
            "/orders?id=7",
            &[("authorization", "bad"), ("host", "shop.test")],
        );
        let resp = testing::request(&*p, &mut req, &mut ctx("10.1.2.3:9"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
        assert_eq!(
            resp.headers()["location"],
            "https://login.example.com/start?app=shop&rd=http%3A%2F%2Fshop.test%2Forders%3Fid%3D7"
        );
        // The oauth2-proxy form: variables expanded, `rd` already set.
        let p = plugin(
            auth_server().await,
            json!({"signin_url": "https://$host/oauth2/start?rd=$escaped_request_uri"}),
        );
        let resp = testing::request(&*p, &mut req, &mut ctx("10.1.2.3:9"))
            .await
            .unwrap();
        assert_eq!(
            resp.headers()["location"],
            "https://shop.test/oauth2/start?rd=%2Forders%3Fid%3D7"
        );
    }

    #[test]
    fn signin_config_table() {
        let base = |extra: serde_json::Value| {
            let mut c = json!({"address": "http://auth.test/check"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            crate::plugins::harness::validate("forward_auth", c)
        };
        assert!(base(json!({"signin_url": "https://l.test/"})).is_ok());
        assert!(base(json!({"signin_url": "https://$host/start?rd=$escaped_request_uri"})).is_ok());
        assert!(base(json!({"signin_url": "https://$http_host/"}))
            .unwrap_err()
            .contains("variable"));
        assert!(base(json!({"signin_url": "/login"}))
            .unwrap_err()
            .contains("signin_url"));
        assert!(
            base(json!({"signin_url": "https://l.test/", "signin_redirect_param": "a b"}))
                .unwrap_err()
                .contains("signin_redirect_param")
        );
    }

    #[tokio::test]
    async fn timeout_and_unreachable_follow_the_policy() {
        let addr = auth_server().await;
        let p = plugin(addr, json!({"error_type": "json"}));
        let mut req = parts("GET", "/", &[("authorization", "slow")]);
        let started = std::time::Instant::now();
        let resp = testing::request(&*p, &mut req, &mut ctx("10.1.2.3:9"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(body_string(resp).await.contains(UNAVAILABLE));

        let p = plugin(addr, json!({"failure_policy": "allow"}));
        let mut req = parts("GET", "/", &[("authorization", "slow")]);
        assert!(testing::request(&*p, &mut req, &mut ctx("10.1.2.3:9"))
            .await
            .is_none());

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let p = plugin(closed, json!({}));
        let mut req = parts("GET", "/", &[]);
        let resp = testing::request(&*p, &mut req, &mut ctx("10.1.2.3:9"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
    }

    #[test]
    fn validation() {
        let reg = crate::plugins::builtin();
        let check = |v| reg.catalogue().validate("forward_auth", &v);
        assert!(check(json!({"address": "http://auth:8080/check"})).is_ok());
        assert!(check(json!({"address": "ftp://auth"}))
            .unwrap_err()
            .contains("address"));
        assert!(check(json!({"address": "http://a", "timeout": "x"}))
            .unwrap_err()
            .contains("timeout"));
        assert!(check(json!({"address": "http://a", "auth_response_headers": ["a b"]})).is_err());
    }
}
