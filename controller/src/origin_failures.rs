//! Proxies' failures of synthetic objects, folded onto their source objects. Pure (no I/O).
//!
//! An HTTPRoute, GRPCRoute or Ingress reaches the proxies as synthetic Routes, Services and
//! GatewayPlugins (`hookway_crds::lower`, names with `#`). A proxy that cannot apply one of
//! them lists it in its acknowledgement under the synthetic name, which no status can be
//! written to; `Published::origins` maps it back:
//!
//! ```text
//!  ack: failed Route gw-app/web#r0.m0@infra.gw ──origins──► HTTPRoute gw-app/web
//!       ──► gateway_status.rs: our parents[] entries get hookway.dev/Programmed=False ApplyFailed
//!  ack: failed Route shop/site#… ──origins──► Ingress shop/site ──► a Warning Event (ingress_status.rs)
//! ```

use std::collections::BTreeMap;

use hookway_crds::compiler::ObjectId;

use crate::fleet::{ProxyFailure, View};
use crate::versions;

/// Per source object: what ready proxies left out of it, one line per synthetic object
/// (`proxy-1, proxy-2: Route ns/web#r0.m0@infra.gw: plugin fragile ...: reason`).
pub type SourceFailures = BTreeMap<ObjectId, Vec<String>>;

/// The failures of every synthetic object of `origins`, by source object. A proxy counts for
/// a source when it applied the version holding the source's current content (`version_of`,
/// else `current`) or a newer one, as `Programmed` counts proxies.
pub fn by_source(
    origins: &BTreeMap<ObjectId, ObjectId>,
    view: &View,
    window: &versions::Published,
    version_of: impl Fn(&ObjectId) -> Option<u64>,
    current: u64,
) -> SourceFailures {
    let mut out = SourceFailures::new();
    if view.is_empty() {
        return out;
    }
    for (synthetic, source) in origins {
        let version = version_of(source).unwrap_or(current);
        let failures: Vec<ProxyFailure> = view.programmed(synthetic, version, window).failures;
        if failures.is_empty() {
            continue;
        }
        out.entry(source.clone())
            .or_default()
            .push(crate::status::failures_message(&failures));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{merge, Applied, Table};
    use hookway_crds::applied::{FailedKind, FailedObject};
    use hookway_crds::compiler::Kind;
    use hookway_crds::snapshot::ObjectKey;
    use k8s_openapi::jiff::Timestamp;

    fn id(kind: Kind, ns: &str, name: &str) -> ObjectId {
        ObjectId {
            kind,
            key: ObjectKey::new(ns, name),
        }
    }

    fn failed(kind: FailedKind, name: &str, reason: &str) -> FailedObject {
        FailedObject {
            kind,
            key: ObjectKey::new("app", name),
            reason: reason.into(),
            previous: false,
        }
    }

    #[test]
    fn failures_of_synthetic_objects_reach_their_source_grouped_by_reason() {
        let web = id(Kind::HTTPRoute, "app", "web");
        let site = id(Kind::Ingress, "app", "site");
        let origins: BTreeMap<ObjectId, ObjectId> = [
            (id(Kind::Route, "app", "web#r0.m0@infra.gw"), web.clone()),
            (id(Kind::Route, "app", "web#r1.m0@infra.gw"), web.clone()),
            (id(Kind::Service, "app", "web#r0"), web.clone()),
            (id(Kind::Route, "app", "site#0.0"), site.clone()),
        ]
        .into();
        let proxy = |applied: u64, failed: Vec<FailedObject>| Applied {
            applied: Some(applied),
            hash: None,
            failed,
            truncated: false,
        };
        let bad = "plugin fragile: this proxy cannot build it";
        let table: Table = [
            (
                "p1".to_string(),
                proxy(
                    5,
                    vec![
                        failed(FailedKind::Route, "site#0.0", bad),
                        failed(FailedKind::Route, "web#r0.m0@infra.gw", bad),
                    ],
                ),
            ),
            (
                "p2".to_string(),
                proxy(
                    5,
                    vec![failed(FailedKind::Route, "web#r0.m0@infra.gw", bad)],
                ),
            ),
            // Has not applied the Ingress's version yet: its old failure is not counted.
            (
                "p3".to_string(),
                proxy(3, vec![failed(FailedKind::Route, "site#0.0", "old")]),
            ),
        ]
        .into();
        let view = merge(&table, &[], "me", Timestamp::now());
        let version_of = |source: &ObjectId| Some(if *source == site { 4 } else { 2 });
        let got = by_source(
            &origins,
            &view,
            &versions::Published::default(),
            version_of,
            5,
        );
        assert_eq!(
            got,
            SourceFailures::from([
                (
                    web,
                    vec![format!("p1, p2: Route app/web#r0.m0@infra.gw: {bad}")]
                ),
                (site, vec![format!("p1: Route app/site#0.0: {bad}")]),
            ])
        );
        assert!(by_source(
            &origins,
            &merge(&Table::new(), &[], "me", Timestamp::now()),
            &versions::Published::default(),
            |_| None,
            5
        )
        .is_empty());
    }
}
