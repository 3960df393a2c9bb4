//! Header rewriting between client and upstream: hop-by-hop removal and `X-Forwarded-*`.

use std::io::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether the request asks for a protocol upgrade (WebSocket): `Connection: upgrade` plus an
/// `Upgrade` header.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers: `Connection` and the headers it names, `Keep-Alive`,
/// `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`. With `upgrade`, keeps
/// `Connection: upgrade` and `Upgrade` so the upgrade reaches the other side. Returns whether a
/// removed `TE` accepted `trailers` (what an HTTP/2 upstream is told again).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) -> bool {
    // One pass over the headers finds which hop-by-hop headers are there (usually none, or only
    // `Connection`); only those are removed, since every removal hashes the name.
    let mut present = 0u16;
    let mut connection: Option<&HeaderValue> = None;
    let mut connections = 0usize;
    for (name, value) in headers.iter() {
        if let Some(bit) = hop_by_hop_bit(name) {
            present |= 1 << bit;
            if 1 << bit == CONNECTION_BIT {
                connection = Some(value);
                connections += 1;
            }
        }
    }
    if present == 0 && !upgrade {
        return false;
    }
    let te_trailers = present & TE_BIT != 0 && accepts_trailers(headers);
    if let Some(conn) = connection {
        let token = conn.as_bytes().trim_ascii();
        if connections > 1 || token.contains(&b',') {
            named_in_connection(headers);
        } else if let Some(name) = named_header(headers, token) {
            headers.remove(&name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        if present & CONNECTION_BIT != 0 {
            headers.remove(header::CONNECTION);
        }
        if present & UPGRADE_BIT != 0 {
            headers.remove(header::UPGRADE);
        }
    }
    te_trailers
}

/// Whether a `TE` header lists `trailers` (RFC 9110 §10.1.4: a comma-separated list of
/// codings, `trailers` among them, with optional parameters).
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| {
            let coding = t.split(|b| *b == b';').next().unwrap_or_default();
            coding.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
}

/// The header a single `Connection` option names, when it is there and not removed anyway.
/// The option is usually `keep-alive` or `close` with no such header, so it is looked for among
/// the names (a few comparisons) rather than parsed and hashed. A hop-by-hop name is left to
/// the caller's own removal (`Upgrade` included, which an upgrade keeps).
fn named_header(headers: &HeaderMap, token: &[u8]) -> Option<HeaderName> {
    let name = headers
        .keys()
        .find(|k| k.as_str().as_bytes().eq_ignore_ascii_case(token))?;
    hop_by_hop_bit(name).is_none().then(|| name.clone())
}

/// The bit of `TE` (its index in [`HOP_BY_HOP`]).
const TE_BIT: u16 = 1 << 4;
/// Bits of [`hop_by_hop_bit`] past those of [`HOP_BY_HOP`].
const CONNECTION_BIT: u16 = 1 << HOP_BY_HOP.len();
const UPGRADE_BIT: u16 = 1 << (HOP_BY_HOP.len() + 1);

/// Which hop-by-hop header `name` is: its index in [`HOP_BY_HOP`], or the bit of `Connection`
/// or `Upgrade` after them; `None` for an end-to-end header.
///
/// Matched on the name's text (a switch on the length, then at most two comparisons), which
/// every field of every head goes through: comparing the name with each of the nine in turn
/// cost about 50 instructions a field.
fn hop_by_hop_bit(name: &HeaderName) -> Option<u32> {
    // The indices of `HOP_BY_HOP` (a test checks they agree).
    Some(match name.as_str() {
        "keep-alive" => 0,
        "proxy-authenticate" => 1,
        "proxy-authorization" => 2,
        "proxy-connection" => 3,
        "te" => 4,
        "trailer" => 5,
        "transfer-encoding" => 6,
        "connection" => CONNECTION_BIT.trailing_zeros(),
        "upgrade" => UPGRADE_BIT.trailing_zeros(),
        _ => return None,
    })
}

/// The hop-by-hop headers removed whatever `Connection` says.
static HOP_BY_HOP: [&HeaderName; 7] = [
    &KEEP_ALIVE,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
];

fn named_in_connection(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if name != header::UPGRADE {
            headers.remove(name);
        }
    }
}

/// `ip` as text, written into `buf` (an IPv6 address has at most 45 characters): IPv4, the
/// common case, digit by digit (the `Display` machinery costs about ten times as much on a
/// request's path), IPv6 by `Display`.
fn ip_text(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            &buf[..len]
        }
        IpAddr::V6(_) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            let len = usize::try_from(cursor.position()).unwrap_or(0);
            &buf[..len]
        }
    }
}

static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Writes the forwarding headers for the upstream.
///
/// From an untrusted peer (the default: no `--trusted-proxies`), whatever the client sent is
/// replaced: `X-Forwarded-For` becomes the peer alone, `X-Forwarded-Proto` and
/// `X-Forwarded-Host` are the proxy's own view, `Forwarded` and `X-Real-IP` are removed. From a
/// trusted proxy, the peer is appended to its `X-Forwarded-For` and its `X-Forwarded-Proto` and
/// `X-Forwarded-Host` are kept (set when missing).
pub fn add_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    tls: bool,
    host: Option<&HeaderValue>,
    trusted_peer: bool,
) {
    let mut buf = [0u8; 64];
    let peer = ip_text(peer.to_canonical(), &mut buf);
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    if !trusted_peer {
        replace_forwarded(headers, peer, proto, host);
        return;
    }
    let value = match headers.get(&X_FORWARDED_FOR) {
        Some(prev) if !prev.is_empty() => {
            let mut joined = Vec::with_capacity(prev.len() + 2 + peer.len());
            joined.extend_from_slice(prev.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(peer);
            HeaderValue::from_bytes(&joined)
        }
        _ => HeaderValue::from_bytes(peer),
    };
    if let Ok(v) = value {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
    }
    if let Some(host) = host {
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
    }
}

/// Bits of the forwarding fields a client sent ([`forwarding_fields`]).
const SENT_XFF: u8 = 1;
const SENT_XFP: u8 = 2;
const SENT_XFH: u8 = 4;
const SENT_FORWARDED: u8 = 8;
const SENT_REAL_IP: u8 = 16;

/// Which forwarding fields are in `headers`, found in one pass over the names (a name starting
/// with anything but `x` is compared no further, unless it is the standard `Forwarded`).
fn forwarding_fields(headers: &HeaderMap) -> u8 {
    let mut sent = 0;
    for name in headers.keys() {
        if *name == FORWARDED {
            sent |= SENT_FORWARDED;
            continue;
        }
        let text = name.as_str();
        if !text.starts_with("x-") {
            continue;
        }
        sent |= match text {
            "x-forwarded-for" => SENT_XFF,
            "x-forwarded-proto" => SENT_XFP,
            "x-forwarded-host" => SENT_XFH,
            "x-real-ip" => SENT_REAL_IP,
            _ => 0,
        };
    }
    sent
}

/// Sets `name` to `value`: appended when the client did not send it (no search for values to
/// replace), inserted over the client's value otherwise.
fn set(headers: &mut HeaderMap, sent: bool, name: &HeaderName, value: HeaderValue) {
    if sent {
        headers.insert(name.clone(), value);
    } else {
        headers.append(name.clone(), value);
    }
}

/// The forwarding fields for a request from a peer that is not a trusted proxy: whatever the
/// client sent is replaced by the proxy's own view, `Forwarded` and `X-Real-IP` removed. One
/// pass over the names finds what the client sent (usually none of them), so a field it did not
/// send is appended rather than looked up and inserted.
fn replace_forwarded(
    headers: &mut HeaderMap,
    peer: &[u8],
    proto: HeaderValue,
    host: Option<&HeaderValue>,
) {
    let sent = forwarding_fields(headers);
    if let Ok(v) = HeaderValue::from_bytes(peer) {
        set(headers, sent & SENT_XFF != 0, &X_FORWARDED_FOR, v);
    } else if sent & SENT_XFF != 0 {
        headers.remove(&X_FORWARDED_FOR);
    }
    if sent & SENT_FORWARDED != 0 {
        headers.remove(&FORWARDED);
    }
    if sent & SENT_REAL_IP != 0 {
        headers.remove(&X_REAL_IP);
    }
    set(headers, sent & SENT_XFP != 0, &X_FORWARDED_PROTO, proto);
    match host {
        Some(host) => set(
            headers,
            sent & SENT_XFH != 0,
            &X_FORWARDED_HOST,
            host.clone(),
        ),
        None if sent & SENT_XFH != 0 => {
            headers.remove(&X_FORWARDED_HOST);
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("proxy-authorization", "basic x"),
            ("upgrade", "h2c"),
            ("x-keep", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-keep"]);
    }

    #[test]
    fn hop_by_hop_names_have_their_bits() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_bit(name), Some(i as u32), "{name}");
        }
        let cases = [
            (header::CONNECTION, Some(CONNECTION_BIT.trailing_zeros())),
            (header::UPGRADE, Some(UPGRADE_BIT.trailing_zeros())),
            (header::TE, Some(TE_BIT.trailing_zeros())),
            (header::HOST, None),
            (header::CONTENT_LENGTH, None),
            (HeaderName::from_static("x-keep-alive"), None),
            (HeaderName::from_static("proxy-x"), None),
            (HeaderName::from_static("ted"), None),
        ];
        for (name, bit) in cases {
            assert_eq!(hop_by_hop_bit(&name), bit, "{name}");
        }
    }

    #[test]
    fn te_trailers_is_reported_when_removed() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("te", "trailers")], true),
            (&[("te", "Trailers"), ("connection", "TE")], true),
            (&[("te", "gzip;q=0.5, trailers")], true),
            (&[("te", "gzip"), ("te", "trailers;q=1")], true),
            (&[("te", "gzip")], false),
            (&[("te", "trailersx")], false),
            (&[("x-te", "trailers")], false),
            (&[], false),
        ];
        for (headers, expected) in cases {
            let mut h = map(headers);
            assert_eq!(remove_hop_by_hop(&mut h, false), *expected, "{headers:?}");
            assert!(!h.contains_key(header::TE), "{headers:?}: TE removed");
        }
    }

    #[test]
    fn each_hop_by_hop_header_goes_on_its_own() {
        /// Headers in, names kept.
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (&[("keep-alive", "timeout=5"), ("x-a", "1")], &["x-a"]),
            (&[("proxy-authenticate", "Basic"), ("x-a", "1")], &["x-a"]),
            (
                &[("proxy-authorization", "Basic x"), ("x-a", "1")],
                &["x-a"],
            ),
            (
                &[("proxy-connection", "keep-alive"), ("x-a", "1")],
                &["x-a"],
            ),
            (&[("te", "trailers"), ("x-a", "1")], &["x-a"]),
            (&[("trailer", "x-sum"), ("x-a", "1")], &["x-a"]),
            (&[("transfer-encoding", "chunked"), ("x-a", "1")], &["x-a"]),
            (&[("upgrade", "h2c"), ("x-a", "1")], &["x-a"]),
            // `Connection` naming one header: both go, the rest stays.
            (
                &[("connection", "x-b"), ("x-b", "2"), ("x-a", "1")],
                &["x-a"],
            ),
            (&[("connection", "keep-alive"), ("x-a", "1")], &["x-a"]),
            // Options are case-insensitive and may carry spaces; `close` names no header.
            (
                &[("connection", " X-B "), ("x-b", "2"), ("x-a", "1")],
                &["x-a"],
            ),
            (&[("connection", "close"), ("x-a", "1")], &["x-a"]),
            (
                &[
                    ("connection", "Keep-Alive"),
                    ("keep-alive", "timeout=5"),
                    ("x-a", "1"),
                ],
                &["x-a"],
            ),
            // An option naming a header that is not there removes nothing else.
            (&[("connection", "x-gone"), ("x-a", "1")], &["x-a"]),
            // Two `Connection` lines: the options of both go.
            (
                &[
                    ("connection", "x-b"),
                    ("connection", "x-c"),
                    ("x-b", "2"),
                    ("x-c", "3"),
                    ("x-a", "1"),
                ],
                &["x-a"],
            ),
            (&[("x-a", "1"), ("x-c", "3")], &["x-a", "x-c"]),
        ];
        for (headers, kept) in cases {
            let mut h = map(headers);
            remove_hop_by_hop(&mut h, false);
            let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, *kept, "{headers:?}");
        }
    }

    #[test]
    fn upgrade_is_kept_for_upgrades() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let cases = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "127.0.0.1",
            "192.168.1.10",
            "1.20.199.250",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ];
        let mut buf = [0u8; 64];
        for case in cases {
            let ip: IpAddr = case.parse().unwrap();
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes(), "{case}");
        }
        for n in (0..=u32::MAX).step_by(7_919_993) {
            let ip = IpAddr::V4(n.into());
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes(), "{ip}");
        }
    }

    #[test]
    fn forwarding_headers_follow_the_trust_rule() {
        let sent = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
        ];
        // (trusted peer, expected XFF, proto, host, forwarded kept, x-real-ip kept)
        let table = [
            (false, "127.0.0.1", "http", "a.example", false, false),
            (
                true,
                "6.6.6.6, 127.0.0.1",
                "https",
                "evil.example",
                true,
                true,
            ),
        ];
        for (trusted, xff, proto, host, forwarded, real_ip) in table {
            let mut h = map(&sent);
            add_forwarded(
                &mut h,
                "127.0.0.1".parse().unwrap(),
                false,
                Some(&"a.example".parse().unwrap()),
                trusted,
            );
            assert_eq!(h["x-forwarded-for"], xff, "trusted={trusted}");
            assert_eq!(h["x-forwarded-proto"], proto, "trusted={trusted}");
            assert_eq!(h["x-forwarded-host"], host, "trusted={trusted}");
            assert_eq!(h.contains_key("forwarded"), forwarded, "trusted={trusted}");
            assert_eq!(h.contains_key("x-real-ip"), real_ip, "trusted={trusted}");
        }
        // From an untrusted peer, each field alone, twice, or with no host: one value each,
        // the proxy's own, and nothing of the client's left.
        type Case = (
            &'static [(&'static str, &'static str)],
            Option<&'static str>,
        );
        let untrusted: &[Case] = &[
            (&[], Some("a.example")),
            (&[("x-forwarded-for", "6.6.6.6")], Some("a.example")),
            (
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "7.7.7.7"),
                ],
                Some("a.example"),
            ),
            (&[("x-forwarded-proto", "https")], None),
            (&[("x-forwarded-host", "evil.example")], None),
            (
                &[
                    ("x-forwarded-host", "evil.example"),
                    ("x-real-ip", "6.6.6.6"),
                ],
                Some("a.example"),
            ),
            (&[("forwarded", "for=6.6.6.6"), ("x-other", "1")], None),
        ];
        for (sent, host) in untrusted {
            let mut h = map(sent);
            let host_value = host.map(HeaderValue::from_static);
            add_forwarded(
                &mut h,
                "127.0.0.1".parse().unwrap(),
                false,
                host_value.as_ref(),
                false,
            );
            let all = |name: &str| -> Vec<&str> {
                h.get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect()
            };
            assert_eq!(all("x-forwarded-for"), ["127.0.0.1"], "{sent:?}");
            assert_eq!(all("x-forwarded-proto"), ["http"], "{sent:?}");
            assert_eq!(all("x-forwarded-host"), host.as_slice(), "{sent:?}");
            assert!(all("forwarded").is_empty(), "{sent:?}");
            assert!(all("x-real-ip").is_empty(), "{sent:?}");
            let others = sent
                .iter()
                .filter(|(k, _)| k.starts_with("x-other"))
                .count();
            assert_eq!(all("x-other").len(), others, "{sent:?}");
        }
        // Nothing sent: the proxy's own view either way.
        for trusted in [false, true] {
            let mut h = HeaderMap::new();
            add_forwarded(
                &mut h,
                "::ffff:10.0.0.1".parse().unwrap(),
                true,
                None,
                trusted,
            );
            assert_eq!(h["x-forwarded-for"], "10.0.0.1");
            assert_eq!(h["x-forwarded-proto"], "https");
            assert!(!h.contains_key("x-forwarded-host"));
        }
    }
}
