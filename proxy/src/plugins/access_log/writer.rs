//! The log writer: a bounded channel to a dedicated thread, so a request never waits on disk
//! or a full pipe. A full channel drops the line and counts it.
//!
//! ```text
//!  on_complete ──try_send──▶ [bounded queue] ──▶ writer thread ──▶ stdout | file
//!        full? dropped += 1                        flush when idle; reopen the file on
//!                                                  SIGHUP or when it was moved/removed
//! ```
//!
//! The thread ends when the plugin instance is dropped (its sender goes away), after writing
//! what is queued.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Lines dropped by every access_log instance since start (for metrics).
static DROPPED_TOTAL: AtomicU64 = AtomicU64::new(0);
/// Bumped by SIGHUP (or [`request_reopen`]); file writers reopen when it changes.
static REOPEN_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Lines dropped by every access_log instance since the process started (the queue was full
/// or the writer had stopped). Exposed as a metric by the proxy.
pub fn dropped_lines_total() -> u64 {
    DROPPED_TOTAL.load(Ordering::Relaxed)
}

/// Asks every file writer to reopen its file (what SIGHUP does; for logrotate `postrotate`).
pub fn request_reopen() {
    REOPEN_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Installs the SIGHUP listener once, when a tokio runtime is running.
fn listen_for_sighup() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        #[cfg(unix)]
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    tracing::warn!("access_log: cannot listen for SIGHUP");
                    return;
                };
                while hup.recv().await.is_some() {
                    tracing::info!("access_log: SIGHUP, reopening log files");
                    request_reopen();
                }
            });
        }
    });
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// The process's standard output.
    Stdout,
    /// A file, appended to and created when missing.
    File(PathBuf),
}

/// The sending side, owned by the plugin instance.
pub struct LogWriter {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

/// How often the writer checks whether its file was moved.
const CHECK_EVERY: Duration = Duration::from_secs(1);

impl LogWriter {
    /// Starts the writer thread for `sink` with a queue of `capacity` lines.
    pub fn start(sink: Sink, capacity: usize) -> std::io::Result<Self> {
        let out: Box<dyn Output> = match &sink {
            Sink::Stdout => Box::new(StdoutOutput),
            Sink::File(path) => Box::new(FileOutput::open(path.clone())?),
        };
        let (tx, rx) = mpsc::sync_channel::<String>(capacity);
        listen_for_sighup();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(rx, out))?;
        Ok(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues `line` (without newline); never blocks. Returns `false` when it was dropped.
    pub fn send(&self, line: String) -> bool {
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                DROPPED_TOTAL.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Lines this writer dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

trait Output: Send {
    fn write_line(&mut self, line: &str) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
    /// Periodic check (file moved, reopen requested).
    fn check(&mut self) {}
}

struct StdoutOutput;

impl Output for StdoutOutput {
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

struct FileOutput {
    path: PathBuf,
    file: BufWriter<File>,
    identity: Option<FileIdentity>,
    generation: u64,
}

/// `(device, inode)` of an open file, to notice when its path now names another file.
type FileIdentity = (u64, u64);

#[cfg(unix)]
fn identity_of(meta: &std::fs::Metadata) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}
#[cfg(not(unix))]
fn identity_of(_meta: &std::fs::Metadata) -> Option<FileIdentity> {
    None
}

impl FileOutput {
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let (file, identity) = open_append(&path)?;
        Ok(Self {
            path,
            file,
            identity,
            generation: REOPEN_GENERATION.load(Ordering::Relaxed),
        })
    }

    fn reopen(&mut self) {
        let _ = self.file.flush();
        match open_append(&self.path) {
            Ok((file, identity)) => {
                self.file = file;
                self.identity = identity;
                tracing::debug!(path = %self.path.display(), "access_log: reopened");
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "access_log: reopen failed");
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<(BufWriter<File>, Option<FileIdentity>)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let identity = identity_of(&file.metadata()?);
    Ok((BufWriter::with_capacity(64 * 1024, file), identity))
}

impl Output for FileOutput {
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
    fn check(&mut self) {
        let generation = REOPEN_GENERATION.load(Ordering::Relaxed);
        let moved = match std::fs::metadata(&self.path) {
            Ok(meta) => identity_of(&meta) != self.identity,
            Err(_) => true,
        };
        if generation != self.generation || moved {
            self.generation = generation;
            self.reopen();
        }
    }
}

fn run(rx: mpsc::Receiver<String>, mut out: Box<dyn Output>) {
    let mut errors_logged = 0u32;
    let mut report = |e: std::io::Error| {
        // Do not flood the log with the same failure; a few lines are enough to notice.
        if errors_logged < 5 {
            errors_logged += 1;
            tracing::warn!(error = %e, "access_log: write failed");
        }
    };
    let mut last_check = std::time::Instant::now();
    loop {
        match rx.recv_timeout(CHECK_EVERY) {
            Ok(line) => {
                if let Err(e) = out.write_line(&line) {
                    report(e);
                }
                // Drain what is queued, then flush once.
                while let Ok(line) = rx.try_recv() {
                    if let Err(e) = out.write_line(&line) {
                        report(e);
                    }
                }
                if let Err(e) = out.flush() {
                    report(e);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
        if last_check.elapsed() >= CHECK_EVERY {
            last_check = std::time::Instant::now();
            out.check();
        }
    }
}

#[cfg(test)]
impl LogWriter {
    /// A writer whose output takes `per_line` to write each line (a stalled disk or pipe).
    pub(crate) fn stalled(capacity: usize, per_line: Duration) -> Self {
        struct Slow(Duration);
        impl Output for Slow {
            fn write_line(&mut self, _line: &str) -> std::io::Result<()> {
                std::thread::sleep(self.0);
                Ok(())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (tx, rx) = mpsc::sync_channel::<String>(capacity);
        let out: Box<dyn Output> = Box::new(Slow(per_line));
        std::thread::spawn(move || run(rx, out));
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }
}
