//! TLS key material checks shared by the compiler and the proxy.
//!
//! The compiler calls [`check`] on every `kubernetes.io/tls` Secret a Route names, and the proxy
//! loads certificates with [`certified_key`]: the same parsing, the same key types, the same
//! key/certificate match, so a Secret the compiler accepts is one every proxy can serve.
//! No I/O: PEM text in, parsed material or a message out.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Loads a PEM chain and key into a rustls [`CertifiedKey`]: the chain must hold at least one
/// certificate, the key must be of a type rustls can sign with (RSA, ECDSA P-256/P-384,
/// Ed25519) and must belong to the first certificate.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt: no PEM certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key: unsupported key type: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("tls.key does not match the first certificate of tls.crt: {e}"))?;
    Ok(certified)
}

/// The validity window of a certificate, in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore`.
    pub not_before: i64,
    /// `notAfter`.
    pub not_after: i64,
}

/// What [`check`] found about a usable certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The leaf certificate's validity window.
    pub validity: Validity,
}

impl Checked {
    /// A warning when the leaf is outside its validity window at `now` (unix seconds): it is
    /// still served (a renewal may be on its way), but clients will refuse it.
    pub fn expiry_warning(&self, now: i64) -> Option<String> {
        let Validity {
            not_before,
            not_after,
        } = self.validity;
        if now >= not_after {
            Some(format!(
                "the certificate expired at {}; it is still served, clients will refuse it",
                date(not_after)
            ))
        } else if now < not_before {
            Some(format!(
                "the certificate is not valid before {}; it is served, clients will refuse it until then",
                date(not_before)
            ))
        } else {
            None
        }
    }
}

/// Checks a PEM chain and key as the proxy will load them ([`certified_key`]) and reads the
/// leaf's validity window.
pub fn check(cert_pem: &str, key_pem: &str) -> Result<Checked, String> {
    let certified = certified_key(cert_pem.as_bytes(), key_pem.as_bytes())?;
    let leaf = certified
        .end_entity_cert()
        .map_err(|e| format!("tls.crt: {e}"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("tls.crt: the first certificate does not parse as X.509: {e}"))?;
    let validity = parsed.validity();
    Ok(Checked {
        validity: Validity {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        },
    })
}

/// A unix time as a readable UTC date for messages (x509-parser's `Display` of an ASN.1 time).
fn date(secs: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(secs)
        .map_or_else(|_| format!("unix second {secs}"), |t| t.to_string())
}
