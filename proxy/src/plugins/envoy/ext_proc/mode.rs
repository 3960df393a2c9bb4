//! The processing mode: which phases go to the server and how bodies are sent (Envoy's
//! `ProcessingMode`, written with Envoy's enum names).

use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::{
    BodySendMode, HeaderSendMode,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode as PbMode;
use serde::Deserialize;

/// Whether headers (or trailers) are sent.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HeaderMode {
    /// Sent (`DEFAULT` means the same for headers).
    #[serde(alias = "DEFAULT")]
    Send,
    /// Not sent: no message, no round trip.
    Skip,
}

/// Written by hand: the schema must accept the `DEFAULT` alias serde accepts (schemars does not
/// see aliases), or the catalogue would refuse configs the plugin takes.
impl schemars::JsonSchema for HeaderMode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HeaderMode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Whether headers (or trailers) are sent: `SEND` (or `DEFAULT`, the same for headers) or `SKIP` (no message, no round trip).",
            "type": "string",
            "enum": ["SEND", "DEFAULT", "SKIP"]
        })
    }
}

/// How a body is sent.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BodyMode {
    /// Not sent.
    #[default]
    None,
    /// Chunk by chunk as it arrives, each answered in order; nothing is buffered.
    Streamed,
    /// Whole, in one message, up to `max_buffered_bytes`.
    Buffered,
}

fn send() -> HeaderMode {
    HeaderMode::Send
}

fn skip() -> HeaderMode {
    HeaderMode::Skip
}

/// Envoy's `ProcessingMode`; the defaults are Envoy's (headers sent, bodies and trailers not).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessingMode {
    /// Request headers (default `SEND`).
    #[serde(default = "send")]
    pub request_header_mode: HeaderMode,
    /// Response headers (default `SEND`).
    #[serde(default = "send")]
    pub response_header_mode: HeaderMode,
    /// Request body (default `NONE`).
    #[serde(default)]
    pub request_body_mode: BodyMode,
    /// Response body (default `NONE`).
    #[serde(default)]
    pub response_body_mode: BodyMode,
    /// Request trailers (default `SKIP`).
    #[serde(default = "skip")]
    pub request_trailer_mode: HeaderMode,
    /// Response trailers (default `SKIP`).
    #[serde(default = "skip")]
    pub response_trailer_mode: HeaderMode,
}

impl Default for ProcessingMode {
    fn default() -> Self {
        Self {
            request_header_mode: HeaderMode::Send,
            response_header_mode: HeaderMode::Send,
            request_body_mode: BodyMode::None,
            response_body_mode: BodyMode::None,
            request_trailer_mode: HeaderMode::Skip,
            response_trailer_mode: HeaderMode::Skip,
        }
    }
}

/// The modes in force for one request.
pub(super) type Mode = ProcessingMode;

impl ProcessingMode {
    /// Whether any phase goes to the server at all.
    pub(super) fn any(&self) -> bool {
        *self
            != Self {
                request_header_mode: HeaderMode::Skip,
                response_header_mode: HeaderMode::Skip,
                ..Self::default()
            }
    }

    /// Whether anything of the response goes to the server.
    pub(super) fn response_side(&self) -> bool {
        self.response_header_mode == HeaderMode::Send
            || self.response_body_mode != BodyMode::None
            || self.response_trailer_mode == HeaderMode::Send
    }

    /// A server's `mode_override` applied (Envoy: the request header mode cannot change any
    /// more; `DEFAULT` header modes keep the current setting; `BUFFERED_PARTIAL` and the
    /// full-duplex / gRPC modes are not supported and refused).
    pub(super) fn overridden(mut self, pb: &PbMode) -> Result<Self, String> {
        let header = |value: i32, current: HeaderMode| match HeaderSendMode::try_from(value) {
            Ok(HeaderSendMode::Default) => Ok(current),
            Ok(HeaderSendMode::Send) => Ok(HeaderMode::Send),
            Ok(HeaderSendMode::Skip) => Ok(HeaderMode::Skip),
            Err(_) => Err(format!("mode_override: unknown header mode {value}")),
        };
        let body = |value: i32| match BodySendMode::try_from(value) {
            Ok(BodySendMode::None) => Ok(BodyMode::None),
            Ok(BodySendMode::Streamed) => Ok(BodyMode::Streamed),
            Ok(BodySendMode::Buffered) => Ok(BodyMode::Buffered),
            _ => Err(format!("mode_override: body mode {value} is not supported")),
        };
        self.response_header_mode = header(pb.response_header_mode, self.response_header_mode)?;
        self.request_body_mode = body(pb.request_body_mode)?;
        self.response_body_mode = body(pb.response_body_mode)?;
        self.request_trailer_mode = header(pb.request_trailer_mode, self.request_trailer_mode)?;
        self.response_trailer_mode = header(pb.response_trailer_mode, self.response_trailer_mode)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_envoys_and_overrides_apply() {
        let m: ProcessingMode = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(m, ProcessingMode::default());
        assert!(m.any());
        let none: ProcessingMode = serde_json::from_value(serde_json::json!({
            "request_header_mode": "SKIP", "response_header_mode": "SKIP"
        }))
        .unwrap();
        assert!(!none.any());
        let o = m
            .overridden(&PbMode {
                response_header_mode: HeaderSendMode::Skip as i32,
                response_body_mode: BodySendMode::Streamed as i32,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(o.response_header_mode, HeaderMode::Skip);
        assert_eq!(o.response_body_mode, BodyMode::Streamed);
        assert_eq!(o.request_header_mode, HeaderMode::Send);
        assert!(m
            .overridden(&PbMode {
                request_body_mode: BodySendMode::BufferedPartial as i32,
                ..Default::default()
            })
            .is_err());
    }
}
