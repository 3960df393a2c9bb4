//! `headers`: adds, sets, removes and renames request and response headers. Names and values
//! are parsed when the config is built, so nothing can fail per request.
//! See `docs/plugins/headers.md`.
//!
//! Per side, the operations apply in this order: `rename`, `remove`, `set`, `add`.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{request, response, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::header_config;
use crate::plugin::{
    BuildEnv, Ctx, Flow, Hook, HookResult, Phases, Plugin, PluginError, PluginFactory,
};
use hookway_crds::catalogue::PluginConfig;

/// The `headers` plugin kind.
pub struct Headers;

/// `headers` config.
#[derive(Deserialize, Debug, Clone, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadersConfig {
    /// Changes to the request sent upstream.
    #[serde(default)]
    pub request: HeaderOpsConfig,
    /// Changes to the response sent to the client.
    #[serde(default)]
    pub response: HeaderOpsConfig,
}

/// The operations on one side.
#[derive(Deserialize, Debug, Clone, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderOpsConfig {
    /// Appended (existing values of the same name are kept).
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Replace every existing value of the name.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Deleted.
    #[serde(default)]
    pub remove: Vec<String>,
    /// `from: to`: every value of `from` moves to `to` (replacing `to`'s values).
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

impl PluginConfig for HeadersConfig {
    fn validate(&self) -> Result<(), String> {
        HeadersPlugin::new(self).map(drop)
    }
}

/// Pre-parsed operations for one side.
#[derive(Debug, Default)]
struct HeaderOps {
    rename: Vec<(HeaderName, HeaderName)>,
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    fn new(side: &str, config: &HeaderOpsConfig) -> Result<Self, String> {
        let mut rename = Vec::new();
        for (from, to) in &config.rename {
            let at = format!("{side}.rename.{from}");
            let (from, to) = (
                header_config::name(&at, from)?,
                header_config::name(&at, to)?,
            );
            if from == to {
                return Err(format!("{at}: renames a header to itself"));
            }
            rename.push((from, to));
        }
        let remove = config
            .remove
            .iter()
            .enumerate()
            .map(|(i, n)| header_config::name(&format!("{side}.remove[{i}]"), n))
            .collect::<Result<Vec<_>, _>>()?;
        let set = header_config::pairs(&format!("{side}.set"), &config.set)?;
        let add = header_config::pairs(&format!("{side}.add"), &config.add)?;
        // Conflicts that would make one operation undo another.
        for (name, _) in set.iter().chain(&add) {
            if remove.contains(name) {
                return Err(format!("{side}.remove: {name} is also set or added"));
            }
        }
        for (name, _) in &set {
            if add.iter().any(|(n, _)| n == name) {
                return Err(format!("{side}.add: {name} is also set"));
            }
        }
        for (from, to) in &rename {
            if remove.contains(to) || set.iter().any(|(n, _)| n == to) {
                return Err(format!(
                    "{side}.rename.{from}: target {to} is also removed or set"
                ));
            }
        }
        Ok(Self {
            rename,
            remove,
            set,
            add,
        })
    }

    /// Whether any operation names a hop-by-hop field or `Host`.
    fn touches_hop_by_hop(&self) -> bool {
        let renamed = self.rename.iter().flat_map(|(from, to)| [from, to]);
        let set = self.set.iter().chain(&self.add).map(|(name, _)| name);
        renamed
            .chain(&self.remove)
            .chain(set)
            .any(header_config::is_hop_by_hop_or_host)
    }

    fn is_empty(&self) -> bool {
        self.rename.is_empty()
            && self.remove.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    fn apply(&self, headers: &mut HeaderMap) {
        for (from, to) in &self.rename {
            rename(headers, from, to);
        }
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

fn rename(headers: &mut HeaderMap, from: &HeaderName, to: &HeaderName) {
    let mut values = headers.get_all(from).iter();
    match (values.next(), values.next()) {
        (None, _) => {}
        (Some(_), None) => {
            if let Some(value) = headers.remove(from) {
                headers.insert(to.clone(), value);
            }
        }
        _ => {
            // Several values: keep them all, in order (rare, so the copy is fine).
            let values: Vec<HeaderValue> = headers.get_all(from).iter().cloned().collect();
            headers.remove(from);
            headers.remove(to);
            for value in values {
                headers.append(to.clone(), value);
            }
        }
    }
}

/// A running `headers`.
#[derive(Debug)]
pub struct HeadersPlugin {
    request: HeaderOps,
    response: HeaderOps,
    /// Whether the request operations leave hop-by-hop fields and `Host` alone.
    keeps_hop_by_hop: bool,
}

impl HeadersPlugin {
    fn new(config: &HeadersConfig) -> Result<Self, String> {
        let request = HeaderOps::new("request", &config.request)?;
        let plugin = Self {
            keeps_hop_by_hop: !request.touches_hop_by_hop(),
            request,
            response: HeaderOps::new("response", &config.response)?,
        };
        if plugin.request.is_empty() && plugin.response.is_empty() {
            return Err("request, response: nothing to do (give at least one operation)".into());
        }
        Ok(plugin)
    }
}

impl PluginFactory for Headers {
    const NAME: &'static str = "headers";
    type Config = HeadersConfig;
    const PHASES: Phases = Phases::HEADS;

    fn build(config: HeadersConfig, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(HeadersPlugin::new(&config)?))
    }
}

impl Plugin for HeadersPlugin {
    fn phases(&self) -> Phases {
        Phases::HEADS
    }

    fn keeps_hop_by_hop(&self) -> bool {
        self.keeps_hop_by_hop
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        self.request.apply(&mut req.headers);
        Hook::Ready(Ok(Flow::Continue))
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        self.response.apply(&mut resp.headers);
        Hook::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::chain::tests::{get, run, text, Answer, TestUpstream};
    use crate::plugins::testing::{config_error, link};

    fn values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn changes_request_and_response_headers() {
        let plugin = link(
            "headers",
            json!({
                "request": {
                    "add": {"X-Tag": "b"},
                    "set": {"X-Env": "prod"},
                    "remove": ["X-Debug"],
                    "rename": {"X-Old": "X-New"}
                },
                "response": {"set": {"Server": "hookway"}, "remove": ["X-Powered-By"]}
            }),
        );
        let upstream = TestUpstream::new(Answer::Stream(vec!["ok"]));
        let mut req = get("/");
        for (name, value) in [
            ("x-tag", "a"),
            ("x-env", "dev"),
            ("x-env", "test"),
            ("x-debug", "1"),
            ("x-old", "1"),
            ("x-old", "2"),
        ] {
            req.headers_mut().append(name, value.parse().unwrap());
        }
        let (resp, _) = run(vec![plugin], req, &upstream).await;
        assert_eq!(resp.headers()["server"], "hookway");
        text(resp).await;
        let sent = upstream.last().headers;
        assert_eq!(values(&sent, "x-tag"), ["a", "b"]);
        assert_eq!(values(&sent, "x-env"), ["prod"]);
        assert!(sent.get("x-debug").is_none());
        assert!(sent.get("x-old").is_none());
        assert_eq!(values(&sent, "x-new"), ["1", "2"]);
    }

    #[test]
    fn keeps_hop_by_hop_unless_a_request_operation_names_one() {
        let keeps = |config| {
            crate::plugins::testing::link("headers", config)
                .plugin
                .keeps_hop_by_hop()
        };
        assert!(keeps(
            json!({"request": {"set": {"x-env": "a"}, "add": {"x-b": "b"},
            "remove": ["x-c"], "rename": {"x-d": "x-e"}}})
        ));
        // The response side does not matter.
        assert!(keeps(json!({"response": {"set": {"connection": "close"}}})));
        for request in [
            json!({"set": {"Host": "other"}}),
            json!({"add": {"connection": "x-env"}}),
            json!({"remove": ["TE"]}),
            json!({"rename": {"upgrade": "x-upgrade"}}),
            json!({"rename": {"x-old": "transfer-encoding"}}),
            json!({"set": {"proxy-connection": "keep-alive"}}),
        ] {
            assert!(!keeps(json!({ "request": request })), "{request}");
        }
    }

    #[test]
    fn config_errors_name_the_field() {
        let table = [
            (
                json!({"request": {"set": {"bad name": "x"}}}),
                "request.set.bad name:",
            ),
            (
                json!({"response": {"add": {"x-a": "\u{7}"}}}),
                "response.add.x-a:",
            ),
            (
                json!({"request": {"remove": ["ok", "b@d"]}}),
                "request.remove[1]:",
            ),
            (
                json!({"request": {"rename": {"x-a": "x-a"}}}),
                "request.rename.x-a:",
            ),
            (
                json!({"request": {"set": {"x-a": "1"}, "remove": ["X-A"]}}),
                "request.remove:",
            ),
            (
                json!({"request": {"set": {"X-A": "1", "x-a": "2"}}}),
                "twice",
            ),
            (json!({"request": {"append": {}}}), "append"),
            (json!({}), "nothing to do"),
        ];
        for (config, expected) in table {
            let err = config_error("headers", config);
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }
}
