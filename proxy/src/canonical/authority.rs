//! The canonical authority: the one host value used for routing, the TLS SNI check, the `Host`
//! sent upstream and every plugin.
//!
//! - HTTP/1.1 absolute-form: the request target's authority wins and replaces `Host`
//!   (RFC 9112 §3.2.2). Otherwise exactly one `Host` header (missing in HTTP/1.1: 400).
//! - HTTP/2: `:authority`; a `Host` header that names another host is a 400.
//! - Hosts are lower-cased, a trailing dot and the scheme's default port removed; anything that
//!   is not a DNS name, an IPv4 address or a bracketed IPv6 literal (with an optional port) is
//!   a 400.

use std::borrow::Cow;

use http::header::{self, HeaderMap};
use http::{Uri, Version};

/// Why the authority of a request was refused (the client gets 400 with this text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// HTTP/1.1 without `Host` (RFC 9112 §3.2).
    #[error("missing Host header")]
    Missing,
    /// More than one `Host` header.
    #[error("more than one Host header")]
    Several,
    /// Not a host name, an IP address or a bracketed IPv6 literal, or a bad port.
    #[error("invalid host")]
    Invalid,
    /// HTTP/2 `:authority` and `Host` disagree.
    #[error(":authority and Host name different hosts")]
    Conflict,
}

/// A canonical authority: `host` or `host:port` (the port only when it is not the default
/// one of the connection's scheme), as routed on and sent upstream in `Host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority<'a> {
    text: Cow<'a, str>,
    host_len: usize,
    /// Whether `text` is exactly the request's `Host` header value (nothing to write back).
    unchanged: bool,
}

impl Authority<'_> {
    /// The host, lower-case, without port or trailing dot (IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        &self.text[..self.host_len]
    }

    /// `host` or `host:port`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the request's `Host` header already holds exactly this value.
    pub fn is_unchanged(&self) -> bool {
        self.unchanged
    }
}

/// The canonical authority of a request, or `None` for an HTTP/1.0 request without one.
pub fn canonical_authority<'a>(
    version: Version,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    tls: bool,
) -> Result<Option<Authority<'a>>, AuthorityError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(AuthorityError::Several);
    }
    let host_header = host_header
        .map(|h| h.to_str().map_err(|_| AuthorityError::Invalid))
        .transpose()?;
    let default_port = if tls { 443 } else { 80 };
    if let Some(authority) = uri.authority() {
        if authority.as_str().contains('@') {
            return Err(AuthorityError::Invalid);
        }
        let mut canonical = parse(authority.as_str(), default_port)?;
        if let Some(h) = host_header {
            if version == Version::HTTP_2 && parse(h, default_port)?.text != canonical.text {
                return Err(AuthorityError::Conflict);
            }
            canonical.unchanged = h == canonical.text;
        }
        // HTTP/1.1 absolute-form: the target's authority replaces Host.
        return Ok(Some(canonical));
    }
    match host_header {
        Some(h) => {
            let mut canonical = parse(h, default_port)?;
            canonical.unchanged = matches!(canonical.text, Cow::Borrowed(_));
            Ok(Some(canonical))
        }
        None if version == Version::HTTP_11 => Err(AuthorityError::Missing),
        None => Ok(None),
    }
}

/// Parses and canonicalises `host[:port]`; borrowed when `raw` already is canonical.
///
/// A name or IPv4 address (the common case) is checked in one pass over its bytes: the port
/// split, the label rules and whether it needs lower-casing. IPv6 literals take
/// [`parse_bracketed`].
fn parse(raw: &str, default_port: u16) -> Result<Authority<'_>, AuthorityError> {
    let bytes = raw.as_bytes();
    if bytes.first() == Some(&b'[') {
        return parse_bracketed(raw, default_port);
    }
    // One pass: label lengths, upper case, and where the port starts.
    let mut label = 0usize;
    let mut upper = false;
    let mut host_end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match HOST_BYTE[usize::from(b)] {
            NAME => label += 1,
            UPPER => {
                label += 1;
                upper = true;
            }
            DOT => {
                if label == 0 || label > 63 {
                    return Err(AuthorityError::Invalid);
                }
                label = 0;
            }
            COLON => {
                host_end = i;
                break;
            }
            _ => return Err(AuthorityError::Invalid),
        }
    }
    if label > 63 {
        return Err(AuthorityError::Invalid);
    }
    // `label == 0` here: empty, or a trailing dot (dropped), or `..` (refused above).
    let trailing_dot = label == 0 && host_end > 0;
    let trimmed_len = host_end - usize::from(trailing_dot);
    if trimmed_len == 0 || trimmed_len > 253 {
        return Err(AuthorityError::Invalid);
    }
    let port = match bytes.get(host_end + 1..) {
        None => None,
        Some(digits) => Some(port_number(digits)?),
    };
    finish(raw, host_end, trimmed_len, upper, port, default_port)
}

/// Classes of the bytes of a host name ([`HOST_BYTE`]).
const INVALID: u8 = 0;
/// A lower-case letter, a digit, `-` or `_`.
const NAME: u8 = 1;
/// An upper-case letter.
const UPPER: u8 = 2;
/// `.`, between labels.
const DOT: u8 = 3;
/// `:`, before the port.
const COLON: u8 = 4;

/// The class of every byte, looked up once per byte of the host.
static HOST_BYTE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match c {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => NAME,
            b'A'..=b'Z' => UPPER,
            b'.' => DOT,
            b':' => COLON,
            _ => INVALID,
        };
        b += 1;
    }
    table
};

/// The canonical form of `raw` (`host` is `raw[..host_end]`, of which the first `trimmed_len`
/// bytes are kept; `upper` when they need lower-casing).
fn finish(
    raw: &str,
    host_end: usize,
    trimmed_len: usize,
    upper: bool,
    port: Option<u16>,
    default_port: u16,
) -> Result<Authority<'_>, AuthorityError> {
    let kept_port = port.filter(|p| *p != default_port);
    let text = if !upper && trimmed_len == host_end && port == kept_port {
        Cow::Borrowed(raw)
    } else {
        let mut text = raw[..trimmed_len].to_ascii_lowercase();
        if let Some(p) = kept_port {
            text.push(':');
            text.push_str(&p.to_string());
        }
        Cow::Owned(text)
    };
    Ok(Authority {
        text,
        host_len: trimmed_len,
        unchanged: false,
    })
}

/// A bracketed IPv6 literal with an optional port: `[v6]` or `[v6]:port`.
fn parse_bracketed(raw: &str, default_port: u16) -> Result<Authority<'_>, AuthorityError> {
    let end = raw.find(']').ok_or(AuthorityError::Invalid)?;
    let port = match &raw[end + 1..] {
        "" => None,
        rest => Some(port_number(
            rest.strip_prefix(':')
                .ok_or(AuthorityError::Invalid)?
                .as_bytes(),
        )?),
    };
    if raw[1..end].parse::<std::net::Ipv6Addr>().is_err() {
        return Err(AuthorityError::Invalid);
    }
    let upper = raw[..end].bytes().any(|b| b.is_ascii_uppercase());
    finish(raw, end + 1, end + 1, upper, port, default_port)
}

/// A port: one or more decimal digits, at most 65535.
fn port_number(digits: &[u8]) -> Result<u16, AuthorityError> {
    if digits.is_empty() {
        return Err(AuthorityError::Invalid);
    }
    let mut port = 0u32;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(AuthorityError::Invalid);
        }
        port = port * 10 + u32::from(d - b'0');
        if port > u32::from(u16::MAX) {
            return Err(AuthorityError::Invalid);
        }
    }
    Ok(port as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn req(
        version: Version,
        uri: &str,
        hosts: &[&str],
        tls: bool,
    ) -> Result<Option<String>, AuthorityError> {
        let uri: Uri = uri.parse().unwrap();
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(header::HOST, HeaderValue::from_bytes(h.as_bytes()).unwrap());
        }
        canonical_authority(version, &uri, &headers, tls).map(|a| a.map(|a| a.as_str().to_owned()))
    }

    /// Version, target, `Host` headers, TLS, expected canonical authority.
    type Case = (
        Version,
        &'static str,
        &'static [&'static str],
        bool,
        Result<Option<&'static str>, AuthorityError>,
    );

    #[test]
    fn authority_rules() {
        use AuthorityError::*;
        use Version as V;
        let table: &[Case] = &[
            (
                V::HTTP_11,
                "/",
                &["Example.COM"],
                false,
                Ok(Some("example.com")),
            ),
            (
                V::HTTP_11,
                "/",
                &["example.com."],
                false,
                Ok(Some("example.com")),
            ),
            (
                V::HTTP_11,
                "/",
                &["example.com:80"],
                false,
                Ok(Some("example.com")),
            ),
            (
                V::HTTP_11,
                "/",
                &["example.com:443"],
                true,
                Ok(Some("example.com")),
            ),
            (
                V::HTTP_11,
                "/",
                &["example.com:443"],
                false,
                Ok(Some("example.com:443")),
            ),
            (
                V::HTTP_11,
                "/",
                &["example.com:8080"],
                false,
                Ok(Some("example.com:8080")),
            ),
            (V::HTTP_11, "/", &["[::1]:80"], false, Ok(Some("[::1]"))),
            (
                V::HTTP_11,
                "/",
                &["[::1]:8080"],
                false,
                Ok(Some("[::1]:8080")),
            ),
            (V::HTTP_11, "/", &["10.0.0.1"], false, Ok(Some("10.0.0.1"))),
            (V::HTTP_11, "/", &[], false, Err(Missing)),
            (V::HTTP_10, "/", &[], false, Ok(None)),
            (V::HTTP_11, "/", &["a.com", "b.com"], false, Err(Several)),
            (V::HTTP_11, "/", &[""], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a b.com"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a.com:x"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a.com:"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a.com:99999"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a..com"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a.com/evil"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["user@a.com"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["[::1"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["[nope]"], false, Err(Invalid)),
            (
                V::HTTP_11,
                "/",
                &["Example.COM.:8080"],
                false,
                Ok(Some("example.com:8080")),
            ),
            (
                V::HTTP_11,
                "/",
                &["a.b_c-d.e"],
                false,
                Ok(Some("a.b_c-d.e")),
            ),
            (V::HTTP_11, "/", &["a.com:0080"], false, Ok(Some("a.com"))),
            (
                V::HTTP_11,
                "/",
                &["a.com:65535"],
                false,
                Ok(Some("a.com:65535")),
            ),
            (V::HTTP_11, "/", &["a.com:65536"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a.com:80:80"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a.com:+80"], false, Err(Invalid)),
            (V::HTTP_11, "/", &[":80"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["."], false, Err(Invalid)),
            (V::HTTP_11, "/", &[".a.com"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a.com.."], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a.com.:80"], false, Ok(Some("a.com"))),
            (V::HTTP_11, "/", &["a%2e.com"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["a\\b.com"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["[::1]x"], false, Err(Invalid)),
            (V::HTTP_11, "/", &["[::1]:"], false, Err(Invalid)),
            (
                V::HTTP_11,
                "/",
                &["[::FFFF:1.2.3.4]"],
                false,
                Ok(Some("[::ffff:1.2.3.4]")),
            ),
            // Absolute-form: the target's authority replaces Host.
            (
                V::HTTP_11,
                "http://Target.example/x",
                &["other.example"],
                false,
                Ok(Some("target.example")),
            ),
            (
                V::HTTP_11,
                "http://target.example:80/x",
                &[],
                false,
                Ok(Some("target.example")),
            ),
            // HTTP/2: :authority, and a Host that names another host is refused.
            (
                V::HTTP_2,
                "https://a.example/x",
                &[],
                true,
                Ok(Some("a.example")),
            ),
            (
                V::HTTP_2,
                "https://a.example/x",
                &["A.example:443"],
                true,
                Ok(Some("a.example")),
            ),
            (
                V::HTTP_2,
                "https://a.example/x",
                &["b.example"],
                true,
                Err(Conflict),
            ),
            (V::HTTP_2, "/x", &["b.example"], true, Ok(Some("b.example"))),
        ];
        for (version, uri, hosts, tls, expected) in table {
            let got = req(*version, uri, hosts, *tls);
            assert_eq!(
                got.as_ref().map(|o| o.as_deref()).map_err(|e| *e),
                *expected,
                "{version:?} {uri} {hosts:?} tls={tls}"
            );
        }
    }

    #[test]
    fn label_and_name_lengths_are_bounded() {
        let label63 = "a".repeat(63);
        let label64 = "a".repeat(64);
        // 4 labels of 63 and dots: 255 bytes; 3 of 63 and one of 61: 253.
        let name253 = format!("{label63}.{label63}.{label63}.{}", "a".repeat(61));
        let name255 = format!("{label63}.{label63}.{label63}.{label63}");
        let cases: &[(String, bool)] = &[
            (label63.clone(), true),
            (label64.clone(), false),
            (format!("{label64}.com"), false),
            (format!("x.{label64}"), false),
            (format!("{label63}.com:8080"), true),
            (name253.clone(), true),
            (format!("{name253}."), true),
            (format!("{name253}:8080"), true),
            (name255, false),
        ];
        for (host, ok) in cases {
            let got = parse(host, 80);
            assert_eq!(got.is_ok(), *ok, "{host}: {got:?}");
        }
    }

    #[test]
    fn host_is_split_from_the_port() {
        let uri: Uri = "/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("API.example.com.:8443"),
        );
        let a = canonical_authority(Version::HTTP_11, &uri, &headers, true)
            .unwrap()
            .unwrap();
        assert_eq!(a.host(), "api.example.com");
        assert_eq!(a.as_str(), "api.example.com:8443");
        assert!(!a.is_unchanged());
        headers.insert(header::HOST, HeaderValue::from_static("api.example.com"));
        let a = canonical_authority(Version::HTTP_11, &uri, &headers, true)
            .unwrap()
            .unwrap();
        assert!(a.is_unchanged());
    }
}
