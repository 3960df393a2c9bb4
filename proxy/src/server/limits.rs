//! Protection limits of the listeners.

use std::time::Duration;

/// Limits applied to client connections and requests.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request head (HTTP/1 read buffer; HTTP/2 header list). At least 8 KiB.
    pub max_header_bytes: usize,
    /// Largest request body; bigger declared bodies get 413, bigger streamed bodies are cut.
    pub max_body_bytes: u64,
    /// Time allowed to receive a request head (slowloris); for HTTP/1 it is also how long an
    /// idle keep-alive connection waits for its next request.
    pub header_read_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a connection that does not answer is closed.
    pub idle_timeout: Duration,
    /// Open client connections at most; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}
