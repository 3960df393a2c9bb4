//! Encoding stream frames: a whole snapshot, or a delta against the snapshot a stream sent
//! last. Each is encoded once for every stream that needs the same bytes (all proxies usually
//! move from the same version to the next), so a change costs one diff and one serialization
//! however many proxies there are.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hookway_crds::delta::SnapshotDelta;
use hookway_crds::Snapshot;

use crate::metrics::Metrics;

/// Above this share of the snapshot's entries changed, a whole snapshot is sent instead of a
/// delta (a delta that large saves little and costs the proxy a patch and a hash).
const MAX_DELTA_SHARE: f64 = 0.5;

/// A cached whole frame: the version and its line.
type Whole = Option<(u64, Bytes)>;
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
        if let Some((version, bytes)) = cache.as_ref() {
            if *version == snapshot.version {
                return bytes.clone();
            }
        }
        #[derive(serde::Serialize)]
        struct WholeFrame<'a> {
            version: u64,
            hash: &'a str,
            snapshot: &'a Snapshot,
        }
        let bytes = line(&WholeFrame {
            version: snapshot.version,
            hash: &snapshot.hash,
            snapshot,
        });
        m.snapshot_bytes.set(bytes.len() as i64);
        *cache = Some((snapshot.version, bytes.clone()));
        bytes
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
    let mut bytes = serde_json::to_vec(frame).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}
