//! The statuses of hookway objects (Routes, Services, GatewayPlugins, PlatformPolicies) as the
//! status loop needs them, kept beside the reflector stores instead of in them.
//!
//! Why: at 10,000 Routes the statuses the controller writes (three conditions, each with six
//! strings and a timestamp) took 5.0 MiB of the stores, more than half the Routes' own size
//! (`controller/tests/heap.rs`). The compiler never reads a status; the status loop only asks
//! "is the current status the one I would write?" and "since when has each condition held?".
//! So the watch takes the status out of each object as it arrives ([`Statuses::take`]) and keeps
//! a [`StatusRecord`]: a digest of the status and, per condition, what `lastTransitionTime`,
//! `Programmed`'s settling rule and the rejection events read. Whether a status is as desired
//! is decided exactly as before (the same status gives the same digest), so a status that is
//! already correct is still never rewritten, after a restart or a failover included.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use hookway_crds::compiler::{Kind, ObjectId};
use hookway_crds::snapshot::ObjectKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::status::StatusObject;

/// The conditions the controller writes, in the order [`StatusRecord`] keeps them.
pub const CONDITIONS: [&str; 3] = ["Accepted", "ResolvedRefs", "Programmed"];

/// What the status loop reads of one condition (24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConditionRecord {
    /// `lastTransitionTime`, in seconds since the epoch (its precision on the wire).
    since: i64,
    /// `observedGeneration` (`i64::MIN`: absent).
    observed_generation: i64,
    /// A digest of `reason` (rejection events fire when it changes).
    reason: u32,
    /// `status` is `"True"`.
    status: bool,
}

impl ConditionRecord {
    /// `status` is `"True"`.
    pub fn status(&self) -> bool {
        self.status
    }

    /// `observedGeneration`.
    pub fn observed_generation(&self) -> Option<i64> {
        (self.observed_generation != i64::MIN).then_some(self.observed_generation)
    }

    /// Whether the condition's reason is `reason`.
    pub fn reason_is(&self, reason: &str) -> bool {
        self.reason == reason_digest(reason)
    }
}

/// What the status loop needs of an object's current status: 80 bytes, against about 500 for
/// the status itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRecord {
    /// A digest of the status's JSON: the same status, the same digest.
    digest: u64,
    /// [`CONDITIONS`], when present with `status` `"True"` or `"False"` (`present`).
    conditions: [ConditionRecord; 3],
    /// Which of `conditions` are present (bit `i`).
    present: u8,
    /// The object's kind (a relist forgets the records of its kind only).
    kind: Kind,
}

/// A process-local digest (no key: stable within the process, which is all it is compared in).
fn digest(bytes: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn reason_digest(reason: &str) -> u32 {
    digest(reason) as u32
}

impl StatusRecord {
    /// The record of `status`.
    pub fn of<K: StatusObject>(status: &K::Status) -> Self {
        let json = serde_json::to_vec(status).unwrap_or_default();
        let mut record = Self {
            digest: digest(json),
            conditions: [ConditionRecord::default(); 3],
            present: 0,
            kind: K::KIND,
        };
        for c in K::status_conditions(status) {
            let Some(i) = CONDITIONS.iter().position(|t| *t == c.type_) else {
                continue;
            };
            let status = match c.status.as_str() {
                "True" => true,
                "False" => false,
                _ => continue,
            };
            if record.present & (1 << i) != 0 {
                continue; // the first of a type counts, as in `status::conditions`
            }
            record.present |= 1 << i;
            record.conditions[i] = ConditionRecord {
                since: c.last_transition_time.0.as_second(),
                observed_generation: c.observed_generation.unwrap_or(i64::MIN),
                reason: reason_digest(&c.reason),
                status,
            };
        }
        record
    }

    /// The condition `type_` ([`CONDITIONS`]), if present.
    pub fn condition(&self, type_: &str) -> Option<&ConditionRecord> {
        let i = CONDITIONS.iter().position(|t| *t == type_)?;
        (self.present & (1 << i) != 0).then(|| &self.conditions[i])
    }

    /// Since when condition `type_` has had `status` (`None`: it has not, or is absent).
    pub fn since(&self, type_: &str, status: bool) -> Option<Time> {
        self.condition(type_)
            .filter(|c| c.status == status)
            .and_then(|c| Timestamp::from_second(c.since).ok())
            .map(Time)
    }

    /// Whether `status` is the status this record was made of.
    pub fn holds<K: StatusObject>(&self, status: &K::Status) -> bool {
        serde_json::to_vec(status).is_ok_and(|json| digest(json) == self.digest)
    }
}

/// Records of one namespace, by a 128-bit keyed digest of the object's kind and name: 16 bytes
/// a key instead of the name's `String` (and the namespace's, shared here by its objects), with
/// collisions out of reach (the digest's keys are random per process).
type Names = HashMap<u128, StatusRecord>;

#[derive(Debug, Default)]
struct Inner {
    /// By namespace (few), then by kind and name.
    records: HashMap<String, Names>,
    /// The keys of the name digest.
    keys: (RandomState, RandomState),
}

impl Inner {
    fn name(&self, kind: Kind, name: &str) -> u128 {
        let (a, b) = &self.keys;
        (u128::from(a.hash_one((kind, name))) << 64) | u128::from(b.hash_one((kind, name)))
    }
}

/// The records of the current statuses of hookway objects, by object. Filled by the watch
/// (`watch.rs`), read by the status loop. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Statuses(Arc<Mutex<Inner>>);

impl Statuses {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a map of plain values inconsistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record of `id`'s current status (`None`: it has none).
    pub fn get(&self, id: &ObjectId) -> Option<StatusRecord> {
        let inner = self.lock();
        let name = inner.name(id.kind, &id.key.name);
        inner
            .records
            .get(id.key.namespace.as_str())
            .and_then(|names| names.get(&name).copied())
    }

    /// Takes the status out of `obj` (about to be stored) and records it.
    pub fn take<K: StatusObject>(&self, obj: &mut K) {
        let Some(id) = id_of(obj) else { return };
        let record = obj.take_status().map(|s| StatusRecord::of::<K>(&s));
        let mut inner = self.lock();
        let name = inner.name(id.kind, &id.key.name);
        match record {
            Some(record) => {
                inner
                    .records
                    .entry(id.key.namespace)
                    .or_default()
                    .insert(name, record);
            }
            None => {
                if let Some(names) = inner.records.get_mut(id.key.namespace.as_str()) {
                    names.remove(&name);
                }
            }
        }
    }

    /// Forgets a deleted object.
    pub fn remove<K: StatusObject>(&self, obj: &K) {
        if let Some(id) = id_of(obj) {
            let mut inner = self.lock();
            let name = inner.name(id.kind, &id.key.name);
            if let Some(names) = inner.records.get_mut(id.key.namespace.as_str()) {
                names.remove(&name);
            }
        }
    }

    /// After a relist of `K` in `namespace` (`None`: every namespace), forgets the objects of
    /// that scope the list did not hold (deleted while the watch was down).
    pub fn retain_listed<K: StatusObject>(
        &self,
        namespace: Option<&str>,
        listed: &std::collections::HashSet<ObjectKey>,
    ) {
        let mut inner = self.lock();
        let mut by_namespace: HashMap<&str, std::collections::HashSet<u128>> = HashMap::new();
        for k in listed {
            let name = inner.name(K::KIND, &k.name);
            by_namespace.entry(&k.namespace).or_default().insert(name);
        }
        for (ns, names) in inner.records.iter_mut() {
            if namespace.is_none_or(|n| n == ns) {
                let listed = by_namespace.get(ns.as_str());
                names.retain(|name, record| {
                    record.kind != K::KIND || listed.is_some_and(|l| l.contains(name))
                });
                names.shrink_to_fit();
            }
        }
        inner.records.retain(|_, names| !names.is_empty());
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        self.lock().records.values().map(HashMap::len).sum()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key of `obj` as the compiler's reports name it.
pub fn id_of<K: StatusObject>(obj: &K) -> Option<ObjectId> {
    let meta = obj.meta();
    Some(ObjectId {
        kind: K::KIND,
        key: ObjectKey::new(
            meta.namespace.clone().unwrap_or_else(|| "default".into()),
            meta.name.clone()?,
        ),
    })
}

/// Conditions as the status loop last saw them, for [`crate::status::conditions`].
pub trait Previous {
    /// Since when condition `type_` has had `status`.
    fn since(&self, type_: &str, status: bool) -> Option<Time>;
}

impl Previous for [Condition] {
    fn since(&self, type_: &str, status: bool) -> Option<Time> {
        let want = if status { "True" } else { "False" };
        self.iter()
            .find(|c| c.type_ == type_ && c.status == want)
            .map(|c| c.last_transition_time.clone())
    }
}

impl Previous for Option<&StatusRecord> {
    fn since(&self, type_: &str, status: bool) -> Option<Time> {
        self.and_then(|r| r.since(type_, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Programmed;
    use crate::proxies::Count;
    use crate::status::{desired, desired_from};
    use hookway_crds::compiler::{ConditionResult, ObjectReport};
    use hookway_crds::{Route, Service};
    use kube::runtime::watcher::Event;

    fn report(ok: bool, generation: i64) -> ObjectReport {
        ObjectReport {
            generation,
            accepted: if ok {
                ConditionResult::ok("Accepted", "valid")
            } else {
                ConditionResult::fail("InvalidPluginConfig", "cors: bad origin")
            },
            resolved_refs: ConditionResult::ok("ResolvedRefs", "all resolved"),
            warnings: vec!["w".into()],
            chain: vec![],
            routes: 2,
            endpoints: 3,
        }
    }

    fn count(applied: usize, ready: usize, settling: bool) -> Programmed {
        Programmed {
            count: Count { applied, ready },
            failures: vec![],
            settling,
        }
    }

    /// A time with sub-second digits, as `Timestamp::now()` gives (the wire keeps seconds).
    fn at(secs: i64) -> Time {
        Time(Timestamp::new(secs, 123_456_789).unwrap())
    }

    fn route(ns: &str, name: &str) -> Route {
        let mut r = Route::new(
            name,
            serde_json::from_value(serde_json::json!({"service": "s"})).unwrap(),
        );
        r.metadata.namespace = Some(ns.into());
        r.metadata.generation = Some(3);
        r
    }

    /// `status` as the watch brings it back: through the API server's JSON.
    fn read_back<S: serde::Serialize + serde::de::DeserializeOwned>(status: &S) -> S {
        serde_json::from_slice(&serde_json::to_vec(status).unwrap()).unwrap()
    }

    #[test]
    fn a_status_written_and_read_back_is_already_desired() {
        // (report, proxies) of the write, then of a later pass (a restart, a failover).
        let cases = [
            (
                "served",
                report(true, 3),
                count(2, 2, false),
                count(2, 2, false),
            ),
            (
                "rejected",
                report(false, 3),
                count(2, 2, false),
                count(2, 2, false),
            ),
            (
                "pending",
                report(true, 3),
                count(1, 2, false),
                count(1, 2, false),
            ),
            (
                "no proxies",
                report(true, 3),
                count(0, 0, false),
                count(0, 0, false),
            ),
            // A new leader counts no proxy yet: Programmed=True is kept, nothing written.
            (
                "settling",
                report(true, 3),
                count(2, 2, false),
                count(0, 0, true),
            ),
        ];
        for (what, report, written_with, later) in cases {
            let route: RouteStatus = desired_from::<Route>(None, &report, &written_with, &at(100))
                .expect("a first status");
            let record = StatusRecord::of::<Route>(&read_back(&route));
            assert_eq!(
                desired_from::<Route>(Some(&record), &report, &later, &at(500)),
                None,
                "Route, {what}: rewritten"
            );
            let service: ServiceStatus =
                desired_from::<Service>(None, &report, &written_with, &at(100)).unwrap();
            let record = StatusRecord::of::<Service>(&read_back(&service));
            assert_eq!(
                desired_from::<Service>(Some(&record), &report, &later, &at(500)),
                None,
                "Service, {what}: rewritten"
            );
        }
    }

    use hookway_crds::{RouteStatus, ServiceStatus};

    #[test]
    fn a_record_decides_as_the_status_itself_did() {
        // (previous status written with, now asked with): `desired_from` on the record gives
        // the same status, transition times included, as `desired` on the object.
        let cases = [
            (
                report(true, 3),
                count(2, 2, false),
                report(true, 3),
                count(1, 2, false),
            ),
            (
                report(true, 3),
                count(2, 2, false),
                report(false, 3),
                count(2, 2, false),
            ),
            (
                report(false, 3),
                count(2, 2, false),
                report(true, 4),
                count(2, 2, false),
            ),
            (
                report(true, 3),
                count(2, 2, false),
                report(true, 4),
                count(0, 0, true),
            ),
            (
                report(true, 3),
                count(0, 0, false),
                report(true, 3),
                count(0, 0, true),
            ),
            (
                report(true, 3),
                count(2, 2, false),
                report(true, 3),
                count(0, 0, false),
            ),
        ];
        for (i, (before, by, now, with)) in cases.into_iter().enumerate() {
            let mut obj = route("ns", "r");
            obj.status = Some(read_back(&desired(&obj, &before, &by, &at(100)).unwrap()));
            let record = StatusRecord::of::<Route>(obj.status.as_ref().unwrap());
            assert_eq!(
                desired_from::<Route>(Some(&record), &now, &with, &at(900)),
                desired(&obj, &now, &with, &at(900)),
                "case {i}"
            );
        }
    }

    #[test]
    fn the_record_keeps_what_events_and_transition_times_read() {
        let status =
            desired_from::<Route>(None, &report(false, 3), &count(2, 2, false), &at(100)).unwrap();
        let record = StatusRecord::of::<Route>(&status);
        let accepted = record.condition("Accepted").unwrap();
        assert!(!accepted.status());
        assert_eq!(accepted.observed_generation(), Some(3));
        assert!(accepted.reason_is("InvalidPluginConfig"));
        assert!(!accepted.reason_is("Accepted"));
        assert_eq!(
            record.since("Accepted", false),
            Some(Time(Timestamp::from_second(100).unwrap()))
        );
        assert_eq!(record.since("Accepted", true), None, "it is False");
        assert!(record.condition("Other").is_none());
    }

    #[test]
    fn the_watch_keeps_records_not_statuses_and_forgets_what_a_relist_lost() {
        let statuses = Statuses::default();
        let mut keep = crate::watch::status_keeper::<Route>(statuses.clone(), Some("ns".into()));
        let with_status = |name: &str| {
            let mut r = route("ns", name);
            r.status = desired_from::<Route>(None, &report(true, 3), &count(1, 1, false), &at(1));
            r
        };
        let id = |name: &str| id_of(&route("ns", name)).unwrap();
        // A record of another namespace's watch, untouched by this one's relist.
        let mut other = route("other", "x");
        other.status = with_status("x").status;
        statuses.take(&mut other);

        let mut a = Event::Apply(with_status("a"));
        keep(&mut a);
        let Event::Apply(stored) = &a else {
            unreachable!()
        };
        assert_eq!(stored.status, None, "the store gets no status");
        assert!(statuses.get(&id("a")).is_some());
        // A status-less copy (a new object of that name) clears the record.
        keep(&mut Event::Apply(route("ns", "a")));
        assert_eq!(statuses.get(&id("a")), None);

        keep(&mut Event::Apply(with_status("a")));
        keep(&mut Event::Apply(with_status("b")));
        keep(&mut Event::Apply(with_status("c")));
        keep(&mut Event::Delete(route("ns", "c")));
        assert_eq!(statuses.get(&id("c")), None, "deleted");
        // The watch restarts; `b` was deleted meanwhile.
        keep(&mut Event::Init);
        keep(&mut Event::InitApply(with_status("a")));
        keep(&mut Event::InitDone);
        assert!(statuses.get(&id("a")).is_some());
        assert_eq!(
            statuses.get(&id("b")),
            None,
            "gone while the watch was down"
        );
        assert!(
            statuses.get(&id_of(&other).unwrap()).is_some(),
            "another scope"
        );
        assert_eq!(statuses.len(), 2);
    }
}
