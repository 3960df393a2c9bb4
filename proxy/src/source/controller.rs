//! The proxy side of the controller stream (protocol: docs/stream.md).
//!
//! ```text
//!  controller ──POST /v1/stream (h2, TLS, bearer)──► newline-delimited JSON frames
//!       ▲                                               │ whole or delta; validate (hash), publish to `tx`
//!       └──POST /v1/ack {proxy_id, version, hash, ok, error, failed}◄─┘ (after the runtime applied it)
//! ```
//!
//! The client keeps the last good snapshot in `tx` whatever happens to the controller, reconnects
//! with jittered exponential backoff, and can cache the last snapshot on disk so a proxy started
//! while the controller is down can still serve.
//!
//! The wire types ([`Hello`], [`Frame`], [`Ack`]) live in `hookway_crds::stream` and are
//! re-exported here; the controller's server uses the same ones, so both ends agree by
//! construction without linking each other.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hookway_crds::applied::FailedObject;
use hookway_crds::content_hash::ContentDigests;
use hookway_crds::Snapshot;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use tokio::sync::watch;
use tracing::{debug, info, warn};

pub use hookway_crds::stream::{Ack, Frame, Hello, ACK_PATH, MAX_FRAME_BYTES, STREAM_PATH};

/// What the proxy runtime reports after trying to apply a published snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Version of the snapshot.
    pub version: u64,
    /// Hash of the snapshot.
    pub hash: String,
    /// `None` when applied (perhaps partly), else why nothing was.
    pub error: Option<String>,
    /// The objects left out.
    pub failed: Vec<FailedObject>,
}

/// Errors of the controller source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file (token, CA, cache) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("CA file {0}: {1}")]
    Ca(PathBuf, String),
    /// TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The controller URL is unusable.
    #[error("controller URL {0}: {1}")]
    Url(String, String),
    /// Talking to the controller failed.
    #[error("connection: {0}")]
    Connect(String),
    /// The controller answered with a non-success status.
    #[error("controller answered {0}")]
    Status(StatusCode),
    /// A frame could not be decoded or failed validation.
    #[error("bad frame: {0}")]
    Frame(String),
    /// The snapshot receiver is gone: nothing left to feed.
    #[error("snapshot receiver closed")]
    Closed,
}

/// Reconnection backoff: exponential with full jitter between `initial` and `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Delay before attempt `attempt` (0-based): uniformly random in `[d/2, d]` where
    /// `d = min(max, initial * 2^attempt)`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let half = base / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// How to reach the controller.
#[derive(Clone, Debug)]
pub struct ControllerSourceConfig {
    /// `https://host:port` of the controller's stream endpoint.
    pub url: String,
    /// PEM CA bundle that signed the controller's certificate (only these roots are trusted).
    pub ca_file: PathBuf,
    /// File holding the bearer token (re-read on every connection, so rotation just works).
    pub token_file: PathBuf,
    /// This proxy's identity (pod name).
    pub proxy_id: String,
    /// Optional on-disk cache of the last applied snapshot.
    pub snapshot_cache: Option<PathBuf>,
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// How long to wait for the runtime's verdict before acknowledging anyway.
    pub apply_timeout: Duration,
}

impl ControllerSourceConfig {
    /// A config with default backoff and timeouts.
    pub fn new(
        url: impl Into<String>,
        ca_file: PathBuf,
        token_file: PathBuf,
        proxy_id: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            ca_file,
            token_file,
            proxy_id: proxy_id.into(),
            snapshot_cache: None,
            backoff: Backoff::default(),
            apply_timeout: Duration::from_secs(10),
        }
    }
}

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Runs the controller source until `tx` has no receivers left.
///
/// Each received snapshot is checked (hash matches content) and published into `tx`; then the
/// client waits for the runtime's verdict on `applied` (when given; else a published snapshot
/// counts as applied) and acknowledges it. On any failure the last snapshot stays in `tx` and
/// the client reconnects after a jittered backoff.
pub async fn run(
    config: ControllerSourceConfig,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    mut applied: Option<watch::Receiver<Option<Applied>>>,
) -> Result<(), Error> {
    let client = http_client(&config)?;
    let base: Uri = config
        .url
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::Url(config.url.clone(), e.to_string()))?;
    let mut attempt = 0u32;
    let mut cache_checked = false;
    let mut digests = HeldDigests::default();
    loop {
        if tx.is_closed() {
            return Err(Error::Closed);
        }
        let session = session(
            &config,
            &client,
            &base,
            &tx,
            &mut applied,
            &mut attempt,
            &mut digests,
        );
        match session.await {
            Ok(()) => info!(url = %config.url, "controller closed the stream"),
            Err(Error::Closed) => return Err(Error::Closed),
            Err(e) => warn!(url = %config.url, error = %e, "controller stream failed"),
        }
        if !cache_checked {
            cache_checked = true;
            if tx.borrow().is_none() {
                if let Some(path) = &config.snapshot_cache {
                    load_cache(path, &tx);
                }
            }
        }
        let delay = config.backoff.delay(attempt);
        attempt = attempt.saturating_add(1);
        debug!(?delay, attempt, "reconnecting to the controller");
        tokio::time::sleep(delay).await;
    }
}

fn http_client(config: &ControllerSourceConfig) -> Result<HttpClient, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let path = &config.ca_file;
    let pem = std::fs::read(path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| Error::Ca(path.clone(), e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| Error::Ca(path.clone(), e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(Error::Ca(path.clone(), "no certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_only(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .http2_keep_alive_timeout(Duration::from_secs(20))
        .http2_keep_alive_while_idle(true)
        .build(connector))
}

fn read_token(path: &Path) -> Result<String, Error> {
    let token = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(token.trim().to_string())
}

fn endpoint(base: &Uri, path: &str) -> Result<Uri, Error> {
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static(match path {
        STREAM_PATH => STREAM_PATH,
        _ => ACK_PATH,
    }));
    Uri::from_parts(parts).map_err(|e| Error::Url(base.to_string(), e.to_string()))
}

/// The entry digests of the snapshot `tx` holds, tied to its content hash: what makes checking
/// a delta cost the delta's entries, not the whole snapshot.
#[derive(Default)]
struct HeldDigests(Option<(String, ContentDigests)>);

impl HeldDigests {
    /// The digests of `held` (computed once when they are not those of its content).
    fn of(&mut self, held: &Snapshot) -> &ContentDigests {
        if !matches!(&self.0, Some((hash, _)) if *hash == held.hash) {
            self.0 = Some((held.hash.clone(), ContentDigests::of(held)));
        }
        let (_, digests) = self.0.as_ref().expect("just set");
        digests
    }
}

/// One connection: open the stream, then handle frames until it ends.
async fn session(
    config: &ControllerSourceConfig,
    client: &HttpClient,
    base: &Uri,
    tx: &watch::Sender<Option<Arc<Snapshot>>>,
    applied: &mut Option<watch::Receiver<Option<Applied>>>,
    attempt: &mut u32,
    digests: &mut HeldDigests,
) -> Result<(), Error> {
    let token = read_token(&config.token_file)?;
    let hello = Hello {
        proxy_id: config.proxy_id.clone(),
        hash: tx.borrow().as_ref().map(|s| s.hash.clone()),
        deltas: true,
    };
    let request = json_post(base, STREAM_PATH, &token, &hello)?;
    let response = client
        .request(request)
        .await
        .map_err(|e| Error::Connect(format!("{e:?}")))?;
    if response.status() != StatusCode::OK {
        return Err(Error::Status(response.status()));
    }
    info!(url = %config.url, proxy_id = %config.proxy_id, "connected to the controller");
    let mut body = response.into_body();
    let mut buf = BytesMut::new();
    let mut largest = 0;
    loop {
        let Some(frame) = body.frame().await else {
            return Ok(());
        };
        let frame = frame.map_err(|e| Error::Connect(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(line) = next_line(&mut buf)? {
            largest = largest.max(line.len());
            if line.iter().all(u8::is_ascii_whitespace) {
                continue; // keep-alive
            }
            // A delta applies to the snapshot the previous frame gave, which is what `tx` holds
            // (a frame's content is published before it is applied).
            let held = tx.borrow().clone();
            let held = held.as_deref().map(|s| (s, digests.of(s)));
            let (snapshot, next_digests) = decode_frame(&line, held)?;
            // Not held while the runtime applies it (a whole frame is MiBs).
            drop(line);
            // `tx` holds this content from now on (published, or already held).
            digests.0 = Some((snapshot.hash.clone(), next_digests));
            *attempt = 0;
            handle_frame(config, client, base, &token, tx, applied, snapshot).await?;
        }
        release_if_drained(&mut buf, &mut largest);
    }
}

/// Read-buffer capacity kept between frames.
const KEPT_BUFFER: usize = 64 * 1024;

/// Lets go of the read buffer's allocation once it is drained after a large frame.
///
/// A whole snapshot grows the buffer to its size (MiBs at 10,000 Routes); deltas need little:
/// it is not kept for the life of the stream. A line split off the buffer shares its
/// allocation, so after a large line the drained buffer may still hold the whole frame's
/// allocation although its own spare capacity is small: `largest` (the longest line split off
/// since the buffer was last let go, reset then) tells.
fn release_if_drained(buf: &mut BytesMut, largest: &mut usize) {
    if buf.is_empty() && (*largest > KEPT_BUFFER || buf.capacity() > KEPT_BUFFER) {
        *buf = BytesMut::new();
        *largest = 0;
    }
}

/// Splits one complete line off `buf`, if there is one.
fn next_line(buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) => {
            let line = buf.split_to(i).freeze();
            buf.advance(1);
            Ok(Some(line))
        }
        None if buf.len() > MAX_FRAME_BYTES => Err(Error::Frame(format!(
            "frame larger than {MAX_FRAME_BYTES} bytes"
        ))),
        None => Ok(None),
    }
}

/// Decodes and checks one frame into the snapshot it describes, with its entry digests: a
/// whole snapshot whose content must match the announced hash, or a delta applied to `held`
/// (the stream's previous snapshot and its digests) whose result must. Either failure is an
/// error: the stream is dropped and the reconnection starts with a whole snapshot.
///
/// A delta costs in proportion to its entries: only they are hashed, the rest of the content
/// hash is combined from `held`'s digests, and the result shares `held`'s unchanged entries.
pub fn decode_frame(
    line: &[u8],
    held: Option<(&Snapshot, &ContentDigests)>,
) -> Result<(Snapshot, ContentDigests), Error> {
    let frame: Frame = serde_json::from_slice(line).map_err(|e| Error::Frame(e.to_string()))?;
    match (frame.snapshot, frame.delta) {
        (Some(mut snapshot), None) => {
            let digests = ContentDigests::of(&snapshot);
            let actual = digests.content_hash();
            if actual != frame.hash {
                return Err(Error::Frame(format!(
                    "hash mismatch: announced {}, content {actual}",
                    frame.hash
                )));
            }
            snapshot.version = frame.version;
            snapshot.hash = actual;
            Ok((snapshot, digests))
        }
        (None, Some(delta)) => {
            let (held, digests) = held
                .ok_or_else(|| Error::Frame("a delta arrived before any snapshot".to_string()))?;
            delta
                .apply_with(held, digests, frame.version, &frame.hash)
                .map_err(|e| Error::Frame(e.to_string()))
        }
        _ => Err(Error::Frame(
            "a frame carries exactly one of snapshot and delta".to_string(),
        )),
    }
}

async fn handle_frame(
    config: &ControllerSourceConfig,
    client: &HttpClient,
    base: &Uri,
    token: &str,
    tx: &watch::Sender<Option<Arc<Snapshot>>>,
    applied: &mut Option<watch::Receiver<Option<Applied>>>,
    snapshot: Snapshot,
) -> Result<(), Error> {
    let (version, hash) = (snapshot.version, snapshot.hash.clone());
    let same = tx
        .borrow()
        .as_ref()
        .is_some_and(|current| current.hash == hash);
    let verdict = if same {
        // Already serving this content (reconnect, or a cached snapshot): just record the version.
        debug!(version, %hash, "snapshot unchanged");
        tx.send_modify(|current| {
            if let Some(current) = current {
                if current.version != version {
                    let mut s = Snapshot::clone(current);
                    s.version = version;
                    *current = Arc::new(s);
                }
            }
        });
        // What this content left out is still left out.
        match applied.as_ref().map(|rx| rx.borrow().clone()) {
            Some(Some(a)) if a.hash == hash => Verdict {
                error: a.error,
                failed: a.failed,
            },
            _ => Verdict::default(),
        }
    } else {
        let snapshot = Arc::new(snapshot);
        if tx.send(Some(snapshot.clone())).is_err() {
            return Err(Error::Closed);
        }
        info!(version, %hash, routes = snapshot.routes.len(), "snapshot received");
        let verdict = wait_applied(applied, &hash, config.apply_timeout).await;
        if verdict.error.is_none() {
            if let Some(path) = &config.snapshot_cache {
                if let Err(e) = store_cache(path, &snapshot) {
                    warn!(error = %e, "could not write the snapshot cache");
                }
            }
        }
        verdict
    };
    let ack = Ack {
        proxy_id: config.proxy_id.clone(),
        version,
        hash,
        ok: verdict.error.is_none(),
        error: verdict.error,
        failed: verdict.failed,
    };
    send_ack(client, base, token, &ack).await
}

/// The runtime's verdict on one snapshot, as acknowledged.
#[derive(Default)]
struct Verdict {
    /// Why nothing was applied.
    error: Option<String>,
    /// What was left out.
    failed: Vec<FailedObject>,
}

/// Waits for the runtime's verdict on `hash` (without a runtime: applied whole).
async fn wait_applied(
    applied: &mut Option<watch::Receiver<Option<Applied>>>,
    hash: &str,
    timeout: Duration,
) -> Verdict {
    let Some(rx) = applied.as_mut() else {
        return Verdict::default();
    };
    let wait = rx.wait_for(|a| a.as_ref().is_some_and(|a| a.hash == hash));
    let error = |e: String| Verdict {
        error: Some(e),
        failed: vec![],
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(a)) => match a.as_ref() {
            Some(a) => Verdict {
                error: a.error.clone(),
                failed: a.failed.clone(),
            },
            None => Verdict::default(),
        },
        Ok(Err(_)) => error("proxy runtime stopped".into()),
        Err(_) => error(format!("not applied within {timeout:?}")),
    }
}

/// An authenticated `POST` of `value` as JSON to `path` on the controller.
fn json_post(
    base: &Uri,
    path: &str,
    token: &str,
    value: &impl serde::Serialize,
) -> Result<Request<Full<Bytes>>, Error> {
    let body = serde_json::to_vec(value).map_err(|e| Error::Frame(e.to_string()))?;
    Request::builder()
        .method(Method::POST)
        .uri(endpoint(base, path)?)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::Connect(e.to_string()))
}

async fn send_ack(client: &HttpClient, base: &Uri, token: &str, ack: &Ack) -> Result<(), Error> {
    let request = json_post(base, ACK_PATH, token, ack)?;
    let response = client
        .request(request)
        .await
        .map_err(|e| Error::Connect(format!("ack: {e:?}")))?;
    if !response.status().is_success() {
        return Err(Error::Status(response.status()));
    }
    debug!(
        version = ack.version,
        ok = ack.ok,
        failed = ack.failed.len(),
        "acknowledged"
    );
    Ok(())
}

/// Writes the snapshot cache atomically (temporary file + rename).
pub fn store_cache(path: &Path, snapshot: &Snapshot) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec(snapshot).map_err(|e| Error::Frame(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Loads a cached snapshot into `tx` if the file holds one whose hash matches its content.
fn load_cache(path: &Path, tx: &watch::Sender<Option<Arc<Snapshot>>>) {
    let snapshot = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Snapshot>(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the snapshot cache");
            return;
        }
    };
    match snapshot {
        Ok(s) if s.content_hash() == s.hash => {
            info!(path = %path.display(), version = s.version, "serving the cached snapshot until the controller answers");
            tx.send_replace(Some(Arc::new(s)));
        }
        Ok(_) => {
            warn!(path = %path.display(), "snapshot cache is corrupt (hash mismatch); ignored")
        }
        Err(e) => warn!(path = %path.display(), error = %e, "snapshot cache unreadable; ignored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_buffer_lets_go_of_a_large_frame() {
        let big = KEPT_BUFFER * 4;
        // (line length, spare capacity after it, whether the allocation is let go)
        let cases = [
            (big, 16, true),
            (big, KEPT_BUFFER * 2, true),
            (100, 16, false),
            (100, KEPT_BUFFER * 2, true),
        ];
        for (len, spare, released) in cases {
            let mut buf = BytesMut::with_capacity(len + 1 + spare);
            buf.extend_from_slice(&vec![b'x'; len]);
            buf.extend_from_slice(b"\n");
            let line = next_line(&mut buf).unwrap().unwrap();
            assert_eq!(line.len(), len);
            drop(line);
            let mut largest = len;
            release_if_drained(&mut buf, &mut largest);
            assert_eq!(buf.capacity() == 0, released, "line {len}, spare {spare}");
        }
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 0..40 {
            let d = b.delay(attempt);
            assert!(d <= Duration::from_secs(1), "{d:?}");
        }
        assert!(b.delay(0) <= Duration::from_millis(100));
        assert!(b.delay(10) >= Duration::from_millis(500));
    }

    #[test]
    fn frames_split_on_newlines_and_reject_bad_hashes() {
        let snapshot = Snapshot::default().seal();
        let frame = Frame {
            version: 7,
            hash: snapshot.hash.clone(),
            snapshot: Some(snapshot),
            delta: None,
        };
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&serde_json::to_vec(&frame).unwrap());
        assert!(next_line(&mut buf).unwrap().is_none(), "no newline yet");
        buf.extend_from_slice(b"\n");
        let line = next_line(&mut buf).unwrap().unwrap();
        let (decoded, digests) = decode_frame(&line, None).unwrap();
        assert_eq!(decoded.version, 7);
        assert_eq!(digests, ContentDigests::of(&decoded));

        let mut bad = frame.clone();
        bad.hash = "00".into();
        let err = decode_frame(&serde_json::to_vec(&bad).unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("hash mismatch"), "{err}");
    }

    #[test]
    fn deltas_apply_to_the_held_snapshot_only() {
        let held = Snapshot::default().seal();
        let mut next = Snapshot::default();
        next.secrets
            .push(Arc::new(hookway_crds::snapshot::SecretEntry {
                key: hookway_crds::snapshot::ObjectKey::new("ns", "s"),
                data: [("k".to_string(), "v".to_string())].into(),
            }));
        let next = next.seal();
        let delta = hookway_crds::delta::SnapshotDelta::between(&held, &next);
        let frame = |delta: Option<hookway_crds::delta::SnapshotDelta>, snapshot, hash: &str| {
            serde_json::to_vec(&Frame {
                version: 8,
                hash: hash.to_string(),
                snapshot,
                delta,
            })
            .unwrap()
        };
        let line = frame(Some(delta.clone()), None, &next.hash);
        let (held_digests, next_digests) = (ContentDigests::of(&held), ContentDigests::of(&next));
        let (got, digests) = decode_frame(&line, Some((&held, &held_digests))).unwrap();
        assert_eq!(
            (got.version, &got.hash, &got.secrets),
            (8, &next.hash, &next.secrets)
        );
        assert_eq!(digests, next_digests, "the result's digests come with it");
        let held = (&held, &held_digests);
        let next = (&next, &next_digests);
        for (line, held, needle) in [
            (line.clone(), None, "before any snapshot"),
            (line.clone(), Some(next), "delta applies to snapshot"),
            (
                frame(Some(delta.clone()), None, "00"),
                Some(held),
                "hash mismatch",
            ),
            (frame(None, None, &next.0.hash), Some(held), "exactly one"),
            (
                frame(Some(delta), Some(next.0.clone()), &next.0.hash),
                Some(held),
                "exactly one",
            ),
        ] {
            let err = decode_frame(&line, held).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    /// A delta whose result is not the announced content is refused, whatever was done to it.
    #[test]
    fn tampered_deltas_are_refused() {
        use hookway_crds::delta::SnapshotDelta;
        use hookway_crds::snapshot::{ObjectKey, SecretEntry};
        let secret = |name: &str, value: &str| SecretEntry {
            key: ObjectKey::new("ns", name),
            data: [("k".to_string(), value.to_string())].into(),
        };
        let snapshot = |secrets: Vec<SecretEntry>| {
            Snapshot {
                secrets: hookway_crds::snapshot::shared(secrets),
                ..Snapshot::default()
            }
            .seal()
        };
        let held = snapshot(vec![secret("a", "1"), secret("b", "1"), secret("c", "1")]);
        let next = snapshot(vec![
            secret("a", "2"),
            secret("b", "1"),
            secret("d", "1"),
            secret("e", "1"),
        ]);
        let delta = SnapshotDelta::between(&held, &next);
        assert_eq!(
            (delta.secrets.upsert.len(), delta.secrets.remove.len()),
            (3, 1)
        );
        let held_digests = ContentDigests::of(&held);
        let decode = |delta: &SnapshotDelta| {
            let line = serde_json::to_vec(&Frame {
                version: 2,
                hash: next.hash.clone(),
                snapshot: None,
                delta: Some(delta.clone()),
            })
            .unwrap();
            decode_frame(&line, Some((&held, &held_digests)))
        };
        let (got, _) = decode(&delta).expect("the untouched delta applies");
        assert_eq!(got.secrets, next.secrets);
        type Edit = fn(&mut SnapshotDelta);
        let edits: [(&str, Edit); 6] = [
            ("entry tampered", |d| {
                Arc::make_mut(&mut d.secrets.upsert[0])
                    .data
                    .insert("k".into(), "3".into());
            }),
            ("entry left out", |d| {
                d.secrets.upsert.pop();
            }),
            ("another entry removed", |d| {
                d.secrets.remove.push(ObjectKey::new("ns", "b"));
            }),
            ("removal left out", |d| d.secrets.remove.clear()),
            ("entries reordered", |d| d.secrets.upsert.swap(1, 2)),
            ("entry sent twice", |d| {
                let last = d.secrets.upsert[2].clone();
                d.secrets.upsert.push(last);
            }),
        ];
        for (what, edit) in edits {
            let mut tampered = delta.clone();
            edit(&mut tampered);
            let err = decode(&tampered).expect_err(what).to_string();
            assert!(err.contains("hash mismatch"), "{what}: {err}");
        }
    }

    #[test]
    fn held_digests_follow_the_held_content() {
        let mut digests = HeldDigests::default();
        let empty = Snapshot::default().seal();
        let mut other = Snapshot::default();
        other
            .blobs
            .push(Arc::new(hookway_crds::snapshot::BlobEntry::new(b"x")));
        let other = other.seal();
        assert_eq!(*digests.of(&empty), ContentDigests::of(&empty));
        assert_eq!(*digests.of(&other), ContentDigests::of(&other));
        assert_eq!(*digests.of(&empty), ContentDigests::of(&empty));
    }

    #[test]
    fn cache_round_trips_and_rejects_corruption() {
        let dir = std::env::temp_dir().join(format!("hookway-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot.json");
        let mut s = Snapshot::default().seal();
        s.version = 3;
        store_cache(&path, &s).unwrap();
        let (tx, rx) = watch::channel(None);
        load_cache(&path, &tx);
        assert_eq!(rx.borrow().as_ref().unwrap().version, 3);

        std::fs::write(&path, br#"{"version":1,"hash":"bad","routes":[],"upstreams":[],"certificates":[],"secrets":[],"default_chain":[]}"#).unwrap();
        let (tx, rx) = watch::channel(None);
        load_cache(&path, &tx);
        assert!(rx.borrow().is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
