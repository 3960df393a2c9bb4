//! What a proxy reports after applying a snapshot, object by object, and what a Route's served
//! content depends on.
//!
//! A proxy applies a snapshot per object: a certificate, upstream, plugin instance or route
//! that it cannot build is left out, with the Routes that depend on it (their previous version
//! keeps serving when there was one); everything else applies. Its acknowledgement names the
//! snapshot version it applied and lists each [`FailedObject`]. Anything not listed was applied
//! as that snapshot describes it.
//!
//! The controller turns this into `Programmed`: a Route counts as programmed on a proxy once the
//! proxy applied a version holding the Route's current content — the Route's entry *and* what
//! it depends on ([`digests`]) — and did not list the Route as failed.
//!
//! ```text
//!  Route ──upstream──► UpstreamEntry (its Service)
//!    │ ───hosts─────► CertificateEntry whose hosts include one of the Route's hosts
//!    └───chain──────► ChainEntry (config) ──plugin namespace──► SecretEntry (credentials)
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::content_hash::ContentDigests;
use crate::snapshot::{ObjectKey, Snapshot, UpstreamEntry};

/// The kind of an object a proxy could not apply.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailedKind {
    /// A Route: left out (see `previous`).
    Route,
    /// A Service: its upstream could not be prepared, or a plugin config set on it could not
    /// be built.
    Service,
    /// A GatewayPlugin: an instance with its own (namespace or cluster tier) config could not
    /// be built.
    GatewayPlugin,
    /// A `kubernetes.io/tls` Secret whose certificate the proxy's TLS stack refuses.
    Secret,
}

impl FailedKind {
    /// The kind's API name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailedKind::Route => "Route",
            FailedKind::Service => "Service",
            FailedKind::GatewayPlugin => "GatewayPlugin",
            FailedKind::Secret => "Secret",
        }
    }
}

/// One object of a snapshot that a proxy could not apply.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FailedObject {
    /// Its kind.
    pub kind: FailedKind,
    /// Its namespace and name.
    pub key: ObjectKey,
    /// Why, naming the failed dependency for a Route
    /// (`certificate team-b/tls: tls.key does not match tls.crt`).
    pub reason: String,
    /// For a Route: whether the proxy keeps serving the Route's previous version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous: bool,
}

impl std::fmt::Display for FailedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.kind.as_str(), self.key, self.reason)?;
        if self.previous {
            f.write_str(" (previous version still served)")?;
        }
        Ok(())
    }
}

/// Writes serde output straight into SHA-256.
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

/// A content digest: the first 16 bytes of a SHA-256 (enough to tell versions apart), kept as
/// a number (16 bytes where a hex string took 72 with its allocation).
pub type Digest = u128;

/// The [`Digest`] of the JSON of `parts`, in order.
fn digest(parts: &[&dyn erased::Json]) -> Digest {
    let mut writer = std::io::BufWriter::with_capacity(4 * 1024, HashWriter(Sha256::new()));
    for part in parts {
        part.write_json(&mut writer);
        std::io::Write::write_all(&mut writer, b"\n").expect("hashing never fails");
    }
    std::io::Write::flush(&mut writer).expect("hashing never fails");
    let (hasher, _) = writer.into_parts();
    let sum = hasher.0.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&sum[..16]);
    Digest::from_be_bytes(first)
}

mod erased {
    /// A value serialized into a writer (object-safe).
    pub trait Json {
        fn write_json(&self, out: &mut dyn std::io::Write);
    }
    impl<T: serde::Serialize> Json for T {
        fn write_json(&self, out: &mut dyn std::io::Write) {
            // Snapshot types always serialize; a failing writer cannot happen (hashing).
            let _ = serde_json::to_writer(out, self);
        }
    }
}

/// Content digests of a snapshot's objects, in the snapshot's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    /// Per Route: its entry and what it depends on (see [`digests`]).
    pub routes: Vec<Digest>,
    /// Per upstream (Service): its entry without its endpoints (see [`digests`]).
    pub upstreams: Vec<Digest>,
}

/// Digests of `snapshot`'s Routes and upstreams. A Route's digest covers its entry and what it
/// depends on: its upstream, the certificates served for its hosts, and the credential Secrets
/// of the namespaces its plugins come from. It changes when any of them changes, so "a proxy
/// applied the version holding this digest" means it serves this content. An upstream's
/// endpoints are not part of it: a proxy applies endpoint changes in place (no Route, chain or
/// router is built for them), and a rollout must not rewrite the status of every Route of the
/// Service twice per endpoint change.
///
/// Each dependency is hashed once, then each Route hashes its entry and the dependency digests.
pub fn digests(snapshot: &Snapshot) -> Digests {
    digests_with(snapshot, &ContentDigests::of(snapshot))
}

/// The [`Digest`] of an upstream entry without its endpoints (the rest of it serialized as it is).
fn without_endpoints(upstream: &UpstreamEntry) -> Digest {
    let bare = UpstreamEntry {
        endpoints: Vec::new(),
        ..UpstreamEntry::clone(upstream)
    };
    digest(&[&bare])
}

/// [`digests`] from the snapshot's entry digests (`content`, as its content hash was built
/// from, see `crate::content_hash`): no entry is serialized again; an upstream's, certificate's
/// or Secret's digest is the first 16 bytes of its entry digest, and each Route hashes its
/// entry's with its dependencies'. The controller keeps the entry digests of the snapshot it
/// sealed (only changed entries were hashed), so this costs one small hash per Route.
pub fn digests_with(snapshot: &Snapshot, content: &ContentDigests) -> Digests {
    if !content.fits(snapshot) {
        return digests(snapshot);
    }
    let short = |d: &[u8; 32]| {
        let mut first = [0u8; 16];
        first.copy_from_slice(&d[..16]);
        Digest::from_be_bytes(first)
    };
    // Endpoints left out: they come and go with every rollout and proxies swap them in place,
    // so counting them would flip `Programmed` to `Pending` (two status writes) on every Route
    // of a Service at each endpoint change — a status-write storm under endpoint churn.
    let upstream_digests: Vec<Digest> = snapshot
        .upstreams
        .iter()
        .map(|u| without_endpoints(u))
        .collect();
    let upstreams: HashMap<&ObjectKey, &Digest> = snapshot
        .upstreams
        .iter()
        .zip(&upstream_digests)
        .map(|(u, d)| (&u.key, d))
        .collect();
    let mut certs_by_host: HashMap<&str, Vec<Digest>> = HashMap::new();
    for (cert, d) in snapshot.certificates.iter().zip(&content.certificates) {
        let d = short(d);
        for host in &cert.hosts {
            certs_by_host.entry(host.as_str()).or_default().push(d);
        }
    }
    let mut secrets_by_ns: BTreeMap<&str, Vec<Digest>> = BTreeMap::new();
    for (secret, d) in snapshot.secrets.iter().zip(&content.secrets) {
        secrets_by_ns
            .entry(secret.key.namespace.as_str())
            .or_default()
            .push(short(d));
    }
    let routes = snapshot
        .routes
        .iter()
        .zip(&content.routes)
        .map(|(route, entry)| {
            let upstream = upstreams.get(&route.upstream);
            let certs: Vec<&Digest> = route
                .hosts
                .iter()
                .filter_map(|h| certs_by_host.get(h.as_str()))
                .flatten()
                .collect();
            let namespaces: std::collections::BTreeSet<&str> = route
                .chain
                .iter()
                .map(|c| c.plugin_ref.namespace.as_str())
                .collect();
            let secrets: Vec<&Digest> = namespaces
                .into_iter()
                .filter_map(|ns| secrets_by_ns.get(ns))
                .flatten()
                .collect();
            digest(&[&short(entry), &upstream, &certs, &secrets])
        })
        .collect();
    Digests {
        routes,
        upstreams: upstream_digests,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::snapshot::{
        Balance, CertificateEntry, ChainEntry, RouteEntry, Scheme, SecretEntry, Tier, UpstreamEntry,
    };

    fn snapshot() -> Snapshot {
        let route = |name: &str, host: &str, plugin_ns: &str| RouteEntry {
            key: ObjectKey::new("a", name),
            hosts: vec![host.into()],
            rules: vec![],
            priority: 0,
            created: 0,
            upstream: ObjectKey::new("a", "svc"),
            chain: vec![ChainEntry {
                alias: "auth".into(),
                plugin_ref: ObjectKey::new(plugin_ns, "auth"),
                plugin: "key_auth".into(),
                tier: Tier::Namespace,
                order: 1,
                config: serde_json::json!({"secret": "keys"}),
                exclude_paths: vec![],
                secrets: Default::default(),
                services: Default::default(),
            }],
        };
        Snapshot {
            routes: vec![
                Arc::new(route("r1", "one.example.com", "a")),
                Arc::new(route("r2", "two.example.com", "b")),
            ],
            upstreams: vec![Arc::new(UpstreamEntry {
                key: ObjectKey::new("a", "svc"),
                scheme: Scheme::Http,
                protocol: Default::default(),
                balance: Balance::RoundRobin,
                hash_header: None,
                endpoints: vec![],
                connect_timeout_ms: 1,
                request_timeout_ms: 1,
                retries: 0,
                retry_on_status: vec![],
                tls_server_name: None,
                tls_insecure_skip_verify: false,
            })],
            certificates: vec![Arc::new(CertificateEntry {
                key: ObjectKey::new("a", "tls"),
                cert_pem: "cert".into(),
                key_pem: "key".into(),
                hosts: vec!["one.example.com".into()],
            })],
            secrets: vec![Arc::new(SecretEntry {
                key: ObjectKey::new("a", "keys"),
                data: [("alice".to_string(), "k1".to_string())].into(),
            })],
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_route_digest_changes_with_what_it_depends_on_only() {
        let base = digests(&snapshot()).routes;
        type Change = fn(&mut Snapshot);
        let cases: Vec<(&str, Change, [bool; 2])> = vec![
            ("nothing", |_| {}, [false, false]),
            (
                "its own entry",
                |s| Arc::make_mut(&mut s.routes[0]).priority = 9,
                [true, false],
            ),
            (
                "the upstream both use",
                |s| Arc::make_mut(&mut s.upstreams[0]).retries = 3,
                [true, true],
            ),
            (
                "the certificate of r1's host",
                |s| Arc::make_mut(&mut s.certificates[0]).key_pem = "other".into(),
                [true, false],
            ),
            (
                "a credential Secret in r1's plugin namespace",
                |s| {
                    Arc::make_mut(&mut s.secrets[0])
                        .data
                        .insert("bob".into(), "k2".into());
                },
                [true, false],
            ),
            (
                "the upstream's endpoints (a rollout)",
                |s| {
                    Arc::make_mut(&mut s.upstreams[0])
                        .endpoints
                        .push(crate::snapshot::Endpoint {
                            address: "10.0.0.9".into(),
                            port: 80,
                            weight: 1,
                        });
                },
                [false, false],
            ),
            (
                "a plugin config of r2",
                |s| {
                    Arc::make_mut(&mut s.routes[1]).chain[0].config =
                        serde_json::json!({"secret": "x"})
                },
                [false, true],
            ),
        ];
        for (what, change, want) in cases {
            let mut s = snapshot();
            change(&mut s);
            let next = digests(&s).routes;
            let changed = [next[0] != base[0], next[1] != base[1]];
            assert_eq!(changed, want, "changing {what}");
        }
    }

    #[test]
    fn failures_read_as_a_sentence_and_round_trip() {
        let f = FailedObject {
            kind: FailedKind::Route,
            key: ObjectKey::new("team-b", "shop"),
            reason: "certificate team-b/tls: tls.key does not match tls.crt".into(),
            previous: true,
        };
        assert_eq!(
            f.to_string(),
            "Route team-b/shop: certificate team-b/tls: tls.key does not match tls.crt \
             (previous version still served)"
        );
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<FailedObject>(&json).unwrap(), f);
        let fresh: FailedObject = serde_json::from_str(
            r#"{"kind":"Secret","key":{"namespace":"n","name":"s"},"reason":"bad"}"#,
        )
        .unwrap();
        assert!(!fresh.previous);
    }
}
