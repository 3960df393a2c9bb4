//! `auth`: credential sources (`apikey`, `basic`, `jwt`, `aksk`) tried in order; the first that
//! accepts the request authenticates it as a consumer (id + labels, in [`Ctx::consumer`]).
//!
//! Credentials live in Kubernetes Secrets named by the config (see [`store`] for the layout),
//! never inline. No accepted credential: 401 with one `WWW-Authenticate` challenge per source
//! type. Accepted but lacking a `required_labels` entry: 403.

pub mod aksk;
pub mod apikey;
pub mod basic;
pub mod jwt;
pub mod request;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{header, request as http_request, HeaderValue, StatusCode};
use serde::Deserialize;

use hookway_crds::catalogue::{PluginConfig, ResolvedSecrets};
use hookway_crds::snapshot::SecretEntry;

use self::jwt::{Claim, JwtAlgorithm, JwtOptions};
use self::store::Identity;
use super::decisions::{self, Decision};
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// Answer when no credential was accepted.
pub const UNAUTHORIZED: &str = "[auth] invalid user";
/// Answer when the credential lacks a required label.
pub const FORBIDDEN: &str = "[auth] access denied";

fn authorization() -> String {
    "Authorization".into()
}
fn apikey_query() -> Option<String> {
    Some("apikey".into())
}
fn jwt_query() -> Option<String> {
    Some("jwt_token".into())
}
fn default_claims() -> Vec<Claim> {
    vec![Claim::Exp]
}
fn default_skew() -> u64 {
    300
}
fn default_realm() -> String {
    "hookway".into()
}

/// One credential source.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum CredentialConfig {
    /// Api keys: Secret data `<id>: <key>`.
    Apikey {
        /// Secret holding the keys.
        #[schemars(extend("x-hookway-ref" = "secret"))]
        secret: String,
        /// Header carrying the key (an optional `Bearer `/`Apikey ` prefix is accepted).
        #[serde(default = "authorization")]
        header: String,
        /// Query parameter carrying the key (`null`: not read).
        #[serde(default = "apikey_query")]
        query: Option<String>,
    },
    /// HTTP Basic: Secret data `<user>: <password>`.
    Basic {
        /// Secret holding the users.
        #[schemars(extend("x-hookway-ref" = "secret"))]
        secret: String,
    },
    /// JWT: Secret data `<kid>: <HS secret | PEM public key>`.
    Jwt {
        /// Secret holding the keys.
        #[schemars(extend("x-hookway-ref" = "secret"))]
        secret: String,
        /// Signing algorithm of every key in the Secret.
        #[serde(default)]
        algorithm: JwtAlgorithm,
        /// Query parameter carrying the token (`null`: not read).
        #[serde(default = "jwt_query")]
        query: Option<String>,
        /// Cookie carrying the token.
        #[serde(default)]
        cookie: Option<String>,
        /// Claims required and checked (`exp`, `nbf`).
        #[serde(default = "default_claims")]
        claims_to_verify: Vec<Claim>,
        /// Accepted `iss` values (empty: not checked).
        #[serde(default)]
        issuer: Vec<String>,
        /// Accepted `aud` values (empty: not checked).
        #[serde(default)]
        audience: Vec<String>,
        /// Clock skew allowed on `exp`/`nbf`, seconds.
        #[serde(default)]
        leeway_seconds: u64,
    },
    /// Access key / secret key signatures: Secret data `<access key>: <secret key>`.
    Aksk {
        /// Secret holding the key pairs.
        #[schemars(extend("x-hookway-ref" = "secret"))]
        secret: String,
        /// Largest allowed distance between `X-Gateway-Date` and the proxy clock, seconds.
        #[serde(default = "default_skew")]
        clock_skew_seconds: u64,
    },
}

impl CredentialConfig {
    fn secret(&self) -> &str {
        match self {
            Self::Apikey { secret, .. }
            | Self::Basic { secret }
            | Self::Jwt { secret, .. }
            | Self::Aksk { secret, .. } => secret,
        }
    }
}

/// Config of `auth`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Credential sources, tried in order.
    pub credentials: Vec<CredentialConfig>,
    /// Remove the accepted credential from the request before the upstream.
    #[serde(default)]
    pub hide_credentials: bool,
    /// Labels the credential must carry (`key: value`), else 403.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
    /// Realm in the `WWW-Authenticate` challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        if self.credentials.is_empty() {
            return Err("credentials must not be empty".into());
        }
        if self.realm.contains('"') || HeaderValue::from_str(&self.realm).is_err() {
            return Err(format!("realm: invalid value {:?}", self.realm));
        }
        for (i, c) in self.credentials.iter().enumerate() {
            if c.secret().is_empty() {
                return Err(format!("credentials[{i}].secret must not be empty"));
            }
            match c {
                CredentialConfig::Apikey { header, .. } => {
                    http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        format!("credentials[{i}].header: invalid header name {header:?}")
                    })?;
                }
                CredentialConfig::Jwt { algorithm, .. } => {
                    algorithm
                        .to_library()
                        .map_err(|e| format!("credentials[{i}].algorithm: {e}"))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_secrets(&self, secrets: &ResolvedSecrets) -> Result<(), String> {
        let find = |name: &str| {
            secrets
                .get(name)
                .ok_or_else(|| format!("Secret {name:?} not resolved"))
        };
        for (i, c) in self.credentials.iter().enumerate() {
            build_verifier(c, find).map_err(|e| format!("credentials[{i}]: {e}"))?;
        }
        no_shared_api_keys(self, |name| secrets.get(name))
    }
}

/// What one credential source concluded about a request.
pub enum Outcome<'a> {
    /// The request carries no credential of this type.
    Absent,
    /// It carries one, but it is not accepted (the reason is logged at debug level).
    Invalid(&'static str),
    /// Accepted as this identity.
    Valid(&'a Identity),
}

/// A credential source.
pub trait Verifier: Send + Sync {
    /// Checks the request at `now_secs` (unix seconds).
    fn verify(&self, req: &http_request::Parts, now_secs: u64) -> Outcome<'_>;
    /// Removes this source's credential from the request.
    fn strip(&self, req: &mut http_request::Parts);
    /// The `WWW-Authenticate` scheme.
    fn challenge(&self) -> &'static str;
    /// The query parameter this source reads a credential from, if any (the access log
    /// redacts its value).
    fn credential_param(&self) -> Option<&str> {
        None
    }
}

/// A running `auth`.
pub struct Auth {
    verifiers: Vec<Box<dyn Verifier>>,
    challenges: Vec<HeaderValue>,
    hide_credentials: bool,
    required_labels: BTreeMap<String, String>,
    error_type: ErrorType,
    credential_params: Option<Arc<[Arc<str>]>>,
}

/// Builds one credential source from its Secret (found by `secret`), exactly as a proxy does;
/// the compiler runs the same code on the resolved Secrets ([`PluginConfig::check_secrets`]).
fn build_verifier<'s>(
    config: &CredentialConfig,
    secret: impl FnOnce(&str) -> Result<&'s SecretEntry, String>,
) -> Result<Box<dyn Verifier>, String> {
    let entries = store::parse(secret(config.secret())?)?;
    Ok(match config.clone() {
        CredentialConfig::Apikey { header, query, .. } => {
            Box::new(apikey::ApiKey::new(entries, &header, query)?)
        }
        CredentialConfig::Basic { .. } => Box::new(basic::Basic::new(entries)?),
        CredentialConfig::Jwt {
            algorithm,
            query,
            cookie,
            claims_to_verify,
            issuer,
            audience,
            leeway_seconds,
            ..
        } => Box::new(jwt::Jwt::new(
            entries,
            JwtOptions {
                algorithm,
                query,
                cookie,
                claims_to_verify,
                issuer,
                audience,
                leeway_seconds,
            },
        )?),
        CredentialConfig::Aksk {
            clock_skew_seconds, ..
        } => Box::new(aksk::AkSk::new(entries, clock_skew_seconds)),
    })
}

/// Two api key sources of one config holding the same key would make the second consumer
/// unreachable (the first source wins): refused, naming both credentials.
fn no_shared_api_keys<'s>(
    config: &Config,
    secret: impl Fn(&str) -> Option<&'s SecretEntry>,
) -> Result<(), String> {
    let mut seen: std::collections::HashMap<String, (String, String)> =
        std::collections::HashMap::new();
    for c in &config.credentials {
        let CredentialConfig::Apikey { secret: name, .. } = c else {
            continue;
        };
        let Some(entry) = secret(name) else { continue };
        for (identity, key) in store::parse(entry)? {
            let here = (entry.key.to_string(), identity.consumer.id.clone());
            if let Some((other_secret, other_id)) = seen.get(&key) {
                if *other_secret != here.0 {
                    return Err(format!(
                        "credentials {other_id:?} (Secret {other_secret}) and {:?} (Secret {}) have the same api key",
                        here.1, here.0
                    ));
                }
            }
            seen.insert(key, here);
        }
    }
    Ok(())
}

impl PluginFactory for Auth {
    const NAME: &'static str = "auth";
    type Config = Config;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let mut verifiers = Vec::with_capacity(config.credentials.len());
        for (i, c) in config.credentials.iter().enumerate() {
            verifiers.push(
                build_verifier(c, |name| env.secret(name))
                    .map_err(|e| format!("credentials[{i}]: {e}"))?,
            );
        }
        no_shared_api_keys(&config, |name| env.secret(name).ok())?;
        let mut challenges: Vec<HeaderValue> = Vec::new();
        for v in &verifiers {
            let value =
                HeaderValue::from_str(&format!("{} realm=\"{}\"", v.challenge(), config.realm))
                    .map_err(|_| format!("realm: invalid value {:?}", config.realm))?;
            if !challenges.contains(&value) {
                challenges.push(value);
            }
        }
        let params: Arc<[Arc<str>]> = verifiers
            .iter()
            .filter_map(|v| v.credential_param())
            .map(Arc::from)
            .collect();
        let credential_params = (!params.is_empty()).then_some(params);
        Ok(Arc::new(Auth {
            credential_params,
            verifiers,
            challenges,
            hide_credentials: config.hide_credentials,
            required_labels: config.required_labels,
            error_type: config.error_type,
        }))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Auth {
    /// Runs the sources at `now`: the winning source's index and identity, or the answer.
    fn authenticate(
        &self,
        req: &http_request::Parts,
        now: u64,
    ) -> Result<(usize, &Identity), StatusCode> {
        for (i, v) in self.verifiers.iter().enumerate() {
            match v.verify(req, now) {
                Outcome::Absent => {}
                Outcome::Invalid(reason) => {
                    tracing::debug!(scheme = v.challenge(), reason, "auth: credential refused");
                }
                Outcome::Valid(identity) if identity.expired(now) => {
                    tracing::debug!(consumer = %identity.consumer.id, "auth: credential expired");
                }
                Outcome::Valid(identity) => {
                    let allowed = self
                        .required_labels
                        .iter()
                        .all(|(k, want)| identity.consumer.labels.get(k) == Some(want));
                    if !allowed {
                        tracing::debug!(consumer = %identity.consumer.id, "auth: required label missing");
                        return Err(StatusCode::FORBIDDEN);
                    }
                    return Ok((i, identity));
                }
            }
        }
        Err(StatusCode::UNAUTHORIZED)
    }
}

impl Plugin for Auth {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut http_request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if let Some(params) = &self.credential_params {
            ctx.credential_params = Some(params.clone());
        }
        let decision = self.authenticate(req, now_secs());
        if decision.is_err() {
            decisions::record(Self::NAME, ctx.route.as_deref(), Decision::Denied);
        }
        let flow = match decision {
            Ok((i, identity)) => {
                ctx.consumer = Some(identity.consumer.clone());
                if self.hide_credentials {
                    self.verifiers[i].strip(req);
                }
                Flow::Continue
            }
            Err(StatusCode::FORBIDDEN) => Flow::Respond(respond::error(
                StatusCode::FORBIDDEN,
                FORBIDDEN,
                self.error_type,
            )),
            Err(status) => {
                let mut resp = respond::error(status, UNAUTHORIZED, self.error_type);
                for c in &self.challenges {
                    resp.headers_mut()
                        .append(header::WWW_AUTHENTICATE, c.clone());
                }
                Flow::Respond(resp)
            }
        };
        Hook::Ready(Ok(flow))
    }
}

#[cfg(test)]
mod tests;
