//! Request parameters for `extra_params` and `params_transformer`: where a parameter lives
//! (header, query, body), the request bodies they understand (form, multipart, JSON) and the
//! buffering request body filter that edits a whole body with a size limit.

pub mod json_path;
pub mod multipart;

use bytes::{Bytes, BytesMut};
use http::{request, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::plugin::{BodyFilter, PluginError};
pub use json_path::JsonPath;
pub use multipart::Multipart;

/// Largest request body the parameter plugins buffer by default (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Where a parameter lives.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// A request header.
    Header,
    /// A query-string parameter.
    Query,
    /// A body field (form, multipart) or JSON path.
    Body,
}

/// Reads the query parameter `name`.
pub fn query_get(req: &request::Parts, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Rewrites the query string with `edit` applied to its pairs.
pub fn query_edit(
    req: &mut request::Parts,
    edit: impl FnOnce(&mut Vec<(String, String)>),
) -> Result<(), String> {
    let mut pairs: Vec<(String, String)> = req
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    edit(&mut pairs);
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish();
    let pq = if query.is_empty() {
        req.uri.path().to_string()
    } else {
        format!("{}?{query}", req.uri.path())
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|e| format!("query: {e}"))?);
    req.uri = http::Uri::from_parts(parts).map_err(|e| format!("query: {e}"))?;
    Ok(())
}

/// The body kinds the parameter plugins edit, from the request's Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `multipart/form-data` with its boundary.
    Multipart(String),
    /// `application/json` (and `+json`).
    Json,
}

impl BodyKind {
    /// The kind for a Content-Type, or `None` when it is not one of the three.
    pub fn of(content_type: Option<&http::HeaderValue>) -> Option<Self> {
        let ct = content_type?.to_str().ok()?;
        let mime: mime::Mime = ct.parse().ok()?;
        match (mime.type_(), mime.subtype()) {
            (mime::APPLICATION, mime::WWW_FORM_URLENCODED) => Some(BodyKind::Form),
            (mime::MULTIPART, mime::FORM_DATA) => mime
                .get_param(mime::BOUNDARY)
                .map(|b| BodyKind::Multipart(b.as_str().to_string())),
            (mime::APPLICATION, mime::JSON) => Some(BodyKind::Json),
            (mime::APPLICATION, _) if mime.suffix() == Some(mime::JSON) => Some(BodyKind::Json),
            _ => None,
        }
    }
}

/// A parsed request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// Form pairs in order.
    Form(Vec<(String, String)>),
    /// Multipart parts.
    Multipart(Multipart),
    /// A JSON document (an empty body counts as `{}`).
    Json(Value),
}

impl Body {
    /// Parses `bytes` as `kind`.
    pub fn parse(kind: &BodyKind, bytes: &Bytes) -> Result<Self, String> {
        Ok(match kind {
            BodyKind::Form => Body::Form(form_urlencoded::parse(bytes).into_owned().collect()),
            BodyKind::Multipart(b) => Body::Multipart(Multipart::parse(bytes, b)?),
            BodyKind::Json if bytes.iter().all(u8::is_ascii_whitespace) => {
                Body::Json(Value::Object(Default::default()))
            }
            BodyKind::Json => {
                Body::Json(serde_json::from_slice(bytes).map_err(|e| format!("JSON body: {e}"))?)
            }
        })
    }

    /// The value named `name` (a JSON path for JSON bodies). Form values are strings.
    pub fn get(&self, name: &str) -> Option<Value> {
        match self {
            Body::Form(pairs) => pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| Value::String(v.clone())),
            Body::Multipart(m) => m.get(name).map(Value::String),
            Body::Json(v) => JsonPath::parse(name).ok()?.get(v).cloned(),
        }
    }

    /// Sets `name` to `value` (replacing every existing value).
    pub fn set(&mut self, name: &str, value: Value) -> Result<(), String> {
        match self {
            Body::Form(pairs) => {
                pairs.retain(|(k, _)| k != name);
                pairs.push((name.to_string(), value_text(&value)));
            }
            Body::Multipart(m) => m.set(name, &value_text(&value)),
            Body::Json(v) => JsonPath::parse(name)?.set(v, value)?,
        }
        Ok(())
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        match self {
            Body::Form(pairs) => pairs.retain(|(k, _)| k != name),
            Body::Multipart(m) => m.remove(name),
            Body::Json(v) => {
                if let Ok(p) = JsonPath::parse(name) {
                    p.remove(v);
                }
            }
        }
    }

    /// The body bytes.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Body::Form(pairs) => Bytes::from(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs.iter())
                    .finish(),
            ),
            Body::Multipart(m) => m.to_bytes(),
            Body::Json(v) => Bytes::from(v.to_string()),
        }
    }
}

/// A value as text for headers, queries and forms (strings unquoted, others as JSON).
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The edit applied to a whole request body once it is buffered.
pub type BodyEdit = Box<dyn FnOnce(Bytes) -> Result<Bytes, PluginError> + Send>;

/// Buffers a request body up to `limit` bytes (413 beyond), then hands it to `edit` and emits
/// the result.
pub struct BufferedEdit {
    buf: BytesMut,
    limit: usize,
    plugin: &'static str,
    edit: Option<BodyEdit>,
}

impl BufferedEdit {
    /// A filter for plugin `plugin` (named in the 413 message).
    pub fn new(plugin: &'static str, limit: usize, edit: BodyEdit) -> Self {
        Self {
            buf: BytesMut::new(),
            limit,
            plugin,
            edit: Some(edit),
        }
    }
}

impl BodyFilter for BufferedEdit {
    fn on_chunk(&mut self, chunk: Bytes) -> Result<Bytes, PluginError> {
        if self.buf.len() + chunk.len() > self.limit {
            return Err(PluginError::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "[{}] request body larger than {} bytes",
                    self.plugin, self.limit
                ),
            ));
        }
        self.buf.extend_from_slice(&chunk);
        Ok(Bytes::new())
    }

    fn on_end(&mut self) -> Result<Option<Bytes>, PluginError> {
        let body = std::mem::take(&mut self.buf).freeze();
        match self.edit.take() {
            Some(edit) => edit(body).map(Some),
            None => Ok(Some(body)),
        }
    }
}

/// Whether `method` carries a body the parameter plugins edit.
pub fn method_has_body(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    )
}
