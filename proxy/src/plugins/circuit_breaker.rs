//! `circuit_breaker` (Apinto's fields): per route, closed → open when, within
//! `monitor_period`, at least `minimum_requests` completed and the share of responses whose
//! status is exactly one of `match_codes` reached `failure_percent`. Open answers `breaker_code`
//! (with `headers` and `body`) without calling the upstream for `break_period`; then half-open
//! lets requests through: a failure reopens, `success_counts` successes close.
//!
//! Breakers are kept per Route the instance runs on (a key set bounded by configuration, not by
//! client input), at most [`MAX_BREAKERS`]: beyond that, closed breakers (whose only state is
//! a partial failure count) are dropped before a new one is added, each counted as an eviction
//! (`hookway_table_*{table="circuit_breaker_routes"}`).
//!
//! State changes are logged and exported as the gauge
//! `hookway_circuit_breaker_state{plugin, route}` (0 closed, 1 open, 2 half-open) in the
//! default Prometheus registry; [`CircuitBreaker::state`] reads it directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use http::{request, HeaderName, HeaderValue, Response, StatusCode};
use prometheus::{IntGaugeVec, Opts};
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;
use hookway_crds::snapshot::ObjectKey;

use super::decisions::{self, Decision};
use super::rate_limiting::window::{Clock, SystemClock};
use crate::metrics::tables::{LimitUnit, TableStats};
use crate::plugin::respond;
use crate::plugin::{
    BuildEnv, Completion, Ctx, Flow, Hook, Plugin, PluginError, PluginFactory, ProxyBody,
};

fn default_codes() -> Vec<u16> {
    vec![500, 502, 503, 504]
}
fn thirty() -> u64 {
    30
}
fn default_minimum() -> u64 {
    10
}
fn default_percent() -> f64 {
    0.5
}
fn one() -> u64 {
    1
}
fn default_breaker_code() -> u16 {
    503
}
fn default_body() -> String {
    "[circuit_breaker] service unavailable".into()
}

/// Config of `circuit_breaker`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Upstream statuses counted as failures (exact match).
    #[serde(default = "default_codes")]
    pub match_codes: Vec<u16>,
    /// Window over which failures are counted, seconds.
    #[serde(default = "thirty")]
    pub monitor_period: u64,
    /// Completed requests needed in the window before the breaker may open.
    #[serde(default = "default_minimum")]
    pub minimum_requests: u64,
    /// Failure share (0, 1] that opens the breaker.
    #[serde(default = "default_percent")]
    pub failure_percent: f64,
    /// How long the breaker stays open, seconds.
    #[serde(default = "thirty")]
    pub break_period: u64,
    /// Successes in half-open needed to close.
    #[serde(default = "one")]
    pub success_counts: u64,
    /// Status answered while open.
    #[serde(default = "default_breaker_code")]
    pub breaker_code: u16,
    /// Headers of the open answer.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body of the open answer.
    #[serde(default = "default_body")]
    pub body: String,
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        if !(self.failure_percent > 0.0 && self.failure_percent <= 1.0) {
            return Err("failure_percent must be in (0, 1]".into());
        }
        if self.match_codes.is_empty() {
            return Err("match_codes must not be empty".into());
        }
        if let Some(c) = self.match_codes.iter().find(|c| !(100..=599).contains(*c)) {
            return Err(format!("match_codes: {c} is not an HTTP status"));
        }
        StatusCode::from_u16(self.breaker_code)
            .map_err(|_| format!("breaker_code: {} is not an HTTP status", self.breaker_code))?;
        for field in [
            "monitor_period",
            "break_period",
            "minimum_requests",
            "success_counts",
        ] {
            let v = match field {
                "monitor_period" => self.monitor_period,
                "break_period" => self.break_period,
                "minimum_requests" => self.minimum_requests,
                _ => self.success_counts,
            };
            if v == 0 {
                return Err(format!("{field} must be positive"));
            }
        }
        for (k, v) in &self.headers {
            HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("headers: invalid header name {k:?}"))?;
            HeaderValue::from_str(v).map_err(|_| format!("headers.{k}: invalid value"))?;
        }
        Ok(())
    }
}

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Requests pass; failures are counted.
    Closed,
    /// Requests are answered by the breaker.
    Open,
    /// Requests pass on probation.
    HalfOpen,
}

impl State {
    fn gauge_value(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
struct Breaker {
    state: State,
    window_start_ms: u64,
    total: u64,
    failures: u64,
    opened_ms: u64,
    successes: u64,
}

impl Breaker {
    fn new(now: u64) -> Self {
        Self {
            state: State::Closed,
            window_start_ms: now,
            total: 0,
            failures: 0,
            opened_ms: 0,
            successes: 0,
        }
    }
}

/// Marks requests the breaker answered itself (not counted as outcomes).
#[derive(Clone)]
struct Answered;

/// The state gauge in the default registry.
pub fn state_gauge() -> &'static IntGaugeVec {
    static GAUGE: OnceLock<IntGaugeVec> = OnceLock::new();
    GAUGE.get_or_init(|| {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "hookway_circuit_breaker_state",
                "Circuit breaker state per plugin and route (0 closed, 1 open, 2 half-open)",
            ),
            &["plugin", "route"],
        )
        .expect("valid metric definition");
        // Already registered (another registry instance in tests): keep ours unregistered.
        let _ = prometheus::default_registry().register(Box::new(gauge.clone()));
        gauge
    })
}

/// The most breakers one instance keeps.
pub const MAX_BREAKERS: usize = 10_000;
/// The table name in `hookway_table_*`.
pub const TABLE: &str = "circuit_breaker_routes";

/// Breakers by route (`None`: the no-route chain).
type Breakers = HashMap<Option<Arc<ObjectKey>>, Arc<Mutex<Breaker>>>;

/// A running `circuit_breaker`.
pub struct CircuitBreaker {
    plugin: String,
    config: Config,
    breakers: RwLock<Breakers>,
    stats: Arc<TableStats>,
    clock: Arc<dyn Clock>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl PluginFactory for CircuitBreaker {
    const NAME: &'static str = "circuit_breaker";
    type Config = Config;

    fn build(config: Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(Self::with_clock(
            config,
            env,
            Arc::new(SystemClock),
        )?))
    }
}

impl CircuitBreaker {
    /// Builds an instance reading time from `clock`.
    pub fn with_clock(
        config: Config,
        env: &BuildEnv<'_>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        config.validate()?;
        let headers = config
            .headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                    HeaderValue::from_str(v).map_err(|e| e.to_string())?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            plugin: env.plugin_ref.to_string(),
            config,
            breakers: RwLock::new(HashMap::new()),
            stats: TableStats::register(
                env.plugin_ref.to_string(),
                TABLE,
                LimitUnit::Entries,
                MAX_BREAKERS as u64,
            ),
            clock,
            headers,
        })
    }

    /// The state of the breaker of `route` (`None` for the no-route chain), if it saw traffic.
    pub fn state(&self, route: Option<&ObjectKey>) -> Option<State> {
        let map = self.breakers.read().unwrap_or_else(|p| p.into_inner());
        let key = route.cloned().map(Arc::new);
        map.get(&key)
            .map(|b| b.lock().unwrap_or_else(|p| p.into_inner()).state)
    }

    fn breaker(&self, route: &Option<Arc<ObjectKey>>) -> Arc<Mutex<Breaker>> {
        if let Some(b) = self
            .breakers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
        {
            return b.clone();
        }
        let now = self.clock.now_ms();
        let mut breakers = self.breakers.write().unwrap_or_else(|p| p.into_inner());
        if !breakers.contains_key(route) && breakers.len() >= MAX_BREAKERS {
            let before = breakers.len();
            breakers
                .retain(|_, b| b.lock().unwrap_or_else(|p| p.into_inner()).state != State::Closed);
            for _ in breakers.len()..before {
                self.stats.evicted(0);
            }
        }
        breakers
            .entry(route.clone())
            .or_insert_with(|| {
                self.stats.added(0);
                Arc::new(Mutex::new(Breaker::new(now)))
            })
            .clone()
    }

    fn transition(&self, b: &mut Breaker, to: State, route: &Option<Arc<ObjectKey>>, now: u64) {
        let from = b.state;
        b.state = to;
        match to {
            State::Open => {
                b.opened_ms = now;
            }
            State::HalfOpen => b.successes = 0,
            State::Closed => {
                b.window_start_ms = now;
                b.total = 0;
                b.failures = 0;
            }
        }
        let route_label = route.as_ref().map(ToString::to_string).unwrap_or_default();
        tracing::warn!(plugin = %self.plugin, route = %route_label, ?from, ?to,
                       "circuit breaker state changed");
        state_gauge()
            .with_label_values(&[self.plugin.as_str(), route_label.as_str()])
            .set(to.gauge_value());
    }

    fn open_answer(&self) -> Response<ProxyBody> {
        let status = StatusCode::from_u16(self.config.breaker_code)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = respond::text(status, &self.config.body);
        for (k, v) in &self.headers {
            resp.headers_mut().insert(k.clone(), v.clone());
        }
        resp
    }
}

impl Plugin for CircuitBreaker {
    fn on_request<'a>(
        &'a self,
        _req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let breaker = self.breaker(&ctx.route);
        let mut b = breaker.lock().unwrap_or_else(|p| p.into_inner());
        if b.state == State::Open {
            let now = self.clock.now_ms();
            if now.saturating_sub(b.opened_ms) >= self.config.break_period * 1000 {
                self.transition(&mut b, State::HalfOpen, &ctx.route, now);
            } else {
                ctx.extensions.insert(Answered);
                decisions::record(Self::NAME, ctx.route.as_deref(), Decision::Tripped);
                return Hook::Ready(Ok(Flow::Respond(self.open_answer())));
            }
        }
        Hook::Ready(Ok(Flow::Continue))
    }

    fn on_complete(&self, ctx: &Ctx, completion: &Completion) {
        if ctx.extensions.get::<Answered>().is_some() {
            return;
        }
        let failed = self.config.match_codes.contains(&completion.status);
        let breaker = self.breaker(&ctx.route);
        let mut b = breaker.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        match b.state {
            State::Closed => {
                if now.saturating_sub(b.window_start_ms) >= self.config.monitor_period * 1000 {
                    b.window_start_ms = now;
                    b.total = 0;
                    b.failures = 0;
                }
                b.total += 1;
                b.failures += u64::from(failed);
                if b.total >= self.config.minimum_requests
                    && b.failures as f64 >= self.config.failure_percent * b.total as f64
                {
                    self.transition(&mut b, State::Open, &ctx.route, now);
                }
            }
            State::HalfOpen if failed => self.transition(&mut b, State::Open, &ctx.route, now),
            State::HalfOpen => {
                b.successes += 1;
                if b.successes >= self.config.success_counts {
                    self.transition(&mut b, State::Closed, &ctx.route, now);
                }
            }
            // Requests let through before the breaker opened finish now: ignored.
            State::Open => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::rate_limiting::window::ManualClock;
    use super::*;
    use crate::plugins::testing::{self, body_string, ctx, parts, NS};
    use hookway_crds::snapshot::Snapshot;

    fn breaker(config: serde_json::Value, clock: &ManualClock) -> CircuitBreaker {
        let snapshot = Snapshot::default();
        let plugin_ref = ObjectKey::new(NS, "cb");
        let bindings = std::collections::BTreeMap::new();
        let env = BuildEnv {
            snapshot: &snapshot,
            plugin_ref: &plugin_ref,
            alias: "cb",
            secrets: &bindings,
            services: &Default::default(),
        };
        CircuitBreaker::with_clock(
            serde_json::from_value(config).unwrap(),
            &env,
            Arc::new(clock.clone()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn breakers_are_bounded_and_open_ones_are_kept() {
        let clock = ManualClock::at(1_000_000);
        let cb = breaker(
            json!({"minimum_requests": 1, "failure_percent": 1.0}),
            &clock,
        );
        assert_eq!(request(&cb, "open-one", 503).await, 503);
        assert_eq!(
            cb.state(Some(&ObjectKey::new(NS, "open-one"))),
            Some(State::Open)
        );
        for i in 0..MAX_BREAKERS {
            let key = Some(Arc::new(ObjectKey::new(NS, format!("r{i}"))));
            cb.breaker(&key);
        }
        let kept = cb.breakers.read().unwrap().len();
        assert!(kept <= MAX_BREAKERS, "{kept}");
        assert_eq!(cb.stats.entries() as usize, kept);
        assert!(cb.stats.evictions() > 0);
        assert_eq!(
            cb.state(Some(&ObjectKey::new(NS, "open-one"))),
            Some(State::Open),
            "an open breaker is never dropped"
        );
    }

    /// One request on `route` whose upstream answers `status`; returns the status seen.
    async fn request(cb: &CircuitBreaker, route: &str, status: u16) -> u16 {
        let mut cx = ctx("1.1.1.1:1");
        cx.route = Some(std::sync::Arc::new(ObjectKey::new(NS, route)));
        let mut req = parts("GET", "/", &[]);
        let seen = match testing::request(cb, &mut req, &mut cx).await {
            Some(resp) => resp.status().as_u16(),
            None => status,
        };
        cb.on_complete(
            &cx,
            &Completion {
                status: seen,
                bytes_sent: 0,
                bytes_received: 0,
                duration: Duration::ZERO,
                upstream_duration: None,
                error: None,
                client_aborted: false,
            },
        );
        seen
    }

    fn state(cb: &CircuitBreaker, route: &str) -> Option<State> {
        cb.state(Some(&ObjectKey::new(NS, route)))
    }

    #[tokio::test]
    async fn opens_half_opens_and_closes() {
        let clock = ManualClock::at(1_000_000);
        let cb = breaker(
            json!({"match_codes": [502], "minimum_requests": 4, "failure_percent": 0.5,
                   "break_period": 10, "success_counts": 2, "breaker_code": 503,
                   "headers": {"x-breaker": "open"}, "body": "try later"}),
            &clock,
        );
        assert_eq!(request(&cb, "r", 200).await, 200);
        assert_eq!(request(&cb, "r", 502).await, 502);
        assert_eq!(request(&cb, "r", 200).await, 200);
        assert_eq!(state(&cb, "r"), Some(State::Closed));
        assert_eq!(request(&cb, "r", 502).await, 502);
        assert_eq!(state(&cb, "r"), Some(State::Open));
        // Open: answered by the breaker, the upstream status does not matter.
        let mut cx = ctx("1.1.1.1:1");
        cx.route = Some(std::sync::Arc::new(ObjectKey::new(NS, "r")));
        let resp = testing::request(&cb, &mut parts("GET", "/", &[]), &mut cx)
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["x-breaker"], "open");
        assert_eq!(body_string(resp).await, "try later\n");
        // Other routes are unaffected.
        assert_eq!(request(&cb, "other", 200).await, 200);
        assert_eq!(
            state_gauge()
                .with_label_values(&["apps/cb", "apps/r"])
                .get(),
            1
        );
        // After break_period: half-open; one failure reopens.
        clock.advance(10_000);
        assert_eq!(request(&cb, "r", 502).await, 502);
        assert_eq!(state(&cb, "r"), Some(State::Open));
        clock.advance(10_000);
        assert_eq!(request(&cb, "r", 200).await, 200);
        assert_eq!(state(&cb, "r"), Some(State::HalfOpen));
        assert_eq!(request(&cb, "r", 200).await, 200);
        assert_eq!(state(&cb, "r"), Some(State::Closed));
    }

    #[tokio::test]
    async fn exact_status_match_and_window_reset() {
        let clock = ManualClock::at(0);
        let cb = breaker(
            json!({"match_codes": [500], "minimum_requests": 2, "failure_percent": 1.0, "monitor_period": 5}),
            &clock,
        );
        // Only exactly 500 counts (no substring matching).
        for s in [501, 503, 200, 504] {
            request(&cb, "r", s).await;
        }
        assert_eq!(state(&cb, "r"), Some(State::Closed));
        clock.advance(5_000);
        request(&cb, "r", 500).await;
        clock.advance(5_000);
        // The window restarted: one failure out of one is below minimum_requests.
        request(&cb, "r", 500).await;
        assert_eq!(state(&cb, "r"), Some(State::Closed));
        request(&cb, "r", 500).await;
        assert_eq!(state(&cb, "r"), Some(State::Open));
    }

    #[test]
    fn config_validation() {
        let reg = crate::plugins::builtin();
        let check = |v| reg.catalogue().validate("circuit_breaker", &v);
        assert!(check(json!({})).is_ok());
        assert!(check(json!({"failure_percent": 0}))
            .unwrap_err()
            .contains("failure_percent"));
        assert!(check(json!({"failure_percent": 1.5})).is_err());
        assert!(check(json!({"match_codes": [700]}))
            .unwrap_err()
            .contains("700"));
        assert!(check(json!({"break_period": 0}))
            .unwrap_err()
            .contains("break_period"));
        assert!(check(json!({"headers": {"bad name": "x"}})).is_err());
    }
}
