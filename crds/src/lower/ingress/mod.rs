//! Ingress v1 (`networking.k8s.io/v1`) lowered into synthetic hookway objects.
//!
//! ```text
//!  IngressClasses ──► which Ingresses are hookway's (class.rs); others are ignored
//!  each Ingress   ──► annotations read and checked (annotations/); a bad value rejects it
//!  canary Ingress ──► its backends, waiting for the main Ingress of the same host and path
//!  main Ingress   ──► per rule path: a Route `<ingress>#r<i>p<j>` (paths.rs, rules.rs)
//!                     per backend:   a Service `<ingress>#<service>-<port>` (backend.rs)
//!                     annotations:   route-level refs to `ingress#*` GatewayPlugins (plugins.rs)
//! ```
//!
//! Everything found is reported on the Ingress (`Kind::Ingress`), never on synthetic names.
//! docs/ingress.md describes the mapping; docs/migrating-from-ingress-nginx.md the annotations.

mod annotations;
mod backend;
mod class;
mod paths;
mod plugins;
mod rules;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::compiler::{Kind, ObjectId, ObjectReport, Objects};
use crate::lower::Lowered;
use crate::snapshot::ObjectKey;

/// Reasons of Ingress findings.
pub(crate) mod reason {
    /// A bad `nginx.ingress.kubernetes.io/*` or `hookway.dev/plugins` value.
    pub(crate) const INVALID_ANNOTATION: &str = "InvalidAnnotation";
    /// An annotation hookway ignores (unsupported, snippet) or only approximates.
    pub(crate) const UNSUPPORTED_ANNOTATION: &str = "UnsupportedAnnotation";
    /// A value hookway cannot honour yet.
    pub(crate) const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    /// A malformed rule.
    pub(crate) const INVALID_SPEC: &str = "InvalidSpec";
    /// A backend that does not resolve.
    pub(crate) const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// A canary Ingress without a main Ingress for one of its paths.
    pub(crate) const CANARY_UNUSED: &str = "CanaryUnused";
}

/// Canary backends waiting for their main Ingress: (namespace, host, path) → canary.
#[derive(Default)]
pub(crate) struct Canaries {
    entries: BTreeMap<(String, String, String), CanaryEntry>,
}

struct CanaryEntry {
    source: ObjectId,
    config: Value,
    used: bool,
}

impl Canaries {
    /// The `traffic_splitting` config of the canary for `(host, path)` in `namespace`.
    pub fn take_for(&mut self, namespace: &str, (host, path): &(String, String)) -> Option<Value> {
        let entry = self
            .entries
            .get_mut(&(namespace.to_string(), host.clone(), path.clone()))?;
        entry.used = true;
        Some(entry.config.clone())
    }
}

/// Lowers every Ingress of a hookway IngressClass into `out`.
pub(crate) fn lower(objects: &Objects, out: &mut Lowered) {
    let classes = class::Classes::new(&objects.ingress_classes);
    let mut ingresses: Vec<_> = objects
        .ingresses
        .iter()
        .filter(|i| classes.serves(i))
        .filter_map(|i| {
            let name = i.metadata.name.as_deref()?;
            let ns = i.metadata.namespace.as_deref().unwrap_or("default");
            Some((ObjectKey::new(ns, name), i.as_ref()))
        })
        .collect();
    ingresses.sort_by(|a, b| a.0.cmp(&b.0));
    ingresses.dedup_by(|a, b| a.0 == b.0);
    let core = backend::CoreIndex::new(&objects.core_services);
    let no_annotations = BTreeMap::new();

    let mut parsed = Vec::new();
    for (key, ingress) in ingresses {
        let id = ObjectId {
            kind: Kind::Ingress,
            key,
        };
        let mut report = ObjectReport::new(ingress.metadata.generation);
        let map = ingress
            .metadata
            .annotations
            .as_ref()
            .unwrap_or(&no_annotations);
        let (result, warnings) = annotations::parse_in(map, &id.key.namespace);
        for w in warnings {
            match w.split_once(": UnsupportedValue: ") {
                Some((name, why)) => {
                    report.warn(reason::UNSUPPORTED_VALUE, format!("{name}: {why}"))
                }
                None => report.warn(reason::UNSUPPORTED_ANNOTATION, w),
            }
        }
        match result {
            Ok(a) => parsed.push((id.clone(), ingress, a)),
            Err(errors) => {
                for e in errors {
                    report.reject(reason::INVALID_ANNOTATION, e);
                }
                report.reject(
                    reason::INVALID_ANNOTATION,
                    "the Ingress is not served until its annotations are fixed",
                );
            }
        }
        out.reports.insert(id, report);
    }

    let mut namespaces = BTreeSet::new();
    let mut canaries = Canaries::default();
    for (id, ingress, a) in &parsed {
        let Some(canary) = &a.canary else { continue };
        namespaces.insert(id.key.namespace.clone());
        let src = rules::Source {
            id,
            ingress,
            annotations: a,
        };
        let Some(report) = out.reports.get_mut(id) else {
            continue;
        };
        let mut found = Vec::new();
        for rp in rules::rule_paths(ingress) {
            match backend::resolve(&core, &id.key.namespace, &rp.backend) {
                Ok(target) => found.push((rp.host.unwrap_or_default(), rp.path, target)),
                Err(e) => report.unresolved(
                    reason::BACKEND_NOT_FOUND,
                    format!("{}: {e}; the canary gets no traffic there", rp.field()),
                ),
            }
        }
        let mut taken = Vec::new();
        for (host, path, target) in found {
            let service = target.synthetic_name(&id.key.name);
            let Some(config) = canary.config(&service) else {
                report.warn(
                    reason::CANARY_UNUSED,
                    "canary sets no canary-weight, canary-by-header or canary-by-cookie: it gets no traffic",
                );
                break;
            };
            let key = (id.key.namespace.clone(), host.clone(), path.clone());
            if let Some(other) = canaries.entries.get(&key) {
                report.warn(
                    reason::CANARY_UNUSED,
                    format!("host {host:?} path {path:?} already has canary Ingress {}; this one is ignored there", other.source.key),
                );
                continue;
            }
            taken.push((service, target));
            canaries.entries.insert(
                key,
                CanaryEntry {
                    source: id.clone(),
                    config,
                    used: false,
                },
            );
        }
        for (service, target) in taken {
            rules::emit_service(&src, &service, &target, out);
        }
    }

    let regex_hosts: rules::RegexHosts = parsed
        .iter()
        .filter(|(_, _, a)| a.regex && a.canary.is_none())
        .flat_map(|(_, ingress, _)| rules::rule_paths(ingress))
        .map(|rp| rp.host)
        .collect();
    for (id, ingress, a) in &parsed {
        if a.canary.is_some() {
            continue;
        }
        namespaces.insert(id.key.namespace.clone());
        let src = rules::Source {
            id,
            ingress,
            annotations: a,
        };
        let Some(mut report) = out.reports.remove(id) else {
            continue;
        };
        rules::lower(&src, &core, &mut canaries, &regex_hosts, &mut report, out);
        out.reports.insert(id.clone(), report);
    }

    let mut unused: HashMap<ObjectId, Vec<String>> = HashMap::new();
    for ((_, host, path), entry) in &canaries.entries {
        if !entry.used {
            unused
                .entry(entry.source.clone())
                .or_default()
                .push(format!("host {host:?} path {path:?}"));
        }
    }
    for (id, places) in unused {
        if let Some(report) = out.reports.get_mut(&id) {
            report.warn(
                reason::CANARY_UNUSED,
                format!(
                    "no main Ingress in the namespace serves {}; the canary gets no traffic there",
                    places.join(", ")
                ),
            );
        }
    }
    for ns in namespaces {
        out.objects.plugins.extend(plugins::gateway_plugins(&ns));
    }
}

#[cfg(test)]
mod tests;
