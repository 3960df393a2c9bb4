//! Connected proxies and the versions they applied.
//!
//! A proxy counts as *ready* while its stream is open. `Programmed` for an object whose current
//! generation first appeared in snapshot version `v` is `n/m proxies`: `n` ready proxies whose
//! last successfully applied version is `>= v`, out of `m` ready proxies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hookway_proxy::source::controller::Ack;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;

#[derive(Debug, Default, Clone)]
struct ProxyState {
    connections: usize,
    applied: Option<u64>,
    rejected: Option<(u64, String)>,
}

/// How many ready proxies hold a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    /// Ready proxies that applied it (or newer).
    pub applied: usize,
    /// Ready proxies.
    pub ready: usize,
}

/// The registry of proxies. Cheap to clone.
#[derive(Clone)]
pub struct Proxies {
    inner: Arc<Mutex<HashMap<String, ProxyState>>>,
    changed: watch::Sender<u64>,
    metrics: Metrics,
}

/// Marks a proxy connected while alive.
pub struct Connection {
    proxies: Proxies,
    id: String,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.proxies.disconnect(&self.id);
    }
}

impl Proxies {
    /// An empty registry.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            inner: Arc::default(),
            changed: watch::channel(0).0,
            metrics,
        }
    }

    /// Changes (connect, disconnect, ack) bump this counter.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProxyState>> {
        // A panic while holding the lock cannot leave the map inconsistent: recover it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, map: &HashMap<String, ProxyState>) {
        let connected = map.values().filter(|p| p.connections > 0).count();
        self.metrics.connected_proxies.set(connected as i64);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Registers an open stream of proxy `id`.
    pub fn connect(&self, id: &str) -> Connection {
        let mut map = self.lock();
        map.entry(id.to_string()).or_default().connections += 1;
        info!(proxy_id = %id, "proxy connected");
        self.bump(&map);
        Connection {
            proxies: self.clone(),
            id: id.to_string(),
        }
    }

    fn disconnect(&self, id: &str) {
        let mut map = self.lock();
        if let Some(p) = map.get_mut(id) {
            p.connections = p.connections.saturating_sub(1);
            if p.connections == 0 {
                // Forget it: a proxy that comes back reports what it holds.
                map.remove(id);
                let _ = self.metrics.proxy_lag.remove_label_values(&[id]);
            }
        }
        info!(proxy_id = %id, "proxy disconnected");
        self.bump(&map);
    }

    /// Records an acknowledgement.
    pub fn ack(&self, ack: &Ack) {
        let mut map = self.lock();
        let Some(p) = map.get_mut(&ack.proxy_id) else {
            warn!(proxy_id = %ack.proxy_id, "ack from a proxy without an open stream; ignored");
            return;
        };
        if ack.ok {
            p.applied = Some(p.applied.map_or(ack.version, |v| v.max(ack.version)));
            p.rejected = None;
        } else {
            let reason = ack.error.clone().unwrap_or_default();
            warn!(proxy_id = %ack.proxy_id, version = ack.version, error = %reason, "proxy rejected a snapshot");
            p.rejected = Some((ack.version, reason));
        }
        self.bump(&map);
    }

    /// Ready proxies holding `version` or newer.
    pub fn count(&self, version: u64) -> Count {
        let map = self.lock();
        let ready = map.values().filter(|p| p.connections > 0);
        Count {
            ready: ready.clone().count(),
            applied: ready.filter(|p| p.applied >= Some(version)).count(),
        }
    }

    /// Updates the lag gauge against the current version.
    pub fn record_lag(&self, current: u64) {
        let map = self.lock();
        for (id, p) in map.iter().filter(|(_, p)| p.connections > 0) {
            // Versions are ms timestamps: report lag in versions only when behind.
            let lag = match p.applied {
                Some(v) if v >= current => 0,
                _ => 1,
            };
            self.metrics.proxy_lag.with_label_values(&[id]).set(lag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: &str, version: u64, ok: bool) -> Ack {
        Ack {
            proxy_id: id.into(),
            version,
            hash: "h".into(),
            ok,
            error: (!ok).then(|| "bad cert".into()),
        }
    }

    #[test]
    fn programmed_counts_ready_proxies_at_or_past_the_version() {
        let proxies = Proxies::new(Metrics::new().unwrap());
        let a = proxies.connect("a");
        let _b = proxies.connect("b");
        assert_eq!(
            proxies.count(10),
            Count {
                applied: 0,
                ready: 2
            }
        );
        proxies.ack(&ack("a", 10, true));
        proxies.ack(&ack("b", 9, true));
        assert_eq!(
            proxies.count(10),
            Count {
                applied: 1,
                ready: 2
            }
        );
        proxies.ack(&ack("b", 11, false));
        assert_eq!(
            proxies.count(10),
            Count {
                applied: 1,
                ready: 2
            },
            "rejection does not count"
        );
        proxies.ack(&ack("b", 12, true));
        assert_eq!(
            proxies.count(10),
            Count {
                applied: 2,
                ready: 2
            }
        );
        drop(a);
        assert_eq!(
            proxies.count(10),
            Count {
                applied: 1,
                ready: 1
            }
        );
    }

    #[test]
    fn acks_without_a_stream_are_ignored() {
        let proxies = Proxies::new(Metrics::new().unwrap());
        proxies.ack(&ack("ghost", 10, true));
        assert_eq!(
            proxies.count(1),
            Count {
                applied: 0,
                ready: 0
            }
        );
    }
}
