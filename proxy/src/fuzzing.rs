//! Fuzz targets: each takes arbitrary bytes, runs one parser or rule, and asserts its
//! properties (a failed assertion is a finding). `fuzz/` runs them coverage-guided with
//! cargo-fuzz; the committed corpus is replayed by the tests below on every test run, so a
//! crash once found stays fixed.

use std::borrow::Cow;

use bytes::Bytes;

use crate::canonical::{canonical_path, EscapedSlashes, PathOptions};

const ALL_OPTIONS: [PathOptions; 6] = [
    PathOptions {
        merge_slashes: true,
        escaped_slashes: EscapedSlashes::Reject,
    },
    PathOptions {
        merge_slashes: true,
        escaped_slashes: EscapedSlashes::Keep,
    },
    PathOptions {
        merge_slashes: true,
        escaped_slashes: EscapedSlashes::Decode,
    },
    PathOptions {
        merge_slashes: false,
        escaped_slashes: EscapedSlashes::Reject,
    },
    PathOptions {
        merge_slashes: false,
        escaped_slashes: EscapedSlashes::Keep,
    },
    PathOptions {
        merge_slashes: false,
        escaped_slashes: EscapedSlashes::Decode,
    },
];

/// Whether `path` has a `.` or `..` segment (cut at path parameters).
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let name = segment.split(';').next().unwrap_or(segment);
        name == "." || name == ".."
    })
}

/// `path` with every unreserved character percent-encoded (other bytes, UTF-8 sequences
/// included, copied as they are).
fn encode_unreserved(path: &str) -> String {
    let mut out = Vec::with_capacity(path.len() * 3);
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.extend_from_slice(format!("%{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    // Only ASCII bytes were replaced, by ASCII: still UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The path canonicaliser: idempotent, starts with `/`, never a dot segment, no `//` when
/// merging, never above the root (a climb is an error), and the same answer whether the
/// unreserved characters came percent-encoded or not.
pub fn canonical_path_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = format!("/{text}");
    for options in ALL_OPTIONS {
        let Ok(canonical) = canonical_path(&path, options) else {
            continue;
        };
        assert!(canonical.starts_with('/'), "{path:?} -> {canonical:?}");
        assert!(!has_dot_segment(&canonical), "{path:?} -> {canonical:?}");
        if options.merge_slashes {
            assert!(!canonical.contains("//"), "{path:?} -> {canonical:?}");
        }
        if options.escaped_slashes != EscapedSlashes::Keep {
            let lower = canonical.to_ascii_lowercase();
            assert!(!lower.contains("%2f") && !lower.contains("%5c") && !canonical.contains('\\'));
        }
        let again = canonical_path(&canonical, options)
            .unwrap_or_else(|e| panic!("{path:?} -> {canonical:?} -> {e}"));
        assert_eq!(again, canonical, "not idempotent for {path:?}");
        assert!(
            matches!(again, Cow::Borrowed(_)),
            "a canonical path is borrowed"
        );
        if path.is_ascii() && !path.contains('%') {
            let encoded = encode_unreserved(&path);
            assert_eq!(
                canonical_path(&encoded, options).as_deref(),
                Ok(canonical.as_ref()),
                "{encoded:?} and {path:?} differ"
            );
        }
    }
}

/// The router: the same request always picks the same Route, and a request for a canonical
/// path picks the same Route as any spelling of it that canonicalises to it.
pub fn router_target(data: &[u8]) {
    use hookway_crds::snapshot::PathMatchType;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or_default();
    let path = format!("/{}", lines.next().unwrap_or_default());
    let mut routes = Vec::new();
    for (i, spec) in lines.take(16).enumerate() {
        let (kind, value) = match spec.split_once(' ') {
            Some(("e", v)) => (PathMatchType::Exact, v),
            Some(("r", v)) => (PathMatchType::Regex, v),
            Some((_, v)) => (PathMatchType::Prefix, v),
            None => (PathMatchType::Prefix, spec),
        };
        let (hosts, value) = match value.split_once('@') {
            Some((h, v)) => (vec![h.to_owned()], v),
            None => (vec![], value),
        };
        routes.push(hookway_crds::snapshot::RouteEntry {
            key: hookway_crds::snapshot::ObjectKey::new("default", format!("r{i}")),
            hosts,
            rules: vec![hookway_crds::snapshot::RuleEntry {
                path_type: kind,
                path: format!("/{value}"),
                methods: vec![],
                headers: vec![],
                query: vec![],
                tls: None,
                isolation: None,
            }],
            priority: 0,
            created: 0,
            upstream: hookway_crds::snapshot::ObjectKey::new("default", "up"),
            chain: vec![],
        });
    }
    let Ok(router) = crate::router::Router::new(&routes) else {
        return;
    };
    let headers = http::HeaderMap::new();
    let find = |path: &str| {
        router.find(&crate::router::RequestView {
            host: Some(host),
            method: &http::Method::GET,
            path,
            query: None,
            headers: &headers,
            tls: false,
        })
    };
    let first = find(&path);
    assert_eq!(first, find(&path), "the same request picked two Routes");
    if let Ok(canonical) = canonical_path(&path, PathOptions::default()) {
        let encoded = encode_unreserved(&canonical);
        if let Ok(again) = canonical_path(&encoded, PathOptions::default()) {
            assert_eq!(find(&canonical), find(&again), "{path:?}");
        }
    }
}

/// Manifest loading and the compiler: never a panic, and every object is accepted or rejected
/// with a reason.
pub fn manifests_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut objects = hookway_crds::compiler::Objects::default();
    let _ = hookway_crds::manifests::parse_into(text, "fuzz.yaml", "default", &mut objects);
    let catalogue = crate::plugins::builtin().catalogue().clone();
    let compiled = hookway_crds::compiler::compile(
        &objects,
        &hookway_crds::compiler::Options::default(),
        &catalogue,
    );
    for (id, report) in compiled.rejected() {
        assert!(
            !format!("{report:?}").is_empty(),
            "{id:?} rejected without a reason"
        );
    }
    // A compiled snapshot is one the proxy can build its router from.
    let _ = crate::router::Router::new(&compiled.snapshot.routes);
}

/// The stream's frame and snapshot decoders: never a panic; a decoded snapshot builds a router
/// or is refused with an error.
pub fn snapshot_target(data: &[u8]) {
    let _ = crate::source::controller::decode_frame(data, None);
    let held = hookway_crds::Snapshot::default().seal();
    let digests = hookway_crds::content_hash::ContentDigests::of(&held);
    let _ = crate::source::controller::decode_frame(data, Some((&held, &digests)));
    if let Ok(snapshot) = serde_json::from_slice::<hookway_crds::snapshot::Snapshot>(data) {
        let _ = crate::router::Router::new(&snapshot.routes);
    }
}

/// The multipart parser: never a panic; what it parses it writes back so that it parses the
/// same again.
pub fn multipart_target(data: &[u8]) {
    use crate::plugins::params::multipart::Multipart;
    let (boundary, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => return,
    };
    let Ok(boundary) = std::str::from_utf8(boundary) else {
        return;
    };
    if boundary.is_empty() {
        return;
    }
    let body = Bytes::copy_from_slice(body);
    if let Ok(parsed) = Multipart::parse(&body, boundary) {
        let written = parsed.to_bytes();
        let again = Multipart::parse(&written, boundary)
            .unwrap_or_else(|e| panic!("written body does not parse: {e}"));
        assert_eq!(again.to_bytes(), written, "not stable once written");
    }
}

/// The `aksk` `Authorization` parser: never a panic; the parts it finds are pieces of the
/// header.
pub fn aksk_header_target(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(signed) = crate::plugins::auth::aksk::parse_authorization(value) {
        for part in [signed.access, signed.signed_headers, signed.signature] {
            assert!(value.contains(part), "{part:?} is not in {value:?}");
        }
    }
}

/// `sub_filter` across chunk boundaries: whatever the chunking, the output equals the
/// one-chunk output. Input: `pattern\nreplacement\nbody`, the first body byte choosing the
/// chunk size.
pub fn sub_filter_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (Some(pattern), Some(replacement), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let regex = pattern.starts_with('~');
    let pattern = pattern.strip_prefix('~').unwrap_or(pattern);
    let config = serde_json::json!({
        "filters": [{"pattern": pattern, "replacement": replacement, "regex": regex}],
        "window": 64,
    });
    let snapshot = hookway_crds::snapshot::Snapshot::default();
    let plugin_ref = hookway_crds::snapshot::ObjectKey::new("default", "fuzz");
    let env = crate::plugin::BuildEnv {
        snapshot: &snapshot,
        plugin_ref: &plugin_ref,
        alias: "fuzz",
        secrets: &Default::default(),
        services: &Default::default(),
    };
    let Ok(plugin) = crate::plugins::builtin().build("sub_filter", &config, &env) else {
        return;
    };
    let resp = http::Response::builder()
        .header("content-type", "text/html")
        .body(())
        .expect("a valid head")
        .into_parts()
        .0;
    let ctx = || {
        crate::plugin::Ctx::new(
            ([127, 0, 0, 1], 1).into(),
            ([127, 0, 0, 1], 2).into(),
            false,
        )
    };
    let run = |chunk: usize| -> Option<Vec<u8>> {
        let mut filter = plugin.response_body_filter(&resp, &mut ctx())?;
        let mut out = Vec::new();
        for piece in body.as_bytes().chunks(chunk.max(1)) {
            out.extend_from_slice(&filter.on_chunk(Bytes::copy_from_slice(piece)).ok()?);
        }
        if let Some(rest) = filter.on_end().ok().flatten() {
            out.extend_from_slice(&rest);
        }
        Some(out)
    };
    let whole = run(body.len());
    let size = usize::from(body.bytes().next().unwrap_or(1) % 7) + 1;
    if regex {
        // A regex can match differently once the look-behind window cuts it; only require no
        // panic and the same output for literal patterns.
        let _ = run(size);
        return;
    }
    assert_eq!(run(size), whole, "chunks of {size} changed the output");
}

/// One run of the HTTP/1.1 body decoder over `input`, fed `piece` bytes at a time: the body
/// bytes, the trailer names, and whether it ended cleanly.
fn decode_http1_body(
    framing: crate::upstream::h1::decode::Framing,
    input: &[u8],
    piece: usize,
) -> (Vec<u8>, Vec<String>, bool) {
    use crate::upstream::h1::decode::{BodyDecoder, Step};
    let mut decoder = BodyDecoder::new(framing);
    let mut buf = bytes::BytesMut::new();
    let (mut data, mut trailers, mut fed) = (Vec::new(), Vec::new(), 0);
    loop {
        match decoder.step(&mut buf) {
            Ok(Step::Data(bytes)) => {
                assert!(!bytes.is_empty(), "empty data frame");
                data.extend_from_slice(&bytes);
                if decoder.settle(&mut buf).is_err() {
                    return (data, trailers, false);
                }
            }
            Ok(Step::Trailers(t)) => {
                trailers = t.keys().map(|k| k.to_string()).collect();
                return (data, trailers, true);
            }
            Ok(Step::End) => return (data, trailers, true),
            Ok(Step::More) if fed == input.len() => return (data, trailers, decoder.eof().is_ok()),
            Ok(Step::More) => {
                let end = (fed + piece).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            Err(_) => return (data, trailers, false),
        }
    }
}

/// hookway's HTTP/1.1 response reader (`upstream::h1::decode`): a response head for a method
/// picked by the first byte, then its body fed whole and in pieces of 1 to 86 bytes. Never
/// panics; never yields more body than it was given; a `Content-Length` body that ends cleanly
/// has exactly its length; how the bytes are split changes nothing.
pub fn http1_response_target(data: &[u8]) {
    use crate::upstream::h1::decode::{parse_head, Framing};
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let method = match first % 3 {
        0 => http::Method::GET,
        1 => http::Method::HEAD,
        _ => http::Method::POST,
    };
    let piece = usize::from(first / 3) + 1;
    let mut buf = bytes::BytesMut::from(rest);
    let Ok(Some(head)) = parse_head(&mut buf, &method) else {
        return;
    };
    assert!(
        !(head.headers.contains_key(http::header::TRANSFER_ENCODING)
            && head.headers.contains_key(http::header::CONTENT_LENGTH)),
        "an ambiguous head was accepted"
    );
    let whole = decode_http1_body(head.framing, &buf, buf.len().max(1));
    assert!(whole.0.len() <= buf.len(), "more body than input");
    if let (Framing::Length(n), true) = (head.framing, whole.2) {
        assert_eq!(
            whole.0.len() as u64,
            n,
            "a clean end short of Content-Length"
        );
    }
    let pieces = decode_http1_body(head.framing, &buf, piece);
    assert_eq!(pieces.2, whole.2, "pieces of {piece} changed the outcome");
    if whole.2 {
        assert_eq!(pieces, whole, "pieces of {piece} changed the body");
    }
}

#[cfg(test)]
mod replay {
    //! Replays the committed corpus (`fuzz/corpus/<target>/`) through the targets.

    use std::path::Path;

    fn replay(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            count += 1;
        }
        assert!(count > 0, "{target}: empty corpus in {}", dir.display());
    }

    #[test]
    fn canonical_path_corpus() {
        replay("canonical_path", super::canonical_path_target);
    }

    #[test]
    fn router_corpus() {
        replay("router", super::router_target);
    }

    #[test]
    fn manifests_corpus() {
        replay("manifests", super::manifests_target);
    }

    #[test]
    fn snapshot_corpus() {
        replay("snapshot", super::snapshot_target);
    }

    #[test]
    fn multipart_corpus() {
        replay("multipart", super::multipart_target);
    }

    #[test]
    fn aksk_header_corpus() {
        replay("aksk_header", super::aksk_header_target);
    }

    #[test]
    fn sub_filter_corpus() {
        replay("sub_filter", super::sub_filter_target);
    }

    #[test]
    fn http1_response_corpus() {
        replay("http1_response", super::http1_response_target);
    }
}
