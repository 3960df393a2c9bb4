//! A streaming encoder behind one interface: write a chunk, take what is ready, flush, finish.
//! Output accumulates in a `Vec` that is handed on after every chunk, so memory stays at the
//! encoder's window plus one chunk — a large body is never held whole.

use std::io::Write;

use bytes::Bytes;

use super::negotiate::Encoding;

/// Compression levels per algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// gzip 0-9.
    pub gzip: u32,
    /// brotli 0-11.
    pub brotli: u32,
    /// zstd 1-22.
    pub zstd: i32,
}

/// One response's encoder.
pub enum Encoder {
    /// gzip.
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// brotli (boxed: the state is large).
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// Brotli window (log2): 4 MiB, brotli's default for HTTP.
const BROTLI_LGWIN: u32 = 22;
/// Brotli's internal output buffer.
const BROTLI_BUFFER: usize = 16 * 1024;

impl Encoder {
    /// A fresh encoder for `encoding`.
    pub fn new(encoding: Encoding, levels: Levels) -> std::io::Result<Self> {
        Ok(match encoding {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(levels.gzip),
            )),
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                levels.brotli,
                BROTLI_LGWIN,
            ))),
            Encoding::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), levels.zstd)?)
            }
        })
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Brotli(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    /// Compresses `chunk`; returns the compressed bytes ready so far (may be empty).
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => e.write_all(chunk)?,
            Encoder::Brotli(e) => e.write_all(chunk)?,
            Encoder::Zstd(e) => e.write_all(chunk)?,
        }
        Ok(self.take())
    }

    /// Flushes so everything written so far can be decoded by the client now (costs a little
    /// ratio; used for event streams).
    pub fn flush(&mut self) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => e.flush()?,
            Encoder::Brotli(e) => e.flush()?,
            Encoder::Zstd(e) => e.flush()?,
        }
        Ok(self.take())
    }

    /// Takes the bytes produced so far.
    fn take(&mut self) -> Bytes {
        let out = self.out();
        if out.is_empty() {
            return Bytes::new();
        }
        let cap = out.capacity();
        Bytes::from(std::mem::replace(
            out,
            Vec::with_capacity(cap.min(64 * 1024)),
        ))
    }

    /// Ends the stream; returns the trailer (and anything still buffered).
    pub fn finish(self) -> std::io::Result<Bytes> {
        let out = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Brotli(e) => e.into_inner(),
            Encoder::Zstd(e) => e.finish()?,
        };
        Ok(Bytes::from(out))
    }
}
