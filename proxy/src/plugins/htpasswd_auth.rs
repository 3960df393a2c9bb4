//! `htpasswd_auth`: HTTP Basic authentication against an htpasswd Secret, as nginx's
//! `auth_basic` + `auth_basic_user_file` (what ingress-nginx's `auth-type: basic` sets up).
//! Missing or wrong credentials get 401 with `WWW-Authenticate: Basic realm="…"`; the
//! `Authorization` header goes on to the upstream, as with nginx. Hash formats: see
//! [`super::htpasswd`]. bcrypt checks run on the blocking pool; a user's last accepted password
//! is remembered (as a SHA-256, compared in constant time) so a client repeating it costs no
//! bcrypt round. See `docs/plugins/htpasswd_auth.md`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use http::{header, request, HeaderValue, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use hookway_crds::catalogue::{PluginConfig, ResolvedSecrets};

use super::htpasswd::{self, Hash};
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// The `htpasswd_auth` plugin kind.
pub struct HtpasswdAuth;

/// How the Secret holds the users.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SecretType {
    /// Data key `auth` holds an htpasswd file (`user:hash` lines).
    #[default]
    AuthFile,
    /// Each data key is a user, its value the hash.
    AuthMap,
}

/// The `htpasswd_auth` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HtpasswdAuthConfig {
    /// The Secret (in the namespace of the object whose config this is).
    #[schemars(extend("x-hookway-ref" = "secret"))]
    pub secret: String,
    /// `auth-file` (default) or `auth-map`.
    #[serde(default)]
    pub secret_type: SecretType,
    /// The realm in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// `text` or `json` 401 answers.
    #[serde(default)]
    pub error_type: ErrorType,
}

fn default_realm() -> String {
    "Authentication Required".into()
}

impl HtpasswdAuthConfig {
    fn users(&self, data: &BTreeMap<String, String>) -> Result<BTreeMap<String, Hash>, String> {
        let users = match self.secret_type {
            SecretType::AuthFile => {
                let file = data.get("auth").ok_or_else(|| {
                    format!(
                        "Secret {:?} has no data key \"auth\" (an htpasswd file)",
                        self.secret
                    )
                })?;
                htpasswd::parse_file(file)
            }
            SecretType::AuthMap => htpasswd::parse_map(data),
        }
        .map_err(|e| format!("Secret {:?}: {e}", self.secret))?;
        if users.is_empty() {
            return Err(format!("Secret {:?} lists no user", self.secret));
        }
        Ok(users)
    }

    fn challenge(&self) -> Result<HeaderValue, String> {
        HeaderValue::from_str(&format!("Basic realm=\"{}\"", self.realm.replace('"', "'")))
            .map_err(|_| format!("realm: {:?} is not a valid header value", self.realm))
    }
}

impl PluginConfig for HtpasswdAuthConfig {
    fn validate(&self) -> Result<(), String> {
        self.challenge().map(drop)
    }

    fn check_secrets(&self, secrets: &ResolvedSecrets) -> Result<(), String> {
        let secret = secrets
            .get(&self.secret)
            .ok_or_else(|| format!("Secret {:?} not resolved", self.secret))?;
        self.users(&secret.data).map(drop)
    }
}

/// A running `htpasswd_auth`.
pub struct HtpasswdAuthPlugin {
    users: Arc<BTreeMap<String, Hash>>,
    challenge: HeaderValue,
    error_type: ErrorType,
    /// user → SHA-256 of the last password accepted for them.
    accepted: Arc<Mutex<HashMap<String, [u8; 32]>>>,
}

impl PluginFactory for HtpasswdAuth {
    const NAME: &'static str = "htpasswd_auth";
    type Config = HtpasswdAuthConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: HtpasswdAuthConfig, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let secret = env.secret(&config.secret)?;
        Ok(Arc::new(HtpasswdAuthPlugin {
            users: Arc::new(config.users(&secret.data)?),
            challenge: config.challenge()?,
            error_type: config.error_type,
            accepted: Arc::default(),
        }))
    }
}

/// `(user, password)` of `Authorization: Basic …`.
fn credentials(req: &request::Parts) -> Option<(String, String)> {
    let value = req.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

impl HtpasswdAuthPlugin {
    fn refuse(&self) -> Flow {
        let mut resp = respond::error(
            StatusCode::UNAUTHORIZED,
            "authentication required",
            self.error_type,
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, self.challenge.clone());
        Flow::Respond(resp)
    }

    /// Whether `password` was the last one accepted for `user`.
    fn remembered(&self, user: &str, digest: &[u8; 32]) -> bool {
        let accepted = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        accepted
            .get(user)
            .is_some_and(|d| bool::from(d.ct_eq(digest)))
    }

    fn remember(&self, user: String, digest: [u8; 32]) {
        self.accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user, digest);
    }
}

impl Plugin for HtpasswdAuthPlugin {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let Some((user, password)) = credentials(req) else {
            return Hook::Ready(Ok(self.refuse()));
        };
        let Some(hash) = self.users.get(&user) else {
            return Hook::Ready(Ok(self.refuse()));
        };
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        if self.remembered(&user, &digest) {
            return Hook::Ready(Ok(Flow::Continue));
        }
        if !hash.is_slow() {
            return Hook::Ready(Ok(if hash.verify(&password) {
                Flow::Continue
            } else {
                self.refuse()
            }));
        }
        let users = Arc::clone(&self.users);
        Hook::from_async(async move {
            let check_user = user.clone();
            let ok = tokio::task::spawn_blocking(move || {
                users.get(&check_user).is_some_and(|h| h.verify(&password))
            })
            .await
            .unwrap_or(false);
            if ok {
                self.remember(user, digest);
                Ok(Flow::Continue)
            } else {
                Ok(self.refuse())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{self, ctx, parts};
    use serde_json::json;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn config_and_secret_checks() {
        let config: HtpasswdAuthConfig =
            serde_json::from_value(json!({"secret": "s", "realm": "shop"})).unwrap();
        assert!(config.validate().is_ok());
        let file = |text: &str| BTreeMap::from([("auth".to_string(), text.to_string())]);
        assert!(config.users(&file("a:{PLAIN}x")).is_ok());
        assert!(config
            .users(&file(""))
            .unwrap_err()
            .contains("lists no user"));
        assert!(config
            .users(&file("a:$6$s$h"))
            .unwrap_err()
            .contains("Secret \"s\": user \"a\": unsupported"));
        assert!(config
            .users(&BTreeMap::new())
            .unwrap_err()
            .contains("no data key \"auth\""));
        let map: HtpasswdAuthConfig =
            serde_json::from_value(json!({"secret": "s", "secret_type": "auth-map"})).unwrap();
        let data = BTreeMap::from([("bob".to_string(), "{PLAIN}y".to_string())]);
        assert!(map.users(&data).unwrap()["bob"].verify("y"));
    }

    #[tokio::test]
    async fn answers_401_with_the_realm_unless_the_password_matches() {
        let bcrypt = bcrypt::hash("slow-pw", 4).unwrap();
        let snapshot = testing::snapshot_with_secret(
            "users",
            &[("auth", &format!("alice:{{PLAIN}}fast-pw\nbob:{bcrypt}\n"))],
        );
        let plugin = testing::build_with(
            "htpasswd_auth",
            json!({"secret": "users", "realm": "shop"}),
            &snapshot,
        )
        .unwrap();
        #[rustfmt::skip]
        let cases: Vec<(Option<String>, bool)> = vec![
            (None, false),
            (Some(basic("alice", "fast-pw")), true),
            (Some(basic("alice", "wrong")), false),
            (Some(basic("bob", "slow-pw")), true),
            (Some(basic("bob", "slow-pw")), true),   // remembered: no bcrypt round
            (Some(basic("bob", "wrong")), false),
            (Some(basic("carol", "x")), false),
            (Some("Bearer x".into()), false),
        ];
        for (authorization, passes) in cases {
            let headers: Vec<(&str, &str)> = authorization
                .as_deref()
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            let mut req = parts("GET", "/", &headers);
            let answer = testing::request(&*plugin, &mut req, &mut ctx("10.0.0.1:1")).await;
            match answer {
                None => assert!(passes, "{authorization:?} passed"),
                Some(resp) => {
                    assert!(!passes, "{authorization:?} refused");
                    assert_eq!(resp.status(), 401);
                    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"shop\"");
                }
            }
        }
    }
}
