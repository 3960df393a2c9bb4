//! Body callbacks as the chain's body filters: chunks go to `proxy_on_request_body` /
//! `proxy_on_response_body` as they arrive; a paused filter holds them (up to
//! `max_body_bytes`) until it continues or the stream ends.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use super::abi::BufferType;
use super::instance::Callback;
use super::session::{Settings, SharedSession};
use crate::plugin::{BodyFilter, PluginError};

/// Streams one body through the filter.
pub struct BodyStream {
    session: SharedSession,
    settings: Arc<Settings>,
    kind: BufferType,
    buffer: Vec<u8>,
    seen: bool,
}

impl BodyStream {
    /// A filter for the request body (`kind` `RequestBody`) or the response body.
    pub fn new(session: SharedSession, settings: Arc<Settings>, kind: BufferType) -> Self {
        Self {
            session,
            settings,
            kind,
            buffer: Vec::new(),
            seen: false,
        }
    }

    fn callback(&self) -> Callback {
        if self.kind == BufferType::RequestBody {
            Callback::RequestBody
        } else {
            Callback::ResponseBody
        }
    }

    fn phase(&self) -> &'static str {
        if self.kind == BufferType::RequestBody {
            "request body"
        } else {
            "response body"
        }
    }

    /// Runs the callback on what is held; returns what to pass on.
    fn run(&mut self, end_of_stream: bool) -> Result<Bytes, PluginError> {
        let callback = self.callback();
        let mut guard = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let paused = match guard.as_mut() {
            Some(session) if !session.broken => {
                match session.body(callback, self.kind, &mut self.buffer, end_of_stream) {
                    Ok(paused) => paused,
                    Err(e) => {
                        self.settings.failed(Some(session), e, self.phase())?;
                        false
                    }
                }
            }
            _ => false,
        };
        if paused && !end_of_stream {
            if self.buffer.len() > self.settings.max_body {
                let status = if self.kind == BufferType::RequestBody {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return Err(PluginError::with_status(
                    status,
                    format!(
                        "wasm filter {} held more than max_body_bytes ({}) of the {}",
                        self.settings.shared.alias,
                        self.settings.max_body,
                        self.phase()
                    ),
                ));
            }
            return Ok(Bytes::new());
        }
        Ok(Bytes::from(std::mem::take(&mut self.buffer)))
    }
}

impl BodyFilter for BodyStream {
    fn on_chunk(&mut self, chunk: Bytes) -> Result<Bytes, PluginError> {
        if chunk.is_empty() {
            return Ok(chunk);
        }
        self.seen = true;
        if self.buffer.is_empty() {
            self.buffer = Vec::from(chunk);
        } else {
            self.buffer.extend_from_slice(&chunk);
        }
        self.run(false)
    }

    fn on_end(&mut self) -> Result<Option<Bytes>, PluginError> {
        if !self.seen {
            // A body-less request or response: Envoy does not call the body callback either.
            return Ok(None);
        }
        let rest = self.run(true)?;
        Ok((!rest.is_empty()).then_some(rest))
    }
}

/// Replaces the upstream's body with the body of an early answer given at the response head.
pub struct Replace(pub Option<Bytes>);

impl BodyFilter for Replace {
    fn on_chunk(&mut self, _chunk: Bytes) -> Result<Bytes, PluginError> {
        Ok(Bytes::new())
    }

    fn on_end(&mut self) -> Result<Option<Bytes>, PluginError> {
        Ok(self.0.take())
    }
}
