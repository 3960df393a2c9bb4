//! The proxies of every replica, merged: what `Programmed` counts. Pure (no I/O).
//!
//! ```text
//!  leader's own table (proxies.rs) ──┐
//!                                    ├─ merge(now) ─► View ─ count(version, published) ─► "n/m proxies"
//!  registry Leases of other replicas ┘   (unexpired only; own Lease ignored; a proxy seen twice
//!  (registry.rs watches them)             counts once, with its highest applied version)
//! ```
//!
//! Each replica publishes its table in the annotation [`PROXIES_ANNOTATION`] of its own Lease
//! labelled [`REGISTRY_LABEL`]`: "true"`, as compact JSON
//! `{"<proxy id>": {"applied": <version or null>, "hash": "<content hash>"}}`. Versions are per
//! replica (each compiles on its own clock), so a remote proxy's applied version is translated
//! through the content hash it applied when this replica published the same content.

use std::collections::BTreeMap;

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

/// What one proxy applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The last version it acknowledged `ok` (in the numbering of the replica it streams from).
    pub applied: Option<u64>,
    /// The content hash of that version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// Ready proxies by id.
pub type Table = BTreeMap<String, Applied>;

/// The annotation value for a table (compact JSON).
pub fn encode(table: &Table) -> String {
    // A map of strings to plain structs always serializes.
    serde_json::to_string(table).unwrap_or_else(|_| "{}".into())
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

    fn add(&mut self, id: &str, applied: &Applied) {
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
                "applied null: ready, holding nothing",
                vec![lease("c1", NOW - 1, Some(r#"{"p1":{"applied":null}}"#))],
                vec![("p0", Some(5)), ("p1", None)],
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
                ready: 5
            },
            "local + same content + unknown content compared by number"
        );
        assert_eq!(
            view.count(100, &published),
            Count {
                applied: 4,
                ready: 5
            }
        );
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
