//! `rate_limiting`: fixed-window request limits per second, minute, hour and day, keyed by client
//! address, a header, the consumer or the route; counted per proxy (`local`) or shared by every
//! proxy through Redis (`redis`).
//!
//! Limits are checked second → day; the first one used up answers 429
//! `[rate_limiting] API rate limit of <unit> exceeded` with `Retry-After` (seconds to the end of
//! that window). Allowed responses carry `X-RateLimit-Limit-<Unit>` and
//! `X-RateLimit-Remaining-<Unit>` unless `hide_client_header` is set.

pub mod key;
pub mod local;
pub mod redis;
pub mod window;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, request, response, HeaderName, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use smallvec::SmallVec;

use hookway_crds::catalogue::{PluginConfig, ResolvedSecrets};
use hookway_crds::snapshot::{ObjectKey, SecretEntry};

use self::key::Key;
use self::local::LocalCounters;
use self::redis::RedisCounters;
use self::window::{Clock, Counts, Decision, Limit, SystemClock, Unit};
use super::client_ip::ClientIp;
use super::decisions::{self, Decision as Stopped};
use crate::metrics::tables::{LimitUnit, TableStats};
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{
    BuildEnv, Ctx, Flow, Hook, HookResult, Phases, Plugin, PluginError, PluginFactory, ProxyBody,
};

/// What requests are counted together.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// The client address (see `trusted_proxies`).
    #[default]
    Ip,
    /// The value of `header_name` (client address when the header is missing).
    Header,
    /// The authenticated consumer id (client address when there is none).
    Consumer,
    /// The matched route: one budget shared by all clients.
    Route,
}

/// Where counters live.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// In this proxy's memory.
    #[default]
    Local,
    /// In Redis, shared by all proxies.
    Redis,
}

/// Redis connection settings.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (no password here: use `password_secret`).
    pub url: String,
    /// Secret (namespace of the GatewayPlugin) whose `password` key holds the Redis password.
    #[serde(default)]
    #[schemars(extend("x-hookway-ref" = "secret"))]
    pub password_secret: Option<String>,
    /// Prefix of every counter key.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Bound on connecting and on each check (`50ms`, `1s`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_key_prefix() -> String {
    "hookway:ratelimit:".into()
}

fn default_timeout() -> String {
    "100ms".into()
}

fn default_true() -> bool {
    true
}

/// Default bound on the keys `policy: local` tracks.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Largest `max_keys` accepted.
pub const MAX_MAX_KEYS: usize = 10_000_000;

fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

/// Config of `rate_limiting`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Requests per second (0 or absent: no limit).
    #[serde(default)]
    pub second: u64,
    /// Requests per minute.
    #[serde(default)]
    pub minute: u64,
    /// Requests per hour.
    #[serde(default)]
    pub hour: u64,
    /// Requests per day (UTC).
    #[serde(default)]
    pub day: u64,
    /// What is counted together.
    #[serde(default)]
    pub key: KeyKind,
    /// The header for `key: header`.
    #[serde(default)]
    pub header_name: Option<String>,
    /// Do not add the `X-RateLimit-*` headers.
    #[serde(default)]
    pub hide_client_header: bool,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
    /// `local` or `redis`.
    #[serde(default)]
    pub policy: Policy,
    /// Redis settings (required with `policy: redis`).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// With `policy: redis`, let requests through while Redis is unreachable (else 503).
    #[serde(default = "default_true")]
    pub fail_open: bool,
    /// Proxies whose forwarded client address is believed (for `key: ip`).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Header trusted proxies put the client address in (default `X-Forwarded-For`).
    #[serde(default)]
    pub real_ip_header: Option<String>,
    /// With `policy: local`, the most keys this proxy tracks (rounded up to a multiple of 64;
    /// about 200 bytes each). A new key beyond it evicts a rarely used one.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

impl Config {
    fn limits(&self) -> Vec<Limit> {
        [self.second, self.minute, self.hour, self.day]
            .into_iter()
            .zip(Unit::ALL)
            .filter(|(max, _)| *max > 0)
            .map(|(max, unit)| Limit { unit, max })
            .collect()
    }

    fn header(&self) -> Result<Option<HeaderName>, String> {
        match (self.key, &self.header_name) {
            (KeyKind::Header, None) => Err("header_name is required with key: header".into()),
            (KeyKind::Header, Some(h)) => HeaderName::from_bytes(h.as_bytes())
                .map(Some)
                .map_err(|_| format!("header_name: invalid header name {h:?}")),
            (_, Some(_)) => Err("header_name is only used with key: header".into()),
            (_, None) => Ok(None),
        }
    }

    fn redis_timeout(redis: &RedisConfig) -> Result<Duration, String> {
        let t = hookway_crds::duration::parse(&redis.timeout)
            .map_err(|e| format!("redis.timeout: {e}"))?;
        if t.is_zero() {
            return Err("redis.timeout must be positive".into());
        }
        Ok(t)
    }
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        if self.limits().is_empty() {
            return Err("at least one of second, minute, hour, day must be positive".into());
        }
        self.header()?;
        if !(1..=MAX_MAX_KEYS).contains(&self.max_keys) {
            return Err(format!(
                "max_keys: {} is not in 1-{MAX_MAX_KEYS}",
                self.max_keys
            ));
        }
        ClientIp::new(&self.trusted_proxies, self.real_ip_header.as_deref())?;
        match (self.policy, &self.redis) {
            (Policy::Redis, None) => return Err("redis is required with policy: redis".into()),
            (Policy::Local, Some(_)) => return Err("redis is only used with policy: redis".into()),
            (Policy::Redis, Some(r)) => {
                r.url
                    .parse::<::redis::ConnectionInfo>()
                    .map_err(|e| format!("redis.url: {e}"))?;
                Self::redis_timeout(r)?;
            }
            (Policy::Local, None) => {}
        }
        Ok(())
    }

    fn check_secrets(&self, secrets: &ResolvedSecrets) -> Result<(), String> {
        let names = self.redis.iter().filter_map(|r| r.password_secret.as_ref());
        for name in names {
            let secret = secrets
                .get(name)
                .ok_or_else(|| format!("redis.password_secret: Secret {name:?} not resolved"))?;
            redis_password(secret)?;
        }
        Ok(())
    }
}

/// The `password` of the Redis password Secret.
fn redis_password(secret: &SecretEntry) -> Result<&String, String> {
    secret.data.get("password").ok_or_else(|| {
        format!(
            "redis.password_secret: Secret {} has no \"password\" key",
            secret.key
        )
    })
}

enum Backend {
    Local(LocalCounters),
    Redis {
        counters: Box<RedisCounters>,
        fail_open: bool,
    },
}

/// A running `rate_limiting`.
pub struct RateLimiting {
    limits: Vec<Limit>,
    /// `X-RateLimit-Limit-*` values, one per limit.
    limit_values: Vec<HeaderValue>,
    key: KeyKind,
    header: Option<HeaderName>,
    client: ClientIp,
    hide_client_header: bool,
    error_type: ErrorType,
    backend: Backend,
    clock: Arc<dyn Clock>,
    last_warn_ms: AtomicU64,
}

/// Remaining budget computed on the request, written on the response.
#[derive(Clone, Default)]
struct Remaining(SmallVec<[(usize, Counts); 2]>);

/// Redis failures are logged at most this often per instance.
const WARN_EVERY_MS: u64 = 10_000;

impl RateLimiting {
    /// Builds an instance reading time from `clock`.
    pub fn with_clock(
        config: Config,
        env: &BuildEnv<'_>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let limits = config.limits();
        let header = config.header()?;
        let backend = match (config.policy, &config.redis) {
            (Policy::Redis, Some(r)) => {
                let password = match &r.password_secret {
                    None => None,
                    Some(name) => {
                        let secret = env
                            .secret(name)
                            .map_err(|e| format!("redis.password_secret: {e}"))?;
                        Some(redis_password(secret)?.clone())
                    }
                };
                // Counters are per GatewayPlugin: two plugins never share a budget by accident.
                let prefix = format!(
                    "{}{}/{}:",
                    r.key_prefix, env.plugin_ref.namespace, env.plugin_ref.name
                );
                Backend::Redis {
                    counters: Box::new(
                        RedisCounters::new(&r.url, password, prefix, Config::redis_timeout(r)?)
                            .map_err(|e| e.to_string())?,
                    ),
                    fail_open: config.fail_open,
                }
            }
            (Policy::Redis, None) => return Err("redis is required with policy: redis".into()),
            (Policy::Local, _) => Backend::Local(LocalCounters::with_stats(
                config.max_keys,
                TableStats::register(
                    env.plugin_ref.to_string(),
                    local::TABLE,
                    LimitUnit::Entries,
                    (LocalCounters::per_shard(config.max_keys) * 64) as u64,
                ),
            )),
        };
        Ok(Self {
            limit_values: limits.iter().map(|l| HeaderValue::from(l.max)).collect(),
            limits,
            key: config.key,
            header,
            client: ClientIp::new(&config.trusted_proxies, config.real_ip_header.as_deref())?,
            hide_client_header: config.hide_client_header,
            error_type: config.error_type,
            backend,
            clock,
            last_warn_ms: AtomicU64::new(0),
        })
    }

    fn id(&self) -> usize {
        self as *const Self as usize
    }

    fn key_of(&self, req: &request::Parts, ctx: &Ctx) -> Key {
        let by_ip = || {
            Key::Ip(
                self.client
                    .resolve_or(&req.headers, ctx.peer_addr.ip(), ctx.client_ip),
            )
        };
        match self.key {
            KeyKind::Ip => by_ip(),
            KeyKind::Header => match self.header.as_ref().and_then(|h| req.headers.get(h)) {
                Some(v) => Key::header(v.as_bytes()),
                None => by_ip(),
            },
            KeyKind::Consumer => match &ctx.consumer {
                Some(c) => Key::Consumer(c.id.as_str().into()),
                None => by_ip(),
            },
            KeyKind::Route => Key::Route(ctx.route.clone()),
        }
    }

    /// Turns a decision into the hook's answer.
    fn decide(&self, decision: Decision, ctx: &mut Ctx, now_ms: u64) -> Flow {
        match decision {
            Decision::Allowed(counts) => {
                if !self.hide_client_header {
                    let remaining = ctx.extensions.get_or_insert_default::<Remaining>();
                    remaining.0.push((self.id(), counts));
                }
                Flow::Continue
            }
            Decision::Exceeded(i) => {
                let limit = self.limits[i];
                tracing::debug!(unit = limit.unit.name(), route = ?ctx.route, "rate limit exceeded");
                decisions::record(Self::NAME, ctx.route.as_deref(), Stopped::Limited);
                Flow::Respond(self.too_many(i, limit.until_window_end(now_ms)))
            }
        }
    }

    fn too_many(&self, i: usize, until_end_ms: u64) -> Response<ProxyBody> {
        let limit = self.limits[i];
        let message = format!(
            "[rate_limiting] API rate limit of {} exceeded",
            limit.unit.name()
        );
        let mut resp = respond::error(StatusCode::TOO_MANY_REQUESTS, &message, self.error_type);
        let headers = resp.headers_mut();
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(until_end_ms.div_ceil(1000).max(1)),
        );
        if !self.hide_client_header {
            headers.insert(limit.unit.limit_header(), self.limit_values[i].clone());
            headers.insert(limit.unit.remaining_header(), HeaderValue::from_static("0"));
        }
        resp
    }

    fn backend_failed(
        &self,
        err: &redis::RedisLimitError,
        fail_open: bool,
        route: Option<&ObjectKey>,
    ) -> Flow {
        let now = self.clock.now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %err, fail_open, "rate_limiting: redis unavailable");
        }
        if fail_open {
            Flow::Continue
        } else {
            decisions::record(Self::NAME, route, Stopped::Unavailable);
            Flow::Respond(respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "[rate_limiting] rate limit service unavailable",
                self.error_type,
            ))
        }
    }
}

impl PluginFactory for RateLimiting {
    const NAME: &'static str = "rate_limiting";
    type Config = Config;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(Self::with_clock(
            config,
            env,
            Arc::new(SystemClock),
        )?))
    }
}

impl Plugin for RateLimiting {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let key = self.key_of(req, ctx);
        match &self.backend {
            Backend::Local(counters) => {
                let now = self.clock.now_ms();
                let decision = counters.hit(&key, &self.limits, now);
                Hook::Ready(Ok(self.decide(decision, ctx, now)))
            }
            Backend::Redis {
                counters,
                fail_open,
            } => Hook::from_async(async move {
                let result = counters.hit(&key, &self.limits, &*self.clock).await;
                let now = self.clock.now_ms();
                Ok(match result {
                    Ok(decision) => self.decide(decision, ctx, now),
                    Err(e) => self.backend_failed(&e, *fail_open, ctx.route.as_deref()),
                })
            }),
        }
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        if self.hide_client_header {
            return Hook::Ready(Ok(()));
        }
        let Some(remaining) = ctx.extensions.get::<Remaining>() else {
            return Hook::Ready(Ok(()));
        };
        let id = self.id();
        if let Some((_, counts)) = remaining.0.iter().find(|(i, _)| *i == id) {
            let counts = counts.as_slice();
            for ((limit, value), count) in self.limits.iter().zip(&self.limit_values).zip(counts) {
                resp.headers
                    .insert(limit.unit.limit_header(), value.clone());
                resp.headers.insert(
                    limit.unit.remaining_header(),
                    HeaderValue::from(limit.max.saturating_sub(*count)),
                );
            }
        }
        Hook::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
