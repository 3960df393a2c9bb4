//! The TLS certificates of a snapshot, by host: exact hosts by hash, then `*.` wildcards by
//! suffix (longest first), as the router does. Each certificate is loaded on its own: one that
//! the TLS stack refuses leaves only its hosts on their previous certificate.

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
    /// Loads every certificate on its own. One that fails is reported and left out; for each of
    /// its hosts the certificate `previous` served (if any) keeps being served.
    pub fn build<E: std::borrow::Borrow<CertificateEntry>>(
        entries: &[E],
        previous: Option<&CertStore>,
    ) -> (Self, Vec<(usize, CertError)>) {
        let mut store = CertStore::default();
        let mut failed = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.borrow();
            match certified_key(entry.cert_pem.as_bytes(), entry.key_pem.as_bytes()) {
                Ok(key) => {
                    let key = Arc::new(key);
                    for host in &entry.hosts {
                        store.insert(host, key.clone());
                    }
                }
                Err(message) => failed.push((
                    i,
                    CertError {
                        key: entry.key.clone(),
                        message,
                    },
                )),
            }
        }
        // Kept certificates go in last, and only where no new certificate took the host.
        for (i, _) in &failed {
            for host in &entries[*i].borrow().hosts {
                if let Some(kept) = previous.and_then(|p| p.get_pattern(host)) {
                    if store.get_pattern(host).is_none() {
                        store.insert(host, kept);
                    }
                }
            }
        }
        (store, failed)
    }

    /// Serves `key` for `host` (exact, or `*.` wildcard).
    fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(suffix.to_string(), key),
            None => self.exact.insert(host, key),
        };
    }

    /// The certificate stored for the host pattern `host` itself (`a.example.com` or
    /// `*.example.com`), without wildcard resolution.
    fn get_pattern(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(suffix) => self.wildcard.get(suffix).cloned(),
            None => self.exact.get(&host).cloned(),
        }
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
