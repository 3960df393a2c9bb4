//! Condition helpers: every finding about an object goes through here, so reasons and message
//! shapes stay uniform.
//!
//! The first failure of a condition sets its reason; later failures of the same condition are
//! appended to its message (`"; "`-separated) so nothing is hidden from the operator.

use super::{ConditionResult, ObjectReport};

/// Reason of a `True` `Accepted` condition.
pub(crate) const ACCEPTED: &str = "Accepted";
/// Reason of a `True` `ResolvedRefs` condition.
pub(crate) const RESOLVED_REFS: &str = "ResolvedRefs";

/// Failure and warning reasons (DESIGN.md §3).
pub(crate) mod reason {
    pub(crate) const INVALID_SPEC: &str = "InvalidSpec";
    pub(crate) const UNKNOWN_PLUGIN: &str = "UnknownPlugin";
    pub(crate) const CONFIG_MISSING: &str = "ConfigMissing";
    pub(crate) const INVALID_PLUGIN_CONFIG: &str = "InvalidPluginConfig";
    pub(crate) const PLUGIN_NOT_FOUND: &str = "PluginNotFound";
    pub(crate) const PLUGIN_NOT_ALLOWED: &str = "PluginNotAllowed";
    pub(crate) const PLUGIN_LOCKED: &str = "PluginLocked";
    pub(crate) const PLUGIN_DISABLED: &str = "PluginDisabled";
    pub(crate) const POLICY_IGNORED: &str = "PolicyIgnored";
    pub(crate) const SERVICE_NOT_FOUND: &str = "ServiceNotFound";
    pub(crate) const SERVICE_NOT_ACCEPTED: &str = "ServiceNotAccepted";
    pub(crate) const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub(crate) const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    pub(crate) const CONFLICTED: &str = "Conflicted";
    pub(crate) const INVALID_CERTIFICATE: &str = "InvalidCertificate";
    pub(crate) const CERTIFICATE_EXPIRED: &str = "CertificateExpired";
    pub(crate) const INVALID_SECRET: &str = "InvalidSecret";
    pub(crate) const HOST_CONFLICT: &str = "HostConflict";
    pub(crate) const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub(crate) const NOT_PERMITTED: &str = "NotPermitted";
    pub(crate) const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
    pub(crate) const INVALID_CONFIG_MAP: &str = "InvalidConfigMap";
    pub(crate) const FETCH_PENDING: &str = "FetchPending";
    pub(crate) const FETCH_FAILED: &str = "FetchFailed";
    pub(crate) const DIGEST_MISMATCH: &str = "DigestMismatch";
}

impl ObjectReport {
    /// A report with both conditions `True` and nothing else.
    pub(crate) fn new(generation: Option<i64>) -> Self {
        Self {
            generation: generation.unwrap_or(0),
            accepted: ConditionResult::ok(ACCEPTED, "the spec is valid"),
            resolved_refs: ConditionResult::ok(RESOLVED_REFS, "every reference resolved"),
            warnings: Vec::new(),
            chain: Vec::new(),
            routes: 0,
            endpoints: 0,
        }
    }

    /// Sets `Accepted=False` (or adds to its message when it already failed).
    pub(crate) fn reject(&mut self, reason: &'static str, message: impl Into<String>) {
        fail(&mut self.accepted, reason, message.into());
    }

    /// Sets `ResolvedRefs=False` (or adds to its message when it already failed).
    pub(crate) fn unresolved(&mut self, reason: &'static str, message: impl Into<String>) {
        fail(&mut self.resolved_refs, reason, message.into());
    }

    /// Adds a non-fatal finding as `Reason: message` (each distinct warning once).
    pub(crate) fn warn(&mut self, reason: &str, message: impl AsRef<str>) {
        let text = format!("{reason}: {}", message.as_ref());
        if !self.warnings.contains(&text) {
            self.warnings.push(text);
        }
    }
}

fn fail(condition: &mut ConditionResult, reason: &'static str, message: String) {
    if condition.status {
        *condition = ConditionResult::fail(reason, message);
    } else if !condition.message.split("; ").any(|m| m == message) {
        let text = condition.message.to_mut();
        text.push_str("; ");
        text.push_str(&message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_sets_reason_later_ones_append() {
        let mut r = ObjectReport::new(Some(3));
        assert!(r.is_ok());
        r.reject(reason::INVALID_SPEC, "a");
        r.reject(reason::INVALID_PLUGIN_CONFIG, "b");
        r.reject(reason::INVALID_PLUGIN_CONFIG, "b");
        assert_eq!(r.accepted.reason, reason::INVALID_SPEC);
        assert_eq!(r.accepted.message, "a; b");
        assert_eq!(r.generation, 3);
        r.warn(reason::PLUGIN_LOCKED, "x");
        r.warn(reason::PLUGIN_LOCKED, "x");
        assert_eq!(r.warnings, vec!["PluginLocked: x".to_string()]);
    }
}
