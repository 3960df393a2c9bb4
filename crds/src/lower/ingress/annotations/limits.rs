//! `limit-rps` / `limit-rpm` (requests per client address per second / minute, as a route-level
//! `rate_limiting` instance) and `proxy-body-size` (nginx size syntax: `8m`, `512k`, `1g`, bytes;
//! `0` = no limit beyond the proxy's own `--max-body-bytes`; larger bodies get 413, as a
//! route-level `body_limit` instance) and `limit-connections` (requests in flight per client
//! address, 503 beyond, as a route-level `limit_conn` instance).

use serde_json::json;

use super::{Annotations, Reader};
use crate::lower::ingress::plugins::{BODY_SIZE, LIMIT_CONN, RATE_LIMIT};

pub(super) fn parse(r: &mut Reader<'_>, out: &mut Annotations) {
    let rps = r.number("limit-rps", 1, 1_000_000);
    let rpm = r.number("limit-rpm", 1, 1_000_000_000);
    if rps.is_some() || rpm.is_some() {
        let mut config = json!({"key": "ip"});
        if let Some(n) = rps {
            config["second"] = json!(n);
        }
        if let Some(n) = rpm {
            config["minute"] = json!(n);
        }
        out.plugins.push((&RATE_LIMIT, config));
    }
    if let Some(n) = r.number("limit-connections", 1, 1_000_000) {
        out.plugins.push((&LIMIT_CONN, json!({"max": n})));
    }
    if let Some(v) = r.raw("proxy-body-size") {
        match size(v) {
            Some(0) => {}
            Some(n) => out.plugins.push((&BODY_SIZE, json!({"max_bytes": n}))),
            None => r.error(
                "proxy-body-size",
                format!("{v:?} is not a size like 8m, 512k, 1g or a number of bytes"),
            ),
        }
    }
}

/// An nginx size: bytes, or with a `k`, `m` or `g` suffix (either case).
pub(crate) fn size(v: &str) -> Option<u64> {
    let (digits, unit) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        b'g' | b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, errors, ok};
    use super::*;

    #[test]
    fn size_table() {
        #[rustfmt::skip]
        let cases = [
            ("0", Some(0)), ("100", Some(100)), ("8m", Some(8 << 20)), ("8M", Some(8 << 20)),
            ("512k", Some(512 << 10)), ("1g", Some(1 << 30)), ("1.5m", None), ("m", None),
            ("-1", None), ("10mb", None), ("", None),
        ];
        for (v, want) in cases {
            assert_eq!(size(v), want, "{v:?}");
        }
    }

    #[test]
    fn limits_table() {
        let a = ok(&[("limit-rps", "5")]);
        assert_eq!(
            config(&a, "ingress#limit-rate"),
            Some(json!({"key": "ip", "second": 5}))
        );
        let a = ok(&[("limit-rps", "5"), ("limit-rpm", "100")]);
        assert_eq!(
            config(&a, "ingress#limit-rate"),
            Some(json!({"key": "ip", "second": 5, "minute": 100}))
        );
        let a = ok(&[("proxy-body-size", "1k")]);
        assert_eq!(
            config(&a, "ingress#body-size"),
            Some(json!({"max_bytes": 1024}))
        );
        assert_eq!(
            config(&ok(&[("proxy-body-size", "0")]), "ingress#body-size"),
            None
        );
        let a = ok(&[("limit-connections", "3")]);
        assert_eq!(
            config(&a, "ingress#limit-connections"),
            Some(json!({"max": 3}))
        );
        #[rustfmt::skip]
        let bad: &[(&str, &str, &str)] = &[
            ("limit-rps", "0", "limit-rps: \"0\" is not a whole number"),
            ("limit-rps", "ten", "limit-rps: \"ten\""),
            ("limit-rpm", "1.5", "limit-rpm: \"1.5\""),
            ("limit-connections", "0", "limit-connections: \"0\""),
            ("proxy-body-size", "8mb", "proxy-body-size: \"8mb\" is not a size"),
        ];
        for (name, value, want) in bad {
            let e = errors(&[(name, value)]);
            assert!(e[0].contains(want), "{name}={value}: {e:?}");
        }
    }
}
