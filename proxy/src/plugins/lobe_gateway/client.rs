//! HTTP for the gateway: fetching the market index and manifests (cached with a TTL) and
//! calling plugin APIs. Bodies are read with a size limit and every call has a timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Largest index, manifest or plugin answer read (8 MiB).
const MAX_RESPONSE: usize = 8 * 1024 * 1024;
/// Entries kept in the document cache.
const MAX_CACHED: usize = 256;

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
}

/// The gateway's HTTP client and document cache.
pub struct GatewayClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    cache: Mutex<HashMap<String, (Instant, Arc<Value>)>>,
    ttl: Duration,
    fetch_timeout: Duration,
}

impl GatewayClient {
    /// A client caching documents for `ttl`.
    pub fn new(ttl: Duration, fetch_timeout: Duration) -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            cache: Mutex::new(HashMap::new()),
            ttl,
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
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(FetchError::Url(url.into()));
        }
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
                .map_err(|e| FetchError::Http(error_chain(&e)))?;
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
        if let Some(v) = self.cached(url) {
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
        self.store(url, Arc::clone(&value));
        Ok(Ok(value))
    }

    fn cached(&self, url: &str) -> Option<Arc<Value>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (at, v) = cache.get(url)?;
        (at.elapsed() < self.ttl).then(|| Arc::clone(v))
    }

    fn store(&self, url: &str, value: Arc<Value>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= MAX_CACHED {
                if let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
                {
                    cache.remove(&oldest);
                }
            }
        }
        cache.insert(url.to_string(), (Instant::now(), value));
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
