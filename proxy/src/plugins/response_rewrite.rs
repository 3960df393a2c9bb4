//! `response_rewrite` (Apinto): when the response status is one of `match.code`, replace the
//! status, headers and/or body. Runs on every response the chain produces — upstream answers,
//! early answers of inner plugins and the chain's own error answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use hookway_crds::catalogue::PluginConfig;
use http::{header, response, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;

use crate::plugin::{
    BodyFilter, BuildEnv, Ctx, Hook, HookResult, Plugin, PluginError, PluginFactory,
};

/// The `response_rewrite` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseRewriteConfig {
    /// Which responses are rewritten.
    #[serde(rename = "match")]
    pub match_: MatchConfig,
    /// New status; `0` (the default) keeps the status.
    #[serde(default)]
    pub status_code: u16,
    /// New body (replaces the whole body). Absent: the body is kept.
    #[serde(default)]
    pub body: Option<String>,
    /// `body` is base64 (for binary bodies).
    #[serde(default)]
    pub body_base64: bool,
    /// Response headers to set; an empty value deletes the header.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Response matching.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Status codes to rewrite (at least one).
    pub code: Vec<u16>,
}

enum HeaderEdit {
    Set(HeaderName, HeaderValue),
    Remove(HeaderName),
}

/// A running `response_rewrite`.
pub struct ResponseRewrite {
    codes: Vec<u16>,
    status: Option<StatusCode>,
    body: Option<Bytes>,
    headers: Vec<HeaderEdit>,
}

/// Marks, per request, the `response_rewrite` instances whose match hit (by instance address),
/// so the body filter knows to replace the body even after the status was changed.
#[derive(Clone, Default)]
struct Matched(Vec<usize>);

impl PluginConfig for ResponseRewriteConfig {
    fn validate(&self) -> Result<(), String> {
        self.compile().map(|_| ())
    }
}

impl ResponseRewriteConfig {
    fn compile(&self) -> Result<ResponseRewrite, String> {
        if self.match_.code.is_empty() {
            return Err("match.code: at least one status code is required".into());
        }
        for (i, code) in self.match_.code.iter().enumerate() {
            StatusCode::from_u16(*code)
                .map_err(|_| format!("match.code[{i}]: {code} is not an HTTP status"))?;
        }
        let status = match self.status_code {
            0 => None,
            c => Some(
                StatusCode::from_u16(c)
                    .map_err(|_| format!("status_code: {c} is not an HTTP status"))?,
            ),
        };
        let body = match (&self.body, self.body_base64) {
            (None, true) => return Err("body_base64: needs body".into()),
            (None, false) => None,
            (Some(b), false) => Some(Bytes::from(b.clone())),
            (Some(b), true) => Some(Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("body: not base64: {e}"))?,
            )),
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("headers.{name}: {e}"))?;
            if value.is_empty() {
                headers.push(HeaderEdit::Remove(name));
            } else {
                let v = HeaderValue::from_str(value).map_err(|e| format!("headers.{name}: {e}"))?;
                headers.push(HeaderEdit::Set(name, v));
            }
        }
        Ok(ResponseRewrite {
            codes: self.match_.code.clone(),
            status,
            body,
            headers,
        })
    }
}

impl PluginFactory for ResponseRewrite {
    const NAME: &'static str = "response_rewrite";
    type Config = ResponseRewriteConfig;

    fn build(config: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(config.compile()?))
    }
}

impl ResponseRewrite {
    fn id(&self) -> usize {
        self as *const Self as usize
    }
}

impl Plugin for ResponseRewrite {
    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        if !self.codes.contains(&resp.status.as_u16()) {
            return Hook::Ready(Ok(()));
        }
        if let Some(status) = self.status {
            resp.status = status;
        }
        for edit in &self.headers {
            match edit {
                HeaderEdit::Set(name, value) => {
                    resp.headers.insert(name.clone(), value.clone());
                }
                HeaderEdit::Remove(name) => {
                    resp.headers.remove(name);
                }
            }
        }
        if let Some(body) = &self.body {
            // The new body is neither encoded nor the old length.
            resp.headers.remove(header::CONTENT_ENCODING);
            resp.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            match ctx.extensions.get_mut::<Matched>() {
                Some(m) => m.0.push(self.id()),
                None => {
                    ctx.extensions.insert(Matched(vec![self.id()]));
                }
            }
        }
        Hook::Ready(Ok(()))
    }

    fn response_body_filter(
        &self,
        _resp: &response::Parts,
        ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        let body = self.body.as_ref()?;
        let matched = ctx.extensions.get::<Matched>()?;
        matched
            .0
            .contains(&self.id())
            .then(|| Box::new(ReplaceBody(Some(body.clone()))) as Box<dyn BodyFilter>)
    }
}

/// Drops the original body and emits the configured one at the end.
struct ReplaceBody(Option<Bytes>);

impl BodyFilter for ReplaceBody {
    fn on_chunk(&mut self, _chunk: Bytes) -> Result<Bytes, PluginError> {
        Ok(Bytes::new())
    }
    fn on_end(&mut self) -> Result<Option<Bytes>, PluginError> {
        Ok(self.0.take())
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::harness::{build, concat, ctx, drive, on_response, response, validate};
    use serde_json::json;

    #[tokio::test]
    async fn matching_status_is_rewritten_whole() {
        let plugin = build(
            "response_rewrite",
            json!({"match": {"code": [500, 502]}, "status_code": 503,
                   "body": "{\"error\":\"down\"}", "headers": {"content-type": "application/json", "server": ""}}),
        )
        .unwrap();
        let mut resp = response(502, &[("server", "nginx"), ("content-encoding", "gzip")]);
        let mut ctx = ctx();
        on_response(plugin.as_ref(), &mut resp, &mut ctx)
            .await
            .unwrap();
        assert_eq!(resp.status, 503);
        assert_eq!(resp.headers["content-type"], "application/json");
        assert!(resp.headers.get("server").is_none());
        assert!(resp.headers.get("content-encoding").is_none());
        let mut filter = plugin
            .response_body_filter(&resp, &mut ctx)
            .expect("filter");
        let out = drive(filter.as_mut(), &[b"upstream ", b"body"]).unwrap();
        assert_eq!(concat(&out), b"{\"error\":\"down\"}");
        assert_eq!(resp.headers["content-length"], "16");
    }

    #[tokio::test]
    async fn other_status_is_left_alone() {
        let plugin = build(
            "response_rewrite",
            json!({"match": {"code": [500]}, "status_code": 200, "body": "x"}),
        )
        .unwrap();
        let mut resp = response(404, &[("server", "nginx")]);
        let mut ctx = ctx();
        on_response(plugin.as_ref(), &mut resp, &mut ctx)
            .await
            .unwrap();
        assert_eq!(resp.status, 404);
        assert!(plugin.response_body_filter(&resp, &mut ctx).is_none());
    }

    #[tokio::test]
    async fn status_zero_keeps_status_and_no_body_keeps_body() {
        let plugin = build(
            "response_rewrite",
            json!({"match": {"code": [404]}, "headers": {"x-rewritten": "1"}}),
        )
        .unwrap();
        let mut resp = response(404, &[]);
        let mut ctx = ctx();
        on_response(plugin.as_ref(), &mut resp, &mut ctx)
            .await
            .unwrap();
        assert_eq!(resp.status, 404);
        assert_eq!(resp.headers["x-rewritten"], "1");
        assert!(plugin.response_body_filter(&resp, &mut ctx).is_none());
    }

    #[tokio::test]
    async fn base64_body_is_decoded() {
        let plugin = build(
            "response_rewrite",
            json!({"match": {"code": [200]}, "body": "AAEC/w==", "body_base64": true}),
        )
        .unwrap();
        let mut resp = response(200, &[]);
        let mut ctx = ctx();
        on_response(plugin.as_ref(), &mut resp, &mut ctx)
            .await
            .unwrap();
        let mut filter = plugin.response_body_filter(&resp, &mut ctx).unwrap();
        assert_eq!(
            concat(&drive(filter.as_mut(), &[b"abc"]).unwrap()),
            [0, 1, 2, 255]
        );
    }

    #[test]
    fn config_errors_are_reported() {
        for (config, needle) in [
            (json!({"status_code": 500}), "match"),
            (json!({"match": {"code": []}}), "at least one"),
            (json!({"match": {"code": [1000]}}), "match.code[0]"),
            (
                json!({"match": {"code": [500]}, "status_code": 99}),
                "status_code",
            ),
            (
                json!({"match": {"code": [500]}, "body": "%%", "body_base64": true}),
                "not base64",
            ),
            (
                json!({"match": {"code": [500]}, "body_base64": true}),
                "needs body",
            ),
            (
                json!({"match": {"code": [500]}, "headers": {"a b": "1"}}),
                "headers.a b",
            ),
            (
                json!({"match": {"code": [500]}, "extra": 1}),
                "unknown field",
            ),
        ] {
            let err = validate("response_rewrite", config.clone()).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }
}
