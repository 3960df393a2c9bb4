//! Upstream clients: a connector (TCP, optionally rustls) per connection setting and the
//! endpoints it has connections to, shared across snapshots so a reload keeps the idle
//! connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use hookway_crds::snapshot::UpstreamProtocol;

use super::endpoint::{Endpoint, IdleSettings};
use crate::timer::SleepPool;

/// Opens TCP connections, with TLS for `https` endpoints.
pub type Connector = HttpsConnector<HttpConnector>;

/// One connector per ALPN offer (they differ only in the TLS config's ALPN list).
#[derive(Clone)]
pub struct Connectors {
    /// No ALPN: HTTP/1.1 (also what Upgrade requests use on an `auto` endpoint).
    pub http1: Connector,
    /// ALPN `h2`, `http/1.1`: the upstream picks.
    pub auto: Connector,
    /// ALPN `h2` only.
    pub http2: Connector,
}

impl Connectors {
    /// The connector whose ALPN offer matches `protocol`.
    pub fn for_protocol(&self, protocol: UpstreamProtocol) -> &Connector {
        match protocol {
            UpstreamProtocol::Http1 => &self.http1,
            UpstreamProtocol::Auto => &self.auto,
            UpstreamProtocol::Http2 => &self.http2,
        }
    }
}

/// How long an idle upstream connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

/// Endpoints by scheme, `host:port` and protocol; weak, so an endpoint no snapshot uses goes
/// away.
type EndpointMap = HashMap<(Scheme, Authority, UpstreamProtocol), Weak<Endpoint>>;

/// Connectors and the endpoints reached with them.
#[derive(Clone)]
pub struct HttpClient {
    connectors: Connectors,
    endpoints: Arc<Mutex<EndpointMap>>,
    /// The upstream timeouts' timers (the client and its connections live in one runtime).
    timers: SleepPool,
}

/// The protocol an endpoint really has: cleartext `auto` is HTTP/1.1 (there is no ALPN to ask
/// with), so it shares the HTTP/1.1 endpoint.
pub fn effective_protocol(scheme: &Scheme, protocol: UpstreamProtocol) -> UpstreamProtocol {
    if protocol == UpstreamProtocol::Auto && *scheme != Scheme::HTTPS {
        UpstreamProtocol::Http1
    } else {
        protocol
    }
}

impl HttpClient {
    fn new(connectors: Connectors) -> Self {
        Self {
            connectors,
            endpoints: Arc::default(),
            timers: SleepPool::upstream_calls(),
        }
    }

    /// The endpoint for `scheme://authority` spoken to with `protocol`, shared with every
    /// snapshot that uses it: its idle connections live as long as some snapshot (or request)
    /// holds it.
    pub fn endpoint(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        protocol: UpstreamProtocol,
    ) -> Arc<Endpoint> {
        let protocol = effective_protocol(scheme, protocol);
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (scheme.clone(), authority.clone(), protocol);
        if let Some(endpoint) = endpoints.get(&key).and_then(Weak::upgrade) {
            return endpoint;
        }
        let endpoint = Arc::new(Endpoint::new(
            scheme.clone(),
            authority.clone(),
            protocol,
            self.connectors.clone(),
            IdleSettings {
                timeout: IDLE_TIMEOUT,
                max: MAX_IDLE_PER_ENDPOINT,
            },
        ));
        endpoints.insert(key, Arc::downgrade(&endpoint));
        endpoints.retain(|_, e| e.strong_count() > 0);
        endpoint
    }

    /// Where the upstream timeouts of requests to this client's endpoints keep their timers.
    pub fn timers(&self) -> SleepPool {
        self.timers
    }

    /// The connectors.
    pub fn connectors(&self) -> &Connectors {
        &self.connectors
    }

    /// Closes expired idle connections of every live endpoint.
    pub fn evict_expired(&self) {
        let live: Vec<Arc<Endpoint>> = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for endpoint in live {
            endpoint.evict_expired();
        }
    }
}

/// What distinguishes two clients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Skip certificate verification.
    pub insecure: bool,
    /// SNI / verification name override.
    pub server_name: Option<String>,
}

/// Clients by [`ClientKey`]; consulted only when a snapshot is applied.
#[derive(Clone, Default)]
pub struct ClientCache {
    clients: Arc<Mutex<HashMap<ClientKey, HttpClient>>>,
    roots: Arc<std::sync::OnceLock<Arc<RootCertStore>>>,
}

impl ClientCache {
    /// The client for `key`, built on first use.
    pub fn get(&self, key: &ClientKey) -> Result<HttpClient, String> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(key) {
            return Ok(c.clone());
        }
        let client = self.build(key)?;
        clients.insert(key.clone(), client.clone());
        Ok(client)
    }

    /// Closes expired idle connections of every client (run periodically).
    pub fn evict_expired(&self) {
        let clients: Vec<HttpClient> = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for client in clients {
            client.evict_expired();
        }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        self.roots
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                for err in &native.errors {
                    tracing::debug!(error = %err, "loading a native root certificate");
                }
                let (added, ignored) = roots.add_parsable_certificates(native.certs);
                tracing::debug!(added, ignored, "upstream TLS roots loaded");
                Arc::new(roots)
            })
            .clone()
    }

    fn build(&self, key: &ClientKey) -> Result<HttpClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let tls = if key.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(self.roots())
                .with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(key.connect_timeout_ms.max(1))));
        let server_name = key
            .server_name
            .as_ref()
            .map(|name| {
                ServerName::try_from(name.clone())
                    .map_err(|e| format!("tls server name {name:?}: {e}"))
            })
            .transpose()?;
        let builder = || {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http();
            match &server_name {
                Some(name) => {
                    https.with_server_name_resolver(FixedServerNameResolver::new(name.clone()))
                }
                None => https,
            }
        };
        Ok(HttpClient::new(Connectors {
            http1: builder().enable_http1().wrap_connector(http.clone()),
            auto: builder().enable_all_versions().wrap_connector(http.clone()),
            http2: builder().enable_http2().wrap_connector(http),
        }))
    }
}

/// Accepts any upstream certificate (`tlsInsecureSkipVerify`).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
