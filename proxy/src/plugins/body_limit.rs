//! `body_limit`: refuses request bodies larger than `max_bytes` with 413 — before reading
//! anything when `Content-Length` says so, else as soon as the streamed body passes the limit
//! (the upstream request is then cut off). What ingress-nginx's `proxy-body-size` does (nginx
//! `client_max_body_size`). See `docs/plugins/body_limit.md`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, request, StatusCode};
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;

use crate::plugin::respond;
use crate::plugin::{
    BodyFilter, BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory,
};

/// The `body_limit` plugin kind.
pub struct BodyLimit;

/// The `body_limit` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BodyLimitConfig {
    /// Largest accepted request body, in bytes (at least 1).
    pub max_bytes: u64,
}

impl PluginConfig for BodyLimitConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_bytes == 0 {
            return Err("max_bytes: must be at least 1".into());
        }
        Ok(())
    }
}

/// A running `body_limit`.
pub struct BodyLimitPlugin {
    max: u64,
}

impl PluginFactory for BodyLimit {
    const NAME: &'static str = "body_limit";
    type Config = BodyLimitConfig;
    const PHASES: Phases = Phases::REQUEST_BODY;

    fn build(config: BodyLimitConfig, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(BodyLimitPlugin {
            max: config.max_bytes,
        }))
    }
}

const TOO_LARGE: &str = "request body too large";

impl Plugin for BodyLimitPlugin {
    fn phases(&self) -> Phases {
        Phases::REQUEST_BODY
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let declared = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max) {
            return Hook::Ready(Ok(Flow::Respond(respond::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                TOO_LARGE,
            ))));
        }
        Hook::Ready(Ok(Flow::Continue))
    }

    fn request_body_filter(
        &self,
        _req: &request::Parts,
        _ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        Some(Box::new(Counter { left: self.max }))
    }
}

/// Counts the streamed body down from the limit.
struct Counter {
    left: u64,
}

impl BodyFilter for Counter {
    fn on_chunk(&mut self, chunk: Bytes) -> Result<Bytes, PluginError> {
        let len = chunk.len() as u64;
        if len > self.left {
            return Err(PluginError::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                TOO_LARGE,
            ));
        }
        self.left -= len;
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::{build, ctx, drive, on_request, request, validate};
    use serde_json::json;

    #[test]
    fn config_table() {
        assert!(validate("body_limit", json!({"max_bytes": 1})).is_ok());
        assert!(validate("body_limit", json!({"max_bytes": 0}))
            .unwrap_err()
            .contains("max_bytes"));
        assert!(validate("body_limit", json!({})).is_err());
        assert!(validate("body_limit", json!({"max_bytes": 1, "x": 1})).is_err());
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_413_before_the_body() {
        let plugin = build("body_limit", json!({"max_bytes": 10})).unwrap();
        #[rustfmt::skip]
        let cases = [("10", false), ("11", true), ("0", false), ("nonsense", false)];
        for (len, refused) in cases {
            let mut req = request("POST", "/", &[("content-length", len)]);
            let flow = on_request(plugin.as_ref(), &mut req, &mut ctx())
                .await
                .unwrap();
            match flow {
                Flow::Respond(r) => {
                    assert!(refused, "{len}");
                    assert_eq!(r.status(), 413);
                }
                Flow::Continue => assert!(!refused, "{len}"),
            }
        }
    }

    #[test]
    fn streamed_body_over_the_limit_fails_with_413() {
        let plugin = build("body_limit", json!({"max_bytes": 5})).unwrap();
        let req = request("POST", "/", &[]);
        let mut filter = plugin.request_body_filter(&req, &mut ctx()).unwrap();
        assert!(drive(filter.as_mut(), &[b"ab", b"cde"]).is_ok());
        let mut filter = plugin.request_body_filter(&req, &mut ctx()).unwrap();
        let err = drive(filter.as_mut(), &[b"abc", b"def"]).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
