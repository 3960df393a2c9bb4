//! Lowering: the standard Kubernetes routing APIs (Ingress; the Gateway API) rewritten into
//! hookway's own vocabulary before the compiler's passes run.
//!
//! ```text
//!  Objects (hookway kinds + Ingress/IngressClass …)
//!     └─► lower() ──► Objects with synthetic Routes, Services and GatewayPlugins added
//!                     + origins: synthetic object → the source object it came from
//!                     + reports: findings about source objects made while lowering
//!  compile(lowered) ──► fold(): every report of a synthetic object is merged into its
//!                     source object's report; synthetic objects are never reported
//! ```
//!
//! Synthetic objects live only in the compiler's input (never written to the API). Their names
//! contain [`SYNTHETIC_MARK`], which no Kubernetes object name may hold, so they cannot collide
//! with real objects.

pub(crate) mod ingress;

/// The character every synthetic object's name contains.
pub const SYNTHETIC_MARK: char = '#';

/// Whether `name` is a synthetic object's.
pub fn is_synthetic(name: &str) -> bool {
    name.contains(SYNTHETIC_MARK)
}

use std::collections::{BTreeMap, HashMap};

use crate::compiler::{Kind, ObjectId, ObjectReport, Objects};
use crate::snapshot::ObjectKey;

/// The lowered objects and what the lowering learned about the source objects.
#[derive(Default)]
pub(crate) struct Lowered {
    /// The input objects plus the synthetic ones.
    pub objects: Objects,
    /// Synthetic object → (source object, what part of it the synthetic object is).
    pub origins: HashMap<ObjectId, (ObjectId, String)>,
    /// Reports of source objects (findings of the lowering itself).
    pub reports: BTreeMap<ObjectId, ObjectReport>,
}

/// Lowers every standard-API object of `objects`.
pub(crate) fn lower(objects: &Objects) -> Lowered {
    let mut out = Lowered {
        objects: objects.clone(),
        ..Lowered::default()
    };
    ingress::lower(objects, &mut out);
    out
}

impl Lowered {
    /// Records that `kind` `key` is synthetic, part `what` of `source`.
    pub fn origin(&mut self, kind: Kind, key: ObjectKey, source: &ObjectId, what: String) {
        self.origins
            .insert(ObjectId { kind, key }, (source.clone(), what));
    }

    /// Merges the compiler's reports of synthetic objects into their sources' reports and
    /// returns every report of a real object.
    pub fn fold(
        mut self,
        compiled: BTreeMap<ObjectId, ObjectReport>,
    ) -> BTreeMap<ObjectId, ObjectReport> {
        let mut out = BTreeMap::new();
        for (id, report) in compiled {
            match self.origins.get(&id) {
                // Synthetic without a single source (the namespace's synthetic GatewayPlugins,
                // shared by its Ingresses): never reported.
                None if is_synthetic(&id.key.name) => {}
                None => {
                    out.insert(id, report);
                }
                Some((source, what)) => {
                    if let Some(into) = self.reports.get_mut(source) {
                        into.absorb(what, report);
                    }
                }
            }
        }
        out.extend(self.reports);
        out
    }
}

impl ObjectReport {
    /// Adds a synthetic object's findings (part `what` of this object) to this report.
    fn absorb(&mut self, what: &str, other: ObjectReport) {
        if !other.accepted.status {
            let message = format!("{what}: {}", other.accepted.message);
            self.reject(&other.accepted.reason, message);
        }
        if !other.resolved_refs.status {
            let message = format!("{what}: {}", other.resolved_refs.message);
            self.unresolved(&other.resolved_refs.reason, message);
        }
        for w in other.warnings {
            let text = match w.split_once(": ") {
                Some((reason, message)) => format!("{reason}: {what}: {message}"),
                None => format!("{what}: {w}"),
            };
            if !self.warnings.contains(&text) {
                self.warnings.push(text);
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
