//! `csrf` (Pingap's, double-submit): `GET <token_path>` issues a signed token, both in the body
//! and in a cookie; unsafe methods (POST, PUT, PATCH, DELETE, ...) must send the same token in
//! the `name` header as in the `name` cookie, with a valid, unexpired signature. Safe methods
//! (GET, HEAD, OPTIONS, TRACE) pass.
//!
//! Token: `<nonce hex>.<expires unix secs>.<hex HMAC-SHA256(key, nonce "." expires)>`, the key
//! coming from the `key` entry of the Secret named by `secret`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use http::{header, request, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use hookway_crds::catalogue::{PluginConfig, ResolvedSecrets};
use hookway_crds::snapshot::SecretEntry;

use super::auth::request::cookie;
use super::decisions::{self, Decision};
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// Answer for a missing or bad token.
pub const INVALID: &str = "[csrf] invalid csrf token";

fn default_name() -> String {
    "x-csrf-token".into()
}
fn default_ttl() -> String {
    "1h".into()
}

/// Config of `csrf`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path answering `GET` with a fresh token.
    pub token_path: String,
    /// Header and cookie name carrying the token.
    #[serde(default = "default_name")]
    pub name: String,
    /// Secret (namespace of the GatewayPlugin) whose `key` entry signs tokens.
    #[schemars(extend("x-hookway-ref" = "secret"))]
    pub secret: String,
    /// Token lifetime (`30m`, `1h`).
    #[serde(default = "default_ttl")]
    pub ttl: String,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
}

impl Config {
    fn ttl_secs(&self) -> Result<u64, String> {
        let t = hookway_crds::duration::parse(&self.ttl).map_err(|e| format!("ttl: {e}"))?;
        if t.as_secs() == 0 {
            return Err("ttl must be at least 1s".into());
        }
        Ok(t.as_secs())
    }
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        if !self.token_path.starts_with('/') {
            return Err("token_path must start with /".into());
        }
        HeaderName::from_bytes(self.name.as_bytes())
            .map_err(|_| format!("name: invalid header name {:?}", self.name))?;
        if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("name: {:?} is not a valid cookie name", self.name));
        }
        self.ttl_secs()?;
        Ok(())
    }

    fn check_secrets(&self, secrets: &ResolvedSecrets) -> Result<(), String> {
        let secret = secrets
            .get(&self.secret)
            .ok_or_else(|| format!("secret: Secret {:?} not resolved", self.secret))?;
        signing_key(secret).map(drop)
    }
}

/// A running `csrf`.
pub struct Csrf {
    token_path: String,
    header: HeaderName,
    name: String,
    key: Vec<u8>,
    ttl: u64,
    error_type: ErrorType,
}

/// The signing key of the Secret (`key`, at least 16 bytes).
fn signing_key(secret: &SecretEntry) -> Result<&String, String> {
    secret
        .data
        .get("key")
        .filter(|k| k.len() >= 16)
        .ok_or_else(|| {
            format!(
                "secret: Secret {} needs a \"key\" of at least 16 bytes",
                secret.key
            )
        })
}

impl PluginFactory for Csrf {
    const NAME: &'static str = "csrf";
    type Config = Config;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let secret = env
            .secret(&config.secret)
            .map_err(|e| format!("secret: {e}"))?;
        let signing = signing_key(secret)?;
        Ok(Arc::new(Csrf {
            ttl: config.ttl_secs()?,
            header: HeaderName::from_bytes(config.name.as_bytes()).map_err(|e| e.to_string())?,
            token_path: config.token_path,
            name: config.name,
            key: signing.as_bytes().to_vec(),
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

impl Csrf {
    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        mac
    }

    /// A fresh token valid until `now + ttl`.
    pub fn issue(&self, now: u64) -> String {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let payload = format!("{nonce}.{}", now + self.ttl);
        let sig = hex::encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// Whether `token` is ours and unexpired at `now`.
    pub fn verify(&self, token: &str, now: u64) -> bool {
        let Some((payload, sig)) = token.rsplit_once('.') else {
            return false;
        };
        let Some(expires) = payload
            .split_once('.')
            .and_then(|(_, e)| e.parse::<u64>().ok())
        else {
            return false;
        };
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        now < expires && self.mac(payload).verify_slice(&sig).is_ok()
    }

    fn token_answer(&self, ctx: &Ctx) -> Flow {
        let token = self.issue(now_secs());
        let body = serde_json::json!({"token": token, "name": self.name}).to_string();
        let mut resp = respond::with_body(StatusCode::OK, "application/json", body);
        let secure = if ctx.tls { "; Secure" } else { "" };
        let cookie = format!(
            "{}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            self.name, self.ttl
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Flow::Respond(resp)
    }
}

impl Plugin for Csrf {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if req.method == Method::GET && req.uri.path() == self.token_path {
            return Hook::Ready(Ok(self.token_answer(ctx)));
        }
        if matches!(
            req.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) {
            return Hook::Ready(Ok(Flow::Continue));
        }
        let sent = req.headers.get(&self.header).map(HeaderValue::as_bytes);
        let stored = cookie(&req.headers, &self.name);
        let ok = match (sent, stored) {
            (Some(sent), Some(stored)) => {
                bool::from(sent.ct_eq(stored.as_bytes()))
                    && std::str::from_utf8(sent).is_ok_and(|t| self.verify(t, now_secs()))
            }
            _ => false,
        };
        if ok {
            Hook::Ready(Ok(Flow::Continue))
        } else {
            decisions::record(Self::NAME, ctx.route.as_deref(), Decision::Denied);
            Hook::Ready(Ok(Flow::Respond(respond::error(
                StatusCode::FORBIDDEN,
                INVALID,
                self.error_type,
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{self, body_string, ctx, parts, snapshot_with_secret};

    fn plugin() -> Arc<dyn Plugin> {
        let snap = snapshot_with_secret("csrf-key", &[("key", "0123456789abcdef0123")]);
        testing::build_with(
            "csrf",
            json!({"token_path": "/csrf", "secret": "csrf-key"}),
            &snap,
        )
        .unwrap()
    }

    async fn status(p: &dyn Plugin, method: &str, headers: &[(&str, &str)]) -> u16 {
        let mut req = parts(method, "/orders", headers);
        match testing::request(p, &mut req, &mut ctx("1.1.1.1:1")).await {
            None => 200,
            Some(r) => r.status().as_u16(),
        }
    }

    #[tokio::test]
    async fn issued_token_unlocks_unsafe_methods() {
        let p = plugin();
        let mut req = parts("GET", "/csrf", &[]);
        let resp = testing::request(&*p, &mut req, &mut ctx("1.1.1.1:1"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let set_cookie = resp.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
        let v: serde_json::Value = serde_json::from_str(&body_string(resp).await).unwrap();
        let token = v["token"].as_str().unwrap().to_string();
        assert!(set_cookie.starts_with(&format!("x-csrf-token={token};")));

        let cookie = format!("x-csrf-token={token}");
        assert_eq!(
            status(
                &*p,
                "POST",
                &[("x-csrf-token", &token), ("cookie", &cookie)]
            )
            .await,
            200
        );
        assert_eq!(status(&*p, "GET", &[]).await, 200, "safe methods pass");
        assert_eq!(status(&*p, "POST", &[]).await, 403);
        assert_eq!(
            status(&*p, "DELETE", &[("x-csrf-token", &token)]).await,
            403,
            "cookie missing"
        );
        let other = format!("x-csrf-token={}", token.replace('.', "x"));
        assert_eq!(
            status(&*p, "PUT", &[("x-csrf-token", &token), ("cookie", &other)]).await,
            403
        );
    }

    #[tokio::test]
    async fn forged_and_expired_tokens_fail() {
        let snap = snapshot_with_secret("csrf-key", &[("key", "0123456789abcdef0123")]);
        let plugin_ref = hookway_crds::snapshot::ObjectKey::new(testing::NS, "csrf");
        let bindings = testing::bindings(&snap);
        let env = BuildEnv {
            snapshot: &snap,
            plugin_ref: &plugin_ref,
            alias: "csrf",
            secrets: &bindings,
            services: &Default::default(),
        };
        let config: Config = serde_json::from_value(
            json!({"token_path": "/csrf", "secret": "csrf-key", "ttl": "60s"}),
        )
        .unwrap();
        let Ok(p) = Csrf::build(config, &env) else {
            panic!("builds")
        };
        drop(p);
        let c = Csrf {
            token_path: "/csrf".into(),
            header: HeaderName::from_static("x-csrf-token"),
            name: "x-csrf-token".into(),
            key: b"0123456789abcdef0123".to_vec(),
            ttl: 60,
            error_type: ErrorType::Text,
        };
        let t = c.issue(1_000);
        assert!(c.verify(&t, 1_059));
        assert!(!c.verify(&t, 1_060), "expired");
        let (payload, sig) = t.rsplit_once('.').unwrap();
        let (nonce, _) = payload.split_once('.').unwrap();
        assert!(
            !c.verify(&format!("{nonce}.99999.{sig}"), 1_000),
            "expiry tampered"
        );
        assert!(!c.verify("garbage", 1_000));
    }

    #[test]
    fn validation_and_secret() {
        let reg = crate::plugins::builtin();
        let v = reg
            .catalogue()
            .validate("csrf", &json!({"token_path": "/csrf", "secret": "k"}))
            .unwrap();
        assert_eq!(v.secret_refs, ["k"]);
        assert!(reg
            .catalogue()
            .validate("csrf", &json!({"token_path": "csrf", "secret": "k"}))
            .is_err());
        let snap = snapshot_with_secret("k", &[("key", "short")]);
        let err = testing::build_with("csrf", json!({"token_path": "/c", "secret": "k"}), &snap)
            .err()
            .unwrap();
        assert!(err.contains("16 bytes"), "{err}");
    }
}
