//! `request_id`: gives every request an id. An id the client (or a proxy in front) sent is
//! kept unless `overwrite` is set; otherwise a UUID v4 is generated. The id is set on the
//! upstream request and the response, and in [`Ctx::request_id`] for logs and later plugins.
//! See `docs/plugins/request_id.md`.

use std::sync::Arc;

use http::{request, response, HeaderName, HeaderValue};
use serde::Deserialize;

use super::header_config;
use crate::plugin::{
    BuildEnv, Ctx, Flow, Hook, HookResult, Phases, Plugin, PluginError, PluginFactory,
};
use hookway_crds::catalogue::PluginConfig;

/// Incoming ids longer than this are replaced (they end up in every log line).
pub const MAX_INCOMING_LEN: usize = 200;

/// The `request_id` plugin kind.
pub struct RequestId;

/// `request_id` config.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestIdConfig {
    /// The header carrying the id (default `X-Request-Id`).
    #[serde(default = "default_header")]
    pub header: String,
    /// Replace an id that came with the request (default false: keep it).
    #[serde(default)]
    pub overwrite: bool,
}

fn default_header() -> String {
    "X-Request-Id".into()
}

impl PluginConfig for RequestIdConfig {
    fn validate(&self) -> Result<(), String> {
        header_config::name("header", &self.header).map(drop)
    }
}

/// A running `request_id`.
#[derive(Debug)]
pub struct RequestIdPlugin {
    header: HeaderName,
    overwrite: bool,
}

impl PluginFactory for RequestId {
    const NAME: &'static str = "request_id";
    type Config = RequestIdConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: RequestIdConfig, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(RequestIdPlugin {
            header: header_config::name("header", &config.header)?,
            overwrite: config.overwrite,
        }))
    }
}

/// An incoming id worth keeping: non-empty, visible ASCII, not too long.
fn usable(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    (!text.is_empty() && text.len() <= MAX_INCOMING_LEN).then_some(text)
}

impl Plugin for RequestIdPlugin {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let incoming = if self.overwrite {
            None
        } else {
            req.headers.get(&self.header).and_then(usable)
        };
        let id: Arc<str> = match incoming {
            Some(id) => match &ctx.request_id {
                Some(known) if **known == *id => known.clone(),
                _ => id.into(),
            },
            None => {
                let mut buf = uuid::Uuid::encode_buffer();
                // A v4 UUID from the thread-local CSPRNG (no syscall per id).
                let id = uuid::Builder::from_random_bytes(rand::random())
                    .into_uuid()
                    .hyphenated()
                    .encode_lower(&mut buf);
                req.headers.insert(
                    self.header.clone(),
                    HeaderValue::from_str(id).expect("uuid is ASCII"),
                );
                (&*id).into()
            }
        };
        ctx.request_id = Some(id);
        Hook::Ready(Ok(Flow::Continue))
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        if let Some(value) = ctx
            .request_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            resp.headers.insert(self.header.clone(), value);
        }
        Hook::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::chain::tests::{get, run, text, Answer, TestUpstream};
    use crate::plugins::testing::{config_error, link};

    #[tokio::test]
    async fn generates_an_id_for_the_upstream_and_the_response() {
        let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
        let (resp, _) = run(vec![link("request_id", json!({}))], get("/"), &upstream).await;
        let answered = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        text(resp).await;
        let sent = upstream.last().headers["x-request-id"].clone();
        assert_eq!(sent, answered.as_str());
        let parsed = uuid::Uuid::parse_str(&answered).unwrap();
        assert_eq!(parsed.get_version_num(), 4);

        let (resp, _) = run(vec![link("request_id", json!({}))], get("/"), &upstream).await;
        assert_ne!(
            resp.headers()["x-request-id"],
            answered.as_str(),
            "ids differ"
        );
    }

    #[tokio::test]
    async fn propagates_an_incoming_id_unless_told_to_overwrite() {
        let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
        let with_id = || {
            let mut req = get("/");
            req.headers_mut()
                .insert("trace-id", "abc-123".parse().unwrap());
            req
        };
        let plugin = || link("request_id", json!({"header": "Trace-Id"}));
        let (resp, _) = run(vec![plugin()], with_id(), &upstream).await;
        assert_eq!(resp.headers()["trace-id"], "abc-123");
        assert_eq!(upstream.last().headers["trace-id"], "abc-123");

        let plugin = link(
            "request_id",
            json!({"header": "Trace-Id", "overwrite": true}),
        );
        let (resp, _) = run(vec![plugin], with_id(), &upstream).await;
        assert_ne!(resp.headers()["trace-id"], "abc-123");
        assert_eq!(
            upstream.last().headers["trace-id"],
            resp.headers()["trace-id"]
        );
    }

    #[tokio::test]
    async fn an_oversized_incoming_id_is_replaced() {
        let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
        let mut req = get("/");
        let long = "x".repeat(super::MAX_INCOMING_LEN + 1);
        req.headers_mut()
            .insert("x-request-id", long.parse().unwrap());
        let (resp, _) = run(vec![link("request_id", json!({}))], req, &upstream).await;
        assert_eq!(resp.headers()["x-request-id"].len(), 36);
    }

    #[test]
    fn config_errors_name_the_field() {
        assert!(config_error("request_id", json!({"header": "bad header"})).starts_with("header:"));
        assert!(config_error("request_id", json!({"overwrite": "yes"})).starts_with("overwrite:"));
        assert!(config_error("request_id", json!({"generate": true})).contains("generate"));
    }
}
