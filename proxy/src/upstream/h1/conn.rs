//! One upstream HTTP/1.1 connection: its socket (TCP, or TLS over TCP), its read buffer and its
//! write buffer, both kept for the next request.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The TLS stream hyper-rustls opens (its I/O adapters stay: they are thin).
type TlsStream = tokio_rustls::client::TlsStream<TokioIo<TokioIo<TcpStream>>>;

/// A connection's socket.
pub enum Io {
    /// Cleartext.
    Tcp(TcpStream),
    /// TLS (boxed: the TLS state is large).
    Tls(Box<TlsStream>),
}

impl From<MaybeHttpsStream<TokioIo<TcpStream>>> for Io {
    fn from(stream: MaybeHttpsStream<TokioIo<TcpStream>>) -> Self {
        match stream {
            MaybeHttpsStream::Http(tcp) => Io::Tcp(tcp.into_inner()),
            MaybeHttpsStream::Https(tls) => Io::Tls(Box::new(tls.into_inner())),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

/// Reads more bytes from `io` into `read`: `Ok(0)` at the end of the stream. (Apart from
/// [`Conn::poll_fill`] for a caller that holds the connection's write buffer at the same time.)
pub(super) fn fill(
    io: &mut Io,
    read: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if read.capacity() - read.len() < READ_CHUNK / 2 {
        read.reserve(READ_CHUNK);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, read)
}

/// An HTTP/1.1 connection to an upstream, idle or lent to one request.
pub struct Conn {
    pub(super) io: Io,
    /// Bytes read and not yet used.
    pub(super) read: BytesMut,
    /// The request head (and small body frames) being written; emptied, not freed.
    pub(super) write: Vec<u8>,
    /// The field names of the last response head (reused when spelled the same).
    pub(super) names: super::decode::Names,
    /// Whether it has served a request before (a request that finds it closed may be sent
    /// again on another connection).
    pub(super) reused: bool,
}

impl Conn {
    /// A new connection over `io`.
    pub fn new(io: Io) -> Self {
        Self {
            io,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: Vec::with_capacity(1024),
            names: super::decode::Names::default(),
            reused: false,
        }
    }

    /// The socket, for a connection handed to hyper (Upgrade requests); nothing may be buffered.
    pub fn into_io(self) -> Io {
        debug_assert!(self.read.is_empty());
        self.io
    }

    /// Reads more bytes into the read buffer: `Ok(0)` at the end of the stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        fill(&mut self.io, &mut self.read, cx)
    }

    /// Whether an idle connection can carry a request: the upstream has neither closed it nor
    /// sent anything unasked (bytes after a response would be read as the next one). Looks
    /// without waiting.
    pub fn is_usable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // A TLS 1.3 session ticket is read here too and yields no plaintext: still pending.
        matches!(self.poll_fill(&mut cx), Poll::Pending)
    }
}
