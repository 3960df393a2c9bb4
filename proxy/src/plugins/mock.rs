//! `mock`: answers every request itself with a configured status, headers and body, after an
//! optional delay. The upstream is never called. See `docs/plugins/mock.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, request, HeaderMap, HeaderValue, Response, StatusCode};
use serde::Deserialize;

use super::header_config;
use crate::plugin::{
    respond, BuildEnv, Ctx, Flow, Hook, Phases, Plugin, PluginError, PluginFactory,
};
use hookway_crds::catalogue::PluginConfig;

/// The `mock` plugin kind.
pub struct Mock;

/// `mock` config.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockConfig {
    /// Status answered (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body (text).
    #[serde(default)]
    pub body: String,
    /// Wait this long before answering (`500ms`, `2s`).
    #[serde(default)]
    pub delay: Option<String>,
    /// Answer only this share of the requests, spread evenly (`{numerator, denominator}`); the
    /// others pass on. Absent: every request.
    #[serde(default)]
    pub share: Option<Share>,
}

/// `numerator / denominator` of the requests.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// Answered out of every `denominator` requests.
    pub numerator: u64,
    /// The cycle length (> 0, ≥ `numerator`).
    pub denominator: u64,
}

fn default_status() -> u16 {
    200
}

impl PluginConfig for MockConfig {
    fn validate(&self) -> Result<(), String> {
        MockPlugin::new(self).map(drop)
    }
}

/// A running `mock`: everything pre-built.
pub struct MockPlugin {
    share: Option<(Share, std::sync::atomic::AtomicU64)>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    delay: Option<Duration>,
}

impl MockPlugin {
    fn new(config: &MockConfig) -> Result<Self, String> {
        let status = StatusCode::from_u16(config.status)
            .ok()
            .filter(|s| (200..=599).contains(&s.as_u16()))
            .ok_or_else(|| format!("status: {} is not between 200 and 599", config.status))?;
        let mut headers = HeaderMap::new();
        for (name, value) in header_config::pairs("headers", &config.headers)? {
            headers.append(name, value);
        }
        if !config.body.is_empty() && !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        let delay = config
            .delay
            .as_deref()
            .map(hookway_crds::duration::parse)
            .transpose()
            .map_err(|e| format!("delay: {e}"))?;
        if let Some(s) = config.share {
            if s.denominator == 0 || s.numerator > s.denominator {
                return Err(format!(
                    "share: {}/{} is not a fraction between 0 and 1",
                    s.numerator, s.denominator
                ));
            }
        }
        Ok(Self {
            share: config
                .share
                .map(|s| (s, std::sync::atomic::AtomicU64::new(0))),
            status,
            headers,
            body: Bytes::from(config.body.clone()),
            delay,
        })
    }

    /// Whether this request is in the answered share: request `n` is when
    /// `⌊(n+1)·num/den⌋ > ⌊n·num/den⌋`, so every `den` requests exactly `num` are, evenly spread.
    fn selected(&self) -> bool {
        let Some((share, counter)) = &self.share else {
            return true;
        };
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % share.denominator;
        (n + 1) * share.numerator / share.denominator > n * share.numerator / share.denominator
    }

    fn answer(&self) -> Response<crate::plugin::ProxyBody> {
        let mut resp = Response::new(respond::full(self.body.clone()));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers.clone();
        resp
    }
}

impl PluginFactory for Mock {
    const NAME: &'static str = "mock";
    type Config = MockConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: MockConfig, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(MockPlugin::new(&config)?))
    }
}

impl Plugin for MockPlugin {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn on_request<'a>(
        &'a self,
        _req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if !self.selected() {
            return Hook::Ready(Ok(Flow::Continue));
        }
        match self.delay {
            None => Hook::Ready(Ok(Flow::Respond(self.answer()))),
            Some(delay) => Hook::from_async(async move {
                tokio::time::sleep(delay).await;
                Ok(Flow::Respond(self.answer()))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    #[test]
    fn share_answers_exactly_numerator_of_every_denominator() {
        for (num, den) in [(0, 4), (1, 4), (3, 10), (7, 7)] {
            let plugin = super::MockPlugin::new(
                &serde_json::from_value(json!({
                    "status": 500, "share": {"numerator": num, "denominator": den}
                }))
                .unwrap(),
            )
            .unwrap();
            let answered = (0..den * 3).filter(|_| plugin.selected()).count() as u64;
            assert_eq!(answered, num * 3, "{num}/{den}");
        }
        assert!(super::MockPlugin::new(
            &serde_json::from_value(json!({"share": {"numerator": 2, "denominator": 1}})).unwrap()
        )
        .is_err());
    }

    use serde_json::json;

    use crate::chain::tests::{get, run, text, Answer, TestUpstream};
    use crate::plugins::testing::{config_error, link};

    #[tokio::test]
    async fn answers_with_the_configured_response_without_the_upstream() {
        let mock = link(
            "mock",
            json!({"status": 201, "headers": {"X-Mock": "yes", "Content-Type": "application/json"},
                   "body": "{\"ok\":true}"}),
        );
        let upstream = TestUpstream::new(Answer::Stream(vec!["upstream"]));
        let (resp, _) = run(vec![mock], get("/"), &upstream).await;
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-mock"], "yes");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(text(resp).await, "{\"ok\":true}");
        assert_eq!(upstream.calls(), 0);
    }

    #[tokio::test]
    async fn defaults_to_200_and_plain_text() {
        let upstream = TestUpstream::new(Answer::Stream(vec![]));
        let (resp, _) = run(
            vec![link("mock", json!({"body": "hi"}))],
            get("/"),
            &upstream,
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(text(resp).await, "hi");
    }

    #[tokio::test]
    async fn waits_for_the_delay() {
        let upstream = TestUpstream::new(Answer::Stream(vec![]));
        let started = Instant::now();
        let (resp, _) = run(
            vec![link("mock", json!({"delay": "50ms"}))],
            get("/"),
            &upstream,
        )
        .await;
        assert!(started.elapsed().as_millis() >= 50);
        assert_eq!(text(resp).await, "");
    }

    #[test]
    fn config_errors_name_the_field() {
        let table = [
            (json!({"status": 42}), "status:"),
            (json!({"headers": {"bad name": "x"}}), "headers.bad name:"),
            (json!({"headers": {"x-a": "line\nbreak"}}), "headers.x-a:"),
            (json!({"delay": "soon"}), "delay:"),
            (json!({"bdy": "x"}), "bdy"),
        ];
        for (config, expected) in table {
            let err = config_error("mock", config);
            assert!(err.contains(expected), "{err} should name {expected}");
        }
    }
}
