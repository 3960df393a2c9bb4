//! The `redis` policy: fixed-window counters shared by every proxy through Redis, one atomic
//! Lua script per request, with a bounded timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::sync::OnceCell;

use super::key::Key;
use super::window::{Clock, Decision, Limit};

/// Checks every window first (refusing without counting when one is used up, returning its
/// 1-based index), then increments all of them, setting the expiry on a window's first hit.
/// `KEYS[i]`: window keys; `ARGV[2i-1]`: the limit; `ARGV[2i]`: the key's time to live in ms.
/// Returns `{0, count1, count2, ...}` when allowed, `{i}` when limit i is exceeded.
const SCRIPT: &str = r#"
for i = 1, #KEYS do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used >= tonumber(ARGV[2 * i - 1]) then
    return { i }
  end
end
local out = { 0 }
for i = 1, #KEYS do
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
  out[i + 1] = n
end
return out
"#;

/// After a failed connection attempt, requests do not try again for this long (they take the
/// `fail_open` decision at once instead of each waiting for a timeout).
const RECONNECT_BACKOFF_MS: u64 = 1_000;

/// Why a Redis check did not give a decision.
#[derive(Debug, thiserror::Error)]
pub enum RedisLimitError {
    /// The URL could not be parsed.
    #[error("invalid redis url: {0}")]
    Url(#[source] redis::RedisError),
    /// Connecting failed (or is backing off after a failure).
    #[error("redis unreachable: {0}")]
    Connect(String),
    /// The script failed.
    #[error("redis error: {0}")]
    Command(#[source] redis::RedisError),
    /// No answer within the timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// A connection (made lazily, reconnected by the manager) plus the limiter script.
pub struct RedisCounters {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    next_attempt_ms: AtomicU64,
    key_prefix: String,
    timeout: Duration,
    script: Script,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisCounters {
    /// A limiter talking to `url` (password, if any, from a Secret), naming keys with
    /// `key_prefix`, giving up on any call after `timeout`. Does not connect yet.
    pub fn new(
        url: &str,
        password: Option<String>,
        key_prefix: String,
        timeout: Duration,
    ) -> Result<Self, RedisLimitError> {
        let mut info: redis::ConnectionInfo = url.parse().map_err(RedisLimitError::Url)?;
        if let Some(password) = password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        Ok(Self {
            client: redis::Client::open(info).map_err(RedisLimitError::Url)?,
            conn: OnceCell::new(),
            next_attempt_ms: AtomicU64::new(0),
            key_prefix,
            timeout,
            script: Script::new(SCRIPT),
        })
    }

    async fn connection(&self, clock: &dyn Clock) -> Result<ConnectionManager, RedisLimitError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let now = clock.now_ms();
        if now < self.next_attempt_ms.load(Ordering::Relaxed) {
            return Err(RedisLimitError::Connect(
                "backing off after a failed attempt".into(),
            ));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let attempt = self.conn.get_or_try_init(|| async {
            tokio::time::timeout(
                self.timeout,
                ConnectionManager::new_with_config(self.client.clone(), config),
            )
            .await
            .map_err(|_| RedisLimitError::Timeout(self.timeout))?
            .map_err(|e| RedisLimitError::Connect(e.to_string()))
        });
        match attempt.await {
            Ok(conn) => Ok(conn.clone()),
            Err(e) => {
                self.next_attempt_ms
                    .store(now + RECONNECT_BACKOFF_MS, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Counts one request for `key` against `limits` at the clock's now.
    pub async fn hit(
        &self,
        key: &Key,
        limits: &[Limit],
        clock: &dyn Clock,
    ) -> Result<Decision, RedisLimitError> {
        let mut conn = self.connection(clock).await?;
        let now = clock.now_ms();
        let mut invocation = self.script.prepare_invoke();
        for limit in limits {
            // `{key}` is a hash tag: all windows of a key live in one Redis Cluster slot.
            invocation.key(format!(
                "{}{{{key}}}:{}:{}",
                self.key_prefix,
                limit.unit.name(),
                limit.window(now)
            ));
            // Keep a window a second past its end (clock skew between proxies).
            invocation
                .arg(limit.max)
                .arg(limit.until_window_end(now) + 1_000);
        }
        let reply: Vec<u64> =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| RedisLimitError::Timeout(self.timeout))?
                .map_err(RedisLimitError::Command)?;
        match reply.split_first() {
            Some((0, counts)) if counts.len() == limits.len() => {
                Ok(Decision::Allowed(counts.iter().copied().collect()))
            }
            Some((&i, _)) if i >= 1 && (i as usize) <= limits.len() => {
                Ok(Decision::Exceeded(i as usize - 1))
            }
            _ => Err(RedisLimitError::Command(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected rate limit script reply",
            )))),
        }
    }
}
