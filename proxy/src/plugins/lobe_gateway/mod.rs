//! `lobe_gateway`: the LobeChat plugin gateway as a plugin on a route. The route's plugin
//! answers every request itself; the route's Service is never called.
//!
//! ```text
//!  OPTIONS → 204 CORS preflight (CORS headers only for `cors_origins`)    other methods → 405
//!  POST {apiName, identifier, arguments?, indexUrl?, manifest?}      (bad payload → 400)
//!   → manifest: from the body, or market index (cached) → plugin meta → manifest URL (cached)
//!   → check manifest (490) → settings = schema defaults + X-Lobe-Plugin-Settings, validated (422)
//!   → api by apiName (404) → arguments parsed and validated against api.parameters (422)
//!   → POST api.url  body = arguments, X-Lobe-Plugin-Settings = settings
//!   → 2xx: 200 + plugin body        else: {"body", "errorType": status} with its status
//! ```
//!
//! Safe by default: a payload's `indexUrl` and `manifest` are refused unless allowed and their
//! URLs listed in `allowed_client_urls`; no call goes to a loopback, link-local or private
//! address unless `allowed_networks` lists it (checked on the resolved address, `net_guard`);
//! the document cache is bounded in bytes (`cache`); no CORS header unless `cors_origins`.
//!
//! Needs the whole request body: it opts in with [`Plugin::request_body_limit`] and works in
//! [`Plugin::on_request_body`].

pub mod allow_list;
pub mod cache;
pub mod client;
pub mod cors;
pub mod error;
pub mod manifest;
pub mod net_guard;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookway_crds::catalogue::PluginConfig;
use http::{header, request, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::metrics::tables::{LimitUnit, TableStats};
use crate::plugin::{
    respond, BuildEnv, Ctx, Flow, Hook, Plugin, PluginError, PluginFactory, ProxyBody,
};
use allow_list::AllowList;
use cache::DocumentCache;
use client::{FetchError, GatewayClient};
use cors::CorsOrigins;
use error::{ErrorType, GatewayError};
use net_guard::NetworkGuard;

/// The settings header LobeChat sends and the plugin server receives.
pub const SETTINGS_HEADER: &str = "x-lobe-plugin-settings";

fn default_cache_ttl() -> String {
    "5m".into()
}
fn default_fetch_timeout() -> String {
    "10s".into()
}
fn default_api_timeout() -> String {
    "30s".into()
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_max_cache_bytes() -> u64 {
    16 * 1024 * 1024
}

/// The `lobe_gateway` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-hookway-reaches-network" = true))]
pub struct LobeGatewayConfig {
    /// Market index used when the payload has neither `manifest` nor `indexUrl`.
    #[serde(default)]
    pub index_url: Option<String>,
    /// Accept the payload's `indexUrl` (LobeChat's behaviour) when it falls under
    /// `allowed_client_urls`. Off: the payload's `indexUrl` is ignored and `index_url` used.
    #[serde(default)]
    pub allow_client_index_url: bool,
    /// Accept a `manifest` in the payload (LobeChat's behaviour); the API URL called must fall
    /// under `allowed_client_urls`. Off: such payloads get 400.
    #[serde(default)]
    pub allow_client_manifest: bool,
    /// URL prefixes (`https://plugins.example/`) that client-supplied URLs must fall under.
    #[serde(default)]
    pub allowed_client_urls: Vec<String>,
    /// Loopback, link-local or private networks (CIDRs) the gateway may call anyway. Empty:
    /// only public addresses.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// Browser origins answered with CORS headers (`https://chat.example`, or `*`). Empty: none.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Bound on the cached indexes and manifests, in (estimated) bytes; default 16 MiB.
    #[serde(default = "default_max_cache_bytes")]
    pub max_cache_bytes: u64,
    /// How long fetched indexes and manifests are reused (`5m`).
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: String,
    /// Timeout for index and manifest fetches (`10s`).
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout: String,
    /// Timeout for the plugin API call (`30s`).
    #[serde(default = "default_api_timeout")]
    pub api_timeout: String,
    /// Largest request payload (bytes, default 1 MiB); beyond: 413.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
}

fn duration(field: &str, s: &str) -> Result<Duration, String> {
    let d = hookway_crds::duration::parse(s).map_err(|e| format!("{field}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{field}: must be positive"));
    }
    Ok(d)
}

impl PluginConfig for LobeGatewayConfig {
    /// Index, manifest and plugin API URLs are the config's choice: tenants need a
    /// PlatformPolicy.
    fn validate(&self) -> Result<(), String> {
        duration("cache_ttl", &self.cache_ttl)?;
        duration("fetch_timeout", &self.fetch_timeout)?;
        duration("api_timeout", &self.api_timeout)?;
        if let Some(u) = &self.index_url {
            let uri: http::Uri = u.parse().map_err(|e| format!("index_url: {e}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(format!("index_url: {u:?} is not an http(s) URL"));
            }
        }
        let from_client = self.allow_client_index_url || self.allow_client_manifest;
        if !from_client && self.index_url.is_none() {
            return Err(
                "index_url: required unless allow_client_index_url or allow_client_manifest is set"
                    .into(),
            );
        }
        if from_client && self.allowed_client_urls.is_empty() {
            return Err("allowed_client_urls: must list the URL prefixes client-supplied index and manifest URLs may use".into());
        }
        AllowList::parse(&self.allowed_client_urls)?;
        NetworkGuard::new(&self.allowed_networks)?;
        CorsOrigins::parse(&self.cors_origins)?;
        if self.max_cache_bytes == 0 {
            return Err("max_cache_bytes: must be positive".into());
        }
        if self.max_body == 0 {
            return Err("max_body: must be positive".into());
        }
        Ok(())
    }
}

/// The request payload LobeChat sends.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Payload {
    api_name: String,
    identifier: String,
    #[serde(default)]
    arguments: Option<String>,
    #[serde(default)]
    index_url: Option<String>,
    #[serde(default)]
    manifest: Option<Value>,
}

/// Where a manifest came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The payload: its API URLs must be under `allowed_client_urls`.
    Client,
    /// An index (the configured one, or an allowed client one).
    Index,
}

/// A running `lobe_gateway`.
pub struct LobeGateway {
    config: LobeGatewayConfig,
    client: GatewayClient,
    api_timeout: Duration,
    allowed_urls: AllowList,
    cors: CorsOrigins,
}

impl PluginFactory for LobeGateway {
    const NAME: &'static str = "lobe_gateway";
    type Config = LobeGatewayConfig;

    fn build(config: Self::Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(Self::from_config(
            config,
            env.plugin_ref.to_string(),
        )?))
    }
}

impl LobeGateway {
    /// A gateway for `config`, its cache exported under `plugin` (`namespace/name`).
    pub fn from_config(config: LobeGatewayConfig, plugin: String) -> Result<Self, String> {
        config.validate()?;
        let cache = DocumentCache::new(
            duration("cache_ttl", &config.cache_ttl)?,
            config.max_cache_bytes,
            TableStats::register(
                plugin,
                cache::TABLE,
                LimitUnit::Bytes,
                config.max_cache_bytes,
            ),
        );
        let client = GatewayClient::new(
            cache,
            duration("fetch_timeout", &config.fetch_timeout)?,
            Arc::new(NetworkGuard::new(&config.allowed_networks)?),
        )?;
        Ok(LobeGateway {
            api_timeout: duration("api_timeout", &config.api_timeout)?,
            allowed_urls: AllowList::parse(&config.allowed_client_urls)?,
            cors: CorsOrigins::parse(&config.cors_origins)?,
            client,
            config,
        })
    }
}

fn bad_request(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorType::Status(StatusCode::BAD_REQUEST), message)
}

fn forbidden(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorType::Status(StatusCode::FORBIDDEN), message)
}

fn preflight(req: &request::Parts) -> Response<ProxyBody> {
    let mut resp = respond::empty_response(StatusCode::NO_CONTENT);
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    let allow_headers = req
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}

impl LobeGateway {
    /// Runs the gateway pipeline for one POST.
    pub async fn handle(&self, headers: &HeaderMap, body: &Bytes) -> Response<ProxyBody> {
        let mut resp = match self.pipeline(headers, body).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(error_type = ?e.kind, "lobe_gateway: error answer");
                e.into_response()
            }
        };
        self.cors.apply(headers, resp.headers_mut());
        resp
    }

    /// The `Blocked` refusal as a 403 answer, other fetch errors through `other`.
    fn fetch_failed(e: FetchError, other: impl FnOnce(FetchError) -> GatewayError) -> GatewayError {
        match e {
            FetchError::Blocked(b) => forbidden(b.to_string()),
            e => other(e),
        }
    }

    async fn manifest(&self, payload: &mut Payload) -> Result<(Arc<Value>, Source), GatewayError> {
        if let Some(m) = payload.manifest.take() {
            if !self.config.allow_client_manifest {
                return Err(bad_request(
                    "manifests in the payload are not accepted here",
                ));
            }
            return Ok((Arc::new(m), Source::Client));
        }
        let index_url = match (&payload.index_url, self.config.allow_client_index_url) {
            (Some(u), true) if !self.allowed_urls.allows(u) => {
                return Err(forbidden(format!(
                    "indexUrl {u} is not under allowed_client_urls"
                )))
            }
            (Some(u), true) => u.clone(),
            _ => self.config.index_url.clone().ok_or_else(|| {
                GatewayError::new(
                    ErrorType::PluginMarketIndexNotFound,
                    "no market index configured",
                )
            })?,
        };
        let index = match self.client.json(&index_url).await {
            Ok(Ok(v)) => v,
            Ok(Err(msg)) => {
                return Err(GatewayError::new(ErrorType::PluginMarketIndexInvalid, msg))
            }
            Err(e) => {
                return Err(Self::fetch_failed(e, |e| {
                    GatewayError::new(
                        ErrorType::PluginMarketIndexNotFound,
                        format!("market index {index_url}: {e}"),
                    )
                }))
            }
        };
        let manifest_url = manifest::find_in_index(&index, &payload.identifier)?;
        match self.client.json(&manifest_url).await {
            Ok(Ok(v)) => Ok((v, Source::Index)),
            Ok(Err(msg)) => Err(GatewayError::new(ErrorType::PluginManifestInvalid, msg)),
            Err(e) => Err(Self::fetch_failed(e, |e| {
                GatewayError::new(
                    ErrorType::PluginManifestNotFound,
                    format!("manifest {manifest_url}: {e}"),
                )
            })),
        }
    }

    async fn pipeline(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        let mut payload: Payload = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("invalid payload: {e}")))?;
        if payload.api_name.is_empty() || payload.identifier.is_empty() {
            return Err(bad_request(
                "invalid payload: apiName and identifier are required",
            ));
        }
        let (manifest, source) = self.manifest(&mut payload).await?;
        manifest::check_manifest(&manifest)
            .map_err(|m| GatewayError::new(ErrorType::PluginManifestInvalid, m))?;

        // Settings: schema defaults, then the client's, validated against the schema.
        let client_settings = match headers.get(SETTINGS_HEADER) {
            None => None,
            Some(v) => Some(serde_json::from_slice::<Value>(v.as_bytes()).map_err(|e| {
                GatewayError::new(
                    ErrorType::PluginSettingsInvalid,
                    format!("{SETTINGS_HEADER}: {e}"),
                )
            })?),
        };
        let schema = manifest.get("settings");
        let settings = manifest::merge_settings(schema, client_settings);
        if let Some(schema) = schema {
            manifest::validate(schema, &settings)
                .map_err(|b| GatewayError::with_body(ErrorType::PluginSettingsInvalid, b))?;
        }

        let api = manifest["api"]
            .as_array()
            .and_then(|apis| apis.iter().find(|a| a["name"] == payload.api_name.as_str()))
            .ok_or_else(|| {
                GatewayError::new(
                    ErrorType::PluginApiNotFound,
                    format!("no api {:?} in the manifest", payload.api_name),
                )
            })?;

        if let Some(args) = &payload.arguments {
            let parsed: Value = serde_json::from_str(args).map_err(|e| {
                GatewayError::new(
                    ErrorType::PluginApiParamsError,
                    format!("arguments are not JSON: {e}"),
                )
            })?;
            manifest::validate(&api["parameters"], &parsed)
                .map_err(|b| GatewayError::with_body(ErrorType::PluginApiParamsError, b))?;
        }

        let Some(url) = api.get("url").and_then(Value::as_str) else {
            return Err(if manifest.get("openapi").is_some() {
                GatewayError::new(
                    ErrorType::PluginOpenApiInitError,
                    "OpenAPI manifests are not supported by this gateway",
                )
            } else {
                GatewayError::new(
                    ErrorType::PluginManifestInvalid,
                    format!("api {:?} has no url", payload.api_name),
                )
            });
        };

        if source == Source::Client && !self.allowed_urls.allows(url) {
            return Err(forbidden(format!(
                "api url {url} of the payload's manifest is not under allowed_client_urls"
            )));
        }

        let mut out_headers = HeaderMap::new();
        out_headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let settings_value = HeaderValue::from_str(&settings.to_string()).map_err(|e| {
            GatewayError::new(
                ErrorType::PluginSettingsInvalid,
                format!("settings cannot be sent as a header: {e}"),
            )
        })?;
        out_headers.insert(HeaderName::from_static(SETTINGS_HEADER), settings_value);
        let args = Bytes::from(payload.arguments.unwrap_or_default());
        let got = self
            .client
            .send(Method::POST, url, out_headers, args, self.api_timeout)
            .await
            .map_err(|e| match e {
                FetchError::Url(u) => {
                    GatewayError::new(ErrorType::PluginManifestInvalid, format!("api url {u}"))
                }
                FetchError::Timeout(_) => GatewayError::new(
                    ErrorType::Status(StatusCode::GATEWAY_TIMEOUT),
                    format!("plugin server {url}: {e}"),
                ),
                FetchError::Http(_) => GatewayError::new(
                    ErrorType::PluginServerError,
                    format!("plugin server {url}: {e}"),
                ),
                FetchError::Blocked(b) => forbidden(b.to_string()),
            })?;
        if !got.status.is_success() {
            let body = serde_json::from_slice::<Value>(&got.body)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&got.body)));
            return Err(GatewayError::with_body(ErrorType::Status(got.status), body));
        }
        let content_type = got
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/json"));
        let mut resp = respond::with_body(StatusCode::OK, "application/json", got.body);
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
        Ok(resp)
    }
}

impl Plugin for LobeGateway {
    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let mut resp = match req.method {
            Method::POST => return Hook::Ready(Ok(Flow::Continue)),
            Method::OPTIONS => preflight(req),
            _ => GatewayError::new(
                ErrorType::Status(StatusCode::METHOD_NOT_ALLOWED),
                "only POST is allowed",
            )
            .into_response(),
        };
        self.cors.apply(&req.headers, resp.headers_mut());
        Hook::Ready(Ok(Flow::Respond(resp)))
    }

    fn request_body_limit(&self, req: &request::Parts, _ctx: &Ctx) -> Option<usize> {
        (req.method == Method::POST).then_some(self.config.max_body)
    }

    fn on_request_body<'a>(
        &'a self,
        req: &'a mut request::Parts,
        body: &'a mut Bytes,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        Hook::from_async(async move { Ok(Flow::Respond(self.handle(&req.headers, body).await)) })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_safety;
