//! The content hash of a snapshot, built from per-entry digests so that a new version only
//! hashes the entries that changed (docs/stream.md, "Content hash").
//!
//! ```text
//!  entry digest  d(e) = SHA-256(canonical JSON of e)           (e: one route, upstream, certificate,
//!                                                               secret or blob; the default chain whole)
//!  content hash  H    = SHA-256( "hookway snapshot content v2\n"
//!                                for each section, in this fixed order:
//!                                  routes, upstreams, certificates, secrets, default_chain, blobs
//!                                  u8 len(name) ‖ name ‖ u64-LE count ‖ d(e₁) ‖ … ‖ d(eₙ) )
//! ```
//!
//! The entries of a section are taken in the snapshot's order (sorted by key), the default chain
//! is one entry. Each entry's JSON carries its key, so the key needs no separate place in the
//! outer hash. The outer input parses back unambiguously (fixed tag, then length-prefixed section
//! names and counts, then fixed-size digests), so two contents with the same hash would need a
//! SHA-256 collision: a different entry, a missing or extra entry, an entry moved to another
//! section or two entries swapped all change the hash.
//!
//! [`ContentDigests`] keeps the entry digests of one snapshot, in its order. They are kept beside
//! the snapshot, not in it, and are only valid for the snapshot they were computed from: whoever
//! keeps them keeps them with that snapshot (both ends tie them to its content hash). Combining
//! them costs 32 bytes of SHA-256 input per entry, not the entry's serialization.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::snapshot::{
    same_entry, BlobEntry, CertificateEntry, ObjectKey, RouteEntry, SecretEntry, UpstreamEntry,
};
use crate::Snapshot;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Domain tag of the content hash (its first bytes).
const TAG: &[u8] = b"hookway snapshot content v2\n";

/// The digest of each entry of one snapshot, in the snapshot's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentDigests {
    /// One per Route.
    pub routes: Vec<Digest>,
    /// One per upstream.
    pub upstreams: Vec<Digest>,
    /// One per certificate.
    pub certificates: Vec<Digest>,
    /// One per credential Secret.
    pub secrets: Vec<Digest>,
    /// The default chain's, as one entry.
    pub default_chain: Digest,
    /// One per blob.
    pub blobs: Vec<Digest>,
}

/// Serializes entries and hashes them, reusing one buffer.
#[derive(Default)]
pub(crate) struct EntryHasher {
    buf: Vec<u8>,
}

impl EntryHasher {
    /// `SHA-256(canonical JSON of entry)`: struct fields serialize in declaration order and
    /// `serde_json::Value` maps are `BTreeMap`s, so the bytes are canonical.
    pub(crate) fn digest<T: Serialize + ?Sized>(&mut self, entry: &T) -> Digest {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, entry).expect("snapshot entries serialize");
        Sha256::digest(&self.buf).into()
    }

    /// The digests of `entries`, in order.
    pub(crate) fn all<T: Serialize>(&mut self, entries: &[Arc<T>]) -> Vec<Digest> {
        entries.iter().map(|e| self.digest(&**e)).collect()
    }
}

/// An entry of a keyed snapshot section.
pub(crate) trait Keyed {
    /// The key type (an object key, or a blob's digest).
    type Key: Ord + Clone;
    /// The entry's key.
    fn key(&self) -> &Self::Key;
}

macro_rules! keyed {
    ($($t:ty),*) => {$(
        impl Keyed for $t {
            type Key = ObjectKey;
            fn key(&self) -> &ObjectKey {
                &self.key
            }
        }
    )*};
}
keyed!(RouteEntry, UpstreamEntry, CertificateEntry, SecretEntry);

impl Keyed for BlobEntry {
    type Key = String;
    fn key(&self) -> &String {
        &self.sha256
    }
}

impl ContentDigests {
    /// Every entry of `snapshot` hashed.
    pub fn of(snapshot: &Snapshot) -> Self {
        let mut h = EntryHasher::default();
        Self {
            routes: h.all(&snapshot.routes),
            upstreams: h.all(&snapshot.upstreams),
            certificates: h.all(&snapshot.certificates),
            secrets: h.all(&snapshot.secrets),
            default_chain: h.digest(&snapshot.default_chain),
            blobs: h.all(&snapshot.blobs),
        }
    }

    /// The digests of `snapshot`, reusing `previous_digests` (those of `previous`) for every
    /// entry equal to `previous`'s entry of the same key: only new and changed entries are
    /// serialized and hashed (comparing an entry costs far less than that, and an entry shared
    /// with `previous` is equal by pointer).
    ///
    /// `previous_digests` must be the digests of `previous` (`ContentDigests::of(previous)` or
    /// derived from it); digests of another snapshot give a wrong hash, which the proxies refuse.
    pub fn reusing(
        snapshot: &Snapshot,
        previous: &Snapshot,
        previous_digests: &ContentDigests,
    ) -> Self {
        if !previous_digests.fits(previous) {
            return Self::of(snapshot);
        }
        let mut h = EntryHasher::default();
        let p = previous_digests;
        Self {
            routes: reuse(&mut h, &snapshot.routes, &previous.routes, &p.routes),
            upstreams: reuse(
                &mut h,
                &snapshot.upstreams,
                &previous.upstreams,
                &p.upstreams,
            ),
            certificates: reuse(
                &mut h,
                &snapshot.certificates,
                &previous.certificates,
                &p.certificates,
            ),
            secrets: reuse(&mut h, &snapshot.secrets, &previous.secrets, &p.secrets),
            default_chain: if snapshot.default_chain == previous.default_chain {
                p.default_chain
            } else {
                h.digest(&snapshot.default_chain)
            },
            blobs: reuse(&mut h, &snapshot.blobs, &previous.blobs, &p.blobs),
        }
    }

    /// Whether there is one digest per entry of `snapshot` (a cheap sanity check, not a proof
    /// that they are its digests).
    pub fn fits(&self, snapshot: &Snapshot) -> bool {
        self.routes.len() == snapshot.routes.len()
            && self.upstreams.len() == snapshot.upstreams.len()
            && self.certificates.len() == snapshot.certificates.len()
            && self.secrets.len() == snapshot.secrets.len()
            && self.blobs.len() == snapshot.blobs.len()
    }

    /// The content hash (lower-case hex SHA-256) these digests give.
    pub fn content_hash(&self) -> String {
        let mut outer = Sha256::new();
        outer.update(TAG);
        let mut section = |name: &str, digests: &[Digest]| {
            outer.update([name.len() as u8]);
            outer.update(name.as_bytes());
            outer.update((digests.len() as u64).to_le_bytes());
            for d in digests {
                outer.update(d);
            }
        };
        section("routes", &self.routes);
        section("upstreams", &self.upstreams);
        section("certificates", &self.certificates);
        section("secrets", &self.secrets);
        section("default_chain", std::slice::from_ref(&self.default_chain));
        section("blobs", &self.blobs);
        hex::encode(outer.finalize())
    }
}

/// The digests of `new`, taken from `old_digests` where `old` has an equal entry of the same
/// key (both sorted by key).
fn reuse<T: Keyed + PartialEq + Serialize>(
    h: &mut EntryHasher,
    new: &[Arc<T>],
    old: &[Arc<T>],
    old_digests: &[Digest],
) -> Vec<Digest> {
    let mut out = Vec::with_capacity(new.len());
    let mut i = 0;
    for entry in new {
        while i < old.len() && old[i].key() < entry.key() {
            i += 1;
        }
        match old.get(i) {
            Some(o) if o.key() == entry.key() && same_entry(o, entry) => out.push(old_digests[i]),
            _ => out.push(h.digest(&**entry)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn secret(name: &str, value: &str) -> SecretEntry {
        SecretEntry {
            key: ObjectKey::new("ns", name),
            data: BTreeMap::from([("k".to_string(), value.to_string())]),
        }
    }

    #[test]
    fn every_part_of_the_content_changes_the_hash() {
        let base = Snapshot {
            secrets: vec![secret("a", "1").into(), secret("b", "1").into()],
            ..Snapshot::default()
        };
        let hash = |s: &Snapshot| ContentDigests::of(s).content_hash();
        let mut variants = vec![base.clone()];
        let mut changed = base.clone();
        Arc::make_mut(&mut changed.secrets[1])
            .data
            .insert("k".into(), "2".into());
        variants.push(changed);
        let mut swapped = base.clone();
        swapped.secrets.swap(0, 1);
        variants.push(swapped);
        let mut removed = base.clone();
        removed.secrets.pop();
        variants.push(removed);
        let mut blob = base.clone();
        blob.blobs.push(BlobEntry::new(b"x").into());
        variants.push(blob);
        let mut version = base.clone();
        version.version = 9;
        version.hash = "ignored".into();
        let hashes: Vec<String> = variants.iter().map(hash).collect();
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b, "{hashes:?}");
            }
        }
        assert_eq!(
            hash(&version),
            hashes[0],
            "version and hash are not content"
        );
    }

    #[test]
    fn an_entry_moved_to_another_section_changes_the_hash() {
        // The same digests in another section: the sections' names and counts tell them apart.
        let d = ContentDigests {
            routes: vec![[1; 32]],
            ..ContentDigests::default()
        };
        let e = ContentDigests {
            upstreams: vec![[1; 32]],
            ..ContentDigests::default()
        };
        assert_ne!(d.content_hash(), e.content_hash());
    }

    #[test]
    fn reusing_digests_gives_the_hash_from_scratch() {
        let old = Snapshot {
            secrets: ["a", "b", "c"].map(|n| secret(n, "1").into()).to_vec(),
            ..Snapshot::default()
        };
        let new = Snapshot {
            secrets: vec![
                secret("a", "1").into(),
                secret("b", "2").into(),
                secret("d", "1").into(),
            ],
            ..Snapshot::default()
        };
        let old_digests = ContentDigests::of(&old);
        let reused = ContentDigests::reusing(&new, &old, &old_digests);
        assert_eq!(reused, ContentDigests::of(&new));
        assert_eq!(reused.secrets[0], old_digests.secrets[0]);
        // Digests that do not fit the previous snapshot are not trusted.
        let reused = ContentDigests::reusing(&new, &old, &ContentDigests::default());
        assert_eq!(reused, ContentDigests::of(&new));
    }
}
