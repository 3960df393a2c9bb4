//! Desired status, computed purely from a compile report, the previous status and proxy acks.
//!
//! Conditions `Accepted`, `ResolvedRefs` and `Programmed` carry the compiled
//! `observedGeneration`; `lastTransitionTime` is kept from the previous condition unless the
//! condition's `status` flipped. [`desired`] returns `None` when nothing would change, so the
//! caller patches only real changes.

use hookway_crds::compiler::{ConditionResult, Kind, ObjectReport};
use hookway_crds::{
    GatewayPlugin, GatewayPluginStatus, PlatformPolicy, PlatformPolicyStatus, Route, RouteStatus,
    Service, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::fleet::Programmed;
use crate::statuses::{Previous, StatusRecord};

/// A hookway kind whose status the controller writes.
pub trait StatusObject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The status type.
    type Status: Serialize + DeserializeOwned + PartialEq + Clone + std::fmt::Debug;
    /// The compiler's kind.
    const KIND: Kind;
    /// The current status.
    fn status(&self) -> Option<&Self::Status>;
    /// Builds the status from conditions and the report.
    fn build(report: &ObjectReport, conditions: Vec<Condition>) -> Self::Status;
    /// The current conditions.
    fn conditions(&self) -> &[Condition];
    /// Replaces the status.
    fn set_status(&mut self, status: Self::Status);
    /// Takes the status out (the stores keep a [`StatusRecord`] instead: `statuses.rs`).
    fn take_status(&mut self) -> Option<Self::Status>;
    /// The conditions of a status.
    fn status_conditions(status: &Self::Status) -> &[Condition];
}

impl StatusObject for Route {
    type Status = RouteStatus;
    const KIND: Kind = Kind::Route;
    fn status(&self) -> Option<&RouteStatus> {
        self.status.as_ref()
    }
    fn build(report: &ObjectReport, conditions: Vec<Condition>) -> RouteStatus {
        RouteStatus {
            conditions,
            chain: report.chain.clone(),
            warnings: report.warnings.clone(),
        }
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
    fn set_status(&mut self, status: Self::Status) {
        self.status = Some(status);
    }
    fn take_status(&mut self) -> Option<Self::Status> {
        self.status.take()
    }
    fn status_conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
}

impl StatusObject for Service {
    type Status = ServiceStatus;
    const KIND: Kind = Kind::Service;
    fn status(&self) -> Option<&ServiceStatus> {
        self.status.as_ref()
    }
    fn build(report: &ObjectReport, conditions: Vec<Condition>) -> ServiceStatus {
        ServiceStatus {
            conditions,
            endpoints: report.endpoints,
            warnings: report.warnings.clone(),
        }
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
    fn set_status(&mut self, status: Self::Status) {
        self.status = Some(status);
    }
    fn take_status(&mut self) -> Option<Self::Status> {
        self.status.take()
    }
    fn status_conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
}

impl StatusObject for GatewayPlugin {
    type Status = GatewayPluginStatus;
    const KIND: Kind = Kind::GatewayPlugin;
    fn status(&self) -> Option<&GatewayPluginStatus> {
        self.status.as_ref()
    }
    fn build(report: &ObjectReport, conditions: Vec<Condition>) -> GatewayPluginStatus {
        GatewayPluginStatus {
            conditions,
            routes: report.routes,
            warnings: report.warnings.clone(),
        }
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
    fn set_status(&mut self, status: Self::Status) {
        self.status = Some(status);
    }
    fn take_status(&mut self) -> Option<Self::Status> {
        self.status.take()
    }
    fn status_conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
}

impl StatusObject for PlatformPolicy {
    type Status = PlatformPolicyStatus;
    const KIND: Kind = Kind::PlatformPolicy;
    fn status(&self) -> Option<&PlatformPolicyStatus> {
        self.status.as_ref()
    }
    fn build(report: &ObjectReport, conditions: Vec<Condition>) -> PlatformPolicyStatus {
        PlatformPolicyStatus {
            conditions,
            warnings: report.warnings.clone(),
        }
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
    fn set_status(&mut self, status: Self::Status) {
        self.status = Some(status);
    }
    fn take_status(&mut self) -> Option<Self::Status> {
        self.status.take()
    }
    fn status_conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
}

/// Proxies' failures as one message, proxies with the same reason grouped:
/// `proxy-1, proxy-2: Route ns/r: certificate ns/tls: ...; proxy-3: ...`.
pub fn failures_message(failures: &[crate::fleet::ProxyFailure]) -> String {
    let mut by_reason: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for f in failures {
        by_reason.entry(&f.reason).or_default().push(&f.proxy);
    }
    let message: Vec<String> = by_reason
        .into_iter()
        .map(|(reason, proxies)| format!("{}: {reason}", proxies.join(", ")))
        .collect();
    message.join("; ")
}

/// The `Programmed` condition for an object, from the proxies' per-object acknowledgements.
///
/// The message never counts proxies: a proxy joining or leaving the fleet must not rewrite the
/// status of every object (20,000 patches for two proxies at 10,000 Routes). The fleet's size
/// is the `hookway_controller_fleet_proxies` metric and the registry Leases. The condition
/// changes only when the object's own state does: `Programmed` (every ready proxy serves its
/// current content), `Pending` (some have not applied it yet), `ApplyFailed` (some proxies
/// left it out, named with their reasons, proxies with the same reason grouped, e.g.
/// `proxy-1, proxy-2: Route ns/r: certificate ns/tls: ...`), `NoProxies`, `NotServed`.
pub fn programmed(report: &ObjectReport, programmed: &Programmed) -> ConditionResult {
    let count = programmed.count;
    if !report.is_ok() {
        ConditionResult::fail("NotServed", "not served: see Accepted and ResolvedRefs")
    } else if count.ready == 0 {
        ConditionResult::fail("NoProxies", "no proxy holds a snapshot")
    } else if count.applied == count.ready {
        programmed_ok()
    } else if programmed.failures.is_empty() {
        ConditionResult::fail("Pending", "waiting for the ready proxies to apply it")
    } else {
        ConditionResult::fail("ApplyFailed", failures_message(&programmed.failures))
    }
}

/// `Programmed` when every ready proxy serves the object.
fn programmed_ok() -> ConditionResult {
    ConditionResult::ok("Programmed", "served by every ready proxy")
}

fn condition(
    type_: &str,
    result: &ConditionResult,
    generation: i64,
    previous: &(impl Previous + ?Sized),
    now: &Time,
) -> Condition {
    let status = if result.status { "True" } else { "False" };
    let last_transition_time = previous
        .since(type_, result.status)
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: result.reason.to_string(),
        message: truncate(&result.message, 32 * 1024),
        observed_generation: Some(generation),
        last_transition_time,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The three conditions for `report`.
pub fn conditions(
    report: &ObjectReport,
    count: &Programmed,
    previous: &(impl Previous + ?Sized),
    now: &Time,
) -> Vec<Condition> {
    let g = report.generation;
    vec![
        condition("Accepted", &report.accepted, g, previous, now),
        condition("ResolvedRefs", &report.resolved_refs, g, previous, now),
        condition("Programmed", &programmed(report, count), g, previous, now),
    ]
}

/// The status `obj` should have, or `None` when its current status already says it.
///
/// While the fleet is settling (`count.settling`: a replica that just took the lead counts no
/// proxy yet), an object whose `Programmed` is `True` for its current generation keeps it instead
/// of flipping to `NoProxies` and back once the proxies reconnect: a controller restart or
/// failover would otherwise rewrite every object's status twice.
pub fn desired<K: StatusObject>(
    obj: &K,
    report: &ObjectReport,
    count: &Programmed,
    now: &Time,
) -> Option<K::Status> {
    let current = obj.status().map(StatusRecord::of::<K>);
    desired_from::<K>(current.as_ref(), report, count, now)
}

/// [`desired`] for an object whose current status is known by its record (`None`: it has no
/// status): what the status loop reads, the stores keeping records, not statuses.
pub fn desired_from<K: StatusObject>(
    current: Option<&StatusRecord>,
    report: &ObjectReport,
    count: &Programmed,
    now: &Time,
) -> Option<K::Status> {
    let mut conditions = conditions(report, count, &current, now);
    if count.settling {
        // `Programmed` was `True` for this generation: it stays (as this controller writes it).
        let held = current
            .and_then(|r| r.condition("Programmed"))
            .is_some_and(|c| c.status() && c.observed_generation() == Some(report.generation));
        if let (true, Some(new)) = (
            held,
            conditions
                .iter_mut()
                .find(|c| c.type_ == "Programmed" && c.reason == "NoProxies"),
        ) {
            *new = condition(
                "Programmed",
                &programmed_ok(),
                report.generation,
                &current,
                now,
            );
        }
    }
    let status = K::build(report, conditions);
    (!current.is_some_and(|r| r.holds::<K>(&status))).then_some(status)
}

/// The server-side apply body for a status.
pub fn apply_body<K: StatusObject>(obj: &K, status: &K::Status) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": obj.name_any(), "namespace": obj.namespace()},
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::ProxyFailure;
    use crate::proxies::Count;
    use k8s_openapi::jiff::Timestamp;

    fn report(ok: bool) -> ObjectReport {
        ObjectReport {
            generation: 3,
            accepted: if ok {
                ConditionResult::ok("Accepted", "valid")
            } else {
                ConditionResult::fail("InvalidPluginConfig", "cors: bad origin")
            },
            resolved_refs: ConditionResult::ok("ResolvedRefs", "all resolved"),
            warnings: vec![],
            chain: vec![],
            routes: 0,
            endpoints: 0,
        }
    }

    fn route() -> Route {
        let mut r = Route::new(
            "r",
            serde_json::from_value(serde_json::json!({"service": "s"})).unwrap(),
        );
        r.metadata.namespace = Some("ns".into());
        r.metadata.generation = Some(3);
        r
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    /// `applied` of `ready` proxies serve it; `failures` are (proxy, reason).
    fn count(applied: usize, ready: usize, failures: &[(&str, &str)]) -> Programmed {
        Programmed {
            settling: false,
            count: Count { applied, ready },
            failures: failures
                .iter()
                .map(|(proxy, reason)| ProxyFailure {
                    proxy: proxy.to_string(),
                    reason: reason.to_string(),
                })
                .collect(),
        }
    }

    fn all() -> Programmed {
        count(2, 2, &[])
    }

    #[test]
    fn unchanged_status_needs_no_patch_and_keeps_transition_time() {
        let mut r = route();
        let first = desired(&r, &report(true), &all(), &at(100)).expect("first status");
        r.status = Some(first.clone());
        assert_eq!(
            desired(&r, &report(true), &all(), &at(200)),
            None,
            "nothing changed"
        );
        // The fleet growing or shrinking changes nothing for an object every proxy serves.
        for fleet in [1, 3, 10] {
            assert_eq!(
                desired(&r, &report(true), &count(fleet, fleet, &[]), &at(250)),
                None,
                "{fleet} proxies"
            );
        }
        // A reason change keeps lastTransitionTime of conditions that did not flip.
        let next = desired(&r, &report(true), &count(2, 3, &[]), &at(300)).unwrap();
        let programmed = next
            .conditions
            .iter()
            .find(|c| c.type_ == "Programmed")
            .unwrap();
        assert_eq!(programmed.status, "False");
        assert_eq!(programmed.last_transition_time, at(300));
        let accepted = next
            .conditions
            .iter()
            .find(|c| c.type_ == "Accepted")
            .unwrap();
        assert_eq!(accepted.last_transition_time, at(100));
    }

    #[test]
    fn a_settling_fleet_keeps_programmed_instead_of_no_proxies() {
        let mut r = route();
        r.status = Some(desired(&r, &report(true), &all(), &at(100)).unwrap());
        let mut settling = count(0, 0, &[]);
        settling.settling = true;
        assert_eq!(
            desired(&r, &report(true), &settling, &at(200)),
            None,
            "kept while the proxies reconnect"
        );
        // Settled with no proxy: NoProxies is written.
        let settled = desired(&r, &report(true), &count(0, 0, &[]), &at(300)).unwrap();
        assert_eq!(settled.conditions[2].reason, "NoProxies");
        // A new generation is never reported Programmed by a settling fleet.
        r.metadata.generation = Some(4);
        let mut newer = report(true);
        newer.generation = 4;
        let s = desired(&r, &newer, &settling, &at(400)).unwrap();
        assert_eq!(s.conditions[2].reason, "NoProxies");
    }

    #[test]
    fn rejection_flips_accepted_with_reason_and_generation() {
        let r = route();
        let s = desired(&r, &report(false), &all(), &at(1)).unwrap();
        let accepted = &s.conditions[0];
        assert_eq!(
            (
                accepted.status.as_str(),
                accepted.reason.as_str(),
                accepted.observed_generation
            ),
            ("False", "InvalidPluginConfig", Some(3))
        );
        assert_eq!(s.conditions[2].reason, "NotServed");
    }

    #[test]
    fn programmed_says_n_of_m_and_why_proxies_left_it_out() {
        let ok = report(true);
        let bad = "Route ns/r: certificate ns/tls: tls.key does not match tls.crt";
        let other = "Route ns/r: plugin p (cors) from ns/p: nope (previous version still served)";
        let cases = [
            (
                count(2, 2, &[]),
                true,
                "Programmed",
                "served by every ready proxy",
            ),
            (
                count(5, 5, &[]),
                true,
                "Programmed",
                "served by every ready proxy",
            ),
            (
                count(1, 2, &[]),
                false,
                "Pending",
                "waiting for the ready proxies to apply it",
            ),
            (
                count(0, 0, &[]),
                false,
                "NoProxies",
                "no proxy holds a snapshot",
            ),
            (
                count(0, 2, &[("p1", bad), ("p2", bad)]),
                false,
                "ApplyFailed",
                "p1, p2: Route ns/r: certificate ns/tls: tls.key does not match tls.crt",
            ),
            (
                count(1, 3, &[("p2", other), ("p3", bad)]),
                false,
                "ApplyFailed",
                "p3: Route ns/r: certificate ns/tls: tls.key does not match tls.crt; \
                 p2: Route ns/r: plugin p (cors) from ns/p: nope (previous version still served)",
            ),
        ];
        for (programmed_by, status, reason, message) in cases {
            let got = programmed(&ok, &programmed_by);
            assert_eq!(
                (got.status, got.reason, &*got.message),
                (status, reason, message)
            );
        }
        let not_served = programmed(&report(false), &all());
        assert_eq!((not_served.status, not_served.reason), (false, "NotServed"));
    }

    #[test]
    fn apply_body_names_the_object() {
        let r = route();
        let s = desired(&r, &report(true), &all(), &at(1)).unwrap();
        let body = apply_body(&r, &s);
        assert_eq!(body["apiVersion"], "hookway.dev/v1alpha1");
        assert_eq!(body["kind"], "Route");
        assert_eq!(body["metadata"]["namespace"], "ns");
        assert_eq!(body["status"]["conditions"][0]["type"], "Accepted");
    }
}
