//! Writes what an Ingress of a hookway IngressClass shows while this replica leads:
//! `status.loadBalancer.ingress` (the proxy Service's addresses) and `Warning` Events for its
//! findings: a rejection (a bad annotation value, a missing backend), snippet annotations that
//! are never executed, annotations hookway does not translate, and parts of it that ready
//! proxies could not apply (`ApplyFailed`, from `origin_failures.rs`). Ingress has no conditions, so
//! the Events are where `kubectl describe ingress` shows them; each distinct finding is
//! published once per generation.

use std::collections::{HashMap, HashSet};

use hookway_crds::compiler::{Kind, ObjectReport};
use hookway_crds::gateway_api::gateway::GatewayStatusAddress;
use hookway_crds::snapshot::ObjectKey;
use k8s_openapi::api::networking::v1::{
    Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
};

use kube::{Api, Client, Resource};
use tracing::warn;

use crate::compile_loop::Published;
use crate::events::Events;
use crate::index::MultiStore;
use crate::metrics::Metrics;
use crate::origin_failures::SourceFailures;

/// What this replica already wrote: statuses (until the watch catches up) and the findings it
/// published as Events, per Ingress and generation.
#[derive(Default)]
pub struct Written {
    statuses: HashMap<ObjectKey, IngressStatus>,
    events: HashMap<ObjectKey, (i64, HashSet<String>)>,
}

impl Written {
    /// Forgets everything (leadership lost: the next leader starts afresh).
    pub fn clear(&mut self) {
        self.statuses.clear();
        self.events.clear();
    }
}

/// `status.loadBalancer` for the proxy Service's `addresses` (IPs as `ip`, names as
/// `hostname`).
pub fn load_balancer(addresses: &[GatewayStatusAddress]) -> IngressStatus {
    let ingress: Vec<IngressLoadBalancerIngress> = addresses
        .iter()
        .map(|a| {
            if a.kind.as_deref() == Some("Hostname") {
                IngressLoadBalancerIngress {
                    hostname: Some(a.value.clone()),
                    ..Default::default()
                }
            } else {
                IngressLoadBalancerIngress {
                    ip: Some(a.value.clone()),
                    ..Default::default()
                }
            }
        })
        .collect();
    IngressStatus {
        load_balancer: Some(IngressLoadBalancerStatus {
            ingress: (!ingress.is_empty()).then_some(ingress),
        }),
    }
}

/// The findings of a report worth an Event: `(reason, message)`, rejection first.
pub fn findings(report: &ObjectReport) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for result in [&report.accepted, &report.resolved_refs] {
        if !result.status {
            out.push((result.reason.to_string(), result.message.to_string()));
        }
    }
    for w in &report.warnings {
        out.push(("IngressWarning".to_string(), w.clone()));
    }
    out
}

/// The writer.
pub struct Writer<'a> {
    /// API client.
    pub client: &'a Client,
    /// Ingresses as watched.
    pub ingresses: &'a MultiStore<Ingress>,
    /// Event recorder.
    pub events: Option<&'a Events>,
    /// Metrics.
    pub metrics: &'a Metrics,
}

impl Writer<'_> {
    /// Writes the status and Events of every Ingress `published` reports on.
    pub async fn sync(
        &self,
        published: &Published,
        addresses: &[GatewayStatusAddress],
        failures: &SourceFailures,
        written: &mut Written,
    ) {
        let desired = load_balancer(addresses);
        for (id, report) in published.reports.iter() {
            if id.kind != Kind::Ingress {
                continue;
            }
            let key = &id.key;
            let Some(current) = self.ingresses.get(&key.namespace, &key.name) else {
                continue;
            };
            let mut found = findings(report);
            found.extend(
                failures
                    .get(id)
                    .into_iter()
                    .flatten()
                    .map(|f| ("ApplyFailed".to_string(), format!("proxies left out: {f}"))),
            );
            self.events_for(&current, key, found, written).await;
            if current.status.as_ref() == Some(&desired) {
                written.statuses.remove(key);
                continue;
            }
            if written.statuses.get(key) == Some(&desired) {
                continue;
            }
            self.patch(key, &desired, written).await;
        }
    }

    async fn events_for(
        &self,
        ingress: &Ingress,
        key: &ObjectKey,
        found: Vec<(String, String)>,
        written: &mut Written,
    ) {
        let Some(events) = self.events else { return };
        let generation = ingress.metadata.generation.unwrap_or_default();
        let entry = written
            .events
            .entry(key.clone())
            .or_insert_with(|| (generation, HashSet::new()));
        if entry.0 != generation {
            *entry = (generation, HashSet::new());
        }
        for (reason, message) in found {
            if entry.1.insert(format!("{reason}\n{message}")) {
                warn!(namespace = %key.namespace, name = %key.name, %reason, %message, "Ingress finding");
                events
                    .rejected(&ingress.object_ref(&()), &reason, &message)
                    .await;
            }
        }
    }

    async fn patch(&self, key: &ObjectKey, status: &IngressStatus, written: &mut Written) {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &key.namespace);
        let Ok(value) = serde_json::to_value(status) else {
            return;
        };
        if crate::apply_status::apply(&api, key, &value, self.metrics).await {
            written.statuses.insert(key.clone(), status.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookway_crds::compiler::ConditionResult;

    #[test]
    fn load_balancer_lists_ips_and_host_names() {
        let address = |kind: &str, value: &str| GatewayStatusAddress {
            kind: Some(kind.into()),
            value: value.into(),
        };
        let status = load_balancer(&[
            address("IPAddress", "10.0.0.7"),
            address("Hostname", "lb.example.com"),
        ]);
        let ingress = status.load_balancer.unwrap().ingress.unwrap();
        assert_eq!(ingress[0].ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(ingress[1].hostname.as_deref(), Some("lb.example.com"));
        assert_eq!(load_balancer(&[]).load_balancer.unwrap().ingress, None);
    }

    #[test]
    fn findings_put_the_rejection_first_then_every_warning() {
        let report = ObjectReport {
            generation: 2,
            accepted: ConditionResult::fail("InvalidAnnotation", "limit-rps: not a number"),
            resolved_refs: ConditionResult::ok("ResolvedRefs", ""),
            warnings: vec!["configuration-snippet: snippet annotations are never executed".into()],
            chain: vec![],
            routes: 0,
            endpoints: 0,
        };
        assert_eq!(
            findings(&report),
            [
                ("InvalidAnnotation".into(), "limit-rps: not a number".into()),
                (
                    "IngressWarning".into(),
                    "configuration-snippet: snippet annotations are never executed".into()
                ),
            ]
        );
    }
}
