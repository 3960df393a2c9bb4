//! TLS for the HTTPS listener: rustls with certificates chosen by SNI from the live runtime,
//! so a new snapshot changes certificates without a restart.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::runtime::RuntimeState;

/// Picks the certificate for a handshake: by SNI (exact host, then wildcard) from the live
/// runtime, else the default certificate, else none (the handshake fails).
pub struct SniResolver {
    state: Arc<RuntimeState>,
    default: Option<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_name = hello.server_name().and_then(|name| {
            let runtime = self.state.load()?;
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                runtime.certs.resolve(&name.to_ascii_lowercase())
            } else {
                runtime.certs.resolve(name)
            }
        });
        let found = by_name.or_else(|| self.default.clone());
        if found.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this server name");
        }
        found
    }
}

/// The server config: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, certificates by SNI.
pub fn server_config(
    state: Arc<RuntimeState>,
    default: Option<Arc<CertifiedKey>>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { state, default }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
