//! What happens when an Envoy gRPC server fails (cannot be reached, times out, answers with a
//! gRPC error or a reply the protocol does not allow): counted, logged, then the request goes
//! on (`failure_mode_allow: true`) or is answered with the configured status and a body naming
//! the plugin (fail closed, the default).

use std::sync::OnceLock;

use http::{Response, StatusCode};
use prometheus::{IntCounterVec, Opts};

use crate::plugin::{respond, Ctx, ProxyBody};
use crate::plugins::decisions::{self, Decision};

/// Why a call to the server failed (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No endpoint, connection refused or reset.
    Unavailable,
    /// No answer within the timeout.
    Timeout,
    /// A gRPC error status from the server.
    Status,
    /// A reply the protocol does not allow (wrong message, bad header name, ...).
    Malformed,
}

impl Reason {
    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Reason::Unavailable => "unavailable",
            Reason::Timeout => "timeout",
            Reason::Status => "grpc_status",
            Reason::Malformed => "malformed",
        }
    }
}

/// A failed call: why, and what happened (for the log line and the answer's body).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) reason: Reason,
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// A gRPC status from the client: unavailable / timeout / an error status.
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        let reason = match status.code() {
            tonic::Code::DeadlineExceeded => Reason::Timeout,
            // A server enforcing the `grpc-timeout` we send cancels with "Timeout expired".
            tonic::Code::Cancelled if status.message().to_ascii_lowercase().contains("timeout") => {
                Reason::Timeout
            }
            tonic::Code::Unavailable | tonic::Code::Cancelled => Reason::Unavailable,
            tonic::Code::Internal if status.message().contains("decode") => Reason::Malformed,
            _ => Reason::Status,
        };
        Self::new(reason, format!("{:?}: {}", status.code(), status.message()))
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        Self::new(Reason::Malformed, detail)
    }
}

/// `hookway_envoy_ext_failures_total{plugin, alias, reason, outcome}`: failed calls to an
/// `ext_authz` / `ext_proc` server, by plugin kind, GatewayPlugin alias, reason and what the
/// failure mode made of the request (`allowed` or `refused`).
pub fn counter() -> &'static IntCounterVec {
    static COUNTER: OnceLock<IntCounterVec> = OnceLock::new();
    COUNTER.get_or_init(|| {
        let c = IntCounterVec::new(
            Opts::new(
                "hookway_envoy_ext_failures_total",
                "Failed calls to ext_authz / ext_proc servers, by plugin kind, alias, reason and outcome",
            ),
            &["plugin", "alias", "reason", "outcome"],
        )
        .expect("valid metric definition");
        let _ = prometheus::default_registry().register(Box::new(c.clone()));
        c
    })
}

/// What a failure's log line says about the request.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestInfo {
    pub(crate) route: Option<std::sync::Arc<hookway_crds::snapshot::ObjectKey>>,
    pub(crate) request_id: Option<std::sync::Arc<str>>,
}

impl RequestInfo {
    pub(crate) fn of(ctx: &Ctx) -> Self {
        Self {
            route: ctx.route.clone(),
            request_id: ctx.request_id.clone(),
        }
    }
}

/// How a plugin instance fails.
#[derive(Clone, Debug)]
pub(crate) struct FailureMode {
    /// The plugin kind (`ext_authz`, `ext_proc`).
    pub(crate) kind: &'static str,
    /// The GatewayPlugin alias.
    pub(crate) alias: std::sync::Arc<str>,
    /// Where the server is (for the log line).
    pub(crate) target: std::sync::Arc<str>,
    /// Let the request through on a failure.
    pub(crate) allow: bool,
    /// The answer's status when failing closed.
    pub(crate) status: StatusCode,
}

impl FailureMode {
    /// Counts and logs `failure` in `phase`; `None` when the request goes on (fail open),
    /// else the answer for the client.
    pub(crate) fn fail(
        &self,
        failure: &Failure,
        phase: &'static str,
        info: &RequestInfo,
    ) -> Option<Response<ProxyBody>> {
        let outcome = if self.allow { "allowed" } else { "refused" };
        counter()
            .with_label_values(&[self.kind, &self.alias, failure.reason.as_str(), outcome])
            .inc();
        tracing::warn!(
            plugin = self.kind,
            alias = %self.alias,
            target = %self.target,
            phase,
            reason = failure.reason.as_str(),
            detail = %failure.detail,
            route = ?info.route.as_deref().map(ToString::to_string),
            request_id = ?info.request_id.as_deref(),
            failure_mode_allow = self.allow,
            "{}: call to the external server failed",
            self.kind
        );
        if self.allow {
            return None;
        }
        decisions::record(self.kind, info.route.as_deref(), Decision::Unavailable);
        Some(respond::text(self.status, &self.message(failure, phase)))
    }

    /// The body of a fail-closed answer.
    pub(crate) fn message(&self, failure: &Failure, phase: &str) -> String {
        format!(
            "[{} {}] external server failed in {phase}: {} ({})",
            self.kind,
            self.alias,
            failure.reason.as_str(),
            failure.detail
        )
    }
}
