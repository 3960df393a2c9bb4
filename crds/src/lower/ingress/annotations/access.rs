//! `whitelist-source-range` / `allowlist-source-range` (allow only these client addresses) and
//! `denylist-source-range` (refuse these), comma-separated CIDRs or addresses, as route-level
//! `ip_restriction` instances answering 403 like nginx's `deny`. The client address is the
//! connection's peer, as in ingress-nginx without `use-forwarded-headers`.

use std::net::IpAddr;

use serde_json::json;

use super::{Annotations, Reader};
use crate::lower::ingress::plugins::{ALLOWLIST, DENYLIST};

pub(super) fn parse(r: &mut Reader<'_>, out: &mut Annotations) {
    let allow_name = if r.raw("allowlist-source-range").is_some() {
        if r.raw("whitelist-source-range").is_some() {
            r.warn(
                "whitelist-source-range",
                "ignored: allowlist-source-range is set too and wins",
            );
        }
        "allowlist-source-range"
    } else {
        "whitelist-source-range"
    };
    if let Some(list) = ranges(r, allow_name) {
        out.plugins.push((
            &ALLOWLIST,
            json!({"ip_list_type": "white", "ip_white_list": list}),
        ));
    }
    if let Some(list) = ranges(r, "denylist-source-range") {
        out.plugins.push((
            &DENYLIST,
            json!({"ip_list_type": "black", "ip_black_list": list}),
        ));
    }
}

/// The checked entries of `name`.
fn ranges(r: &mut Reader<'_>, name: &str) -> Option<Vec<String>> {
    let list = r.list(name)?;
    let bad: Vec<&String> = list.iter().filter(|e| !is_cidr(e)).collect();
    if !bad.is_empty() {
        r.error(name, format!("{bad:?}: not an IP address or CIDR block"));
        return None;
    }
    Some(list)
}

/// `1.2.3.4`, `10.0.0.0/8`, `2001:db8::/32`.
fn is_cidr(entry: &str) -> bool {
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (entry, None),
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, errors, ok};
    use serde_json::json;

    #[test]
    fn source_range_table() {
        let a = ok(&[("whitelist-source-range", "10.0.0.0/8, 192.168.1.1")]);
        assert_eq!(
            config(&a, "ingress#allowlist"),
            Some(json!({"ip_list_type": "white", "ip_white_list": ["10.0.0.0/8", "192.168.1.1"]}))
        );
        let a = ok(&[
            ("whitelist-source-range", "10.0.0.0/8"),
            ("allowlist-source-range", "127.0.0.1/32"),
        ]);
        assert_eq!(
            config(&a, "ingress#allowlist"),
            Some(json!({"ip_list_type": "white", "ip_white_list": ["127.0.0.1/32"]}))
        );
        let a = ok(&[("denylist-source-range", "2001:db8::/32")]);
        assert_eq!(
            config(&a, "ingress#denylist"),
            Some(json!({"ip_list_type": "black", "ip_black_list": ["2001:db8::/32"]}))
        );
        #[rustfmt::skip]
        let bad: &[(&str, &str)] = &[
            ("10.0.0.0/33", "whitelist-source-range: [\"10.0.0.0/33\"]"),
            ("10.0.0.*", "not an IP address or CIDR"),
            ("", "must list at least one value"),
        ];
        for (value, want) in bad {
            let e = errors(&[("whitelist-source-range", value)]);
            assert!(e[0].contains(want), "{value}: {e:?}");
        }
        let e = errors(&[("denylist-source-range", "nope")]);
        assert!(e[0].contains("denylist-source-range"), "{e:?}");
    }
}
