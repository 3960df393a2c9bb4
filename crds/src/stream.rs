//! The wire protocol between the controller and its proxies (DESIGN.md, "The stream"): a
//! proxy POSTs a [`Hello`] to [`STREAM_PATH`] and reads newline-delimited JSON [`Frame`]s; it
//! POSTs an [`Ack`] to [`ACK_PATH`] for every version it tried to apply. Both ends share these
//! types; neither links the other.
//!
//! A frame carries either a whole snapshot or, to a proxy that said `deltas: true`, a
//! [`SnapshotDelta`] against the snapshot the previous frame of the same stream gave (or, for
//! the first frame, against the snapshot the proxy said it holds). The first frame of a stream
//! is whole unless the proxy already holds its content; a proxy that cannot apply a delta drops
//! the stream and reconnects, which starts with a whole snapshot again.

use serde::{Deserialize, Serialize};

use crate::applied::FailedObject;
use crate::delta::SnapshotDelta;
use crate::Snapshot;

/// Path of the snapshot stream.
pub const STREAM_PATH: &str = "/v1/stream";
/// Path acknowledgements are posted to.
pub const ACK_PATH: &str = "/v1/ack";
/// Largest frame accepted (a snapshot of 10,000 Routes is a few MiB).
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// The request body that opens a stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Stable identity of this proxy (pod name), used for `Programmed` counts and metrics.
    pub proxy_id: String,
    /// Hash of the snapshot the proxy already holds, if any: with `deltas`, the first frame
    /// is a delta against it when the controller's snapshot has the same content.
    #[serde(default)]
    pub hash: Option<String>,
    /// The proxy applies [`Frame::delta`]s (absent in older proxies: whole snapshots only).
    #[serde(default)]
    pub deltas: bool,
}

/// One frame of the stream: one line of JSON.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Frame {
    /// Snapshot version (monotonic per controller process).
    pub version: u64,
    /// Content hash of the snapshot.
    pub hash: String,
    /// The whole snapshot (exactly one of `snapshot` and `delta` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
    /// What changed since the stream's previous snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<SnapshotDelta>,
}

/// An acknowledgement: the proxy applied a version (`ok`, except the objects listed in
/// `failed`), or could not apply it at all (`error`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Who acknowledges.
    pub proxy_id: String,
    /// The version acknowledged.
    pub version: u64,
    /// Its hash.
    pub hash: String,
    /// Applied (perhaps without the objects in `failed`) or not at all.
    pub ok: bool,
    /// Why nothing was applied, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The objects of this version the proxy left out, each with its reason. Everything else
    /// was applied as the version describes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedObject>,
}
