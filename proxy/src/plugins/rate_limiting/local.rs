//! The `local` policy: per-proxy fixed-window counters in sharded hash tables (no global
//! lock), with finished windows swept away. A key is hashed once, with a per-instance random
//! SipHash key (clients cannot aim collisions at a shard): the hash picks the shard and finds
//! the entry in it.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use hashbrown::hash_table::{Entry as Slot, HashTable};

use super::key::Key;
use super::window::{Decision, Limit, MAX_LIMITS};

const SHARDS: usize = 64;
/// A shard sweeps its expired entries at most this often.
const SWEEP_EVERY_MS: u64 = 1_000;

/// One key's (window index, count) per configured limit.
#[derive(Debug)]
struct Entry {
    key: Key,
    hash: u64,
    windows: [(u64, u64); MAX_LIMITS],
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashTable<Entry>,
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
    /// Counts one request for `key` against `limits` (at most [`MAX_LIMITS`]) at `now_ms`:
    /// refused without counting when any limit is already used up (the first such limit is
    /// reported), else counted against every limit.
    pub fn hit(&self, key: &Key, limits: &[Limit], now_ms: u64) -> Decision {
        let limits = &limits[..limits.len().min(MAX_LIMITS)];
        let hash = self.hasher.hash_one(key);
        // The table indexes by the low bits; the shard comes from others.
        let shard = &self.shards[(hash >> 32) as usize % SHARDS];
        // A poisoned shard only means another request panicked mid-update; counters stay usable.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms.saturating_sub(shard.last_sweep_ms) >= SWEEP_EVERY_MS {
            shard.last_sweep_ms = now_ms;
            shard.entries.retain(|entry| {
                entry
                    .windows
                    .iter()
                    .zip(limits)
                    .any(|((window, _), limit)| *window == limit.window(now_ms))
            });
        }
        let entry = match shard.entries.entry(hash, |e| e.key == *key, |e| e.hash) {
            Slot::Occupied(slot) => slot.into_mut(),
            Slot::Vacant(slot) => slot
                .insert(Entry {
                    key: key.clone(),
                    hash,
                    windows: [(u64::MAX, 0); MAX_LIMITS],
                })
                .into_mut(),
        };
        for (i, limit) in limits.iter().enumerate() {
            let window = limit.window(now_ms);
            let counted = &mut entry.windows[i];
            if counted.0 != window {
                *counted = (window, 0);
            }
            if counted.1 >= limit.max {
                return Decision::Exceeded(i);
            }
        }
        Decision::Allowed(
            entry.windows[..limits.len()]
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
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).entries.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::Unit;
    use super::*;

    fn key(s: &str) -> Key {
        Key::header(s.as_bytes())
    }

    #[test]
    fn old_windows_are_swept() {
        let c = LocalCounters::default();
        let limits = [Limit {
            unit: Unit::Second,
            max: 5,
        }];
        for i in 0..100 {
            c.hit(&key(&format!("k{i}")), &limits, 10_000);
        }
        assert_eq!(c.tracked_keys(), 100);
        // Two seconds later every shard that is touched drops its stale keys.
        for i in 0..1000 {
            c.hit(&key(&format!("fresh{i}")), &limits, 12_000);
        }
        assert_eq!(c.tracked_keys(), 1000);
    }

    #[test]
    fn each_key_and_limit_counts_on_its_own() {
        let c = LocalCounters::default();
        let limits = [
            Limit {
                unit: Unit::Second,
                max: 2,
            },
            Limit {
                unit: Unit::Minute,
                max: 3,
            },
        ];
        let counts = |d: Decision| match d {
            Decision::Allowed(counts) => counts.as_slice().to_vec(),
            Decision::Exceeded(i) => panic!("limit {i} exceeded"),
        };
        assert_eq!(counts(c.hit(&key("a"), &limits, 1_000)), [1, 1]);
        assert_eq!(counts(c.hit(&key("a"), &limits, 1_500)), [2, 2]);
        assert_eq!(c.hit(&key("a"), &limits, 1_900), Decision::Exceeded(0));
        assert_eq!(counts(c.hit(&key("b"), &limits, 1_900)), [1, 1]);
        // A new second: the per-second window starts over, the minute goes on.
        assert_eq!(counts(c.hit(&key("a"), &limits, 2_000)), [1, 3]);
        assert_eq!(c.hit(&key("a"), &limits, 2_100), Decision::Exceeded(1));
        let ip = Key::Ip("10.1.2.3".parse().unwrap());
        assert_eq!(counts(c.hit(&ip, &limits, 2_100)), [1, 1]);
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
                            .filter(|_| {
                                matches!(c.hit(&key("k"), &limits, 60_000), Decision::Allowed(_))
                            })
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 5_000);
    }
}
