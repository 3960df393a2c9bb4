//! Blobs pinned by digest that plugin configs load from a ConfigMap or a URL
//! (`x-hookway-pinned-blob`, a `wasm` module): the ConfigMaps by namespace and name, and what the
//! controller fetched for URL sources. The compiler reads both and carries the verified bytes in
//! the snapshot's `blobs`; it never does I/O itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;

use crate::catalogue::schema::text_blob;

/// A URL source: the URL and the digest its bytes must have.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UrlSource {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Lowercase hex SHA-256 pinned by the config.
    pub sha256: String,
}

/// Why fetching a URL source failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchFailureKind {
    /// No usable answer: connection, TLS, timeout, HTTP status, or the body was too large.
    Unreachable,
    /// The body's SHA-256 is not the pinned one.
    DigestMismatch,
}

/// A failed fetch, as reported on the GatewayPlugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchFailure {
    /// What went wrong (gives the condition's reason).
    pub kind: FetchFailureKind,
    /// The cause.
    pub message: String,
}

/// What the controller fetched for URL sources (empty in standalone mode: nothing is fetched).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetched {
    /// Verified bytes by their SHA-256 (one copy however many sources pin them).
    pub blobs: BTreeMap<String, Arc<Vec<u8>>>,
    /// The sources whose URL delivered bytes with the pinned digest (in `blobs`): a config is
    /// served only bytes its own URL gave, never another config's that pins the same digest.
    pub sources: BTreeSet<UrlSource>,
    /// The last failure of each source whose fetch failed (and that is not retried yet).
    pub failures: BTreeMap<UrlSource, FetchFailure>,
}

/// Why a ConfigMap blob cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigMapError {
    /// No such ConfigMap (in the namespace the config resolves names in).
    NotFound(String),
    /// The ConfigMap exists but has no usable value at the key.
    Invalid(String),
}

/// ConfigMaps by namespace and name.
#[derive(Debug, Default)]
pub(crate) struct ConfigMapIndex<'a> {
    by_key: HashMap<(&'a str, &'a str), &'a ConfigMap>,
}

impl<'a> ConfigMapIndex<'a> {
    /// Indexes `config_maps` (first of duplicate keys wins; callers pass them sorted).
    pub fn new(config_maps: impl IntoIterator<Item = &'a ConfigMap>) -> Self {
        let mut by_key = HashMap::new();
        for c in config_maps {
            if let (Some(ns), Some(name)) = (&c.metadata.namespace, &c.metadata.name) {
                by_key.entry((ns.as_str(), name.as_str())).or_insert(c);
            }
        }
        Self { by_key }
    }

    /// The bytes ConfigMap `namespace/name` holds at `key`: its `binaryData` as is, or its
    /// `data` base64-decoded (raw when it starts with the Wasm magic).
    pub fn blob(&self, namespace: &str, name: &str, key: &str) -> Result<Vec<u8>, ConfigMapError> {
        let config_map = self.by_key.get(&(namespace, name)).ok_or_else(|| {
            ConfigMapError::NotFound(format!(
                "ConfigMap {namespace}/{name} named by the plugin config not found (names resolve in the namespace of the object whose config it is; the ConfigMap needs the label hookway.dev/plugin-data=true)"
            ))
        })?;
        if let Some(bytes) = config_map.binary_data.as_ref().and_then(|d| d.get(key)) {
            return Ok(bytes.0.clone());
        }
        let text = config_map
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| {
                ConfigMapError::Invalid(format!(
                    "ConfigMap {namespace}/{name} has no key {key:?} in binaryData or data"
                ))
            })?;
        text_blob(text).map_err(|e| {
            ConfigMapError::Invalid(format!(
                "ConfigMap {namespace}/{name} key {key:?} (data): {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn config_map(binary: &[(&str, &[u8])], data: &[(&str, &str)]) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some("ns".into());
        c.metadata.name = Some("mods".into());
        c.binary_data = Some(
            binary
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        );
        c.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        c
    }

    #[test]
    fn config_map_blobs_by_table() {
        let c = config_map(
            &[("bin", b"\0asm\x01\0\0\0")],
            &[
                ("b64", "AGFzbQEAAAA="),
                ("raw", "\0asm\u{1}\0\0\0"),
                ("junk", "not base64!"),
            ],
        );
        let index = ConfigMapIndex::new([&c]);
        let module = b"\0asm\x01\0\0\0".to_vec();
        /// (ConfigMap, key, the bytes or a part of the error)
        type Case<'a> = (&'a str, &'a str, Result<Vec<u8>, &'a str>);
        let cases: [Case; 6] = [
            ("mods", "bin", Ok(module.clone())),
            ("mods", "b64", Ok(module.clone())),
            ("mods", "raw", Ok(module)),
            ("mods", "junk", Err("not a base64-encoded module")),
            ("mods", "nope", Err("has no key \"nope\"")),
            (
                "other",
                "bin",
                Err("ConfigMap ns/other named by the plugin config not found"),
            ),
        ];
        for (name, key, want) in cases {
            let got = index.blob("ns", name, key);
            match (got, want) {
                (Ok(bytes), Ok(want)) => assert_eq!(bytes, want, "{name}/{key}"),
                (Err(ConfigMapError::NotFound(e) | ConfigMapError::Invalid(e)), Err(needle)) => {
                    assert!(e.contains(needle), "{name}/{key}: {e}")
                }
                (got, want) => panic!("{name}/{key}: {got:?}, want {want:?}"),
            }
        }
        assert!(matches!(
            index.blob("ns", "other", "bin"),
            Err(ConfigMapError::NotFound(_))
        ));
    }
}
