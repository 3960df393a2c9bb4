//! Which address is "the client": the TCP peer, or — only when the peer is a trusted proxy —
//! the address that proxy forwarded. `X-Forwarded-For`/`X-Real-IP` from anyone else are ignored.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

use super::ip_set::IpSet;

/// Resolves the client address of a request.
#[derive(Debug, Clone)]
pub struct ClientIp {
    trusted: IpSet,
    header: HeaderName,
    forwarded_list: bool,
}

impl ClientIp {
    /// `trusted_proxies`: addresses/CIDRs whose forwarded header is believed. `real_ip_header`:
    /// the header they set (default `X-Forwarded-For`, a list read right to left; any other
    /// header, e.g. `X-Real-IP`, holds one address).
    pub fn new(trusted_proxies: &[String], real_ip_header: Option<&str>) -> Result<Self, String> {
        let trusted = IpSet::parse(trusted_proxies).map_err(|e| format!("trusted_proxies: {e}"))?;
        let header = match real_ip_header {
            Some(h) => HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| format!("real_ip_header: invalid header name {h:?}"))?,
            None => HeaderName::from_static("x-forwarded-for"),
        };
        let forwarded_list = header == "x-forwarded-for";
        Ok(Self {
            trusted,
            header,
            forwarded_list,
        })
    }

    /// Whether `peer` is a trusted proxy.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        !self.trusted.is_empty() && self.trusted.contains(peer.to_canonical())
    }

    /// Whether no proxy is trusted (every peer is the client).
    pub fn trusts_nobody(&self) -> bool {
        self.trusted.is_empty()
    }

    /// The client address of a request: the proxy-wide one (`ctx_client`, from
    /// `--trusted-proxies`) unless this plugin names trusted proxies of its own.
    pub fn resolve_or(&self, headers: &HeaderMap, peer: IpAddr, ctx_client: IpAddr) -> IpAddr {
        if self.trusted.is_empty() {
            ctx_client
        } else {
            self.resolve(headers, peer)
        }
    }

    /// The client address for a request from `peer`.
    pub fn resolve(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let peer = peer.to_canonical();
        if self.trusted.is_empty() || !self.trusted.contains(peer) {
            return peer;
        }
        if !self.forwarded_list {
            return headers
                .get(&self.header)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_ip(v.trim()))
                .unwrap_or(peer);
        }
        // X-Forwarded-For: walk the hops right to left (later header lines are nearer to us);
        // the first address that is not a trusted proxy is the client.
        let mut nearest = peer;
        for value in headers.get_all(&self.header).iter().rev() {
            let Ok(value) = value.to_str() else {
                return nearest;
            };
            for hop in value.rsplit(',') {
                match parse_ip(hop.trim()) {
                    Some(ip) if self.trusted.contains(ip) => nearest = ip,
                    Some(ip) => return ip,
                    // A hop we cannot read: stop at the last address we could vouch for.
                    None => return nearest,
                }
            }
        }
        nearest
    }
}

/// An address, tolerating `1.2.3.4:5678` and `[::1]:80` forms some proxies write.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let c = ClientIp::new(&[], None).unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(c.resolve(&h, ip("9.9.9.9")), ip("9.9.9.9"));
        let c = ClientIp::new(&["10.0.0.0/8".into()], None).unwrap();
        assert_eq!(c.resolve(&h, ip("9.9.9.9")), ip("9.9.9.9"));
    }

    #[test]
    fn rightmost_untrusted_forwarded_hop_wins() {
        let c = ClientIp::new(&["10.0.0.0/8".into()], None).unwrap();
        // A client spoofs 6.6.6.6; the real client is 7.7.7.7, then two of our proxies.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 7.7.7.7"),
            ("x-forwarded-for", "10.0.0.5"),
        ]);
        assert_eq!(c.resolve(&h, ip("10.0.0.1")), ip("7.7.7.7"));
    }

    #[test]
    fn all_trusted_hops_give_the_leftmost() {
        let c = ClientIp::new(&["10.0.0.0/8".into()], None).unwrap();
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.5")]);
        assert_eq!(c.resolve(&h, ip("10.0.0.1")), ip("10.0.0.9"));
        assert_eq!(c.resolve(&HeaderMap::new(), ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_hop_stops_the_walk() {
        let c = ClientIp::new(&["10.0.0.0/8".into()], None).unwrap();
        let h = headers(&[("x-forwarded-for", "7.7.7.7, bogus, 10.0.0.5")]);
        assert_eq!(c.resolve(&h, ip("10.0.0.1")), ip("10.0.0.5"));
    }

    #[test]
    fn real_ip_header_holds_one_address() {
        let c = ClientIp::new(&["127.0.0.1".into()], Some("X-Real-IP")).unwrap();
        let h = headers(&[("x-real-ip", "[2001:db8::7]:443")]);
        assert_eq!(c.resolve(&h, ip("127.0.0.1")), ip("2001:db8::7"));
        let h = headers(&[("x-real-ip", "nope")]);
        assert_eq!(c.resolve(&h, ip("127.0.0.1")), ip("127.0.0.1"));
    }
}
