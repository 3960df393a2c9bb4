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
fn parse(raw: &str, default_port: u16) -> Result<Authority<'_>, AuthorityError> {
    let (host, port) = split_port(raw)?;
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.is_empty() || !valid_host(trimmed) {
        return Err(AuthorityError::Invalid);
    }
    let kept_port = port.filter(|p| *p != default_port);
    let lower = !trimmed.bytes().any(|b| b.is_ascii_uppercase());
    let text = if lower && trimmed.len() == host.len() && port == kept_port {
        Cow::Borrowed(raw)
    } else {
        let mut text = trimmed.to_ascii_lowercase();
        if let Some(p) = kept_port {
            text.push(':');
            text.push_str(&p.to_string());
        }
        Cow::Owned(text)
    };
    Ok(Authority {
        text,
        host_len: trimmed.len(),
        unchanged: false,
    })
}

/// `host` and the port, if any (`[v6]:port` included).
fn split_port(raw: &str) -> Result<(&str, Option<u16>), AuthorityError> {
    let (host, port) = if raw.starts_with('[') {
        let end = raw.find(']').ok_or(AuthorityError::Invalid)?;
        match &raw[end + 1..] {
            "" => (raw, None),
            rest => (
                &raw[..=end],
                Some(rest.strip_prefix(':').ok_or(AuthorityError::Invalid)?),
            ),
        }
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| AuthorityError::Invalid)?)
        }
        Some(_) => return Err(AuthorityError::Invalid),
    };
    Ok((host, port))
}

/// A DNS-style name (letters, digits, `-`, `_`, dots between non-empty labels), an IPv4
/// address (a name of digits and dots) or a bracketed IPv6 literal.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
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
