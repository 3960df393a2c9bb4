//! Proxy-Wasm ABI 0.2.1 (and 0.2.0) constants and the serialized map format, after the
//! `proxy-wasm/spec` repository and the official SDKs' `types.rs` / `hostcalls.rs`.

/// `WasmResult` / `Status` codes returned by host functions.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// The key, property or buffer does not exist.
    pub const NOT_FOUND: i32 = 1;
    /// An argument is invalid (bad enum value, invalid header name or value).
    pub const BAD_ARGUMENT: i32 = 2;
    /// A serialized map could not be parsed.
    pub const SERIALIZATION_FAILURE: i32 = 3;
    /// Pointers outside the module's memory, or the module's allocator failed.
    pub const INVALID_MEMORY_ACCESS: i32 = 6;
    /// A shared queue holds nothing.
    pub const EMPTY: i32 = 7;
    /// Compare-and-swap failed (shared data).
    pub const CAS_MISMATCH: i32 = 8;
    /// A host limit was reached (shared data, metrics).
    pub const INTERNAL_FAILURE: i32 = 10;
    /// The host does not implement this call.
    pub const UNIMPLEMENTED: i32 = 12;
}

/// `MapType`: which header map a call means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    /// `HttpRequestHeaders` (0).
    RequestHeaders,
    /// `HttpResponseHeaders` (2).
    ResponseHeaders,
    /// `HttpCallResponseHeaders` (6): the answer to a `proxy_http_call`, in its callback.
    CallResponseHeaders,
    /// `HttpCallResponseTrailers` (7).
    CallResponseTrailers,
}

impl MapType {
    /// The map for an ABI value; trailers and gRPC metadata are not supported.
    pub fn from_abi(value: i32) -> Option<Self> {
        match value {
            0 => Some(MapType::RequestHeaders),
            2 => Some(MapType::ResponseHeaders),
            6 => Some(MapType::CallResponseHeaders),
            7 => Some(MapType::CallResponseTrailers),
            _ => None,
        }
    }
}

/// `BufferType`: which buffer a call means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferType {
    /// `HttpRequestBody` (0).
    RequestBody,
    /// `HttpResponseBody` (1).
    ResponseBody,
    /// `HttpCallResponseBody` (4): the body of a `proxy_http_call` answer, in its callback.
    CallResponseBody,
    /// `VmConfiguration` (6).
    VmConfiguration,
    /// `PluginConfiguration` (7).
    PluginConfiguration,
}

impl BufferType {
    /// The buffer for an ABI value.
    pub fn from_abi(value: i32) -> Option<Self> {
        match value {
            0 => Some(BufferType::RequestBody),
            1 => Some(BufferType::ResponseBody),
            4 => Some(BufferType::CallResponseBody),
            6 => Some(BufferType::VmConfiguration),
            7 => Some(BufferType::PluginConfiguration),
            _ => None,
        }
    }
}

/// `MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// A monotonically increasing count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of recorded values.
    Histogram,
}

impl MetricType {
    /// The metric type for an ABI value.
    pub fn from_abi(value: i32) -> Option<Self> {
        match value {
            0 => Some(MetricType::Counter),
            1 => Some(MetricType::Gauge),
            2 => Some(MetricType::Histogram),
            _ => None,
        }
    }
}

/// Serializes header pairs: `count: u32`, then `(name_len: u32, value_len: u32)` per pair,
/// then each name and value followed by a NUL byte (all integers little-endian).
pub fn serialize_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size = pairs
        .iter()
        .fold(4usize, |s, (k, v)| s + 8 + k.len() + v.len() + 2);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses the serialized pairs format; `None` when it is malformed. An empty input is an empty
/// map.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    if data > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let key_len = u32_at(4 + i * 8)?;
        let value_len = u32_at(8 + i * 8)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data += key_len + 1;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data += value_len + 1;
        pairs.push((key, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b":status", b"200"), (b"x-a", b""), (b"k", b"v")];
        let bytes = serialize_pairs(&pairs);
        assert_eq!(deserialize_pairs(&bytes).unwrap(), pairs);
        assert_eq!(
            deserialize_pairs(&[]).unwrap(),
            Vec::<(&[u8], &[u8])>::new()
        );
    }

    #[test]
    fn malformed_pairs_are_refused() {
        for bad in [
            &[1u8][..],
            &[1, 0, 0, 0][..],
            &[1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, b'a', 0][..],
            &[255, 255, 255, 255][..],
        ] {
            assert!(deserialize_pairs(bad).is_none(), "{bad:?}");
        }
    }
}
