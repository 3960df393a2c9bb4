//! Snapshot deltas: what changed between two snapshots, keyed by object, so a change to one
//! Route sends that Route and not the whole configuration (DESIGN.md, "The stream").
//!
//! A delta names the content hash of the snapshot it applies to (`base`); applying it to any
//! other snapshot is refused, and the result's content hash is recomputed and must equal the
//! frame's hash, so a proxy never serves a configuration the controller did not compile. With
//! the base's entry digests ([`ContentDigests`]), that check hashes only the delta's entries.
//!
//! Entries are shared ([`Arc`]): a delta's upserts are the new snapshot's entries, and the
//! result of applying a delta holds the base's unchanged entries, not copies of them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::content_hash::{ContentDigests, Digest, EntryHasher, Keyed};
use crate::snapshot::{
    same_entry, shared_entries, BlobEntry, CertificateEntry, ChainEntry, ObjectKey, RouteEntry,
    SecretEntry, UpstreamEntry,
};
use crate::Snapshot;

/// The changes to one keyed collection of a snapshot (keyed by object, or by digest `K` for
/// blobs).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(bound(
    serialize = "T: Serialize, K: Serialize",
    deserialize = "T: Deserialize<'de> + Clone, K: Deserialize<'de>"
))]
pub struct Changes<T, K = ObjectKey> {
    /// Entries added or changed (the whole new entry), sorted by key.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "shared_entries"
    )]
    pub upsert: Vec<Arc<T>>,
    /// Keys of entries removed, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<K>,
}

impl<T, K> Default for Changes<T, K> {
    fn default() -> Self {
        Self {
            upsert: Vec::new(),
            remove: Vec::new(),
        }
    }
}

impl<T, K> Changes<T, K> {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// What turns the snapshot whose content hash is `base` into the next one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SnapshotDelta {
    /// Content hash of the snapshot this delta applies to.
    pub base: String,
    /// Routes.
    #[serde(default, skip_serializing_if = "Changes::is_empty")]
    pub routes: Changes<RouteEntry>,
    /// Upstreams.
    #[serde(default, skip_serializing_if = "Changes::is_empty")]
    pub upstreams: Changes<UpstreamEntry>,
    /// Certificates.
    #[serde(default, skip_serializing_if = "Changes::is_empty")]
    pub certificates: Changes<CertificateEntry>,
    /// Credential Secrets.
    #[serde(default, skip_serializing_if = "Changes::is_empty")]
    pub secrets: Changes<SecretEntry>,
    /// The new default chain, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_chain: Option<Vec<ChainEntry>>,
    /// Blobs, by digest.
    #[serde(default, skip_serializing_if = "Changes::is_empty")]
    pub blobs: Changes<BlobEntry, String>,
}

/// A delta that cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeltaError {
    /// The delta was computed against another snapshot.
    #[error("delta applies to snapshot {want}, this one is {have}")]
    Base {
        /// The delta's base.
        want: String,
        /// The snapshot's hash.
        have: String,
    },
    /// The result is not the announced snapshot.
    #[error("delta result hash mismatch: announced {announced}, content {actual}")]
    Hash {
        /// The frame's hash.
        announced: String,
        /// The result's content hash.
        actual: String,
    },
}

/// The changes from `old` to `new`, both sorted by key (as every snapshot collection is). An
/// entry `new` shares with `old` is unchanged without comparing it.
fn diff<T: Keyed + PartialEq>(old: &[Arc<T>], new: &[Arc<T>]) -> Changes<T, T::Key> {
    let mut changes = Changes::default();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.key() == n.key() => {
                if !same_entry(o, n) {
                    changes.upsert.push(n.clone());
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if o.key() < n.key() => {
                changes.remove.push(o.key().clone());
                i += 1;
            }
            (Some(_), Some(n)) | (None, Some(n)) => {
                changes.upsert.push(n.clone());
                j += 1;
            }
            (Some(o), None) => {
                changes.remove.push(o.key().clone());
                i += 1;
            }
            (None, None) => unreachable!("the loop condition"),
        }
    }
    changes
}

/// `base` (whose entry digests are `digests`) with `changes` applied, and the digests of the
/// result: only the upserted entries are hashed. Sorted by key when `base` and the upserts are
/// (a delta that is not gives another content, which the hash check refuses).
///
/// The result shares its entries with `base` and `changes`: a pointer copied per entry.
fn patch<T: Keyed + Serialize>(
    base: &[Arc<T>],
    digests: &[Digest],
    changes: &Changes<T, T::Key>,
    hasher: &mut EntryHasher,
) -> (Vec<Arc<T>>, Vec<Digest>) {
    let removed =
        |e: &T| !changes.remove.is_empty() && changes.remove.binary_search(e.key()).is_ok();
    let capacity = base.len() + changes.upsert.len();
    let (mut out, mut out_digests) = (Vec::with_capacity(capacity), Vec::with_capacity(capacity));
    let mut push = |entry: &Arc<T>, digest: Option<Digest>, hasher: &mut EntryHasher| {
        if !removed(entry) {
            out_digests.push(digest.unwrap_or_else(|| hasher.digest(&**entry)));
            out.push(Arc::clone(entry));
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < base.len() || j < changes.upsert.len() {
        match (base.get(i), changes.upsert.get(j)) {
            (Some(b), Some(u)) if b.key() == u.key() => {
                push(u, None, hasher);
                i += 1;
                j += 1;
            }
            (Some(b), Some(u)) if b.key() < u.key() => {
                push(b, Some(digests[i]), hasher);
                i += 1;
            }
            (Some(_), Some(u)) | (None, Some(u)) => {
                push(u, None, hasher);
                j += 1;
            }
            (Some(b), None) => {
                push(b, Some(digests[i]), hasher);
                i += 1;
            }
            (None, None) => unreachable!("the loop condition"),
        }
    }
    (out, out_digests)
}

impl SnapshotDelta {
    /// What changed from `old` to `new`.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Self {
        Self {
            base: old.hash.clone(),
            routes: diff(&old.routes, &new.routes),
            upstreams: diff(&old.upstreams, &new.upstreams),
            certificates: diff(&old.certificates, &new.certificates),
            secrets: diff(&old.secrets, &new.secrets),
            default_chain: (old.default_chain != new.default_chain)
                .then(|| new.default_chain.clone()),
            blobs: diff(&old.blobs, &new.blobs),
        }
    }

    /// How many entries the delta carries (upserts and removals).
    pub fn len(&self) -> usize {
        self.routes.upsert.len()
            + self.routes.remove.len()
            + self.upstreams.upsert.len()
            + self.upstreams.remove.len()
            + self.certificates.upsert.len()
            + self.certificates.remove.len()
            + self.secrets.upsert.len()
            + self.secrets.remove.len()
            + usize::from(self.default_chain.is_some())
            + self.blobs.upsert.len()
            + self.blobs.remove.len()
    }

    /// Whether the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies the delta to `base` (whose `hash` must be the delta's base), giving version
    /// `version` whose content hash must be `hash`. Hashes the whole result: a holder of
    /// `base`'s digests calls [`SnapshotDelta::apply_with`], which hashes only the change.
    pub fn apply(&self, base: &Snapshot, version: u64, hash: &str) -> Result<Snapshot, DeltaError> {
        self.apply_with(base, &ContentDigests::of(base), version, hash)
            .map(|(snapshot, _)| snapshot)
    }

    /// Applies the delta to `base`, whose entry digests are `digests`, giving version
    /// `version` whose content hash must be `hash`, and the result's digests. Only the entries
    /// the delta carries are hashed; the rest of the result's hash is combined from `digests`.
    ///
    /// `base.hash` must be the delta's base and `digests` must be `base`'s digests (the holder
    /// ties them to `base`'s hash); digests that do not fit `base` are recomputed.
    pub fn apply_with(
        &self,
        base: &Snapshot,
        digests: &ContentDigests,
        version: u64,
        hash: &str,
    ) -> Result<(Snapshot, ContentDigests), DeltaError> {
        if base.hash != self.base {
            return Err(DeltaError::Base {
                want: self.base.clone(),
                have: base.hash.clone(),
            });
        }
        let recomputed;
        let digests = if digests.fits(base) {
            digests
        } else {
            recomputed = ContentDigests::of(base);
            &recomputed
        };
        let mut h = EntryHasher::default();
        let (routes, route_digests) = patch(&base.routes, &digests.routes, &self.routes, &mut h);
        let (upstreams, upstream_digests) =
            patch(&base.upstreams, &digests.upstreams, &self.upstreams, &mut h);
        let (certificates, certificate_digests) = patch(
            &base.certificates,
            &digests.certificates,
            &self.certificates,
            &mut h,
        );
        let (secrets, secret_digests) =
            patch(&base.secrets, &digests.secrets, &self.secrets, &mut h);
        let (blobs, blob_digests) = patch(&base.blobs, &digests.blobs, &self.blobs, &mut h);
        let (default_chain, default_chain_digest) = match &self.default_chain {
            Some(chain) => (chain.clone(), h.digest(chain)),
            None => (base.default_chain.clone(), digests.default_chain),
        };
        let next_digests = ContentDigests {
            routes: route_digests,
            upstreams: upstream_digests,
            certificates: certificate_digests,
            secrets: secret_digests,
            default_chain: default_chain_digest,
            blobs: blob_digests,
        };
        let actual = next_digests.content_hash();
        if actual != hash {
            return Err(DeltaError::Hash {
                announced: hash.to_string(),
                actual,
            });
        }
        let next = Snapshot {
            version,
            hash: actual,
            routes,
            upstreams,
            certificates,
            secrets,
            default_chain,
            blobs,
        };
        Ok((next, next_digests))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn secret(name: &str, value: &str) -> SecretEntry {
        SecretEntry {
            key: ObjectKey::new("ns", name),
            data: BTreeMap::from([("k".to_string(), value.to_string())]),
        }
    }

    fn snapshot(secrets: &[(&str, &str)]) -> Snapshot {
        let mut secrets: Vec<Arc<SecretEntry>> =
            secrets.iter().map(|(n, v)| secret(n, v).into()).collect();
        secrets.sort_by(|a, b| a.key.cmp(&b.key));
        Snapshot {
            secrets,
            ..Snapshot::default()
        }
        .seal()
    }

    /// Old secrets, new secrets, the names upserted, the names removed.
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
        &'a [&'a str],
    );

    #[test]
    fn blobs_are_added_and_removed_by_digest() {
        let with = |contents: &[&[u8]]| {
            let mut blobs: Vec<Arc<BlobEntry>> =
                contents.iter().map(|b| BlobEntry::new(b).into()).collect();
            blobs.sort_by(|a, b| a.sha256.cmp(&b.sha256));
            Snapshot {
                blobs,
                ..Snapshot::default()
            }
            .seal()
        };
        /// (old blobs, new blobs, upserts, removals)
        type Case<'a> = (&'a [&'a [u8]], &'a [&'a [u8]], usize, usize);
        let cases: [Case; 4] = [
            (&[], &[b"one"], 1, 0),
            (&[b"one"], &[b"one"], 0, 0),
            (&[b"one", b"two"], &[b"two", b"three"], 1, 1),
            (&[b"one"], &[], 0, 1),
        ];
        for (i, (old, new, upserts, removals)) in cases.into_iter().enumerate() {
            let (old, new) = (with(old), with(new));
            let delta = SnapshotDelta::between(&old, &new);
            assert_eq!(delta.blobs.upsert.len(), upserts, "case {i}");
            assert_eq!(delta.blobs.remove.len(), removals, "case {i}");
            let wire = serde_json::to_string(&delta).unwrap();
            let back: SnapshotDelta = serde_json::from_str(&wire).unwrap();
            assert_eq!(
                back.apply(&old, 2, &new.hash).unwrap().blobs,
                new.blobs,
                "case {i}"
            );
        }
        assert_ne!(with(&[]).hash, with(&[b"one"]).hash, "blobs are hashed");
    }

    #[test]
    fn deltas_carry_only_what_changed_by_table() {
        let cases: [Case; 5] = [
            (&[("a", "1")], &[("a", "1")], &[], &[]),
            (&[("a", "1")], &[("a", "2")], &["a"], &[]),
            (&[("a", "1"), ("b", "1")], &[("b", "1")], &[], &["a"]),
            (
                &[("b", "1")],
                &[("a", "1"), ("b", "1"), ("c", "1")],
                &["a", "c"],
                &[],
            ),
            (
                &[("a", "1"), ("c", "1")],
                &[("b", "1"), ("c", "2")],
                &["b", "c"],
                &["a"],
            ),
        ];
        for (old, new, upserted, removed) in cases {
            let (old, new) = (snapshot(old), snapshot(new));
            let delta = SnapshotDelta::between(&old, &new);
            let names = |keys: Vec<&ObjectKey>| -> Vec<String> {
                keys.into_iter().map(|k| k.name.clone()).collect()
            };
            assert_eq!(
                names(delta.secrets.upsert.iter().map(|s| &s.key).collect()),
                upserted
            );
            assert_eq!(names(delta.secrets.remove.iter().collect()), removed);
            assert!(delta.routes.is_empty() && delta.default_chain.is_none());
            assert_eq!(delta.apply(&old, 7, &new.hash).unwrap().hash, new.hash);
        }
    }

    #[test]
    fn a_delta_refuses_another_base_and_a_wrong_result() {
        let (a, b, c) = (
            snapshot(&[("a", "1")]),
            snapshot(&[("a", "2")]),
            snapshot(&[("z", "1")]),
        );
        let delta = SnapshotDelta::between(&a, &b);
        assert!(matches!(
            delta.apply(&c, 2, &b.hash),
            Err(DeltaError::Base { .. })
        ));
        assert!(matches!(
            delta.apply(&a, 2, &c.hash),
            Err(DeltaError::Hash { .. })
        ));
    }

    #[test]
    fn routes_and_the_default_chain_travel_too() {
        let route = |name: &str, path: &str| -> RouteEntry {
            serde_json::from_value(serde_json::json!({
                "key": {"namespace": "ns", "name": name}, "hosts": [],
                "rules": [{"path_type": "Prefix", "path": path, "methods": [], "headers": [], "query": []}],
                "priority": 0, "created": 0,
                "upstream": {"namespace": "ns", "name": "up"}, "chain": []
            }))
            .unwrap()
        };
        let old = Snapshot {
            routes: vec![route("a", "/a").into(), route("b", "/b").into()],
            ..Snapshot::default()
        }
        .seal();
        let new = Snapshot {
            routes: vec![route("a", "/a2").into(), route("b", "/b").into()],
            default_chain: vec![log_plugin()],
            ..Snapshot::default()
        }
        .seal();
        let delta = SnapshotDelta::between(&old, &new);
        assert_eq!(delta.routes.upsert.len(), 1);
        assert_eq!(delta.routes.upsert[0].key.name, "a");
        assert_eq!(delta.default_chain.as_ref().map(Vec::len), Some(1));
        let wire = serde_json::to_string(&delta).unwrap();
        assert!(
            !wire.contains("\"/b\""),
            "the unchanged Route is not sent: {wire}"
        );
        let back: SnapshotDelta = serde_json::from_str(&wire).unwrap();
        assert_eq!(
            back.apply(&old, 2, &new.hash).unwrap(),
            Snapshot { version: 2, ..new }
        );
    }

    fn route(name: &str, path: &str) -> RouteEntry {
        serde_json::from_value(serde_json::json!({
            "key": {"namespace": "ns", "name": name}, "hosts": [],
            "rules": [{"path_type": "Prefix", "path": path, "methods": [], "headers": [], "query": []}],
            "priority": 0, "created": 0,
            "upstream": {"namespace": "ns", "name": "up"}, "chain": []
        }))
        .unwrap()
    }

    /// One generated version of a snapshot: Routes (name → path), Secrets (name → value),
    /// blobs (contents) and whether the default chain has a plugin.
    type Version = (
        BTreeMap<String, String>,
        BTreeMap<String, String>,
        std::collections::BTreeSet<String>,
        bool,
    );

    fn build((routes, secrets, blobs, chain): &Version) -> Snapshot {
        let mut blobs: Vec<Arc<BlobEntry>> = blobs
            .iter()
            .map(|b| BlobEntry::new(b.as_bytes()).into())
            .collect();
        blobs.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Snapshot {
            routes: routes.iter().map(|(n, p)| route(n, p).into()).collect(),
            secrets: secrets.iter().map(|(n, v)| secret(n, v).into()).collect(),
            blobs,
            default_chain: if *chain { vec![log_plugin()] } else { vec![] },
            ..Snapshot::default()
        }
    }

    fn log_plugin() -> ChainEntry {
        ChainEntry {
            alias: "log".into(),
            plugin_ref: ObjectKey::new("root", "log"),
            plugin: "access_log".into(),
            tier: crate::snapshot::Tier::Cluster,
            order: 1,
            config: serde_json::json!({}),
            exclude_paths: vec![],
            secrets: BTreeMap::new(),
            services: BTreeMap::new(),
        }
    }

    fn version() -> impl Strategy<Value = Version> {
        (
            proptest::collection::btree_map("[a-f]", "/[a-c]", 0..6),
            proptest::collection::btree_map("[a-f]", "[0-2]", 0..6),
            proptest::collection::btree_set("[0-3]", 0..3),
            any::<bool>(),
        )
    }

    proptest! {
        /// Along any sequence of versions, the controller's incremental seal (reusing the
        /// previous version's digests) and the proxy's delta check (hashing only the delta's
        /// entries) give the digests and hash computed from scratch.
        #[test]
        fn incremental_hashes_equal_hashes_from_scratch(
            versions in proptest::collection::vec(version(), 1..8),
        ) {
            let first = build(&versions[0]);
            let (mut sent, mut sent_digests) = first.seal_reusing(None);
            let (mut held, mut held_digests) = (sent.clone(), sent_digests.clone());
            for (i, v) in versions.iter().enumerate().skip(1) {
                let fresh = build(v);
                let (next, next_digests) =
                    fresh.clone().seal_reusing(Some((&sent, &sent_digests)));
                prop_assert_eq!(&next.hash, &fresh.content_hash());
                prop_assert_eq!(&next_digests, &ContentDigests::of(&fresh));
                prop_assert_eq!(
                    crate::applied::digests_with(&next, &next_digests),
                    crate::applied::digests(&fresh)
                );
                let delta = SnapshotDelta::between(&sent, &next);
                let (applied, applied_digests) = delta
                    .apply_with(&held, &held_digests, i as u64, &next.hash)
                    .unwrap();
                prop_assert_eq!(&applied_digests, &next_digests);
                prop_assert_eq!(&applied, &Snapshot { version: i as u64, ..next.clone() });
                (sent, sent_digests) = (next, next_digests);
                (held, held_digests) = (applied, applied_digests);
            }
        }

        #[test]
        fn applying_the_delta_gives_the_new_snapshot(
            old in proptest::collection::btree_map("[a-f]", "[0-2]", 0..6),
            new in proptest::collection::btree_map("[a-f]", "[0-2]", 0..6),
        ) {
            let as_pairs = |m: &BTreeMap<String, String>| -> Vec<(String, String)> {
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            let (o, n) = (as_pairs(&old), as_pairs(&new));
            fn borrow(v: &[(String, String)]) -> Vec<(&str, &str)> {
                v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
            }
            let (old, new) = (snapshot(&borrow(&o)), snapshot(&borrow(&n)));
            let delta = SnapshotDelta::between(&old, &new);
            prop_assert!(delta.len() <= old.secrets.len() + new.secrets.len());
            let applied = delta.apply(&old, new.version, &new.hash).unwrap();
            prop_assert_eq!(applied, new);
        }
    }
}
