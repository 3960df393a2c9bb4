//! `accumulate` (Edge Microgateway's accumulate-request / accumulate-response): buffers the
//! request and/or response body and hands it whole, as one chunk, to the plugins after it —
//! for plugins that need the complete body. Bounded: a request body over the limit answers
//! 413, a response body over the limit 502.
//!
//! A `Content-Length` over the limit is refused before any body is read; a body without a
//! length is refused when it crosses the limit (for a response, after its head went out: the
//! client then sees the connection end early).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use hookway_crds::catalogue::PluginConfig;
use http::{header, request, response, HeaderMap, StatusCode};
use serde::Deserialize;

use crate::plugin::respond;
use crate::plugin::{
    BodyFilter, BuildEnv, Ctx, Flow, Hook, HookResult, Plugin, PluginError, PluginFactory,
};

fn default_limit() -> usize {
    10 * 1024 * 1024
}

/// The `accumulate` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccumulateConfig {
    /// Buffer the request body.
    #[serde(default)]
    pub request: bool,
    /// Buffer the response body.
    #[serde(default)]
    pub response: bool,
    /// Largest request body (bytes, default 10 MiB); beyond: 413.
    #[serde(default = "default_limit")]
    pub max_request_body: usize,
    /// Largest response body (bytes, default 10 MiB); beyond: 502.
    #[serde(default = "default_limit")]
    pub max_response_body: usize,
}

impl PluginConfig for AccumulateConfig {
    fn validate(&self) -> Result<(), String> {
        if !self.request && !self.response {
            return Err("request or response (or both) must be true".into());
        }
        if self.max_request_body == 0 || self.max_response_body == 0 {
            return Err("max_request_body / max_response_body: must be positive".into());
        }
        Ok(())
    }
}

/// A running `accumulate`.
pub struct Accumulate(AccumulateConfig);

impl PluginFactory for Accumulate {
    const NAME: &'static str = "accumulate";
    type Config = AccumulateConfig;

    fn build(config: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(Accumulate(config)))
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Collects a whole body up to `limit`.
struct Collect {
    buf: BytesMut,
    limit: usize,
    status: StatusCode,
    what: &'static str,
}

impl BodyFilter for Collect {
    fn on_chunk(&mut self, chunk: Bytes) -> Result<Bytes, PluginError> {
        if self.buf.len() + chunk.len() > self.limit {
            return Err(PluginError::with_status(
                self.status,
                format!(
                    "[accumulate] {} body larger than {} bytes",
                    self.what, self.limit
                ),
            ));
        }
        self.buf.extend_from_slice(&chunk);
        Ok(Bytes::new())
    }

    fn on_end(&mut self) -> Result<Option<Bytes>, PluginError> {
        Ok(Some(std::mem::take(&mut self.buf).freeze()))
    }
}

impl Plugin for Accumulate {
    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if self.0.request
            && content_length(&req.headers).is_some_and(|n| n > self.0.max_request_body as u64)
        {
            return Hook::Ready(Ok(Flow::Respond(respond::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "[accumulate] request body larger than {} bytes",
                    self.0.max_request_body
                ),
            ))));
        }
        Hook::Ready(Ok(Flow::Continue))
    }

    fn request_body_filter(
        &self,
        _req: &request::Parts,
        _ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        self.0.request.then(|| {
            Box::new(Collect {
                buf: BytesMut::new(),
                limit: self.0.max_request_body,
                status: StatusCode::PAYLOAD_TOO_LARGE,
                what: "request",
            }) as Box<dyn BodyFilter>
        })
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        if self.0.response
            && content_length(&resp.headers).is_some_and(|n| n > self.0.max_response_body as u64)
        {
            return Hook::Ready(Err(PluginError::with_status(
                StatusCode::BAD_GATEWAY,
                format!(
                    "[accumulate] response body larger than {} bytes",
                    self.0.max_response_body
                ),
            )));
        }
        Hook::Ready(Ok(()))
    }

    fn response_body_filter(
        &self,
        _resp: &response::Parts,
        _ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        self.0.response.then(|| {
            Box::new(Collect {
                buf: BytesMut::with_capacity(0),
                limit: self.0.max_response_body,
                status: StatusCode::BAD_GATEWAY,
                what: "response",
            }) as Box<dyn BodyFilter>
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::{
        build, ctx, drive, on_request, on_response, request, response, validate,
    };
    use serde_json::json;

    #[test]
    fn whole_body_comes_out_once_at_the_end() {
        let plugin = build("accumulate", json!({"request": true, "response": true})).unwrap();
        let req = request("POST", "/", &[]);
        let mut f = plugin.request_body_filter(&req, &mut ctx()).unwrap();
        let out = drive(f.as_mut(), &[b"ab", b"cd", b"e"]).unwrap();
        assert_eq!(
            out,
            [
                Bytes::new(),
                Bytes::new(),
                Bytes::new(),
                Bytes::from_static(b"abcde")
            ]
        );
        let resp = response(200, &[]);
        let mut f = plugin.response_body_filter(&resp, &mut ctx()).unwrap();
        assert_eq!(
            drive(f.as_mut(), &[b"x", b"y"]).unwrap().last().unwrap(),
            &Bytes::from_static(b"xy")
        );
    }

    #[test]
    fn only_the_configured_side_is_buffered() {
        let plugin = build("accumulate", json!({"response": true})).unwrap();
        assert!(plugin
            .request_body_filter(&request("POST", "/", &[]), &mut ctx())
            .is_none());
        assert!(plugin
            .response_body_filter(&response(200, &[]), &mut ctx())
            .is_some());
    }

    #[tokio::test]
    async fn limits_answer_413_and_502() {
        let plugin = build("accumulate", json!({"request": true, "response": true, "max_request_body": 4, "max_response_body": 4})).unwrap();
        let mut f = plugin
            .request_body_filter(&request("POST", "/", &[]), &mut ctx())
            .unwrap();
        assert_eq!(drive(f.as_mut(), &[b"abc", b"de"]).unwrap_err().status, 413);
        let mut f = plugin
            .response_body_filter(&response(200, &[]), &mut ctx())
            .unwrap();
        assert_eq!(drive(f.as_mut(), &[b"abcde"]).unwrap_err().status, 502);
        // Known lengths are refused before reading.
        let mut req = request("POST", "/", &[("content-length", "5")]);
        let Flow::Respond(r) = on_request(plugin.as_ref(), &mut req, &mut ctx())
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(r.status(), 413);
        let mut resp = response(200, &[("content-length", "5")]);
        assert_eq!(
            on_response(plugin.as_ref(), &mut resp, &mut ctx())
                .await
                .unwrap_err()
                .status,
            502
        );
        let mut resp = response(200, &[("content-length", "4")]);
        on_response(plugin.as_ref(), &mut resp, &mut ctx())
            .await
            .unwrap();
    }

    #[test]
    fn config_errors_are_reported() {
        assert!(validate("accumulate", json!({}))
            .unwrap_err()
            .contains("request or response"));
        assert!(validate(
            "accumulate",
            json!({"request": true, "max_request_body": 0})
        )
        .unwrap_err()
        .contains("positive"));
        assert!(validate("accumulate", json!({"request": true, "limit": 1}))
            .unwrap_err()
            .contains("unknown field"));
    }
}
