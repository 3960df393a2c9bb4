//! Secrets: TLS certificates for Routes and credentials named by plugin configs.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Secret;

use crate::snapshot::{ObjectKey, SecretEntry};

/// The Secret type Routes accept for `tls.secretName`.
pub(crate) const TLS_TYPE: &str = "kubernetes.io/tls";

/// Secrets by namespace and name.
#[derive(Debug, Default)]
pub(crate) struct SecretIndex<'a> {
    by_ns: HashMap<&'a str, HashMap<&'a str, &'a Secret>>,
}

impl<'a> SecretIndex<'a> {
    /// Indexes `secrets` (first of duplicate keys wins; callers pass them sorted).
    pub fn new(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut by_ns: HashMap<&str, HashMap<&str, &Secret>> = HashMap::new();
        for s in secrets {
            let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) else {
                continue;
            };
            by_ns.entry(ns).or_default().entry(name).or_insert(s);
        }
        Self { by_ns }
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&'a Secret> {
        self.by_ns.get(namespace)?.get(name).copied()
    }

    /// The PEM certificate chain and key of TLS Secret `namespace/name`.
    pub fn tls(&self, namespace: &str, name: &str) -> Result<(String, String), String> {
        let secret = self
            .get(namespace, name)
            .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
        let kind = secret.type_.as_deref().unwrap_or("Opaque");
        if kind != TLS_TYPE {
            return Err(format!(
                "Secret {namespace}/{name} has type {kind:?}, expected {TLS_TYPE:?}"
            ));
        }
        let data = decoded(secret);
        let field = |k: &str| {
            data.get(k)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| format!("Secret {namespace}/{name} has no UTF-8 {k:?}"))
        };
        Ok((field("tls.crt")?, field("tls.key")?))
    }

    /// The decoded data of Secret `namespace/name`, named by a plugin config.
    pub fn entry(&self, namespace: &str, name: &str) -> Result<SecretEntry, String> {
        let secret = self.get(namespace, name).ok_or_else(|| {
            format!(
                "Secret {namespace}/{name} named by the plugin config not found (names resolve in the namespace of the object whose config it is)"
            )
        })?;
        Ok(SecretEntry {
            key: ObjectKey::new(namespace, name),
            data: decoded(secret),
        })
    }
}

/// `data` (already base64-decoded by serde) and `stringData` (which wins, as in the API
/// server); values that are not UTF-8 are left out.
fn decoded(secret: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect();
    out.extend(
        secret
            .string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    out
}
