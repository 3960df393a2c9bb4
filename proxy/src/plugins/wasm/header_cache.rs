//! Header names and values a filter sets, parsed once per instance: a filter sets the same few
//! headers on every request, and parsing a name (`HeaderName::from_bytes`: validation,
//! lower-casing, a copy into its own buffer) and copying a value cost more than the header-map
//! insert itself. A hit is a byte comparison and a reference-count increment.

use http::{HeaderName, HeaderValue};

/// Most names and most values remembered (a filter setting more parses the rest each time).
const CAPACITY: usize = 16;

/// The names and values an instance has parsed, in the order first seen.
#[derive(Default)]
pub struct HeaderCache {
    names: Vec<HeaderName>,
    values: Vec<HeaderValue>,
}

impl HeaderCache {
    /// `bytes` as a header name (`None` when it is not one). Names given in lower case (as
    /// SDKs and HTTP/2 write them) are remembered.
    pub fn name(&mut self, bytes: &[u8]) -> Option<HeaderName> {
        if let Some(name) = self.names.iter().find(|n| n.as_str().as_bytes() == bytes) {
            return Some(name.clone());
        }
        let name = HeaderName::from_bytes(bytes).ok()?;
        if self.names.len() < CAPACITY && name.as_str().as_bytes() == bytes {
            self.names.push(name.clone());
        }
        Some(name)
    }

    /// `bytes` as a header value (`None` when it is not one).
    pub fn value(&mut self, bytes: &[u8]) -> Option<HeaderValue> {
        if let Some(value) = self.values.iter().find(|v| v.as_bytes() == bytes) {
            return Some(value.clone());
        }
        let value = HeaderValue::from_bytes(bytes).ok()?;
        if self.values.len() < CAPACITY {
            self.values.push(value.clone());
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_once_and_refuses_what_is_not_a_header() {
        let mut cache = HeaderCache::default();
        for _ in 0..2 {
            assert_eq!(cache.name(b"x-a").unwrap(), "x-a");
            assert_eq!(cache.value(b"1").unwrap(), "1");
        }
        assert_eq!((cache.names.len(), cache.values.len()), (1, 1));
        // Upper case is a valid name, lower-cased, but not remembered under its other spelling.
        assert_eq!(cache.name(b"X-A").unwrap(), "x-a");
        assert_eq!(cache.names.len(), 1);
        assert!(cache.name(b"bad name").is_none());
        assert!(cache.value(b"bad\nvalue").is_none());
        assert_eq!((cache.names.len(), cache.values.len()), (1, 1));
        for i in 0..2 * CAPACITY {
            assert!(cache.value(i.to_string().as_bytes()).is_some());
        }
        assert_eq!(cache.values.len(), CAPACITY, "bounded");
    }
}
