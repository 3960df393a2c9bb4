//! The TLS certificates of a snapshot, by host: exact hosts by hash, then `*.` wildcards by
//! suffix (longest first), as the router does.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use hookway_crds::snapshot::{CertificateEntry, ObjectKey};

/// A certificate this proxy cannot serve.
#[derive(Debug, thiserror::Error)]
#[error("certificate {key}: {message}")]
pub struct CertError {
    /// The Secret.
    pub key: ObjectKey,
    /// Why.
    pub message: String,
}

/// Certificates by server name.
#[derive(Default, Debug)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

pub use hookway_crds::tls::certified_key;

impl CertStore {
    /// Loads every certificate; one that fails rejects the whole set.
    pub fn new(entries: &[CertificateEntry]) -> Result<Self, CertError> {
        let mut store = CertStore::default();
        for entry in entries {
            let key = certified_key(entry.cert_pem.as_bytes(), entry.key_pem.as_bytes())
                .map(Arc::new)
                .map_err(|message| CertError {
                    key: entry.key.clone(),
                    message,
                })?;
            for host in &entry.hosts {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix("*.") {
                    Some(suffix) => store.wildcard.insert(suffix.to_string(), key.clone()),
                    None => store.exact.insert(host, key.clone()),
                };
            }
        }
        Ok(store)
    }

    /// The certificate for `server_name` (lower-case), if any.
    pub fn resolve(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(k) = self.exact.get(server_name) {
            return Some(k.clone());
        }
        let mut rest = server_name;
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(k) = self.wildcard.get(suffix) {
                return Some(k.clone());
            }
            rest = suffix;
        }
        None
    }

    /// Whether there is no certificate.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}
