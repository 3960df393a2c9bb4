//! HTTP for the gateway: fetching the market index and manifests (cached with a TTL, bounded
//! in bytes) and calling plugin APIs. Bodies are read with a size limit, every call has a
//! timeout, and connections go only to addresses the [`NetworkGuard`] allows.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::cache::DocumentCache;
use super::net_guard::{blocked_in, Blocked, GuardedResolver, NetworkGuard};

/// Largest index, manifest or plugin answer read (8 MiB).
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// A fetched answer.
#[derive(Debug)]
pub struct Fetched {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an absolute http(s) URL.
    #[error("invalid URL {0:?}")]
    Url(String),
    /// Connect, protocol or body error.
    #[error("{0}")]
    Http(String),
    /// The answer did not come in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The URL's host is (or resolves only to) an address the gateway may not call.
    #[error(transparent)]
    Blocked(#[from] Blocked),
}

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// The gateway's HTTP client and document cache.
pub struct GatewayClient {
    client: Client<Connector, Full<Bytes>>,
    cache: DocumentCache,
    guard: Arc<NetworkGuard>,
    fetch_timeout: Duration,
}

impl GatewayClient {
    /// A client connecting only where `guard` allows, caching documents in `cache`.
    pub fn new(
        cache: DocumentCache,
        fetch_timeout: Duration,
        guard: Arc<NetworkGuard>,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(Arc::clone(&guard)));
        // The HTTPS connector enforces the scheme.
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            cache,
            guard,
            fetch_timeout,
        })
    }

    /// Sends one request.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Fetched, FetchError> {
        let uri: http::Uri = url.parse().map_err(|_| FetchError::Url(url.into()))?;
        let Some(host) = uri
            .host()
            .filter(|_| matches!(uri.scheme_str(), Some("http" | "https")))
        else {
            return Err(FetchError::Url(url.into()));
        };
        self.guard.check_host(host)?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| FetchError::Http(e.to_string()))?;
        *req.headers_mut() = headers;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| match blocked_in(&e) {
                    Some(blocked) => FetchError::Blocked(blocked),
                    None => FetchError::Http(error_chain(&e)),
                })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| FetchError::Http(format!("reading body: {e}")))?
                .to_bytes();
            Ok(Fetched {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }

    /// GETs a JSON document, from the cache when fresh. `Ok(Err(..))`: fetched but not JSON or
    /// not 2xx (the document is invalid or missing); `Err`: could not fetch.
    pub async fn json(&self, url: &str) -> Result<Result<Arc<Value>, String>, FetchError> {
        if let Some(v) = self.cache.get(url) {
            return Ok(Ok(v));
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let got = self
            .send(Method::GET, url, headers, Bytes::new(), self.fetch_timeout)
            .await?;
        if !got.status.is_success() {
            return Err(FetchError::Http(format!("{url} answered {}", got.status)));
        }
        let value = match serde_json::from_slice::<Value>(&got.body) {
            Ok(v) => Arc::new(v),
            Err(e) => return Ok(Err(format!("{url} is not JSON: {e}"))),
        };
        self.cache.put(url, Arc::clone(&value));
        Ok(Ok(value))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
