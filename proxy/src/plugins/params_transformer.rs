//! `params_transformer` (Apinto): copies (or, with `remove`, moves) parameters between header,
//! query and body. A missing `required` source answers 400; a missing optional source sets the
//! target to an empty string. Header and query targets get the value appended when present;
//! body targets are set (a JSON body-to-body copy keeps the JSON type).
//!
//! Header/query sources are read in the request hook; body sources and body targets are handled
//! by a buffering request body filter (limit `max_body`, 413 beyond). A body source cannot feed a
//! header or query target: the request head has been sent by the time the body is read, so
//! such a config is refused.

use std::sync::Arc;

use bytes::Bytes;
use hookway_crds::catalogue::PluginConfig;
use http::{header, request, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::params::{
    method_has_body, query_edit, query_get, value_text, Body, BodyKind, BufferedEdit, Position,
    DEFAULT_MAX_BODY,
};
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::{BodyFilter, BuildEnv, Ctx, Flow, Hook, Plugin, PluginError, PluginFactory};

const PLUGIN: &str = "params_transformer";

/// One parameter to copy.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Source name (JSON path for JSON bodies).
    pub name: String,
    /// Source position.
    pub position: Position,
    /// Target name.
    pub proxy_name: String,
    /// Target position.
    pub proxy_position: Position,
    /// A missing source answers 400.
    #[serde(default)]
    pub required: bool,
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY
}

/// The `params_transformer` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamsTransformerConfig {
    /// Parameters, in order.
    pub params: Vec<Param>,
    /// Delete each source after copying it.
    #[serde(default)]
    pub remove: bool,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
    /// Largest request body buffered (bytes).
    #[serde(default = "default_max_body")]
    pub max_body: usize,
}

impl PluginConfig for ParamsTransformerConfig {
    fn validate(&self) -> Result<(), String> {
        if self.params.is_empty() {
            return Err("params: at least one parameter".into());
        }
        for (i, p) in self.params.iter().enumerate() {
            if p.name.is_empty() {
                return Err(format!("params[{i}].name: must not be empty"));
            }
            if p.proxy_name.is_empty() {
                return Err(format!("params[{i}].proxy_name: must not be empty"));
            }
            if p.position == Position::Header {
                HeaderName::from_bytes(p.name.as_bytes())
                    .map_err(|e| format!("params[{i}].name: {e}"))?;
            }
            match p.proxy_position {
                Position::Header => {
                    HeaderName::from_bytes(p.proxy_name.as_bytes())
                        .map_err(|e| format!("params[{i}].proxy_name: {e}"))?;
                }
                Position::Query => {}
                Position::Body if p.proxy_name.starts_with('$') => {
                    super::params::JsonPath::parse(&p.proxy_name)
                        .map_err(|e| format!("params[{i}].proxy_name: {e}"))?;
                }
                Position::Body => {}
            }
            if p.position == Position::Body && p.proxy_position != Position::Body {
                return Err(format!(
                    "params[{i}]: a body parameter can only go to the body (the request head is \
                     sent before the body is read)"
                ));
            }
        }
        if self.max_body == 0 {
            return Err("max_body: must be positive".into());
        }
        Ok(())
    }
}

/// A running `params_transformer`.
pub struct ParamsTransformer {
    params: Arc<[Param]>,
    remove: bool,
    error_type: ErrorType,
    max_body: usize,
    uses_body: bool,
}

impl PluginFactory for ParamsTransformer {
    const NAME: &'static str = PLUGIN;
    type Config = ParamsTransformerConfig;

    fn build(c: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(ParamsTransformer {
            uses_body: c
                .params
                .iter()
                .any(|p| p.position == Position::Body || p.proxy_position == Position::Body),
            params: c.params.into(),
            remove: c.remove,
            error_type: c.error_type,
            max_body: c.max_body,
        }))
    }
}

fn required_message(name: &str) -> String {
    format!("[{PLUGIN}] param {name} required")
}

/// Values read in the request hook for body targets: (param index, value).
#[derive(Clone, Default)]
struct PendingBodyValues {
    owner: usize,
    values: Vec<(usize, Value)>,
}

impl ParamsTransformer {
    fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// Header/query sources. `Err(name)` when a required one is missing.
    fn apply_head(
        &self,
        req: &mut request::Parts,
        pending: &mut Vec<(usize, Value)>,
    ) -> Result<(), String> {
        let body_ok = method_has_body(&req.method);
        for (i, p) in self.params.iter().enumerate() {
            let value = match p.position {
                Position::Header => req
                    .headers
                    .get(p.name.as_str())
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
                Position::Query => query_get(req, &p.name),
                Position::Body => continue,
            };
            let value = match value {
                Some(v) => v,
                None if p.required => return Err(p.name.clone()),
                None => String::new(),
            };
            if self.remove {
                match p.position {
                    Position::Header => {
                        req.headers.remove(p.name.as_str());
                    }
                    Position::Query => {
                        let _ = query_edit(req, |pairs| pairs.retain(|(k, _)| k != &p.name));
                    }
                    Position::Body => {}
                }
            }
            match p.proxy_position {
                Position::Header => {
                    if let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(p.proxy_name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) {
                        req.headers.append(n, v);
                    }
                }
                Position::Query => {
                    let _ = query_edit(req, |pairs| pairs.push((p.proxy_name.clone(), value)));
                }
                Position::Body if body_ok => pending.push((i, Value::String(value))),
                Position::Body => {}
            }
        }
        Ok(())
    }
}

fn apply_body(
    params: &[Param],
    remove: bool,
    pending: Vec<(usize, Value)>,
    kind: &BodyKind,
    bytes: Bytes,
) -> Result<Bytes, PluginError> {
    let bad =
        |m: String| PluginError::with_status(StatusCode::BAD_REQUEST, format!("[{PLUGIN}] {m}"));
    let mut body = Body::parse(kind, &bytes).map_err(bad)?;
    let mut pending = pending.into_iter().peekable();
    for (i, p) in params.iter().enumerate() {
        let value = if p.position == Position::Body {
            match body.get(&p.name) {
                Some(v) => {
                    if remove {
                        body.remove(&p.name);
                    }
                    v
                }
                None if p.required => {
                    return Err(PluginError::with_status(
                        StatusCode::BAD_REQUEST,
                        required_message(&p.name),
                    ))
                }
                None => Value::String(String::new()),
            }
        } else if pending.peek().is_some_and(|(j, _)| *j == i) {
            pending.next().map(|(_, v)| v).unwrap_or_default()
        } else {
            continue;
        };
        if p.proxy_position == Position::Body {
            // Forms hold text; JSON keeps the type of a body-to-body copy.
            let value = match (&body, value) {
                (Body::Json(_), v) => v,
                (_, v) => Value::String(value_text(&v)),
            };
            body.set(&p.proxy_name, value).map_err(bad)?;
        }
    }
    Ok(body.to_bytes())
}

impl Plugin for ParamsTransformer {
    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        let mut pending = Vec::new();
        if let Err(name) = self.apply_head(req, &mut pending) {
            return Hook::Ready(Ok(Flow::Respond(respond::error(
                StatusCode::BAD_REQUEST,
                &required_message(&name),
                self.error_type,
            ))));
        }
        if self.uses_body && method_has_body(&req.method) {
            if BodyKind::of(req.headers.get(header::CONTENT_TYPE)).is_none() {
                return Hook::Ready(Ok(Flow::Respond(respond::error(
                    StatusCode::BAD_REQUEST,
                    &format!("[{PLUGIN}] unsupported content type for body parameters"),
                    self.error_type,
                ))));
            }
            ctx.extensions.insert(PendingBodyValues {
                owner: self.id(),
                values: pending,
            });
        }
        Hook::Ready(Ok(Flow::Continue))
    }

    fn request_body_filter(
        &self,
        req: &request::Parts,
        ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        if !self.uses_body || !method_has_body(&req.method) {
            return None;
        }
        let kind = BodyKind::of(req.headers.get(header::CONTENT_TYPE))?;
        let pending = match ctx.extensions.remove::<PendingBodyValues>() {
            Some(p) if p.owner == self.id() => p.values,
            Some(other) => {
                ctx.extensions.insert(other);
                Vec::new()
            }
            None => Vec::new(),
        };
        let params = Arc::clone(&self.params);
        let remove = self.remove;
        Some(Box::new(BufferedEdit::new(
            PLUGIN,
            self.max_body,
            Box::new(move |bytes| apply_body(&params, remove, pending, &kind, bytes)),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::{
        body_of, build, concat, ctx, drive, on_request, request, validate,
    };
    use serde_json::json;

    #[tokio::test]
    async fn header_to_query_and_header_with_remove() {
        let plugin = build(PLUGIN, json!({"params": [
            {"name": "x-token", "position": "header", "proxy_name": "token", "proxy_position": "query"},
            {"name": "lang", "position": "query", "proxy_name": "x-lang", "proxy_position": "header"}],
            "remove": true})).unwrap();
        let mut req = request(
            "GET",
            "/p?lang=de&a=1",
            &[("x-token", "t1"), ("x-lang", "en")],
        );
        let flow = on_request(plugin.as_ref(), &mut req, &mut ctx())
            .await
            .unwrap();
        assert!(matches!(flow, Flow::Continue));
        assert_eq!(req.uri, "/p?a=1&token=t1");
        assert!(req.headers.get("x-token").is_none());
        let langs: Vec<_> = req.headers.get_all("x-lang").iter().collect();
        assert_eq!(langs, ["en", "de"], "header target appended");
    }

    #[tokio::test]
    async fn missing_required_answers_400_and_optional_sets_empty() {
        let plugin = build(PLUGIN, json!({"params": [
            {"name": "x-a", "position": "header", "proxy_name": "a", "proxy_position": "query"},
            {"name": "x-b", "position": "header", "proxy_name": "b", "proxy_position": "query", "required": true}],
            "error_type": "json"})).unwrap();
        let mut req = request("GET", "/", &[("x-b", "1")]);
        on_request(plugin.as_ref(), &mut req, &mut ctx())
            .await
            .unwrap();
        assert_eq!(req.uri, "/?a=&b=1");
        let mut req = request("GET", "/", &[]);
        let Flow::Respond(resp) = on_request(plugin.as_ref(), &mut req, &mut ctx())
            .await
            .unwrap()
        else {
            panic!("expected 400")
        };
        let (parts, body) = body_of(resp).await;
        assert_eq!(parts.status, 400);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["message"],
            "[params_transformer] param x-b required"
        );
    }

    #[tokio::test]
    async fn json_body_to_body_keeps_types_and_header_to_body() {
        let plugin = build(PLUGIN, json!({"params": [
            {"name": "$.user.id", "position": "body", "proxy_name": "$.uid", "proxy_position": "body"},
            {"name": "x-tenant", "position": "header", "proxy_name": "$.tenant", "proxy_position": "body"}],
            "remove": true})).unwrap();
        let mut req = request(
            "POST",
            "/",
            &[("content-type", "application/json"), ("x-tenant", "acme")],
        );
        let mut ctx = ctx();
        on_request(plugin.as_ref(), &mut req, &mut ctx)
            .await
            .unwrap();
        let mut filter = plugin.request_body_filter(&req, &mut ctx).unwrap();
        let out = concat(&drive(filter.as_mut(), &[b"{\"user\":{\"id\":42}}"]).unwrap());
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"user": {}, "uid": 42, "tenant": "acme"})
        );
    }

    #[tokio::test]
    async fn missing_required_body_source_fails_with_400() {
        let plugin = build(PLUGIN, json!({"params": [
            {"name": "a", "position": "body", "proxy_name": "b", "proxy_position": "body", "required": true}]})).unwrap();
        let mut req = request(
            "POST",
            "/",
            &[("content-type", "application/x-www-form-urlencoded")],
        );
        let mut ctx = ctx();
        on_request(plugin.as_ref(), &mut req, &mut ctx)
            .await
            .unwrap();
        let mut filter = plugin.request_body_filter(&req, &mut ctx).unwrap();
        let err = drive(filter.as_mut(), &[b"c=1"]).unwrap_err();
        assert_eq!(
            (err.status.as_u16(), err.message.as_str()),
            (400, "[params_transformer] param a required")
        );
        let mut filter = plugin.request_body_filter(&req, &mut ctx).unwrap();
        assert_eq!(
            concat(&drive(filter.as_mut(), &[b"a=1"]).unwrap()),
            b"a=1&b=1"
        );
    }

    #[test]
    fn config_errors_are_reported() {
        for (config, needle) in [
            (json!({"params": []}), "at least one"),
            (
                json!({"params": [{"name": "a", "position": "body", "proxy_name": "x", "proxy_position": "header"}]}),
                "only go to the body",
            ),
            (
                json!({"params": [{"name": "a", "position": "query", "proxy_name": "a b", "proxy_position": "header"}]}),
                "proxy_name",
            ),
            (
                json!({"params": [{"name": "a", "position": "query", "proxy_name": "", "proxy_position": "query"}]}),
                "proxy_name",
            ),
            (
                json!({"params": [{"name": "a", "position": "query", "proxy_name": "b", "proxy_position": "query", "copy": true}]}),
                "unknown field",
            ),
        ] {
            let err = validate(PLUGIN, config.clone()).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }
}
