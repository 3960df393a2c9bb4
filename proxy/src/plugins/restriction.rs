//! What `referer_restriction` and `ua_restriction` share: allow/deny mode and the answer.

use http::StatusCode;
use serde::Deserialize;

use hookway_crds::snapshot::ObjectKey;

use super::decisions::{self, Decision};
use crate::plugin::respond::{self, ErrorType};
use crate::plugin::Flow;

/// Whether a match allows or denies.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only matching requests pass (requests without the header are refused).
    Allow,
    /// Matching requests are refused.
    Deny,
}

/// The default refusal message (Pingap's).
pub fn default_message() -> String {
    "Request is forbidden".into()
}

/// Continue, or a 403 with `message` (counted for `plugin` on `route`), given whether the
/// request `matched`.
pub fn verdict(
    plugin: &str,
    route: Option<&ObjectKey>,
    mode: Mode,
    matched: bool,
    message: &str,
    error_type: ErrorType,
) -> Flow {
    if matched == (mode == Mode::Allow) {
        Flow::Continue
    } else {
        decisions::record(plugin, route, Decision::Denied);
        Flow::Respond(respond::error(StatusCode::FORBIDDEN, message, error_type))
    }
}
