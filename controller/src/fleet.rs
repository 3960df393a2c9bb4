//! The proxies of every replica, merged: what `Programmed` counts. Pure (no I/O).
//!
//! ```text
//!  leader's own table (proxies.rs) ──┐
//!                                    ├─ merge(now) ─► View ─ programmed(id, version) ─► Programmed
//!  registry Leases of other replicas ┘   (unexpired only; own Lease ignored; a proxy seen twice
//!  (registry.rs watches them)             counts once, with its highest applied version)
//! ```
//!
//! Each replica publishes its table in the annotation [`PROXIES_ANNOTATION`] of its own Lease
//! labelled [`REGISTRY_LABEL`]`: "true"`, as compact JSON
//! `{"<proxy id>": {"applied": <version or null>, "hash": "<content hash>", "failed": [..]}}`.
//! Versions are per replica (each compiles on its own clock), so a remote proxy's applied
//! version is translated through the content hash it applied when this replica published the
//! same content. `failed` lists the objects the proxy left out of that version (at most
//! [`MAX_LEASE_FAILURES`] per proxy in a Lease; past that, `truncated` is set and the proxy counts
//! as holding no object until its failures fit again).
//!
//! An object is programmed on a proxy when the proxy applied the version in which the object's
//! current content first appeared (or a newer one) and did not list it as failed.
//!
//! Only proxies that hold a snapshot (they acknowledged one) are *ready* and counted: a proxy that
//! connects is invisible until its first acknowledgement, so a proxy joining (or ten restarting
//! at once) changes no object's `Programmed` unless it fails to apply that object.

use std::collections::BTreeMap;

use hookway_crds::applied::{FailedKind, FailedObject};
use hookway_crds::compiler::{Kind, ObjectId};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::proxies::Count;
use crate::versions::Published;

/// Label carried by every registry Lease (value `"true"`).
pub const REGISTRY_LABEL: &str = "hookway.dev/proxy-registry";
/// Annotation holding a replica's proxies as JSON.
pub const PROXIES_ANNOTATION: &str = "hookway.dev/proxies";
/// At most this many failed objects per proxy are written into a registry Lease (annotations
/// are limited to 256 KiB in all), each reason cut to [`MAX_LEASE_REASON`] bytes.
pub const MAX_LEASE_FAILURES: usize = 100;
/// Longest failure reason written into a registry Lease.
pub const MAX_LEASE_REASON: usize = 300;

/// What one proxy applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The last version it acknowledged `ok` (in the numbering of the replica it streams from).
    pub applied: Option<u64>,
    /// The content hash of that version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The objects of that version it left out, sorted by kind and key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedObject>,
    /// `failed` was cut short (in a registry Lease): what else failed is unknown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The kind a proxy reports failures under for an object the compiler reports on (none for a
/// PlatformPolicy: it never reaches a proxy).
fn failed_kind(kind: Kind) -> Option<FailedKind> {
    match kind {
        Kind::Route => Some(FailedKind::Route),
        Kind::Service => Some(FailedKind::Service),
        Kind::GatewayPlugin => Some(FailedKind::GatewayPlugin),
        Kind::PlatformPolicy
        | Kind::GatewayClass
        | Kind::Gateway
        | Kind::HTTPRoute
        | Kind::GRPCRoute
        | Kind::Ingress => None,
    }
}

impl Applied {
    /// Why this proxy does not serve `id` as of the version it applied, if it listed it.
    pub fn failure(&self, id: &ObjectId) -> Option<&FailedObject> {
        let kind = failed_kind(id.kind)?;
        self.failed
            .binary_search_by(|f| (f.kind, &f.key).cmp(&(kind, &id.key)))
            .ok()
            .map(|i| &self.failed[i])
    }
}

/// One proxy that left an object out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyFailure {
    /// The proxy.
    pub proxy: String,
    /// Its reason (`certificate ns/tls: ...`, with "(previous version still served)").
    pub reason: String,
}

/// How many ready proxies serve an object's current content, and why the others that tried
/// do not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Programmed {
    /// Ready proxies that serve it.
    pub count: Count,
    /// Ready proxies that applied a version holding it but left it out, with their reasons.
    pub failures: Vec<ProxyFailure>,
    /// The fleet is not known yet: this replica has just started leading and counts no proxy
    /// (they are reconnecting). A `Programmed=True` condition for the current generation is then
    /// kept rather than written as `NoProxies` (see `status::desired`).
    pub settling: bool,
}

/// Ready proxies by id.
pub type Table = BTreeMap<String, Applied>;

/// The annotation value for a table (compact JSON), each proxy's failures bounded by
/// [`MAX_LEASE_FAILURES`] and [`MAX_LEASE_REASON`].
pub fn encode(table: &Table) -> String {
    let bounded: Table = table
        .iter()
        .map(|(id, applied)| {
            let mut applied = applied.clone();
            if applied.failed.len() > MAX_LEASE_FAILURES {
                applied.failed.truncate(MAX_LEASE_FAILURES);
                applied.truncated = true;
            }
            for f in &mut applied.failed {
                if f.reason.len() > MAX_LEASE_REASON {
                    let mut end = MAX_LEASE_REASON;
                    while !f.reason.is_char_boundary(end) {
                        end -= 1;
                    }
                    f.reason.truncate(end);
                }
            }
            (id.clone(), applied)
        })
        .collect();
    // A map of strings to plain structs always serializes.
    serde_json::to_string(&bounded).unwrap_or_else(|_| "{}".into())
}

/// Parses an annotation value.
pub fn decode(annotation: &str) -> Result<Table, serde_json::Error> {
    serde_json::from_str(annotation)
}

/// When a Lease expires: `renewTime + leaseDurationSeconds` (`None` when either is missing).
pub fn expires_at(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds?.into());
    Some(renewed + duration)
}

/// The proxies of every live replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    proxies: Table,
}

impl View {
    /// Ready proxies in total.
    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    /// Whether no proxy is ready anywhere.
    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }

    /// What `id` applied, if it is ready somewhere.
    pub fn get(&self, id: &str) -> Option<&Applied> {
        self.proxies.get(id)
    }

    /// Ready proxies holding this replica's `version` (or newer). A proxy's applied version is
    /// translated into this replica's numbering through its content hash when `published`
    /// still knows that hash; otherwise its own number is compared.
    pub fn count(&self, version: u64, published: &Published) -> Count {
        let applied = self
            .proxies
            .values()
            .filter(|p| {
                let ours = p.hash.as_deref().and_then(|h| published.version_of(h));
                ours.or(p.applied) >= Some(version)
            })
            .count();
        Count {
            applied,
            ready: self.proxies.len(),
        }
    }

    /// Whether the ready proxies serve `id`, whose current content first appeared in this
    /// replica's `version`: a proxy serves it when it applied that version or a newer one
    /// (translated as in [`View::count`]) and did not list `id` as failed.
    pub fn programmed(&self, id: &ObjectId, version: u64, published: &Published) -> Programmed {
        let mut out = Programmed {
            settling: false,
            count: Count {
                applied: 0,
                ready: self.proxies.len(),
            },
            failures: Vec::new(),
        };
        for (proxy, p) in &self.proxies {
            let ours = p.hash.as_deref().and_then(|h| published.version_of(h));
            if ours.or(p.applied) < Some(version) {
                continue;
            }
            let reason = match p.failure(id) {
                Some(f) => f.to_string(),
                None if p.truncated => "too many failed objects to list".to_string(),
                None => {
                    out.count.applied += 1;
                    continue;
                }
            };
            out.failures.push(ProxyFailure {
                proxy: proxy.clone(),
                reason,
            });
        }
        out
    }

    fn add(&mut self, id: &str, applied: &Applied) {
        if applied.applied.is_none() {
            return; // connected, holding no snapshot yet: not ready
        }
        match self.proxies.get_mut(id) {
            Some(seen) if seen.applied >= applied.applied => {}
            Some(seen) => *seen = applied.clone(),
            None => {
                self.proxies.insert(id.to_string(), applied.clone());
            }
        }
    }
}

/// Merges this replica's own table with the registry Leases of the other replicas.
///
/// Ignored: this replica's own Lease (holder `identity`), expired Leases (`renewTime +
/// leaseDurationSeconds` not after `now`, or either missing), and Leases whose annotation is
/// missing or not valid JSON of the expected shape (with a warning). A proxy seen more than once
/// (it moved between replicas) counts once, with its highest applied version.
pub fn merge(local: &Table, leases: &[Lease], identity: &str, now: Timestamp) -> View {
    let mut view = View::default();
    for (id, applied) in local {
        view.add(id, applied);
    }
    for lease in leases {
        let name = lease.metadata.name.as_deref().unwrap_or_default();
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .unwrap_or_default();
        if holder == identity {
            continue;
        }
        match expires_at(lease) {
            Some(expiry) if expiry > now => {}
            _ => {
                debug!(lease = %name, replica = %holder, "registry lease expired; its proxies are not counted");
                continue;
            }
        }
        let annotation = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROXIES_ANNOTATION));
        let Some(annotation) = annotation else {
            warn!(lease = %name, replica = %holder, "registry lease without the {PROXIES_ANNOTATION} annotation; ignored");
            continue;
        };
        match decode(annotation) {
            Ok(table) => {
                for (id, applied) in &table {
                    view.add(id, applied);
                }
            }
            Err(e) => {
                warn!(lease = %name, replica = %holder, error = %e, "malformed {PROXIES_ANNOTATION} annotation; lease ignored")
            }
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use kube::api::ObjectMeta;

    const NOW: i64 = 1_000;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    /// A registry Lease of `holder`, renewed at `renewed` for 15 s, with this annotation.
    fn lease(holder: &str, renewed: i64, annotation: Option<&str>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(format!("hookway-controller-proxies-{holder}")),
                annotations: annotation
                    .map(|a| [(PROXIES_ANNOTATION.to_string(), a.to_string())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(at(renewed))),
                ..Default::default()
            }),
        }
    }

    fn table(entries: &[(&str, Option<u64>)]) -> Table {
        entries
            .iter()
            .map(|(id, v)| {
                let applied = Applied {
                    applied: *v,
                    hash: v.map(|v| format!("h{v}")),
                    ..Applied::default()
                };
                (id.to_string(), applied)
            })
            .collect()
    }

    fn ids(view: &View) -> Vec<(&str, Option<u64>)> {
        view.proxies
            .iter()
            .map(|(id, a)| (id.as_str(), a.applied))
            .collect()
    }

    #[test]
    fn merge_rules() {
        let local = table(&[("p0", Some(5))]);
        type Case = (&'static str, Vec<Lease>, Vec<(&'static str, Option<u64>)>);
        let cases: Vec<Case> = vec![
            ("no other replica", vec![], vec![("p0", Some(5))]),
            (
                "a live replica adds its proxies",
                vec![lease("c1", NOW - 1, Some(r#"{"p1":{"applied":7}}"#))],
                vec![("p0", Some(5)), ("p1", Some(7))],
            ),
            (
                "applied null: connected, holding no snapshot, not ready",
                vec![lease("c1", NOW - 1, Some(r#"{"p1":{"applied":null}}"#))],
                vec![("p0", Some(5))],
            ),
            (
                "expired: renewTime + duration in the past",
                vec![lease("c1", NOW - 16, Some(r#"{"p1":{"applied":7}}"#))],
                vec![("p0", Some(5))],
            ),
            (
                "expired exactly now",
                vec![lease("c1", NOW - 15, Some(r#"{"p1":{"applied":7}}"#))],
                vec![("p0", Some(5))],
            ),
            (
                "own lease ignored (the local table is the truth)",
                vec![lease("c0", NOW - 1, Some(r#"{"stale":{"applied":1}}"#))],
                vec![("p0", Some(5))],
            ),
            (
                "a proxy seen twice counts once, with its highest version",
                vec![
                    lease(
                        "c1",
                        NOW - 1,
                        Some(r#"{"p0":{"applied":9},"p1":{"applied":3}}"#),
                    ),
                    lease("c2", NOW - 1, Some(r#"{"p1":{"applied":4}}"#)),
                ],
                vec![("p0", Some(9)), ("p1", Some(4))],
            ),
            (
                "a lower remote version does not replace a higher local one",
                vec![lease("c1", NOW - 1, Some(r#"{"p0":{"applied":null}}"#))],
                vec![("p0", Some(5))],
            ),
            (
                "malformed annotation: that lease only is ignored",
                vec![
                    lease("c1", NOW - 1, Some(r#"{"p1": 7"#)),
                    lease("c2", NOW - 1, Some(r#"{"p2":{"applied":"seven"}}"#)),
                    lease("c3", NOW - 1, Some(r#"["p3"]"#)),
                    lease("c4", NOW - 1, Some(r#"{"p4":{"applied":2}}"#)),
                ],
                vec![("p0", Some(5)), ("p4", Some(2))],
            ),
            (
                "no annotation: ignored",
                vec![lease("c1", NOW - 1, None)],
                vec![("p0", Some(5))],
            ),
            (
                "no renewTime: cannot be live",
                vec![{
                    let mut l = lease("c1", NOW - 1, Some(r#"{"p1":{"applied":7}}"#));
                    l.spec.as_mut().unwrap().renew_time = None;
                    l
                }],
                vec![("p0", Some(5))],
            ),
            (
                "no spec at all",
                vec![Lease::default()],
                vec![("p0", Some(5))],
            ),
        ];
        for (why, leases, want) in cases {
            let view = merge(&local, &leases, "c0", at(NOW));
            assert_eq!(ids(&view), want, "{why}");
        }
    }

    #[test]
    fn count_translates_remote_versions_through_the_content_hash() {
        let mut published = Published::default();
        published.push(100, "h-a");
        published.push(200, "h-b");
        let mut local = table(&[("local", Some(200))]);
        local.get_mut("local").unwrap().hash = Some("h-b".into());
        // c1 numbered the same content h-b as 190 (it compiled earlier), another as 250.
        let remote = lease(
            "c1",
            NOW - 1,
            Some(
                r#"{"same-content":{"applied":190,"hash":"h-b"},
                    "older-content":{"applied":250,"hash":"h-a"},
                    "unknown-content":{"applied":210,"hash":"h-x"},
                    "nothing":{"applied":null}}"#,
            ),
        );
        let view = merge(&local, &[remote], "c0", at(NOW));
        assert_eq!(
            view.count(200, &published),
            Count {
                applied: 3,
                ready: 4
            },
            "local + same content + unknown content compared by number; `nothing` is not ready"
        );
        assert_eq!(
            view.count(100, &published),
            Count {
                applied: 4,
                ready: 4
            }
        );
    }

    fn failure(kind: FailedKind, name: &str, reason: &str) -> FailedObject {
        FailedObject {
            kind,
            key: hookway_crds::snapshot::ObjectKey::new("ns", name),
            reason: reason.into(),
            previous: false,
        }
    }

    #[test]
    fn an_object_is_programmed_where_its_version_applied_and_it_did_not_fail() {
        let mut published = Published::default();
        published.push(100, "h100");
        published.push(200, "h200");
        let applied = |v: u64, failed: Vec<FailedObject>| Applied {
            applied: Some(v),
            hash: Some(format!("h{v}")),
            failed,
            truncated: false,
        };
        let local: Table = [
            ("current".to_string(), applied(200, vec![])),
            (
                "left-out".to_string(),
                applied(
                    200,
                    vec![
                        failure(FailedKind::Route, "r", "bad cert"),
                        failure(FailedKind::Secret, "tls", "bad cert"),
                    ],
                ),
            ),
            ("behind".to_string(), applied(100, vec![])),
            (
                "other-failed".to_string(),
                applied(200, vec![failure(FailedKind::Route, "s", "x")]),
            ),
            (
                "cut-short".to_string(),
                Applied {
                    truncated: true,
                    ..applied(200, vec![failure(FailedKind::Route, "a", "x")])
                },
            ),
        ]
        .into();
        let view = merge(&local, &[], "c0", at(NOW));
        let route = |name: &str| ObjectId {
            kind: Kind::Route,
            key: hookway_crds::snapshot::ObjectKey::new("ns", name),
        };
        let p = view.programmed(&route("r"), 200, &published);
        assert_eq!(
            p.count,
            Count {
                applied: 2,
                ready: 5
            },
            "current and other-failed serve r"
        );
        let reasons: Vec<(&str, &str)> = p
            .failures
            .iter()
            .map(|f| (f.proxy.as_str(), f.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("cut-short", "too many failed objects to list"),
                ("left-out", "Route ns/r: bad cert"),
            ],
            "behind has not tried yet: no reason"
        );
        let service = ObjectId {
            kind: Kind::Service,
            key: hookway_crds::snapshot::ObjectKey::new("ns", "r"),
        };
        assert_eq!(
            view.programmed(&service, 100, &published).count.applied,
            4,
            "a Route's failure is not its Service's"
        );
    }

    #[test]
    fn lease_failures_are_bounded() {
        let many: Vec<FailedObject> = (0..MAX_LEASE_FAILURES + 5)
            .map(|i| failure(FailedKind::Route, &format!("r{i:04}"), &"é".repeat(400)))
            .collect();
        let t: Table = [(
            "p0".to_string(),
            Applied {
                applied: Some(1),
                hash: None,
                failed: many,
                truncated: false,
            },
        )]
        .into();
        let back = decode(&encode(&t)).unwrap();
        let p0 = &back["p0"];
        assert!(p0.truncated);
        assert_eq!(p0.failed.len(), MAX_LEASE_FAILURES);
        assert!(p0.failed.iter().all(|f| f.reason.len() <= MAX_LEASE_REASON));
    }

    #[test]
    fn the_annotation_round_trips_compactly() {
        let t = table(&[("p0", Some(5)), ("p1", None)]);
        let text = encode(&t);
        assert_eq!(
            text,
            r#"{"p0":{"applied":5,"hash":"h5"},"p1":{"applied":null}}"#
        );
        assert_eq!(decode(&text).unwrap(), t);
    }
}
