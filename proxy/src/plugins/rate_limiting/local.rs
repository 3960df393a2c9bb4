//! The `local` policy: per-proxy fixed-window counters in sharded hash tables (no global
//! lock), with finished windows swept away. A key is hashed once, with a per-instance random
//! SipHash key (clients cannot aim collisions at a shard): the hash picks the shard and finds
//! the entry in it.
//!
//! **Bounded**: a shard holds at most `ceil(max_keys / 64)` keys. A new key arriving at a full
//! shard evicts one: of the first [`EVICTION_SAMPLE`] entries in the shard's table order (an
//! order set by the random hash, so a client cannot choose it), the one with the lowest count
//! in its current windows (an entry whose windows all ended counts 0). A client spraying new
//! keys thus churns keys that made few requests, while a key that used much of its budget keeps
//! its count. Each eviction is counted (`hookway_table_evictions_total`). A key whose entry was
//! evicted starts its windows over: the bound costs accuracy for rarely seen keys, never
//! memory.
//!
//! ```text
//!  hit(key) ─ hash ─▶ shard (mutex) ─▶ found: count          (a hit costs what it did)
//!                                     └▶ new: shard full? ─▶ evict lowest of 8 sampled ─▶ insert
//! ```

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use hashbrown::hash_table::{Entry as Slot, HashTable};

use super::key::Key;
use super::window::{Decision, Limit, MAX_LIMITS};
use crate::metrics::tables::{LimitUnit, TableStats};

const SHARDS: usize = 64;
/// A shard sweeps its expired entries at most this often.
const SWEEP_EVERY_MS: u64 = 1_000;
/// Entries looked at to choose one to evict.
pub const EVICTION_SAMPLE: usize = 8;
/// The table name in `hookway_table_*`.
pub const TABLE: &str = "rate_limiting_keys";

/// One key's (window index, count) per configured limit.
#[derive(Debug)]
struct Entry {
    key: Key,
    hash: u64,
    windows: [(u64, u64); MAX_LIMITS],
}

impl Entry {
    /// The highest count among the windows still current at `now_ms` (0: all ended).
    fn live_count(&self, limits: &[Limit], now_ms: u64) -> u64 {
        self.windows
            .iter()
            .zip(limits)
            .filter(|((window, _), limit)| *window == limit.window(now_ms))
            .map(|((_, count), _)| *count)
            .max()
            .unwrap_or(0)
    }
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
    per_shard: usize,
    stats: Arc<TableStats>,
}

impl LocalCounters {
    /// Counters for at most `max_keys` keys (rounded up to a multiple of 64), not exported.
    pub fn new(max_keys: usize) -> Self {
        let per_shard = Self::per_shard(max_keys);
        Self::with_stats(
            max_keys,
            TableStats::unregistered(TABLE, LimitUnit::Entries, (per_shard * SHARDS) as u64),
        )
    }

    /// Counters for at most `max_keys` keys, reporting their size to `stats`.
    pub fn with_stats(max_keys: usize, stats: Arc<TableStats>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            per_shard: Self::per_shard(max_keys),
            stats,
        }
    }

    /// Keys one shard holds for a bound of `max_keys`.
    pub fn per_shard(max_keys: usize) -> usize {
        max_keys.div_ceil(SHARDS).max(1)
    }

    /// The most keys these counters hold.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

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
            let before = shard.entries.len();
            shard.entries.retain(|entry| {
                entry
                    .windows
                    .iter()
                    .zip(limits)
                    .any(|((window, _), limit)| *window == limit.window(now_ms))
            });
            let swept = before - shard.entries.len();
            if swept > 0 {
                self.stats.expired(swept as u64, 0);
            }
        }
        let entry = match shard.entries.entry(hash, |e| e.key == *key, |e| e.hash) {
            Slot::Occupied(slot) => slot.into_mut(),
            Slot::Vacant(slot) => {
                let table = slot.into_table();
                if table.len() >= self.per_shard {
                    self.evict_one(table, limits, now_ms);
                }
                self.stats.added(0);
                table
                    .insert_unique(
                        hash,
                        Entry {
                            key: key.clone(),
                            hash,
                            windows: [(u64::MAX, 0); MAX_LIMITS],
                        },
                        |e| e.hash,
                    )
                    .into_mut()
            }
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

    /// Removes the entry with the lowest live count among the first [`EVICTION_SAMPLE`].
    fn evict_one(&self, table: &mut HashTable<Entry>, limits: &[Limit], now_ms: u64) {
        let Some((hash, victim)) = table
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|e| e.live_count(limits, now_ms))
            .map(|e| (e.hash, e as *const Entry as usize))
        else {
            return;
        };
        // The victim is found again by its address: the table did not change in between.
        if let Ok(slot) = table.find_entry(hash, |e| e as *const Entry as usize == victim) {
            let (entry, _) = slot.remove();
            let expired = entry.live_count(limits, now_ms) == 0;
            if expired {
                self.stats.expired(1, 0);
            } else {
                self.stats.evicted(0);
            }
        }
    }

    /// Number of keys currently tracked (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).entries.len())
            .sum()
    }

    /// The table's size and evictions.
    pub fn stats(&self) -> &TableStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::Unit;
    use super::*;

    fn key(s: &str) -> Key {
        Key::header(s.as_bytes())
    }

    /// Time per hit for a tracked key, a new key with room, and a new key that evicts. A
    /// measurement, not a check: `cargo test -p hookway-proxy --release --lib
    /// rate_limiting::local::tests::cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, not a check"]
    fn cost_of_hits_insertions_and_evictions() {
        let limits = [Limit {
            unit: Unit::Day,
            max: u64::MAX,
        }];
        let n = 200_000;
        let keys: Vec<Key> = (0..n).map(|i| key(&format!("key-{i}"))).collect();
        let per_op = |c: &LocalCounters| {
            let started = std::time::Instant::now();
            for k in &keys {
                std::hint::black_box(c.hit(k, &limits, 10_000));
            }
            started.elapsed() / n as u32
        };
        let roomy = LocalCounters::new(n * 2);
        let insert = per_op(&roomy);
        let hit = per_op(&roomy);
        let tight = LocalCounters::new(1_024);
        let evict = per_op(&tight);
        println!("tracked-key hit {hit:?}, new key (room) {insert:?}, new key (evicts) {evict:?}");
    }

    #[test]
    fn old_windows_are_swept() {
        let c = LocalCounters::new(100_000);
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
    fn a_spray_of_new_keys_stays_within_the_bound() {
        let c = LocalCounters::new(1_000);
        let limits = [Limit {
            unit: Unit::Day,
            max: 5,
        }];
        for i in 0..50_000 {
            c.hit(&key(&format!("spray{i}")), &limits, 10_000);
        }
        assert_eq!(c.capacity(), 1_024);
        assert!(c.tracked_keys() <= c.capacity(), "{}", c.tracked_keys());
        assert_eq!(c.stats().entries() as usize, c.tracked_keys());
        assert_eq!(c.stats().evictions() as usize, 50_000 - c.tracked_keys());
    }

    #[test]
    fn eviction_spares_keys_that_used_their_budget() {
        // Per shard: 2 keys, so every new key evicts; the heavy key must keep its count.
        let c = LocalCounters::new(128);
        let limits = [Limit {
            unit: Unit::Day,
            max: 3,
        }];
        for _ in 0..3 {
            assert!(matches!(
                c.hit(&key("heavy"), &limits, 10_000),
                Decision::Allowed(_)
            ));
        }
        for i in 0..20_000 {
            c.hit(&key(&format!("spray{i}")), &limits, 10_000);
        }
        assert_eq!(c.hit(&key("heavy"), &limits, 10_000), Decision::Exceeded(0));
    }

    #[test]
    fn expired_keys_are_swept_not_evicted() {
        let c = LocalCounters::new(6_400);
        let limits = [Limit {
            unit: Unit::Second,
            max: 5,
        }];
        for i in 0..1_000 {
            c.hit(&key(&format!("old{i}")), &limits, 10_000);
        }
        for i in 0..1_000 {
            c.hit(&key(&format!("later{i}")), &limits, 11_200);
        }
        assert_eq!(c.stats().evictions(), 0);
        assert_eq!(c.tracked_keys(), 1_000);
        assert_eq!(c.stats().entries(), 1_000);
    }

    #[test]
    fn each_key_and_limit_counts_on_its_own() {
        let c = LocalCounters::new(100_000);
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
        let c = std::sync::Arc::new(LocalCounters::new(100_000));
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
