//! Credentials as they are kept in a Kubernetes Secret.
//!
//! Every data key is one credential: the key is the credential id (api key name, user name,
//! JWT key id, access key), the value its secret (the api key, the password, the HS secret or
//! the PEM public key, the secret key). Two optional metadata keys per credential:
//! `<id>.expire` (unix seconds after which it is refused; `0` = never) and `<id>.labels`
//! (`k=v,k=v`, copied into the consumer).

use std::collections::BTreeMap;
use std::sync::Arc;

use hookway_crds::snapshot::SecretEntry;

use crate::plugin::{BuildEnv, Consumer};

const EXPIRE_SUFFIX: &str = ".expire";
const LABELS_SUFFIX: &str = ".labels";

/// One credential's identity (what a successful check yields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The consumer it authenticates as (shared with every request it authenticates).
    pub consumer: Arc<Consumer>,
    /// Unix seconds after which it is refused.
    pub expire: Option<u64>,
}

impl Identity {
    /// Whether the credential has expired at `now_secs`.
    pub fn expired(&self, now_secs: u64) -> bool {
        self.expire.is_some_and(|e| now_secs >= e)
    }
}

/// Reads the Secret the config calls `name`, as the compiler resolved it (see
/// [`BuildEnv::secret`]), into (identity, secret value) pairs.
pub fn load(env: &BuildEnv<'_>, name: &str) -> Result<Vec<(Identity, String)>, String> {
    parse(env.secret(name)?)
}

/// Parses a Secret's data (see the module docs for the layout).
pub fn parse(secret: &SecretEntry) -> Result<Vec<(Identity, String)>, String> {
    let key = &secret.key;
    let mut out = Vec::new();
    for (id, value) in &secret.data {
        if id.ends_with(EXPIRE_SUFFIX) || id.ends_with(LABELS_SUFFIX) {
            let base = id
                .strip_suffix(EXPIRE_SUFFIX)
                .or_else(|| id.strip_suffix(LABELS_SUFFIX))
                .unwrap_or(id);
            if !secret.data.contains_key(base) {
                return Err(format!(
                    "Secret {key}: {id:?} has no credential {base:?} to describe"
                ));
            }
            continue;
        }
        let expire = match secret.data.get(&format!("{id}{EXPIRE_SUFFIX}")) {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(t) => Some(t),
                Err(_) => {
                    return Err(format!(
                        "Secret {key}: {id}{EXPIRE_SUFFIX} must be unix seconds, got {v:?}"
                    ))
                }
            },
        };
        let labels = match secret.data.get(&format!("{id}{LABELS_SUFFIX}")) {
            None => BTreeMap::new(),
            Some(v) => {
                parse_labels(v).map_err(|e| format!("Secret {key}: {id}{LABELS_SUFFIX}: {e}"))?
            }
        };
        out.push((
            Identity {
                consumer: Arc::new(Consumer {
                    id: id.clone(),
                    labels,
                }),
                expire,
            },
            value.clone(),
        ));
    }
    if out.is_empty() {
        return Err(format!("Secret {key} holds no credentials"));
    }
    Ok(out)
}

/// `k=v,k=v` (spaces around items are ignored).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("expected k=v, got {item:?}"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("empty label name in {item:?}"));
        }
        labels.insert(k.to_string(), v.trim().to_string());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookway_crds::snapshot::ObjectKey;

    fn secret(data: &[(&str, &str)]) -> SecretEntry {
        SecretEntry {
            key: ObjectKey::new("apps", "keys"),
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn layout_with_metadata() {
        let parsed = parse(&secret(&[
            ("alice", "k1"),
            ("alice.expire", "1700000000"),
            ("alice.labels", "team=a, tier=gold"),
            ("bob", "k2"),
        ]))
        .unwrap();
        assert_eq!(parsed.len(), 2);
        let (alice, value) = &parsed[0];
        assert_eq!(value, "k1");
        assert_eq!(alice.consumer.id, "alice");
        assert_eq!(alice.expire, Some(1_700_000_000));
        assert_eq!(alice.consumer.labels["tier"], "gold");
        assert!(alice.expired(1_700_000_000));
        assert!(!alice.expired(1_699_999_999));
        assert_eq!(parsed[1].0.expire, None);
    }

    #[test]
    fn bad_metadata_is_reported() {
        assert!(parse(&secret(&[("a", "x"), ("a.expire", "soon")]))
            .unwrap_err()
            .contains("a.expire"));
        assert!(parse(&secret(&[("a", "x"), ("a.labels", "novalue")]))
            .unwrap_err()
            .contains("a.labels"));
        assert!(parse(&secret(&[("a.labels", "k=v")]))
            .unwrap_err()
            .contains("no credential"));
        assert!(parse(&secret(&[])).unwrap_err().contains("no credentials"));
    }
}
