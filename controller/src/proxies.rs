//! Connected proxies and the versions they applied.
//!
//! A proxy counts as *ready* while its stream is open and it has acknowledged a snapshot.
//! `Programmed` for an object whose current content first appeared in snapshot version `v` is
//! `True` when every ready proxy's last successfully applied version is `>= v` (and it did not
//! leave the object out). In HA the leader counts the proxies of every replica: see `fleet.rs`
//! and `registry.rs`.
//!
//! The lag gauge counts, per proxy, the published versions newer than the one it applied
//! (out of the last [`versions::WINDOW`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hookway_crds::stream::Ack;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::fleet::{Applied, Table};
use crate::metrics::Metrics;
use crate::versions::{self, Published};

#[derive(Debug, Default, Clone)]
struct ProxyState {
    connections: usize,
    applied: Applied,
    rejected: Option<(u64, String)>,
}

#[derive(Debug, Default)]
struct Inner {
    proxies: HashMap<String, ProxyState>,
    published: Published,
}

/// How many ready proxies hold a version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Ready proxies that applied it (or newer).
    pub applied: usize,
    /// Ready proxies.
    pub ready: usize,
}

/// The registry of proxies. Cheap to clone.
#[derive(Clone)]
pub struct Proxies {
    inner: Arc<Mutex<Inner>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
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
        let mut inner = self.lock();
        let Inner { proxies, published } = &mut *inner;
        let p = proxies.entry(id.to_string()).or_default();
        p.connections += 1;
        set_lag(&self.metrics, id, published.lag(p.applied.applied));
        info!(proxy_id = %id, "proxy connected");
        self.bump(proxies);
        Connection {
            proxies: self.clone(),
            id: id.to_string(),
        }
    }

    fn disconnect(&self, id: &str) {
        let mut inner = self.lock();
        let map = &mut inner.proxies;
        if let Some(p) = map.get_mut(id) {
            p.connections = p.connections.saturating_sub(1);
            if p.connections == 0 {
                // Forget it: a proxy that comes back reports what it holds.
                map.remove(id);
                let _ = self.metrics.proxy_lag.remove_label_values(&[id]);
            }
        }
        info!(proxy_id = %id, "proxy disconnected");
        self.bump(map);
    }

    /// Records an acknowledgement.
    pub fn ack(&self, ack: &Ack) {
        let mut inner = self.lock();
        let Inner { proxies, published } = &mut *inner;
        let Some(p) = proxies.get_mut(&ack.proxy_id) else {
            warn!(proxy_id = %ack.proxy_id, "ack from a proxy without an open stream; ignored");
            return;
        };
        if ack.ok {
            // The same version may be acknowledged again (a reconnect): its failures still hold.
            if p.applied.applied <= Some(ack.version) {
                let mut failed = ack.failed.clone();
                failed.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
                failed.dedup_by(|a, b| (a.kind, &a.key) == (b.kind, &b.key));
                if let Some(first) = failed.first() {
                    warn!(proxy_id = %ack.proxy_id, version = ack.version, failed = failed.len(), first = %first, "proxy applied a snapshot without some objects");
                }
                p.applied = Applied {
                    applied: Some(ack.version),
                    hash: Some(ack.hash.clone()),
                    failed,
                    truncated: false,
                };
            }
            p.rejected = None;
        } else {
            let reason = ack.error.clone().unwrap_or_default();
            warn!(proxy_id = %ack.proxy_id, version = ack.version, error = %reason, "proxy rejected a snapshot");
            p.rejected = Some((ack.version, reason));
        }
        set_lag(
            &self.metrics,
            &ack.proxy_id,
            published.lag(p.applied.applied),
        );
        self.bump(proxies);
    }

    /// Ready proxies holding `version` or newer.
    /// Ready proxies (of this replica only) holding `version` or newer.
    pub fn count(&self, version: u64) -> Count {
        let inner = self.lock();
        let ready = inner.proxies.values().filter(|p| p.connections > 0);
        Count {
            ready: ready.clone().count(),
            applied: ready.filter(|p| p.applied.applied >= Some(version)).count(),
        }
    }

    /// The ready proxies of this replica and what they applied.
    pub fn table(&self) -> Table {
        let inner = self.lock();
        inner
            .proxies
            .iter()
            .filter(|(_, p)| p.connections > 0)
            .map(|(id, p)| (id.clone(), p.applied.clone()))
            .collect()
    }

    /// The last versions this replica published.
    pub fn published(&self) -> Published {
        self.lock().published.clone()
    }

    /// Records a published snapshot and updates every proxy's lag.
    pub fn record_published(&self, version: u64, hash: &str) {
        let mut inner = self.lock();
        inner.published.push(version, hash);
        for (id, p) in inner.proxies.iter().filter(|(_, p)| p.connections > 0) {
            set_lag(&self.metrics, id, inner.published.lag(p.applied.applied));
        }
    }

    /// The lag gauge's value for `id` (published versions newer than what it applied), while
    /// it is connected.
    pub fn lag(&self, id: &str) -> Option<u64> {
        let inner = self.lock();
        let p = inner.proxies.get(id).filter(|p| p.connections > 0)?;
        Some(inner.published.lag(p.applied.applied))
    }
}

fn set_lag(metrics: &Metrics, id: &str, lag: u64) {
    // At most versions::WINDOW: always fits.
    let lag = lag.min(versions::WINDOW as u64) as i64;
    metrics.proxy_lag.with_label_values(&[id]).set(lag);
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
            failed: vec![],
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
    fn lag_is_the_number_of_newer_published_versions() {
        let metrics = Metrics::new().unwrap();
        let proxies = Proxies::new(metrics.clone());
        let _a = proxies.connect("a");
        for v in [10, 20, 30] {
            proxies.record_published(v, &format!("h{v}"));
        }
        assert_eq!(proxies.lag("a"), Some(3), "applied nothing: every version");
        proxies.ack(&ack("a", 10, true));
        assert_eq!(proxies.lag("a"), Some(2));
        proxies.ack(&ack("a", 30, false));
        assert_eq!(proxies.lag("a"), Some(2), "a rejection applies nothing");
        proxies.record_published(40, "h40");
        assert_eq!(proxies.lag("a"), Some(3));
        proxies.ack(&ack("a", 40, true));
        assert_eq!(proxies.lag("a"), Some(0));
        assert!(
            metrics
                .render()
                .contains("hookway_controller_proxy_lag_versions{proxy=\"a\"} 0"),
            "{}",
            metrics.render()
        );
        for v in 41..200 {
            proxies.record_published(v, "h");
        }
        assert_eq!(
            proxies.lag("a"),
            Some(crate::versions::WINDOW as u64),
            "older than the window"
        );
        assert_eq!(proxies.lag("ghost"), None);
    }

    #[test]
    fn the_table_lists_ready_proxies_with_what_they_applied() {
        let proxies = Proxies::new(Metrics::new().unwrap());
        let _a = proxies.connect("a");
        let b = proxies.connect("b");
        proxies.ack(&ack("a", 10, true));
        drop(b);
        let table = proxies.table();
        assert_eq!(table.len(), 1);
        assert_eq!(table["a"].applied, Some(10));
        assert_eq!(table["a"].hash.as_deref(), Some("h"));
    }

    #[test]
    fn the_last_ack_of_a_version_says_what_was_left_out() {
        use hookway_crds::applied::{FailedKind, FailedObject};
        let failed = |names: &[&str]| -> Vec<FailedObject> {
            names
                .iter()
                .map(|n| FailedObject {
                    kind: FailedKind::Route,
                    key: hookway_crds::snapshot::ObjectKey::new("ns", *n),
                    reason: "bad".into(),
                    previous: false,
                })
                .collect()
        };
        let proxies = Proxies::new(Metrics::new().unwrap());
        let _a = proxies.connect("a");
        let mut first = ack("a", 10, true);
        first.failed = failed(&["z", "b", "z"]);
        proxies.ack(&first);
        let names = |p: &Proxies| -> Vec<String> {
            p.table()["a"]
                .failed
                .iter()
                .map(|f| f.key.name.clone())
                .collect()
        };
        assert_eq!(names(&proxies), ["b", "z"], "sorted, one per object");
        let mut again = ack("a", 10, true);
        again.failed = failed(&["b"]);
        proxies.ack(&again);
        assert_eq!(
            names(&proxies),
            ["b"],
            "a re-ack of the version replaces them"
        );
        let mut stale = ack("a", 9, true);
        stale.failed = failed(&["q"]);
        proxies.ack(&stale);
        assert_eq!(names(&proxies), ["b"], "an older version changes nothing");
        proxies.ack(&ack("a", 11, true));
        assert!(names(&proxies).is_empty());
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
