//! `spike_arrest`: smooths bursts (Edge Microgateway's spikearrest). `allow` requests per
//! `time_unit` become one request every `time_unit / allow`; a request arriving early waits
//! for its slot when at most `buffer_size` requests are queued ahead of it, else it is refused
//! with 503 `SpikeArrest engaged`.
//!
//! The state is one atomic "next free slot" time per instance (GCRA), no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{request, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use hookway_crds::catalogue::PluginConfig;

use super::decisions::{self, Decision};
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory};

/// The refusal message (Edge Microgateway's).
pub const MESSAGE: &str = "SpikeArrest engaged";

/// The unit `allow` is given in.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Per second.
    #[default]
    Second,
    /// Per minute.
    Minute,
}

/// Config of `spike_arrest`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The unit of `allow`.
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// Requests per unit (spread evenly).
    pub allow: u32,
    /// Early requests that may wait for their slot instead of being refused.
    #[serde(default)]
    pub buffer_size: u32,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        if self.allow == 0 {
            return Err("allow must be positive".into());
        }
        Ok(())
    }
}

/// A running `spike_arrest`.
#[derive(Debug)]
pub struct SpikeArrest {
    origin: Instant,
    /// Nanoseconds after `origin` of the next free slot.
    next_slot: AtomicU64,
    interval: u64,
    /// Longest wait accepted, in nanoseconds (`buffer_size` intervals).
    max_wait: u64,
    error_type: ErrorType,
}

impl PluginFactory for SpikeArrest {
    const NAME: &'static str = "spike_arrest";
    type Config = Config;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        config.validate()?;
        let unit: u64 = match config.time_unit {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Minute => 60_000_000_000,
        };
        let interval = (unit / u64::from(config.allow)).max(1);
        Ok(Arc::new(SpikeArrest {
            origin: Instant::now(),
            next_slot: AtomicU64::new(0),
            interval,
            max_wait: interval.saturating_mul(u64::from(config.buffer_size)),
            error_type: config.error_type,
        }))
    }
}

impl SpikeArrest {
    /// Takes a slot: how long to wait for it, or `None` when the buffer is full.
    fn take_slot(&self) -> Option<Duration> {
        let now = self.origin.elapsed().as_nanos() as u64;
        let mut current = self.next_slot.load(Ordering::Acquire);
        loop {
            let slot = current.max(now);
            let wait = slot - now;
            if wait > self.max_wait {
                return None;
            }
            match self.next_slot.compare_exchange_weak(
                current,
                slot + self.interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Duration::from_nanos(wait)),
                Err(actual) => current = actual,
            }
        }
    }
}

impl Plugin for SpikeArrest {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        _req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        match self.take_slot() {
            Some(wait) if wait.is_zero() => Hook::Ready(Ok(Flow::Continue)),
            Some(wait) => Hook::from_async(async move {
                tokio::time::sleep(wait).await;
                Ok(Flow::Continue)
            }),
            None => {
                tracing::debug!(route = ?ctx.route, "spike arrest engaged");
                decisions::record(Self::NAME, ctx.route.as_deref(), Decision::Limited);
                Hook::Ready(Ok(Flow::Respond(respond::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    MESSAGE,
                    self.error_type,
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{self, body_string, ctx, parts};

    async fn passes(p: &dyn Plugin) -> bool {
        let mut req = parts("GET", "/", &[]);
        testing::request(p, &mut req, &mut ctx("1.1.1.1:1"))
            .await
            .is_none()
    }

    // The plugin's clock is tokio's: paused, it moves only when the test advances it (or when
    // every task waits on a timer), so the slots are exact.
    #[tokio::test(start_paused = true)]
    async fn bursts_are_smoothed() {
        let p = testing::build("spike_arrest", json!({"allow": 10}));
        assert!(passes(&*p).await);
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(
            !passes(&*p).await,
            "a second request within 100ms is refused"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(passes(&*p).await, "the next slot is 100ms after the first");
        let mut req = parts("GET", "/", &[]);
        let resp = testing::request(&*p, &mut req, &mut ctx("1.1.1.1:1"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(body_string(resp).await, "SpikeArrest engaged\n");
    }

    #[tokio::test(start_paused = true)]
    async fn buffer_delays_instead_of_refusing() {
        // One slot every 50 ms; two requests may wait.
        let p = testing::build(
            "spike_arrest",
            json!({"allow": 1200, "time_unit": "minute", "buffer_size": 2}),
        );
        let start = Instant::now();
        let (a, b, c, d) = tokio::join!(passes(&*p), passes(&*p), passes(&*p), passes(&*p));
        assert_eq!([a, b, c, d], [true, true, true, false]);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(100),
            "the last buffered request waited two slots"
        );
    }

    #[test]
    fn zero_allow_is_refused() {
        let reg = crate::plugins::builtin();
        assert!(reg
            .catalogue()
            .validate("spike_arrest", &json!({"allow": 0}))
            .is_err());
        assert!(reg
            .catalogue()
            .validate("spike_arrest", &json!({"allow": 5, "rate": 1}))
            .is_err());
    }
}
