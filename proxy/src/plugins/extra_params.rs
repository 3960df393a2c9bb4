//! `extra_params` (Apinto): adds parameters to the request — headers, query parameters and
//! body fields (form, multipart, JSON path) — with a rule for parameters the client already
//! sent: `convert` overwrites, `origin` keeps the client's value, `error` answers 400.
//!
//! Header and query parameters are applied in the request hook; body parameters (POST, PUT,
//! PATCH) by a buffering request body filter limited to `max_body` bytes (413 beyond).

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

const PLUGIN: &str = "extra_params";

/// What to do when the client already sent the parameter.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Conflict {
    /// Overwrite the client's value (default).
    #[default]
    Convert,
    /// Keep the client's value.
    Origin,
    /// Answer 400.
    Error,
}

/// One parameter to add.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Header name, query name, form field or JSON path (`$.a.b`) for JSON bodies.
    pub name: String,
    /// Where it goes.
    pub position: Position,
    /// The value: a string (any JSON value for JSON bodies; scalars elsewhere are written as
    /// text).
    pub value: Value,
    /// The rule when the client sent it too.
    #[serde(default)]
    pub conflict: Conflict,
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY
}

/// The `extra_params` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtraParamsConfig {
    /// Parameters, applied in order.
    pub params: Vec<Param>,
    /// `text` or `json` error answers.
    #[serde(default)]
    pub error_type: ErrorType,
    /// Largest request body buffered for body parameters (bytes).
    #[serde(default = "default_max_body")]
    pub max_body: usize,
}

impl PluginConfig for ExtraParamsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.params.is_empty() {
            return Err("params: at least one parameter".into());
        }
        for (i, p) in self.params.iter().enumerate() {
            if p.name.is_empty() {
                return Err(format!("params[{i}].name: must not be empty"));
            }
            match p.position {
                Position::Header => {
                    HeaderName::from_bytes(p.name.as_bytes())
                        .map_err(|e| format!("params[{i}].name: {e}"))?;
                    if !p.value.is_string() && !p.value.is_number() && !p.value.is_boolean() {
                        return Err(format!("params[{i}].value: headers take text"));
                    }
                    HeaderValue::from_str(&value_text(&p.value))
                        .map_err(|e| format!("params[{i}].value: {e}"))?;
                }
                Position::Query if p.value.is_object() || p.value.is_array() => {
                    return Err(format!("params[{i}].value: query parameters take text"));
                }
                Position::Query => {}
                Position::Body => {
                    if p.name.starts_with('$') {
                        super::params::JsonPath::parse(&p.name)
                            .map_err(|e| format!("params[{i}].name: {e}"))?;
                    }
                }
            }
        }
        if self.max_body == 0 {
            return Err("max_body: must be positive".into());
        }
        Ok(())
    }
}

/// A running `extra_params`.
pub struct ExtraParams {
    params: Arc<[Param]>,
    has_body_params: bool,
    error_type: ErrorType,
    max_body: usize,
}

impl PluginFactory for ExtraParams {
    const NAME: &'static str = PLUGIN;
    type Config = ExtraParamsConfig;

    fn build(c: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(ExtraParams {
            has_body_params: c.params.iter().any(|p| p.position == Position::Body),
            params: c.params.into(),
            error_type: c.error_type,
            max_body: c.max_body,
        }))
    }
}

fn conflict_message(name: &str) -> String {
    format!("[{PLUGIN}] \"{name}\" has a conflict.")
}

impl ExtraParams {
    /// Header and query parameters; `Err(name)` on an `error` conflict.
    fn apply_head(&self, req: &mut request::Parts) -> Result<(), String> {
        for p in self.params.iter() {
            match p.position {
                Position::Header => {
                    let present = req.headers.contains_key(p.name.as_str());
                    if present && p.conflict == Conflict::Error {
                        return Err(p.name.clone());
                    }
                    if present && p.conflict == Conflict::Origin {
                        continue;
                    }
                    // Checked at config time.
                    if let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(p.name.as_bytes()),
                        HeaderValue::from_str(&value_text(&p.value)),
                    ) {
                        req.headers.insert(n, v);
                    }
                }
                Position::Query => {
                    let present = query_get(req, &p.name).is_some();
                    if present && p.conflict == Conflict::Error {
                        return Err(p.name.clone());
                    }
                    if present && p.conflict == Conflict::Origin {
                        continue;
                    }
                    let value = value_text(&p.value);
                    if let Err(e) = query_edit(req, |pairs| {
                        pairs.retain(|(k, _)| k != &p.name);
                        pairs.push((p.name.clone(), value));
                    }) {
                        tracing::debug!(error = %e, "extra_params: query not rewritten");
                    }
                }
                Position::Body => {}
            }
        }
        Ok(())
    }
}

/// Applies the body parameters to a buffered body.
fn apply_body(params: &[Param], kind: &BodyKind, bytes: Bytes) -> Result<Bytes, PluginError> {
    let bad =
        |m: String| PluginError::with_status(StatusCode::BAD_REQUEST, format!("[{PLUGIN}] {m}"));
    let mut body = Body::parse(kind, &bytes).map_err(bad)?;
    for p in params.iter().filter(|p| p.position == Position::Body) {
        let present = body.get(&p.name).is_some();
        match (present, p.conflict) {
            (true, Conflict::Error) => {
                return Err(PluginError::with_status(
                    StatusCode::BAD_REQUEST,
                    conflict_message(&p.name),
                ))
            }
            (true, Conflict::Origin) => continue,
            _ => body.set(&p.name, p.value.clone()).map_err(bad)?,
        }
    }
    Ok(body.to_bytes())
}

impl Plugin for ExtraParams {
    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        _ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if let Err(name) = self.apply_head(req) {
            return Hook::Ready(Ok(Flow::Respond(respond::error(
                StatusCode::BAD_REQUEST,
                &conflict_message(&name),
                self.error_type,
            ))));
        }
        if self.has_body_params
            && method_has_body(&req.method)
            && BodyKind::of(req.headers.get(header::CONTENT_TYPE)).is_none()
        {
            let ct = req
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            return Hook::Ready(Ok(Flow::Respond(respond::error(
                StatusCode::BAD_REQUEST,
                &format!("[{PLUGIN}] unsupported content type {ct:?} for body parameters"),
                self.error_type,
            ))));
        }
        Hook::Ready(Ok(Flow::Continue))
    }

    fn request_body_filter(
        &self,
        req: &request::Parts,
        _ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        if !self.has_body_params || !method_has_body(&req.method) {
            return None;
        }
        let kind = BodyKind::of(req.headers.get(header::CONTENT_TYPE))?;
        let params = Arc::clone(&self.params);
        Some(Box::new(BufferedEdit::new(
            PLUGIN,
            self.max_body,
            Box::new(move |bytes| apply_body(&params, &kind, bytes)),
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

    async fn head(
        config: Value,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (request::Parts, Option<(u16, String)>) {
        let plugin = build(PLUGIN, config).unwrap();
        let mut req = request("GET", uri, headers);
        let mut ctx = ctx();
        match on_request(plugin.as_ref(), &mut req, &mut ctx)
            .await
            .unwrap()
        {
            Flow::Continue => (req, None),
            Flow::Respond(resp) => {
                let (parts, body) = body_of(resp).await;
                (
                    req,
                    Some((
                        parts.status.as_u16(),
                        String::from_utf8_lossy(&body).into_owned(),
                    )),
                )
            }
        }
    }

    fn body_run(
        config: Value,
        content_type: &str,
        chunks: &[&[u8]],
    ) -> Result<Vec<u8>, PluginError> {
        let plugin = build(PLUGIN, config).unwrap();
        let req = request("POST", "/", &[("content-type", content_type)]);
        let mut filter = plugin
            .request_body_filter(&req, &mut ctx())
            .expect("filter");
        drive(filter.as_mut(), chunks).map(|out| concat(&out))
    }

    #[tokio::test]
    async fn header_conflict_modes() {
        let cfg = |conflict: &str| json!({"params": [{"name": "x-app", "position": "header", "value": "gw", "conflict": conflict}]});
        let (req, _) = head(cfg("convert"), "/", &[("x-app", "client")]).await;
        assert_eq!(req.headers["x-app"], "gw");
        let (req, _) = head(cfg("origin"), "/", &[("x-app", "client")]).await;
        assert_eq!(req.headers["x-app"], "client");
        let (req, _) = head(cfg("origin"), "/", &[]).await;
        assert_eq!(req.headers["x-app"], "gw", "absent: set");
        let (_, answer) = head(cfg("error"), "/", &[("x-app", "client")]).await;
        assert_eq!(
            answer,
            Some((400, "[extra_params] \"x-app\" has a conflict.\n".into()))
        );
        let (req, answer) = head(cfg("error"), "/", &[]).await;
        assert!(answer.is_none(), "error mode does not fail when absent");
        assert_eq!(req.headers["x-app"], "gw");
    }

    #[tokio::test]
    async fn header_names_are_case_insensitive() {
        let cfg = json!({"params": [{"name": "X-Gateway", "position": "header", "value": "hookway", "conflict": "origin"}]});
        let (req, _) = head(cfg.clone(), "/", &[("x-gateway", "client")]).await;
        assert_eq!(req.headers["x-gateway"], "client");
        let (req, _) = head(cfg, "/", &[]).await;
        assert_eq!(req.headers["x-gateway"], "hookway");
    }

    #[tokio::test]
    async fn query_params_and_json_errors() {
        let (req, _) = head(
            json!({"params": [{"name": "v", "position": "query", "value": 2}]}),
            "/p?a=1&v=1",
            &[],
        )
        .await;
        assert_eq!(req.uri, "/p?a=1&v=2");
        let (_, answer) = head(
            json!({"params": [{"name": "v", "position": "query", "value": "x", "conflict": "error"}], "error_type": "json"}),
            "/p?v=1",
            &[],
        )
        .await;
        let (status, body) = answer.unwrap();
        assert_eq!(status, 400);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"message": "[extra_params] \"v\" has a conflict.", "status_code": 400})
        );
    }

    #[test]
    fn json_body_by_path_keeps_types_and_counts_empty_as_object() {
        let cfg = json!({"params": [
            {"name": "$.meta.source", "position": "body", "value": {"gw": true}},
            {"name": "$.n", "position": "body", "value": 5, "conflict": "origin"}]});
        let out = body_run(cfg.clone(), "application/json", &[b"{\"n\":", b"1}"]).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"n": 1, "meta": {"source": {"gw": true}}})
        );
        let out = body_run(cfg, "application/json; charset=utf-8", &[]).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"n": 5, "meta": {"source": {"gw": true}}})
        );
    }

    #[test]
    fn form_and_multipart_bodies() {
        let cfg = json!({"params": [{"name": "k", "position": "body", "value": "v"}]});
        let out = body_run(
            cfg.clone(),
            "application/x-www-form-urlencoded",
            &[b"a=1&k=old"],
        )
        .unwrap();
        assert_eq!(out, b"a=1&k=v");
        let mp = b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B--\r\n";
        let out = body_run(cfg, "multipart/form-data; boundary=B", &[mp]).unwrap();
        let m = crate::plugins::params::Multipart::parse(&Bytes::from(out), "B").unwrap();
        assert_eq!(m.get("a").as_deref(), Some("1"));
        assert_eq!(m.get("k").as_deref(), Some("v"));
    }

    #[test]
    fn body_conflict_error_and_size_limit() {
        let cfg = json!({"params": [{"name": "k", "position": "body", "value": "v", "conflict": "error"}], "max_body": 16});
        let err =
            body_run(cfg.clone(), "application/x-www-form-urlencoded", &[b"k=1"]).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.message, "[extra_params] \"k\" has a conflict.");
        // Absent in error mode: set, not an error (Apinto's JSON quirk not copied).
        let out = body_run(cfg.clone(), "application/json", &[b"{}"]).unwrap();
        assert_eq!(out, b"{\"k\":\"v\"}");
        let err = body_run(
            cfg,
            "application/json",
            &[b"{\"aaaaaaaa\":", b"\"bbbbbbbbbbbb\"}"],
        )
        .unwrap_err();
        assert_eq!(err.status, 413);
    }

    #[tokio::test]
    async fn unsupported_content_type_with_body_params_is_refused() {
        let plugin = build(
            PLUGIN,
            json!({"params": [{"name": "k", "position": "body", "value": "v"}]}),
        )
        .unwrap();
        let mut req = request("POST", "/", &[("content-type", "text/plain")]);
        let flow = on_request(plugin.as_ref(), &mut req, &mut ctx())
            .await
            .unwrap();
        let Flow::Respond(resp) = flow else {
            panic!("expected an answer")
        };
        assert_eq!(resp.status(), 400);
        // GET has no body parameters to add: nothing to do.
        let mut req = request("GET", "/", &[]);
        assert!(matches!(
            on_request(plugin.as_ref(), &mut req, &mut ctx())
                .await
                .unwrap(),
            Flow::Continue
        ));
        assert!(plugin.request_body_filter(&req, &mut ctx()).is_none());
    }

    #[test]
    fn config_errors_are_reported() {
        for (config, needle) in [
            (json!({"params": []}), "at least one"),
            (
                json!({"params": [{"name": "", "position": "query", "value": "v"}]}),
                "params[0].name",
            ),
            (
                json!({"params": [{"name": "a b", "position": "header", "value": "v"}]}),
                "params[0].name",
            ),
            (
                json!({"params": [{"name": "h", "position": "header", "value": {"a": 1}}]}),
                "headers take text",
            ),
            (
                json!({"params": [{"name": "$.a[", "position": "body", "value": 1}]}),
                "unclosed",
            ),
            (
                json!({"params": [{"name": "a", "position": "cookie", "value": 1}]}),
                "position",
            ),
            (
                json!({"params": [{"name": "a", "position": "query", "value": 1, "conflict": "merge"}]}),
                "conflict",
            ),
        ] {
            let err = validate(PLUGIN, config.clone()).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }
}
