//! What a request is counted under: a typed key, hashed once by the local counters and
//! written out (the same text as always) only for Redis.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use hookway_crds::snapshot::ObjectKey;

/// Header values longer than this are counted under their SHA-256, so that a client cannot
/// make a proxy (or Redis) store big keys.
pub const MAX_RAW_KEY: usize = 64;

/// The key one request is counted under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// The client address (`ip:<address>`).
    Ip(IpAddr),
    /// A header value of at most [`MAX_RAW_KEY`] bytes (`h:<value>`).
    Header(Box<[u8]>),
    /// The SHA-256 of a longer header value (`h#<hex>`).
    HeaderDigest([u8; 32]),
    /// The authenticated consumer (`c:<id>`).
    Consumer(Box<str>),
    /// The matched Route (`r:<namespace>/<name>`), or none (`r:`).
    Route(Option<Arc<ObjectKey>>),
}

impl Key {
    /// The key of a header value.
    pub fn header(value: &[u8]) -> Self {
        if value.len() > MAX_RAW_KEY {
            Key::HeaderDigest(Sha256::digest(value).into())
        } else {
            Key::Header(value.into())
        }
    }
}

/// Few writes to the hasher: an IPv4 key, the common case, is one `u64`. Keys of different
/// kinds write different tags, so they never collide by construction.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Key::Ip(IpAddr::V4(ip)) => state.write_u64(1 << 32 | u64::from(ip.to_bits())),
            Key::Ip(IpAddr::V6(ip)) => {
                state.write_u8(2);
                state.write_u128(ip.to_bits());
            }
            Key::Header(value) => {
                state.write_u8(3);
                state.write(value);
            }
            Key::HeaderDigest(digest) => {
                state.write_u8(4);
                state.write(digest);
            }
            Key::Consumer(id) => {
                state.write_u8(5);
                state.write(id.as_bytes());
            }
            Key::Route(route) => {
                state.write_u8(6);
                route.hash(state);
            }
        }
    }
}

/// The Redis form of the key.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Ip(ip) => write!(f, "ip:{ip}"),
            Key::Header(value) => write!(f, "h:{}", String::from_utf8_lossy(value)),
            Key::HeaderDigest(digest) => write!(f, "h#{}", hex::encode(digest)),
            Key::Consumer(id) => write!(f, "c:{id}"),
            Key::Route(Some(route)) => write!(f, "r:{route}"),
            Key::Route(None) => f.write_str("r:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_as_before_for_redis() {
        let cases = [
            (
                Key::Ip("10.0.0.7".parse().unwrap()),
                "ip:10.0.0.7".to_string(),
            ),
            (Key::Ip("::1".parse().unwrap()), "ip:::1".to_string()),
            (Key::header(b"tenant-a"), "h:tenant-a".to_string()),
            (
                Key::header(&[b'x'; 65]),
                format!("h#{}", hex::encode(Sha256::digest([b'x'; 65]))),
            ),
            (Key::Consumer("alice".into()), "c:alice".to_string()),
            (
                Key::Route(Some(Arc::new(ObjectKey::new("apps", "web")))),
                "r:apps/web".to_string(),
            ),
            (Key::Route(None), "r:".to_string()),
        ];
        for (key, text) in cases {
            assert_eq!(key.to_string(), text, "{key:?}");
        }
    }

    #[test]
    fn a_value_at_the_limit_is_kept_raw_and_one_past_it_hashed() {
        assert!(matches!(Key::header(&[b'a'; MAX_RAW_KEY]), Key::Header(_)));
        assert!(matches!(
            Key::header(&[b'a'; MAX_RAW_KEY + 1]),
            Key::HeaderDigest(_)
        ));
        assert_ne!(Key::header(b"a"), Key::header(b"b"));
    }
}
