//! Host ownership: a host belongs to the namespace whose Route claimed it first.
//!
//! Claims are taken in the order `(creationTimestamp, namespace, name)`. A Route's host is
//! refused (`HostConflict`) when a Route of *another* namespace claimed earlier the same host, or
//! a wildcard covering it (`*.example.com` covers `a.example.com` and `*.a.example.com`), unless
//! a `PlatformPolicy` lists the later Route's namespace as sharing that host. A refused Route
//! claims nothing. Within one namespace nothing changes: its Routes share its hosts and the
//! router's tie-breaking decides between them.
//!
//! The owner of each host is also the only namespace whose TLS Secrets are served for it.

use std::collections::HashMap;

use super::policy::{covers, Policy};
use crate::snapshot::ObjectKey;

/// One Route's claim.
pub(crate) struct Claim<'a> {
    /// The Route.
    pub key: &'a ObjectKey,
    /// The namespace claiming: the Route's own, or for a Route lowered from a Gateway API route
    /// (and a Gateway listener's own claim) the Gateway's.
    pub namespace: &'a str,
    /// `creationTimestamp` (unix seconds; 0 when unknown).
    pub created: i64,
    /// Its validated hosts.
    pub hosts: &'a [String],
}

/// Who owns which host, and which claims were refused.
#[derive(Debug, Default)]
pub(crate) struct Ownership {
    /// Host pattern → the Route that claimed it first, and for which namespace.
    owners: HashMap<String, (ObjectKey, String)>,
    /// Refused Routes → why.
    pub refused: HashMap<ObjectKey, String>,
    /// Claim order of each accepted claimant (smaller claimed first).
    pub order: HashMap<ObjectKey, usize>,
}

impl Ownership {
    /// Settles every claim.
    pub fn settle(mut claims: Vec<Claim<'_>>, policy: &Policy<'_>) -> Self {
        claims.sort_by(|a, b| (a.created, a.key).cmp(&(b.created, b.key)));
        let mut out = Ownership::default();
        for claim in &claims {
            let ns = claim.namespace;
            let conflicts: Vec<String> = claim
                .hosts
                .iter()
                .filter_map(|host| {
                    let owner = out.earlier_owner(host, ns)?;
                    let (owner, owner_ns) = owner;
                    (!policy.may_share(ns, host)).then(|| {
                        format!(
                            "host {host:?} belongs to namespace {owner_ns:?} (claimed first by {})",
                            describe(owner)
                        )
                    })
                })
                .collect();
            if !conflicts.is_empty() {
                out.refused.insert(
                    claim.key.clone(),
                    format!(
                        "{}; the Route is not served (a PlatformPolicy sharedHosts entry can share a host)",
                        conflicts.join("; ")
                    ),
                );
                continue;
            }
            let next = out.order.len();
            out.order.insert(claim.key.clone(), next);
            for host in claim.hosts {
                out.owners
                    .entry(host.clone())
                    .or_insert_with(|| (claim.key.clone(), ns.to_string()));
            }
        }
        out
    }

    /// A Route of another namespace than `namespace` that claimed `host`, or a wildcard
    /// covering it, before.
    fn earlier_owner(&self, host: &str, namespace: &str) -> Option<(&ObjectKey, &str)> {
        let foreign = |k: &&(ObjectKey, String)| k.1 != namespace;
        if let Some((owner, ns)) = self.owners.get(host).filter(foreign) {
            return Some((owner, ns));
        }
        let name = host.strip_prefix("*.").unwrap_or(host);
        let mut rest = name;
        while let Some((_, suffix)) = rest.split_once('.') {
            let wildcard = format!("*.{suffix}");
            if covers(&wildcard, host) {
                if let Some((owner, ns)) = self.owners.get(&wildcard).filter(foreign) {
                    return Some((owner, ns));
                }
            }
            rest = suffix;
        }
        None
    }

    /// The namespace that owns `host` (its first claimant's).
    pub fn owner(&self, host: &str) -> Option<&str> {
        self.owners.get(host).map(|(_, ns)| ns.as_str())
    }
}

/// How a claimant is named in messages: `Route ns/name`, or for a synthetic claim (lowered from
/// the Gateway API) its source, e.g. `Gateway listener ns/gw#listener.https`.
fn describe(key: &ObjectKey) -> String {
    match key.name.split_once(crate::lower::SYNTHETIC_MARK) {
        None => format!("Route {key}"),
        Some((source, part)) if part.starts_with("listener.") => {
            format!("Gateway {}/{source} {part}", key.namespace)
        }
        Some((source, part)) if part.starts_with("grpc.") => {
            format!("GRPCRoute {}/{source}", key.namespace)
        }
        Some((source, _)) => format!("HTTPRoute {}/{source}", key.namespace),
    }
}
