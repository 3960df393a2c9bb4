//! Sets of IP addresses written as exact addresses, CIDR blocks, trailing IPv4 wildcards
//! (`192.168.*`) or `*`, parsed once into a matcher.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A parsed address set: merged CIDR blocks per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    any: bool,
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

impl IpSet {
    /// Parses every entry; the first bad one is named in the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut set = IpSet::default();
        for entry in entries {
            match parse_entry(entry.as_ref())? {
                Entry::Any => set.any = true,
                Entry::Net(IpNet::V4(n)) => set.v4.push(n),
                Entry::Net(IpNet::V6(n)) => set.v6.push(n),
            }
        }
        // Merge overlapping and adjacent blocks: fewer comparisons on the hot path.
        set.v4 = Ipv4Net::aggregate(&set.v4);
        set.v6 = Ipv6Net::aggregate(&set.v6);
        Ok(set)
    }

    /// Whether the set holds no address at all.
    pub fn is_empty(&self) -> bool {
        !self.any && self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is in the set (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(&a)),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.contains(&a)),
        }
    }
}

enum Entry {
    Any,
    Net(IpNet),
}

fn parse_entry(raw: &str) -> Result<Entry, String> {
    let s = raw.trim();
    if s == "*" {
        return Ok(Entry::Any);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Entry::Net(IpNet::from(ip.to_canonical())));
    }
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(Entry::Net(net.trunc()));
    }
    if s.ends_with('*') {
        return parse_wildcard(s)
            .map(|n| Entry::Net(IpNet::V4(n)))
            .ok_or_else(|| invalid(raw));
    }
    Err(invalid(raw))
}

fn invalid(raw: &str) -> String {
    format!(
        "invalid IP entry {raw:?}: expected an IPv4/IPv6 address, a CIDR block \
         (10.0.0.0/8, fd00::/8), a trailing IPv4 wildcard (192.168.*) or *"
    )
}

/// `10.*`, `10.1.*`, `10.1.2.*` (optionally padded with more `.*`): a /8, /16 or /24 block.
fn parse_wildcard(s: &str) -> Option<Ipv4Net> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let fixed = parts.iter().take_while(|p| **p != "*").count();
    // Everything after the first `*` must be `*` too, and at least one octet is fixed.
    if fixed == 0 || parts[fixed..].iter().any(|p| *p != "*") {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts[..fixed].iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        octets[i] = p.parse().ok()?;
    }
    Ipv4Net::new(Ipv4Addr::from(octets), (fixed * 8) as u8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[&str]) -> IpSet {
        IpSet::parse(entries).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_addresses_both_families() {
        let s = set(&["10.0.0.1", "2001:db8::1"]);
        assert!(s.contains(ip("10.0.0.1")));
        assert!(!s.contains(ip("10.0.0.2")));
        assert!(s.contains(ip("2001:db8::1")));
        assert!(!s.contains(ip("2001:db8::2")));
    }

    #[test]
    fn cidr_blocks() {
        let s = set(&["10.1.0.0/16", "fd00::/8", "192.168.1.77/24"]);
        assert!(s.contains(ip("10.1.255.3")));
        assert!(!s.contains(ip("10.2.0.1")));
        assert!(s.contains(ip("fdab::1")));
        assert!(s.contains(ip("192.168.1.1")), "host bits are truncated");
    }

    #[test]
    fn trailing_wildcards() {
        let s = set(&["192.168.*"]);
        assert!(s.contains(ip("192.168.44.5")));
        assert!(!s.contains(ip("192.169.0.1")));
        let s = set(&["10.1.2.*"]);
        assert!(s.contains(ip("10.1.2.200")));
        assert!(!s.contains(ip("10.1.3.1")));
        assert!(set(&["172.*.*.*"]).contains(ip("172.200.1.1")));
    }

    #[test]
    fn star_matches_everything() {
        let s = set(&["*"]);
        assert!(s.contains(ip("1.2.3.4")));
        assert!(s.contains(ip("::1")));
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        assert!(set(&["127.0.0.0/8"]).contains(ip("::ffff:127.0.0.1")));
        assert!(set(&["::ffff:10.0.0.1"]).contains(ip("10.0.0.1")));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "10.0.0",
            "10.*.1.*",
            "*.1",
            "300.1.*",
            "10.0.0.0/33",
            "host",
            "",
        ] {
            let err = IpSet::parse(&[bad]).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }
}
