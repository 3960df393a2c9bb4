//! Lowering: standard Kubernetes kinds (the Gateway API, Ingress) become *synthetic* hookway
//! objects before the compiler's passes run, so one router, one chain model and one precedence
//! model serve them all.
//!
//! ```text
//!  Objects ──► gateway_api::lower ─┐ Objects + synthetic Routes / Services / GatewayPlugins
//!          ──► ingress::lower ─────┴► + origins (synthetic → source object, and which part)
//!                                     + host claims and certificates of Gateway listeners
//!  compile … reports of synthetic objects ──► fold ──► reports of the source objects
//! ```
//!
//! Synthetic objects are never written to the API. Their names contain [`SYNTHETIC_MARK`],
//! which Kubernetes names cannot, so they never collide with real objects; `#` sorts before
//! every character a name may hold, so a lowered object's name sorts with its source's name
//! (the router's last tie-breaker, `namespace/name`, keeps the source order).

mod gateway_api;
pub(crate) mod ingress;

/// The character every synthetic object's name contains.
pub const SYNTHETIC_MARK: char = '#';

/// Whether `name` is a synthetic object's.
pub fn is_synthetic(name: &str) -> bool {
    name.contains(SYNTHETIC_MARK)
}

use std::collections::{BTreeMap, HashMap};

use crate::compiler::{Kind, ObjectId, ObjectReport, Objects, Options};
use crate::snapshot::ObjectKey;

pub use gateway_api::status;

/// A host claim that is not a Route's: a Gateway listener's hostname, claimed by the Gateway's
/// namespace (docs/gateway-api.md, "Host ownership").
#[derive(Debug, Clone)]
pub(crate) struct ExtraClaim {
    /// Synthetic key of the claim (reported through `origins`).
    pub key: ObjectKey,
    /// The claiming namespace.
    pub namespace: String,
    /// `creationTimestamp` of the source (unix seconds).
    pub created: i64,
    /// The claimed hosts.
    pub hosts: Vec<String>,
}

/// A certificate a listener serves.
#[derive(Debug, Clone)]
pub(crate) struct ListenerCertificate {
    /// The listener's claim key (its order decides between certificates for one host).
    pub claim: ObjectKey,
    /// The claiming namespace (the Gateway's).
    pub namespace: String,
    /// Hosts the certificate is served for.
    pub hosts: Vec<String>,
    /// The `kubernetes.io/tls` Secret (a ReferenceGrant already permits it).
    pub secret: ObjectKey,
}

/// What lowering produced.
#[derive(Debug, Default)]
pub(crate) struct Lowered {
    /// The input objects plus the synthetic ones.
    pub objects: Objects,
    /// Synthetic object (kind Route, Service or GatewayPlugin) → its source object and which
    /// part of it the synthetic object stands for.
    pub origins: HashMap<ObjectId, (ObjectId, String)>,
    /// Synthetic Route → the namespace whose host claim it is served under.
    pub claim_namespace: HashMap<ObjectKey, String>,
    /// Synthetic Route → served only over TLS (`true`) or only over plain HTTP (`false`): it
    /// attaches only to HTTPS, or only to HTTP, listeners (`RuleEntry::tls`).
    pub transport: HashMap<ObjectKey, bool>,
    /// Synthetic Route → the hosts it leaves to more specific listeners of its Gateway that it
    /// is not attached to (`RuleEntry::isolation`).
    pub isolation: HashMap<ObjectKey, crate::snapshot::HostIsolation>,
    /// Host claims of Gateway listeners.
    pub claims: Vec<ExtraClaim>,
    /// Certificates of HTTPS listeners.
    pub certificates: Vec<ListenerCertificate>,
    /// Reports of the source objects (what lowering found).
    pub reports: BTreeMap<ObjectId, ObjectReport>,
}

/// Lowers every standard kind of `objects`.
pub(crate) fn lower(objects: &Objects, options: &Options) -> Lowered {
    let mut out = Lowered {
        objects: objects.clone(),
        ..Lowered::default()
    };
    gateway_api::lower(objects, options, &mut out);
    ingress::lower(objects, &mut out);
    out
}

impl Lowered {
    /// The objects to compile.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The objects to add to.
    pub(crate) fn objects_mut(&mut self) -> &mut Objects {
        &mut self.objects
    }

    /// Records that synthetic `kind` `key` comes from `source`; the part it stands for is the
    /// name after [`SYNTHETIC_MARK`].
    pub(crate) fn origin(&mut self, kind: Kind, key: ObjectKey, source: ObjectId) {
        let part = key
            .name
            .split_once(SYNTHETIC_MARK)
            .map_or("", |(_, rest)| rest)
            .to_string();
        self.origins.insert(ObjectId { kind, key }, (source, part));
    }

    /// Records that synthetic `kind` `key` is part `what` of `source`.
    pub(crate) fn origin_part(
        &mut self,
        kind: Kind,
        key: ObjectKey,
        source: &ObjectId,
        what: String,
    ) {
        self.origins
            .insert(ObjectId { kind, key }, (source.clone(), what));
    }

    /// Moves the reports of synthetic objects onto their sources (failures and warnings, each
    /// message prefixed with what the synthetic object stands for) and adds the sources' own.
    /// Synthetic objects without a source (helpers shared by a namespace's Ingresses) are never
    /// reported.
    pub fn fold(self, reports: &mut BTreeMap<ObjectId, ObjectReport>) {
        let mut sources = self.reports;
        let synthetic: Vec<ObjectId> = reports
            .keys()
            .filter(|id| self.origins.contains_key(*id) || is_synthetic(&id.key.name))
            .cloned()
            .collect();
        for id in synthetic {
            let Some(report) = reports.remove(&id) else {
                continue;
            };
            let Some((source, part)) = self.origins.get(&id) else {
                continue;
            };
            let target = sources
                .entry(source.clone())
                .or_insert_with(|| ObjectReport::new(Some(report.generation)));
            target.absorb(part, report);
        }
        reports.extend(sources);
    }
}

impl ObjectReport {
    /// Adds a synthetic object's findings (`part` of this object) to this (its source's) report.
    fn absorb(&mut self, part: &str, other: ObjectReport) {
        let prefix = |m: &str| {
            if part.is_empty() {
                m.to_string()
            } else {
                format!("{part}: {m}")
            }
        };
        if !other.accepted.status {
            self.reject(other.accepted.reason, prefix(&other.accepted.message));
        }
        if !other.resolved_refs.status {
            self.unresolved(
                other.resolved_refs.reason,
                prefix(&other.resolved_refs.message),
            );
        }
        for w in other.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for entry in other.chain {
            if !self.chain.contains(&entry) {
                self.chain.push(entry);
            }
        }
        self.endpoints += other.endpoints;
    }
}
