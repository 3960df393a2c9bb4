//! Where the gateway may connect: never to loopback, link-local, private, shared (CGNAT),
//! unspecified, multicast or broadcast addresses, unless `allowed_networks` lists them.
//!
//! The check is on the addresses actually connected to, not only on the URL's host name: names
//! are resolved by [`GuardedResolver`], which hands the connector only the allowed addresses of
//! a name (so a name that resolves to `127.0.0.1` — or is re-pointed there between two lookups —
//! is never connected to), and IP literals, which the connector does not resolve, are checked by
//! [`NetworkGuard::check_host`] before the request is made.
//!
//! ```text
//!  URL host ── IP literal ──▶ check_host ──────────────┐
//!           └─ name ──▶ GuardedResolver: lookup, keep ─┴─▶ connect (allowed addresses only)
//!                        allowed addresses (none: error)
//! ```

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

use crate::plugins::ip_set::IpSet;

/// A connection the guard refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to {addr}, a {kind} address the gateway may not call (list it in allowed_networks to allow it)")]
pub struct Blocked {
    /// The host of the URL.
    pub host: String,
    /// The refused address.
    pub addr: IpAddr,
    /// Why (`loopback`, `private`, ...).
    pub kind: &'static str,
}

/// The kind of non-public address `ip` is, if it is one.
pub fn restricted_kind(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (CGNAT)"
    } else if ip.is_broadcast() || ip.is_multicast() {
        "broadcast or multicast"
    } else if a == 198 && (b == 18 || b == 19) {
        "benchmarking"
    } else if a >= 240 {
        "reserved"
    } else {
        return None;
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if first & 0xfe00 == 0xfc00 {
        "private (unique local)"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible addresses (::a.b.c.d) reach IPv4 space: judge the IPv4 address.
        return v4_kind(v4);
    } else {
        return None;
    })
}

/// The allowed exceptions (`allowed_networks`).
#[derive(Debug, Clone, Default)]
pub struct NetworkGuard {
    allowed: IpSet,
}

impl NetworkGuard {
    /// A guard allowing the restricted addresses in `allowed_networks` (CIDRs or addresses).
    pub fn new<S: AsRef<str>>(allowed_networks: &[S]) -> Result<Self, String> {
        Ok(Self {
            allowed: IpSet::parse(allowed_networks)
                .map_err(|e| format!("allowed_networks: {e}"))?,
        })
    }

    /// Whether `host` may be connected to at `addr`.
    pub fn check(&self, host: &str, addr: IpAddr) -> Result<(), Blocked> {
        match restricted_kind(addr) {
            Some(kind) if !self.allowed.contains(addr) => Err(Blocked {
                host: host.to_string(),
                addr,
                kind,
            }),
            _ => Ok(()),
        }
    }

    /// Checks a URL host that is an IP literal (names are checked when resolved).
    pub fn check_host(&self, host: &str) -> Result<(), Blocked> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check(host, ip),
            Err(_) => Ok(()),
        }
    }
}

/// A DNS resolver for the connector that returns only the addresses the guard allows.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<NetworkGuard>,
}

impl GuardedResolver {
    /// A resolver filtered by `guard`.
    pub fn new(guard: Arc<NetworkGuard>) -> Self {
        Self { guard }
    }
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = Arc::clone(&self.guard);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut blocked = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match guard.check(&host, a.ip()) {
                    Ok(()) => true,
                    Err(b) => {
                        blocked.get_or_insert(b);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), blocked) {
                (true, Some(b)) => {
                    Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, b))
                }
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

/// The refusal inside a connection error chain, if that is why it failed.
pub fn blocked_in(err: &(dyn std::error::Error + 'static)) -> Option<Blocked> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return Some(b.clone());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(b) = io.get_ref().and_then(|i| i.downcast_ref::<Blocked>()) {
                return Some(b.clone());
            }
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_ranges() {
        for (ip, kind) in [
            ("127.0.0.1", Some("loopback")),
            ("127.8.9.10", Some("loopback")),
            ("::1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("fe80::1", Some("link-local")),
            ("fd00::1", Some("private (unique local)")),
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("224.0.0.1", Some("broadcast or multicast")),
            ("255.255.255.255", Some("broadcast or multicast")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::ffff:10.0.0.1", Some("private")),
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("2606:4700::1111", None),
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(restricted_kind(addr), kind, "{ip}");
        }
    }

    #[test]
    fn allowed_networks_make_exceptions() {
        let guard = NetworkGuard::new(&["127.0.0.0/8"]).unwrap();
        assert!(guard.check("h", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(guard
            .check("h", "::ffff:127.0.0.1".parse().unwrap())
            .is_ok());
        let err = guard.check("h", "10.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(err.kind, "private");
        assert!(err.to_string().contains("allowed_networks"), "{err}");
        assert!(NetworkGuard::default().check_host("[::1]").is_err());
        assert!(NetworkGuard::default().check_host("example.com").is_ok());
        assert!(NetworkGuard::new(&["nope"])
            .unwrap_err()
            .contains("allowed_networks"));
    }

    #[tokio::test]
    async fn names_resolving_to_restricted_addresses_are_refused() {
        use tower_service::Service;
        let mut strict = GuardedResolver::new(Arc::new(NetworkGuard::default()));
        let name: Name = "localhost".parse().unwrap();
        let err = strict.call(name.clone()).await.unwrap_err();
        let blocked = blocked_in(&err).expect("a refusal");
        assert_eq!(blocked.kind, "loopback");
        let mut open = GuardedResolver::new(Arc::new(
            NetworkGuard::new(&["127.0.0.0/8", "::1"]).unwrap(),
        ));
        let addrs: Vec<_> = open.call(name).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
