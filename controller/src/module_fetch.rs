//! Fetching the URL sources of plugin configs (a `wasm` module's `url`), pinned by `sha256`.
//!
//! ```text
//!  compile ─► Compiled::url_sources ─► want() ─► a task per source not held, failed or in flight
//!                                                 │ GET, timeout, size cap, retries with backoff
//!                                                 ▼ digest checked
//!  Objects::fetched ◄── fetched() ◄── blobs by sha256 | failures by source ──► poke (recompile)
//! ```
//!
//! The compiler stays pure: it reads what was fetched ([`Fetched`]) and lists the sources it
//! met; this module does the I/O. Bytes are held once per digest and a source that delivered
//! them is never fetched again while a config lists it (an unchanged config costs nothing);
//! bytes no listed source pins are dropped. A config is served only bytes its own URL gave. A failure is kept for
//! [`FetchConfig::retry_failed_after`], then the source is fetched again; it only ever concerns the
//! configs that pin that source (their GatewayPlugin or Route gets `ResolvedRefs=False`), never
//! the rest of the snapshot. Only configs that passed validation and the platform policy are
//! listed, so a tenant's URL is fetched only where a PlatformPolicy lets `wasm` reach the
//! network (the field is `x-hookway-reaches-network`). Redirects are not followed.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hookway_crds::compiler::{FetchFailure, FetchFailureKind, Fetched, UrlSource};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::{info, warn};

use crate::compile_loop::Poke;
use crate::Error;

/// How URL sources are fetched.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Longest time one attempt may take, connect to last body byte.
    pub timeout: Duration,
    /// Largest body accepted, bytes (larger: a failure, the body is not read further).
    pub max_bytes: usize,
    /// Attempts per fetch (network errors, timeouts, 5xx, 408 and 429 are retried).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each later one.
    pub backoff: Duration,
    /// How long a failure is reported before the source is fetched again.
    pub retry_failed_after: Duration,
    /// PEM certificates trusted for `https://` sources instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_bytes: 16 << 20,
            attempts: 3,
            backoff: Duration::from_millis(500),
            retry_failed_after: Duration::from_secs(300),
            ca_pem: None,
        }
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

#[derive(Default)]
struct State {
    fetched: Arc<Fetched>,
    in_flight: HashSet<UrlSource>,
    /// Fetches started (attempts not counted), for tests and logs.
    started: u64,
}

struct Inner {
    config: FetchConfig,
    client: HttpsClient,
    poke: Poke,
    state: Mutex<State>,
}

/// The URL-source fetcher. Clones share one cache.
#[derive(Clone)]
pub struct ModuleFetcher(Arc<Inner>);

impl ModuleFetcher {
    /// A fetcher that pokes `poke` whenever what it holds changes.
    pub fn new(config: FetchConfig, poke: Poke) -> Result<Self, Error> {
        let tls = tls_config(config.ca_pem.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self(Arc::new(Inner {
            config,
            client,
            poke,
            state: Mutex::default(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is held now (cheap: shared until the next change).
    pub fn fetched(&self) -> Arc<Fetched> {
        self.lock().fetched.clone()
    }

    /// How many fetches were started so far.
    pub fn fetches_started(&self) -> u64 {
        self.lock().started
    }

    /// Takes the URL sources of the latest compile: drops the bytes and failures no source
    /// needs any more and starts a fetch for each source neither held, failed nor in flight.
    /// Must run inside a tokio runtime.
    pub fn want(&self, sources: &BTreeSet<UrlSource>) {
        let mut state = self.lock();
        let stale = state.fetched.sources.iter().any(|s| !sources.contains(s))
            || state.fetched.failures.keys().any(|s| !sources.contains(s));
        if stale {
            let fetched = Arc::make_mut(&mut state.fetched);
            fetched.sources.retain(|s| sources.contains(s));
            fetched.failures.retain(|s, _| sources.contains(s));
            let pinned: HashSet<&str> = fetched.sources.iter().map(|s| s.sha256.as_str()).collect();
            fetched.blobs.retain(|d, _| pinned.contains(d.as_str()));
        }
        for source in sources {
            let held = state.fetched.sources.contains(source)
                || state.fetched.failures.contains_key(source)
                || state.in_flight.contains(source);
            if held {
                continue;
            }
            state.in_flight.insert(source.clone());
            state.started += 1;
            let this = self.clone();
            let source = source.clone();
            tokio::spawn(async move { this.fetch(source).await });
        }
    }

    async fn fetch(self, source: UrlSource) {
        let outcome = self.fetch_verified(&source).await;
        let failed = {
            let mut state = self.lock();
            state.in_flight.remove(&source);
            let fetched = Arc::make_mut(&mut state.fetched);
            match outcome {
                Ok(bytes) => {
                    info!(url = %source.url, sha256 = %source.sha256, bytes = bytes.len(), "module fetched");
                    fetched.failures.remove(&source);
                    fetched
                        .blobs
                        .entry(source.sha256.clone())
                        .or_insert_with(|| Arc::new(bytes));
                    fetched.sources.insert(source.clone());
                    None
                }
                Err(failure) => {
                    warn!(url = %source.url, sha256 = %source.sha256, error = %failure.message, "module fetch failed");
                    fetched.failures.insert(source.clone(), failure.clone());
                    Some(failure)
                }
            }
        };
        self.0.poke.poke();
        if let Some(failure) = failed {
            tokio::time::sleep(self.0.config.retry_failed_after).await;
            let mut state = self.lock();
            if state.fetched.failures.get(&source) == Some(&failure) {
                Arc::make_mut(&mut state.fetched).failures.remove(&source);
                drop(state);
                self.0.poke.poke();
            }
        }
    }

    /// The bytes at `source.url` with the pinned digest, after up to `attempts` tries.
    async fn fetch_verified(&self, source: &UrlSource) -> Result<Vec<u8>, FetchFailure> {
        let config = &self.0.config;
        let mut wait = config.backoff;
        let mut attempt = 1;
        let bytes = loop {
            match tokio::time::timeout(config.timeout, self.get(&source.url)).await {
                Ok(Ok(bytes)) => break bytes,
                Ok(Err(Attempt { message, retry })) => {
                    if !retry || attempt >= config.attempts {
                        return Err(unreachable(message, attempt));
                    }
                }
                Err(_) => {
                    let message = format!("no complete answer within {:?}", config.timeout);
                    if attempt >= config.attempts {
                        return Err(unreachable(message, attempt));
                    }
                }
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
        };
        hookway_crds::catalogue::schema::check_sha256(&bytes, &source.sha256).map_err(|e| {
            FetchFailure {
                kind: FetchFailureKind::DigestMismatch,
                message: e,
            }
        })?;
        Ok(bytes)
    }

    /// One GET of `url`: the body (up to `max_bytes`) of a `200`.
    async fn get(&self, url: &str) -> Result<Vec<u8>, Attempt> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Attempt::fatal(format!("bad url: {e}")))?;
        let request = http::Request::get(uri)
            .header(http::header::USER_AGENT, "hookway-controller")
            .body(Empty::new())
            .map_err(|e| Attempt::fatal(format!("bad url: {e}")))?;
        let response = self
            .0
            .client
            .request(request)
            .await
            .map_err(|e| Attempt::retry(format!("request failed: {}", error_chain(&e))))?;
        let status = response.status();
        if status != http::StatusCode::OK {
            let retry = status.is_server_error()
                || status == http::StatusCode::REQUEST_TIMEOUT
                || status == http::StatusCode::TOO_MANY_REQUESTS;
            let redirect = if status.is_redirection() {
                " (redirects are not followed)"
            } else {
                ""
            };
            return Err(Attempt {
                message: format!("HTTP {status}{redirect}"),
                retry,
            });
        }
        let max = self.0.config.max_bytes;
        let too_large = || Attempt::fatal(format!("the module is larger than {max} bytes"));
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| Attempt::retry(format!("body failed: {}", error_chain(&e))))?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > max {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(bytes)
    }
}

/// Why one attempt failed, and whether another may do better.
struct Attempt {
    message: String,
    retry: bool,
}

impl Attempt {
    fn retry(message: String) -> Self {
        Self {
            message,
            retry: true,
        }
    }
    fn fatal(message: String) -> Self {
        Self {
            message,
            retry: false,
        }
    }
}

fn unreachable(message: String, attempts: u32) -> FetchFailure {
    let tries = if attempts == 1 {
        String::new()
    } else {
        format!(" (after {attempts} attempts)")
    };
    FetchFailure {
        kind: FetchFailureKind::Unreachable,
        message: format!("{message}{tries}"),
    }
}

/// `error: cause: cause`, so a TLS or connect failure says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The rustls client config: `ca_pem` when given, else the system's roots.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, Error> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::Tls(format!("module CA bundle: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Tls(format!("module CA bundle: {e}")))?;
            }
            if roots.is_empty() {
                return Err(Error::Tls("module CA bundle: no certificate".into()));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU32, Ordering};

    use hookway_crds::catalogue::schema::sha256_hex as digest;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use hyper_util::server::conn::auto;
    use tokio::net::TcpListener;

    use super::*;
    use crate::compile_loop::Debounce;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 served over loopback";

    /// A module server on loopback; counts requests per path.
    #[derive(Clone, Default)]
    struct Server {
        hits: Arc<Mutex<HashMap<String, u32>>>,
        flaky_failures: Arc<AtomicU32>,
    }

    impl Server {
        fn hits(&self, path: &str) -> u32 {
            self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
        }

        async fn answer(
            self,
            req: http::Request<Incoming>,
        ) -> Result<http::Response<Full<Bytes>>, Infallible> {
            let path = req.uri().path().to_string();
            *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
            let (status, body): (u16, Vec<u8>) = match path.as_str() {
                "/module.wasm" => (200, MODULE.to_vec()),
                "/other.wasm" => (200, b"\0asm other bytes".to_vec()),
                "/big.wasm" => (200, vec![0; 4096]),
                "/missing.wasm" => (404, b"no such module".to_vec()),
                "/moved.wasm" => (302, Vec::new()),
                "/flaky.wasm" => {
                    if self.flaky_failures.fetch_sub(1, Ordering::SeqCst) > 0 {
                        (503, Vec::new())
                    } else {
                        (200, MODULE.to_vec())
                    }
                }
                "/slow.wasm" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    (200, MODULE.to_vec())
                }
                _ => (404, Vec::new()),
            };
            let mut response = http::Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            if status == 302 {
                response
                    .headers_mut()
                    .insert(http::header::LOCATION, "/module.wasm".parse().unwrap());
            }
            Ok(response)
        }

        /// Serves on a fresh loopback port, TLS with `tls`.
        async fn start(&self, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let this = self.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let this = this.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| this.clone().answer(req));
                        let builder = auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                        match tls {
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                            }
                            Some(tls) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                                if let Ok(stream) = acceptor.accept(tcp).await {
                                    let _ = builder
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                }
                            }
                        }
                    });
                }
            });
            addr
        }
    }

    fn quick() -> FetchConfig {
        FetchConfig {
            timeout: Duration::from_millis(500),
            max_bytes: 1024,
            attempts: 3,
            backoff: Duration::from_millis(10),
            retry_failed_after: Duration::from_secs(600),
            ca_pem: None,
        }
    }

    fn source(url: String, bytes: &[u8]) -> UrlSource {
        UrlSource {
            url,
            sha256: digest(bytes),
        }
    }

    /// Asks for `source` alone and waits until the fetcher reports it held or failed.
    async fn fetch_one(
        fetcher: &ModuleFetcher,
        poke: &Poke,
        source: &UrlSource,
    ) -> Result<Arc<Vec<u8>>, FetchFailure> {
        fetcher.want(&[source.clone()].into());
        wait_for(fetcher, poke, source).await
    }

    /// Waits until the fetcher reports `source` held or failed.
    async fn wait_for(
        fetcher: &ModuleFetcher,
        poke: &Poke,
        source: &UrlSource,
    ) -> Result<Arc<Vec<u8>>, FetchFailure> {
        loop {
            let fetched = fetcher.fetched();
            if fetched.sources.contains(source) {
                return Ok(fetched.blobs[&source.sha256].clone());
            }
            if let Some(failure) = fetched.failures.get(source) {
                return Err(failure.clone());
            }
            tokio::time::timeout(Duration::from_secs(10), poke.settle(Debounce::default()))
                .await
                .expect("the fetcher reports within 10 s");
        }
    }

    #[tokio::test]
    async fn fetches_by_table() {
        let server = Server::default();
        server.flaky_failures.store(2, Ordering::SeqCst);
        let addr = server.start(None).await;
        let url = |path: &str| format!("http://{addr}{path}");
        // (path, pinned bytes, failure kind and message part, requests made)
        type Case<'a> = (&'a str, &'a [u8], Option<(FetchFailureKind, &'a str)>, u32);
        let cases: [Case; 7] = [
            ("/module.wasm", MODULE, None, 1),
            // Two 503s, then the module: retried with backoff.
            ("/flaky.wasm", MODULE, None, 3),
            (
                "/other.wasm",
                MODULE,
                Some((FetchFailureKind::DigestMismatch, "sha256 mismatch")),
                1,
            ),
            (
                "/missing.wasm",
                MODULE,
                Some((FetchFailureKind::Unreachable, "HTTP 404")),
                1,
            ),
            (
                "/moved.wasm",
                MODULE,
                Some((FetchFailureKind::Unreachable, "redirects are not followed")),
                1,
            ),
            (
                "/big.wasm",
                MODULE,
                Some((FetchFailureKind::Unreachable, "larger than 1024 bytes")),
                1,
            ),
            (
                "/slow.wasm",
                MODULE,
                Some((
                    FetchFailureKind::Unreachable,
                    "no complete answer within 500ms (after 3 attempts)",
                )),
                3,
            ),
        ];
        for (path, pinned, want, hits) in cases {
            let poke = Poke::default();
            let fetcher = ModuleFetcher::new(quick(), poke.clone()).unwrap();
            let got = fetch_one(&fetcher, &poke, &source(url(path), pinned)).await;
            match (got, want) {
                (Ok(bytes), None) => assert_eq!(bytes.as_slice(), pinned, "{path}"),
                (Err(failure), Some((kind, needle))) => {
                    assert_eq!(failure.kind, kind, "{path}: {}", failure.message);
                    assert!(
                        failure.message.contains(needle),
                        "{path}: {}",
                        failure.message
                    );
                }
                (got, want) => panic!("{path}: got {got:?}, want {want:?}"),
            }
            assert_eq!(server.hits(path), hits, "{path}");
        }
        let poke = Poke::default();
        let fetcher = ModuleFetcher::new(quick(), poke.clone()).unwrap();
        let closed = source("http://127.0.0.1:1/module.wasm".into(), MODULE);
        let failure = fetch_one(&fetcher, &poke, &closed).await.unwrap_err();
        assert!(
            failure.message.contains("request failed"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn the_cache_is_keyed_by_digest_and_drops_what_no_config_pins() {
        let server = Server::default();
        let addr = server.start(None).await;
        let poke = Poke::default();
        let fetcher = ModuleFetcher::new(quick(), poke.clone()).unwrap();
        let module = source(format!("http://{addr}/module.wasm"), MODULE);
        fetch_one(&fetcher, &poke, &module).await.unwrap();
        // Every later compile lists the same source: nothing is fetched again.
        for _ in 0..3 {
            fetcher.want(&[module.clone()].into());
        }
        assert_eq!(fetcher.fetches_started(), 1);
        assert_eq!(server.hits("/module.wasm"), 1);
        // Another URL pinning the same bytes is asked itself: a config gets only what its URL
        // gives (here a 404), however the cache is keyed.
        let mirror = source(format!("http://{addr}/elsewhere.wasm"), MODULE);
        fetcher.want(&[module.clone(), mirror.clone()].into());
        let failure = wait_for(&fetcher, &poke, &mirror).await.unwrap_err();
        assert!(failure.message.contains("HTTP 404"), "{}", failure.message);
        assert_eq!(fetcher.fetches_started(), 2);
        assert_eq!(fetcher.fetched().blobs.len(), 1);
        // No config pins the digest any more: the bytes are dropped, and fetched again when a
        // config asks again.
        fetcher.want(&BTreeSet::new());
        assert!(fetcher.fetched().blobs.is_empty());
        fetch_one(&fetcher, &poke, &module).await.unwrap();
        assert_eq!(server.hits("/module.wasm"), 2);
    }

    #[tokio::test]
    async fn a_failure_is_retried_after_a_while() {
        let server = Server::default();
        server.flaky_failures.store(1, Ordering::SeqCst);
        let addr = server.start(None).await;
        let poke = Poke::default();
        let config = FetchConfig {
            attempts: 1,
            retry_failed_after: Duration::from_millis(50),
            ..quick()
        };
        let fetcher = ModuleFetcher::new(config, poke.clone()).unwrap();
        let flaky = source(format!("http://{addr}/flaky.wasm"), MODULE);
        let failure = fetch_one(&fetcher, &poke, &flaky).await.unwrap_err();
        assert!(failure.message.contains("HTTP 503"), "{}", failure.message);
        // The failure expires (a poke), the next compile lists the source again.
        tokio::time::timeout(Duration::from_secs(10), poke.settle(Debounce::default()))
            .await
            .unwrap();
        assert!(fetcher.fetched().failures.is_empty());
        fetch_one(&fetcher, &poke, &flaky).await.unwrap();
        assert_eq!(server.hits("/flaky.wasm"), 2);
    }

    #[tokio::test]
    async fn https_is_verified_against_the_configured_ca() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let tls = crate::stream::tls::server_config(
            leaf.pem().as_bytes(),
            leaf_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        let server = Server::default();
        let addr = server.start(Some(tls)).await;
        let module = source(format!("https://{addr}/module.wasm"), MODULE);

        let poke = Poke::default();
        let trusted = FetchConfig {
            ca_pem: Some(ca.pem().into_bytes()),
            ..quick()
        };
        let fetcher = ModuleFetcher::new(trusted, poke.clone()).unwrap();
        let bytes = fetch_one(&fetcher, &poke, &module).await.unwrap();
        assert_eq!(bytes.as_slice(), MODULE);

        // The system's roots do not know the test CA: the handshake fails, and says so.
        let poke = Poke::default();
        let fetcher = ModuleFetcher::new(quick(), poke.clone()).unwrap();
        let failure = fetch_one(&fetcher, &poke, &module).await.unwrap_err();
        assert_eq!(failure.kind, FetchFailureKind::Unreachable);
        assert!(
            failure.message.to_lowercase().contains("certificate"),
            "{}",
            failure.message
        );

        assert!(ModuleFetcher::new(
            FetchConfig {
                ca_pem: Some(b"not pem".to_vec()),
                ..quick()
            },
            Poke::default()
        )
        .is_err());
    }
}
