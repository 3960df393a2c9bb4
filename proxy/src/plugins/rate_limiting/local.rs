//! The `local` policy: per-proxy fixed-window counters in sharded maps (no global lock), with
//! finished windows swept away.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use super::window::{Decision, Limit};

const SHARDS: usize = 64;
/// A shard sweeps its expired entries at most this often.
const SWEEP_EVERY_MS: u64 = 1_000;

#[derive(Debug, Default)]
struct Shard {
    /// key -> (window index, count) per configured limit.
    counters: HashMap<Box<str>, Vec<(u64, u64)>>,
    last_sweep_ms: u64,
}

/// Sharded counters for one plugin instance.
#[derive(Debug)]
pub struct LocalCounters {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl Default for LocalCounters {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl LocalCounters {
    /// Counts one request for `key` against `limits` at `now_ms`: refused without counting
    /// when any limit is already used up (the first such limit is reported), else counted
    /// against every limit.
    pub fn hit(&self, key: &str, limits: &[Limit], now_ms: u64) -> Decision {
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        // A poisoned shard only means another request panicked mid-update; counters stay usable.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms.saturating_sub(shard.last_sweep_ms) >= SWEEP_EVERY_MS {
            shard.last_sweep_ms = now_ms;
            shard.counters.retain(|_, counts| {
                counts
                    .iter()
                    .zip(limits)
                    .any(|((window, _), limit)| *window == limit.window(now_ms))
            });
        }
        let counts = match shard.counters.get_mut(key) {
            Some(c) => c,
            None => shard
                .counters
                .entry(key.into())
                .or_insert_with(|| vec![(u64::MAX, 0); limits.len()]),
        };
        for (i, limit) in limits.iter().enumerate() {
            let window = limit.window(now_ms);
            if counts[i].0 != window {
                counts[i] = (window, 0);
            }
            if counts[i].1 >= limit.max {
                return Decision::Exceeded(i);
            }
        }
        Decision::Allowed(
            counts
                .iter_mut()
                .map(|(_, count)| {
                    *count += 1;
                    *count
                })
                .collect(),
        )
    }

    /// Number of keys currently tracked (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).counters.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::Unit;
    use super::*;

    #[test]
    fn old_windows_are_swept() {
        let c = LocalCounters::default();
        let limits = [Limit {
            unit: Unit::Second,
            max: 5,
        }];
        for i in 0..100 {
            c.hit(&format!("k{i}"), &limits, 10_000);
        }
        assert_eq!(c.tracked_keys(), 100);
        // Two seconds later every shard that is touched drops its stale keys.
        for i in 0..1000 {
            c.hit(&format!("fresh{i}"), &limits, 12_000);
        }
        assert_eq!(c.tracked_keys(), 1000);
    }

    #[test]
    fn concurrent_hits_never_exceed_the_limit() {
        let c = std::sync::Arc::new(LocalCounters::default());
        let limits = [Limit {
            unit: Unit::Minute,
            max: 5_000,
        }];
        let allowed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let c = c.clone();
                    scope.spawn(move || {
                        (0..1_000)
                            .filter(|_| matches!(c.hit("k", &limits, 60_000), Decision::Allowed(_)))
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 5_000);
    }
}
