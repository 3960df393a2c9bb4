//! The canonical request path: one meaning for routing, `excludePaths`, every plugin and the
//! upstream.
//!
//! Modelled on Envoy's `normalize_path` + `merge_slashes` + `path_with_escaped_slashes_action`
//! and nginx's URI normalisation (the table of inputs and results is in `docs/routing.md`):
//!
//! 1. Percent-escapes are checked (`%` must be followed by two hex digits), unreserved
//!    characters are decoded (RFC 3986 §6.2.2.2: `%2e` → `.`, `%41` → `A`) and every other
//!    escape is upper-cased (§6.2.2.1: `%3b` → `%3B`).
//! 2. An encoded slash or backslash (`%2F`, `%5C`) and a raw backslash follow
//!    [`EscapedSlashes`]: rejected by default, kept (never a separator) or decoded into `/`.
//! 3. A segment that is a dot segment once its path parameters (`;…`) are cut off (`..;`,
//!    `.;jsessionid=x`) is rejected: servlet containers strip parameters before resolving dot
//!    segments, so such a segment would climb on the upstream but not here.
//! 4. Dot segments are removed (§5.2.4); a path that climbs above `/` is rejected.
//! 5. Runs of `/` are merged into one (on by default).
//!
//! The query string is not part of the path and is never touched.

use std::borrow::Cow;

/// What to do with `%2F`, `%5C` and `\` in a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Answer 400 (the default: an encoded separator means different things to different
    /// upstreams).
    #[default]
    Reject,
    /// Keep them as they are (upper-cased escapes; a raw `\` becomes `%5C`); they are never
    /// treated as separators.
    Keep,
    /// Decode them into `/` before dot segments are removed and slashes merged.
    Decode,
}

impl std::str::FromStr for EscapedSlashes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(Self::Reject),
            "keep" => Ok(Self::Keep),
            "decode" => Ok(Self::Decode),
            other => Err(format!(
                "escaped slashes: {other:?} is not one of reject, keep, decode"
            )),
        }
    }
}

/// How paths are canonicalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathOptions {
    /// Merge runs of `/` into one.
    pub merge_slashes: bool,
    /// `%2F`, `%5C` and `\`.
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathOptions {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Why a path was refused (the client gets 400 with this text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("the request path must start with '/'")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("invalid percent-escape in the request path")]
    BadEscape,
    /// `%2F`, `%5C` or `\` with [`EscapedSlashes::Reject`].
    #[error("encoded slash or backslash in the request path")]
    EscapedSlash,
    /// A dot segment with path parameters (`..;x`).
    #[error("dot segment with path parameters in the request path")]
    DotSegmentParameters,
    /// `..` above the root.
    #[error("the request path climbs above '/'")]
    AboveRoot,
}

/// Whether `b` is an RFC 3986 unreserved character.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` may already be canonical: none of the bytes that any step changes or judges.
/// Most request paths pass this scan and are used as they are, without an allocation.
fn plainly_canonical(path: &[u8], options: PathOptions) -> bool {
    let mut prev = 0u8;
    for &b in path {
        match b {
            b'%' | b'\\' | b';' => return false,
            b'/' if prev == b'/' && options.merge_slashes => return false,
            b'.' if prev == b'/' => return false,
            _ => {}
        }
        prev = b;
    }
    true
}

/// The canonical form of `path` (no query), borrowed when it already is canonical.
pub fn canonical_path(path: &str, options: PathOptions) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if plainly_canonical(bytes, options) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(bytes, options.escaped_slashes)?;
    let out = resolve(&decoded, options.merge_slashes)?;
    if out == bytes {
        return Ok(Cow::Borrowed(path));
    }
    // Every byte written is ASCII: decoded unreserved characters, escapes, or bytes of the
    // input (which came from a `str`).
    Ok(Cow::Owned(
        String::from_utf8(out).map_err(|_| PathError::BadEscape)?,
    ))
}

/// Step 1 and 2: escapes decoded or upper-cased, slashes handled. `/` in the result is always a
/// separator.
fn decode(bytes: &[u8], slashes: EscapedSlashes) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let c = hi << 4 | lo;
                if unreserved(c) {
                    out.push(c);
                } else if c == b'/' || c == b'\\' {
                    match slashes {
                        EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                        EscapedSlashes::Keep => push_escape(&mut out, c),
                        EscapedSlashes::Decode => out.push(b'/'),
                    }
                } else {
                    push_escape(&mut out, c);
                }
                i += 3;
            }
            b'\\' => {
                match slashes {
                    EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                    EscapedSlashes::Keep => push_escape(&mut out, b'\\'),
                    EscapedSlashes::Decode => out.push(b'/'),
                }
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn push_escape(out: &mut Vec<u8>, c: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
}

/// Steps 3 to 5 on a decoded path that starts with `/`.
fn resolve(decoded: &[u8], merge_slashes: bool) -> Result<Vec<u8>, PathError> {
    // The output as segment boundaries: `out` always starts with `/`; `starts` holds where each
    // segment written so far begins, so `..` can drop the last one.
    let mut out = Vec::with_capacity(decoded.len());
    let mut starts: Vec<usize> = Vec::new();
    let mut segments = decoded[1..].split(|&b| b == b'/').peekable();
    out.push(b'/');
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let name = segment
            .iter()
            .position(|&b| b == b';')
            .map_or(segment, |at| &segment[..at]);
        let dot = name == b"." || name == b"..";
        if dot && name.len() != segment.len() {
            return Err(PathError::DotSegmentParameters);
        }
        if segment == b"." {
            continue;
        }
        if segment == b".." {
            let Some(start) = starts.pop() else {
                return Err(PathError::AboveRoot);
            };
            out.truncate(start);
            continue;
        }
        if segment.is_empty() && (merge_slashes || last) {
            // `//` merged; a trailing empty segment is the trailing slash already written.
            continue;
        }
        starts.push(out.len());
        out.extend_from_slice(segment);
        if !last {
            out.push(b'/');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(path: &str, merge: bool, slashes: EscapedSlashes) -> Result<String, PathError> {
        canonical_path(
            path,
            PathOptions {
                merge_slashes: merge,
                escaped_slashes: slashes,
            },
        )
        .map(Cow::into_owned)
    }

    /// The table in `docs/routing.md`, with the default options.
    #[test]
    fn default_options_table() {
        use PathError::*;
        let table: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/a/b", Ok("/a/b")),
            ("/a/b/", Ok("/a/b/")),
            ("/public/../admin", Ok("/admin")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2E%2E/admin", Ok("/admin")),
            ("/public/.%2e/admin", Ok("/admin")),
            ("/public/..%2fadmin", Err(EscapedSlash)),
            ("/public/..%5cadmin", Err(EscapedSlash)),
            ("/public/..\\admin", Err(EscapedSlash)),
            ("/public/x/../../admin", Ok("/admin")),
            ("/a/./b", Ok("/a/b")),
            ("/a/.", Ok("/a/")),
            ("/a/..", Ok("/")),
            ("/a/b/..", Ok("/a/")),
            ("/..", Err(AboveRoot)),
            ("/../a", Err(AboveRoot)),
            ("/a/../..", Err(AboveRoot)),
            ("/a/../../b", Err(AboveRoot)),
            ("//a///b", Ok("/a/b")),
            ("/a//../b", Ok("/b")),
            ("/%41%7a%30%2D%5F%7E", Ok("/Az0-_~")),
            ("/a%3bb", Ok("/a%3Bb")),
            ("/a%20b", Ok("/a%20b")),
            ("/%e2%82%ac", Ok("/%E2%82%AC")),
            ("/%", Err(BadEscape)),
            ("/%4", Err(BadEscape)),
            ("/%zz", Err(BadEscape)),
            ("/%252e%252e/admin", Ok("/%252e%252e/admin")),
            ("/public/..;/admin", Err(DotSegmentParameters)),
            ("/public/..;jsessionid=1/admin", Err(DotSegmentParameters)),
            ("/public/.;x/admin", Err(DotSegmentParameters)),
            ("/public/%2e%2e;/admin", Err(DotSegmentParameters)),
            ("/a;b/c", Ok("/a;b/c")),
            ("/...", Ok("/...")),
            ("/.well-known/x", Ok("/.well-known/x")),
            ("/a.b/c", Ok("/a.b/c")),
            ("a/b", Err(NotAbsolute)),
            ("", Err(NotAbsolute)),
        ];
        for (input, expected) in table {
            let got = canon(input, true, EscapedSlashes::Reject);
            assert_eq!(got.as_deref().map_err(|e| *e), *expected, "{input}");
        }
    }

    #[test]
    fn escaped_slash_settings() {
        let table: &[(&str, EscapedSlashes, Result<&str, PathError>)] = &[
            ("/a%2fb", EscapedSlashes::Keep, Ok("/a%2Fb")),
            ("/a%5cb", EscapedSlashes::Keep, Ok("/a%5Cb")),
            ("/a\\b", EscapedSlashes::Keep, Ok("/a%5Cb")),
            // Kept escapes are never separators: `..%2f` is one segment, not a dot segment.
            (
                "/public/..%2fadmin",
                EscapedSlashes::Keep,
                Ok("/public/..%2Fadmin"),
            ),
            ("/a%2fb", EscapedSlashes::Decode, Ok("/a/b")),
            ("/a\\b", EscapedSlashes::Decode, Ok("/a/b")),
            ("/public/..%2fadmin", EscapedSlashes::Decode, Ok("/admin")),
            ("/public/..%5cadmin", EscapedSlashes::Decode, Ok("/admin")),
            ("/a%2f%2fb", EscapedSlashes::Decode, Ok("/a/b")),
            (
                "/..%2f..%2fetc",
                EscapedSlashes::Decode,
                Err(PathError::AboveRoot),
            ),
        ];
        for (input, slashes, expected) in table {
            let got = canon(input, true, *slashes);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                *expected,
                "{input} with {slashes:?}"
            );
        }
    }

    #[test]
    fn merging_can_be_switched_off() {
        let table = [
            ("//a///b", "//a///b"),
            ("/a//b/", "/a//b/"),
            ("/a//../b", "/a/b"),
            ("/a/./b//", "/a/b//"),
        ];
        for (input, expected) in table {
            assert_eq!(
                canon(input, false, EscapedSlashes::Reject).unwrap(),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for path in ["/", "/a/b", "/api/v1/users/42", "/a.b/c-d_e~f"] {
            assert!(matches!(
                canonical_path(path, PathOptions::default()),
                Ok(Cow::Borrowed(_))
            ));
        }
    }
}
