//! `jwt` credentials: a signed token (HS/RS/PS 256/384/512, ES256/ES384) from
//! `Authorization: Bearer`, a query parameter (default `jwt_token`) or a cookie, verified with
//! the key of the credential named by the token's `kid` (or, for small key sets, every key when
//! there is no `kid`).

use http::{header, request};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::request::{cookie, query_param, remove_cookie, remove_query_param, strip_scheme};
use super::store::Identity;
use super::{Outcome, Verifier};

/// Tokens without `kid` are tried against every key only when a source has at most this many.
pub const MAX_KEYS_WITHOUT_KID: usize = 4;

/// Signing algorithms accepted in config.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum JwtAlgorithm {
    /// HMAC SHA-256 (the credential value is the shared secret).
    #[default]
    HS256,
    /// HMAC SHA-384.
    HS384,
    /// HMAC SHA-512.
    HS512,
    /// RSA PKCS#1 v1.5 SHA-256 (the credential value is a PEM public key).
    RS256,
    /// RSA SHA-384.
    RS384,
    /// RSA SHA-512.
    RS512,
    /// RSA-PSS SHA-256.
    PS256,
    /// RSA-PSS SHA-384.
    PS384,
    /// RSA-PSS SHA-512.
    PS512,
    /// ECDSA P-256 SHA-256 (PEM public key).
    ES256,
    /// ECDSA P-384 SHA-384.
    ES384,
    /// ECDSA P-521 SHA-512: not supported by the JWT library; refused at validation.
    ES512,
}

impl JwtAlgorithm {
    /// The library's algorithm.
    pub fn to_library(self) -> Result<Algorithm, String> {
        Ok(match self {
            Self::HS256 => Algorithm::HS256,
            Self::HS384 => Algorithm::HS384,
            Self::HS512 => Algorithm::HS512,
            Self::RS256 => Algorithm::RS256,
            Self::RS384 => Algorithm::RS384,
            Self::RS512 => Algorithm::RS512,
            Self::PS256 => Algorithm::PS256,
            Self::PS384 => Algorithm::PS384,
            Self::PS512 => Algorithm::PS512,
            Self::ES256 => Algorithm::ES256,
            Self::ES384 => Algorithm::ES384,
            Self::ES512 => {
                return Err("algorithm ES512 is not supported (use ES256 or ES384)".into())
            }
        })
    }
}

/// Registered claims that may be required and checked.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Claim {
    /// Expiry: required and must be in the future.
    Exp,
    /// Not-before: required and must be in the past.
    Nbf,
}

/// Where tokens are read from and what is checked.
pub struct JwtOptions {
    /// Algorithm of every key of this credential source.
    pub algorithm: JwtAlgorithm,
    /// Query parameter carrying the token (`None`: not read).
    pub query: Option<String>,
    /// Cookie carrying the token.
    pub cookie: Option<String>,
    /// Claims required and checked.
    pub claims_to_verify: Vec<Claim>,
    /// Accepted issuers (`iss`), empty: not checked.
    pub issuer: Vec<String>,
    /// Accepted audiences (`aud`), empty: not checked.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    pub leeway_seconds: u64,
}

/// Verifies tokens against the keys of one Secret.
pub struct Jwt {
    keys: Vec<(Identity, DecodingKey)>,
    validation: Validation,
    query: Option<String>,
    cookie: Option<String>,
}

impl Jwt {
    /// From the Secret's (identity = key id, key) pairs; keys are parsed now.
    pub fn new(entries: Vec<(Identity, String)>, options: JwtOptions) -> Result<Self, String> {
        let algorithm = options.algorithm.to_library()?;
        let mut keys = Vec::with_capacity(entries.len());
        for (identity, material) in entries {
            let key = match options.algorithm {
                JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => {
                    DecodingKey::from_secret(material.as_bytes())
                }
                JwtAlgorithm::ES256 | JwtAlgorithm::ES384 | JwtAlgorithm::ES512 => {
                    DecodingKey::from_ec_pem(material.as_bytes())
                }
                _ => DecodingKey::from_rsa_pem(material.as_bytes()),
            }
            .map_err(|e| {
                format!(
                    "key {:?} is not a valid {:?} key: {e}",
                    identity.consumer.id, options.algorithm
                )
            })?;
            keys.push((identity, key));
        }
        let mut validation = Validation::new(algorithm);
        let claims: Vec<&str> = options
            .claims_to_verify
            .iter()
            .map(|c| match c {
                Claim::Exp => "exp",
                Claim::Nbf => "nbf",
            })
            .collect();
        validation.set_required_spec_claims(&claims);
        validation.validate_exp = options.claims_to_verify.contains(&Claim::Exp);
        validation.validate_nbf = options.claims_to_verify.contains(&Claim::Nbf);
        validation.leeway = options.leeway_seconds;
        if !options.issuer.is_empty() {
            validation.set_issuer(&options.issuer);
        }
        if options.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&options.audience);
        }
        Ok(Self {
            keys,
            validation,
            query: options.query,
            cookie: options.cookie,
        })
    }

    fn token<'r>(&self, req: &'r request::Parts) -> Option<&'r str> {
        if let Some(t) = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| strip_scheme(v, "bearer"))
        {
            return Some(t);
        }
        if let Some(t) = self.query.as_deref().and_then(|q| query_param(&req.uri, q)) {
            return Some(t);
        }
        self.cookie.as_deref().and_then(|c| cookie(&req.headers, c))
    }

    fn check(&self, token: &str, key: &DecodingKey) -> bool {
        jsonwebtoken::decode::<serde_json::Value>(token, key, &self.validation).is_ok()
    }
}

impl Verifier for Jwt {
    fn verify(&self, req: &request::Parts, _now_secs: u64) -> Outcome<'_> {
        let Some(token) = self.token(req).filter(|t| !t.is_empty()) else {
            return Outcome::Absent;
        };
        let Ok(head) = jsonwebtoken::decode_header(token) else {
            return Outcome::Invalid("malformed token");
        };
        let found = match head.kid.as_deref() {
            Some(kid) => self
                .keys
                .iter()
                .find(|(identity, _)| identity.consumer.id == kid)
                .filter(|(_, key)| self.check(token, key)),
            // Trying every key costs one signature check each: only for small key sets.
            None if self.keys.len() <= MAX_KEYS_WITHOUT_KID => {
                self.keys.iter().find(|(_, key)| self.check(token, key))
            }
            None => return Outcome::Invalid("token has no kid"),
        };
        match found {
            Some((identity, _)) => Outcome::Valid(identity),
            None => Outcome::Invalid("token rejected"),
        }
    }

    fn strip(&self, req: &mut request::Parts) {
        let bearer = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| strip_scheme(v, "bearer").is_some());
        if bearer {
            req.headers.remove(header::AUTHORIZATION);
        }
        if let Some(q) = &self.query {
            remove_query_param(&mut req.uri, q);
        }
        if let Some(c) = &self.cookie {
            remove_cookie(&mut req.headers, c);
        }
    }

    fn challenge(&self) -> &'static str {
        "Bearer"
    }

    fn credential_param(&self) -> Option<&str> {
        self.query.as_deref()
    }
}
