//! Fixed windows: the time units, the clock, and what one check decided.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderName;

/// A limit's time unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC days).
    Day,
}

impl Unit {
    /// All units, in the order limits are checked.
    pub const ALL: [Unit; 4] = [Unit::Second, Unit::Minute, Unit::Hour, Unit::Day];

    /// The window length in milliseconds.
    pub const fn millis(self) -> u64 {
        match self {
            Unit::Second => 1_000,
            Unit::Minute => 60_000,
            Unit::Hour => 3_600_000,
            Unit::Day => 86_400_000,
        }
    }

    /// Lower-case name (`second`), used in messages and Redis keys.
    pub const fn name(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
        }
    }

    /// `X-RateLimit-Limit-<Unit>`.
    pub fn limit_header(self) -> HeaderName {
        LIMIT_HEADERS[self as usize].clone()
    }

    /// `X-RateLimit-Remaining-<Unit>`.
    pub fn remaining_header(self) -> HeaderName {
        REMAINING_HEADERS[self as usize].clone()
    }
}

/// One configured limit.
/// `X-RateLimit-Limit-<Unit>` by unit, made at compile time.
static LIMIT_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-ratelimit-limit-second"),
    HeaderName::from_static("x-ratelimit-limit-minute"),
    HeaderName::from_static("x-ratelimit-limit-hour"),
    HeaderName::from_static("x-ratelimit-limit-day"),
];

/// `X-RateLimit-Remaining-<Unit>` by unit, made at compile time.
static REMAINING_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-ratelimit-remaining-second"),
    HeaderName::from_static("x-ratelimit-remaining-minute"),
    HeaderName::from_static("x-ratelimit-remaining-hour"),
    HeaderName::from_static("x-ratelimit-remaining-day"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Its unit.
    pub unit: Unit,
    /// Requests allowed per window.
    pub max: u64,
}

impl Limit {
    /// The window index `now_ms` falls in (windows align to the Unix epoch, so every proxy
    /// agrees on window boundaries).
    pub fn window(&self, now_ms: u64) -> u64 {
        now_ms / self.unit.millis()
    }

    /// Milliseconds from `now_ms` to the end of its window.
    pub fn until_window_end(&self, now_ms: u64) -> u64 {
        let len = self.unit.millis();
        len - now_ms % len
    }
}

/// Result of counting one request against all limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; the count of each limit after this request (same order as the limits).
    Allowed(Counts),
    /// Refused: the index of the first exceeded limit.
    Exceeded(usize),
}

/// Wall-clock milliseconds since the Unix epoch (abstracted for tests).
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, in milliseconds since the epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at `ms`.
    pub fn at(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }
    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// At most this many limits: one per [`Unit`].
pub const MAX_LIMITS: usize = Unit::ALL.len();

/// One count per configured limit, in limit order, kept inline (no allocation per request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    len: u8,
    values: [u64; MAX_LIMITS],
}

impl Counts {
    /// The counts, in limit order.
    pub fn as_slice(&self) -> &[u64] {
        &self.values[..usize::from(self.len)]
    }
}

impl FromIterator<u64> for Counts {
    /// Collects at most [`MAX_LIMITS`] counts (a config has at most one limit per unit).
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut counts = Counts::default();
        for (slot, value) in counts.values.iter_mut().zip(iter) {
            *slot = value;
            counts.len += 1;
        }
        counts
    }
}
