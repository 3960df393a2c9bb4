//! `proxy_http_call`: the upstreams a filter may call (the config's `clusters`, each a hookway
//! Service or, with a PlatformPolicy, a URL), the calls a callback dispatched, and running one
//! call on the proxy's runtime with its timeout and body cap.
//!
//! A call is only *prepared* inside the filter's callback ([`Upstreams::prepare`], no I/O);
//! the plugin's hook then waits for it asynchronously and delivers
//! `proxy_on_http_call_response` on the same instance (see `session.rs`). A timeout, a
//! connect failure or an answer over the body cap is delivered as an answer with no headers,
//! as Envoy does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use hookway_crds::snapshot::Scheme;

use super::abi::{self, status};
use super::config::{Cluster, Config};
use crate::plugin::BuildEnv;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Checks one `clusters` entry: exactly one of `service` / `address`, a usable URL.
pub fn check_cluster(cluster: &Cluster) -> Result<(), String> {
    match (&cluster.service, &cluster.address) {
        (Some(_), Some(_)) => Err("set either service or address, not both".into()),
        (None, None) => Err("set service (a hookway Service) or address (a URL)".into()),
        (Some(s), None) if s.is_empty() => Err("service: must not be empty".into()),
        (Some(_), None) => Ok(()),
        (None, Some(address)) => address_uri(address).map(drop),
    }?;
    if cluster.timeout.is_some_and(|t| t == 0 || t > 60_000) {
        return Err("timeout: 1 to 60000 milliseconds".into());
    }
    Ok(())
}

fn address_uri(address: &str) -> Result<Uri, String> {
    let uri: Uri = address.parse().map_err(|e| format!("address: {e}"))?;
    let path_ok = uri.path_and_query().is_none_or(|pq| pq.as_str() == "/");
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() || !path_ok {
        return Err(format!(
            "address: {address:?} must be http://host:port or https://host:port (no path)"
        ));
    }
    Ok(uri)
}

/// One named upstream.
struct Upstream {
    /// `http` or `https`.
    scheme: &'static str,
    /// `host:port` of each endpoint.
    authorities: Vec<String>,
    next: AtomicUsize,
    timeout: Duration,
}

impl Upstream {
    fn pick(&self) -> Option<&str> {
        if self.authorities.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.authorities.len();
        Some(&self.authorities[i])
    }
}

/// The upstreams of one filter config and the client that calls them.
pub struct Upstreams {
    clusters: HashMap<String, Upstream>,
    client: Option<HttpClient>,
    max_response: usize,
    /// `http_call_max_per_request`.
    pub max_per_request: usize,
    cap: Duration,
}

/// Why a call could not be prepared (the ABI status the filter gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Unknown upstream, or headers without `:method` / `:path`, or invalid ones.
    BadArgument,
}

impl Refused {
    /// The ABI status.
    pub fn status(self) -> i32 {
        match self {
            Refused::BadArgument => status::BAD_ARGUMENT,
        }
    }
}

fn authority(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

impl Upstreams {
    /// Resolves `config.clusters`: Services through the compiler's bindings in `env` (`None`
    /// outside a snapshot, where a `service` cluster is an error), URLs as given.
    pub fn new(config: &Config, env: Option<&BuildEnv<'_>>) -> Result<Self, String> {
        let cap = Duration::from_millis(config.http_call_timeout);
        let mut clusters = HashMap::new();
        for (name, cluster) in &config.clusters {
            check_cluster(cluster).map_err(|e| format!("clusters.{name}: {e}"))?;
            let (scheme, authorities) = match (&cluster.service, &cluster.address) {
                (Some(service), _) => {
                    let env = env.ok_or_else(|| {
                        format!("clusters.{name}: a Service needs a snapshot to resolve it")
                    })?;
                    let key = env.service(service)?;
                    // A Service not in the snapshot (not found, not accepted) has no endpoint:
                    // every call to it fails (an answer with no headers).
                    let authorities = match env.snapshot.upstream(key) {
                        Some(u) if u.scheme == Scheme::Https => {
                            return Err(format!(
                                "clusters.{name}: Service {key} speaks https; for TLS use address https://..."
                            ))
                        }
                        Some(u) => u
                            .endpoints
                            .iter()
                            .filter(|e| e.weight > 0)
                            .map(|e| authority(&e.address, e.port))
                            .collect(),
                        None => Vec::new(),
                    };
                    ("http", authorities)
                }
                (None, Some(address)) => {
                    let uri = address_uri(address)?;
                    let scheme = if uri.scheme_str() == Some("https") {
                        "https"
                    } else {
                        "http"
                    };
                    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
                    (scheme, vec![authority])
                }
                (None, None) => unreachable!("checked above"),
            };
            let timeout = cluster
                .timeout
                .map_or(cap, |t| Duration::from_millis(t).min(cap));
            clusters.insert(
                name.clone(),
                Upstream {
                    scheme,
                    authorities,
                    next: AtomicUsize::new(0),
                    timeout,
                },
            );
        }
        let client = if clusters.is_empty() {
            None
        } else {
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            http.enforce_http(false);
            http.set_connect_timeout(Some(cap));
            let tls = crate::plugins::forward_auth::tls_config(None)?;
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Some(
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(connector),
            )
        };
        Ok(Self {
            clusters,
            client,
            max_response: config.http_call_max_response_bytes,
            max_per_request: config.http_call_max_per_request,
            cap,
        })
    }

    /// Prepares a call to the upstream named `upstream` with the serialized `headers`
    /// (`:method` and `:path` required, `:authority` optional) and `body`; no I/O.
    /// `timeout_ms` 0 means the configured cap.
    pub fn prepare(
        &self,
        upstream: &[u8],
        headers: &[u8],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<PendingCall, Refused> {
        let name = std::str::from_utf8(upstream).map_err(|_| Refused::BadArgument)?;
        let target = self.clusters.get(name).ok_or(Refused::BadArgument)?;
        let client = self.client.clone().ok_or(Refused::BadArgument)?;
        let pairs = abi::deserialize_pairs(headers).ok_or(Refused::BadArgument)?;
        let (mut method, mut path, mut host) = (None, None, None);
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            match k {
                b":method" => {
                    method = Some(Method::from_bytes(v).map_err(|_| Refused::BadArgument)?)
                }
                b":path" => path = Some(v),
                b":authority" => {
                    host = Some(HeaderValue::from_bytes(v).map_err(|_| Refused::BadArgument)?)
                }
                _ if k.starts_with(b":") => {}
                _ => {
                    let name = HeaderName::from_bytes(k).map_err(|_| Refused::BadArgument)?;
                    let value = HeaderValue::from_bytes(v).map_err(|_| Refused::BadArgument)?;
                    map.append(name, value);
                }
            }
        }
        let (Some(method), Some(path)) = (method, path) else {
            return Err(Refused::BadArgument);
        };
        let path = std::str::from_utf8(path).map_err(|_| Refused::BadArgument)?;
        if !path.starts_with('/') {
            return Err(Refused::BadArgument);
        }
        if let Some(host) = host {
            map.insert(http::header::HOST, host);
        }
        let timeout = match timeout_ms {
            0 => target.timeout,
            ms => Duration::from_millis(u64::from(ms)).min(target.timeout),
        };
        let request = match target.pick() {
            Some(authority) => {
                let uri: Uri = format!("{}://{authority}{path}", target.scheme)
                    .parse()
                    .map_err(|_| Refused::BadArgument)?;
                let mut request = Request::new(Full::new(Bytes::copy_from_slice(body)));
                *request.method_mut() = method;
                *request.uri_mut() = uri;
                *request.headers_mut() = map;
                Some(request)
            }
            None => None,
        };
        Ok(PendingCall {
            token: 0,
            request,
            client,
            timeout: timeout.min(self.cap),
            max_response: self.max_response,
        })
    }
}

/// A call prepared by a callback, not started yet.
pub struct PendingCall {
    /// The token the filter got.
    pub token: u32,
    /// `None` when the upstream has no endpoint.
    request: Option<Request<Full<Bytes>>>,
    client: HttpClient,
    timeout: Duration,
    max_response: usize,
}

/// The answer to a call, as the filter reads it in `proxy_on_http_call_response`.
#[derive(Debug, Clone)]
pub struct CallResponse {
    /// `:status`.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (at most `http_call_max_response_bytes`).
    pub body: Bytes,
    /// Trailers.
    pub trailers: HeaderMap,
}

/// How a call ended (the `result` label of `hookway_wasm_http_calls_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// An answer arrived (any status).
    Response,
    /// No answer within the timeout.
    Timeout,
    /// No connection, or the connection failed.
    Failure,
    /// The answer's body was larger than `http_call_max_response_bytes`.
    TooLarge,
    /// The filter's call was refused (unknown upstream, bad headers, limit).
    Refused,
}

impl CallResult {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallResult::Response => "response",
            CallResult::Timeout => "timeout",
            CallResult::Failure => "failure",
            CallResult::TooLarge => "too_large",
            CallResult::Refused => "refused",
        }
    }
}

impl PendingCall {
    /// Runs the call; returns its token, how it ended and the answer (only with
    /// [`CallResult::Response`]).
    pub async fn run(self) -> (u32, CallResult, Option<CallResponse>) {
        let token = self.token;
        let Some(request) = self.request else {
            return (token, CallResult::Failure, None);
        };
        let client = self.client;
        let max = self.max_response;
        let call = async move {
            let response = client
                .request(request)
                .await
                .map_err(|_| CallResult::Failure)?;
            let (parts, body) = response.into_parts();
            let collected = Limited::new(body, max).collect().await.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    CallResult::TooLarge
                } else {
                    CallResult::Failure
                }
            })?;
            let trailers = collected.trailers().cloned().unwrap_or_default();
            Ok::<_, CallResult>(CallResponse {
                status: parts.status,
                headers: parts.headers,
                body: collected.to_bytes(),
                trailers,
            })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => (token, CallResult::Response, Some(response)),
            Ok(Err(result)) => (token, result, None),
            Err(_) => (token, CallResult::Timeout, None),
        }
    }
}

/// Most calls one request may make in all (a filter chaining calls from its callbacks cannot
/// hold a request forever).
pub const MAX_CALLS_PER_REQUEST: usize = 64;

/// The `proxy_http_call` state of one instance.
#[derive(Default)]
pub struct Calls {
    /// Whether the current callback may dispatch calls (the hook can wait for them).
    pub allowed: bool,
    /// Calls dispatched and not started yet.
    pub pending: Vec<PendingCall>,
    /// Calls of this request running now.
    pub in_flight: usize,
    next_token: u32,
    /// Calls dispatched since the instance was lent.
    pub dispatched: usize,
    /// The answer delivered to the running `proxy_on_http_call_response`.
    pub response: Option<CallResponse>,
    /// The filter called `proxy_continue_stream(HttpRequest)` / `proxy_continue_request`.
    pub continued: bool,
}

impl Calls {
    /// Adds a prepared call; returns its token.
    pub fn push(&mut self, mut call: PendingCall) -> u32 {
        self.next_token = self.next_token.wrapping_add(1).max(1);
        call.token = self.next_token;
        self.dispatched += 1;
        self.pending.push(call);
        self.next_token
    }

    /// Forgets everything (the instance goes back to the pool, or a call failed).
    pub fn reset(&mut self) {
        self.allowed = false;
        self.pending.clear();
        self.in_flight = 0;
        self.dispatched = 0;
        self.response = None;
        self.continued = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(service: Option<&str>, address: Option<&str>, timeout: Option<u64>) -> Cluster {
        Cluster {
            service: service.map(Into::into),
            address: address.map(Into::into),
            timeout,
        }
    }

    #[test]
    fn cluster_table() {
        let cases: [(Cluster, Result<(), &str>); 8] = [
            (cluster(Some("auth"), None, None), Ok(())),
            (
                cluster(None, Some("http://auth.example:8080"), Some(100)),
                Ok(()),
            ),
            (cluster(None, Some("https://auth.example"), None), Ok(())),
            (cluster(None, None, None), Err("set service")),
            (
                cluster(Some("a"), Some("http://a:1"), None),
                Err("not both"),
            ),
            (cluster(Some(""), None, None), Err("must not be empty")),
            (
                cluster(None, Some("http://a:1/check"), None),
                Err("no path"),
            ),
            (cluster(Some("a"), None, Some(0)), Err("timeout")),
        ];
        for (c, want) in cases {
            match (check_cluster(&c), want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(part)) => assert!(e.contains(part), "{c:?}: {e}"),
                (got, want) => panic!("{c:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn prepare_refuses_unknown_upstreams_and_bad_headers() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "file": "/x.wasm", "sha256": "0".repeat(64),
            "clusters": {"auth": {"address": "http://127.0.0.1:9"}},
            "http_call_timeout": 300,
        }))
        .unwrap();
        let upstreams = Upstreams::new(&config, None).unwrap();
        let good = abi::serialize_pairs(&[(b":method", b"GET"), (b":path", b"/check")]);
        let no_path = abi::serialize_pairs(&[(b":method", b"GET")]);
        let bad_path = abi::serialize_pairs(&[(b":method", b"GET"), (b":path", b"check")]);
        let bad_name =
            abi::serialize_pairs(&[(b":method", b"GET"), (b":path", b"/"), (b"a b", b"v")]);
        for (upstream, headers, ok) in [
            (&b"auth"[..], &good, true),
            (b"nowhere", &good, false),
            (b"", &good, false),
            (b"auth", &no_path, false),
            (b"auth", &bad_path, false),
            (b"auth", &bad_name, false),
        ] {
            let prepared = upstreams.prepare(upstream, headers, b"", 0);
            assert_eq!(
                prepared.is_ok(),
                ok,
                "{:?}",
                String::from_utf8_lossy(upstream)
            );
            if let Ok(call) = prepared {
                assert_eq!(call.timeout, Duration::from_millis(300), "0 means the cap");
            }
        }
        let call = upstreams.prepare(b"auth", &good, b"", 100_000).unwrap();
        assert_eq!(call.timeout, Duration::from_millis(300), "capped");
        let call = upstreams.prepare(b"auth", &good, b"", 50).unwrap();
        assert_eq!(call.timeout, Duration::from_millis(50));
        let service: Config = serde_json::from_value(serde_json::json!({
            "file": "/x.wasm", "sha256": "0".repeat(64),
            "clusters": {"auth": {"service": "auth"}},
        }))
        .unwrap();
        assert!(
            Upstreams::new(&service, None).is_err(),
            "a Service needs the snapshot"
        );
    }
}
