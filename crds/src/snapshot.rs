//! The snapshot: everything a proxy needs to serve traffic, self-contained and versioned.
//!
//! It is produced by the compiler (from the cluster or a folder of manifests), shipped to
//! proxies as JSON, and swapped atomically in the proxy. Everything in it is already validated:
//! certificates and keys parse and match, credential Secrets read as the plugins will read them,
//! and every name a plugin config uses is bound to the object the compiler resolved it to.
//!
//! The `hash` covers everything but `version`, so two compiles of the same objects have the same
//! hash whatever order the objects came in. It is built from per-entry digests
//! ([`crate::content_hash`]), so a new version need only hash the entries that changed.
//!
//! Entries are shared ([`Arc`]) between versions: a new version that changes one Route holds the
//! same allocations as the previous one for every other entry, so copying a snapshot, applying a
//! delta or comparing two versions costs a pointer per unchanged entry (compared by
//! [`Arc::ptr_eq`] first, [`same_entry`]). On the wire an `Arc<T>` is exactly a `T`
//! ([`shared_entries`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::api::route::{Method, PathMatchType, ValueMatchType};
pub use crate::api::service::{Balance, Scheme};
use crate::content_hash::ContentDigests;

/// `namespace/name` of an object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A compiled, self-contained configuration for proxies.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Monotonic version assigned by the producer (controller or standalone loader); not hashed.
    #[serde(default)]
    pub version: u64,
    /// Hex SHA-256 of the content (everything but `version` and `hash`), built from the
    /// entries' digests ([`crate::content_hash`]).
    #[serde(default)]
    pub hash: String,
    /// Routes, sorted by key.
    #[serde(with = "shared_entries")]
    pub routes: Vec<Arc<RouteEntry>>,
    /// Upstreams, sorted by key.
    #[serde(with = "shared_entries")]
    pub upstreams: Vec<Arc<UpstreamEntry>>,
    /// TLS certificates, sorted by key.
    #[serde(with = "shared_entries")]
    pub certificates: Vec<Arc<CertificateEntry>>,
    /// Opaque Secrets referenced by plugin configs (credentials), sorted by key.
    #[serde(with = "shared_entries")]
    pub secrets: Vec<Arc<SecretEntry>>,
    /// The chain run on requests that match no Route: cluster-wide `global` plugins that apply
    /// everywhere, in run order.
    pub default_chain: Vec<ChainEntry>,
    /// Blobs pinned by digest that plugin configs load from a ConfigMap or a URL the
    /// controller fetched (a `wasm` module), sorted by digest. The compiler checked each
    /// against its digest; a config finds its blob by the `sha256` it pins.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "shared_entries"
    )]
    pub blobs: Vec<Arc<BlobEntry>>,
}

/// Serde for a `Vec<Arc<T>>` as the sequence of `T`s it holds: byte for byte what serde's `rc`
/// feature does for each `Arc<T>` (and what `Vec<T>` gives), without enabling that feature for
/// every crate that depends on serde.
///
/// Deserializing keeps a copy of each entry as it is read, not the entry itself: a deserializer
/// that does not know a list's length (serde_json) grows each of the entry's lists by doubling,
/// so a one-element list holds four slots, and a decoded snapshot of 10,000 Routes held 6 MiB
/// of such spare capacity (a copy allocates exactly what it holds). Entries stay for many
/// versions once shared, so they are made compact once, here.
pub mod shared_entries {
    use std::fmt;
    use std::marker::PhantomData;
    use std::sync::Arc;

    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serializes `entries` as a sequence of the values they point to.
    pub fn serialize<T: Serialize, S: Serializer>(
        entries: &[Arc<T>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(entries.iter().map(|e| &**e))
    }

    /// Deserializes a sequence of `T`s, each (a compact copy) in its own `Arc`.
    pub fn deserialize<'de, T: Deserialize<'de> + Clone, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Arc<T>>, D::Error> {
        struct Entries<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Clone> Visitor<'de> for Entries<T> {
            type Value = Vec<Arc<T>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // Bounded: the hint comes from the input.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(entry) = seq.next_element::<T>()? {
                    out.push(Arc::new(T::clone(&entry)));
                }
                out.shrink_to_fit();
                Ok(out)
            }
        }
        deserializer.deserialize_seq(Entries(PhantomData))
    }
}

/// `entries`, each in its own `Arc` (how a producer builds a snapshot's collections).
///
/// Into a new list, not `into_iter().map(Arc::new).collect()`: that collects in place, into
/// the allocation of `entries`, and keeps all of it — room for as many entries as pointers,
/// 170 bytes of nothing per Route (1.8 MiB of the controller's heap at 10,000 Routes,
/// `controller/tests/heap.rs`).
pub fn shared<T>(entries: Vec<T>) -> Vec<Arc<T>> {
    let mut out = Vec::with_capacity(entries.len());
    out.extend(entries.into_iter().map(Arc::new));
    out
}

/// `Arc::ptr_eq(a, b) || a == b`: the same allocation (an entry a new version shares with the
/// previous one) is equal without comparing what it holds.
pub fn same_entry<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// A served Route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RouteEntry {
    /// The Route object.
    pub key: ObjectKey,
    /// Exact (`a.example.com`) or wildcard (`*.example.com`) hosts, lower-case; empty = any.
    pub hosts: Vec<String>,
    /// Alternatives; empty = everything (normalised by the compiler to one `Prefix /` rule).
    pub rules: Vec<RuleEntry>,
    /// Higher wins between equally specific matches.
    pub priority: i32,
    /// `creationTimestamp` in seconds since the epoch (older wins ties, as in the Gateway API).
    pub created: i64,
    /// The Upstream key (namespace/name of the hookway Service).
    pub upstream: ObjectKey,
    /// The effective plugin chain, in run order (ascending `order`, then alias).
    pub chain: Vec<ChainEntry>,
}

/// One rule: every set field must match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuleEntry {
    /// Path match kind.
    pub path_type: PathMatchType,
    /// Path or regex (validated to compile).
    pub path: String,
    /// Methods; empty = any.
    pub methods: Vec<Method>,
    /// Header matches (names lower-case).
    pub headers: Vec<ValueMatchEntry>,
    /// Query matches.
    pub query: Vec<ValueMatchEntry>,
    /// `Some(true)`: only requests that arrived over TLS; `Some(false)`: only plain HTTP;
    /// `None` (the default, and every hookway Route's): both. Set on Routes lowered from a
    /// Gateway API route attached only to HTTPS, or only to HTTP, listeners of a Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// Gateway API listener isolation: hosts this rule does not answer although its Route's
    /// hosts cover them (`None`, the default and every hookway Route's: none). Set on Routes
    /// lowered from a Gateway API route attached to some listeners of a Gateway, not to
    /// others with a more specific hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Box<HostIsolation>>,
}

/// Which hosts a rule lowered from a Gateway API route leaves to the Gateway's more specific
/// listeners it is not attached to (the spec's GatewayHTTPListenerIsolation: a request is
/// served only by routes attached to the most specific listener that matches its host).
///
/// A request for host `h` is not answered when a pattern of `except` matches `h` and no
/// pattern of `attached` that is more specific than it does (patterns are exact names or `*.`
/// wildcards; an exact name is more specific than any wildcard, a longer wildcard suffix than a
/// shorter one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostIsolation {
    /// Hostnames of the listeners the route is not attached to that are more specific than one
    /// it is attached to.
    pub except: Vec<String>,
    /// Hostnames of the listeners it is attached to (hostname-less ones left out).
    pub attached: Vec<String>,
}

impl HostIsolation {
    /// Whether `host` (lower-case, no port) is left to a more specific listener.
    pub fn excludes(&self, host: &str) -> bool {
        self.except.iter().any(|p| {
            host_matches(p, host)
                && !self
                    .attached
                    .iter()
                    .any(|a| host_matches(a, host) && more_specific(a, p))
        })
    }
}

/// Whether host pattern `pattern` (exact, or `*.suffix`: one or more labels before the suffix)
/// matches the host name `host`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        None => pattern == host,
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|front| front.len() > 1 && front.ends_with('.')),
    }
}

/// Whether host pattern `a` is more specific than `b`: an exact name than a wildcard, a
/// wildcard with a longer suffix than one with a shorter suffix.
pub fn more_specific(a: &str, b: &str) -> bool {
    match (a.strip_prefix("*."), b.strip_prefix("*.")) {
        (None, Some(_)) => true,
        (Some(x), Some(y)) => x.len() > y.len(),
        _ => false,
    }
}

/// A header or query match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValueMatchEntry {
    /// Name (headers lower-cased).
    pub name: String,
    /// Match kind.
    pub kind: ValueMatchType,
    /// Value or regex; empty for `Present`.
    pub value: String,
}

/// Which level an effective plugin setting came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The Route's own `spec.plugins`.
    Route,
    /// The target Service's `spec.plugins`.
    Service,
    /// A GatewayPlugin in the Route's namespace.
    Namespace,
    /// A GatewayPlugin in the root namespace.
    Cluster,
}

impl Tier {
    /// Lower-case name, as shown on statuses.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Route => "route",
            Tier::Service => "service",
            Tier::Namespace => "namespace",
            Tier::Cluster => "cluster",
        }
    }
}

/// One plugin in a chain, with its effective config.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ChainEntry {
    /// The alias (GatewayPlugin name).
    pub alias: String,
    /// The GatewayPlugin the alias resolved to (its namespace tells the tier of the instance).
    pub plugin_ref: ObjectKey,
    /// The plugin kind.
    pub plugin: String,
    /// Where the effective config came from.
    pub tier: Tier,
    /// Execution order.
    pub order: i32,
    /// The effective config (validated against the plugin's typed config).
    pub config: serde_json::Value,
    /// Paths for which this plugin is skipped (`*` wildcards).
    pub exclude_paths: Vec<String>,
    /// The Secrets `config` names, as the compiler resolved them: name as written → the Secret
    /// (its data is in [`Snapshot::secrets`]). A proxy reads a config's Secret only through
    /// this binding, never by resolving the name itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, ObjectKey>,
    /// The Services `config` sends traffic to, as the compiler resolved (and, across
    /// namespaces, permitted) them: name as written → the Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ObjectKey>,
}

/// An upstream: nodes plus how to talk to them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UpstreamEntry {
    /// The hookway Service.
    pub key: ObjectKey,
    /// http or https.
    pub scheme: Scheme,
    /// The HTTP version spoken to the nodes (resolved from the Service's `http2` and its
    /// backend port's `appProtocol`; what Ingress `backend-protocol: GRPC` and GRPCRoute lower
    /// to). Absent in older snapshots: `auto`.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Balancing algorithm.
    pub balance: Balance,
    /// Header hashed for `header-hash` (lower-case).
    pub hash_header: Option<String>,
    /// Ready nodes, sorted (address, port).
    pub endpoints: Vec<Endpoint>,
    /// Connect timeout in milliseconds.
    pub connect_timeout_ms: u64,
    /// Response-head timeout in milliseconds.
    pub request_timeout_ms: u64,
    /// Extra attempts for idempotent requests.
    pub retries: u32,
    /// Upstream statuses that trigger a retry.
    pub retry_on_status: Vec<u16>,
    /// SNI / verification name for https.
    pub tls_server_name: Option<String>,
    /// Skip upstream certificate verification.
    pub tls_insecure_skip_verify: bool,
}

/// The HTTP version an upstream is spoken to with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 only (over TLS, ALPN offers `http/1.1` alone).
    Http1,
    /// Over TLS, ALPN offers `h2` and `http/1.1` and the connection speaks what the upstream
    /// picked; cleartext is HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/2 only: ALPN `h2` over TLS, prior knowledge (h2c) in cleartext.
    Http2,
}

/// One upstream node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Host name or IP address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Weight (for `weighted`).
    pub weight: u32,
}

/// A TLS certificate and the hosts it is served for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CertificateEntry {
    /// The `kubernetes.io/tls` Secret.
    pub key: ObjectKey,
    /// PEM chain (`tls.crt`).
    pub cert_pem: String,
    /// PEM private key (`tls.key`).
    pub key_pem: String,
    /// Hosts (from the Routes that name this Secret), sorted, deduplicated.
    pub hosts: Vec<String>,
}

/// An opaque Secret's data, for plugins that need credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretEntry {
    /// The Secret.
    pub key: ObjectKey,
    /// Decoded data, by key (UTF-8; non-UTF-8 values are left out by the compiler).
    pub data: BTreeMap<String, String>,
}

/// Bytes pinned by their SHA-256, carried for plugin configs (`Snapshot::blobs`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    /// Lowercase hex SHA-256 of the bytes: the key.
    pub sha256: String,
    /// The bytes, base64-encoded (standard alphabet, padded).
    pub data: String,
}

impl BlobEntry {
    /// An entry holding `bytes` (its digest computed here).
    pub fn new(bytes: &[u8]) -> Self {
        use base64::Engine as _;
        Self {
            sha256: hex::encode(Sha256::digest(bytes)),
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// The bytes, checked against `sha256` (a snapshot edited on the way is refused).
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .map_err(|e| format!("blob {}: not base64: {e}", self.sha256))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != self.sha256 {
            return Err(format!(
                "blob {}: the bytes' digest is {actual}",
                self.sha256
            ));
        }
        Ok(bytes)
    }
}

impl Snapshot {
    /// Computes the content hash (everything except `version` and `hash`) from scratch: the
    /// SHA-256 of every entry's canonical JSON, combined in order
    /// ([`crate::content_hash`] describes the construction).
    pub fn content_hash(&self) -> String {
        ContentDigests::of(self).content_hash()
    }

    /// Sets `hash` from the content.
    pub fn seal(self) -> Self {
        self.seal_reusing(None).0
    }

    /// Sets `hash` from the content and returns the entry digests with the snapshot. With
    /// `previous` (a snapshot and its digests), only the entries that are not equal to
    /// `previous`'s entry of the same key are hashed.
    pub fn seal_reusing(
        mut self,
        previous: Option<(&Snapshot, &ContentDigests)>,
    ) -> (Self, ContentDigests) {
        let digests = match previous {
            Some((snapshot, digests)) => ContentDigests::reusing(&self, snapshot, digests),
            None => ContentDigests::of(&self),
        };
        self.hash = digests.content_hash();
        (self, digests)
    }

    /// Finds an upstream by key.
    pub fn upstream(&self, key: &ObjectKey) -> Option<&UpstreamEntry> {
        self.upstreams
            .binary_search_by(|u| u.key.cmp(key))
            .ok()
            .map(|i| &*self.upstreams[i])
    }

    /// Finds a blob by its digest.
    pub fn blob(&self, sha256: &str) -> Option<&BlobEntry> {
        self.blobs
            .binary_search_by(|b| b.sha256.as_str().cmp(sha256))
            .ok()
            .map(|i| &*self.blobs[i])
    }

    /// Finds a secret by key.
    pub fn secret(&self, key: &ObjectKey) -> Option<&SecretEntry> {
        self.secrets
            .binary_search_by(|s| s.key.cmp(key))
            .ok()
            .map(|i| &*self.secrets[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_leaves_hosts_to_the_most_specific_listener() {
        let isolation = |except: &[&str], attached: &[&str]| HostIsolation {
            except: except.iter().map(|s| s.to_string()).collect(),
            attached: attached.iter().map(|s| s.to_string()).collect(),
        };
        let empty = isolation(
            &["*.example.com", "*.foo.example.com", "abc.foo.example.com"],
            &[],
        );
        let wildcard = isolation(
            &["*.foo.example.com", "abc.foo.example.com"],
            &["*.example.com"],
        );
        // Attached to the hostname-less and the most specific listener, not to the middle one.
        let gap = isolation(&["*.foo.example.com"], &["abc.foo.example.com"]);
        let cases = [
            (&empty, "bar.com", false),
            (&empty, "bar.example.com", true),
            (&empty, "abc.foo.example.com", true),
            (&empty, "example.com", false),
            (&wildcard, "bar.example.com", false),
            (&wildcard, "bar.foo.example.com", true),
            (&wildcard, "abc.foo.example.com", true),
            (&gap, "abc.foo.example.com", false),
            (&gap, "x.foo.example.com", true),
            (&gap, "x.example.com", false),
        ];
        for (isolation, host, excluded) in cases {
            assert_eq!(isolation.excludes(host), excluded, "{host} {isolation:?}");
        }
        let matches = [
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "aexample.com", false),
            ("a.example.com", "a.example.com", true),
        ];
        for (pattern, host, want) in matches {
            assert_eq!(host_matches(pattern, host), want, "{pattern} {host}");
        }
        assert!(more_specific("a.example.com", "*.example.com"));
        assert!(more_specific("*.foo.example.com", "*.example.com"));
        assert!(!more_specific("*.example.com", "*.foo.example.com"));
        assert!(!more_specific("a.example.com", "b.example.com"));
    }
}
