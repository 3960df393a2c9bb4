//! Building the answers plugins give: plain bodies and the Apinto error convention
//! (`error_type: text|json`, JSON body `{"message": ..., "status_code": ...}`).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use serde::{Deserialize, Serialize};

use super::ProxyBody;

/// How a plugin's error answers are written (Apinto's `error_type`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ErrorType {
    /// `text/plain` body with the message.
    #[default]
    Text,
    /// `application/json` body `{"message": M, "status_code": N}`.
    Json,
}

/// A body from bytes.
pub fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body. Boxes nothing: `Empty` and the error mapping are zero-sized, so no
/// allocation is made (the server wraps every bodiless request in one).
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response with `status` and no body.
pub fn empty_response(status: StatusCode) -> Response<ProxyBody> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    resp
}

/// A response with `status`, a `content-type` and `body`.
pub fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A short plain-text answer (`message` plus a newline).
pub fn text(status: StatusCode, message: &str) -> Response<ProxyBody> {
    with_body(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

/// An error answer in the Apinto convention.
pub fn error(status: StatusCode, message: &str, error_type: ErrorType) -> Response<ProxyBody> {
    match error_type {
        ErrorType::Text => text(status, message),
        ErrorType::Json => {
            let body = serde_json::json!({"message": message, "status_code": status.as_u16()});
            with_body(status, "application/json", body.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(resp: Response<ProxyBody>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_error_follows_apinto() {
        let resp = error(
            StatusCode::FORBIDDEN,
            "[ip_restriction] Illegal IP!",
            ErrorType::Json,
        );
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_str(&body_of(resp).await).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"message": "[ip_restriction] Illegal IP!", "status_code": 403})
        );
    }

    /// What the server and the chain rely on: an empty body says so before it is polled.
    #[tokio::test]
    async fn an_empty_body_ends_at_once_and_says_so() {
        use http_body::Body as _;
        let mut body = empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn text_error_is_the_message() {
        let resp = error(StatusCode::TOO_MANY_REQUESTS, "slow down", ErrorType::Text);
        assert_eq!(resp.status(), 429);
        assert_eq!(body_of(resp).await, "slow down\n");
    }
}
