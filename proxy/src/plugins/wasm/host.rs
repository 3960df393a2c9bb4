//! The state a filter instance's host functions see ([`Host`], the wasmtime store's data): the
//! plugin's shared settings, the memory cap, and — during a call — the request or response
//! head, the body buffer and an early answer the filter asked for.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use wasmtime::{Memory, ResourceLimiter, TypedFunc};

use super::abi::{self, status, BufferType, MapType};
use super::header_cache::HeaderCache;
use super::http_call::{CallResult, Calls, Upstreams, MAX_CALLS_PER_REQUEST};
use super::metrics::FilterMetrics;
use super::root::RootControl;
use hookway_crds::snapshot::ObjectKey;

/// What every instance of one filter config shares.
pub struct Shared {
    /// The GatewayPlugin alias (`plugin_name`, the metrics' `plugin` label).
    pub alias: Arc<str>,
    /// `configuration`, for `proxy_on_configure`.
    pub configuration: Vec<u8>,
    /// `root_id` (`plugin_root_id`).
    pub root_id: String,
    /// The filter's defined metrics and failure counter.
    pub metrics: FilterMetrics,
    /// The upstreams `proxy_http_call` may reach.
    pub upstreams: Upstreams,
    /// Ticks and shared queues.
    pub root: RootControl,
}

/// Caps an instance's memory at `max_memory`; remembers a refused growth so the trap that
/// usually follows is reported as out-of-memory.
pub struct Limiter {
    /// Largest linear memory, bytes.
    pub max_memory: usize,
    /// A growth was refused.
    pub denied: bool,
}

/// Largest table of an instance, elements.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_memory;
        self.denied |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A request head as the filter sees it (moved in for the call, moved back after).
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// `:method`.
    pub method: Method,
    /// `:path` and `:authority` (when absolute).
    pub uri: Uri,
    /// The headers.
    pub headers: HeaderMap,
    /// `:scheme`.
    pub scheme: &'static str,
}

/// A response head as the filter sees it.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// `:status`.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
}

/// Per-request facts for `proxy_get_property`.
#[derive(Debug, Clone)]
pub struct Props {
    /// The client connection's peer.
    pub source: SocketAddr,
    /// The matched Route.
    pub route: Option<Arc<ObjectKey>>,
    /// The Service the request goes to (when the filter ran).
    pub service: Option<Arc<ObjectKey>>,
    /// The request id.
    pub request_id: Option<Arc<str>>,
}

/// An answer the filter gave with `proxy_send_local_response`.
#[derive(Debug)]
pub struct LocalResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers, in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
}

/// The store data of one instance.
pub struct Host {
    /// Plugin-wide settings.
    pub shared: Arc<Shared>,
    /// The memory cap.
    pub limiter: Limiter,
    /// The module's allocator (`proxy_on_memory_allocate` or `malloc`).
    pub malloc: Option<TypedFunc<i32, i32>>,
    /// The module's exported memory.
    pub memory: Option<Memory>,
    /// The request head during a call (`None` at the root context).
    pub request: Option<RequestHead>,
    /// Whether the filter may change `request` (request-head and whole-body calls).
    pub request_writable: bool,
    /// The response head during a call.
    pub response: Option<ResponseHead>,
    /// Whether the filter may change `response` (response-head calls).
    pub response_writable: bool,
    /// The body buffer of a body call, and which body it is.
    pub body: Option<(BufferType, Vec<u8>)>,
    /// Per-request properties.
    pub props: Option<Props>,
    /// An early answer asked for during the call.
    pub local_response: Option<LocalResponse>,
    /// Header names and values the filter set before.
    pub header_cache: HeaderCache,
    /// `proxy_http_call` state.
    pub calls: Calls,
}

/// The result of an operation on a header map.
pub enum MapOp<'a> {
    /// Replace every value of the name.
    Replace(&'a [u8], &'a [u8]),
    /// Append a value.
    Add(&'a [u8], &'a [u8]),
    /// Remove every value.
    Remove(&'a [u8]),
}

impl Host {
    /// A fresh instance state.
    pub fn new(shared: Arc<Shared>, max_memory: usize) -> Self {
        Self {
            shared,
            limiter: Limiter {
                max_memory,
                denied: false,
            },
            malloc: None,
            memory: None,
            request: None,
            request_writable: false,
            response: None,
            response_writable: false,
            body: None,
            props: None,
            local_response: None,
            header_cache: HeaderCache::default(),
            calls: Calls::default(),
        }
    }

    /// `proxy_http_call`: prepares a call (it starts when the callback returns); returns the
    /// token, or the ABI status of a refusal (`BadArgument`: unknown upstream or bad headers;
    /// `InternalFailure`: calls not possible in this callback, or too many in flight).
    pub fn dispatch_call(
        &mut self,
        upstream: &[u8],
        headers: &[u8],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, i32> {
        let shared = &self.shared;
        let refuse = |status: i32, why: &str| {
            shared.metrics.http_call(CallResult::Refused);
            tracing::debug!(
                target: "hookway::wasm",
                plugin = &*shared.alias,
                upstream = %String::from_utf8_lossy(upstream),
                "proxy_http_call refused: {why}"
            );
            status
        };
        if !self.calls.allowed {
            return Err(refuse(
                status::INTERNAL_FAILURE,
                "not possible in this callback (only request headers, a paused whole request body, response headers, http call responses, ticks and queue wake-ups)",
            ));
        }
        if self.calls.dispatched >= MAX_CALLS_PER_REQUEST {
            return Err(refuse(
                status::INTERNAL_FAILURE,
                "this request already made the most calls one request may make",
            ));
        }
        if self.calls.pending.len() + self.calls.in_flight >= shared.upstreams.max_per_request {
            return Err(refuse(
                status::INTERNAL_FAILURE,
                "http_call_max_per_request calls are in flight",
            ));
        }
        match shared.upstreams.prepare(upstream, headers, body, timeout_ms) {
            Ok(call) => Ok(self.calls.push(call)),
            Err(refused) => Err(refuse(
                refused.status(),
                "unknown upstream (not in clusters) or invalid headers (:method and :path are required)",
            )),
        }
    }

    /// The serialized pairs of a map (pseudo-headers first); empty when the map is not
    /// available in this call.
    pub fn map_pairs(&self, map: MapType) -> Vec<u8> {
        match map {
            MapType::RequestHeaders => match &self.request {
                Some(head) => {
                    let authority = request_authority(head);
                    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
                    let pseudo = [
                        (&b":authority"[..], authority.as_bytes()),
                        (b":path", path.as_bytes()),
                        (b":method", head.method.as_str().as_bytes()),
                        (b":scheme", head.scheme.as_bytes()),
                    ];
                    let pairs: Vec<(&[u8], &[u8])> = pseudo
                        .into_iter()
                        .chain(
                            head.headers
                                .iter()
                                .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
                        )
                        .collect();
                    abi::serialize_pairs(&pairs)
                }
                None => abi::serialize_pairs(&[]),
            },
            MapType::ResponseHeaders => match &self.response {
                Some(head) => {
                    let code = head.status.as_str().as_bytes();
                    let pairs: Vec<(&[u8], &[u8])> = std::iter::once((&b":status"[..], code))
                        .chain(
                            head.headers
                                .iter()
                                .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
                        )
                        .collect();
                    abi::serialize_pairs(&pairs)
                }
                None => abi::serialize_pairs(&[]),
            },
            MapType::CallResponseHeaders | MapType::CallResponseTrailers => {
                let Some(response) = &self.calls.response else {
                    return abi::serialize_pairs(&[]);
                };
                let code = response.status.as_str().as_bytes();
                let status =
                    (map == MapType::CallResponseHeaders).then_some((&b":status"[..], code));
                let headers = if map == MapType::CallResponseHeaders {
                    &response.headers
                } else {
                    &response.trailers
                };
                let pairs: Vec<(&[u8], &[u8])> = status
                    .into_iter()
                    .chain(
                        headers
                            .iter()
                            .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
                    )
                    .collect();
                abi::serialize_pairs(&pairs)
            }
        }
    }

    /// The value of `name` (several values joined with `,`), or `None`.
    pub fn map_get(&self, map: MapType, name: &[u8]) -> Option<Vec<u8>> {
        let (headers, pseudo) = match map {
            MapType::RequestHeaders => {
                let head = self.request.as_ref()?;
                let pseudo = match name {
                    b":authority" => Some(request_authority(head).into_bytes()),
                    b":path" => Some(
                        head.uri
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .as_bytes()
                            .to_vec(),
                    ),
                    b":method" => Some(head.method.as_str().as_bytes().to_vec()),
                    b":scheme" => Some(head.scheme.as_bytes().to_vec()),
                    _ => None,
                };
                (&head.headers, pseudo)
            }
            MapType::ResponseHeaders => {
                let head = self.response.as_ref()?;
                let pseudo = (name == b":status").then(|| head.status.as_str().as_bytes().to_vec());
                (&head.headers, pseudo)
            }
            MapType::CallResponseHeaders => {
                let response = self.calls.response.as_ref()?;
                let pseudo =
                    (name == b":status").then(|| response.status.as_str().as_bytes().to_vec());
                (&response.headers, pseudo)
            }
            MapType::CallResponseTrailers => (&self.calls.response.as_ref()?.trailers, None),
        };
        if pseudo.is_some() {
            return pseudo;
        }
        let name = HeaderName::from_bytes(name).ok()?;
        let mut values = headers.get_all(&name).iter();
        let first = values.next()?;
        let mut out = first.as_bytes().to_vec();
        for v in values {
            out.push(b',');
            out.extend_from_slice(v.as_bytes());
        }
        Some(out)
    }

    /// Changes a map; returns an ABI status. Outside the call that owns the head, changes are
    /// ignored (the head has already been sent on) and `Ok` is returned, as SDKs treat any
    /// other status as fatal.
    pub fn map_change(&mut self, map: MapType, op: MapOp<'_>) -> i32 {
        match map {
            MapType::RequestHeaders => {
                if !self.request_writable {
                    return status::OK;
                }
                let Some(head) = self.request.as_mut() else {
                    return status::OK;
                };
                change_request(head, op, &mut self.header_cache)
            }
            MapType::ResponseHeaders => {
                if !self.response_writable {
                    return status::OK;
                }
                let Some(head) = self.response.as_mut() else {
                    return status::OK;
                };
                change_response(head, op, &mut self.header_cache)
            }
            // An answer to a call is read-only; changes are ignored like those of a head
            // already sent on.
            MapType::CallResponseHeaders | MapType::CallResponseTrailers => status::OK,
        }
    }

    /// Replaces a whole map with serialized pairs; returns an ABI status.
    pub fn map_set_pairs(&mut self, map: MapType, bytes: &[u8]) -> i32 {
        let Some(pairs) = abi::deserialize_pairs(bytes) else {
            return status::SERIALIZATION_FAILURE;
        };
        let writable = match map {
            MapType::RequestHeaders => self.request_writable && self.request.is_some(),
            MapType::ResponseHeaders => self.response_writable && self.response.is_some(),
            MapType::CallResponseHeaders | MapType::CallResponseTrailers => false,
        };
        if !writable {
            return status::OK;
        }
        match map {
            MapType::RequestHeaders => {
                if let Some(head) = self.request.as_mut() {
                    head.headers.clear();
                }
            }
            MapType::ResponseHeaders => {
                if let Some(head) = self.response.as_mut() {
                    head.headers.clear();
                }
            }
            MapType::CallResponseHeaders | MapType::CallResponseTrailers => {}
        }
        for (name, value) in pairs {
            // Read-only pseudo-headers come back from a get-modify-set round trip: skipped.
            if name == b":authority" || name == b":scheme" {
                continue;
            }
            let op = if name.starts_with(b":") {
                MapOp::Replace(name, value)
            } else {
                MapOp::Add(name, value)
            };
            let result = self.map_change(map, op);
            if result != status::OK {
                return result;
            }
        }
        status::OK
    }

    /// A property by its dotted path, as Envoy encodes it (strings raw, integers as 8-byte
    /// little-endian).
    pub fn property(&self, path: &str) -> Option<Vec<u8>> {
        let shared = &self.shared;
        let text = |s: &str| Some(s.as_bytes().to_vec());
        match path {
            "plugin_name" => return text(&shared.alias),
            "plugin_root_id" => return text(&shared.root_id),
            "plugin_vm_id" => return text(""),
            _ => {}
        }
        if let Some(head) = &self.request {
            match path {
                "request.path" => {
                    return text(head.uri.path_and_query().map_or("/", |p| p.as_str()))
                }
                "request.url_path" => return text(head.uri.path()),
                "request.query" => return text(head.uri.query().unwrap_or("")),
                "request.method" => return text(head.method.as_str()),
                "request.scheme" => return text(head.scheme),
                "request.host" => return Some(request_authority(head).into_bytes()),
                _ => {}
            }
        }
        if let (Some(head), "response.code") = (&self.response, path) {
            return Some(i64::from(head.status.as_u16()).to_le_bytes().to_vec());
        }
        let props = self.props.as_ref()?;
        match path {
            "source.address" => text(&props.source.to_string()),
            "source.port" => Some(i64::from(props.source.port()).to_le_bytes().to_vec()),
            "request.id" => props.request_id.as_deref().and_then(text),
            "route_name" | "xds.route_name" => {
                props.route.as_ref().map(|r| r.to_string().into_bytes())
            }
            "cluster_name" | "xds.cluster_name" => {
                props.service.as_ref().map(|s| s.to_string().into_bytes())
            }
            _ => None,
        }
    }

    /// The body buffer of `kind` during a body call.
    pub fn body(&self, kind: BufferType) -> Option<&[u8]> {
        if kind == BufferType::CallResponseBody {
            return self.calls.response.as_ref().map(|r| &r.body[..]);
        }
        match &self.body {
            Some((k, bytes)) if *k == kind => Some(bytes),
            _ => None,
        }
    }

    /// Replaces `size` bytes at `start` of the body buffer of `kind` with `data`; returns an
    /// ABI status.
    pub fn set_body(&mut self, kind: BufferType, start: usize, size: usize, data: &[u8]) -> i32 {
        match &mut self.body {
            Some((k, bytes)) if *k == kind => {
                let start = start.min(bytes.len());
                let end = start.saturating_add(size).min(bytes.len());
                bytes.splice(start..end, data.iter().copied());
                status::OK
            }
            _ => status::NOT_FOUND,
        }
    }
}

fn request_authority(head: &RequestHead) -> String {
    if let Some(authority) = head.uri.authority() {
        return authority.as_str().to_string();
    }
    head.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn header(
    cache: &mut HeaderCache,
    name: &[u8],
    value: Option<&[u8]>,
) -> Option<(HeaderName, Option<HeaderValue>)> {
    let name = cache.name(name)?;
    let value = match value {
        Some(v) => Some(cache.value(v)?),
        None => None,
    };
    Some((name, value))
}

fn change_headers(headers: &mut HeaderMap, op: MapOp<'_>, cache: &mut HeaderCache) -> i32 {
    let parsed = match op {
        MapOp::Replace(n, v) | MapOp::Add(n, v) => header(cache, n, Some(v)),
        MapOp::Remove(n) => header(cache, n, None),
    };
    let Some((name, value)) = parsed else {
        return status::BAD_ARGUMENT;
    };
    match (op, value) {
        (MapOp::Replace(..), Some(value)) => {
            headers.insert(name, value);
        }
        (MapOp::Add(..), Some(value)) => {
            headers.append(name, value);
        }
        _ => {
            headers.remove(name);
        }
    }
    status::OK
}

fn change_request(head: &mut RequestHead, op: MapOp<'_>, cache: &mut HeaderCache) -> i32 {
    match op {
        MapOp::Replace(b":path", value) | MapOp::Add(b":path", value) => {
            let Ok(pq) = http::uri::PathAndQuery::try_from(value) else {
                return status::BAD_ARGUMENT;
            };
            let mut parts = std::mem::take(&mut head.uri).into_parts();
            parts.path_and_query = Some(pq);
            match Uri::from_parts(parts) {
                Ok(uri) => {
                    head.uri = uri;
                    status::OK
                }
                Err(_) => status::BAD_ARGUMENT,
            }
        }
        MapOp::Replace(b":method", value) | MapOp::Add(b":method", value) => {
            match Method::from_bytes(value) {
                Ok(method) => {
                    head.method = method;
                    status::OK
                }
                Err(_) => status::BAD_ARGUMENT,
            }
        }
        MapOp::Replace(name, _) | MapOp::Add(name, _) | MapOp::Remove(name)
            if name.starts_with(b":") =>
        {
            status::BAD_ARGUMENT
        }
        op => change_headers(&mut head.headers, op, cache),
    }
}

fn change_response(head: &mut ResponseHead, op: MapOp<'_>, cache: &mut HeaderCache) -> i32 {
    match op {
        MapOp::Replace(b":status", value) | MapOp::Add(b":status", value) => {
            match StatusCode::from_bytes(value) {
                Ok(code) => {
                    head.status = code;
                    status::OK
                }
                Err(_) => status::BAD_ARGUMENT,
            }
        }
        MapOp::Replace(name, _) | MapOp::Add(name, _) | MapOp::Remove(name)
            if name.starts_with(b":") =>
        {
            status::BAD_ARGUMENT
        }
        op => change_headers(&mut head.headers, op, cache),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        let shared = Arc::new(Shared {
            alias: "f".into(),
            configuration: Vec::new(),
            root_id: "root".into(),
            metrics: FilterMetrics::new("host-tests"),
            upstreams: no_upstreams(),
            root: RootControl::new("", 8),
        });
        let mut host = Host::new(shared, 1 << 20);
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.test"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        host.request = Some(RequestHead {
            method: Method::GET,
            uri: Uri::from_static("/p?q=1"),
            headers,
            scheme: "http",
        });
        host.request_writable = true;
        host
    }

    fn no_upstreams() -> Upstreams {
        let config: super::super::Config = serde_json::from_value(serde_json::json!({
            "file": "/x.wasm", "sha256": "0".repeat(64),
        }))
        .unwrap();
        Upstreams::new(&config, None).unwrap()
    }

    fn get(host: &Host, map: MapType, name: &str) -> Option<String> {
        host.map_get(map, name.as_bytes())
            .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn map_reads() {
        let host = host();
        let req = MapType::RequestHeaders;
        for (name, expected) in [
            (":path", Some("/p?q=1")),
            (":method", Some("GET")),
            (":authority", Some("example.test")),
            (":scheme", Some("http")),
            ("x-a", Some("1,2")),
            ("X-A", Some("1,2")),
            ("missing", None),
            ("bad name", None),
        ] {
            assert_eq!(get(&host, req, name).as_deref(), expected, "{name}");
        }
        assert_eq!(get(&host, MapType::ResponseHeaders, ":status"), None);
        for (path, expected) in [
            ("request.path", Some("/p?q=1")),
            ("request.url_path", Some("/p")),
            ("request.query", Some("q=1")),
            ("request.host", Some("example.test")),
            ("plugin_name", Some("f")),
            ("plugin_root_id", Some("root")),
            ("source.address", None),
            ("unknown.property", None),
        ] {
            let value = host.property(path).map(|v| String::from_utf8(v).unwrap());
            assert_eq!(value.as_deref(), expected, "{path}");
        }
    }

    #[test]
    fn map_changes() {
        let req = MapType::RequestHeaders;
        let ok = status::OK;
        let bad = status::BAD_ARGUMENT;
        type Row = (
            fn(&mut Host) -> i32,
            i32,
            &'static str,
            Option<&'static str>,
        );
        let rows: [Row; 9] = [
            (
                |h| h.map_change(MapType::RequestHeaders, MapOp::Replace(b"x-a", b"3")),
                ok,
                "x-a",
                Some("3"),
            ),
            (
                |h| h.map_change(MapType::RequestHeaders, MapOp::Add(b"x-a", b"3")),
                ok,
                "x-a",
                Some("1,2,3"),
            ),
            (
                |h| h.map_change(MapType::RequestHeaders, MapOp::Remove(b"x-a")),
                ok,
                "x-a",
                None,
            ),
            (
                |h| h.map_change(MapType::RequestHeaders, MapOp::Replace(b":path", b"/new")),
                ok,
                ":path",
                Some("/new"),
            ),
            (
                |h| h.map_change(MapType::RequestHeaders, MapOp::Replace(b":method", b"POST")),
                ok,
                ":method",
                Some("POST"),
            ),
            (
                |h| {
                    h.map_change(
                        MapType::RequestHeaders,
                        MapOp::Replace(b":path", b"no slash"),
                    )
                },
                bad,
                ":path",
                Some("/p?q=1"),
            ),
            (
                |h| h.map_change(MapType::RequestHeaders, MapOp::Replace(b":authority", b"x")),
                bad,
                ":authority",
                Some("example.test"),
            ),
            (
                |h| h.map_change(MapType::RequestHeaders, MapOp::Replace(b"bad name", b"v")),
                bad,
                "x-a",
                Some("1,2"),
            ),
            (
                |h| {
                    h.map_change(
                        MapType::RequestHeaders,
                        MapOp::Replace(b"x-b", b"bad\nvalue"),
                    )
                },
                bad,
                "x-b",
                None,
            ),
        ];
        for (i, (change, status, name, expected)) in rows.into_iter().enumerate() {
            let mut host = host();
            assert_eq!(change(&mut host), status, "row {i}");
            assert_eq!(get(&host, req, name).as_deref(), expected, "row {i}");
        }
    }

    #[test]
    fn pairs_round_trip_and_read_only_heads() {
        let mut host = host();
        let req = MapType::RequestHeaders;
        let pairs = host.map_pairs(req);
        let mut changed = abi::deserialize_pairs(&pairs).unwrap();
        changed.retain(|(k, _)| *k != b"x-a");
        changed.push((&b"x-c"[..], &b"c"[..]));
        let bytes = abi::serialize_pairs(&changed);
        assert_eq!(host.map_set_pairs(req, &bytes), status::OK);
        assert_eq!(get(&host, req, "x-a"), None);
        assert_eq!(get(&host, req, "x-c").as_deref(), Some("c"));
        assert_eq!(
            get(&host, req, ":authority").as_deref(),
            Some("example.test")
        );
        assert_eq!(host.map_set_pairs(req, &[1]), status::SERIALIZATION_FAILURE);

        host.request_writable = false;
        assert_eq!(host.map_change(req, MapOp::Remove(b"x-c")), status::OK);
        assert_eq!(get(&host, req, "x-c").as_deref(), Some("c"), "ignored");
    }

    #[test]
    fn calls_are_refused_by_rule_and_their_answers_read_only() {
        let config: super::super::Config = serde_json::from_value(serde_json::json!({
            "file": "/x.wasm", "sha256": "0".repeat(64),
            "clusters": {"auth": {"address": "http://127.0.0.1:9"}},
            "http_call_max_per_request": 1,
        }))
        .unwrap();
        let shared = Arc::new(Shared {
            alias: "calls".into(),
            configuration: Vec::new(),
            root_id: String::new(),
            metrics: FilterMetrics::new("host-tests-calls"),
            upstreams: Upstreams::new(&config, None).unwrap(),
            root: RootControl::new("", 8),
        });
        let mut host = Host::new(shared, 1 << 20);
        let headers = abi::serialize_pairs(&[(b":method", b"GET"), (b":path", b"/")]);
        let internal = Err(status::INTERNAL_FAILURE);
        assert_eq!(
            host.dispatch_call(b"auth", &headers, b"", 0),
            internal,
            "not allowed here"
        );
        host.calls.allowed = true;
        assert_eq!(
            host.dispatch_call(b"other", &headers, b"", 0),
            Err(status::BAD_ARGUMENT)
        );
        assert_eq!(host.dispatch_call(b"auth", &headers, b"", 0), Ok(1));
        assert_eq!(
            host.dispatch_call(b"auth", &headers, b"", 0),
            internal,
            "one in flight at most"
        );
        host.calls.pending.clear();
        host.calls.in_flight = 0;
        host.calls.dispatched = MAX_CALLS_PER_REQUEST;
        assert_eq!(
            host.dispatch_call(b"auth", &headers, b"", 0),
            internal,
            "in all"
        );

        let calls = MapType::CallResponseHeaders;
        assert_eq!(
            host.map_get(calls, b":status"),
            None,
            "no answer outside its callback"
        );
        let mut answer = HeaderMap::new();
        answer.insert("x-user", HeaderValue::from_static("alice"));
        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", HeaderValue::from_static("1"));
        host.calls.response = Some(super::super::http_call::CallResponse {
            status: StatusCode::OK,
            headers: answer,
            body: Bytes::from_static(b"body"),
            trailers,
        });
        assert_eq!(get(&host, calls, ":status").as_deref(), Some("200"));
        assert_eq!(get(&host, calls, "x-user").as_deref(), Some("alice"));
        let pairs = host.map_pairs(calls);
        assert_eq!(abi::deserialize_pairs(&pairs).unwrap().len(), 2);
        let trailer_map = MapType::CallResponseTrailers;
        assert_eq!(get(&host, trailer_map, "x-t").as_deref(), Some("1"));
        assert_eq!(host.map_change(calls, MapOp::Remove(b"x-user")), status::OK);
        assert_eq!(
            get(&host, calls, "x-user").as_deref(),
            Some("alice"),
            "read-only"
        );
        assert_eq!(host.body(BufferType::CallResponseBody), Some(&b"body"[..]));
    }

    #[test]
    fn body_splices() {
        let mut host = host();
        host.body = Some((BufferType::RequestBody, b"hello world".to_vec()));
        let body = BufferType::RequestBody;
        assert_eq!(host.set_body(body, 0, 5, b"HELLO"), status::OK);
        assert_eq!(host.body(body), Some(&b"HELLO world"[..]));
        assert_eq!(host.set_body(body, 11, 0, b"!"), status::OK);
        assert_eq!(host.body(body), Some(&b"HELLO world!"[..]));
        assert_eq!(host.set_body(body, 0, usize::MAX, b"x"), status::OK);
        assert_eq!(host.body(body), Some(&b"x"[..]));
        assert_eq!(
            host.set_body(BufferType::ResponseBody, 0, 0, b"x"),
            status::NOT_FOUND
        );
        assert_eq!(host.body(BufferType::ResponseBody), None);
    }
}
