//! `basic` credentials: `Authorization: Basic base64(user:password)`.

use std::collections::HashMap;

use base64::Engine;
use http::{header, request};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::request::strip_scheme;
use super::store::Identity;
use super::{Outcome, Verifier};

/// Users by name, with the SHA-256 of their password (compared in constant time).
pub struct Basic {
    users: HashMap<String, ([u8; 32], Identity)>,
}

impl Basic {
    /// From the Secret's (identity = user, password) pairs.
    pub fn new(entries: Vec<(Identity, String)>) -> Result<Self, String> {
        let users = entries
            .into_iter()
            .map(|(identity, password)| {
                (
                    identity.consumer.id.clone(),
                    (Sha256::digest(password.as_bytes()).into(), identity),
                )
            })
            .collect();
        Ok(Self { users })
    }
}

impl Verifier for Basic {
    fn verify(&self, req: &request::Parts, _now_secs: u64) -> Outcome<'_> {
        let Some(encoded) = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| strip_scheme(v, "basic"))
        else {
            return Outcome::Absent;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return Outcome::Invalid("malformed basic credentials");
        };
        let Some((user, password)) = std::str::from_utf8(&decoded)
            .ok()
            .and_then(|s| s.split_once(':'))
        else {
            return Outcome::Invalid("malformed basic credentials");
        };
        let presented: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        match self.users.get(user) {
            Some((stored, identity)) if bool::from(stored.ct_eq(&presented)) => {
                Outcome::Valid(identity)
            }
            _ => Outcome::Invalid("wrong user or password"),
        }
    }

    fn strip(&self, req: &mut request::Parts) {
        req.headers.remove(header::AUTHORIZATION);
    }

    fn challenge(&self) -> &'static str {
        "Basic"
    }
}
