//! The document cache: fetched market indexes and manifests (with the JSON Schemas of their
//! settings and parameters, which are validated from the cached manifest — there is no separate
//! schema cache), reused for `cache_ttl` and bounded in bytes.
//!
//! Each document is charged an estimate of the memory its parsed form holds
//! ([`estimated_bytes`]). Adding one beyond `max_cache_bytes` first drops expired documents,
//! then the oldest ones; a document larger than the whole bound is not cached. Evictions and
//! size are exported as `hookway_table_*{table="lobe_gateway_documents"}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::metrics::tables::TableStats;

/// The table name in `hookway_table_*`.
pub const TABLE: &str = "lobe_gateway_documents";

struct Cached {
    at: Instant,
    value: Arc<Value>,
    bytes: u64,
}

/// Fetched documents by URL.
pub struct DocumentCache {
    entries: Mutex<HashMap<String, Cached>>,
    ttl: Duration,
    max_bytes: u64,
    stats: Arc<TableStats>,
}

/// Bytes charged per JSON node besides its contents (the `Value` itself and map overhead).
const NODE: u64 = std::mem::size_of::<Value>() as u64 + 16;

/// An estimate of the heap a parsed document holds: every node's `Value` plus its strings,
/// keys and collection slots.
pub fn estimated_bytes(value: &Value) -> u64 {
    NODE + match value {
        Value::String(s) => s.capacity() as u64,
        Value::Array(items) => items.iter().map(estimated_bytes).sum(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.capacity() as u64 + 24 + estimated_bytes(v))
            .sum(),
        _ => 0,
    }
}

impl DocumentCache {
    /// A cache keeping documents for `ttl`, at most `max_bytes` in all, reporting to `stats`.
    pub fn new(ttl: Duration, max_bytes: u64, stats: Arc<TableStats>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max_bytes,
            stats,
        }
    }

    /// The document of `url`, if cached and fresh.
    pub fn get(&self, url: &str) -> Option<Arc<Value>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let cached = entries.get(url)?;
        (cached.at.elapsed() < self.ttl).then(|| Arc::clone(&cached.value))
    }

    /// Caches `value` for `url` within the bound.
    pub fn put(&self, url: &str, value: Arc<Value>) {
        let bytes = estimated_bytes(&value) + url.len() as u64;
        if bytes > self.max_bytes {
            tracing::debug!(
                url,
                bytes,
                max = self.max_bytes,
                "lobe_gateway: document too large to cache"
            );
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = entries.remove(url) {
            self.stats.expired(1, old.bytes);
        }
        let mut used: u64 = entries.values().map(|c| c.bytes).sum();
        if used + bytes > self.max_bytes {
            let ttl = self.ttl;
            let stats = &self.stats;
            entries.retain(|_, c| {
                let fresh = c.at.elapsed() < ttl;
                if !fresh {
                    stats.expired(1, c.bytes);
                }
                fresh
            });
            used = entries.values().map(|c| c.bytes).sum();
        }
        while used + bytes > self.max_bytes {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, c)| c.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(c) = entries.remove(&oldest) {
                used -= c.bytes;
                self.stats.evicted(c.bytes);
            }
        }
        self.stats.added(bytes);
        entries.insert(
            url.to_string(),
            Cached {
                at: Instant::now(),
                value,
                bytes,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::metrics::tables::LimitUnit;

    fn doc(n: usize) -> Arc<Value> {
        Arc::new(json!({"plugins": [{"identifier": "x".repeat(n)}]}))
    }

    #[test]
    fn the_bound_holds_and_the_oldest_go_first() {
        let one = estimated_bytes(&doc(1_000)) + "http://i/0".len() as u64;
        let stats = TableStats::unregistered(TABLE, LimitUnit::Bytes, one * 3);
        let cache = DocumentCache::new(Duration::from_secs(60), one * 3, Arc::clone(&stats));
        for i in 0..10 {
            cache.put(&format!("http://i/{i}"), doc(1_000));
            assert!(stats.bytes() <= one * 3, "{} > {}", stats.bytes(), one * 3);
        }
        assert_eq!(stats.entries(), 3);
        assert_eq!(stats.evictions(), 7);
        assert!(cache.get("http://i/0").is_none());
        assert!(cache.get("http://i/9").is_some());
        // Larger than the whole bound: not cached, nothing evicted for it.
        cache.put("http://big", doc(10_000));
        assert!(cache.get("http://big").is_none());
        assert_eq!(stats.entries(), 3);
        // Replacing a document does not count it twice.
        cache.put("http://i/9", doc(1_000));
        assert_eq!(stats.entries(), 3);
    }

    #[test]
    fn estimates_grow_with_the_document() {
        assert!(estimated_bytes(&doc(10_000)) > 10_000);
        assert!(estimated_bytes(&doc(10_000)) < 11_000);
        assert!(estimated_bytes(&json!([1, 2, 3])) > estimated_bytes(&json!([1])));
    }
}
