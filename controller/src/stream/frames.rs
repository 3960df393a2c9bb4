//! Encoding stream frames: a whole snapshot, or a delta against the snapshot a stream sent
//! last. Each is encoded once for every stream that needs the same bytes (all proxies usually
//! move from the same version to the next), so a change costs one diff and one serialization
//! however many proxies there are.
//!
//! A whole frame (3.1 MiB of JSON at 10,000 Routes) is kept only while some stream still holds
//! it (the cache keeps a weak reference): proxies connecting together share one encoding, and
//! once they have all been sent it, it is freed instead of held for the next connection, which
//! may never come. A delta frame is small and kept.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use hookway_crds::delta::SnapshotDelta;
use hookway_crds::Snapshot;

use crate::metrics::Metrics;

/// Above this share of the snapshot's entries changed, a whole snapshot is sent instead of a
/// delta (a delta that large saves little and costs the proxy a patch and a hash).
const MAX_DELTA_SHARE: f64 = 0.5;

/// A cached whole frame: the version and its line, while a stream holds it.
type Whole = Option<(u64, Weak<Vec<u8>>)>;

/// A frame's bytes shared with the cache (which holds them weakly).
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
/// A cached delta: (base version, version) and its line (`None`: a whole frame is better).
type Delta = Option<((u64, u64), Option<Bytes>)>;

/// The last frame of each shape, by the versions it describes.
#[derive(Clone, Default)]
pub(crate) struct FrameCache {
    whole: Arc<Mutex<Whole>>,
    delta: Arc<Mutex<Delta>>,
}

/// What one stream sends next.
pub(crate) struct StreamState {
    /// The proxy applies deltas.
    pub deltas: bool,
    /// The hash the proxy said it holds, until the first frame.
    pub held: Option<String>,
    /// The snapshot this stream sent last.
    pub sent: Option<Arc<Snapshot>>,
}

impl FrameCache {
    /// The next frame of a stream in `state` for `snapshot`; updates `state`.
    pub fn next(&self, state: &mut StreamState, snapshot: &Arc<Snapshot>, m: &Metrics) -> Bytes {
        let delta = match (&state.sent, state.held.take()) {
            _ if !state.deltas => None,
            (Some(sent), _) => self.delta(sent, snapshot),
            // The proxy already holds this content (a reconnection, a new leader).
            (None, Some(held)) if held == snapshot.hash => self.delta(snapshot, snapshot),
            (None, _) => None,
        };
        state.sent = Some(snapshot.clone());
        let (kind, bytes) = match delta {
            Some(bytes) => ("delta", bytes),
            None => ("snapshot", self.whole(snapshot, m)),
        };
        m.frames_sent.with_label_values(&[kind]).inc();
        m.frame_bytes_sent
            .with_label_values(&[kind])
            .inc_by(bytes.len() as u64);
        bytes
    }

    /// The whole snapshot as one frame line.
    fn whole(&self, snapshot: &Snapshot, m: &Metrics) -> Bytes {
        let mut cache = self.whole.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, weak)) = cache.as_ref() {
            if let Some(held) = weak.upgrade().filter(|_| *version == snapshot.version) {
                return Bytes::from_owner(Shared(held));
            }
        }
        #[derive(serde::Serialize)]
        struct WholeFrame<'a> {
            version: u64,
            hash: &'a str,
            snapshot: &'a Snapshot,
        }
        let mut bytes = line_vec(&WholeFrame {
            version: snapshot.version,
            hash: &snapshot.hash,
            snapshot,
        });
        // Encoding grows the buffer by doubling: up to twice the frame, for as long as it is sent.
        bytes.shrink_to_fit();
        m.snapshot_bytes.set(bytes.len() as i64);
        let held = Arc::new(bytes);
        *cache = Some((snapshot.version, Arc::downgrade(&held)));
        Bytes::from_owner(Shared(held))
    }

    /// Whether a whole frame is held (by a stream still sending it).
    #[cfg(test)]
    fn holds_whole(&self) -> bool {
        let cache = self.whole.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .as_ref()
            .is_some_and(|(_, weak)| weak.strong_count() > 0)
    }

    /// The delta from `base` to `snapshot` as one frame line, or `None` when a whole snapshot
    /// is the better frame.
    fn delta(&self, base: &Snapshot, snapshot: &Snapshot) -> Option<Bytes> {
        let versions = (base.version, snapshot.version);
        let mut cache = self.delta.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, bytes)) = cache.as_ref() {
            if *cached == versions {
                return bytes.clone();
            }
        }
        let delta = SnapshotDelta::between(base, snapshot);
        let entries = snapshot.routes.len()
            + snapshot.upstreams.len()
            + snapshot.certificates.len()
            + snapshot.secrets.len()
            + snapshot.blobs.len()
            + 1;
        let bytes = (delta.len() as f64 <= MAX_DELTA_SHARE * entries as f64).then(|| {
            #[derive(serde::Serialize)]
            struct DeltaFrame<'a> {
                version: u64,
                hash: &'a str,
                delta: &'a SnapshotDelta,
            }
            line(&DeltaFrame {
                version: snapshot.version,
                hash: &snapshot.hash,
                delta: &delta,
            })
        });
        *cache = Some((versions, bytes.clone()));
        bytes
    }
}

fn line(frame: &impl serde::Serialize) -> Bytes {
    Bytes::from(line_vec(frame))
}

fn line_vec(frame: &impl serde::Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(frame).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(version: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            version,
            hash: format!("h{version}"),
            ..Default::default()
        })
    }

    fn stream() -> StreamState {
        StreamState {
            deltas: false,
            held: None,
            sent: None,
        }
    }

    #[test]
    fn a_whole_frame_is_shared_while_sent_and_freed_after() {
        let m = Metrics::new().unwrap();
        let cache = FrameCache::default();
        let s = snapshot(7);
        let first = cache.next(&mut stream(), &s, &m);
        let second = cache.next(&mut stream(), &s, &m);
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "one encoding for both streams"
        );
        assert!(cache.holds_whole());
        drop((first, second));
        assert!(!cache.holds_whole(), "no stream holds it: freed");
        let again = cache.next(&mut stream(), &s, &m);
        let want = serde_json::json!({"version": 7, "hash": "h7", "snapshot": &*s});
        let got: serde_json::Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(got, want, "encoded again, the same");
        assert!(again.ends_with(b"\n"));
    }
}
