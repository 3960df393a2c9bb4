//! LobeChat's plugin error answers: `{"body": <details>, "errorType": <type>}` with the status
//! LobeChat gives each type (chat-plugin-sdk `PluginErrorType`).

use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::plugin::{respond, ProxyBody};

/// A LobeChat plugin error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// An HTTP status used as the type (`400`, `405`, an upstream's status, ...).
    Status(StatusCode),
    /// `manifest.api[]` has no entry named `apiName`.
    PluginApiNotFound,
    /// `arguments` are not JSON or fail `api.parameters`.
    PluginApiParamsError,
    /// The market index has no plugin with this identifier.
    PluginMetaNotFound,
    /// The index entry is unusable (no manifest URL).
    PluginMetaInvalid,
    /// The market index could not be fetched.
    PluginMarketIndexNotFound,
    /// The market index is not a valid index.
    PluginMarketIndexInvalid,
    /// The manifest could not be fetched.
    PluginManifestNotFound,
    /// The manifest is not a valid manifest.
    PluginManifestInvalid,
    /// Settings are not JSON or fail `manifest.settings`.
    PluginSettingsInvalid,
    /// The plugin server could not be reached or answered unreadably.
    PluginServerError,
    /// The gateway itself failed.
    PluginGatewayError,
    /// The manifest's OpenAPI document could not be used.
    PluginOpenApiInitError,
}

impl ErrorType {
    /// The HTTP status LobeChat answers with.
    pub fn status(self) -> StatusCode {
        use ErrorType::*;
        let code = match self {
            Status(s) => return s,
            PluginApiNotFound | PluginMetaNotFound | PluginManifestNotFound => 404,
            PluginMetaInvalid | PluginMarketIndexInvalid | PluginManifestInvalid => 490,
            PluginMarketIndexNotFound => 590,
            PluginApiParamsError | PluginSettingsInvalid => 422,
            PluginServerError | PluginGatewayError | PluginOpenApiInitError => 500,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `errorType` value: the number for status types, else the name.
    pub fn json(self) -> Value {
        match self {
            ErrorType::Status(s) => json!(s.as_u16()),
            other => json!(format!("{other:?}")),
        }
    }
}

/// The error answer for `kind` with `body` details.
pub fn error_response(kind: ErrorType, body: Value) -> Response<ProxyBody> {
    let payload = json!({"body": body, "errorType": kind.json()});
    respond::with_body(kind.status(), "application/json", payload.to_string())
}

/// A gateway failure: type plus details.
#[derive(Debug)]
pub struct GatewayError {
    /// The type.
    pub kind: ErrorType,
    /// Details for `body`.
    pub body: Value,
}

impl GatewayError {
    /// A failure of `kind` with a message.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            body: json!({"message": message.into()}),
        }
    }

    /// A failure of `kind` with structured details.
    pub fn with_body(kind: ErrorType, body: Value) -> Self {
        Self { kind, body }
    }

    /// The answer.
    pub fn into_response(self) -> Response<ProxyBody> {
        error_response(self.kind, self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorType::*;

    #[test]
    fn statuses_follow_lobechat() {
        for (kind, status, json) in [
            (PluginApiNotFound, 404, json!("PluginApiNotFound")),
            (PluginMetaNotFound, 404, json!("PluginMetaNotFound")),
            (PluginManifestNotFound, 404, json!("PluginManifestNotFound")),
            (PluginMetaInvalid, 490, json!("PluginMetaInvalid")),
            (
                PluginMarketIndexInvalid,
                490,
                json!("PluginMarketIndexInvalid"),
            ),
            (PluginManifestInvalid, 490, json!("PluginManifestInvalid")),
            (
                PluginMarketIndexNotFound,
                590,
                json!("PluginMarketIndexNotFound"),
            ),
            (PluginApiParamsError, 422, json!("PluginApiParamsError")),
            (PluginSettingsInvalid, 422, json!("PluginSettingsInvalid")),
            (PluginServerError, 500, json!("PluginServerError")),
            (PluginGatewayError, 500, json!("PluginGatewayError")),
            (PluginOpenApiInitError, 500, json!("PluginOpenApiInitError")),
            (Status(StatusCode::METHOD_NOT_ALLOWED), 405, json!(405)),
            (Status(StatusCode::TOO_MANY_REQUESTS), 429, json!(429)),
        ] {
            assert_eq!(kind.status().as_u16(), status, "{kind:?}");
            assert_eq!(kind.json(), json, "{kind:?}");
        }
    }
}
