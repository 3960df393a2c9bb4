//! The log writer: a bounded batch buffer drained by a dedicated thread, so a request never
//! waits on disk or a full pipe. A full buffer drops the line and counts it.
//!
//! ```text
//!  on_complete ──append──▶ [pending lines, ≤ capacity] ──swap──▶ writer thread ──▶ stdout | file
//!     full? dropped += 1    wake the writer at 32 KiB          every 100 ms or when woken;
//!                                                              reopen the file on SIGHUP or
//!                                                              when it was moved/removed
//! ```
//!
//! A request appends its line under a short lock and wakes the writer only when a batch is
//! large (the writer was woken for every line before: one futex wake and one context switch
//! per request, which cost 46 % of throughput on one core, bench/RESULTS.md). Lines reach the
//! output at most [`FLUSH_EVERY`] after they were logged. The thread ends when the plugin
//! instance is dropped, after writing what is pending.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

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

/// How often the writer checks whether its file was moved.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longest time a logged line waits before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Pending bytes at which a request wakes the writer early.
const WAKE_BYTES: usize = 32 * 1024;

/// Lines logged and not yet taken by the writer.
#[derive(Default)]
struct Pending {
    /// Newline-terminated lines.
    bytes: Vec<u8>,
    lines: usize,
    /// The plugin instance is gone: write what is pending and stop.
    closed: bool,
}

/// What the plugin instance and its writer thread share.
#[derive(Default)]
struct Batch {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Batch {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side, owned by the plugin instance.
pub struct LogWriter {
    batch: Arc<Batch>,
    capacity: usize,
    dropped: Arc<AtomicU64>,
}

impl LogWriter {
    /// Starts the writer thread for `sink`, keeping at most `capacity` lines pending.
    pub fn start(sink: Sink, capacity: usize) -> std::io::Result<Self> {
        let out: Box<dyn Output> = match &sink {
            Sink::Stdout => Box::new(StdoutOutput),
            Sink::File(path) => Box::new(FileOutput::open(path.clone())?),
        };
        listen_for_sighup();
        Self::spawn(out, capacity)
    }

    fn spawn(out: Box<dyn Output>, capacity: usize) -> std::io::Result<Self> {
        let batch = Arc::new(Batch::default());
        let shared = batch.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(&shared, out))?;
        Ok(Self {
            batch,
            capacity: capacity.max(1),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues `line` (without newline); never blocks on the output. Returns `false` when it
    /// was dropped because `capacity` lines are already pending.
    pub fn send(&self, line: &str) -> bool {
        self.send_bytes(line.as_bytes())
    }

    /// [`send`](Self::send) for a line already in bytes (UTF-8, without newline).
    pub fn send_bytes(&self, line: &[u8]) -> bool {
        let mut pending = self.batch.lock();
        if pending.lines >= self.capacity || pending.closed {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            DROPPED_TOTAL.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        pending.bytes.reserve(line.len() + 1);
        pending.bytes.extend_from_slice(line);
        pending.bytes.push(b'\n');
        pending.lines += 1;
        let wake = pending.bytes.len() >= WAKE_BYTES || pending.lines >= self.capacity;
        drop(pending);
        if wake {
            self.batch.wake.notify_one();
        }
        true
    }

    /// Lines this writer dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.batch.lock().closed = true;
        self.batch.wake.notify_one();
    }
}

trait Output: Send {
    /// Writes newline-terminated lines.
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
    /// Periodic check (file moved, reopen requested).
    fn check(&mut self) {}
}

struct StdoutOutput;

impl Output for StdoutOutput {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        std::io::stdout().lock().write_all(lines)
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
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.file.write_all(lines)
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

fn run(batch: &Batch, mut out: Box<dyn Output>) {
    let mut errors_logged = 0u32;
    let mut report = |e: std::io::Error| {
        // Do not flood the log with the same failure; a few lines are enough to notice.
        if errors_logged < 5 {
            errors_logged += 1;
            tracing::warn!(error = %e, "access_log: write failed");
        }
    };
    let mut last_check = Instant::now();
    let mut taken = Vec::new();
    loop {
        let closed = {
            let pending = batch.lock();
            let (mut pending, _) = batch
                .wake
                .wait_timeout_while(pending, FLUSH_EVERY, |p| {
                    p.bytes.len() < WAKE_BYTES && !p.closed
                })
                .unwrap_or_else(PoisonError::into_inner);
            // Swap buffers: requests append to the emptied one while this one is written.
            std::mem::swap(&mut pending.bytes, &mut taken);
            pending.lines = 0;
            pending.closed
        };
        if !taken.is_empty() {
            if let Err(e) = out.write(&taken).and_then(|()| out.flush()) {
                report(e);
            }
            taken.clear();
        }
        if closed {
            return;
        }
        if last_check.elapsed() >= CHECK_EVERY {
            last_check = Instant::now();
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
            fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
                let count = lines.iter().filter(|&&b| b == b'\n').count();
                std::thread::sleep(self.0 * u32::try_from(count).unwrap_or(u32::MAX));
                Ok(())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        Self::spawn(Box::new(Slow(per_line)), capacity).expect("spawn the writer thread")
    }
}
