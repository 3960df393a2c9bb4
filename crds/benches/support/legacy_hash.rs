//! The content hash as it was before per-entry digests (until 2026-12-07): the whole content
//! serialized at once into one SHA-256. Kept for the benchmarks only, to compare both in the
//! same run (`compile`, and the proxy's `apply`).

use std::sync::Arc;

use hookway_crds::snapshot::{
    shared_entries, BlobEntry, CertificateEntry, ChainEntry, RouteEntry, SecretEntry, UpstreamEntry,
};
use hookway_crds::Snapshot;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The former `Snapshot::content_hash`.
pub fn whole_content_hash(snapshot: &Snapshot) -> String {
    #[derive(Serialize)]
    struct Content<'a> {
        #[serde(serialize_with = "shared_entries::serialize")]
        routes: &'a [Arc<RouteEntry>],
        #[serde(serialize_with = "shared_entries::serialize")]
        upstreams: &'a [Arc<UpstreamEntry>],
        #[serde(serialize_with = "shared_entries::serialize")]
        certificates: &'a [Arc<CertificateEntry>],
        #[serde(serialize_with = "shared_entries::serialize")]
        secrets: &'a [Arc<SecretEntry>],
        default_chain: &'a [ChainEntry],
        #[serde(
            skip_serializing_if = "<[Arc<BlobEntry>]>::is_empty",
            serialize_with = "shared_entries::serialize"
        )]
        blobs: &'a [Arc<BlobEntry>],
    }
    struct HashWriter(Sha256);
    impl std::io::Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let content = Content {
        routes: &snapshot.routes,
        upstreams: &snapshot.upstreams,
        certificates: &snapshot.certificates,
        secrets: &snapshot.secrets,
        default_chain: &snapshot.default_chain,
        blobs: &snapshot.blobs,
    };
    let mut writer = std::io::BufWriter::with_capacity(64 * 1024, HashWriter(Sha256::new()));
    serde_json::to_writer(&mut writer, &content).expect("snapshot serializes");
    std::io::Write::flush(&mut writer).expect("hashing never fails");
    let (hasher, _) = writer.into_parts();
    hex::encode(hasher.0.finalize())
}
