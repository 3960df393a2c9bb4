//! `PlatformPolicy` objects folded into one set of allowances.
//!
//! Only policies in the root namespace count; one elsewhere is reported (`Accepted=False`,
//! `PolicyIgnored`) and grants nothing. A policy with an invalid entry is rejected whole
//! (`InvalidSpec`): a half-read policy could grant what its author did not mean. The root
//! namespace itself needs no allowance (it is the platform's own).

use std::collections::BTreeMap;

use super::report::reason;
use super::{routes, Obj, ObjectReport};
use crate::api::platform_policy::{NamespaceGrant, ReferenceGrant, SharedHosts};
use crate::snapshot::ObjectKey;
use crate::PlatformPolicy;

/// Every namespace (in a namespace list).
const ANY: &str = "*";

/// The allowances of every accepted root-namespace PlatformPolicy.
#[derive(Debug, Default)]
pub(crate) struct Policy<'a> {
    root: &'a str,
    shared: Vec<&'a SharedHosts>,
    grants: Vec<&'a ReferenceGrant>,
    namespaces: Vec<&'a NamespaceGrant>,
}

fn lists(list: &[String], item: &str) -> bool {
    list.iter().any(|n| n == ANY || n == item)
}

/// Whether host `pattern` (exact or `*.` wildcard) covers Route host `host` (exact or wildcard):
/// equal, or a wildcard whose suffix is a proper suffix of `host`'s name.
pub(crate) fn covers(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    name.len() > suffix.len()
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

fn validate(spec: &crate::PlatformPolicySpec) -> Result<(), String> {
    for (i, s) in spec.shared_hosts.iter().enumerate() {
        routes::host_list(&s.hosts, &format!("spec.sharedHosts[{i}].hosts"))?;
        if s.namespaces.is_empty() {
            return Err(format!(
                "spec.sharedHosts[{i}].namespaces must not be empty"
            ));
        }
    }
    for (i, g) in spec.reference_grants.iter().enumerate() {
        if g.from.is_empty() || g.services.is_empty() || g.to.is_empty() {
            return Err(format!(
                "spec.referenceGrants[{i}]: from, to and services must not be empty"
            ));
        }
    }
    for (i, n) in spec.namespaces.iter().enumerate() {
        if n.names.is_empty() {
            return Err(format!("spec.namespaces[{i}].names must not be empty"));
        }
    }
    Ok(())
}

impl<'a> Policy<'a> {
    /// Folds the policies (sorted by key) into one, writing a report per policy.
    pub fn build(
        root: &'a str,
        policies: &[Obj<'a, PlatformPolicy>],
        reports: &mut BTreeMap<ObjectKey, ObjectReport>,
    ) -> Self {
        let mut out = Policy {
            root,
            ..Default::default()
        };
        for p in policies {
            let mut report = ObjectReport::new(p.object.metadata.generation);
            let spec = &p.object.spec;
            if p.namespace != root {
                report.reject(
                    reason::POLICY_IGNORED,
                    format!(
                        "a PlatformPolicy is honoured only in the root namespace {root:?}; this one grants nothing"
                    ),
                );
            } else if let Err(e) = validate(spec) {
                report.reject(
                    reason::INVALID_SPEC,
                    format!("{e}; the policy grants nothing"),
                );
            } else {
                out.shared.extend(&spec.shared_hosts);
                out.grants.extend(&spec.reference_grants);
                out.namespaces.extend(&spec.namespaces);
            }
            reports.insert(p.key(), report);
        }
        out
    }

    /// Whether a Route in `namespace` may serve `host` although another namespace claimed it.
    pub fn may_share(&self, namespace: &str, host: &str) -> bool {
        self.shared.iter().any(|s| {
            lists(&s.namespaces, namespace)
                && s.hosts
                    .iter()
                    .any(|p| covers(&p.to_ascii_lowercase(), host))
        })
    }

    /// Whether objects in `from` may reference Service `to`.
    pub fn may_reference(&self, from: &str, to: &ObjectKey) -> bool {
        from == to.namespace
            || from == self.root
            || self.grants.iter().any(|g| {
                g.to == to.namespace && lists(&g.from, from) && lists(&g.services, &to.name)
            })
    }

    /// Whether Services in `namespace` may skip upstream certificate verification.
    pub fn insecure_skip_verify(&self, namespace: &str) -> bool {
        namespace == self.root
            || self
                .namespaces
                .iter()
                .any(|n| n.insecure_skip_verify && lists(&n.names, namespace))
    }

    /// Whether configs written in `namespace` may use network-reaching plugin kind `kind`.
    pub fn network_plugin(&self, namespace: &str, kind: &str) -> bool {
        namespace == self.root
            || self
                .namespaces
                .iter()
                .any(|n| lists(&n.names, namespace) && n.network_plugins.iter().any(|k| k == kind))
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn wildcards_cover_names_below_them() {
        for (pattern, host, want) in [
            ("a.example.com", "a.example.com", true),
            ("a.example.com", "b.example.com", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "x.a.example.com", true),
            ("*.example.com", "*.a.example.com", true),
            ("*.example.com", "*.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
            ("a.example.com", "*.example.com", false),
        ] {
            assert_eq!(covers(pattern, host), want, "{pattern} covers {host}");
        }
    }
}
