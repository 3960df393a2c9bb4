//! `compression` (Pingap's gzip/brotli/zstd) and `gzip` (Apinto's gzip-only configuration):
//! compresses response bodies as they stream.
//!
//! ```text
//!  on_request   remember Accept-Encoding and method (a later plugin may change the request)
//!  on_response  eligible?  status has a body · no Content-Encoding · no `no-transform`
//!                          · content type listed · Content-Length (when known) ≥ min_length
//!               → Vary: Accept-Encoding (if `vary`) · negotiate by q-value
//!               → Content-Encoding set, Content-Length dropped, ETag weakened
//!  body filter  chunk in → compressed bytes out as the encoder produces them; event streams
//!               are flushed every chunk; the trailer at the end
//! ```

mod encoder;
mod negotiate;

use std::sync::Arc;

use bytes::Bytes;
use hookway_crds::catalogue::PluginConfig;
use http::{header, request, response, HeaderValue, Method, StatusCode};
use serde::Deserialize;

use crate::plugin::{
    BodyFilter, BuildEnv, Ctx, Flow, Hook, HookResult, Plugin, PluginError, PluginFactory,
};
pub use encoder::{Encoder, Levels};
pub use negotiate::{negotiate, Encoding};

/// Content types compressed by `compression` when `types` is not given.
const DEFAULT_TYPES: &[&str] = &[
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/x-ndjson",
    "application/problem+json",
    "application/wasm",
    "image/svg+xml",
];

/// Content types that are streams of events: flushed after every chunk.
const STREAMING_TYPES: &[&str] = &[
    "text/event-stream",
    "application/x-ndjson",
    "application/grpc-web",
];

fn default_algorithms() -> Vec<Encoding> {
    vec![Encoding::Zstd, Encoding::Brotli, Encoding::Gzip]
}
/// Highest brotli quality accepted: 10 and 11 (the optimal parse) cost about ten times the CPU
/// of 9 for every response, a cost any client asking for `br` would make the proxy pay.
pub const MAX_BROTLI_LEVEL: u32 = 9;
/// Highest zstd level accepted: 20-22 ("ultra") use windows of 32-128 MiB per response.
pub const MAX_ZSTD_LEVEL: i32 = 19;

fn default_gzip_level() -> u32 {
    6
}
fn default_brotli_level() -> u32 {
    5
}
fn default_zstd_level() -> i32 {
    3
}
fn default_min_length() -> u64 {
    1024
}
fn default_true() -> bool {
    true
}

/// The `compression` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// Codings offered, in server preference order (ties in the client's q-values).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Encoding>,
    /// gzip level 0-9.
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    /// brotli level 0-[`MAX_BROTLI_LEVEL`].
    #[serde(default = "default_brotli_level")]
    pub br_level: u32,
    /// zstd level 1-[`MAX_ZSTD_LEVEL`].
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Content types compressed (prefix match, case-insensitive, parameters ignored). Absent:
    /// common text types; empty list: every type.
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// Responses with a known `Content-Length` below this are sent as they are.
    #[serde(default = "default_min_length")]
    pub min_length: u64,
    /// Add `Vary: Accept-Encoding` to compressible responses.
    #[serde(default = "default_true")]
    pub vary: bool,
}

/// The `gzip` config (Apinto's field names and defaults).
#[derive(Deserialize, Debug, Clone, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GzipConfig {
    /// Content types compressed (substring match as in Apinto); empty: every type.
    #[serde(default)]
    pub types: Vec<String>,
    /// Responses with a known `Content-Length` below this are sent as they are.
    #[serde(default)]
    pub min_length: u64,
    /// Add `Vary: Accept-Encoding`.
    #[serde(default)]
    pub vary: bool,
}

impl PluginConfig for CompressionConfig {
    fn validate(&self) -> Result<(), String> {
        if self.algorithms.is_empty() {
            return Err("algorithms: at least one of gzip, br, zstd".into());
        }
        if self.gzip_level > 9 {
            return Err(format!("gzip_level: {} is not in 0-9", self.gzip_level));
        }
        if self.br_level > MAX_BROTLI_LEVEL {
            return Err(format!(
                "br_level: {} is not in 0-{MAX_BROTLI_LEVEL} (10 and 11 cost about ten times the CPU per response)",
                self.br_level
            ));
        }
        if !(1..=MAX_ZSTD_LEVEL).contains(&self.zstd_level) {
            return Err(format!(
                "zstd_level: {} is not in 1-{MAX_ZSTD_LEVEL} (20-22 need windows of 32-128 MiB per response)",
                self.zstd_level
            ));
        }
        for (i, t) in self.types.iter().flatten().enumerate() {
            if t.trim().is_empty() {
                return Err(format!("types[{i}]: empty content type"));
            }
        }
        Ok(())
    }
}

impl PluginConfig for GzipConfig {
    fn validate(&self) -> Result<(), String> {
        for (i, t) in self.types.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(format!("types[{i}]: empty content type"));
            }
        }
        Ok(())
    }
}

/// How `types` entries match a content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeMatch {
    /// The media type starts with the entry (`text/` matches `text/html`).
    Prefix,
    /// The content type contains the entry (Apinto's rule).
    Substring,
}

/// A running `compression` or `gzip`.
pub struct Compression {
    algorithms: Vec<Encoding>,
    levels: Levels,
    /// Lower-cased; empty = every type.
    types: Vec<String>,
    type_match: TypeMatch,
    min_length: u64,
    vary: bool,
}

impl PluginFactory for Compression {
    const NAME: &'static str = "compression";
    type Config = CompressionConfig;

    fn build(c: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let types = match c.types {
            Some(t) => t.iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
            None => DEFAULT_TYPES.iter().map(|s| s.to_string()).collect(),
        };
        Ok(Arc::new(Compression {
            algorithms: c.algorithms,
            levels: Levels {
                gzip: c.gzip_level,
                brotli: c.br_level,
                zstd: c.zstd_level,
            },
            types,
            type_match: TypeMatch::Prefix,
            min_length: c.min_length,
            vary: c.vary,
        }))
    }
}

/// The Apinto-named gzip-only kind.
pub struct Gzip;

impl PluginFactory for Gzip {
    const NAME: &'static str = "gzip";
    type Config = GzipConfig;

    fn build(c: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(Compression {
            algorithms: vec![Encoding::Gzip],
            levels: Levels {
                gzip: default_gzip_level(),
                brotli: default_brotli_level(),
                zstd: default_zstd_level(),
            },
            types: c
                .types
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
            type_match: TypeMatch::Substring,
            min_length: c.min_length,
            vary: c.vary,
        }))
    }
}

/// What the request said, kept for the response side.
#[derive(Clone)]
struct RequestFacts {
    accept_encoding: Option<HeaderValue>,
    head: bool,
}

/// The coding chosen for this response by the instance at `owner`.
#[derive(Clone)]
struct Chosen {
    owner: usize,
    encoding: Encoding,
    flush_each_chunk: bool,
}

fn has_token(headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

impl Compression {
    fn id(&self) -> usize {
        self as *const Self as usize
    }

    fn type_listed(&self, content_type: Option<&HeaderValue>) -> bool {
        if self.types.is_empty() {
            return true;
        }
        let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let ct = ct.to_ascii_lowercase();
        match self.type_match {
            TypeMatch::Prefix => {
                let media = ct.split(';').next().unwrap_or("").trim();
                self.types.iter().any(|t| media.starts_with(t.as_str()))
            }
            TypeMatch::Substring => self.types.iter().any(|t| ct.contains(t.as_str())),
        }
    }

    /// Whether this response may be compressed at all (independent of the client).
    fn eligible(&self, resp: &response::Parts, facts: &RequestFacts) -> bool {
        let status = resp.status;
        if facts.head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::PARTIAL_CONTENT
        {
            return false;
        }
        if let Some(ce) = resp.headers.get(header::CONTENT_ENCODING) {
            if !ce.as_bytes().eq_ignore_ascii_case(b"identity") {
                return false;
            }
        }
        if has_token(&resp.headers, header::CACHE_CONTROL, "no-transform") {
            return false;
        }
        if !self.type_listed(resp.headers.get(header::CONTENT_TYPE)) {
            return false;
        }
        if let Some(len) = resp
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok())
        {
            if len < self.min_length || len == 0 {
                return false;
            }
        }
        true
    }
}

impl Plugin for Compression {
    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if ctx.extensions.get::<RequestFacts>().is_none() {
            ctx.extensions.insert(RequestFacts {
                accept_encoding: req.headers.get(header::ACCEPT_ENCODING).cloned(),
                head: req.method == Method::HEAD,
            });
        }
        Hook::Ready(Ok(Flow::Continue))
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        // An early answer from an outer plugin comes before our on_request: nothing known.
        let Some(facts) = ctx.extensions.get::<RequestFacts>() else {
            return Hook::Ready(Ok(()));
        };
        if !self.eligible(resp, facts) {
            return Hook::Ready(Ok(()));
        }
        if self.vary && !has_token(&resp.headers, header::VARY, "accept-encoding") {
            resp.headers
                .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        let encoding = facts
            .accept_encoding
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|ae| negotiate(ae, &self.algorithms));
        let Some(encoding) = encoding else {
            return Hook::Ready(Ok(()));
        };
        resp.headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.token()),
        );
        resp.headers.remove(header::CONTENT_LENGTH);
        resp.headers.remove(header::ACCEPT_RANGES);
        if let Some(etag) = resp.headers.get(header::ETAG) {
            if !etag.as_bytes().starts_with(b"W/") {
                let mut weak = Vec::with_capacity(etag.len() + 2);
                weak.extend_from_slice(b"W/");
                weak.extend_from_slice(etag.as_bytes());
                if let Ok(v) = HeaderValue::from_bytes(&weak) {
                    resp.headers.insert(header::ETAG, v);
                }
            }
        }
        let flush_each_chunk = resp
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let ct = ct.to_ascii_lowercase();
                STREAMING_TYPES.iter().any(|t| ct.starts_with(t))
            })
            .unwrap_or(false);
        ctx.extensions.insert(Chosen {
            owner: self.id(),
            encoding,
            flush_each_chunk,
        });
        Hook::Ready(Ok(()))
    }

    fn response_body_filter(
        &self,
        _resp: &response::Parts,
        ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        let chosen = ctx.extensions.get::<Chosen>()?;
        if chosen.owner != self.id() {
            return None;
        }
        match Encoder::new(chosen.encoding, self.levels) {
            Ok(encoder) => Some(Box::new(CompressFilter {
                encoder: Some(encoder),
                flush_each_chunk: chosen.flush_each_chunk,
                held: 0,
            })),
            Err(error) => {
                // Content-Encoding is already set; the filter reports the error on first use.
                tracing::warn!(%error, encoding = chosen.encoding.token(), "compression: encoder init failed");
                Some(Box::new(CompressFilter {
                    encoder: None,
                    flush_each_chunk: false,
                    held: 0,
                }))
            }
        }
    }
}

/// Input bytes an encoder may hold without producing output before it is flushed: bounds the
/// memory and latency of encoders (brotli) that otherwise wait for whole meta-blocks.
const MAX_HELD_INPUT: usize = 128 * 1024;

/// Compresses one response body chunk by chunk.
struct CompressFilter {
    encoder: Option<Encoder>,
    flush_each_chunk: bool,
    /// Input written since the encoder last produced output.
    held: usize,
}

fn io_error(e: std::io::Error) -> PluginError {
    PluginError::internal(format!("compression: {e}"))
}

impl BodyFilter for CompressFilter {
    fn on_chunk(&mut self, chunk: Bytes) -> Result<Bytes, PluginError> {
        let encoder = self
            .encoder
            .as_mut()
            .ok_or_else(|| PluginError::internal("compression: no encoder"))?;
        if chunk.is_empty() {
            return Ok(chunk);
        }
        let out = encoder.write(&chunk).map_err(io_error)?;
        self.held = if out.is_empty() {
            self.held + chunk.len()
        } else {
            0
        };
        if !self.flush_each_chunk && self.held < MAX_HELD_INPUT {
            return Ok(out);
        }
        self.held = 0;
        let flushed = encoder.flush().map_err(io_error)?;
        Ok(match (out.is_empty(), flushed.is_empty()) {
            (_, true) => out,
            (true, false) => flushed,
            (false, false) => {
                let mut joined = Vec::with_capacity(out.len() + flushed.len());
                joined.extend_from_slice(&out);
                joined.extend_from_slice(&flushed);
                Bytes::from(joined)
            }
        })
    }

    fn on_end(&mut self) -> Result<Option<Bytes>, PluginError> {
        match self.encoder.take() {
            Some(encoder) => encoder.finish().map(Some).map_err(io_error),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
