//! `apikey` credentials: a key in a header (default `Authorization`, optionally after `Bearer `
//! or `Apikey `) or in a query parameter (default `apikey`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use http::{request, HeaderName};
use rustc_hash::FxBuildHasher;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::request::{query_param, remove_query_param};
use super::store::Identity;
use super::{Outcome, Verifier};

/// The SHA-256 of an api key. Hashed for the table by its first 8 bytes (already uniformly
/// distributed; the table holds only the Secret's keys, so a client cannot crowd it).
#[derive(PartialEq, Eq)]
struct KeyDigest([u8; 32]);

impl Hash for KeyDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(first));
    }
}

/// Api keys by the SHA-256 of the key: lookups never compare the secret itself, and the final
/// comparison of digests is constant-time.
pub struct ApiKey {
    keys: HashMap<KeyDigest, Identity, FxBuildHasher>,
    header: HeaderName,
    query: Option<String>,
}

impl ApiKey {
    /// From the Secret's (identity, key) pairs.
    pub fn new(
        entries: Vec<(Identity, String)>,
        header: &str,
        query: Option<String>,
    ) -> Result<Self, String> {
        let header = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| format!("header: invalid header name {header:?}"))?;
        let mut keys = HashMap::with_hasher(FxBuildHasher);
        for (identity, key) in entries {
            if key.is_empty() {
                return Err(format!("api key of {:?} is empty", identity.consumer.id));
            }
            let id = identity.consumer.id.clone();
            if let Some(other) = keys.insert(digest(&key), identity) {
                return Err(format!(
                    "credentials {:?} and {id:?} have the same api key",
                    other.consumer.id
                ));
            }
        }
        Ok(Self {
            keys,
            header,
            query,
        })
    }

    fn presented<'r>(&self, req: &'r request::Parts) -> Option<&'r str> {
        if let Some(v) = req.headers.get(&self.header).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            let v = match v.split_once(' ') {
                Some((scheme, key))
                    if scheme.eq_ignore_ascii_case("bearer")
                        || scheme.eq_ignore_ascii_case("apikey") =>
                {
                    key.trim()
                }
                _ => v,
            };
            if !v.is_empty() {
                return Some(v);
            }
        }
        let q = self.query.as_deref()?;
        query_param(&req.uri, q).filter(|v| !v.is_empty())
    }
}

fn digest(key: &str) -> KeyDigest {
    KeyDigest(Sha256::digest(key.as_bytes()).into())
}

impl Verifier for ApiKey {
    fn verify(&self, req: &request::Parts, _now_secs: u64) -> Outcome<'_> {
        let Some(key) = self.presented(req) else {
            return Outcome::Absent;
        };
        let d = digest(key);
        match self.keys.get_key_value(&d) {
            Some((stored, identity)) if bool::from(stored.0.ct_eq(&d.0)) => {
                Outcome::Valid(identity)
            }
            _ => Outcome::Invalid("unknown api key"),
        }
    }

    fn strip(&self, req: &mut request::Parts) {
        req.headers.remove(&self.header);
        if let Some(q) = &self.query {
            remove_query_param(&mut req.uri, q);
        }
    }

    fn challenge(&self) -> &'static str {
        "ApiKey"
    }

    fn credential_param(&self) -> Option<&str> {
        self.query.as_deref()
    }
}
